//! The peers a run is compared with, on the same machine and etcd: N watchers directly on
//! etcd (one `etcd-client` watch per simulated collector) and N watchers through
//! `etcd grpc-proxy`, which coalesces identical watches into one upstream. Each round
//! puts the watched key and measures from just before the put to each watcher's
//! notification. The watchers run in separate processes, like the simulated collectors.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::console::{connect_etcd, progress_bar};
use crate::processes::{GrpcProxy, Subscribers};
use crate::report::{PeerReport, PeerRound};
use crate::stats::{Quantiles, ms_between};
use crate::subscribers::unix_ns;

/// Most watchers one etcd serves directly: each is a connection to etcd, which has the
/// same 20,000 open files as every process here.
pub const ETCD_DIRECT_MAX: usize = 19_500;

/// What to measure.
#[derive(Debug, Clone)]
pub struct PeersConfig {
    /// Watchers (as many as the collectors compared with).
    pub watchers: usize,
    /// Puts.
    pub rounds: usize,
    /// Most watchers per watcher process; also per grpc-proxy.
    pub per_process: usize,
    /// Most watchers connecting at once, per process.
    pub in_flight: usize,
}

/// Measures both peers against `etcd` (an `http://` endpoint); proxies keep their data
/// under `work`.
pub async fn measure(
    etcd: &str,
    work: &Path,
    config: &PeersConfig,
) -> anyhow::Result<Vec<PeerReport>> {
    let mut reports = Vec::new();
    if config.watchers > ETCD_DIRECT_MAX {
        reports.push(PeerReport {
            name: "etcd-direct".to_owned(),
            watchers: config.watchers,
            servers: 1,
            skipped: Some(format!(
                "one etcd process holds at most about {ETCD_DIRECT_MAX} connections within its \
                 20,000 open files"
            )),
            ..PeerReport::default()
        });
    } else {
        reports.push(measure_one("etcd-direct", &[etcd.to_owned()], etcd, config).await?);
    }
    // One proxy per `per_process` watchers, for the same open-file reason.
    let mut proxies = Vec::new();
    for i in 0..config.watchers.div_ceil(config.per_process).max(1) {
        proxies.push(GrpcProxy::start(etcd, &work.join(format!("proxy-{i}"))).await?);
    }
    let endpoints: Vec<String> = proxies.iter().map(|p| p.endpoint.clone()).collect();
    reports.push(measure_one("etcd-grpc-proxy", &endpoints, etcd, config).await?);
    drop(proxies);
    Ok(reports)
}

async fn measure_one(
    name: &str,
    endpoints: &[String],
    etcd: &str,
    config: &PeersConfig,
) -> anyhow::Result<PeerReport> {
    let key = format!("/killswitch-fleet/peers/{name}");
    let processes = config.watchers.div_ceil(config.per_process).max(1);
    let mut spawn = Vec::with_capacity(processes);
    let mut first = 0;
    for p in 0..processes {
        let count = config.watchers / processes + usize::from(p < config.watchers % processes);
        let args = vec![
            "watch".to_owned(),
            "--endpoints".to_owned(),
            endpoints.join(","),
            "--first".to_owned(),
            first.to_string(),
            "--count".to_owned(),
            count.to_string(),
            "--key".to_owned(),
            key.clone(),
            "--in-flight".to_owned(),
            config.in_flight.to_string(),
        ];
        spawn.push((args, count));
        first += count;
    }
    let mut watchers = Subscribers::spawn(spawn)?;
    let bar = progress_bar(config.watchers as u64, &format!("{name} watchers"));
    watchers
        .wait_ready(&bar, Duration::from_secs(600))
        .await
        .with_context(|| format!("the {name} watchers did not all connect"))?;
    bar.finish_and_clear();
    let mut client = connect_etcd(etcd).await?;
    let mut report = PeerReport {
        name: name.to_owned(),
        watchers: config.watchers,
        servers: endpoints.len(),
        ..PeerReport::default()
    };
    for round in 1..=config.rounds {
        let sent = unix_ns(SystemTime::now());
        let response = client.put(key.as_str(), round.to_string(), None).await?;
        let revision = response
            .header()
            .map(|h| u64::try_from(h.revision()).unwrap_or(0))
            .context("the put returned no revision")?;
        let (times, missing) = watchers.report(revision, Duration::from_secs(30)).await?;
        let latency = Quantiles::of(times.iter().map(|&t| ms_between(sent, t)).collect());
        eprintln!(
            "{name} round {round}: notified {}/{}; {}",
            times.len(),
            config.watchers,
            latency.map_or("-".to_owned(), |q| format!(
                "p50 {:.0} ms, last {:.0} ms",
                q.p50_ms, q.max_ms
            ))
        );
        report.rounds.push(PeerRound {
            notified: times.len(),
            missing,
            latency,
        });
    }
    watchers.stop(Duration::from_secs(30)).await;
    report.summarize();
    Ok(report)
}
