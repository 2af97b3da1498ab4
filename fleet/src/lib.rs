//! `killswitch-fleet`: the fleet-scale load tool (issues #7 and #20).
//!
//! `killswitch-fleet run --collectors N` starts etcd, `--replicas R` control replicas and
//! as many simulator processes as N needs (each at most 18,000 collectors: the machine
//! allows 20,000 open files per process), connects N real SDK clients, then pauses and
//! resumes a program `--rounds K` times and reports commit-to-hook and commit-to-ack
//! latencies, acknowledgements, replica CPU and memory from `/proc`, and the etcd writes
//! of each change. `--peers` adds the comparison with N etcd watchers, directly and
//! through `etcd grpc-proxy`; `--idle-secs` measures the idle fleet's cost and `--cli`
//! times `killswitch pause --wait` end to end. `killswitch-fleet floor` measures what the
//! machine allows without gRPC. `BENCHMARKS.md` has the commands and the numbers;
//! `fleet/results/` holds the JSON reports and the plot it cites.
//!
//! # Layout
//!
//! - `cli.rs`: the subcommands and their flags.
//! - `run.rs`: the orchestrator and what it measures per change.
//! - `peers.rs`: the etcd watch peers.
//! - `floor.rs`: the plain tokio floor and its server process.
//! - `console.rs`: the progress bar and the orchestrator's etcd client, which both use.
//! - `simulate.rs`, `watchers.rs`: the child processes holding simulated collectors and
//!   etcd watchers.
//! - `subscribers.rs`: the line protocol between the orchestrator and its children, and
//!   the lock-free table where children record when each subscriber heard of a change.
//! - `processes.rs`: starting and stopping replicas, grpc-proxies and children.
//! - `admin.rs`: pausing and resuming through `AdminService`.
//! - `pki.rs`: TLS material: CA, server certificate, per-collector certificates.
//! - `procfs.rs`: memory and CPU time from `/proc`.
//! - `stats.rs`: percentiles and medians.
//! - `report.rs`: the JSON report, summaries, targets and text output.
//! - `plot.rs`: latency against N as SVG.

pub mod admin;
pub mod cli;
pub mod console;
pub mod floor;
pub mod peers;
pub mod pki;
pub mod plot;
pub mod processes;
pub mod procfs;
pub mod report;
pub mod run;
pub mod simulate;
pub mod stats;
pub mod subscribers;
pub mod watchers;
