//! End to end through the real binaries: a real etcd, `killswitch-control`, SDK collectors
//! and the `killswitch` CLI, asserting on what the collectors did.

mod common;

use std::time::{Duration, Instant};

use common::{Collector, System, blocking_hook, parse, until};

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
    assert!(collectors.iter().all(|c| c.resumes() == 1));
    assert!(
        collectors
            .iter()
            .all(|c| c.applied("demo") == Some(resumed))
    );

    let baseline: Vec<usize> = collectors.iter().map(Collector::pauses).collect();
    let generation = system.change("pause", "demo").await;
    assert!(generation > resumed, "generations grow");
    until("every pause hook to run", || {
        collectors
            .iter()
            .all(|c| c.last_pause() == generation && c.applied("demo") == Some(generation))
    })
    .await;
    let once: Vec<usize> = baseline.iter().map(|n| n + 1).collect();
    assert_eq!(
        collectors.iter().map(Collector::pauses).collect::<Vec<_>>(),
        once,
        "one pause hook each"
    );
    assert!(
        collectors.iter().all(|c| !c.gate("demo").is_active()),
        "every gate closed"
    );

    let status = system
        .status_until(0, "demo", "3 of 3 acknowledged", |s| {
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
    assert!(collectors.iter().all(|c| c.resumes() == 2));
    assert_eq!(
        collectors.iter().map(Collector::pauses).collect::<Vec<_>>(),
        once,
        "no pause hook on resume"
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
    assert_eq!(late.resumes(), 0, "never resumed");
    system
        .status_until(0, "demo", "its acknowledgement", |s| {
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
    // The gate opens when the resume hook returns, a moment before the state is recorded.
    until("the new program to open at the resume's generation", || {
        collector.gate("ghost").is_active() && collector.applied("ghost") == Some(generation)
    })
    .await;
}

#[tokio::test]
async fn bad_input_exits_non_zero_and_changes_nothing() {
    let system = System::start().await;
    system.create("demo").await;
    // What operators change: a replica rewrites its own summaries and registration
    // whenever it likes (e.g. once it has seen the program just created).
    let admin_keys = || async {
        let dump = system.etcd.dump("/killswitch").await.expect("dump");
        dump.into_iter()
            .filter(|(key, _)| {
                let key = String::from_utf8_lossy(key);
                !key.contains("/acks/") && !key.contains("/replicas/")
            })
            .collect::<Vec<_>>()
    };
    let before = admin_keys().await;

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
    assert_eq!(admin_keys().await, before, "nothing written");

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

/// `--timeout` bounds each RPC, yet `--wait` reads its status stream for as long as the
/// collectors take: tonic applies the timeout to the response headers, not to the body.
#[tokio::test]
async fn a_wait_outlives_the_rpc_timeout() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    // Otherwise a replica still behind the resume may send the first PAUSED, which the
    // blocking pause hook below would sit in until the hook timeout.
    system.caught_up("demo").await;
    let (release, hook) = blocking_hook();
    let slow = Collector::builder("slow", &["demo"])
        .on_pause(hook)
        .start(&[system.endpoint(0)]);
    until("the gate to open", || slow.gate("demo").is_active()).await;

    let began = Instant::now();
    let pause = system.cli(&[
        "--timeout",
        "1s",
        "--output",
        "json",
        "pause",
        "demo",
        "--reason",
        "leak",
        "--wait",
        "20s",
    ]);
    let hold = async {
        until("the pause hook to start", || slow.pauses() >= 1).await;
        // Acknowledged only well past the per-RPC timeout.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(release);
    };
    let ((code, stdout, stderr), ()) = tokio::join!(pause, hold);
    assert_eq!(code, 0, "the wait completes: {stdout}{stderr}");
    assert!(began.elapsed() > Duration::from_secs(3));
    let waited = parse(&stdout);
    assert_eq!(waited["complete"], true, "{waited}");
    assert_eq!(waited["status"]["collectors"]["acked"], 1, "{waited}");
    assert!(!slow.gate("demo").is_active());
}
