//! Transport security and authorization, end to end: a real etcd, `killswitch-control`
//! serving TLS with the PKI and `auth.toml` that `killswitch certs init` writes, the real
//! `killswitch` binary and real SDK clients with client certificates.
//!
//! Every denial has a test that fails if the denial is removed: the call must exit 4 with
//! the denial's own message (not just any failure), must change nothing in etcd, and a
//! positive call with the same credential shows the credential itself is accepted.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{DEADLINE, ENV, Pki, killswitch, parse, path, poll_status, run, text, until};
use killswitch_sdk::Client;
use killswitch_testkit::{
    Etcd, Replica, control_binary, free_addr, http_request, metric_value, wait_until,
};
use serde_json::Value;

/// etcd key prefix the replicas use (their default).
const PREFIX: &str = "/killswitch/v1";

/// What admin calls change under [`PREFIX`]: programs, their state and the audit log.
/// (Replicas also keep their registration and acknowledgement summaries there, which
/// they rewrite on their own.)
const CHANGED_BY_ADMIN_CALLS: &[&str] = &["/programs/", "/state/", "/audit/"];

/// How a CLI call identifies itself.
#[derive(Clone, Copy)]
enum As<'a> {
    /// Only `--ca`: no credential.
    Nobody,
    /// `--cert pki/NAME.pem --key pki/NAME-key.pem`.
    Cert(&'a str),
    /// `--token TOKEN`.
    Token(&'a str),
}

/// A PKI from `killswitch certs init` (operators alice:admin and bob:responder,
/// collector-1..3), plus carol, a responder whose token covers only the program `other`:
/// the PKI and carol's token.
fn pki_with_carol() -> (Pki, String) {
    let pki = Pki::init(&[]);
    let token = killswitch(&[
        "token",
        "new",
        "carol",
        "--role",
        "responder",
        "--program",
        "other",
    ]);
    assert!(
        token.status.success(),
        "token new failed: {}",
        text(&token.stderr)
    );
    let stderr = text(&token.stderr);
    let entry = &stderr[stderr.find("[[operator]]").expect("an [[operator]] entry")..];
    let auth = pki.file("auth.toml");
    let mut toml = std::fs::read_to_string(&auth).expect("read auth.toml");
    toml.push('\n');
    toml.push_str(entry);
    std::fs::write(&auth, toml).expect("write auth.toml");
    (pki, text(&token.stdout).trim().to_owned())
}

/// etcd, replicas serving TLS, and the PKI.
struct Secure {
    replicas: Vec<Replica>,
    /// Each replica's `--metrics-listen` address.
    metrics: Vec<SocketAddr>,
    etcd: Etcd,
    pki: Pki,
    /// carol's bearer token (responder, only `other`).
    carol_token: String,
}

impl Secure {
    /// etcd, `n` TLS replicas `r1`.., and the programs `demo` and `other`, created by
    /// alice.
    async fn start(n: usize) -> Self {
        let (pki, carol_token) = pki_with_carol();
        let etcd = Etcd::start().await.expect("start etcd");
        let metrics: Vec<SocketAddr> = (0..n).map(|_| free_addr().expect("a free port")).collect();
        let replicas = metrics
            .iter()
            .enumerate()
            .map(|(i, metrics)| {
                let (id, metrics) = (format!("r{}", i + 1), metrics.to_string());
                let mut args = pki.server_flags();
                args.extend(
                    ["--heartbeat-interval", "1s", "--replica-id", &id]
                        .into_iter()
                        .chain(["--metrics-listen", &metrics])
                        .map(String::from),
                );
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Replica::start(etcd.endpoint(), &args).expect("start replica")
            })
            .collect();
        let system = Self {
            replicas,
            metrics,
            etcd,
            pki,
            carol_token,
        };
        for program in ["demo", "other"] {
            system
                .ok(
                    As::Cert("operator-alice"),
                    &["program", "create", program, "--owner", "data-team"],
                )
                .await;
        }
        system
    }

    /// Runs the CLI at replica `i` as `who`; returns the exit code, stdout and stderr.
    async fn cli_at(&self, i: usize, who: As<'_>, args: &[&str]) -> (i32, String, String) {
        let cert = match who {
            As::Cert(name) => Some(name),
            As::Nobody | As::Token(_) => None,
        };
        let mut command = self.pki.cli(&self.replicas[i].endpoint(), cert);
        // An actor claim that TLS must ignore: the audit names the authenticated operator.
        command.args(["--actor", "mallory"]);
        if let As::Token(token) = who {
            command.args(["--token", token]);
        }
        command.args(args);
        run(command).await
    }

    async fn cli(&self, who: As<'_>, args: &[&str]) -> (i32, String, String) {
        self.cli_at(0, who, args).await
    }

    /// Runs the CLI with `--output json`, expecting success.
    async fn ok(&self, who: As<'_>, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.cli(who, &all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stderr}");
        parse(&stdout)
    }

    /// Programs, states and audit entries in etcd.
    async fn admin_state(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        for part in CHANGED_BY_ADMIN_CALLS {
            let prefix = format!("{PREFIX}{part}");
            all.extend(self.etcd.dump(&prefix).await.expect("dump etcd"));
        }
        assert!(!all.is_empty(), "nothing under {PREFIX} to compare");
        all
    }

    /// Runs the CLI expecting a denial (exit 4) whose message contains `message`, and
    /// checks that programs, states and the audit log in etcd are exactly as before.
    async fn denied(&self, who: As<'_>, args: &[&str], message: &str) {
        let before = self.admin_state().await;
        let (code, stdout, stderr) = self.cli(who, args).await;
        assert_eq!(
            code, 4,
            "killswitch {args:?} was not denied: {stdout}{stderr}"
        );
        assert!(
            stderr.contains(message),
            "killswitch {args:?}: expected {message:?} in: {stderr}"
        );
        let after = self.admin_state().await;
        assert!(before == after, "denied killswitch {args:?} changed etcd");
    }

    /// An SDK client of `demo` at replica 0 that claims `collector_id` and presents the
    /// certificate `pki/CERT.pem`.
    fn collector(&self, collector_id: &str, cert: &str) -> Client {
        Client::builder()
            .endpoint(self.replicas[0].endpoint())
            .collector_id(collector_id)
            .program("demo")
            .tls(
                self.pki.read("ca.pem"),
                self.pki.read(&format!("{cert}.pem")),
                self.pki.read(&format!("{cert}-key.pem")),
            )
            .start()
            .expect("start collector")
    }

    async fn status(&self) -> Value {
        self.ok(As::Cert("operator-bob"), &["status", "demo"]).await
    }
}

#[tokio::test]
async fn operators_pause_and_resume_over_tls_and_collectors_obey() {
    let system = Secure::start(1).await;
    let collector = system.collector("collector-1", "collector-1");
    let gate = collector.gate("demo").expect("gate");
    let alice = As::Cert("operator-alice");

    let resumed = system
        .ok(
            alice,
            &["resume", "demo", "--reason", "go", "--wait", "20s"],
        )
        .await;
    assert_eq!(resumed["changed"], true, "{resumed}");
    until("the gate opens", || gate.is_active()).await;

    // bob, a responder, may pause: pausing is deliberately easy.
    let paused = system
        .ok(
            As::Cert("operator-bob"),
            &["pause", "demo", "--reason", "drill", "--wait", "20s"],
        )
        .await;
    assert_eq!(paused["changed"], true, "{paused}");
    assert!(!gate.is_active(), "the gate closed before --wait returned");
    let status = system.status().await;
    assert_eq!(status["collectors"]["connected"], 1, "{status}");
    assert_eq!(status["collectors"]["acked"], 1, "{status}");

    // The audit names the authenticated operators, not what --actor claimed.
    let (code, audit, stderr) = system
        .cli(alice, &["--output", "json", "audit", "--program", "demo"])
        .await;
    assert_eq!(code, 0, "audit failed: {stderr}");
    assert!(audit.contains("\"alice\""), "{audit}");
    assert!(audit.contains("\"bob\""), "{audit}");
    assert!(!audit.contains("mallory"), "{audit}");
}

#[tokio::test]
async fn calls_without_credentials_are_unauthenticated() {
    let system = Secure::start(1).await;
    // Reads and writes alike; the message says how to authenticate.
    for args in [
        &["program", "list"][..],
        &["status", "demo"],
        &["pause", "demo", "--reason", "no credentials"],
    ] {
        system.denied(As::Nobody, args, "no credentials").await;
        system.denied(As::Nobody, args, "--token").await;
    }
    system
        .denied(
            As::Token("not-a-known-token"),
            &["pause", "demo", "--reason", "wrong token"],
            "unknown bearer token",
        )
        .await;
}

#[tokio::test]
async fn a_responder_cannot_resume() {
    let system = Secure::start(1).await;
    let bob = As::Cert("operator-bob");
    // bob's certificate is accepted and he may pause...
    system
        .ok(bob, &["pause", "demo", "--reason", "drill"])
        .await;
    // ...but resuming needs an owner.
    system
        .denied(
            bob,
            &["resume", "demo", "--reason", "not mine to resume"],
            "Resume needs role owner",
        )
        .await;
    system
        .denied(
            bob,
            &["program", "create", "bobs", "--owner", "bob"],
            "CreateProgram needs role owner",
        )
        .await;
}

#[tokio::test]
async fn a_token_only_covers_its_programs() {
    let system = Secure::start(1).await;
    let carol = As::Token(&system.carol_token);
    // The token is accepted for the program it covers...
    system
        .ok(carol, &["pause", "other", "--reason", "drill"])
        .await;
    // ...and not for another one.
    system
        .denied(
            carol,
            &["pause", "demo", "--reason", "out of scope"],
            "\"demo\" is out of scope",
        )
        .await;
    system
        .denied(carol, &["status", "demo"], "out of scope")
        .await;
}

#[tokio::test]
async fn collector_certificates_cannot_call_the_admin_api() {
    let system = Secure::start(1).await;
    for args in [
        &["program", "list"][..],
        &["pause", "demo", "--reason", "collector"],
        &["resume", "demo", "--reason", "collector"],
    ] {
        system
            .denied(
                As::Cert("collector-1"),
                args,
                "collector credentials cannot call the admin API",
            )
            .await;
    }
}

#[tokio::test]
async fn a_collector_cannot_claim_another_id_and_operators_cannot_open_sessions() {
    let system = Secure::start(1).await;
    system
        .ok(
            As::Cert("operator-alice"),
            &["resume", "demo", "--reason", "go"],
        )
        .await;
    // collector-1's certificate, claiming to be collector-2; alice's certificate, claiming
    // to be a collector.
    let impostor = system.collector("collector-2", "collector-1");
    let operator = system.collector("alice", "operator-alice");
    // An honest collector on the same replica shows sessions work meanwhile.
    let honest = system.collector("collector-3", "collector-3");
    let honest_gate = honest.gate("demo").expect("gate");
    until("the honest collector's gate opens", || {
        honest_gate.is_active()
    })
    .await;

    // Let the refused ones try several times, as the replica counts them.
    let metrics = system.metrics[0];
    wait_until(DEADLINE, "three refusals of each", || async {
        let Ok((_, _, text)) = http_request(metrics, "GET", "/metrics").await else {
            return false;
        };
        ["hello_mismatch", "not_a_collector"].iter().all(|reason| {
            let series = format!("killswitch_auth_failures_total{{reason=\"{reason}\"}}");
            metric_value(&text, &series).is_some_and(|n| n >= 3.0)
        })
    })
    .await
    .expect("the replica refused both several times");
    for (who, client) in [("impostor", &impostor), ("operator", &operator)] {
        assert!(
            !client.gate("demo").expect("gate").is_active(),
            "the {who}'s gate opened"
        );
        assert_eq!(
            client.applied_generation("demo"),
            None,
            "the {who} was sent a state"
        );
    }
    // The honest Ack reaches status via the replica's summary in etcd, after its gate opened.
    let status = poll_status(
        "the honest collector's Ack to be counted",
        || system.status(),
        |s| s["collectors"]["acked"] == 1,
    )
    .await;
    assert_eq!(status["collectors"]["connected"], 1, "{status}");
    let listed = system
        .ok(As::Cert("operator-bob"), &["collectors", "demo"])
        .await;
    let ids: Vec<&str> = listed["collectors"]
        .as_array()
        .expect("collectors")
        .iter()
        .filter_map(|c| c["collector_id"].as_str())
        .collect();
    assert_eq!(ids, ["collector-3"], "{listed}");
}

#[tokio::test]
async fn replicas_list_each_others_collectors_over_tls() {
    let system = Secure::start(2).await;
    // Connected to r1; listed through r2, which asks r1 as a peer.
    let collector = system.collector("collector-1", "collector-1");
    let bob = As::Cert("operator-bob");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (code, stdout, stderr) = system
            .cli_at(1, bob, &["--output", "json", "collectors", "demo"])
            .await;
        if code == 0 && stdout.contains("\"collector-1\"") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "r2 did not list r1's collector: exit {code}: {stdout}{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(collector);
}

/// Startup refusals need no etcd: they happen before the replica connects to it.
#[test]
fn the_control_plane_refuses_unsafe_or_incomplete_settings() {
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(control_binary().expect("control binary"));
        for var in ENV {
            command.env_remove(var);
        }
        let output = command
            .args(["--etcd", "http://127.0.0.1:9"])
            .args(args)
            .output()
            .expect("run killswitch-control");
        assert!(!output.status.success(), "{args:?} started");
        text(&output.stderr)
    };
    let stderr = run(&["--listen", "0.0.0.0:0", "--insecure-dev"]);
    assert!(
        stderr.contains("only listens on a loopback address"),
        "{stderr}"
    );
    let stderr = run(&["--listen", "127.0.0.1:0"]);
    assert!(
        stderr.contains("missing --tls-cert, --tls-key, --client-ca, --auth-file"),
        "{stderr}"
    );

    let pki = Pki::init(&[]);
    let mut flags = pki.server_flags();
    flags.truncate(6); // without --auth-file
    flags.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let stderr = run(&flags);
    assert!(stderr.contains("missing --auth-file"), "{stderr}");

    let bad = pki.root().join("bad.toml");
    std::fs::write(&bad, "trust_domain = \"killswitch.local\"\n\n[[operator]]\nname = \"x\"\nrole = \"root\"\ncert = true\n")
        .expect("write bad.toml");
    let mut flags = pki.server_flags();
    flags.truncate(6);
    flags.extend(["--auth-file".to_owned(), path(&bad).to_owned()]);
    flags.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let stderr = run(&flags);
    assert!(
        stderr.contains("bad.toml:5: unknown variant `root`"),
        "{stderr}"
    );
}
