//! Scoped rules, staged resumes and the stop-all in the store, against a real etcd: what
//! each change writes, that it is audited, and what every collector's state becomes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{change, create, name, store};
use killswitch_control::model::RunState;
use killswitch_control::model::selector::Selector;
use killswitch_control::model::targeting::MAX_RULES;
use killswitch_control::store::StoreError;
use killswitch_testkit::Etcd;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn selector(s: &str) -> Selector {
    Selector::parse(s).expect("valid selector")
}

#[tokio::test]
async fn scoped_changes_stack_as_rules_and_a_whole_program_change_clears_them() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let demo = name("demo");
    let who = change("bob", "leak in emea");
    store
        .set_state(&demo, RunState::Running, false, &who)
        .await
        .expect("resume");

    let paused = store
        .set_scoped(
            &demo,
            RunState::Paused,
            &selector("region=emea"),
            &who,
            None,
        )
        .await
        .expect("scoped pause");
    assert!(paused.changed);
    let state = &paused.state;
    let (emea, us) = (labels(&[("region", "emea")]), labels(&[("region", "us")]));
    let effective = |id, l| state.targeting.effective(state.state, id, l);
    assert_eq!(effective("c1", &emea), RunState::Paused);
    assert_eq!(effective("c2", &us), RunState::Running);
    assert!(state.targeting.in_scope("c1", &emea));
    assert!(!state.targeting.in_scope("c2", &us));

    let again = store
        .set_scoped(
            &demo,
            RunState::Paused,
            &selector("region=emea"),
            &who,
            None,
        )
        .await
        .expect("same again");
    assert!(
        !again.changed,
        "the same scoped pause again changes nothing"
    );

    let whole = store
        .set_state(&demo, RunState::Paused, false, &who)
        .await
        .expect("pause all");
    assert!(whole.state.targeting.rules.is_empty());
    assert!(whole.state.targeting.scope.is_none());

    let entries = store.audit_entries().await.expect("audit");
    let scoped = entries
        .iter()
        .find(|e| e.detail == "selector: region=emea")
        .expect("the scoped pause is audited with its selector");
    assert_eq!(scoped.action, "pause");
}

#[tokio::test]
async fn rules_are_bounded_and_bad_requests_change_nothing() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let demo = name("demo");
    let who = change("bob", "many");
    for i in 0..MAX_RULES {
        let target = if i % 2 == 0 {
            RunState::Paused
        } else {
            RunState::Running
        };
        store
            .set_scoped(&demo, target, &selector(&format!("host=h{i}")), &who, None)
            .await
            .expect("rule");
    }
    let before = etcd.dump("/").await.expect("dump");
    let error = store
        .set_scoped(&demo, RunState::Paused, &selector("host=last"), &who, None)
        .await
        .expect_err("one too many");
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("pause or resume the whole program")
    );
    let error = store
        .end_drill(&demo, &selector("host=h0"), &who)
        .await
        .expect_err("no such drill");
    assert!(error.to_string().contains("no drill"), "{error}");
    assert_eq!(etcd.dump("/").await.expect("dump"), before);
}

#[tokio::test]
async fn a_drill_pauses_its_subset_and_ending_it_restores_the_rules_before() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let demo = name("demo");
    let who = change("bob", "quarterly drill");
    store
        .set_state(&demo, RunState::Running, false, &who)
        .await
        .expect("resume");
    let canary = selector("canary");
    let started = store
        .start_drill(&demo, &canary, &who)
        .await
        .expect("start");
    let state = &started.state;
    let canary_labels = labels(&[("canary", "yes")]);
    assert_eq!(
        state.targeting.effective(state.state, "c1", &canary_labels),
        RunState::Paused
    );
    let again = store.start_drill(&demo, &canary, &who).await;
    assert!(again.is_err(), "one drill per selector at a time");
    let ended = store.end_drill(&demo, &canary, &who).await.expect("end");
    let state = &ended.state;
    assert!(state.targeting.rules.is_empty());
    assert_eq!(
        state.targeting.effective(state.state, "c1", &canary_labels),
        RunState::Running
    );
    let actions: Vec<String> = store
        .audit_entries()
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.ends_with(&["drill-start".to_owned(), "drill-end".to_owned()]));
}

/// A real pause whose scope equals a running drill's is a change of its own: audited,
/// and still in force once the drill ends.
#[tokio::test]
async fn a_pause_during_a_drill_of_the_same_scope_outlives_the_drill() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    let demo = name("demo");
    store
        .set_state(&demo, RunState::Running, false, &change("bob", "go"))
        .await
        .expect("resume");
    let emea = selector("region=emea");
    store
        .start_drill(&demo, &emea, &change("bob", "drill"))
        .await
        .expect("start drill");
    let real = store
        .set_scoped(
            &demo,
            RunState::Paused,
            &emea,
            &change("alice", "real leak"),
            None,
        )
        .await
        .expect("pause");
    assert!(real.changed, "not absorbed by the drill's rule");
    let ended = store
        .end_drill(&demo, &emea, &change("bob", "drill over"))
        .await
        .expect("end drill");
    let state = &ended.state;
    assert_eq!(
        state
            .targeting
            .effective(state.state, "c1", &labels(&[("region", "emea")])),
        RunState::Paused,
        "the real pause is still in force"
    );
    let actions: Vec<(String, String)> = store
        .audit_entries()
        .await
        .expect("audit")
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect();
    assert!(actions.ends_with(&[
        ("drill-start".to_owned(), "bob".to_owned()),
        ("pause".to_owned(), "alice".to_owned()),
        ("drill-end".to_owned(), "bob".to_owned()),
    ]));
}

#[tokio::test]
async fn a_rollout_advances_stage_by_stage_and_completes_or_aborts() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "demo").await;
    create(&store, "other").await;
    let (demo, other) = (name("demo"), name("other"));
    let who = change("alice", "fixed");

    let started = store
        .start_rollout(&demo, &[10, 50, 100], Duration::from_secs(1), &who, None)
        .await
        .expect("staged resume");
    let rollout = started.state.targeting.rollout.clone().expect("rollout");
    assert_eq!((rollout.stage, rollout.percent()), (0, 10));
    assert_eq!(started.state.state, RunState::Paused);

    // A driver judging a generation that is no longer current changes nothing.
    let stale = store
        .advance_rollout(&demo, started.state.generation - 1, &who)
        .await
        .expect("stale advance");
    assert!(!stale.changed);
    let mut generation = started.state.generation;
    for percent in [50, 100] {
        let moved = store
            .advance_rollout(&demo, generation, &who)
            .await
            .expect("advance");
        assert!(moved.changed);
        assert_eq!(
            moved.state.targeting.rollout.as_ref().map(|r| r.percent()),
            Some(percent)
        );
        generation = moved.state.generation;
    }
    let done = store
        .advance_rollout(&demo, generation, &who)
        .await
        .expect("complete");
    assert_eq!(done.state.state, RunState::Running);
    assert!(done.state.targeting.rollout.is_none());

    store
        .start_rollout(&other, &[50, 100], Duration::ZERO, &who, None)
        .await
        .expect("staged resume");
    let aborted = store
        .abort_rollout(&other, &who, "errored ack")
        .await
        .expect("abort");
    assert_eq!(aborted.state.state, RunState::Paused);
    assert!(aborted.state.targeting.rollout.is_none());
    let actions: Vec<String> = store
        .audit_entries()
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["rollout-advance", "rollout-complete", "rollout-abort"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited");
    }
}

#[tokio::test]
async fn stop_all_marks_every_program_and_clearing_restores_each_programs_own_state() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "running").await;
    create(&store, "paused").await;
    let admin = change("alice", "breach");
    store
        .set_state(&name("running"), RunState::Running, false, &admin)
        .await
        .expect("resume");

    let (flag, changed) = store.stop_all(&admin).await.expect("stop-all");
    assert!(changed && flag.active());
    create(&store, "late").await;
    let anyone = labels(&[]);
    for program in ["running", "paused", "late"] {
        let state = store
            .get_state(&name(program))
            .await
            .expect("read")
            .expect("exists");
        assert!(state.targeting.stop_all.is_some(), "{program} is marked");
        if program != "late" {
            assert_eq!(
                state.generation, flag.generation,
                "{program}: the flag's generation, newer than its own state's"
            );
        }
        assert_eq!(
            state.targeting.effective(state.state, "c1", &anyone),
            RunState::Paused,
            "{program} is paused for everyone"
        );
    }
    // A resume during the stop-all changes the program's own state, not its effect.
    let resumed = store
        .set_state(&name("late"), RunState::Running, false, &admin)
        .await
        .expect("resume during stop-all");
    assert_eq!(
        resumed
            .state
            .targeting
            .effective(resumed.state.state, "c1", &anyone),
        RunState::Paused
    );

    // Two admins: the first asks, the same one cannot approve, another clears.
    let (pending, changed) = store
        .clear_stop_all(&admin, true, None)
        .await
        .expect("request");
    assert!(!changed && pending.active());
    assert_eq!(
        pending.generation, flag.generation,
        "a clear request changes no generation"
    );
    assert_eq!(
        store
            .get_state(&name("running"))
            .await
            .expect("read")
            .expect("exists")
            .generation,
        flag.generation
    );
    let id = pending.clear_request.expect("a clear request").id;
    assert!(matches!(
        store.clear_stop_all(&admin, true, Some(&id)).await,
        Err(StoreError::SelfApproval)
    ));
    let (cleared, changed) = store
        .clear_stop_all(&change("carol", "contained"), true, Some(&id))
        .await
        .expect("clear");
    assert!(changed && !cleared.active());
    for (program, own) in [
        ("running", RunState::Running),
        ("paused", RunState::Paused),
        ("late", RunState::Running),
    ] {
        let state = store
            .get_state(&name(program))
            .await
            .expect("read")
            .expect("exists");
        assert!(state.targeting.stop_all.is_none());
        assert_eq!(
            state.generation, cleared.generation,
            "{program}: a new generation"
        );
        assert_eq!(
            state.targeting.effective(state.state, "c1", &anyone),
            own,
            "{program} is back to its own state"
        );
    }
}

#[tokio::test]
async fn stop_all_covers_any_number_of_programs_in_one_small_transaction() {
    // 300 programs: more than etcd's 128 operations in one transaction, which the stop-all
    // refused when it rewrote every program's state.
    const PROGRAMS: usize = 300;
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    for i in 0..PROGRAMS {
        create(&store, &format!("p{i}")).await;
    }
    let before = store.list_states().await.expect("list");
    let admin = change("alice", "breach");

    let (flag, changed) = store.stop_all(&admin).await.expect("stop-all");
    assert!(changed && flag.active());
    let listed = store.list_states().await.expect("list");
    assert_eq!(listed.states.len(), PROGRAMS);
    assert!(listed.stop_all.active());
    let anyone = labels(&[]);
    for state in &listed.states {
        assert_eq!(state.generation, flag.generation, "{}", state.program);
        assert_eq!(
            state.targeting.effective(state.state, "c1", &anyone),
            RunState::Paused,
            "{}",
            state.program
        );
    }
    let own: Vec<u64> = listed.states.iter().map(|s| s.revision).collect();
    let untouched: Vec<u64> = before.states.iter().map(|s| s.revision).collect();
    assert_eq!(own, untouched, "no program's state was written");

    let audit = store.audit_entries().await.expect("audit");
    let entry = audit.last().expect("the stop-all's entry");
    assert_eq!(
        (
            entry.action.as_str(),
            entry.program.as_str(),
            entry.detail.as_str()
        ),
        ("stop-all", "*", "300 programs")
    );

    let (cleared, changed) = store
        .clear_stop_all(&admin, false, None)
        .await
        .expect("clear");
    assert!(changed && !cleared.active() && cleared.generation > flag.generation);
    for state in store.list_states().await.expect("list").states {
        assert_eq!(state.generation, cleared.generation, "{}", state.program);
        assert!(state.targeting.stop_all.is_none());
    }
    let verdict = store.verify_audit().await.expect("verify");
    assert_eq!(verdict.problem, None);
}

#[tokio::test]
async fn an_unreadable_state_blinds_nothing_and_reads_as_paused_during_stop_all() {
    let etcd = Etcd::start().await.expect("start etcd");
    let store = store(etcd.endpoint()).await;
    create(&store, "fine").await;
    create(&store, "broken").await;
    let mut client = etcd.client().await.expect("client");
    client
        .put(
            format!("{}/state/broken", common::PREFIX),
            vec![0xff, 0xff, 0xff],
            None,
        )
        .await
        .expect("corrupt the state");
    let listed = store
        .list_states()
        .await
        .expect("a listing survives one unreadable state");
    let names: Vec<&str> = listed.states.iter().map(|s| s.program.as_str()).collect();
    assert_eq!(names, ["fine"], "the unreadable one is left out");

    let (flag, changed) = store
        .stop_all(&change("alice", "breach"))
        .await
        .expect("stop-all despite the unreadable state");
    assert!(changed && flag.active());
    let listed = store.list_states().await.expect("list");
    let names: Vec<&str> = listed.states.iter().map(|s| s.program.as_str()).collect();
    assert_eq!(
        names,
        ["broken", "fine"],
        "the unreadable one is PAUSED now"
    );
    for state in &listed.states {
        assert_eq!(state.state, RunState::Paused, "{}", state.program);
        assert!(
            state.targeting.stop_all.is_some(),
            "{} is under the stop-all",
            state.program
        );
    }
}
