//! `killswitch report` through the real binaries against a control plane that does not
//! keep receipts yet (`ListReceipts` UNIMPLEMENTED), and the input errors of `report` and
//! `report verify`, which need no control plane. The report's contents and `report
//! verify`'s checks are unit-tested on synthetic data (`ops/src/report/tests.rs`).

mod common;

use common::{System, killswitch, text};

#[tokio::test]
async fn a_control_plane_that_keeps_no_receipts_is_named_as_such() {
    let system = System::start().await;
    system.create("demo").await;
    system.change("resume", "demo").await;
    system
        .json(&["pause", "demo", "--reason", "leak", "--incident", "INC-1"])
        .await;

    let (code, stdout, stderr) = system.cli(&["report", "--incident", "INC-1"]).await;
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(
        stderr.contains("does not keep receipts (ListReceipts is UNIMPLEMENTED"),
        "{stderr}"
    );

    // An incident nobody recorded is named before any receipt is asked for.
    let (code, _, stderr) = system.cli(&["report", "--incident", "INC-404"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no audit entry matches incident INC-404"),
        "{stderr}"
    );
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
