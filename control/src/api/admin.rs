//! `AdminService`: what operators call, through the `killswitch` CLI.
//!
//! Every request is validated into domain types before anything touches etcd, so bad
//! input changes nothing. Mutations go through [`Store`] transactions with their audit
//! entry; status combines the stored state with this replica's [`AckBook`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use killswitch_proto::v1::{self, admin_service_server::AdminService, store};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::api::auth::{Action, Auth};
use crate::api::error::ApiError;
use crate::api::reload::{ReloadError, Reloader};
use crate::api::signing::{self, SignatureError};
use crate::api::{peers, wire};
use crate::model::audit;
use crate::model::receipts;
use crate::model::selector::Selector;
use crate::model::status;
use crate::model::targeting;
use crate::model::{
    self, FailurePolicy, InvalidInput, Program, ProgramName, ProgramState, RunState,
};
use crate::replica::acks::{AckBook, Filter};
use crate::replica::cache::StateCache;
use crate::store::{
    Change, PolicyOutcome, ReceiptRange, ResumeOutcome, ResumeScope, SignedResume, Staged, Store,
    StoreError,
};

/// Sends the receipts of `name` in `range`, read from etcd a page at a time, in
/// generation order and without repeats, in responses of at most
/// [`receipts::RESPONSE_BYTES`]: memory holds one page and the digests of one
/// generation's receipts, however many are stored.
async fn stream_receipts(
    store: Store,
    name: ProgramName,
    range: ReceiptRange,
    tx: mpsc::Sender<Result<v1::ListReceiptsResponse, Status>>,
) {
    let mut dedup = receipts::Dedup::default();
    let mut at = None;
    loop {
        let page = match store.receipt_page(&name, range, at).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, program = %name, "cannot read receipts");
                let _ = tx.send(Err(ApiError::read(error))).await;
                return;
            }
        };
        for (generation, chunk) in page.chunks {
            let fresh = chunk
                .receipts
                .into_iter()
                .filter(|receipt| dedup.first(generation, receipt))
                .collect();
            for batch in receipts::pack(fresh, receipts::RESPONSE_BYTES) {
                let response = v1::ListReceiptsResponse { receipts: batch };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        }
        match page.next {
            Some(next) => at = Some(next),
            None => return,
        }
    }
}

/// WatchStatus reads status at most this often, to coalesce bursts: a change after a
/// quiet spell is read at once, one during a burst when this much has passed since the
/// last read.
const STATUS_DEBOUNCE: Duration = Duration::from_millis(50);
/// How often WatchStatus re-reads status when nothing changed.
const STATUS_REFRESH: Duration = Duration::from_secs(2);
type StatusSender = mpsc::Sender<Result<v1::StatusResponse, Status>>;

/// The operator-facing gRPC service.
#[derive(Debug, Clone)]
pub struct Admin {
    store: Store,
    book: Arc<AckBook>,
    cache: Arc<StateCache>,
    replica_id: String,
    drain: CancellationToken,
    auth: Arc<Auth>,
    /// What `Reload` reloads; `None` under `--insecure-dev`.
    reloader: Option<Arc<dyn Reloader>>,
}

impl Admin {
    /// Admin calls served from `store`, listing this replica's collectors from `book`,
    /// following state changes through `cache`; streams end when `drain` fires. Every call
    /// is first checked by `auth`, which also says how to reach peer replicas.
    #[must_use]
    pub fn new(
        store: Store,
        book: Arc<AckBook>,
        cache: Arc<StateCache>,
        replica_id: String,
        drain: CancellationToken,
        auth: Arc<Auth>,
    ) -> Self {
        Self {
            store,
            book,
            cache,
            replica_id,
            drain,
            auth,
            reloader: None,
        }
    }

    /// `Reload` reloads the replica's credentials with `reloader` (without one, it
    /// answers that there is nothing to reload).
    #[must_use]
    pub fn with_reloader(mut self, reloader: Arc<dyn Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Checks the caller before anything else happens; returns the actor for the audit.
    fn authorize<T>(
        &self,
        request: &Request<T>,
        action: Action,
        program: Option<&str>,
    ) -> Result<String, Status> {
        let actor = self
            .auth
            .authorize(request, action, program)
            .map_err(ApiError::from)?;
        // The `admin` span opened by the metrics layer names the caller from here on.
        tracing::Span::current().record("operator", actor.as_str());
        Ok(actor)
    }

    /// The label keys collectors' certificates pin, sorted, for `Status` and
    /// `ListCollectors` to show.
    fn pinned_labels(&self) -> Vec<String> {
        self.auth.pinned_labels().into_iter().collect()
    }

    /// A pause of the whole program, or of the collectors its selector matches.
    async fn pause_program(
        &self,
        actor: String,
        request: &v1::PauseRequest,
    ) -> Result<v1::ChangeResponse, ApiError> {
        let name = ProgramName::parse(&request.program)?;
        let change = change(actor, &request.reason, &request.incident_id)?;
        let outcome = match optional_selector(&request.selector)? {
            Some(selector) => {
                if request.purge {
                    return Err(InvalidInput::Conflict(
                        "--purge applies to whole-program pauses only".to_owned(),
                    )
                    .into());
                }
                self.store
                    .set_scoped(&name, RunState::Paused, &selector, &change, None)
                    .await?
            }
            None => {
                self.store
                    .set_state(&name, RunState::Paused, request.purge, &change)
                    .await?
            }
        };
        if outcome.changed {
            tracing::info!(
                program = %name, selector = request.selector, generation = outcome.state.generation,
                actor = change.actor, reason = change.reason, "paused"
            );
        }
        Ok(change_response(outcome))
    }

    /// Checks the caller's signed statement, if any (and whether one is required), against
    /// the program's current generation and the resume's `scope`.
    async fn signed_resume(
        &self,
        name: &ProgramName,
        actor: &str,
        authorization: Option<&v1::ResumeAuthorization>,
        scope: signing::Scope<'_>,
    ) -> Result<Option<SignedResume>, ApiError> {
        let signing = self.auth.signing(actor);
        let now = SystemTime::now();
        let Some(authorization) = authorization else {
            let resume = signing::Resume {
                program: name,
                replaces: 0,
                scope,
            };
            signing::check_resume(None, resume, actor, signing, now)?;
            return Ok(None);
        };
        let current = self
            .store
            .get_state(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.clone()))?;
        let resume = signing::Resume {
            program: name,
            replaces: current.generation,
            scope,
        };
        signing::check_resume(Some(authorization), resume, actor, signing, now)?;
        Ok(Some(SignedResume {
            authorization: authorization.clone(),
            replaces: current.generation,
        }))
    }

    async fn resume_or_request(
        &self,
        actor: String,
        request: &v1::ResumeRequest,
    ) -> Result<v1::ChangeResponse, ApiError> {
        let name = ProgramName::parse(&request.program)?;
        let change = change(actor, &request.reason, &request.incident_id)?;
        let ttl = model::approval_ttl(request.ttl_ms)?;
        let selector = optional_selector(&request.selector)?;
        let staged = if request.stages_percent.is_empty() {
            None
        } else {
            if selector.is_some() {
                return Err(InvalidInput::Conflict(
                    "a staged resume covers the whole program: give --stages or --selector, \
                     not both"
                        .to_owned(),
                )
                .into());
            }
            Some(Staged {
                stages: targeting::stages(&request.stages_percent)?,
                interval: Duration::from_millis(request.stage_interval_ms),
            })
        };
        let canonical = selector
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let scope = signing::Scope {
            selector: &canonical,
            stages_percent: staged.as_ref().map_or(&[], |s| s.stages.as_slice()),
            stage_interval_ms: staged.as_ref().map_or(0, |_| request.stage_interval_ms),
        };
        let signed = self
            .signed_resume(&name, &change.actor, request.authorization.as_ref(), scope)
            .await?;
        let resume_scope = match (&selector, &staged) {
            (Some(selector), _) => ResumeScope::Selector(selector),
            (None, Some(staged)) => ResumeScope::Staged(staged),
            (None, None) => ResumeScope::Whole,
        };
        match self
            .store
            .resume(&name, ttl, &change, signed.as_ref(), resume_scope)
            .await?
        {
            ResumeOutcome::Changed(outcome) => {
                if outcome.changed {
                    tracing::info!(
                        program = %name, selector = canonical, generation = outcome.state.generation,
                        actor = change.actor, reason = change.reason, "resumed"
                    );
                }
                Ok(change_response(outcome))
            }
            ResumeOutcome::Requested {
                state,
                id,
                expires_at,
            } => {
                tracing::info!(
                    program = %name, selector = canonical, request = id, actor = change.actor,
                    reason = change.reason, "resume requested; waiting for approval"
                );
                Ok(v1::ChangeResponse {
                    state: Some(state.to_wire()),
                    changed: false,
                    approval_request: Some(v1::ApprovalRequest {
                        id,
                        expires_at: Some(killswitch_proto::timestamp(expires_at)),
                    }),
                })
            }
        }
    }
}

/// The next message of the summaries' watch, or never while there is none.
async fn next_summary(
    stream: Option<&mut etcd_client::WatchStream>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// The who, why and incident of a change, validated.
fn change(actor: String, reason: &str, incident_id: &str) -> Result<Change, InvalidInput> {
    Ok(Change {
        actor,
        reason: model::reason(reason)?,
        incident_id: model::incident_id(incident_id)?,
    })
}

/// A label selector from a request; empty means every collector.
fn optional_selector(selector: &str) -> Result<Option<Selector>, InvalidInput> {
    if selector.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(Selector::parse(selector)?))
}

/// A required label selector from a request.
fn required_selector(selector: &str) -> Result<Selector, InvalidInput> {
    optional_selector(selector)?.ok_or(InvalidInput::Missing {
        field: "selector",
        hint: "say which collectors, e.g. --selector 'region=emea'",
    })
}

fn change_response(outcome: crate::store::ChangeOutcome) -> v1::ChangeResponse {
    v1::ChangeResponse {
        state: Some(outcome.state.to_wire()),
        changed: outcome.changed,
        approval_request: None,
    }
}

fn program_response(program: &Program, state: &ProgramState) -> v1::GetProgramResponse {
    v1::GetProgramResponse {
        program: Some(program.to_wire()),
        state: Some(state.to_wire()),
        approval_request: None,
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn create_program(
        &self,
        request: Request<v1::CreateProgramRequest>,
    ) -> Result<Response<v1::CreateProgramResponse>, Status> {
        let actor = self.authorize(
            &request,
            Action::CreateProgram,
            Some(&request.get_ref().name),
        )?;
        let request = request.into_inner();
        let result: Result<_, ApiError> = async {
            let program = Program {
                name: ProgramName::parse(&request.name)?,
                owner: model::owner(&request.owner)?,
                description: model::description(&request.description)?,
                created_at: None,
                created_by: String::new(),
                policy: FailurePolicy::parse(request.policy.as_ref())?,
                resume_approvals: model::resume_approvals(request.resume_approvals)?.unwrap_or(1),
            };
            let reason = if request.reason.is_empty() { "program created" } else { &request.reason };
            let change = Change { actor, reason: model::reason(reason)?, incident_id: String::new() };
            let (program, state) = self.store.create_program(&program, &change).await?;
            tracing::info!(program = %program.name, owner = program.owner, actor = change.actor, "program created");
            Ok(v1::CreateProgramResponse { program: Some(program.to_wire()), state: Some(state.to_wire()) })
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn set_policy(
        &self,
        request: Request<v1::SetPolicyRequest>,
    ) -> Result<Response<v1::GetProgramResponse>, Status> {
        let actor = self.authorize(
            &request,
            Action::SetPolicy,
            Some(&request.get_ref().program),
        )?;
        let request = request.into_inner();
        let result: Result<_, ApiError> = async {
            let name = ProgramName::parse(&request.program)?;
            let approvals = model::resume_approvals(request.resume_approvals)?;
            // Without a policy, a request that only sets approvals keeps the policy.
            let policy = match (&request.policy, approvals) {
                (None, Some(_)) => None,
                (policy, _) => Some(FailurePolicy::parse(policy.as_ref())?),
            };
            let change = change(actor, &request.reason, &request.incident_id)?;
            let ttl = model::approval_ttl(request.ttl_ms)?;
            let (program, state) = match self
                .store
                .set_policy(&name, policy, approvals, ttl, &change)
                .await?
            {
                PolicyOutcome::Changed(program, state) => (program, state),
                PolicyOutcome::Requested {
                    program,
                    state,
                    id,
                    expires_at,
                } => {
                    tracing::info!(
                        program = %name, request = id, actor = change.actor,
                        "policy change requested; it weakens a two-person program and waits for approval"
                    );
                    return Ok(v1::GetProgramResponse {
                        approval_request: Some(v1::ApprovalRequest {
                            id,
                            expires_at: Some(killswitch_proto::timestamp(expires_at)),
                        }),
                        ..program_response(&program, &state)
                    });
                }
            };
            tracing::info!(
                program = %name, policy = %program.policy,
                resume_approvals = program.resume_approvals, actor = change.actor,
                "failure policy set"
            );
            Ok(program_response(&program, &state))
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn get_program(
        &self,
        request: Request<v1::GetProgramRequest>,
    ) -> Result<Response<v1::GetProgramResponse>, Status> {
        self.authorize(&request, Action::GetProgram, Some(&request.get_ref().name))?;
        let result: Result<_, ApiError> = async {
            let name = ProgramName::parse(&request.get_ref().name)?;
            let (program, state) = self
                .store
                .get_program(&name)
                .await?
                .ok_or(StoreError::NotFound(name))?;
            Ok(program_response(&program, &state))
        }
        .await;
        Ok(Response::new(result.map_err(ApiError::read)?))
    }

    async fn list_programs(
        &self,
        request: Request<v1::ListProgramsRequest>,
    ) -> Result<Response<v1::ListProgramsResponse>, Status> {
        self.authorize(&request, Action::ListPrograms, None)?;
        let programs = self.store.list_programs().await.map_err(ApiError::read)?;
        let programs = programs
            .iter()
            .map(|(p, s)| program_response(p, s))
            .collect();
        Ok(Response::new(v1::ListProgramsResponse { programs }))
    }

    async fn pause(
        &self,
        request: Request<v1::PauseRequest>,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        let actor = self.authorize(&request, Action::Pause, Some(&request.get_ref().program))?;
        let r = request.get_ref();
        let response = self.pause_program(actor, r).await?;
        Ok(Response::new(response))
    }

    async fn resume(
        &self,
        request: Request<v1::ResumeRequest>,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        let actor = self.authorize(&request, Action::Resume, Some(&request.get_ref().program))?;
        let response = self.resume_or_request(actor, request.get_ref()).await?;
        Ok(Response::new(response))
    }

    async fn approve(
        &self,
        request: Request<v1::ApproveRequest>,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        // The role first, so nobody below owner learns which requests exist; the scope
        // once the request says which program it is for.
        self.authorize(&request, Action::Approve, None)?;
        let r = request.get_ref();
        let result: Result<_, ApiError> = async {
            let id = model::approval_id(&r.request_id)?;
            let reason = model::reason(&r.reason)?;
            let incident_id = model::incident_id(&r.incident_id)?;
            let pending = self.store.get_approval(&id).await?;
            let actor =
                self.auth
                    .authorize(&request, Action::Approve, Some(pending.program.as_str()))?;
            if pending.request.requester == actor {
                return Err(StoreError::SelfApproval.into());
            }
            if pending.request.policy_change.is_none() {
                let resume = signing::Resume {
                    program: &pending.program,
                    replaces: pending.request.replaces_generation,
                    scope: signing::Scope {
                        selector: &pending.request.selector,
                        stages_percent: &pending.request.stages_percent,
                        stage_interval_ms: pending.request.stage_interval_ms,
                    },
                };
                signing::check_approval(
                    pending.request.authorization.as_ref(),
                    r.signature.as_ref(),
                    resume,
                    &actor,
                    self.auth.signing(&actor),
                    SystemTime::now(),
                )?;
            } else if r.signature.is_some() {
                // A policy change carries no statement: collectors check none.
                return Err(SignatureError::NothingToSign.into());
            }
            let change = Change {
                actor,
                reason,
                incident_id,
            };
            let outcome = self
                .store
                .approve(&id, &change, r.signature.as_ref())
                .await?;
            tracing::info!(
                program = %outcome.state.program, generation = outcome.state.generation,
                request = id, actor = change.actor, "request approved"
            );
            Ok(change_response(outcome))
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn get_approval(
        &self,
        request: Request<v1::GetApprovalRequest>,
    ) -> Result<Response<v1::GetApprovalResponse>, Status> {
        self.authorize(&request, Action::GetApproval, None)?;
        let result: Result<_, ApiError> = async {
            let id = model::approval_id(&request.get_ref().request_id)?;
            let pending = self.store.get_approval(&id).await?;
            self.auth.authorize(
                &request,
                Action::GetApproval,
                Some(pending.program.as_str()),
            )?;
            let stored = pending.request;
            Ok(v1::GetApprovalResponse {
                id,
                program: pending.program.to_string(),
                requester: stored.requester,
                reason: stored.reason,
                incident_id: stored.incident_id,
                replaces_generation: stored.replaces_generation,
                expires_at: stored.expires_at,
                statement: stored
                    .authorization
                    .map(|a| a.statement)
                    .unwrap_or_default(),
                policy_change: stored.policy_change,
                selector: stored.selector,
                stages_percent: stored.stages_percent,
                stage_interval_ms: stored.stage_interval_ms,
            })
        }
        .await;
        Ok(Response::new(result.map_err(ApiError::read)?))
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        self.authorize(&request, Action::Status, Some(&request.get_ref().program))?;
        let name = ProgramName::parse(&request.get_ref().program).map_err(ApiError::from)?;
        Ok(Response::new(
            self.status_of(&name).await.map_err(ApiError::read)?,
        ))
    }

    type WatchStatusStream =
        Pin<Box<dyn Stream<Item = Result<v1::StatusResponse, Status>> + Send + 'static>>;

    async fn watch_status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        self.authorize(
            &request,
            Action::WatchStatus,
            Some(&request.get_ref().program),
        )?;
        let name = ProgramName::parse(&request.get_ref().program).map_err(ApiError::from)?;
        let first = self.status_of(&name).await.map_err(ApiError::read)?;
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        // Ends when the operator goes away, the replica drains, or etcd fails.
        tokio::spawn(
            async move { this.follow_status(name, first, tx).await }
                .instrument(tracing::info_span!("watch_status")),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_collectors(
        &self,
        request: Request<v1::ListCollectorsRequest>,
    ) -> Result<Response<v1::ListCollectorsResponse>, Status> {
        self.authorize(
            &request,
            Action::ListCollectors,
            Some(&request.get_ref().program),
        )?;
        let request = request.into_inner();
        let result: Result<_, ApiError> = async {
            let name = ProgramName::parse(&request.program)?;
            let filter = match v1::CollectorFilter::try_from(request.filter) {
                Ok(v1::CollectorFilter::All) => Filter::All,
                Ok(v1::CollectorFilter::Pending) => Filter::Pending,
                Ok(v1::CollectorFilter::Errored) => Filter::Errored,
                Err(_) => {
                    return Err(model::InvalidInput::UnknownValue {
                        field: "collector filter",
                        value: request.filter,
                        hint: "use ALL, PENDING or ERRORED",
                    }
                    .into());
                }
            };
            if request.local_only {
                let collectors =
                    self.book
                        .collectors(&name, request.generation, filter, &self.replica_id);
                return Ok(v1::ListCollectorsResponse {
                    generation: request.generation,
                    collectors,
                    unreachable_replicas: Vec::new(),
                    pinned_labels: self.pinned_labels(),
                });
            }
            let state = self
                .store
                .get_state(&name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.clone()))?;
            let replicas = self.store.list_replicas().await?;
            Ok(self
                .gather_collectors(&name, state.generation, request.filter, filter, replicas)
                .await)
        }
        .await;
        Ok(Response::new(result.map_err(ApiError::read)?))
    }

    type ListReceiptsStream =
        Pin<Box<dyn Stream<Item = Result<v1::ListReceiptsResponse, Status>> + Send + 'static>>;

    async fn list_receipts(
        &self,
        request: Request<v1::ListReceiptsRequest>,
    ) -> Result<Response<Self::ListReceiptsStream>, Status> {
        let v1::ListReceiptsRequest {
            program,
            from_generation,
            to_generation,
        } = request.get_ref();
        self.authorize(&request, Action::ListReceipts, Some(program))?;
        let name = ProgramName::parse(program).map_err(ApiError::from)?;
        if *to_generation != 0 && from_generation > to_generation {
            return Err(Status::invalid_argument(format!(
                "from_generation {from_generation} is after to_generation {to_generation}"
            )));
        }
        let range = ReceiptRange {
            from: *from_generation,
            to: *to_generation,
        };
        // A mistyped name would otherwise read as "no collector ever acknowledged".
        if self
            .store
            .get_state(&name)
            .await
            .map_err(ApiError::read)?
            .is_none()
        {
            return Err(ApiError::from(StoreError::NotFound(name)).into());
        }
        let (tx, rx) = mpsc::channel(4);
        let store = self.store.clone();
        // Ends after the last page, when the operator goes away, or when etcd fails.
        tokio::spawn(
            stream_receipts(store, name, range, tx)
                .instrument(tracing::info_span!("list_receipts")),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_audit(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        // Without a program the whole log is listed, like ListPrograms lists every program.
        let program = Some(request.get_ref().program.as_str()).filter(|p| !p.is_empty());
        self.authorize(&request, Action::ListAudit, program)?;
        let result: Result<_, ApiError> = async {
            let query = audit::Query::from_wire(request.get_ref())?;
            // A mistyped name would otherwise read as "nobody ever changed it".
            if let Some(name) = &query.program {
                if self.store.get_state(name).await?.is_none() {
                    return Err(StoreError::NotFound(name.clone()).into());
                }
            }
            let list = self.store.list_audit(&query).await?;
            Ok(v1::ListAuditResponse {
                entries: list.entries.into_iter().map(audit::to_wire).collect(),
                omitted: list.omitted,
            })
        }
        .await;
        Ok(Response::new(result.map_err(ApiError::read)?))
    }

    async fn abort_rollout(
        &self,
        request: Request<v1::AbortRolloutRequest>,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        let actor = self.authorize(&request, Action::Pause, Some(&request.get_ref().program))?;
        let r = request.get_ref();
        let result = async {
            let name = ProgramName::parse(&r.program)?;
            let change = change(actor, &r.reason, &r.incident_id)?;
            let outcome = self
                .store
                .abort_rollout(&name, &change, "aborted by an operator")
                .await?;
            tracing::warn!(program = %name, actor = change.actor, "staged resume aborted");
            Ok::<_, ApiError>(change_response(outcome))
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn stop_all(
        &self,
        request: Request<v1::StopAllRequest>,
    ) -> Result<Response<v1::StopAllResponse>, Status> {
        let actor = self.authorize(&request, Action::StopAll, None)?;
        let r = request.get_ref();
        let result = async {
            let change = change(actor, &r.reason, &r.incident_id)?;
            let (stop_all, changed) = self.store.stop_all(&change).await?;
            if changed {
                tracing::warn!(actor = change.actor, reason = change.reason, "STOP-ALL set");
            }
            Ok::<_, ApiError>(v1::StopAllResponse {
                stop_all: Some(wire::stop_all(&stop_all)),
                changed,
                approval_request_id: String::new(),
            })
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn clear_stop_all(
        &self,
        request: Request<v1::ClearStopAllRequest>,
    ) -> Result<Response<v1::StopAllResponse>, Status> {
        let actor = self.authorize(&request, Action::StopAll, None)?;
        let r = request.get_ref();
        let result = async {
            let change = change(actor, &r.reason, &r.incident_id)?;
            // Clearing is a resume of every program: as many operators as the strictest
            // program's resume needs.
            let needs_two = self
                .store
                .list_programs()
                .await?
                .iter()
                .any(|(program, _)| program.resume_approvals >= 2);
            let approve = (!r.approve.is_empty()).then_some(r.approve.as_str());
            let (stop_all, changed) = self
                .store
                .clear_stop_all(&change, needs_two, approve)
                .await?;
            if changed {
                tracing::warn!(
                    actor = change.actor,
                    reason = change.reason,
                    "STOP-ALL cleared"
                );
            }
            let approval_request_id = match &stop_all.clear_request {
                Some(request) if !changed && stop_all.active() => request.id.clone(),
                _ => String::new(),
            };
            Ok::<_, ApiError>(v1::StopAllResponse {
                stop_all: Some(wire::stop_all(&stop_all)),
                changed,
                approval_request_id,
            })
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn get_stop_all(
        &self,
        request: Request<v1::GetStopAllRequest>,
    ) -> Result<Response<v1::StopAllResponse>, Status> {
        self.authorize(&request, Action::Status, None)?;
        let stop_all = self.store.get_stop_all().await.map_err(ApiError::read)?;
        Ok(Response::new(v1::StopAllResponse {
            stop_all: Some(wire::stop_all(&stop_all)),
            changed: false,
            approval_request_id: String::new(),
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        let identity = self.auth.whoami(&request).map_err(ApiError::from)?;
        tracing::Span::current().record("operator", identity.name.as_str());
        Ok(Response::new(v1::WhoAmIResponse {
            name: identity.name,
            role: identity.role.as_str().to_owned(),
            programs: identity.programs,
            signing_required: identity.signing_required,
            insecure_dev: identity.insecure_dev,
        }))
    }

    async fn start_drill(
        &self,
        request: Request<v1::DrillRequest>,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        self.drill(request, true).await
    }

    async fn end_drill(
        &self,
        request: Request<v1::DrillRequest>,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        self.drill(request, false).await
    }

    async fn verify_audit(
        &self,
        request: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        self.authorize(&request, Action::VerifyAudit, None)?;
        let verdict = self.store.verify_audit().await.map_err(ApiError::read)?;
        match &verdict.problem {
            None => tracing::info!(entries = verdict.entries_checked, "audit chain intact"),
            Some(problem) => {
                tracing::warn!(first_bad_seq = problem.seq(), %problem, "audit chain broken");
            }
        }
        Ok(Response::new(verdict.to_wire()))
    }

    async fn reload(
        &self,
        request: Request<v1::ReloadRequest>,
    ) -> Result<Response<v1::ReloadResponse>, Status> {
        let actor = self.authorize(&request, Action::Reload, None)?;
        let r = request.get_ref();
        let result = async {
            let reason = if r.reason.is_empty() {
                "credentials reloaded"
            } else {
                &r.reason
            };
            let change = change(actor, reason, &r.incident_id)?;
            let reloader = self.reloader.as_ref().ok_or(ReloadError::InsecureDev)?;
            // A few small files, read once per call by an admin: not worth a blocking task.
            let staged = reloader.stage()?;
            // Audited before it takes effect: if etcd cannot record it, nothing changes.
            let detail = format!("replica {}: {}", self.replica_id, staged.summary());
            self.store.record(&change, "reload", detail).await?;
            let reloaded = staged.apply();
            tracing::warn!(actor = change.actor, %reloaded, "credentials reloaded");
            Ok::<_, ApiError>(reloaded.to_wire(&self.replica_id))
        }
        .await;
        Ok(Response::new(result?))
    }
}

impl Admin {
    /// Starts (`start`) or ends a drill of the collectors the request's selector matches.
    async fn drill(
        &self,
        request: Request<v1::DrillRequest>,
        start: bool,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        let actor = self.authorize(&request, Action::Pause, Some(&request.get_ref().program))?;
        let r = request.get_ref();
        let result = async {
            let name = ProgramName::parse(&r.program)?;
            let selector = required_selector(&r.selector)?;
            let change = change(actor, &r.reason, &r.incident_id)?;
            let outcome = if start {
                self.store.start_drill(&name, &selector, &change).await?
            } else {
                self.store.end_drill(&name, &selector, &change).await?
            };
            let what = if start {
                "drill started"
            } else {
                "drill ended"
            };
            tracing::info!(program = %name, %selector, actor = change.actor, "{what}");
            Ok::<_, ApiError>(change_response(outcome))
        }
        .await;
        Ok(Response::new(result?))
    }

    /// Fleet-wide status of a program, from etcd.
    async fn status_of(&self, name: &ProgramName) -> Result<v1::StatusResponse, ApiError> {
        let (state, summaries, registered) = self
            .store
            .read_status(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(name.clone()))?;
        let mut status = status::aggregate(&state, &summaries, &registered);
        // This replica knows its own collectors without etcd: while its registration or
        // summary is missing there (a lost lease, a failed write), they are not counted,
        // so it holds the verdict as a replica behind. "0 of 0" then never confirms.
        let reported = summaries
            .iter()
            .any(|s| s.replica == self.replica_id && s.summary.generation >= state.generation);
        if !reported
            && self.book.connected(name) > 0
            && !status.replicas_behind.contains(&self.replica_id)
        {
            status.replicas_behind.push(self.replica_id.clone());
            status.replicas_behind.sort();
        }
        Ok(v1::StatusResponse {
            pinned_labels: self.pinned_labels(),
            ..wire::status_response(&status)
        })
    }

    /// Sends a new status whenever the program's state or a summary changes.
    async fn follow_status(&self, name: ProgramName, first: v1::StatusResponse, tx: StatusSender) {
        let mut last = first.clone();
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut state = self.cache.subscribe(&name);
        // The acknowledgement summaries' watch; `None` while etcd is away (an election, a
        // dead member), re-established on the next refresh. A brief etcd outage must not
        // end a responder's `--wait`.
        let mut summaries = self.store.watch_summaries(&name).await.ok();
        // Summaries that vanish with an expired lease are watch events too; the periodic
        // refresh is a safety net that also keeps quiet streams alive.
        let mut refresh = tokio::time::interval(STATUS_REFRESH);
        let mut last_read = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = self.drain.cancelled() => return,
                () = tx.closed() => return,
                changed = state.changed() => if changed.is_err() { return },
                message = next_summary(summaries.as_mut()) => if !matches!(message, Ok(Some(_))) {
                    tracing::debug!(program = %name, "acknowledgement watch broke; following by refresh");
                    summaries = None;
                },
                _ = refresh.tick() => {
                    if summaries.is_none() {
                        summaries = self.store.watch_summaries(&name).await.ok();
                    }
                }
            }
            tokio::select! {
                () = self.drain.cancelled() => return,
                () = tokio::time::sleep_until(last_read + STATUS_DEBOUNCE) => {}
            }
            last_read = tokio::time::Instant::now();
            match self.status_of(&name).await {
                Ok(status) if status == last => {}
                Ok(status) => {
                    last = status.clone();
                    if tx.send(Ok(status)).await.is_err() {
                        return;
                    }
                }
                Err(ApiError::Store(error)) if error.is_unavailable() => {
                    tracing::debug!(program = %name, %error, "status refresh failed; retrying");
                }
                Err(error) => {
                    let _ = tx.send(Err(ApiError::read(error))).await;
                    return;
                }
            }
        }
    }

    /// This replica's collectors plus every peer's, asked concurrently.
    async fn gather_collectors(
        &self,
        name: &ProgramName,
        generation: u64,
        wire_filter: i32,
        filter: Filter,
        replicas: Vec<(String, store::Replica)>,
    ) -> v1::ListCollectorsResponse {
        let mut collectors = self
            .book
            .collectors(name, generation, filter, &self.replica_id);
        let mut peers = JoinSet::new();
        for (id, replica) in replicas
            .into_iter()
            .filter(|(id, _)| *id != self.replica_id)
        {
            let request = v1::ListCollectorsRequest {
                program: name.to_string(),
                filter: wire_filter,
                local_only: true,
                generation,
            };
            let tls = self.auth.peer_tls();
            peers.spawn(async move {
                let answer = peers::ask_peer(&replica.address, tls, request).await;
                (id, replica.address, answer)
            });
        }
        let mut unreachable = Vec::new();
        while let Some(joined) = peers.join_next().await {
            match joined {
                Ok((_, _, Ok(mut listed))) => collectors.append(&mut listed),
                Ok((id, address, Err(error))) => {
                    tracing::warn!(replica = id, address, %error, "peer did not list its collectors");
                    unreachable.push(id);
                }
                Err(error) => tracing::error!(%error, "peer listing task failed"),
            }
        }
        collectors
            .sort_by(|a, b| (&a.collector_id, &a.replica).cmp(&(&b.collector_id, &b.replica)));
        unreachable.sort();
        v1::ListCollectorsResponse {
            generation,
            collectors,
            unreachable_replicas: unreachable,
            pinned_labels: self.pinned_labels(),
        }
    }
}
