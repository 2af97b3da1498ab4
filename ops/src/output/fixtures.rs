//! The views (and their JSON) that the renderers' unit tests share.

#![allow(clippy::unwrap_used)]

use killswitch_proto::prost_types::Timestamp;
use serde_json::{Value, json};

use crate::view::{
    AckTimesView, CollectorErrorView, CollectorListView, CollectorView, CollectorsView,
    DisconnectedView, DivergedView, Micros, PolicyView, ProgramView, RuleView, RunState, StateView,
    StatusView, StopAllView, Time,
};

/// 2026-11-29T09:00:00Z
pub(crate) fn at(offset_seconds: i64) -> Option<Time> {
    Time::from_wire(&Timestamp {
        seconds: 1_795_942_800 + offset_seconds,
        nanos: 0,
    })
}

pub(crate) fn paused() -> StateView {
    StateView {
        program: "demo".to_owned(),
        state: RunState::Paused,
        generation: 7,
        reason: "incident 42: leaking PII".to_owned(),
        incident_id: "INC-42".to_owned(),
        actor: "alice".to_owned(),
        changed_at: at(0),
        purge: false,
        policy: PolicyView::default(),
        scope: None,
        rules: vec![],
        rollout: None,
        stop_all: None,
    }
}

pub(crate) fn running(name: &str) -> StateView {
    StateView {
        program: name.to_owned(),
        state: RunState::Running,
        generation: 12,
        reason: "all clear".to_owned(),
        incident_id: String::new(),
        actor: "bob".to_owned(),
        changed_at: None,
        purge: false,
        policy: PolicyView::default(),
        scope: None,
        rules: vec![],
        rollout: None,
        stop_all: None,
    }
}

pub(crate) fn demo() -> ProgramView {
    ProgramView {
        name: "demo".to_owned(),
        owner: "team-data".to_owned(),
        description: "click stream".to_owned(),
        created_at: at(-3600),
        created_by: "carol".to_owned(),
        policy: PolicyView::default(),
        resume_approvals: 1,
        state: paused(),
        approval: None,
    }
}

pub(crate) fn status_view() -> StatusView {
    StatusView {
        state: paused(),
        collectors: CollectorsView {
            connected: 3,
            acked: 1,
            pending: vec!["c1".to_owned()],
            errored: vec!["c2".to_owned()],
            pending_count: 1,
            errored_count: 1,
            disconnected_count: 1,
            disconnected: vec![DisconnectedView {
                collector_id: "c4".to_owned(),
                at: at(-60),
                replica: "r2".to_owned(),
            }],
            purged: 0,
            diverged_count: 0,
            diverged: vec![],
        },
        errors: vec![CollectorErrorView {
            collector_id: "c2".to_owned(),
            error: "disk full".to_owned(),
            replica: "r1".to_owned(),
        }],
        replicas: vec!["r1".to_owned(), "r2".to_owned()],
        replicas_behind: vec![],
        pinned_labels: vec![],
        ack_times: Some(AckTimesView {
            count: 1,
            p50_ms: Micros(1200),
            max_ms: Micros(3400),
            propagation_ms: Micros(5600),
        }),
    }
}

/// Every connected collector acknowledged; nothing timed.
pub(crate) fn all_acked() -> StatusView {
    StatusView {
        state: running("demo"),
        collectors: CollectorsView {
            connected: 3,
            acked: 3,
            ..CollectorsView::default()
        },
        errors: vec![],
        replicas: vec![],
        replicas_behind: vec![],
        ack_times: None,
        pinned_labels: vec![],
    }
}

pub(crate) fn status_json() -> Value {
    state_json_with(json!({
        "collectors": {
            "connected": 3,
            "acked": 1,
            "pending": ["c1"],
            "errored": ["c2"],
            "pending_count": 1,
            "errored_count": 1,
            "disconnected_count": 1,
            "disconnected": [
                {"collector_id": "c4", "at": "2026-11-29T08:59:00Z", "replica": "r2"},
            ],
            "purged": 0,
            "diverged_count": 0,
            "diverged": [],
        },
        "errors": [{"collector_id": "c2", "error": "disk full", "replica": "r1"}],
        "replicas": ["r1", "r2"],
        "replicas_behind": [],
        "ack_times": {"count": 1, "p50_ms": 1.2, "max_ms": 3.4, "propagation_ms": 5.6},
        "pinned_labels": [],
    }))
}

fn collector_view(id: &str) -> CollectorView {
    CollectorView {
        collector_id: id.to_owned(),
        labels: [("region", "eu"), ("zone", "b")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        replica: "r1".to_owned(),
        generation: 7,
        effective: RunState::Paused,
        intended: RunState::Paused,
        acked_at: at(1),
        error: String::new(),
        connected_at: at(-10),
    }
}

pub(crate) fn collector_list() -> CollectorListView {
    CollectorListView {
        program: "demo".to_owned(),
        generation: 7,
        collectors: vec![
            collector_view("c1"),
            CollectorView {
                replica: "r2".to_owned(),
                error: "disk full".to_owned(),
                labels: Default::default(),
                ..collector_view("c2")
            },
            CollectorView {
                generation: 0,
                effective: RunState::Unspecified,
                acked_at: None,
                ..collector_view("c3")
            },
        ],
        unreachable_replicas: vec![],
        pinned_labels: vec![],
    }
}

pub(crate) fn parse(text: &str) -> Value {
    assert!(text.ends_with('\n'), "{text:?}");
    serde_json::from_str(text).unwrap()
}

pub(crate) fn state_json() -> Value {
    json!({
        "program": "demo",
        "state": "PAUSED",
        "generation": 7,
        "reason": "incident 42: leaking PII",
        "incident_id": "INC-42",
        "actor": "alice",
        "changed_at": "2026-11-29T09:00:00Z",
        "purge": false,
        "policy": {"on_lost_contact": "pause", "grace_ms": 30000},
        "scope": null,
        "rules": [],
        "rollout": null,
        "stop_all": null,
    })
}

/// `extra` merged into the state object's fields.
pub(crate) fn state_json_with(extra: Value) -> Value {
    let mut value = state_json();
    let (Value::Object(fields), Value::Object(extra)) = (&mut value, extra) else {
        panic!("objects expected");
    };
    fields.extend(extra);
    value
}

pub(crate) fn rule(selector: &str, state: RunState, drill: bool) -> RuleView {
    RuleView {
        selector: selector.to_owned(),
        state,
        actor: "alice".to_owned(),
        reason: "emea leak".to_owned(),
        at: at(60),
        drill,
    }
}

pub(crate) fn flag() -> StopAllView {
    StopAllView {
        active: true,
        reason: "credential leak".to_owned(),
        incident_id: "INC-9".to_owned(),
        actor: "alice".to_owned(),
        at: at(120),
        generation: 42,
        clear_request: None,
    }
}

pub(crate) const BANNER: &str = "\
!! STOP-ALL ACTIVE: every program is PAUSED for every collector, whatever its own state
!! set by alice at 2026-11-29T09:02:00Z: credential leak (incident INC-9)
!! clear it with: killswitch stop-all --clear --reason TEXT
";

pub(crate) fn scoped() -> StatusView {
    let mut view = all_acked();
    view.state.scope = Some("region=emea".to_owned());
    view.state.rules = vec![
        rule("region=emea", RunState::Paused, false),
        rule("region=emea", RunState::Paused, true),
    ];
    view.collectors.connected = 2;
    view.collectors.acked = 2;
    view
}

/// A collector paused for lost contact while RUNNING is intended, on r1.
pub(crate) fn lost_contact(id: &str) -> DivergedView {
    DivergedView {
        collector_id: id.to_owned(),
        replica: "r1".to_owned(),
        effective: RunState::Paused,
        intended: RunState::Running,
    }
}
