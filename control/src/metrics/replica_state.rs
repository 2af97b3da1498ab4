//! The scrape-time view of the replica: open sessions and the etcd watch's health,
//! revision, silence and reconcile differences, read from the [`Sessions`] and the
//! [`StateCache`] at each scrape, so they cannot drift from them.
//!
//! **Layer:** with the server: it reads the replica and the gRPC edge, which the counters
//! of [`crate::metrics`] must not.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::api::session::Sessions;
use crate::replica::cache::StateCache;

/// The replica's state, read at each scrape: open sessions and the etcd watch.
#[derive(Debug)]
pub struct ReplicaState {
    cache: Arc<StateCache>,
    sessions: Sessions,
}

impl ReplicaState {
    /// Reads `cache` and `sessions` when scraped.
    #[must_use]
    pub fn new(cache: Arc<StateCache>, sessions: Sessions) -> Self {
        Self { cache, sessions }
    }
}

impl Collector for ReplicaState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sessions = i64::try_from(self.sessions.open_sessions()).unwrap_or(i64::MAX);
        describe(
            &mut encoder,
            "killswitch_sessions",
            "Collector sessions open on this replica, Hello received or not.",
            None,
            &ConstGauge::new(sessions),
        )?;
        describe(
            &mut encoder,
            "killswitch_etcd_watch_healthy",
            "1 while the etcd watch is healthy (it answers progress probes), so the replica heartbeats and accepts sessions; 0 otherwise.",
            None,
            &ConstGauge::new(i64::from(self.cache.is_healthy())),
        )?;
        let revision = i64::try_from(self.cache.revision()).unwrap_or(i64::MAX);
        describe(
            &mut encoder,
            "killswitch_etcd_watch_revision",
            "The etcd revision the replica's state cache is current up to.",
            None,
            &ConstGauge::new(revision),
        )?;
        describe(
            &mut encoder,
            "killswitch_etcd_watch_lag",
            "Time since the etcd watch last heard from etcd (an event, a progress notification or a listing), or since start if it never did.",
            Some(&Unit::Seconds),
            &ConstGauge::new(self.cache.since_heard().as_secs_f64()),
        )?;
        describe(
            &mut encoder,
            "killswitch_reconcile_differences",
            "Program states the periodic reconcile found different from etcd and corrected: anything but 0 means the watch missed a change.",
            None,
            &ConstCounter::new(self.cache.reconcile_differences()),
        )
    }
}

fn describe(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    let metric_encoder = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(metric_encoder)
}
