//! Running pause and resume hooks: sync ones on the blocking pool, async ones as tasks,
//! each within a timeout, with panics caught; and [`Hooks::carry_out`], which moves a gate
//! around a hook so that pause always wins.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::{AbortHandle, JoinError, JoinHandle};
use tokio::time::Instant;

use crate::apply::{Change, HookOutcome, Settled};
use crate::error::error_chain;
use crate::event::{HookResult, StateEvent};
use crate::gate::Gate;

/// How long a hook may run when the collector does not say otherwise.
pub(crate) const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// A sync hook: runs on tokio's blocking pool.
type SyncHook = Arc<dyn Fn(&StateEvent) -> HookResult + Send + Sync>;

/// The future an async hook returns, boxed.
type HookFuture = Pin<Box<dyn Future<Output = HookResult> + Send>>;

/// An async hook: its future runs as a task of its own.
type AsyncHook = Arc<dyn Fn(StateEvent) -> HookFuture + Send + Sync>;

/// A pause or resume hook as the client stores it.
#[derive(Clone)]
pub(crate) enum Hook {
    /// Set with `on_pause` / `on_resume`.
    Sync(SyncHook),
    /// Set with `on_pause_async` / `on_resume_async`.
    Async(AsyncHook),
}

impl Hook {
    /// Wraps a sync hook.
    pub(crate) fn sync<F>(hook: F) -> Self
    where
        F: Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
    {
        Self::Sync(Arc::new(hook))
    }

    /// Wraps an async hook.
    pub(crate) fn from_async<F, Fut>(hook: F) -> Self
    where
        F: Fn(StateEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        Self::Async(Arc::new(move |event| -> HookFuture {
            Box::pin(hook(event))
        }))
    }

    /// Starts the hook for `event`: a sync hook on the blocking pool, an async one as a
    /// task. The hook itself is called inside that thread or task, so even a panic
    /// before an async hook returns its future is caught by the join.
    fn spawn(&self, event: StateEvent) -> JoinHandle<HookResult> {
        match self {
            Self::Sync(hook) => {
                let hook = Arc::clone(hook);
                tokio::task::spawn_blocking(move || hook(&event))
            }
            Self::Async(hook) => {
                let hook = Arc::clone(hook);
                tokio::spawn(async move { hook(event).await })
            }
        }
    }
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sync(_) => "Hook::Sync",
            Self::Async(_) => "Hook::Async",
        })
    }
}

/// The hooks a client runs when a program's state changes, and how long each may take.
#[derive(Clone, Debug)]
pub(crate) struct Hooks {
    /// Run after a gate closed; `None` does nothing and succeeds.
    pub(crate) on_pause: Option<Hook>,
    /// Run before a gate opens; `None` does nothing and succeeds.
    pub(crate) on_resume: Option<Hook>,
    /// How long a hook may run before it counts as failed; never zero.
    pub(crate) timeout: Duration,
}

/// What [`Hooks::carry_out`] did, and when (by the system clock, as receipts say it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Carried {
    /// Where the gate ended up.
    pub(crate) settled: Settled,
    /// When the hook returned (or failed, panicked or timed out).
    pub(crate) hook_returned_at: SystemTime,
    /// When carrying out moved the gate: closed it while it was open, or opened it while
    /// it was closed. `None` when it did not move.
    pub(crate) gate_changed_at: Option<SystemTime>,
}

impl Hooks {
    /// Carries out `change` on `gate` for `event`.
    ///
    /// A pause closes the gate before its hook starts, so capture stops even if the hook
    /// is slow or hangs. A resume opens the gate only if its hook succeeded in time and,
    /// when `open_before` is given, the hook returned before that instant (the moment the
    /// program would lose contact: the watchdog could not close a gate while its resume
    /// hook ran, so this is checked here instead). Otherwise the gate is left closed.
    pub(crate) async fn carry_out(
        &self,
        gate: &Gate,
        change: Change,
        event: StateEvent,
        open_before: Option<Instant>,
    ) -> Carried {
        let mut gate_changed_at = None;
        if change == Change::Pause {
            gate_changed_at = set(gate, false);
        }
        let purge_asked = event.purge;
        let outcome = self.run(change, event).await;
        let hook_returned_at = SystemTime::now();
        let mut settled = change.settle(purge_asked, outcome);
        if open_before.is_some_and(|deadline| Instant::now() >= deadline) {
            settled.open = false;
        }
        gate_changed_at = set(gate, settled.open).or(gate_changed_at);
        Carried {
            settled,
            hook_returned_at,
            gate_changed_at,
        }
    }

    /// Runs the hook for `change` and reports what it did.
    ///
    /// Past the timeout an async hook is aborted at its next await. A sync hook cannot be
    /// stopped: it keeps running on the blocking pool, but its outcome is no longer
    /// looked at, so it can no longer open a gate. A panic counts as a failure.
    async fn run(&self, change: Change, event: StateEvent) -> HookOutcome {
        let hook = match change {
            Change::Pause => &self.on_pause,
            Change::Resume => &self.on_resume,
        };
        let Some(hook) = hook else {
            return HookOutcome {
                result: Ok(()),
                purge_confirmed: false,
            };
        };
        // The hook may get the event itself; this clone shares its purge confirmation.
        let confirmation = event.clone();
        let name = change.hook_name();
        let task = hook.spawn(event);
        // Dropping the wait (timeout, or the client shutting down) aborts an async hook.
        let _abort = AbortOnDrop(task.abort_handle());
        let result = match tokio::time::timeout(self.timeout, task).await {
            Err(_elapsed) => Err(format!("{name} hook timed out after {:?}", self.timeout)),
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(hook_error_text(&*error)),
            Ok(Err(join)) => Err(join_error_text(name, join)),
        };
        HookOutcome {
            purge_confirmed: confirmation.purge_confirmed(),
            result,
        }
    }
}

/// Opens or closes `gate`; returns when, if that moved it. Only the session task opens
/// gates, so nothing opens it between the check and the store.
fn set(gate: &Gate, open: bool) -> Option<SystemTime> {
    let moved = gate.is_active() != open;
    if open {
        gate.open();
    } else {
        gate.close();
    }
    moved.then(SystemTime::now)
}

/// Aborts a task when dropped, so no async hook outlives the wait for it.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Longest hook error sent in an Ack, in bytes. A hook can return any text; a huge one
/// must not make the Ack exceed the replica's message size limit and break the session.
const MAX_HOOK_ERROR_LEN: usize = 1024;

/// Renders a hook error with its sources (`outer: inner: root`), cut to a bounded length.
fn hook_error_text(error: &(dyn Error + 'static)) -> String {
    truncate(error_chain(error), MAX_HOOK_ERROR_LEN)
}

/// Renders why a hook's thread or task did not return: a panic (with its message when it
/// is text) or, while the runtime shuts down, a cancellation.
fn join_error_text(name: &str, join: JoinError) -> String {
    if !join.is_panic() {
        return format!("{name} hook was cancelled");
    }
    match panic_message(join.into_panic().as_ref()) {
        Some(message) => truncate(
            format!("{name} hook panicked: {message}"),
            MAX_HOOK_ERROR_LEN,
        ),
        None => format!("{name} hook panicked"),
    }
}

/// The message of a panic payload, when it is text (as `panic!` makes it).
fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
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
    use super::{Carried, Hook, Hooks, MAX_HOOK_ERROR_LEN, hook_error_text, truncate};
    use crate::apply::{Change, Settled};
    use crate::event::{Cause, StateEvent};
    use crate::gate::Gate;
    use std::cmp::Ordering;
    use std::error::Error;
    use std::sync::mpsc;
    use std::time::Duration;
    use tokio::time::Instant;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Hooks where both the pause and the resume hook are `hook`.
    fn hooks(hook: Hook) -> Hooks {
        Hooks {
            on_pause: Some(hook.clone()),
            on_resume: Some(hook),
            timeout: TIMEOUT,
        }
    }

    fn event(purge: bool) -> StateEvent {
        let mut event = StateEvent::new("keys".to_owned(), 7, Cause::Update);
        event.purge = purge;
        event
    }

    /// Carries out `change` on a gate that starts `open`; returns the gate and the result.
    async fn carry_out(hooks: &Hooks, change: Change, open: bool, purge: bool) -> (Gate, Settled) {
        let gate = Gate::closed();
        if open {
            gate.open();
        }
        let settled = hooks.carry_out(&gate, change, event(purge), None).await;
        (gate, settled.settled)
    }

    fn settled(open: bool, error: &str, purged: bool) -> Settled {
        Settled {
            open,
            error: error.to_owned(),
            purged,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reports_when_the_gate_moved() {
        let ok = hooks(Hook::sync(|_| Ok(())));
        let failing = hooks(Hook::sync(|_| Err("camera busy".into())));
        // (hooks, change, gate open before, when it moved relative to the hook's return)
        for (hooks, change, open, expected) in [
            // A pause closes an open gate before its hook runs...
            (&ok, Change::Pause, true, Some("before")),
            // ...and does not move a closed one.
            (&ok, Change::Pause, false, None),
            // A resume opens a closed gate once its hook returned.
            (&ok, Change::Resume, false, Some("after")),
            (&ok, Change::Resume, true, None),
            // A failed resume leaves a closed gate closed, and closes an open one.
            (&failing, Change::Resume, false, None),
            (&failing, Change::Resume, true, Some("after")),
        ] {
            let gate = Gate::closed();
            if open {
                gate.open();
            }
            let carried: Carried = hooks.carry_out(&gate, change, event(false), None).await;
            let returned = carried.hook_returned_at;
            let actual = carried.gate_changed_at.map(|at| match at.cmp(&returned) {
                Ordering::Less => "before",
                Ordering::Greater => "after",
                // The clock did not tick in between: either is true.
                Ordering::Equal => expected.unwrap_or("at"),
            });
            assert_eq!(actual, expected, "{change:?} from open {open}: {carried:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn successful_hooks_move_the_gate() {
        for hook in [
            Hook::sync(|_| Ok(())),
            Hook::from_async(|_| async { Ok(()) }),
        ] {
            let hooks = hooks(hook);
            let (gate, result) = carry_out(&hooks, Change::Resume, false, false).await;
            assert!(gate.is_active());
            assert_eq!(result, settled(true, "", false));
            let (gate, result) = carry_out(&hooks, Change::Pause, true, false).await;
            assert!(!gate.is_active());
            assert_eq!(result, settled(false, "", false));
        }
        // No hook at all succeeds.
        let none = Hooks {
            on_pause: None,
            on_resume: None,
            timeout: TIMEOUT,
        };
        let (gate, result) = carry_out(&none, Change::Resume, false, false).await;
        assert!(gate.is_active());
        assert_eq!(result, settled(true, "", false));
    }

    #[tokio::test(start_paused = true)]
    async fn failing_hooks_keep_the_gate_closed() {
        for hook in [
            Hook::sync(|_| Err("camera busy".into())),
            Hook::from_async(|_| async { Err("camera busy".into()) }),
        ] {
            let hooks = hooks(hook);
            let (gate, result) = carry_out(&hooks, Change::Resume, false, false).await;
            assert!(!gate.is_active());
            assert_eq!(result, settled(false, "camera busy", false));
            let (gate, result) = carry_out(&hooks, Change::Pause, true, false).await;
            assert!(!gate.is_active());
            assert_eq!(result, settled(false, "camera busy", false));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn panicking_hooks_keep_the_gate_closed() {
        let sync = Hook::sync(|_| panic!("lens cap on"));
        let before_future = Hook::from_async(|_| -> std::future::Ready<crate::HookResult> {
            panic!("lens cap on")
        });
        let in_future = Hook::from_async(|_| async { panic!("lens cap on") });
        for hook in [sync, before_future, in_future] {
            let hooks = hooks(hook.clone());
            let (gate, result) = carry_out(&hooks, Change::Resume, false, false).await;
            assert!(!gate.is_active(), "{hook:?}");
            assert_eq!(
                result,
                settled(false, "resume hook panicked: lens cap on", false),
                "{hook:?}"
            );
            let (gate, result) = carry_out(&hooks, Change::Pause, true, true).await;
            assert!(!gate.is_active(), "{hook:?}");
            assert_eq!(
                result,
                settled(false, "pause hook panicked: lens cap on", false)
            );
        }
        let formatted = Hook::sync(|event| panic!("no camera for {}", event.program));
        let (_, result) = carry_out(&hooks(formatted), Change::Resume, false, false).await;
        assert_eq!(result.error, "resume hook panicked: no camera for keys");
    }

    #[tokio::test(start_paused = true)]
    async fn async_hook_timing_out_is_an_error_and_keeps_the_gate_closed() {
        let hooks = hooks(Hook::from_async(|_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }));
        let start = Instant::now();
        let (gate, result) = carry_out(&hooks, Change::Resume, false, false).await;
        assert_eq!(start.elapsed(), TIMEOUT);
        assert!(!gate.is_active());
        assert_eq!(
            result,
            settled(false, "resume hook timed out after 10s", false)
        );
        let (gate, result) = carry_out(&hooks, Change::Pause, true, false).await;
        assert!(!gate.is_active());
        assert_eq!(
            result,
            settled(false, "pause hook timed out after 10s", false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn async_hook_finishing_just_in_time_succeeds() {
        let hooks = hooks(Hook::from_async(|_| async {
            tokio::time::sleep(TIMEOUT - Duration::from_millis(1)).await;
            Ok(())
        }));
        let (gate, result) = carry_out(&hooks, Change::Resume, false, false).await;
        assert!(gate.is_active());
        assert_eq!(result, settled(true, "", false));
    }

    #[tokio::test(start_paused = true)]
    async fn sync_hook_timing_out_cannot_open_the_gate() {
        // A blocking hook keeps tokio from advancing paused time by itself, so the test
        // advances it. The hook blocks until released and then succeeds: too late.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let started_tx = std::sync::Mutex::new(Some(started_tx));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let hooks = hooks(Hook::sync(move |event| {
            if let Some(started) = started_tx.lock().ok().and_then(|mut tx| tx.take()) {
                let _ = started.send(());
            }
            let _ = release_rx.lock().map(|rx| rx.recv());
            event.confirm_purge();
            Ok(())
        }));
        let gate = Gate::closed();
        let run = hooks.carry_out(&gate, Change::Resume, event(false), None);
        let advance = async {
            let _ = started_rx.await;
            tokio::time::advance(TIMEOUT).await;
        };
        let (result, ()) = tokio::join!(run, advance);
        assert_eq!(
            result.settled,
            settled(false, "resume hook timed out after 10s", false)
        );
        assert!(!gate.is_active());
        // Released late, the hook returns Ok and nothing opens the gate.
        let _ = release_tx.send(());
        tokio::task::yield_now().await;
        assert!(!gate.is_active());
    }

    #[tokio::test(start_paused = true)]
    async fn purge_is_reported_only_when_confirmed() {
        let confirming = hooks(Hook::sync(|event| {
            event.confirm_purge();
            Ok(())
        }));
        let (_, result) = carry_out(&confirming, Change::Pause, true, true).await;
        assert_eq!(result, settled(false, "", true));
        // Not asked: nothing to report, even if the hook confirms.
        let (_, result) = carry_out(&confirming, Change::Pause, true, false).await;
        assert_eq!(result, settled(false, "", false));

        let forgetting = hooks(Hook::from_async(|_| async { Ok(()) }));
        let (_, result) = carry_out(&forgetting, Change::Pause, true, true).await;
        assert_eq!(result, settled(false, "", false));

        // Confirmed on a clone moved into the async hook's future, then failed.
        let failing = hooks(Hook::from_async(|event: StateEvent| async move {
            event.confirm_purge();
            Err("upload queue locked".into())
        }));
        let (_, result) = carry_out(&failing, Change::Pause, true, true).await;
        assert_eq!(result, settled(false, "upload queue locked", false));
    }

    #[tokio::test(start_paused = true)]
    async fn resume_returning_after_losing_contact_keeps_the_gate_closed() {
        let hooks = hooks(Hook::from_async(|_| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        }));
        let gate = Gate::closed();
        let deadline = Instant::now() + Duration::from_secs(1);
        let result = hooks
            .carry_out(&gate, Change::Resume, event(false), Some(deadline))
            .await;
        assert_eq!(result.settled, settled(false, "", false));
        assert!(!gate.is_active());
        let deadline = Instant::now() + Duration::from_secs(3);
        let result = hooks
            .carry_out(&gate, Change::Resume, event(false), Some(deadline))
            .await;
        assert_eq!(result.settled, settled(true, "", false));
        assert!(gate.is_active());
    }

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
