//! What pause and resume hooks receive ([`StateEvent`]) and return ([`HookResult`]).

use std::error::Error;
use std::sync::Arc;

use crate::error::error_chain;

/// What a pause or resume hook returns: `Ok(())`, or the error to report in the Ack.
///
/// A failed resume hook keeps the gate closed; a failed pause hook leaves it closed too
/// (it was closed before the hook ran). Either way the control plane sees the error text.
pub type HookResult = Result<(), Box<dyn Error + Send + Sync>>;

/// A state change the control plane ordered for one program, as given to a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateEvent {
    /// The program the change is for.
    pub program: String,
    /// The generation of the change: it only ever grows for a program.
    pub generation: u64,
    /// Why the operator made the change.
    pub reason: String,
    /// The incident the change belongs to, empty when none was given.
    pub incident_id: String,
    /// Who made the change.
    pub actor: String,
    /// For a pause: delete locally buffered data that was not uploaded yet.
    pub purge: bool,
}

/// A pause or resume hook as stored by the client.
pub(crate) type Hook = Arc<dyn Fn(&StateEvent) -> HookResult + Send + Sync>;

/// The hooks a client runs, in the session task, when a program's state changes.
#[derive(Clone)]
pub(crate) struct Hooks {
    pub(crate) on_pause: Hook,
    pub(crate) on_resume: Hook,
}

/// A hook that does nothing and succeeds: the default for both hooks.
pub(crate) fn noop_hook() -> Hook {
    Arc::new(|_: &StateEvent| Ok(()))
}

/// Longest hook error sent in an Ack, in bytes. A hook can return any text; a huge one
/// must not make the Ack exceed the replica's message size limit and break the session.
const MAX_HOOK_ERROR_LEN: usize = 1024;

/// Renders a hook error with its sources (`outer: inner: root`), cut to a bounded length.
pub(crate) fn hook_error_text(error: &(dyn Error + 'static)) -> String {
    truncate(error_chain(error), MAX_HOOK_ERROR_LEN)
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `…`
/// (`max` must leave room for the mark: at least 3 bytes).
fn truncate(mut text: String, max: usize) -> String {
    const MARK: &str = "…";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

#[cfg(test)]
mod tests {
    use super::{MAX_HOOK_ERROR_LEN, hook_error_text, truncate};
    use std::error::Error;

    #[test]
    fn error_text_is_bounded() {
        let long: Box<dyn Error + Send + Sync> = "é".repeat(MAX_HOOK_ERROR_LEN).into();
        let text = hook_error_text(long.as_ref());
        assert!(text.len() <= MAX_HOOK_ERROR_LEN);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let check = |text: &str, max: usize, expected: &str| {
            assert_eq!(
                truncate(text.to_owned(), max),
                expected,
                "{text:?} to {max}"
            );
        };
        check("", 4, "");
        check("abcd", 4, "abcd");
        check("abcde", 4, "a…");
        check("éé", 4, "éé");
        check("ééé", 5, "é…");
        check("ééé", 6, "ééé");
        check("éééé", 6, "é…");
    }
}
