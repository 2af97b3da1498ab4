//! The store and watcher under real etcd faults (DESIGN.md section 9): a dead member in
//! the endpoint list, a killed leader, a stopped cluster, a watch that misses a change.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{alternating, change, create, name, store_on};
use killswitch_control::model::RunState;
use killswitch_control::replica::cache::{StateCache, WatchTiming, run_watcher};
use killswitch_control::store::{ChangeOutcome, StoreError};
use killswitch_testkit::{Etcd, wait_until};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn every_call_succeeds_with_one_member_of_three_dead() {
    let mut etcd = Etcd::cluster(3).await.expect("start etcd");
    let store = store_on(&etcd.endpoints()).await;
    create(&store, "demo").await;
    // Kill a member that is not the leader, so what is tested is the client's handling of
    // a dead endpoint, not an election.
    let leader = etcd.leader().await.expect("leader");
    etcd.kill_member((leader + 1) % 3).expect("kill member");

    // etcd's balanced channel keeps sending a share of requests to the dead member: each
    // of these would fail without retries.
    for i in 0..40 {
        let target = alternating(i);
        let outcome = store
            .set_state(&name("demo"), target, false, &change("tester", "flip"))
            .await
            .unwrap_or_else(|error| panic!("change {i} failed with a member dead: {error}"));
        assert!(outcome.changed, "change {i} changed the state");
        let read = store.get_state(&name("demo")).await.expect("read");
        assert_eq!(read.map(|s| s.generation), Some(outcome.state.generation));
    }
}

#[tokio::test]
async fn changes_report_what_really_happened_while_the_leader_dies() {
    let mut etcd = Etcd::cluster(3).await.expect("start etcd");
    let store = store_on(&etcd.endpoints()).await;
    create(&store, "demo").await;

    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            let mut outcomes = Vec::new();
            for i in 0..60 {
                let target = alternating(i);
                let reason = format!("call {i}");
                let result = store
                    .set_state(&name("demo"), target, false, &change("tester", &reason))
                    .await;
                outcomes.push((reason, result));
            }
            outcomes
        }
    });
    // Let a few changes commit, then kill the leader under the writer's feet.
    wait_until(Duration::from_secs(10), "the first changes", || async {
        store
            .audit_entries()
            .await
            .is_ok_and(|entries| entries.len() > 5)
    })
    .await
    .expect("changes commit");
    let leader = etcd.leader().await.expect("leader");
    etcd.kill_member(leader).expect("kill the leader");
    let outcomes = writer.await.expect("writer");

    let audited: HashMap<String, usize> = store
        .audit_entries()
        .await
        .expect("audit")
        .into_iter()
        .fold(HashMap::new(), |mut seen, entry| {
            *seen.entry(entry.reason).or_default() += 1;
            seen
        });
    // Replay the calls in order against what the audit says was applied: each report
    // must match it, given the state the earlier calls left.
    let mut expected = RunState::Paused;
    for (reason, result) in &outcomes {
        let in_audit = audited.get(reason).copied().unwrap_or(0);
        assert!(in_audit <= 1, "{reason} was applied {in_audit} times");
        let target = if reason_index(reason) % 2 == 0 {
            RunState::Running
        } else {
            RunState::Paused
        };
        match result {
            Ok(ChangeOutcome { changed: true, .. }) => {
                assert_eq!(
                    in_audit, 1,
                    "{reason} reported committed but is not audited"
                );
            }
            Ok(ChangeOutcome { changed: false, .. }) => {
                assert_eq!(in_audit, 0, "{reason} reported no change but is audited");
                assert_eq!(
                    expected, target,
                    "{reason} reported no change, but the state was {expected}"
                );
            }
            Err(StoreError::OutcomeUnknown { .. }) => {}
            Err(error) => {
                assert_eq!(
                    in_audit, 0,
                    "{reason} reported failed ({error}) but is audited"
                );
            }
        }
        if in_audit == 1 {
            expected = target;
        }
    }
    let successes = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    assert!(
        successes >= 50,
        "the cluster kept a quorum, so most changes commit: {successes} of 60"
    );
    let last = store
        .get_state(&name("demo"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(last.state, expected, "the state is the last audited change");
}

fn reason_index(reason: &str) -> usize {
    reason
        .trim_start_matches("call ")
        .parse()
        .expect("reason index")
}

#[tokio::test]
async fn calls_fail_fast_and_honestly_when_every_member_is_stopped() {
    let etcd = Etcd::cluster(3).await.expect("start etcd");
    let store = store_on(&etcd.endpoints())
        .await
        .with_budget(Duration::from_secs(2));
    create(&store, "demo").await;
    etcd.signal("STOP").expect("stop etcd");

    let started = Instant::now();
    let result = store
        .set_state(
            &name("demo"),
            RunState::Running,
            false,
            &change("tester", "x"),
        )
        .await;
    let took = started.elapsed();
    etcd.signal("CONT").expect("resume etcd");
    let error = result.expect_err("no change without etcd");
    assert!(error.is_unavailable(), "unavailable, not {error:?}");
    // The budget is 2 s; the margin only absorbs a loaded machine.
    assert!(took < Duration::from_secs(6), "failed fast: took {took:?}");
    let state = store
        .get_state(&name("demo"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(state.state, RunState::Paused, "nothing changed");
}

#[tokio::test]
async fn reconcile_finds_and_corrects_a_state_the_watch_missed() {
    let etcd = Etcd::cluster(3).await.expect("start etcd");
    let store = store_on(&etcd.endpoints()).await;
    create(&store, "demo").await;
    let cache = Arc::new(StateCache::new());
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(run_watcher(
        store.clone(),
        cache.clone(),
        WatchTiming {
            probe_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_millis(200),
        },
        stop.clone(),
    ));
    wait_until(Duration::from_secs(10), "the first listing", || async {
        cache.get(&name("demo")).is_some() && cache.is_healthy()
    })
    .await
    .expect("cache filled");
    let truth = cache.get(&name("demo")).expect("listed");
    assert_eq!(cache.reconcile_differences(), 0);

    // A change the watch never delivered: the cache says RUNNING at a generation etcd
    // never had.
    let mut wrong = (*truth).clone();
    wrong.state = RunState::Running;
    wrong.revision += 1_000;
    wrong.generation = wrong.revision;
    cache.apply(wrong);
    wait_until(
        Duration::from_secs(10),
        "reconcile to correct it",
        || async { cache.get(&name("demo")).as_deref() == Some(&*truth) },
    )
    .await
    .expect("corrected");
    assert_eq!(cache.reconcile_differences(), 1);

    stop.cancel();
    watcher.await.expect("watcher stops");
}
