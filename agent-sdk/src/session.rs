//! The session task: keeps one `CollectorService.Session` open to a control replica,
//! applies the states it receives, acknowledges them, and reconnects when the session ends.
//!
//! Everything here runs in one task, so states are applied one at a time, in the order
//! they arrive, hooks included. Every await also waits for the client's cancellation
//! token, so shutting down never waits for the network or for a hook.

use std::collections::HashMap;
use std::convert::Infallible;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use killswitch_proto::v1::collector_service_client::CollectorServiceClient;
use killswitch_proto::v1::{
    Ack, CollectorMessage, Hello, ProgramState, RunState, Seen, Snapshot, collector_message,
    control_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Uri};
use tracing::{debug, info, warn};

use crate::apply::{self, Change, Incoming, Step};
use crate::backoff::Backoff;
use crate::error::error_chain;
use crate::event::{Hooks, StateEvent, hook_error_text};
use crate::programs::{Applied, Programs};

/// How long connecting to a replica may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often HTTP/2 pings check the connection, and how long a ping may go unanswered.
/// Without them, a replica whose machine vanished (no FIN, no RST) would leave the
/// session waiting forever instead of moving to another replica.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Outbound messages (Hello, Acks) waiting for the transport. Sending awaits when full,
/// which only slows down acknowledging; it never blocks the gates.
const OUTBOUND_CAPACITY: usize = 16;

/// What the session task needs, validated by the builder.
pub(crate) struct Settings {
    /// Replicas to connect to, tried in turn from a random one.
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) collector_id: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) backoff: Backoff,
    pub(crate) hooks: Hooks,
}

/// The endpoint to reach a replica at `uri`, with the session's connection settings.
pub(crate) fn endpoint(uri: Uri) -> Endpoint {
    Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
}

/// Runs sessions until `cancel` fires, moving to the next endpoint after each one.
///
/// Every gate is closed when this returns, or when its future is dropped or panics.
pub(crate) async fn run(settings: Settings, programs: Arc<Programs>, cancel: CancellationToken) {
    let _close_gates = CloseGatesOnExit(Arc::clone(&programs));
    let Settings {
        endpoints,
        collector_id,
        labels,
        backoff,
        hooks,
    } = settings;
    let runner = Runner {
        collector_id,
        labels,
        hooks,
        programs,
        cancel,
    };
    let mut rng = fastrand::Rng::new();
    let start = rng.usize(..endpoints.len().max(1));
    let mut attempt: u32 = 0;
    for endpoint in endpoints.iter().cycle().skip(start) {
        let mut synced = false;
        let end = runner.session(endpoint, &mut synced).await;
        if synced {
            attempt = 0;
        }
        let delay = match end {
            End::Cancelled => break,
            End::Drained(after) => {
                let delay = after
                    .min(backoff.max)
                    .saturating_add(backoff.delay(0, &mut rng));
                info!(endpoint = %endpoint.uri(), reconnect_in = ?delay, "killswitch replica is draining");
                delay
            }
            End::Lost(reason) => {
                let delay = backoff.delay(attempt, &mut rng);
                attempt = attempt.saturating_add(1);
                warn!(
                    endpoint = %endpoint.uri(),
                    %reason,
                    reconnect_in = ?delay,
                    "killswitch session down, reconnecting; gates keep their state",
                );
                delay
            }
        };
        if runner
            .until_cancelled(tokio::time::sleep(delay))
            .await
            .is_err()
        {
            break;
        }
    }
    debug!("killswitch session task stopped");
}

/// Closes every gate when dropped: the task can stop in three ways (cancelled, its future
/// dropped with the runtime, a panic) and in each a gate must not stay open with nobody
/// left to close it.
struct CloseGatesOnExit(Arc<Programs>);

impl Drop for CloseGatesOnExit {
    fn drop(&mut self) {
        self.0.close_all();
    }
}

/// Why a session ended.
enum End {
    /// The client is shutting down.
    Cancelled,
    /// The replica is shutting down and asked to reconnect after this delay.
    Drained(Duration),
    /// Connecting failed, the stream failed or the replica closed it.
    Lost(String),
}

impl End {
    fn lost(context: &str, error: &(dyn Error + 'static)) -> Self {
        Self::Lost(format!("{context}: {}", error_chain(error)))
    }
}

/// The part of the session task that one session uses.
struct Runner {
    collector_id: String,
    labels: HashMap<String, String>,
    hooks: Hooks,
    programs: Arc<Programs>,
    cancel: CancellationToken,
}

impl Runner {
    /// Runs one session with `endpoint` until it ends; sets `synced` once a Snapshot arrived.
    async fn session(&self, endpoint: &Endpoint, synced: &mut bool) -> End {
        match self.try_session(endpoint, synced).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn try_session(&self, endpoint: &Endpoint, synced: &mut bool) -> Result<Infallible, End> {
        let channel = self
            .until_cancelled(endpoint.connect())
            .await?
            .map_err(|error| End::lost("cannot connect", &error))?;
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        self.send(&outbound, self.hello()).await?;
        let mut client = CollectorServiceClient::new(channel);
        let mut inbound = self
            .until_cancelled(client.session(ReceiverStream::new(outbound_rx)))
            .await?
            .map_err(|status| End::Lost(format!("session refused: {status}")))?
            .into_inner();
        info!(endpoint = %endpoint.uri(), "killswitch session open");

        loop {
            let message = self
                .until_cancelled(inbound.message())
                .await?
                .map_err(|status| End::Lost(format!("session failed: {status}")))?
                .ok_or_else(|| End::Lost("the replica closed the session".to_owned()))?;
            match message.msg {
                Some(control_message::Msg::Snapshot(snapshot)) => {
                    *synced = true;
                    self.snapshot(snapshot, &outbound).await?;
                }
                Some(control_message::Msg::Update(update)) => match update.state {
                    Some(state) => self.apply(state, &outbound).await?,
                    None => warn!("ignoring an update without a state"),
                },
                Some(control_message::Msg::Heartbeat(heartbeat)) => debug!(
                    revision = heartbeat.revision,
                    valid_for_ms = heartbeat.valid_for_ms,
                    "heartbeat",
                ),
                Some(control_message::Msg::Drain(drain)) => {
                    return Err(End::Drained(Duration::from_millis(
                        drain.reconnect_after_ms,
                    )));
                }
                // A message kind added to the protocol after this SDK was built.
                None => debug!("ignoring an unknown control message"),
            }
        }
    }

    /// The first message of a session: who we are, what we obey, what we have applied.
    fn hello(&self) -> CollectorMessage {
        let programs = self
            .programs
            .iter()
            .map(|(name, _)| name.to_owned())
            .collect();
        let seen = self
            .programs
            .iter()
            .filter_map(|(name, program)| {
                let applied = program.applied()?;
                Some(Seen {
                    program: name.to_owned(),
                    generation: applied.generation,
                })
            })
            .collect();
        CollectorMessage {
            msg: Some(collector_message::Msg::Hello(Hello {
                collector_id: self.collector_id.clone(),
                labels: self.labels.clone(),
                programs,
                seen,
                sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
            })),
        }
    }

    /// Applies the state of every program named in Hello.
    async fn snapshot(
        &self,
        snapshot: Snapshot,
        outbound: &mpsc::Sender<CollectorMessage>,
    ) -> Result<(), End> {
        let Snapshot {
            states,
            unknown_programs,
        } = snapshot;
        debug!(
            states = states.len(),
            unknown = unknown_programs.len(),
            "snapshot"
        );
        for name in unknown_programs {
            if let Some(program) = self.programs.get(&name) {
                // Pause always wins: a program the control plane does not know must not
                // collect. The gate is normally closed already; this keeps it so.
                program.gate.close();
                warn!(
                    program = %name,
                    "the control plane does not know this program: its gate stays closed \
                     until the program is created and resumed",
                );
            }
        }
        for state in states {
            self.apply(state, outbound).await?;
        }
        Ok(())
    }

    /// Applies one program state: decides with [`apply::step`], runs the hook, moves the
    /// gate, records the generation and acknowledges.
    async fn apply(
        &self,
        state: ProgramState,
        outbound: &mpsc::Sender<CollectorMessage>,
    ) -> Result<(), End> {
        let Incoming { desired, event } = Incoming::from(state);
        let Some(program) = self.programs.get(&event.program) else {
            warn!(program = %event.program, "ignoring a state for a program this collector did not register");
            return Ok(());
        };
        let applied = program.applied();
        let last = applied.as_ref().map(|applied| applied.generation);
        let change = match apply::step(last, event.generation, desired) {
            Step::Stale => {
                debug!(
                    program = %event.program,
                    generation = event.generation,
                    applied = last,
                    "ignoring a state older than the one applied",
                );
                return Ok(());
            }
            Step::Reack => {
                if let Some(applied) = applied {
                    debug!(
                        program = %event.program,
                        generation = event.generation,
                        "state already applied: acknowledging it again",
                    );
                    let ack = ack(&event.program, &applied, program.gate.is_active());
                    self.send(outbound, ack).await?;
                }
                return Ok(());
            }
            Step::Change(change) => change,
        };

        if change == Change::Pause {
            // Stop capture before anything else: the hook may be slow, or hang.
            program.gate.close();
            info!(
                program = %event.program,
                generation = event.generation,
                reason = %event.reason,
                actor = %event.actor,
                "killswitch paused the program: gate closed",
            );
        }
        let hook = self.run_hook(change, event.clone()).await?;
        let settled = change.settle(hook);
        if settled.open {
            program.gate.open();
        } else {
            program.gate.close();
        }
        match (change, settled.error.as_str()) {
            (Change::Pause, "") => debug!(program = %event.program, "pause hook done"),
            (Change::Pause, error) => {
                warn!(program = %event.program, %error, "pause hook failed; the gate is closed");
            }
            (Change::Resume, "") => info!(
                program = %event.program,
                generation = event.generation,
                reason = %event.reason,
                actor = %event.actor,
                "killswitch resumed the program: gate open",
            ),
            (Change::Resume, error) => warn!(
                program = %event.program,
                generation = event.generation,
                %error,
                "resume hook failed; the gate stays closed",
            ),
        }

        let applied = Applied {
            generation: event.generation,
            at: SystemTime::now(),
            error: settled.error,
        };
        program.set_applied(applied.clone());
        self.send(outbound, ack(&event.program, &applied, settled.open))
            .await
    }

    /// Runs the hook for `change` on the blocking pool (a hook may block) and returns its
    /// outcome; a panic counts as a failure.
    ///
    /// If the client shuts down meanwhile, this stops waiting: the hook still runs to its
    /// end, but the task is gone and nothing can open a gate any more.
    async fn run_hook(&self, change: Change, event: StateEvent) -> Result<Result<(), String>, End> {
        let hook = Arc::clone(match change {
            Change::Pause => &self.hooks.on_pause,
            Change::Resume => &self.hooks.on_resume,
        });
        let joined = self
            .until_cancelled(tokio::task::spawn_blocking(move || hook(&event)))
            .await?;
        Ok(match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(hook_error_text(&*error)),
            Err(join) if join.is_panic() => Err(format!("{} hook panicked", change.hook_name())),
            // Only happens while the runtime shuts down.
            Err(_) => Err(format!("{} hook was cancelled", change.hook_name())),
        })
    }

    /// Queues `message` for the replica.
    async fn send(
        &self,
        outbound: &mpsc::Sender<CollectorMessage>,
        message: CollectorMessage,
    ) -> Result<(), End> {
        self.until_cancelled(outbound.send(message))
            .await?
            .map_err(|_| End::Lost("the session's outbound stream closed".to_owned()))
    }

    /// Awaits `future` unless the client shuts down first.
    async fn until_cancelled<F: Future>(&self, future: F) -> Result<F::Output, End> {
        self.cancel
            .run_until_cancelled(future)
            .await
            .ok_or(End::Cancelled)
    }
}

/// The Ack for the state `applied` of `program`, with the gate `open` or not.
fn ack(program: &str, applied: &Applied, open: bool) -> CollectorMessage {
    let effective = if open {
        RunState::Running
    } else {
        RunState::Paused
    };
    CollectorMessage {
        msg: Some(collector_message::Msg::Ack(Ack {
            program: program.to_owned(),
            generation: applied.generation,
            effective: effective.into(),
            applied_at: Some(killswitch_proto::timestamp(applied.at)),
            // This version's hooks cannot report a purge; a later version adds it.
            purged: false,
            error: applied.error.clone(),
        })),
    }
}
