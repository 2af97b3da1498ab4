//! A run's results: what the JSON file holds, the summary over rounds, the targets of
//! issue #20, and the text printed at the end of a run.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::admin::Kind;
use crate::stats::{Quantiles, median};

/// Everything one `killswitch-fleet run` (or `peers`) measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// Where and when it ran.
    pub machine: Machine,
    /// What it ran.
    pub config: RunSettings,
    /// Seconds from starting the simulators to every collector in sync.
    pub connect_secs: f64,
    /// Each replica's resident memory before and after its collectors connected.
    pub idle: Vec<IdleMemory>,
    /// Every pause and resume, in order.
    pub changes: Vec<ChangeReport>,
    /// Medians over the pauses.
    pub pause: Option<Summary>,
    /// Medians over the resumes.
    pub resume: Option<Summary>,
    /// The peers, measured in the same run.
    pub peers: Vec<PeerReport>,
    /// What the idle fleet cost, once every collector was in sync.
    #[serde(default)]
    pub idle_cost: Option<IdleCost>,
    /// `killswitch pause --wait` through the real CLI, after the rounds.
    #[serde(default)]
    pub cli_waits: Vec<CliWait>,
}

/// What the idle fleet cost over a quiet window: heartbeats, keep-alives, the replicas'
/// etcd watch probes and lease renewals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleCost {
    /// The window, seconds.
    pub seconds: f64,
    /// etcd revisions (writes) during the window.
    pub etcd_writes: i64,
    /// Each replica's CPU.
    pub replicas: Vec<IdleCpu>,
}

impl IdleCost {
    /// The busiest replica's CPU, in percent of one core.
    #[must_use]
    pub fn max_percent_of_core(&self) -> Option<f64> {
        self.replicas
            .iter()
            .map(|r| r.percent_of_core)
            .reduce(f64::max)
    }

    /// One line of text.
    #[must_use]
    pub fn render(&self) -> String {
        let cpu: Vec<String> = self
            .replicas
            .iter()
            .map(|r| {
                format!(
                    "{} ({} sessions) {:.2}% of a core",
                    r.replica, r.sessions, r.percent_of_core
                )
            })
            .collect();
        format!(
            "idle for {:.0} s: {}; {} etcd writes",
            self.seconds,
            cpu.join(", "),
            self.etcd_writes
        )
    }
}

/// One replica's CPU while its collectors were idle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleCpu {
    /// The replica id.
    pub replica: String,
    /// Its sessions.
    pub sessions: u64,
    /// CPU time over the window, in percent of one core.
    pub percent_of_core: f64,
}

/// One `killswitch pause --wait`, timed from outside the CLI.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CliWait {
    /// 1-based.
    pub round: usize,
    /// The CLI's exit code (0: every collector acknowledged).
    pub exit_code: Option<i32>,
    /// From starting the CLI process to its exit.
    pub wall_ms: f64,
    /// From the commit (the new state's `changed_at`) to the CLI's exit.
    pub commit_to_exit_ms: f64,
    /// What the CLI wrote to standard error when it exited with an error (why the wait
    /// failed); empty when it succeeded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl CliWait {
    /// One line of text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut line = format!(
            "killswitch pause --wait {}: exit {}; {:.0} ms from start to exit, {:.0} ms from commit to exit",
            self.round,
            self.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            self.wall_ms,
            self.commit_to_exit_ms
        );
        if !self.error.is_empty() {
            line.push_str("; ");
            line.push_str(&self.error);
        }
        line
    }
}

/// The machine a run measured on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started.
    pub load_before: Option<[f64; 3]>,
    /// `/proc/loadavg` when it ended.
    pub load_after: Option<[f64; 3]>,
    /// Unix seconds at the start.
    pub started_at: u64,
}

/// How a run was configured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSettings {
    /// Simulated collectors (0 for a peers-only run).
    pub collectors: usize,
    /// Control replicas.
    pub replicas: usize,
    /// Simulator processes.
    pub simulators: usize,
    /// Whether sessions and admin calls used TLS (mutual TLS for collectors).
    pub tls: bool,
    /// Pause/resume rounds.
    pub rounds: usize,
    /// Whether this is a release build of the tool.
    pub release: bool,
}

/// One replica's memory around connecting its collectors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleMemory {
    /// The replica id.
    pub replica: String,
    /// Sessions it reported connected.
    pub sessions: u64,
    /// VmRSS before any collector connected.
    pub rss_before_bytes: u64,
    /// VmRSS with every collector connected and idle.
    pub rss_after_bytes: u64,
    /// The difference per session.
    pub bytes_per_session: f64,
}

/// One pause or resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeReport {
    /// 1-based round.
    pub round: usize,
    /// Pause or resume.
    pub kind: Kind,
    /// The new generation (etcd revision of the state key).
    pub generation: u64,
    /// Collectors in the run.
    pub collectors: usize,
    /// Collectors whose hook ran for this generation.
    pub hooked: usize,
    /// Collectors whose successful Ack for this generation the replicas counted.
    pub acked: u64,
    /// Collectors that acknowledged with an error.
    pub errored: u64,
    /// Commit (the state's `changed_at`) to the collector's hook starting, measured in
    /// the simulators.
    pub hook: Option<Quantiles>,
    /// Commit to each Ack as the replicas recorded it (the Ack's `applied_at`, taken by
    /// the SDK once the hook returned), from the replicas' histograms (within ~5%, max
    /// exact).
    pub ack: Option<Quantiles>,
    /// Commit to the moment etcd held every replica's summary counting every collector:
    /// when `killswitch status` can first show the pause complete. Includes the
    /// replicas' wait for the round to settle and their receipt and summary writes.
    pub confirmed_ms: Option<f64>,
    /// How long the admin RPC took.
    pub rpc_ms: f64,
    /// From sending the admin RPC to the commit time it returned.
    pub commit_after_rpc_ms: f64,
    /// etcd revisions the change caused: the state transaction plus every summary write,
    /// counted until etcd was quiet again.
    pub etcd_writes: i64,
    /// Of those, the writes of collectors' receipts for this generation: the chunks under
    /// `{prefix}/receipts/{program}/{generation:020}/` (each write creates one key). 0
    /// when collectors attach no receipts.
    #[serde(default)]
    pub receipt_writes: u64,
    /// The bytes of those chunks (values only).
    #[serde(default)]
    pub receipt_bytes: u64,
    /// CPU time (user + system) of all replicas from the RPC to confirmation, per
    /// collector, in microseconds.
    pub replica_cpu_us_per_collector: f64,
}

/// Medians over the rounds of one kind of change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Rounds counted.
    pub rounds: usize,
    /// Whether every collector acknowledged in every round.
    pub all_acked: bool,
    /// Median of the rounds' commit-to-hook p50.
    pub hook_p50_ms: Option<f64>,
    /// Median of the rounds' commit-to-last-hook.
    pub hook_max_ms: Option<f64>,
    /// Median of the rounds' commit-to-ack p50.
    pub ack_p50_ms: Option<f64>,
    /// Median of the rounds' commit-to-ack p90.
    pub ack_p90_ms: Option<f64>,
    /// Median of the rounds' commit-to-ack p99.
    pub ack_p99_ms: Option<f64>,
    /// Median of the rounds' commit-to-last-ack.
    pub ack_max_ms: Option<f64>,
    /// Worst round's commit-to-last-ack.
    pub ack_max_worst_ms: Option<f64>,
    /// Median of the rounds' commit-to-confirmed.
    pub confirmed_ms: Option<f64>,
    /// Median of the rounds' confirmed minus last ack.
    #[serde(default)]
    pub confirmed_after_last_ack_ms: Option<f64>,
    /// Median replica CPU per collector per change, microseconds.
    pub cpu_us_per_collector: Option<f64>,
    /// Most etcd writes any round caused.
    pub etcd_writes_max: i64,
    /// Most receipt writes any round caused.
    #[serde(default)]
    pub receipt_writes_max: u64,
    /// Most writes besides receipts any round caused: the state's transaction and the
    /// summaries.
    #[serde(default)]
    pub summary_writes_max: i64,
    /// Median of the rounds' receipt bytes.
    #[serde(default)]
    pub receipt_bytes: Option<f64>,
}

impl Summary {
    /// Summarizes the changes of `kind`; `None` when there are none.
    #[must_use]
    pub fn of(changes: &[ChangeReport], kind: Kind) -> Option<Self> {
        let of_kind: Vec<&ChangeReport> = changes.iter().filter(|c| c.kind == kind).collect();
        if of_kind.is_empty() {
            return None;
        }
        let med =
            |f: &dyn Fn(&ChangeReport) -> Option<f64>| median(of_kind.iter().filter_map(|c| f(c)));
        Some(Self {
            rounds: of_kind.len(),
            all_acked: of_kind
                .iter()
                .all(|c| c.acked == c.collectors as u64 && c.errored == 0),
            hook_p50_ms: med(&|c| c.hook.map(|q| q.p50_ms)),
            hook_max_ms: med(&|c| c.hook.map(|q| q.max_ms)),
            ack_p50_ms: med(&|c| c.ack.map(|q| q.p50_ms)),
            ack_p90_ms: med(&|c| c.ack.map(|q| q.p90_ms)),
            ack_p99_ms: med(&|c| c.ack.map(|q| q.p99_ms)),
            ack_max_ms: med(&|c| c.ack.map(|q| q.max_ms)),
            ack_max_worst_ms: of_kind
                .iter()
                .filter_map(|c| c.ack.map(|q| q.max_ms))
                .reduce(f64::max),
            confirmed_ms: med(&|c| c.confirmed_ms),
            confirmed_after_last_ack_ms: med(&|c| Some(c.confirmed_ms? - c.ack?.max_ms)),
            cpu_us_per_collector: med(&|c| Some(c.replica_cpu_us_per_collector)),
            etcd_writes_max: of_kind.iter().map(|c| c.etcd_writes).max().unwrap_or(0),
            receipt_writes_max: of_kind.iter().map(|c| c.receipt_writes).max().unwrap_or(0),
            summary_writes_max: of_kind
                .iter()
                .map(|c| c.etcd_writes - i64::try_from(c.receipt_writes).unwrap_or(i64::MAX))
                .max()
                .unwrap_or(0),
            receipt_bytes: med(&|c| Some(c.receipt_bytes as f64)),
        })
    }
}

/// One peer (etcd watches, directly or through grpc-proxy) at one size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerReport {
    /// `etcd-direct` or `etcd-grpc-proxy`.
    pub name: String,
    /// Watchers.
    pub watchers: usize,
    /// etcd or proxy processes the watchers were spread over.
    pub servers: usize,
    /// Why it was not measured, if it was not.
    pub skipped: Option<String>,
    /// Put-to-notify latencies, one entry per round.
    pub rounds: Vec<PeerRound>,
    /// Median of the rounds' put-to-notify p50.
    pub median_p50_ms: Option<f64>,
    /// Median of the rounds' put-to-last-notify.
    pub median_last_ms: Option<f64>,
    /// Our median commit-to-last-ack (pause) divided by this peer's median
    /// put-to-last-notify, when both were measured.
    pub ratio_last_ack_to_last_notify: Option<f64>,
}

/// One put, as the watchers saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerRound {
    /// Watchers notified.
    pub notified: usize,
    /// Watchers not notified in time.
    pub missing: usize,
    /// From just before the put to each watcher's notification.
    pub latency: Option<Quantiles>,
}

impl PeerReport {
    /// Fills in the medians.
    pub fn summarize(&mut self) {
        self.median_p50_ms = median(
            self.rounds
                .iter()
                .filter_map(|r| r.latency.map(|q| q.p50_ms)),
        );
        self.median_last_ms = median(
            self.rounds
                .iter()
                .filter_map(|r| r.latency.map(|q| q.max_ms)),
        );
    }
}

impl RunReport {
    /// Fills in the summaries and the ratios to the peers.
    pub fn summarize(&mut self) {
        self.pause = Summary::of(&self.changes, Kind::Pause);
        self.resume = Summary::of(&self.changes, Kind::Resume);
        let ours = self.pause.as_ref().and_then(|s| s.ack_max_ms);
        for peer in &mut self.peers {
            peer.summarize();
            peer.ratio_last_ack_to_last_notify = match (ours, peer.median_last_ms) {
                (Some(ours), Some(theirs)) if theirs > 0.0 => Some(ours / theirs),
                _ => None,
            };
        }
    }

    /// Bytes per idle session, over every replica.
    #[must_use]
    pub fn bytes_per_session(&self) -> Option<f64> {
        let sessions: u64 = self.idle.iter().map(|i| i.sessions).sum();
        let grown: i128 = self
            .idle
            .iter()
            .map(|i| i128::from(i.rss_after_bytes) - i128::from(i.rss_before_bytes))
            .sum();
        (sessions > 0).then(|| grown as f64 / sessions as f64)
    }

    /// One table row per measured change.
    fn write_changes(&self, text: &mut String) {
        for change in &self.changes {
            let _ = writeln!(
                text,
                "| {} {} | {}/{} | {} | {} | {} | {:.1} µs | {} |",
                change.kind,
                change.round,
                change.acked,
                change.collectors,
                change.hook.map_or("-".to_owned(), |q| format!(
                    "{:.0} / {:.0} ms",
                    q.p50_ms, q.max_ms
                )),
                change.ack.map_or("-".to_owned(), |q| format!(
                    "{:.0} / {:.0} / {:.0} / {:.0} ms",
                    q.p50_ms, q.p90_ms, q.p99_ms, q.max_ms
                )),
                change
                    .confirmed_ms
                    .map_or("-".to_owned(), |ms| format!("{ms:.0} ms")),
                change.replica_cpu_us_per_collector,
                change.etcd_writes,
            );
        }
    }

    /// The medians of the pause and of the resume rounds.
    fn write_summaries(&self, text: &mut String) {
        for (name, summary) in [("pause", &self.pause), ("resume", &self.resume)] {
            if let Some(s) = summary {
                let _ = writeln!(
                    text,
                    "\n{name}: median of {} rounds: hook p50 {} last {}; ack p50 {} p90 {} p99 {} last {} (worst {}); confirmed {}; replica CPU {} per collector; etcd writes <= {}; every collector acked every round: {}",
                    s.rounds,
                    ms(s.hook_p50_ms),
                    ms(s.hook_max_ms),
                    ms(s.ack_p50_ms),
                    ms(s.ack_p90_ms),
                    ms(s.ack_p99_ms),
                    ms(s.ack_max_ms),
                    ms(s.ack_max_worst_ms),
                    ms(s.confirmed_ms),
                    s.cpu_us_per_collector
                        .map_or("-".to_owned(), |us| format!("{us:.1} µs")),
                    s.etcd_writes_max,
                    s.all_acked,
                );
            }
        }
    }

    /// The report as text: per-change lines, summaries, peers and the targets.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        let c = &self.config;
        let _ = writeln!(
            text,
            "\n{} collectors on {} replica(s), {} simulator process(es), {}, {} round(s); load before {}",
            c.collectors,
            c.replicas,
            c.simulators,
            if c.tls { "TLS" } else { "plain text" },
            c.rounds,
            self.machine.load_before.map_or("?".to_owned(), |l| format!(
                "{:.2} {:.2} {:.2}",
                l[0], l[1], l[2]
            )),
        );
        if c.collectors > 0 {
            let _ = writeln!(
                text,
                "connected in {:.1} s; replica memory per idle session: {}",
                self.connect_secs,
                self.bytes_per_session()
                    .map_or("?".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
            );
            let _ = writeln!(
                text,
                "\n| change | acked | hook p50 / max | ack p50 / p90 / p99 / max | confirmed | CPU/collector | etcd writes |\n|---|---|---|---|---|---|---|"
            );
            self.write_changes(&mut text);
            self.write_summaries(&mut text);
        }
        for peer in &self.peers {
            match &peer.skipped {
                Some(why) => {
                    let _ = writeln!(
                        text,
                        "\n{} with {} watchers: skipped: {why}",
                        peer.name, peer.watchers
                    );
                }
                None => {
                    let _ = writeln!(
                        text,
                        "\n{} with {} watchers over {} server(s): median of {} rounds: put to notify p50 {}, to last notify {}; our last ack / their last notify = {}",
                        peer.name,
                        peer.watchers,
                        peer.servers,
                        peer.rounds.len(),
                        ms(peer.median_p50_ms),
                        ms(peer.median_last_ms),
                        peer.ratio_last_ack_to_last_notify
                            .map_or("-".to_owned(), |r| format!("{r:.2}")),
                    );
                }
            }
        }
        if let Some(idle) = &self.idle_cost {
            let _ = writeln!(text, "\n{}", idle.render());
        }
        for wait in &self.cli_waits {
            let _ = writeln!(text, "{}", wait.render());
        }
        if let Some(pause) = &self.pause {
            text.push_str(&self.targets(pause));
        }
        text
    }

    /// Median of the CLI's `pause --wait`, commit to exit.
    #[must_use]
    pub fn cli_wait_ms(&self) -> Option<f64> {
        median(self.cli_waits.iter().map(|w| w.commit_to_exit_ms))
    }

    /// Issue #20's targets, each with whether this run met it (the latency, CPU and peer
    /// targets are set for 10,000 collectors on one replica; the 2 s bound for 100,000
    /// over 6 replicas; memory, etcd writes and the idle cost for any run).
    fn targets(&self, pause: &Summary) -> String {
        let mut text = String::from("\ntargets (issue #20):\n");
        let mut line = |what: String, met: Option<bool>| {
            let verdict = match met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            };
            let _ = writeln!(text, "  {what}: {verdict}");
        };
        let tls = self.config.tls;
        let (last_max, cpu_max, memory_max) = if tls {
            (200.0, 18.0, 24.0)
        } else {
            (150.0, 15.0, 16.0)
        };
        line(
            format!(
                "commit to last ack <= {last_max:.0} ms (median {})",
                ms(pause.ack_max_ms)
            ),
            pause.ack_max_ms.map(|v| v <= last_max),
        );
        line(
            format!(
                "commit to ack p50 <= 75 ms (median {})",
                ms(pause.ack_p50_ms)
            ),
            pause.ack_p50_ms.map(|v| v <= 75.0),
        );
        line(
            format!(
                "confirmed in status <= last ack + 50 ms (median: last ack + {})",
                ms(pause.confirmed_after_last_ack_ms)
            ),
            pause.confirmed_after_last_ack_ms.map(|v| v <= 50.0),
        );
        for peer in self.peers.iter().filter(|p| p.skipped.is_none()) {
            line(
                format!(
                    "last ack <= 1.0 x {}'s last notify (ratio {})",
                    peer.name,
                    peer.ratio_last_ack_to_last_notify
                        .map_or("-".to_owned(), |r| format!("{r:.2}"))
                ),
                peer.ratio_last_ack_to_last_notify.map(|r| r <= 1.0),
            );
        }
        line(
            format!(
                "replica CPU per collector per pause <= {cpu_max:.0} µs ({})",
                pause
                    .cpu_us_per_collector
                    .map_or("-".to_owned(), |us| format!("{us:.1} µs"))
            ),
            pause.cpu_us_per_collector.map(|v| v <= cpu_max),
        );
        let per_session = self.bytes_per_session();
        line(
            format!(
                "memory per idle session <= {memory_max:.0} KiB ({})",
                per_session.map_or("-".to_owned(), |b| format!("{:.1} KiB", b / 1024.0))
            ),
            per_session.map(|b| b <= memory_max * 1024.0),
        );
        let allowed = 1 + self.config.replicas as i64;
        line(
            format!(
                "etcd writes per pause <= 1 + replicas = {allowed}, receipts aside (most: {}; \
                 receipt chunks besides: at most {})",
                pause.summary_writes_max, pause.receipt_writes_max
            ),
            Some(pause.summary_writes_max <= allowed),
        );
        line(
            format!(
                "every collector acked within 2 s of the commit (worst round's last ack {})",
                ms(pause.ack_max_worst_ms)
            ),
            pause
                .ack_max_worst_ms
                .map(|v| v <= 2000.0 && pause.all_acked),
        );
        if let Some(idle) = &self.idle_cost {
            line(
                format!(
                    "idle: replica CPU <= 2% of one core ({})",
                    idle.max_percent_of_core()
                        .map_or("-".to_owned(), |p| format!("{p:.2}%"))
                ),
                idle.max_percent_of_core().map(|p| p <= 2.0),
            );
            line(
                format!("idle: no etcd writes ({})", idle.etcd_writes),
                Some(idle.etcd_writes == 0),
            );
        }
        text
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |v| format!("{v:.0} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: Kind, max: f64, acked: u64) -> ChangeReport {
        ChangeReport {
            round: 1,
            kind,
            generation: 1,
            collectors: 10,
            hooked: 10,
            acked,
            errored: 0,
            hook: None,
            ack: Some(Quantiles {
                p50_ms: max / 2.0,
                p90_ms: max,
                p99_ms: max,
                max_ms: max,
            }),
            confirmed_ms: Some(max + 100.0),
            rpc_ms: 1.0,
            commit_after_rpc_ms: 0.5,
            etcd_writes: 3,
            receipt_writes: 1,
            receipt_bytes: 5000,
            replica_cpu_us_per_collector: 10.0,
        }
    }

    #[test]
    fn summaries_and_ratios() {
        let mut report = RunReport {
            config: RunSettings {
                collectors: 10,
                replicas: 1,
                ..RunSettings::default()
            },
            changes: vec![
                change(Kind::Pause, 100.0, 10),
                change(Kind::Resume, 50.0, 10),
                change(Kind::Pause, 300.0, 10),
                change(Kind::Pause, 200.0, 9),
            ],
            peers: vec![PeerReport {
                name: "etcd-direct".into(),
                rounds: vec![PeerRound {
                    notified: 10,
                    missing: 0,
                    latency: Quantiles::of(vec![100.0, 400.0]),
                }],
                ..PeerReport::default()
            }],
            ..RunReport::default()
        };
        report.summarize();
        let pause = report.pause.clone().expect("pauses");
        assert_eq!(pause.rounds, 3);
        assert_eq!(pause.ack_max_ms, Some(200.0));
        assert_eq!(pause.ack_max_worst_ms, Some(300.0));
        assert!(!pause.all_acked);
        assert_eq!(report.resume.as_ref().map(|s| s.all_acked), Some(true));
        assert_eq!(report.peers[0].ratio_last_ack_to_last_notify, Some(0.5));
        let text = report.render();
        assert!(
            text.contains(
                "etcd writes per pause <= 1 + replicas = 2, receipts aside (most: 2; receipt \
                 chunks besides: at most 1): met"
            ),
            "{text}"
        );
        assert!(
            text.contains("commit to last ack <= 150 ms (median 200 ms): NOT met"),
            "{text}"
        );
        assert!(
            text.contains(
                "confirmed in status <= last ack + 50 ms (median: last ack + 100 ms): NOT met"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_cli_wait_says_why() {
        let failed = CliWait {
            round: 2,
            exit_code: Some(1),
            wall_ms: 4084.0,
            commit_to_exit_ms: 4073.0,
            error: "error: the status stream broke: reset".into(),
        };
        assert_eq!(
            failed.render(),
            "killswitch pause --wait 2: exit 1; 4084 ms from start to exit, 4073 ms from commit \
             to exit; error: the status stream broke: reset"
        );
        let ok = CliWait {
            error: String::new(),
            exit_code: Some(0),
            ..failed.clone()
        };
        assert!(
            ok.render().ends_with("4073 ms from commit to exit"),
            "{}",
            ok.render()
        );
        let json = serde_json::to_string(&ok).expect("serializes");
        assert!(!json.contains("error"), "{json}");
        let back: CliWait = serde_json::from_str(&json).expect("a report without error reads");
        assert!(back.error.is_empty());
    }
}
