//! Model values as admin API messages: the one place a [`FleetStatus`] becomes a
//! `StatusResponse` and a [`StopAllFlag`] a `StopAll`.

use std::time::{Duration, SystemTime};

use killswitch_proto::v1;

use crate::model::status::{Counts, FleetStatus};
use crate::model::targeting::StopAllFlag;

/// The `Status` and `WatchStatus` answer for `status`.
#[must_use]
pub fn status_response(status: &FleetStatus) -> v1::StatusResponse {
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let times = status.ack_times;
    v1::StatusResponse {
        state: Some(status.state.to_wire()),
        collectors: Some(collector_counts(&status.counts)),
        replicas: status.replicas.clone(),
        ack_times: Some(v1::AckTimes {
            count: times.count,
            p50_us: micros(times.p50),
            max_us: micros(times.max),
            propagation_us: micros(times.propagation),
        }),
        replicas_behind: status.replicas_behind.clone(),
        // The program's state carries the stop-all mark in the same transaction as the
        // flag, so the banner comes from the state that was read, not a second read.
        stop_all: status
            .state
            .targeting
            .stop_all
            .as_ref()
            .map(|s| s.to_wire()),
        // Not the fleet's but the auth file's: the admin service fills it in.
        pinned_labels: Vec::new(),
    }
}

fn collector_counts(counts: &Counts) -> v1::CollectorCounts {
    let timestamp = |at: Option<SystemTime>| at.map(killswitch_proto::timestamp);
    v1::CollectorCounts {
        connected: counts.connected,
        acked: counts.acked,
        pending: counts.pending.clone(),
        errored: counts
            .errored
            .iter()
            .map(|e| v1::CollectorError {
                collector_id: e.collector_id.clone(),
                error: e.error.clone(),
                replica: e.replica.clone(),
            })
            .collect(),
        pending_count: counts.pending_count,
        errored_count: counts.errored_count,
        disconnected: counts
            .disconnected
            .iter()
            .map(|d| v1::Disconnected {
                collector_id: d.collector_id.clone(),
                at: timestamp(d.at),
                replica: d.replica.clone(),
            })
            .collect(),
        disconnected_count: counts.disconnected_count,
        purged: counts.purged,
        diverged: counts
            .diverged
            .iter()
            .map(|d| v1::CollectorDiverged {
                collector_id: d.collector_id.clone(),
                replica: d.replica.clone(),
                effective: d.effective.to_wire() as i32,
                intended: d.intended.to_wire() as i32,
            })
            .collect(),
        diverged_count: counts.diverged_count,
    }
}

/// The stop-all flag as the admin API shows it.
#[must_use]
pub fn stop_all(flag: &StopAllFlag) -> v1::StopAll {
    let mut message = flag
        .mark
        .as_ref()
        .map_or_else(v1::StopAll::default, |mark| mark.to_wire());
    message.generation = flag.generation;
    if let Some(request) = &flag.clear_request {
        message.clear_request_id.clone_from(&request.id);
        message.clear_requested_by.clone_from(&request.requested_by);
        message.clear_request_expires_at = request.expires_at.map(killswitch_proto::timestamp);
    }
    message
}
