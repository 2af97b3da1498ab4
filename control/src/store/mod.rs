//! Program definitions, state and audit in etcd.
//!
//! Key layout (DESIGN.md section 3), under a configurable prefix:
//! `programs/{name}`, `state/{name}`, `audit/{seq:020}`, `audit/head`,
//! `approvals/{program}/{id}` (two-person resumes waiting for approval, lease-bound), and
//! `receipts/{program}/{generation:020}/{replica}/{seq:08}` (collectors' receipts, bound to
//! a lease per replica per day; written before the summary that counts their Acks).
//! Every mutation is one etcd transaction that compares what it read (the state key's
//! mod_revision and the audit head's) and writes the new state together with its audit
//! entry, so no change exists without an audit entry and no update is lost. A lost race
//! retries from a fresh read, at most [`MAX_ATTEMPTS`] times; a process's writers take turns
//! and writers of different processes pause randomly between attempts ([`Store::attempt`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

mod approvals;
mod audit;
mod programs;
mod receipts;
mod replicas;
mod state;
mod targeting;

pub use receipts::{RECEIPT_PAGE, ReceiptPage, ReceiptRange};
pub use replicas::MAX_TXN_OPS;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::{self, store};

use crate::model::audit::{AuditList, Chain, Query, Selection, Verdict, audit_hash};
use crate::model::selector::Selector;
use crate::model::status::ReplicaSummary;
use crate::model::targeting::StopAllFlag;
use crate::model::{
    FailurePolicy, Generation, InvalidInput, Program, ProgramName, ProgramState, RunState,
};

/// Attempts of one mutation before giving up under contention.
pub const MAX_ATTEMPTS: usize = 16;

/// Longest pause between two attempts of a mutation, in milliseconds.
const MAX_RETRY_PAUSE_MS: u64 = 128;

/// This process's turn to attempt a mutation, held for one attempt (see
/// [`Store::attempt`]); `None` when the turn did not come within the request budget and
/// the attempt races without it.
type Turn<'a> = Option<tokio::sync::MutexGuard<'a, ()>>;

/// How long one etcd request retries while etcd is unavailable, unless configured.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(3);

/// The shortest attempt worth sending: with less of the budget left, a request fails with
/// the error of the attempt before rather than time out at once.
const MIN_ATTEMPT: Duration = Duration::from_millis(10);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// etcd could not be reached or refused the request. Retryable.
    #[error("etcd request failed: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A stored value could not be decoded: the store holds data this version cannot read.
    #[error("cannot decode the value at {key}: {source}")]
    Decode {
        /// The etcd key.
        key: String,
        /// The decoding error.
        #[source]
        source: killswitch_proto::prost::DecodeError,
    },
    /// The program does not exist.
    #[error("program {0} does not exist")]
    NotFound(ProgramName),
    /// The program already exists.
    #[error("program {0} already exists")]
    AlreadyExists(ProgramName),
    /// No approval request has this id: it never existed, was approved, or expired.
    #[error("approval request {0} does not exist or has expired")]
    NoApprovalRequest(String),
    /// The operator approving a resume is the one who requested it.
    #[error("you filed this request; a different operator must approve it")]
    SelfApproval,
    /// The program changed after the resume was requested.
    #[error("the program changed since the request; request the resume again")]
    StaleApproval,
    /// The request conflicts with the program's state or breaks a rule of the API;
    /// nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The program changed after the resume statement was signed.
    #[error("the program changed since the resume was signed; run the command again")]
    StaleStatement,
    /// etcd did not answer within this time. Retryable.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// A change was sent but etcd never confirmed it, and reading it back failed too: it
    /// may or may not have been applied.
    #[error(
        "etcd did not confirm the change ({write}) and it could not be read back ({read}): \
         it may or may not have been applied"
    )]
    OutcomeUnknown {
        /// Why the write got no answer.
        write: Box<StoreError>,
        /// Why reading it back failed.
        read: Box<StoreError>,
    },
    /// Every attempt lost a race with a concurrent change. Retryable.
    #[error("gave up after {MAX_ATTEMPTS} attempts: other changes kept winning the race")]
    Contention,
    /// The audit log has entries but its head key is gone: starting a new chain would
    /// hide the old one, so no change is made until the head is restored.
    #[error(
        "the audit log has entries but its head ({0}) is missing: nothing was changed; \
         restore the head from a backup of etcd (or rebuild it from the last entry's seq and \
         hash) before making changes"
    )]
    AuditHeadMissing(String),
}

impl StoreError {
    /// Whether the request certainly never reached etcd: the connection was refused.
    #[must_use]
    pub fn is_connect_failure(&self) -> bool {
        let Self::Etcd(etcd_client::Error::GRpcStatus(status)) = self else {
            return matches!(self, Self::Etcd(etcd_client::Error::TransportError(_)));
        };
        let mut next = std::error::Error::source(status);
        while let Some(cause) = next {
            if cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            {
                return true;
            }
            next = cause.source();
        }
        false
    }

    /// Whether etcd compacted the revision a read asked for.
    #[must_use]
    pub fn is_compacted(&self) -> bool {
        matches!(
            self,
            Self::Etcd(etcd_client::Error::GRpcStatus(status))
                if status.code() == tonic::Code::OutOfRange
        )
    }

    /// A short account of an etcd failure for an operator: the message and its root cause
    /// (e.g. `tcp connect error: Connection refused (os error 111)`), without the layers
    /// of client types in between.
    #[must_use]
    pub fn brief(&self) -> String {
        let Self::Etcd(etcd_client::Error::GRpcStatus(status)) = self else {
            return self.to_string();
        };
        let mut root: Option<&dyn std::error::Error> = None;
        let mut next = std::error::Error::source(status);
        while let Some(cause) = next {
            root = Some(cause);
            next = cause.source();
        }
        match root {
            Some(root) if !status.message().is_empty() => format!("{}: {root}", status.message()),
            Some(root) => root.to_string(),
            None => status.message().to_owned(),
        }
    }

    /// Whether etcd itself was unreachable or unavailable (as opposed to a logic error).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                ) || (status.code() == tonic::Code::Unknown
                    // An UNKNOWN the client made from a broken connection, not one etcd
                    // answered with.
                    && std::error::Error::source(status).is_some())
            }
            Self::Etcd(
                etcd_client::Error::TransportError(_)
                | etcd_client::Error::IoError(_)
                | etcd_client::Error::WatchError(_),
            )
            | Self::Timeout(_) => true,
            _ => false,
        }
    }
}

/// The metadata of a change: who, why, for which incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Who asks for it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Incident id, empty when none.
    pub incident_id: String,
}

/// The result of a pause or resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeOutcome {
    /// The state after the call.
    pub state: ProgramState,
    /// False when the program already was in the requested state.
    pub changed: bool,
}

/// What a resume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The state changed (or already was RUNNING).
    Changed(ChangeOutcome),
    /// The program needs a second operator: an approval request was stored; the state
    /// (returned as it is) did not change.
    Requested {
        /// The unchanged state.
        state: ProgramState,
        /// The request's id, for `Approve`.
        id: String,
        /// When the request's lease expires.
        expires_at: SystemTime,
    },
}

/// What a policy change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// The program and its state after the change (unchanged when nothing differed).
    Changed(Program, ProgramState),
    /// The change weakens a program that needs two operators: an approval request was
    /// stored; the program (returned as it is) did not change.
    Requested {
        /// The unchanged program.
        program: Program,
        /// Its unchanged state.
        state: ProgramState,
        /// The request's id, for `Approve`.
        id: String,
        /// When the request's lease expires.
        expires_at: SystemTime,
    },
}

/// A signed resume, checked by the caller against the generation it replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedResume {
    /// The statement and the signatures so far.
    pub authorization: v1::ResumeAuthorization,
    /// The generation the statement replaces: the state must still be at it.
    pub replaces: Generation,
}

/// A staged resume's plan: validated stages (see [`crate::model::targeting::stages`]) and the
/// least time between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Ascending percentages, the last 100.
    pub stages: Vec<u32>,
    /// The least time a stage runs before the next starts.
    pub interval: Duration,
}

/// Which collectors a resume is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeScope<'a> {
    /// Every collector, at once.
    Whole,
    /// Every collector, stage by stage.
    Staged(&'a Staged),
    /// The collectors a selector matches.
    Selector(&'a Selector),
}

/// A stored approval request, for `GetApproval` and `Approve`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingApproval {
    /// The program to resume.
    pub program: ProgramName,
    /// The request as stored.
    pub request: store::ApprovalRequest,
}

/// etcd keys under the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    fn program(&self, name: &ProgramName) -> String {
        format!("{}/programs/{name}", self.prefix)
    }

    fn programs(&self) -> String {
        format!("{}/programs/", self.prefix)
    }

    pub(crate) fn state(&self, name: &ProgramName) -> String {
        format!("{}{name}", self.states())
    }

    pub(crate) fn states(&self) -> String {
        format!("{}/state/", self.prefix)
    }

    fn audit(&self, seq: u64) -> String {
        format!("{}/audit/{seq:020}", self.prefix)
    }

    fn audit_head(&self) -> String {
        format!("{}/audit/head", self.prefix)
    }

    fn replicas(&self) -> String {
        format!("{}/replicas/", self.prefix)
    }

    fn approvals(&self) -> String {
        format!("{}/approvals/", self.prefix)
    }

    pub(crate) fn global(&self) -> String {
        format!("{}/global", self.prefix)
    }

    /// The key range a replica's cache watches: from the stop-all flag to the end of the
    /// states. It holds both in one watch, so their events arrive in revision order; the
    /// few other keys between them (`programs/`, `replicas/`, `rollout-driver`) change
    /// rarely and are ignored by the watcher.
    pub(crate) fn watched(&self) -> (String, String) {
        // '0' follows '/': the end of the range of keys that start with `state/`.
        (self.global(), format!("{}/state0", self.prefix))
    }

    fn driver(&self) -> String {
        format!("{}/rollout-driver", self.prefix)
    }

    fn approval(&self, program: &ProgramName, id: &str) -> String {
        format!("{}{program}/{id}", self.approvals())
    }

    pub(crate) fn acks(&self, program: &ProgramName) -> String {
        format!("{}/acks/{program}/", self.prefix)
    }

    /// Where `program`'s receipts are: `receipts/{program}/`.
    fn receipts(&self, program: &ProgramName) -> String {
        format!("{}/receipts/{program}/", self.prefix)
    }

    /// Where `program`'s receipts for `generation` are: `receipts/{program}/{generation:020}/`
    /// (zero-padded, so keys sort in generation order).
    fn receipt_generation(&self, program: &ProgramName, generation: Generation) -> String {
        format!("{}{generation:020}/", self.receipts(program))
    }
}

/// The state of the store at one revision: every program's state and the stop-all flag.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The etcd revision the listing was read at.
    pub revision: i64,
    /// Every program's state, under `stop_all`.
    pub states: Vec<ProgramState>,
    /// The stop-all flag.
    pub stop_all: StopAllFlag,
}

/// Access to Killswitch's data in etcd. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: etcd_client::Client,
    keys: Keys,
    budget: Duration,
    /// Taken by each attempt of a mutation: see [`Store::attempt`].
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

/// What the audit head pointed at when a mutation read it.
struct Head {
    /// mod_revision of the head key, 0 when there is none yet.
    revision: i64,
    seq: u64,
    hash: Vec<u8>,
}

impl Store {
    /// Connects to etcd. Requests fail after `timeout`, so callers fail fast when etcd is gone.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_require_leader(true);
        let client = etcd_client::Client::connect(endpoints, Some(options)).await?;
        Ok(Self::from_client(client, prefix).with_budget(timeout))
    }

    /// Wraps an existing etcd client, with the default budget of [`DEFAULT_BUDGET`].
    #[must_use]
    pub fn from_client(client: etcd_client::Client, prefix: &str) -> Self {
        Self {
            client,
            keys: Keys::new(prefix),
            budget: DEFAULT_BUDGET,
            writing: Arc::default(),
        }
    }

    /// Begins attempt `attempt` (from 0) of a mutation, and returns the turn to hold
    /// while it reads and commits.
    ///
    /// Every change moves the one audit head, so concurrent changes of any programs race
    /// for it and all but one of each round must read again. Within this process the
    /// attempts take turns (first come, first served), so its own writers never collide;
    /// a turn not given within the request budget (etcd slow to answer the writer ahead)
    /// is raced for instead, so no change waits long behind another. Between processes,
    /// after `attempt` lost races, the attempt first waits a random pause of up to
    /// 2^`attempt` ms (at most [`MAX_RETRY_PAUSE_MS`]), so writers that keep colliding
    /// spread out and each round has a winner; all [`MAX_ATTEMPTS`] pause about 1.3 s at
    /// most together.
    async fn attempt(&self, attempt: usize) -> Turn<'_> {
        if attempt > 0 {
            let ceiling_us = (1_u64 << attempt.min(7)).min(MAX_RETRY_PAUSE_MS) * 1000;
            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=ceiling_us))).await;
        }
        tokio::time::timeout(self.budget, self.writing.lock())
            .await
            .ok()
    }

    /// How long one etcd request may keep retrying while etcd is unavailable (a dead
    /// member, an election) before the call fails; each attempt gets a third of it.
    #[must_use]
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget.max(Duration::from_millis(30));
        self
    }

    /// Runs an idempotent etcd request, retrying while etcd is unavailable with a short
    /// backoff, within the budget. etcd's client balances over every endpoint, including
    /// dead ones, so a request can fail on one member and succeed on the next.
    async fn call<T, F, Fut>(&self, mut request: F) -> Result<T, StoreError>
    where
        F: FnMut(etcd_client::Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.budget;
        let mut failures: u32 = 0;
        loop {
            let attempt = (self.budget / 3).min(deadline.saturating_duration_since(Instant::now()));
            let error = match tokio::time::timeout(attempt, request(self.client.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => StoreError::from(error),
                Err(_) => StoreError::Timeout(attempt),
            };
            if !error.is_unavailable() {
                return Err(error);
            }
            failures = failures.saturating_add(1);
            let pause = Duration::from_millis(25u64 << failures.min(4));
            if Instant::now() + pause >= deadline {
                return Err(error);
            }
            tracing::debug!(%error, failures, "etcd unavailable; retrying");
            tokio::time::sleep(pause).await;
            // A busy runtime may wake the pause late: no attempt too short to be answered.
            if deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT {
                return Err(error);
            }
        }
    }

    /// A retried range read.
    async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let key: Vec<u8> = key.into();
        self.call(|mut client| {
            let (key, options) = (key.clone(), options.clone());
            async move { client.get(key, options).await }
        })
        .await
    }

    /// Sends an audited compare-and-swap transaction and says honestly whether it
    /// committed: the transaction's revision, or `None` when its comparison failed (a
    /// concurrent change won; nothing was written).
    ///
    /// Attempts that fail while etcd is unavailable are resent within the budget, which
    /// is safe because the comparison includes the audit head (at `head_revision`) that
    /// the transaction moves. When an attempt may have reached etcd without an answer,
    /// the outcome is settled before returning: `entry` found in the audit log means it
    /// committed; otherwise the head is rewritten unchanged (a fence), after which the
    /// lost attempt can never apply. A resend whose comparison fails after such an attempt
    /// is settled by the audit log too (the lost attempt may be what moved the head). Only
    /// when etcd cannot be reached to settle it is the outcome reported as unknown, never
    /// as unchanged.
    async fn commit(
        &self,
        txn: Txn,
        entry: &store::AuditEntry,
        head_revision: i64,
    ) -> Result<Option<Generation>, StoreError> {
        let deadline = Instant::now() + self.budget;
        // Why the first attempt that may have reached etcd got no answer, once one did.
        let mut unanswered: Option<StoreError> = None;
        let mut failures: u32 = 0;
        let last = loop {
            let attempt = (self.budget / 3).min(deadline.saturating_duration_since(Instant::now()));
            let error =
                match tokio::time::timeout(attempt, self.client.clone().txn(txn.clone())).await {
                    Ok(Ok(response)) if response.succeeded() => {
                        return Ok(Some(txn_revision(&response)));
                    }
                    Ok(Ok(_)) => match unanswered {
                        None => return Ok(None),
                        // An earlier attempt may have committed and moved the head: only
                        // the audit log says, and if it cannot be read the outcome is
                        // unknown (never "nothing was changed").
                        Some(write) => {
                            return self.committed(entry).await.map_err(|read| {
                                StoreError::OutcomeUnknown {
                                    write: Box::new(write),
                                    read: Box::new(read),
                                }
                            });
                        }
                    },
                    Ok(Err(error)) => StoreError::from(error),
                    Err(_) => StoreError::Timeout(attempt),
                };
            if !error.is_unavailable() {
                return Err(error);
            }
            failures = failures.saturating_add(1);
            tracing::debug!(%error, failures, "etcd unavailable for a transaction");
            // The first failure that may have reached etcd is kept: it is why the outcome
            // is unsettled. `last` is the latest failure otherwise.
            let last = if error.is_connect_failure() || unanswered.is_some() {
                Some(error)
            } else {
                unanswered = Some(error);
                None
            };
            let pause = Duration::from_millis(25u64 << failures.min(4));
            if Instant::now() + pause >= deadline {
                break last;
            }
            tokio::time::sleep(pause).await;
            // A busy runtime may wake the pause late: no attempt too short to be answered.
            if deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT {
                break last;
            }
        };
        let Some(write) = unanswered else {
            return Err(last.unwrap_or(StoreError::Timeout(self.budget)));
        };
        match self.settle(entry, head_revision).await {
            Ok(outcome) => outcome.map_or(Err(write), |generation| Ok(Some(generation))),
            Err(read) => Err(StoreError::OutcomeUnknown {
                write: Box::new(write),
                read: Box::new(read),
            }),
        }
    }

    /// Settles a transaction that may or may not have reached etcd: `Some` with its
    /// revision if `entry` is in the audit log, `None` if it is not and never will be.
    async fn settle(
        &self,
        entry: &store::AuditEntry,
        head_revision: i64,
    ) -> Result<Option<Generation>, StoreError> {
        if let Some(generation) = self.committed(entry).await? {
            return Ok(Some(generation));
        }
        if head_revision == 0 {
            // No head to fence with before the very first entry.
            return Err(StoreError::Timeout(self.budget));
        }
        let previous = store::AuditHead {
            seq: entry.seq.saturating_sub(1),
            hash: entry.prev_hash.clone(),
        };
        let head_key = self.keys.audit_head();
        let fence = Txn::new()
            .when([Compare::mod_revision(
                head_key.as_str(),
                CompareOp::Equal,
                head_revision,
            )])
            .and_then([TxnOp::put(
                head_key.as_str(),
                previous.encode_to_vec(),
                None,
            )]);
        self.call(|mut client| {
            let fence = fence.clone();
            async move { client.txn(fence).await }
        })
        .await?;
        // Fenced or not, the head has moved past `head_revision`: the lost attempt cannot
        // apply any more, so the audit log now says for good whether it did.
        self.committed(entry).await
    }

    /// The revision that wrote `entry`, when it is in the audit log.
    async fn committed(&self, entry: &store::AuditEntry) -> Result<Option<Generation>, StoreError> {
        let response = self.get(self.keys.audit(entry.seq), None).await?;
        let mine = entry.encode_to_vec();
        Ok(response
            .kvs()
            .first()
            .filter(|kv| kv.value() == mine.as_slice())
            .map(|kv| revision(kv.mod_revision())))
    }

    /// The underlying etcd client (shares the connection).
    #[must_use]
    pub fn client(&self) -> etcd_client::Client {
        self.client.clone()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The key whose holder drives staged resumes (see [`crate::replica::rollout`]).
    pub(crate) fn driver_key(&self) -> String {
        self.keys.driver()
    }

    /// Reads and decodes one key: its mod_revision and value, `None` when absent.
    async fn read<M: Message + Default>(&self, key: &str) -> Result<Option<(i64, M)>, StoreError> {
        let response = self.get(key, None).await?;
        response
            .kvs()
            .first()
            .map(|kv| Ok((kv.mod_revision(), decode(key, kv.value())?)))
            .transpose()
    }

    /// The audit head; a fresh chain only when the log has no entry at all (a deleted
    /// head over an existing log is refused: [`StoreError::AuditHeadMissing`]). The
    /// entries are counted at the revision the head was read at, so a first entry
    /// committed by a concurrent change in between is not taken for a deleted head.
    async fn audit_head(&self) -> Result<Head, StoreError> {
        let head_key = self.keys.audit_head();
        let response = self.get(head_key.as_str(), None).await?;
        if let Some(kv) = response.kvs().first() {
            let head: store::AuditHead = decode(&head_key, kv.value())?;
            return Ok(Head {
                revision: kv.mod_revision(),
                seq: head.seq,
                hash: head.hash,
            });
        }
        let at = response.header().map_or(0, |h| h.revision());
        let first = format!("{}/audit/0", self.keys.prefix);
        let options = GetOptions::new()
            .with_prefix()
            .with_count_only()
            .with_revision(at);
        if self.get(first.as_str(), Some(options)).await?.count() > 0 {
            return Err(StoreError::AuditHeadMissing(head_key));
        }
        Ok(Head {
            revision: 0,
            seq: 0,
            hash: vec![0; 32],
        })
    }

    /// `ops` plus the puts of an audit entry and the new head.
    fn audited_puts(&self, entry: &store::AuditEntry, mut ops: Vec<TxnOp>) -> Vec<TxnOp> {
        let head = store::AuditHead {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        ops.push(TxnOp::put(
            self.keys.audit(entry.seq),
            entry.encode_to_vec(),
            None,
        ));
        ops.push(TxnOp::put(
            self.keys.audit_head(),
            head.encode_to_vec(),
            None,
        ));
        ops
    }
}

/// What an audit entry records beyond who and why.
struct Audited<'a> {
    action: &'a str,
    /// The program's name, or `*` for every program (stop-all).
    program: &'a str,
    from: RunState,
    to: RunState,
    detail: String,
}

/// Builds the next audit entry after `head`, with its hash.
fn audit_entry(
    head: &Head,
    at: SystemTime,
    change: &Change,
    what: Audited<'_>,
) -> store::AuditEntry {
    let mut entry = store::AuditEntry {
        seq: head.seq + 1,
        at: Some(killswitch_proto::timestamp(at)),
        actor: change.actor.clone(),
        action: what.action.to_owned(),
        program: what.program.to_owned(),
        from: what.from.to_wire() as i32,
        to: what.to.to_wire() as i32,
        reason: change.reason.clone(),
        incident_id: change.incident_id.clone(),
        prev_hash: head.hash.clone(),
        hash: Vec::new(),
        detail: what.detail,
    };
    entry.hash = audit_hash(&entry);
    entry
}

fn decode<M: Message + Default>(key: &str, value: &[u8]) -> Result<M, StoreError> {
    M::decode(value).map_err(|source| StoreError::Decode {
        key: key.to_owned(),
        source,
    })
}

/// The revision a successful transaction committed at: the mod_revision of what it put.
fn txn_revision(response: &etcd_client::TxnResponse) -> Generation {
    revision(response.header().map_or(0, |h| h.revision()))
}

/// etcd revisions are positive `i64`s; a negative one never occurs and reads as 0.
#[must_use]
pub fn revision(value: i64) -> Generation {
    u64::try_from(value).unwrap_or(0)
}
