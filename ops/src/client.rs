//! The connection to the control plane's `AdminService`: one channel (TLS for `https://`
//! endpoints, with the client certificate if given), the actor and bearer token attached
//! to every request, and every response converted to a [`crate::view`] type or an
//! [`Error`] with its exit code. This is the only module that sees the RPC layer.

use std::path::Path;
use std::time::Duration;

use killswitch_proto::v1;
use killswitch_proto::v1::admin_service_client::AdminServiceClient;
use tonic::codec::Streaming;
use tonic::codegen::InterceptedService;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::cli::Credentials;
use crate::exit::{Error, Exit};
use crate::input::{Actor, CollectorFilter, EndpointUrl};
use crate::view::{
    AuditListView, AuditVerdictView, ChangeView, CollectorListView, IdentityView, ProgramView,
    ReloadView, StatusView, StopAllResultView,
};

/// Adds the actor, and the bearer token if any, to every outgoing request.
#[derive(Debug, Clone)]
struct ActorInterceptor {
    actor: AsciiMetadataValue,
    authorization: Option<AsciiMetadataValue>,
}

impl Interceptor for ActorInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        // A control plane run with `--insecure-dev` records the actor in the audit;
        // over TLS it records the authenticated operator instead.
        metadata.insert(
            killswitch_proto::contract::ACTOR_METADATA,
            self.actor.clone(),
        );
        if let Some(authorization) = &self.authorization {
            metadata.insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

/// The TLS settings for an `https://` endpoint: the CA (required) and the client
/// certificate (optional, with its key).
fn client_tls(credentials: &Credentials) -> Result<ClientTlsConfig, Error> {
    let ca = credentials.ca.as_deref().ok_or_else(|| {
        Error::usage(
            "an https:// endpoint needs --ca (or KILLSWITCH_CA): the CA certificate that signed \
             the control plane's certificate",
        )
    })?;
    let ca_pem = read("--ca", ca)?;
    if !contains_pem(&ca_pem, "CERTIFICATE") {
        return Err(Error::usage(format!(
            "--ca {} holds no PEM certificate",
            ca.display()
        )));
    }
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    match (&credentials.cert, &credentials.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("--cert", cert)?,
                read("--key", key)?,
            ));
        }
        (None, None) => {}
        (Some(_), None) => return Err(Error::usage("--cert needs --key (or KILLSWITCH_KEY)")),
        (None, Some(_)) => return Err(Error::usage("--key needs --cert (or KILLSWITCH_CERT)")),
    }
    Ok(tls)
}

/// Whether `pem` has a `-----BEGIN LABEL-----` line.
fn contains_pem(pem: &[u8], label: &str) -> bool {
    let begin = format!("-----BEGIN {label}-----");
    pem.windows(begin.len()).any(|w| w == begin.as_bytes())
}

/// A file named by `flag`; unreadable is a usage error.
fn read(flag: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::usage(format!("cannot read {flag} {}: {e}", path.display())))
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
    ///
    /// An `https://` endpoint needs `credentials.ca`; the client certificate and the
    /// token are optional. A token is refused for an `http://` endpoint, where it would
    /// travel in clear text; the TLS files are not used there.
    pub async fn connect(
        endpoint: &EndpointUrl,
        timeout: Duration,
        actor: &Actor,
        credentials: &Credentials,
    ) -> Result<Self, Error> {
        let mut builder = Endpoint::from(endpoint.uri().clone())
            .connect_timeout(timeout)
            .timeout(timeout);
        if endpoint.is_https() {
            builder = builder
                .tls_config(client_tls(credentials)?)
                .map_err(|e| Error::usage(format!("cannot use --ca, --cert and --key: {e}")))?;
        } else if credentials.token.is_some() {
            return Err(Error::usage(
                "--token (or KILLSWITCH_TOKEN) is only sent to an https:// endpoint",
            ));
        }
        let channel = builder
            .connect()
            .await
            .map_err(|e| Error::connect(endpoint, &e))?;
        let interceptor = ActorInterceptor {
            actor: actor.metadata_value().clone(),
            authorization: credentials
                .token
                .as_ref()
                .map(|token| token.authorization().clone()),
        };
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

    /// `Approve`.
    pub async fn approve(&mut self, request: v1::ApproveRequest) -> Result<ChangeView, Error> {
        let response = self.client.approve(request).await;
        self.check(response)?.try_into()
    }

    /// `GetApproval`: a resume request waiting for approval.
    pub async fn get_approval(&mut self, id: &str) -> Result<v1::GetApprovalResponse, Error> {
        let request = v1::GetApprovalRequest {
            request_id: id.to_owned(),
        };
        let response = self.client.get_approval(request).await;
        self.check(response)
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
    ///
    /// The call runs on a clone of this session (they share the connection), so the
    /// future borrows nothing and a wait can open the stream again ([`crate::wait`]).
    pub fn watch_status(
        &self,
        program: &str,
    ) -> impl Future<Output = Result<StatusStream, Error>> + Send + 'static {
        let mut session = self.clone();
        let request = v1::StatusRequest {
            program: program.to_owned(),
        };
        async move {
            let response = session.client.watch_status(request).await;
            Ok(StatusStream {
                inner: session.check(response)?,
                endpoint: session.endpoint.clone(),
                timeout: session.timeout,
            })
        }
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

    /// `WhoAmI`: the name and role the control plane authenticated this client as.
    pub async fn who_am_i(&mut self) -> Result<IdentityView, Error> {
        let response = self.client.who_am_i(v1::WhoAmIRequest {}).await;
        if let Err(status) = &response {
            if status.code() == tonic::Code::Unimplemented {
                return Err(Error::new(
                    Exit::Error,
                    format!(
                        "the control plane at {} does not answer WhoAmI ({}): the console \
                         needs replicas of the same version as this CLI",
                        self.endpoint,
                        status.message()
                    ),
                ));
            }
        }
        Ok(self.check(response)?.into())
    }

    /// `ListAudit`, sorted by seq (oldest first).
    pub async fn list_audit(
        &mut self,
        request: v1::ListAuditRequest,
    ) -> Result<AuditListView, Error> {
        let response = self.client.list_audit(request).await;
        Ok(self.check(response)?.into())
    }

    /// `ListAudit` as the control plane sent it, each entry with its stored bytes: a
    /// report's evidence.
    pub async fn audit_entries(
        &mut self,
        request: v1::ListAuditRequest,
    ) -> Result<v1::ListAuditResponse, Error> {
        let response = self.client.list_audit(request).await;
        let mut list = self.check(response)?;
        list.entries.sort_by_key(|e| e.seq);
        Ok(list)
    }

    /// `ListReceipts`: every receipt of `program` for the generations `from..=to` (0: no
    /// bound). A control plane that does not keep receipts (`UNIMPLEMENTED`) is an error
    /// that says so.
    pub async fn list_receipts(
        &mut self,
        program: &str,
        from_generation: u64,
        to_generation: u64,
    ) -> Result<Vec<v1::SignedReceipt>, Error> {
        let request = v1::ListReceiptsRequest {
            program: program.to_owned(),
            from_generation,
            to_generation,
        };
        let response = self.client.list_receipts(request).await;
        if let Err(status) = &response {
            if status.code() == tonic::Code::Unimplemented {
                return Err(Error::new(
                    Exit::Error,
                    format!(
                        "the control plane at {} does not keep receipts (ListReceipts is \
                         UNIMPLEMENTED: {}): a report needs the receipts collectors sign; \
                         upgrade the replicas to a version that keeps them",
                        self.endpoint,
                        status.message()
                    ),
                ));
            }
        }
        let mut stream = self.check(response)?;
        let mut receipts = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(batch)) => receipts.extend(batch.receipts),
                Ok(None) => return Ok(receipts),
                Err(status) => {
                    let cause = Error::from_status(&status, &self.endpoint, self.timeout);
                    return Err(Error::new(
                        Exit::Error,
                        format!(
                            "the receipts of {program} stopped coming: {}",
                            cause.message()
                        ),
                    ));
                }
            }
        }
    }

    /// `VerifyAudit`.
    pub async fn verify_audit(&mut self) -> Result<AuditVerdictView, Error> {
        let response = self.client.verify_audit(v1::VerifyAuditRequest {}).await;
        Ok(self.check(response)?.into())
    }

    /// `AbortRollout`: a staged resume back to PAUSED for every collector.
    pub async fn abort_rollout(
        &mut self,
        request: v1::AbortRolloutRequest,
    ) -> Result<ChangeView, Error> {
        let response = self.client.abort_rollout(request).await;
        self.check(response)?.try_into()
    }

    /// `StopAll`.
    pub async fn stop_all(
        &mut self,
        request: v1::StopAllRequest,
    ) -> Result<StopAllResultView, Error> {
        let response = self.client.stop_all(request).await;
        self.check(response)?.try_into()
    }

    /// `ClearStopAll`.
    pub async fn clear_stop_all(
        &mut self,
        request: v1::ClearStopAllRequest,
    ) -> Result<StopAllResultView, Error> {
        let response = self.client.clear_stop_all(request).await;
        self.check(response)?.try_into()
    }

    /// `GetStopAll`.
    pub async fn get_stop_all(&mut self) -> Result<StopAllResultView, Error> {
        let response = self.client.get_stop_all(v1::GetStopAllRequest {}).await;
        self.check(response)?.try_into()
    }

    /// `Reload`: the replica's credentials.
    pub async fn reload(&mut self, request: v1::ReloadRequest) -> Result<ReloadView, Error> {
        let response = self.client.reload(request).await;
        Ok(self.check(response)?.into())
    }

    /// `StartDrill`.
    pub async fn start_drill(&mut self, request: v1::DrillRequest) -> Result<ChangeView, Error> {
        let response = self.client.start_drill(request).await;
        self.check(response)?.try_into()
    }

    /// `EndDrill`.
    pub async fn end_drill(&mut self, request: v1::DrillRequest) -> Result<ChangeView, Error> {
        let response = self.client.end_drill(request).await;
        self.check(response)?.try_into()
    }

    /// Unwraps a response, or maps its status to an [`Error`].
    fn check<T>(&self, response: Result<tonic::Response<T>, Status>) -> Result<T, Error> {
        response.map(tonic::Response::into_inner).map_err(|status| {
            let error = Error::from_status(&status, &self.endpoint, self.timeout);
            // Plain text to a TLS listener fails as a bare "transport error" from our own
            // HTTP/2 layer (a status with a source and no code the server would send).
            let local_protocol_error = std::error::Error::source(&status).is_some()
                && matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal);
            if local_protocol_error && !self.endpoint.is_https() {
                Error::new(
                    error.exit(),
                    format!(
                        "{}: if the control plane serves TLS, use an https:// endpoint with --ca",
                        error.message()
                    ),
                )
            } else {
                error
            }
        })
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
    /// A failure once the stream is open is exit 1 whatever its code (see [`broken`]).
    pub async fn next(&mut self) -> Result<Option<StatusView>, Error> {
        match self.inner.message().await {
            Ok(Some(response)) => response.try_into().map(Some),
            Ok(None) => Ok(None),
            Err(status) => Err(broken(&status, &self.endpoint, self.timeout)),
        }
    }
}

/// The error for a status stream that failed once open ([`Error::into_broken_stream`]).
fn broken(status: &Status, endpoint: &EndpointUrl, timeout: Duration) -> Error {
    Error::from_status(status, endpoint, timeout).into_broken_stream()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_status_stream_is_exit_1_whatever_its_code() {
        let endpoint = EndpointUrl::parse("http://127.0.0.1:1").unwrap();
        for status in [
            Status::permission_denied("revoked"),
            Status::invalid_argument("revoked"),
        ] {
            let err = broken(&status, &endpoint, Duration::from_secs(5));
            assert_eq!(
                (err.exit(), err.message()),
                (Exit::Error, "the status stream broke: revoked"),
                "{status:?}"
            );
            assert!(!err.is_transient());
        }
        // A replica that answers UNAVAILABLE (its etcd too slow) may serve a new stream.
        let err = broken(
            &Status::unavailable("etcd is slow"),
            &endpoint,
            Duration::from_secs(5),
        );
        assert_eq!(
            (err.exit(), err.message()),
            (
                Exit::Error,
                "the status stream broke: the control plane at http://127.0.0.1:1 is \
                 unavailable: etcd is slow"
            )
        );
        assert!(err.is_transient());
    }
}
