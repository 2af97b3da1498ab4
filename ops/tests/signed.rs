//! Signed resumes, end to end over TLS: operators sign resumes with keys from
//! `killswitch keys new`, the control plane binds each key to its operator, and SDK
//! clients that trust the keys open their gates only for properly signed RUNNING states.
//!
//! States that whoever takes over etcd could write (a forged signature, a resume signed
//! for another program, one replayed from before a newer pause) are written straight
//! into etcd with the store's protobuf types: collectors must stay paused and say why in
//! their Ack.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{DEADLINE, Pki, killswitch, parse, path, run, text, until};
use killswitch_proto::prost::Message;
use killswitch_proto::v1::{self, store};
use killswitch_sdk::Client;
use killswitch_testkit::{Etcd, Replica};
use ring::signature::Ed25519KeyPair;
use serde_json::Value;

/// etcd key prefix the replicas use (their default).
const PREFIX: &str = "/killswitch/v1";

/// etcd, one TLS replica whose auth.toml gives alice (admin) and bob (owner) signing
/// keys, carol (owner) none, and the program `demo`.
struct Signed {
    replica: Replica,
    etcd: Etcd,
    pki: Pki,
    /// alice's public key, hex.
    alice: String,
}

impl Signed {
    async fn start() -> Self {
        let pki = Pki::init(&["alice:admin", "bob:owner", "carol:owner"]);
        let keys = pki.root().join("keys");
        std::fs::create_dir(&keys).expect("keys dir");
        let mut public = Vec::new();
        for name in ["alice", "bob"] {
            let made = killswitch(&["keys", "new", name, "--out", path(&keys)]);
            assert!(made.status.success(), "{}", text(&made.stderr));
            let hex = text(&made.stdout).trim().to_owned();
            assert_eq!(hex.len(), 64, "{hex}");
            assert!(
                text(&made.stderr).contains(&format!("signing_key = \"{hex}\"")),
                "{}",
                text(&made.stderr)
            );
            public.push((name, hex));
        }
        // Register the keys in alice's and bob's entries.
        let auth = pki.file("auth.toml");
        let mut toml = std::fs::read_to_string(&auth).expect("read auth.toml");
        for (name, hex) in &public {
            let line = format!("name = \"{name}\"\n");
            let at = toml.find(&line).expect("the operator's entry") + line.len();
            toml.insert_str(at, &format!("signing_key = \"{hex}\"\n"));
        }
        std::fs::write(&auth, toml).expect("write auth.toml");

        let etcd = Etcd::start().await.expect("start etcd");
        let mut args = pki.server_flags();
        args.extend(["--heartbeat-interval", "1s"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let replica = Replica::start(etcd.endpoint(), &args).expect("start replica");
        let system = Self {
            replica,
            etcd,
            pki,
            alice: public[0].1.clone(),
        };
        for program in ["demo", "other"] {
            system
                .ok(
                    "alice",
                    &["program", "create", program, "--owner", "data-team"],
                )
                .await;
        }
        system
    }

    fn key(&self, name: &str) -> PathBuf {
        self.pki.root().join("keys").join(format!("{name}.ed25519"))
    }

    async fn cli(&self, who: &str, args: &[&str]) -> (i32, String, String) {
        let cert = format!("operator-{who}");
        let mut command = self.pki.cli(&self.replica.endpoint(), Some(&cert));
        command.args(args);
        run(command).await
    }

    async fn ok(&self, who: &str, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.cli(who, &all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stdout} {stderr}");
        parse(&stdout)
    }

    /// A collector of `demo` trusting alice's key and requiring one signature.
    fn collector(&self) -> Client {
        self.labelled("collector-1", &[])
    }

    /// Collector `id` of `demo` with `labels`, trusting alice's key and requiring one
    /// signature; its resume hook notes its id in `opened`, when given.
    fn labelled(&self, id: &str, labels: &[(&str, &str)]) -> Client {
        self.noting(id, labels, None)
    }

    /// [`labelled`](Self::labelled), noting its id in `opened` each time it resumes.
    fn noting(
        &self,
        id: &str,
        labels: &[(&str, &str)],
        opened: Option<Arc<Mutex<Vec<String>>>>,
    ) -> Client {
        let read = |name: &str| self.pki.read(name);
        let mut builder = Client::builder()
            .endpoint(self.replica.endpoint())
            .collector_id(id)
            .program("demo")
            .tls(
                read("ca.pem"),
                read(&format!("{id}.pem")),
                read(&format!("{id}-key.pem")),
            )
            .trusted_keys([self.alice.as_str()])
            .required_signatures(1);
        for (key, value) in labels {
            builder = builder.label(*key, *value);
        }
        if let Some(opened) = opened {
            let id = id.to_owned();
            builder = builder.on_resume(move |_| {
                opened.lock().expect("not poisoned").push(id.clone());
                Ok(())
            });
        }
        builder.start().expect("start collector")
    }

    /// `demo`'s stored state and its generation.
    async fn stored_state(&self) -> (store::ProgramState, u64) {
        let key = format!("{PREFIX}/state/demo");
        let response = self
            .etcd
            .client()
            .await
            .expect("etcd client")
            .get(key.as_str(), None)
            .await
            .expect("get state");
        let kv = response.kvs().first().expect("demo's state");
        let state = store::ProgramState::decode(kv.value()).expect("decode state");
        (state, u64::try_from(kv.mod_revision()).expect("positive"))
    }

    /// Writes `state` as `demo`'s state, as whoever took over etcd would; returns its
    /// generation.
    async fn inject(&self, state: &store::ProgramState) -> u64 {
        let key = format!("{PREFIX}/state/demo");
        let response = self
            .etcd
            .client()
            .await
            .expect("etcd client")
            .put(key.as_str(), state.encode_to_vec(), None)
            .await
            .expect("put state");
        u64::try_from(response.header().expect("header").revision()).expect("positive")
    }

    /// alice approves request `id`, signing it, and waits for the change.
    async fn approve_signed(&self, id: &str) {
        let key = self.key("alice");
        let args = [
            "approve",
            id,
            "--reason",
            "checked",
            "--signing-key",
            path(&key),
            "--wait",
            "20s",
        ];
        self.ok("alice", &args).await;
    }

    /// Waits until collector-1 acknowledged `generation` with an error containing
    /// `fragment`.
    async fn errored(&self, generation: u64, fragment: &str) {
        self.errored_by("collector-1", generation, fragment).await;
    }

    /// Waits until `collector` acknowledged `generation` with an error containing
    /// `fragment`.
    async fn errored_by(&self, collector: &str, generation: u64, fragment: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let status = self.ok("carol", &["status", "demo"]).await;
            let found = status["generation"] == generation
                && status["errors"].as_array().is_some_and(|errors| {
                    errors.iter().any(|e| {
                        e["collector_id"] == collector
                            && e["error"].as_str().is_some_and(|m| m.contains(fragment))
                    })
                });
            if found {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no error {fragment:?} at generation {generation}; last status: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A RUNNING state for `demo` carrying `authorization`.
fn running(authorization: Option<v1::ResumeAuthorization>) -> store::ProgramState {
    store::ProgramState {
        state: v1::RunState::Running as i32,
        reason: "not a real resume".into(),
        actor: "mallory".into(),
        authorization,
        ..Default::default()
    }
}

/// `statement` for `program` replacing `replaces`, signed with the key at `key`.
fn sign(key: &Path, program: &str, replaces: u64) -> v1::ResumeAuthorization {
    let pkcs8 = std::fs::read(key).expect("read key");
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("pkcs8");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    let statement = v1::ResumeStatement {
        program: program.to_owned(),
        replaces_generation: replaces,
        expires_at_unix: i64::try_from(expires).expect("fits"),
        nonce: vec![9; 16],
        ..v1::ResumeStatement::default()
    }
    .encode_to_vec();
    let signature = pair.sign(&killswitch_proto::resume_signed_bytes(&statement));
    v1::ResumeAuthorization {
        signatures: vec![v1::Signature {
            public_key: ring::signature::KeyPair::public_key(&pair)
                .as_ref()
                .to_vec(),
            signature: signature.as_ref().to_vec(),
        }],
        statement,
    }
}

#[tokio::test]
async fn a_resume_signed_by_a_trusted_operator_opens_gates() {
    let system = Signed::start().await;
    let collector = system.collector();
    let gate = collector.gate("demo").expect("gate");
    let alice_key = system.key("alice");

    // alice has a signing key: her resume must be signed.
    let (code, _, stderr) = system
        .cli("alice", &["resume", "demo", "--reason", "unsigned"])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--signing-key"), "{stderr}");
    // Signed with bob's key, it is not hers.
    let (code, _, stderr) = system
        .cli(
            "alice",
            &[
                "resume",
                "demo",
                "--reason",
                "x",
                "--signing-key",
                path(&system.key("bob")),
            ],
        )
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not the signing_key registered for alice"),
        "{stderr}"
    );
    // carol has none: she cannot sign.
    let (code, _, stderr) = system
        .cli(
            "carol",
            &[
                "resume",
                "demo",
                "--reason",
                "x",
                "--signing-key",
                path(&alice_key),
            ],
        )
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("carol has no signing_key"), "{stderr}");
    assert!(!gate.is_active());

    let resumed = system
        .ok(
            "alice",
            &[
                "resume",
                "demo",
                "--reason",
                "signed",
                "--signing-key",
                path(&alice_key),
                "--wait",
                "20s",
            ],
        )
        .await;
    assert_eq!(resumed["changed"], true, "{resumed}");
    until("the gate opens", || gate.is_active()).await;

    // A policy change while RUNNING carries the signed resume along.
    system
        .ok(
            "alice",
            &[
                "program", "set", "demo", "--grace", "10s", "--reason", "tune",
            ],
        )
        .await;
    let (state, generation) = system.stored_state().await;
    assert!(
        state.authorization.is_some(),
        "the authorization was dropped"
    );
    until("the policy change is applied", || {
        collector.applied_generation("demo") == Some(generation)
    })
    .await;
    assert!(gate.is_active(), "a policy change closed the gate");
}

#[tokio::test]
async fn forged_foreign_and_replayed_resumes_leave_collectors_paused() {
    let system = Signed::start().await;
    let collector = system.collector();
    let gate = collector.gate("demo").expect("gate");
    let alice_key = system.key("alice");

    // A genuine signed resume, then a pause: the resume's statement is now old.
    system
        .ok(
            "alice",
            &[
                "resume",
                "demo",
                "--reason",
                "go",
                "--signing-key",
                path(&alice_key),
                "--wait",
                "20s",
            ],
        )
        .await;
    until("the gate opens", || gate.is_active()).await;
    let (genuine, _) = system.stored_state().await;
    system
        .ok(
            "carol",
            &["pause", "demo", "--reason", "leak", "--wait", "20s"],
        )
        .await;
    assert!(!gate.is_active());
    let (_, paused) = system.stored_state().await;

    // Unsigned.
    let generation = system.inject(&running(None)).await;
    system.errored(generation, "(0 of 1)").await;
    assert!(!gate.is_active(), "an unsigned RUNNING opened the gate");

    // Replayed: alice's genuine resume, from before the pause.
    let generation = system.inject(&running(genuine.authorization.clone())).await;
    system.errored(generation, "a replayed resume").await;
    assert!(!gate.is_active(), "a replayed resume opened the gate");

    // Signed by alice, for another program.
    let generation = system
        .inject(&running(Some(sign(&alice_key, "other", generation))))
        .await;
    system.errored(generation, "is for program \"other\"").await;
    assert!(
        !gate.is_active(),
        "a resume for another program opened the gate"
    );

    // Forged: a fresh statement with a signature that does not verify.
    let mut forged = sign(&alice_key, "demo", generation);
    forged.signatures[0].signature[0] ^= 1;
    let generation = system.inject(&running(Some(forged))).await;
    system.errored(generation, "(0 of 1)").await;
    assert!(!gate.is_active(), "a forged resume opened the gate");

    // Signed by a key the collector does not trust (bob's).
    let generation = system
        .inject(&running(Some(sign(&system.key("bob"), "demo", generation))))
        .await;
    system.errored(generation, "(0 of 1)").await;
    assert!(!gate.is_active(), "an untrusted key opened the gate");
    assert!(paused < generation);
}

#[tokio::test]
async fn two_signers_approve_a_signed_resume() {
    let system = Signed::start().await;
    system
        .ok(
            "alice",
            &[
                "program",
                "set",
                "demo",
                "--resume-approvals",
                "2",
                "--reason",
                "two people",
            ],
        )
        .await;
    let collector = system.collector();
    let gate = collector.gate("demo").expect("gate");
    let requested = system
        .ok(
            "bob",
            &[
                "resume",
                "demo",
                "--reason",
                "go",
                "--signing-key",
                path(&system.key("bob")),
            ],
        )
        .await;
    let id = requested["approval"]["id"].as_str().expect("id").to_owned();
    // alice must sign her approval too.
    let (code, _, stderr) = system
        .cli("alice", &["approve", &id, "--reason", "unsigned"])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--signing-key"), "{stderr}");
    system.approve_signed(&id).await;
    until("the gate opens", || gate.is_active()).await;
    let (state, _) = system.stored_state().await;
    let authorization = state.authorization.expect("authorization");
    assert_eq!(
        authorization.signatures.len(),
        2,
        "requester's and approver's"
    );
}

/// alice's signed `resume` of demo with `extra` arguments, waiting for it.
async fn signed_resume(system: &Signed, extra: &[&str]) -> Value {
    let key = system.key("alice");
    let mut args = vec![
        "resume",
        "demo",
        "--reason",
        "go",
        "--signing-key",
        path(&key),
        "--wait",
        "20s",
    ];
    args.extend_from_slice(extra);
    system.ok("alice", &args).await
}

#[tokio::test]
async fn a_signed_scoped_resume_opens_exactly_its_scope() {
    let system = Signed::start().await;
    let emea = system.labelled("collector-1", &[("region", "emea")]);
    let us = system.labelled("collector-2", &[("region", "us")]);
    let (emea_gate, us_gate) = (
        emea.gate("demo").expect("gate"),
        us.gate("demo").expect("gate"),
    );

    signed_resume(&system, &["--selector", "region = emea"]).await;
    until("the emea gate opens", || emea_gate.is_active()).await;
    let (state, generation) = system.stored_state().await;
    until("the us collector applies the scoped resume", || {
        us.applied_generation("demo") == Some(generation)
    })
    .await;
    assert!(!us_gate.is_active(), "a resume for emea opened a us gate");
    // The statement names the canonical selector, and travels with its rule.
    let rule = state.rules.last().expect("the scoped rule");
    let statement = v1::ResumeStatement::decode(
        rule.authorization
            .as_ref()
            .expect("the rule's statement")
            .statement
            .as_slice(),
    )
    .expect("decode");
    assert_eq!(statement.selector, "region=emea");

    // Whoever holds etcd widens the rule to every region: the us collector refuses.
    let mut widened = state.clone();
    if let Some(rule) = widened.rules.last_mut() {
        rule.selector = "region in (emea,us)".to_owned();
    }
    "region in (emea,us)".clone_into(&mut widened.scope);
    let generation = system.inject(&widened).await;
    until("the us collector applies the widened rule", || {
        us.applied_generation("demo") == Some(generation)
    })
    .await;
    assert!(!us_gate.is_active(), "a widened scope opened a us gate");
    assert!(emea_gate.is_active(), "the emea gate closed");
    // A us collector that never saw a pause since the statement was signed (it connects
    // now) refuses it for its scope alone.
    let late = system.labelled("collector-3", &[("region", "us")]);
    system
        .errored_by("collector-3", generation, "matching \"region=emea\"")
        .await;
    assert!(
        !late.gate("demo").is_some_and(|g| g.is_active()),
        "a widened scope opened a late us gate"
    );
}

#[tokio::test]
async fn a_signed_staged_resume_opens_every_stage_in_order() {
    let system = Signed::start().await;
    // Buckets: collector-1 3506, collector-2 5334: stages 40%,100% put them in the first
    // and the second stage.
    assert_eq!(
        (
            killswitch_proto::contract::stage_of("collector-1", &[40, 100]),
            killswitch_proto::contract::stage_of("collector-2", &[40, 100])
        ),
        (Some(0), Some(1))
    );
    let opened = Arc::new(Mutex::new(Vec::new()));
    let first = system.noting("collector-1", &[], Some(Arc::clone(&opened)));
    let second = system.noting("collector-2", &[], Some(Arc::clone(&opened)));
    let done = signed_resume(&system, &["--stages", "40%,100%", "--interval", "1s"]).await;
    assert_eq!(done["changed"], true, "{done}");
    until("both gates open", || {
        first.gate("demo").is_some_and(|g| g.is_active())
            && second.gate("demo").is_some_and(|g| g.is_active())
    })
    .await;
    // Each later generation runs the resume hook again; the first of each is the stage.
    let opened = opened.lock().expect("not poisoned").clone();
    let first_of = |id: &str| opened.iter().position(|o| o == id);
    assert!(
        first_of("collector-1") < first_of("collector-2"),
        "stages opened out of order: {opened:?}"
    );
}

#[tokio::test]
async fn a_staged_statement_replayed_to_a_later_stage_keeps_it_paused() {
    let system = Signed::start().await;
    let first = system.labelled("collector-1", &[]);
    let second = system.labelled("collector-2", &[]);
    let (first_gate, second_gate) = (
        first.gate("demo").expect("gate"),
        second.gate("demo").expect("gate"),
    );
    // The second stage may open 10 minutes after signing; the first opens now.
    let key = system.key("alice");
    let args = [
        "resume",
        "demo",
        "--reason",
        "slow",
        "--signing-key",
        path(&key),
        "--stages",
        "40%,100%",
        "--interval",
        "10m",
    ];
    system.ok("alice", &args).await;
    until("the first stage opens", || first_gate.is_active()).await;
    let (state, generation) = system.stored_state().await;
    until("the second stage's collector waits", || {
        second.applied_generation("demo") == Some(generation)
    })
    .await;
    assert!(!second_gate.is_active());

    // Whoever holds etcd makes the state RUNNING for everyone with the staged statement.
    let everyone = store::ProgramState {
        state: v1::RunState::Running as i32,
        rollout: None,
        ..state
    };
    let generation = system.inject(&everyone).await;
    system
        .errored_by("collector-2", generation, "stage (2 of 2) in ")
        .await;
    assert!(!second_gate.is_active(), "a later stage opened early");
    assert!(first_gate.is_active(), "the first stage closed");
}

#[tokio::test]
async fn a_signed_scoped_resume_of_a_two_person_program_is_approved() {
    let system = Signed::start().await;
    system
        .ok(
            "alice",
            &[
                "program",
                "set",
                "demo",
                "--resume-approvals",
                "2",
                "--reason",
                "two people",
            ],
        )
        .await;
    let emea = system.labelled("collector-1", &[("region", "emea")]);
    let us = system.labelled("collector-2", &[("region", "us")]);
    let (emea_gate, us_gate) = (
        emea.gate("demo").expect("gate"),
        us.gate("demo").expect("gate"),
    );
    let requested = system
        .ok(
            "bob",
            &[
                "resume",
                "demo",
                "--selector",
                "region=emea",
                "--reason",
                "emea is clean",
                "--signing-key",
                path(&system.key("bob")),
            ],
        )
        .await;
    let id = requested["approval"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a request, not a refusal: {requested}"))
        .to_owned();
    assert!(!emea_gate.is_active(), "a request resumed");
    system.approve_signed(&id).await;
    until("the emea gate opens", || emea_gate.is_active()).await;
    let (state, generation) = system.stored_state().await;
    until("the us collector applies it", || {
        us.applied_generation("demo") == Some(generation)
    })
    .await;
    assert!(
        !us_gate.is_active(),
        "an approved emea resume opened a us gate"
    );
    let rule = state.rules.last().expect("the scoped rule");
    assert_eq!(rule.selector, "region=emea");
    assert_eq!(
        rule.authorization.as_ref().map(|a| a.signatures.len()),
        Some(2),
        "requester's and approver's signatures"
    );
}
