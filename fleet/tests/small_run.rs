//! The load tool keeps working: a small run of the real binary (etcd, a real replica,
//! 200 real SDK collectors in a simulator process, 3 pause/resume rounds) in which every
//! collector acknowledges every change, and a small floor measurement. It asserts no
//! time: timings are benchmarks.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_collector_acknowledges_every_round() {
    let control = killswitch_testkit::control_binary().expect("killswitch-control");
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_killswitch-fleet"))
        .args([
            "run",
            "--collectors",
            "200",
            "--rounds",
            "3",
            "--idle-secs",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--control-bin")
        .arg(&control)
        .output()
        .expect("run killswitch-fleet");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "killswitch-fleet failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("targets (issue #20):"), "{stdout}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("the report is JSON");
    let changes = report["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 6, "3 pauses and 3 resumes: {report}");
    for change in changes {
        assert_eq!(change["collectors"], 200, "{change}");
        assert_eq!(
            change["acked"], 200,
            "every collector acknowledged: {change}"
        );
        assert_eq!(change["errored"], 0, "{change}");
        assert_eq!(change["hooked"], 200, "every hook ran: {change}");
    }
    assert_eq!(report["pause"]["all_acked"], true);
    assert_eq!(report["resume"]["all_acked"], true);
    assert_eq!(report["idle"][0]["sessions"], 200);
    assert_eq!(report["idle_cost"]["replicas"][0]["sessions"], 200);
    assert!(report["idle_cost"]["etcd_writes"].is_i64(), "{report}");
}

#[test]
fn the_floor_answers_every_connection_every_round() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("floor.json");
    let output = Command::new(env!("CARGO_BIN_EXE_killswitch-fleet"))
        .args(["floor", "--connections", "100", "--rounds", "3", "--json"])
        .arg(&json)
        .output()
        .expect("run killswitch-fleet floor");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "killswitch-fleet floor failed: {stderr}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("the report is JSON");
    assert_eq!(report["connections"], 100);
    assert_eq!(
        report["last_ack_ms"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    assert!(report["median_cpu_us_per_connection"].is_f64(), "{report}");
}
