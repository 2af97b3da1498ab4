//! Verified pause across replicas, end to end: acknowledgements from every replica,
//! `pause --wait`, stragglers, errored hooks, a dying replica, and the etcd cost of a pause.

mod common;

use common::{Collector, System, blocking_hook, parse, until};
use serde_json::Value;

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|v| {
            v.as_str().map_or_else(
                || v["collector_id"].as_str().expect("id").to_owned(),
                str::to_owned,
            )
        })
        .collect()
}

#[tokio::test]
async fn status_from_either_replica_counts_every_collector_and_wait_returns_once_all_acked() {
    let system = System::with_replicas(2, &[]).await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    // Two collectors on each replica.
    let collectors: Vec<Collector> = (0..4)
        .map(|i| Collector::builder(&format!("c{i}"), &["demo"]).start(&[system.endpoint(i % 2)]))
        .collect();
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;

    let (code, stdout, stderr) = system
        .cli_at(
            0,
            &[
                "--output", "json", "pause", "demo", "--reason", "leak", "--wait", "15s",
            ],
        )
        .await;
    assert_eq!(code, 0, "pause --wait: {stderr}");
    let paused = parse(&stdout);
    let generation = paused["generation"].as_u64().expect("generation");
    assert_eq!(paused["complete"], true);
    // --wait returned, so every collector has run its hook and closed its gate already.
    for collector in &collectors {
        assert!(!collector.gate("demo").is_active());
        assert_eq!(
            (collector.last_pause(), collector.applied("demo")),
            (generation, Some(generation))
        );
    }

    for replica in 0..2 {
        let status = system
            .status_until(replica, "demo", "all four counted", |s| {
                s["collectors"]["acked"] == 4
            })
            .await;
        assert_eq!(status["generation"], generation);
        assert_eq!(status["collectors"]["connected"], 4);
        assert_eq!(status["collectors"]["pending_count"], 0);
        assert_eq!(status["replicas"], serde_json::json!(["r1", "r2"]));
        assert_eq!(status["replicas_behind"], serde_json::json!([]));
        assert_eq!(status["ack_times"]["count"], 4);
    }

    let listed = system.json_at(1, &["collectors", "demo"]).await;
    let placement: Vec<(String, String)> = listed["collectors"]
        .as_array()
        .expect("collectors")
        .iter()
        .map(|c| {
            (
                c["collector_id"].as_str().expect("id").to_owned(),
                c["replica"].as_str().expect("replica").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = (0..4)
        .map(|i| (format!("c{i}"), format!("r{}", i % 2 + 1)))
        .collect();
    assert_eq!(placement, expected);
    assert_eq!(listed["unreachable_replicas"], serde_json::json!([]));
}

#[tokio::test]
async fn a_blocked_hook_is_pending_and_a_failing_hook_is_errored() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    // Otherwise a replica still behind the resume may send the first PAUSED, which the
    // blocking pause hook below would sit in until the hook timeout.
    system.caught_up("demo").await;
    let endpoint = [system.endpoint(0)];
    // The stuck collector's pause hook blocks until the test releases it, also when the
    // test fails (the runtime waits for blocking hooks before it shuts down).
    let (release, hook) = blocking_hook();
    let stuck = Collector::builder("stuck", &["demo"])
        .on_pause(hook)
        .start(&endpoint);
    let broken = Collector::builder("broken", &["demo"])
        .on_pause(|_| Err("disk full".into()))
        .start(&endpoint);
    let fine = Collector::builder("fine", &["demo"]).start(&endpoint);
    let all = [&stuck, &broken, &fine];
    until("every gate to open", || {
        all.iter().all(|c| c.gate("demo").is_active())
    })
    .await;

    let (code, stdout, stderr) = system
        .cli(&["pause", "demo", "--reason", "leak", "--wait", "2s"])
        .await;
    assert_eq!(code, 3, "timed out waiting: {stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("stuck"),
        "names the straggler: {stdout}{stderr}"
    );
    // Pause wins even while a hook hangs or fails; no status shows stuck's gate closing.
    until("every gate to close", || {
        all.iter().all(|c| !c.gate("demo").is_active())
    })
    .await;

    // The summary the wait last saw may predate fine's and broken's Acks: wait for them.
    let status = system
        .status_until(
            0,
            "demo",
            "fine's Ack and broken's error to be counted",
            |s| s["collectors"]["acked"] == 1 && s["collectors"]["errored_count"] == 1,
        )
        .await;
    assert_eq!(ids(&status["collectors"]["pending"]), ["stuck"]);
    assert_eq!(ids(&status["collectors"]["errored"]), ["broken"]);
    assert_eq!(status["errors"][0]["error"], "disk full");
    assert_eq!(
        (
            status["collectors"]["acked"].clone(),
            status["collectors"]["connected"].clone()
        ),
        (1.into(), 3.into())
    );
    let pending = system.json(&["collectors", "demo", "--pending"]).await;
    assert_eq!(ids(&pending["collectors"]), ["stuck"]);
    let errored = system.json(&["collectors", "demo", "--errored"]).await;
    assert_eq!(ids(&errored["collectors"]), ["broken"]);
    assert_eq!(errored["collectors"][0]["error"], "disk full");

    drop(release);
    system
        .status_until(0, "demo", "the released hook's ack", |s| {
            s["collectors"]["acked"] == 2
        })
        .await;
}

#[tokio::test]
async fn a_dead_replicas_collectors_move_and_the_counts_converge() {
    let mut system = System::with_replicas(2, &["--lease-ttl", "2s"]).await;
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
    let listed = system
        .status_until(0, "demo", "all four acknowledged", |s| {
            s["collectors"]["acked"] == 4
        })
        .await;
    assert_eq!(listed["collectors"]["connected"], 4);

    // Kill the replica the first collector uses; the other one must end up with all four.
    let placement = system.json(&["collectors", "demo"]).await;
    let victim = placement["collectors"][0]["replica"]
        .as_str()
        .expect("replica")
        .to_owned();
    let (dead, alive) = if victim == "r1" { (0, 1) } else { (1, 0) };
    system.kill(dead);
    let survivor = format!("r{}", alive + 1);
    system
        .status_until(
            alive,
            "demo",
            "the dead replica's summary to expire and its collectors to move",
            |s| {
                s["replicas"] == serde_json::json!([survivor])
                    && s["collectors"]["connected"] == 4
                    && s["collectors"]["acked"] == 4
            },
        )
        .await;

    let generation = system.change("pause", "demo").await;
    until("every collector to pause through the survivor", || {
        collectors
            .iter()
            .all(|c| !c.gate("demo").is_active() && c.applied("demo") == Some(generation))
    })
    .await;
    system
        .status_until(alive, "demo", "all four acknowledged again", |s| {
            s["collectors"]["acked"] == 4
        })
        .await;
}

#[tokio::test]
async fn one_pause_costs_etcd_writes_per_replica_not_per_collector() {
    const COLLECTORS: usize = 50;
    const REPLICAS: i64 = 2;
    let system = System::with_replicas(2, &[]).await;
    system.create("demo").await;
    let resumed = system.change("resume", "demo").await;
    let collectors: Vec<Collector> = (0..COLLECTORS)
        .map(|i| {
            Collector::builder(&format!("c{i:02}"), &["demo"]).start(&[system.endpoint(i % 2)])
        })
        .collect();
    until("every gate to open", || {
        collectors
            .iter()
            .all(|c| c.applied("demo") == Some(resumed))
    })
    .await;
    system
        .status_until(0, "demo", "all acknowledged the resume", |s| {
            s["collectors"]["acked"] == COLLECTORS
        })
        .await;

    let before = system.etcd.revision().await.expect("revision");
    let (code, _, stderr) = system
        .cli(&["pause", "demo", "--reason", "count writes", "--wait", "15s"])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let after = system.etcd.revision().await.expect("revision");
    let writes = after - before;
    eprintln!(
        "one pause of {COLLECTORS} collectors on {REPLICAS} replicas: {writes} etcd revisions"
    );
    // One transaction for the pause, then a few debounced summary writes per replica.
    assert!(
        writes <= 1 + 10 * REPLICAS,
        "{writes} etcd revisions for one pause of {COLLECTORS} collectors on {REPLICAS} replicas"
    );
}

#[tokio::test]
async fn a_full_replica_refuses_new_sessions_until_one_leaves() {
    let system = System::with_replicas(1, &["--max-sessions", "1"]).await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let first = system.collector("first", &["demo"]);
    until("the first collector to open", || {
        first.gate("demo").is_active()
    })
    .await;
    let second = system.collector("second", &["demo"]);
    let status = system
        .status_until(0, "demo", "the first collector counted", |s| {
            s["collectors"]["acked"] == 1
        })
        .await;
    assert_eq!(
        status["collectors"]["connected"], 1,
        "the second session was refused"
    );
    assert_eq!(
        second.applied("demo"),
        None,
        "a refused collector never hears a state"
    );
    assert!(!second.gate("demo").is_active());

    first.client.shutdown().await;
    until("the second collector to get the freed slot", || {
        second.gate("demo").is_active()
    })
    .await;
}
