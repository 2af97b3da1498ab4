//! The promise under compromise, end to end with hostile peers: a replica impostor that
//! serves the collector protocol over TLS with a valid server certificate, raw gRPC
//! collectors presenting a stolen certificate, and a control plane whose etcd hands an
//! approver a statement for something else. Each attack must fail; each test fails when
//! the defence it covers is removed.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DEADLINE, Pki, System, run, until};
use killswitch_proto::v1::collector_service_client::CollectorServiceClient;
use killswitch_proto::v1::collector_service_server::{CollectorService, CollectorServiceServer};
use killswitch_proto::v1::{
    self, CollectorMessage, ControlMessage, Hello, collector_message, control_message,
};
use killswitch_sdk::{Backoff, Client};
use killswitch_testkit::{Etcd, Replica};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// A replica impostor: it holds the real server certificate (a compromised replica has
/// it) and serves one session: the states it was given, then it records the collector's
/// Acks until it has `acks_wanted` of them, and ends the session.
#[derive(Clone)]
struct Impostor {
    states: Vec<v1::ProgramState>,
    acks_wanted: usize,
    acks: Arc<Mutex<Vec<v1::Ack>>>,
    done: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl CollectorService for Impostor {
    type SessionStream = ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<CollectorMessage>>,
    ) -> Result<Response<ControlStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            // Hello first, then every state at once, each as its own message.
            let Ok(Some(_hello)) = inbound.message().await else {
                return;
            };
            let mut states = this.states.clone().into_iter();
            if let Some(first) = states.next() {
                let snapshot = v1::Snapshot {
                    states: vec![first],
                    unknown_programs: Vec::new(),
                };
                let _ = tx
                    .send(Ok(message(control_message::Msg::Snapshot(snapshot))))
                    .await;
            }
            for state in states {
                let update = v1::Update { state: Some(state) };
                let _ = tx
                    .send(Ok(message(control_message::Msg::Update(update))))
                    .await;
            }
            while let Ok(Some(message)) = inbound.message().await {
                if let Some(collector_message::Msg::Ack(ack)) = message.msg {
                    let mut acks = this.acks.lock().expect("acks");
                    acks.push(ack);
                    if acks.len() >= this.acks_wanted {
                        break;
                    }
                }
            }
            let _ = tx.send(Err(Status::unavailable("impostor leaves"))).await;
            if let Some(done) = this.done.lock().expect("done").take() {
                let _ = done.send(());
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn message(msg: control_message::Msg) -> ControlMessage {
    ControlMessage { msg: Some(msg) }
}

/// What an impostor claims: `demo` RUNNING at `generation`.
fn running(generation: u64) -> v1::ProgramState {
    v1::ProgramState {
        program: "demo".into(),
        state: v1::RunState::Running as i32,
        generation,
        reason: "trust me".into(),
        actor: "mallory".into(),
        policy: Some(v1::FailurePolicy {
            on_lost_contact: v1::LostContact::Pause as i32,
            grace_ms: 30_000,
        }),
        ..Default::default()
    }
}

/// A real TLS replica on a known address, after an impostor had it.
struct Scene {
    pki: Pki,
    etcd: Etcd,
}

impl Scene {
    async fn new() -> Self {
        let pki = Pki::init(&[]);
        let etcd = Etcd::start().await.expect("etcd");
        Self { pki, etcd }
    }

    fn server_flags(&self) -> Vec<String> {
        self.pki.server_flags()
    }

    fn replica_on(&self, addr: SocketAddr) -> Replica {
        let flags = self.server_flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Replica::start_on(addr, self.etcd.endpoint(), &flags).expect("replica")
    }

    /// The CLI as alice (admin) against `endpoint`.
    async fn alice(&self, endpoint: &str, args: &[&str]) -> (i32, String, String) {
        let mut command = self.pki.cli(endpoint, Some("operator-alice"));
        command.args(args);
        run(command).await
    }

    /// Serves `impostor` over TLS with the real server certificate on a free port until
    /// it has seen its Acks; returns the address, free again.
    async fn impostor(&self, impostor: Impostor) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                self.pki.read("server.pem"),
                self.pki.read("server-key.pem"),
            ))
            .client_ca_root(Certificate::from_pem(self.pki.read("ca.pem")));
        let (done_tx, done_rx) = oneshot::channel();
        *impostor.done.lock().expect("done") = Some(done_tx);
        let server = tonic::transport::Server::builder()
            .tls_config(tls)
            .expect("tls")
            .add_service(CollectorServiceServer::new(impostor))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = done_rx.await;
            });
        let task = tokio::spawn(async move {
            server.await.expect("impostor served");
        });
        (addr, task)
    }

    /// An SDK collector `collector-1` of `demo` at `addr`, reconnecting quickly.
    fn collector(&self, addr: SocketAddr) -> Client {
        Client::builder()
            .endpoint(format!("https://localhost:{}", addr.port()))
            .collector_id("collector-1")
            .program("demo")
            .backoff(
                Backoff::default()
                    .initial(Duration::from_millis(50))
                    .max(Duration::from_millis(200)),
            )
            .tls(
                self.pki.read("ca.pem"),
                self.pki.read("collector-1.pem"),
                self.pki.read("collector-1-key.pem"),
            )
            .start()
            .expect("start collector")
    }
}

/// Finding 1: an impostor sends RUNNING at u64::MAX (no real etcd revision can be that
/// large: ignored, never acknowledged) and then at the largest real revision (applied:
/// the gate opens). The collector then reaches the real replica, where the program is
/// PAUSED at a far lower generation: the pause still wins, is acknowledged, and the next
/// real `pause --wait` is confirmed by it.
#[tokio::test]
async fn an_impostor_running_at_an_absurd_generation_cannot_pin_a_collector() {
    let scene = Scene::new().await;
    // The program exists, PAUSED, before the collector meets anyone.
    {
        let flags = scene.server_flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let first = Replica::start(scene.etcd.endpoint(), &flags).expect("replica");
        let (code, _, stderr) = scene
            .alice(
                &first.endpoint(),
                &["program", "create", "demo", "--owner", "team"],
            )
            .await;
        assert_eq!(code, 0, "{stderr}");
        // Gracefully: its registration goes with it.
        assert!(first.stop().expect("stop"), "clean exit");
    }
    let acks = Arc::new(Mutex::new(Vec::new()));
    let impostor = Impostor {
        states: vec![running(u64::MAX), running(killswitch_proto::MAX_GENERATION)],
        acks_wanted: 1,
        acks: acks.clone(),
        done: Arc::default(),
    };
    let (addr, served) = scene.impostor(impostor).await;
    let collector = scene.collector(addr);
    let gate = collector.gate("demo").expect("gate");
    served.await.expect("impostor done");
    let acked: Vec<(u64, i32)> = acks
        .lock()
        .expect("acks")
        .iter()
        .map(|a| (a.generation, a.effective))
        .collect();
    assert_eq!(
        acked,
        [(
            killswitch_proto::MAX_GENERATION,
            v1::RunState::Running as i32
        )],
        "u64::MAX ignored; the largest real revision applied"
    );
    assert!(gate.is_active(), "the impostor opened the gate");

    // The real control plane, at the address the impostor had.
    let replica = scene.replica_on(addr);
    let endpoint = replica.endpoint();
    until("the real PAUSED closes the gate", || !gate.is_active()).await;

    // Real changes, both ways: the collector follows and confirms each.
    let (code, stdout, stderr) = scene
        .alice(
            &endpoint,
            &["resume", "demo", "--reason", "ok", "--wait", "10s"],
        )
        .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(gate.is_active(), "a real resume opens the gate");
    let (code, stdout, stderr) = scene
        .alice(
            &endpoint,
            &[
                "pause", "demo", "--reason", "leak", "--wait", "10s", "--output", "json",
            ],
        )
        .await;
    assert_eq!(
        code, 0,
        "the collector confirms real pauses: {stdout}{stderr}"
    );
    let status = common::parse(&stdout);
    assert_eq!(status["changed"], true, "{status}");
    assert_eq!(status["status"]["collectors"]["acked"], 1, "{status}");
    assert!(!gate.is_active());
    collector.shutdown().await;
}

/// A hand-written collector's session: the replica's first message or its refusal, the
/// sender of the collector's messages, and the rest of the replica's.
struct RawSession {
    first: Result<ControlMessage, Status>,
    tx: mpsc::Sender<CollectorMessage>,
    inbound: Option<Streaming<ControlMessage>>,
}

/// A session with `cert` (`pki/CERT.pem`) over TLS, claiming `id`, following `programs`.
async fn raw_session(
    pki: &Pki,
    endpoint: &str,
    cert: &str,
    id: &str,
    programs: &[&str],
) -> RawSession {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.read("ca.pem")))
        .identity(Identity::from_pem(
            pki.read(&format!("{cert}.pem")),
            pki.read(&format!("{cert}-key.pem")),
        ))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    open_when_ready(channel, id, programs).await
}

/// A session over plain text (a replica under `--insecure-dev`).
async fn plain_session(endpoint: &str, id: &str, programs: &[&str]) -> RawSession {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    open_when_ready(channel, id, programs).await
}

/// [`open`], again while the replica refuses sessions with UNAVAILABLE (until its etcd
/// watch is healthy).
async fn open_when_ready(
    channel: tonic::transport::Channel,
    id: &str,
    programs: &[&str],
) -> RawSession {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let session = open(channel.clone(), id, programs).await;
        match &session.first {
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => return session,
        }
    }
}

/// Sends Hello and reads the replica's first message.
async fn open(channel: tonic::transport::Channel, id: &str, programs: &[&str]) -> RawSession {
    let (tx, rx) = mpsc::channel(8);
    let hello = Hello {
        collector_id: id.into(),
        programs: programs.iter().map(|p| (*p).to_owned()).collect(),
        ..Default::default()
    };
    tx.send(CollectorMessage {
        msg: Some(collector_message::Msg::Hello(hello)),
    })
    .await
    .expect("queue hello");
    match CollectorServiceClient::new(channel)
        .session(ReceiverStream::new(rx))
        .await
    {
        Ok(response) => {
            let mut inbound = response.into_inner();
            let first = match inbound.message().await {
                Ok(Some(message)) => Ok(message),
                Ok(None) => Err(Status::unknown("ended without a message")),
                Err(status) => Err(status),
            };
            RawSession {
                first,
                tx,
                inbound: Some(inbound),
            }
        }
        Err(status) => RawSession {
            first: Err(status),
            tx,
            inbound: None,
        },
    }
}

/// Finding 4: 500 session attempts with one stolen collector certificate, on a replica
/// that serves at most 50 sessions, hold only a few; another collector still gets in.
#[tokio::test]
async fn one_certificate_cannot_take_every_session_slot() {
    let scene = Scene::new().await;
    let mut flags = scene.server_flags();
    flags.extend(["--max-sessions".to_owned(), "50".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let replica = Replica::start(scene.etcd.endpoint(), &flags).expect("replica");
    let endpoint = replica.endpoint();
    let (code, _, stderr) = scene
        .alice(&endpoint, &["program", "create", "demo", "--owner", "team"])
        .await;
    assert_eq!(code, 0, "{stderr}");

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(scene.pki.read("ca.pem")))
        .identity(Identity::from_pem(
            scene.pki.read("collector-1.pem"),
            scene.pki.read("collector-1-key.pem"),
        ))
        .domain_name("localhost");
    let channels: Vec<tonic::transport::Channel> = {
        let mut channels = Vec::new();
        for _ in 0..20 {
            channels.push(
                tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .expect("endpoint")
                    .tls_config(tls.clone())
                    .expect("tls")
                    .connect()
                    .await
                    .expect("connect"),
            );
        }
        channels
    };
    let mut held = Vec::new();
    let mut refused = 0;
    for attempt in 0..500 {
        let channel = channels[attempt % channels.len()].clone();
        // Each its own program set, so that none replaces another.
        let program = format!("p{attempt}");
        // The replica refuses sessions (UNAVAILABLE) until its etcd watch is healthy.
        let session = open_when_ready(channel, "collector-1", &["demo", &program]).await;
        match session.first {
            Ok(_) => held.push(session.tx),
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    status
                        .message()
                        .contains("collector collector-1 already holds"),
                    "{status}"
                );
                refused += 1;
            }
            Err(status) => panic!("unexpected refusal: {status}"),
        }
    }
    assert_eq!(
        (held.len(), refused),
        (
            killswitch_control::api::session::DEFAULT_MAX_SESSIONS_PER_COLLECTOR,
            500 - 4
        ),
        "one identity holds its few sessions"
    );

    let other = raw_session(
        &scene.pki,
        &endpoint,
        "collector-2",
        "collector-2",
        &["demo"],
    )
    .await;
    let first = other.first.expect("another collector still gets a session");
    assert!(matches!(first.msg, Some(control_message::Msg::Snapshot(_))));
}

/// Finding 5: with `[[collector]]` entries in auth.toml, a collector may follow only the
/// programs listed for it; anything else is refused at Hello, saying why.
#[tokio::test]
async fn a_collector_follows_only_the_programs_auth_toml_allows() {
    let scene = Scene::new().await;
    let auth = scene.pki.file("auth.toml");
    let mut text = std::fs::read_to_string(&auth).expect("read auth.toml");
    text.push_str("\n[[collector]]\nid = \"collector-*\"\nprograms = [\"demo\"]\n");
    std::fs::write(&auth, text).expect("write auth.toml");
    let flags = scene.server_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let replica = Replica::start(scene.etcd.endpoint(), &flags).expect("replica");
    let endpoint = replica.endpoint();
    for program in ["demo", "secret"] {
        let (code, _, stderr) = scene
            .alice(
                &endpoint,
                &["program", "create", program, "--owner", "team"],
            )
            .await;
        assert_eq!(code, 0, "{stderr}");
    }

    let refused = raw_session(
        &scene.pki,
        &endpoint,
        "collector-1",
        "collector-1",
        &["demo", "secret"],
    )
    .await
    .first
    .expect_err("secret is not for collectors");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(
        refused
            .message()
            .contains("collector collector-1 may not follow program \"secret\""),
        "{}",
        refused.message()
    );
    let allowed = raw_session(
        &scene.pki,
        &endpoint,
        "collector-1",
        "collector-1",
        &["demo"],
    )
    .await;
    assert!(matches!(
        allowed.first.expect("demo is allowed").msg,
        Some(control_message::Msg::Snapshot(_))
    ));
}

/// The next state the replica sends (heartbeats skipped).
async fn next_state(inbound: &mut Streaming<ControlMessage>) -> v1::ProgramState {
    loop {
        let message = tokio::time::timeout(DEADLINE, inbound.message())
            .await
            .expect("a state in time")
            .expect("session open")
            .expect("not ended");
        match message.msg {
            Some(control_message::Msg::Update(update)) => return update.state.expect("state"),
            Some(control_message::Msg::Heartbeat(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn send_ack(tx: &mpsc::Sender<CollectorMessage>, generation: u64, effective: v1::RunState) {
    let ack = v1::Ack {
        program: "demo".into(),
        generation,
        effective: effective as i32,
        ..Default::default()
    };
    tx.send(CollectorMessage {
        msg: Some(collector_message::Msg::Ack(ack)),
    })
    .await
    .expect("queue ack");
}

/// Through the CLI: an Ack for a generation far ahead confirms nothing later, a collector
/// that says it is PAUSED while RUNNING is intended shows as diverged in `status` (text and
/// JSON), and a pause it does not acknowledge times out naming it.
#[tokio::test]
async fn a_forged_acknowledgement_confirms_nothing_and_the_wait_names_the_forger() {
    let system = System::start().await;
    system.create("demo").await;
    let RawSession { first, tx, inbound } =
        plain_session(&system.endpoint(0), "forger", &["demo"]).await;
    let (first, mut inbound) = (first.expect("a session"), inbound.expect("open"));
    let Some(control_message::Msg::Snapshot(snapshot)) = first.msg else {
        panic!("no snapshot: {first:?}");
    };
    // The replica's cache may learn of the new program just after the Snapshot: then its
    // state comes as the first update.
    let created = match snapshot.states.first() {
        Some(state) => state.generation,
        None => next_state(&mut inbound).await.generation,
    };
    send_ack(&tx, created + 1000, v1::RunState::Paused).await;

    let resumed = system.change("resume", "demo").await;
    assert_eq!(next_state(&mut inbound).await.generation, resumed);
    send_ack(&tx, resumed, v1::RunState::Paused).await;
    let again = next_state(&mut inbound).await;
    assert_eq!(
        (again.generation, again.state),
        (resumed, v1::RunState::Running as i32)
    );
    let status = system
        .status_until(0, "demo", "the forger to show as diverged", |s| {
            s["collectors"]["diverged_count"] == 1
        })
        .await;
    let diverged = &status["collectors"]["diverged"][0];
    assert_eq!(diverged["collector_id"], "forger", "{status}");
    assert_eq!(
        (
            diverged["effective"].as_str(),
            diverged["intended"].as_str()
        ),
        (Some("PAUSED"), Some("RUNNING")),
        "{status}"
    );
    assert_eq!(status["collectors"]["acked"], 0, "{status}");
    let (code, stdout, _) = system.cli(&["status", "demo"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("forger"), "{stdout}");

    let (code, stdout, stderr) = system
        .cli(&["pause", "demo", "--reason", "leak", "--wait", "3s"])
        .await;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(
        stderr.contains("1 pending") && stderr.contains("forger"),
        "{stderr}"
    );
}
