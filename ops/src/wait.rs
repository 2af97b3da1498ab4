//! `--wait`: after a change commits at generation G, follow `WatchStatus` until every
//! connected collector has acknowledged G with its gate in the state intended for it, a
//! collector's hooks failed, a newer change superseded G, or the deadline passes.
//!
//! [`decide`] is the whole rule, a pure function of G, one status and what the statuses of
//! G before it counted ([`Seen`], kept by [`Counted`]); [`wait`] only feeds it statuses. A
//! staged resume (`resume --stages --wait`) moves through several generations, one per
//! stage: [`decide_rollout`] judges it and [`wait_rollout`] follows it until it completes
//! (RUNNING for everyone, acknowledged) or is aborted. A stream that ends, or fails for
//! any other reason than the control plane answering that it cannot serve it for now
//! (`UNAVAILABLE` from a running replica: its etcd slow or briefly unreachable, while the
//! change is committed), ends the wait. After such an answer the stream is opened again
//! every [`REOPEN_PAUSE`] until the deadline: each status is a whole snapshot and what
//! the statuses counted is kept, so nothing a responder must see is skipped, and the
//! timeout message then gives the control plane's last answer. [`reported`] follows
//! the stream briefly for the status of a change that every replica has reported on,
//! without waiting for acknowledgements.
//!
//! They take their statuses from a [`StatusSource`]. The CLI passes them a function that
//! opens a `WatchStatus` call ([`Session::watch_status`](crate::client::Session::watch_status),
//! a [`StatusStream`]), called within the deadline, which covers opening too; the tests
//! pass scripts.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::StatusStream;
use crate::exit::{Error, Exit};
use crate::output::{clean, diverged_line};
use crate::view::{Micros, RunState, StageView, StatusView};

/// How many collector ids an error message lists at most.
const LISTED_IN_MESSAGES: usize = 5;

/// How long a wait pauses before it opens the status stream again, after the control
/// plane answered that it cannot serve it for now.
pub const REOPEN_PAUSE: Duration = Duration::from_millis(250);

/// What one status means for a wait on generation G.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not there yet: collectors are pending or diverged, collectors counted before are
    /// missing from the counts, or the status predates G (the replica serving the stream
    /// has not caught up).
    Continue,
    /// Every connected collector acknowledged G without error, its gate as intended.
    Done,
    /// Nothing is pending, but some collectors' hooks failed at G.
    Failed,
    /// The program moved past G: a newer change replaced ours.
    Superseded,
}

/// Judges `status` for a wait on `generation`; `seen` is what the statuses of `generation`
/// received so far counted, this one included (see [`Counted`]).
///
/// A collector that acknowledged G but whose gate is not in the state intended for it
/// (diverged: PAUSED for lost contact while RUNNING is intended) is no confirmation: the
/// wait goes on, since the replica sends it the state again and such pauses usually
/// heal. Nor is a status that no longer counts collectors counted before, connected or
/// disconnected (see `vanished`): they went missing without disconnecting (a replica's
/// registration or summaries went missing from etcd), so the wait goes on.
///
/// Otherwise zero connected collectors is [`Decision::Done`]: every connected collector
/// has acknowledged. The status shows the count, so nobody mistakes it for a fleet.
#[must_use]
pub fn decide(generation: u64, status: &StatusView, seen: Seen) -> Decision {
    let c = &status.collectors;
    match status.state.generation.cmp(&generation) {
        Ordering::Less => Decision::Continue,
        Ordering::Greater => Decision::Superseded,
        Ordering::Equal if c.pending_count > 0 => Decision::Continue,
        // A replica that has not reported on G may hold collectors not counted yet.
        Ordering::Equal if !status.replicas_behind.is_empty() => Decision::Continue,
        Ordering::Equal if c.errored_count > 0 => Decision::Failed,
        Ordering::Equal if c.diverged_count > 0 => Decision::Continue,
        Ordering::Equal if vanished(status, seen) > 0 => Decision::Continue,
        Ordering::Equal => Decision::Done,
    }
}

/// How many collectors counted in earlier statuses of its generation `status` counts
/// neither as connected nor as disconnected.
///
/// Against the same replicas, a count may only grow: one that falls below
/// [`Seen::most`] lost collectors. Across a change of the replicas counted, only "none at
/// all" is taken as lost ([`Seen::most_ever`] of them): a replica that crashes keeps its
/// summary in etcd until its lease expires, so its collectors, reconnected to another
/// replica, are counted twice until then, and the fall that follows cannot be told from
/// a loss by the counts alone.
fn vanished(status: &StatusView, seen: Seen) -> u64 {
    let c = &status.collectors;
    let counted = c.connected.saturating_add(c.disconnected_count);
    if counted < seen.most {
        seen.most - counted
    } else if counted == 0 {
        seen.most_ever
    } else {
        0
    }
}

/// What the statuses of one generation counted, for [`decide`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// The most collectors seen connected since the set of replicas counted last changed.
    pub most: u64,
    /// The most collectors seen connected at all.
    pub most_ever: u64,
}

/// Keeps [`Seen`] over the statuses a wait receives, for the latest generation among
/// them; a stage of a staged resume starts afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counted {
    generation: u64,
    replicas: Vec<String>,
    seen: Seen,
}

impl Counted {
    /// Notes `status` and returns what the statuses of its generation counted, its own
    /// count included. A status older than one noted before changes nothing, and is
    /// judged alone.
    pub fn note(&mut self, status: &StatusView) -> Seen {
        let connected = status.collectors.connected;
        match status.state.generation.cmp(&self.generation) {
            Ordering::Less => {
                return Seen {
                    most: connected,
                    most_ever: connected,
                };
            }
            Ordering::Greater => {
                *self = Self {
                    generation: status.state.generation,
                    replicas: status.replicas.clone(),
                    seen: Seen {
                        most: connected,
                        most_ever: connected,
                    },
                };
            }
            Ordering::Equal if status.replicas != self.replicas => {
                self.replicas.clone_from(&status.replicas);
                self.seen.most = connected;
            }
            Ordering::Equal => self.seen.most = self.seen.most.max(connected),
        }
        self.seen.most_ever = self.seen.most_ever.max(connected);
        self.seen
    }

    /// What the statuses of `generation` counted; nothing when none was noted.
    #[must_use]
    pub fn at(&self, generation: u64) -> Seen {
        if generation == self.generation {
            self.seen
        } else {
            Seen::default()
        }
    }
}

/// What is still wrong in a status of the waited generation besides its pending and
/// errored counts, for a message: `; 2 effectively PAUSED although RUNNING is intended
/// (lost contact?): ...`, vanished collectors, replicas that have not reported.
fn not_confirmed(program: &str, status: &StatusView, seen: Seen) -> String {
    let mut text = String::new();
    if let Some(diverged) = diverged_line(&status.collectors, LISTED_IN_MESSAGES) {
        let _ = write!(text, "; {diverged}");
    }
    let missing = vanished(status, seen);
    if missing > 0 {
        let _ = write!(
            text,
            "; {missing} {} connected at generation {} but {} no longer counted and did not \
             disconnect: a replica's summaries may be missing; check `killswitch collectors {}`",
            if missing == 1 {
                "collector was"
            } else {
                "collectors were"
            },
            status.state.generation,
            if missing == 1 { "is" } else { "are" },
            clean(program)
        );
    }
    if !status.replicas_behind.is_empty() {
        let behind: Vec<String> = status.replicas_behind.iter().map(|r| clean(r)).collect();
        let _ = write!(
            text,
            "; replicas {} have not reported on it yet",
            behind.join(", ")
        );
    }
    text
}

/// `; pending: c1, c2 and 3 more`, or nothing when none is pending.
fn stragglers(status: &StatusView) -> String {
    let c = &status.collectors;
    if c.pending_count == 0 {
        return String::new();
    }
    let listed: Vec<String> = c.pending.iter().take(10).map(|id| clean(id)).collect();
    let mut text = format!("; pending: {}", listed.join(", "));
    let count = u64::try_from(listed.len()).unwrap_or(u64::MAX);
    if c.pending_count > count {
        let _ = write!(text, " and {} more", c.pending_count - count);
    }
    text
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every connected collector acknowledged.
    Done,
    /// Some collectors' hooks failed and none is pending.
    Failed,
    /// A newer generation replaced ours.
    Superseded,
    /// The deadline passed first.
    TimedOut,
    /// The stream could not be opened, failed, or ended: the error says which.
    Broken(Error),
}

/// The end of a wait on one generation, and the last status seen before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    /// How it ended.
    pub outcome: Outcome,
    /// The last status received; for [`Outcome::Superseded`] the superseding one.
    pub last: Option<StatusView>,
    program: String,
    generation: u64,
    limit: Duration,
    seen: Seen,
    unanswered: Option<String>,
}

impl Waited {
    /// Whether every connected collector acknowledged the generation.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.outcome == Outcome::Done
    }

    /// `Ok` when complete, else the error to report once the result is printed.
    pub fn result(&self) -> Result<(), Error> {
        let generation = self.generation;
        let last = self.last.as_ref();
        let message = match (&self.outcome, last) {
            (Outcome::Done, _) => return Ok(()),
            (Outcome::Broken(err), _) => return Err(err.clone()),
            (Outcome::TimedOut, status) => {
                return Err(timed_out(self.timeout_message(status), &self.unanswered));
            }
            (Outcome::Failed, Some(status)) => {
                let c = &status.collectors;
                format!(
                    "hooks failed on {} of {} connected collectors at generation {generation}",
                    c.errored_count, c.connected
                )
            }
            (Outcome::Superseded, Some(status)) => format!(
                "generation {generation} was superseded by generation {} ({}, by {}) before \
                 every collector acknowledged it",
                status.state.generation,
                status.state.state,
                clean(&status.state.actor)
            ),
            // `wait` decides these from a status, which it keeps.
            (Outcome::Failed | Outcome::Superseded, None) => {
                format!("generation {generation} was not acknowledged by every collector")
            }
        };
        Err(Error::new(Exit::Error, message))
    }

    fn timeout_message(&self, last: Option<&StatusView>) -> String {
        let limit = humantime::format_duration(self.limit);
        let generation = self.generation;
        match last {
            None => format!("timed out after {limit} before the control plane sent a status"),
            Some(status) if status.state.generation < generation => format!(
                "timed out after {limit}: the control plane still reports generation {} \
                 (waiting for {generation})",
                status.state.generation
            ),
            Some(status) => {
                let c = &status.collectors;
                format!(
                    "timed out after {limit} waiting for collectors to acknowledge generation \
                     {generation}: {} pending, {} errored of {} connected{}{}",
                    c.pending_count,
                    c.errored_count,
                    c.connected,
                    stragglers(status),
                    not_confirmed(&self.program, status, self.seen)
                )
            }
        }
    }
}

/// The statuses of one program, in the order the control plane sends them: the current
/// one, then every change. [`StatusStream`] (an open `WatchStatus` call) is the one the
/// CLI uses.
pub trait StatusSource {
    /// The next status; `None` when the control plane ended the stream, an error when it
    /// broke.
    fn next(&mut self) -> impl Future<Output = Result<Option<StatusView>, Error>> + Send;
}

impl StatusSource for StatusStream {
    fn next(&mut self) -> impl Future<Output = Result<Option<StatusView>, Error>> + Send {
        StatusStream::next(self)
    }
}

/// The statuses from the streams `open` opens: opened on first use, and again (after
/// [`REOPEN_PAUSE`]) whenever opening or reading fails with a transient error
/// ([`Error::is_transient`]). The caller's deadline bounds how long that goes on.
struct Reopening<O, S> {
    open: O,
    stream: Option<S>,
    /// The last transient error, until a status follows it.
    unanswered: Option<Error>,
}

impl<O, F, S> Reopening<O, S>
where
    O: FnMut() -> F,
    F: Future<Output = Result<S, Error>>,
    S: StatusSource,
{
    fn new(open: O) -> Self {
        Self {
            open,
            stream: None,
            unanswered: None,
        }
    }

    async fn next(&mut self) -> Result<Option<StatusView>, Error> {
        loop {
            let next = if let Some(stream) = self.stream.as_mut() {
                stream.next().await
            } else {
                match (self.open)().await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        continue;
                    }
                    Err(err) => Err(err),
                }
            };
            match next {
                Err(err) if err.is_transient() => {
                    self.stream = None;
                    self.unanswered = Some(err);
                    tokio::time::sleep(REOPEN_PAUSE).await;
                }
                Ok(Some(status)) => {
                    self.unanswered = None;
                    return Ok(Some(status));
                }
                other => return other,
            }
        }
    }

    /// What the control plane last answered, when no status came after it.
    fn unanswered(&self) -> Option<String> {
        self.unanswered.as_ref().map(|err| err.message().to_owned())
    }
}

/// The error of a wait that timed out with `message`, and what the control plane last
/// answered if the stream was being opened again when the deadline came.
fn timed_out(message: String, unanswered: &Option<String>) -> Error {
    match unanswered {
        Some(answer) => Error::new(
            Exit::AckTimeout,
            format!("{message}; last answer: {answer}"),
        ),
        None => Error::new(Exit::AckTimeout, message),
    }
}

/// Follows the statuses of `program` from the streams `open` opens until [`decide`] stops
/// at `generation`, a stream breaks, or `limit` has passed since `start`. `on_status` sees
/// every status, e.g. to show progress.
///
/// `open` opens a stream (`|| session.watch_status(program)`): the deadline covers opening
/// it too, and failing to open it breaks the wait like failing to read it, unless the
/// error is transient: then it is opened again (see the module's documentation). The
/// per-RPC timeout of a session bounds only each opening (see
/// [`Session::connect`](crate::client::Session::connect)).
pub async fn wait<S: StatusSource, F: Future<Output = Result<S, Error>>>(
    open: impl FnMut() -> F,
    program: &str,
    generation: u64,
    start: Instant,
    limit: Duration,
    mut on_status: impl FnMut(&StatusView),
) -> Waited {
    let mut last = None;
    let mut counted = Counted::default();
    let mut stream = Reopening::new(open);
    let follow = async {
        while let Some(status) = stream.next().await? {
            on_status(&status);
            let decision = decide(generation, &status, counted.note(&status));
            last = Some(status);
            match decision {
                Decision::Continue => {}
                Decision::Done => return Ok(Outcome::Done),
                Decision::Failed => return Ok(Outcome::Failed),
                Decision::Superseded => return Ok(Outcome::Superseded),
            }
        }
        Err(Error::new(
            Exit::Error,
            format!(
                "the control plane ended the status stream before every collector \
                 acknowledged generation {generation}"
            ),
        ))
    };
    let outcome = match tokio::time::timeout_at(start + limit, follow).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => Outcome::Broken(err),
        Err(_elapsed) => Outcome::TimedOut,
    };
    Waited {
        outcome,
        last,
        program: program.to_owned(),
        generation,
        limit,
        seen: counted.at(generation),
        unanswered: stream.unanswered(),
    }
}

/// Follows the statuses from `open` (as [`wait`] does) for at most `limit` until a status
/// of `generation` arrives that every registered replica has reported on: its counts
/// cover every collector the change was aimed at. `None` when none came in time, the
/// program moved past `generation` first, or the stream could not be followed (best
/// effort: the change is committed whatever happens here).
pub async fn reported<S: StatusSource>(
    open: impl Future<Output = Result<S, Error>>,
    generation: u64,
    limit: Duration,
) -> Option<StatusView> {
    let follow = async {
        let mut stream = open.await.ok()?;
        while let Ok(Some(status)) = stream.next().await {
            match status.state.generation.cmp(&generation) {
                Ordering::Less => {}
                Ordering::Greater => return None,
                Ordering::Equal if status.replicas_behind.is_empty() => return Some(status),
                Ordering::Equal => {}
            }
        }
        None
    };
    tokio::time::timeout(limit, follow).await.ok().flatten()
}

/// What one status means for a wait on a staged resume that started at generation S.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutDecision {
    /// The rollout is still going (the replicas' driver moves it on), or the status
    /// predates S, or the last generation is not acknowledged everywhere yet.
    Continue,
    /// The rollout completed: RUNNING for every collector, and every connected collector
    /// acknowledged that generation without error.
    Done,
    /// It completed, but some collectors' resume hooks failed at the last generation.
    Failed,
    /// It ended PAUSED for everyone, and every connected collector acknowledged that (or
    /// failed to): the driver aborted it (an errored acknowledgement), or an operator
    /// aborted it or paused the program.
    Aborted,
    /// Another kind of change replaced it (a scoped pause or resume, a drill).
    Superseded,
}

/// Judges `status` for a wait on the staged resume that started at generation `start`;
/// `seen` is what the statuses of its generation counted (see [`decide`]).
#[must_use]
pub fn decide_rollout(start: u64, status: &StatusView, seen: Seen) -> RolloutDecision {
    let state = &status.state;
    if state.generation < start || state.rollout.is_some() {
        return RolloutDecision::Continue;
    }
    let whole = state.rules.is_empty() && state.scope.is_none();
    let decision = decide(state.generation, status, seen);
    match state.state {
        RunState::Running if whole => match decision {
            Decision::Continue | Decision::Superseded => RolloutDecision::Continue,
            Decision::Done => RolloutDecision::Done,
            Decision::Failed => RolloutDecision::Failed,
        },
        // Aborted: once its pause is acknowledged (or failed) everywhere, so the result
        // shows that every collector closed again.
        RunState::Paused if whole => match decision {
            Decision::Continue | Decision::Superseded => RolloutDecision::Continue,
            Decision::Done | Decision::Failed => RolloutDecision::Aborted,
        },
        _ => RolloutDecision::Superseded,
    }
}

/// Whether `status` shows the staged resume that started at `start` ended PAUSED for
/// everyone, acknowledged or not.
fn is_aborted(start: u64, status: &StatusView) -> bool {
    let state = &status.state;
    state.generation > start
        && state.rollout.is_none()
        && state.rules.is_empty()
        && state.scope.is_none()
        && state.state == RunState::Paused
}

/// How a wait on a staged resume ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutOutcome {
    /// Completed and acknowledged.
    Done,
    /// Completed, with failed resume hooks at the last generation.
    Failed,
    /// Ended PAUSED for everyone (its pause acknowledged, or the deadline passed).
    Aborted,
    /// Replaced by another kind of change.
    Superseded,
    /// The deadline passed first.
    TimedOut,
    /// The stream could not be opened, failed, or ended.
    Broken(Error),
}

impl RolloutOutcome {
    /// The name scripts see in `outcome`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Done => "complete",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Superseded => "superseded",
            Self::TimedOut => "timed_out",
            Self::Broken(_) => "broken",
        }
    }
}

/// The end of a wait on a staged resume: how it ended, every stage seen, and the last
/// status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitedRollout {
    /// How it ended.
    pub outcome: RolloutOutcome,
    /// The stages seen, in order.
    pub stages: Vec<StageView>,
    /// The last status received.
    pub last: Option<StatusView>,
    program: String,
    start: u64,
    limit: Duration,
    seen: Seen,
    unanswered: Option<String>,
}

impl WaitedRollout {
    /// Whether the resume reached every collector and they all acknowledged it.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.outcome == RolloutOutcome::Done
    }

    /// `Ok` when complete, else the error to report once the result is printed: exit 3
    /// on timeout, 1 otherwise.
    pub fn result(&self) -> Result<(), Error> {
        let start = self.start;
        let last = self.last.as_ref();
        let by = |status: &StatusView| {
            format!(
                "generation {} by {}: {}",
                status.state.generation,
                clean(&status.state.actor),
                clean(&status.state.reason)
            )
        };
        let message = match (&self.outcome, last) {
            (RolloutOutcome::Done, _) => return Ok(()),
            (RolloutOutcome::Broken(err), _) => return Err(err.clone()),
            (RolloutOutcome::TimedOut, status) => {
                return Err(timed_out(self.timeout_message(status), &self.unanswered));
            }
            (RolloutOutcome::Aborted, Some(status)) => format!(
                "the staged resume that started at generation {start} was aborted: the program \
                 is PAUSED for every collector ({})",
                by(status)
            ),
            (RolloutOutcome::Failed, Some(status)) => {
                let c = &status.collectors;
                format!(
                    "the staged resume completed, but resume hooks failed on {} of {} \
                     connected collectors at generation {}",
                    c.errored_count, c.connected, status.state.generation
                )
            }
            (RolloutOutcome::Superseded, Some(status)) => format!(
                "the staged resume that started at generation {start} was replaced by \
                 another change ({})",
                by(status)
            ),
            (
                RolloutOutcome::Aborted | RolloutOutcome::Failed | RolloutOutcome::Superseded,
                None,
            ) => {
                format!("the staged resume that started at generation {start} did not complete")
            }
        };
        Err(Error::new(Exit::Error, message))
    }

    fn timeout_message(&self, last: Option<&StatusView>) -> String {
        let limit = humantime::format_duration(self.limit);
        let Some(status) = last else {
            return format!("timed out after {limit} before the control plane sent a status");
        };
        let c = &status.collectors;
        let mut at = match &status.state.rollout {
            Some(r) => format!(
                "the staged resume is at stage {} of {} ({}%), generation {}",
                r.stage,
                r.stage_count(),
                r.percent,
                status.state.generation
            ),
            None => format!(
                "the staged resume reached generation {}",
                status.state.generation
            ),
        };
        let _ = write!(
            at,
            ": {} pending, {} errored of {} connected",
            c.pending_count, c.errored_count, c.connected
        );
        if !c.pending.is_empty() {
            let shown: Vec<String> = c.pending.iter().take(10).map(|id| clean(id)).collect();
            let _ = write!(at, " (pending: {}", shown.join(", "));
            if c.pending_count > 10 {
                let _ = write!(at, " and {} more", c.pending_count - 10);
            }
            at.push(')');
        }
        at.push_str(&not_confirmed(&self.program, status, self.seen));
        format!("timed out after {limit}: {at}")
    }
}

/// Follows the statuses from `open` (as [`wait`] does) for a staged resume of `program`
/// that started at generation `start`, stage after stage, until [`decide_rollout`] ends
/// it, the stream breaks, or `limit` has passed since `began`. `on_status` sees every
/// status.
pub async fn wait_rollout<S: StatusSource, F: Future<Output = Result<S, Error>>>(
    open: impl FnMut() -> F,
    program: &str,
    start: u64,
    began: Instant,
    limit: Duration,
    mut on_status: impl FnMut(&StatusView),
) -> WaitedRollout {
    let mut last = None;
    let mut stages: Vec<StageView> = Vec::new();
    let mut counted = Counted::default();
    let mut stream = Reopening::new(open);
    let follow = async {
        while let Some(status) = stream.next().await? {
            on_status(&status);
            let seen = counted.note(&status);
            record_stage(&mut stages, start, &status, began.elapsed(), seen);
            let decision = decide_rollout(start, &status, seen);
            last = Some(status);
            match decision {
                RolloutDecision::Continue => {}
                RolloutDecision::Done => return Ok(RolloutOutcome::Done),
                RolloutDecision::Failed => return Ok(RolloutOutcome::Failed),
                RolloutDecision::Aborted => return Ok(RolloutOutcome::Aborted),
                RolloutDecision::Superseded => return Ok(RolloutOutcome::Superseded),
            }
        }
        Err(Error::new(
            Exit::Error,
            format!(
                "the control plane ended the status stream before the staged resume that \
                 started at generation {start} completed"
            ),
        ))
    };
    let outcome = match tokio::time::timeout_at(began + limit, follow).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => RolloutOutcome::Broken(err),
        // An abort whose pause was not acknowledged everywhere in time is still an abort.
        Err(_elapsed) if last.as_ref().is_some_and(|s| is_aborted(start, s)) => {
            RolloutOutcome::Aborted
        }
        Err(_elapsed) => RolloutOutcome::TimedOut,
    };
    let seen = last.as_ref().map_or_else(Seen::default, |s: &StatusView| {
        counted.at(s.state.generation)
    });
    WaitedRollout {
        outcome,
        stages,
        last,
        program: program.to_owned(),
        start,
        limit,
        seen,
        unanswered: stream.unanswered(),
    }
}

/// Notes what `status` says about the stage it is at, if it is a stage of the rollout
/// that started at `start`; `counted` is what the statuses of its generation counted, as
/// for [`decide`].
fn record_stage(
    stages: &mut Vec<StageView>,
    start: u64,
    status: &StatusView,
    elapsed: Duration,
    counted: Seen,
) {
    let state = &status.state;
    let Some(rollout) = &state.rollout else {
        return;
    };
    if state.generation < start {
        return;
    }
    let c = &status.collectors;
    let acknowledged = decide(state.generation, status, counted) == Decision::Done;
    let seen = match stages.last_mut() {
        Some(seen) if seen.generation == state.generation => seen,
        _ => {
            stages.push(StageView {
                stage: rollout.stage,
                percent: rollout.percent,
                generation: state.generation,
                collectors: 0,
                acked: 0,
                acknowledged_after_ms: None,
            });
            let Some(seen) = stages.last_mut() else {
                return;
            };
            seen
        }
    };
    seen.collectors = c.connected;
    seen.acked = c.acked;
    if acknowledged && seen.acknowledged_after_ms.is_none() {
        seen.acknowledged_after_ms = Some(Micros(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::future::ready;

    use killswitch_proto::v1;

    use super::*;

    const G: u64 = 7;

    /// A status at `generation` with the given counts.
    fn status(generation: u64, connected: u64, pending: u64, errored: u64) -> v1::StatusResponse {
        v1::StatusResponse {
            state: Some(v1::ProgramState {
                program: "demo".to_owned(),
                state: v1::RunState::Paused.into(),
                generation,
                actor: "bob".to_owned(),
                ..v1::ProgramState::default()
            }),
            collectors: Some(v1::CollectorCounts {
                connected,
                acked: connected - pending - errored,
                pending: (0..pending).map(|i| format!("p{i}")).collect(),
                pending_count: pending,
                errored: (0..errored)
                    .map(|i| v1::CollectorError {
                        collector_id: format!("e{i}"),
                        error: "disk full".to_owned(),
                        replica: "r1".to_owned(),
                    })
                    .collect(),
                errored_count: errored,
                ..v1::CollectorCounts::default()
            }),
            replicas: vec!["r1".to_owned()],
            replicas_behind: vec![],
            ack_times: None,
            stop_all: None,
            pinned_labels: vec![],
        }
    }

    fn view(response: v1::StatusResponse) -> StatusView {
        StatusView::try_from(response).unwrap()
    }

    /// [`decide`] for a status that shows as many collectors as were ever seen.
    fn judge(generation: u64, status: &StatusView) -> Decision {
        decide(generation, status, as_seen(status))
    }

    /// What a wait that received only `status` has seen.
    fn as_seen(status: &StatusView) -> Seen {
        let connected = status.collectors.connected;
        Seen {
            most: connected,
            most_ever: connected,
        }
    }

    #[test]
    fn decisions() {
        #[track_caller]
        fn check(generation: u64, connected: u64, pending: u64, errored: u64, expected: Decision) {
            let got = judge(G, &view(status(generation, connected, pending, errored)));
            assert_eq!(
                got, expected,
                "waiting for {G}, status at {generation}: {connected} connected, \
                 {pending} pending, {errored} errored"
            );
        }
        check(G, 3, 0, 0, Decision::Done);
        check(G, 0, 0, 0, Decision::Done);
        check(G, 3, 1, 0, Decision::Continue);
        check(G, 3, 1, 1, Decision::Continue);
        check(G, 3, 0, 1, Decision::Failed);
        check(G, 3, 0, 3, Decision::Failed);
        check(G - 1, 3, 0, 0, Decision::Continue);
        check(G - 1, 3, 0, 1, Decision::Continue);
        check(G + 1, 3, 0, 0, Decision::Superseded);
        check(G + 1, 3, 2, 1, Decision::Superseded);
    }

    /// A status of a resume at `generation`: `connected` collectors, of which `diverged`
    /// answered PAUSED (lost contact) while RUNNING is intended, the others acknowledged.
    fn diverged(generation: u64, connected: u64, diverged: u64) -> v1::StatusResponse {
        let mut response = status(generation, connected, 0, 0);
        response.state.as_mut().unwrap().state = v1::RunState::Running.into();
        let counts = response.collectors.as_mut().unwrap();
        counts.acked = connected - diverged;
        counts.diverged_count = diverged;
        counts.diverged = (0..diverged)
            .map(|i| v1::CollectorDiverged {
                collector_id: format!("c{}", 7 + 2 * i),
                replica: "r1".to_owned(),
                effective: v1::RunState::Paused.into(),
                intended: v1::RunState::Running.into(),
            })
            .collect();
        response
    }

    #[test]
    fn diverged_collectors_are_no_confirmation() {
        assert_eq!(judge(G, &view(diverged(G, 3, 2))), Decision::Continue);
        assert_eq!(judge(G, &view(diverged(G, 3, 3))), Decision::Continue);
        assert_eq!(judge(G, &view(diverged(G, 3, 0))), Decision::Done);
        // A failed hook is final whatever the others do.
        let mut failed = diverged(G, 3, 1);
        let counts = failed.collectors.as_mut().unwrap();
        (counts.acked, counts.errored_count) = (1, 1);
        assert_eq!(judge(G, &view(failed)), Decision::Failed);
        // Pending ones hold it anyway.
        let mut pending = diverged(G, 3, 1);
        let counts = pending.collectors.as_mut().unwrap();
        (counts.acked, counts.pending_count) = (1, 1);
        assert_eq!(judge(G, &view(pending)), Decision::Continue);
        // A count beyond the listed ones holds it too.
        let mut unlisted = diverged(G, 3, 0);
        unlisted.collectors.as_mut().unwrap().diverged_count = 1;
        assert_eq!(judge(G, &view(unlisted)), Decision::Continue);
    }

    #[test]
    fn collectors_that_vanish_without_disconnecting_hold_the_wait() {
        #[track_caller]
        fn check(seen: (u64, u64), connected: u64, disconnected: u64, expected: Decision) {
            let mut response = status(G, connected, 0, 0);
            response.collectors.as_mut().unwrap().disconnected_count = disconnected;
            let (most, most_ever) = seen;
            assert_eq!(
                decide(G, &view(response), Seen { most, most_ever }),
                expected,
                "{seen:?} seen, now {connected} connected and {disconnected} disconnected"
            );
        }
        // The same replicas counted throughout: a count may only grow.
        check((3, 3), 3, 0, Decision::Done);
        check((3, 3), 0, 0, Decision::Continue);
        check((3, 3), 2, 0, Decision::Continue);
        check((3, 3), 0, 3, Decision::Done);
        check((3, 3), 1, 2, Decision::Done);
        check((3, 3), 2, 5, Decision::Done);
        check((0, 0), 0, 0, Decision::Done);
        check((u64::MAX, u64::MAX), u64::MAX, u64::MAX, Decision::Done);
        // The replicas counted changed since 7 were seen: only none at all is a loss.
        check((0, 7), 0, 0, Decision::Continue);
        check((4, 7), 4, 0, Decision::Done);
        check((4, 7), 3, 0, Decision::Continue);
        check((0, 7), 0, 1, Decision::Done);
    }

    #[test]
    fn what_was_counted_is_remembered_per_generation_and_replicas() {
        #[track_caller]
        fn noted(
            counted: &mut Counted,
            generation: u64,
            connected: u64,
            replicas: &[&str],
        ) -> Seen {
            let mut response = status(generation, connected, 0, 0);
            response.replicas = replicas.iter().map(|r| (*r).to_owned()).collect();
            counted.note(&view(response))
        }
        let seen = |most, most_ever| Seen { most, most_ever };
        let mut counted = Counted::default();
        let both = ["r1", "r2"];
        assert_eq!(noted(&mut counted, G - 1, 9, &both), seen(9, 9));
        assert_eq!(
            noted(&mut counted, G, 4, &both),
            seen(4, 4),
            "a new generation starts afresh"
        );
        assert_eq!(noted(&mut counted, G, 7, &both), seen(7, 7));
        assert_eq!(noted(&mut counted, G, 5, &both), seen(7, 7));
        assert_eq!(
            noted(&mut counted, G - 1, 2, &both),
            seen(2, 2),
            "an older status is judged alone"
        );
        // r1 crashed: its collectors, counted twice until its lease expired, are counted
        // once on r2.
        assert_eq!(noted(&mut counted, G, 4, &["r2"]), seen(4, 7));
        assert_eq!(noted(&mut counted, G, 3, &["r2"]), seen(4, 7));
        assert_eq!(noted(&mut counted, G, 5, &both), seen(5, 7));
        assert_eq!(
            (counted.at(G), counted.at(G + 1)),
            (seen(5, 7), Seen::default())
        );
    }

    #[test]
    fn timeouts_name_diverged_and_vanished_collectors() {
        #[track_caller]
        fn check(last: v1::StatusResponse, most: u64, expected: &str) {
            let waited = Waited {
                outcome: Outcome::TimedOut,
                last: Some(view(last)),
                program: "demo".to_owned(),
                generation: G,
                limit: Duration::from_secs(5),
                seen: Seen {
                    most,
                    most_ever: most,
                },
                unanswered: None,
            };
            let err = waited.result().unwrap_err();
            assert_eq!((err.exit(), err.message()), (Exit::AckTimeout, expected));
        }
        check(
            diverged(G, 3, 2),
            3,
            "timed out after 5s waiting for collectors to acknowledge generation 7: 0 pending, \
             0 errored of 3 connected; 2 effectively PAUSED although RUNNING is intended (lost \
             contact?): c7 (replica r1), c9 (replica r1)",
        );
        let mut many = diverged(G, 9, 7);
        many.collectors.as_mut().unwrap().diverged_count = 8;
        check(
            many,
            9,
            "timed out after 5s waiting for collectors to acknowledge generation 7: 0 pending, \
             0 errored of 9 connected; 8 effectively PAUSED although RUNNING is intended (lost \
             contact?): c7 (replica r1), c9 (replica r1), c11 (replica r1), c13 (replica r1), \
             c15 (replica r1) and 3 more",
        );
        check(
            status(G, 0, 0, 0),
            4,
            "timed out after 5s waiting for collectors to acknowledge generation 7: 0 pending, \
             0 errored of 0 connected; 4 collectors were connected at generation 7 but are no \
             longer counted and did not disconnect: a replica's summaries may be missing; check \
             `killswitch collectors demo`",
        );
        let mut one = status(G, 1, 0, 0);
        one.collectors.as_mut().unwrap().disconnected_count = 1;
        one.replicas_behind = vec!["r2".to_owned()];
        check(
            one,
            3,
            "timed out after 5s waiting for collectors to acknowledge generation 7: 0 pending, \
             0 errored of 1 connected; 1 collector was connected at generation 7 but is no \
             longer counted and did not disconnect: a replica's summaries may be missing; check \
             `killswitch collectors demo`; replicas r2 have not reported on it yet",
        );
    }

    #[tokio::test]
    async fn resume_wait_never_succeeds_while_collectors_are_paused() {
        let stuck = Scripted {
            script: vec![
                (ms(0), Ok(diverged(G, 3, 2))),
                (ms(0), Ok(diverged(G, 3, 1))),
            ],
            then_hang: true,
        };
        let waited = wait_on(stuck, ms(300)).await;
        assert_eq!(waited.outcome, Outcome::TimedOut);
        let err = waited.result().unwrap_err();
        assert_eq!(err.exit(), Exit::AckTimeout);
        assert!(
            err.message().ends_with(
                "1 effectively PAUSED although RUNNING is intended (lost contact?): c7 \
                 (replica r1)"
            ),
            "{}",
            err.message()
        );

        // The replica sends the state again; once the gates reopen, the wait is done.
        let healed = Scripted {
            script: vec![
                (ms(0), Ok(diverged(G, 3, 2))),
                (ms(50), Ok(diverged(G, 3, 0))),
            ],
            then_hang: true,
        };
        let waited = wait_on(healed, Duration::from_secs(10)).await;
        assert_eq!(waited.outcome, Outcome::Done);
    }

    #[tokio::test]
    async fn zero_of_zero_is_no_confirmation_when_collectors_were_counted_before() {
        let vanished = Scripted {
            script: vec![
                (ms(0), Ok(status(G, 3, 3, 0))),
                (ms(0), Ok(status(G, 0, 0, 0))),
            ],
            then_hang: true,
        };
        let waited = wait_on(vanished, ms(300)).await;
        assert_eq!(waited.outcome, Outcome::TimedOut);
        let err = waited.result().unwrap_err();
        assert!(
            err.message().contains(
                "3 collectors were connected at generation 7 but are no longer counted and \
                 did not disconnect"
            ),
            "{}",
            err.message()
        );

        // Counted as disconnected, they are accounted for.
        let mut left = status(G, 0, 0, 0);
        left.collectors.as_mut().unwrap().disconnected_count = 3;
        let disconnected = Scripted {
            script: vec![(ms(0), Ok(status(G, 3, 3, 0))), (ms(0), Ok(left))],
            then_hang: true,
        };
        let waited = wait_on(disconnected, ms(300)).await;
        assert_eq!(waited.outcome, Outcome::Done);
    }

    #[tokio::test]
    async fn a_crashed_replicas_collectors_counted_twice_do_not_hold_the_wait() {
        let on = |mut response: v1::StatusResponse, replicas: &[&str]| {
            response.replicas = replicas.iter().map(|r| (*r).to_owned()).collect();
            Ok(response)
        };
        // r1 held 3 of 4 collectors and crashed; they reconnected to r2 while r1's summary
        // (3 pending) lived on until its lease expired.
        let source = Scripted {
            script: vec![
                (ms(0), on(status(G, 4, 3, 0), &["r1", "r2"])),
                (ms(0), on(status(G, 7, 3, 0), &["r1", "r2"])),
                (ms(0), on(status(G, 4, 0, 0), &["r2"])),
            ],
            then_hang: true,
        };
        let waited = wait_on(source, Duration::from_secs(10)).await;
        assert_eq!(waited.outcome, Outcome::Done);

        // Every collector was on r1, and its summary went missing: 0 of 0 confirms nothing.
        let source = Scripted {
            script: vec![
                (ms(0), on(status(G, 3, 3, 0), &["r1", "r2"])),
                (ms(0), on(status(G, 0, 0, 0), &["r2"])),
            ],
            then_hang: true,
        };
        let waited = wait_on(source, ms(300)).await;
        assert_eq!(waited.outcome, Outcome::TimedOut);
    }

    #[tokio::test]
    async fn the_reported_status_is_the_first_every_replica_reported_on() {
        #[track_caller]
        fn behind(mut response: v1::StatusResponse) -> v1::StatusResponse {
            response.replicas_behind = vec!["r2".to_owned()];
            response
        }
        async fn reported_from(script: Script, limit: Duration) -> Option<StatusView> {
            let source = Scripted {
                script,
                then_hang: true,
            };
            reported(ready(Ok(source)), G, limit).await
        }
        let got = reported_from(
            vec![
                (ms(0), Ok(status(G - 1, 4, 0, 0))),
                (ms(0), Ok(behind(status(G, 4, 4, 0)))),
                (ms(0), Ok(status(G, 0, 0, 0))),
                (ms(0), Ok(status(G, 2, 0, 0))),
            ],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(got.map(|s| s.collectors.connected), Some(0));

        let never = reported_from(vec![(ms(0), Ok(behind(status(G, 4, 4, 0))))], ms(200)).await;
        assert_eq!(
            never, None,
            "no status every replica reported on: not known"
        );

        let superseded = reported_from(
            vec![(ms(0), Ok(status(G + 1, 4, 0, 0)))],
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(superseded, None, "a newer change's count is not this one's");
    }

    /// A status of a staged resume: `stage` (0-based) of 20%,100% while in progress,
    /// else the whole program in `state`; `rule` adds a scoped rule.
    fn staged(
        generation: u64,
        state: v1::RunState,
        stage: Option<u32>,
        rule: bool,
        counts: (u64, u64, u64),
    ) -> StatusView {
        view(staged_wire(generation, state, stage, rule, counts))
    }

    /// [`staged`] as the control plane sends it.
    fn staged_wire(
        generation: u64,
        state: v1::RunState,
        stage: Option<u32>,
        rule: bool,
        (connected, pending, errored): (u64, u64, u64),
    ) -> v1::StatusResponse {
        let mut response = status(generation, connected, pending, errored);
        let wire = response.state.as_mut().unwrap();
        wire.state = state.into();
        wire.rollout = stage.map(|stage| v1::Rollout {
            stages_percent: vec![20, 100],
            stage,
            ..v1::Rollout::default()
        });
        if rule {
            wire.scope = "region=emea".to_owned();
            wire.rules = vec![v1::Rule {
                selector: "region=emea".to_owned(),
                state: v1::RunState::Paused.into(),
                ..v1::Rule::default()
            }];
        }
        response
    }

    #[test]
    fn rollout_decisions() {
        use RolloutDecision::{Aborted, Continue, Done, Failed, Superseded};
        use v1::RunState::{Paused, Running};
        let cases = [
            // Still going: the driver decides, whatever the counts.
            (G, Paused, Some(0), false, (3, 1, 0), Continue),
            (G, Paused, Some(0), false, (3, 0, 1), Continue),
            (G + 3, Paused, Some(1), false, (3, 0, 0), Continue),
            // A status from before the resume.
            (G - 1, Paused, None, false, (3, 0, 0), Continue),
            (G - 1, Running, None, false, (3, 0, 0), Continue),
            // Completed: done once acknowledged.
            (G + 5, Running, None, false, (3, 0, 0), Done),
            (G + 5, Running, None, false, (0, 0, 0), Done),
            (G + 5, Running, None, false, (3, 1, 0), Continue),
            (G + 5, Running, None, false, (3, 0, 1), Failed),
            // Ended PAUSED for everyone: aborted, by the driver or an operator, once that
            // is acknowledged.
            (G + 2, Paused, None, false, (3, 3, 0), Continue),
            (G + 2, Paused, None, false, (3, 0, 0), Aborted),
            (G + 2, Paused, None, false, (3, 0, 1), Aborted),
            // Another kind of change.
            (G + 2, Running, None, true, (3, 0, 0), Superseded),
            (G + 2, Paused, None, true, (3, 0, 0), Superseded),
        ];
        for (generation, state, stage, rule, counts, expected) in cases {
            let status = staged(generation, state, stage, rule, counts);
            assert_eq!(
                decide_rollout(G, &status, as_seen(&status)),
                expected,
                "{generation} {state:?} stage {stage:?} rule {rule} {counts:?}"
            );
        }
        let mut behind = staged(G + 5, Running, None, false, (3, 0, 0));
        behind.replicas_behind = vec!["r2".to_owned()];
        let three = Seen {
            most: 3,
            most_ever: 3,
        };
        assert_eq!(decide_rollout(G, &behind, three), Continue);
        // Completed, but a collector paused for lost contact is not RUNNING yet.
        let mut paused = staged(G + 5, Running, None, false, (3, 0, 0));
        (paused.collectors.acked, paused.collectors.diverged_count) = (2, 1);
        assert_eq!(decide_rollout(G, &paused, three), Continue);
        // Completed, but collectors vanished from the counts.
        let vanished = staged(G + 5, Running, None, false, (1, 0, 0));
        assert_eq!(decide_rollout(G, &vanished, three), Continue);
        assert_eq!(decide_rollout(G, &vanished, as_seen(&vanished)), Done);
    }

    #[test]
    fn rollout_stages_are_recorded_once_each() {
        use v1::RunState::{Paused, Running};
        let mut stages = Vec::new();
        let feed = [
            (staged(G - 1, Paused, None, false, (3, 0, 0)), 0),
            (staged(G, Paused, Some(0), false, (1, 1, 0)), 100),
            (staged(G, Paused, Some(0), false, (1, 0, 0)), 200),
            (staged(G, Paused, Some(0), false, (1, 0, 0)), 300),
            (staged(G + 2, Paused, Some(1), false, (3, 2, 0)), 1300),
            (staged(G + 2, Paused, Some(1), false, (3, 0, 1)), 1400),
            (staged(G + 4, Running, None, false, (3, 0, 0)), 1500),
        ];
        for (status, ms) in &feed {
            record_stage(&mut stages, G, status, ms_(*ms), as_seen(status));
        }
        let seen: Vec<_> = stages
            .iter()
            .map(|s| (s.stage, s.percent, s.generation, s.collectors, s.acked))
            .collect();
        assert_eq!(seen, [(1, 20, G, 1, 1), (2, 100, G + 2, 3, 2)]);
        assert_eq!(stages[0].acknowledged_after_ms, Some(Micros(200_000)));
        assert_eq!(
            stages[1].acknowledged_after_ms, None,
            "errored: not acknowledged"
        );
    }

    fn ms_(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn rollout_results() {
        use v1::RunState::{Paused, Running};
        #[track_caller]
        fn check(outcome: RolloutOutcome, last: Option<StatusView>, expected: Option<(u8, &str)>) {
            let waited = WaitedRollout {
                outcome,
                stages: vec![],
                unanswered: None,
                seen: last.as_ref().map_or_else(Seen::default, as_seen),
                last,
                program: "demo".to_owned(),
                start: G,
                limit: Duration::from_secs(20),
            };
            let got = waited.result().err();
            let got = got.as_ref().map(|e| (e.exit().code(), e.message()));
            assert_eq!(got, expected);
        }
        check(
            RolloutOutcome::Done,
            Some(staged(G + 4, Running, None, false, (3, 0, 0))),
            None,
        );
        let mut aborted = staged(G + 2, Paused, None, false, (3, 0, 0));
        aborted.state.actor = "rollout-driver@r1".to_owned();
        aborted.state.reason = "1 collector(s) acknowledged stage 1 with an error".to_owned();
        check(
            RolloutOutcome::Aborted,
            Some(aborted),
            Some((
                1,
                "the staged resume that started at generation 7 was aborted: the program is \
                 PAUSED for every collector (generation 9 by rollout-driver@r1: 1 collector(s) \
                 acknowledged stage 1 with an error)",
            )),
        );
        check(
            RolloutOutcome::Failed,
            Some(staged(G + 4, Running, None, false, (3, 0, 2))),
            Some((
                1,
                "the staged resume completed, but resume hooks failed on 2 of 3 connected \
                 collectors at generation 11",
            )),
        );
        check(
            RolloutOutcome::Superseded,
            Some(staged(G + 1, Running, None, true, (3, 0, 0))),
            Some((
                1,
                "the staged resume that started at generation 7 was replaced by another \
                 change (generation 8 by bob: )",
            )),
        );
        check(
            RolloutOutcome::TimedOut,
            Some(staged(G + 2, Paused, Some(1), false, (3, 2, 0))),
            Some((
                3,
                "timed out after 20s: the staged resume is at stage 2 of 2 (100%), generation \
                 9: 2 pending, 0 errored of 3 connected (pending: p0, p1)",
            )),
        );
        let mut paused = staged(G + 4, Running, None, false, (3, 0, 0));
        paused.collectors.acked = 2;
        paused.collectors.diverged_count = 1;
        check(
            RolloutOutcome::TimedOut,
            Some(paused),
            Some((
                3,
                "timed out after 20s: the staged resume reached generation 11: 0 pending, 0 \
                 errored of 3 connected; 1 not in the state intended for them",
            )),
        );
        check(
            RolloutOutcome::TimedOut,
            None,
            Some((
                3,
                "timed out after 20s before the control plane sent a status",
            )),
        );
        check(
            RolloutOutcome::Broken(Error::new(Exit::Error, "the status stream broke: x")),
            None,
            Some((1, "the status stream broke: x")),
        );
        assert_eq!(RolloutOutcome::TimedOut.as_str(), "timed_out");
    }

    #[test]
    fn a_replica_that_has_not_reported_holds_the_wait() {
        let mut behind = status(G, 0, 0, 0);
        behind.replicas_behind = vec!["r2".to_owned()];
        assert_eq!(judge(G, &view(behind.clone())), Decision::Continue);
        behind.collectors = Some(v1::CollectorCounts {
            connected: 2,
            errored_count: 2,
            ..Default::default()
        });
        assert_eq!(
            judge(G, &view(behind)),
            Decision::Continue,
            "r2 may still hold pending collectors"
        );
    }

    #[test]
    fn pending_beyond_the_listed_ids_holds_the_wait() {
        let mut response = status(G, 300, 0, 0);
        let counts = response.collectors.as_mut().unwrap();
        counts.pending_count = 150;
        counts.acked = 150;
        assert_eq!(judge(G, &view(response)), Decision::Continue);
    }

    #[test]
    fn results() {
        #[track_caller]
        fn check(outcome: Outcome, last: Option<v1::StatusResponse>, expected: Option<(u8, &str)>) {
            let last = last.map(view);
            let waited = Waited {
                outcome,
                unanswered: None,
                seen: last.as_ref().map_or_else(Seen::default, as_seen),
                last,
                program: "demo".to_owned(),
                generation: G,
                limit: Duration::from_secs(2),
            };
            let got = waited.result().err();
            let got = got.as_ref().map(|e| (e.exit().code(), e.message()));
            assert_eq!(got, expected);
        }
        check(Outcome::Done, Some(status(G, 3, 0, 0)), None);
        check(
            Outcome::Failed,
            Some(status(G, 3, 0, 2)),
            Some((
                1,
                "hooks failed on 2 of 3 connected collectors at generation 7",
            )),
        );
        check(
            Outcome::Superseded,
            Some(status(G + 2, 3, 3, 0)),
            Some((
                1,
                "generation 7 was superseded by generation 9 (PAUSED, by bob) before every \
                 collector acknowledged it",
            )),
        );
        check(
            Outcome::TimedOut,
            Some(status(G, 3, 1, 1)),
            Some((
                3,
                "timed out after 2s waiting for collectors to acknowledge generation 7: \
                 1 pending, 1 errored of 3 connected; pending: p0",
            )),
        );
        check(
            Outcome::TimedOut,
            Some(status(G - 1, 3, 0, 0)),
            Some((
                3,
                "timed out after 2s: the control plane still reports generation 6 (waiting \
                 for 7)",
            )),
        );
        check(
            Outcome::TimedOut,
            None,
            Some((
                3,
                "timed out after 2s before the control plane sent a status",
            )),
        );
        check(
            Outcome::Broken(Error::new(Exit::Denied, "no")),
            None,
            Some((4, "no")),
        );
    }

    /// What a scripted status stream sends, in order, each after its delay.
    type Script = Vec<(Duration, Result<v1::StatusResponse, Error>)>;

    /// A [`StatusSource`] that sends a script, then either ends the stream or (hanging)
    /// sends nothing more, as an open `WatchStatus` call with no news would.
    struct Scripted {
        script: Script,
        then_hang: bool,
    }

    impl StatusSource for Scripted {
        async fn next(&mut self) -> Result<Option<StatusView>, Error> {
            if self.script.is_empty() {
                if self.then_hang {
                    std::future::pending::<()>().await;
                }
                return Ok(None);
            }
            let (delay, item) = self.script.remove(0);
            tokio::time::sleep(delay).await;
            item.map(|response| Some(view(response)))
        }
    }

    /// Opens the streams of `opens` in turn, as many times as there are.
    fn opens(
        mut opens: Vec<Result<Scripted, Error>>,
    ) -> impl FnMut() -> std::future::Ready<Result<Scripted, Error>> {
        opens.reverse();
        move || {
            ready(
                opens
                    .pop()
                    .unwrap_or_else(|| Err(Error::new(Exit::Usage, "opened too often"))),
            )
        }
    }

    /// A wait on generation [`G`] of `demo` fed by the streams `open` opens.
    async fn wait_opening<F: Future<Output = Result<Scripted, Error>>>(
        open: impl FnMut() -> F,
        limit: Duration,
    ) -> Waited {
        wait(open, "demo", G, Instant::now(), limit, |_| {}).await
    }

    /// A wait on generation [`G`] of `demo` fed by `source`.
    async fn wait_on(source: Scripted, limit: Duration) -> Waited {
        wait_opening(opens(vec![Ok(source)]), limit).await
    }

    /// A stream whose first status has every connected collector acknowledge [`G`].
    fn all_acknowledged() -> Scripted {
        Scripted {
            script: vec![(ms(0), Ok(status(G, 3, 0, 0)))],
            then_hang: true,
        }
    }

    /// [`wait_on`] for a staged resume that started at [`G`].
    async fn wait_rollout_on(source: Scripted, limit: Duration) -> WaitedRollout {
        wait_rollout(
            opens(vec![Ok(source)]),
            "demo",
            G,
            Instant::now(),
            limit,
            |_| {},
        )
        .await
    }

    /// What a running replica answers while its etcd is too slow: transient.
    fn unavailable() -> Error {
        let endpoint = crate::input::EndpointUrl::parse("http://127.0.0.1:7070").unwrap();
        let status = tonic::Status::unavailable("etcd is unavailable: etcd did not answer");
        let err = Error::from_status(&status, &endpoint, Duration::from_secs(10));
        assert!(err.is_transient());
        err
    }

    #[tokio::test]
    async fn a_control_plane_that_cannot_serve_for_now_is_asked_again() {
        // Opening refused twice, then a stream that fails after one status, then one that
        // completes: the wait goes on through all of it, keeping what it counted.
        let broken = Scripted {
            script: vec![
                (ms(0), Ok(status(G, 3, 2, 0))),
                (ms(0), Err(unavailable().into_broken_stream())),
            ],
            then_hang: true,
        };
        let open = opens(vec![
            Err(unavailable()),
            Err(unavailable()),
            Ok(broken),
            Ok(all_acknowledged()),
        ]);
        let waited = wait_opening(open, Duration::from_secs(10)).await;
        assert_eq!(waited.outcome, Outcome::Done);
        assert!(waited.result().is_ok());

        // Until the deadline: then exit 3, with the control plane's last answer.
        let refusing = || ready(Err::<Scripted, _>(unavailable()));
        let waited = wait_opening(refusing, ms(600)).await;
        assert_eq!((&waited.outcome, &waited.last), (&Outcome::TimedOut, &None));
        let err = waited.result().unwrap_err();
        assert_eq!(err.exit(), Exit::AckTimeout);
        assert_eq!(
            err.message(),
            "timed out after 600ms before the control plane sent a status; last answer: the \
             control plane at http://127.0.0.1:7070 is unavailable: etcd is unavailable: etcd \
             did not answer"
        );
        let waited = wait_rollout(refusing, "demo", G, Instant::now(), ms(600), |_| {}).await;
        assert_eq!(waited.outcome, RolloutOutcome::TimedOut);
        let err = waited.result().unwrap_err();
        assert_eq!(err.exit(), Exit::AckTimeout);
        assert!(
            err.message().ends_with(
                "; last answer: the control plane at http://127.0.0.1:7070 is \
                            unavailable: etcd is unavailable: etcd did not answer"
            ),
            "{}",
            err.message()
        );

        // Any other failure still ends the wait at once.
        let denied = opens(vec![
            Err(Error::new(Exit::Denied, "no")),
            Ok(all_acknowledged()),
        ]);
        let waited = wait_opening(denied, Duration::from_secs(10)).await;
        assert_eq!(
            waited.outcome,
            Outcome::Broken(Error::new(Exit::Denied, "no"))
        );
    }

    #[tokio::test]
    async fn a_rollout_is_followed_through_its_stages() {
        use v1::RunState::{Paused, Running};
        let source = Scripted {
            script: vec![
                (ms(0), Ok(staged_wire(G, Paused, Some(0), false, (1, 1, 0)))),
                (ms(0), Ok(staged_wire(G, Paused, Some(0), false, (1, 0, 0)))),
                (
                    ms(0),
                    Ok(staged_wire(G + 2, Paused, Some(1), false, (3, 0, 0))),
                ),
                (
                    ms(0),
                    Ok(staged_wire(G + 4, Running, None, false, (3, 1, 0))),
                ),
                (
                    ms(0),
                    Ok(staged_wire(G + 4, Running, None, false, (3, 0, 0))),
                ),
            ],
            then_hang: true,
        };
        let waited = wait_rollout_on(source, Duration::from_secs(10)).await;
        assert_eq!(waited.outcome, RolloutOutcome::Done);
        let stages: Vec<(u32, u64)> = waited
            .stages
            .iter()
            .map(|s| (s.stage, s.generation))
            .collect();
        assert_eq!(stages, [(1, G), (2, G + 2)]);
        assert!(waited.result().is_ok());
    }

    #[tokio::test]
    async fn an_abort_not_acknowledged_in_time_is_still_an_abort() {
        use v1::RunState::Paused;
        let source = Scripted {
            script: vec![
                (ms(0), Ok(staged_wire(G, Paused, Some(0), false, (3, 0, 1)))),
                (
                    ms(0),
                    Ok(staged_wire(G + 1, Paused, None, false, (3, 2, 0))),
                ),
            ],
            then_hang: true,
        };
        let waited = wait_rollout_on(source, ms(300)).await;
        assert_eq!(waited.outcome, RolloutOutcome::Aborted);
        assert_eq!(waited.result().unwrap_err().exit(), Exit::Error);

        let stuck = Scripted {
            script: vec![(ms(0), Ok(staged_wire(G, Paused, Some(0), false, (3, 1, 0))))],
            then_hang: true,
        };
        let waited = wait_rollout_on(stuck, ms(300)).await;
        assert_eq!(waited.outcome, RolloutOutcome::TimedOut);
        assert_eq!(waited.result().unwrap_err().exit(), Exit::AckTimeout);
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// A wait follows statuses as they come, however far apart (that the stream itself
    /// outlives the per-RPC timeout is `e2e.rs`'s `a_wait_outlives_the_rpc_timeout`).
    #[tokio::test]
    async fn statuses_are_followed_until_the_generation_is_acknowledged() {
        let source = Scripted {
            script: vec![
                (ms(0), Ok(status(G - 1, 3, 0, 0))),
                (ms(150), Ok(status(G, 3, 2, 0))),
                (ms(150), Ok(status(G, 3, 0, 0))),
            ],
            then_hang: true,
        };
        let waited = wait_on(source, Duration::from_secs(10)).await;
        assert_eq!(waited.outcome, Outcome::Done);
        assert!(waited.complete());
        assert_eq!(waited.last, Some(view(status(G, 3, 0, 0))));
    }

    #[tokio::test]
    async fn opening_the_stream_is_part_of_the_wait() {
        let refused = || ready(Err::<Scripted, _>(Error::new(Exit::Denied, "no")));
        let waited = wait_opening(refused, ms(300)).await;
        assert_eq!(
            (waited.outcome, waited.last),
            (Outcome::Broken(Error::new(Exit::Denied, "no")), None)
        );
        assert_eq!(reported(refused(), G, ms(300)).await, None);

        // The deadline runs from `start`, while the stream is still opening.
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(all_acknowledged())
        };
        let waited = wait_opening(slow, ms(300)).await;
        assert_eq!((waited.outcome, waited.last), (Outcome::TimedOut, None));
    }

    #[tokio::test]
    async fn the_deadline_ends_the_wait_with_the_last_status() {
        let source = Scripted {
            script: vec![(ms(0), Ok(status(G, 3, 1, 0)))],
            then_hang: true,
        };
        let waited = wait_on(source, ms(300)).await;
        assert_eq!(waited.outcome, Outcome::TimedOut);
        assert_eq!(waited.last, Some(view(status(G, 3, 1, 0))));
        assert_eq!(waited.result().unwrap_err().exit(), Exit::AckTimeout);
    }

    #[tokio::test]
    async fn a_stream_that_ends_or_fails_breaks_the_wait() {
        let ended = Scripted {
            script: vec![(ms(0), Ok(status(G, 3, 1, 0)))],
            then_hang: false,
        };
        let waited = wait_on(ended, Duration::from_secs(10)).await;
        let err = waited.result().unwrap_err();
        assert_eq!(
            (err.exit(), err.message()),
            (
                Exit::Error,
                "the control plane ended the status stream before every collector \
                 acknowledged generation 7"
            )
        );

        let failed = Scripted {
            script: vec![
                (ms(0), Ok(status(G, 3, 1, 0))),
                (
                    ms(0),
                    Err(Error::new(Exit::Error, "the status stream broke: revoked")),
                ),
            ],
            then_hang: true,
        };
        let waited = wait_on(failed, Duration::from_secs(10)).await;
        let err = waited.result().unwrap_err();
        assert_eq!(
            (err.exit(), err.message()),
            (Exit::Error, "the status stream broke: revoked")
        );
        assert_eq!(waited.last, Some(view(status(G, 3, 1, 0))));
    }
}
