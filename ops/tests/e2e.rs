//! End to end through the real binaries: a real etcd, `killswitch-control`, SDK collectors
//! and the `killswitch` CLI, asserting on what the collectors did.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use killswitch_control::testing::{Etcd, Replica, wait_until};
use killswitch_sdk::{Client, Gate};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(10);

/// A running system: etcd and one control replica (dropped first, so it never sees etcd
/// vanish).
struct System {
    replica: Replica,
    etcd: Etcd,
}

impl System {
    async fn start() -> Self {
        let etcd = Etcd::start().await.expect("start etcd");
        let replica = Replica::start(etcd.endpoint(), &["--heartbeat-interval", "1s"])
            .expect("start replica");
        Self { replica, etcd }
    }

    /// Runs the CLI; returns its exit code and stdout, with stderr for messages.
    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_killswitch"))
            .args([
                "--endpoint",
                &self.replica.endpoint(),
                "--actor",
                "responder",
            ])
            .args(args)
            .output()
            .await
            .expect("run killswitch");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8 output");
        (
            output.status.code().unwrap_or(-1),
            text(output.stdout),
            text(output.stderr),
        )
    }

    /// Runs the CLI with `--output json`, expecting success.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.cli(&all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stderr}");
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("killswitch {args:?} printed bad JSON ({e}): {stdout}"))
    }

    async fn create(&self, program: &str) {
        self.json(&["program", "create", program, "--owner", "data-team"])
            .await;
    }

    /// Pauses or resumes and returns the new generation.
    async fn change(&self, verb: &str, program: &str) -> u64 {
        let change = self
            .json(&[verb, program, "--reason", "end-to-end test"])
            .await;
        assert_eq!(
            change["changed"], true,
            "{verb} changed the state: {change}"
        );
        change["generation"].as_u64().expect("generation")
    }

    /// Polls `status --output json` until `done` holds for it; returns that status.
    async fn status_until(
        &self,
        program: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let status = self.json(&["status", program]).await;
            if done(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last status: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn collector(&self, id: &str, programs: &[&str]) -> Collector {
        Collector::start(&self.replica.endpoint(), id, programs)
    }
}

/// A real SDK client that counts its hook calls.
struct Collector {
    client: Client,
    pauses: Arc<AtomicUsize>,
    resumes: Arc<AtomicUsize>,
}

impl Collector {
    fn start(endpoint: &str, id: &str, programs: &[&str]) -> Self {
        let (pauses, resumes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (p, r) = (pauses.clone(), resumes.clone());
        let mut builder = Client::builder()
            .endpoint(endpoint)
            .collector_id(id)
            .label("region", "test")
            .on_pause(move |_| {
                p.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .on_resume(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
        for program in programs {
            builder = builder.program(*program);
        }
        Self {
            client: builder.start().expect("start collector"),
            pauses,
            resumes,
        }
    }

    fn gate(&self, program: &str) -> Gate {
        self.client.gate(program).expect("program registered")
    }

    fn applied(&self, program: &str) -> Option<u64> {
        self.client.applied_generation(program)
    }
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    wait_until(DEADLINE, what, || std::future::ready(condition()))
        .await
        .expect("condition within deadline");
}

#[tokio::test]
async fn pause_reaches_every_collector_and_status_confirms() {
    let system = System::start().await;
    system.create("demo").await;
    let resumed = system.change("resume", "demo").await;
    let collectors: Vec<Collector> = (1..=3)
        .map(|i| system.collector(&format!("c{i}"), &["demo"]))
        .collect();
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;
    assert!(
        collectors
            .iter()
            .all(|c| c.resumes.load(Ordering::SeqCst) == 1)
    );
    assert!(
        collectors
            .iter()
            .all(|c| c.applied("demo") == Some(resumed))
    );

    let generation = system.change("pause", "demo").await;
    assert!(generation > resumed, "generations grow");
    until("every pause hook to run", || {
        collectors
            .iter()
            .all(|c| c.pauses.load(Ordering::SeqCst) == 1 && c.applied("demo") == Some(generation))
    })
    .await;
    assert!(
        collectors.iter().all(|c| !c.gate("demo").is_active()),
        "every gate closed"
    );

    let status = system
        .status_until("demo", "3 of 3 acknowledged", |s| {
            s["collectors"]["acked"] == 3
        })
        .await;
    assert_eq!(status["program"], "demo");
    assert_eq!(status["state"], "PAUSED");
    assert_eq!(status["generation"], generation);
    assert_eq!(status["reason"], "end-to-end test");
    assert_eq!(status["collectors"]["connected"], 3);
    assert_eq!(status["collectors"]["pending"], serde_json::json!([]));
    assert_eq!(status["collectors"]["errored"], serde_json::json!([]));

    let again = system.json(&["pause", "demo", "--reason", "again"]).await;
    assert_eq!(
        (again["changed"].clone(), again["generation"].clone()),
        (false.into(), generation.into())
    );

    let reopened = system.change("resume", "demo").await;
    until("every gate to reopen", || {
        collectors
            .iter()
            .all(|c| c.gate("demo").is_active() && c.applied("demo") == Some(reopened))
    })
    .await;
    assert!(
        collectors
            .iter()
            .all(|c| c.resumes.load(Ordering::SeqCst) == 2 && c.pauses.load(Ordering::SeqCst) == 1)
    );
    for collector in collectors {
        collector.client.shutdown().await;
    }
}

#[tokio::test]
async fn a_collector_that_starts_while_paused_never_opens() {
    let system = System::start().await;
    system.create("demo").await;
    let generation = system.change("resume", "demo").await;
    let paused = system.change("pause", "demo").await;
    assert!(paused > generation);

    let late = system.collector("late", &["demo"]);
    until("the late collector to apply the pause", || {
        late.applied("demo") == Some(paused)
    })
    .await;
    assert!(!late.gate("demo").is_active());
    assert_eq!(late.resumes.load(Ordering::SeqCst), 0, "never resumed");
    system
        .status_until("demo", "its acknowledgement", |s| {
            s["collectors"]["acked"] == 1
        })
        .await;
    assert!(!late.gate("demo").is_active(), "still closed");
}

#[tokio::test]
async fn an_unknown_program_stays_closed_until_it_exists_and_resumes() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collector = system.collector("c1", &["demo", "ghost"]);
    until("the known program to open", || {
        collector.gate("demo").is_active()
    })
    .await;
    assert!(
        !collector.gate("ghost").is_active(),
        "unknown program stays closed"
    );
    assert_eq!(collector.applied("ghost"), None);

    system.create("ghost").await;
    let generation = system.change("resume", "ghost").await;
    until("the new program to open", || {
        collector.gate("ghost").is_active()
    })
    .await;
    assert_eq!(collector.applied("ghost"), Some(generation));
}

#[tokio::test]
async fn bad_input_exits_non_zero_and_changes_nothing() {
    let system = System::start().await;
    system.create("demo").await;
    let before = system.etcd.dump("/killswitch").await.expect("dump");

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["program", "create", "Bad_Name", "--owner", "t"],
            2,
            "invalid program name",
        ),
        (
            &["program", "create", "demo", "--owner", "t"],
            1,
            "already exists",
        ),
        (&["pause", "demo", "--reason", ""], 2, "reason is required"),
        (&["pause", "ghost", "--reason", "x"], 1, "does not exist"),
        (&["resume", "demo"], 2, "--reason"),
        (&["status", "ghost"], 1, "does not exist"),
    ];
    for (args, code, message) in cases {
        let (actual, _, stderr) = system.cli(args).await;
        assert_eq!(actual, *code, "killswitch {args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "killswitch {args:?} should say {message:?}, said: {stderr}"
        );
    }
    let long = "x".repeat(1025);
    let (code, _, stderr) = system.cli(&["pause", "demo", "--reason", &long]).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        system.etcd.dump("/killswitch").await.expect("dump"),
        before,
        "nothing written"
    );

    let (code, _, stderr) = tokio::process::Command::new(env!("CARGO_BIN_EXE_killswitch"))
        .args(["--endpoint", "http://127.0.0.1:1", "status", "demo"])
        .output()
        .await
        .map(|o| {
            (
                o.status.code(),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .expect("run killswitch");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the control plane"),
        "{stderr}"
    );
}
