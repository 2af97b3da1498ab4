//! Targeted pauses, staged resumes, stop-all and drills (issue #8), end to end: a real
//! etcd, `killswitch-control` replicas, SDK collectors with labels and the `killswitch`
//! CLI, asserting on what the collectors did.

mod common;

use std::time::{Duration, Instant};

use common::{Collector, DEADLINE, System, blocking_hook, parse, until};
use killswitch_control::model::targeting::bucket;
use killswitch_proto::contract::ACTOR_METADATA;
use killswitch_proto::v1;
use killswitch_proto::v1::admin_service_client::AdminServiceClient;
use killswitch_testkit::wait_until;
use serde_json::{Value, json};

/// The etcd prefix the replicas use (their default).
const PREFIX: &str = "/killswitch/v1";

/// Collectors of `demo` on replica 0, each `(id, region, version)`.
fn labelled(system: &System, specs: &[(&str, &str, &str)]) -> Vec<Collector> {
    specs
        .iter()
        .map(|(id, region, version)| {
            Collector::builder(id, &["demo"])
                .label("region", region)
                .label("version", version)
                .start(&[system.endpoint(0)])
        })
        .collect()
}

/// Four collectors: c1 and c2 in emea, c3 and c4 in us; versions 1 and 2 in each.
const FLEET: &[(&str, &str, &str)] = &[
    ("c1", "emea", "1"),
    ("c2", "emea", "2"),
    ("c3", "us", "1"),
    ("c4", "us", "2"),
];

/// The actions of `program`'s audit entries (every program's with `"*"`), oldest first.
async fn actions(system: &System, program: &str) -> Vec<String> {
    let audit = if program == "*" {
        system.json(&["audit"]).await
    } else {
        system.json(&["audit", "--program", program]).await
    };
    audit
        .as_array()
        .expect("audit entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action").to_owned())
        .collect()
}

/// The stored states and the audit log, to show that a refused command changed nothing.
async fn stored(system: &System) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = system
        .etcd
        .dump(&format!("{PREFIX}/state/"))
        .await
        .expect("dump states");
    all.extend(
        system
            .etcd
            .dump(&format!("{PREFIX}/audit/"))
            .await
            .expect("dump audit"),
    );
    all
}

/// `n` collector ids whose rollout bucket is below `percent`% (`inside`) or not.
fn ids_in_stage(percent: u32, inside: bool, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("collector-{i}"))
        .filter(|id| (bucket(id) < percent * 100) == inside)
        .take(n)
        .collect()
}

#[tokio::test]
async fn a_scoped_pause_reaches_exactly_the_matched_collectors() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collectors = labelled(&system, FLEET);
    let (emea, us) = collectors.split_at(2);
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;
    let us_pauses: Vec<usize> = us.iter().map(Collector::pauses).collect();

    let (code, stdout, stderr) = system
        .cli(&[
            "--output",
            "json",
            "pause",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "emea uploads misrouted",
            "--wait",
            "10s",
        ])
        .await;
    assert_eq!(code, 0, "pause --selector --wait: {stderr}");
    let paused = parse(&stdout);
    let generation = paused["generation"].as_u64().expect("generation");
    assert_eq!(paused["complete"], true);
    assert_eq!(paused["scope"], "region=emea");
    assert_eq!(paused["rules"][0]["state"], "PAUSED");
    assert_eq!(paused["status"]["collectors"]["connected"], 2, "{paused}");
    // --wait returned: the selected collectors have run their pause hook already.
    for c in emea {
        assert!(!c.gate("demo").is_active(), "emea gate closed");
        assert_eq!(c.last_pause(), generation);
    }
    for (c, before) in us.iter().zip(&us_pauses) {
        assert!(c.gate("demo").is_active(), "us gate open");
        assert_eq!(c.pauses(), *before, "no pause hook outside the selector");
    }

    let status = system.json(&["status", "demo"]).await;
    assert_eq!(status["generation"], generation);
    assert_eq!(
        (
            status["collectors"]["connected"].clone(),
            status["collectors"]["acked"].clone()
        ),
        (2.into(), 2.into()),
        "status counts only the collectors in scope: {status}"
    );
    assert_eq!(status["scope"], "region=emea");
    let (_, table, _) = system.cli(&["status", "demo"]).await;
    assert!(
        table.contains("(only region=emea)") && table.contains("PAUSED for region=emea"),
        "{table}"
    );

    // A selector that does not parse is refused with its column, and changes nothing.
    let before = stored(&system).await;
    for (selector, column) in [
        ("region=emea,,version=1", "column 13"),
        ("region in (emea", "column 16"),
        ("region=emea,region=us", "column"),
    ] {
        let (code, stdout, stderr) = system
            .cli(&["pause", "demo", "--selector", selector, "--reason", "typo"])
            .await;
        assert_eq!(code, 2, "{selector}: {stdout}{stderr}");
        assert!(
            stderr.contains("invalid selector") && stderr.contains(column),
            "{selector}: {stderr}"
        );
        assert!(stderr.contains('^'), "a caret under the column: {stderr}");
    }
    let (code, _, stderr) = system
        .cli(&["resume", "demo", "--selector", " ", "--reason", "x"])
        .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("leave --selector out"), "{stderr}");
    assert_eq!(stored(&system).await, before, "nothing written");
    assert!(emea.iter().all(|c| !c.gate("demo").is_active()));

    let (code, stdout, stderr) = system
        .cli(&[
            "resume",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "routing fixed",
            "--wait",
            "10s",
        ])
        .await;
    assert_eq!(code, 0, "resume --selector --wait: {stdout}{stderr}");
    assert!(
        stdout.contains("RUNNING for region=emea"),
        "says what changed: {stdout}"
    );
    assert!(
        collectors.iter().all(|c| c.gate("demo").is_active()),
        "every gate open again"
    );
    assert!(emea.iter().all(|c| c.resumes() == 2));
    for collector in collectors {
        collector.client.shutdown().await;
    }
}

#[tokio::test]
async fn a_staged_resume_reaches_the_first_stage_first_and_completes() {
    let system = System::start().await;
    system.create("demo").await;
    // 2 of 10 collectors in the 20% stage, by the control plane's own bucketing.
    let first = ids_in_stage(20, true, 2);
    let rest = ids_in_stage(20, false, 8);
    let start = |id: &String| Collector::builder(id, &["demo"]).start(&[system.endpoint(0)]);
    let (early, late): (Vec<Collector>, Vec<Collector>) = (
        first.iter().map(start).collect(),
        rest.iter().map(start).collect(),
    );
    system
        .status_until(0, "demo", "10 collectors to acknowledge the pause", |s| {
            s["collectors"]["acked"] == 10
        })
        .await;

    let (code, stdout, stderr) = system
        .cli(&[
            "--output",
            "json",
            "resume",
            "demo",
            "--stages",
            "20%,100%",
            "--interval",
            "1s",
            "--reason",
            "staged return",
            "--wait",
            "20s",
        ])
        .await;
    assert_eq!(code, 0, "resume --stages --wait: {stdout}{stderr}");
    let resumed = parse(&stdout);
    assert_eq!(resumed["outcome"], "complete", "{resumed}");
    assert_eq!(resumed["status"]["state"], "RUNNING");
    assert_eq!(resumed["status"]["rollout"], Value::Null);
    let stages = resumed["stages"].as_array().expect("stages");
    assert_eq!(
        stages
            .iter()
            .map(|s| (s["percent"].clone(), s["collectors"].clone()))
            .collect::<Vec<_>>(),
        [(20.into(), 2.into()), (100.into(), 10.into())],
        "{resumed}"
    );
    assert!(
        stderr.contains("stage 1/2 (20%)") && stderr.contains("stage 2/2 (100%)"),
        "progress per stage: {stderr}"
    );

    let all = || early.iter().chain(&late);
    assert!(all().all(|c| c.gate("demo").is_active()), "every gate open");
    let resumed_at = |c: &Collector| {
        c.calls()
            .iter()
            .find(|call| call.hook == "resume")
            .map(|call| call.at)
            .expect("a resume hook call")
    };
    let last_early = early.iter().map(resumed_at).max().expect("early");
    let first_late = late.iter().map(resumed_at).min().expect("late");
    assert!(
        last_early < first_late,
        "the first stage resumed before the others"
    );
    assert!(
        first_late.duration_since(last_early) >= Duration::from_millis(900),
        "the second stage waited for the interval: {:?}",
        first_late.duration_since(last_early)
    );
    let actions = actions(&system, "demo").await;
    for action in ["rollout-advance", "rollout-complete"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

#[tokio::test]
async fn a_staged_resume_aborts_on_an_errored_acknowledgement() {
    let system = System::start().await;
    system.create("demo").await;
    // The failing collector and one more in the 50% stage, two after it.
    let first = ids_in_stage(50, true, 2);
    let rest = ids_in_stage(50, false, 2);
    let endpoint = [system.endpoint(0)];
    let failing = Collector::builder(&first[0], &["demo"])
        .on_resume(|_| Err("camera driver crashed".into()))
        .start(&endpoint);
    let fine = Collector::builder(&first[1], &["demo"]).start(&endpoint);
    let late: Vec<Collector> = rest
        .iter()
        .map(|id| Collector::builder(id, &["demo"]).start(&endpoint))
        .collect();
    system
        .status_until(0, "demo", "4 collectors to acknowledge the pause", |s| {
            s["collectors"]["acked"] == 4
        })
        .await;

    let (code, stdout, stderr) = system
        .cli(&[
            "resume",
            "demo",
            "--stages",
            "50%,100%",
            "--interval",
            "0s",
            "--reason",
            "staged return",
            "--wait",
            "15s",
        ])
        .await;
    assert_eq!(code, 1, "an aborted staged resume fails: {stdout}{stderr}");
    assert!(stderr.contains("aborted"), "{stderr}");
    assert!(stdout.contains("staged resume ABORTED"), "{stdout}");

    let all = || std::iter::once(&failing).chain([&fine]).chain(&late);
    until("every gate to be closed again", || {
        all().all(|c| !c.gate("demo").is_active())
    })
    .await;
    assert!(
        late.iter().all(|c| c.resumes() == 0),
        "the second stage never started"
    );
    let status = system
        .status_until(0, "demo", "the abort acknowledged", |s| {
            s["collectors"]["pending_count"] == 0
        })
        .await;
    assert_eq!(
        (status["state"].clone(), status["rollout"].clone()),
        ("PAUSED".into(), Value::Null)
    );
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("camera driver crashed")),
        "the reason names the error: {status}"
    );
    let actions = actions(&system, "demo").await;
    assert!(actions.iter().any(|a| a == "rollout-abort"), "{actions:?}");
}

/// Starts a staged resume on two replicas, kills one (the replica driving rollouts, or
/// the other), and checks the rollout completes through the survivor.
async fn rollout_survives_a_dead_replica(kill_the_driver: bool) {
    let mut system = System::with_replicas(2, &["--lease-ttl", "2s"]).await;
    system.create("demo").await;
    let ids: Vec<String> = ids_in_stage(50, true, 3)
        .into_iter()
        .chain(ids_in_stage(50, false, 3))
        .collect();
    let collectors: Vec<Collector> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Collector::builder(id, &["demo"]).start(&system.endpoints_from(i % 2)))
        .collect();
    system
        .status_until(0, "demo", "6 collectors to acknowledge the pause", |s| {
            s["collectors"]["acked"] == 6
        })
        .await;

    // Which replica drives rollouts: the holder of the driver key.
    let key = format!("{PREFIX}/rollout-driver");
    let holder = || async {
        let dump = system.etcd.dump(&key).await.expect("dump");
        dump.first()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    wait_until(DEADLINE, "a replica to hold the driver key", || async {
        !holder().await.is_empty()
    })
    .await
    .expect("a driver");
    let driver = match holder().await.as_str() {
        "r1" => 0,
        "r2" => 1,
        other => panic!("unexpected driver {other:?}"),
    };
    let victim = if kill_the_driver { driver } else { 1 - driver };
    let survivor = 1 - victim;

    let (code, _, stderr) = system
        .cli_at(
            survivor,
            &[
                "resume",
                "demo",
                "--stages",
                "50%,100%",
                "--interval",
                "2s",
                "--reason",
                "staged return",
            ],
        )
        .await;
    assert_eq!(code, 0, "{stderr}");
    system.kill(victim);

    let status = system
        .status_until(survivor, "demo", "the staged resume to complete", |s| {
            s["state"] == "RUNNING"
                && s["rollout"].is_null()
                && s["collectors"]["acked"] == 6
                && s["replicas_behind"] == serde_json::json!([])
        })
        .await;
    assert_eq!(status["collectors"]["connected"], 6, "{status}");
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;
    let audit = system
        .json_at(survivor, &["audit", "--program", "demo"])
        .await;
    let completed_by: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "rollout-complete")
        .map(|e| e["actor"].as_str().expect("actor"))
        .collect();
    let survivor_id = format!("r{}", survivor + 1);
    assert_eq!(
        completed_by,
        [format!("rollout-driver@{survivor_id}")],
        "the survivor completed it"
    );
}

#[tokio::test]
async fn a_staged_resume_completes_after_the_driving_replica_is_killed() {
    rollout_survives_a_dead_replica(true).await;
}

#[tokio::test]
async fn a_staged_resume_completes_after_the_other_replica_is_killed() {
    rollout_survives_a_dead_replica(false).await;
}

/// Runs the CLI against replica 0 as `actor` (the replicas run with --insecure-dev, so
/// the actor is whoever the flag says).
async fn cli_as(system: &System, actor: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_killswitch"))
        .args(["--endpoint", &system.endpoint(0), "--actor", actor])
        .args(args)
        .output()
        .await
        .expect("run killswitch");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn stop_all_overrides_every_program_and_clearing_restores_each_state() {
    let system = System::start().await;
    system.create("a").await;
    system.create("b").await;
    system.change("resume", "a").await;
    let collectors: Vec<Collector> = (1..=2)
        .map(|i| system.collector(&format!("c{i}"), &["a", "b"]))
        .collect();
    until("a to open and b to stay closed", || {
        collectors
            .iter()
            .all(|c| c.gate("a").is_active() && !c.gate("b").is_active())
    })
    .await;

    let (code, stdout, stderr) = system
        .cli(&[
            "stop-all",
            "--reason",
            "credential leak",
            "--incident",
            "INC-9",
            "--wait",
            "10s",
        ])
        .await;
    assert_eq!(code, 0, "stop-all --wait: {stdout}{stderr}");
    assert!(stdout.contains("STOP-ALL SET"), "{stdout}");
    for c in &collectors {
        assert!(!c.gate("a").is_active() && !c.gate("b").is_active());
    }
    let (_, table, _) = system.cli(&["status", "a"]).await;
    assert!(
        table.starts_with("!! STOP-ALL ACTIVE") && table.contains("credential leak"),
        "{table}"
    );
    let (_, list, _) = system.cli(&["program", "list"]).await;
    assert!(list.starts_with("!! STOP-ALL ACTIVE"), "{list}");
    let status = system.json(&["status", "a"]).await;
    assert_eq!(status["stop_all"]["active"], true);
    assert_eq!(status["stop_all"]["incident_id"], "INC-9");
    assert_eq!(
        status["state"], "RUNNING",
        "a keeps its own state underneath"
    );
    let shown = system.json(&["stop-all", "--show"]).await;
    assert_eq!(shown["stop_all"]["active"], true);

    let (code, stdout, stderr) = system
        .cli(&[
            "stop-all",
            "--clear",
            "--reason",
            "leak contained",
            "--wait",
            "10s",
        ])
        .await;
    assert_eq!(code, 0, "stop-all --clear --wait: {stdout}{stderr}");
    until("a to reopen", || {
        collectors.iter().all(|c| c.gate("a").is_active())
    })
    .await;
    assert!(
        collectors.iter().all(|c| !c.gate("b").is_active()),
        "b stays paused"
    );
    let shown = system.json(&["stop-all", "--show"]).await;
    assert_eq!(shown["stop_all"]["active"], false);
    assert_eq!(system.json(&["status", "a"]).await["stop_all"], Value::Null);

    // With a program that needs two operators to resume, clearing needs two admins.
    system
        .json(&[
            "program",
            "set",
            "b",
            "--resume-approvals",
            "2",
            "--reason",
            "sensitive",
        ])
        .await;
    let (code, _, stderr) = cli_as(&system, "alice", &["stop-all", "--reason", "again"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = cli_as(
        &system,
        "alice",
        &[
            "--output", "json", "stop-all", "--clear", "--reason", "over",
        ],
    )
    .await;
    assert_eq!(code, 0, "a clear request: {stderr}");
    let request = parse(&stdout);
    let id = request["approval_request_id"]
        .as_str()
        .expect("an approval request id")
        .to_owned();
    assert_eq!(request["stop_all"]["active"], true);
    let (_, table, _) = cli_as(&system, "alice", &["stop-all", "--show"]).await;
    assert!(table.contains(&format!("--approve {id}")), "{table}");
    let (code, _, stderr) = cli_as(
        &system,
        "alice",
        &[
            "stop-all",
            "--clear",
            "--approve",
            &id,
            "--reason",
            "me again",
        ],
    )
    .await;
    assert_eq!(code, 4, "the requester cannot approve: {stderr}");
    assert!(collectors.iter().all(|c| !c.gate("a").is_active()));
    let (code, stdout, stderr) = cli_as(
        &system,
        "bob",
        &[
            "stop-all",
            "--clear",
            "--approve",
            &id,
            "--reason",
            "checked",
            "--wait",
            "10s",
        ],
    )
    .await;
    assert_eq!(code, 0, "a second admin clears it: {stdout}{stderr}");
    until("a to reopen after the second admin", || {
        collectors.iter().all(|c| c.gate("a").is_active())
    })
    .await;
    let actions = actions(&system, "*").await;
    for action in ["stop-all", "stop-all-clear-request", "stop-all-clear"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

#[tokio::test]
async fn a_drill_pauses_the_selected_collectors_and_restores_them() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collectors = labelled(&system, FLEET);
    let (emea, us) = collectors.split_at(2);
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;
    let us_pauses: Vec<usize> = us.iter().map(Collector::pauses).collect();

    let (code, stdout, stderr) = system
        .cli(&[
            "--output",
            "json",
            "drill",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "quarterly drill",
        ])
        .await;
    assert_eq!(code, 0, "drill: {stdout}{stderr}");
    let drill = parse(&stdout);
    assert_eq!(drill["collectors"], 2, "{drill}");
    assert_eq!(
        (drill["safe"].clone(), drill["restored"].clone()),
        (true.into(), true.into())
    );
    let safe_ms = drill["time_to_safe_ms"].as_f64().expect("time to safe");
    assert!(safe_ms > 0.0 && safe_ms < 10_000.0, "{safe_ms}");
    let drilled = drill["drill_generation"].as_u64().expect("generation");
    for c in emea {
        assert_eq!(c.last_pause(), drilled, "paused by the drill");
        assert!(c.gate("demo").is_active(), "and restored");
    }
    for (c, before) in us.iter().zip(&us_pauses) {
        assert_eq!(c.pauses(), *before, "not in the drill");
        assert!(c.gate("demo").is_active());
    }
    let status = system.json(&["status", "demo"]).await;
    assert_eq!(status["rules"], serde_json::json!([]), "no drill rule left");
    let actions = actions(&system, "demo").await;
    for action in ["drill-start", "drill-end"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }

    let (code, table, stderr) = system
        .cli(&[
            "drill",
            "demo",
            "--selector",
            "version=2",
            "--reason",
            "again",
        ])
        .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        table.contains("2 collectors paused, confirmed and restored")
            && table.contains("time to safe:"),
        "{table}"
    );
    let (code, table, stderr) = system
        .cli(&[
            "drill",
            "demo",
            "--selector",
            "region=mars",
            "--reason",
            "typo",
        ])
        .await;
    assert_eq!(
        code, 5,
        "a drill that reaches nobody tested nothing: {table}"
    );
    assert!(stderr.contains("tested nothing"), "{stderr}");
    assert!(
        table.contains("NO connected collector matched")
            && table.contains("matched:       0 connected collectors of demo"),
        "{table}"
    );
    for collector in collectors {
        collector.client.shutdown().await;
    }
}

#[tokio::test]
async fn a_drill_that_times_out_is_still_ended_and_names_the_straggler() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    // Otherwise a replica still behind the resume may send the first PAUSED, which the
    // blocking pause hook below would sit in until the hook timeout.
    system.caught_up("demo").await;
    let (release, hook) = blocking_hook();
    let endpoint = [system.endpoint(0)];
    let stuck = Collector::builder("stuck", &["demo"])
        .label("region", "emea")
        .on_pause(hook)
        .start(&endpoint);
    let fine = Collector::builder("fine", &["demo"])
        .label("region", "emea")
        .start(&endpoint);
    until("both gates to open", || {
        stuck.gate("demo").is_active() && fine.gate("demo").is_active()
    })
    .await;

    let began = Instant::now();
    let (code, stdout, stderr) = system
        .cli(&[
            "drill",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "drill",
            "--wait",
            "2s",
        ])
        .await;
    assert_eq!(code, 3, "timed out: {stdout}{stderr}");
    assert!(
        stderr.contains("stuck") && stdout.contains("drill pending:"),
        "names the straggler: {stdout}{stderr}"
    );
    assert!(began.elapsed() < DEADLINE);
    let status = system.json(&["status", "demo"]).await;
    assert_eq!(
        status["rules"],
        serde_json::json!([]),
        "the drill was ended"
    );
    let actions = actions(&system, "demo").await;
    assert_eq!(
        actions.iter().filter(|a| *a == "drill-end").count(),
        1,
        "{actions:?}"
    );
    drop(release);
    until("both gates to reopen", || {
        stuck.gate("demo").is_active() && fine.gate("demo").is_active()
    })
    .await;
}

#[tokio::test]
async fn ctrl_c_during_a_drill_ends_it() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    // Otherwise a replica still behind the resume may send the first PAUSED, which the
    // blocking pause hook below would sit in until the hook timeout.
    system.caught_up("demo").await;
    // The pause hook blocks, so the drill waits for it until interrupted.
    let (release, hook) = blocking_hook();
    let stuck = Collector::builder("stuck", &["demo"])
        .label("region", "emea")
        .on_pause(hook)
        .start(&[system.endpoint(0)]);
    until("the gate to open", || stuck.gate("demo").is_active()).await;

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_killswitch"))
        .args(["--endpoint", &system.endpoint(0), "--actor", "responder"])
        .args([
            "drill",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "drill",
            "--wait",
            "1m",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run killswitch drill");
    let pid = child.id().expect("pid").to_string();
    system
        .status_until(0, "demo", "the drill to start", |s| {
            s["rules"][0]["drill"] == true
        })
        .await;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the drill exits after Ctrl-C")
        .expect("wait for killswitch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let status = system.json(&["status", "demo"]).await;
    assert_eq!(
        status["rules"],
        serde_json::json!([]),
        "the drill was ended"
    );
    let actions = actions(&system, "demo").await;
    assert!(actions.iter().any(|a| a == "drill-end"), "{actions:?}");
    drop(release);
    until("the gate to reopen", || stuck.gate("demo").is_active()).await;
}

#[tokio::test]
async fn a_scoped_pause_that_matches_no_connected_collector_exits_5_and_is_stored() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collectors = labelled(&system, FLEET);
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;

    let (code, stdout, stderr) = system
        .cli(&[
            "--output",
            "json",
            "pause",
            "demo",
            "--selector",
            "region=apac",
            "--reason",
            "apac uploads misrouted",
            "--wait",
            "5s",
        ])
        .await;
    assert_eq!(code, 5, "a scope that matched nobody: {stdout}{stderr}");
    let paused = parse(&stdout);
    let generation = paused["generation"].as_u64().expect("generation");
    assert_eq!(
        (paused["matched"].clone(), paused["changed"].clone()),
        (json!(0), json!(true)),
        "{paused}"
    );
    assert_eq!(paused["status"]["collectors"]["connected"], 0, "{paused}");
    assert!(
        stderr.contains(&format!(
            "killswitch: warning: the scope region=apac matched no connected collector of \
             demo: the change is stored (generation {generation}) and applies to collectors \
             that connect later with matching labels"
        )),
        "{stderr}"
    );
    assert!(
        collectors.iter().all(|c| c.gate("demo").is_active()),
        "nobody was paused"
    );

    // The change is stored: status shows the rule.
    let status = system.json(&["status", "demo"]).await;
    assert_eq!(
        (status["generation"].clone(), status["scope"].clone()),
        (json!(generation), json!("region=apac")),
        "{status}"
    );
    assert_eq!(
        (
            status["rules"][0]["selector"].clone(),
            status["rules"][0]["state"].clone()
        ),
        (json!("region=apac"), json!("PAUSED")),
        "{status}"
    );

    // Without --wait it exits 0, and says so plainly.
    let (code, table, stderr) = system
        .cli(&[
            "pause",
            "demo",
            "--selector",
            "region=apac",
            "--reason",
            "again",
        ])
        .await;
    assert_eq!(code, 0, "{table}{stderr}");
    assert!(
        table.contains(
            "scope region=apac matched 0 connected collectors of demo: nothing was paused now; \
             collectors that connect later with matching labels obey it"
        ),
        "{table}"
    );

    // A collector that connects later with matching labels obeys it, and is counted.
    let late = Collector::builder("c5", &["demo"])
        .label("region", "apac")
        .start(&[system.endpoint(0)]);
    until("the apac collector to apply the scoped pause", || {
        late.applied("demo") >= Some(generation)
    })
    .await;
    assert!(!late.gate("demo").is_active(), "it connected paused");
    system
        .status_until(0, "demo", "the apac collector to be counted", |s| {
            s["collectors"]["connected"] == 1 && s["collectors"]["acked"] == 1
        })
        .await;
    let (code, stdout, stderr) = system
        .cli(&[
            "--output",
            "json",
            "pause",
            "demo",
            "--selector",
            "region=apac",
            "--reason",
            "again",
        ])
        .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(parse(&stdout)["matched"], 1, "{stdout}");
    late.client.shutdown().await;
    for collector in collectors {
        collector.client.shutdown().await;
    }
}

#[tokio::test]
async fn a_real_pause_during_a_drill_of_the_same_selector_outlives_the_drill() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    let collectors = labelled(&system, FLEET);
    let (emea, us) = collectors.split_at(2);
    until("every gate to open", || {
        collectors.iter().all(|c| c.gate("demo").is_active())
    })
    .await;

    // A drill left running, as one whose CLI was killed leaves it.
    let mut admin = AdminServiceClient::connect(system.endpoint(0))
        .await
        .expect("connect to the admin API");
    let mut request = tonic::Request::new(v1::DrillRequest {
        program: "demo".to_owned(),
        selector: "region=emea".to_owned(),
        reason: "quarterly drill".to_owned(),
        incident_id: String::new(),
    });
    request
        .metadata_mut()
        .insert(ACTOR_METADATA, "drill-runner".parse().expect("ascii actor"));
    let drilled = admin
        .start_drill(request)
        .await
        .expect("start the drill")
        .into_inner()
        .state
        .expect("state")
        .generation;
    until("the drill to pause the emea collectors", || {
        emea.iter()
            .all(|c| c.applied("demo") >= Some(drilled) && !c.gate("demo").is_active())
    })
    .await;

    // The incident is real: the same collectors are paused for real.
    let before = actions(&system, "demo").await;
    let (code, stdout, stderr) = system
        .cli(&[
            "--output",
            "json",
            "pause",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "real",
            "--wait",
            "5s",
        ])
        .await;
    assert_eq!(code, 0, "pause during the drill: {stdout}{stderr}");
    let paused = parse(&stdout);
    assert_eq!(
        paused["changed"], true,
        "a drill's rule does not absorb a real pause: {paused}"
    );
    assert_eq!(
        (paused["complete"].clone(), paused["matched"].clone()),
        (json!(true), json!(2)),
        "{paused}"
    );
    let after = actions(&system, "demo").await;
    assert_eq!(
        (after.len(), after.last().map(String::as_str)),
        (before.len() + 1, Some("pause")),
        "the real pause is audited: {after:?}"
    );

    let (code, stdout, stderr) = system
        .cli(&[
            "--output",
            "json",
            "drill",
            "demo",
            "--selector",
            "region=emea",
            "--end",
            "--reason",
            "done",
            "--wait",
            "5s",
        ])
        .await;
    assert_eq!(code, 0, "drill --end: {stdout}{stderr}");
    let ended = parse(&stdout)["generation"].as_u64().expect("generation");
    until("the emea collectors to apply the drill's end", || {
        emea.iter().all(|c| c.applied("demo") >= Some(ended))
    })
    .await;
    for c in emea {
        assert!(
            !c.gate("demo").is_active(),
            "the real pause outlives the drill"
        );
    }
    assert!(us.iter().all(|c| c.gate("demo").is_active()));
    let status = system.json(&["status", "demo"]).await;
    let rules: Vec<(Value, Value, Value)> = status["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["selector"].clone(),
                r["state"].clone(),
                r["drill"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [(json!("region=emea"), json!("PAUSED"), json!(false))],
        "only the real pause is left: {status}"
    );
    for collector in collectors {
        collector.client.shutdown().await;
    }
}

/// Creates `names` and resumes them through the admin API of replica 0, four at a time.
async fn create_running(system: &System, names: &[String]) {
    let admin = AdminServiceClient::connect(system.endpoint(0))
        .await
        .expect("connect to the admin API");
    fn as_tester<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert(ACTOR_METADATA, "tester".parse().expect("ascii actor"));
        request
    }
    let tasks: Vec<_> = names
        .chunks(names.len().div_ceil(4))
        .map(|chunk| {
            let (mut admin, chunk) = (admin.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for name in chunk {
                    admin
                        .create_program(as_tester(v1::CreateProgramRequest {
                            name: name.clone(),
                            owner: "data-team".into(),
                            ..Default::default()
                        }))
                        .await
                        .expect("create");
                    admin
                        .resume(as_tester(v1::ResumeRequest {
                            program: name,
                            reason: "collect".into(),
                            ..Default::default()
                        }))
                        .await
                        .expect("resume");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("create and resume");
    }
}

/// Watches every gate, as fast as it can, from before a stop-all until told to stop:
/// which gates were seen closed, and which were seen open again after that.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Sampler {
    fn start(gates: Vec<(String, killswitch_sdk::Gate)>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut closed = vec![false; gates.len()];
            let mut reopened = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                for (i, (program, gate)) in gates.iter().enumerate() {
                    match (gate.is_active(), closed[i]) {
                        (false, _) => closed[i] = true,
                        (true, true) => reopened.push(program.clone()),
                        (true, false) => {}
                    }
                }
                std::thread::yield_now();
            }
            (closed.iter().filter(|c| **c).count(), reopened)
        });
        Self { stop, thread }
    }

    /// How many gates were seen closed, and the programs whose gate was seen open after
    /// it had been seen closed.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("sampler")
    }
}

#[tokio::test]
async fn stop_all_closes_every_gate_of_hundreds_of_programs_and_none_reopens_before_the_clear() {
    // More programs than etcd allows operations in one transaction (128), followed by
    // collectors on two replicas, each session following at most 64 of them.
    const PROGRAMS: usize = 300;
    const PER_SESSION: usize = 60;
    let system = System::with_replicas(2, &[]).await;
    let names: Vec<String> = (0..PROGRAMS).map(|i| format!("p{i:03}")).collect();
    create_running(&system, &names).await;
    let collectors: Vec<Collector> = names
        .chunks(PER_SESSION)
        .enumerate()
        .map(|(i, chunk)| {
            let programs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            Collector::builder(&format!("c{i}"), &programs).start(&[system.endpoint(i % 2)])
        })
        .collect();
    let gates: Vec<(String, killswitch_sdk::Gate)> = collectors
        .iter()
        .zip(names.chunks(PER_SESSION))
        .flat_map(|(c, chunk)| chunk.iter().map(|p| (p.clone(), c.gate(p))))
        .collect();
    until("every gate to open", || {
        gates.iter().all(|(_, g)| g.is_active())
    })
    .await;

    // `stop-all --wait` follows the programs one by one (tens of milliseconds each here),
    // so the gates themselves are watched for all 300; the small stop-all test above
    // covers `--wait`.
    let sampler = Sampler::start(gates.clone());
    let set = system
        .json(&["stop-all", "--reason", "credential leak"])
        .await;
    let generation = set["stop_all"]["generation"].as_u64().expect("generation");
    until("every gate to close", || {
        gates.iter().all(|(_, g)| !g.is_active())
    })
    .await;
    // A gate closes before the pause hook runs and the state is recorded as applied.
    until(
        "every program to apply the flag's generation or a newer one",
        || {
            collectors
                .iter()
                .all(|c| gates_of(c, &names).all(|p| c.applied(p) >= Some(generation)))
        },
    )
    .await;
    for program in ["p000", "p150", "p299"] {
        let status = system
            .status_until(1, program, "the stop-all acknowledged", |s| {
                s["generation"].as_u64() == Some(generation)
                    && s["collectors"]["acked"].as_u64() == Some(1)
            })
            .await;
        assert_eq!(status["stop_all"]["active"], true, "{status}");
    }

    let (seen_closed, reopened) = sampler.finish();
    assert_eq!(seen_closed, PROGRAMS, "every gate seen closed");
    assert!(
        reopened.is_empty(),
        "gates seen open again during the stop-all: {reopened:?}"
    );
    let audit = system.json(&["audit", "--limit", "1"]).await;
    assert_eq!(audit[0]["action"], "stop-all");
    assert_eq!(audit[0]["detail"], "300 programs");
    assert_eq!(audit[0]["generation"].as_u64(), Some(generation));

    let cleared = system
        .json(&["stop-all", "--clear", "--reason", "rotated"])
        .await;
    assert!(cleared["stop_all"]["generation"].as_u64() > Some(generation));
    until("every gate to reopen", || {
        gates.iter().all(|(_, g)| g.is_active())
    })
    .await;
}

/// The programs of `names` that collector `c` follows.
fn gates_of<'a>(c: &'a Collector, names: &'a [String]) -> impl Iterator<Item = &'a str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|p| c.client.gate(p).is_some())
}
