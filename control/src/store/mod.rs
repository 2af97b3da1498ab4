//! Program definitions, state and audit in etcd.
//!
//! Key layout (DESIGN.md section 3), under a configurable prefix:
//! `programs/{name}`, `state/{name}`, `audit/{seq:020}`, `audit/head`, and
//! `approvals/{program}/{id}` (two-person resumes waiting for approval, lease-bound).
//! Every mutation is one etcd transaction that compares what it read (the state key's
//! mod_revision and the audit head's) and writes the new state together with its audit
//! entry, so no change exists without an audit entry and no update is lost. A lost race
//! retries from a fresh read, at most [`MAX_ATTEMPTS`] times.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

mod targeting;

pub use targeting::MAX_STOP_ALL_PROGRAMS;
use targeting::{Edit, whole};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::{self, store};
use sha2::{Digest, Sha256};

use crate::audit::{AuditList, Chain, Query, Selection, Verdict};
use crate::domain::{
    FailurePolicy, Generation, InvalidInput, Program, ProgramName, ProgramState, RunState,
};
use crate::status::ReplicaSummary;

/// Attempts of one mutation before giving up under contention.
pub const MAX_ATTEMPTS: usize = 16;

/// How long one etcd request retries while etcd is unavailable, unless configured.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(3);

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

/// A staged resume's plan: validated stages (see [`crate::targeting::stages`]) and the
/// least time between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Ascending percentages, the last 100.
    pub stages: Vec<u32>,
    /// The least time a stage runs before the next starts.
    pub interval: Duration,
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

    fn driver(&self) -> String {
        format!("{}/rollout-driver", self.prefix)
    }

    fn approval(&self, program: &ProgramName, id: &str) -> String {
        format!("{}{program}/{id}", self.approvals())
    }

    pub(crate) fn acks(&self, program: &ProgramName) -> String {
        format!("{}/acks/{program}/", self.prefix)
    }
}

/// The state of the store at one revision: every program's state.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The etcd revision the listing was read at.
    pub revision: i64,
    /// Every program's state.
    pub states: Vec<ProgramState>,
}

/// Access to Killswitch's data in etcd. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: etcd_client::Client,
    keys: Keys,
    budget: Duration,
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
        }
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
    /// lost attempt can never apply. Only when etcd cannot be reached to settle it is the
    /// outcome reported as unknown.
    async fn commit(
        &self,
        txn: Txn,
        entry: &store::AuditEntry,
        head_revision: i64,
    ) -> Result<Option<Generation>, StoreError> {
        let deadline = Instant::now() + self.budget;
        let mut uncertain = false;
        let mut failures: u32 = 0;
        let error = loop {
            let attempt = (self.budget / 3).min(deadline.saturating_duration_since(Instant::now()));
            let error =
                match tokio::time::timeout(attempt, self.client.clone().txn(txn.clone())).await {
                    Ok(Ok(response)) if response.succeeded() => {
                        return Ok(Some(txn_revision(&response)));
                    }
                    Ok(Ok(_)) if uncertain => return self.committed(entry).await,
                    Ok(Ok(_)) => return Ok(None),
                    Ok(Err(error)) => StoreError::from(error),
                    Err(_) => StoreError::Timeout(attempt),
                };
            if !error.is_unavailable() {
                return Err(error);
            }
            uncertain |= !error.is_connect_failure();
            failures = failures.saturating_add(1);
            let pause = Duration::from_millis(25u64 << failures.min(4));
            if Instant::now() + pause >= deadline {
                break error;
            }
            tracing::debug!(%error, failures, "etcd unavailable; resending the transaction");
            tokio::time::sleep(pause).await;
        };
        if !uncertain {
            return Err(error);
        }
        match self.settle(entry, head_revision).await {
            Ok(outcome) => outcome.map_or(Err(error), |generation| Ok(Some(generation))),
            Err(read) => Err(StoreError::OutcomeUnknown {
                write: Box::new(error),
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

    /// The key whose holder drives staged resumes (see [`crate::rollout`]).
    pub(crate) fn driver_key(&self) -> String {
        self.keys.driver()
    }

    /// Creates a program, PAUSED (default deny), with its audit entry, in one transaction.
    pub async fn create_program(
        &self,
        program: &Program,
        change: &Change,
    ) -> Result<(Program, ProgramState), StoreError> {
        let name = &program.name;
        let now = SystemTime::now();
        let stored_program = store::Program {
            owner: program.owner.clone(),
            description: program.description.clone(),
            created_at: Some(killswitch_proto::timestamp(now)),
            created_by: change.actor.clone(),
            policy: Some(program.policy.to_wire()),
            resume_approvals: program.resume_approvals,
        };
        let mut stored_state = store::ProgramState {
            state: v1::RunState::Paused as i32,
            reason: change.reason.clone(),
            incident_id: change.incident_id.clone(),
            actor: change.actor.clone(),
            changed_at: Some(killswitch_proto::timestamp(now)),
            policy: Some(program.policy.to_wire()),
            ..store::ProgramState::default()
        };
        for _ in 0..MAX_ATTEMPTS {
            // Created during a stop-all, it carries the mark like every other program.
            let (global_revision, global) = self.read_global().await?;
            stored_state.stop_all = global.active.then_some(global);
            let head = self.audit_head().await?;
            let what = Audited {
                action: "create",
                program: name.as_str(),
                from: RunState::Paused,
                to: RunState::Paused,
                detail: if program.resume_approvals > 1 {
                    format!(
                        "owner: {}; on lost contact: {}; resume approvals: {}",
                        program.owner, program.policy, program.resume_approvals
                    )
                } else {
                    format!(
                        "owner: {}; on lost contact: {}",
                        program.owner, program.policy
                    )
                },
            };
            let entry = audit_entry(&head, now, change, what);
            let txn = Txn::new()
                .when([
                    Compare::create_revision(self.keys.program(name), CompareOp::Equal, 0),
                    Compare::mod_revision(self.keys.global(), CompareOp::Equal, global_revision),
                    Compare::create_revision(self.keys.state(name), CompareOp::Equal, 0),
                    Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head.revision),
                ])
                .and_then(self.audited_puts(
                    &entry,
                    vec![
                        TxnOp::put(
                            self.keys.program(name),
                            stored_program.encode_to_vec(),
                            None,
                        ),
                        TxnOp::put(self.keys.state(name), stored_state.encode_to_vec(), None),
                    ],
                ));
            if let Some(generation) = self.commit(txn, &entry, head.revision).await? {
                let program = Program::from_store(name.clone(), &stored_program);
                let state = ProgramState::from_store(name.clone(), generation, &stored_state);
                return Ok((program, state));
            }
            if self.get_program(name).await?.is_some() {
                return Err(StoreError::AlreadyExists(name.clone()));
            }
        }
        Err(StoreError::Contention)
    }

    /// Reads one program and its state; `None` when it does not exist.
    pub async fn get_program(
        &self,
        name: &ProgramName,
    ) -> Result<Option<(Program, ProgramState)>, StoreError> {
        let Some((_, stored)) = self
            .read::<store::Program>(&self.keys.program(name))
            .await?
        else {
            return Ok(None);
        };
        let program = Program::from_store(name.clone(), &stored);
        Ok(self.get_state(name).await?.map(|state| (program, state)))
    }

    /// Reads one program's state; `None` when it does not exist.
    pub async fn get_state(&self, name: &ProgramName) -> Result<Option<ProgramState>, StoreError> {
        let state = self
            .read::<store::ProgramState>(&self.keys.state(name))
            .await?;
        Ok(state.map(|(at, stored)| ProgramState::from_store(name.clone(), revision(at), &stored)))
    }

    /// Every program with its state, sorted by name.
    pub async fn list_programs(&self) -> Result<Vec<(Program, ProgramState)>, StoreError> {
        let response = self
            .get(self.keys.programs(), Some(GetOptions::new().with_prefix()))
            .await?;
        let listing = self
            .list_states_at(response.header().map_or(0, |h| h.revision()))
            .await?;
        let mut programs = Vec::new();
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(name) = key
                .strip_prefix(&self.keys.programs())
                .and_then(|n| ProgramName::parse(n).ok())
            else {
                tracing::warn!(key, "ignoring a program key whose name is not valid");
                continue;
            };
            let program = Program::from_store(name.clone(), &decode(&key, kv.value())?);
            if let Some(state) = listing.states.iter().find(|s| s.program == name) {
                programs.push((program, state.clone()));
            }
        }
        programs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(programs)
    }

    /// Every program's state, read at one revision (the latest).
    pub async fn list_states(&self) -> Result<Listing, StoreError> {
        self.list_states_at(0).await
    }

    /// Every program's state as it was at revision `at` (0: the latest).
    pub(crate) async fn list_states_at(&self, at: i64) -> Result<Listing, StoreError> {
        let options = GetOptions::new().with_prefix().with_revision(at);
        let response = self.get(self.keys.states(), Some(options)).await?;
        let revision = response.header().map_or(at, |h| h.revision());
        let mut states = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            // One unreadable state must not blind the replica to every other program:
            // it is left out (its collectors hold, as for an unknown program), as the
            // watch leaves out such an update.
            match self.decode_state(kv.key(), kv.value(), kv.mod_revision()) {
                Ok(Some(state)) => states.push(state),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "ignoring a state this replica cannot read"),
            }
        }
        Ok(Listing { revision, states })
    }

    /// Decodes a `state/{name}` key-value; `None` (logged) for a key with an invalid name.
    pub(crate) fn decode_state(
        &self,
        key: &[u8],
        value: &[u8],
        mod_revision: i64,
    ) -> Result<Option<ProgramState>, StoreError> {
        let key = String::from_utf8_lossy(key);
        let Some(name) = key
            .strip_prefix(&self.keys.states())
            .and_then(|n| ProgramName::parse(n).ok())
        else {
            tracing::warn!(%key, "ignoring a state key whose name is not valid");
            return Ok(None);
        };
        let stored: store::ProgramState = decode(&key, value)?;
        Ok(Some(ProgramState::from_store(
            name,
            revision(mod_revision),
            &stored,
        )))
    }

    /// Pauses or resumes a program. Already in that state: nothing is written, and the
    /// current state comes back with `changed: false` (a pause that adds `purge` to a
    /// pause without it is a change).
    pub async fn set_state(
        &self,
        name: &ProgramName,
        target: RunState,
        purge: bool,
        change: &Change,
    ) -> Result<ChangeOutcome, StoreError> {
        self.change_state(name, target, purge, change, None).await
    }

    /// [`set_state`](Self::set_state), for a resume carrying `signed` (the state must
    /// still be the generation it replaces, and keeps its authorization) and, with
    /// `staged`, a staged resume. A whole-program change clears every scoped rule.
    async fn change_state(
        &self,
        name: &ProgramName,
        target: RunState,
        purge: bool,
        change: &Change,
        signed: Option<&SignedResume>,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            let plain = current.targeting.rules.is_empty()
                && current.targeting.rollout.is_none()
                && current.targeting.scope.is_none();
            let same = plain
                && current.state == target
                && (target == RunState::Running || current.purge || !purge);
            if same {
                return Ok(None);
            }
            if signed.is_some_and(|s| s.replaces != current.generation) {
                return Err(StoreError::StaleStatement);
            }
            let new = store::ProgramState {
                purge: target == RunState::Paused && purge,
                authorization: signed
                    .filter(|_| target == RunState::Running)
                    .map(|s| s.authorization.clone()),
                ..whole(stored, target)
            };
            let detail = if target == RunState::Paused && purge {
                "purge".to_owned()
            } else {
                String::new()
            };
            Ok(Some(Edit::new(new, target.action(), detail)))
        })
        .await
    }

    /// Starts a staged resume of a PAUSED program (see [`crate::targeting::Rollout`]):
    /// the first stage's collectors resume now, the next stages as the rollout driver
    /// advances it. A program already RUNNING for everyone is returned unchanged.
    pub async fn start_rollout(
        &self,
        name: &ProgramName,
        stages: &[u32],
        interval: Duration,
        change: &Change,
        signed: Option<&SignedResume>,
    ) -> Result<ChangeOutcome, StoreError> {
        self.edit_state(name, change, |current, stored| {
            rollout_edit(current, stored, stages, interval, signed)
        })
        .await
    }

    /// Sets the failure policy and/or the resume approvals of a program (`None` keeps
    /// each), copying the policy into the state so collectors receive it, with an audit
    /// entry. On a program that needs two operators to resume, a change that weakens it
    /// (fewer approvals, fail open, a longer grace) is not made: an approval request
    /// living `ttl` is stored instead, which another operator approves with `approve`.
    pub async fn set_policy(
        &self,
        name: &ProgramName,
        policy: Option<FailurePolicy>,
        resume_approvals: Option<u32>,
        ttl: Duration,
        change: &Change,
    ) -> Result<PolicyOutcome, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let (program, state) = self
                .get_program(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.clone()))?;
            let new = policy.unwrap_or(program.policy);
            let approvals = resume_approvals.unwrap_or(program.resume_approvals);
            let weakens = program.resume_approvals >= 2
                && (approvals < program.resume_approvals || program.policy.weakened_by(new));
            if !weakens {
                return self
                    .apply_policy(name, new, approvals, change, None)
                    .await
                    .map(|(program, state)| PolicyOutcome::Changed(program, state));
            }
            let request = store::ApprovalRequest {
                policy_change: Some(v1::PolicyChange {
                    policy: Some(new.to_wire()),
                    resume_approvals: approvals,
                }),
                ..Default::default()
            };
            let detail = format!(
                "{}; waits for a second operator",
                policy_detail(program.policy, program.resume_approvals, new, approvals).join("; ")
            );
            if let Some((id, expires_at)) = self
                .file_request(&state, request, "policy-request", detail, ttl, change)
                .await?
            {
                return Ok(PolicyOutcome::Requested {
                    program,
                    state,
                    id,
                    expires_at,
                });
            }
            tracing::debug!(program = %name, "lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
    }

    /// Writes a program's policy and approvals, and the policy into its state, with an
    /// audit entry. With `request` (an approved policy change: its key, that key's
    /// mod_revision, the state generation it was filed at, who filed it), the state must
    /// still be at that generation and the request is deleted in the same transaction.
    async fn apply_policy(
        &self,
        name: &ProgramName,
        new: FailurePolicy,
        new_approvals: u32,
        change: &Change,
        request: Option<(&str, i64, Generation, &str)>,
    ) -> Result<(Program, ProgramState), StoreError> {
        let (program_key, state_key) = (self.keys.program(name), self.keys.state(name));
        for _ in 0..MAX_ATTEMPTS {
            let not_found = || StoreError::NotFound(name.clone());
            let (program_revision, mut stored_program) = self
                .read::<store::Program>(&program_key)
                .await?
                .ok_or_else(not_found)?;
            let (state_revision, mut stored_state) = self
                .read::<store::ProgramState>(&state_key)
                .await?
                .ok_or_else(not_found)?;
            if request.is_some_and(|(_, _, at, _)| at != revision(state_revision)) {
                return Err(StoreError::StaleApproval);
            }
            let old = FailurePolicy::from_store(stored_program.policy.as_ref());
            let old_approvals = stored_program.resume_approvals.clamp(1, 2);
            if old == new && old_approvals == new_approvals && request.is_none() {
                let state =
                    ProgramState::from_store(name.clone(), revision(state_revision), &stored_state);
                return Ok((Program::from_store(name.clone(), &stored_program), state));
            }
            let mut details = policy_detail(old, old_approvals, new, new_approvals);
            if let Some((_, _, _, requester)) = request {
                details.push(format!(
                    "approved by {}, requested by {requester}",
                    change.actor
                ));
            }
            stored_program.policy = Some(new.to_wire());
            stored_program.resume_approvals = new_approvals;
            stored_state.policy = Some(new.to_wire());
            let head = self.audit_head().await?;
            let current = RunState::from_wire(stored_state.state);
            let what = Audited {
                action: "policy",
                program: name.as_str(),
                from: current,
                to: current,
                detail: details.join("; "),
            };
            let entry = audit_entry(&head, SystemTime::now(), change, what);
            let mut compares = vec![
                Compare::mod_revision(program_key.as_str(), CompareOp::Equal, program_revision),
                Compare::mod_revision(state_key.as_str(), CompareOp::Equal, state_revision),
                Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head.revision),
            ];
            let mut ops = vec![
                TxnOp::put(program_key.as_str(), stored_program.encode_to_vec(), None),
                TxnOp::put(state_key.as_str(), stored_state.encode_to_vec(), None),
            ];
            if let Some((key, key_revision, _, _)) = request {
                compares.push(Compare::mod_revision(key, CompareOp::Equal, key_revision));
                ops.push(TxnOp::delete(key, None));
            }
            let txn = Txn::new()
                .when(compares)
                .and_then(self.audited_puts(&entry, ops));
            if let Some(generation) = self.commit(txn, &entry, head.revision).await? {
                let state = ProgramState::from_store(name.clone(), generation, &stored_state);
                return Ok((Program::from_store(name.clone(), &stored_program), state));
            }
            tracing::debug!(program = %name, "lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
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

    async fn audit_head(&self) -> Result<Head, StoreError> {
        Ok(
            match self
                .read::<store::AuditHead>(&self.keys.audit_head())
                .await?
            {
                None => Head {
                    revision: 0,
                    seq: 0,
                    hash: vec![0; 32],
                },
                Some((revision, head)) => Head {
                    revision,
                    seq: head.seq,
                    hash: head.hash,
                },
            },
        )
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

    /// Every audit entry, oldest first.
    pub async fn audit_entries(&self) -> Result<Vec<store::AuditEntry>, StoreError> {
        let prefix = format!("{}/audit/0", self.keys.prefix);
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        response
            .kvs()
            .iter()
            .map(|kv| decode(&String::from_utf8_lossy(kv.key()), kv.value()))
            .collect()
    }
}

/// Two-person resumes: a resume of a program that needs two operators stores an approval
/// request, bound to its own lease, which another operator approves.
impl Store {
    /// Resumes a program, or, when it needs two operators, stores an approval request that
    /// lives for `ttl` (written with its audit entry in one transaction). A RUNNING program
    /// is returned unchanged either way.
    pub async fn resume(
        &self,
        name: &ProgramName,
        ttl: Duration,
        change: &Change,
        signed: Option<&SignedResume>,
        staged: Option<&Staged>,
    ) -> Result<ResumeOutcome, StoreError> {
        let (_, stored_program) = self
            .read::<store::Program>(&self.keys.program(name))
            .await?
            .ok_or_else(|| StoreError::NotFound(name.clone()))?;
        if stored_program.resume_approvals <= 1 {
            let outcome = match staged {
                None => {
                    self.change_state(name, RunState::Running, false, change, signed)
                        .await?
                }
                Some(staged) => {
                    self.start_rollout(name, &staged.stages, staged.interval, change, signed)
                        .await?
                }
            };
            return Ok(ResumeOutcome::Changed(outcome));
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self
                .get_state(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.clone()))?;
            if current.state == RunState::Running {
                return Ok(ResumeOutcome::Changed(ChangeOutcome {
                    state: current,
                    changed: false,
                }));
            }
            if signed.is_some_and(|s| s.replaces != current.generation) {
                return Err(StoreError::StaleStatement);
            }
            let request = store::ApprovalRequest {
                authorization: signed.map(|s| s.authorization.clone()),
                stages_percent: staged.map(|s| s.stages.clone()).unwrap_or_default(),
                stage_interval_ms: staged.map_or(0, |s| {
                    u64::try_from(s.interval.as_millis()).unwrap_or(u64::MAX)
                }),
                ..Default::default()
            };
            if let Some((id, expires_at)) = self
                .file_request(
                    &current,
                    request,
                    "resume-request",
                    String::new(),
                    ttl,
                    change,
                )
                .await?
            {
                return Ok(ResumeOutcome::Requested {
                    state: current,
                    id,
                    expires_at,
                });
            }
            tracing::debug!(program = %name, "lost a race with a concurrent change; retrying");
        }
        Err(StoreError::Contention)
    }

    /// Stores `request` (its requester, reason, generation and times filled in here) as
    /// an approval request of `current`'s program living `ttl`, with an audit entry
    /// `action`, if the state is still at `current`'s generation: its id and expiry, or
    /// `None` when a concurrent change came first (the caller reads again and retries).
    async fn file_request(
        &self,
        current: &ProgramState,
        mut request: store::ApprovalRequest,
        action: &'static str,
        detail: String,
        ttl: Duration,
        change: &Change,
    ) -> Result<Option<(String, SystemTime)>, StoreError> {
        let name = &current.program;
        let head = self.audit_head().await?;
        let now = SystemTime::now();
        let expires_at = now + ttl;
        let id = format!("{:08x}", fastrand::u32(..));
        request.requester.clone_from(&change.actor);
        request.reason.clone_from(&change.reason);
        request.incident_id.clone_from(&change.incident_id);
        request.replaces_generation = current.generation;
        request.created_at = Some(killswitch_proto::timestamp(now));
        request.expires_at = Some(killswitch_proto::timestamp(expires_at));
        let mut detail_text = format!(
            "request {id}, expires in {}",
            humantime::format_duration(ttl)
        );
        if !detail.is_empty() {
            detail_text = format!("{detail}; {detail_text}");
        }
        let what = Audited {
            action,
            program: name.as_str(),
            from: current.state,
            to: current.state,
            detail: detail_text,
        };
        let entry = audit_entry(&head, now, change, what);
        let lease = self.grant_lease(ttl).await?;
        let key = self.keys.approval(name, &id);
        let state_key = self.keys.state(name);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(
                    state_key.as_str(),
                    CompareOp::Equal,
                    i64::try_from(current.generation).unwrap_or(i64::MAX),
                ),
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                Compare::mod_revision(self.keys.audit_head(), CompareOp::Equal, head.revision),
            ])
            .and_then(self.audited_puts(
                &entry,
                vec![TxnOp::put(
                    key.as_str(),
                    request.encode_to_vec(),
                    Some(etcd_client::PutOptions::new().with_lease(lease)),
                )],
            ));
        match self.commit(txn, &entry, head.revision).await {
            Ok(Some(_)) => Ok(Some((id, expires_at))),
            Ok(None) => {
                self.forget_lease(lease).await;
                Ok(None)
            }
            Err(error) => {
                self.forget_lease(lease).await;
                Err(error)
            }
        }
    }

    /// The program and stored value of approval request `id`, with the key's mod_revision
    /// and lease.
    async fn find_approval(
        &self,
        id: &str,
    ) -> Result<(ProgramName, store::ApprovalRequest, i64, i64), StoreError> {
        let prefix = self.keys.approvals();
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some((program, key_id)) = key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if key_id != id {
                continue;
            }
            let Ok(program) = ProgramName::parse(program) else {
                tracing::warn!(
                    key,
                    "ignoring an approval key whose program name is not valid"
                );
                continue;
            };
            let request = decode(&key, kv.value())?;
            return Ok((program, request, kv.mod_revision(), kv.lease()));
        }
        Err(StoreError::NoApprovalRequest(id.to_owned()))
    }

    /// Approval request `id` and the program it is for.
    pub async fn get_approval(&self, id: &str) -> Result<PendingApproval, StoreError> {
        let (program, request, _, _) = self.find_approval(id).await?;
        Ok(PendingApproval { program, request })
    }

    /// Approves request `id` as `change.actor`, who must not be its requester: the
    /// program resumes (or, for a policy change, its policy is set), the request is
    /// deleted, and the audit entry names both, in one transaction. Fails when the program changed since the request.
    /// `signature`, checked by the caller over the request's statement, joins the
    /// requester's in the state's authorization.
    pub async fn approve(
        &self,
        id: &str,
        change: &Change,
        signature: Option<&v1::Signature>,
    ) -> Result<ChangeOutcome, StoreError> {
        let (name, request, request_revision, lease) = self.find_approval(id).await?;
        if request.requester == change.actor {
            return Err(StoreError::SelfApproval);
        }
        let request_key = self.keys.approval(&name, id);
        if let Some(policy) = &request.policy_change {
            let new = FailurePolicy::from_store(policy.policy.as_ref());
            let guard = (
                request_key.as_str(),
                request_revision,
                request.replaces_generation,
                request.requester.as_str(),
            );
            let (_, state) = self
                .apply_policy(
                    &name,
                    new,
                    policy.resume_approvals.clamp(1, 2),
                    change,
                    Some(guard),
                )
                .await?;
            self.forget_lease(lease).await;
            return Ok(ChangeOutcome {
                state,
                changed: true,
            });
        }
        let mut authorization = request.authorization.clone();
        if let (Some(authorization), Some(signature)) = (authorization.as_mut(), signature) {
            authorization.signatures.push(signature.clone());
        }
        let detail = format!(
            "approved by {}, requested by {}",
            change.actor, request.requester
        );
        let outcome = self
            .edit_state(&name, change, |current, stored| {
                if current.generation != request.replaces_generation {
                    return Err(StoreError::StaleApproval);
                }
                let signed = authorization.clone().map(|authorization| SignedResume {
                    authorization,
                    replaces: current.generation,
                });
                let mut edit = if request.stages_percent.is_empty() {
                    let new = store::ProgramState {
                        authorization: signed.map(|s| s.authorization),
                        ..whole(stored, RunState::Running)
                    };
                    Edit::new(new, RunState::Running.action(), String::new())
                } else {
                    let interval = Duration::from_millis(request.stage_interval_ms);
                    let stages = &request.stages_percent;
                    rollout_edit(current, stored, stages, interval, signed.as_ref())?
                        .ok_or_else(|| StoreError::StaleApproval)?
                };
                edit.detail = if edit.detail.is_empty() {
                    detail.clone()
                } else {
                    format!("{}; {detail}", edit.detail)
                };
                edit.compares.push(Compare::mod_revision(
                    request_key.as_str(),
                    CompareOp::Equal,
                    request_revision,
                ));
                edit.ops.push(TxnOp::delete(request_key.as_str(), None));
                Ok(Some(edit))
            })
            .await?;
        self.forget_lease(lease).await;
        Ok(outcome)
    }

    /// Revokes a lease nothing needs any more; on failure it simply expires.
    async fn forget_lease(&self, lease: i64) {
        if lease == 0 {
            return;
        }
        if let Err(error) = self.client.clone().lease_revoke(lease).await {
            tracing::debug!(%error, lease, "could not revoke a lease; it will expire");
        }
    }
}

/// What an audit entry says a policy change does, e.g. `on lost contact: pause after 30s
/// -> keep`, `resume approvals: 2 -> 1`.
fn policy_detail(
    old: FailurePolicy,
    old_approvals: u32,
    new: FailurePolicy,
    new_approvals: u32,
) -> Vec<String> {
    let mut details = Vec::new();
    if old != new {
        details.push(format!("on lost contact: {old} -> {new}"));
    }
    if old_approvals != new_approvals {
        details.push(format!(
            "resume approvals: {old_approvals} -> {new_approvals}"
        ));
    }
    details
}

/// Reading the whole audit log for `ListAudit` and `VerifyAudit`.
///
/// The log is read at one etcd revision (the head's), so a change committed meanwhile is
/// either wholly in the snapshot or wholly out of it, and page by page, so no response
/// nears the gRPC message limit however long the log grows.
impl Store {
    /// Verifies the audit chain: see [`Chain`] for the rules.
    pub async fn verify_audit(&self) -> Result<Verdict, StoreError> {
        let mut attempts = 0;
        loop {
            let mut chain = Chain::new();
            match self.scan_audit(|key, value| chain.push(key, value)).await {
                Ok(head) => return Ok(chain.finish(head.as_deref())),
                Err(error) if error.is_compacted() && attempts + 1 < MAX_ATTEMPTS => {
                    tracing::debug!("etcd compacted the audit snapshot; reading it again");
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The newest audit entries matching `query`, oldest first.
    pub async fn list_audit(&self, query: &Query) -> Result<AuditList, StoreError> {
        let mut attempts = 0;
        loop {
            let mut selection = Selection::new(query.clone());
            match self
                .scan_audit(|key, value| selection.push(key, value))
                .await
            {
                Ok(_) => return Ok(selection.finish()),
                Err(error) if error.is_compacted() && attempts + 1 < MAX_ATTEMPTS => {
                    tracing::debug!("etcd compacted the audit snapshot; reading it again");
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads the head, then every other key under `audit/` at the head's revision in key
    /// order, [`AUDIT_PAGE`] keys per request, handing `visit` each key's last segment and
    /// value. Returns the head's value, `None` when there is none.
    async fn scan_audit(
        &self,
        mut visit: impl FnMut(&str, &[u8]),
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let head_key = self.keys.audit_head();
        let response = self.get(head_key.as_str(), None).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let head = response.kvs().first().map(|kv| kv.value().to_vec());

        let dir = format!("{}/audit/", self.keys.prefix);
        // '0' follows '/': the end of the range of keys that start with `dir`.
        let end = format!("{}/audit0", self.keys.prefix);
        let mut from = dir.clone().into_bytes();
        loop {
            let options = GetOptions::new()
                .with_range(end.as_str())
                .with_revision(revision)
                .with_limit(AUDIT_PAGE);
            let page = self.get(from.clone(), Some(options)).await?;
            for kv in page.kvs() {
                if kv.key() == head_key.as_bytes() {
                    continue;
                }
                let key = kv.key().strip_prefix(dir.as_bytes()).unwrap_or(kv.key());
                visit(&String::from_utf8_lossy(key), kv.value());
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    // The smallest key after the last one read.
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(head),
            }
        }
    }
}

/// Keys read per request when scanning the audit log.
const AUDIT_PAGE: i64 = 500;
/// Most operations this replica puts in one etcd transaction: below etcd's default
/// `--max-txn-ops` (128), with room for the comparisons a state change adds.
pub const MAX_TXN_OPS: usize = 100;

/// Replica registration and acknowledgement summaries: lease-bound, so they vanish with
/// a replica that dies.
impl Store {
    /// Grants a lease of `ttl` and returns its id.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        // A lease granted by an attempt whose answer was lost simply expires.
        let lease = self
            .call(|mut client| async move { client.lease_grant(seconds, None).await })
            .await?;
        Ok(lease.id())
    }

    /// Revokes a lease, deleting every key bound to it.
    pub async fn revoke_lease(&self, lease: i64) -> Result<(), StoreError> {
        self.call(|mut client| async move { client.lease_revoke(lease).await })
            .await?;
        Ok(())
    }

    /// Writes `{prefix}/replicas/{id}` bound to `lease`.
    pub async fn register_replica(
        &self,
        lease: i64,
        id: &str,
        replica: &store::Replica,
    ) -> Result<(), StoreError> {
        let key = format!("{}{id}", self.keys.replicas());
        let options = etcd_client::PutOptions::new().with_lease(lease);
        let value = replica.encode_to_vec();
        self.call(|mut client| {
            let (key, value, options) = (key.clone(), value.clone(), options.clone());
            async move { client.put(key, value, Some(options)).await }
        })
        .await?;
        Ok(())
    }

    /// Every registered replica: id and registration.
    pub async fn list_replicas(&self) -> Result<Vec<(String, store::Replica)>, StoreError> {
        let prefix = self.keys.replicas();
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let id = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
                Ok((id, decode(&key, kv.value())?))
            })
            .collect()
    }

    /// Writes (or, for `None`, deletes) this replica's summaries: one transaction (one
    /// etcd revision) per [`MAX_TXN_OPS`] programs, however many collectors they cover.
    pub async fn publish_summaries(
        &self,
        lease: i64,
        replica: &str,
        summaries: &[(ProgramName, Option<store::AckSummary>)],
    ) -> Result<(), StoreError> {
        // etcd refuses a transaction of more than `--max-txn-ops` operations (128 by
        // default): write in chunks below that, each safe to resend (unconditional puts
        // and deletes of the same values).
        for chunk in summaries.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(program, summary)| {
                    let key = format!("{}{replica}", self.keys.acks(program));
                    match summary {
                        Some(summary) => TxnOp::put(
                            key,
                            summary.encode_to_vec(),
                            Some(etcd_client::PutOptions::new().with_lease(lease)),
                        ),
                        None => TxnOp::delete(key, None),
                    }
                })
                .collect();
            let txn = Txn::new().and_then(ops);
            self.call(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        }
        Ok(())
    }

    /// Watches every replica's acknowledgement summary of `name`.
    pub async fn watch_summaries(
        &self,
        name: &ProgramName,
    ) -> Result<etcd_client::WatchStream, StoreError> {
        let options = etcd_client::WatchOptions::new().with_prefix();
        Ok(self
            .client
            .clone()
            .watch(self.keys.acks(name), Some(options))
            .await?)
    }

    /// A program's state, every replica's acknowledgement summary and the ids of the
    /// registered replicas; `None` when the program does not exist.
    pub async fn read_status(
        &self,
        name: &ProgramName,
    ) -> Result<Option<(ProgramState, Vec<ReplicaSummary>, Vec<String>)>, StoreError> {
        let Some(state) = self.get_state(name).await? else {
            return Ok(None);
        };
        let prefix = self.keys.acks(name);
        let response = self
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut summaries = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let replica = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
            summaries.push(ReplicaSummary {
                replica,
                summary: decode(&key, kv.value())?,
            });
        }
        let prefix = self.keys.replicas();
        let options = GetOptions::new().with_prefix().with_keys_only();
        let response = self.get(prefix.as_str(), Some(options)).await?;
        let registered = response
            .kvs()
            .iter()
            .map(|kv| {
                String::from_utf8_lossy(kv.key())
                    .trim_start_matches(prefix.as_str())
                    .to_owned()
            })
            .collect();
        Ok(Some((state, summaries, registered)))
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

/// SHA-256 of the entry encoded with an empty `hash`; covers `prev_hash`, so entries chain.
#[must_use]
pub fn audit_hash(entry: &store::AuditEntry) -> Vec<u8> {
    let unhashed = store::AuditEntry {
        hash: Vec::new(),
        ..entry.clone()
    };
    Sha256::digest(unhashed.encode_to_vec()).to_vec()
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

/// The edit that starts a staged resume of a PAUSED program; `None` when it is already
/// RUNNING for everyone.
fn rollout_edit(
    current: &ProgramState,
    stored: &store::ProgramState,
    stages: &[u32],
    interval: Duration,
    signed: Option<&SignedResume>,
) -> Result<Option<Edit>, StoreError> {
    let stages = crate::targeting::stages(stages)?;
    if current.state == RunState::Running && current.targeting.rules.is_empty() {
        return Ok(None);
    }
    if signed.is_some_and(|s| s.replaces != current.generation) {
        return Err(StoreError::StaleStatement);
    }
    let rollout = crate::targeting::Rollout {
        stages,
        stage: 0,
        interval,
        stage_started_at: Some(SystemTime::now()),
    };
    let detail = format!(
        "staged: {} every {}",
        rollout
            .stages
            .iter()
            .map(|p| format!("{p}%"))
            .collect::<Vec<_>>()
            .join(","),
        humantime::format_duration(interval)
    );
    let new = store::ProgramState {
        rollout: Some(rollout.to_wire()),
        authorization: signed.map(|s| s.authorization.clone()),
        ..whole(stored, RunState::Paused)
    };
    Ok(Some(Edit::new(new, "resume", detail)))
}
