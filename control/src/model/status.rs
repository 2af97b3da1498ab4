//! Fleet-wide status: a program's state plus the acknowledgement summaries of every
//! replica, combined into a [`FleetStatus`] that the admin API and the rollout driver
//! consume. Pure, so every rule is unit-tested.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use killswitch_proto::v1::store;

use crate::model::latency::Histogram;
use crate::model::{ProgramState, RunState};

/// Longest list of ids a summary carries (laggards, errored, diverged, disconnected), and
/// a status lists.
pub const SUMMARY_LIST_LIMIT: usize = 100;

/// One replica's summary, as read from `{prefix}/acks/{program}/{replica}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSummary {
    /// The replica's id.
    pub replica: String,
    /// What it reported.
    pub summary: store::AckSummary,
}

/// A program's status across the fleet, judged against its current generation.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetStatus {
    /// The program's stored state.
    pub state: ProgramState,
    /// Its collectors' acknowledgements of the current generation.
    pub counts: Counts,
    /// Replicas whose collectors are counted, sorted.
    pub replicas: Vec<String>,
    /// Commit-to-acknowledgement times of the current generation.
    pub ack_times: AckTimes,
    /// Registered replicas that have not reported on the current generation, sorted.
    pub replicas_behind: Vec<String>,
}

/// Acknowledgement counts over every replica; each list at most [`SUMMARY_LIST_LIMIT`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Collectors connected (in the last change's scope).
    pub connected: u64,
    /// Acknowledged without error, the gate as intended.
    pub acked: u64,
    /// Of those, how many confirmed deleting buffered data.
    pub purged: u64,
    /// Not acknowledged the current generation: the count, and the first ids, sorted.
    pub pending_count: u64,
    /// See `pending_count`.
    pub pending: Vec<String>,
    /// Acknowledged with an error: the count, and the first, by id.
    pub errored_count: u64,
    /// See `errored_count`.
    pub errored: Vec<Errored>,
    /// Acknowledged without error, the gate not as intended: the count and the first.
    pub diverged_count: u64,
    /// See `diverged_count`.
    pub diverged: Vec<Diverged>,
    /// Recently disconnected: the count, and the newest first.
    pub disconnected_count: u64,
    /// See `disconnected_count`.
    pub disconnected: Vec<Disconnected>,
}

/// A collector whose hooks failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errored {
    /// Its id.
    pub collector_id: String,
    /// What it reported.
    pub error: String,
    /// The replica it is connected to.
    pub replica: String,
}

/// A collector whose gate is not in the state intended for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diverged {
    /// Its id.
    pub collector_id: String,
    /// The replica it is connected to.
    pub replica: String,
    /// What it acknowledged its gate is.
    pub effective: RunState,
    /// What the control plane intends.
    pub intended: RunState,
}

/// A collector that disconnected recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    /// Its id.
    pub collector_id: String,
    /// When, if known.
    pub at: Option<SystemTime>,
    /// The replica it was connected to.
    pub replica: String,
}

/// Commit-to-acknowledgement times of the current generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckTimes {
    /// How many acknowledgements the figures cover.
    pub count: u64,
    /// Median (within about 5%).
    pub p50: Duration,
    /// The longest.
    pub max: Duration,
    /// From the commit to the last acknowledgement so far.
    pub propagation: Duration,
}

/// Judges every replica's collectors against the program's current generation;
/// `registered` are the replicas alive in etcd, each of which must report on it.
#[must_use]
pub fn aggregate(
    state: &ProgramState,
    summaries: &[ReplicaSummary],
    registered: &[String],
) -> FleetStatus {
    let current = state.generation;
    let mut counts = Counts::default();
    let mut latency = Histogram::default();
    let mut last_ack: Option<SystemTime> = None;

    // A summary from before the current generation counted the previous change's scope:
    // when the scope is narrower than "everyone", its counts would mislead until the
    // replica reports again (it is listed in `replicas_behind` meanwhile).
    let scoped = state.targeting.scope.is_some() || state.targeting.rollout.is_some();
    for ReplicaSummary { replica, summary } in summaries {
        if scoped && summary.generation < current {
            continue;
        }
        add_summary(&mut counts, replica, summary, current);
        if summary.generation == current {
            if let Some(stored) = &summary.latency {
                latency.merge(&Histogram::from_store(stored));
            }
            let at = summary
                .last_ack_at
                .and_then(|t| SystemTime::try_from(t).ok());
            last_ack = last_ack.max(at);
        }
    }
    // A diverged collector answered, so it is not pending; nor is it acknowledged.
    counts.pending_count = counts.connected.saturating_sub(
        counts
            .acked
            .saturating_add(counts.errored_count)
            .saturating_add(counts.diverged_count),
    );
    counts.pending.sort();
    counts.pending.truncate(SUMMARY_LIST_LIMIT);
    counts
        .errored
        .sort_by(|a, b| a.collector_id.cmp(&b.collector_id));
    counts.errored.truncate(SUMMARY_LIST_LIMIT);
    counts
        .diverged
        .sort_by(|a, b| a.collector_id.cmp(&b.collector_id));
    counts.diverged.truncate(SUMMARY_LIST_LIMIT);
    // Newest first, across replicas.
    counts.disconnected.sort_by_key(|d| std::cmp::Reverse(d.at));
    counts.disconnected.truncate(SUMMARY_LIST_LIMIT);

    let propagation = match (state.changed_at, last_ack) {
        (Some(committed), Some(last)) => last.duration_since(committed).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let replicas: BTreeSet<&str> = summaries.iter().map(|s| s.replica.as_str()).collect();
    let mut replicas_behind: Vec<String> = registered
        .iter()
        .filter(|id| {
            !summaries
                .iter()
                .any(|s| &s.replica == *id && s.summary.generation >= current)
        })
        .cloned()
        .collect();
    replicas_behind.sort();
    FleetStatus {
        state: state.clone(),
        counts,
        replicas: replicas.into_iter().map(str::to_owned).collect(),
        ack_times: AckTimes {
            count: latency.count(),
            p50: latency.quantile(0.5),
            max: latency.max(),
            propagation,
        },
        replicas_behind,
    }
}

/// Adds one replica's summary, judged against generation `current`, to `counts`.
fn add_summary(counts: &mut Counts, replica: &str, summary: &store::AckSummary, current: u64) {
    counts.connected = counts.connected.saturating_add(summary.connected);
    for generation in summary
        .generations
        .iter()
        .filter(|g| g.generation >= current)
    {
        counts.acked = counts.acked.saturating_add(generation.ok);
        counts.purged = counts.purged.saturating_add(generation.purged);
        counts.errored_count = counts.errored_count.saturating_add(generation.errored);
        counts.diverged_count = counts.diverged_count.saturating_add(generation.diverged);
    }
    counts.pending.extend(
        summary
            .laggards
            .iter()
            .filter(|l| l.generation < current)
            .map(|l| l.collector_id.clone()),
    );
    counts.errored.extend(
        summary
            .errored
            .iter()
            .filter(|e| e.generation >= current)
            .map(|e| Errored {
                collector_id: e.collector_id.clone(),
                error: e.error.clone(),
                replica: replica.to_owned(),
            }),
    );
    counts.diverged.extend(
        summary
            .diverged
            .iter()
            .filter(|d| d.generation >= current)
            .map(|d| Diverged {
                collector_id: d.collector_id.clone(),
                replica: replica.to_owned(),
                effective: RunState::from_wire(d.effective),
                intended: RunState::from_wire(d.intended),
            }),
    );
    counts.disconnected_count = counts
        .disconnected_count
        .saturating_add(summary.disconnected_count);
    counts
        .disconnected
        .extend(summary.disconnected.iter().map(|d| Disconnected {
            collector_id: d.collector_id.clone(),
            at: d.at.and_then(|t| SystemTime::try_from(t).ok()),
            replica: replica.to_owned(),
        }));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{ProgramName, RunState};
    use killswitch_proto::v1;

    fn state(generation: u64) -> ProgramState {
        ProgramState {
            program: ProgramName::parse("demo").expect("valid"),
            state: RunState::Paused,
            generation,
            revision: generation,
            reason: "r".into(),
            incident_id: String::new(),
            actor: "a".into(),
            changed_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100)),
            purge: false,
            policy: crate::model::FailurePolicy::default(),
            authorization: None,
            targeting: crate::model::targeting::Targeting::default(),
        }
    }

    fn ack(id: &str, generation: u64, error: &str) -> store::CollectorAck {
        store::CollectorAck {
            collector_id: id.into(),
            generation,
            error: error.into(),
            ..Default::default()
        }
    }

    fn summary(
        replica: &str,
        generation: u64,
        connected: u64,
        generations: &[(u64, u64, u64)],
    ) -> ReplicaSummary {
        ReplicaSummary {
            replica: replica.into(),
            summary: store::AckSummary {
                generation,
                connected,
                generations: generations
                    .iter()
                    .map(|&(generation, ok, errored)| store::GenerationCount {
                        generation,
                        ok,
                        errored,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn counts_every_replica_against_the_current_generation() {
        let mut r1 = summary("r1", 9, 3, &[(7, 1, 0), (9, 1, 1)]);
        r1.summary.laggards = vec![ack("a", 0, ""), ack("b", 7, ""), ack("c", 9, "")];
        r1.summary.errored = vec![ack("d", 9, "disk full"), ack("e", 7, "old error")];
        let mut latency = Histogram::default();
        latency.record(Duration::from_millis(20));
        r1.summary.latency = Some(latency.to_store());
        r1.summary.last_ack_at = Some(killswitch_proto::timestamp(
            SystemTime::UNIX_EPOCH + Duration::from_millis(100_250),
        ));
        // A replica whose cache still holds generation 7: all its collectors are pending.
        let mut r2 = summary("r2", 7, 2, &[(7, 2, 0)]);
        r2.summary.laggards = vec![ack("x", 7, ""), ack("y", 7, "")];

        let registered = ["r1".to_owned(), "r2".to_owned(), "r3".to_owned()];
        let status = aggregate(&state(9), &[r2, r1], &registered);
        let counts = &status.counts;
        assert_eq!(
            (
                counts.connected,
                counts.acked,
                counts.errored_count,
                counts.pending_count
            ),
            (5, 1, 1, 3)
        );
        assert_eq!(
            counts.pending,
            ["a", "b", "x", "y"],
            "listed laggards below 9; 'a' has no ack at all"
        );
        assert_eq!(counts.errored.len(), 1);
        assert_eq!(
            (
                counts.errored[0].collector_id.as_str(),
                counts.errored[0].replica.as_str()
            ),
            ("d", "r1")
        );
        assert_eq!(status.replicas, ["r1", "r2"]);
        assert_eq!(
            status.replicas_behind,
            ["r2", "r3"],
            "r2 still at 7, r3 never reported"
        );
        let times = status.ack_times;
        assert_eq!(
            (times.count, times.max, times.propagation),
            (1, Duration::from_millis(20), Duration::from_millis(250))
        );
    }

    /// A collector PAUSED for lost contact while RUNNING is intended answered, but does
    /// not confirm the change: it is counted and listed apart, neither acked nor pending.
    #[test]
    fn diverged_collectors_are_counted_apart() {
        let mut r1 = summary("r1", 9, 3, &[(9, 1, 0)]);
        r1.summary.generations[0].diverged = 1;
        r1.summary.diverged = vec![
            store::CollectorAck {
                collector_id: "c2".into(),
                generation: 9,
                effective: v1::RunState::Paused as i32,
                intended: v1::RunState::Running as i32,
                ..Default::default()
            },
            store::CollectorAck {
                collector_id: "old".into(),
                generation: 8,
                ..Default::default()
            },
        ];
        let status = aggregate(&state(9), &[r1], &["r1".to_owned()]);
        let counts = &status.counts;
        assert_eq!(
            (
                counts.connected,
                counts.acked,
                counts.diverged_count,
                counts.pending_count
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(
            counts.diverged,
            [Diverged {
                collector_id: "c2".into(),
                replica: "r1".into(),
                effective: RunState::Paused,
                intended: RunState::Running,
            }]
        );
    }

    #[test]
    fn absurd_summaries_from_a_peer_do_not_panic() {
        let huge = summary("r1", 3, u64::MAX, &[(3, u64::MAX, u64::MAX)]);
        let status = aggregate(&state(3), &[huge.clone(), huge], &[]);
        let counts = &status.counts;
        assert_eq!(
            (counts.connected, counts.acked, counts.pending_count),
            (u64::MAX, u64::MAX, 0)
        );
    }

    #[test]
    fn no_replicas_means_nobody_connected() {
        let status = aggregate(&state(3), &[], &[]);
        let counts = &status.counts;
        assert_eq!(
            (counts.connected, counts.acked, counts.pending_count),
            (0, 0, 0)
        );
        assert_eq!(status.ack_times.count, 0);
    }
}
