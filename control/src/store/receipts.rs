//! Collectors' receipts in etcd: chunks (`store::ReceiptChunk`, at most
//! [`CHUNK_BYTES`](crate::model::receipts::CHUNK_BYTES) each) under
//! `{prefix}/receipts/{program}/{generation:020}/{replica}/{seq:08}`, bound to a lease the
//! writing replica holds for the day, never overwritten; and reading them back in
//! generation order, a page at a time.

use etcd_client::{PutOptions, SortOrder, SortTarget};
use killswitch_proto::v1::store;

use super::*;

/// Chunk keys read per request when listing receipts: a chunk is at most 1 MiB, so a page
/// stays well under the 4 MiB a gRPC response of etcd may carry.
pub const RECEIPT_PAGE: i64 = 2;

/// The generations a listing covers, both ends included; 0 leaves an end open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptRange {
    /// The first generation, 0 for the first there is.
    pub from: Generation,
    /// The last generation, 0 for the last there is.
    pub to: Generation,
}

/// One page of a listing: chunks in generation order, and where the next page starts.
#[derive(Debug)]
pub struct ReceiptPage {
    /// (generation, chunk), in key order: by generation, then replica, then sequence.
    pub chunks: Vec<(Generation, store::ReceiptChunk)>,
    /// The key the next page starts at; `None` after the last page.
    pub next: Option<Vec<u8>>,
}

impl Store {
    /// Writes `chunk` as a new key of `replica` for `program`'s `generation`, bound to
    /// `lease`, with the sequence number `from` or, when that key exists (written by an
    /// earlier process with the same replica id, or by an attempt whose answer was
    /// lost), the one after the last taken. Never overwrites a chunk. Returns the
    /// sequence number used.
    pub async fn put_receipt_chunk(
        &self,
        lease: i64,
        program: &ProgramName,
        generation: Generation,
        replica: &str,
        from: u32,
        chunk: &store::ReceiptChunk,
    ) -> Result<u32, StoreError> {
        let value = chunk.encode_to_vec();
        let dir = format!(
            "{}{replica}/",
            self.keys.receipt_generation(program, generation)
        );
        let mut seq = from;
        for _ in 0..MAX_ATTEMPTS {
            let key = format!("{dir}{seq:08}");
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.as_str(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let response = self
                .call(|mut client| {
                    let txn = txn.clone();
                    async move { client.txn(txn).await }
                })
                .await?;
            if response.succeeded() {
                return Ok(seq);
            }
            let options = GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(1);
            let last = self.get(dir.as_str(), Some(options)).await?;
            let taken = last
                .kvs()
                .first()
                .and_then(|kv| kv.key().strip_prefix(dir.as_bytes()))
                .and_then(|tail| std::str::from_utf8(tail).ok()?.parse::<u32>().ok());
            seq = taken.unwrap_or(seq).max(seq).saturating_add(1);
        }
        Err(StoreError::Contention)
    }

    /// The page of `program`'s receipt chunks in `range` that starts at key `at` (`None`:
    /// the range's start), at most [`RECEIPT_PAGE`] chunks.
    pub async fn receipt_page(
        &self,
        program: &ProgramName,
        range: ReceiptRange,
        at: Option<Vec<u8>>,
    ) -> Result<ReceiptPage, StoreError> {
        let dir = self.keys.receipts(program);
        let start = match range.from {
            0 => dir.clone(),
            from => self.keys.receipt_generation(program, from),
        };
        // '0' follows '/': the end of the range of keys under `dir`.
        let all = format!("{}0", dir.trim_end_matches('/'));
        let end = match range.to.checked_add(1) {
            Some(after) if range.to != 0 => self.keys.receipt_generation(program, after),
            _ => all,
        };
        let from = at.unwrap_or_else(|| start.into_bytes());
        let options = GetOptions::new()
            .with_range(end.as_str())
            .with_limit(RECEIPT_PAGE);
        let page = self.get(from, Some(options)).await?;
        let mut chunks = Vec::with_capacity(page.kvs().len());
        for kv in page.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let generation = key
                .strip_prefix(dir.as_str())
                .and_then(|tail| tail.split('/').next()?.parse::<Generation>().ok())
                .unwrap_or(0);
            chunks.push((generation, decode(&key, kv.value())?));
        }
        let next = match page.kvs().last() {
            Some(last) if page.more() => {
                // The smallest key after the last one read.
                let mut next = last.key().to_vec();
                next.push(0);
                Some(next)
            }
            _ => None,
        };
        Ok(ReceiptPage { chunks, next })
    }
}
