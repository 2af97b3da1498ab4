//! Pinned labels end to end: a real etcd, `killswitch-control` serving TLS with a PKI from
//! `killswitch certs init` whose `auth.toml` pins `region`, collector certificates from
//! `killswitch certs collector --label region=...`, the real `killswitch` binary and real
//! SDK clients.
//!
//! The refusal is checked so that it fails if the check is removed: the replica counts it
//! in its metrics, and the collector gets no state and is not listed; the pinned value
//! reaching the selector is checked by a scoped pause that would match nothing without it.

mod common;

use std::net::SocketAddr;

use common::{Collector, DEADLINE, Pki, killswitch, parse, path, run, text, until};
use killswitch_testkit::{Etcd, Replica, free_addr, http_request, metric_value, wait_until};
use serde_json::{Value, json};

/// The series the replica counts pinned-label refusals in.
const REFUSALS: &str = "killswitch_auth_failures_total{reason=\"pinned_label\"}";

/// Adds `pinned_labels = [KEYS]` to the PKI's `auth.toml`.
fn pin(pki: &Pki, keys: &[&str]) {
    let file = pki.file("auth.toml");
    let toml = std::fs::read_to_string(&file).expect("read auth.toml");
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    let line = format!("pinned_labels = [{}]\n", keys.join(", "));
    let toml = toml.replacen("trust_domain", &format!("{line}trust_domain"), 1);
    std::fs::write(&file, toml).expect("write auth.toml");
}

/// `killswitch certs collector ID --label LABEL --ca-dir PKI`: its table output.
fn issue(pki: &Pki, id: &str, label: &str) -> String {
    let dir = pki.file("");
    let issued = killswitch(&[
        "certs",
        "collector",
        id,
        "--label",
        label,
        "--ca-dir",
        path(&dir),
    ]);
    assert!(
        issued.status.success(),
        "certs collector failed: {}",
        text(&issued.stderr)
    );
    text(&issued.stdout)
}

/// A collector of `demo` with the certificate `collector-ID.pem`.
fn collector(pki: &Pki, id: &str) -> common::CollectorBuilder {
    Collector::builder(id, &["demo"]).tls(
        pki.read("ca.pem"),
        pki.read(&format!("collector-{id}.pem")),
        pki.read(&format!("collector-{id}-key.pem")),
    )
}

/// The replica's count of pinned-label refusals; 0 while the series is absent.
async fn refusals(metrics: SocketAddr) -> f64 {
    let (_, _, body) = http_request(metrics, "GET", "/metrics")
        .await
        .expect("scrape /metrics");
    metric_value(&body, REFUSALS).unwrap_or(0.0)
}

/// The collector ids `collectors demo --output json` lists, and their labels.
fn listed(list: &Value) -> Vec<(String, Value)> {
    list["collectors"]
        .as_array()
        .expect("collectors")
        .iter()
        .map(|c| {
            let id = c["collector_id"].as_str().expect("collector_id").to_owned();
            (id, c["labels"].clone())
        })
        .collect()
}

#[tokio::test]
async fn pinned_labels_come_from_collector_certificates() {
    let pki = Pki::init_with(&["--collectors", "0"]);
    pin(&pki, &["region"]);
    let shown = issue(&pki, "emea-1", "region=emea");
    assert!(
        shown.contains("spiffe://killswitch.local/collector/emea-1?region=emea"),
        "{shown}"
    );
    issue(&pki, "us-1", "region=us");

    let etcd = Etcd::start().await.expect("start etcd");
    let metrics = free_addr().expect("a free port");
    let mut args = pki.server_flags();
    args.extend(["--metrics-listen".to_owned(), metrics.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = Replica::start(etcd.endpoint(), &args).expect("start replica");
    let endpoint = replica.endpoint();
    let cli = |operator: &str, args: &[&str]| {
        let mut command = pki.cli(&endpoint, Some(operator));
        command.args(args);
        run(command)
    };
    let ok = async |operator: &str, args: &[&str]| {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = cli(operator, &all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stderr}");
        parse(&stdout)
    };
    ok(
        "operator-alice",
        &["program", "create", "demo", "--owner", "data-team"],
    )
    .await;
    ok("operator-alice", &["resume", "demo", "--reason", "go"]).await;

    // us-1 repeats its pinned value in Hello, which is allowed; emea-1 contradicts its own.
    let us = collector(&pki, "us-1")
        .label("region", "us")
        .start(std::slice::from_ref(&endpoint));
    let us_gate = us.gate("demo");
    until("us-1's gate opens", || us_gate.is_active()).await;
    let before = refusals(metrics).await;
    let liar = collector(&pki, "emea-1")
        .label("region", "us")
        .start(std::slice::from_ref(&endpoint));
    wait_until(DEADLINE, "the replica refuses emea-1's Hello", || async {
        refusals(metrics).await > before
    })
    .await
    .expect("a pinned_label refusal counted");
    assert!(!liar.gate("demo").is_active(), "the liar's gate opened");
    assert_eq!(liar.applied("demo"), None, "the liar was sent a state");
    let list = ok("operator-bob", &["collectors", "demo"]).await;
    let ids: Vec<String> = listed(&list).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["us-1"], "{list}");
    liar.client.shutdown().await;

    // The same certificate, its Hello silent on region: admitted with region=emea.
    let emea = collector(&pki, "emea-1")
        .without_label("region")
        .start(std::slice::from_ref(&endpoint));
    let emea_gate = emea.gate("demo");
    until("emea-1's gate opens", || emea_gate.is_active()).await;
    let list = ok("operator-bob", &["collectors", "demo"]).await;
    assert_eq!(
        listed(&list),
        [
            ("emea-1".to_owned(), json!({"region": "emea"})),
            ("us-1".to_owned(), json!({"region": "us"})),
        ],
        "{list}"
    );
    assert_eq!(list["pinned_labels"], json!(["region"]), "{list}");

    // A pause of region=emea reaches emea-1 by its certificate's value, and only it.
    let us_pauses = us.pauses();
    let paused = ok(
        "operator-bob",
        &[
            "pause",
            "demo",
            "--selector",
            "region=emea",
            "--reason",
            "emea uploads misrouted",
            "--wait",
            "10s",
        ],
    )
    .await;
    assert_eq!(paused["complete"], true, "{paused}");
    assert_eq!(paused["status"]["collectors"]["connected"], 1, "{paused}");
    let generation = paused["generation"].as_u64().expect("generation");
    assert!(!emea_gate.is_active(), "emea-1's gate closed");
    assert_eq!(emea.last_pause(), generation, "emea-1's pause hook ran");
    // --wait counts only the pause's scope (emea-1): us-1 may not have applied it yet.
    until("us-1 to apply the scoped pause", || {
        us.applied("demo") == Some(generation)
    })
    .await;
    assert!(us_gate.is_active(), "us-1's gate stayed open");
    assert_eq!(us.pauses(), us_pauses, "no pause hook on us-1");

    // status and collectors say which keys are pinned.
    let status = ok("operator-bob", &["status", "demo"]).await;
    assert_eq!(status["pinned_labels"], json!(["region"]), "{status}");
    for args in [&["status", "demo"], &["collectors", "demo"]] {
        let (code, stdout, stderr) = cli("operator-bob", args).await;
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            stdout.contains("region (from collector certificates)\n"),
            "{args:?}: {stdout}"
        );
    }
    emea.client.shutdown().await;
    us.client.shutdown().await;
}
