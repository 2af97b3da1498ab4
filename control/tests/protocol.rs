//! docs/protocol.md kept true by a second client that is not ours: a Python collector
//! (`tests/protocol_client.py`, grpcio with stubs generated from proto/ at test time)
//! drives a real replica through the document's sequence: Hello, Snapshot with an unknown
//! program, Ack, an Update after a pause, a forged Ack refused while the true one counts
//! (checked through AdminService.Status), a Heartbeat, and Drain on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{create_running, store};
use killswitch_testkit::{Etcd, Replica};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The Python collector.
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/protocol_client.py");
/// The repository's `.proto` files, which the client generates its stubs from.
const PROTO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
/// Generous for a loaded two-core machine; the test normally takes a few seconds.
const DEADLINE: Duration = Duration::from_secs(30);
/// What to install when python3, grpcio or grpcio-tools is missing.
const SETUP: &str = "run ops/scripts/setup.sh to install python3's grpcio and grpcio-tools";

#[tokio::test]
async fn a_python_client_follows_the_documented_session() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    // Programs start PAUSED; resumed, so that the client's pause is a change.
    let running = create_running(&store, "demo").await;
    // 200 ms: the default grace (30 s) is longer, so the session heartbeats every 200 ms
    // and each heartbeat vouches for three periods.
    let replica =
        Replica::start(etcd.endpoint(), &["--heartbeat-interval", "200ms"]).expect("replica");

    let mut child = tokio::process::Command::new("python3")
        .arg(CLIENT)
        .arg(replica.addr().to_string())
        .args(["--program", "demo", "--collector-id", "py-collector-1"])
        .args(["--proto-dir", PROTO_DIR])
        .args(["--timeout", &DEADLINE.as_secs().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run python3 ({error}): {SETUP}"));
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();

    // Reads the client's lines; stops the replica (SIGTERM, a graceful shutdown) when the
    // client is ready for its Drain.
    let mut replica = Some(replica);
    let mut stopped = None;
    let mut steps: Vec<Value> = Vec::new();
    let mut done = false;
    let run = async {
        while let Some(line) = lines.next_line().await.expect("read the client's stdout") {
            match line.as_str() {
                "ready for drain" => {
                    let replica = replica.take().expect("one drain");
                    stopped = Some(tokio::task::spawn_blocking(move || replica.stop()));
                }
                "ok" => done = true,
                json => steps.push(serde_json::from_str(json).unwrap_or_else(|error| {
                    panic!("the client printed {json:?}, not JSON: {error}")
                })),
            }
        }
        child.wait().await.expect("wait for the client")
    };
    let status = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("the client finished in time");
    let stderr = stderr.await.expect("stderr reader");
    assert_ne!(status.code(), Some(2), "{stderr}\n{SETUP}");
    assert!(
        status.success() && done,
        "protocol_client.py failed ({status}): {stderr}\nsteps: {steps:#?}"
    );

    // Shown with --nocapture: what the client saw.
    for step in &steps {
        println!("{step}");
    }
    let by_name = |wanted: &str| -> &Value {
        steps
            .iter()
            .find(|s| s["step"] == wanted)
            .unwrap_or_else(|| panic!("no step {wanted:?} in {steps:#?}"))
    };
    let order: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        order,
        [
            "snapshot",
            "snapshot acked",
            "update",
            "update acked",
            "heartbeat",
            "drain",
            "closed"
        ]
    );

    let snapshot = by_name("snapshot");
    assert_eq!(snapshot["generation"], running);
    assert_eq!(snapshot["state"], "RUN_STATE_RUNNING");
    assert_eq!(
        snapshot["unknown_programs"],
        serde_json::json!(["no-such-program"])
    );
    assert_eq!(snapshot["on_lost_contact"], "LOST_CONTACT_PAUSE");

    let update = by_name("update");
    let paused = update["generation"].as_u64().expect("generation");
    assert!(paused > running, "{update}");
    assert_eq!(update["state"], "RUN_STATE_PAUSED");
    assert_eq!(update["purge"], true);
    assert_eq!(update["actor"], "protocol-client");

    let acked = by_name("update acked");
    assert_eq!(
        acked["counts"],
        serde_json::json!({"connected": 1, "acked": 1, "pending": 0, "errored": 0,
            "diverged": 0, "purged": 1}),
        "the true Ack counts, the forged one does not: {acked}"
    );

    let heartbeat = by_name("heartbeat");
    assert!(heartbeat["revision"].as_u64().expect("revision") >= paused);
    assert_eq!(heartbeat["valid_for_ms"], 600, "three 200 ms periods");

    let drain = by_name("drain");
    assert!(
        drain["reconnect_after_ms"].as_u64().expect("delay") <= 2000,
        "within the default drain spread: {drain}"
    );

    let stopped = stopped.expect("the replica was stopped");
    let clean = stopped.await.expect("stop task").expect("stop the replica");
    assert!(clean, "the replica exits cleanly after draining");
}
