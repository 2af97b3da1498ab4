//! A bounded soak of the whole system under random faults (not run in CI).
//!
//! It starts a three-member etcd cluster and several control replicas, connects hundreds
//! of real SDK collectors (in this process) and then, for the chosen duration, pauses and
//! resumes at random while killing (SIGKILL) and restarting random replicas and etcd
//! members, never more than one replica and one member down at once. An invariant checker
//! watches the collectors throughout:
//!
//! - **safety**: once a pause has committed and no resume followed it, every collector's
//!   gate is closed within the propagation window (the program's grace period plus a
//!   margin: a collector cut off by a fault closes by itself when grace runs out);
//! - **order**: no collector ever applies a generation older than one it applied before;
//! - **convergence**: at the end, with every process back, every collector applies the
//!   final state and every one is counted as acknowledged.
//!
//! ```text
//! cargo build --release -p killswitch-ops -p killswitch-control --bins --examples
//! target/release/examples/soak --duration 10m --collectors 300
//! ```
//! It exits 0 only when no invariant was broken.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use killswitch_sdk::{Cause, Client, Gate, StateEvent};
use killswitch_testkit::{Etcd, Replica};
use tokio::process::Command;

/// Soak the control plane under random faults and check its invariants.
#[derive(Debug, Parser)]
struct Args {
    /// How long to inject faults.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Collectors to connect.
    #[arg(long, default_value_t = 300)]
    collectors: usize,
    /// Control replicas to run.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// The program's lost-contact grace period.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Seed of the random fault schedule, to replay a run.
    #[arg(long)]
    seed: Option<u64>,
}

/// Replica flags: heartbeats and lease short enough for faults to show within seconds.
const REPLICA_FLAGS: &[&str] = &["--heartbeat-interval", "1s", "--lease-ttl", "3s"];

/// What a collector did: every hook call and the generations it applied.
#[derive(Default)]
struct Record {
    calls: Mutex<Vec<(Instant, &'static str, u64, Cause)>>,
    /// Set when a call applied an older generation than an earlier one.
    went_back: AtomicU64,
}

impl Record {
    fn push(&self, hook: &'static str, event: &StateEvent) {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if calls.last().is_some_and(|last| last.2 > event.generation) {
            self.went_back.fetch_add(1, Ordering::Relaxed);
        }
        calls.push((Instant::now(), hook, event.generation, event.cause));
    }
}

struct SimCollector {
    id: String,
    client: Client,
    gate: Gate,
    record: Arc<Record>,
}

/// The soak's world: etcd, replicas and what it has done to them.
struct World {
    etcd: Etcd,
    replicas: Vec<Option<Replica>>,
    addrs: Vec<std::net::SocketAddr>,
    cli: PathBuf,
    rng: fastrand::Rng,
    member_down: Option<(usize, Instant)>,
    replica_down: Option<(usize, Instant)>,
    faults: u64,
}

impl World {
    fn endpoint(&self, i: usize) -> String {
        format!("http://{}", self.addrs[i])
    }

    /// Runs the CLI with `--output json` against a running replica.
    async fn cli(&mut self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let running: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| self.replicas[i].is_some())
            .collect();
        let i = running[self.rng.usize(..running.len())];
        let output = Command::new(&self.cli)
            .args(["--endpoint", &self.endpoint(i), "--actor", "soak"])
            .args(["--output", "json"])
            .args(args)
            .output()
            .await
            .context("cannot run killswitch")?;
        if !output.status.success() {
            bail!(
                "killswitch {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Kills or brings back one process, at random.
    async fn fault(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let back_after = Duration::from_secs(self.rng.u64(2..8));
        if let Some((i, since)) = self.replica_down {
            if now.duration_since(since) >= back_after {
                self.replicas[i] = Some(start_replica(&self.etcd, i, Some(self.addrs[i]))?);
                self.replica_down = None;
                println!("  replica r{} restarted", i + 1);
            }
        } else if self.rng.bool() {
            let i = self.rng.usize(..self.replicas.len());
            self.replicas[i] = None;
            self.replica_down = Some((i, now));
            self.faults += 1;
            println!("  replica r{} killed", i + 1);
        }
        if let Some((m, since)) = self.member_down {
            if now.duration_since(since) >= back_after {
                self.etcd.restart_member(m)?;
                self.member_down = None;
                println!("  etcd member m{m} restarted");
            }
        } else if self.rng.u8(..4) == 0 {
            let m = if self.rng.bool() {
                self.etcd.leader().await?
            } else {
                self.rng.usize(..3)
            };
            self.etcd.kill_member(m)?;
            self.member_down = Some((m, now));
            self.faults += 1;
            println!("  etcd member m{m} killed");
        }
        Ok(())
    }

    /// Brings every process back.
    async fn heal(&mut self) -> anyhow::Result<()> {
        if let Some((m, _)) = self.member_down.take() {
            self.etcd.restart_member(m)?;
        }
        self.etcd.ready().await?;
        if let Some((i, _)) = self.replica_down.take() {
            self.replicas[i] = Some(start_replica(&self.etcd, i, Some(self.addrs[i]))?);
        }
        Ok(())
    }
}

/// Starts replica `r{i+1}` against `etcd`, on `listen` (a restart keeps its address, so
/// its collectors find it again) or on a free port.
fn start_replica(
    etcd: &Etcd,
    i: usize,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<Replica> {
    let id = format!("r{}", i + 1);
    let mut flags = REPLICA_FLAGS.to_vec();
    flags.extend(["--replica-id", &id]);
    Ok(match listen {
        Some(addr) => Replica::start_on(addr, &etcd.endpoints_arg(), &flags)?,
        None => Replica::start(&etcd.endpoints_arg(), &flags)?,
    })
}

/// A pause the checker must see applied by every collector once `window` has passed.
struct PendingCheck {
    generation: u64,
    due: Instant,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.collectors > 0, "--collectors must be at least 1");
    anyhow::ensure!(args.replicas >= 2, "--replicas must be at least 2");
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let cli = sibling_binary("killswitch")?;

    println!(
        "soak: {} collectors, {} replicas, 3 etcd members, {} of faults (seed {seed})",
        args.collectors,
        args.replicas,
        humantime::format_duration(args.duration)
    );
    let etcd = Etcd::cluster(3).await?;
    let mut replicas = Vec::new();
    for i in 0..args.replicas {
        replicas.push(Some(start_replica(&etcd, i, None)?));
    }
    let addrs = replicas.iter().flatten().map(Replica::addr).collect();
    let mut world = World {
        etcd,
        replicas,
        addrs,
        cli,
        rng: fastrand::Rng::with_seed(seed),
        member_down: None,
        replica_down: None,
        faults: 0,
    };
    let grace = humantime::format_duration(args.grace).to_string();
    world
        .cli(&[
            "program", "create", "soak", "--owner", "soak", "--grace", &grace,
        ])
        .await?;

    let collectors = start_collectors(&world, args.collectors)?;
    println!("connecting {} collectors", collectors.len());
    let resumed = world
        .cli(&["resume", "soak", "--reason", "soak start"])
        .await?;
    converge(&world, &collectors, generation(&resumed)?, true).await?;

    // A pause must reach every collector within grace (the worst case: cut off just
    // after the last contact) plus a margin for reconnecting and scheduling.
    let window = args.grace + Duration::from_secs(2);
    let started = Instant::now();
    let mut paused_at: Option<PendingCheck> = None;
    let mut violations: Vec<String> = Vec::new();
    let (mut changes, mut failed_changes) = (0u64, 0u64);
    let mut next_report = started + Duration::from_secs(10);
    let mut paused = false;
    while started.elapsed() < args.duration {
        world.fault().await?;
        let verb = if paused { "resume" } else { "pause" };
        match world.cli(&[verb, "soak", "--reason", "soak"]).await {
            Ok(change) => {
                changes += 1;
                paused = !paused;
                let generation = generation(&change)?;
                paused_at = paused.then(|| PendingCheck {
                    generation,
                    due: Instant::now() + window,
                });
            }
            Err(error) => {
                // Allowed while etcd elects a leader; the state did not change, or the
                // next change corrects it.
                failed_changes += 1;
                println!("  {verb} failed: {error}");
            }
        }
        // Hold the state for a while, checking the pause's deadline if one is due.
        let hold = Instant::now() + Duration::from_millis(world.rng.u64(500..3000));
        while Instant::now() < hold {
            if let Some(check) = paused_at.as_ref().filter(|c| Instant::now() >= c.due) {
                for c in &collectors {
                    if c.gate.is_active() {
                        violations.push(format!(
                            "{} still collecting {window:?} after pause {} committed",
                            c.id, check.generation
                        ));
                    }
                }
                paused_at = None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            println!(
                "{:>5}s: {changes} changes ({failed_changes} failed), {} faults, {} violations",
                started.elapsed().as_secs(),
                world.faults,
                violations.len()
            );
        }
    }

    println!("healing every process and checking convergence");
    world.heal().await?;
    let last = world
        .cli(&["pause", "soak", "--reason", "soak end"])
        .await?;
    let last = generation(&last)?;
    converge(&world, &collectors, last, false).await?;
    for c in &collectors {
        let went_back = c.record.went_back.load(Ordering::Relaxed);
        if went_back > 0 {
            violations.push(format!(
                "{} applied an older generation {went_back} times",
                c.id
            ));
        }
    }
    let hook_calls: usize = collectors
        .iter()
        .map(|c| {
            c.record
                .calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len()
        })
        .sum();
    println!(
        "done in {:?}: {changes} changes committed, {failed_changes} refused during faults, \
         {} faults injected, {hook_calls} hook calls, {} violations",
        started.elapsed(),
        world.faults,
        violations.len()
    );
    for violation in violations.iter().take(20) {
        println!("VIOLATION: {violation}");
    }
    for c in collectors {
        c.client.shutdown().await;
    }
    if violations.is_empty() {
        Ok(())
    } else {
        bail!("{} invariant violations", violations.len())
    }
}

fn start_collectors(world: &World, n: usize) -> anyhow::Result<Vec<SimCollector>> {
    let replicas = world.addrs.len();
    (0..n)
        .map(|i| {
            let id = format!("soak-{i:04}");
            let record = Arc::new(Record::default());
            let endpoints: Vec<String> = (0..replicas)
                .map(|k| world.endpoint((i + k) % replicas))
                .collect();
            let (on_pause, on_resume) = (record.clone(), record.clone());
            let client = Client::builder()
                .endpoints(endpoints)
                .collector_id(id.as_str())
                .program("soak")
                .on_pause(move |event| {
                    on_pause.push("pause", event);
                    Ok(())
                })
                .on_resume(move |event| {
                    on_resume.push("resume", event);
                    Ok(())
                })
                .start()
                .with_context(|| format!("cannot start collector {id}"))?;
            let gate = client.gate("soak").context("program registered")?;
            Ok(SimCollector {
                id,
                client,
                gate,
                record,
            })
        })
        .collect()
}

/// Waits until every collector applied `generation` (open or closed as `open` says) and
/// a replica counts them all acknowledged.
async fn converge(
    world: &World,
    collectors: &[SimCollector],
    generation: u64,
    open: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let behind = collectors
            .iter()
            .filter(|c| {
                c.client.applied_generation("soak") != Some(generation)
                    || c.gate.is_active() != open
            })
            .count();
        if behind == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{behind} collectors did not converge on generation {generation} within 60s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = collectors.len();
    let status_cli = world.cli.clone();
    let endpoint = world.endpoint(0);
    loop {
        let output = Command::new(&status_cli)
            .args([
                "--endpoint",
                &endpoint,
                "--output",
                "json",
                "status",
                "soak",
            ])
            .output()
            .await
            .context("cannot run killswitch status")?;
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        if status["collectors"]["acked"] == n && status["generation"] == generation {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("status never counted {n} acknowledgements: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn generation(change: &serde_json::Value) -> anyhow::Result<u64> {
    change["generation"]
        .as_u64()
        .with_context(|| format!("no generation in {change}"))
}

/// A binary of this workspace built next to this example (target/<profile>/NAME).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .context("unexpected location of the soak binary")?
        .join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build --release --bins --examples`",
        binary.display()
    );
    Ok(binary)
}
