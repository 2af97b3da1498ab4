//! The operator side of a run: creating the benchmark program, pausing and resuming it
//! through `AdminService` on a replica, as the `killswitch` CLI does.

use std::time::Duration;

use anyhow::Context;
use killswitch_proto::v1::admin_service_client::AdminServiceClient;
use killswitch_proto::v1::{
    CreateProgramRequest, GetProgramRequest, PauseRequest, ProgramState, ResumeRequest, RunState,
};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Pause or resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `AdminService.Pause`.
    Pause,
    /// `AdminService.Resume`.
    Resume,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
        })
    }
}

/// An `AdminService` client acting as the operator `fleet`.
#[derive(Debug, Clone)]
pub struct Admin {
    client: AdminServiceClient<Channel>,
    /// `Bearer TOKEN` under TLS; none under `--insecure-dev`, where the actor is named.
    token: Option<String>,
}

impl Admin {
    /// Connects to `endpoint`; with TLS, trusts `ca_pem` and authenticates with `token`.
    pub async fn connect(endpoint: &str, tls: Option<(Vec<u8>, String)>) -> anyhow::Result<Self> {
        let mut channel = Endpoint::from_shared(endpoint.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        let mut token = None;
        if let Some((ca_pem, bearer)) = tls {
            channel = channel.tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .domain_name("127.0.0.1"),
            )?;
            token = Some(format!("Bearer {bearer}"));
        }
        let channel = channel
            .connect()
            .await
            .with_context(|| format!("cannot connect to the replica at {endpoint}"))?;
        Ok(Self {
            client: AdminServiceClient::new(channel),
            token,
        })
    }

    fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        match &self.token {
            Some(token) => metadata.insert("authorization", token.parse()?),
            None => metadata.insert(killswitch_proto::contract::ACTOR_METADATA, "fleet".parse()?),
        };
        Ok(request)
    }

    /// Creates `program` if it does not exist and resumes it if it is paused, so that
    /// collectors connecting next open their gates.
    pub async fn ensure_running(&mut self, program: &str) -> anyhow::Result<()> {
        let get = self.request(GetProgramRequest {
            name: program.to_owned(),
        })?;
        let running = match self.client.get_program(get).await {
            Ok(response) => response
                .into_inner()
                .state
                .is_some_and(|s| s.state == RunState::Running as i32),
            Err(status) if status.code() == tonic::Code::NotFound => {
                let create = self.request(CreateProgramRequest {
                    name: program.to_owned(),
                    owner: "fleet".to_owned(),
                    description: "killswitch-fleet benchmark".to_owned(),
                    reason: "benchmark".to_owned(),
                    ..CreateProgramRequest::default()
                })?;
                self.client
                    .create_program(create)
                    .await
                    .context("cannot create the program")?;
                false
            }
            Err(status) => return Err(status).context("cannot read the program"),
        };
        if !running {
            self.change(Kind::Resume, program, "benchmark: collectors start running")
                .await?;
        }
        Ok(())
    }

    /// The current state of `program`.
    pub async fn state(&mut self, program: &str) -> anyhow::Result<ProgramState> {
        let get = self.request(GetProgramRequest {
            name: program.to_owned(),
        })?;
        self.client
            .get_program(get)
            .await
            .context("cannot read the program")?
            .into_inner()
            .state
            .context("the program has no state")
    }

    /// Pauses or resumes `program`; returns the new state (its generation and commit
    /// time).
    pub async fn change(
        &mut self,
        kind: Kind,
        program: &str,
        reason: &str,
    ) -> anyhow::Result<ProgramState> {
        let response = match kind {
            Kind::Pause => {
                let request = self.request(PauseRequest {
                    program: program.to_owned(),
                    reason: reason.to_owned(),
                    ..PauseRequest::default()
                })?;
                self.client.pause(request).await
            }
            Kind::Resume => {
                let request = self.request(ResumeRequest {
                    program: program.to_owned(),
                    reason: reason.to_owned(),
                    ..ResumeRequest::default()
                })?;
                self.client.resume(request).await
            }
        }
        .with_context(|| format!("{kind} failed"))?
        .into_inner();
        anyhow::ensure!(response.changed, "{kind} changed nothing: {response:?}");
        response
            .state
            .with_context(|| format!("{kind} returned no state"))
    }
}
