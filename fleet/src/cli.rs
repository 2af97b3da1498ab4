//! The command line: `run`, `peers`, `plot`, `floor`, and the hidden `simulate`, `watch`
//! and `floor-server` that `run`, `peers` and `floor` start as child processes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::floor::{self, FloorConfig};
use crate::peers::{self, PeersConfig};
use crate::report::{Machine, RunReport, RunSettings};
use crate::run::{self, RunConfig, start_etcd};
use crate::simulate::{self, SimulateConfig};
use crate::subscribers::{MAX_PER_PROCESS, unix_ns};
use crate::watchers::{self, WatchConfig};
use crate::{plot, procfs};

/// Fleet-scale load tool for Killswitch: N simulated collectors (real SDK clients, each
/// with its own connection) against real control replicas and etcd, paused and resumed
/// round after round, compared with etcd's own watch fan-out.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start etcd, replicas and simulated collectors, run pause/resume rounds, report.
    Run(RunArgs),
    /// Measure only the peers: N watchers on etcd directly and through grpc-proxy.
    Peers(PeersArgs),
    /// Draw latency against N from JSON reports, as SVG.
    Plot(PlotArgs),
    /// The machine's floor: N plain tokio loopback connections, one small frame out and
    /// one back each, no gRPC, HTTP/2, TLS or protobuf.
    Floor(FloorArgs),
    /// The server of `floor` (started by `floor`).
    #[command(hide = true)]
    FloorServer(FloorServerArgs),
    /// One process of simulated collectors (started by `run`).
    #[command(hide = true)]
    Simulate(SimulateArgs),
    /// One process of etcd watchers (started by `run --peers` and `peers`).
    #[command(hide = true)]
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Simulated collectors.
    #[arg(long)]
    collectors: usize,
    /// Control replicas; collectors spread evenly over them. One holds at most 19,000.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Pause/resume rounds.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Serve TLS, with a client certificate per collector, as deployed.
    #[arg(long)]
    tls: bool,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Use this etcd (http://HOST:PORT) instead of starting one.
    #[arg(long, value_name = "URL")]
    etcd: Option<String>,
    /// The killswitch-control binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    control_bin: Option<PathBuf>,
    /// Also measure the peers (etcd watches, direct and through grpc-proxy) with as many
    /// watchers as collectors, after the rounds.
    #[arg(long)]
    peers: bool,
    #[command(flatten)]
    common: Common,
    /// The program paused and resumed.
    #[arg(long, default_value = "fleet")]
    program: String,
    /// How long every collector has to acknowledge one change, in seconds.
    #[arg(long, default_value_t = 30)]
    round_timeout_secs: u64,
    /// Keep the replicas' logs, the TLS material and proxy data in DIR [default: a
    /// temporary directory, removed at the end].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Seconds to measure the idle fleet (replica CPU, etcd writes) once every collector
    /// is in sync, before the rounds; 0 skips it.
    #[arg(long, default_value_t = 15)]
    idle_secs: u64,
    /// The `killswitch` CLI binary: after the rounds, time `killswitch pause --wait`
    /// end to end, --cli-rounds times.
    #[arg(long, value_name = "PATH")]
    cli: Option<PathBuf>,
    /// How many `pause --wait` to time with --cli.
    #[arg(long, default_value_t = 3)]
    cli_rounds: usize,
}

#[derive(Debug, Args)]
struct FloorArgs {
    /// Loopback connections.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Broadcasts measured.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Most connections being opened at once (under the listen backlog, 128 here).
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FloorServerArgs {
    #[arg(long)]
    connections: usize,
}

/// Flags shared by `run` and `peers`.
#[derive(Debug, Args)]
struct Common {
    /// Most collectors (or watchers) per child process, under its 20,000 open files.
    #[arg(long, default_value_t = MAX_PER_PROCESS)]
    per_process: usize,
    /// Most connections being opened at once, per child process.
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
}

#[derive(Debug, Args)]
struct PeersArgs {
    /// Watchers.
    #[arg(long)]
    watchers: usize,
    /// Puts.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Use this etcd (http://HOST:PORT) instead of starting one.
    #[arg(long, value_name = "URL")]
    etcd: Option<String>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct PlotArgs {
    /// The SVG to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// JSON reports of `run` and `peers`.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    #[arg(long)]
    first: usize,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    program: String,
    #[arg(long)]
    pki_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
}

#[derive(Debug, Args)]
struct WatchArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    #[arg(long)]
    first: usize,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    key: String,
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
}

impl Cli {
    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Run(args) => {
                run::raise_open_files();
                let json = args.json.clone();
                let report = run::run(RunConfig {
                    collectors: args.collectors,
                    replicas: args.replicas,
                    rounds: args.rounds,
                    tls: args.tls,
                    etcd: args.etcd,
                    control_bin: args.control_bin,
                    per_process: args.common.per_process,
                    in_flight: args.common.in_flight,
                    program: args.program,
                    round_timeout: Duration::from_secs(args.round_timeout_secs),
                    peers: args.peers,
                    work_dir: args.work_dir,
                    idle: Duration::from_secs(args.idle_secs),
                    cli: args.cli,
                    cli_rounds: args.cli_rounds,
                })
                .await?;
                finish(&report, json.as_deref())
            }
            Command::Peers(args) => {
                run::raise_open_files();
                anyhow::ensure!(
                    (1..=MAX_PER_PROCESS).contains(&args.common.per_process),
                    "--per-process must be between 1 and {MAX_PER_PROCESS}"
                );
                let (etcd, endpoint) = start_etcd(args.etcd.as_deref()).await?;
                let work = tempfile::tempdir().context("cannot create a work directory")?;
                let load_before = procfs::load_average();
                let peers = peers::measure(
                    &endpoint,
                    work.path(),
                    &PeersConfig {
                        watchers: args.watchers,
                        rounds: args.rounds,
                        per_process: args.common.per_process,
                        in_flight: args.common.in_flight,
                    },
                )
                .await?;
                drop(etcd);
                let mut report = RunReport {
                    machine: Machine {
                        cores: std::thread::available_parallelism().map_or(0, usize::from),
                        load_before,
                        load_after: procfs::load_average(),
                        started_at: unix_ns(std::time::SystemTime::now()) / 1_000_000_000,
                    },
                    config: RunSettings {
                        rounds: args.rounds,
                        release: !cfg!(debug_assertions),
                        ..RunSettings::default()
                    },
                    peers,
                    ..RunReport::default()
                };
                report.summarize();
                finish(&report, args.json.as_deref())
            }
            Command::Plot(args) => plot::plot(&args.reports, &args.out),
            Command::Floor(args) => {
                run::raise_open_files();
                anyhow::ensure!(
                    (1..=MAX_PER_PROCESS).contains(&args.connections),
                    "--connections must be between 1 and {MAX_PER_PROCESS}"
                );
                let report = floor::floor(&FloorConfig {
                    connections: args.connections,
                    rounds: args.rounds,
                    in_flight: args.in_flight,
                })
                .await?;
                println!("{}", report.render());
                if let Some(path) = args.json {
                    let text = serde_json::to_string_pretty(&report)?;
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                Ok(())
            }
            Command::FloorServer(args) => {
                run::raise_open_files();
                floor::serve(args.connections).await
            }
            Command::Simulate(args) => {
                run::raise_open_files();
                simulate::simulate(SimulateConfig {
                    endpoints: args.endpoints,
                    first: args.first,
                    count: args.count,
                    program: args.program,
                    pki_dir: args.pki_dir,
                    in_flight: args.in_flight,
                })
                .await
            }
            Command::Watch(args) => {
                run::raise_open_files();
                watchers::watch(WatchConfig {
                    endpoints: args.endpoints,
                    first: args.first,
                    count: args.count,
                    key: args.key,
                    in_flight: args.in_flight,
                })
                .await
            }
        }
    }
}

/// Prints the report and writes its JSON.
fn finish(report: &RunReport, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    println!("{}", report.render());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
