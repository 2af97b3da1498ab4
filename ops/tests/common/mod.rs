//! The harness shared by the end-to-end tests: a real etcd, real `killswitch-control`
//! processes, the real `killswitch` binary and real SDK clients.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use killswitch_sdk::{Cause, Client, Gate, HookResult, StateEvent};
use killswitch_testkit::{Etcd, Replica, wait_until};
use serde_json::Value;

/// Generous: a loaded two-core machine must not fail a correct system.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// etcd and control replicas `r1`, `r2`, ... (dropped before etcd, so they never see it
/// vanish).
pub struct System {
    pub replicas: Vec<Option<Replica>>,
    pub etcd: Etcd,
    /// The flags each replica was started with, to restart it the same way.
    args: Vec<Vec<String>>,
}

impl System {
    /// etcd and one replica.
    pub async fn start() -> Self {
        Self::with_replicas(1, &[]).await
    }

    /// etcd and `n` replicas, each started with `extra` flags.
    pub async fn with_replicas(n: usize, extra: &[&str]) -> Self {
        Self::on(Etcd::start().await.expect("start etcd"), n, extra)
    }

    /// A three-member etcd cluster and `n` replicas that know every member.
    pub async fn cluster(n: usize, extra: &[&str]) -> Self {
        Self::on(Etcd::cluster(3).await.expect("start etcd"), n, extra)
    }

    fn on(etcd: Etcd, n: usize, extra: &[&str]) -> Self {
        let args: Vec<Vec<String>> = (1..=n)
            .map(|i| {
                let id = format!("r{i}");
                ["--heartbeat-interval", "1s", "--replica-id", &id]
                    .iter()
                    .chain(extra)
                    .map(|a| (*a).to_owned())
                    .collect()
            })
            .collect();
        let replicas = args
            .iter()
            .map(|args| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Some(Replica::start(&etcd.endpoints_arg(), &args).expect("start replica"))
            })
            .collect();
        Self {
            replicas,
            etcd,
            args,
        }
    }

    /// Replicas a test started itself, with its own flags (not restartable).
    pub fn of(etcd: Etcd, replicas: Vec<Replica>) -> Self {
        Self {
            replicas: replicas.into_iter().map(Some).collect(),
            etcd,
            args: Vec::new(),
        }
    }

    /// Stops replica `i` gracefully (SIGTERM: it drains its collectors) and starts it
    /// again on the same address.
    pub async fn restart(&mut self, i: usize) {
        assert!(i < self.args.len(), "replica {i} was not started by System");
        let old = self.replicas[i].take().expect("replica running");
        let addr = old.addr();
        // Waiting for the exit blocks, and the collectors in this test's runtime must keep
        // running meanwhile to leave the draining replica.
        let stopped = tokio::task::spawn_blocking(move || old.stop())
            .await
            .expect("stop task");
        assert!(stopped.expect("stop replica"), "replica {i} exited cleanly");
        let args: Vec<&str> = self.args[i].iter().map(String::as_str).collect();
        self.replicas[i] = Some(
            Replica::start_on(addr, &self.etcd.endpoints_arg(), &args).expect("restart replica"),
        );
    }

    /// Every replica's endpoint, starting with replica `first`: the order a collector
    /// tries them in.
    pub fn endpoints_from(&self, first: usize) -> Vec<String> {
        let n = self.replicas.len();
        (0..n).map(|k| self.endpoint((first + k) % n)).collect()
    }

    /// The endpoint of replica `i` (0-based).
    pub fn endpoint(&self, i: usize) -> String {
        self.replicas[i]
            .as_ref()
            .expect("replica running")
            .endpoint()
    }

    /// Kills replica `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        self.replicas[i] = None;
    }

    /// Runs the CLI against the first running replica.
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let i = self
            .replicas
            .iter()
            .position(Option::is_some)
            .expect("a running replica");
        self.cli_at(i, args).await
    }

    /// Runs the CLI against replica `i`; returns the exit code, stdout and stderr.
    pub async fn cli_at(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_killswitch"))
            .args(["--endpoint", &self.endpoint(i), "--actor", "responder"])
            .args(args)
            .output()
            .await
            .expect("run killswitch");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8 output");
        (
            output.status.code().unwrap_or(-1),
            text(output.stdout),
            text(output.stderr),
        )
    }

    /// Runs the CLI with `--output json` against the first running replica, expecting
    /// success.
    pub async fn json(&self, args: &[&str]) -> Value {
        let i = self
            .replicas
            .iter()
            .position(Option::is_some)
            .expect("a running replica");
        self.json_at(i, args).await
    }

    /// Runs the CLI with `--output json` against replica `i`, expecting success.
    pub async fn json_at(&self, i: usize, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.cli_at(i, &all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stderr}");
        parse(&stdout)
    }

    pub async fn create(&self, program: &str) {
        self.json(&["program", "create", program, "--owner", "data-team"])
            .await;
    }

    /// Pauses or resumes and returns the new generation.
    pub async fn change(&self, verb: &str, program: &str) -> u64 {
        let change = self
            .json(&[verb, program, "--reason", "end-to-end test"])
            .await;
        assert_eq!(
            change["changed"], true,
            "{verb} changed the state: {change}"
        );
        change["generation"].as_u64().expect("generation")
    }

    /// Waits until every running replica's cache holds `program` at its current
    /// generation (a replica republishes its summary when a generation moves), so that a
    /// collector connecting now is sent that state, not an older one a replica still had.
    pub async fn caught_up(&self, program: &str) {
        let live = self.replicas.iter().flatten().count();
        let i = self
            .replicas
            .iter()
            .position(Option::is_some)
            .expect("a running replica");
        self.status_until(i, program, "every replica to catch up", |s| {
            s["replicas_behind"].as_array().is_none_or(Vec::is_empty)
                && s["replicas"].as_array().is_some_and(|r| r.len() == live)
        })
        .await;
    }

    /// Polls `status --output json` at replica `i` until `done` holds; returns that status.
    pub async fn status_until(
        &self,
        i: usize,
        program: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let args = ["status", program];
        poll_status(what, || self.json_at(i, &args), done).await
    }

    /// A collector of `programs` connected to replica 0.
    pub fn collector(&self, id: &str, programs: &[&str]) -> Collector {
        Collector::builder(id, programs).start(&[self.endpoint(0)])
    }
}

/// The demo collector (`agent-sdk/examples/collector.rs`), built by `ops/scripts/test.sh`
/// before the tests run: a collector in its own process, for faults a process suffers.
pub fn demo_collector() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    let binary = profile.join("examples").join("collector");
    assert!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --examples` (ops/scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// A demo collector process following `demo`, continued and killed when dropped, for
/// faults a process suffers (SIGSTOP).
pub struct CollectorProcess(std::process::Child);

impl CollectorProcess {
    /// Starts the demo collector `id` against `endpoint` with further `args` (labels, TLS).
    pub fn start(endpoint: &str, id: &str, args: &[&str]) -> Self {
        let child = std::process::Command::new(demo_collector())
            .args(["--endpoint", endpoint, "--id", id, "--program", "demo"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the demo collector");
        Self(child)
    }

    /// Sends it `signal` (`STOP`, `CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Parses the CLI's JSON output.
pub fn parse(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

type Hook = Arc<dyn Fn(&StateEvent) -> HookResult + Send + Sync>;

/// A hook call a collector saw: which hook, for which program and generation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub hook: &'static str,
    pub program: String,
    pub generation: u64,
    pub cause: Cause,
    pub at: Instant,
}

/// Builds a [`Collector`] with optional hook behaviour.
pub struct CollectorBuilder {
    id: String,
    programs: Vec<String>,
    on_pause: Option<Hook>,
    on_resume: Option<Hook>,
    hook_timeout: Option<Duration>,
    state_file: Option<PathBuf>,
    labels: BTreeMap<String, String>,
    /// CA, certificate and key, PEM.
    tls: Option<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

impl CollectorBuilder {
    /// Sets a label the collector sends in Hello (replacing the default `region=test`
    /// when the key is `region`).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Leaves the label `key` out of Hello (also the default `region`).
    pub fn without_label(mut self, key: &str) -> Self {
        self.labels.remove(key);
        self
    }

    /// Connects with TLS, trusting the CA `ca` and presenting `cert` with `key` (PEM).
    pub fn tls(mut self, ca: Vec<u8>, cert: Vec<u8>, key: Vec<u8>) -> Self {
        self.tls = Some((ca, cert, key));
        self
    }

    /// Runs `hook` inside the pause hook (after it is counted).
    pub fn on_pause(
        mut self,
        hook: impl Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
    ) -> Self {
        self.on_pause = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` inside the resume hook (after it is counted).
    pub fn on_resume(
        mut self,
        hook: impl Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
    ) -> Self {
        self.on_resume = Some(Arc::new(hook));
        self
    }

    /// Sets the SDK's hook timeout.
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hook_timeout = Some(timeout);
        self
    }

    /// Sets the SDK's state file.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Starts the client against `endpoints`.
    pub fn start(self, endpoints: &[String]) -> Collector {
        let (pauses, resumes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let last_pause = Arc::new(AtomicU64::new(0));
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let record = |hook: &'static str, calls: Arc<Mutex<Vec<Call>>>| {
            move |event: &StateEvent| {
                calls.lock().expect("calls").push(Call {
                    hook,
                    program: event.program.clone(),
                    generation: event.generation,
                    cause: event.cause,
                    at: Instant::now(),
                });
            }
        };
        let (p, r, l) = (pauses.clone(), resumes.clone(), last_pause.clone());
        let (record_pause, record_resume) = (
            record("pause", calls.clone()),
            record("resume", calls.clone()),
        );
        let (extra_pause, extra_resume) = (self.on_pause, self.on_resume);
        let mut builder = Client::builder()
            .endpoints(endpoints.iter().cloned())
            .collector_id(self.id.as_str())
            .on_pause(move |event| {
                p.fetch_add(1, Ordering::SeqCst);
                l.store(event.generation, Ordering::SeqCst);
                record_pause(event);
                extra_pause.as_ref().map_or(Ok(()), |hook| hook(event))
            })
            .on_resume(move |event| {
                r.fetch_add(1, Ordering::SeqCst);
                record_resume(event);
                extra_resume.as_ref().map_or(Ok(()), |hook| hook(event))
            });
        for program in self.programs {
            builder = builder.program(program);
        }
        for (key, value) in self.labels {
            builder = builder.label(key, value);
        }
        if let Some(timeout) = self.hook_timeout {
            builder = builder.hook_timeout(timeout);
        }
        if let Some(path) = self.state_file {
            builder = builder.state_file(path);
        }
        if let Some((ca, cert, key)) = self.tls {
            builder = builder.tls(ca, cert, key);
        }
        Collector {
            client: builder.start().expect("start collector"),
            pauses,
            resumes,
            last_pause,
            calls,
        }
    }
}

/// A real SDK client that counts its hook calls.
///
/// A collector that connects while a replica's cache still holds the program's initial
/// PAUSED state runs its pause hook for it, so tests count hooks relative to a baseline or
/// check the generation the last pause hook saw.
pub struct Collector {
    pub client: Client,
    pub pauses: Arc<AtomicUsize>,
    pub resumes: Arc<AtomicUsize>,
    last_pause: Arc<AtomicU64>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Collector {
    pub fn builder(id: &str, programs: &[&str]) -> CollectorBuilder {
        CollectorBuilder {
            id: id.to_owned(),
            programs: programs.iter().map(|p| (*p).to_owned()).collect(),
            on_pause: None,
            on_resume: None,
            hook_timeout: None,
            state_file: None,
            labels: BTreeMap::from([("region".to_owned(), "test".to_owned())]),
            tls: None,
        }
    }

    pub fn gate(&self, program: &str) -> Gate {
        self.client.gate(program).expect("program registered")
    }

    pub fn applied(&self, program: &str) -> Option<u64> {
        self.client.applied_generation(program)
    }

    pub fn pauses(&self) -> usize {
        self.pauses.load(Ordering::SeqCst)
    }

    /// Every hook call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// The generation the last pause hook ran for, 0 before any.
    pub fn last_pause(&self) -> u64 {
        self.last_pause.load(Ordering::SeqCst)
    }

    pub fn resumes(&self) -> usize {
        self.resumes.load(Ordering::SeqCst)
    }
}

/// Unblocks the hooks of [`blocking_hook`] when dropped.
pub struct Release(Arc<Mutex<bool>>);

impl Drop for Release {
    fn drop(&mut self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
    }
}

/// A hook that blocks until the [`Release`] is dropped, also when the test fails (the
/// runtime waits for blocking hooks before it shuts down).
pub fn blocking_hook() -> (
    Release,
    impl Fn(&StateEvent) -> HookResult + Send + Sync + 'static,
) {
    let release = Release(Arc::new(Mutex::new(false)));
    let released = release.0.clone();
    let hook = move |_: &StateEvent| {
        while !*released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    };
    (release, hook)
}

/// Reads a status with `read` every 50 ms until `done` holds for it, and returns it;
/// panics with the last one read after [`DEADLINE`].
pub async fn poll_status<F, Fut>(what: &str, read: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = read().await;
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last status: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `condition` holds, failing the test after [`DEADLINE`].
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    wait_until(DEADLINE, what, || std::future::ready(condition()))
        .await
        .expect("condition within deadline");
}

/// Environment variables the CLI and the replica read: cleared for commands that must
/// see only the flags a test gives them.
pub const ENV: &[&str] = &[
    "KILLSWITCH_ENDPOINT",
    "KILLSWITCH_ACTOR",
    "KILLSWITCH_CA",
    "KILLSWITCH_CERT",
    "KILLSWITCH_KEY",
    "KILLSWITCH_TOKEN",
    "KILLSWITCH_TLS_CERT",
    "KILLSWITCH_TLS_KEY",
    "KILLSWITCH_CLIENT_CA",
    "KILLSWITCH_AUTH_FILE",
    "KILLSWITCH_INSECURE_DEV",
    "KILLSWITCH_SIGNING_KEY",
];

/// Runs the `killswitch` binary with `args` and none of [`ENV`] (blocking: for set-up
/// commands such as `certs init`, before any collector runs in the test's runtime).
pub fn killswitch(args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_killswitch"));
    for var in ENV {
        command.env_remove(var);
    }
    command.args(args).output().expect("run killswitch")
}

/// A temp path as a command-line argument.
pub fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Command output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A development PKI made by `killswitch certs init` in a temp dir, for the TLS tests:
/// the replica's flags, operator CLI calls by certificate, and files for SDK clients.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// `certs init` with these `--operator NAME:ROLE` entries (none: its defaults, alice
    /// admin and bob responder).
    pub fn init(operators: &[&str]) -> Self {
        let mut args = Vec::new();
        for operator in operators {
            args.extend(["--operator", *operator]);
        }
        Self::init_with(&args)
    }

    /// `certs init` with further flags, e.g. `--collectors 50`.
    pub fn init_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = dir.path().join("pki");
        let mut args = vec!["certs", "init", path(&pki)];
        args.extend_from_slice(flags);
        let init = killswitch(&args);
        assert!(
            init.status.success(),
            "certs init failed: {}",
            text(&init.stderr)
        );
        Self { dir }
    }

    /// The temp dir the PKI lives in (under `pki/`), for other files of the test.
    pub fn root(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A file of the PKI, e.g. `ca.pem` or `auth.toml`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    /// A file of the PKI's contents.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.file(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// The control plane's TLS flags.
    pub fn server_flags(&self) -> Vec<String> {
        [
            ("--tls-cert", "server.pem"),
            ("--tls-key", "server-key.pem"),
            ("--client-ca", "ca.pem"),
            ("--auth-file", "auth.toml"),
        ]
        .iter()
        .flat_map(|(flag, file)| [(*flag).to_owned(), path(&self.file(file)).to_owned()])
        .collect()
    }

    /// The CLI against `endpoint`, trusting this CA, with none of [`ENV`], presenting the
    /// certificate `pki/CERT.pem` when given; add further flags before running it.
    pub fn cli(&self, endpoint: &str, cert: Option<&str>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_killswitch"));
        for var in ENV {
            command.env_remove(var);
        }
        command.args(["--endpoint", endpoint, "--ca", path(&self.file("ca.pem"))]);
        if let Some(cert) = cert {
            command.args([
                "--cert",
                path(&self.file(&format!("{cert}.pem"))),
                "--key",
                path(&self.file(&format!("{cert}-key.pem"))),
            ]);
        }
        command
    }
}

/// Runs a CLI command; its exit code, stdout and stderr.
pub async fn run(mut command: tokio::process::Command) -> (i32, String, String) {
    let output = command.output().await.expect("run killswitch");
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// etcd, `n` TLS replicas and a development PKI (alice an admin, bob a responder, and
/// collector certificates): the set-up of the tests that need real credentials.
pub struct TlsPlane {
    pub replicas: Vec<Replica>,
    pub etcd: Etcd,
    pub pki: Pki,
}

impl TlsPlane {
    /// etcd, `replicas` TLS replicas, and a PKI with `collectors` collector certificates.
    pub async fn start(replicas: usize, collectors: usize) -> Self {
        let pki = Pki::init_with(&["--collectors", &collectors.to_string()]);
        let etcd = Etcd::start().await.expect("start etcd");
        let mut args = pki.server_flags();
        args.extend(["--heartbeat-interval", "1s"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let replicas = (0..replicas)
            .map(|_| Replica::start(etcd.endpoint(), &args).expect("start replica"))
            .collect();
        Self {
            replicas,
            etcd,
            pki,
        }
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.replicas[i].endpoint()
    }

    /// The CLI as `operator` (`alice`, `bob`, ...) against replica 0, to run.
    pub fn cli_as(&self, operator: &str) -> tokio::process::Command {
        self.pki
            .cli(&self.endpoint(0), Some(&format!("operator-{operator}")))
    }

    /// The CLI as alice (admin) against replica 0.
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = self.cli_as("alice");
        command.args(args);
        run(command).await
    }

    /// The CLI as alice with `--output json`, which must succeed.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.cli(&all).await;
        assert_eq!(code, 0, "killswitch {args:?} failed: {stderr}");
        parse(&stdout)
    }

    /// An SDK collector `collector-N` of `demo` with `region`, on replica `replica`.
    pub fn collector(&self, n: usize, region: &str, replica: usize) -> Collector {
        let id = format!("collector-{n}");
        Collector::builder(&id, &["demo"])
            .label("region", region)
            .tls(
                self.pki.read("ca.pem"),
                self.pki.read(&format!("{id}.pem")),
                self.pki.read(&format!("{id}-key.pem")),
            )
            .start(&[self.endpoint(replica)])
    }

    /// A demo collector process `collector-N` of `demo` with `region`, on replica 0.
    pub fn process(&self, n: usize, region: &str) -> CollectorProcess {
        let id = format!("collector-{n}");
        let file = |name: String| path(&self.pki.file(&name)).to_owned();
        let (ca, cert, key) = (
            file("ca.pem".into()),
            file(format!("{id}.pem")),
            file(format!("{id}-key.pem")),
        );
        let label = format!("region={region}");
        CollectorProcess::start(
            &self.endpoint(0),
            &id,
            &[
                "--label", &label, "--ca", &ca, "--cert", &cert, "--key", &key,
            ],
        )
    }

    /// Polls `status demo` until `done` holds.
    pub async fn status_until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        poll_status(what, || self.json(&["status", "demo"]), done).await
    }
}
