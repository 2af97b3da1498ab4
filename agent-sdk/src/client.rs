//! [`Client`]: the handle a collector keeps while it runs.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::warn;

use crate::gate::Gate;
use crate::programs::Programs;

/// A running connection to the Killswitch control plane.
///
/// Built with [`Client::builder`]. A background task on the tokio runtime keeps one
/// session open to a control replica, applies the states it sends (running the pause and
/// resume hooks), acknowledges them, and reconnects with [`Backoff`](crate::Backoff) when
/// the session ends.
///
/// The same task is the lost-contact watchdog: when nothing (no Snapshot, Update or
/// Heartbeat) came from the control plane within a fail-closed program's grace period,
/// connected or not, it closes the program's gate and runs the pause hook with
/// [`Cause::LostContact`](crate::Cause::LostContact). Fail-open programs keep their state.
///
/// Call [`shutdown`](Client::shutdown) to stop. Dropping the client also stops the task,
/// and its gates close as it ends, but without waiting for that.
#[derive(Debug)]
pub struct Client {
    programs: Arc<Programs>,
    task: JoinHandle<()>,
    /// Cancels the session task when the client is dropped or shut down.
    cancel: DropGuard,
}

impl Client {
    /// The handle of a started session task `task`, which `cancel` stops, and of the
    /// `programs` it obeys. (`Client::builder` is defined in `builder.rs`, so that this
    /// module needs nothing from the builder.)
    pub(crate) fn new(
        programs: Arc<Programs>,
        task: JoinHandle<()>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            programs,
            task,
            cancel: cancel.drop_guard(),
        }
    }

    /// The gate of `program`, or `None` if it was not registered with
    /// [`ClientBuilder::program`](crate::ClientBuilder::program). Clones share one
    /// switch: get it once, then check [`Gate::is_active`] per event.
    #[must_use]
    pub fn gate(&self, program: &str) -> Option<Gate> {
        self.programs
            .get(program)
            .map(|program| program.gate.clone())
    }

    /// The generation last applied for `program` (whether its hook succeeded or not), or
    /// `None` if none was yet or the program was not registered. With a
    /// [state file](crate::ClientBuilder::state_file), it starts from the file's
    /// generation.
    #[must_use]
    pub fn applied_generation(&self, program: &str) -> Option<u64> {
        let applied = self.programs.get(program)?.applied()?;
        Some(applied.generation)
    }

    /// Stops the session task, waits for it to end and closes every gate.
    ///
    /// It does not wait for a hook that is running: a sync hook runs to its end on the
    /// blocking pool, an async hook is aborted at its next await; neither can open a gate
    /// any more.
    pub async fn shutdown(self) {
        let Self {
            programs,
            task,
            cancel,
        } = self;
        drop(cancel);
        if let Err(error) = task.await {
            warn!(%error, "killswitch session task failed");
        }
        programs.close_all();
    }
}
