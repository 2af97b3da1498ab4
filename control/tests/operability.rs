//! What operators and their tools see of a replica from outside: `grpc.health.v1` and
//! server reflection through a gRPC client that is not ours (Python grpcio, driven by
//! `tests/grpc_probe.py`), and the effective configuration of the real binary
//! (`--print-config`) from a config file, the environment and flags.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use killswitch_testkit::{Etcd, Replica, control_binary, wait_until};
use serde_json::Value;

/// The Python probe: Health/Check for each service, then reflection's service list.
const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc_probe.py");

/// Generous for a loaded two-core machine; the test normally takes a few seconds.
const DEADLINE: Duration = Duration::from_secs(15);

/// The services whose health follows the etcd watch.
const CHECKED: [&str; 3] = [
    "",
    "killswitch.v1.CollectorService",
    "killswitch.v1.AdminService",
];

/// Runs the probe against `addr`; fails the test, saying how to install what is
/// missing, when python3 or its gRPC modules are not there.
async fn probe(addr: std::net::SocketAddr) -> Value {
    let mut command = tokio::process::Command::new("python3");
    command.arg(PROBE).arg(addr.to_string());
    for service in CHECKED {
        command.args(["--service", service]);
    }
    let output = match command.output().await {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run python3 ({error}): run ops/scripts/setup.sh to install python3's grpcio, grpcio-health-checking and grpcio-reflection"
        ),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "grpc_probe.py failed ({}): {stderr}\nrun ops/scripts/setup.sh to install python3's grpcio, grpcio-health-checking and grpcio-reflection",
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "grpc_probe.py printed no JSON ({error}): {}{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Whether every checked service reports `status`.
fn all_report(report: &Value, status: &str) -> bool {
    CHECKED
        .iter()
        .all(|service| report["health"][service].as_str() == Some(status))
}

/// Probes until every checked service reports `status`; returns that report.
async fn until_health(addr: std::net::SocketAddr, status: &str) -> Value {
    let last = Arc::new(Mutex::new(Value::Null));
    let waited = wait_until(DEADLINE, &format!("health {status}"), || {
        let last = last.clone();
        async move {
            let report = probe(addr).await;
            let done = all_report(&report, status);
            *last.lock().expect("last report") = report;
            done
        }
    })
    .await;
    let last = last.lock().expect("last report").clone();
    if let Err(error) = waited {
        panic!("{error}; last probe: {last}");
    }
    last
}

#[tokio::test]
async fn health_follows_the_etcd_watch_and_reflection_lists_the_services() {
    let etcd = Etcd::start().await.expect("start etcd");
    // The watch is declared unhealthy after two silent probe (heartbeat) intervals.
    let replica =
        Replica::start(etcd.endpoint(), &["--heartbeat-interval", "200ms"]).expect("start replica");
    let addr = replica.addr();

    let report = until_health(addr, "SERVING").await;
    let services: Vec<&str> = report["services"]
        .as_array()
        .unwrap_or_else(|| panic!("reflection listed no services: {report}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for service in [
        "killswitch.v1.AdminService",
        "killswitch.v1.CollectorService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&service),
            "reflection lacks {service}: {report}"
        );
    }

    // etcd frozen: the watch stops answering its progress probes, so the replica stops
    // vouching and load balancers are told to look elsewhere.
    etcd.signal("STOP").expect("stop etcd");
    until_health(addr, "NOT_SERVING").await;

    etcd.signal("CONT").expect("continue etcd");
    until_health(addr, "SERVING").await;
}

/// Runs `killswitch-control --print-config` with `args` and `env` (and no other
/// `KILLSWITCH_*` variable); returns the exit code, stdout and stderr.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(control_binary().expect("killswitch-control binary"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KILLSWITCH_") {
            command.env_remove(name);
        }
    }
    let output = command
        .envs(env.iter().copied())
        .args(args)
        .arg("--print-config")
        .output()
        .expect("run killswitch-control");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The value of `key` in printed TOML.
fn setting(printed: &str, key: &str) -> toml::Value {
    let table: toml::Table = printed
        .parse()
        .unwrap_or_else(|error| panic!("--print-config printed bad TOML ({error}):\n{printed}"));
    table
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("--print-config lacks {key}:\n{printed}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config file");
    path.to_str().expect("utf-8 temp path").to_owned()
}

#[test]
fn print_config_takes_the_file_then_the_environment_then_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "control.toml",
        "heartbeat_interval = \"1s\"\nprefix = \"/from-file\"\n",
    );
    #[track_caller]
    fn check(file: Option<&str>, env: Option<&str>, flag: Option<&str>, expected: &str) {
        let mut args = vec![];
        if let Some(file) = file {
            args.extend(["--config", file]);
        }
        if let Some(flag) = flag {
            args.extend(["--heartbeat-interval", flag]);
        }
        let env: Vec<_> = env
            .map(|value| ("KILLSWITCH_HEARTBEAT_INTERVAL", value))
            .into_iter()
            .collect();
        let (code, stdout, stderr) = print_config(&args, &env);
        assert_eq!(code, 0, "{args:?} {env:?}: {stderr}");
        assert_eq!(
            setting(&stdout, "heartbeat_interval").as_str(),
            Some(expected),
            "file {}, env {env:?}, flag {flag:?}:\n{stdout}",
            file.is_some()
        );
    }
    let f = Some(file.as_str());
    check(None, None, None, "10s");
    check(f, None, None, "1s");
    check(None, Some("2s"), None, "2s");
    check(None, None, Some("3s"), "3s");
    check(f, Some("2s"), None, "2s");
    check(f, None, Some("3s"), "3s");
    check(None, Some("2s"), Some("3s"), "3s");
    check(f, Some("2s"), Some("3s"), "3s");

    // The file's other settings still apply, a secret is redacted, and the file can be
    // named by the environment.
    let (code, stdout, stderr) = print_config(
        &[],
        &[
            ("KILLSWITCH_CONFIG", &file),
            ("KILLSWITCH_ETCD_USER", "killswitch"),
            ("KILLSWITCH_ETCD_PASSWORD", "hunter2"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(setting(&stdout, "prefix").as_str(), Some("/from-file"));
    assert_eq!(setting(&stdout, "heartbeat_interval").as_str(), Some("1s"));
    assert_eq!(
        setting(&stdout, "etcd_password").as_str(),
        Some("<redacted>")
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[test]
fn a_bad_config_file_is_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "heartbeat_intervall = \"1s\"",
            "unknown field `heartbeat_intervall`",
        ),
        ("heartbeat_interval = \"fast\"", "invalid duration \"fast\""),
        ("heartbeat_interval = \"10ms\"", "heartbeat_interval"),
        (
            "insecure_dev = true\ntls_cert = \"server.pem\"",
            "insecure_dev",
        ),
        ("listen = [", "listen"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad-{i}.toml"), text);
        let (code, stdout, stderr) = print_config(&["--config", &file], &[]);
        assert_eq!(code, 1, "{text:?} was accepted:\n{stdout}");
        assert!(
            stderr.contains(needle),
            "{text:?}: no {needle:?} in {stderr}"
        );
        if !text.contains("10ms") && !text.contains("insecure_dev") {
            assert!(
                stderr.contains(&file),
                "{text:?}: the file is not named: {stderr}"
            );
        }
    }
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().expect("utf-8 temp path");
    let (code, _, stderr) = print_config(&["--config", missing], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot read config file {missing}")),
        "{stderr}"
    );
}

#[test]
fn the_example_deployment_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/control.toml");
    let (code, stdout, stderr) = print_config(&["--config", example], &[]);
    assert_eq!(code, 0, "deploy/control.toml is refused: {stderr}");
    assert_eq!(setting(&stdout, "replica_id").as_str(), Some("cp-1"));
    let etcd = setting(&stdout, "etcd");
    assert_eq!(etcd.as_array().map(Vec::len), Some(3), "{stdout}");
}
