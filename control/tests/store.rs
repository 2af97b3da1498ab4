//! The store and cache against a real etcd: concurrency, compaction, bad input.

use std::sync::Arc;
use std::time::Duration;

use killswitch_control::model::audit::audit_hash;
use killswitch_control::model::{FailurePolicy, LostContact, RunState};
use killswitch_control::replica::cache::{StateCache, WatchTiming, run_watcher};
use killswitch_control::store::{PolicyOutcome, Store, StoreError};
use killswitch_proto::v1::{self, admin_service_client::AdminServiceClient};
use killswitch_testkit::{Etcd, Proxy, wait_until};
use tokio_util::sync::CancellationToken;

mod common;

use common::{PREFIX, alternating, change, create, name, store, timing};

#[tokio::test]
async fn concurrent_pause_and_resume_never_lose_an_update() {
    let etcd = Etcd::start().await.expect("start etcd");
    let (a, b) = (store(etcd.endpoint()).await, store(etcd.endpoint()).await);
    create(&a, "demo").await;

    let run = |store: Store, actor: &'static str| {
        tokio::spawn(async move {
            let mut committed = Vec::new();
            for i in 0..25 {
                let target = alternating(i);
                let outcome = store
                    .set_state(
                        &name("demo"),
                        target,
                        false,
                        &change(actor, &format!("round {i}")),
                    )
                    .await
                    .expect("set state");
                if outcome.changed {
                    committed.push((outcome.state.generation, target));
                }
            }
            committed
        })
    };
    let (ours, theirs) = tokio::join!(run(a.clone(), "alice"), run(b, "bob"));
    let mut committed: Vec<_> = ours
        .expect("alice")
        .into_iter()
        .chain(theirs.expect("bob"))
        .collect();
    committed.sort_by_key(|(generation, _)| *generation);
    assert!(!committed.is_empty());

    // Generations strictly increase and no two changes share one.
    assert!(
        committed.windows(2).all(|w| w[0].0 < w[1].0),
        "generations: {committed:?}"
    );
    // The stored state is the last committed change.
    let last = committed.last().copied().expect("at least one change");
    let stored = a
        .get_state(&name("demo"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!((stored.generation, stored.state), last);

    // One audit entry per change (plus the create), chained, in generation order.
    let audit = a.audit_entries().await.expect("audit");
    assert_eq!(audit.len(), committed.len() + 1);
    for (i, entry) in audit.iter().enumerate() {
        assert_eq!(entry.seq, i as u64 + 1);
        assert_eq!(entry.hash, audit_hash(entry), "entry {} hash", entry.seq);
        if i > 0 {
            assert_eq!(
                entry.prev_hash,
                audit[i - 1].hash,
                "entry {} chains",
                entry.seq
            );
        }
    }
    let audited: Vec<RunState> = audit[1..]
        .iter()
        .map(|e| RunState::from_wire(e.to))
        .collect();
    let expected: Vec<RunState> = committed.iter().map(|(_, s)| *s).collect();
    assert_eq!(audited, expected, "audit order equals generation order");
}

/// Every change appends to the one audit chain, so writers of different programs race
/// for its head: sixteen at once over two replicas' stores must all get through, none
/// refused for contention.
#[tokio::test]
async fn many_writers_of_different_programs_all_get_their_changes_through() {
    const WRITERS: usize = 16;
    const CHANGES: usize = 10;
    let etcd = Etcd::start().await.expect("start etcd");
    let replicas = [store(etcd.endpoint()).await, store(etcd.endpoint()).await];
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = replicas[writer % replicas.len()].clone();
        tasks.push(tokio::spawn(async move {
            let program = format!("p{writer}");
            create(&store, &program).await;
            for i in 0..CHANGES {
                let target = alternating(i);
                store
                    .set_state(
                        &name(&program),
                        target,
                        false,
                        &change("tester", &format!("{program} change {i}")),
                    )
                    .await
                    .map_err(|error| format!("{program} change {i}: {error}"))?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.expect("writer").expect("every change commits");
    }
    let audit = replicas[0].audit_entries().await.expect("audit");
    assert_eq!(audit.len(), WRITERS * (CHANGES + 1), "one entry per change");
    assert!(
        audit.windows(2).all(|w| w[1].prev_hash == w[0].hash),
        "one unbroken chain"
    );
}

#[tokio::test]
async fn pausing_a_paused_program_changes_nothing() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let before = etcd.dump(PREFIX).await.expect("dump");
    let outcome = store
        .set_state(
            &name("demo"),
            RunState::Paused,
            false,
            &change("a", "again"),
        )
        .await
        .expect("pause");
    assert!(!outcome.changed);
    assert_eq!(etcd.dump(PREFIX).await.expect("dump"), before);
    let missing = store
        .set_state(&name("nope"), RunState::Paused, false, &change("a", "x"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn watch_that_hits_compaction_relists_and_the_cache_ends_correct() {
    let etcd = Etcd::start().await.expect("start etcd");
    let direct = store(etcd.endpoint()).await;
    create(&direct, "alpha").await;
    create(&direct, "beta").await;

    let target = etcd
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("etcd address");
    let proxy = Proxy::start(target).await.expect("start proxy");
    let through_proxy = store(&proxy.endpoint()).await;
    let cache = Arc::new(StateCache::new());
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(run_watcher(
        through_proxy,
        cache.clone(),
        timing(),
        stop.clone(),
    ));
    wait_until(Duration::from_secs(5), "the first listing", || async {
        cache.get(&name("alpha")).is_some() && cache.is_healthy()
    })
    .await
    .expect("cache filled");

    // While the watch is cut off: change both programs, create a third, then compact
    // past everything the watch has seen.
    proxy.cut();
    wait_until(
        Duration::from_secs(10),
        "the watch to notice the cut",
        || async { !cache.is_healthy() },
    )
    .await
    .expect("watch broke");
    let resumed = direct
        .set_state(&name("alpha"), RunState::Running, false, &change("a", "go"))
        .await
        .expect("resume");
    direct
        .set_state(&name("beta"), RunState::Running, false, &change("a", "go"))
        .await
        .expect("resume");
    let paused = direct
        .set_state(&name("beta"), RunState::Paused, true, &change("a", "stop"))
        .await
        .expect("pause");
    create(&direct, "gamma").await;
    let revision = etcd.revision().await.expect("revision");
    etcd.client()
        .await
        .expect("client")
        .compact(revision, None)
        .await
        .expect("compact");
    proxy.restore();

    wait_until(
        Duration::from_secs(10),
        "the cache to match etcd after the re-list",
        || async {
            let alpha = cache.get(&name("alpha"));
            let beta = cache.get(&name("beta"));
            alpha.is_some_and(|s| {
                s.generation == resumed.state.generation && s.state == RunState::Running
            }) && beta.is_some_and(|s| s.generation == paused.state.generation && s.purge)
                && cache.get(&name("gamma")).is_some()
        },
    )
    .await
    .expect("cache converged");
    assert!(cache.revision() >= u64::try_from(revision).expect("positive revision"));
    stop.cancel();
    watcher.await.expect("watcher stops on cancel");
}

#[tokio::test]
async fn bad_input_is_rejected_and_leaves_etcd_unchanged() {
    let etcd = Etcd::start().await.expect("start etcd");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let config = killswitch_control::Config::new(
        vec![etcd.endpoint().to_owned()],
        "r1",
        format!("http://{addr}"),
    );
    let server = tokio::spawn(killswitch_control::serve(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    let mut admin = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let create = |name: &str, owner: &str| v1::CreateProgramRequest {
        name: name.into(),
        owner: owner.into(),
        ..Default::default()
    };
    admin
        .create_program(create("demo", "team"))
        .await
        .expect("create demo");
    // What requests change: the replica rewrites its own summaries and registration on
    // its own schedule (e.g. once its cache has seen the program just created).
    let written_by_requests = || async {
        let mut dump = etcd.dump(PREFIX).await.expect("dump");
        dump.retain(|(key, _)| {
            let key = String::from_utf8_lossy(key);
            !key.contains("/acks/") && !key.contains("/replicas/")
        });
        dump
    };
    let before = written_by_requests().await;

    let pause = |program: &str, reason: String| v1::PauseRequest {
        program: program.into(),
        reason,
        ..Default::default()
    };
    let cases: Vec<(&str, tonic::Status)> = vec![
        (
            "bad name",
            admin
                .create_program(create("Demo!", "team"))
                .await
                .expect_err("rejected"),
        ),
        (
            "no owner",
            admin
                .create_program(create("other", ""))
                .await
                .expect_err("rejected"),
        ),
        (
            "exists",
            admin
                .create_program(create("demo", "team"))
                .await
                .expect_err("rejected"),
        ),
        (
            "no reason",
            admin
                .pause(pause("demo", String::new()))
                .await
                .expect_err("rejected"),
        ),
        (
            "long reason",
            admin
                .pause(pause("demo", "x".repeat(1025)))
                .await
                .expect_err("rejected"),
        ),
        (
            "unknown",
            admin
                .pause(pause("ghost", "why".into()))
                .await
                .expect_err("rejected"),
        ),
        (
            "long incident",
            admin
                .resume(v1::ResumeRequest {
                    program: "demo".into(),
                    reason: "ok".into(),
                    incident_id: "i".repeat(129),
                    ..Default::default()
                })
                .await
                .expect_err("rejected"),
        ),
        (
            "status of unknown",
            admin
                .status(v1::StatusRequest {
                    program: "ghost".into(),
                })
                .await
                .expect_err("rejected"),
        ),
        (
            "bad selector",
            admin
                .pause(v1::PauseRequest {
                    selector: "region in (emea".into(),
                    ..pause("demo", "leak".into())
                })
                .await
                .expect_err("rejected"),
        ),
        (
            "bad stages",
            admin
                .resume(v1::ResumeRequest {
                    program: "demo".into(),
                    reason: "ok".into(),
                    stages_percent: vec![50, 10],
                    ..Default::default()
                })
                .await
                .expect_err("rejected"),
        ),
        (
            "drill without selector",
            admin
                .start_drill(v1::DrillRequest {
                    program: "demo".into(),
                    reason: "drill".into(),
                    ..Default::default()
                })
                .await
                .expect_err("rejected"),
        ),
        (
            "end of no drill",
            admin
                .end_drill(v1::DrillRequest {
                    program: "demo".into(),
                    selector: "region=emea".into(),
                    reason: "drill".into(),
                    ..Default::default()
                })
                .await
                .expect_err("rejected"),
        ),
        (
            "abort without rollout",
            admin
                .abort_rollout(v1::AbortRolloutRequest {
                    program: "demo".into(),
                    reason: "x".into(),
                    ..Default::default()
                })
                .await
                .expect_err("rejected"),
        ),
    ];
    let expected = [
        tonic::Code::InvalidArgument,
        tonic::Code::InvalidArgument,
        tonic::Code::AlreadyExists,
        tonic::Code::InvalidArgument,
        tonic::Code::InvalidArgument,
        tonic::Code::NotFound,
        tonic::Code::InvalidArgument,
        tonic::Code::NotFound,
        tonic::Code::InvalidArgument,
        tonic::Code::InvalidArgument,
        tonic::Code::InvalidArgument,
        tonic::Code::FailedPrecondition,
        tonic::Code::FailedPrecondition,
    ];
    assert_eq!(cases.len(), expected.len());
    for ((case, status), code) in cases.iter().zip(expected) {
        assert_eq!(status.code(), code, "{case}: {}", status.message());
        assert!(!status.message().is_empty(), "{case} explains itself");
    }
    assert!(
        cases[3].1.message().contains("reason is required"),
        "{}",
        cases[3].1.message()
    );
    assert_eq!(
        written_by_requests().await,
        before,
        "bad input wrote nothing"
    );

    stop.cancel();
    server.await.expect("server task").expect("server ran");
}

#[tokio::test]
async fn a_policy_change_reaches_the_state_as_a_new_generation_and_is_audited() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let before = store
        .get_state(&name("demo"))
        .await
        .expect("read")
        .expect("exists");
    let keep = FailurePolicy {
        on_lost_contact: LostContact::Keep,
        grace: Duration::from_secs(10),
    };

    let (program, state) = common::set_policy(
        &store,
        "demo",
        Some(keep),
        None,
        &change("owner", "fail open"),
    )
    .await;
    assert_eq!((program.policy, state.policy), (keep, keep));
    assert!(
        state.generation > before.generation,
        "collectors receive it as a new generation"
    );
    assert_eq!(
        (state.state, state.reason.as_str()),
        (before.state, before.reason.as_str()),
        "state untouched"
    );
    let audit = store.audit_entries().await.expect("audit");
    let last = audit.last().expect("an entry");
    assert_eq!(
        (last.action.as_str(), last.reason.as_str()),
        ("policy", "fail open")
    );
    assert!(last.detail.contains("keep"), "{}", last.detail);

    let dump = etcd.dump(PREFIX).await.expect("dump");
    let (_, again) =
        common::set_policy(&store, "demo", Some(keep), None, &change("owner", "again")).await;
    assert_eq!(
        again.generation, state.generation,
        "the same policy changes nothing"
    );
    assert_eq!(etcd.dump(PREFIX).await.expect("dump"), dump);
}

/// On a program that needs two operators to resume, one owner cannot lower the bar: fewer
/// approvals, fail open or a longer grace wait for a second operator's approval, which
/// fails once the program changed; tightening takes effect at once.
#[tokio::test]
async fn weakening_a_two_person_program_waits_for_a_second_operator() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    common::set_policy(
        &store,
        "demo",
        None,
        Some(2),
        &change("alice", "two people"),
    )
    .await;
    let keep = FailurePolicy {
        on_lost_contact: LostContact::Keep,
        grace: Duration::from_secs(30),
    };
    let longer = FailurePolicy {
        on_lost_contact: LostContact::Pause,
        grace: Duration::from_secs(60),
    };
    for (policy, approvals) in [(None, Some(1)), (Some(keep), None), (Some(longer), None)] {
        let before = etcd
            .dump(&format!("{PREFIX}/programs"))
            .await
            .expect("dump");
        let outcome = store
            .set_policy(
                &name("demo"),
                policy,
                approvals,
                Duration::from_secs(60),
                &change("alice", "lower"),
            )
            .await
            .expect("set");
        let PolicyOutcome::Requested { program, .. } = outcome else {
            panic!("{policy:?} {approvals:?} took effect alone: {outcome:?}");
        };
        assert_eq!(program.resume_approvals, 2, "unchanged");
        assert_eq!(
            etcd.dump(&format!("{PREFIX}/programs"))
                .await
                .expect("dump"),
            before
        );
    }
    let shorter = FailurePolicy {
        on_lost_contact: LostContact::Pause,
        grace: Duration::from_secs(10),
    };
    common::set_policy(
        &store,
        "demo",
        Some(shorter),
        None,
        &change("alice", "tighter"),
    )
    .await;

    let PolicyOutcome::Requested { id, .. } = store
        .set_policy(
            &name("demo"),
            None,
            Some(1),
            Duration::from_secs(60),
            &change("alice", "one"),
        )
        .await
        .expect("request")
    else {
        panic!("not a request");
    };
    let own = store.approve(&id, &change("alice", "me"), None).await;
    assert!(matches!(own, Err(StoreError::SelfApproval)), "{own:?}");
    let approved = store
        .approve(&id, &change("bob", "agreed"), None)
        .await
        .expect("approve");
    assert!(approved.changed);
    let (program, _) = store
        .get_program(&name("demo"))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(program.resume_approvals, 1);
    let last = store
        .audit_entries()
        .await
        .expect("audit")
        .pop()
        .expect("entry");
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("policy", "bob")
    );
    assert!(
        last.detail.contains("resume approvals: 2 -> 1")
            && last.detail.contains("requested by alice"),
        "{}",
        last.detail
    );

    // A request filed before another change is stale.
    common::set_policy(&store, "demo", None, Some(2), &change("bob", "two again")).await;
    let PolicyOutcome::Requested { id, .. } = store
        .set_policy(
            &name("demo"),
            Some(keep),
            None,
            Duration::from_secs(60),
            &change("alice", "open"),
        )
        .await
        .expect("request")
    else {
        panic!("not a request");
    };
    store
        .set_state(
            &name("demo"),
            RunState::Paused,
            true,
            &change("carol", "purge"),
        )
        .await
        .expect("pause");
    let stale = store.approve(&id, &change("bob", "late"), None).await;
    assert!(matches!(stale, Err(StoreError::StaleApproval)), "{stale:?}");
}

#[tokio::test]
async fn a_stalled_etcd_makes_the_watch_unhealthy_until_it_answers_again() {
    let etcd = Etcd::start().await.expect("start etcd");
    // A client without HTTP/2 keep-alive: only the watch's progress probes can notice.
    let store = Store::from_client(etcd.client().await.expect("client"), PREFIX);
    create(&store, "demo").await;
    let cache = Arc::new(StateCache::new());
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(run_watcher(
        store,
        cache.clone(),
        WatchTiming {
            probe_interval: Duration::from_millis(200),
            ..timing()
        },
        stop.clone(),
    ));
    wait_until(Duration::from_secs(10), "a healthy watch", || async {
        cache.is_healthy()
    })
    .await
    .expect("healthy");

    etcd.signal("STOP").expect("stop etcd");
    wait_until(
        Duration::from_secs(10),
        "the stalled watch to be noticed",
        || async { !cache.is_healthy() },
    )
    .await
    .expect("unhealthy while etcd is stopped");
    etcd.signal("CONT").expect("continue etcd");
    wait_until(Duration::from_secs(20), "the watch to recover", || async {
        cache.is_healthy()
    })
    .await
    .expect("healthy again");
    stop.cancel();
    watcher.await.expect("watcher stops on cancel");
}
