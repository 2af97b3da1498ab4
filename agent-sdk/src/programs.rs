//! The programs a client obeys: a gate and the last applied state for each, shared by the
//! [`Client`](crate::Client) (which reads them) and its session task (the only writer).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::gate::Gate;

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
    /// only to copy a few fields, never across an await, and `is_active()` never takes it.
    applied: Mutex<Option<Applied>>,
}

/// The outcome of the last state applied for a program: what its Ack reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The generation applied.
    pub(crate) generation: u64,
    /// When its hook returned.
    pub(crate) at: SystemTime,
    /// The hook's error, empty when it succeeded.
    pub(crate) error: String,
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
                };
                (name, program)
            })
            .collect();
        Self { by_name }
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

    fn lock(&self) -> MutexGuard<'_, Option<Applied>> {
        // The data is a plain value replaced in one assignment, so it is consistent even
        // if a thread panicked while holding the lock.
        self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::{Applied, Programs};
    use std::time::SystemTime;

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
    }

    #[test]
    fn records_applied_state_and_closes_all() {
        let programs = Programs::new(["keys".to_owned()].into());
        let keys = programs.get("keys").expect("registered");
        let applied = Applied {
            generation: 7,
            at: SystemTime::UNIX_EPOCH,
            error: String::new(),
        };
        keys.set_applied(applied.clone());
        assert_eq!(keys.applied(), Some(applied));
        keys.gate.open();
        programs.close_all();
        assert!(!keys.gate.is_active());
    }
}
