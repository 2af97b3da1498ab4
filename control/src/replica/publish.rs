//! Publishes this replica to etcd: its registration under `{prefix}/replicas/{id}` and
//! one acknowledgement summary per program under `{prefix}/acks/{program}/{id}`, all bound
//! to the replica's lease, so a dead replica's keys vanish when the lease expires.
//!
//! Summaries are written once a change has settled: after a change the publisher looks
//! every [`PublishConfig::debounce`] whether every collector here has acknowledged it
//! (or the progress interval is over) and then writes every changed program, in one
//! transaction per [`MAX_TXN_OPS`](crate::store::MAX_TXN_OPS) programs. A pause therefore costs
//! O(replicas) etcd writes, never O(collectors). Programs that do not exist get no
//! summary, however many names collectors follow.
//!
//! Collectors' receipts go first: the receipts of the Acks a batch of summaries counts
//! (taken at the same instant, [`AckBook::snapshot`]) are written, in chunks of up to
//! [`CHUNK_BYTES`], before the summaries are; when they cannot be, the summaries wait too.
//! So status never counts an Ack whose receipt is not in etcd, and a replica that crashes
//! loses none of them. Receipts are bound to a lease of their own per day
//! ([`ReceiptWriter`]), not to the replica's: they outlive it by the retention period.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use killswitch_proto::v1::{self, store};
use tokio_util::sync::CancellationToken;

use crate::model::receipts::{self, CHUNK_BYTES, DAY};
use crate::model::{Generation, ProgramName};
use crate::replica::acks::{AckBook, PendingReceipt};
use crate::replica::cache::StateCache;
use crate::store::{Store, StoreError};

/// How much longer the first progress write waits per collector connected here: 1.5 s
/// more at 15,000 collectors, about what their round of acknowledgements takes.
const PROGRESS_PER_COLLECTOR: Duration = Duration::from_micros(100);

/// Pause after a failed summary write before the next attempt.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

/// Publishing settings.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// This replica's id.
    pub replica_id: String,
    /// Where peers reach this replica's admin API.
    pub advertise: String,
    /// Lease time-to-live: how long a dead replica's keys outlive it. Default 10 s.
    pub lease_ttl: Duration,
    /// After a change, how often to look whether it has settled (every collector here
    /// acknowledged it), so the summary is written within this of the last
    /// acknowledgement. Default 5 ms.
    pub debounce: Duration,
    /// While collectors are still acknowledging, how long before publishing progress
    /// anyway, plus 100 µs per collector connected here. Summaries are otherwise written
    /// once every collector here has acknowledged, so a change costs one write per
    /// replica. Default 1 s.
    pub progress_interval: Duration,
    /// How long collectors' receipts are kept: the time-to-live of the day's receipt
    /// lease is this plus a day. Default 90 days.
    pub receipt_retention: Duration,
}

/// Writes collectors' receipts under the lease this replica holds for the day: granted
/// when first needed that day, with a time-to-live of the retention plus a day, so every
/// receipt is kept at least the retention period and vanishes without a sweeper or any
/// write. The lease is independent of the replica's own, so the receipts of a replica
/// that died stay.
#[derive(Debug)]
pub struct ReceiptWriter {
    replica: String,
    retention: Duration,
    /// The day's lease: (day since the Unix epoch, lease id).
    lease: Option<(u64, i64)>,
    /// Per program, the generation written last and the next sequence number for it.
    next: HashMap<ProgramName, (Generation, u32)>,
}

impl ReceiptWriter {
    /// A writer for `replica`, keeping receipts for `retention`.
    #[must_use]
    pub fn new(replica: &str, retention: Duration) -> Self {
        Self {
            replica: replica.to_owned(),
            retention,
            lease: None,
            next: HashMap::new(),
        }
    }

    /// Writes `pending`, grouped by program and generation, in chunks of at most
    /// [`CHUNK_BYTES`]: one etcd write per chunk, none when `pending` is empty. Returns
    /// how many chunks were written.
    ///
    /// # Errors
    ///
    /// The first write (or lease grant) that failed; chunks written before it stay, and
    /// writing the same receipts again only stores them twice.
    pub async fn write(
        &mut self,
        store: &Store,
        pending: &[PendingReceipt],
    ) -> Result<usize, StoreError> {
        let (chunks, _) = self.write_chunks(store, pending, false).await?;
        Ok(chunks)
    }

    /// Writes the full chunks among `pending` (grouped by program and generation, every
    /// chunk of a group but its last), so that a round of acknowledgements is mostly
    /// written while it goes on and the summary that ends it waits for one chunk at most.
    /// Returns the receipts written, for [`AckBook::receipts_written`].
    ///
    /// # Errors
    ///
    /// As [`ReceiptWriter::write`].
    pub async fn write_full_chunks(
        &mut self,
        store: &Store,
        pending: &[PendingReceipt],
    ) -> Result<Vec<PendingReceipt>, StoreError> {
        let (_, written) = self.write_chunks(store, pending, true).await?;
        Ok(written)
    }

    /// Writes `pending` in chunks, or only each group's full chunks when `full_only`:
    /// how many chunks were written, and (when `full_only`) which receipts.
    async fn write_chunks(
        &mut self,
        store: &Store,
        pending: &[PendingReceipt],
        full_only: bool,
    ) -> Result<(usize, Vec<PendingReceipt>), StoreError> {
        let mut groups: BTreeMap<(&ProgramName, Generation), Vec<&PendingReceipt>> =
            BTreeMap::new();
        for p in pending {
            groups
                .entry((&p.program, p.generation))
                .or_default()
                .push(p);
        }
        if full_only {
            groups.retain(|_, group| {
                group
                    .iter()
                    .map(|p| receipts::packed_len(&p.receipt))
                    .sum::<usize>()
                    > CHUNK_BYTES
            });
        }
        if groups.is_empty() {
            return Ok((0, Vec::new()));
        }
        let lease = self.lease(store).await?;
        let mut written = 0;
        let mut done = Vec::new();
        for ((program, generation), group) in groups {
            let signed: Vec<v1::SignedReceipt> =
                group.iter().map(|p| (*p.receipt).clone()).collect();
            let mut batches = receipts::pack(signed, CHUNK_BYTES);
            if full_only {
                // The last chunk of a group is not full: it waits for more receipts.
                batches.pop();
            }
            let mut at = 0;
            for batch in batches {
                let count = batch.len();
                let from = match self.next.get(program) {
                    Some(&(g, seq)) if g == generation => seq,
                    _ => 0,
                };
                let chunk = store::ReceiptChunk { receipts: batch };
                let seq = store
                    .put_receipt_chunk(lease, program, generation, &self.replica, from, &chunk)
                    .await
                    .inspect_err(|error| {
                        // A lease etcd no longer knows (revoked, or etcd restored from a
                        // backup): take a new one next time.
                        if !error.is_unavailable() {
                            self.lease = None;
                        }
                    })?;
                self.next
                    .insert(program.clone(), (generation, seq.saturating_add(1)));
                written += 1;
                if full_only {
                    done.extend(group[at..at + count].iter().map(|p| (*p).clone()));
                }
                at += count;
            }
        }
        tracing::debug!(
            receipts = pending.len(),
            chunks = written,
            full_only,
            "wrote receipts"
        );
        Ok((written, done))
    }

    /// The lease of today, granted now if this replica holds none for today yet.
    async fn lease(&mut self, store: &Store) -> Result<i64, StoreError> {
        let today = receipts::day(SystemTime::now());
        if let Some((day, lease)) = self.lease
            && day == today
        {
            return Ok(lease);
        }
        let lease = store.grant_lease(self.retention + DAY).await?;
        tracing::info!(lease, day = today, "granted the receipt lease of the day");
        self.lease = Some((today, lease));
        Ok(lease)
    }
}

/// Keeps the registration and summaries current until `cancel` fires, then revokes the
/// lease so they disappear at once.
pub async fn run_publisher(
    store: Store,
    book: Arc<AckBook>,
    cache: Arc<StateCache>,
    config: PublishConfig,
    cancel: CancellationToken,
) {
    let registration = store::Replica {
        address: config.advertise.clone(),
        started_at: Some(killswitch_proto::timestamp(SystemTime::now())),
    };
    let mut failures: u32 = 0;
    // Outlives the replica's lease: a new registration keeps the day's receipt lease.
    let mut writer = ReceiptWriter::new(&config.replica_id, config.receipt_retention);
    loop {
        let lease = tokio::select! {
            () = cancel.cancelled() => return,
            lease = register(&store, &config, &registration) => lease,
        };
        let error = match lease {
            Ok(lease) => {
                failures = 0;
                let published =
                    publish_with(&store, &book, &cache, &config, &mut writer, lease, &cancel).await;
                match published {
                    Ok(()) => {
                        if let Err(error) = store.revoke_lease(lease).await {
                            tracing::warn!(%error, "cannot revoke the replica lease; its keys expire with it");
                        }
                        return;
                    }
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        failures = failures.saturating_add(1);
        let delay = Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)))
            .min(config.lease_ttl / 2);
        tracing::warn!(%error, ?delay, "cannot publish this replica to etcd; retrying");
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn register(
    store: &Store,
    config: &PublishConfig,
    registration: &store::Replica,
) -> Result<i64, StoreError> {
    let lease = store.grant_lease(config.lease_ttl).await?;
    store
        .register_replica(lease, &config.replica_id, registration)
        .await?;
    tracing::info!(replica = config.replica_id, lease, "registered in etcd");
    Ok(lease)
}

/// Keeps `lease` alive and writes summaries until cancelled (`Ok`) or the lease is lost.
///
/// The keep-alive runs beside the publishing, never behind it: summary writes that fail
/// and retry (etcd away, a transaction refused) cannot starve the lease, whose loss would
/// take this replica's registration and every summary with it.
async fn publish_with(
    store: &Store,
    book: &AckBook,
    cache: &StateCache,
    config: &PublishConfig,
    writer: &mut ReceiptWriter,
    lease: i64,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let (mut keeper, mut responses) = store.client().lease_keep_alive(lease).await?;
    let keep_alive = async {
        let mut tick = tokio::time::interval(config.lease_ttl / 3);
        loop {
            tokio::select! {
                _ = tick.tick() => keeper.keep_alive().await?,
                response = responses.message() => match response? {
                    Some(response) if response.ttl() > 0 => {}
                    _ => {
                        let lost = format!("lease {lease} expired before it was renewed");
                        return Err(etcd_client::Error::LeaseKeepAliveError(lost).into());
                    }
                },
            }
        }
    };
    tokio::select! {
        () = cancel.cancelled() => Ok(()),
        result = keep_alive => result,
        () = publish_summaries(store, book, cache, config, writer, lease, cancel) => Ok(()),
    }
}

/// Writes changed summaries, each after the receipts of the Acks it counts, until
/// `cancel` fires. A failed write is retried (after [`PUBLISH_RETRY`]) with the next
/// change; the lease is kept alive beside it.
async fn publish_summaries(
    store: &Store,
    book: &AckBook,
    cache: &StateCache,
    config: &PublishConfig,
    writer: &mut ReceiptWriter,
    lease: i64,
    cancel: &CancellationToken,
) {
    let mut revisions = cache.revisions();
    // The generation each program's summary was last published at: a program whose
    // generation moved is republished, so status sees that this replica caught up.
    let mut published: HashMap<ProgramName, Generation> = HashMap::new();
    // A new lease starts from nothing in etcd: publish everything.
    book.mark_all_dirty();
    for (program, _) in cache.generations() {
        book.mark_dirty(&program);
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = revisions.changed() => {
                if changed.is_err() {
                    return;
                }
                for (program, generation) in cache.generations() {
                    if published.get(&program) != Some(&generation) {
                        book.mark_dirty(&program);
                    }
                }
            }
            () = book.changed() => {
                if !settle(store, book, cache, config, writer, cancel).await {
                    return;
                }
                let (summaries, pending) = changed_summaries(book, cache, &published);
                let written = match writer.write(store, &pending).await {
                    Ok(_) => {
                        book.receipts_written(&pending);
                        store.publish_summaries(lease, &config.replica_id, &summaries).await
                    }
                    Err(error) => {
                        tracing::warn!(%error, receipts = pending.len(), "cannot write collectors' receipts; the summaries counting them wait");
                        Err(error)
                    }
                };
                match written {
                    Ok(()) => {
                        for (program, summary) in summaries {
                            match summary {
                                Some(summary) => published.insert(program, summary.generation),
                                None => published.remove(&program),
                            };
                        }
                    }
                    Err(error) => {
                        // Try again after a pause; the lease is kept alive meanwhile.
                        tracing::warn!(%error, programs = summaries.len(), "cannot write acknowledgement summaries; retrying");
                        for (program, _) in &summaries {
                            book.mark_dirty(program);
                        }
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(PUBLISH_RETRY) => {}
                        }
                    }
                }
            }
        }
    }
}

/// Waits for a change to settle (every collector here acknowledged), at most
/// `progress_interval`, checking every `debounce`. A round of acknowledgements takes
/// longer the more collectors a replica has (tens of µs of CPU each), so the first
/// progress write waits longer too: a change that settles in time costs one write per
/// replica. Meanwhile, receipts that fill a chunk are written as they do (they may always
/// precede the summary that counts them), so the summary waits for one chunk at most.
/// `false` when cancelled.
async fn settle(
    store: &Store,
    book: &AckBook,
    cache: &StateCache,
    config: &PublishConfig,
    writer: &mut ReceiptWriter,
    cancel: &CancellationToken,
) -> bool {
    let first = tokio::time::Instant::now();
    let progress = config.progress_interval
        + PROGRESS_PER_COLLECTOR * u32::try_from(book.largest_program()).unwrap_or(u32::MAX);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(config.debounce) => {}
        }
        let settled = book.dirty_settled(|program| {
            cache
                .get(program)
                .map(|s| (s.generation, Some(s.targeting.clone())))
        });
        if settled || first.elapsed() >= progress {
            return true;
        }
        if book.unflushed_bytes() > CHUNK_BYTES {
            match writer.write_full_chunks(store, &book.unflushed()).await {
                Ok(written) => book.receipts_written(&written),
                // Written with the summaries, or retried with them.
                Err(error) => tracing::debug!(%error, "cannot write full receipt chunks yet"),
            }
        }
    }
}

/// Summaries and their receipts: what [`changed_summaries`] returns.
type Changed = (
    Vec<(ProgramName, Option<store::AckSummary>)>,
    Vec<PendingReceipt>,
);

/// The summaries of the programs changed since the last write, with the receipts not yet
/// written of the Acks they count (see [`AckBook::snapshot`]). A program that does not
/// exist gets none (collectors may follow made-up names): only a key published before is
/// deleted.
fn changed_summaries(
    book: &AckBook,
    cache: &StateCache,
    published: &HashMap<ProgramName, Generation>,
) -> Changed {
    let mut summaries = Vec::new();
    let mut pending = Vec::new();
    for program in book.take_dirty() {
        let Some(state) = cache.get(&program) else {
            if published.contains_key(&program) {
                summaries.push((program, None));
            }
            continue;
        };
        let current = (
            state.generation,
            state.changed_at.unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let (summary, receipts) = book.snapshot(&program, Some(current), Some(&state.targeting));
        pending.extend(receipts);
        summaries.push((program, summary));
    }
    (summaries, pending)
}
