//! Operability through the real binaries: shell completions and the manual page from
//! `killswitch`, and health checks and reflection on a TLS replica from a client that
//! holds no credential (Python grpcio, as a load balancer or `grpcurl` would call it).

mod common;

use std::time::Duration;

use common::{Pki, killswitch, path, text};
use killswitch_testkit::{Etcd, Replica, wait_until};
use serde_json::Value;

/// The Python probe of `control/tests/operability.rs`.
const PROBE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../control/tests/grpc_probe.py"
);

#[test]
fn completions_cover_the_core_commands_in_every_common_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = killswitch(&["completions", shell]);
        let script = text(&output.stdout);
        assert!(
            output.status.success(),
            "completions {shell} failed: {}",
            text(&output.stderr)
        );
        for command in ["pause", "resume", "status", "program", "audit"] {
            assert!(
                script.contains(command),
                "{shell} completions do not mention {command}:\n{script}"
            );
        }
    }
    // Flags of a subcommand are completed too.
    let bash = text(&killswitch(&["completions", "bash"]).stdout);
    assert!(bash.contains("--reason"), "{bash}");

    let output = killswitch(&["completions", "tcsh"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(text(&output.stderr).contains("tcsh"));
}

#[test]
fn the_manual_page_documents_the_commands() {
    let output = killswitch(&["man"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let page = text(&output.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH killswitch"),
        "{page}"
    );
    for needle in [
        "Pause and resume data",
        "pause",
        "resume",
        "status",
        "timed out waiting for acknowledgements",
    ] {
        assert!(page.contains(needle), "the manual lacks {needle}:\n{page}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let output = killswitch(&["man", "--dir", path(dir.path())]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for page in [
        "killswitch.1",
        "killswitch-pause.1",
        "killswitch-program-create.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page} not written");
    }

    let missing = dir.path().join("no/such/dir");
    let output = killswitch(&["man", "--dir", path(&missing)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("cannot write the manual pages"),
        "{}",
        text(&output.stderr)
    );
}

/// Probes `addr` over TLS trusting `ca`, without a client certificate or token.
async fn probe_tls(addr: std::net::SocketAddr, ca: &std::path::Path) -> Value {
    let output = tokio::process::Command::new("python3")
        .arg(PROBE)
        .arg(addr.to_string())
        .args(["--ca", path(ca)])
        .args(["--service", "", "--service", "killswitch.v1.AdminService"])
        .output()
        .await
        .unwrap_or_else(|error| {
            panic!("cannot run python3 ({error}): run ops/scripts/setup.sh to install it and its grpcio modules")
        });
    assert!(
        output.status.success(),
        "grpc_probe.py failed ({}): {}\nrun ops/scripts/setup.sh to install grpcio, grpcio-health-checking and grpcio-reflection",
        output.status,
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON from grpc_probe.py ({error})"))
}

#[tokio::test]
async fn health_and_reflection_need_no_credentials_over_tls() {
    let pki = Pki::init(&[]);
    let etcd = Etcd::start().await.expect("start etcd");
    let mut args = pki.server_flags();
    args.extend(["--heartbeat-interval", "200ms"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = Replica::start(etcd.endpoint(), &args).expect("start TLS replica");

    let (ca, addr) = (pki.file("ca.pem"), replica.addr());
    let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let serving = wait_until(Duration::from_secs(15), "health SERVING over TLS", || {
        let (last, ca) = (last.clone(), ca.clone());
        async move {
            let report = probe_tls(addr, &ca).await;
            let done = ["", "killswitch.v1.AdminService"]
                .iter()
                .all(|service| report["health"][service] == "SERVING");
            *last.lock().expect("last report") = report;
            done
        }
    })
    .await;
    let report = last.lock().expect("last report").clone();
    serving.unwrap_or_else(|error| panic!("{error}; last probe: {report}"));
    let services = report["services"].to_string();
    for service in [
        "killswitch.v1.AdminService",
        "killswitch.v1.CollectorService",
    ] {
        assert!(
            services.contains(service),
            "reflection lacks {service}: {report}"
        );
    }

    // The same caller is still refused by the admin API: only health and reflection are
    // open.
    let output = killswitch(&[
        "--endpoint",
        &replica.endpoint(),
        "--ca",
        path(&ca),
        "program",
        "list",
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
}

#[test]
fn local_commands_speak_json_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dir.path().join("pki");
    let out = killswitch(&[
        "--output",
        "json",
        "certs",
        "init",
        path(&pki),
        "--collectors",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let certs: Value = serde_json::from_slice(&out.stdout).expect("certs init JSON");
    let files = certs["files"].as_array().expect("files");
    assert!(
        files
            .iter()
            .any(|f| f["path"].as_str().is_some_and(|p| p.ends_with("ca.pem")))
    );
    assert!(
        files
            .iter()
            .all(|f| std::path::Path::new(f["path"].as_str().expect("path")).is_file())
    );

    let out = killswitch(&[
        "--output", "json", "token", "new", "dana", "--role", "viewer",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token: Value = serde_json::from_slice(&out.stdout).expect("token new JSON");
    assert_eq!(token["name"], "dana");
    assert!(token["token"].as_str().is_some_and(|t| t.len() > 20));
    assert!(
        token["auth_toml_entry"]
            .as_str()
            .is_some_and(|e| e.contains("token_sha256"))
    );

    let out = killswitch(&[
        "--output",
        "json",
        "keys",
        "new",
        "dana",
        "--out",
        path(dir.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key: Value = serde_json::from_slice(&out.stdout).expect("keys new JSON");
    assert_eq!(key["public_key"].as_str().map(str::len), Some(64));
    assert!(std::path::Path::new(key["path"].as_str().expect("path")).is_file());
}
