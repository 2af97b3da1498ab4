//! The acknowledgement book: which collectors are connected to this replica, for which
//! programs, and what each last acknowledged.
//!
//! Keyed by collector id, so a collector that reconnects before its old session is noticed
//! dead is counted once; a session only removes the entry it owns.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::domain::{CollectorId, Generation, ProgramName, RunState};

/// Identifies one session, so an old session cannot remove its successor's entry.
pub type SessionId = u64;

/// What a collector reported for a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRecord {
    /// Generation applied.
    pub generation: Generation,
    /// The collector's gate after applying it.
    pub effective: RunState,
    /// Empty when the hooks succeeded.
    pub error: String,
    /// When the hooks finished, by the collector's clock.
    pub applied_at: Option<SystemTime>,
}

#[derive(Debug)]
struct Entry {
    session: SessionId,
    acks: HashMap<ProgramName, AckRecord>,
}

/// Counts for one program at one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Collectors connected for the program.
    pub connected: u64,
    /// Of those, how many acknowledged the generation (or a newer one) without error.
    pub acked: u64,
    /// Connected collectors that have not acknowledged the generation, sorted.
    pub pending: Vec<CollectorId>,
    /// Connected collectors whose hooks failed at the generation, with the error, sorted.
    pub errored: Vec<(CollectorId, String)>,
}

/// The collectors connected to this replica and their acknowledgements.
#[derive(Debug, Default)]
pub struct AckBook {
    // Per program, the collectors following it. Short, await-free critical sections.
    programs: Mutex<HashMap<ProgramName, BTreeMap<CollectorId, Entry>>>,
}

impl AckBook {
    /// An empty book.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ProgramName, BTreeMap<CollectorId, Entry>>> {
        self.programs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `collector` follows `programs` through `session`, replacing any older
    /// session of the same collector.
    pub fn connect(&self, session: SessionId, collector: &CollectorId, programs: &[ProgramName]) {
        let mut book = self.lock();
        for program in programs {
            book.entry(program.clone()).or_default().insert(
                collector.clone(),
                Entry {
                    session,
                    acks: HashMap::new(),
                },
            );
        }
    }

    /// Forgets `session`, unless a newer session of the collector took its place.
    pub fn disconnect(
        &self,
        session: SessionId,
        collector: &CollectorId,
        programs: &[ProgramName],
    ) {
        let mut book = self.lock();
        for program in programs {
            if let Some(collectors) = book.get_mut(program) {
                if collectors
                    .get(collector)
                    .is_some_and(|e| e.session == session)
                {
                    collectors.remove(collector);
                }
                if collectors.is_empty() {
                    book.remove(program);
                }
            }
        }
    }

    /// Records an acknowledgement; ignored when the session was replaced.
    pub fn ack(
        &self,
        session: SessionId,
        collector: &CollectorId,
        program: &ProgramName,
        record: AckRecord,
    ) {
        let mut book = self.lock();
        let Some(entry) = book.get_mut(program).and_then(|c| c.get_mut(collector)) else {
            return;
        };
        if entry.session != session {
            return;
        }
        let newer = entry
            .acks
            .get(program)
            .is_none_or(|old| old.generation <= record.generation);
        if newer {
            entry.acks.insert(program.clone(), record);
        }
    }

    /// The counts for `program` at `generation`.
    #[must_use]
    pub fn counts(&self, program: &ProgramName, generation: Generation) -> Counts {
        let book = self.lock();
        let mut counts = Counts::default();
        for (id, entry) in book.get(program).into_iter().flatten() {
            counts.connected += 1;
            match entry.acks.get(program) {
                Some(ack) if ack.generation >= generation && ack.error.is_empty() => {
                    counts.acked += 1
                }
                Some(ack) if ack.generation >= generation => {
                    counts.errored.push((id.clone(), ack.error.clone()))
                }
                _ => counts.pending.push(id.clone()),
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (CollectorId, CollectorId, ProgramName) {
        (
            CollectorId::parse("c1").expect("valid"),
            CollectorId::parse("c2").expect("valid"),
            ProgramName::parse("demo").expect("valid"),
        )
    }

    fn ack(generation: Generation, error: &str) -> AckRecord {
        AckRecord {
            generation,
            effective: RunState::Paused,
            error: error.into(),
            applied_at: None,
        }
    }

    #[test]
    fn counts_pending_acked_and_errored() {
        let (c1, c2, demo) = ids();
        let book = AckBook::new();
        book.connect(1, &c1, std::slice::from_ref(&demo));
        book.connect(2, &c2, std::slice::from_ref(&demo));
        book.ack(1, &c1, &demo, ack(7, ""));
        book.ack(2, &c2, &demo, ack(5, ""));
        let counts = book.counts(&demo, 7);
        assert_eq!((counts.connected, counts.acked), (2, 1));
        assert_eq!(counts.pending, vec![c2.clone()]);
        book.ack(2, &c2, &demo, ack(7, "disk full"));
        assert_eq!(
            book.counts(&demo, 7).errored,
            vec![(c2, "disk full".to_owned())]
        );
    }

    #[test]
    fn a_replaced_session_cannot_touch_its_successor() {
        let (c1, _, demo) = ids();
        let book = AckBook::new();
        book.connect(1, &c1, std::slice::from_ref(&demo));
        book.connect(2, &c1, std::slice::from_ref(&demo));
        book.ack(1, &c1, &demo, ack(7, ""));
        assert_eq!(
            book.counts(&demo, 7).acked,
            0,
            "ack from the old session ignored"
        );
        book.disconnect(1, &c1, std::slice::from_ref(&demo));
        assert_eq!(
            book.counts(&demo, 7).connected,
            1,
            "old session's disconnect ignored"
        );
        book.disconnect(2, &c1, std::slice::from_ref(&demo));
        assert_eq!(book.counts(&demo, 7), Counts::default());
    }

    #[test]
    fn an_older_ack_does_not_replace_a_newer_one() {
        let (c1, _, demo) = ids();
        let book = AckBook::new();
        book.connect(1, &c1, std::slice::from_ref(&demo));
        book.ack(1, &c1, &demo, ack(9, ""));
        book.ack(1, &c1, &demo, ack(4, "late"));
        assert_eq!(book.counts(&demo, 9).acked, 1);
    }
}
