//! Acknowledgements through a real replica and a raw gRPC collector (not the SDK): only
//! an Ack of a state the session sent counts, whatever a client forges; a collector that
//! paused for lost contact is counted apart and sent its state again; summaries publish
//! at any number of programs; heartbeats honour a short grace.

mod common;

use std::time::{Duration, Instant};

use common::raw::{RawCollector, poll};
use common::{change, create, create_running, name, store};
use killswitch_control::model::RunState;
use killswitch_proto::v1::admin_service_client::AdminServiceClient;
use killswitch_proto::v1::{self, StatusRequest};
use killswitch_testkit::{Etcd, Replica};

async fn read_status(endpoint: &str, program: &str) -> v1::StatusResponse {
    AdminServiceClient::connect(endpoint.to_owned())
        .await
        .expect("connect admin")
        .status(StatusRequest {
            program: program.into(),
        })
        .await
        .expect("status")
        .into_inner()
}

/// The status of `program` once it is at `generation`, reported by every replica and
/// counting the test's one collector.
async fn settled_status(endpoint: &str, program: &str, generation: u64) -> v1::StatusResponse {
    poll("a settled status", || async move {
        let status = read_status(endpoint, program).await;
        // Every test here holds one collector: a summary published before it connected
        // (the replica publishes within milliseconds of starting) is not the one wanted.
        let current = status.state.as_ref().map(|s| s.generation) == Some(generation)
            && status.replicas_behind.is_empty()
            && status.collectors.as_ref().is_some_and(|c| c.connected == 1);
        current.then_some(status)
    })
    .await
}

fn counts(status: &v1::StatusResponse) -> (u64, u64, u64, u64) {
    let c = status.collectors.as_ref().expect("counts");
    (c.connected, c.acked, c.pending_count, c.diverged_count)
}

#[tokio::test]
async fn forged_acknowledgements_are_refused_and_never_count() {
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    create(&store, "other").await;
    let replica = Replica::start(etcd.endpoint(), &[]).expect("replica");
    let endpoint = replica.endpoint();

    let mut forger = RawCollector::connect(&endpoint, "forger", &["demo"]).await;
    let snapshot = forger.snapshot().await;
    let sent = snapshot.states[0].generation;
    assert_eq!(snapshot.states[0].state, v1::RunState::Paused as i32);

    // A generation far ahead, one never sent, another program, a gate it cannot have.
    forger
        .ack("demo", sent + 1000, v1::RunState::Paused, None)
        .await;
    forger
        .ack("demo", sent - 1, v1::RunState::Paused, None)
        .await;
    forger.ack("other", sent, v1::RunState::Paused, None).await;
    forger.ack("demo", sent, v1::RunState::Running, None).await;
    forger
        .ack("demo", sent, v1::RunState::Unspecified, None)
        .await;
    let status = settled_status(&endpoint, "demo", sent).await;
    assert_eq!(
        counts(&status),
        (1, 0, 1, 0),
        "connected, nothing acknowledged"
    );

    // A true Ack counts; the forged future one did not pin anything.
    forger.ack("demo", sent, v1::RunState::Paused, None).await;
    poll("the true ack to be counted", || async {
        (counts(&read_status(&endpoint, "demo").await).1 == 1).then_some(())
    })
    .await;

    // A later change the forger does not acknowledge leaves it pending, named.
    let next = store
        .set_state(
            &name("demo"),
            RunState::Paused,
            true,
            &change("ops", "again"),
        )
        .await
        .expect("pause again")
        .state
        .generation;
    assert_eq!(forger.update().await.generation, next);
    forger
        .ack("demo", next + 5, v1::RunState::Paused, None)
        .await;
    let status = settled_status(&endpoint, "demo", next).await;
    assert_eq!(counts(&status), (1, 0, 1, 0));
    let c = status.collectors.expect("counts");
    assert_eq!(c.pending, ["forger"]);
}

#[tokio::test]
async fn a_session_that_keeps_sending_refused_acks_is_closed() {
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let replica = Replica::start(etcd.endpoint(), &[]).expect("replica");

    let mut forger = RawCollector::connect(&replica.endpoint(), "forger", &["demo"]).await;
    let sent = forger.snapshot().await.states[0].generation;
    let limit = killswitch_control::api::session::MAX_REFUSED_ACKS;
    for n in 0..=u64::from(limit) {
        forger
            .ack("demo", sent + 1 + n, v1::RunState::Paused, None)
            .await;
    }
    let closed = forger.ended().await;
    assert_eq!(closed.code(), tonic::Code::InvalidArgument, "{closed}");
    assert!(
        closed
            .message()
            .contains(&format!("{} acknowledgements did not match", limit + 1)),
        "{}",
        closed.message()
    );
}

/// The replica intends RUNNING; a collector says it is PAUSED (lost contact) without an
/// error: it is counted as diverged, not acknowledged, and sent the state again, after
/// which its RUNNING Ack confirms.
#[tokio::test]
async fn a_collector_paused_for_lost_contact_is_counted_apart_and_sent_the_state_again() {
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    let running = create_running(&store, "demo").await;
    let replica = Replica::start(etcd.endpoint(), &[]).expect("replica");
    let endpoint = replica.endpoint();

    let mut collector = RawCollector::connect(&endpoint, "c1", &["demo"]).await;
    assert_eq!(collector.snapshot().await.states[0].generation, running);
    collector
        .ack("demo", running, v1::RunState::Paused, None)
        .await;
    let again = collector.update().await;
    assert_eq!(
        (again.generation, again.state),
        (running, v1::RunState::Running as i32),
        "the replica sends the RUNNING state again"
    );
    // A summary published before the replica handled the PAUSED Ack counts c1 as pending.
    let status = poll("the PAUSED Ack to be counted", || async {
        let status = settled_status(&endpoint, "demo", running).await;
        (counts(&status).3 == 1).then_some(status)
    })
    .await;
    let c = status.collectors.clone().expect("counts");
    assert_eq!(counts(&status), (1, 0, 0, 1));
    assert_eq!(
        c.diverged,
        [v1::CollectorDiverged {
            collector_id: "c1".into(),
            replica: c.diverged[0].replica.clone(),
            effective: v1::RunState::Paused as i32,
            intended: v1::RunState::Running as i32,
        }]
    );

    collector
        .ack("demo", running, v1::RunState::Running, None)
        .await;
    poll("the RUNNING ack to confirm", || async {
        (counts(&read_status(&endpoint, "demo").await) == (1, 1, 0, 0)).then_some(())
    })
    .await;
}

/// 300 programs, each followed by one collector (five sessions of 60): every summary is
/// written (etcd takes at most 128 operations per transaction), also after the replica
/// restarts and its collectors come back.
#[tokio::test]
async fn summaries_publish_for_300_programs_after_a_restart() {
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    let names: Vec<String> = (0..300).map(|i| format!("p{i:03}")).collect();
    for program in &names {
        create(&store, program).await;
    }
    let replica = Replica::start(etcd.endpoint(), &[]).expect("replica");
    let addr = replica.addr();
    drop(replica);
    let replica = Replica::start_on(addr, etcd.endpoint(), &[]).expect("restarted replica");
    let endpoint = replica.endpoint();

    let mut sessions = Vec::new();
    for (i, chunk) in names.chunks(60).enumerate() {
        let programs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let mut collector = RawCollector::connect(&endpoint, &format!("c{i}"), &programs).await;
        for state in collector.snapshot().await.states {
            collector
                .ack(&state.program, state.generation, v1::RunState::Paused, None)
                .await;
        }
        sessions.push(collector);
    }
    let mut admin = AdminServiceClient::connect(endpoint.clone())
        .await
        .expect("admin");
    poll("every program's status to be current", || {
        let mut admin = admin.clone();
        let names = names.clone();
        async move {
            for program in &names {
                let status = admin
                    .status(StatusRequest {
                        program: program.clone(),
                    })
                    .await
                    .ok()?
                    .into_inner();
                let c = status.collectors?;
                if !(status.replicas_behind.is_empty() && c.connected == 1 && c.acked == 1) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let last = admin
        .status(StatusRequest {
            program: "p299".into(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(counts(&last), (1, 1, 0, 0));
}

/// The replica heartbeats every 5 s, the program's grace is 1 s: the session heartbeats
/// often enough that a healthy SDK collector never pauses for lost contact (sampled).
#[tokio::test]
async fn heartbeats_follow_a_grace_shorter_than_the_interval() {
    let etcd = Etcd::start().await.expect("etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let policy = killswitch_control::model::FailurePolicy {
        on_lost_contact: killswitch_control::model::LostContact::Pause,
        grace: Duration::from_secs(1),
    };
    common::set_policy(
        &store,
        "demo",
        Some(policy),
        None,
        &change("ops", "short grace"),
    )
    .await;
    store
        .set_state(
            &name("demo"),
            RunState::Running,
            false,
            &change("ops", "go"),
        )
        .await
        .expect("resume");
    let replica =
        Replica::start(etcd.endpoint(), &["--heartbeat-interval", "5s"]).expect("replica");

    let client = killswitch_sdk::Client::builder()
        .endpoint(replica.endpoint())
        .collector_id("c1")
        .program("demo")
        .start()
        .expect("sdk client");
    let gate = client.gate("demo").expect("gate");
    poll("the gate to open on RUNNING", || {
        let open = gate.is_active();
        async move { open.then_some(()) }
    })
    .await;
    // Five graces long, sampled every 50 ms: the gate never closes.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(gate.is_active(), "paused for lost contact while healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.shutdown().await;
}
