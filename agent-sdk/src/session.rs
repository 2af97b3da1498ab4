//! The session task: keeps one `CollectorService.Session` open to a control replica,
//! applies the states it receives, acknowledges them, reconnects when the session ends,
//! and runs the lost-contact watchdog all along.
//!
//! Everything here runs in one task, so states are applied one at a time, in the order
//! they arrive, hooks included. Every await goes through [`Runner::wait`] or
//! [`Runner::wait_closing_gates`], which also wait for the client's cancellation token (so
//! shutting down never waits for the network or for a hook) and for the watchdog's next
//! deadline (so a fail-closed program pauses on time whatever the task is waiting for: a
//! message, a connection, a backoff delay, a hook).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::error::Error;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use killswitch_proto::prost_types::Timestamp;
use killswitch_proto::v1::collector_service_client::CollectorServiceClient;
use killswitch_proto::v1::{
    Ack, CollectorMessage, Hello, ProgramState, Receipt, RunState, SignedReceipt, Snapshot,
    collector_message, control_message,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{ClientTlsConfig, Endpoint, Uri};
use tracing::{debug, info, warn};

use crate::apply::{self, Change, Decision, Desired, Incoming, Last, Settled};
use crate::backoff::Backoff;
use crate::error::error_chain;
use crate::event::{Cause, StateEvent};
use crate::hook::{Carried, Hooks};
use crate::policy::{OnLostContact, Policy};
use crate::programs::{Applied, Contact, Program, Programs};
use crate::receipt::{NO_CLIENT_CERTIFICATE, Receipts};
use crate::signing::{self, Trust};
use crate::state_file::StateFile;

/// How long connecting to a replica may take before the attempt counts as failed; with
/// TLS, the handshake may take as long again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often HTTP/2 pings check the connection, and how long a ping may go unanswered.
/// Without them, a replica whose machine vanished (no FIN, no RST) would leave the
/// session waiting forever instead of moving to another replica.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// This SDK's version, sent in Hello and signed in receipts.
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Outbound messages (Hello, Acks) waiting for the transport. Sending awaits when full,
/// which only slows down acknowledging; it never blocks the gates.
const OUTBOUND_CAPACITY: usize = 16;

/// Where a session's messages to the replica go.
type Outbound = mpsc::Sender<CollectorMessage>;

/// What the session task needs, validated by the builder.
pub(crate) struct Settings {
    /// Replicas to connect to, tried in turn from a random one.
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) collector_id: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) backoff: Backoff,
    pub(crate) hooks: Hooks,
    pub(crate) state_file: Option<StateFile>,
    /// Which operator keys sign resumes, and how many signatures a resume needs.
    pub(crate) trust: Trust,
    /// How receipts are signed: with the client certificate's key, if there is one.
    pub(crate) receipts: Receipts,
}

/// The endpoint to reach a replica at `uri`, with the session's connection settings and,
/// for an `https` endpoint, `tls` (the server name is `uri`'s host).
///
/// # Errors
///
/// The TLS configuration is unusable (tonic builds it here, not at connect time).
pub(crate) fn endpoint(
    uri: Uri,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint, tonic::transport::Error> {
    // `Uri::host` keeps the brackets of an IPv6 address, which no server name has.
    let host = uri
        .host()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'));
    let server_name = host.unwrap_or_default().to_owned();
    let endpoint = Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    match tls {
        // Without a handshake timeout, a replica that accepts TCP but never answers the
        // handshake would hold the session here instead of moving to the next replica.
        Some(tls) => endpoint.tls_config(
            tls.clone()
                .domain_name(server_name)
                .timeout(CONNECT_TIMEOUT),
        ),
        None => Ok(endpoint),
    }
}

/// Resumes the fail-open programs the state file says were RUNNING, then runs sessions
/// until `cancel` fires, moving to the next endpoint after each one.
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
        state_file,
        trust,
        receipts,
    } = settings;
    let mut runner = Runner::new(collector_id, labels, hooks, state_file, programs, cancel);
    runner.trust = trust;
    runner.receipts = receipts;
    if runner.resume_from_state_file().await.is_err() {
        debug!("killswitch session task stopped");
        return;
    }
    let mut rng = fastrand::Rng::new();
    let start = rng.usize(..endpoints.len().max(1));
    let mut attempt: u32 = 0;
    for endpoint in endpoints.iter().cycle().skip(start) {
        let mut up_since = None;
        let end = runner.session(endpoint, &mut up_since).await;
        let up_for = up_since.map(|since: Instant| since.elapsed());
        attempt = backoff.attempt_after(attempt, up_for);
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
                    "killswitch session down, reconnecting; fail-closed programs pause \
                     if contact is not back within their grace period",
                );
                delay
            }
        };
        if runner.wait(None, tokio::time::sleep(delay)).await.is_err() {
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
#[derive(Debug)]
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

/// Whether the watchdog watches a program in this applied state: one the control plane
/// last said is RUNNING and that is not paused for lost contact already. (A program that
/// is PAUSED has nothing to stop; a fail-open one never loses contact, which its policy
/// says.)
fn watched(applied: &Applied) -> bool {
    applied.desired == Desired::Running && applied.contact == Contact::Current
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The state of the session task that outlives one session.
struct Runner {
    collector_id: String,
    /// Its labels, sorted: sent in Hello, and matched against signed statements' selectors.
    labels: BTreeMap<String, String>,
    hooks: Hooks,
    state_file: Option<StateFile>,
    programs: Arc<Programs>,
    cancel: CancellationToken,
    /// Which resumes may open a gate (by default every one).
    trust: Trust,
    /// How receipts are signed (by default not at all: no client certificate).
    receipts: Receipts,
    /// When a replica was last heard from (any Snapshot, Update or Heartbeat): the
    /// watchdog's clock. A std mutex around a copy type, never held across an await.
    last_contact: Mutex<Instant>,
    /// The highest plausible revision a heartbeat reported (see [`apply::plausible`]).
    heard: AtomicU64,
}

impl Runner {
    fn new(
        collector_id: String,
        labels: HashMap<String, String>,
        hooks: Hooks,
        state_file: Option<StateFile>,
        programs: Arc<Programs>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            collector_id,
            labels: labels.into_iter().collect(),
            hooks,
            state_file,
            programs,
            cancel,
            trust: Trust::default(),
            receipts: Receipts::Unsigned(NO_CLIENT_CERTIFICATE.to_owned()),
            last_contact: Mutex::new(Instant::now()),
            heard: AtomicU64::new(0),
        }
    }

    /// Runs the resume hook of every fail-open program that the state file says was
    /// RUNNING, and opens its gate if the hook succeeds. A program whose hook fails stays
    /// paused until the control plane says RUNNING again.
    async fn resume_from_state_file(&self) -> Result<(), End> {
        for (name, program) in self.programs.iter() {
            let Some(applied) = program.applied() else {
                continue;
            };
            let fail_open = applied.policy.on_lost_contact == OnLostContact::Keep;
            if !(fail_open && applied.desired == Desired::Running) {
                continue;
            }
            let event = StateEvent::new(name.to_owned(), applied.generation, Cause::StateFile);
            let carried = self
                .wait_closing_gates(self.hooks.carry_out(
                    &program.gate,
                    Change::Resume,
                    event,
                    None,
                ))
                .await?;
            let Settled {
                open, ref error, ..
            } = carried.settled;
            if open {
                info!(
                    program = name,
                    generation = applied.generation,
                    "killswitch resumed the fail-open program from its state file: gate open",
                );
            } else {
                warn!(
                    program = name,
                    generation = applied.generation,
                    %error,
                    "resume hook failed for the state file's RUNNING; the gate stays closed \
                     until the control plane says RUNNING",
                );
            }
            program.update(|applied| {
                if open {
                    applied.contact = Contact::Current;
                }
                applied.at = carried.hook_returned_at;
                applied.error.clone_from(error);
            });
            self.seal_receipt(
                name,
                program,
                Witnessed::by_itself(Cause::StateFile, &carried),
            );
        }
        Ok(())
    }

    /// Runs one session with `endpoint` until it ends; sets `up_since` when the first
    /// Snapshot arrived.
    async fn session(&self, endpoint: &Endpoint, up_since: &mut Option<Instant>) -> End {
        match self.try_session(endpoint, up_since).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn try_session(
        &self,
        endpoint: &Endpoint,
        up_since: &mut Option<Instant>,
    ) -> Result<Infallible, End> {
        let channel = self
            .wait(None, endpoint.connect())
            .await?
            .map_err(|error| End::lost("cannot connect", &error))?;
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        // Hello goes first, so nothing else may be sent until it is queued: lost-contact
        // Acks wait for the Snapshot (which acknowledges every program anyway).
        self.wait(None, outbound.send(self.hello()))
            .await?
            .map_err(|_| End::Lost("the session's outbound stream closed".to_owned()))?;
        let mut client = CollectorServiceClient::new(channel);
        let mut inbound = self
            .wait(None, client.session(ReceiverStream::new(outbound_rx)))
            .await?
            .map_err(|status| End::Lost(format!("session refused: {status}")))?
            .into_inner();
        info!(endpoint = %endpoint.uri(), "killswitch session open");

        let mut synced = None;
        loop {
            let message = self
                .wait(synced, inbound.message())
                .await?
                .map_err(|status| End::Lost(format!("session failed: {status}")))?
                .ok_or_else(|| End::Lost("the replica closed the session".to_owned()))?;
            match message.msg {
                Some(control_message::Msg::Snapshot(snapshot)) => {
                    self.contact();
                    up_since.get_or_insert_with(Instant::now);
                    synced = Some(&outbound);
                    self.snapshot(snapshot, &outbound).await?;
                }
                Some(control_message::Msg::Update(update)) => {
                    self.contact();
                    match update.state {
                        Some(state) => self.apply(state, &outbound).await?,
                        None => warn!("ignoring an update without a state"),
                    }
                }
                Some(control_message::Msg::Heartbeat(heartbeat)) => {
                    self.contact();
                    debug!(
                        revision = heartbeat.revision,
                        valid_for_ms = heartbeat.valid_for_ms,
                        "heartbeat",
                    );
                    if apply::plausible(heartbeat.revision, self.horizon()) {
                        self.heard.fetch_max(heartbeat.revision, Ordering::Relaxed);
                    } else {
                        warn!(
                            revision = heartbeat.revision,
                            "ignoring an implausible revision in a heartbeat",
                        );
                    }
                }
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

    /// The first message of a session: who we are and what we obey. What was applied
    /// before is not sent: the Snapshot carries every state again and each is
    /// acknowledged.
    fn hello(&self) -> CollectorMessage {
        let programs = self
            .programs
            .iter()
            .map(|(name, _)| name.to_owned())
            .collect();
        CollectorMessage {
            msg: Some(collector_message::Msg::Hello(Hello {
                collector_id: self.collector_id.clone(),
                labels: self.labels.clone().into_iter().collect(),
                programs,
                sdk_version: SDK_VERSION.to_owned(),
            })),
        }
    }

    /// Applies the state of every program named in Hello.
    async fn snapshot(&self, snapshot: Snapshot, outbound: &Outbound) -> Result<(), End> {
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
                // collect. The gate is normally closed already; this keeps it so. A gate
                // that was open (a fail-open program started from the state file) is held
                // like one paused for lost contact: a later RUNNING at the same
                // generation, once the replica knows the program, reopens it.
                program.gate.close();
                program.update(|applied| {
                    if applied.contact == Contact::Current && applied.desired == Desired::Running {
                        applied.contact = Contact::Lost;
                    }
                });
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

    /// Applies one program state in three steps: decides what it means
    /// ([`apply::decide`], remembering what the signed-resume rule needs), carries the
    /// change out ([`carry_out`](Runner::carry_out)) and reports it
    /// ([`report`](Runner::report)). A state already applied is only acknowledged again
    /// ([`reack`](Runner::reack)).
    async fn apply(&self, state: ProgramState, outbound: &Outbound) -> Result<(), End> {
        let incoming = Incoming::from(state);
        let Some(program) = self.programs.get(&incoming.event.program) else {
            warn!(program = %incoming.event.program, "ignoring a state for a program this collector did not register");
            return Ok(());
        };
        if !apply::plausible(incoming.event.generation, self.horizon()) {
            // No real replica can send it: applying it (even a PAUSED) would make every
            // later real state look stale.
            warn!(
                program = %incoming.event.program,
                generation = incoming.event.generation,
                horizon = self.horizon(),
                "ignoring a state at an implausible generation: it cannot come from a real \
                 control plane",
            );
            return Ok(());
        }
        let last = program.applied().map(|applied| applied.last());
        let collector = signing::Collector {
            id: &self.collector_id,
            labels: &self.labels,
        };
        let decision = apply::decide(
            last,
            &incoming,
            collector,
            &self.trust,
            &program.signed(),
            program.gate.is_active(),
            SystemTime::now(),
        );
        let Incoming {
            desired,
            policy,
            mut event,
            authorization: _,
            scope,
            committed_at,
        } = incoming;
        let (change, refused) = match decision {
            Decision::Stale => {
                debug!(
                    program = %event.program,
                    generation = event.generation,
                    applied = last.map(|last| last.generation),
                    "ignoring a state older than the one applied",
                );
                return Ok(());
            }
            Decision::Reack => return self.reack(program, &event, last, policy, outbound).await,
            Decision::Resume { cause, accepted } => {
                if let Some(statement) = accepted {
                    program.note_accepted(&statement);
                }
                event.cause = cause;
                (Change::Resume, None)
            }
            Decision::Pause {
                cause,
                refused,
                awaits_stage,
            } => {
                event.cause = cause;
                match &refused {
                    // A RUNNING state whose resume is not signed as required is a pause:
                    // the gate stays (or goes) closed, and the Ack says why.
                    Some(refused) => warn!(
                        program = %event.program,
                        generation = event.generation,
                        %refused,
                        "refusing a RUNNING state: the gate stays closed",
                    ),
                    None if awaits_stage => debug!(
                        program = %event.program,
                        generation = event.generation,
                        "paused until this collector's stage of a signed staged resume",
                    ),
                    None => program.note_paused(event.generation),
                }
                (Change::Pause, refused)
            }
        };
        let carried = self.carry_out(program, change, &event, policy).await?;
        let witnessed = Witnessed {
            cause: event.cause,
            open: carried.settled.open,
            gate_changed_at: carried.gate_changed_at,
            scope,
            committed_at,
        };
        let mut applied = record(&event, desired, policy, refused, carried);
        applied.receipt = Some(self.receipt(&event.program, &applied, witnessed));
        self.report(&event.program, program, applied, outbound)
            .await
    }

    /// Acknowledges again a state already applied, running no hook. A program paused
    /// for lost contact whose state is PAUSED is simply no longer lost.
    async fn reack(
        &self,
        program: &Program,
        event: &StateEvent,
        last: Option<Last>,
        policy: Policy,
        outbound: &Outbound,
    ) -> Result<(), End> {
        if last.is_some_and(|last| last.lost_contact) {
            info!(
                program = %event.program,
                generation = event.generation,
                "contact with the control plane is back; the program stays paused",
            );
        }
        // The policy is the program's, not the state's: it may have changed without a
        // new generation.
        let applied = program.update(|applied| {
            applied.contact = Contact::Current;
            applied.policy = policy;
        });
        self.save_state().await?;
        if let Some(applied) = applied {
            debug!(
                program = %event.program,
                generation = event.generation,
                "state already applied: acknowledging it again",
            );
            let ack = ack(&event.program, &applied, program.gate.is_active());
            self.send(outbound, ack).await?;
        }
        Ok(())
    }

    /// Carries out `change` for `event` on `program`'s gate: a pause closes the gate
    /// before anything else, then the hook runs and the gate moves where its outcome
    /// leaves it (see [`Hooks::carry_out`]).
    async fn carry_out(
        &self,
        program: &Program,
        change: Change,
        event: &StateEvent,
        policy: Policy,
    ) -> Result<Carried, End> {
        let mut closed_at = None;
        if change == Change::Pause {
            // Stop capture before anything else: the hook may be slow, or hang.
            let was_open = program.gate.is_active();
            program.gate.close();
            closed_at = was_open.then(SystemTime::now);
            info!(
                program = %event.program,
                generation = event.generation,
                reason = %event.reason,
                actor = %event.actor,
                "killswitch paused the program: gate closed",
            );
        }
        // While a resume hook runs the watchdog leaves this program alone, so the hook
        // must return before the program would lose contact for the gate to open.
        let open_before = match change {
            Change::Resume => policy.deadline(self.last_contact()),
            Change::Pause => None,
        };
        let mut carried = self
            .wait_closing_gates(self.hooks.carry_out(
                &program.gate,
                change,
                event.clone(),
                open_before,
            ))
            .await?;
        carried.gate_changed_at = carried.gate_changed_at.or(closed_at);
        log_settled(change, event, &carried.settled);
        Ok(carried)
    }

    /// Signs the receipt of the change just recorded for `program` (named `name`), and
    /// keeps it with the applied state, which it returns. Signs outside the lock that
    /// [`Client`](crate::Client) reads it under.
    fn seal_receipt(&self, name: &str, program: &Program, witnessed: Witnessed) -> Option<Applied> {
        let receipt = self.receipt(name, &program.applied()?, witnessed);
        program.update(|applied| applied.receipt = Some(receipt))
    }

    /// The signed receipt of a change that left `program` in `applied`, as `witnessed`.
    fn receipt(
        &self,
        program: &str,
        applied: &Applied,
        witnessed: Witnessed,
    ) -> Arc<SignedReceipt> {
        let Witnessed {
            cause,
            open,
            gate_changed_at,
            scope,
            committed_at,
        } = witnessed;
        let receipt = Receipt {
            collector_id: self.collector_id.clone(),
            program: program.to_owned(),
            generation: applied.generation,
            effective: run_state(open).into(),
            scope,
            cause: cause.as_str().to_owned(),
            gate_changed_at: gate_changed_at.map(killswitch_proto::timestamp),
            hook_returned_at: Some(killswitch_proto::timestamp(applied.at)),
            error: applied.error.clone(),
            purged: applied.purged,
            committed_at,
            sdk_version: SDK_VERSION.to_owned(),
        };
        Arc::new(self.receipts.seal(&receipt))
    }

    /// Records `applied` as `program`'s state (named `name`), saves the state file and
    /// acknowledges it with the gate as it is now.
    async fn report(
        &self,
        name: &str,
        program: &Program,
        applied: Applied,
        outbound: &Outbound,
    ) -> Result<(), End> {
        program.set_applied(applied.clone());
        self.save_state().await?;
        let ack = ack(name, &applied, program.gate.is_active());
        self.send(outbound, ack).await
    }

    /// The highest revision or generation heard so far: heartbeats and applied states.
    fn horizon(&self) -> u64 {
        self.programs
            .iter()
            .filter_map(|(_, program)| program.applied().map(|a| a.generation))
            .fold(self.heard.load(Ordering::Relaxed), u64::max)
    }

    /// Records that a replica was heard from.
    fn contact(&self) {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn last_contact(&self) -> Instant {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The watchdog's next deadline: the first instant at which a watched program loses
    /// contact if nothing arrives, `None` if none can.
    fn next_deadline(&self) -> Option<Instant> {
        let last_contact = self.last_contact();
        self.programs
            .iter()
            .filter_map(|(_, program)| {
                let applied = program.applied()?;
                if !watched(&applied) {
                    return None;
                }
                applied.policy.deadline(last_contact)
            })
            .min()
    }

    /// Closes the gate of every watched program that lost contact at `now`. Their pause
    /// hooks run next, in [`lost_contact_hooks`](Runner::lost_contact_hooks).
    fn close_lost(&self, now: Instant) {
        let last_contact = self.last_contact();
        for (name, program) in self.programs.iter() {
            let Some(applied) = program.applied() else {
                continue;
            };
            if !(watched(&applied) && applied.policy.lost_contact(last_contact, now)) {
                continue;
            }
            let gate_closed_at = program.gate.is_active().then(SystemTime::now);
            program.gate.close();
            program.update(|applied| applied.contact = Contact::LostHookPending { gate_closed_at });
            warn!(
                program = name,
                generation = applied.generation,
                grace = ?applied.policy.grace,
                "no contact with the control plane within the grace period: gate closed \
                 (fail-closed program); it reopens when the control plane says RUNNING again",
            );
        }
    }

    /// Runs the pause hook of every program whose gate the watchdog closed (including
    /// gates it closes while these hooks run), records the outcome and, when a session is
    /// up, acknowledges it there.
    async fn lost_contact_hooks(&self, session: Option<&Outbound>) -> Result<(), End> {
        while let Some((name, program, generation, gate_closed_at)) = self.next_lost_hook_pending()
        {
            let event = StateEvent::new(name.to_owned(), generation, Cause::LostContact);
            let mut carried = self
                .wait_closing_gates(
                    self.hooks
                        .carry_out(&program.gate, Change::Pause, event, None),
                )
                .await?;
            carried.gate_changed_at = carried.gate_changed_at.or(gate_closed_at);
            let Settled { error, purged, .. } = carried.settled.clone();
            if error.is_empty() {
                info!(program = name, "paused for lost contact: pause hook done");
            } else {
                warn!(program = name, %error, "pause hook failed after lost contact; the gate is closed");
            }
            program.update(|applied| {
                applied.contact = Contact::Lost;
                applied.at = carried.hook_returned_at;
                applied.error = error;
                applied.purged = purged;
            });
            let applied = self.seal_receipt(
                name,
                program,
                Witnessed::by_itself(Cause::LostContact, &carried),
            );
            self.save_state().await?;
            if let (Some(outbound), Some(applied)) = (session, applied) {
                let ack = ack(name, &applied, program.gate.is_active());
                if self.wait_closing_gates(outbound.send(ack)).await?.is_err() {
                    debug!(
                        program = name,
                        "the session closed before the lost-contact ack was sent"
                    );
                }
            }
        }
        Ok(())
    }

    /// A program whose gate the watchdog closed and whose pause hook has not run yet,
    /// with the generation it had applied and when the watchdog closed its gate.
    fn next_lost_hook_pending(&self) -> Option<(&str, &Program, u64, Option<SystemTime>)> {
        self.programs.iter().find_map(|(name, program)| {
            let applied = program.applied()?;
            match applied.contact {
                Contact::LostHookPending { gate_closed_at } => {
                    Some((name, program, applied.generation, gate_closed_at))
                }
                Contact::Current | Contact::Lost => None,
            }
        })
    }

    /// Writes the state file, if there is one.
    async fn save_state(&self) -> Result<(), End> {
        let Some(file) = &self.state_file else {
            return Ok(());
        };
        let saved = self.programs.saved();
        self.wait_closing_gates(file.save(&saved)).await
    }

    /// Queues `message` for the replica.
    async fn send(&self, outbound: &Outbound, message: CollectorMessage) -> Result<(), End> {
        self.wait(Some(outbound), outbound.send(message))
            .await?
            .map_err(|_| End::Lost("the session's outbound stream closed".to_owned()))
    }

    /// Awaits `future` unless the client shuts down first, running the watchdog
    /// meanwhile: it closes the gates of programs that lose contact and runs their pause
    /// hooks, acknowledging them on `session` when one is up (in sync).
    async fn wait<F: Future>(
        &self,
        session: Option<&Outbound>,
        future: F,
    ) -> Result<F::Output, End> {
        let mut future = pin!(future);
        loop {
            self.lost_contact_hooks(session).await?;
            if let Some(output) = self.race(future.as_mut()).await? {
                return Ok(output);
            }
        }
    }

    /// Awaits `future` (a hook, a state file write, a lost-contact Ack) unless the client
    /// shuts down first. Meanwhile the watchdog still closes gates on time, but their
    /// pause hooks wait for the next [`wait`](Runner::wait), so hooks never overlap.
    async fn wait_closing_gates<F: Future>(&self, future: F) -> Result<F::Output, End> {
        let mut future = pin!(future);
        loop {
            if let Some(output) = self.race(future.as_mut()).await? {
                return Ok(output);
            }
        }
    }

    /// Awaits `future` until it completes (`Some`), the client shuts down (`Err`), or the
    /// watchdog's next deadline passes: then closes the gates of the programs that lost
    /// contact and returns `None`, leaving `future` to be awaited again.
    ///
    /// When both are ready, the deadline goes first: a message read at the very instant
    /// the grace ends comes too late (pause always wins).
    async fn race<F: Future>(&self, future: Pin<&mut F>) -> Result<Option<F::Output>, End> {
        let deadline = self.next_deadline();
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(End::Cancelled),
            () = sleep_until(deadline) => {
                self.close_lost(Instant::now());
                Ok(None)
            }
            output = future => Ok(Some(output)),
        }
    }
}

/// Logs where carrying out `change` for `event` left the gate.
fn log_settled(change: Change, event: &StateEvent, settled: &Settled) {
    match (change, settled.error.as_str()) {
        (Change::Pause, "") => debug!(program = %event.program, "pause hook done"),
        (Change::Pause, error) => {
            warn!(program = %event.program, %error, "pause hook failed; the gate is closed");
        }
        (Change::Resume, "") if settled.open => info!(
            program = %event.program,
            generation = event.generation,
            reason = %event.reason,
            actor = %event.actor,
            cause = %event.cause,
            "killswitch resumed the program: gate open",
        ),
        (Change::Resume, "") => warn!(
            program = %event.program,
            generation = event.generation,
            "contact with the control plane was lost while the resume hook ran; \
             the gate stays closed",
        ),
        (Change::Resume, error) => warn!(
            program = %event.program,
            generation = event.generation,
            %error,
            "resume hook failed; the gate stays closed",
        ),
    }
}

/// What a receipt says about a change beyond the state recorded in [`Applied`].
struct Witnessed {
    /// Why the hook ran.
    cause: Cause,
    /// Whether the change left the gate open.
    open: bool,
    /// When the change moved the gate, if it did.
    gate_changed_at: Option<SystemTime>,
    /// `ProgramState.scope` as received; empty for a change the client made by itself.
    scope: String,
    /// `ProgramState.changed_at` as received; `None` for a change the client made by
    /// itself.
    committed_at: Option<Timestamp>,
}

impl Witnessed {
    /// A change the client made by itself (lost contact, the state file), under no state
    /// received: no scope, no commit time.
    fn by_itself(cause: Cause, carried: &Carried) -> Self {
        Self {
            cause,
            open: carried.settled.open,
            gate_changed_at: carried.gate_changed_at,
            scope: String::new(),
            committed_at: None,
        }
    }
}

/// What to record once a change for `event` was `carried` out: a RUNNING that was
/// `refused` counts as PAUSED, and the Ack's error says why it was refused before what
/// the pause hook said. The receipt is left to the caller.
fn record(
    event: &StateEvent,
    desired: Desired,
    policy: Policy,
    refused: Option<String>,
    carried: Carried,
) -> Applied {
    let Carried {
        settled,
        hook_returned_at,
        gate_changed_at: _,
    } = carried;
    let desired = if refused.is_some() {
        Desired::Paused
    } else {
        desired
    };
    let error = match (refused, settled.error) {
        (None, error) => error,
        (Some(refused), hook) if hook.is_empty() => refused,
        (Some(refused), hook) => format!("{refused}; pause hook: {hook}"),
    };
    Applied {
        generation: event.generation,
        desired,
        policy,
        contact: Contact::Current,
        at: hook_returned_at,
        error,
        purged: settled.purged,
        receipt: None,
    }
}

/// The state of a gate `open` or not.
fn run_state(open: bool) -> RunState {
    if open {
        RunState::Running
    } else {
        RunState::Paused
    }
}

/// The Ack for the state `applied` of `program`, with the gate `open` or not, carrying
/// the receipt of the last change applied.
fn ack(program: &str, applied: &Applied, open: bool) -> CollectorMessage {
    let effective = run_state(open);
    CollectorMessage {
        msg: Some(collector_message::Msg::Ack(Ack {
            program: program.to_owned(),
            generation: applied.generation,
            effective: effective.into(),
            applied_at: Some(killswitch_proto::timestamp(applied.at)),
            purged: applied.purged,
            error: applied.error.clone(),
            receipt: applied.receipt.as_deref().cloned(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::{Outbound, Runner};
    use crate::event::{Cause, StateEvent};
    use crate::hook::{Hook, Hooks};
    use crate::programs::Programs;
    use crate::receipt::tests::{generated, verify};
    use crate::receipt::{NO_CLIENT_CERTIFICATE, Receipts, Signer};
    use crate::signing::Trust;
    use crate::signing::fixtures::{key_pair, public};
    use crate::state_file::{self, StateFile};
    use killswitch_proto::prost::Message;
    use killswitch_proto::prost_types::Timestamp;
    use killswitch_proto::v1::{Ack, Receipt, SignedReceipt};
    use killswitch_proto::v1::{
        CollectorMessage, FailurePolicy, LostContact, ProgramState, RunState, collector_message,
    };
    use std::collections::{BTreeSet, HashMap};
    use std::path::Path;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, SystemTime};
    use tokio::sync::mpsc;
    use tokio::time::sleep;
    use tokio_util::sync::CancellationToken;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);
    const RUNNING: RunState = RunState::Running;
    const PAUSED: RunState = RunState::Paused;

    /// What the hooks were called for, in order, e.g. `pause keys 3 (lost contact)`.
    type Calls = Arc<Mutex<Vec<String>>>;

    /// How the recording hooks behave besides recording.
    #[derive(Clone, Copy, Default)]
    struct Behaviour {
        /// The resume hook fails when it runs for this cause.
        resume_fails_on: Option<Cause>,
        /// The resume hook of the program `slow` takes this long.
        slow_resume: Duration,
    }

    fn record(calls: &Calls, hook: &str, event: &StateEvent) {
        calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!(
                "{hook} {} {} ({})",
                event.program, event.generation, event.cause
            ));
    }

    /// Takes the calls recorded so far.
    fn take(calls: &Calls) -> Vec<String> {
        std::mem::take(&mut *calls.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Async hooks that record their calls; the pause hook confirms purges.
    fn recorder(behaviour: Behaviour) -> (Hooks, Calls) {
        let calls = Calls::default();
        let pauses = Arc::clone(&calls);
        let resumes = Arc::clone(&calls);
        let hooks = Hooks {
            on_pause: Some(Hook::from_async(move |event: StateEvent| {
                record(&pauses, "pause", &event);
                async move {
                    event.confirm_purge();
                    Ok(())
                }
            })),
            on_resume: Some(Hook::from_async(move |event: StateEvent| {
                record(&resumes, "resume", &event);
                async move {
                    if event.program == "slow" {
                        sleep(behaviour.slow_resume).await;
                    }
                    if behaviour.resume_fails_on == Some(event.cause) {
                        return Err("camera busy".into());
                    }
                    Ok(())
                }
            })),
            timeout: Duration::from_secs(60),
        };
        (hooks, calls)
    }

    /// A runner for `programs`, started from the state file at `path` if given, as
    /// `ClientBuilder::start` does.
    fn runner(programs: &[&str], hooks: Hooks, path: Option<&Path>) -> Runner {
        let names: BTreeSet<String> = programs.iter().map(|name| (*name).to_owned()).collect();
        let programs = Programs::new(names);
        if let Some(path) = path {
            programs.restore(&state_file::load(path), SystemTime::now());
        }
        Runner::new(
            "c1".to_owned(),
            HashMap::new(),
            hooks,
            path.map(|path| StateFile::new(path.to_owned())),
            Arc::new(programs),
            CancellationToken::new(),
        )
    }

    /// Fail-closed with a grace of `ms`.
    fn pause(ms: u64) -> FailurePolicy {
        FailurePolicy {
            on_lost_contact: LostContact::Pause.into(),
            grace_ms: ms,
        }
    }

    /// Fail-open.
    fn keep() -> FailurePolicy {
        FailurePolicy {
            on_lost_contact: LostContact::Keep.into(),
            grace_ms: 0,
        }
    }

    fn state(
        program: &str,
        generation: u64,
        state: RunState,
        policy: FailurePolicy,
    ) -> ProgramState {
        ProgramState {
            program: program.to_owned(),
            state: state.into(),
            generation,
            reason: "drill".to_owned(),
            actor: "alice".to_owned(),
            policy: Some(policy),
            ..ProgramState::default()
        }
    }

    fn is_open(runner: &Runner, program: &str) -> bool {
        runner
            .programs
            .get(program)
            .is_some_and(|program| program.gate.is_active())
    }

    fn applied_generation(runner: &Runner, program: &str) -> Option<u64> {
        Some(runner.programs.get(program)?.applied()?.generation)
    }

    /// The Acks sent so far, e.g. `keys 3 PAUSED purged`.
    fn acks(outbound: &mut mpsc::Receiver<CollectorMessage>) -> Vec<String> {
        let mut acks = Vec::new();
        while let Ok(message) = outbound.try_recv() {
            let Some(collector_message::Msg::Ack(ack)) = message.msg else {
                acks.push(format!("not an ack: {message:?}"));
                continue;
            };
            let effective = RunState::try_from(ack.effective).unwrap_or(RunState::Unspecified);
            let mut line = format!(
                "{} {} {}",
                ack.program,
                ack.generation,
                effective.as_str_name().trim_start_matches("RUN_STATE_")
            );
            if ack.purged {
                line.push_str(" purged");
            }
            if !ack.error.is_empty() {
                line.push_str(&format!(" error={:?}", ack.error));
            }
            acks.push(line);
        }
        acks
    }

    /// Waits `duration` the way the session task waits for anything, with a session up
    /// (`outbound`) or not.
    async fn idle(runner: &Runner, outbound: Option<&Outbound>, duration: Duration) {
        let waited = runner.wait(outbound, sleep(duration)).await;
        assert!(waited.is_ok(), "{waited:?}");
    }

    async fn apply(runner: &Runner, state: ProgramState, outbound: &Outbound) {
        let applied = runner.apply(state, outbound).await;
        assert!(applied.is_ok(), "{applied:?}");
    }

    /// A runner as [`runner`] makes, signing receipts with a new P-256 key; and the DER of
    /// its certificate.
    fn signing_runner(programs: &[&str], hooks: Hooks) -> (Runner, Vec<u8>) {
        let (cert_pem, cert_der, key_pem) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
        let signer = Signer::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).expect("signer");
        let mut runner = runner(programs, hooks, None);
        runner.receipts = Receipts::Signed(Box::new(signer));
        (runner, cert_der)
    }

    /// The Acks sent so far.
    fn sent(outbound: &mut mpsc::Receiver<CollectorMessage>) -> Vec<Ack> {
        let mut acks = Vec::new();
        while let Ok(message) = outbound.try_recv() {
            if let Some(collector_message::Msg::Ack(ack)) = message.msg {
                acks.push(ack);
            }
        }
        acks
    }

    /// The signed receipt `ack` carries.
    fn signed(ack: &Ack) -> &SignedReceipt {
        ack.receipt.as_ref().expect("the Ack carries a receipt")
    }

    /// The receipt `ack` carries, once checked to be signed by the key of `certificate`.
    fn receipt(ack: &Ack, certificate: &[u8]) -> Receipt {
        let signed = signed(ack);
        assert_eq!(signed.certificate, certificate);
        assert_eq!(signed.algorithm, "ecdsa-p256-sha256");
        assert_eq!(signed.unsigned_reason, "");
        assert_eq!(verify(signed, webpki::ring::ECDSA_P256_SHA256), Ok(()));
        Receipt::decode(signed.receipt.as_slice()).expect("an encoded receipt")
    }

    /// A timestamp `seconds` after the epoch.
    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    /// A timestamp as a comparable (seconds, nanoseconds).
    fn instant(timestamp: Option<Timestamp>) -> Option<(i64, i32)> {
        timestamp.map(|t| (t.seconds, t.nanos))
    }

    /// `receipt` with the clock readings taken out, after checking that the gate moved
    /// (`gate_moved`) or not, and that the hook returned when the Ack says.
    fn without_clock(mut receipt: Receipt, ack: &Ack, gate_moved: bool) -> Receipt {
        assert_eq!(
            receipt.gate_changed_at.take().is_some(),
            gate_moved,
            "{receipt:?}"
        );
        assert_eq!(
            receipt.hook_returned_at.take(),
            ack.applied_at,
            "{receipt:?}"
        );
        receipt
    }

    /// The receipt of `program` at `generation`, without clock readings.
    fn expected(program: &str, generation: u64, effective: RunState) -> Receipt {
        Receipt {
            collector_id: "c1".to_owned(),
            program: program.to_owned(),
            generation,
            effective: effective.into(),
            cause: "update".to_owned(),
            sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Receipt::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn receipts_say_what_a_resume_and_a_pause_did() {
        let (hooks, _calls) = recorder(Behaviour::default());
        let (runner, certificate) = signing_runner(&["keys"], hooks);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        let mut resume = state("keys", 3, RUNNING, pause(5_000));
        resume.scope = "region=emea".to_owned();
        resume.changed_at = Some(at(1_780_000_000));
        apply(&runner, resume, &tx).await;
        let mut purge = state("keys", 4, PAUSED, pause(5_000));
        purge.purge = true;
        purge.changed_at = Some(at(1_780_000_060));
        apply(&runner, purge, &tx).await;
        // Paused again: the gate was closed already.
        apply(&runner, state("keys", 5, PAUSED, pause(5_000)), &tx).await;
        let acks = sent(&mut rx);
        assert_eq!(acks.len(), 3, "{acks:?}");

        let resumed = receipt(&acks[0], &certificate);
        assert!(
            instant(resumed.gate_changed_at) >= instant(resumed.hook_returned_at),
            "opened after the hook"
        );
        assert_eq!(
            without_clock(resumed, &acks[0], true),
            Receipt {
                scope: "region=emea".to_owned(),
                committed_at: Some(at(1_780_000_000)),
                ..expected("keys", 3, RUNNING)
            }
        );
        let paused = receipt(&acks[1], &certificate);
        assert!(
            instant(paused.gate_changed_at) <= instant(paused.hook_returned_at),
            "closed before the hook"
        );
        assert_eq!(
            without_clock(paused, &acks[1], true),
            Receipt {
                purged: true,
                committed_at: Some(at(1_780_000_060)),
                ..expected("keys", 4, PAUSED)
            }
        );
        assert_eq!(
            without_clock(receipt(&acks[2], &certificate), &acks[2], false),
            expected("keys", 5, PAUSED)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_ack_carries_the_receipt_of_the_change() {
        let (hooks, calls) = recorder(Behaviour::default());
        let (runner, certificate) = signing_runner(&["keys"], hooks);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 3, RUNNING, pause(5_000)), &tx).await;
        // Reconnected to another replica: its Snapshot sends the same state.
        let (other, mut other_rx) = mpsc::channel(16);
        apply(&runner, state("keys", 3, RUNNING, pause(5_000)), &other).await;
        apply(&runner, state("keys", 3, RUNNING, pause(5_000)), &other).await;
        assert_eq!(take(&calls), ["resume keys 3 (update)"]);
        let first = sent(&mut rx);
        let repeated = sent(&mut other_rx);
        assert_eq!(first.len(), 1);
        assert_eq!(repeated.len(), 2);
        // Signed once: ECDSA signatures differ each time, so equal bytes mean the same one.
        for ack in &repeated {
            assert_eq!(signed(ack), signed(&first[0]));
        }
        assert_eq!(receipt(&repeated[1], &certificate).generation, 3);
        // The next change has a receipt of its own.
        apply(&runner, state("keys", 4, PAUSED, pause(5_000)), &tx).await;
        let next = sent(&mut rx);
        assert_ne!(signed(&next[0]), signed(&first[0]));
        assert_eq!(receipt(&next[0], &certificate).generation, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_the_client_makes_by_itself_have_receipts() {
        let (hooks, calls) = recorder(Behaviour::default());
        let (lost, certificate) = signing_runner(&["keys"], hooks);
        let (tx, mut rx) = mpsc::channel(16);
        lost.contact();
        let mut running = state("keys", 3, RUNNING, pause(5_000));
        running.scope = "region=emea".to_owned();
        running.changed_at = Some(at(1_780_000_000));
        apply(&lost, running, &tx).await;
        idle(&lost, Some(&tx), 6 * SECOND).await;
        assert_eq!(
            take(&calls),
            ["resume keys 3 (update)", "pause keys 3 (lost contact)"]
        );
        let acks = sent(&mut rx);
        assert_eq!(acks.len(), 2, "{acks:?}");
        // Under no state received: no scope, no commit time.
        assert_eq!(
            without_clock(receipt(&acks[1], &certificate), &acks[1], true),
            Receipt {
                cause: "lost-contact".to_owned(),
                ..expected("keys", 3, PAUSED)
            }
        );

        // A fail-open program resumed from the state file: the control plane's Snapshot
        // confirms the state, and its Ack carries the receipt of that resume.
        let dir = state_file("keys 7 RUNNING keep 5000\n");
        let (hooks, calls) = recorder(Behaviour::default());
        let mut runner = runner(&["keys"], hooks, Some(&dir.path().join("state")));
        let (cert_pem, certificate, key_pem) = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
        let signer = Signer::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).expect("signer");
        runner.receipts = Receipts::Signed(Box::new(signer));
        assert!(runner.resume_from_state_file().await.is_ok());
        apply(&runner, state("keys", 7, RUNNING, keep()), &tx).await;
        assert_eq!(take(&calls), ["resume keys 7 (state file)"]);
        let acks = sent(&mut rx);
        assert_eq!(
            without_clock(receipt(&acks[0], &certificate), &acks[0], true),
            Receipt {
                cause: "state-file".to_owned(),
                ..expected("keys", 7, RUNNING)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn receipts_report_failed_hooks_and_refused_resumes() {
        let (hooks, _calls) = recorder(Behaviour {
            resume_fails_on: Some(Cause::Update),
            ..Behaviour::default()
        });
        let (mut runner, certificate) = signing_runner(&["keys", "mouse"], hooks);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 3, RUNNING, pause(5_000)), &tx).await;
        runner.trust = Trust {
            keys: [public(&key_pair())].into(),
            required: 1,
            ..Trust::default()
        };
        apply(&runner, state("mouse", 4, RUNNING, pause(5_000)), &tx).await;
        let acks = sent(&mut rx);
        assert_eq!(acks.len(), 2, "{acks:?}");
        assert_eq!(
            without_clock(receipt(&acks[0], &certificate), &acks[0], false),
            Receipt {
                error: "camera busy".to_owned(),
                ..expected("keys", 3, PAUSED)
            }
        );
        assert_eq!(
            without_clock(receipt(&acks[1], &certificate), &acks[1], false),
            Receipt {
                error: "resume not signed by enough trusted operators (0 of 1)".to_owned(),
                ..expected("mouse", 4, PAUSED)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_client_certificate_receipts_are_unsigned_and_say_why() {
        let (hooks, _calls) = recorder(Behaviour::default());
        let runner = runner(&["keys"], hooks, None);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 3, PAUSED, pause(5_000)), &tx).await;
        let acks = sent(&mut rx);
        let signed = signed(&acks[0]);
        assert_eq!(signed.unsigned_reason, NO_CLIENT_CERTIFICATE);
        assert!(signed.signature.is_empty());
        assert!(signed.certificate.is_empty());
        assert!(signed.algorithm.is_empty());
        let receipt = Receipt::decode(signed.receipt.as_slice()).expect("a receipt");
        assert_eq!(
            without_clock(receipt, &acks[0], false),
            expected("keys", 3, PAUSED)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_closes_fail_closed_gates_after_the_grace_and_not_before() {
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["closed", "open"], hooks, None);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("closed", 3, RUNNING, pause(5_000)), &tx).await;
        apply(&runner, state("open", 4, RUNNING, keep()), &tx).await;
        assert_eq!(
            take(&calls),
            ["resume closed 3 (update)", "resume open 4 (update)"]
        );
        assert_eq!(acks(&mut rx), ["closed 3 RUNNING", "open 4 RUNNING"]);

        idle(&runner, Some(&tx), 5 * SECOND - MS).await;
        assert!(is_open(&runner, "closed"));
        assert!(take(&calls).is_empty());

        idle(&runner, Some(&tx), MS).await;
        assert!(!is_open(&runner, "closed"));
        assert!(is_open(&runner, "open"));
        assert_eq!(take(&calls), ["pause closed 3 (lost contact)"]);
        assert_eq!(acks(&mut rx), ["closed 3 PAUSED"]);
        // Still the same generation: nothing was applied, the client paused by itself.
        assert_eq!(applied_generation(&runner, "closed"), Some(3));

        // An hour later the fail-open program still collects and nothing else ran.
        idle(&runner, Some(&tx), Duration::from_secs(3600)).await;
        assert!(is_open(&runner, "open"));
        assert!(take(&calls).is_empty());
        assert!(acks(&mut rx).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_restart_the_clock() {
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys"], hooks, None);
        let (tx, _rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 3, RUNNING, pause(5_000)), &tx).await;
        for _ in 0..10 {
            idle(&runner, Some(&tx), 4 * SECOND).await;
            runner.contact();
        }
        assert!(is_open(&runner, "keys"));
        idle(&runner, Some(&tx), 5 * SECOND - MS).await;
        assert!(is_open(&runner, "keys"));
        idle(&runner, Some(&tx), MS).await;
        assert!(!is_open(&runner, "keys"));
        take(&calls);
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_runs_while_disconnected() {
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys"], hooks, None);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 3, RUNNING, pause(0)), &tx).await;
        take(&calls);
        acks(&mut rx);
        // The session is gone: the task sleeps before reconnecting, and tries again.
        idle(&runner, None, 29 * SECOND).await;
        assert!(is_open(&runner, "keys"));
        idle(&runner, None, 2 * SECOND).await;
        assert!(!is_open(&runner, "keys"));
        assert_eq!(take(&calls), ["pause keys 3 (lost contact)"]);
        // No session to acknowledge on: the next Snapshot's re-ack will tell.
        assert!(acks(&mut rx).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn lost_contact_reopens_only_on_a_fresh_running() {
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys", "mouse"], hooks, None);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 3, RUNNING, pause(1_000)), &tx).await;
        apply(&runner, state("mouse", 5, RUNNING, pause(1_000)), &tx).await;
        idle(&runner, None, 2 * SECOND).await;
        assert_eq!(
            take(&calls),
            [
                "resume keys 3 (update)",
                "resume mouse 5 (update)",
                "pause keys 3 (lost contact)",
                "pause mouse 5 (lost contact)",
            ]
        );
        acks(&mut rx);

        // A heartbeat is contact, not an authoritative state: the gates stay closed.
        runner.contact();
        idle(&runner, Some(&tx), 10 * SECOND).await;
        assert!(!is_open(&runner, "keys"));
        assert!(take(&calls).is_empty());

        // The Snapshot after reconnecting: keys is still RUNNING at the same generation,
        // mouse was paused meanwhile. An older state is still ignored.
        runner.contact();
        apply(&runner, state("keys", 2, RUNNING, pause(1_000)), &tx).await;
        assert!(!is_open(&runner, "keys"));
        apply(&runner, state("keys", 3, RUNNING, pause(1_000)), &tx).await;
        apply(&runner, state("mouse", 6, PAUSED, pause(1_000)), &tx).await;
        assert!(is_open(&runner, "keys"));
        assert!(!is_open(&runner, "mouse"));
        assert_eq!(
            take(&calls),
            ["resume keys 3 (contact restored)", "pause mouse 6 (update)"]
        );
        assert_eq!(acks(&mut rx), ["keys 3 RUNNING", "mouse 6 PAUSED"]);

        // Contact is current again: a second Snapshot only re-acknowledges.
        apply(&runner, state("keys", 3, RUNNING, pause(1_000)), &tx).await;
        assert!(take(&calls).is_empty());
        assert_eq!(acks(&mut rx), ["keys 3 RUNNING"]);
    }

    #[tokio::test(start_paused = true)]
    async fn gates_close_on_time_while_another_hook_runs() {
        let (hooks, calls) = recorder(Behaviour {
            slow_resume: 20 * SECOND,
            ..Behaviour::default()
        });
        let runner = runner(&["keys", "slow"], hooks, None);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 3, RUNNING, pause(5_000)), &tx).await;
        let check = async {
            sleep(5 * SECOND + MS).await;
            // The slow resume hook is still running, yet the gate closed on time; the
            // pause hook waits for the slow hook to end.
            assert!(!is_open(&runner, "keys"));
            assert!(!is_open(&runner, "slow"));
            assert_eq!(
                take(&calls),
                ["resume keys 3 (update)", "resume slow 7 (update)"]
            );
        };
        tokio::join!(
            apply(&runner, state("slow", 7, RUNNING, pause(60_000)), &tx),
            check
        );
        assert!(is_open(&runner, "slow"));
        assert!(!is_open(&runner, "keys"));
        assert_eq!(take(&calls), ["pause keys 3 (lost contact)"]);
        assert_eq!(
            acks(&mut rx),
            ["keys 3 RUNNING", "keys 3 PAUSED", "slow 7 RUNNING"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resume_hook_outlasting_the_grace_does_not_open() {
        let (hooks, calls) = recorder(Behaviour {
            slow_resume: 6 * SECOND,
            ..Behaviour::default()
        });
        let runner = runner(&["slow"], hooks, None);
        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("slow", 7, RUNNING, pause(5_000)), &tx).await;
        assert!(!is_open(&runner, "slow"));
        // The watchdog pauses it properly (undoing what the resume hook prepared) before
        // the resume is acknowledged: both Acks say PAUSED.
        assert_eq!(
            take(&calls),
            ["resume slow 7 (update)", "pause slow 7 (lost contact)"]
        );
        assert_eq!(acks(&mut rx), ["slow 7 PAUSED", "slow 7 PAUSED"]);
        idle(&runner, Some(&tx), Duration::from_secs(3600)).await;
        assert!(take(&calls).is_empty());
        assert!(acks(&mut rx).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn purge_is_acknowledged_when_confirmed() {
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys"], hooks, None);
        let (tx, mut rx) = mpsc::channel(16);
        let mut purge = state("keys", 4, PAUSED, pause(0));
        purge.purge = true;
        apply(&runner, purge.clone(), &tx).await;
        apply(&runner, purge, &tx).await;
        apply(&runner, state("keys", 5, PAUSED, pause(0)), &tx).await;
        assert_eq!(
            take(&calls),
            ["pause keys 4 (update)", "pause keys 5 (update)"]
        );
        assert_eq!(
            acks(&mut rx),
            [
                "keys 4 PAUSED purged",
                "keys 4 PAUSED purged",
                "keys 5 PAUSED"
            ]
        );
    }

    /// A state file with `contents` in a new temporary directory.
    fn state_file(contents: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("state"), contents).expect("write state file");
        dir
    }

    #[tokio::test(start_paused = true)]
    async fn fail_closed_programs_start_paused_and_reopen_on_running() {
        let dir = state_file("keys 7 RUNNING pause 5000\nmouse 4 PAUSED pause 5000\n");
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys", "mouse"], hooks, Some(&dir.path().join("state")));
        assert!(runner.resume_from_state_file().await.is_ok());
        assert!(take(&calls).is_empty());
        assert!(!is_open(&runner, "keys"));
        assert!(!is_open(&runner, "mouse"));
        assert_eq!(applied_generation(&runner, "keys"), Some(7));
        assert_eq!(applied_generation(&runner, "mouse"), Some(4));
        let Some(collector_message::Msg::Hello(hello)) = runner.hello().msg else {
            panic!("not a Hello");
        };
        assert_eq!(hello.programs, ["keys", "mouse"]);

        let (tx, mut rx) = mpsc::channel(16);
        runner.contact();
        apply(&runner, state("keys", 7, RUNNING, pause(5_000)), &tx).await;
        apply(&runner, state("mouse", 4, PAUSED, pause(5_000)), &tx).await;
        assert!(is_open(&runner, "keys"));
        assert!(!is_open(&runner, "mouse"));
        assert_eq!(take(&calls), ["resume keys 7 (contact restored)"]);
        assert_eq!(acks(&mut rx), ["keys 7 RUNNING", "mouse 4 PAUSED"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_program_reported_unknown_closes_and_reopens_on_running_at_the_same_generation() {
        let dir = state_file("keys 7 RUNNING keep 5000\n");
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys"], hooks, Some(&dir.path().join("state")));
        assert!(runner.resume_from_state_file().await.is_ok());
        assert!(is_open(&runner, "keys"));
        let (tx, mut rx) = mpsc::channel(16);
        // A replica whose cache does not know the program yet: pause wins.
        let unknown = killswitch_proto::v1::Snapshot {
            states: vec![],
            unknown_programs: vec!["keys".to_owned()],
        };
        assert!(runner.snapshot(unknown, &tx).await.is_ok());
        assert!(!is_open(&runner, "keys"));
        // Then it learns the program, at the generation already applied.
        apply(&runner, state("keys", 7, RUNNING, keep()), &tx).await;
        assert!(is_open(&runner, "keys"));
        assert_eq!(
            take(&calls),
            [
                "resume keys 7 (state file)",
                "resume keys 7 (contact restored)"
            ]
        );
        assert_eq!(acks(&mut rx), ["keys 7 RUNNING"]);
    }

    #[tokio::test(start_paused = true)]
    async fn fail_open_running_programs_start_open_after_the_resume_hook() {
        let dir = state_file("keys 7 RUNNING keep 5000\nmouse 4 PAUSED keep 5000\n");
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys", "mouse"], hooks, Some(&dir.path().join("state")));
        assert!(!is_open(&runner, "keys"));
        assert!(runner.resume_from_state_file().await.is_ok());
        assert_eq!(take(&calls), ["resume keys 7 (state file)"]);
        assert!(is_open(&runner, "keys"));
        assert!(!is_open(&runner, "mouse"));

        // Fail-open: no contact for an hour changes nothing.
        idle(&runner, None, Duration::from_secs(3600)).await;
        assert!(is_open(&runner, "keys"));

        // The control plane confirms: nothing to run again.
        let (tx, mut rx) = mpsc::channel(16);
        apply(&runner, state("keys", 7, RUNNING, keep()), &tx).await;
        assert!(take(&calls).is_empty());
        assert_eq!(acks(&mut rx), ["keys 7 RUNNING"]);
    }

    #[tokio::test(start_paused = true)]
    async fn fail_open_program_whose_resume_fails_at_start_waits_for_the_control_plane() {
        let dir = state_file("keys 7 RUNNING keep 5000\n");
        let (hooks, calls) = recorder(Behaviour {
            resume_fails_on: Some(Cause::StateFile),
            ..Behaviour::default()
        });
        let runner = runner(&["keys"], hooks, Some(&dir.path().join("state")));
        assert!(runner.resume_from_state_file().await.is_ok());
        assert!(!is_open(&runner, "keys"));
        let (tx, mut rx) = mpsc::channel(16);
        apply(&runner, state("keys", 7, RUNNING, keep()), &tx).await;
        assert!(is_open(&runner, "keys"));
        assert_eq!(
            take(&calls),
            [
                "resume keys 7 (state file)",
                "resume keys 7 (contact restored)"
            ]
        );
        assert_eq!(acks(&mut rx), ["keys 7 RUNNING"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_never_applies_an_older_generation() {
        let dir = state_file("keys 7 PAUSED pause 5000\n");
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys"], hooks, Some(&dir.path().join("state")));
        let (tx, mut rx) = mpsc::channel(16);
        apply(&runner, state("keys", 6, RUNNING, pause(5_000)), &tx).await;
        apply(&runner, state("keys", 1, RUNNING, pause(5_000)), &tx).await;
        assert!(!is_open(&runner, "keys"));
        assert!(take(&calls).is_empty());
        assert!(acks(&mut rx).is_empty());
        assert_eq!(applied_generation(&runner, "keys"), Some(7));
        apply(&runner, state("keys", 8, RUNNING, pause(5_000)), &tx).await;
        assert!(is_open(&runner, "keys"));
        assert_eq!(take(&calls), ["resume keys 8 (update)"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_state_file_follows_applied_states_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state");
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        {
            let (hooks, _calls) = recorder(Behaviour::default());
            let runner = runner(&["keys", "mouse"], hooks, Some(&path));
            let (tx, _rx) = mpsc::channel(16);
            runner.contact();
            apply(&runner, state("keys", 3, RUNNING, keep()), &tx).await;
            apply(&runner, state("mouse", 9, RUNNING, pause(2_000)), &tx).await;
            let contents = read();
            assert!(
                contents.ends_with("keys 3 RUNNING keep 30000\nmouse 9 RUNNING pause 2000\n"),
                "{contents}"
            );
            // Losing contact keeps the last authoritative state in the file.
            idle(&runner, None, 3 * SECOND).await;
            assert!(!is_open(&runner, "mouse"));
            assert_eq!(read(), contents);
            apply(&runner, state("keys", 4, PAUSED, keep()), &tx).await;
            assert!(read().contains("keys 4 PAUSED keep 30000\n"));
        }
        let (hooks, calls) = recorder(Behaviour::default());
        let runner = runner(&["keys", "mouse"], hooks, Some(&path));
        assert!(runner.resume_from_state_file().await.is_ok());
        assert!(take(&calls).is_empty());
        assert_eq!(applied_generation(&runner, "keys"), Some(4));
        assert_eq!(applied_generation(&runner, "mouse"), Some(9));
        assert!(!is_open(&runner, "keys"));
        assert!(!is_open(&runner, "mouse"));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_stops_every_wait() {
        let (hooks, _calls) = recorder(Behaviour::default());
        let runner = runner(&["keys"], hooks, None);
        runner.cancel.cancel();
        let waited = runner.wait(None, std::future::pending::<()>()).await;
        assert!(matches!(waited, Err(super::End::Cancelled)), "{waited:?}");
    }
}
