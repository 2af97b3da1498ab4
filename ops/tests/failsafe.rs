//! Fail-safe collectors, end to end with real processes: lost contact, a replica that
//! loses etcd, restarts with a state file, Drain, hook timeouts and panics, purge.

mod common;

use std::time::{Duration, Instant};

use common::{Collector, System, until};
use killswitch_sdk::Cause;
use killswitch_testkit::{Etcd, Proxy, Replica};

/// The replicas' heartbeat interval in these tests (`System` starts them with `1s`).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The grace of the fail-closed programs below.
const GRACE: Duration = Duration::from_secs(2);

fn address(endpoint: &str) -> std::net::SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("a host:port endpoint")
}

/// `closed` fails closed with a 2 s grace, `open` fails open; both running.
async fn two_policies(system: &System) {
    system
        .json(&[
            "program", "create", "closed", "--owner", "t", "--grace", "2s",
        ])
        .await;
    system
        .json(&[
            "program",
            "create",
            "open",
            "--owner",
            "t",
            "--on-lost-contact",
            "keep",
        ])
        .await;
    system.change("resume", "closed").await;
    system.change("resume", "open").await;
}

#[tokio::test]
async fn lost_contact_pauses_fail_closed_programs_after_grace_and_restored_contact_reopens() {
    let system = System::start().await;
    two_policies(&system).await;
    let proxy = Proxy::start(address(&system.endpoint(0)))
        .await
        .expect("proxy");
    let collector = Collector::builder("c1", &["closed", "open"]).start(&[proxy.endpoint()]);
    until("both gates to open", || {
        collector.gate("closed").is_active() && collector.gate("open").is_active()
    })
    .await;

    let cut = Instant::now();
    proxy.cut();
    until("the fail-closed gate to close", || {
        !collector.gate("closed").is_active()
    })
    .await;
    let closed_after = cut.elapsed();
    // The gate closes first; the pause hook runs after it.
    until("the pause hook to run", || {
        collector.calls().iter().any(|c| c.hook == "pause")
    })
    .await;
    let pause = collector
        .calls()
        .into_iter()
        .rfind(|c| c.hook == "pause")
        .expect("a pause hook ran");
    assert_eq!(
        (pause.program.as_str(), pause.cause),
        ("closed", Cause::LostContact)
    );
    // Its last contact was at most one heartbeat before the cut.
    assert!(
        closed_after + HEARTBEAT >= GRACE,
        "closed {closed_after:?} after the cut: before the grace"
    );
    assert!(
        collector.gate("open").is_active(),
        "the fail-open program keeps collecting"
    );

    proxy.restore();
    until("contact restored to reopen the gate", || {
        collector.gate("closed").is_active()
    })
    .await;
    let resume = collector
        .calls()
        .into_iter()
        .rfind(|c| c.hook == "resume")
        .expect("a resume hook ran");
    assert_eq!(
        (resume.program.as_str(), resume.cause),
        ("closed", Cause::ContactRestored)
    );
    assert!(collector.gate("open").is_active());
    assert!(
        !collector
            .calls()
            .iter()
            .any(|c| c.program == "open" && c.hook == "pause"),
        "the fail-open program never paused"
    );
}

#[tokio::test]
async fn a_replica_that_loses_etcd_stops_vouching_and_its_collectors_pause_within_grace() {
    let etcd = Etcd::start().await.expect("etcd");
    let to_etcd = Proxy::start(address(etcd.endpoint())).await.expect("proxy");
    let replica = Replica::start(
        &to_etcd.endpoint(),
        &["--heartbeat-interval", "1s", "--replica-id", "r1"],
    )
    .expect("replica");
    let system = System::of(etcd, vec![replica]);
    two_policies(&system).await;
    let collector = Collector::builder("c1", &["closed", "open"]).start(&[system.endpoint(0)]);
    until("both gates to open", || {
        collector.gate("closed").is_active() && collector.gate("open").is_active()
    })
    .await;

    let cut = Instant::now();
    to_etcd.cut();
    until("the fail-closed gate to close", || {
        !collector.gate("closed").is_active()
    })
    .await;
    let closed_after = cut.elapsed();
    assert!(
        closed_after + HEARTBEAT >= GRACE,
        "closed {closed_after:?} after etcd went away"
    );
    eprintln!(
        "replica lost etcd: fail-closed gate closed {closed_after:?} later (grace {GRACE:?}, heartbeat {HEARTBEAT:?})"
    );
    assert!(collector.gate("open").is_active());

    to_etcd.restore();
    until("the replica to vouch again and the gate to reopen", || {
        collector.gate("closed").is_active()
    })
    .await;
    let resume = collector
        .calls()
        .into_iter()
        .rfind(|c| c.hook == "resume")
        .expect("a resume hook ran");
    assert_eq!(resume.cause, Cause::ContactRestored);
}

#[tokio::test]
async fn a_restart_with_a_state_file_never_goes_back_and_fail_open_starts_from_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state_file = dir.path().join("collector.state");
    let first = System::start().await;
    two_policies(&first).await;
    // Push the generations up, so the second system's are all older.
    for _ in 0..3 {
        first.change("pause", "closed").await;
        first.change("resume", "closed").await;
    }
    let closed_generation = first.change("pause", "closed").await;
    let collector = Collector::builder("c1", &["closed", "open"])
        .state_file(&state_file)
        .start(&[first.endpoint(0)]);
    until("the pause to apply", || {
        collector.applied("closed") == Some(closed_generation)
    })
    .await;
    until("the fail-open program to open", || {
        collector.gate("open").is_active()
    })
    .await;
    let open_generation = collector.applied("open").expect("applied");
    collector.client.shutdown().await;
    drop(first);
    eprintln!(
        "state file: {}",
        std::fs::read_to_string(&state_file).unwrap_or_default()
    );

    // Restarted with no control plane in reach: fail-open resumes from the file,
    // fail-closed stays paused.
    let offline = Collector::builder("c1", &["closed", "open"])
        .state_file(&state_file)
        .start(&["http://127.0.0.1:1".to_owned()]);
    until("the fail-open program to start from the file", || {
        offline.gate("open").is_active()
    })
    .await;
    let from_file = offline
        .calls()
        .into_iter()
        .find(|c| c.hook == "resume")
        .expect("a resume hook ran");
    assert_eq!(
        (from_file.program.as_str(), from_file.cause),
        ("open", Cause::StateFile)
    );
    assert!(
        !offline.gate("closed").is_active(),
        "fail-closed programs always start paused"
    );
    assert_eq!(offline.applied("closed"), Some(closed_generation));
    offline.client.shutdown().await;

    // A control plane whose generations are older (say etcd restored from a backup)
    // cannot take the collector back in time: its RUNNING is ignored.
    let older = System::start().await;
    two_policies(&older).await;
    let stale = older.json(&["status", "closed"]).await["generation"]
        .as_u64()
        .expect("generation");
    assert!(
        stale < closed_generation,
        "the second system is behind ({stale} < {closed_generation})"
    );
    // A replica's view follows etcd's watch, which may deliver a program created just
    // after the replica started a moment later than the CLI returns; until then the
    // replica calls it unknown, and an unknown program closes every gate (pause wins).
    // A probe collector sees when the replica knows both programs as RUNNING.
    let probe = Collector::builder("probe", &["closed", "open"]).start(&[older.endpoint(0)]);
    until("the older replica to know both programs", || {
        probe.gate("closed").is_active() && probe.gate("open").is_active()
    })
    .await;
    probe.client.shutdown().await;
    let restarted = Collector::builder("c1", &["closed", "open"])
        .state_file(&state_file)
        .start(&[older.endpoint(0)]);
    older
        .status_until(0, "closed", "the restarted collector to connect", |s| {
            // It acknowledges nothing older than its file: it stays pending.
            s["collectors"]["pending"]
                .as_array()
                .is_some_and(|pending| pending.iter().any(|id| id == "c1"))
        })
        .await;
    until("the fail-open program to open", || {
        restarted.gate("open").is_active()
    })
    .await;
    assert!(
        !restarted.gate("closed").is_active(),
        "an older RUNNING must not open the gate"
    );
    assert_eq!(restarted.applied("closed"), Some(closed_generation));
    assert!(restarted.applied("open") >= Some(open_generation));
}

#[tokio::test]
async fn drain_moves_collectors_to_another_replica_without_pausing_them() {
    let mut system = System::with_replicas(2, &[]).await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let endpoints = [system.endpoint(0), system.endpoint(1)];
    let collectors: Vec<Collector> = (0..4)
        .map(|i| Collector::builder(&format!("c{i}"), &["demo"]).start(&endpoints))
        .collect();
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;
    system
        .status_until(0, "demo", "all four counted", |s| {
            s["collectors"]["acked"] == 4
        })
        .await;
    let pauses: Vec<usize> = collectors.iter().map(Collector::pauses).collect();

    let placement = system.json(&["collectors", "demo"]).await;
    let drained = placement["collectors"][0]["replica"]
        .as_str()
        .expect("replica")
        .to_owned();
    let (stopped, alive) = if drained == "r1" { (0, 1) } else { (1, 0) };
    let replica = system.replicas[stopped].take().expect("running");
    // Off the runtime: the collectors in this process must keep running to obey the Drain.
    let clean = tokio::task::spawn_blocking(move || replica.stop())
        .await
        .expect("join")
        .expect("SIGTERM");
    assert!(clean, "the replica shuts down cleanly after draining");

    let survivor = format!("r{}", alive + 1);
    system
        .status_until(
            alive,
            "demo",
            "every collector on the surviving replica",
            |s| s["collectors"]["acked"] == 4 && s["replicas"] == serde_json::json!([survivor]),
        )
        .await;
    let placement = system.json_at(alive, &["collectors", "demo"]).await;
    for collector in placement["collectors"].as_array().expect("collectors") {
        assert_eq!(collector["replica"], survivor.as_str());
    }
    assert!(
        collectors.iter().all(|c| c.gate("demo").is_active()),
        "nobody paused"
    );
    assert_eq!(
        collectors.iter().map(Collector::pauses).collect::<Vec<_>>(),
        pauses,
        "no pause hook ran"
    );
}

#[tokio::test]
async fn a_hook_that_times_out_or_panics_is_an_errored_ack_and_a_closed_gate() {
    let system = System::start().await;
    system.create("demo").await;
    let endpoint = [system.endpoint(0)];
    let slow = Collector::builder("slow", &["demo"])
        .hook_timeout(Duration::from_millis(300))
        .on_resume(|_| {
            std::thread::sleep(Duration::from_secs(2));
            Ok(())
        })
        .start(&endpoint);
    let panicky = Collector::builder("panicky", &["demo"])
        .on_pause(|event| {
            if event.cause == Cause::Update && event.reason == "boom" {
                panic!("hook bug")
            } else {
                Ok(())
            }
        })
        .start(&endpoint);
    let resumed = system.change("resume", "demo").await;
    until("the panicky collector to open", || {
        panicky.gate("demo").is_active()
    })
    .await;
    let status = system
        .status_until(0, "demo", "the slow resume hook to time out", |s| {
            s["collectors"]["errored_count"] == 1
        })
        .await;
    assert_eq!(status["errors"][0]["collector_id"], "slow");
    let error = status["errors"][0]["error"].as_str().expect("error text");
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(slow.applied("demo"), Some(resumed));
    assert!(
        !slow.gate("demo").is_active(),
        "a timed-out resume hook leaves the gate closed"
    );

    let (code, _, stderr) = system.cli(&["pause", "demo", "--reason", "boom"]).await;
    assert_eq!(code, 0, "{stderr}");
    let status = system
        .status_until(0, "demo", "the panicking pause hook's ack", |s| {
            s["collectors"]["errored_count"] == 1
        })
        .await;
    assert_eq!(status["errors"][0]["collector_id"], "panicky");
    assert!(
        status["errors"][0]["error"]
            .as_str()
            .expect("error")
            .contains("panicked")
    );
    assert!(
        !panicky.gate("demo").is_active(),
        "the gate closed before the hook panicked"
    );
}

#[tokio::test]
async fn a_purge_pause_counts_the_collectors_that_confirmed_it() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let endpoint = [system.endpoint(0)];
    let purging: Vec<Collector> = (0..2)
        .map(|i| {
            Collector::builder(&format!("purger-{i}"), &["demo"])
                .on_pause(|event| {
                    if event.purge {
                        event.confirm_purge();
                    }
                    Ok(())
                })
                .start(&endpoint)
        })
        .collect();
    let keeper = Collector::builder("keeper", &["demo"]).start(&endpoint);
    until("every gate to open", || {
        keeper.gate("demo").is_active() && purging.iter().all(|c| c.gate("demo").is_active())
    })
    .await;

    let (code, _, stderr) = system
        .cli(&[
            "pause",
            "demo",
            "--reason",
            "data exposed",
            "--purge",
            "--wait",
            "15s",
        ])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let status = system.json(&["status", "demo"]).await;
    assert_eq!(status["purge"], true);
    assert_eq!(status["collectors"]["acked"], 3);
    assert_eq!(
        status["collectors"]["purged"], 2,
        "the keeper did not confirm a purge"
    );
    assert!(
        purging
            .iter()
            .all(|c| c.calls().iter().any(|call| call.hook == "pause"))
    );
}
