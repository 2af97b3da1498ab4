//! DESIGN.md section 9, fault by fault, with the faults injected into real processes: a
//! three-member etcd cluster, two control replicas, the `killswitch` CLI and real SDK
//! collectors (in this process, or in their own process where the fault is to a process).
//! Each test asserts the end state and that no change was lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Collector, CollectorProcess, System, blocking_hook, until};
use killswitch_sdk::Cause;
use killswitch_testkit::{Etcd, Proxy, Replica};
use serde_json::Value;

/// Collectors spread over the replicas: collector `i` prefers replica `i % replicas`.
fn spread(system: &System, n: usize) -> Vec<Collector> {
    (0..n)
        .map(|i| {
            Collector::builder(&format!("c{i}"), &["demo"])
                .start(&system.endpoints_from(i % system.replicas.len()))
        })
        .collect()
}

/// Waits until replica `i` counts `n` collectors connected and acknowledged at the
/// program's current generation; returns that status.
async fn all_acked(system: &System, i: usize, n: usize) -> Value {
    system
        .status_until(i, "demo", &format!("{n} collectors acknowledged"), |s| {
            s["collectors"]["connected"] == n
                && s["collectors"]["acked"] == n
                && s["replicas_behind"].as_array().is_none_or(Vec::is_empty)
        })
        .await
}

fn generation(status: &Value) -> u64 {
    status["generation"].as_u64().expect("generation")
}

/// Runs the CLI in the background, for commands that must be in flight during a fault.
fn cli_in_background(
    system: &System,
    i: usize,
    args: &[&str],
) -> tokio::task::JoinHandle<std::process::Output> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_killswitch"));
    command
        .args(["--endpoint", &system.endpoint(i), "--actor", "responder"])
        .args(args);
    tokio::spawn(async move { command.output().await.expect("run killswitch") })
}

#[tokio::test]
async fn a_replica_killed_during_pause_wait_loses_nothing() {
    let mut system = System::cluster(2, &["--lease-ttl", "2s"]).await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    // Acknowledged RUNNING on both replicas: their caches are past the resume, so `slow`
    // is not sent the program's first PAUSED, which its blocking hook would sit in.
    let collectors = spread(&system, 3);
    all_acked(&system, 1, 3).await;
    // `slow` prefers r1 and is still in its pause hook when r1 dies.
    let (release, hook) = blocking_hook();
    let slow = Collector::builder("slow", &["demo"])
        .on_pause(hook)
        .start(&system.endpoints_from(0));
    all_acked(&system, 1, 4).await;
    let slow_pauses = slow.pauses();

    let wait = cli_in_background(
        &system,
        1,
        &["pause", "demo", "--reason", "leak", "--wait", "20s"],
    );
    until("slow's pause hook to start", || slow.pauses() > slow_pauses).await;
    system.kill(0);
    drop(release);

    let output = wait.await.expect("pause --wait");
    assert_eq!(
        output.status.code(),
        Some(0),
        "the wait completes: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The dead replica's summary counts until its lease (2 s) expires, which the wait
    // need not outlast; then r2 alone counts all four.
    let status = system
        .status_until(
            1,
            "demo",
            "r1's lease to expire, r2 counting all four",
            |s| {
                s["replicas"] == serde_json::json!(["r2"])
                    && s["collectors"]["connected"] == 4
                    && s["collectors"]["acked"] == 4
            },
        )
        .await;
    assert_eq!(status["state"], "PAUSED");
    let paused = generation(&status);
    for collector in collectors.iter().chain([&slow]) {
        assert!(!collector.gate("demo").is_active());
        assert_eq!(collector.applied("demo"), Some(paused));
    }
}

#[tokio::test]
async fn a_pause_commits_and_reaches_everyone_when_the_etcd_leader_dies() {
    let mut system = System::cluster(2, &[]).await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collectors = spread(&system, 4);
    all_acked(&system, 0, 4).await;

    let leader = system.etcd.leader().await.expect("etcd leader");
    system.etcd.kill_member(leader).expect("kill the leader");
    let (code, stdout, stderr) = system
        .cli_at(0, &["pause", "demo", "--reason", "leak", "--wait", "15s"])
        .await;
    assert_eq!(
        code, 0,
        "the pause commits and is confirmed: {stdout}{stderr}"
    );

    let status = all_acked(&system, 1, 4).await;
    let paused = generation(&status);
    for collector in &collectors {
        assert!(!collector.gate("demo").is_active());
        assert_eq!(collector.applied("demo"), Some(paused));
        assert!(
            collector.calls().iter().all(|c| c.cause == Cause::Update),
            "collectors saw nothing of the election: {:?}",
            collector.calls()
        );
    }
}

#[tokio::test]
async fn without_etcd_changes_fail_fast_collectors_pause_and_all_reconverge_after() {
    let mut system = System::cluster(2, &[]).await;
    system
        .json(&["program", "create", "demo", "--owner", "t", "--grace", "2s"])
        .await;
    let resumed = system.change("resume", "demo").await;
    let collectors = spread(&system, 2);
    all_acked(&system, 0, 2).await;

    for member in 0..3 {
        system.etcd.kill_member(member).expect("kill member");
    }
    let started = Instant::now();
    let (code, stdout, stderr) = system.cli(&["pause", "demo", "--reason", "leak"]).await;
    let took = started.elapsed();
    assert_eq!(code, 1, "the pause fails: {stdout}{stderr}");
    assert!(stderr.contains("etcd"), "the message names etcd: {stderr}");
    // The replicas give etcd 3 s; the margin only absorbs a loaded machine.
    assert!(took < Duration::from_secs(8), "failed fast: took {took:?}");

    // The replicas stop vouching, so the fail-closed collectors pause by themselves.
    until("every gate to close for lost contact", || {
        collectors.iter().all(|c| {
            !c.gate("demo").is_active()
                && c.calls()
                    .last()
                    .is_some_and(|call| call.hook == "pause" && call.cause == Cause::LostContact)
        })
    })
    .await;

    for member in 0..3 {
        system.etcd.restart_member(member).expect("restart member");
    }
    system.etcd.ready().await.expect("etcd back");
    until("every gate to reopen", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;
    let status = all_acked(&system, 1, 2).await;
    assert_eq!(
        (status["state"].as_str(), generation(&status)),
        (Some("RUNNING"), resumed),
        "the stored state, unchanged by the failed pause"
    );
    for collector in &collectors {
        let last = collector.calls().last().cloned().expect("calls");
        assert_eq!((last.hook, last.cause), ("resume", Cause::ContactRestored));
    }
}

#[tokio::test]
async fn a_replica_whose_watch_was_down_past_a_compaction_catches_up() {
    let etcd = Etcd::cluster(3).await.expect("start etcd");
    let member = etcd.endpoint().trim_start_matches("http://");
    let to_etcd = Proxy::start(member.parse().expect("address"))
        .await
        .expect("proxy");
    let cut_off = Replica::start(
        &to_etcd.endpoint(),
        &["--heartbeat-interval", "1s", "--replica-id", "r1"],
    )
    .expect("replica r1");
    let direct = Replica::start(
        &etcd.endpoints_arg(),
        &["--heartbeat-interval", "1s", "--replica-id", "r2"],
    )
    .expect("replica r2");
    let system = System::of(etcd, vec![cut_off, direct]);
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collectors: Vec<Collector> = (0..2)
        .map(|i| Collector::builder(&format!("c{i}"), &["demo"]).start(&[system.endpoint(0)]))
        .collect();
    all_acked(&system, 1, 2).await;

    to_etcd.cut();
    let mut last = 0;
    for verb in ["pause", "resume", "pause"] {
        last = system
            .json_at(1, &[verb, "demo", "--reason", "while r1 is cut off"])
            .await["generation"]
            .as_u64()
            .expect("generation");
    }
    let revision = system.etcd.revision().await.expect("revision");
    system
        .etcd
        .client()
        .await
        .expect("client")
        .compact(revision, None)
        .await
        .expect("compact");
    to_etcd.restore();

    until("r1's collectors to get the last change", || {
        collectors
            .iter()
            .all(|c| !c.gate("demo").is_active() && c.applied("demo") == Some(last))
    })
    .await;
    let status = all_acked(&system, 0, 2).await;
    assert_eq!(generation(&status), last);
}

#[tokio::test]
async fn two_responders_racing_serialize_in_generation_and_audit_order() {
    let system = System::cluster(2, &[]).await;
    system.create("demo").await;
    let run = |i: usize, name: &'static str, verbs: [&'static str; 2]| {
        let system = &system;
        async move {
            let mut results = Vec::new();
            for k in 0..8 {
                let reason = format!("{name}-{k}");
                let change = system
                    .json_at(i, &[verbs[k % 2], "demo", "--reason", &reason])
                    .await;
                results.push((reason, change));
            }
            results
        }
    };
    let (a, b) = tokio::join!(
        run(0, "a", ["resume", "pause"]),
        run(1, "b", ["pause", "resume"])
    );
    let mut committed: Vec<(u64, String, String)> = a
        .into_iter()
        .chain(b)
        .filter(|(_, change)| change["changed"] == true)
        .map(|(reason, change)| {
            (
                change["generation"].as_u64().expect("generation"),
                reason,
                change["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    committed.sort();
    assert!(
        committed.windows(2).all(|w| w[0].0 < w[1].0),
        "generations strictly increase: {committed:?}"
    );

    let audit = system
        .json(&["audit", "--program", "demo", "--limit", "100"])
        .await;
    let audited: Vec<(String, String)> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] != "create")
        .map(|e| {
            (
                e["reason"].as_str().expect("reason").to_owned(),
                e["to"].as_str().expect("to").to_owned(),
            )
        })
        .collect();
    let by_generation: Vec<(String, String)> = committed
        .iter()
        .map(|(_, reason, state)| (reason.clone(), state.clone()))
        .collect();
    assert_eq!(
        audited, by_generation,
        "the audit lists exactly the committed changes, in generation order"
    );
    let status = system.json(&["status", "demo"]).await;
    let (last_generation, _, last_state) = committed.last().expect("changes");
    assert_eq!(
        (generation(&status), status["state"].as_str()),
        (*last_generation, Some(last_state.as_str())),
        "the final state is the last committed change"
    );
}

#[tokio::test]
async fn a_stopped_collector_is_pending_and_acknowledges_once_continued() {
    let system = System::cluster(1, &[]).await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let frozen = CollectorProcess::start(&system.endpoint(0), "frozen", &[]);
    let _fine = Collector::builder("fine", &["demo"]).start(&[system.endpoint(0)]);
    all_acked(&system, 0, 2).await;

    frozen.signal("STOP");
    let paused = system.change("pause", "demo").await;
    let status = system
        .status_until(0, "demo", "the stopped collector to be pending", |s| {
            s["collectors"]["acked"] == 1 && s["collectors"]["pending_count"] == 1
        })
        .await;
    assert_eq!(
        status["collectors"]["pending"],
        serde_json::json!(["frozen"])
    );

    frozen.signal("CONT");
    let status = all_acked(&system, 0, 2).await;
    assert_eq!(generation(&status), paused);
}

#[tokio::test]
async fn a_rolling_restart_never_opens_a_paused_gate_and_ends_acknowledged() {
    let mut system = System::cluster(2, &[]).await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collectors = spread(&system, 4);
    all_acked(&system, 0, 4).await;
    let paused = system.change("pause", "demo").await;
    until("every gate to close", || {
        collectors
            .iter()
            .all(|c| c.applied("demo") == Some(paused) && !c.gate("demo").is_active())
    })
    .await;

    // Watch every gate, as the collectors' code would, for the whole restart.
    let stop = Arc::new(AtomicBool::new(false));
    let gates: Vec<_> = collectors.iter().map(|c| c.gate("demo")).collect();
    let watcher = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if gates.iter().any(|g| g.is_active()) {
                    return Err(samples);
                }
                samples += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(samples)
        }
    });
    for i in 0..2 {
        system.restart(i).await;
        all_acked(&system, i, 4).await;
    }
    stop.store(true, Ordering::Relaxed);
    let samples = watcher
        .join()
        .expect("gate watcher")
        .unwrap_or_else(|samples| panic!("a gate opened after {samples} samples"));
    assert!(samples > 0);
    for collector in &collectors {
        assert_eq!(collector.applied("demo"), Some(paused));
        assert!(
            !collector
                .calls()
                .iter()
                .any(|c| c.hook == "resume" && c.generation >= paused),
            "no resume hook ran after the pause: {:?}",
            collector.calls()
        );
    }

    // And the restarted replicas still work.
    let resumed = system.change("resume", "demo").await;
    until("every gate to reopen", || {
        collectors
            .iter()
            .all(|c| c.applied("demo") == Some(resumed) && c.gate("demo").is_active())
    })
    .await;
}
