//! The connection to the control plane's `AdminService`: one channel, the actor attached
//! to every request, and every response converted to a [`crate::view`] type or an
//! [`Error`] with its exit code. This is the only module that sees the RPC layer.

use std::time::Duration;

use killswitch_proto::v1;
use killswitch_proto::v1::admin_service_client::AdminServiceClient;
use tonic::codec::Streaming;
use tonic::codegen::InterceptedService;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::exit::{Error, Exit};
use crate::input::{Actor, CollectorFilter, EndpointUrl};
use crate::view::{ChangeView, CollectorListView, ProgramView, StatusView};

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
    ///
    /// For a stream (`WatchStatus`) it bounds only the wait for the response headers: tonic
    /// applies `Endpoint::timeout` to the response future, not to the body, so messages
    /// keep coming for as long as the caller reads them.
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

    /// `SetPolicy`: the program as it is afterwards.
    pub async fn set_policy(
        &mut self,
        request: v1::SetPolicyRequest,
    ) -> Result<ProgramView, Error> {
        let response = self.client.set_policy(request).await;
        self.check(response)?.try_into()
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

    /// `WatchStatus`: the current status, then every change, until the stream ends.
    pub async fn watch_status(&mut self, program: &str) -> Result<StatusStream, Error> {
        let request = v1::StatusRequest {
            program: program.to_owned(),
        };
        let response = self.client.watch_status(request).await;
        Ok(StatusStream {
            inner: self.check(response)?,
            endpoint: self.endpoint.clone(),
            timeout: self.timeout,
        })
    }

    /// `ListCollectors`, sorted by collector id.
    pub async fn list_collectors(
        &mut self,
        program: &str,
        filter: CollectorFilter,
    ) -> Result<CollectorListView, Error> {
        let filter = match filter {
            CollectorFilter::All => v1::CollectorFilter::All,
            CollectorFilter::Pending => v1::CollectorFilter::Pending,
            CollectorFilter::Errored => v1::CollectorFilter::Errored,
        };
        let request = v1::ListCollectorsRequest {
            program: program.to_owned(),
            filter: filter.into(),
            // Operators get every replica's collectors; these are for replicas' peers.
            local_only: false,
            generation: 0,
        };
        let response = self.client.list_collectors(request).await;
        Ok(CollectorListView::from_wire(program, self.check(response)?))
    }

    /// Unwraps a response, or maps its status to an [`Error`].
    fn check<T>(&self, response: Result<tonic::Response<T>, Status>) -> Result<T, Error> {
        response
            .map(tonic::Response::into_inner)
            .map_err(|status| Error::from_status(&status, &self.endpoint, self.timeout))
    }
}

/// The statuses of an open `WatchStatus` call.
#[derive(Debug)]
pub struct StatusStream {
    inner: Streaming<v1::StatusResponse>,
    endpoint: EndpointUrl,
    timeout: Duration,
}

impl StatusStream {
    /// The next status; `None` when the control plane ended the stream.
    ///
    /// A failure once the stream is open is exit 1 whatever its code: the request was
    /// accepted, so a code such as `INVALID_ARGUMENT` would not mean bad input.
    pub async fn next(&mut self) -> Result<Option<StatusView>, Error> {
        match self.inner.message().await {
            Ok(Some(response)) => response.try_into().map(Some),
            Ok(None) => Ok(None),
            Err(status) => {
                let cause = Error::from_status(&status, &self.endpoint, self.timeout);
                Err(Error::new(
                    Exit::Error,
                    format!("the status stream broke: {}", cause.message()),
                ))
            }
        }
    }
}
