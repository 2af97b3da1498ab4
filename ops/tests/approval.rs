//! Two-person resumes, end to end over TLS: a real etcd, `killswitch-control` with the PKI
//! and `auth.toml` of `killswitch certs init --operator alice:admin --operator bob:owner
//! --operator carol:owner`, the real `killswitch` binary and a real SDK client.
//!
//! A resume of a program created with `--resume-approvals 2` only records a request;
//! another operator's `approve` resumes it. Every refusal is checked to change nothing
//! in etcd (programs, state, audit and the pending requests).

mod common;

use std::time::Duration;

use common::{DEADLINE, Pki, killswitch, parse, run, text, until};
use killswitch_proto::prost::Message;
use killswitch_proto::v1;
use killswitch_sdk::Client;
use killswitch_testkit::{Etcd, Replica};
use serde_json::Value;

/// etcd key prefix the replicas use (their default).
const PREFIX: &str = "/killswitch/v1";

/// What admin calls change under [`PREFIX`].
const CHANGED_BY_ADMIN_CALLS: &[&str] = &["/programs/", "/state/", "/audit/", "/approvals/"];

/// etcd, one TLS replica, the PKI, and the program `demo` needing two operators.
struct Secure {
    replica: Replica,
    etcd: Etcd,
    pki: Pki,
}

impl Secure {
    async fn start() -> Self {
        let pki = Pki::init(&["alice:admin", "bob:owner", "carol:owner"]);
        let etcd = Etcd::start().await.expect("start etcd");
        let mut args = pki.server_flags();
        args.extend(["--heartbeat-interval", "1s"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let replica = Replica::start(etcd.endpoint(), &args).expect("start replica");
        let system = Self { replica, etcd, pki };
        let created = system
            .ok(
                "alice",
                &[
                    "program",
                    "create",
                    "demo",
                    "--owner",
                    "data-team",
                    "--resume-approvals",
                    "2",
                ],
            )
            .await;
        assert_eq!(created["resume_approvals"], 2, "{created}");
        system
    }

    /// Runs the CLI as operator `who` (by certificate); exit code, stdout and stderr.
    async fn cli(&self, who: &str, args: &[&str]) -> (i32, String, String) {
        let cert = format!("operator-{who}");
        let mut command = self.pki.cli(&self.replica.endpoint(), Some(&cert));
        command.args(args);
        run(command).await
    }

    /// Runs the CLI with `--output json`, expecting success.
    async fn ok(&self, who: &str, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.cli(who, &all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stderr}");
        parse(&stdout)
    }

    /// Asks for a resume of `demo` as `who`; returns the request id.
    async fn request(&self, who: &str, ttl: &str) -> String {
        let requested = self
            .ok(
                who,
                &["resume", "demo", "--reason", "all clear", "--ttl", ttl],
            )
            .await;
        assert_eq!(requested["changed"], false, "{requested}");
        assert_eq!(requested["state"], "PAUSED", "{requested}");
        requested["approval"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no approval id in {requested}"))
            .to_owned()
    }

    async fn admin_state(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        for part in CHANGED_BY_ADMIN_CALLS {
            let prefix = format!("{PREFIX}{part}");
            all.extend(self.etcd.dump(&prefix).await.expect("dump etcd"));
        }
        all
    }

    /// Runs the CLI expecting exit `code` with `message` on stderr, and checks etcd is
    /// exactly as before.
    async fn refused(&self, who: &str, args: &[&str], code: i32, message: &str) {
        let before = self.admin_state().await;
        let (exit, stdout, stderr) = self.cli(who, args).await;
        assert_eq!(
            exit, code,
            "killswitch {args:?} was not refused: {stdout}{stderr}"
        );
        assert!(
            stderr.contains(message),
            "killswitch {args:?}: expected {message:?} in: {stderr}"
        );
        let after = self.admin_state().await;
        assert!(before == after, "refused killswitch {args:?} changed etcd");
    }

    /// An SDK client of `demo` with the collector-1 certificate.
    fn collector(&self) -> Client {
        let read = |name: &str| self.pki.read(name);
        Client::builder()
            .endpoint(self.replica.endpoint())
            .collector_id("collector-1")
            .program("demo")
            .tls(
                read("ca.pem"),
                read("collector-1.pem"),
                read("collector-1-key.pem"),
            )
            .start()
            .expect("start collector")
    }
}

#[tokio::test]
async fn a_second_operator_approves_and_collectors_reopen() {
    let system = Secure::start().await;
    let collector = system.collector();
    let gate = collector.gate("demo").expect("gate");
    let before = system.ok("bob", &["program", "show", "demo"]).await["state"]["generation"]
        .as_u64()
        .expect("generation");
    until("the collector to apply the paused state", || {
        collector.applied_generation("demo") == Some(before)
    })
    .await;

    let (code, stdout, stderr) = system
        .cli("bob", &["resume", "demo", "--reason", "all clear"])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let id = stdout
        .strip_prefix("demo: resume requested as ")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("unexpected output: {stdout}"))
        .to_owned();
    assert!(
        stdout.contains(&format!(
            "another operator must run: killswitch approve {id} --reason"
        )),
        "{stdout}"
    );
    // Nothing resumed yet: the state is the one the collector applied, so no newer state
    // exists that could have opened its gate.
    let shown = system.ok("bob", &["program", "show", "demo"]).await;
    assert_eq!(shown["state"]["state"], "PAUSED", "{shown}");
    assert_eq!(shown["state"]["generation"], before, "{shown}");
    assert!(!gate.is_active(), "the gate opened before approval");

    // bob cannot approve his own request; alice, an admin, cannot either once she asks.
    system
        .refused(
            "bob",
            &["approve", &id, "--reason", "me again"],
            4,
            "you filed this request; a different operator must approve it",
        )
        .await;

    let approved = system
        .ok(
            "carol",
            &[
                "approve",
                &id,
                "--reason",
                "checked the fix",
                "--wait",
                "20s",
            ],
        )
        .await;
    assert_eq!(approved["changed"], true, "{approved}");
    assert_eq!(approved["state"], "RUNNING", "{approved}");
    until("the gate opens", || gate.is_active()).await;

    // The request is gone: approving it again is NOT_FOUND.
    system
        .refused(
            "alice",
            &["approve", &id, "--reason", "twice"],
            1,
            &format!("approval request {id} does not exist or has expired"),
        )
        .await;

    let audit = system.ok("alice", &["audit", "--program", "demo"]).await;
    let entries = audit.as_array().expect("audit entries");
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["create", "resume-request", "resume"], "{audit}");
    let last = entries.last().expect("an entry");
    assert_eq!(last["actor"], "carol", "{last}");
    assert_eq!(
        last["detail"], "approved by carol, requested by bob",
        "{last}"
    );
    let verify = system.ok("alice", &["audit", "verify"]).await;
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test]
async fn a_request_made_stale_by_a_pause_cannot_be_approved() {
    let system = Secure::start().await;
    let id = system.request("bob", "15m").await;
    // Pausing never needs approval; here it changes the generation the request replaces.
    let paused = system
        .ok(
            "carol",
            &["pause", "demo", "--reason", "new leak", "--purge"],
        )
        .await;
    assert_eq!(paused["changed"], true, "{paused}");
    system
        .refused(
            "carol",
            &["approve", &id, "--reason", "too late"],
            1,
            "the program changed since the request; request the resume again",
        )
        .await;
    // Lowering the bar is itself a two-person change; then the program resumes directly.
    let requested = system
        .ok(
            "alice",
            &[
                "program",
                "set",
                "demo",
                "--resume-approvals",
                "1",
                "--reason",
                "drill over",
            ],
        )
        .await;
    assert_eq!(requested["resume_approvals"], 2, "{requested}");
    let id = requested["approval"]["id"].as_str().expect("a request id");
    let set = system
        .ok("carol", &["approve", id, "--reason", "agreed"])
        .await;
    assert_eq!(set["changed"], true, "{set}");
    let set = system.ok("alice", &["program", "show", "demo"]).await;
    assert_eq!(set["resume_approvals"], 1, "{set}");
    assert_eq!(set["policy"]["on_lost_contact"], "pause", "{set}");
    let resumed = system
        .ok("bob", &["resume", "demo", "--reason", "one operator"])
        .await;
    assert_eq!(resumed["changed"], true, "{resumed}");
    assert!(resumed.get("approval").is_none(), "{resumed}");
}

/// One owner cannot switch two-person resume off: fewer approvals, fail open or a longer
/// grace wait for another operator, the requester cannot approve it, and nothing changes
/// until someone else does.
#[tokio::test]
async fn one_owner_cannot_lower_a_two_person_program_alone() {
    let system = Secure::start().await;
    for change in [
        &["--resume-approvals", "1"][..],
        &["--on-lost-contact", "keep"],
        &["--grace", "10m"],
    ] {
        let before = system.admin_state().await;
        let mut args = vec!["program", "set", "demo", "--reason", "faster"];
        args.extend_from_slice(change);
        let (code, stdout, stderr) = system.cli("bob", &args).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains(
                "the change weakens a program that needs two operators, so nothing changed yet"
            ),
            "{stdout}"
        );
        let shown = system.ok("bob", &["program", "show", "demo"]).await;
        assert_eq!(shown["resume_approvals"], 2, "{shown}");
        assert_eq!(shown["policy"]["on_lost_contact"], "pause", "{shown}");
        assert_eq!(shown["policy"]["grace_ms"], 30_000, "{shown}");
        let programs = format!("{PREFIX}/programs/");
        let after = system.admin_state().await;
        let unchanged = |dump: &[(Vec<u8>, Vec<u8>)]| {
            dump.iter()
                .filter(|(key, _)| key.starts_with(programs.as_bytes()))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            unchanged(&before),
            unchanged(&after),
            "the program is unchanged"
        );
    }
    let requested = system
        .ok(
            "bob",
            &[
                "program",
                "set",
                "demo",
                "--on-lost-contact",
                "keep",
                "--reason",
                "offline ok",
            ],
        )
        .await;
    let id = requested["approval"]["id"].as_str().expect("a request id");
    system
        .refused(
            "bob",
            &["approve", id, "--reason", "mine"],
            4,
            "you filed this request; a different operator must approve it",
        )
        .await;
    let approved = system
        .ok("carol", &["approve", id, "--reason", "agreed"])
        .await;
    assert_eq!(approved["changed"], true, "{approved}");
    let shown = system.ok("bob", &["program", "show", "demo"]).await;
    assert_eq!(shown["policy"]["on_lost_contact"], "keep", "{shown}");
    let audit = system.ok("bob", &["audit", "--program", "demo"]).await;
    let last = audit
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["actor"], "carol", "{last}");
    assert!(
        last["detail"]
            .as_str()
            .is_some_and(|d| d.contains("requested by bob")),
        "{last}"
    );
}

/// A compromised etcd (or replica) hands an approver a statement for something else than
/// the request says: the approver's CLI reads it and refuses to sign, changing nothing.
#[tokio::test]
async fn an_approver_refuses_to_sign_a_statement_it_was_not_asked_for() {
    let system = Secure::start().await;
    let keys = tempfile::tempdir().expect("temp dir");
    let made = killswitch(&["keys", "new", "carol", "--out", common::path(keys.path())]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let key = keys.path().join("carol.ed25519");
    let generation = system.ok("bob", &["program", "show", "demo"]).await["state"]["generation"]
        .as_u64()
        .expect("generation");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let now = i64::try_from(now).expect("now");
    for (id, statement, message) in [
        (
            "0000aaaa",
            v1::ResumeStatement {
                program: "other".into(),
                replaces_generation: generation,
                expires_at_unix: now + 600,
                nonce: vec![1; 16],
                ..v1::ResumeStatement::default()
            },
            "the statement is for program \"other\", but the request is for \"demo\"",
        ),
        (
            "0000bbbb",
            v1::ResumeStatement {
                program: "demo".into(),
                replaces_generation: generation,
                expires_at_unix: now + 30 * 24 * 3600,
                nonce: vec![2; 16],
                ..v1::ResumeStatement::default()
            },
            "more than the 86460 s any resume request lives",
        ),
    ] {
        let forged = v1::store::ApprovalRequest {
            requester: "bob".into(),
            reason: "all clear".into(),
            replaces_generation: generation,
            authorization: Some(v1::ResumeAuthorization {
                statement: statement.encode_to_vec(),
                signatures: Vec::new(),
            }),
            ..Default::default()
        };
        let mut client = system.etcd.client().await.expect("etcd client");
        client
            .put(
                format!("{PREFIX}/approvals/demo/{id}"),
                forged.encode_to_vec(),
                None,
            )
            .await
            .expect("forge a request");
        system
            .refused(
                "carol",
                &[
                    "approve",
                    id,
                    "--reason",
                    "ok",
                    "--signing-key",
                    common::path(&key),
                ],
                1,
                message,
            )
            .await;
    }
}

#[tokio::test]
async fn an_expired_request_cannot_be_approved() {
    let system = Secure::start().await;
    let id = system.request("bob", "2s").await;
    // The lease expires at etcd's pace: poll for the key to vanish, with a deadline.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let pending = system
            .etcd
            .dump(&format!("{PREFIX}/approvals/"))
            .await
            .expect("dump etcd");
        if pending.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the approval request did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    system
        .refused(
            "carol",
            &["approve", &id, "--reason", "too late"],
            1,
            &format!("approval request {id} does not exist or has expired"),
        )
        .await;
    let shown = system.ok("carol", &["program", "show", "demo"]).await;
    assert_eq!(shown["state"]["state"], "PAUSED", "{shown}");
}

#[test]
fn resume_ttl_and_approval_ids_are_checked_before_connecting() {
    for (args, message) in [
        (
            &["resume", "demo", "--reason", "x", "--ttl", "1s"][..],
            "use 2s to 24h",
        ),
        (
            &["resume", "demo", "--reason", "x", "--ttl", "25h"],
            "use 2s to 24h",
        ),
        (&["approve", "XYZ", "--reason", "x"], "8 hex digits"),
        (
            &[
                "program",
                "create",
                "demo",
                "--owner",
                "t",
                "--resume-approvals",
                "3",
            ],
            "1..=2",
        ),
    ] {
        let output = killswitch(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
