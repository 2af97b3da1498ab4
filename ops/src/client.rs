//! The connection to the control plane's `AdminService`: one channel, the actor attached
//! to every request, and every response converted to a [`crate::view`] type or an
//! [`Error`] with its exit code. This is the only module that sees the RPC layer.

use std::time::Duration;

use killswitch_proto::v1;
use killswitch_proto::v1::admin_service_client::AdminServiceClient;
use tonic::codegen::InterceptedService;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::exit::Error;
use crate::input::{Actor, EndpointUrl};
use crate::view::{ChangeView, ProgramView, StatusView};

/// The gRPC metadata key carrying who is acting. The control plane records it in the
/// audit until authentication replaces it.
pub const ACTOR_METADATA_KEY: &str = "killswitch-actor";

/// Adds the actor to every outgoing request.
#[derive(Debug, Clone)]
struct ActorInterceptor(AsciiMetadataValue);

impl Interceptor for ActorInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(ACTOR_METADATA_KEY, self.0.clone());
        Ok(request)
    }
}

/// A connected `AdminService` client.
#[derive(Debug, Clone)]
pub struct Session {
    client: AdminServiceClient<InterceptedService<Channel, ActorInterceptor>>,
    endpoint: EndpointUrl,
    timeout: Duration,
}

impl Session {
    /// Connects to `endpoint`. `timeout` bounds the connection attempt and then each RPC.
    pub async fn connect(
        endpoint: &EndpointUrl,
        timeout: Duration,
        actor: &Actor,
    ) -> Result<Self, Error> {
        let channel = Endpoint::from(endpoint.uri().clone())
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| Error::connect(endpoint, &e))?;
        let interceptor = ActorInterceptor(actor.metadata_value().clone());
        Ok(Self {
            client: AdminServiceClient::with_interceptor(channel, interceptor),
            endpoint: endpoint.clone(),
            timeout,
        })
    }

    /// `CreateProgram`.
    pub async fn create_program(
        &mut self,
        request: v1::CreateProgramRequest,
    ) -> Result<ProgramView, Error> {
        let response = self.client.create_program(request).await;
        self.check(response)?.try_into()
    }

    /// `GetProgram`.
    pub async fn get_program(&mut self, name: &str) -> Result<ProgramView, Error> {
        let request = v1::GetProgramRequest {
            name: name.to_owned(),
        };
        let response = self.client.get_program(request).await;
        self.check(response)?.try_into()
    }

    /// `ListPrograms`, sorted by name so output is stable whatever order the server uses.
    pub async fn list_programs(&mut self) -> Result<Vec<ProgramView>, Error> {
        let response = self.client.list_programs(v1::ListProgramsRequest {}).await;
        let mut programs = self
            .check(response)?
            .programs
            .into_iter()
            .map(ProgramView::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        programs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(programs)
    }

    /// `Pause`.
    pub async fn pause(&mut self, request: v1::PauseRequest) -> Result<ChangeView, Error> {
        let response = self.client.pause(request).await;
        self.check(response)?.try_into()
    }

    /// `Resume`.
    pub async fn resume(&mut self, request: v1::ResumeRequest) -> Result<ChangeView, Error> {
        let response = self.client.resume(request).await;
        self.check(response)?.try_into()
    }

    /// `Status`.
    pub async fn status(&mut self, program: &str) -> Result<StatusView, Error> {
        let request = v1::StatusRequest {
            program: program.to_owned(),
        };
        let response = self.client.status(request).await;
        self.check(response)?.try_into()
    }

    /// Unwraps a response, or maps its status to an [`Error`].
    fn check<T>(&self, response: Result<tonic::Response<T>, Status>) -> Result<T, Error> {
        response
            .map(tonic::Response::into_inner)
            .map_err(|status| Error::from_status(&status, &self.endpoint, self.timeout))
    }
}
