//! What pause and resume hooks receive ([`StateEvent`], [`Cause`]) and return ([`HookResult`]).

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a pause or resume hook returns: `Ok(())`, or the error to report in the Ack.
///
/// A failed resume hook keeps the gate closed; a failed pause hook leaves it closed too
/// (it was closed before the hook ran). Either way the control plane sees the error text.
pub type HookResult = Result<(), Box<dyn Error + Send + Sync>>;

/// Why a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The control plane sent a new state for the program: an operator paused or
    /// resumed it (or this is the first state this collector heard).
    Update,
    /// Pause only: the program is fail-closed and nothing came from the control plane
    /// within its grace period, so the client paused it by itself.
    LostContact,
    /// Resume only: the program was paused for lost contact (or by a restart, see
    /// [`ClientBuilder::state_file`](crate::ClientBuilder::state_file)) and the control
    /// plane, heard again, says it is RUNNING.
    ContactRestored,
    /// Resume only: the client started and its state file says this fail-open program was
    /// RUNNING, so it resumes before hearing from the control plane.
    StateFile,
}

impl Cause {
    /// The cause as a stable lowercase word, as signed receipts carry it: `update`,
    /// `lost-contact`, `contact-restored`, `state-file`. Unlike [`Display`](fmt::Display),
    /// meant for people, these never change.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::LostContact => "lost-contact",
            Self::ContactRestored => "contact-restored",
            Self::StateFile => "state-file",
        }
    }
}

impl fmt::Display for Cause {
    /// Lowercase words for logs and output lines: `update`, `lost contact`,
    /// `contact restored`, `state file`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Update => "update",
            Self::LostContact => "lost contact",
            Self::ContactRestored => "contact restored",
            Self::StateFile => "state file",
        })
    }
}

/// A state change for one program, as given to a hook.
///
/// The operator's fields (`reason`, `incident_id`, `actor`) are those of the state the
/// control plane sent. They are empty when the client changes the state by itself
/// ([`Cause::LostContact`], [`Cause::StateFile`]).
///
/// Clones share one purge confirmation: a hook may hand a clone to another thread or task
/// that does the deleting and calls [`confirm_purge`](StateEvent::confirm_purge) there.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StateEvent {
    /// The program the change is for.
    pub program: String,
    /// The generation of the state applied: it only ever grows for a program. For a
    /// [`Cause::LostContact`] pause it is the generation applied before contact was lost.
    pub generation: u64,
    /// Why the operator made the change.
    pub reason: String,
    /// The incident the change belongs to, empty when none was given.
    pub incident_id: String,
    /// Who made the change.
    pub actor: String,
    /// For a pause: delete locally buffered data that was not uploaded yet, then call
    /// [`confirm_purge`](StateEvent::confirm_purge).
    pub purge: bool,
    /// Why the hook runs.
    pub cause: Cause,
    /// Set by `confirm_purge`, read once the hook returned.
    purge_confirmed: Arc<AtomicBool>,
}

impl StateEvent {
    /// An event for `program` at `generation` without an operator's fields or a purge.
    pub(crate) fn new(program: String, generation: u64, cause: Cause) -> Self {
        Self {
            program,
            generation,
            reason: String::new(),
            incident_id: String::new(),
            actor: String::new(),
            purge: false,
            cause,
            purge_confirmed: Arc::default(),
        }
    }

    /// Confirms that the pause hook deleted the locally buffered data that was not
    /// uploaded yet, as [`purge`](StateEvent::purge) asked.
    ///
    /// The Ack tells the operator `purged` only if the event asked for a purge, the hook
    /// called this *and* the hook then returned `Ok` in time: call it after the data is
    /// really gone, never before. Calling it when no purge was asked changes nothing.
    ///
    /// ```
    /// use killswitch_sdk::{Client, HookResult, StateEvent};
    ///
    /// /// Events captured but not uploaded yet.
    /// const BUFFER: &str = "/var/lib/collector/buffer";
    ///
    /// fn on_pause(event: &StateEvent) -> HookResult {
    ///     if event.purge {
    ///         match std::fs::remove_dir_all(BUFFER) {
    ///             Ok(()) => {}
    ///             Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
    ///             Err(error) => return Err(error.into()),
    ///         }
    ///         event.confirm_purge();
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let builder = Client::builder().on_pause(on_pause);
    /// # let _ = builder;
    /// ```
    pub fn confirm_purge(&self) {
        self.purge_confirmed.store(true, Ordering::Release);
    }

    /// Whether a hook called [`confirm_purge`](StateEvent::confirm_purge) on this event or
    /// a clone of it.
    pub(crate) fn purge_confirmed(&self) -> bool {
        self.purge_confirmed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::{Cause, StateEvent};

    #[test]
    fn clones_share_the_purge_confirmation() {
        let event = StateEvent::new("keys".to_owned(), 3, Cause::Update);
        let clone = event.clone();
        assert!(!event.purge_confirmed());
        clone.confirm_purge();
        assert!(event.purge_confirmed());
        // A new event starts unconfirmed.
        assert!(!StateEvent::new("keys".to_owned(), 3, Cause::Update).purge_confirmed());
    }

    #[test]
    fn causes_display_as_words() {
        let words: Vec<String> = [
            Cause::Update,
            Cause::LostContact,
            Cause::ContactRestored,
            Cause::StateFile,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            words,
            ["update", "lost contact", "contact restored", "state file"]
        );
    }

    #[test]
    fn causes_have_stable_names_for_receipts() {
        let names = [
            Cause::Update,
            Cause::LostContact,
            Cause::ContactRestored,
            Cause::StateFile,
        ]
        .map(Cause::as_str);
        assert_eq!(
            names,
            ["update", "lost-contact", "contact-restored", "state-file"]
        );
    }
}
