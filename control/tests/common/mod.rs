//! Helpers shared by the control crate's integration tests.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part.

pub mod raw;

use std::time::Duration;

use killswitch_control::model::{FailurePolicy, Program, ProgramName};
use killswitch_control::model::{ProgramState, RunState};
use killswitch_control::replica::cache::WatchTiming;
use killswitch_control::store::{Change, PolicyOutcome, Store};

/// The default etcd key prefix.
pub const PREFIX: &str = "/killswitch/v1";

/// RUNNING for even `i`, PAUSED for odd: the states a loop of changes alternates between.
pub fn alternating(i: usize) -> RunState {
    if i % 2 == 0 {
        RunState::Running
    } else {
        RunState::Paused
    }
}

pub fn name(n: &str) -> ProgramName {
    ProgramName::parse(n).expect("valid program name")
}

pub fn change(actor: &str, reason: &str) -> Change {
    Change {
        actor: actor.into(),
        reason: reason.into(),
        incident_id: String::new(),
    }
}

/// A store on `endpoints` whose requests retry for up to 5 s.
pub async fn store_on(endpoints: &[String]) -> Store {
    Store::connect(endpoints, PREFIX, Duration::from_secs(5))
        .await
        .expect("connect to etcd")
}

pub async fn store(endpoint: &str) -> Store {
    store_on(&[endpoint.to_owned()]).await
}

pub async fn create(store: &Store, program: &str) {
    let program = Program {
        name: name(program),
        owner: "team".into(),
        description: String::new(),
        created_at: None,
        created_by: String::new(),
        policy: FailurePolicy::default(),
        resume_approvals: 1,
    };
    store
        .create_program(&program, &change("tester", "create"))
        .await
        .expect("create program");
}

/// Probes every second; reconciles rarely enough that it never hides a watch bug.
pub fn timing() -> WatchTiming {
    WatchTiming {
        probe_interval: Duration::from_secs(1),
        reconcile_interval: Duration::from_secs(3600),
    }
}

/// Sets a policy that takes effect at once (not one waiting for approval).
pub async fn set_policy(
    store: &Store,
    program: &str,
    policy: Option<FailurePolicy>,
    approvals: Option<u32>,
    change: &Change,
) -> (Program, ProgramState) {
    match store
        .set_policy(
            &name(program),
            policy,
            approvals,
            Duration::from_secs(60),
            change,
        )
        .await
        .expect("set policy")
    {
        PolicyOutcome::Changed(program, state) => (program, state),
        PolicyOutcome::Requested { id, .. } => panic!("waits for approval as request {id}"),
    }
}

/// Creates `program` and resumes it (programs start PAUSED, so that a pause is a change);
/// the generation of its RUNNING state.
pub async fn create_running(store: &Store, program: &str) -> u64 {
    create(store, program).await;
    store
        .set_state(
            &name(program),
            RunState::Running,
            false,
            &change("tester", "resume"),
        )
        .await
        .expect("resume")
        .state
        .generation
}
