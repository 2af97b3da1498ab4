//! Credential rotation and revocation without a restart, end to end: a real etcd, a
//! `killswitch-control` process serving TLS with the PKI `killswitch certs init` writes,
//! the real `killswitch` binary, and raw gRPC collector sessions over TLS (so a test sees
//! exactly when and how a session ends).
//!
//! The replica reloads its certificate, key, client CA and auth file on SIGHUP and on
//! `killswitch reload`. Each denial is checked with its own message, after the same
//! credential was shown to work.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DEADLINE, Pki, killswitch, parse, run, text};
use killswitch_proto::v1::collector_service_client::CollectorServiceClient;
use killswitch_proto::v1::{
    CollectorMessage, ControlMessage, Hello, RunState, collector_message, control_message,
};
use killswitch_testkit::{Etcd, Replica, free_addr, http_request, metric_value, wait_until};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};
use x509_parser::prelude::{FromDer, X509Certificate};

/// etcd, one TLS replica (with `--metrics-listen`) and its PKI, with the program `demo`.
struct Scene {
    replica: Replica,
    metrics: SocketAddr,
    pki: Pki,
    _etcd: Etcd,
}

impl Scene {
    /// `certs init` with `flags`, etcd, the replica, and `demo` created by alice.
    async fn start(flags: &[&str]) -> Self {
        let pki = Pki::init_with(flags);
        let etcd = Etcd::start().await.expect("start etcd");
        let metrics = free_addr().expect("a free port");
        let mut args = pki.server_flags();
        args.extend(["--heartbeat-interval", "1s", "--metrics-listen"].map(String::from));
        args.push(metrics.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let replica = Replica::start(etcd.endpoint(), &args).expect("start replica");
        let scene = Self {
            replica,
            metrics,
            pki,
            _etcd: etcd,
        };
        let (code, _, stderr) = scene
            .cli(
                Some("operator-alice"),
                None,
                &["program", "create", "demo", "--owner", "data-team"],
            )
            .await;
        assert_eq!(code, 0, "program create: {stderr}");
        scene
    }

    /// The CLI as `cert` (`pki/CERT.pem`) or with `token`: exit code, stdout, stderr.
    async fn cli(
        &self,
        cert: Option<&str>,
        token: Option<&str>,
        args: &[&str],
    ) -> (i32, String, String) {
        let mut command = self.pki.cli(&self.replica.endpoint(), cert);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        command.args(args);
        run(command).await
    }

    /// `killswitch reload --output json` as alice, expecting success.
    async fn reload(&self) -> Value {
        let (code, stdout, stderr) = self
            .cli(
                Some("operator-alice"),
                None,
                &["--output", "json", "reload", "--reason", "rotation test"],
            )
            .await;
        assert_eq!(code, 0, "reload failed: {stderr}");
        parse(&stdout)
    }

    /// How many collectors `status demo` counts as connected.
    async fn connected(&self) -> u64 {
        let (code, stdout, stderr) = self
            .cli(
                Some("operator-bob"),
                None,
                &["--output", "json", "status", "demo"],
            )
            .await;
        assert_eq!(code, 0, "status failed: {stderr}");
        parse(&stdout)["collectors"]["connected"]
            .as_u64()
            .expect("a count")
    }

    /// Waits until `status demo` counts `n` connected collectors.
    async fn until_connected(&self, n: u64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let connected = self.connected().await;
            if connected == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "status counts {connected} connected collectors, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A metric of the replica, 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let (_, _, body) = http_request(self.metrics, "GET", "/metrics")
            .await
            .expect("scrape metrics");
        metric_value(&body, series).unwrap_or(0.0)
    }

    /// Sends SIGHUP to the replica.
    fn hangup(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.replica.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Adds an operator with a bearer token to auth.toml (`killswitch token new`); the
    /// token.
    fn add_token(&self, name: &str, role: &str) -> String {
        let token = killswitch(&["token", "new", name, "--role", role]);
        assert!(token.status.success(), "{}", text(&token.stderr));
        let stderr = text(&token.stderr);
        let entry = &stderr[stderr.find("[[operator]]").expect("an [[operator]] entry")..];
        self.edit_auth(|toml| format!("{toml}\n{entry}"));
        text(&token.stdout).trim().to_owned()
    }

    /// Rewrites auth.toml with `change` applied to its text.
    fn edit_auth(&self, change: impl FnOnce(&str) -> String) {
        let file = self.pki.file("auth.toml");
        let toml = std::fs::read_to_string(&file).expect("read auth.toml");
        std::fs::write(&file, change(&toml)).expect("write auth.toml");
    }

    /// A channel to the replica presenting `pki/CERT.pem`.
    async fn channel(&self, cert: &str) -> tonic::transport::Channel {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.pki.read("ca.pem")))
            .identity(Identity::from_pem(
                self.pki.read(&format!("{cert}.pem")),
                self.pki.read(&format!("{cert}-key.pem")),
            ))
            .domain_name("localhost");
        Endpoint::from_shared(self.replica.endpoint())
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect")
    }

    /// A raw collector session with `pki/CERT.pem` following `demo`, as `cert` claims.
    async fn session(&self, cert: &str) -> RawSession {
        let channel = self.channel(cert).await;
        // The replica refuses sessions (UNAVAILABLE) until its etcd watch is healthy.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let session = RawSession::open(channel.clone(), cert).await;
            match &session {
                Err(status)
                    if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => return session.unwrap_or_else(|s| panic!("{cert}: session refused: {s}")),
            }
        }
    }

    /// What a session of `cert` gets when it tries to open: the refusal.
    async fn refused_session(&self, cert: &str) -> Status {
        let channel = self.channel(cert).await;
        match RawSession::open(channel, cert).await {
            Ok(_) => panic!("{cert} opened a session"),
            Err(status) => status,
        }
    }

    /// The serial of the certificate a fresh TLS client is served (lowercase hex).
    async fn served_serial(&self) -> String {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.pki.read("ca.pem")) {
            roots.add(cert.expect("CA PEM")).expect("trust the CA");
        }
        let mut config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.replica.addr())
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake with the CA's trust");
        let (_, connection) = tls.get_ref();
        assert_eq!(connection.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
        let leaf = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("a server certificate");
        serial(leaf.as_ref())
    }

    /// Writes a new server certificate and key, issued by the same CA, over the old ones
    /// (each file replaced at once, as a deployment tool would); its serial.
    fn rotate_server_certificate(&self) -> String {
        let ca_key = rcgen::KeyPair::from_pem(
            &String::from_utf8(self.pki.read("ca-key.pem")).expect("utf-8"),
        )
        .expect("CA key");
        // The issuer as `certs init` made it: its name and key are what a chain needs.
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Killswitch development");
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "Killswitch development CA (killswitch.local)",
        );
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let ca = rcgen::Issuer::new(ca_params, ca_key);
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.subject_alt_names.extend([
            rcgen::SanType::IpAddress([127, 0, 0, 1].into()),
            rcgen::SanType::URI(
                "spiffe://killswitch.local/replica/control"
                    .try_into()
                    .expect("URI"),
            ),
        ]);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "killswitch-control");
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca).expect("certificate");
        for (name, pem) in [
            ("server-key.pem", key.serialize_pem()),
            ("server.pem", cert.pem()),
        ] {
            let new = self.pki.file(&format!("{name}.new"));
            std::fs::write(&new, pem).expect("write");
            std::fs::rename(&new, self.pki.file(name)).expect("rename");
        }
        serial(cert.der())
    }
}

/// The serial of a DER certificate, lowercase hex without leading zeros (as the replica
/// reports it).
fn serial(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("a certificate");
    let hex: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex.trim_start_matches('0').to_owned()
}

/// A collector session the test drives by hand.
struct RawSession {
    inbound: Streaming<ControlMessage>,
    /// Kept: dropping it would end the collector's side of the stream.
    _tx: mpsc::Sender<CollectorMessage>,
}

impl RawSession {
    /// Sends Hello as `id` for `demo`; the session once its Snapshot came, or the status
    /// that refused it.
    async fn open(channel: tonic::transport::Channel, id: &str) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel(8);
        let hello = Hello {
            collector_id: id.into(),
            programs: vec!["demo".to_owned()],
            ..Default::default()
        };
        tx.send(CollectorMessage {
            msg: Some(collector_message::Msg::Hello(hello)),
        })
        .await
        .expect("queue hello");
        let mut inbound = CollectorServiceClient::new(channel)
            .session(ReceiverStream::new(rx))
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(ControlMessage {
                msg: Some(control_message::Msg::Snapshot(_)),
            }) => Ok(Self { inbound, _tx: tx }),
            other => Err(Status::unknown(format!(
                "expected a Snapshot, got {other:?}"
            ))),
        }
    }

    /// Reads until an Update to `state` (skipping heartbeats and other states, such as
    /// a state sent again); the status if the session ends first.
    async fn until_state(&mut self, state: RunState) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.inbound.message())
                .await
                .map_err(|_| Status::deadline_exceeded("no such Update within the deadline"))??;
            match message.and_then(|m| m.msg) {
                Some(control_message::Msg::Update(update))
                    if update
                        .state
                        .as_ref()
                        .is_some_and(|s| s.state == state as i32) =>
                {
                    return Ok(());
                }
                Some(_) => {}
                None => return Err(Status::unknown("the session ended without a status")),
            }
        }
    }

    /// Reads until the session ends; its status.
    async fn ended(&mut self) -> Status {
        match self.until_state(RunState::Unspecified).await {
            Ok(()) => panic!("an Update to UNSPECIFIED"),
            Err(status) => status,
        }
    }
}

/// (a) After SIGHUP, a fresh TLS client is served the new certificate, while 50
/// collector sessions opened before stay on their streams and still receive a pause.
#[tokio::test]
async fn a_new_certificate_is_served_after_sighup_while_50_sessions_stay_up() {
    let scene = Scene::start(&["--collectors", "50"]).await;
    let (code, _, stderr) = scene
        .cli(
            Some("operator-alice"),
            None,
            &["resume", "demo", "--reason", "collect"],
        )
        .await;
    assert_eq!(code, 0, "resume: {stderr}");
    let mut sessions = Vec::new();
    for i in 1..=50 {
        sessions.push(scene.session(&format!("collector-{i}")).await);
    }
    scene.until_connected(50).await;
    let old = scene.served_serial().await;

    let new = scene.rotate_server_certificate();
    assert_ne!(old, new, "a new serial");
    let hangup = Instant::now();
    scene.hangup();
    wait_until(
        DEADLINE,
        "a fresh client to be served the new certificate",
        || async { scene.served_serial().await == new },
    )
    .await
    .expect("new certificate");
    eprintln!(
        "SIGHUP to the new certificate served, with 50 sessions: {:?}",
        hangup.elapsed()
    );
    // The reload counts once it has read every file, just after the new certificate is
    // in place.
    wait_until(DEADLINE, "the reload to be counted", || async {
        scene
            .metric("killswitch_reloads_total{result=\"ok\"}")
            .await
            == 1.0
    })
    .await
    .expect("counted");

    // Every session opened before the reload is still there, on its own stream.
    assert_eq!(scene.connected().await, 50);
    let (code, _, stderr) = scene
        .cli(
            Some("operator-bob"),
            None,
            &["pause", "demo", "--reason", "after rotation"],
        )
        .await;
    assert_eq!(code, 0, "pause: {stderr}");
    for (i, session) in sessions.iter_mut().enumerate() {
        if let Err(status) = session.until_state(RunState::Paused).await {
            panic!("collector-{}: no pause on its session: {status:?}", i + 1);
        }
    }
    assert_eq!(scene.connected().await, 50);
}

/// A token past its `expires` time is refused (exit 4, saying so and what to do), one
/// still valid works, through TLS and the real binaries.
#[tokio::test]
async fn an_expired_token_is_refused() {
    let scene = Scene::start(&[]).await;
    let erin = scene.add_token("erin", "viewer");
    let fred = scene.add_token("fred", "viewer");
    scene.edit_auth(|toml| {
        toml.replacen(
            "name = \"erin\"",
            "name = \"erin\"\nexpires = \"2020-01-01T00:00:00Z\"",
            1,
        )
        .replacen(
            "name = \"fred\"",
            "name = \"fred\"\nexpires = \"2999-01-01T00:00:00Z\"",
            1,
        )
    });
    scene.reload().await;
    let status = ["status", "demo"];
    let (code, _, stderr) = scene.cli(None, Some(&erin), &status).await;
    assert_eq!(code, 4, "an expired token was accepted: {stderr}");
    assert!(
        stderr.contains("expired at 2020-01-01T00:00:00Z") && stderr.contains("token new erin"),
        "{stderr}"
    );
    let (code, _, stderr) = scene.cli(None, Some(&fred), &status).await;
    assert_eq!(code, 0, "a token valid until 2999 was refused: {stderr}");
}

/// (b) A token removed from auth.toml works until `killswitch reload`, and is refused
/// from then on; (c) a broken auth.toml is refused, by SIGHUP and by `killswitch reload`,
/// naming the file and line, and the one in force stays.
#[tokio::test]
async fn a_removed_token_is_refused_after_reload_and_a_broken_file_changes_nothing() {
    let scene = Scene::start(&[]).await;
    let carol = scene.add_token("carol", "viewer");
    let dave = scene.add_token("dave", "viewer");
    let reloaded = scene.reload().await;
    assert_eq!(reloaded["operators"], 4, "{reloaded}");
    let status = ["status", "demo"];
    for token in [&carol, &dave] {
        let (code, _, stderr) = scene.cli(None, Some(token), &status).await;
        assert_eq!(code, 0, "the token works before: {stderr}");
    }

    // (c) A broken file, by SIGHUP: logged, counted, and the old file stays in force.
    let good = std::fs::read_to_string(scene.pki.file("auth.toml")).expect("read");
    scene.edit_auth(|toml| toml.replacen("name = \"dave\"", "name = \"dave\"\ncolour = 1", 1));
    let line = std::fs::read_to_string(scene.pki.file("auth.toml"))
        .expect("read")
        .lines()
        .position(|l| l.starts_with("colour"))
        .expect("the broken line")
        + 1;
    scene.hangup();
    wait_until(DEADLINE, "the refused reload to be counted", || async {
        scene
            .metric("killswitch_reloads_total{result=\"error\"}")
            .await
            == 1.0
    })
    .await
    .expect("counted");
    // ... and by `killswitch reload`: FAILED_PRECONDITION (exit 1), naming file and line.
    let (code, stdout, stderr) = scene.cli(Some("operator-alice"), None, &["reload"]).await;
    assert_eq!(code, 1, "a broken file is refused: {stdout}{stderr}");
    let file = scene.pki.file("auth.toml");
    let expected = format!(
        "--auth-file: {}:{line}: unknown field `colour`",
        file.display()
    );
    assert!(stderr.contains(&expected), "{expected:?} in {stderr}");
    assert!(
        stderr.contains("the credentials in force are unchanged"),
        "{stderr}"
    );
    for token in [&carol, &dave] {
        let (code, _, stderr) = scene.cli(None, Some(token), &status).await;
        assert_eq!(code, 0, "the old file stays in force: {stderr}");
    }

    // (b) Carol's token removed: refused from the reload on; dave's still works.
    std::fs::write(&file, &good).expect("restore auth.toml");
    scene.edit_auth(|toml| {
        let start = toml.find("[[operator]]\nname = \"carol\"").expect("carol");
        let end = toml[start + 1..]
            .find("[[operator]]")
            .map_or(toml.len(), |at| start + 1 + at);
        format!("{}{}", &toml[..start], &toml[end..])
    });
    let (code, _, _) = scene.cli(None, Some(&carol), &status).await;
    assert_eq!(code, 0, "carol's token works until the reload");
    let (code, stdout, stderr) = scene
        .cli(
            Some("operator-alice"),
            None,
            &["reload", "--reason", "carol left"],
        )
        .await;
    assert_eq!(code, 0, "reload: {stderr}");
    assert!(stdout.contains("operators:            3"), "{stdout}");
    let (code, _, stderr) = scene.cli(None, Some(&carol), &status).await;
    assert_eq!(
        code, 4,
        "carol's token is refused after the reload: {stderr}"
    );
    assert!(stderr.contains("unknown bearer token"), "{stderr}");
    let (code, _, stderr) = scene.cli(None, Some(&dave), &status).await;
    assert_eq!(code, 0, "dave's token still works: {stderr}");

    // Both reloads are in the audit, by alice, with what was put in force.
    let (code, stdout, stderr) = scene
        .cli(Some("operator-bob"), None, &["--output", "json", "audit"])
        .await;
    assert_eq!(code, 0, "audit: {stderr}");
    let audit = parse(&stdout);
    let reloads: Vec<&Value> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "reload")
        .collect();
    assert_eq!(reloads.len(), 2, "{audit}");
    assert_eq!(reloads[1]["actor"], "alice");
    assert_eq!(reloads[1]["reason"], "carol left");
    assert_eq!(reloads[1]["program"], "*");
    assert!(
        reloads[1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("3 operators")),
        "{audit}"
    );
}

/// (d) Revoking a collector by id, and another by its certificate's serial: their open
/// sessions end with PERMISSION_DENIED at the reload, they cannot open a new one, and
/// status stops counting them; a third collector stays connected.
#[tokio::test]
async fn a_revoked_collector_is_disconnected_refused_and_not_counted() {
    let scene = Scene::start(&[]).await;
    let (code, _, stderr) = scene
        .cli(
            Some("operator-alice"),
            None,
            &["resume", "demo", "--reason", "collect"],
        )
        .await;
    assert_eq!(code, 0, "resume: {stderr}");
    let mut by_id = scene.session("collector-1").await;
    let mut by_serial = scene.session("collector-2").await;
    let mut kept = scene.session("collector-3").await;
    scene.until_connected(3).await;
    let refusals = "killswitch_auth_failures_total{reason=\"revoked\"}";
    assert_eq!(scene.metric(refusals).await, 0.0);

    let pem = scene.pki.read("collector-2.pem");
    let der = CertificateDer::from_pem_slice(&pem).expect("collector-2 certificate");
    // As an operator would paste it from `openssl x509 -serial`: uppercase, with colons.
    let written: Vec<String> = serial(der.as_ref())
        .to_uppercase()
        .as_bytes()
        .rchunks(2)
        .rev()
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect();
    let written = written.join(":");
    scene.edit_auth(|toml| {
        format!("{toml}\n[revoked]\ncollectors = [\"collector-1\"]\nserials = [\"{written}\"]\n")
    });
    let started = Instant::now();
    let reloaded = scene.reload().await;
    assert_eq!(reloaded["revoked_collectors"], 1, "{reloaded}");
    assert_eq!(reloaded["revoked_serials"], 1, "{reloaded}");

    for (session, expected) in [
        (&mut by_id, "collector collector-1 is revoked"),
        (&mut by_serial, "the client certificate with serial"),
    ] {
        let status = session.ended().await;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains(expected), "{status:?}");
    }
    scene.until_connected(1).await;
    eprintln!(
        "reload to revoked sessions gone from status: {:?}",
        started.elapsed()
    );

    for cert in ["collector-1", "collector-2"] {
        let status = scene.refused_session(cert).await;
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{cert}: {status:?}"
        );
        assert!(status.message().contains("revoked"), "{cert}: {status:?}");
    }
    // Two closed at the reload, two refused at connect.
    assert_eq!(scene.metric(refusals).await, 4.0);

    // collector-3 was never touched: it is counted and still gets changes.
    assert_eq!(scene.connected().await, 1);
    let (code, _, stderr) = scene
        .cli(
            Some("operator-bob"),
            None,
            &["pause", "demo", "--reason", "check"],
        )
        .await;
    assert_eq!(code, 0, "pause: {stderr}");
    kept.until_state(RunState::Paused)
        .await
        .expect("collector-3 receives the pause");
}

/// (e) Only an admin may reload: a responder is refused, and nothing is reloaded.
#[tokio::test]
async fn only_an_admin_may_reload() {
    let scene = Scene::start(&[]).await;
    let (code, stdout, stderr) = scene.cli(Some("operator-bob"), None, &["reload"]).await;
    assert_eq!(code, 4, "a responder is refused: {stdout}{stderr}");
    assert!(
        stderr.contains("Reload needs role admin or higher; operator \"bob\" has role responder"),
        "{stderr}"
    );
    assert_eq!(
        scene
            .metric("killswitch_reloads_total{result=\"ok\"}")
            .await,
        0.0
    );
    let (code, stdout, stderr) = scene.cli(Some("operator-alice"), None, &["reload"]).await;
    assert_eq!(code, 0, "an admin may: {stderr}");
    assert!(stdout.starts_with("replica "), "{stdout}");
    assert_eq!(
        scene
            .metric("killswitch_reloads_total{result=\"ok\"}")
            .await,
        1.0
    );
}
