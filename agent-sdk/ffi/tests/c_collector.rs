//! The C ABI end to end: the C demo collector (`examples/collector.c`) and
//! `tests/null_args.c`, compiled with `cc` against the committed header and
//! `libkillswitch.a`, run as real processes against a real etcd, real `killswitch-control`
//! replicas and the real `killswitch` CLI.
//!
//! Assertions are on what the C collector prints and what `killswitch status` reports,
//! polled with a deadline; nothing sleeps to synchronise.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use killswitch_testkit::{Etcd, Replica};
use serde_json::Value;

/// Generous: a loaded two-core machine must not fail a correct system.
const DEADLINE: Duration = Duration::from_secs(15);

/// Environment variables the CLI and the replica read: cleared so commands see only the
/// flags a test gives them.
const ENV: &[&str] = &[
    "KILLSWITCH_ENDPOINT",
    "KILLSWITCH_ACTOR",
    "KILLSWITCH_CA",
    "KILLSWITCH_CERT",
    "KILLSWITCH_KEY",
    "KILLSWITCH_TOKEN",
    "KILLSWITCH_SIGNING_KEY",
    "KILLSWITCH_DEMO_FAIL_PAUSE",
];

/// `target/<profile>/`, where cargo puts the library and the binaries.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_owned()
}

/// `target/<profile>/NAME`, built with `cargo build ARGS` first if missing.
fn artefact(name: &str, build: &[&str]) -> PathBuf {
    let path = profile_dir().join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .arg("build")
            .args(build)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build {build:?} failed");
    }
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The `killswitch` CLI.
fn cli_binary() -> PathBuf {
    artefact(
        "killswitch",
        &["-p", "killswitch-ops", "--bin", "killswitch"],
    )
}

/// The static library: `cargo test` builds every crate type of the library into
/// `target/<profile>/deps/` (as fresh as this test), `cargo build` copies it up to
/// `target/<profile>/`; the newer of the two, else built now.
fn static_library() -> PathBuf {
    let profile = profile_dir();
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    [
        profile.join("deps").join("libkillswitch.a"),
        profile.join("libkillswitch.a"),
    ]
    .into_iter()
    .filter_map(|path| Some((modified(&path)?, path)))
    .max()
    .map_or_else(
        || artefact("libkillswitch.a", &["-p", "killswitch-ffi", "--lib"]),
        |(_, path)| path,
    )
}

/// Compiles `source` (relative to this crate) with `cc` against the committed header and
/// the static library, once per test binary; returns the executable.
fn compile(source: &str, name: &str) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let library = static_library();
    let dir = profile_dir().join("killswitch-ffi-c");
    std::fs::create_dir_all(&dir).expect("create the C build dir");
    let out = dir.join(name);
    let compiled = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join(source))
        .arg(&library)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .output()
        .expect("run cc");
    assert!(
        compiled.status.success(),
        "cc {source} failed:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    out
}

/// The C demo collector, compiled once.
fn c_collector() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| compile("examples/collector.c", "collector-c"))
}

/// A C collector process; every line it prints (stdout, and stderr prefixed with `!`) is
/// kept for assertions. Killed when dropped.
struct CCollector {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads reading stdout and stderr, done at the process's exit.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl CCollector {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(c_collector());
        for var in ENV {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the C collector");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (stream, prefix) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, ""),
            (Box::new(stderr), "! "),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("lines").push(format!("{prefix}{line}"));
                }
            }));
        }
        Self {
            child,
            lines,
            readers,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Waits for a printed line (stdout) containing every one of `parts`; returns it.
    async fn line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found = self
                .lines()
                .into_iter()
                .find(|line| !line.starts_with('!') && parts.iter().all(|p| line.contains(p)));
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a line with {parts:?}; the collector printed:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then the exit: it must be clean (0) and say it stopped.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM");
        let exit = self.child.wait().expect("wait for the C collector");
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        let lines = self.lines();
        assert!(
            exit.success(),
            "the C collector exits 0 on SIGTERM, not {exit}:\n{}",
            lines.join("\n")
        );
        assert!(
            lines.iter().any(|line| line.ends_with("] stopped")),
            "{}",
            lines.join("\n")
        );
    }
}

impl Drop for CCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CLI against one replica, with the flags that authenticate it.
struct Cli {
    base: Vec<String>,
}

impl Cli {
    /// Runs it; the exit code, stdout and stderr.
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = tokio::process::Command::new(cli_binary());
        for var in ENV {
            command.env_remove(var);
        }
        let output = command
            .args(&self.base)
            .args(args)
            .output()
            .await
            .expect("run killswitch");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (
            output.status.code().unwrap_or(-1),
            text(&output.stdout),
            text(&output.stderr),
        )
    }

    /// Runs it with `--output json`, expecting exit 0.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.run(&all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stdout}{stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
    }

    /// Polls `status PROGRAM` until `done` holds; returns that status.
    async fn status_until(
        &self,
        program: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = self.json(&["status", program]).await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// etcd and one plain-text (`--insecure-dev`) replica; the CLI acts as `responder`.
struct Plain {
    replica: Option<Replica>,
    cli: Cli,
    _etcd: Etcd,
}

impl Plain {
    async fn start() -> Self {
        let etcd = Etcd::start().await.expect("start etcd");
        let replica = Replica::start(
            etcd.endpoint(),
            &["--heartbeat-interval", "1s", "--replica-id", "r1"],
        )
        .expect("start replica");
        let endpoint = replica.endpoint();
        Self {
            replica: Some(replica),
            cli: Cli {
                base: ["--endpoint", &endpoint, "--actor", "responder"]
                    .map(String::from)
                    .to_vec(),
            },
            _etcd: etcd,
        }
    }

    fn endpoint(&self) -> String {
        self.replica.as_ref().expect("replica running").endpoint()
    }
}

#[tokio::test]
async fn a_c_collector_connects_over_mtls_closes_its_gate_on_pause_and_acknowledges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dir.path().join("pki");
    let file = |name: &str| pki.join(name).to_str().expect("utf-8 path").to_owned();
    let init = Command::new(cli_binary())
        .args(["certs", "init"])
        .arg(&pki)
        .output()
        .expect("run killswitch certs init");
    assert!(
        init.status.success(),
        "certs init failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let etcd = Etcd::start().await.expect("start etcd");
    let replica = Replica::start(
        etcd.endpoint(),
        &[
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server-key.pem"),
            "--client-ca",
            &file("ca.pem"),
            "--auth-file",
            &file("auth.toml"),
            "--heartbeat-interval",
            "1s",
            "--replica-id",
            "r1",
        ],
    )
    .expect("start replica");
    let endpoint = replica.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let alice = Cli {
        base: vec![
            "--endpoint".into(),
            endpoint.clone(),
            "--ca".into(),
            file("ca.pem"),
            "--cert".into(),
            file("operator-alice.pem"),
            "--key".into(),
            file("operator-alice-key.pem"),
        ],
    };
    alice
        .json(&["program", "create", "demo", "--owner", "data-team"])
        .await;
    alice.json(&["resume", "demo", "--reason", "go"]).await;

    let collector = CCollector::start(
        &[
            "--endpoint",
            &endpoint,
            "--id",
            "collector-1",
            "--program",
            "demo",
            "--label",
            "region=eu",
            "--ca",
            &file("ca.pem"),
            "--cert",
            &file("collector-1.pem"),
            "--key",
            &file("collector-1-key.pem"),
        ],
        &[],
    );
    collector
        .line(&["[collector-1] demo: RUNNING (update) at generation"])
        .await;
    let status = alice
        .status_until("demo", "the C collector to connect and acknowledge", |s| {
            s["collectors"]["connected"] == 1 && s["collectors"]["acked"] == 1
        })
        .await;
    assert_eq!(status["collectors"]["errored_count"], 0, "{status}");
    collector.line(&["demo: collecting, "]).await;

    let paused = alice
        .json(&["pause", "demo", "--reason", "leak", "--wait", "10s"])
        .await;
    assert_eq!(paused["changed"], true, "{paused}");
    collector
        .line(&[
            "demo: PAUSED (update) at generation",
            "(reason: leak) by alice",
        ])
        .await;
    let status = alice.json(&["status", "demo"]).await;
    assert_eq!(status["collectors"]["connected"], 1, "{status}");
    assert_eq!(status["collectors"]["acked"], 1, "{status}");
    assert_eq!(status["collectors"]["errored_count"], 0, "{status}");
    collector.line(&["demo: paused, "]).await;
    collector.terminate();
    drop(replica);
}

#[tokio::test]
async fn a_failing_c_pause_hook_is_an_errored_ack_with_its_message() {
    let system = Plain::start().await;
    system
        .cli
        .json(&["program", "create", "demo", "--owner", "data-team"])
        .await;
    system.cli.json(&["resume", "demo", "--reason", "go"]).await;
    let endpoint = system.endpoint();
    let collector = CCollector::start(
        &["--endpoint", &endpoint, "--id", "c1", "--program", "demo"],
        &[("KILLSWITCH_DEMO_FAIL_PAUSE", "disk full: cannot flush")],
    );
    collector.line(&["[c1] demo: RUNNING (update)"]).await;

    system
        .cli
        .json(&["pause", "demo", "--reason", "drill"])
        .await;
    collector.line(&["[c1] demo: PAUSED (update)"]).await;
    let status = system
        .cli
        .status_until("demo", "the failed pause hook's ack", |s| {
            s["collectors"]["errored_count"] == 1
        })
        .await;
    assert_eq!(status["errors"][0]["collector_id"], "c1", "{status}");
    let error = status["errors"][0]["error"].as_str().expect("error text");
    assert!(error.contains("disk full: cannot flush"), "{status}");
    // Pause always wins: the gate closed although the hook failed.
    collector.line(&["[c1] demo: paused, "]).await;
    collector.terminate();
}

#[tokio::test]
async fn a_c_collector_fails_closed_after_the_grace_when_its_replica_dies() {
    let mut system = Plain::start().await;
    system
        .cli
        .json(&["program", "create", "demo", "--owner", "t", "--grace", "2s"])
        .await;
    system.cli.json(&["resume", "demo", "--reason", "go"]).await;
    let endpoint = system.endpoint();
    let collector = CCollector::start(
        &["--endpoint", &endpoint, "--id", "c1", "--program", "demo"],
        &[],
    );
    collector.line(&["[c1] demo: RUNNING (update)"]).await;

    system.replica = None; // SIGKILL
    let killed = Instant::now();
    let line = collector
        .line(&["[c1] demo: PAUSED (lost contact) at generation"])
        .await;
    let after = killed.elapsed();
    // The last heartbeat came at most 1 s before the kill; the grace is 2 s.
    assert!(
        after >= Duration::from_millis(900),
        "closed {after:?} after the kill, before the grace: {line}"
    );
    collector.line(&["[c1] demo: paused, "]).await;
    collector.terminate();
}

#[tokio::test]
async fn a_c_collector_stays_paused_after_a_restart_from_its_state_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state_file = dir.path().join("c1.state");
    let state_file = state_file.to_str().expect("utf-8 path");
    let system = Plain::start().await;
    // Both fail open: without contact, only the state file decides.
    for program in ["demo", "kept"] {
        system
            .cli
            .json(&[
                "program",
                "create",
                program,
                "--owner",
                "t",
                "--on-lost-contact",
                "keep",
            ])
            .await;
        system
            .cli
            .json(&["resume", program, "--reason", "go"])
            .await;
    }
    system
        .cli
        .json(&["pause", "demo", "--reason", "leak"])
        .await;
    let args = |endpoint: &str| {
        [
            "--endpoint",
            endpoint,
            "--id",
            "c1",
            "--program",
            "demo",
            "--program",
            "kept",
            "--state-file",
            state_file,
        ]
        .map(String::from)
    };
    let endpoint = system.endpoint();
    let first_args = args(&endpoint);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let first = CCollector::start(&first_args, &[]);
    first.line(&["[c1] demo: PAUSED (update)"]).await;
    first.line(&["[c1] kept: RUNNING (update)"]).await;
    for program in ["demo", "kept"] {
        system
            .cli
            .status_until(program, "the C collector's ack", |s| {
                s["collectors"]["acked"] == 1
            })
            .await;
    }
    first.terminate();
    drop(system);

    // No control plane in reach: the state file says `kept` runs and `demo` is paused.
    let offline_args = args("http://127.0.0.1:1");
    let offline_args: Vec<&str> = offline_args.iter().map(String::as_str).collect();
    let offline = CCollector::start(&offline_args, &[]);
    offline.line(&["[c1] kept: RUNNING (state file)"]).await;
    offline.line(&["[c1] kept: collecting, "]).await;
    offline
        .line(&["[c1] demo: paused, 0 events captured"])
        .await;
    let lines = offline.lines();
    assert!(
        !lines.iter().any(|line| line.contains("demo: RUNNING")),
        "demo resumed after the restart:\n{}",
        lines.join("\n")
    );
    offline.terminate();
}

#[test]
fn every_entry_point_refuses_null_and_invalid_arguments_with_an_error_code() {
    let binary = compile("tests/null_args.c", "null-args");
    let output = Command::new(binary).output().expect("run null-args");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "null-args failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
