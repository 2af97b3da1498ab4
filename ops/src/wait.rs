//! `--wait`: after a change commits at generation G, follow `WatchStatus` until every
//! connected collector has acknowledged G, a collector's hooks failed, a newer change
//! superseded G, or the deadline passes.
//!
//! [`decide`] is the whole rule, a pure function of G and one status; [`wait`] only feeds
//! it statuses. There is no reconnecting: a broken stream ends the wait, because silently
//! resuming could hide the very window a responder needs to know about.

use std::cmp::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Session;
use crate::exit::{Error, Exit};
use crate::output::clean;
use crate::view::StatusView;

/// What one status means for a wait on generation G.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not there yet: collectors are pending, or the status predates G (the replica
    /// serving the stream has not caught up).
    Continue,
    /// Every connected collector acknowledged G without error.
    Done,
    /// Nothing is pending, but some collectors' hooks failed at G.
    Failed,
    /// The program moved past G: a newer change replaced ours.
    Superseded,
}

/// Judges `status` for a wait on `generation`.
///
/// Zero connected collectors is [`Decision::Done`]: every connected collector has
/// acknowledged. The status shows the count, so nobody mistakes it for a fleet.
#[must_use]
pub fn decide(generation: u64, status: &StatusView) -> Decision {
    let c = &status.collectors;
    match status.state.generation.cmp(&generation) {
        Ordering::Less => Decision::Continue,
        Ordering::Greater => Decision::Superseded,
        Ordering::Equal if c.pending_count > 0 => Decision::Continue,
        // A replica that has not reported on G may hold collectors not counted yet.
        Ordering::Equal if !status.replicas_behind.is_empty() => Decision::Continue,
        Ordering::Equal if c.errored_count > 0 => Decision::Failed,
        Ordering::Equal => Decision::Done,
    }
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
    generation: u64,
    limit: Duration,
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
                return Err(Error::new(Exit::AckTimeout, self.timeout_message(status)));
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
                     {generation}: {} pending, {} errored of {} connected",
                    c.pending_count, c.errored_count, c.connected
                )
            }
        }
    }
}

/// Follows `WatchStatus` for `program` until [`decide`] stops at `generation`, the stream
/// breaks, or `limit` has passed since `start`. `on_status` sees every status, e.g. to
/// show progress.
///
/// The deadline covers opening the stream too; the per-RPC timeout of `session` bounds
/// only that opening (see [`Session::connect`]).
pub async fn wait(
    session: &mut Session,
    program: &str,
    generation: u64,
    start: Instant,
    limit: Duration,
    mut on_status: impl FnMut(&StatusView),
) -> Waited {
    let mut last = None;
    let follow = async {
        let mut stream = session.watch_status(program).await?;
        while let Some(status) = stream.next().await? {
            on_status(&status);
            let decision = decide(generation, &status);
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
        generation,
        limit,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use killswitch_proto::v1;
    use killswitch_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
    use tokio::sync::{mpsc, oneshot};
    use tonic::codegen::tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::input::{Actor, EndpointUrl};

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
        }
    }

    fn view(response: v1::StatusResponse) -> StatusView {
        StatusView::try_from(response).unwrap()
    }

    #[test]
    fn decisions() {
        #[track_caller]
        fn check(generation: u64, connected: u64, pending: u64, errored: u64, expected: Decision) {
            let got = decide(G, &view(status(generation, connected, pending, errored)));
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

    #[test]
    fn a_replica_that_has_not_reported_holds_the_wait() {
        let mut behind = status(G, 0, 0, 0);
        behind.replicas_behind = vec!["r2".to_owned()];
        assert_eq!(decide(G, &view(behind.clone())), Decision::Continue);
        behind.collectors = Some(v1::CollectorCounts {
            connected: 2,
            errored_count: 2,
            ..Default::default()
        });
        assert_eq!(
            decide(G, &view(behind)),
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
        assert_eq!(decide(G, &view(response)), Decision::Continue);
    }

    #[test]
    fn results() {
        #[track_caller]
        fn check(outcome: Outcome, last: Option<v1::StatusResponse>, expected: Option<(u8, &str)>) {
            let waited = Waited {
                outcome,
                last: last.map(view),
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
                 1 pending, 1 errored of 3 connected",
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

    /// What the fake control plane's `WatchStatus` sends, in order, after each delay.
    type Script = Vec<(Duration, Result<v1::StatusResponse, Status>)>;

    /// An `AdminService` that answers `WatchStatus` from a script, then either ends the
    /// stream or keeps it open until the client goes away.
    struct Fake {
        script: Mutex<Script>,
        then_hang: bool,
    }

    #[tonic::async_trait]
    impl AdminService for Fake {
        type WatchStatusStream = ReceiverStream<Result<v1::StatusResponse, Status>>;

        async fn watch_status(
            &self,
            _: Request<v1::StatusRequest>,
        ) -> Result<Response<Self::WatchStatusStream>, Status> {
            let script = std::mem::take(&mut *self.script.lock().unwrap());
            let then_hang = self.then_hang;
            let (tx, rx) = mpsc::channel(1);
            // Ends with the script, or (hanging) when the client drops the stream.
            tokio::spawn(async move {
                for (delay, item) in script {
                    tokio::time::sleep(delay).await;
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
                if then_hang {
                    tx.closed().await;
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        }

        async fn create_program(
            &self,
            _: Request<v1::CreateProgramRequest>,
        ) -> Result<Response<v1::CreateProgramResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn get_program(
            &self,
            _: Request<v1::GetProgramRequest>,
        ) -> Result<Response<v1::GetProgramResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn list_programs(
            &self,
            _: Request<v1::ListProgramsRequest>,
        ) -> Result<Response<v1::ListProgramsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn set_policy(
            &self,
            _: Request<v1::SetPolicyRequest>,
        ) -> Result<Response<v1::GetProgramResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn pause(
            &self,
            _: Request<v1::PauseRequest>,
        ) -> Result<Response<v1::ChangeResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn resume(
            &self,
            _: Request<v1::ResumeRequest>,
        ) -> Result<Response<v1::ChangeResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn approve(
            &self,
            _: Request<v1::ApproveRequest>,
        ) -> Result<Response<v1::ChangeResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn get_approval(
            &self,
            _: Request<v1::GetApprovalRequest>,
        ) -> Result<Response<v1::GetApprovalResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn status(
            &self,
            _: Request<v1::StatusRequest>,
        ) -> Result<Response<v1::StatusResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn list_collectors(
            &self,
            _: Request<v1::ListCollectorsRequest>,
        ) -> Result<Response<v1::ListCollectorsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn list_audit(
            &self,
            _: Request<v1::ListAuditRequest>,
        ) -> Result<Response<v1::ListAuditResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }

        async fn verify_audit(
            &self,
            _: Request<v1::VerifyAuditRequest>,
        ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    /// Serves `fake` on 127.0.0.1:0 for a wait on generation [`G`] with per-RPC `timeout`;
    /// the server stops when the returned sender is dropped.
    async fn wait_against(fake: Fake, timeout: Duration, limit: Duration) -> Waited {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AdminServiceServer::new(fake))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        let endpoint = EndpointUrl::parse(&format!("http://{address}")).unwrap();
        let actor = Actor::parse("tester").unwrap();
        let credentials = crate::cli::Credentials::default();
        let mut session = Session::connect(&endpoint, timeout, &actor, &credentials)
            .await
            .unwrap();
        let waited = wait(&mut session, "demo", G, Instant::now(), limit, |_| {}).await;
        drop(session);
        drop(stop);
        server.await.unwrap().unwrap();
        waited
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[tokio::test]
    async fn the_stream_outlives_the_rpc_timeout() {
        let fake = Fake {
            script: Mutex::new(vec![
                (ms(0), Ok(status(G - 1, 3, 0, 0))),
                (ms(150), Ok(status(G, 3, 2, 0))),
                (ms(150), Ok(status(G, 3, 0, 0))),
            ]),
            then_hang: true,
        };
        let waited = wait_against(fake, ms(100), Duration::from_secs(10)).await;
        assert_eq!(waited.outcome, Outcome::Done);
        assert!(waited.complete());
        assert_eq!(waited.last, Some(view(status(G, 3, 0, 0))));
    }

    #[tokio::test]
    async fn the_deadline_ends_the_wait_with_the_last_status() {
        let fake = Fake {
            script: Mutex::new(vec![(ms(0), Ok(status(G, 3, 1, 0)))]),
            then_hang: true,
        };
        let waited = wait_against(fake, Duration::from_secs(10), ms(300)).await;
        assert_eq!(waited.outcome, Outcome::TimedOut);
        assert_eq!(waited.last, Some(view(status(G, 3, 1, 0))));
        assert_eq!(waited.result().unwrap_err().exit(), Exit::AckTimeout);
    }

    #[tokio::test]
    async fn a_stream_that_ends_or_fails_breaks_the_wait() {
        let ended = Fake {
            script: Mutex::new(vec![(ms(0), Ok(status(G, 3, 1, 0)))]),
            then_hang: false,
        };
        let waited = wait_against(ended, Duration::from_secs(10), Duration::from_secs(10)).await;
        let err = waited.result().unwrap_err();
        assert_eq!(
            (err.exit(), err.message()),
            (
                Exit::Error,
                "the control plane ended the status stream before every collector \
                 acknowledged generation 7"
            )
        );

        let failed = Fake {
            script: Mutex::new(vec![
                (ms(0), Ok(status(G, 3, 1, 0))),
                (ms(0), Err(Status::permission_denied("revoked"))),
            ]),
            then_hang: true,
        };
        let waited = wait_against(failed, Duration::from_secs(10), Duration::from_secs(10)).await;
        let err = waited.result().unwrap_err();
        assert_eq!(
            (err.exit(), err.message()),
            (Exit::Error, "the status stream broke: revoked")
        );
        assert_eq!(waited.last, Some(view(status(G, 3, 1, 0))));
    }
}
