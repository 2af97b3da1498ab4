//! `killswitch-fleet run`: the orchestrator. Starts etcd (unless given one), the control
//! replicas and the simulator processes, waits until every collector is in sync, then
//! pauses and resumes the program round after round and measures each change:
//!
//! - **commit**: the state's `changed_at`, which the replica takes just before it sends
//!   the etcd transaction (after reading the current state and audit head);
//! - **hook**: each collector's pause (or resume) hook starting, by the simulator's clock
//!   (same machine, same clock);
//! - **ack**: each collector's Ack as the replicas recorded it: the SDK stamps
//!   `applied_at` once the hook returned, the replica files it in its commit-to-ack
//!   histogram, which it publishes to etcd with its summary;
//! - **confirmed**: etcd holds every replica's summary counting every collector, i.e. the
//!   earliest moment `killswitch status` shows the change complete;
//! - etcd revisions the change caused, and the replicas' CPU time and memory from `/proc`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use etcd_client::{GetOptions, WatchOptions};
use indicatif::ProgressBar;

use crate::console::{connect_etcd, progress_bar};
use killswitch_control::model::latency::Histogram;
use killswitch_proto::prost::Message as _;
use killswitch_proto::v1::store::AckSummary;
use killswitch_testkit::Etcd;

use crate::admin::{Admin, Kind};
use crate::peers::{self, PeersConfig};
use crate::pki;
use crate::processes::{ReplicaProcess, Subscribers, sibling_binary};
use crate::procfs::{self, Usage};
use crate::report::{
    ChangeReport, CliWait, IdleCost, IdleCpu, IdleMemory, Machine, RunReport, RunSettings,
};
use crate::stats::{Quantiles, ms_between};
use crate::subscribers::{MAX_PER_PROCESS, unix_ns};

/// The key prefix replicas use (their default).
const PREFIX: &str = "/killswitch/v1";

/// Most sessions one replica is given: under its 20,000 open files.
pub const MAX_PER_REPLICA: usize = 19_000;

/// What `run` does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Simulated collectors.
    pub collectors: usize,
    /// Control replicas.
    pub replicas: usize,
    /// Pause/resume rounds.
    pub rounds: usize,
    /// Serve TLS and connect collectors with client certificates.
    pub tls: bool,
    /// An etcd to use instead of starting one.
    pub etcd: Option<String>,
    /// The `killswitch-control` binary [default: next to this one].
    pub control_bin: Option<PathBuf>,
    /// Most collectors per simulator process.
    pub per_process: usize,
    /// Most collectors connecting at once, per simulator process.
    pub in_flight: usize,
    /// The program to pause and resume.
    pub program: String,
    /// How long one change may take to be acknowledged by everyone.
    pub round_timeout: Duration,
    /// Also measure the peers with as many watchers as collectors.
    pub peers: bool,
    /// Where replica logs, the PKI and proxy data go and stay [default: a temporary
    /// directory, removed at the end].
    pub work_dir: Option<PathBuf>,
    /// How long to measure the idle fleet's cost (replica CPU, etcd writes) once every
    /// collector is in sync; zero skips it.
    pub idle: Duration,
    /// The `killswitch` CLI: after the rounds, time `killswitch pause --wait` end to end
    /// this many times ([`RunConfig::cli_rounds`]).
    pub cli: Option<PathBuf>,
    /// How many `pause --wait` to time with [`RunConfig::cli`].
    pub cli_rounds: usize,
}

/// Raises this process's soft open-file limit to its hard limit (children inherit it).
pub fn raise_open_files() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("killswitch-fleet: cannot raise the open-file limit: {error}");
    }
}

/// Runs the benchmark; returns its report.
pub async fn run(config: RunConfig) -> anyhow::Result<RunReport> {
    check(&config)?;
    let ticks = procfs::clock_ticks();
    let mut report = RunReport {
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            load_before: procfs::load_average(),
            load_after: None,
            started_at: unix_ns(SystemTime::now()) / 1_000_000_000,
        },
        config: RunSettings {
            collectors: config.collectors,
            replicas: config.replicas,
            simulators: config.collectors.div_ceil(config.per_process),
            tls: config.tls,
            rounds: config.rounds,
            release: !cfg!(debug_assertions),
        },
        ..RunReport::default()
    };

    let temporary = tempfile::tempdir().context("cannot create a work directory")?;
    let work = match &config.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => temporary.path().to_owned(),
    };
    let (owned_etcd, etcd_endpoint) = start_etcd(config.etcd.as_deref()).await?;
    let pki = if config.tls {
        Some(pki::create(&work)?)
    } else {
        None
    };
    let replicas = start_replicas(&config, &etcd_endpoint, pki.as_ref(), &work)?;
    let tls = match &pki {
        Some(pki) => Some((pki.ca_pem()?, pki.token.clone())),
        None => None,
    };
    let mut admin = Admin::connect(&replicas[0].endpoint(), tls).await?;
    admin.ensure_running(&config.program).await?;
    let mut etcd = connect_etcd(&etcd_endpoint).await?;
    let before: Vec<Usage> = usages(&replicas, ticks)?;

    let endpoints: Vec<String> = replicas.iter().map(ReplicaProcess::endpoint).collect();
    let spawn = simulator_args(&config, &endpoints, pki.as_ref(), report.config.simulators);
    let started = Instant::now();
    let mut simulators = Subscribers::spawn(spawn)?;
    let expected = expected_per_replica(&replicas, config.collectors);
    in_sync(&config, &mut simulators, &mut etcd, &expected).await?;
    report.connect_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} collectors in sync on {} replica(s) in {:.1} s",
        config.collectors, config.replicas, report.connect_secs
    );
    settle(&mut etcd).await?;
    let after = usages(&replicas, ticks)?;
    report.idle = idle_memory(&replicas, &expected, &before, &after);
    if !config.idle.is_zero() {
        let cost = idle_cost(&mut etcd, &replicas, &expected, config.idle, ticks).await?;
        eprintln!("{}", cost.render());
        report.idle_cost = Some(cost);
    }

    let mut round = Round {
        admin: &mut admin,
        etcd: &mut etcd,
        simulators: &mut simulators,
        replicas: &replicas,
        program: &config.program,
        collectors: config.collectors,
        timeout: config.round_timeout,
        ticks,
    };
    for number in 1..=config.rounds {
        for kind in [Kind::Pause, Kind::Resume] {
            let change = round.measure(number, kind).await?;
            eprintln!("{}", progress_line(&change));
            report.changes.push(change);
        }
    }
    if let Some(cli) = &config.cli {
        let tls = pki
            .as_ref()
            .map(|pki| (pki.path(pki::CA_CERT), pki.token.clone()));
        let mut timer = CliTimer {
            cli,
            endpoint: replicas[0].endpoint(),
            tls,
            program: &config.program,
        };
        for number in 1..=config.cli_rounds {
            // The rounds end with a resume; each timed pause after the first needs one,
            // acknowledged by every collector before the next pause.
            if number > 1 {
                let resumed = round
                    .admin
                    .change(
                        Kind::Resume,
                        &config.program,
                        "killswitch-fleet: before pause --wait",
                    )
                    .await?;
                round
                    .simulators
                    .report(resumed.generation, config.round_timeout)
                    .await?;
            }
            settle(round.etcd).await?;
            let wait = timer.pause_wait(round.admin, number).await?;
            eprintln!("{}", wait.render());
            report.cli_waits.push(wait);
        }
    }
    simulators.stop(Duration::from_secs(30)).await;
    drop(replicas);

    if config.peers {
        let peers_config = PeersConfig {
            watchers: config.collectors,
            rounds: config.rounds,
            per_process: config.per_process,
            in_flight: config.in_flight,
        };
        report.peers = peers::measure(&etcd_endpoint, &work, &peers_config).await?;
    }
    report.machine.load_after = procfs::load_average();
    report.summarize();
    drop(owned_etcd);
    Ok(report)
}

/// Waits until every collector is in sync and every replica counted its share, so
/// nothing is measured before.
async fn in_sync(
    config: &RunConfig,
    simulators: &mut Subscribers,
    etcd: &mut etcd_client::Client,
    expected: &HashMap<String, u64>,
) -> anyhow::Result<()> {
    let bar = progress_bar(config.collectors as u64, "collectors in sync");
    simulators
        .wait_ready(&bar, Duration::from_secs(600))
        .await
        .context("the collectors did not all connect")?;
    wait_connected(etcd, &config.program, expected, &bar).await?;
    bar.finish_and_clear();
    Ok(())
}

/// Refuses a configuration the machine cannot run.
fn check(config: &RunConfig) -> anyhow::Result<()> {
    anyhow::ensure!(config.collectors > 0, "--collectors must be at least 1");
    anyhow::ensure!(config.replicas > 0, "--replicas must be at least 1");
    anyhow::ensure!(
        config.collectors.div_ceil(config.replicas) <= MAX_PER_REPLICA,
        "{} collectors need at least {} replicas: one serves at most {MAX_PER_REPLICA} \
         sessions within its 20,000 open files",
        config.collectors,
        config.collectors.div_ceil(MAX_PER_REPLICA)
    );
    anyhow::ensure!(
        (1..=MAX_PER_PROCESS).contains(&config.per_process),
        "--per-process must be between 1 and {MAX_PER_PROCESS}"
    );
    Ok(())
}

/// Starts the replicas `fleet-r1`, `fleet-r2`, ... with their logs in `work`.
fn start_replicas(
    config: &RunConfig,
    etcd_endpoint: &str,
    pki: Option<&pki::Pki>,
    work: &std::path::Path,
) -> anyhow::Result<Vec<ReplicaProcess>> {
    let control_bin = match &config.control_bin {
        Some(path) => path.clone(),
        None => sibling_binary("killswitch-control")?,
    };
    (1..=config.replicas)
        .map(|i| {
            let id = format!("fleet-r{i}");
            let log = work.join(format!("{id}.log"));
            ReplicaProcess::start(&control_bin, etcd_endpoint, &id, pki, &log)
        })
        .collect()
}

/// The arguments of each simulator process and how many collectors it runs: the
/// collectors spread evenly over `processes`.
fn simulator_args(
    config: &RunConfig,
    endpoints: &[String],
    pki: Option<&pki::Pki>,
    processes: usize,
) -> Vec<(Vec<String>, usize)> {
    let mut spawn = Vec::with_capacity(processes);
    let mut first = 0;
    for p in 0..processes {
        let count = config.collectors / processes + usize::from(p < config.collectors % processes);
        let mut args = vec![
            "simulate".to_owned(),
            "--endpoints".to_owned(),
            endpoints.join(","),
            "--first".to_owned(),
            first.to_string(),
            "--count".to_owned(),
            count.to_string(),
            "--program".to_owned(),
            config.program.clone(),
            "--in-flight".to_owned(),
            config.in_flight.to_string(),
        ];
        if let Some(pki) = pki {
            args.extend(["--pki-dir".to_owned(), pki.dir.display().to_string()]);
        }
        spawn.push((args, count));
        first += count;
    }
    spawn
}

/// What the idle fleet costs over `window`: each replica's CPU time as a share of one core,
/// and etcd's revisions (writes) meanwhile.
async fn idle_cost(
    etcd: &mut etcd_client::Client,
    replicas: &[ReplicaProcess],
    expected: &HashMap<String, u64>,
    window: Duration,
    ticks: u64,
) -> anyhow::Result<IdleCost> {
    let first_revision = revision(etcd).await?;
    let before = usages(replicas, ticks)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = usages(replicas, ticks)?;
    let elapsed = started.elapsed();
    let last_revision = revision(etcd).await?;
    Ok(IdleCost {
        seconds: elapsed.as_secs_f64(),
        etcd_writes: last_revision - first_revision,
        replicas: replicas
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(replica, (before, after))| IdleCpu {
                replica: replica.id.clone(),
                sessions: expected.get(&replica.id).copied().unwrap_or(0),
                percent_of_core: after.cpu.saturating_sub(before.cpu).as_secs_f64() * 100.0
                    / elapsed.as_secs_f64(),
            })
            .collect(),
    })
}

/// Times `killswitch pause --wait` through the real CLI.
struct CliTimer<'a> {
    cli: &'a std::path::Path,
    endpoint: String,
    /// The CA file and the operator token, under TLS.
    tls: Option<(PathBuf, String)>,
    program: &'a str,
}

impl CliTimer<'_> {
    /// Runs `killswitch pause PROGRAM --wait 60s` and measures it: from starting the
    /// process to its exit, and from the commit (the new state's `changed_at`) to the
    /// exit.
    async fn pause_wait(&mut self, admin: &mut Admin, number: usize) -> anyhow::Result<CliWait> {
        let mut command = tokio::process::Command::new(self.cli);
        command.args(["--endpoint", &self.endpoint, "--output", "json"]);
        match &self.tls {
            Some((ca, token)) => {
                command.arg("--ca").arg(ca).args(["--token", token]);
            }
            None => {
                command.args(["--actor", "fleet"]);
            }
        }
        command
            .args(["pause", self.program, "--reason"])
            .arg(format!("killswitch-fleet pause --wait {number}"))
            .args(["--wait", "60s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let started = SystemTime::now();
        let output = command
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.cli.display()))?;
        let exited = SystemTime::now();
        // The CLI's last line on standard error is its error message (progress comes before).
        let error = if output.status.success() {
            String::new()
        } else {
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let state = admin.state(self.program).await?;
        let commit = state
            .changed_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .context("the paused state has no commit time")?;
        Ok(CliWait {
            round: number,
            exit_code: output.status.code(),
            wall_ms: ms_between(unix_ns(started), unix_ns(exited)),
            commit_to_exit_ms: ms_between(unix_ns(commit), unix_ns(exited)),
            error,
        })
    }
}

/// What each replica's idle sessions cost, from its memory before and after they connected.
fn idle_memory(
    replicas: &[ReplicaProcess],
    expected: &std::collections::HashMap<String, u64>,
    before: &[Usage],
    after: &[Usage],
) -> Vec<IdleMemory> {
    replicas
        .iter()
        .zip(before)
        .zip(after)
        .map(|((replica, before), after)| {
            let sessions = expected.get(&replica.id).copied().unwrap_or(0);
            IdleMemory {
                replica: replica.id.clone(),
                sessions,
                rss_before_bytes: before.rss_bytes,
                rss_after_bytes: after.rss_bytes,
                bytes_per_session: (after.rss_bytes as f64 - before.rss_bytes as f64)
                    / sessions.max(1) as f64,
            }
        })
        .collect()
}

/// `endpoint` when given, else a new etcd (stopped when the handle is dropped) and its
/// endpoint.
pub async fn start_etcd(endpoint: Option<&str>) -> anyhow::Result<(Option<Etcd>, String)> {
    if let Some(endpoint) = endpoint {
        return Ok((None, endpoint.to_owned()));
    }
    let etcd = Etcd::start().await.context("cannot start etcd")?;
    let endpoint = etcd.endpoint().to_owned();
    Ok((Some(etcd), endpoint))
}

/// etcd's current revision.
pub async fn revision(etcd: &mut etcd_client::Client) -> anyhow::Result<i64> {
    let response = etcd
        .get("/", Some(GetOptions::new().with_count_only()))
        .await?;
    Ok(response.header().map_or(0, |h| h.revision()))
}

/// Waits until etcd's revision stayed the same for 300 ms (at most 10 s): the writes a
/// change caused (trailing summary flushes included) are all in.
async fn settle(etcd: &mut etcd_client::Client) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = revision(etcd).await?;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = revision(etcd).await?;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(last)
}

fn usages(replicas: &[ReplicaProcess], ticks: u64) -> anyhow::Result<Vec<Usage>> {
    replicas
        .iter()
        .map(|r| procfs::usage(r.pid(), ticks))
        .collect()
}

/// How many collectors each replica serves: collector `i` connects to replica `i % R`.
fn expected_per_replica(replicas: &[ReplicaProcess], collectors: usize) -> HashMap<String, u64> {
    let n = replicas.len();
    replicas
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r.id.clone(),
                (collectors / n + usize::from(i < collectors % n)) as u64,
            )
        })
        .collect()
}

/// The receipt chunks the replicas wrote for `program`'s `generation`: how many (each
/// write creates a key; chunks are never overwritten) and their bytes.
async fn receipt_chunks(
    etcd: &mut etcd_client::Client,
    program: &str,
    generation: u64,
) -> anyhow::Result<(u64, u64)> {
    let prefix = format!("{PREFIX}/receipts/{program}/{generation:020}/");
    // The prefix's end: '/' + 1 is '0'.
    let end = format!("{PREFIX}/receipts/{program}/{generation:020}0");
    // A few chunks a request: each is up to 1 MiB, and a response must stay under the
    // client's 4 MiB message limit.
    let (mut writes, mut bytes) = (0, 0);
    let mut from = prefix.into_bytes();
    loop {
        let options = etcd_client::GetOptions::new()
            .with_range(end.as_bytes())
            .with_limit(2);
        let response = etcd.get(from.clone(), Some(options)).await?;
        for kv in response.kvs() {
            writes += 1;
            bytes += kv.value().len() as u64;
        }
        match response.kvs().last() {
            Some(last) if response.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((writes, bytes)),
        }
    }
}

fn acks_prefix(program: &str) -> String {
    format!("{PREFIX}/acks/{program}/")
}

/// Every replica's summary of `program`, by replica id.
async fn summaries(
    etcd: &mut etcd_client::Client,
    program: &str,
) -> anyhow::Result<HashMap<String, AckSummary>> {
    let prefix = acks_prefix(program);
    let response = etcd
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut all = HashMap::new();
    for kv in response.kvs() {
        if let Some((replica, summary)) = decode_summary(&prefix, kv.key(), kv.value()) {
            all.insert(replica, summary);
        }
    }
    Ok(all)
}

fn decode_summary(prefix: &str, key: &[u8], value: &[u8]) -> Option<(String, AckSummary)> {
    let replica = std::str::from_utf8(key)
        .ok()?
        .strip_prefix(prefix)?
        .to_owned();
    let summary = AckSummary::decode(value).ok()?;
    Some((replica, summary))
}

/// Waits until every replica reports its expected number of connected collectors.
async fn wait_connected(
    etcd: &mut etcd_client::Client,
    program: &str,
    expected: &HashMap<String, u64>,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    bar.set_message("waiting for the replicas to count them");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = summaries(etcd, program).await?;
        let counted = expected
            .iter()
            .all(|(replica, n)| all.get(replica).is_some_and(|s| s.connected == *n));
        if counted {
            return Ok(());
        }
        if Instant::now() > deadline {
            let seen: Vec<(String, u64)> =
                all.iter().map(|(r, s)| (r.clone(), s.connected)).collect();
            anyhow::bail!(
                "replicas did not count every collector within 120 s: expected {expected:?}, saw {seen:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What measuring one change needs.
struct Round<'a> {
    admin: &'a mut Admin,
    etcd: &'a mut etcd_client::Client,
    simulators: &'a mut Subscribers,
    replicas: &'a [ReplicaProcess],
    program: &'a str,
    collectors: usize,
    timeout: Duration,
    ticks: u64,
}

impl Round<'_> {
    /// Follows the summaries until every replica's summary at `generation` counts all its
    /// collectors (the moment is returned) or the round times out; the summaries seen.
    async fn confirmed(
        &self,
        watch: &mut etcd_client::WatchStream,
        prefix: &str,
        generation: u64,
    ) -> anyhow::Result<(HashMap<String, AckSummary>, Option<SystemTime>)> {
        let mut latest: HashMap<String, AckSummary> = HashMap::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let Ok(message) = tokio::time::timeout_at(deadline, watch.message()).await else {
                return Ok((latest, None));
            };
            let Some(response) = message? else {
                return Ok((latest, None));
            };
            for event in response.events() {
                if let Some(kv) = event.kv()
                    && event.event_type() == etcd_client::EventType::Put
                    && let Some((replica, summary)) = decode_summary(prefix, kv.key(), kv.value())
                {
                    latest.insert(replica, summary);
                }
            }
            let (acked, _) = counts(&latest, generation);
            let all_reported = self.replicas.iter().all(|r| {
                latest
                    .get(&r.id)
                    .is_some_and(|s| s.generation == generation)
            });
            if all_reported && acked >= self.collectors as u64 {
                return Ok((latest, Some(SystemTime::now())));
            }
        }
    }

    async fn measure(&mut self, number: usize, kind: Kind) -> anyhow::Result<ChangeReport> {
        let start_revision = revision(self.etcd).await?;
        let prefix = acks_prefix(self.program);
        // Watch the summaries from before the change, so no write is missed.
        let mut watch = self
            .etcd
            .watch(
                prefix.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(start_revision + 1),
                ),
            )
            .await?;
        let cpu_before = usages(self.replicas, self.ticks)?;
        let sent = SystemTime::now();
        let state = self
            .admin
            .change(
                kind,
                self.program,
                &format!("killswitch-fleet round {number}"),
            )
            .await?;
        let answered = SystemTime::now();
        let generation = state.generation;
        let commit = state
            .changed_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .context("the new state has no commit time")?;

        let (mut latest, confirmed) = self.confirmed(&mut watch, &prefix, generation).await?;
        let cpu_after = usages(self.replicas, self.ticks)?;
        drop(watch);
        // On a timeout, count what the replicas last published.
        if confirmed.is_none() {
            latest = summaries(self.etcd, self.program).await?;
        }
        let (acked, errored) = counts(&latest, generation);
        let mut histogram = Histogram::default();
        for summary in latest.values().filter(|s| s.generation == generation) {
            if let Some(stored) = &summary.latency {
                histogram.merge(&Histogram::from_store(stored));
            }
        }

        let commit_ns = unix_ns(commit);
        let (times, _missing) = self
            .simulators
            .report(generation, Duration::from_secs(10))
            .await?;
        let hooked = times.len();
        let hook = Quantiles::of(
            times
                .into_iter()
                .map(|t| ms_between(commit_ns, t))
                .collect(),
        );
        let end_revision = settle(self.etcd).await?;
        let (receipt_writes, receipt_bytes) =
            receipt_chunks(self.etcd, self.program, generation).await?;
        let cpu: Duration = cpu_after
            .iter()
            .zip(&cpu_before)
            .map(|(after, before)| after.cpu.saturating_sub(before.cpu))
            .sum();
        Ok(ChangeReport {
            round: number,
            kind,
            generation,
            collectors: self.collectors,
            hooked,
            acked,
            errored,
            hook,
            ack: Quantiles::of_histogram(&histogram),
            confirmed_ms: confirmed.map(|at| ms_between(commit_ns, unix_ns(at))),
            rpc_ms: ms_between(unix_ns(sent), unix_ns(answered)),
            commit_after_rpc_ms: ms_between(unix_ns(sent), commit_ns),
            etcd_writes: end_revision - start_revision,
            receipt_writes,
            receipt_bytes,
            replica_cpu_us_per_collector: cpu.as_secs_f64() * 1e6 / self.collectors.max(1) as f64,
        })
    }
}

/// Successful and errored acknowledgements of `generation` (or newer) over `summaries`.
fn counts(summaries: &HashMap<String, AckSummary>, generation: u64) -> (u64, u64) {
    summaries
        .values()
        .flat_map(|s| &s.generations)
        .filter(|g| g.generation >= generation)
        .fold((0, 0), |(ok, errored), g| (ok + g.ok, errored + g.errored))
}

fn progress_line(change: &ChangeReport) -> String {
    let ack = change.ack.map_or("-".to_owned(), |q| {
        format!("p50 {:.0} ms, last {:.0} ms", q.p50_ms, q.max_ms)
    });
    let hook = change.hook.map_or("-".to_owned(), |q| {
        format!("p50 {:.0} ms, last {:.0} ms", q.p50_ms, q.max_ms)
    });
    format!(
        "round {} {}: acked {}/{}; hook {hook}; ack {ack}; confirmed {}; {} etcd writes ({} of receipts, {} bytes); {:.1} µs CPU per collector",
        change.round,
        change.kind,
        change.acked,
        change.collectors,
        change
            .confirmed_ms
            .map_or("-".to_owned(), |ms| format!("{ms:.0} ms")),
        change.etcd_writes,
        change.receipt_writes,
        change.receipt_bytes,
        change.replica_cpu_us_per_collector,
    )
}
