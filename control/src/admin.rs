//! `AdminService`: what operators call, through the `killswitch` CLI.
//!
//! Every request is validated into domain types before anything touches etcd, so bad
//! input changes nothing. Mutations go through [`Store`] transactions with their audit
//! entry; status combines the stored state with this replica's [`AckBook`].

use std::sync::Arc;

use killswitch_proto::v1::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use crate::acks::AckBook;
use crate::domain::{self, Program, ProgramName, ProgramState, RunState};
use crate::error::ApiError;
use crate::store::{Change, Store};

/// Metadata key carrying the operator's name until authentication identifies them.
pub const ACTOR_METADATA: &str = "killswitch-actor";

/// The operator-facing gRPC service.
#[derive(Debug, Clone)]
pub struct Admin {
    store: Store,
    book: Arc<AckBook>,
    replica_id: String,
}

impl Admin {
    /// Admin calls served from `store`, with acknowledgement counts from `book`.
    #[must_use]
    pub fn new(store: Store, book: Arc<AckBook>, replica_id: String) -> Self {
        Self {
            store,
            book,
            replica_id,
        }
    }

    async fn set_state(
        &self,
        actor: Result<String, ApiError>,
        program: &str,
        reason: &str,
        incident_id: &str,
        target: RunState,
        purge: bool,
    ) -> Result<v1::ChangeResponse, ApiError> {
        let name = ProgramName::parse(program)?;
        let change = Change {
            actor: actor?,
            reason: domain::reason(reason)?,
            incident_id: domain::incident_id(incident_id)?,
        };
        let outcome = self.store.set_state(&name, target, purge, &change).await?;
        if outcome.changed {
            tracing::info!(
                program = %name, state = %target, generation = outcome.state.generation,
                actor = change.actor, reason = change.reason, "state changed"
            );
        }
        Ok(v1::ChangeResponse {
            state: Some(outcome.state.to_wire()),
            changed: outcome.changed,
        })
    }
}

/// The operator's name from request metadata, `anonymous` when absent.
fn actor<T>(request: &Request<T>) -> Result<String, ApiError> {
    match request.metadata().get(ACTOR_METADATA) {
        None => Ok("anonymous".to_owned()),
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| domain::InvalidInput::ControlCharacters { field: "actor" })?;
            Ok(domain::actor(value)?)
        }
    }
}

fn program_response(program: &Program, state: &ProgramState) -> v1::GetProgramResponse {
    v1::GetProgramResponse {
        program: Some(program.to_wire()),
        state: Some(state.to_wire()),
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn create_program(
        &self,
        request: Request<v1::CreateProgramRequest>,
    ) -> Result<Response<v1::CreateProgramResponse>, Status> {
        let actor = actor(&request);
        let request = request.into_inner();
        let result: Result<_, ApiError> = async {
            let program = Program {
                name: ProgramName::parse(&request.name)?,
                owner: domain::owner(&request.owner)?,
                description: domain::description(&request.description)?,
                created_at: None,
                created_by: String::new(),
            };
            let reason = if request.reason.is_empty() { "program created" } else { &request.reason };
            let change = Change { actor: actor?, reason: domain::reason(reason)?, incident_id: String::new() };
            let (program, state) = self.store.create_program(&program, &change).await?;
            tracing::info!(program = %program.name, owner = program.owner, actor = change.actor, "program created");
            Ok(v1::CreateProgramResponse { program: Some(program.to_wire()), state: Some(state.to_wire()) })
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn get_program(
        &self,
        request: Request<v1::GetProgramRequest>,
    ) -> Result<Response<v1::GetProgramResponse>, Status> {
        let result: Result<_, ApiError> = async {
            let name = ProgramName::parse(&request.get_ref().name)?;
            let (program, state) = self
                .store
                .get_program(&name)
                .await?
                .ok_or(crate::store::StoreError::NotFound(name))?;
            Ok(program_response(&program, &state))
        }
        .await;
        Ok(Response::new(result?))
    }

    async fn list_programs(
        &self,
        _request: Request<v1::ListProgramsRequest>,
    ) -> Result<Response<v1::ListProgramsResponse>, Status> {
        let programs = self.store.list_programs().await.map_err(ApiError::from)?;
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
        let actor = actor(&request);
        let r = request.get_ref();
        let response = self
            .set_state(
                actor,
                &r.program,
                &r.reason,
                &r.incident_id,
                RunState::Paused,
                r.purge,
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn resume(
        &self,
        request: Request<v1::ResumeRequest>,
    ) -> Result<Response<v1::ChangeResponse>, Status> {
        let actor = actor(&request);
        let r = request.get_ref();
        let response = self
            .set_state(
                actor,
                &r.program,
                &r.reason,
                &r.incident_id,
                RunState::Running,
                false,
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let result: Result<_, ApiError> = async {
            let name = ProgramName::parse(&request.get_ref().program)?;
            let state = self
                .store
                .get_state(&name)
                .await?
                .ok_or_else(|| crate::store::StoreError::NotFound(name.clone()))?;
            let counts = self.book.counts(&name, state.generation);
            Ok(v1::StatusResponse {
                state: Some(state.to_wire()),
                collectors: Some(v1::CollectorCounts {
                    connected: counts.connected,
                    acked: counts.acked,
                    pending: counts.pending.iter().map(ToString::to_string).collect(),
                    errored: counts
                        .errored
                        .into_iter()
                        .map(|(id, error)| v1::CollectorError {
                            collector_id: id.to_string(),
                            error,
                        })
                        .collect(),
                }),
                replicas: vec![self.replica_id.clone()],
            })
        }
        .await;
        Ok(Response::new(result?))
    }
}
