//! The acknowledgement book: which collectors are connected to this replica, for which
//! programs, what each last acknowledged, and who left recently.
//!
//! Keyed by collector id, so a collector that reconnects before its old session is noticed
//! dead is counted once; a session only removes the entry it owns. The book renders a
//! bounded [`AckSummary`] per program, which the publisher writes to etcd, so status can
//! aggregate every replica without any per-collector etcd traffic.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use killswitch_proto::v1::{self, store};
use tokio::sync::Notify;

use crate::metrics::{AckResult, Metrics};
use crate::model::latency::Histogram;
use crate::model::receipts;
use crate::model::status::SUMMARY_LIST_LIMIT;
use crate::model::targeting::Targeting;
use crate::model::{CollectorId, Generation, ProgramName, RunState};

/// Identifies one session, so an old session cannot remove its successor's entry.
pub type SessionId = u64;

/// How long a disconnected collector is remembered.
pub const DISCONNECTED_WINDOW: Duration = Duration::from_secs(300);
/// Most disconnected collectors remembered per program.
const DISCONNECTED_LIMIT: usize = 1000;
/// Most receipts per program kept waiting for etcd after their Ack stopped counting (its
/// collector left, or acknowledged a newer generation) before they were written. Beyond
/// it the oldest are dropped: no summary counts their Acks any more.
const SUPERSEDED_RECEIPTS_LIMIT: usize = 10_000;

/// A collector's signed receipt, shared between the book and the batch being written.
pub type SharedReceipt = Arc<v1::SignedReceipt>;

/// Labels a collector sent in Hello, shared by its entries.
pub type Labels = Arc<BTreeMap<String, String>>;

/// What a collector reported for a program: only ever an acknowledgement of a state its
/// session sent it (the session checks that before it records one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRecord {
    /// Generation applied.
    pub generation: Generation,
    /// The collector's gate after applying it.
    pub effective: RunState,
    /// The effective state the session sent it for that generation.
    pub intended: RunState,
    /// Empty when the hooks succeeded.
    pub error: String,
    /// When the hooks finished, by the collector's clock.
    pub applied_at: Option<SystemTime>,
    /// The pause hook confirmed deleting buffered data.
    pub purged: bool,
    /// The collector's receipt, as the session checked it; `None` from an SDK that sends
    /// none.
    pub receipt: Option<SharedReceipt>,
}

#[derive(Debug)]
struct Entry {
    session: SessionId,
    labels: Labels,
    connected_at: SystemTime,
    ack: Option<AckRecord>,
    /// The receipt of `ack` while it is not yet written to etcd.
    unflushed: Option<SharedReceipt>,
}

impl Entry {
    fn acked_generation(&self) -> Generation {
        self.ack.as_ref().map_or(0, |a| a.generation)
    }
}

impl AckRecord {
    /// Acknowledged without error, but the gate is not in the state sent: PAUSED for
    /// lost contact while RUNNING was intended.
    #[must_use]
    pub fn diverged(&self) -> bool {
        self.error.is_empty() && self.effective != self.intended
    }
}

#[derive(Debug, Default)]
struct ProgramBook {
    collectors: BTreeMap<CollectorId, Entry>,
    /// Newest at the back.
    disconnected: VecDeque<(CollectorId, SystemTime)>,
    /// Receipts not yet written whose Ack no longer counts (its collector left, or
    /// acknowledged a newer generation), oldest first, at most
    /// [`SUPERSEDED_RECEIPTS_LIMIT`]: written with the next batch all the same.
    superseded: VecDeque<(Generation, SharedReceipt)>,
    /// What the receipts not yet written (`unflushed` and `superseded`) add to chunks, in
    /// bytes ([`receipts::packed_len`]).
    unflushed_bytes: usize,
}

impl ProgramBook {
    fn prune(&mut self, now: SystemTime) {
        while self.disconnected.len() > DISCONNECTED_LIMIT
            || self.disconnected.front().is_some_and(|(_, at)| {
                now.duration_since(*at)
                    .is_ok_and(|age| age > DISCONNECTED_WINDOW)
            })
        {
            self.disconnected.pop_front();
        }
    }

    /// Keeps an unwritten receipt whose Ack stopped counting, for the next batch.
    fn supersede(&mut self, generation: Generation, receipt: SharedReceipt) {
        if self.superseded.len() >= SUPERSEDED_RECEIPTS_LIMIT
            && let Some((_, dropped)) = self.superseded.pop_front()
        {
            self.unflushed_bytes = self
                .unflushed_bytes
                .saturating_sub(receipts::packed_len(&dropped));
        }
        self.superseded.push_back((generation, receipt));
    }

    fn is_empty(&self) -> bool {
        self.collectors.is_empty() && self.disconnected.is_empty() && self.superseded.is_empty()
    }
}

/// A receipt to write to etcd: the program and generation its Ack acknowledged.
#[derive(Debug, Clone)]
pub struct PendingReceipt {
    /// The program.
    pub program: ProgramName,
    /// The generation acknowledged.
    pub generation: Generation,
    /// The receipt.
    pub receipt: SharedReceipt,
}

#[derive(Debug, Default)]
struct Inner {
    programs: HashMap<ProgramName, ProgramBook>,
    dirty: HashSet<ProgramName>,
}

/// Which collectors a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Every connected collector.
    All,
    /// Not acknowledged the generation.
    Pending,
    /// Acknowledged the generation with an error.
    Errored,
}

/// The collectors connected to this replica and their acknowledgements.
#[derive(Debug, Default)]
pub struct AckBook {
    // Short, await-free critical sections only.
    inner: Mutex<Inner>,
    changed: Notify,
    metrics: Arc<Metrics>,
}

impl AckBook {
    /// An empty book.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty book that counts acknowledgements and their commit-to-ack time in
    /// `metrics`.
    #[must_use]
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self, inner: &mut Inner, program: &ProgramName) {
        // Most acknowledgements find their program already dirty: no clone for them.
        if !inner.dirty.contains(program) {
            inner.dirty.insert(program.clone());
        }
        self.changed.notify_one();
    }

    /// Waits until something changed since the last [`AckBook::take_dirty`].
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Whether every changed program is settled at its state in `current`: each in-scope
    /// collector connected here acknowledged that generation (or a newer one). A
    /// settled summary is final until the next change, so publishing it then costs one
    /// etcd write per replica per change.
    pub fn dirty_settled(
        &self,
        current: impl Fn(&ProgramName) -> Option<(Generation, Option<Targeting>)>,
    ) -> bool {
        let inner = self.lock();
        inner.dirty.iter().all(|program| {
            let Some(book) = inner.programs.get(program) else {
                return true;
            };
            let Some((generation, scope)) = current(program) else {
                return true;
            };
            // The generation first: the scope is looked at only for who has not acknowledged.
            book.collectors.iter().all(|(id, e)| {
                e.acked_generation() >= generation
                    || scope
                        .as_ref()
                        .is_some_and(|t| !t.in_scope(id.as_str(), &e.labels))
            })
        })
    }

    /// How many collectors are connected here for `program`.
    #[must_use]
    pub fn connected(&self, program: &ProgramName) -> usize {
        self.lock()
            .programs
            .get(program)
            .map_or(0, |book| book.collectors.len())
    }

    /// The most collectors connected here for any one program: how big a change's round
    /// of acknowledgements is on this replica.
    #[must_use]
    pub fn largest_program(&self) -> usize {
        self.lock()
            .programs
            .values()
            .map(|book| book.collectors.len())
            .max()
            .unwrap_or(0)
    }

    /// The programs changed since the last call.
    pub fn take_dirty(&self) -> Vec<ProgramName> {
        self.lock().dirty.drain().collect()
    }

    /// Marks one program changed, e.g. because its generation moved.
    pub fn mark_dirty(&self, program: &ProgramName) {
        let mut inner = self.lock();
        self.touch(&mut inner, program);
    }

    /// Marks every program changed, e.g. after the publisher lost its lease.
    pub fn mark_all_dirty(&self) {
        let mut inner = self.lock();
        let all: Vec<ProgramName> = inner.programs.keys().cloned().collect();
        inner.dirty.extend(all);
        self.changed.notify_one();
    }

    /// Records that `collector` follows `programs` through `session`, replacing any older
    /// session of the same collector.
    pub fn connect(
        &self,
        session: SessionId,
        collector: &CollectorId,
        labels: &Labels,
        programs: &[ProgramName],
    ) {
        let mut inner = self.lock();
        let now = SystemTime::now();
        for program in programs {
            let book = inner.programs.entry(program.clone()).or_default();
            book.disconnected.retain(|(id, _)| id != collector);
            let replaced = book.collectors.insert(
                collector.clone(),
                Entry {
                    session,
                    labels: labels.clone(),
                    connected_at: now,
                    ack: None,
                    unflushed: None,
                },
            );
            if let Some(Entry {
                ack: Some(ack),
                unflushed: Some(receipt),
                ..
            }) = replaced
            {
                book.supersede(ack.generation, receipt);
            }
            self.touch(&mut inner, program);
        }
    }

    /// Forgets `session`, unless a newer session of the collector took its place, and
    /// remembers the collector as recently disconnected.
    pub fn disconnect(
        &self,
        session: SessionId,
        collector: &CollectorId,
        programs: &[ProgramName],
    ) {
        let mut inner = self.lock();
        let now = SystemTime::now();
        for program in programs {
            let Some(book) = inner.programs.get_mut(program) else {
                continue;
            };
            if book
                .collectors
                .get(collector)
                .is_none_or(|e| e.session != session)
            {
                continue;
            }
            if let Some(Entry {
                ack: Some(ack),
                unflushed: Some(receipt),
                ..
            }) = book.collectors.remove(collector)
            {
                book.supersede(ack.generation, receipt);
            }
            book.disconnected.push_back((collector.clone(), now));
            book.prune(now);
            self.touch(&mut inner, program);
        }
    }

    /// Records an acknowledgement; ignored when the session was replaced or when it is
    /// older than the one already recorded.
    ///
    /// Every acknowledgement is counted in the metrics by its result. `current` is this
    /// replica's cached state of the program (its generation and commit time, as for
    /// [`AckBook::summary`]): the first acknowledgement of that generation from the
    /// session also records its commit-to-ack time (`applied_at` minus the commit time,
    /// the value the summary's latency histogram holds), so a collector repeating its
    /// Ack is not counted twice.
    pub fn ack(
        &self,
        session: SessionId,
        collector: &CollectorId,
        program: &ProgramName,
        record: AckRecord,
        current: Option<(Generation, SystemTime)>,
    ) {
        self.metrics.ack(
            match (record.error.is_empty(), record.diverged(), record.purged) {
                (false, _, _) => AckResult::Error,
                (true, true, _) => AckResult::Diverged,
                (true, false, true) => AckResult::Purged,
                (true, false, false) => AckResult::Ok,
            },
        );
        let mut inner = self.lock();
        let Some(book) = inner.programs.get_mut(program) else {
            return;
        };
        let Some(entry) = book.collectors.get_mut(collector) else {
            return;
        };
        if entry.session != session
            || entry
                .ack
                .as_ref()
                .is_some_and(|old| old.generation > record.generation)
        {
            return;
        }
        let first = entry
            .ack
            .as_ref()
            .is_none_or(|old| old.generation < record.generation);
        let latency = match (current, record.applied_at) {
            (Some((generation, committed)), Some(applied))
                if first && generation == record.generation =>
            {
                Some(applied.duration_since(committed).unwrap_or_default())
            }
            _ => None,
        };
        // A repeated Ack with the same receipt (the SDK acknowledges again after a
        // reconnect or a resend) is written once.
        let repeat = entry.ack.as_ref().is_some_and(|old| {
            old.generation == record.generation && old.receipt == record.receipt
        });
        let fresh = record.receipt.as_ref().filter(|_| !repeat);
        let added = fresh.map_or(0, |receipt| receipts::packed_len(receipt));
        let superseded = fresh
            .and_then(|receipt| entry.unflushed.replace(receipt.clone()))
            .map(|older| (entry.acked_generation(), older));
        entry.ack = Some(record);
        book.unflushed_bytes += added;
        if let Some((generation, older)) = superseded {
            book.supersede(generation, older);
        }
        self.touch(&mut inner, program);
        drop(inner);
        if let Some(latency) = latency {
            self.metrics.commit_to_ack(latency);
        }
    }

    /// The bounded summary of `program`, judged against `current` (this replica's cached
    /// state: its generation and commit time). A replica reports every program it knows,
    /// followed or not, so status can tell "no collectors here" from "not reported yet".
    /// `None` for a program that neither exists nor is followed: the publisher deletes
    /// its key.
    #[must_use]
    ///
    /// With `scope`, only the collectors the last change was aimed at are counted (see
    /// [`Targeting::in_scope`]): a scoped pause is done when those have acknowledged.
    pub fn summary(
        &self,
        program: &ProgramName,
        current: Option<(Generation, SystemTime)>,
        scope: Option<&Targeting>,
    ) -> Option<store::AckSummary> {
        summarize(&mut self.lock(), program, current, scope)
    }

    /// The summary of `program` (as [`AckBook::summary`]) and, taken at the same instant,
    /// every receipt recorded here for it and not yet written to etcd: those of the Acks
    /// the summary counts among them. Write the receipts (and call
    /// [`AckBook::receipts_written`]) before the summary, so that no Ack is counted in etcd
    /// whose receipt is not there.
    #[must_use]
    pub fn snapshot(
        &self,
        program: &ProgramName,
        current: Option<(Generation, SystemTime)>,
        scope: Option<&Targeting>,
    ) -> (Option<store::AckSummary>, Vec<PendingReceipt>) {
        let mut inner = self.lock();
        let mut receipts = Vec::new();
        if let Some(book) = inner.programs.get(program) {
            unwritten(program, book, &mut receipts);
        }
        (summarize(&mut inner, program, current, scope), receipts)
    }

    /// How many bytes the receipts recorded here and not yet written to etcd would take in
    /// chunks, over every program.
    #[must_use]
    pub fn unflushed_bytes(&self) -> usize {
        self.lock()
            .programs
            .values()
            .map(|book| book.unflushed_bytes)
            .sum()
    }

    /// Every receipt recorded here and not yet written to etcd, of every program. They
    /// may be written before the summary that counts their Acks (never after it); call
    /// [`AckBook::receipts_written`] with those written.
    #[must_use]
    pub fn unflushed(&self) -> Vec<PendingReceipt> {
        let inner = self.lock();
        let mut receipts = Vec::new();
        for (program, book) in &inner.programs {
            unwritten(program, book, &mut receipts);
        }
        receipts
    }

    /// Forgets, as written to etcd, the receipts of `written` (from
    /// [`AckBook::snapshot`]); a receipt recorded since in their place stays pending.
    pub fn receipts_written(&self, written: &[PendingReceipt]) {
        let mut by_program: HashMap<&ProgramName, HashSet<*const v1::SignedReceipt>> =
            HashMap::new();
        for pending in written {
            by_program
                .entry(&pending.program)
                .or_default()
                .insert(Arc::as_ptr(&pending.receipt));
        }
        let mut inner = self.lock();
        for (program, written) in by_program {
            let Some(book) = inner.programs.get_mut(program) else {
                continue;
            };
            let mut freed = 0;
            book.superseded.retain(|(_, receipt)| {
                let done = written.contains(&Arc::as_ptr(receipt));
                if done {
                    freed += receipts::packed_len(receipt);
                }
                !done
            });
            for entry in book.collectors.values_mut() {
                if let Some(receipt) = entry
                    .unflushed
                    .take_if(|receipt| written.contains(&Arc::as_ptr(receipt)))
                {
                    freed += receipts::packed_len(&receipt);
                }
            }
            book.unflushed_bytes = book.unflushed_bytes.saturating_sub(freed);
        }
    }

    /// The collectors of `program` connected here, judged against `generation`.
    #[must_use]
    pub fn collectors(
        &self,
        program: &ProgramName,
        generation: Generation,
        filter: Filter,
        replica: &str,
    ) -> Vec<v1::CollectorInfo> {
        let inner = self.lock();
        let Some(book) = inner.programs.get(program) else {
            return Vec::new();
        };
        book.collectors
            .iter()
            .filter(|(_, e)| {
                let acked = e.ack.as_ref().filter(|a| a.generation >= generation);
                match filter {
                    Filter::All => true,
                    Filter::Pending => acked.is_none(),
                    Filter::Errored => acked.is_some_and(|a| !a.error.is_empty()),
                }
            })
            .map(|(id, e)| v1::CollectorInfo {
                collector_id: id.to_string(),
                labels: e
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                replica: replica.to_owned(),
                generation: e.acked_generation(),
                effective: e
                    .ack
                    .as_ref()
                    .map_or(v1::RunState::Unspecified, |a| a.effective.to_wire())
                    as i32,
                acked_at: e
                    .ack
                    .as_ref()
                    .and_then(|a| a.applied_at)
                    .map(killswitch_proto::timestamp),
                error: e.ack.as_ref().map(|a| a.error.clone()).unwrap_or_default(),
                connected_at: Some(killswitch_proto::timestamp(e.connected_at)),
                intended: e
                    .ack
                    .as_ref()
                    .map_or(v1::RunState::Unspecified, |a| a.intended.to_wire())
                    as i32,
            })
            .collect()
    }
}

/// Adds the receipts of `program`'s `book` not yet written to `receipts`.
fn unwritten(program: &ProgramName, book: &ProgramBook, receipts: &mut Vec<PendingReceipt>) {
    let pending = |generation: Generation, receipt: &SharedReceipt| PendingReceipt {
        program: program.clone(),
        generation,
        receipt: receipt.clone(),
    };
    receipts.extend(
        book.superseded
            .iter()
            .map(|(generation, receipt)| pending(*generation, receipt)),
    );
    receipts.extend(
        book.collectors
            .values()
            .filter_map(|entry| Some(pending(entry.acked_generation(), entry.unflushed.as_ref()?))),
    );
}

/// The bounded summary of `program` in `inner`: see [`AckBook::summary`].
fn summarize(
    inner: &mut Inner,
    program: &ProgramName,
    current: Option<(Generation, SystemTime)>,
    scope: Option<&Targeting>,
) -> Option<store::AckSummary> {
    let now = SystemTime::now();
    let generation = current.map_or(0, |(g, _)| g);
    let empty = || {
        current.map(|_| store::AckSummary {
            generation,
            ..Default::default()
        })
    };
    let Some(book) = inner.programs.get_mut(program) else {
        return empty();
    };
    book.prune(now);
    if book.is_empty() {
        inner.programs.remove(program);
        return empty();
    }
    let counted: BTreeMap<&CollectorId, &Entry> = book
        .collectors
        .iter()
        .filter(|(id, e)| scope.is_none_or(|t| t.in_scope(id.as_str(), &e.labels)))
        .collect();
    let mut summary = store::AckSummary {
        generation,
        connected: counted.len() as u64,
        disconnected_count: book.disconnected.len() as u64,
        ..Default::default()
    };

    let mut generations: BTreeMap<Generation, store::GenerationCount> = BTreeMap::new();
    let mut latency = Histogram::default();
    let mut last_ack: Option<SystemTime> = None;
    for ack in counted.values().filter_map(|e| e.ack.as_ref()) {
        let counts = generations
            .entry(ack.generation)
            .or_insert_with(|| store::GenerationCount {
                generation: ack.generation,
                ..Default::default()
            });
        match (ack.error.is_empty(), ack.diverged(), ack.purged) {
            (false, _, _) => counts.errored += 1,
            (true, true, _) => counts.diverged += 1,
            (true, false, true) => {
                counts.ok += 1;
                counts.purged += 1;
            }
            (true, false, false) => counts.ok += 1,
        }
        if let (Some((g, committed)), Some(applied)) = (current, ack.applied_at)
            && ack.generation == g
        {
            latency.record(applied.duration_since(committed).unwrap_or_default());
            last_ack = last_ack.max(Some(applied));
        }
    }
    summary.generations = generations.into_values().collect();
    summary.latency = Some(latency.to_store());
    summary.last_ack_at = last_ack.map(killswitch_proto::timestamp);

    let mut laggards: Vec<(&CollectorId, &Entry)> =
        counted.iter().map(|(id, e)| (*id, *e)).collect();
    laggards.sort_by_key(|(id, e)| (e.acked_generation(), *id));
    summary.laggards = laggards
        .into_iter()
        .take(SUMMARY_LIST_LIMIT)
        .map(|(id, e)| collector_ack(id, e))
        .collect();
    summary.errored = counted
        .iter()
        .map(|(id, e)| (*id, *e))
        .filter(|(_, e)| e.ack.as_ref().is_some_and(|a| !a.error.is_empty()))
        .take(SUMMARY_LIST_LIMIT)
        .map(|(id, e)| collector_ack(id, e))
        .collect();
    summary.diverged = counted
        .iter()
        .map(|(id, e)| (*id, *e))
        .filter(|(_, e)| e.ack.as_ref().is_some_and(AckRecord::diverged))
        .take(SUMMARY_LIST_LIMIT)
        .map(|(id, e)| collector_ack(id, e))
        .collect();
    summary.disconnected = book
        .disconnected
        .iter()
        .rev()
        .take(SUMMARY_LIST_LIMIT)
        .map(|(id, at)| store::RecentDisconnect {
            collector_id: id.to_string(),
            at: Some(killswitch_proto::timestamp(*at)),
        })
        .collect();
    Some(summary)
}

fn collector_ack(id: &CollectorId, entry: &Entry) -> store::CollectorAck {
    let state = |pick: fn(&AckRecord) -> RunState| {
        entry
            .ack
            .as_ref()
            .map_or(v1::RunState::Unspecified, |a| pick(a).to_wire()) as i32
    };
    store::CollectorAck {
        collector_id: id.to_string(),
        generation: entry.acked_generation(),
        error: entry
            .ack
            .as_ref()
            .map(|a| a.error.clone())
            .unwrap_or_default(),
        effective: state(|a| a.effective),
        intended: state(|a| a.intended),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CollectorId {
        CollectorId::parse(s).expect("valid id")
    }

    fn demo() -> ProgramName {
        ProgramName::parse("demo").expect("valid name")
    }

    fn ack(generation: Generation, error: &str, applied_at: SystemTime) -> AckRecord {
        AckRecord {
            generation,
            effective: RunState::Paused,
            intended: RunState::Paused,
            error: error.into(),
            applied_at: Some(applied_at),
            purged: false,
            receipt: None,
        }
    }

    fn connect(book: &AckBook, session: SessionId, collector: &str) {
        book.connect(session, &id(collector), &Labels::default(), &[demo()]);
    }

    #[test]
    fn summary_counts_generations_laggards_errors_and_latency() {
        let book = AckBook::new();
        let committed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for (session, c) in [(1, "c1"), (2, "c2"), (3, "c3"), (4, "c4")] {
            connect(&book, session, c);
        }
        let current = Some((7, committed));
        book.ack(
            1,
            &id("c1"),
            &demo(),
            ack(7, "", committed + Duration::from_millis(10)),
            current,
        );
        book.ack(
            2,
            &id("c2"),
            &demo(),
            ack(7, "disk full", committed + Duration::from_millis(30)),
            current,
        );
        book.ack(3, &id("c3"), &demo(), ack(5, "", committed), current);
        let summary = book
            .summary(&demo(), Some((7, committed)), None)
            .expect("followed");
        assert_eq!((summary.generation, summary.connected), (7, 4));
        let generations: Vec<_> = summary
            .generations
            .iter()
            .map(|g| (g.generation, g.ok, g.errored))
            .collect();
        assert_eq!(generations, [(5, 1, 0), (7, 1, 1)]);
        let laggards: Vec<_> = summary
            .laggards
            .iter()
            .map(|l| (l.collector_id.as_str(), l.generation))
            .collect();
        assert_eq!(laggards, [("c4", 0), ("c3", 5), ("c1", 7), ("c2", 7)]);
        assert_eq!(summary.errored.len(), 1);
        assert_eq!(summary.errored[0].error, "disk full");
        let latency = Histogram::from_store(summary.latency.as_ref().expect("latency"));
        assert_eq!(
            (latency.count(), latency.max()),
            (2, Duration::from_millis(30))
        );
        assert_eq!(
            summary.last_ack_at,
            Some(killswitch_proto::timestamp(
                committed + Duration::from_millis(30)
            ))
        );
    }

    #[test]
    fn a_replaced_session_cannot_touch_its_successor() {
        let book = AckBook::new();
        connect(&book, 1, "c1");
        connect(&book, 2, "c1");
        book.ack(1, &id("c1"), &demo(), ack(7, "", SystemTime::now()), None);
        assert!(
            book.collectors(&demo(), 7, Filter::Pending, "r").len() == 1,
            "ack from the old session ignored"
        );
        book.disconnect(1, &id("c1"), &[demo()]);
        assert_eq!(
            book.collectors(&demo(), 7, Filter::All, "r").len(),
            1,
            "old session's disconnect ignored"
        );
        book.disconnect(2, &id("c1"), &[demo()]);
        let summary = book
            .summary(&demo(), None, None)
            .expect("recently disconnected");
        assert_eq!((summary.connected, summary.disconnected_count), (0, 1));
        connect(&book, 3, "c1");
        let summary = book.summary(&demo(), None, None).expect("followed");
        assert_eq!(
            (summary.connected, summary.disconnected_count),
            (1, 0),
            "reconnecting clears it"
        );
    }

    #[test]
    fn a_diverged_ack_is_neither_ok_nor_pending() {
        let book = AckBook::new();
        let committed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        connect(&book, 1, "c1");
        connect(&book, 2, "c2");
        let mut lost = ack(7, "", committed);
        lost.intended = RunState::Running;
        book.ack(1, &id("c1"), &demo(), lost, None);
        let mut open = ack(7, "", committed);
        (open.effective, open.intended) = (RunState::Running, RunState::Running);
        book.ack(2, &id("c2"), &demo(), open, None);
        let summary = book
            .summary(&demo(), Some((7, committed)), None)
            .expect("followed");
        let counts = &summary.generations[0];
        assert_eq!((counts.ok, counts.errored, counts.diverged), (1, 0, 1));
        assert_eq!(summary.diverged.len(), 1);
        assert_eq!(
            (
                summary.diverged[0].collector_id.as_str(),
                summary.diverged[0].effective,
                summary.diverged[0].intended
            ),
            (
                "c1",
                v1::RunState::Paused as i32,
                v1::RunState::Running as i32
            )
        );
        assert!(
            book.dirty_settled(|_| Some((7, None))),
            "a diverged collector answered"
        );
        let listed = book.collectors(&demo(), 7, Filter::All, "r");
        assert_eq!(listed[0].intended, v1::RunState::Running as i32);
    }

    #[test]
    fn an_older_ack_does_not_replace_a_newer_one() {
        let book = AckBook::new();
        connect(&book, 1, "c1");
        book.ack(1, &id("c1"), &demo(), ack(9, "", SystemTime::now()), None);
        book.ack(
            1,
            &id("c1"),
            &demo(),
            ack(4, "late", SystemTime::now()),
            None,
        );
        let listed = book.collectors(&demo(), 9, Filter::All, "r");
        assert_eq!((listed[0].generation, listed[0].error.as_str()), (9, ""));
    }

    #[test]
    fn filters_and_dirty_tracking() {
        let book = AckBook::new();
        connect(&book, 1, "c1");
        connect(&book, 2, "c2");
        connect(&book, 3, "c3");
        book.ack(2, &id("c2"), &demo(), ack(3, "", SystemTime::now()), None);
        book.ack(
            3,
            &id("c3"),
            &demo(),
            ack(3, "boom", SystemTime::now()),
            None,
        );
        let ids = |filter| -> Vec<String> {
            book.collectors(&demo(), 3, filter, "r")
                .into_iter()
                .map(|c| c.collector_id)
                .collect()
        };
        assert_eq!(ids(Filter::All), ["c1", "c2", "c3"]);
        assert_eq!(ids(Filter::Pending), ["c1"]);
        assert_eq!(ids(Filter::Errored), ["c3"]);
        assert_eq!(book.take_dirty(), [demo()]);
        assert!(book.take_dirty().is_empty());
    }

    #[test]
    fn a_program_nobody_follows_is_reported_empty_while_it_exists() {
        let book = AckBook::new();
        assert!(book.summary(&demo(), None, None).is_none());
        let summary = book
            .summary(&demo(), Some((4, SystemTime::now())), None)
            .expect("exists");
        assert_eq!((summary.generation, summary.connected), (4, 0));
    }

    /// Each Ack is counted by result; commit-to-ack is recorded once per collector and
    /// generation, only for the current generation, with the collector's `applied_at`.
    #[test]
    fn a_change_is_settled_once_every_collector_here_acknowledged_it() {
        let book = AckBook::new();
        let committed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        connect(&book, 1, "c1");
        connect(&book, 2, "c2");
        let at_seven = |_: &ProgramName| Some((7, None));
        book.ack(1, &id("c1"), &demo(), ack(7, "", committed), None);
        assert!(!book.dirty_settled(at_seven), "c2 has not acknowledged");
        book.ack(2, &id("c2"), &demo(), ack(7, "disk full", committed), None);
        assert!(book.dirty_settled(at_seven), "an error is an answer too");
        assert!(
            !book.dirty_settled(|_| Some((8, None))),
            "a newer change is not"
        );
        book.take_dirty();
        assert!(
            book.dirty_settled(|_| Some((8, None))),
            "nothing changed since"
        );
    }

    #[test]
    fn acks_are_counted_and_timed_once() {
        let metrics = Arc::new(Metrics::new());
        let book = AckBook::with_metrics(metrics.clone());
        let committed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let current = Some((7, committed));
        connect(&book, 1, "c1");
        connect(&book, 2, "c2");
        let applied = committed + Duration::from_millis(40);
        book.ack(1, &id("c1"), &demo(), ack(7, "", applied), current);
        book.ack(1, &id("c1"), &demo(), ack(7, "", applied), current);
        book.ack(2, &id("c2"), &demo(), ack(6, "", applied), current);
        book.ack(
            2,
            &id("c2"),
            &demo(),
            ack(7, "hook failed", applied),
            current,
        );
        let mut purged = ack(7, "", applied);
        purged.purged = true;
        book.ack(9, &id("c9"), &demo(), purged, current);

        let text = metrics.encode_events();
        for (series, value) in [
            ("killswitch_acks_total{result=\"ok\"}", "3"),
            ("killswitch_acks_total{result=\"error\"}", "1"),
            ("killswitch_acks_total{result=\"purged\"}", "1"),
            ("killswitch_commit_to_ack_seconds_count", "2"),
            ("killswitch_commit_to_ack_seconds_sum", "0.08"),
        ] {
            assert!(
                text.lines().any(|line| line == format!("{series} {value}")),
                "no {series} {value} in:\n{text}"
            );
        }
    }

    fn with_receipt(generation: Generation, tag: &str) -> AckRecord {
        AckRecord {
            receipt: Some(Arc::new(v1::SignedReceipt {
                receipt: format!("{generation}/{tag}").into_bytes(),
                ..Default::default()
            })),
            ..ack(generation, "", SystemTime::now())
        }
    }

    fn pending(book: &AckBook) -> (Option<store::AckSummary>, Vec<PendingReceipt>) {
        book.snapshot(&demo(), Some((7, SystemTime::UNIX_EPOCH)), None)
    }

    fn tags(receipts: &[PendingReceipt]) -> Vec<String> {
        let mut tags: Vec<String> = receipts
            .iter()
            .map(|p| String::from_utf8_lossy(&p.receipt.receipt).into_owned())
            .collect();
        tags.sort();
        tags
    }

    #[test]
    fn the_receipts_of_counted_acks_are_pending_until_written() {
        let book = AckBook::new();
        connect(&book, 1, "c1");
        connect(&book, 2, "c2");
        connect(&book, 3, "c3");
        book.ack(1, &id("c1"), &demo(), with_receipt(7, "a"), None);
        book.ack(2, &id("c2"), &demo(), with_receipt(7, "a"), None);
        book.ack(3, &id("c3"), &demo(), ack(7, "", SystemTime::now()), None);
        let (summary, receipts) = pending(&book);
        let counts = &summary.expect("summary").generations[0];
        assert_eq!(counts.ok, 3, "an Ack without a receipt counts too");
        assert_eq!(tags(&receipts), ["7/a", "7/a"]);
        assert!(receipts.iter().all(|p| p.generation == 7));

        // c1 acknowledges again, with the same receipt, while the batch is written.
        book.ack(1, &id("c1"), &demo(), with_receipt(7, "a"), None);
        book.receipts_written(&receipts);
        assert!(
            pending(&book).1.is_empty(),
            "written, and a repeat is not new"
        );

        // A new receipt of the same generation, recorded while a batch is written,
        // stays pending.
        book.ack(1, &id("c1"), &demo(), with_receipt(7, "b"), None);
        let (_, batch) = pending(&book);
        book.ack(1, &id("c1"), &demo(), with_receipt(7, "c"), None);
        book.receipts_written(&batch);
        assert_eq!(tags(&pending(&book).1), ["7/c"]);
    }

    #[test]
    fn unwritten_receipts_outlive_their_collector_and_a_newer_ack() {
        let book = AckBook::new();
        connect(&book, 1, "c1");
        connect(&book, 2, "c2");
        book.ack(1, &id("c1"), &demo(), with_receipt(6, "a"), None);
        book.ack(1, &id("c1"), &demo(), with_receipt(7, "a"), None);
        book.ack(2, &id("c2"), &demo(), with_receipt(7, "b"), None);
        book.disconnect(2, &id("c2"), &[demo()]);
        let (summary, receipts) = pending(&book);
        assert_eq!(summary.expect("summary").connected, 1);
        assert_eq!(tags(&receipts), ["6/a", "7/a", "7/b"]);
        let generations: BTreeMap<String, Generation> = receipts
            .iter()
            .map(|p| {
                (
                    String::from_utf8_lossy(&p.receipt.receipt).into_owned(),
                    p.generation,
                )
            })
            .collect();
        assert_eq!(
            generations["6/a"], 6,
            "each with the generation it acknowledged"
        );
        book.receipts_written(&receipts);
        assert!(pending(&book).1.is_empty());
    }

    #[test]
    fn the_unwritten_receipts_bytes_follow_what_is_recorded_and_written() {
        let book = AckBook::new();
        connect(&book, 1, "c1");
        connect(&book, 2, "c2");
        let size = |generation, tag| {
            receipts::packed_len(&with_receipt(generation, tag).receipt.expect("receipt"))
        };
        assert_eq!(book.unflushed_bytes(), 0);
        book.ack(1, &id("c1"), &demo(), with_receipt(6, "a"), None);
        book.ack(1, &id("c1"), &demo(), with_receipt(6, "a"), None);
        assert_eq!(
            book.unflushed_bytes(),
            size(6, "a"),
            "a repeat adds nothing"
        );
        book.ack(1, &id("c1"), &demo(), with_receipt(7, "a"), None);
        book.ack(2, &id("c2"), &demo(), with_receipt(7, "bb"), None);
        let all = size(6, "a") + size(7, "a") + size(7, "bb");
        assert_eq!(
            book.unflushed_bytes(),
            all,
            "the superseded one still counts"
        );
        book.disconnect(2, &id("c2"), &[demo()]);
        assert_eq!(
            book.unflushed_bytes(),
            all,
            "so does a departed collector's"
        );

        let unflushed = book.unflushed();
        assert_eq!(tags(&unflushed), ["6/a", "7/a", "7/bb"]);
        let (early, rest): (Vec<PendingReceipt>, Vec<PendingReceipt>) = unflushed
            .into_iter()
            .partition(|p| p.receipt.receipt.as_slice() != b"7/a");
        book.receipts_written(&early);
        assert_eq!(book.unflushed_bytes(), size(7, "a"));
        assert_eq!(tags(&book.unflushed()), ["7/a"]);
        book.receipts_written(&rest);
        assert_eq!(book.unflushed_bytes(), 0);
        assert!(pending(&book).1.is_empty());
    }
}
