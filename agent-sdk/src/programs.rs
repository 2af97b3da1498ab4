//! The programs a client obeys: a gate and the last applied state for each, shared by the
//! [`Client`](crate::Client) (which reads them) and its session task (the only writer).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use killswitch_proto::v1::SignedReceipt;

use crate::apply::{Desired, Last, Signed};
use crate::gate::Gate;
use crate::policy::Policy;
use crate::state_file::Saved;

/// Every registered program, by name. The set is fixed when the client starts.
#[derive(Debug)]
pub(crate) struct Programs {
    by_name: BTreeMap<String, Program>,
}

/// One registered program.
#[derive(Debug)]
pub(crate) struct Program {
    /// The gate collectors check.
    pub(crate) gate: Gate,
    /// The last state applied, `None` before any. A std mutex is right here: it is held
    /// only to copy or change a few fields, never across an await, and `is_active()`
    /// never takes it.
    applied: Mutex<Option<Applied>>,
    /// What signed-resume checks remember (see [`Signed`]).
    signed: Mutex<Signed>,
}

/// The last state applied for a program, and what its Ack reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The generation applied.
    pub(crate) generation: u64,
    /// What the control plane said at that generation (not whether the gate is open).
    pub(crate) desired: Desired,
    /// The program's failure policy, as last heard.
    pub(crate) policy: Policy,
    /// Whether the program is paused for lost contact.
    pub(crate) contact: Contact,
    /// When its last hook returned.
    pub(crate) at: SystemTime,
    /// The last hook's error, empty when it succeeded.
    pub(crate) error: String,
    /// The last pause hook confirmed a purge that the state asked for.
    pub(crate) purged: bool,
    /// The signed receipt of the last change applied, sent with every Ack until the next
    /// change; `None` before any change this process applied (e.g. a state restored from
    /// the state file).
    pub(crate) receipt: Option<Arc<SignedReceipt>>,
}

/// Whether a program's gate is closed because the control plane could not be heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contact {
    /// The applied state stands.
    Current,
    /// The watchdog closed the gate for lost contact; the pause hook is still to run.
    LostHookPending {
        /// When the watchdog closed the gate; `None` if it was closed already.
        gate_closed_at: Option<SystemTime>,
    },
    /// Paused for lost contact, or by a restart: the gate reopens only on a fresh
    /// authoritative RUNNING.
    Lost,
}

impl Applied {
    /// What [`apply::step`](crate::apply::step) needs to know.
    pub(crate) fn last(&self) -> Last {
        Last {
            generation: self.generation,
            running: self.desired == Desired::Running,
            lost_contact: self.contact != Contact::Current,
        }
    }

    /// What the state file keeps.
    pub(crate) fn saved(&self) -> Saved {
        Saved {
            generation: self.generation,
            desired: self.desired,
            policy: self.policy,
        }
    }
}

impl Programs {
    /// Registers `names`, each with a closed gate and nothing applied.
    pub(crate) fn new(names: BTreeSet<String>) -> Self {
        let by_name = names
            .into_iter()
            .map(|name| {
                let program = Program {
                    gate: Gate::closed(),
                    applied: Mutex::new(None),
                    signed: Mutex::new(Signed::default()),
                };
                (name, program)
            })
            .collect();
        Self { by_name }
    }

    /// Takes the states a state file kept as applied, for the registered programs among
    /// them; every gate stays closed. A program that was RUNNING is paused as if contact
    /// had been lost: a fresh RUNNING from the control plane reopens it (or, for a
    /// fail-open program, the resume hook the session task runs first).
    pub(crate) fn restore(&self, saved: &BTreeMap<String, Saved>, at: SystemTime) {
        for (name, program) in &self.by_name {
            let Some(saved) = saved.get(name) else {
                continue;
            };
            let contact = match saved.desired {
                Desired::Running => Contact::Lost,
                Desired::Paused => Contact::Current,
            };
            if saved.desired == Desired::Paused {
                program.note_paused(saved.generation);
            }
            program.set_applied(Applied {
                generation: saved.generation,
                desired: saved.desired,
                policy: saved.policy,
                contact,
                at,
                error: String::new(),
                purged: false,
                receipt: None,
            });
        }
    }

    /// The program called `name`, if it was registered.
    pub(crate) fn get(&self, name: &str) -> Option<&Program> {
        self.by_name.get(name)
    }

    /// Every program with its name, in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Program)> {
        self.by_name
            .iter()
            .map(|(name, program)| (name.as_str(), program))
    }

    /// What the state file keeps, for every program that has an applied state.
    pub(crate) fn saved(&self) -> BTreeMap<String, Saved> {
        self.iter()
            .filter_map(|(name, program)| Some((name.to_owned(), program.applied()?.saved())))
            .collect()
    }

    /// Closes every gate.
    pub(crate) fn close_all(&self) {
        for program in self.by_name.values() {
            program.gate.close();
        }
    }
}

impl Program {
    /// The last state applied, `None` before any.
    pub(crate) fn applied(&self) -> Option<Applied> {
        self.lock().clone()
    }

    /// Records the outcome of applying a state.
    pub(crate) fn set_applied(&self, applied: Applied) {
        *self.lock() = Some(applied);
    }

    /// Changes the applied state in place, if there is one, and returns the result.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Applied)) -> Option<Applied> {
        let mut applied = self.lock();
        let applied = applied.as_mut()?;
        change(applied);
        Some(applied.clone())
    }

    /// What the signed-resume check remembers.
    pub(crate) fn signed(&self) -> Signed {
        self.signed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records that a PAUSED state of `generation` was applied.
    pub(crate) fn note_paused(&self, generation: u64) {
        let mut signed = self.signed.lock().unwrap_or_else(PoisonError::into_inner);
        signed.last_paused = Some(signed.last_paused.map_or(generation, |g| g.max(generation)));
    }

    /// Records that a resume with this statement was accepted.
    pub(crate) fn note_accepted(&self, statement: &[u8]) {
        let mut signed = self.signed.lock().unwrap_or_else(PoisonError::into_inner);
        if signed.accepted.as_deref() != Some(statement) {
            signed.accepted = Some(statement.to_vec());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Applied>> {
        // Every change is a few plain assignments that cannot panic, so the data is
        // consistent even if a thread panicked while holding the lock.
        self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::{Applied, Contact, Programs};
    use crate::apply::Desired;
    use crate::policy::{OnLostContact, Policy};
    use crate::state_file::Saved;
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    fn applied(generation: u64) -> Applied {
        Applied {
            generation,
            desired: Desired::Running,
            policy: Policy::default(),
            contact: Contact::Current,
            at: SystemTime::UNIX_EPOCH,
            error: String::new(),
            purged: false,
            receipt: None,
        }
    }

    #[test]
    fn programs_start_closed_with_nothing_applied() {
        let programs = Programs::new(["keys".to_owned(), "mouse".to_owned()].into());
        let names: Vec<&str> = programs.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["keys", "mouse"]);
        for (_, program) in programs.iter() {
            assert!(!program.gate.is_active());
            assert_eq!(program.applied(), None);
        }
        assert!(programs.get("screen").is_none());
        assert!(programs.saved().is_empty());
    }

    #[test]
    fn records_applied_state_and_closes_all() {
        let programs = Programs::new(["keys".to_owned()].into());
        let keys = programs.get("keys").expect("registered");
        keys.set_applied(applied(7));
        assert_eq!(keys.applied(), Some(applied(7)));
        let updated = keys.update(|applied| applied.contact = Contact::Lost);
        assert_eq!(
            updated.map(|applied| applied.last().lost_contact),
            Some(true)
        );
        keys.gate.open();
        programs.close_all();
        assert!(!keys.gate.is_active());
    }

    #[test]
    fn update_needs_an_applied_state() {
        let programs = Programs::new(["keys".to_owned()].into());
        let keys = programs.get("keys").expect("registered");
        assert_eq!(keys.update(|applied| applied.generation = 9), None);
        assert_eq!(keys.applied(), None);
    }

    #[test]
    fn restores_saved_states_with_closed_gates() {
        let programs = Programs::new(["keys".to_owned(), "mouse".to_owned()].into());
        let saved = |generation, desired, on_lost_contact| Saved {
            generation,
            desired,
            policy: Policy::new(on_lost_contact, 5_000),
        };
        let file: BTreeMap<String, Saved> = [
            (
                "keys".to_owned(),
                saved(4, Desired::Running, OnLostContact::Keep),
            ),
            (
                "mouse".to_owned(),
                saved(9, Desired::Paused, OnLostContact::Pause),
            ),
            (
                "screen".to_owned(),
                saved(2, Desired::Running, OnLostContact::Pause),
            ),
        ]
        .into();
        programs.restore(&file, SystemTime::UNIX_EPOCH);
        let state = |name: &str| {
            let program = programs.get(name).expect("registered");
            assert!(!program.gate.is_active(), "{name}");
            let applied = program.applied().expect("restored");
            (applied.generation, applied.contact)
        };
        assert_eq!(state("keys"), (4, Contact::Lost));
        assert_eq!(state("mouse"), (9, Contact::Current));
        assert!(programs.get("screen").is_none());
        let mut expected = file;
        expected.remove("screen");
        assert_eq!(programs.saved(), expected);
    }
}
