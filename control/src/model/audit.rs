//! The audit log's rules: when its SHA-256 chain is intact, and which entries a listing
//! returns.
//!
//! Both are pure and fed one stored key-value at a time, in key order, by
//! [`Store::verify_audit`](crate::store::Store::verify_audit) and
//! [`Store::list_audit`](crate::store::Store::list_audit), which read the log page by page
//! at one etcd revision: memory stays bounded however long the log grows, and a change
//! committed during the scan can never make an intact log look broken.

use std::collections::VecDeque;

use killswitch_proto::prost::Message;
use killswitch_proto::prost_types::Timestamp;
use killswitch_proto::v1::{self, store};

use crate::model::{Generation, InvalidInput, ProgramName};

/// Most entries one listing returns, whatever limit is asked for.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// Most encoded bytes of entries one listing returns: clients refuse messages over 4 MiB.
pub const MAX_LIST_BYTES: usize = 3 * 1024 * 1024;

/// What is wrong with the audit log, at the first place it is wrong. `Display` says it in
/// words for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Entries `first..=last` are absent: deleted, or never written.
    #[error("{}", missing(*first, *last))]
    Missing {
        /// The first missing entry.
        first: u64,
        /// The last missing entry.
        last: u64,
    },
    /// A key under `audit/` that is neither the head nor `{seq:020}` with seq >= 1.
    #[error("the key audit/{key} is not an audit entry's key (found where entry {at} belongs)")]
    UnexpectedKey {
        /// The key's last segment.
        key: String,
        /// The entry expected next.
        at: u64,
    },
    /// The value is not an `AuditEntry`.
    #[error("entry {seq} cannot be decoded: {error}")]
    Undecodable {
        /// The entry's sequence number, from its key.
        seq: u64,
        /// The decoding error.
        error: String,
    },
    /// The entry names another sequence number than its key.
    #[error("the entry stored as entry {key} says it is entry {says}")]
    WrongSeq {
        /// The sequence number in the key.
        key: u64,
        /// The sequence number in the entry.
        says: u64,
    },
    /// The entry's hash is not the hash of its contents.
    #[error("entry {0} was changed after it was written: its hash does not match its contents")]
    Changed(u64),
    /// Entry 1's previous hash is not 32 zero bytes.
    #[error("entry 1 does not start the chain: its previous hash is not 32 zero bytes")]
    BadStart,
    /// The entry's previous hash is not the hash of the entry before it.
    #[error(
        "entry {0} does not chain to entry {prev}: its previous hash is not entry {prev}'s hash",
        prev = .0.saturating_sub(1)
    )]
    Unchained(u64),
    /// There are entries but no head.
    #[error("the head is missing but the last entry is {last}")]
    HeadMissing {
        /// The last entry.
        last: u64,
    },
    /// The head is not an `AuditHead`.
    #[error("the head cannot be decoded: {error}")]
    HeadUndecodable {
        /// The last entry.
        last: u64,
        /// The decoding error.
        error: String,
    },
    /// The head names an entry that is not the last one.
    #[error("{}", head_elsewhere(*head, *last))]
    HeadElsewhere {
        /// The entry the head points at.
        head: u64,
        /// The last entry, 0 when there is none.
        last: u64,
    },
    /// The head names the last entry but carries another hash.
    #[error("the head points at entry {0} but its hash is not that entry's hash")]
    HeadHash(u64),
}

fn missing(first: u64, last: u64) -> String {
    if first == last {
        format!("entry {first} is missing")
    } else {
        format!("entries {first} to {last} are missing")
    }
}

fn head_elsewhere(head: u64, last: u64) -> String {
    if last == 0 {
        format!("the head points at entry {head} but there are no entries")
    } else {
        format!("the head points at entry {head} but the last entry is {last}")
    }
}

impl Problem {
    /// The first sequence number that cannot be trusted: where the problem is, or for a
    /// head that disagrees with the entries, the first entry it leaves in doubt.
    #[must_use]
    pub fn seq(&self) -> u64 {
        match self {
            Self::Missing { first: seq, .. }
            | Self::UnexpectedKey { at: seq, .. }
            | Self::Undecodable { seq, .. }
            | Self::WrongSeq { key: seq, .. }
            | Self::Changed(seq)
            | Self::Unchained(seq)
            | Self::HeadHash(seq) => *seq,
            Self::BadStart => 1,
            // Without a readable head, entries after the last one may have been deleted.
            Self::HeadMissing { last } | Self::HeadUndecodable { last, .. } => {
                last.saturating_add(1)
            }
            // Entries after the head were not written by a change; a head past the last
            // entry lost the ones after it.
            Self::HeadElsewhere { head, last } => head.min(last).saturating_add(1),
        }
    }
}

/// The outcome of verifying the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Entries verified intact before the first problem (all of them when intact).
    pub entries_checked: u64,
    /// The first problem, `None` when the chain is intact.
    pub problem: Option<Problem>,
}

impl Verdict {
    /// The `VerifyAudit` response.
    #[must_use]
    pub fn to_wire(&self) -> v1::VerifyAuditResponse {
        match &self.problem {
            None => v1::VerifyAuditResponse {
                ok: true,
                entries_checked: self.entries_checked,
                first_bad_seq: 0,
                problem: String::new(),
            },
            Some(problem) => v1::VerifyAuditResponse {
                ok: false,
                entries_checked: self.entries_checked,
                first_bad_seq: problem.seq(),
                problem: problem.to_string(),
            },
        }
    }
}

/// Verifies the chain one stored entry at a time: each entry's key names its seq, seqs
/// run 1, 2, 3, ... with no gap, each entry's hash is the hash of its contents and its
/// `prev_hash` the hash of the entry before it (32 zero bytes for entry 1), and the head
/// names the last entry and its hash.
#[derive(Debug, Clone)]
pub struct Chain {
    next_seq: u64,
    prev_hash: Vec<u8>,
    problem: Option<Problem>,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// An empty chain, expecting entry 1.
    #[must_use]
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            prev_hash: vec![0; 32],
            problem: None,
        }
    }

    /// Checks the next key under `audit/` in key order (`key` is its last segment) and
    /// its stored value. After a problem the rest is ignored: the first one is reported.
    pub fn push(&mut self, key: &str, value: &[u8]) {
        if self.problem.is_none() {
            self.problem = self.check(key, value).err();
        }
    }

    fn check(&mut self, key: &str, value: &[u8]) -> Result<(), Problem> {
        let unexpected = || Problem::UnexpectedKey {
            key: key.to_owned(),
            at: self.next_seq,
        };
        // Keys sort like their seqs, so a seq below the expected one cannot be an entry.
        let seq = entry_seq(key)
            .filter(|seq| *seq >= self.next_seq)
            .ok_or_else(unexpected)?;
        if seq > self.next_seq {
            return Err(Problem::Missing {
                first: self.next_seq,
                last: seq - 1,
            });
        }
        let entry = store::AuditEntry::decode(value).map_err(|error| Problem::Undecodable {
            seq,
            error: error.to_string(),
        })?;
        if entry.seq != seq {
            return Err(Problem::WrongSeq {
                key: seq,
                says: entry.seq,
            });
        }
        if audit_hash(&entry) != entry.hash {
            return Err(Problem::Changed(seq));
        }
        if entry.prev_hash != self.prev_hash {
            return Err(if seq == 1 {
                Problem::BadStart
            } else {
                Problem::Unchained(seq)
            });
        }
        self.next_seq = seq.saturating_add(1);
        self.prev_hash = entry.hash;
        Ok(())
    }

    /// Checks the head (its stored value, `None` when absent) against the last entry and
    /// returns the verdict.
    #[must_use]
    pub fn finish(mut self, head: Option<&[u8]>) -> Verdict {
        // Entries 1..next_seq passed every check; the head may still cast doubt on the
        // last of them.
        let last = self.next_seq - 1;
        if self.problem.is_none() {
            self.problem = check_head(last, &self.prev_hash, head).err();
        }
        Verdict {
            entries_checked: self
                .problem
                .as_ref()
                .map_or(last, |p| p.seq().saturating_sub(1).min(last)),
            problem: self.problem,
        }
    }
}

fn check_head(last: u64, last_hash: &[u8], head: Option<&[u8]>) -> Result<(), Problem> {
    let Some(head) = head else {
        return match last {
            0 => Ok(()),
            last => Err(Problem::HeadMissing { last }),
        };
    };
    let head = store::AuditHead::decode(head).map_err(|error| Problem::HeadUndecodable {
        last,
        error: error.to_string(),
    })?;
    if head.seq != last {
        return Err(Problem::HeadElsewhere {
            head: head.seq,
            last,
        });
    }
    if head.hash != last_hash {
        return Err(Problem::HeadHash(last));
    }
    Ok(())
}

/// Verifies a whole log: every key under `audit/` but the head, in key order, then the
/// head.
#[must_use]
pub fn verify<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    head: Option<&[u8]>,
) -> Verdict {
    let mut chain = Chain::new();
    for (key, value) in entries {
        chain.push(key, value);
    }
    chain.finish(head)
}

/// The seq a key's last segment names: exactly 20 digits (as written), at least 1.
fn entry_seq(key: &str) -> Option<u64> {
    if key.len() != 20 || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse().ok().filter(|seq| *seq >= 1)
}

/// Which entries `ListAudit` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only this program's entries.
    pub program: Option<ProgramName>,
    /// Only entries written at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many, the newest; 1 to [`MAX_LIST_ENTRIES`].
    pub limit: usize,
}

impl Query {
    /// Validates a request: a bad program name is invalid input; a limit of 0 or above
    /// [`MAX_LIST_ENTRIES`] is [`MAX_LIST_ENTRIES`].
    pub fn from_wire(request: &v1::ListAuditRequest) -> Result<Self, InvalidInput> {
        let program = match request.program.as_str() {
            "" => None,
            name => Some(ProgramName::parse(name)?),
        };
        let limit = usize::try_from(request.limit).unwrap_or(MAX_LIST_ENTRIES);
        Ok(Self {
            program,
            since: request.since.map(normalized),
            limit: if limit == 0 {
                MAX_LIST_ENTRIES
            } else {
                limit.min(MAX_LIST_ENTRIES)
            },
        })
    }

    fn matches(&self, entry: &store::AuditEntry) -> bool {
        let program = self
            .program
            .as_ref()
            .is_none_or(|p| p.as_str() == entry.program);
        // An entry without a time cannot be shown to be recent enough.
        let recent = self.since.is_none_or(|since| {
            entry
                .at
                .is_some_and(|at| later_or_equal(normalized(at), since))
        });
        program && recent
    }
}

fn normalized(mut ts: Timestamp) -> Timestamp {
    ts.normalize();
    ts
}

fn later_or_equal(a: Timestamp, b: Timestamp) -> bool {
    (a.seconds, a.nanos) >= (b.seconds, b.nanos)
}

/// An entry as a listing returns it: the stored entry and the generation it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The entry as stored (and hashed).
    pub entry: store::AuditEntry,
    /// The etcd revision of the transaction that wrote it, read from its key's
    /// mod_revision (an entry is never rewritten): the generation of the state it
    /// changed, or of the stop-all flag (for a request waiting for approval, the revision
    /// it was filed at). Known only once written, so it is not stored in the entry and
    /// not covered by its hash.
    pub generation: Generation,
}

/// What a listing returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditList {
    /// Matching entries, oldest first.
    pub entries: Vec<Listed>,
    /// Older matching entries left out by the limit or the size bound.
    pub omitted: u64,
}

/// Keeps the newest entries matching a [`Query`] while the log is read in key order,
/// within [`MAX_LIST_BYTES`].
#[derive(Debug, Clone)]
pub struct Selection {
    query: Query,
    entries: VecDeque<Listed>,
    bytes: usize,
    omitted: u64,
}

impl Selection {
    /// An empty selection for `query`.
    #[must_use]
    pub fn new(query: Query) -> Self {
        Self {
            query,
            entries: VecDeque::new(),
            bytes: 0,
            omitted: 0,
        }
    }

    /// Considers the next key under `audit/` (its last segment), its value and its
    /// mod_revision. Keys that are not entries and values that cannot be decoded are
    /// skipped (and logged): `VerifyAudit` reports them, and the rest of the log is still
    /// worth reading.
    pub fn push(&mut self, key: &str, value: &[u8], generation: Generation) {
        if entry_seq(key).is_none() {
            tracing::warn!(key, "skipping a key under audit/ that is not an entry");
            return;
        }
        let entry = match store::AuditEntry::decode(value) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(key, %error, "skipping an audit entry that cannot be decoded");
                return;
            }
        };
        if !self.query.matches(&entry) {
            return;
        }
        self.bytes += entry.encoded_len();
        self.entries.push_back(Listed { entry, generation });
        while self.entries.len() > self.query.limit || self.bytes > MAX_LIST_BYTES {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= oldest.entry.encoded_len();
            self.omitted += 1;
        }
    }

    /// The entries kept, oldest first.
    #[must_use]
    pub fn finish(self) -> AuditList {
        AuditList {
            entries: self.entries.into(),
            omitted: self.omitted,
        }
    }
}

/// A listed entry as `ListAudit` returns it.
#[must_use]
pub fn to_wire(listed: Listed) -> v1::AuditEntry {
    let Listed { entry, generation } = listed;
    let stored = entry.encode_to_vec();
    v1::AuditEntry {
        generation,
        stored,
        seq: entry.seq,
        at: entry.at,
        actor: entry.actor,
        action: entry.action,
        program: entry.program,
        from: entry.from,
        to: entry.to,
        reason: entry.reason,
        incident_id: entry.incident_id,
        detail: entry.detail,
        hash: entry.hash,
        prev_hash: entry.prev_hash,
    }
}

/// SHA-256 of the entry encoded with an empty `hash`; covers `prev_hash`, so entries chain.
/// The generation a listing adds ([`Listed`]) is not part of the stored entry, so not of
/// its hash.
#[must_use]
pub fn audit_hash(entry: &store::AuditEntry) -> Vec<u8> {
    use killswitch_proto::prost::Message as _;
    use sha2::{Digest as _, Sha256};
    let unhashed = store::AuditEntry {
        hash: Vec::new(),
        ..entry.clone()
    };
    Sha256::digest(unhashed.encode_to_vec()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid log of `n` entries (reason `change {seq}`) and its head.
    fn log(n: u64) -> (Vec<store::AuditEntry>, store::AuditHead) {
        let mut entries = Vec::new();
        let mut prev_hash = vec![0; 32];
        for seq in 1..=n {
            let mut entry = store::AuditEntry {
                seq,
                at: Some(Timestamp {
                    seconds: 1_795_942_800 + i64::try_from(seq).unwrap_or(0),
                    nanos: 0,
                }),
                actor: "alice".to_owned(),
                action: "pause".to_owned(),
                program: if seq % 2 == 0 { "demo" } else { "other" }.to_owned(),
                reason: format!("change {seq}"),
                prev_hash: prev_hash.clone(),
                ..store::AuditEntry::default()
            };
            entry.hash = audit_hash(&entry);
            prev_hash = entry.hash.clone();
            entries.push(entry);
        }
        let head = store::AuditHead {
            seq: n,
            hash: entries.last().map(|e| e.hash.clone()).unwrap_or_default(),
        };
        (entries, head)
    }

    /// Stored key-values: `{seq:020}` and the encoded entry.
    fn stored(entries: &[store::AuditEntry]) -> Vec<(String, Vec<u8>)> {
        entries
            .iter()
            .map(|e| (format!("{:020}", e.seq), e.encode_to_vec()))
            .collect()
    }

    fn rehash(entry: &mut store::AuditEntry) {
        entry.hash = audit_hash(entry);
    }

    /// Verifies `kvs` and `head`; expects `checked` entries verified and, when broken,
    /// `(first bad seq, problem in words)`.
    #[track_caller]
    fn check(
        kvs: &[(String, Vec<u8>)],
        head: Option<Vec<u8>>,
        checked: u64,
        broken: Option<(u64, &str)>,
    ) {
        let verdict = verify(
            kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            head.as_deref(),
        );
        let got = verdict.problem.as_ref().map(|p| (p.seq(), p.to_string()));
        let expected = broken.map(|(seq, words)| (seq, words.to_owned()));
        assert_eq!((verdict.entries_checked, got), (checked, expected));
        let wire = verdict.to_wire();
        assert_eq!(wire.ok, broken.is_none());
        assert_eq!(wire.first_bad_seq, broken.map_or(0, |(seq, _)| seq));
    }

    #[test]
    fn verification() {
        let (entries, head) = log(8);
        let head = Some(head.encode_to_vec());
        let intact = stored(&entries);
        let head_at = |seq: u64, hash: &[u8]| {
            Some(
                store::AuditHead {
                    seq,
                    hash: hash.to_vec(),
                }
                .encode_to_vec(),
            )
        };

        check(&[], None, 0, None);
        check(&intact, head.clone(), 8, None);

        // Changed in place: a field edited, hash left alone.
        let mut kvs = intact.clone();
        let mut edited = entries[4].clone();
        edited.reason = "nothing to see".to_owned();
        kvs[4].1 = edited.encode_to_vec();
        check(
            &kvs,
            head.clone(),
            4,
            Some((
                5,
                "entry 5 was changed after it was written: its hash does not match its contents",
            )),
        );

        // Changed and re-hashed: the next entry no longer chains to it.
        rehash(&mut edited);
        kvs[4].1 = edited.encode_to_vec();
        check(
            &kvs,
            head.clone(),
            5,
            Some((
                6,
                "entry 6 does not chain to entry 5: its previous hash is not entry 5's hash",
            )),
        );

        // Changed and re-hashed at the end: the head no longer matches.
        let mut kvs = intact.clone();
        let mut last = entries[7].clone();
        last.actor = "mallory".to_owned();
        rehash(&mut last);
        kvs[7].1 = last.encode_to_vec();
        check(
            &kvs,
            head.clone(),
            7,
            Some((
                8,
                "the head points at entry 8 but its hash is not that entry's hash",
            )),
        );

        // Deleted: one, several, the first.
        let mut kvs = intact.clone();
        kvs.remove(3);
        check(&kvs, head.clone(), 3, Some((4, "entry 4 is missing")));
        let mut kvs = intact.clone();
        kvs.drain(2..5);
        check(
            &kvs,
            head.clone(),
            2,
            Some((3, "entries 3 to 5 are missing")),
        );
        check(
            &intact[1..],
            head.clone(),
            0,
            Some((1, "entry 1 is missing")),
        );

        // Deleted at the end: only the head knows.
        check(
            &intact[..7],
            head.clone(),
            7,
            Some((8, "the head points at entry 8 but the last entry is 7")),
        );
        check(
            &[],
            head.clone(),
            0,
            Some((1, "the head points at entry 8 but there are no entries")),
        );
        check(
            &intact,
            None,
            8,
            Some((9, "the head is missing but the last entry is 8")),
        );

        // Appended behind the head's back.
        let (longer, _) = log(9);
        check(
            &stored(&longer),
            head.clone(),
            8,
            Some((9, "the head points at entry 8 but the last entry is 9")),
        );
        check(
            &intact,
            head_at(8, &[1; 32]),
            7,
            Some((
                8,
                "the head points at entry 8 but its hash is not that entry's hash",
            )),
        );

        // An entry moved to another key, or claiming another seq.
        let mut kvs = intact.clone();
        kvs[2].1 = entries[3].encode_to_vec();
        check(
            &kvs,
            head.clone(),
            2,
            Some((3, "the entry stored as entry 3 says it is entry 4")),
        );

        // A forged first entry.
        let mut kvs = intact.clone();
        let mut first = entries[0].clone();
        first.prev_hash = vec![7; 32];
        rehash(&mut first);
        kvs[0].1 = first.encode_to_vec();
        check(
            &kvs,
            head.clone(),
            0,
            Some((
                1,
                "entry 1 does not start the chain: its previous hash is not 32 zero bytes",
            )),
        );

        // Garbage where an entry or the head should be, and keys that are not entries.
        let mut kvs = intact.clone();
        kvs[5].1 = vec![0xff, 0xff, 0xff];
        let verdict = verify(
            kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            head.as_deref(),
        );
        assert!(
            matches!(verdict.problem, Some(Problem::Undecodable { seq: 6, .. })),
            "{verdict:?}"
        );
        assert_eq!(verdict.entries_checked, 5);
        let verdict = verify(
            intact.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            Some(&[0xff, 0xff][..]),
        );
        assert!(
            matches!(
                verdict.problem,
                Some(Problem::HeadUndecodable { last: 8, .. })
            ),
            "{verdict:?}"
        );
        assert_eq!(verdict.to_wire().first_bad_seq, 9);
        let mut kvs = intact.clone();
        kvs.push(("9".to_owned(), entries[0].encode_to_vec()));
        check(
            &kvs,
            head.clone(),
            8,
            Some((
                9,
                "the key audit/9 is not an audit entry's key (found where entry 9 belongs)",
            )),
        );
        let mut kvs = intact.clone();
        kvs.insert(0, ("00000000000000000000".to_owned(), Vec::new()));
        check(
            &kvs,
            head.clone(),
            0,
            Some((
                1,
                "the key audit/00000000000000000000 is not an audit entry's key (found where entry 1 belongs)",
            )),
        );
        // Only the first problem is reported.
        let mut kvs = intact.clone();
        kvs.remove(6);
        kvs.remove(1);
        check(&kvs, None, 1, Some((2, "entry 2 is missing")));
    }

    #[test]
    fn entry_keys() {
        let cases = [
            ("00000000000000000001", Some(1)),
            ("00000000000000000042", Some(42)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("00000000000000000000", None),
            ("0000000000000000001", None),
            ("000000000000000000001", None),
            ("+0000000000000000001", None),
            ("head", None),
            ("", None),
        ];
        for (key, seq) in cases {
            assert_eq!(entry_seq(key), seq, "{key:?}");
        }
    }

    fn query(program: &str, since: Option<i64>, limit: u32) -> Query {
        Query::from_wire(&v1::ListAuditRequest {
            program: program.to_owned(),
            since: since.map(|seconds| Timestamp { seconds, nanos: 0 }),
            limit,
        })
        .unwrap_or_else(|e| panic!("valid query: {e}"))
    }

    #[test]
    fn queries() {
        assert_eq!(query("", None, 0).limit, MAX_LIST_ENTRIES);
        assert_eq!(query("", None, 20_000).limit, MAX_LIST_ENTRIES);
        assert_eq!(query("", None, 5).limit, 5);
        assert_eq!(
            query("demo", None, 0).program.map(|p| p.to_string()),
            Some("demo".to_owned())
        );
        let bad = Query::from_wire(&v1::ListAuditRequest {
            program: "Demo!".to_owned(),
            ..v1::ListAuditRequest::default()
        });
        assert!(matches!(bad, Err(InvalidInput::ProgramName(_))), "{bad:?}");
    }

    #[test]
    fn selection() {
        let (entries, _) = log(8);
        #[track_caller]
        fn check(entries: &[store::AuditEntry], query: Query, seqs: &[u64], omitted: u64) {
            let mut selection = Selection::new(query);
            for (key, value) in stored(entries) {
                selection.push(&key, &value, 0);
            }
            selection.push("head", &[], 0);
            let list = selection.finish();
            let got: Vec<u64> = list.entries.iter().map(|l| l.entry.seq).collect();
            assert_eq!((got.as_slice(), list.omitted), (seqs, omitted));
        }
        let base = 1_795_942_800;
        check(&entries, query("", None, 0), &[1, 2, 3, 4, 5, 6, 7, 8], 0);
        check(&entries, query("demo", None, 0), &[2, 4, 6, 8], 0);
        check(&entries, query("ghost", None, 0), &[], 0);
        check(&entries, query("", Some(base + 6), 0), &[6, 7, 8], 0);
        check(&entries, query("", Some(base + 9), 0), &[], 0);
        check(&entries, query("", None, 3), &[6, 7, 8], 5);
        check(&entries, query("other", Some(base + 2), 2), &[5, 7], 1);

        // An entry without a time never matches `since`; an unreadable one is skipped.
        let mut odd = entries.clone();
        odd[7].at = None;
        check(&odd, query("", Some(base), 0), &[1, 2, 3, 4, 5, 6, 7], 0);
        let mut selection = Selection::new(query("", None, 0));
        selection.push("00000000000000000001", &[0xff, 0xff], 0);
        assert_eq!(selection.finish(), AuditList::default());
    }

    #[test]
    fn listings_stay_under_the_size_bound() {
        let entry = |seq: u64| store::AuditEntry {
            seq,
            reason: "x".repeat(1024),
            ..store::AuditEntry::default()
        };
        let mut selection = Selection::new(query("", None, 0));
        let n = 4_000u64;
        for seq in 1..=n {
            selection.push(&format!("{seq:020}"), &entry(seq).encode_to_vec(), seq);
        }
        let list = selection.finish();
        let bytes: usize = list.entries.iter().map(|l| l.entry.encoded_len()).sum();
        assert!(bytes <= MAX_LIST_BYTES, "{bytes}");
        assert_eq!(
            list.entries.last().map(|l| (l.entry.seq, l.generation)),
            Some((n, n)),
            "newest kept, with its generation"
        );
        assert_eq!(list.omitted + list.entries.len() as u64, n);
        assert!(list.omitted > 0);
    }
}
