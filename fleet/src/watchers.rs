//! `killswitch-fleet watch` (hidden): one process of etcd watchers, the peers a run is
//! compared with. Each watcher is its own `etcd-client` client (its own connection) with
//! one watch on the benchmark key, as a collector watching etcd directly would be; it
//! records when each put's event arrived. Pointed at `etcd grpc-proxy`, the same watchers
//! measure etcd's own fan-out proxy, which coalesces identical watches upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;

use crate::subscribers::{Event, Output, Slots, announce_ready, serve};

/// What one watcher process runs.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// etcd (or grpc-proxy) endpoints; watcher `i` (counted over the whole run) uses
    /// `endpoints[i % len]`.
    pub endpoints: Vec<String>,
    /// The run-wide index of this process's first watcher.
    pub first: usize,
    /// How many watchers this process runs.
    pub count: usize,
    /// The key every watcher watches.
    pub key: String,
    /// Most watchers connecting at once.
    pub in_flight: usize,
}

/// Connects the watchers, a bounded number at a time, then answers the orchestrator
/// until stdin closes.
pub async fn watch(config: WatchConfig) -> anyhow::Result<()> {
    anyhow::ensure!(!config.endpoints.is_empty(), "no etcd endpoint");
    let slots = Slots::new(config.count);
    let created = Arc::new(AtomicUsize::new(0));
    let mut out = Output::default();
    let mut watchers = JoinSet::new();
    let mut last_progress = tokio::time::Instant::now();
    for i in 0..config.count {
        let endpoint = config.endpoints[(config.first + i) % config.endpoints.len()].clone();
        let (mine, count, key) = (Arc::clone(&slots), Arc::clone(&created), config.key.clone());
        watchers.spawn(async move {
            if let Err(error) = watcher(&endpoint, &key, i, &mine, &count).await {
                eprintln!("killswitch-fleet: watcher {i} on {endpoint} failed: {error:#}");
            }
        });
        while i + 1 - created.load(Ordering::Acquire) >= config.in_flight.max(1) {
            if watchers.try_join_next().is_some() {
                anyhow::bail!("a watcher stopped while connecting; see its error above");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            if last_progress.elapsed() >= Duration::from_millis(500) {
                out.send(&Event::Progress {
                    ready: created.load(Ordering::Acquire),
                    total: config.count,
                })
                .await?;
                last_progress = tokio::time::Instant::now();
            }
        }
    }
    announce_ready(&mut out, config.count, || created.load(Ordering::Acquire)).await?;
    serve(&mut out, &slots).await?;
    watchers.abort_all();
    Ok(())
}

/// One watcher: connects, watches `key`, records every event's revision until the
/// stream ends.
async fn watcher(
    endpoint: &str,
    key: &str,
    i: usize,
    slots: &Slots,
    created: &AtomicUsize,
) -> anyhow::Result<()> {
    let options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(10));
    let mut client = etcd_client::Client::connect([endpoint], Some(options))
        .await
        .context("cannot connect")?;
    let mut stream = client.watch(key, None).await.context("cannot watch")?;
    while let Some(response) = stream.message().await.context("watch failed")? {
        if response.created() {
            created.fetch_add(1, Ordering::AcqRel);
        }
        for event in response.events() {
            if let Some(kv) = event.kv() {
                slots.record(i, u64::try_from(kv.mod_revision()).unwrap_or(0));
            }
        }
    }
    anyhow::bail!("the watch stream ended")
}
