//! `killswitch report` and `report verify` through the real binaries: an incident over
//! two TLS replicas whose collectors (real SDK clients, and one demo collector process
//! that gets stopped) sign their receipts; and the input errors of `report` and `report
//! verify`, which need no control plane. The report's arithmetic and `verify`'s checks
//! are unit-tested on synthetic data (`ops/src/report/tests.rs`), and its HTML is read
//! back from headless Chromium there.

mod common;

use base64::Engine as _;
use common::{TlsPlane, killswitch, path, text};
use serde_json::Value;

/// The change of `report` with this action whose scope is `scope`.
fn change<'a>(report: &'a Value, action: &str, scope: Option<&str>) -> &'a Value {
    report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["action"] == action && c["scope"].as_str() == scope)
        .unwrap_or_else(|| panic!("no {action} change with scope {scope:?} in {report}"))
}

/// The ids of a change's stragglers.
fn stragglers(change: &Value) -> Vec<&str> {
    change["stragglers"]
        .as_array()
        .expect("stragglers")
        .iter()
        .filter_map(|s| s["collector_id"].as_str())
        .collect()
}

/// A pause, a scoped resume and a staged resume of one incident, with one collector
/// stopped after the pause: the report counts each change's confirmations from the
/// collectors' signed receipts, names the stopped collector as a straggler with its last
/// contact, and `report verify` accepts the file (JSON and HTML) with only the CA, and
/// refuses it with one byte of a receipt changed or an audit entry removed.
#[tokio::test]
async fn an_incident_report_counts_signed_receipts_and_names_stragglers() {
    let incident = TlsPlane::start(2, 5).await;
    incident
        .json(&["program", "create", "demo", "--owner", "data-team"])
        .await;
    incident
        .json(&["resume", "demo", "--reason", "collecting"])
        .await;
    let _emea = [
        incident.collector(1, "emea", 0),
        incident.collector(2, "emea", 1),
    ];
    let _us = [
        incident.collector(3, "us", 0),
        incident.collector(4, "us", 1),
    ];
    // In the scope of the resume below; stopped after the pause, it never confirms again.
    let frozen = incident.process(5, "emea");
    incident
        .status_until("five collectors running", |s| s["collectors"]["acked"] == 5)
        .await;

    let reason = ["--incident", "INC-7", "--wait", "20s"];
    let mut pause = vec!["pause", "demo", "--reason", "leak"];
    pause.extend_from_slice(&reason);
    incident.json(&pause).await;
    frozen.signal("STOP");
    let scoped = [
        "resume",
        "demo",
        "--reason",
        "emea is clean",
        "--selector",
        "region=emea",
        "--incident",
        "INC-7",
    ];
    incident.json(&scoped).await;
    incident
        .status_until("the running emea collectors to confirm", |s| {
            s["scope"] == "region=emea"
                && s["collectors"]["acked"] == 2
                && s["collectors"]["pending_count"] == 1
        })
        .await;
    let staged = [
        "resume",
        "demo",
        "--reason",
        "all clear",
        "--incident",
        "INC-7",
        "--stages",
        "50%,100%",
        "--interval",
        "1s",
    ];
    incident.json(&staged).await;
    incident
        .status_until("the staged resume's first stage", |s| {
            s["rollout"].is_object() && s["collectors"]["acked"].as_u64() >= Some(1)
        })
        .await;

    let report = incident.json(&["report", "--incident", "INC-7"]).await;
    let pause = change(&report, "pause", None);
    assert_eq!(
        (&pause["collectors"], &pause["confirmed"]),
        (&Value::from(5), &Value::from(5)),
        "{pause}"
    );
    assert!(stragglers(pause).is_empty(), "{pause}");
    assert_eq!(pause["commit_to_ack_ms"]["count"], 5, "{pause}");
    let scoped = change(&report, "resume", Some("region=emea"));
    assert_eq!(scoped["confirmed"], 2, "{scoped}");
    assert_eq!(stragglers(scoped), ["collector-5"], "{scoped}");
    let staged = change(&report, "resume", None);
    assert!(stragglers(staged).contains(&"collector-5"), "{staged}");
    let frozen_last = staged["stragglers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["collector_id"] == "collector-5"))
        .expect("collector-5 among the stragglers");
    assert!(frozen_last["last_contact"].is_string(), "{frozen_last}");
    assert_eq!(report["totals"]["unsigned"], 0, "{report}");

    // The evidence verifies offline with the CA alone, as JSON and as HTML.
    let dir = tempfile::tempdir().expect("temp dir");
    let json_file = dir.path().join("report.json");
    std::fs::write(&json_file, report.to_string()).expect("write the report");
    let html_file = dir.path().join("report.html");
    let (code, _, stderr) = incident
        .cli(&[
            "report",
            "--incident",
            "INC-7",
            "--format",
            "html",
            "--out",
            path(&html_file),
        ])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let ca = incident.pki.file("ca.pem");
    let verify =
        |file: &std::path::Path| killswitch(&["report", "verify", path(file), "--ca", path(&ca)]);
    for file in [&json_file, &html_file] {
        let verified = verify(file);
        assert!(verified.status.success(), "{}", text(&verified.stderr));
        assert!(
            text(&verified.stdout).starts_with("report verified"),
            "{}",
            text(&verified.stdout)
        );
    }

    // One byte of a receipt changed.
    let mut edited = report.clone();
    let receipt = &mut edited["evidence"]["receipts"][0]["receipt"];
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine
        .decode(receipt.as_str().expect("base64"))
        .expect("decode the receipt");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    *receipt = Value::from(engine.encode(&bytes));
    std::fs::write(&json_file, edited.to_string()).expect("write");
    let refused = verify(&json_file);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("collector-"),
        "{}",
        text(&refused.stderr)
    );

    // An audit entry removed from the middle of the chain segment.
    let mut removed = report.clone();
    let audit = removed["evidence"]["audit"].as_array_mut().expect("audit");
    assert!(audit.len() >= 3, "{audit:?}");
    audit.remove(1);
    std::fs::write(&json_file, removed.to_string()).expect("write");
    let refused = verify(&json_file);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
}

#[test]
fn bad_input_is_a_usage_error_without_a_control_plane() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not a report").expect("write");
    let garbage = garbage.to_str().expect("utf-8 path");
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().expect("utf-8 path");
    // Nothing listens there: these fail before connecting.
    let endpoint = ["--endpoint", "http://127.0.0.1:1"];
    for (args, needle) in [
        (
            &["report", "--since", "1h"][..],
            "a report needs --incident ID or --program NAME",
        ),
        (
            &["report", "--incident", "INC-1", "--format", "html"][..],
            "--format html needs --out FILE",
        ),
        (
            &["report", "verify", garbage][..],
            "report verify needs --ca CA.pem",
        ),
        (
            &["report", "verify", missing, "--ca", garbage][..],
            "cannot read the report",
        ),
        (
            &["report", "verify", garbage, "--ca", garbage][..],
            "is neither a JSON report nor an HTML report",
        ),
    ] {
        let mut all = endpoint.to_vec();
        all.extend_from_slice(args);
        let output = killswitch(&all);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
