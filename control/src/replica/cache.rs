//! The replica's in-memory view of every program's state and of the stop-all flag, fed by
//! one etcd watch.
//!
//! Sessions subscribe per program through `tokio::sync::watch`: a writer replaces the
//! value, so a slow session sees only the latest state, never a backlog of stale ones, and
//! nothing reads etcd per collector. Every state is held under the flag
//! ([`ProgramState::with_stop_all`]): when the flag changes, every program's state is
//! recomputed and its subscribers notified. [`run_watcher`] keeps the cache current: list
//! at a revision, watch from the next one, re-list when etcd reports the revision
//! compacted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use killswitch_proto::prost::Message as _;
use killswitch_proto::v1;

use crate::model::targeting::StopAllFlag;
use crate::model::{Generation, ProgramName, ProgramState};
use crate::store::{Store, StoreError, revision};

/// What a subscriber sees: the program's state, `None` while it does not exist.
pub type Slot = Option<Arc<ProgramState>>;

/// Every program's latest state, as this replica knows it.
#[derive(Debug)]
pub struct StateCache {
    programs: Mutex<Programs>,
    revision: watch::Sender<u64>,
    healthy: watch::Sender<bool>,
    reconcile_differences: AtomicU64,
    /// When the watcher last heard from etcd; the cache's creation until it does.
    heard: Mutex<Instant>,
}

/// The programs and the flag every state is held under, behind one lock so that no state
/// is ever stored under another flag than the current one.
#[derive(Debug, Default)]
struct Programs {
    states: HashMap<ProgramName, watch::Sender<Slot>>,
    stop_all: StopAllFlag,
}

impl Default for StateCache {
    fn default() -> Self {
        Self {
            programs: Mutex::default(),
            revision: watch::Sender::new(0),
            healthy: watch::Sender::new(false),
            reconcile_differences: AtomicU64::new(0),
            heard: Mutex::new(Instant::now()),
        }
    }
}

impl StateCache {
    /// An empty cache, not yet healthy.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    // The map is only touched in short, await-free sections, so a std mutex is right; a
    // panic while holding it cannot leave the map inconsistent, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Programs> {
        self.programs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows a program's state; the receiver holds `None` while the program is unknown.
    pub fn subscribe(&self, program: &ProgramName) -> watch::Receiver<Slot> {
        self.lock()
            .states
            .entry(program.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Forgets programs nobody follows and that do not exist, so unknown names asked for in
    /// Hellos do not pile up.
    pub fn release(&self, program: &ProgramName) {
        let mut programs = self.lock();
        if programs
            .states
            .get(program)
            .is_some_and(|tx| tx.receiver_count() == 0 && tx.borrow().is_none())
        {
            programs.states.remove(program);
        }
    }

    /// The current state of a program.
    #[must_use]
    pub fn get(&self, program: &ProgramName) -> Slot {
        self.lock()
            .states
            .get(program)
            .and_then(|tx| tx.borrow().clone())
    }

    /// The stop-all flag every state is held under.
    #[must_use]
    pub fn stop_all(&self) -> StopAllFlag {
        self.lock().stop_all.clone()
    }

    /// Stores a state, under the current stop-all flag, unless the cache already holds the
    /// same or a newer generation.
    pub fn apply(&self, state: ProgramState) {
        let mut programs = self.lock();
        let state = state.with_stop_all(&programs.stop_all);
        let tx = programs
            .states
            .entry(state.program.clone())
            .or_insert_with(|| watch::channel(None).0);
        tx.send_if_modified(|slot| {
            if slot
                .as_ref()
                .is_some_and(|current| current.generation >= state.generation)
            {
                return false;
            }
            *slot = Some(Arc::new(state));
            true
        });
    }

    /// Marks a program as gone.
    pub fn remove(&self, program: &ProgramName) {
        if let Some(tx) = self.lock().states.get(program) {
            tx.send_if_modified(|slot| slot.take().is_some());
        }
    }

    /// Holds every state under a new stop-all flag: each program whose state it changes
    /// (a new generation when the flag was set or cleared) is sent to its subscribers.
    /// Returns how many programs changed.
    pub fn set_stop_all(&self, stop_all: StopAllFlag) -> usize {
        let mut programs = self.lock();
        if programs.stop_all == stop_all {
            return 0;
        }
        let mut changed = 0;
        for tx in programs.states.values() {
            if tx.send_if_modified(|slot| {
                let Some(current) = slot else {
                    return false;
                };
                let merged = ProgramState::clone(current).with_stop_all(&stop_all);
                if merged == **current {
                    return false;
                }
                *slot = Some(Arc::new(merged));
                true
            }) {
                changed += 1;
            }
        }
        programs.stop_all = stop_all;
        changed
    }

    /// Replaces everything with a fresh listing, states and flag: states that differ are
    /// replaced, programs absent from it are marked gone. Returns how many programs
    /// changed (a non-zero count after a re-list means the watch had missed something).
    pub fn replace_all(&self, states: Vec<ProgramState>, stop_all: StopAllFlag) -> usize {
        let listed: HashMap<ProgramName, ProgramState> = states
            .into_iter()
            .map(|s| (s.program.clone(), s.with_stop_all(&stop_all)))
            .collect();
        let mut programs = self.lock();
        programs.stop_all = stop_all;
        let mut changed = 0;
        for (name, tx) in programs.states.iter() {
            if !listed.contains_key(name) && tx.send_if_modified(|slot| slot.take().is_some()) {
                changed += 1;
            }
        }
        for (name, state) in listed {
            let tx = programs
                .states
                .entry(name)
                .or_insert_with(|| watch::channel(None).0);
            if tx.send_if_modified(|slot| {
                if slot.as_deref() == Some(&state) {
                    return false;
                }
                *slot = Some(Arc::new(state));
                true
            }) {
                changed += 1;
            }
        }
        changed
    }

    /// The etcd revision the cache is current up to.
    #[must_use]
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Follows the revision the cache is current up to: it changes after every batch of
    /// updates the watch delivers.
    pub fn revisions(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    fn set_revision(&self, revision: u64) {
        self.revision.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    /// Every known program with its current generation.
    #[must_use]
    pub fn generations(&self) -> Vec<(ProgramName, Generation)> {
        self.lock()
            .states
            .iter()
            .filter_map(|(name, tx)| tx.borrow().as_ref().map(|s| (name.clone(), s.generation)))
            .collect()
    }

    /// The programs with a staged resume in progress, as this replica knows them.
    #[must_use]
    pub fn rollouts(&self) -> Vec<Arc<ProgramState>> {
        self.lock()
            .states
            .values()
            .filter_map(|tx| tx.borrow().clone())
            .filter(|state| state.targeting.rollout.is_some())
            .collect()
    }

    /// How many program states the periodic reconcile found different from etcd and
    /// corrected since start. Anything but 0 means the watch missed a change.
    #[must_use]
    pub fn reconcile_differences(&self) -> u64 {
        self.reconcile_differences.load(Ordering::Relaxed)
    }

    /// How long since the watcher last heard from etcd: a watch event or progress
    /// notification, or a listing. Since the cache was created if it never did. It stays
    /// below two heartbeat intervals while the watch is healthy (the watch is declared
    /// broken when etcd leaves two progress probes unanswered) and grows while etcd is
    /// out of reach.
    #[must_use]
    pub fn since_heard(&self) -> Duration {
        self.heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    fn heard_from_etcd(&self) {
        *self
            .heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Whether the etcd watch is healthy, so this replica may vouch for its view.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        *self.healthy.borrow()
    }

    /// Follows the watch's health: sessions re-send state when it comes back.
    pub fn health(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    fn set_healthy(&self, healthy: bool) {
        // Only a change notifies: every session follows this channel, and the watch
        // reports progress every heartbeat interval.
        let changed = self.healthy.send_if_modified(|current| {
            let changed = *current != healthy;
            *current = healthy;
            changed
        });
        if changed {
            if healthy {
                tracing::info!("etcd watch healthy: vouching for program state");
            } else {
                tracing::warn!("etcd watch unhealthy: no longer vouching for program state");
            }
        }
    }
}

/// Where the watch loop is (kube's watcher state machine, reduced to what etcd needs).
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Read every state at one revision.
    Listing,
    /// Follow changes from this revision on.
    Watching { from: i64 },
}

/// Why a watch ended.
enum WatchEnd {
    /// The revision we asked for is gone: re-list.
    Compacted,
    /// The stream broke: resume from the next revision after a pause.
    Broken(StoreError),
    /// Shutdown.
    Cancelled,
}

/// Longest interval between two progress requests of the watch, whatever the heartbeat
/// interval: a replica notices a stalled etcd within two of them (10 s) and stops
/// vouching, however rarely it heartbeats.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// How the watcher paces its checks.
#[derive(Debug, Clone, Copy)]
pub struct WatchTiming {
    /// How often to ask etcd for a progress notification; a watch that answers none for
    /// two intervals is treated as broken (a stalled or partitioned etcd member).
    pub probe_interval: Duration,
    /// How often to compare the whole cache with a listing at the revision it is current
    /// to. Any difference means the watch missed something: it is logged, counted in
    /// [`StateCache::reconcile_differences`] and corrected.
    pub reconcile_interval: Duration,
}

/// Keeps `cache` equal to the states in etcd until `cancel` fires.
/// While watching, it probes the watch's progress and periodically reconciles the cache
/// with a full listing (see [`WatchTiming`]); a stalled watch makes the replica stop
/// vouching and reconnect.
pub async fn run_watcher(
    store: Store,
    cache: Arc<StateCache>,
    timing: WatchTiming,
    cancel: CancellationToken,
) {
    let mut phase = Phase::Listing;
    let mut failures: u32 = 0;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let result = match phase {
            Phase::Listing => match store.list_states().await {
                Ok(listing) => {
                    cache.heard_from_etcd();
                    let changed = cache.replace_all(listing.states, listing.stop_all);
                    tracing::info!(
                        revision = listing.revision,
                        changed,
                        "listed program states"
                    );
                    cache.set_revision(revision(listing.revision));
                    phase = Phase::Watching {
                        from: listing.revision + 1,
                    };
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Phase::Watching { from } => {
                let mut watch = Watch {
                    store: &store,
                    cache: &cache,
                    timing,
                    from,
                };
                match watch.run(&cancel, &mut failures).await {
                    WatchEnd::Cancelled => return,
                    WatchEnd::Compacted => {
                        tracing::warn!(
                            from = watch.from,
                            "etcd compacted past the watch revision; re-listing"
                        );
                        phase = Phase::Listing;
                        Ok(())
                    }
                    WatchEnd::Broken(error) => {
                        phase = Phase::Watching { from: watch.from };
                        Err(error)
                    }
                }
            }
        };
        if let Err(error) = result {
            cache.set_healthy(false);
            failures = failures.saturating_add(1);
            let delay = retry_delay(failures);
            tracing::warn!(%error, ?delay, "etcd watch failed; retrying");
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// One watch stream and where it is.
struct Watch<'a> {
    store: &'a Store,
    cache: &'a StateCache,
    timing: WatchTiming,
    /// The next revision to receive: everything before it is in the cache.
    from: i64,
}

impl Watch<'_> {
    /// Follows etcd from `self.from` until the stream ends; `self.from` is then where to
    /// resume.
    async fn run(&mut self, cancel: &CancellationToken, failures: &mut u32) -> WatchEnd {
        let (start, end) = self.store.keys().watched();
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(self.from)
            .with_progress_notify();
        let mut stream = match self.store.client().watch(start, Some(options)).await {
            Ok(stream) => stream,
            Err(error) => return WatchEnd::Broken(error.into()),
        };
        let probe_interval = self.timing.probe_interval;
        let mut probe = tokio::time::interval(probe_interval);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reconcile_interval = self.timing.reconcile_interval;
        let mut reconcile = tokio::time::interval_at(
            tokio::time::Instant::now() + reconcile_interval,
            reconcile_interval,
        );
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            let message = tokio::select! {
                () = cancel.cancelled() => return WatchEnd::Cancelled,
                _ = probe.tick() => {
                    let silent = last_heard.elapsed();
                    if silent > probe_interval * 2 {
                        let stalled = format!("etcd answered no progress request for {silent:?}");
                        return WatchEnd::Broken(etcd_client::Error::WatchError(stalled).into());
                    }
                    if let Err(error) = stream.request_progress().await {
                        return WatchEnd::Broken(error.into());
                    }
                    continue;
                }
                _ = reconcile.tick() => {
                    if let Err(end) = self.reconcile().await {
                        return end;
                    }
                    continue;
                }
                message = stream.message() => message,
            };
            last_heard = tokio::time::Instant::now();
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    let error =
                        etcd_client::Error::WatchError("etcd closed the watch stream".into());
                    return WatchEnd::Broken(error.into());
                }
                Err(error) => return WatchEnd::Broken(error.into()),
            };
            self.cache.heard_from_etcd();
            if response.compact_revision() > 0 {
                return WatchEnd::Compacted;
            }
            if response.canceled() {
                let reason = format!("etcd cancelled the watch: {}", response.cancel_reason());
                return WatchEnd::Broken(etcd_client::Error::WatchError(reason).into());
            }
            *failures = 0;
            self.cache.set_healthy(true);
            for event in response.events() {
                if let Some(kv) = event.kv() {
                    self.from = self.from.max(kv.mod_revision() + 1);
                    self.apply(event.event_type(), kv);
                }
            }
            if let Some(header) = response.header() {
                // The header revision, progress notifications included, covers everything
                // etcd has sent us up to it.
                self.from = self.from.max(header.revision() + 1);
                self.cache.set_revision(revision(header.revision()));
            }
        }
    }

    fn apply(&self, kind: EventType, kv: &etcd_client::KeyValue) {
        let keys = self.store.keys();
        if kv.key() == keys.global().as_bytes() {
            self.apply_stop_all(kind, kv);
            return;
        }
        let states = keys.states();
        if !kv.key().starts_with(states.as_bytes()) {
            // Another key of the watched range (see `Keys::watched`).
            return;
        }
        match kind {
            EventType::Put => {
                match self.store.decode_state(
                    kv.key(),
                    kv.value(),
                    kv.mod_revision(),
                    &self.cache.stop_all(),
                ) {
                    Ok(Some(state)) => self.cache.apply(state),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%error, "ignoring a state this replica cannot read");
                    }
                }
            }
            EventType::Delete => {
                let key = String::from_utf8_lossy(kv.key());
                if let Some(Ok(name)) = key.strip_prefix(&states).map(ProgramName::parse) {
                    self.cache.remove(&name);
                }
            }
        }
    }

    /// A change of the stop-all flag: every program's state is held under the new one.
    /// A deleted key reads as a flag never set, as a listing reads it.
    fn apply_stop_all(&self, kind: EventType, kv: &etcd_client::KeyValue) {
        let flag = match kind {
            EventType::Put => match v1::StopAll::decode(kv.value()) {
                Ok(value) => StopAllFlag::from_stored(&value, revision(kv.mod_revision())),
                Err(error) => {
                    tracing::error!(%error, "ignoring a stop-all flag this replica cannot read");
                    return;
                }
            },
            EventType::Delete => StopAllFlag::default(),
        };
        let active = flag.active();
        let changed = self.cache.set_stop_all(flag);
        tracing::info!(active, changed, "stop-all flag changed");
    }

    /// Compares the cache with a listing at the revision the cache is current to (only
    /// this task writes the cache, so both describe the same moment) and corrects it.
    async fn reconcile(&self) -> Result<(), WatchEnd> {
        let at = self.from - 1;
        let listing = match self.store.list_states_at(at).await {
            Ok(listing) => listing,
            Err(error) if error.is_compacted() => return Err(WatchEnd::Compacted),
            Err(error) => return Err(WatchEnd::Broken(error)),
        };
        self.cache.heard_from_etcd();
        let differences = self.cache.replace_all(listing.states, listing.stop_all);
        if differences > 0 {
            self.cache
                .reconcile_differences
                .fetch_add(differences as u64, Ordering::Relaxed);
            tracing::warn!(
                revision = at,
                differences,
                "reconcile found programs whose cached state differed from etcd; corrected"
            );
        } else {
            tracing::debug!(revision = at, "reconcile: cache matches etcd");
        }
        Ok(())
    }
}

/// Delay before retrying etcd: 100 ms doubling to 5 s.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunState;

    fn state(name: &str, generation: u64, run: RunState) -> ProgramState {
        ProgramState {
            program: ProgramName::parse(name).expect("valid name"),
            state: run,
            generation,
            revision: generation,
            reason: "test".into(),
            incident_id: String::new(),
            actor: "tester".into(),
            changed_at: None,
            purge: false,
            policy: crate::model::FailurePolicy::default(),
            authorization: None,
            targeting: crate::model::targeting::Targeting::default(),
        }
    }

    #[test]
    fn apply_never_goes_back_in_time() {
        let cache = StateCache::new();
        let name = ProgramName::parse("demo").expect("valid name");
        let rx = cache.subscribe(&name);
        cache.apply(state("demo", 5, RunState::Paused));
        cache.apply(state("demo", 3, RunState::Running));
        assert_eq!(
            rx.borrow().as_ref().map(|s| (s.generation, s.state)),
            Some((5, RunState::Paused))
        );
    }

    #[test]
    fn replace_all_marks_missing_programs_gone_and_counts_changes() {
        let cache = StateCache::new();
        cache.apply(state("a", 2, RunState::Paused));
        cache.apply(state("b", 3, RunState::Paused));
        let changed = cache.replace_all(
            vec![
                state("a", 2, RunState::Paused),
                state("c", 9, RunState::Running),
            ],
            StopAllFlag::default(),
        );
        assert_eq!(changed, 2, "b removed and c added; a unchanged");
        assert!(
            cache
                .get(&ProgramName::parse("b").expect("valid"))
                .is_none()
        );
        assert_eq!(
            cache
                .get(&ProgramName::parse("c").expect("valid"))
                .map(|s| s.generation),
            Some(9)
        );
    }

    #[test]
    fn a_stop_all_flag_change_notifies_every_program_with_a_new_generation() {
        let cache = StateCache::new();
        let name = ProgramName::parse("demo").expect("valid name");
        let mut rx = cache.subscribe(&name);
        cache.apply(state("demo", 5, RunState::Running));
        cache.apply(state("other", 6, RunState::Paused));
        rx.mark_unchanged();
        let set = StopAllFlag {
            mark: Some(crate::model::targeting::StopAll {
                reason: "leak".into(),
                incident_id: String::new(),
                actor: "alice".into(),
                at: None,
            }),
            generation: 8,
            clear_request: None,
        };
        assert_eq!(cache.set_stop_all(set.clone()), 2);
        assert!(rx.has_changed().expect("open"));
        let held = rx.borrow_and_update().clone().expect("a state");
        assert_eq!((held.generation, held.revision), (8, 5));
        assert!(held.targeting.stop_all.is_some());
        assert_eq!(cache.set_stop_all(set), 0, "the same flag changes nothing");

        // A state written during the stop-all is held under the flag.
        cache.apply(state("demo", 9, RunState::Running));
        let held = cache.get(&name).expect("a state");
        assert_eq!(held.generation, 9);
        assert!(held.targeting.stop_all.is_some());

        let cleared = StopAllFlag {
            generation: 10,
            ..StopAllFlag::default()
        };
        assert_eq!(cache.set_stop_all(cleared), 2);
        let held = cache.get(&name).expect("a state");
        assert_eq!(held.generation, 10);
        assert!(held.targeting.stop_all.is_none());
    }

    #[test]
    fn release_forgets_only_unfollowed_unknown_programs() {
        let cache = StateCache::new();
        let ghost = ProgramName::parse("ghost").expect("valid name");
        let rx = cache.subscribe(&ghost);
        cache.release(&ghost);
        assert_eq!(cache.lock().states.len(), 1, "still followed");
        drop(rx);
        cache.release(&ghost);
        assert!(cache.lock().states.is_empty());
    }

    #[test]
    fn retry_delay_is_bounded() {
        assert_eq!(retry_delay(0), Duration::from_millis(100));
        assert_eq!(retry_delay(3), Duration::from_millis(800));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(5));
    }
}
