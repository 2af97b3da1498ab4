//! `CollectorService.Session`: one task per connected collector.
//!
//! The task reads Hello, sends a Snapshot of the requested programs from the cache, then
//! forwards every change as an Update, heartbeats while the replica's etcd watch is
//! healthy, records Acks in the [`AckBook`], and sends Drain when the replica shuts down.
//! It never reads etcd: fan-out is served from the [`StateCache`].

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use killswitch_proto::v1::{
    self, CollectorMessage, ControlMessage, collector_message,
    collector_service_server::CollectorService, control_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_stream::{Stream, StreamExt, StreamMap};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::api::auth::{Auth, CertifiedCollector, Reloads};
use crate::api::error::ApiError;
use crate::metrics::Metrics;
use crate::model::receipts::{self, Checked, PeerCertificate, ReceiptRefusal};
use crate::model::{
    self, CollectorId, Generation, InvalidInput, LostContact, ProgramName, ProgramState, RunState,
    label_key, label_value,
};
use crate::replica::acks::{AckBook, AckRecord, Labels, SessionId};
use crate::replica::cache::{Slot, StateCache};
use crate::replica::verify::{self, Verdict, Verifier};

/// Most programs one collector may follow.
pub const MAX_PROGRAMS_PER_SESSION: usize = 64;
/// Most labels one collector may carry.
pub const MAX_LABELS: usize = 32;
/// Longest label value, in bytes; a key is at most [`model::MAX_LABEL_KEY_BYTES`].
pub const MAX_LABEL_BYTES: usize = model::MAX_LABEL_VALUE_BYTES;
/// Largest gRPC message a replica decodes or encodes, in bytes (64 KiB).
///
/// The largest legitimate collector message is a Hello with [`MAX_PROGRAMS_PER_SESSION`]
/// names of 63 bytes, [`MAX_LABELS`] labels and a 128-byte collector id: under 8 KiB.
/// Admin requests carry at most a 1 KiB reason and description. 64 KiB leaves room for
/// that and for growth, while a peer can no longer make the replica buffer tonic's
/// default of 4 MiB per message (times up to [`SessionConfig::max_sessions`] sessions)
/// before any validation runs. Set it on both `CollectorServiceServer` and
/// `AdminServiceServer` with `max_decoding_message_size` and `max_encoding_message_size`.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How many heartbeats a fail-closed program's grace period spans at least: a session
/// heartbeats at least this often per the shortest grace among the programs it follows,
/// so a healthy replica never lets a collector pause for lost contact.
pub const HEARTBEATS_PER_GRACE: u32 = 3;
/// How many states per program a session remembers having sent. An Ack of an older one
/// is ignored (the collector has newer ones to acknowledge); it is not a violation.
pub const SENT_WINDOW: usize = 4;
/// Refused acknowledgements a session may send; the next one closes it with
/// `INVALID_ARGUMENT`. A correct collector sends none, except rarely right after moving
/// from a replica that was ahead of this one.
pub const MAX_REFUSED_ACKS: u32 = 16;
/// Default for [`SessionConfig::max_sessions_per_collector`]: a collector needs one
/// session per program set it follows, and briefly one more while it reconnects.
pub const DEFAULT_MAX_SESSIONS_PER_COLLECTOR: usize = 4;
/// Most concurrent HTTP/2 streams one connection may open: a collector needs one, an
/// operator's CLI or console a few. Set on the server, so one connection cannot hold
/// thousands of sessions.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 32;
/// Default for [`SessionConfig::max_sessions`]: the per-process open-file limit of our
/// hosts (20,000), each session holding one connection.
pub const DEFAULT_MAX_SESSIONS: usize = 20_000;

/// Session timing and limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How often a healthy replica heartbeats at most. Default 10 s: a third of the
    /// default grace, and the largest share of an idle fleet's cost (a heartbeat costs the
    /// replica a wake-up and a write per session). A session heartbeats more often when a
    /// fail-closed program it follows has a grace shorter than [`HEARTBEATS_PER_GRACE`]
    /// times this. The etcd watch is probed at this interval too, but at least every
    /// [`MAX_PROBE_INTERVAL`](crate::replica::cache::MAX_PROBE_INTERVAL).
    pub heartbeat_interval: Duration,
    /// How long a collector may take to send Hello; a connection that sends nothing is
    /// closed with `DEADLINE_EXCEEDED` after it. Default 5 s.
    pub hello_timeout: Duration,
    /// Drain asks collectors to reconnect after a random delay up to this. Default 2 s.
    pub drain_spread: Duration,
    /// Most sessions this replica serves at once, counted from the moment a session is
    /// opened (before its Hello) until its task ends; one more is refused with
    /// `RESOURCE_EXHAUSTED`, so its collector tries another replica. Default
    /// [`DEFAULT_MAX_SESSIONS`] (20,000).
    pub max_sessions: usize,
    /// Most sessions one collector id holds at once; one more is refused with
    /// `RESOURCE_EXHAUSTED`. Counted from the session's opening when a certificate proves the id
    /// (so a stolen certificate cannot fill [`max_sessions`](Self::max_sessions) with
    /// silent connections), from Hello otherwise. Besides, a new session of a collector
    /// for the same programs replaces its older one. Default
    /// [`DEFAULT_MAX_SESSIONS_PER_COLLECTOR`].
    pub max_sessions_per_collector: usize,
    /// How many threads verify the signatures of collectors' receipts, beside the async
    /// workers (see [`crate::replica::verify`]). Default: half the cores, at least one.
    pub verify_threads: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            drain_spread: Duration::from_secs(2),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_collector: DEFAULT_MAX_SESSIONS_PER_COLLECTOR,
            verify_threads: verify::default_threads(),
        }
    }
}

/// The live sessions by collector: how many each id holds, and which session follows
/// each (collector, program set), so a newer one replaces it.
#[derive(Debug, Default)]
struct Live {
    per_collector: HashMap<CollectorId, usize>,
    by_programs: HashMap<(CollectorId, Vec<ProgramName>), (SessionId, CancellationToken)>,
}

/// The sessions of every collector on this replica. Short, await-free critical
/// sections only.
#[derive(Debug, Clone, Default)]
struct Collectors(Arc<Mutex<Live>>);

impl Collectors {
    fn lock(&self) -> MutexGuard<'_, Live> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one of `max` slots of `id`, or `None` if it holds them all.
    fn acquire(&self, id: &CollectorId, max: usize) -> Option<CollectorSlot> {
        let mut live = self.lock();
        let held = live.per_collector.entry(id.clone()).or_default();
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(CollectorSlot {
            collectors: self.clone(),
            id: id.clone(),
        })
    }

    /// Makes `session` the one following `hello`'s programs for its collector: the
    /// returned token fires when a newer session takes its place. Ends the older one.
    fn follow(&self, session: SessionId, hello: &Hello) -> CancellationToken {
        let replaced = CancellationToken::new();
        let key = (hello.collector.clone(), hello.programs.clone());
        if let Some((_, older)) = self
            .lock()
            .by_programs
            .insert(key, (session, replaced.clone()))
        {
            older.cancel();
        }
        replaced
    }

    /// Forgets `session` as the follower of `hello`'s programs, unless replaced.
    fn unfollow(&self, session: SessionId, hello: &Hello) {
        let key = (hello.collector.clone(), hello.programs.clone());
        let mut live = self.lock();
        if live
            .by_programs
            .get(&key)
            .is_some_and(|(s, _)| *s == session)
        {
            live.by_programs.remove(&key);
        }
    }
}

/// One session's slot among its collector's: given back when dropped.
#[derive(Debug)]
struct CollectorSlot {
    collectors: Collectors,
    id: CollectorId,
}

impl Drop for CollectorSlot {
    fn drop(&mut self) {
        let mut live = self.collectors.lock();
        if let Some(held) = live.per_collector.get_mut(&self.id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                live.per_collector.remove(&self.id);
            }
        }
    }
}

/// Counts the sessions open on this replica, up to a limit.
#[derive(Debug, Clone, Default)]
struct SessionCount(Arc<AtomicUsize>);

impl SessionCount {
    /// Takes one of `max` slots, or `None` (and changes nothing) if all are taken.
    fn acquire(&self, max: usize) -> Option<SessionSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| SessionSlot(Arc::clone(&self.0)))
    }

    /// How many sessions are open.
    fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One open session's slot: given back when dropped, however the session task ends
/// (returns, panics or is dropped with the runtime).
#[derive(Debug)]
struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The collector-facing gRPC service.
#[derive(Debug, Clone)]
pub struct Sessions {
    cache: Arc<StateCache>,
    book: Arc<AckBook>,
    config: SessionConfig,
    drain: CancellationToken,
    next_id: Arc<AtomicU64>,
    open: SessionCount,
    collectors: Collectors,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
    verifier: Verifier,
}

impl Sessions {
    /// Sessions fed from `cache`, recording into `book`, draining when `drain` fires.
    /// `auth` decides who may open one and which collector id it may claim.
    #[must_use]
    pub fn new(
        cache: Arc<StateCache>,
        book: Arc<AckBook>,
        config: SessionConfig,
        drain: CancellationToken,
        auth: Arc<Auth>,
    ) -> Self {
        let verifier = Verifier::start(config.verify_threads);
        Self {
            cache,
            book,
            config,
            drain,
            next_id: Arc::new(AtomicU64::new(1)),
            open: SessionCount::default(),
            collectors: Collectors::default(),
            auth,
            metrics: Arc::default(),
            verifier,
        }
    }

    /// Counts heartbeats in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// How many sessions are open on this replica, Hello received or not.
    #[must_use]
    pub fn open_sessions(&self) -> usize {
        self.open.open()
    }
}

/// A session's queue towards its collector. Messages are boxed: a channel allocates its
/// slots in blocks of 32, and an unboxed `ControlMessage` would make that block several
/// KiB per idle session.
type Outbound = mpsc::Sender<Result<Box<ControlMessage>, Box<Status>>>;

#[tonic::async_trait]
impl CollectorService for Sessions {
    type SessionStream =
        Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send + 'static>>;

    async fn session(
        &self,
        request: Request<Streaming<CollectorMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        // Subscribed before the credentials are checked, so no reload goes unnoticed.
        let revocation = Revocation {
            reloads: self.auth.reloads(),
            serial: self.auth.client_serial(&request),
            certificate: request.peer_certs().and_then(|chain| {
                chain
                    .first()
                    .map(|leaf| PeerCertificate::parse(Arc::from(leaf.as_ref())))
            }),
        };
        // Under TLS, the collector id its certificate proves; checked against Hello.
        let certified = self.auth.collector(&request).map_err(|error| {
            tracing::info!(%error, "refusing a session");
            Status::from(ApiError::from(error))
        })?;
        let max = self.config.max_sessions;
        let Some(slot) = self.open.acquire(max) else {
            tracing::debug!(max, "refusing a session: this replica is full");
            return Err(Status::resource_exhausted(format!(
                "this replica already serves {max} sessions; connect to another replica"
            )));
        };
        // A certified id is counted from the session's opening on, before any Hello.
        let identity = match &certified {
            Some(collector) => Some(self.collector_slot(&collector.id)?),
            None => None,
        };
        let remote = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        // Ends when the collector goes away (inbound ends or outbound closes), when no
        // Hello came within the hello timeout, or on drain. The slot goes with it.
        tokio::spawn(
            async move {
                let _slot = slot;
                this.run(id, inbound, tx, certified, identity, revocation)
                    .await;
            }
            .instrument(tracing::info_span!(
                "session",
                id,
                remote = ?remote,
                collector = tracing::field::Empty
            )),
        );
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|message| message.map(|m| *m).map_err(|s| *s)),
        )))
    }
}

/// A validated Hello.
#[derive(Debug)]
pub struct Hello {
    /// Who the collector says it is.
    pub collector: CollectorId,
    /// The programs it follows: at least one, at most [`MAX_PROGRAMS_PER_SESSION`],
    /// sorted, each once.
    pub programs: Vec<ProgramName>,
    /// Its labels: at most [`MAX_LABELS`], keys as [`label_key`] and values as
    /// [`label_value`] accept them.
    pub labels: Labels,
}

impl Hello {
    /// What this collector receives of `state`: its own effective state (see
    /// [`crate::model::targeting`]).
    fn view(&self, state: &ProgramState) -> v1::ProgramState {
        state.to_collector_wire(self.collector.as_str(), &self.labels)
    }
}

/// The last states a session sent for one program, so that an Ack can be checked
/// against them: newest last, at most [`SENT_WINDOW`].
#[derive(Debug, Clone)]
pub struct Sent {
    /// (generation, the effective state sent for it), oldest first; unused slots are 0.
    recent: [(Generation, RunState); SENT_WINDOW],
    /// A diverged Ack makes the session send the state again, once: re-armed by every
    /// state sent and every Ack that is not diverged.
    resend_armed: bool,
}

impl Default for Sent {
    fn default() -> Self {
        Self {
            recent: [(0, RunState::Paused); SENT_WINDOW],
            resend_armed: true,
        }
    }
}

impl Sent {
    /// Remembers that `generation` was sent with `intended` as the collector's state.
    pub fn record(&mut self, generation: Generation, intended: RunState) {
        self.resend_armed = true;
        if let Some(slot) = self.recent.iter_mut().find(|(g, _)| *g == generation) {
            slot.1 = intended;
            return;
        }
        self.recent.rotate_left(1);
        self.recent[SENT_WINDOW - 1] = (generation, intended);
    }

    /// The newest generation sent, 0 when none.
    #[must_use]
    pub fn latest(&self) -> Generation {
        self.recent[SENT_WINDOW - 1].0
    }

    /// Checks an Ack of `generation` with the gate `effective` (its wire value) against
    /// what was sent: the effective state the replica intended for that generation, or
    /// `None` for an Ack older than every remembered state (ignored, not refused).
    ///
    /// # Errors
    ///
    /// The generation was never sent (or is ahead of anything sent), or the collector
    /// claims RUNNING where PAUSED was sent, or a state that is neither.
    pub fn check(
        &self,
        generation: Generation,
        effective: i32,
    ) -> Result<Option<RunState>, AckRefusal> {
        let latest = self.latest();
        if generation > latest {
            return Err(AckRefusal::Future { generation, latest });
        }
        let found = self
            .recent
            .iter()
            .find(|(g, _)| *g == generation && generation != 0);
        let Some(&(_, intended)) = found else {
            // With every slot used, what is older than the oldest may have been sent.
            let oldest = self.recent[0].0;
            return if oldest != 0 && generation < oldest {
                Ok(None)
            } else {
                Err(AckRefusal::NeverSent { generation, latest })
            };
        };
        let claimed = v1::RunState::try_from(effective).unwrap_or(v1::RunState::Unspecified);
        match (claimed, intended) {
            (v1::RunState::Paused, _) | (v1::RunState::Running, RunState::Running) => {
                Ok(Some(intended))
            }
            _ => Err(AckRefusal::WrongEffective {
                generation,
                effective: claimed,
                intended,
            }),
        }
    }
}

/// Why a replica refused an acknowledgement: it does not match any state the session
/// sent. A refused Ack changes nothing that status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckRefusal {
    /// The program is not one the collector named in Hello.
    UnknownProgram(String),
    /// A generation ahead of the newest one sent for the program.
    Future {
        /// The generation acknowledged.
        generation: Generation,
        /// The newest generation sent.
        latest: Generation,
    },
    /// A generation this session never sent for the program.
    NeverSent {
        /// The generation acknowledged.
        generation: Generation,
        /// The newest generation sent (0: none).
        latest: Generation,
    },
    /// RUNNING where PAUSED was sent, or an unspecified gate.
    WrongEffective {
        /// The generation acknowledged.
        generation: Generation,
        /// What the collector claimed.
        effective: v1::RunState,
        /// What was sent.
        intended: RunState,
    },
    /// The Ack matches a state sent, but its receipt does not pass
    /// [`receipts::check`]: it does not match the Ack or is not signed with the session's
    /// certificate.
    Receipt {
        /// The generation acknowledged.
        generation: Generation,
        /// What is wrong with the receipt.
        refusal: ReceiptRefusal,
    },
}

impl AckRefusal {
    /// The `reason` label of `killswitch_refused_acks_total`.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownProgram(_) => "unknown-program",
            Self::Future { .. } => "future",
            Self::NeverSent { .. } => "never-sent",
            Self::WrongEffective { .. } => "wrong-effective",
            Self::Receipt { refusal, .. } => refusal.reason(),
        }
    }
}

impl fmt::Display for AckRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownProgram(program) => write!(
                f,
                "acknowledged program {:?}, which is not named in this session's Hello",
                program.chars().take(64).collect::<String>()
            ),
            Self::Future { generation, latest } => write!(
                f,
                "acknowledged generation {generation}, ahead of the newest one this replica \
                 sent ({latest})"
            ),
            Self::NeverSent { generation, latest } => write!(
                f,
                "acknowledged generation {generation}, which this replica never sent on this \
                 session (newest sent: {latest})"
            ),
            Self::WrongEffective {
                generation,
                effective,
                intended,
            } => write!(
                f,
                "acknowledged generation {generation} with the gate {}, but {intended} was \
                 sent: a gate may be PAUSED whatever was sent, RUNNING only if RUNNING was sent",
                effective.as_str_name().trim_start_matches("RUN_STATE_")
            ),
            Self::Receipt {
                generation,
                refusal,
            } => write!(f, "acknowledged generation {generation}, but {refusal}"),
        }
    }
}

/// Validates the Hello a session opens with; public so that the fuzz targets in `fuzz/`
/// reach it. Duplicate program names are followed once.
///
/// # Errors
///
/// The first rule the Hello breaks: collector id syntax, no program, more than
/// [`MAX_PROGRAMS_PER_SESSION`] programs (counted before duplicates are removed), a
/// program name, more than [`MAX_LABELS`] labels, a label key or a label value.
pub fn parse_hello(hello: v1::Hello) -> Result<Hello, InvalidInput> {
    let collector = CollectorId::parse(&hello.collector_id)?;
    if hello.programs.is_empty() {
        return Err(InvalidInput::Missing {
            field: "programs",
            hint: "name at least one program to follow",
        });
    }
    if hello.programs.len() > MAX_PROGRAMS_PER_SESSION {
        return Err(InvalidInput::TooMany {
            field: "programs",
            count: hello.programs.len(),
            max: MAX_PROGRAMS_PER_SESSION,
        });
    }
    let mut programs = hello
        .programs
        .iter()
        .map(|p| ProgramName::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    programs.sort();
    programs.dedup();
    if hello.labels.len() > MAX_LABELS {
        return Err(InvalidInput::TooMany {
            field: "labels",
            count: hello.labels.len(),
            max: MAX_LABELS,
        });
    }
    for (key, value) in &hello.labels {
        label_key(key)?;
        label_value(value)?;
    }
    Ok(Hello {
        collector,
        programs,
        labels: Arc::new(hello.labels.into_iter().collect()),
    })
}

/// What a session knows of its client certificate: what it re-checks its collector with
/// when the replica's credentials are reloaded (a collector revoked since, by id or by its
/// certificate's serial, is closed with `PERMISSION_DENIED`), and the certificate its
/// receipts must be signed with.
struct Revocation {
    reloads: Reloads,
    /// The serial of the client certificate the session was opened with.
    serial: Option<String>,
    /// That certificate (the leaf) and its public key; `None` without TLS.
    certificate: Option<PeerCertificate>,
}

/// Removes the session from the book and the cache subscriptions when it ends, however.
struct Registration<'a> {
    sessions: &'a Sessions,
    id: SessionId,
    hello: &'a Hello,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sessions.collectors.unfollow(self.id, self.hello);
        self.sessions
            .book
            .disconnect(self.id, &self.hello.collector, &self.hello.programs);
        for program in &self.hello.programs {
            self.sessions.cache.release(program);
        }
        tracing::info!(collector = %self.hello.collector, "collector disconnected");
    }
}

impl Sessions {
    /// One of `id`'s session slots, or `RESOURCE_EXHAUSTED`.
    fn collector_slot(&self, id: &CollectorId) -> Result<CollectorSlot, Status> {
        let max = self.config.max_sessions_per_collector;
        self.collectors.acquire(id, max).ok_or_else(|| {
            tracing::info!(collector = %id, max, "refusing a session: the collector holds its limit");
            Status::resource_exhausted(format!(
                "collector {id} already holds {max} sessions on this replica; close one \
                 (a collector needs one session per set of programs)"
            ))
        })
    }

    async fn run(
        &self,
        id: SessionId,
        mut inbound: Streaming<CollectorMessage>,
        tx: Outbound,
        certified: Option<CertifiedCollector>,
        identity: Option<CollectorSlot>,
        revocation: Revocation,
    ) {
        let Revocation {
            reloads,
            serial,
            certificate,
        } = revocation;
        let (hello, _identity) = match self.admit(&mut inbound, certified, identity).await {
            Ok(admitted) => admitted,
            Err(status) => {
                tracing::info!(error = %status.message(), "rejected session");
                let _ = tx.send(Err(Box::new(status))).await;
                return;
            }
        };
        tracing::info!(collector = %hello.collector, programs = ?hello.programs, labels = ?hello.labels, "collector connected");
        self.book
            .connect(id, &hello.collector, &hello.labels, &hello.programs);
        let replaced = self.collectors.follow(id, &hello);
        let _registration = Registration {
            sessions: self,
            id,
            hello: &hello,
        };

        let mut sent: HashMap<ProgramName, Sent> = HashMap::new();
        let (snapshot, mut changes) = self.snapshot(&hello, &mut sent);
        if !send(&tx, control_message::Msg::Snapshot(snapshot)).await {
            return;
        }

        let mut period = self.heartbeat_period(&hello);
        let mut heartbeat = heartbeat_interval(period);
        let mut refused: u32 = 0;
        // The Ack whose receipt's signature is being verified; nothing more is read from
        // the collector until its verdict, so Acks are counted in order.
        let mut verifying: Option<Box<Verifying>> = None;
        // Created once, not at every wake-up of the loop below: polling a future that waits
        // on a channel every session shares takes that channel's lock, so each is
        // registered once, and the drain is waited for on a token of this session's own.
        let mut health_changes = WatchStream::from_changes(self.cache.health());
        let mut reload = Box::pin(next_reload(reloads));
        let drain = self.drain.child_token();
        let drained = drain.cancelled();
        let closed = tx.closed();
        let replaced = replaced.cancelled();
        tokio::pin!(drained, closed, replaced);
        loop {
            // In this order: what the session waits on most first, so that a wake-up for
            // an Ack or an Update looks at nothing else; then the rare ends and reloads
            // (a token's future takes its lock each time it is looked at).
            tokio::select! {
                biased;
                verdict = verdict_of(&mut verifying), if verifying.is_some() => {
                    let Some(pending) = verifying.take() else { continue };
                    let received = match verdict {
                        Ok(()) => self.count(id, &hello, &mut sent, &pending.program, pending.ack),
                        Err(refusal) => Received::Refused(AckRefusal::Receipt {
                            generation: pending.ack.generation,
                            refusal,
                        }),
                    };
                    if !self.act_on(received, &tx, &hello, &mut sent, &mut refused).await {
                        return;
                    }
                }
                message = inbound.message(), if verifying.is_none() => match message {
                    Ok(Some(message)) => {
                        let peer = certificate.as_ref();
                        let received = match self.receive(id, &hello, peer, &mut sent, message) {
                            Incoming::Checked(received) => received,
                            Incoming::Verify(pending) => {
                                verifying = Some(pending);
                                continue;
                            }
                        };
                        if !self.act_on(received, &tx, &hello, &mut sent, &mut refused).await {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(error = %status, "collector stream ended");
                        return;
                    }
                },
                Some((program, slot)) = changes.next() => {
                    // A policy change (a shorter grace) comes with a new state: judged
                    // from that state alone, so a change costs each session no lookups.
                    // A longer grace keeps the shorter period until the session ends.
                    let shorter = slot
                        .as_deref()
                        .and_then(grace_period)
                        .filter(|candidate| *candidate < period);
                    if !self.forward(&tx, &hello, &mut sent, &program, slot).await {
                        return;
                    }
                    if let Some(shorter) = shorter {
                        period = shorter;
                        heartbeat = heartbeat_interval(period);
                    }
                }
                healthy = health_changes.next() => {
                    let Some(healthy) = healthy else { return };
                    // Back in touch with etcd: vouch again for the current state, so
                    // collectors that paused for lost contact can reopen.
                    if healthy && !self.resend(&tx, &hello, &mut sent, &hello.programs).await {
                        return;
                    }
                }
                _ = heartbeat.tick() => {
                    // Only while this replica can vouch for the state it sent.
                    if self.cache.is_healthy() {
                        let beat = v1::Heartbeat {
                            revision: self.cache.revision(),
                            valid_for_ms: millis(period * HEARTBEATS_PER_GRACE),
                        };
                        if !send(&tx, control_message::Msg::Heartbeat(beat)).await {
                            return;
                        }
                        self.metrics.heartbeat();
                    }
                }
                () = &mut replaced => {
                    let status = Status::aborted(format!(
                        "replaced by a newer session of collector {} following the same programs",
                        hello.collector
                    ));
                    let _ = tx.send(Err(Box::new(status))).await;
                    return;
                }
                () = &mut drained => {
                    let delay = self.config.drain_spread.mul_f64(fastrand::f64());
                    let drain = v1::Drain { reconnect_after_ms: millis(delay) };
                    send(&tx, control_message::Msg::Drain(drain)).await;
                    return;
                }
                () = &mut closed => return,
                reloads = &mut reload => {
                    reload = Box::pin(next_reload(reloads));
                    if let Err(error) = self.auth.check_revoked(&hello.collector, serial.as_deref()) {
                        tracing::warn!(collector = %hello.collector, %error, "closing the session of a revoked collector");
                        let status = Status::from(ApiError::from(error));
                        let _ = tx.send(Err(Box::new(status))).await;
                        return;
                    }
                }
            }
        }
    }

    /// How often this session heartbeats: the configured interval, or more often when a
    /// fail-closed program it follows has a shorter grace (see [`HEARTBEATS_PER_GRACE`]).
    fn heartbeat_period(&self, hello: &Hello) -> Duration {
        hello
            .programs
            .iter()
            .filter_map(|program| self.cache.get(program))
            .filter_map(|state| grace_period(&state))
            .fold(self.config.heartbeat_interval, Duration::min)
    }

    /// Reads and checks Hello, takes the collector's session slot (counted from Hello
    /// when no certificate counted it already), and makes sure this replica can vouch for
    /// program state; the status to end the session with otherwise.
    async fn admit(
        &self,
        inbound: &mut Streaming<CollectorMessage>,
        certified: Option<CertifiedCollector>,
        identity: Option<CollectorSlot>,
    ) -> Result<(Hello, CollectorSlot), Status> {
        let mut hello = self.read_hello(inbound).await?;
        // Pinned labels take the certificate's values; a Hello contradicting them is
        // refused.
        let labels = self
            .auth
            .check_hello(
                certified.as_ref(),
                &hello.collector,
                &hello.labels,
                &hello.programs,
            )
            .map_err(|error| Status::from(ApiError::from(error)))?;
        if labels != *hello.labels {
            hello.labels = Arc::new(labels);
        }
        tracing::Span::current().record("collector", tracing::field::display(&hello.collector));
        let slot = match identity {
            Some(slot) => slot,
            None => self.collector_slot(&hello.collector)?,
        };
        if !self.cache.is_healthy() {
            return Err(Status::unavailable(
                "this replica has lost etcd and cannot vouch for program state; try another replica",
            ));
        }
        Ok((hello, slot))
    }

    /// The Snapshot of every program `hello` follows (recorded in `sent`), and the
    /// streams of their later changes.
    fn snapshot(
        &self,
        hello: &Hello,
        sent: &mut HashMap<ProgramName, Sent>,
    ) -> (v1::Snapshot, StreamMap<ProgramName, WatchStream<Slot>>) {
        let mut changes = StreamMap::new();
        let mut snapshot = v1::Snapshot::default();
        for program in &hello.programs {
            let mut rx = self.cache.subscribe(program);
            match rx.borrow_and_update().as_deref() {
                Some(state) => snapshot.states.push(sent_view(hello, sent, program, state)),
                None => snapshot.unknown_programs.push(program.to_string()),
            }
            changes.insert(program.clone(), WatchStream::from_changes(rx));
        }
        (snapshot, changes)
    }

    /// Does what a message from the collector calls for: send a state again, or count a
    /// refused acknowledgement and close the session after too many. `false` when the
    /// session is over.
    async fn act_on(
        &self,
        received: Received,
        tx: &Outbound,
        hello: &Hello,
        sent: &mut HashMap<ProgramName, Sent>,
        refused: &mut u32,
    ) -> bool {
        match received {
            Received::Done => true,
            Received::Resend(program) => {
                self.resend(tx, hello, sent, std::slice::from_ref(&program))
                    .await
            }
            Received::Refused(refusal) => {
                *refused += 1;
                match self.refused(hello, *refused, &refusal) {
                    Some(status) => {
                        let _ = tx.send(Err(Box::new(status))).await;
                        false
                    }
                    None => true,
                }
            }
        }
    }

    /// Counts and logs (the first at warn) the `refused`-th refused acknowledgement; the
    /// status that closes the session once there were more than [`MAX_REFUSED_ACKS`].
    fn refused(&self, hello: &Hello, refused: u32, refusal: &AckRefusal) -> Option<Status> {
        self.metrics
            .refused_ack(refusal.reason(), hello.collector.as_str());
        if refused == 1 {
            tracing::warn!(collector = %hello.collector, %refusal, "refused an acknowledgement");
        } else {
            tracing::debug!(collector = %hello.collector, %refusal, "refused an acknowledgement");
        }
        (refused > MAX_REFUSED_ACKS).then(|| {
            tracing::warn!(collector = %hello.collector, refused, "closing a session that sent too many refused acknowledgements");
            Status::invalid_argument(format!(
                "closing the session: {refused} acknowledgements did not match any state this \
                 replica sent; the last one {refusal}"
            ))
        })
    }

    async fn read_hello(&self, inbound: &mut Streaming<CollectorMessage>) -> Result<Hello, Status> {
        let first = tokio::time::timeout(self.config.hello_timeout, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no Hello received in time: send Hello first")
            })??;
        match first.and_then(|m| m.msg) {
            Some(collector_message::Msg::Hello(hello)) => {
                parse_hello(hello).map_err(|e| Status::invalid_argument(e.to_string()))
            }
            _ => Err(Status::invalid_argument(
                "the first message of a session must be Hello",
            )),
        }
    }

    /// Sends the current state of `programs` again.
    async fn resend(
        &self,
        tx: &Outbound,
        hello: &Hello,
        sent: &mut HashMap<ProgramName, Sent>,
        programs: &[ProgramName],
    ) -> bool {
        for program in programs {
            if let Some(state) = self.cache.get(program) {
                let update = v1::Update {
                    state: Some(sent_view(hello, sent, program, &state)),
                };
                if !send(tx, control_message::Msg::Update(update)).await {
                    return false;
                }
            }
        }
        true
    }

    /// Sends a changed state if it is newer than what this collector was sent.
    async fn forward(
        &self,
        tx: &Outbound,
        hello: &Hello,
        sent: &mut HashMap<ProgramName, Sent>,
        program: &ProgramName,
        slot: Slot,
    ) -> bool {
        let Some(state) = slot else { return true };
        if sent
            .get(program)
            .is_some_and(|s| s.latest() >= state.generation)
        {
            return true;
        }
        let update = v1::Update {
            state: Some(sent_view(hello, sent, program, &state)),
        };
        send(tx, control_message::Msg::Update(update)).await
    }

    /// Checks and records one message from the collector; `peer` is the session's client
    /// certificate, which an Ack's receipt must be signed with. An Ack with a signed
    /// receipt is counted only once the signature verified: it is handed to the
    /// verification pool ([`Incoming::Verify`]).
    fn receive(
        &self,
        id: SessionId,
        hello: &Hello,
        peer: Option<&PeerCertificate>,
        sent: &mut HashMap<ProgramName, Sent>,
        message: CollectorMessage,
    ) -> Incoming {
        let ack = match message.msg {
            Some(collector_message::Msg::Ack(ack)) => ack,
            Some(collector_message::Msg::Hello(_)) => {
                tracing::debug!("ignoring a second Hello");
                return Incoming::Checked(Received::Done);
            }
            None => {
                tracing::debug!("ignoring an empty message");
                return Incoming::Checked(Received::Done);
            }
        };
        let Some(program) = hello.programs.iter().find(|p| p.as_str() == ack.program) else {
            return Incoming::Checked(Received::Refused(AckRefusal::UnknownProgram(ack.program)));
        };
        let Some(record) = sent.get(program) else {
            return Incoming::Checked(Received::Refused(AckRefusal::NeverSent {
                generation: ack.generation,
                latest: 0,
            }));
        };
        let intended = match record.check(ack.generation, ack.effective) {
            Ok(Some(intended)) => intended,
            Ok(None) => {
                tracing::debug!(%program, generation = ack.generation, "ignoring an ack older than every state remembered");
                return Incoming::Checked(Received::Done);
            }
            Err(refusal) => return Incoming::Checked(Received::Refused(refusal)),
        };
        // A receipt must say what the Ack says, signed with the session's certificate; an
        // Ack without one (an older SDK) is counted as before, with nothing to keep.
        let (receipt, signature) = match ack.receipt {
            Some(signed) => {
                let signed = Arc::new(signed);
                let expected = receipts::Expected {
                    collector: hello.collector.as_str(),
                    program: program.as_str(),
                    generation: ack.generation,
                    effective: ack.effective,
                };
                match receipts::precheck(&signed, &expected, peer) {
                    Ok(Checked::Unsigned) => (Some(signed), None),
                    Ok(Checked::Signed(signature)) => (Some(signed), Some(signature)),
                    Err(refusal) => {
                        return Incoming::Checked(Received::Refused(AckRefusal::Receipt {
                            generation: ack.generation,
                            refusal,
                        }));
                    }
                }
            }
            None => (None, None),
        };
        let ack = AckRecord {
            generation: ack.generation,
            effective: RunState::from_wire(ack.effective),
            intended,
            error: truncate(ack.error, 1024),
            applied_at: ack.applied_at.and_then(|t| SystemTime::try_from(t).ok()),
            purged: ack.purged,
            receipt,
        };
        match signature {
            Some(signature) => Incoming::Verify(Box::new(Verifying {
                program: program.clone(),
                ack,
                verdict: self.verifier.submit(signature),
            })),
            None => Incoming::Checked(self.count(id, hello, sent, program, ack)),
        }
    }

    /// Records an Ack that passed every check in the book; asks to send the state again
    /// when the collector diverged.
    fn count(
        &self,
        id: SessionId,
        hello: &Hello,
        sent: &mut HashMap<ProgramName, Sent>,
        program: &ProgramName,
        ack: AckRecord,
    ) -> Received {
        tracing::debug!(collector = %hello.collector, %program, generation = ack.generation, "ack");
        let current = self.cache.get(program);
        let record = sent.entry(program.clone()).or_default();
        // A collector paused for lost contact although this session is up: sending the
        // current RUNNING again is the contact it missed, and reopens its gate. Only
        // while this replica can vouch for the state: without etcd, the pause is right.
        let resend = ack.diverged()
            && record.resend_armed
            && self.cache.is_healthy()
            && current
                .as_ref()
                .is_some_and(|s| s.generation == ack.generation);
        record.resend_armed = !ack.diverged();
        let timing = current.and_then(|state| Some((state.generation, state.changed_at?)));
        self.book.ack(id, &hello.collector, program, ack, timing);
        if resend {
            Received::Resend(program.clone())
        } else {
            Received::Done
        }
    }
}

/// An Ack whose receipt passed every check but the signature, waiting for the
/// verification pool's verdict.
#[derive(Debug)]
struct Verifying {
    program: ProgramName,
    ack: AckRecord,
    verdict: Verdict,
}

/// Completes at the next reload of the replica's credentials, giving `reloads` back.
async fn next_reload(mut reloads: Reloads) -> Reloads {
    reloads.next().await;
    reloads
}

/// The verdict on the Ack being verified; never resolves without one.
async fn verdict_of(verifying: &mut Option<Box<Verifying>>) -> Result<(), ReceiptRefusal> {
    match verifying {
        Some(pending) => (&mut pending.verdict).await,
        None => std::future::pending().await,
    }
}

/// What a message from the collector leads to.
#[derive(Debug)]
enum Incoming {
    /// Checked completely.
    Checked(Received),
    /// Checked but for its receipt's signature.
    Verify(Box<Verifying>),
}

/// What the session does after a message from its collector.
#[derive(Debug)]
enum Received {
    /// Nothing more.
    Done,
    /// Send this program's current state again (a diverged Ack).
    Resend(ProgramName),
    /// The Ack did not match what was sent: count it, and close the session after
    /// [`MAX_REFUSED_ACKS`].
    Refused(AckRefusal),
}

/// Shortest heartbeat period, whatever the grace (the shortest grace is 1 s).
const MIN_HEARTBEAT_PERIOD: Duration = Duration::from_millis(100);

/// The heartbeat period a fail-closed program's grace asks for ([`HEARTBEATS_PER_GRACE`]
/// per grace, at least [`MIN_HEARTBEAT_PERIOD`]); `None` for a fail-open program.
fn grace_period(state: &ProgramState) -> Option<Duration> {
    (state.policy.on_lost_contact == LostContact::Pause)
        .then(|| (state.policy.grace / HEARTBEATS_PER_GRACE).max(MIN_HEARTBEAT_PERIOD))
}

/// A heartbeat timer whose first tick comes one `period` from now.
fn heartbeat_interval(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// What `hello`'s collector receives of `state`, recorded in `sent` as sent.
fn sent_view(
    hello: &Hello,
    sent: &mut HashMap<ProgramName, Sent>,
    program: &ProgramName,
    state: &ProgramState,
) -> v1::ProgramState {
    let view = hello.view(state);
    sent.entry(program.clone())
        .or_default()
        .record(state.generation, RunState::from_wire(view.state));
    view
}

async fn send(tx: &Outbound, msg: control_message::Msg) -> bool {
    tx.send(Ok(Box::new(ControlMessage { msg: Some(msg) })))
        .await
        .is_ok()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str, programs: &[&str]) -> v1::Hello {
        v1::Hello {
            collector_id: id.into(),
            programs: programs.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn hello_validation() {
        assert!(parse_hello(hello("c1", &["demo"])).is_ok());
        assert!(matches!(
            parse_hello(hello("", &["demo"])),
            Err(InvalidInput::CollectorId(_))
        ));
        assert!(matches!(
            parse_hello(hello("c1", &[])),
            Err(InvalidInput::Missing { .. })
        ));
        assert!(matches!(
            parse_hello(hello("c1", &["Bad"])),
            Err(InvalidInput::ProgramName(_))
        ));
        let many: Vec<String> = (0..65).map(|i| format!("p{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            parse_hello(hello("c1", &many)).map(|_| ()),
            Err(InvalidInput::TooMany {
                field: "programs",
                count: 65,
                max: MAX_PROGRAMS_PER_SESSION
            })
        );
        let mut labelled = hello("c1", &["demo"]);
        labelled.labels.insert("region".into(), "x".repeat(129));
        assert!(matches!(
            parse_hello(labelled),
            Err(InvalidInput::TooLong {
                field: "label value",
                ..
            })
        ));
    }

    #[test]
    fn hello_bounds() {
        let max: Vec<String> = (0..MAX_PROGRAMS_PER_SESSION)
            .map(|i| format!("p{i}"))
            .collect();
        let max: Vec<&str> = max.iter().map(String::as_str).collect();
        assert!(parse_hello(hello("c1", &max)).is_ok());
        // Duplicates count against the limit: it bounds the work done on the message.
        let dup = vec!["demo"; MAX_PROGRAMS_PER_SESSION + 1];
        assert!(matches!(
            parse_hello(hello("c1", &dup)),
            Err(InvalidInput::TooMany {
                field: "programs",
                ..
            })
        ));

        let labelled = |labels: &[(&str, &str)]| {
            let mut hello = hello("c1", &["demo"]);
            hello.labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            parse_hello(hello)
        };
        let keys: Vec<String> = (0..MAX_LABELS).map(|i| format!("k{i}")).collect();
        let labels: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        let parsed = labelled(&labels).expect("valid labels");
        assert_eq!(parsed.labels.len(), MAX_LABELS);
        let keys: Vec<String> = (0..=MAX_LABELS).map(|i| format!("k{i}")).collect();
        let labels: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        let refused = labelled(&labels).map(|_| ()).expect_err("too many labels");
        assert_eq!(refused.to_string(), "33 labels; at most 32 are allowed");
        assert!(labelled(&[("app.kubernetes.io/name", "eu west/1")]).is_ok());
        assert!(labelled(&[("region", "")]).is_ok());
        assert!(matches!(
            labelled(&[("Region", "x")]),
            Err(InvalidInput::LabelKey(_))
        ));
        assert!(matches!(
            labelled(&[("region-", "x")]),
            Err(InvalidInput::LabelKey(_))
        ));
        assert!(matches!(
            labelled(&[(&"k".repeat(64), "x")]),
            Err(InvalidInput::TooLong {
                field: "label key",
                ..
            })
        ));
        assert!(matches!(
            labelled(&[("region", "a\nb")]),
            Err(InvalidInput::ControlCharacters {
                field: "label value"
            })
        ));
    }

    #[test]
    fn session_slots_are_bounded_and_given_back() {
        let count = SessionCount::default();
        let first = count.acquire(2).expect("first slot");
        let second = count.acquire(2).expect("second slot");
        assert!(count.acquire(2).is_none(), "full");
        assert_eq!(count.open(), 2, "a refusal changes nothing");
        drop(first);
        assert_eq!(count.open(), 1);
        let third = count.acquire(2).expect("a slot was given back");
        drop((second, third));
        assert_eq!(count.open(), 0);
        assert!(SessionCount::default().acquire(0).is_none());
    }

    #[tokio::test]
    async fn a_slot_is_given_back_when_its_task_panics_or_is_aborted() {
        let count = SessionCount::default();
        let slot = count.acquire(1).expect("slot");
        let panicked = tokio::spawn(async move {
            let _slot = slot;
            panic!("session task failed");
        })
        .await;
        assert!(panicked.is_err_and(|e| e.is_panic()));
        assert_eq!(count.open(), 0);

        let slot = count.acquire(1).expect("slot");
        let task = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await;
        });
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(count.open(), 0);
    }

    /// Through a real server on loopback: a connection that never sends Hello is closed
    /// after the hello timeout, and one session over the cap is refused until then.
    #[tokio::test]
    async fn silent_sessions_time_out_and_the_cap_refuses_one_more() {
        use killswitch_proto::v1::collector_service_client::CollectorServiceClient;
        use killswitch_proto::v1::collector_service_server::CollectorServiceServer;
        use tokio_stream::wrappers::TcpListenerStream;

        let hello_timeout = Duration::from_secs(1);
        let config = SessionConfig {
            hello_timeout,
            max_sessions: 1,
            ..SessionConfig::default()
        };
        let sessions = Sessions::new(
            Arc::new(StateCache::new()),
            Arc::new(AckBook::new()),
            config,
            CancellationToken::new(),
            Arc::new(Auth::insecure_dev()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CollectorServiceServer::new(sessions.clone()))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let mut client = CollectorServiceClient::connect(format!("http://{address}"))
            .await
            .expect("connect");

        // Keep the senders: the request streams stay open and send nothing.
        let (_silent, silent) = mpsc::channel::<CollectorMessage>(1);
        let started = std::time::Instant::now();
        let mut first = client
            .session(ReceiverStream::new(silent))
            .await
            .expect("first session")
            .into_inner();
        assert_eq!(sessions.open_sessions(), 1);

        let (_extra, extra) = mpsc::channel::<CollectorMessage>(1);
        let refused = client
            .session(ReceiverStream::new(extra))
            .await
            .expect_err("over the cap");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "this replica already serves 1 sessions; connect to another replica"
        );

        let closed = first.message().await.expect_err("closed without Hello");
        assert_eq!(closed.code(), tonic::Code::DeadlineExceeded);
        assert!(started.elapsed() >= hello_timeout);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sessions.open_sessions() != 0 {
            assert!(std::time::Instant::now() < deadline, "slot not given back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        stop.cancel();
        server.await.expect("server task").expect("server");
    }

    const PAUSED: i32 = v1::RunState::Paused as i32;
    const RUNNING: i32 = v1::RunState::Running as i32;

    #[test]
    fn an_ack_must_match_a_state_sent() {
        let mut sent = Sent::default();
        assert_eq!(
            sent.check(0, PAUSED),
            Err(AckRefusal::NeverSent {
                generation: 0,
                latest: 0
            }),
            "nothing sent yet"
        );
        sent.record(7, RunState::Paused);
        sent.record(9, RunState::Running);
        assert_eq!(sent.check(7, PAUSED), Ok(Some(RunState::Paused)));
        assert_eq!(sent.check(9, RUNNING), Ok(Some(RunState::Running)));
        assert_eq!(
            sent.check(9, PAUSED),
            Ok(Some(RunState::Running)),
            "PAUSED is always possible (lost contact, a refused resume)"
        );
        assert_eq!(
            sent.check(7, RUNNING),
            Err(AckRefusal::WrongEffective {
                generation: 7,
                effective: v1::RunState::Running,
                intended: RunState::Paused
            })
        );
        assert!(matches!(
            sent.check(9, 0),
            Err(AckRefusal::WrongEffective { .. })
        ));
        assert!(matches!(
            sent.check(9, 42),
            Err(AckRefusal::WrongEffective { .. })
        ));
        assert_eq!(
            sent.check(1009, PAUSED),
            Err(AckRefusal::Future {
                generation: 1009,
                latest: 9
            })
        );
        assert_eq!(
            sent.check(8, PAUSED),
            Err(AckRefusal::NeverSent {
                generation: 8,
                latest: 9
            })
        );
        assert!(
            matches!(sent.check(3, PAUSED), Err(AckRefusal::NeverSent { .. })),
            "the window is not full: everything sent is remembered"
        );
    }

    #[test]
    fn acks_older_than_the_window_are_ignored_not_refused() {
        let mut sent = Sent::default();
        for generation in [10, 11, 12, 13, 14] {
            sent.record(generation, RunState::Paused);
        }
        assert_eq!(sent.latest(), 14);
        assert_eq!(sent.check(10, PAUSED), Ok(None), "forgotten, maybe sent");
        assert_eq!(sent.check(11, PAUSED), Ok(Some(RunState::Paused)));
        sent.record(12, RunState::Running);
        assert_eq!(sent.latest(), 14, "sending a state again keeps the order");
        assert_eq!(sent.check(12, RUNNING), Ok(Some(RunState::Running)));
    }

    #[test]
    fn refusals_explain_themselves() {
        let refusal = AckRefusal::Future {
            generation: 1020,
            latest: 20,
        };
        assert_eq!(refusal.reason(), "future");
        assert_eq!(
            refusal.to_string(),
            "acknowledged generation 1020, ahead of the newest one this replica sent (20)"
        );
        let long = AckRefusal::UnknownProgram("x".repeat(10_000));
        assert!(long.to_string().len() < 200, "quotes only the start");
    }

    #[test]
    fn a_collector_holds_a_bounded_number_of_sessions_and_a_newer_one_replaces_its_twin() {
        let collectors = Collectors::default();
        let c1 = CollectorId::parse("c1").expect("valid id");
        let first = collectors.acquire(&c1, 2).expect("first");
        let second = collectors.acquire(&c1, 2).expect("second");
        assert!(collectors.acquire(&c1, 2).is_none(), "c1 holds its limit");
        let c2 = CollectorId::parse("c2").expect("valid id");
        assert!(
            collectors.acquire(&c2, 2).is_some(),
            "others are not affected"
        );
        drop(first);
        let third = collectors.acquire(&c1, 2).expect("a slot was given back");
        drop((second, third));
        assert!(
            collectors.lock().per_collector.is_empty(),
            "nothing left behind"
        );

        let both = parse_hello(hello("c1", &["a", "b"])).expect("valid hello");
        let older = collectors.follow(1, &both);
        let newer = collectors.follow(2, &both);
        assert!(older.is_cancelled(), "the older session is replaced");
        assert!(!newer.is_cancelled());
        let other = parse_hello(hello("c1", &["a"])).expect("valid hello");
        assert!(!collectors.follow(3, &other).is_cancelled());
        assert!(
            !newer.is_cancelled(),
            "another program set is another session"
        );
        collectors.unfollow(1, &both);
        assert_eq!(
            collectors.lock().by_programs.len(),
            2,
            "the replaced one cannot unregister"
        );
        collectors.unfollow(2, &both);
        collectors.unfollow(3, &other);
        assert!(collectors.lock().by_programs.is_empty());
    }

    #[test]
    fn duplicate_programs_are_followed_once() {
        let parsed = parse_hello(hello("c1", &["b", "a", "b"])).expect("valid hello");
        assert_eq!(
            parsed
                .programs
                .iter()
                .map(ProgramName::as_str)
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("aé".into(), 2), "a");
        assert_eq!(truncate("abc".into(), 5), "abc");
    }
}
