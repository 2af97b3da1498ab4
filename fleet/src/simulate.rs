//! `killswitch-fleet simulate` (hidden): one process of simulated collectors. Each is a
//! real [`killswitch_sdk::Client`] with its own connection to a replica and async pause
//! and resume hooks that record when they started (the SDK runs a hook after the gate
//! closed, before it acknowledges).
//!
//! The orchestrator resumes the program before collectors connect, so a collector is
//! ready once its gate opened: it has a session, got the Snapshot and acknowledged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use killswitch_sdk::{Client, HookResult, StateEvent};

use crate::pki::CollectorIssuer;
use crate::subscribers::{Event, Output, Slots, announce_ready, serve};

/// What one simulator process runs.
#[derive(Debug, Clone)]
pub struct SimulateConfig {
    /// Replica endpoints; collector `i` (counted over the whole run) connects to
    /// `endpoints[i % len]`, so collectors spread evenly over the replicas.
    pub endpoints: Vec<String>,
    /// The run-wide index of this process's first collector.
    pub first: usize,
    /// How many collectors this process runs.
    pub count: usize,
    /// The program every collector follows.
    pub program: String,
    /// With TLS: the PKI directory whose CA issues each collector's certificate.
    pub pki_dir: Option<PathBuf>,
    /// Most collectors connecting at once.
    pub in_flight: usize,
}

/// The collector id of run-wide collector `index`.
#[must_use]
pub fn collector_id(index: usize) -> String {
    format!("sim-{index:06}")
}

/// Starts the collectors, a bounded number connecting at a time, then answers the
/// orchestrator until stdin closes.
pub async fn simulate(config: SimulateConfig) -> anyhow::Result<()> {
    anyhow::ensure!(!config.endpoints.is_empty(), "no replica endpoint");
    let issuer = config
        .pki_dir
        .as_deref()
        .map(CollectorIssuer::load)
        .transpose()?;
    let slots = Slots::new(config.count);
    let mut out = Output::default();
    let mut clients = Vec::with_capacity(config.count);
    let mut gates = Vec::with_capacity(config.count);
    let mut ready = 0;
    let mut last_progress = tokio::time::Instant::now();
    for i in 0..config.count {
        let index = config.first + i;
        let id = collector_id(index);
        let endpoint = &config.endpoints[index % config.endpoints.len()];
        let mut builder = Client::builder()
            .endpoint(endpoint.as_str())
            .collector_id(id.as_str())
            .program(config.program.as_str())
            .on_pause_async(record(Arc::clone(&slots), i))
            .on_resume_async(record(Arc::clone(&slots), i));
        if let Some(issuer) = &issuer {
            let (cert, key) = issuer.issue(&id)?;
            builder = builder.tls(issuer.ca_pem.clone(), cert, key);
        }
        let client = builder
            .start()
            .with_context(|| format!("cannot start collector {id}"))?;
        gates.push(
            client
                .gate(&config.program)
                .context("the program is registered")?,
        );
        clients.push(client);
        // A resume hook has run once the collector is in sync.
        while clients.len() - ready >= config.in_flight.max(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            ready = slots.reached(1);
            if last_progress.elapsed() >= Duration::from_millis(500) {
                out.send(&Event::Progress {
                    ready,
                    total: config.count,
                })
                .await?;
                last_progress = tokio::time::Instant::now();
            }
        }
    }
    announce_ready(&mut out, config.count, || {
        gates.iter().filter(|gate| gate.is_active()).count()
    })
    .await?;
    serve(&mut out, &slots).await?;
    drop(clients);
    Ok(())
}

/// A hook that records that collector `i` heard of the event's generation.
fn record(
    slots: Arc<Slots>,
    i: usize,
) -> impl Fn(StateEvent) -> std::future::Ready<HookResult> + Send + Sync + 'static {
    move |event: StateEvent| {
        slots.record(i, event.generation);
        std::future::ready(Ok(()))
    }
}
