//! The result of a change: `pause`, `resume`, `approve`, `rollout abort` and `drill --end`,
//! as one line, or with `--wait` followed by the last status seen; a staged resume
//! followed through its stages (`resume --stages --wait`); and the caret under the column
//! of a selector the control plane refused.

use super::status::status_block;
use super::table::columns;
use super::{Error, OutputFormat, clean, interval, json, plural};
use crate::view::{
    ChangeView, Matched, Micros, RunState, StateView, WaitedChangeView, WaitedRolloutView,
};

/// `pause` and `resume`: one line, e.g. `demo: PAUSED at generation 12`.
pub fn change(view: &ChangeView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table => Ok(change_line(view)),
    }
}

/// `pause --wait` and `resume --wait`: the change line and the last status seen, or one
/// JSON document with the change's fields, `complete` and `status`.
pub fn waited_change(view: &WaitedChangeView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table => {
            let mut out = change_line(&view.change);
            if let Some(status) = &view.status {
                out.push('\n');
                out.push_str(&status_block(status));
            }
            Ok(out)
        }
    }
}

/// The lines that report a change: what it did (or that it changed nothing), how many
/// collectors a scoped one matched, and a note while a stop-all overrides it.
fn change_line(view: &ChangeView) -> String {
    let StateView {
        program,
        state,
        generation,
        ..
    } = &view.state;
    let program = clean(program);
    if let Some(approval) = &view.approval {
        let id = clean(&approval.id);
        return format!(
            "{program}: resume requested as {id}; another operator must run: killswitch approve {id} --reason ...\n"
        );
    }
    let st = &view.state;
    let mut line = if let Some(rollout) = &st.rollout {
        let verb = if view.changed {
            "started"
        } else {
            "already in progress"
        };
        format!(
            "{program}: staged resume {verb} at generation {generation}: stage {} of {} \
             ({}% of collectors RUNNING); the next stage starts once this one is acknowledged \
             and {} have passed\n",
            rollout.stage,
            rollout.stage_count(),
            rollout.percent,
            interval(rollout.interval_ms)
        )
    } else if let Some(rule) = st.scoped_rule() {
        let what = if rule.drill { "drill: " } else { "" };
        let selector = clean(&rule.selector);
        let rule_state = rule.state;
        if view.changed {
            format!(
                "{program}: {what}{rule_state} for {selector} at generation {generation} \
                 (other collectors unchanged)\n"
            )
        } else {
            format!(
                "{program}: {what}already {rule_state} for {selector} at generation \
                 {generation} (nothing changed)\n"
            )
        }
    } else if view.changed {
        format!("{program}: {state} at generation {generation}\n")
    } else {
        format!("{program}: already {state} at generation {generation} (nothing changed)\n")
    };
    if let Some(matched) = view.matched {
        line.push_str(&matched_line(view, matched));
    }
    if st.stop_all.is_some() {
        line.push_str(
            "note: a STOP-ALL is active: every collector stays PAUSED until it is cleared \
             (killswitch stop-all --show)\n",
        );
    }
    line
}

/// How many connected collectors a scoped change matched, plainly: `scope region=apac
/// matched 0 connected collectors of demo: nothing was paused now; ...`.
fn matched_line(view: &ChangeView, matched: Matched) -> String {
    let st = &view.state;
    let program = clean(&st.program);
    let scope = clean(st.scope.as_deref().unwrap_or("-"));
    match matched {
        Matched::Known(0) => {
            let done = match st.scoped_rule().map(|rule| rule.state) {
                Some(RunState::Running) => "resumed",
                _ => "paused",
            };
            format!(
                "scope {scope} matched 0 connected collectors of {program}: nothing was \
                 {done} now; collectors that connect later with matching labels obey it\n"
            )
        }
        Matched::Known(n) => format!(
            "scope {scope} matched {n} connected collector{} of {program}\n",
            plural(n)
        ),
        Matched::Unknown => format!(
            "scope {scope}: how many connected collectors it matched is not known yet (not \
             every replica has reported on generation {}); see `killswitch status {program}`\n",
            st.generation
        ),
    }
}

/// `resume --stages --wait`: the start line, a row per stage seen, the end, and the last
/// status; or one JSON document.
pub fn waited_rollout(view: &WaitedRolloutView, format: OutputFormat) -> Result<String, Error> {
    if format == OutputFormat::Json {
        return json(view);
    }
    let mut out = change_line(&view.change);
    if !view.stages.is_empty() {
        let header = [
            "STAGE",
            "PERCENT",
            "GENERATION",
            "COLLECTORS",
            "ACKNOWLEDGED",
            "ALL ACKNOWLEDGED AFTER",
        ]
        .map(str::to_owned);
        let rows: Vec<[String; 6]> = view
            .stages
            .iter()
            .map(|stage| {
                [
                    stage.stage.to_string(),
                    format!("{}%", stage.percent),
                    stage.generation.to_string(),
                    stage.collectors.to_string(),
                    stage.acked.to_string(),
                    stage
                        .acknowledged_after_ms
                        .map_or_else(|| "-".to_owned(), seconds),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&columns(header, &rows));
    }
    if let Some(status) = &view.status {
        let program = clean(&status.state.program);
        let generation = status.state.generation;
        let end = match view.outcome {
            "complete" => format!(
                "{program}: staged resume complete: RUNNING for every collector at generation \
                 {generation}\n"
            ),
            "aborted" => format!(
                "{program}: staged resume ABORTED: PAUSED for every collector at generation \
                 {generation}\n"
            ),
            _ => String::new(),
        };
        out.push('\n');
        out.push_str(&end);
        out.push_str(&status_block(status));
    }
    Ok(out)
}

/// Seconds for people, from a CLI-measured duration: `0.4s`, `12.0s`.
fn seconds(duration: Micros) -> String {
    format!("{:.1}s", duration.as_millis_f64() / 1000.0)
}

/// The control plane's `invalid selector at column N: ...` message followed by the
/// selector with a caret under column N, as the control plane's `SelectorError::pointer`
/// draws it; `None` for any other message. The CLI does not link the control plane's
/// parser, so it reads the column back from the message; if the wording ever changes,
/// the message is simply shown without the picture.
#[must_use]
pub fn selector_pointer(message: &str, selector: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid selector at column ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if !rest[digits..].starts_with(':') {
        return None;
    }
    let column: usize = rest[..digits].parse().ok()?;
    column
        .checked_sub(1)
        .map(|_| killswitch_proto::pointer(selector, column))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::output::fixtures::{all_acked, at, flag, parse, paused, rule, running, scoped};
    use crate::view::{ApprovalView, RolloutView, StageView};
    #[test]
    fn json_states_and_missing_times() {
        let cases = [
            (RunState::Running, "RUNNING"),
            (RunState::Paused, "PAUSED"),
            (RunState::Unspecified, "UNSPECIFIED"),
        ];
        for (state, name) in cases {
            let view = ChangeView {
                state: StateView {
                    state,
                    changed_at: None,
                    ..paused()
                },
                changed: false,
                approval: None,
                matched: None,
            };
            let value = parse(&change(&view, OutputFormat::Json).unwrap());
            assert_eq!(value["state"], name);
            assert_eq!(value["changed_at"], Value::Null);
            assert_eq!(value["changed"], false);
        }
    }

    #[test]
    fn change_lines() {
        let cases = [
            (paused(), true, "demo: PAUSED at generation 7\n"),
            (
                paused(),
                false,
                "demo: already PAUSED at generation 7 (nothing changed)\n",
            ),
            (running("demo"), true, "demo: RUNNING at generation 12\n"),
            (
                running("demo"),
                false,
                "demo: already RUNNING at generation 12 (nothing changed)\n",
            ),
        ];
        for (state, changed, expected) in cases {
            let view = ChangeView {
                state,
                changed,
                approval: None,
                matched: None,
            };
            assert_eq!(change(&view, OutputFormat::Table).unwrap(), expected);
        }
    }

    #[test]
    fn pending_resume_tells_who_must_approve() {
        let view = ChangeView {
            state: paused(),
            changed: false,
            approval: Some(ApprovalView {
                id: "0badcafe".to_owned(),
                expires_at: at(900),
            }),
            matched: None,
        };
        assert_eq!(
            change(&view, OutputFormat::Table).unwrap(),
            "demo: resume requested as 0badcafe; another operator must run: killswitch approve 0badcafe --reason ...\n"
        );
        let value = parse(&change(&view, OutputFormat::Json).unwrap());
        assert_eq!(
            value["approval"],
            json!({"id": "0badcafe", "expires_at": "2026-11-29T09:15:00Z"})
        );
        assert_eq!(value["changed"], false);
    }

    #[test]
    fn waited_change_table() {
        let view = WaitedChangeView {
            change: ChangeView {
                state: running("demo"),
                changed: true,
                approval: None,
                matched: None,
            },
            complete: true,
            status: Some(all_acked()),
        };
        assert_eq!(
            waited_change(&view, OutputFormat::Table).unwrap(),
            "\
demo: RUNNING at generation 12

program:     demo
state:       RUNNING
generation:  12
reason:      all clear
incident:    -
actor:       bob
changed:     -
collectors:  3 connected, 3 acknowledged, 0 pending, 0 errored
replicas:    -
"
        );
        let view = WaitedChangeView {
            status: None,
            complete: false,
            ..view
        };
        assert_eq!(
            waited_change(&view, OutputFormat::Table).unwrap(),
            "demo: RUNNING at generation 12\n"
        );
    }

    #[test]
    fn change_lines_say_which_collectors() {
        let change = |state: StateView, changed: bool| {
            super::change(
                &ChangeView {
                    state,
                    changed,
                    approval: None,
                    matched: None,
                },
                OutputFormat::Table,
            )
            .unwrap()
        };
        let scoped = scoped().state;
        assert_eq!(
            change(scoped.clone(), true),
            "demo: drill: PAUSED for region=emea at generation 12 (other collectors unchanged)\n"
        );
        let mut paused = scoped.clone();
        paused.rules.pop();
        assert_eq!(
            change(paused.clone(), false),
            "demo: already PAUSED for region=emea at generation 12 (nothing changed)\n"
        );
        let mut staged = paused;
        staged.rules.clear();
        staged.scope = None;
        staged.rollout = Some(RolloutView {
            stage: 1,
            stages_percent: vec![20, 100],
            percent: 20,
            interval_ms: 1000,
            stage_started_at: None,
        });
        assert_eq!(
            change(staged, true),
            "demo: staged resume started at generation 12: stage 1 of 2 (20% of collectors \
             RUNNING); the next stage starts once this one is acknowledged and 1s have passed\n"
        );
        let mut stopped = running("demo");
        stopped.stop_all = Some(flag());
        assert_eq!(
            change(stopped, true),
            "demo: RUNNING at generation 12\nnote: a STOP-ALL is active: every collector stays \
             PAUSED until it is cleared (killswitch stop-all --show)\n"
        );
    }

    #[test]
    fn waited_rollout_table() {
        let view = WaitedRolloutView {
            change: ChangeView {
                state: StateView {
                    rollout: Some(RolloutView {
                        stage: 1,
                        stages_percent: vec![20, 100],
                        percent: 20,
                        interval_ms: 1000,
                        stage_started_at: None,
                    }),
                    generation: 9,
                    ..paused()
                },
                changed: true,
                approval: None,
                matched: None,
            },
            complete: true,
            outcome: "complete",
            stages: vec![
                StageView {
                    stage: 1,
                    percent: 20,
                    generation: 9,
                    collectors: 2,
                    acked: 2,
                    acknowledged_after_ms: Some(Micros(150_000)),
                },
                StageView {
                    stage: 2,
                    percent: 100,
                    generation: 11,
                    collectors: 10,
                    acked: 9,
                    acknowledged_after_ms: None,
                },
            ],
            status: Some(all_acked()),
        };
        let shown = waited_rollout(&view, OutputFormat::Table).unwrap();
        assert!(
            shown.contains(
                "\n\
STAGE  PERCENT  GENERATION  COLLECTORS  ACKNOWLEDGED  ALL ACKNOWLEDGED AFTER
1      20%      9           2           2             0.1s
2      100%     11          10          9             -

demo: staged resume complete: RUNNING for every collector at generation 12
program:     demo
"
            ),
            "{shown}"
        );
        let value = parse(&waited_rollout(&view, OutputFormat::Json).unwrap());
        assert_eq!(value["outcome"], "complete");
        assert_eq!(value["rollout"]["stage"], 1);
        assert_eq!(value["stages"][0]["acknowledged_after_ms"], 150.0);
        assert_eq!(value["stages"][1]["acknowledged_after_ms"], Value::Null);
    }

    #[test]
    fn selector_pointers_match_the_control_planes() {
        use killswitch_control::model::selector::Selector;
        let long = format!("{},,b=c", "a=b,".repeat(20));
        let cases = [
            "region=emea,,version=1",
            "region in (emea",
            ",",
            "a=b,",
            "a b",
            "a=x,a=y",
            "naïve=1,,",
            "tab\there,,",
            long.as_str(),
        ];
        for selector in cases {
            let err = Selector::parse(selector).unwrap_err();
            assert_eq!(
                selector_pointer(&err.to_string(), selector),
                Some(err.pointer(selector)),
                "{selector:?}: {err}"
            );
        }
        for message in [
            "reason is required",
            "invalid selector at column x: y",
            "invalid selector at column 0: y",
            "invalid selector at column 3 y",
            "invalid selector at column 99999999999999999999999: y",
        ] {
            assert_eq!(selector_pointer(message, "a=b"), None, "{message}");
        }
        // A column past the end still draws, without panicking.
        assert!(selector_pointer("invalid selector at column 50: x", "a=b").is_some());
    }

    #[test]
    fn scoped_changes_say_how_many_collectors_they_matched() {
        let change = |state: StateView, matched: Option<Matched>| ChangeView {
            state,
            changed: true,
            approval: None,
            matched,
        };
        let mut apac = paused();
        apac.state = RunState::Running;
        apac.scope = Some("region=apac".to_owned());
        apac.rules = vec![rule("region=apac", RunState::Paused, false)];
        let mut resumed = apac.clone();
        resumed.rules = vec![rule("region=apac", RunState::Running, false)];
        let cases = [
            (
                change(apac.clone(), Some(Matched::Known(0))),
                "demo: PAUSED for region=apac at generation 7 (other collectors unchanged)\n\
                 scope region=apac matched 0 connected collectors of demo: nothing was paused \
                 now; collectors that connect later with matching labels obey it\n",
            ),
            (
                change(resumed, Some(Matched::Known(0))),
                "demo: RUNNING for region=apac at generation 7 (other collectors unchanged)\n\
                 scope region=apac matched 0 connected collectors of demo: nothing was resumed \
                 now; collectors that connect later with matching labels obey it\n",
            ),
            (
                change(apac.clone(), Some(Matched::Known(1))),
                "demo: PAUSED for region=apac at generation 7 (other collectors unchanged)\n\
                 scope region=apac matched 1 connected collector of demo\n",
            ),
            (
                change(apac.clone(), Some(Matched::Known(12))),
                "demo: PAUSED for region=apac at generation 7 (other collectors unchanged)\n\
                 scope region=apac matched 12 connected collectors of demo\n",
            ),
            (
                change(apac.clone(), Some(Matched::Unknown)),
                "demo: PAUSED for region=apac at generation 7 (other collectors unchanged)\n\
                 scope region=apac: how many connected collectors it matched is not known yet \
                 (not every replica has reported on generation 7); see `killswitch status demo`\n",
            ),
            (change(paused(), None), "demo: PAUSED at generation 7\n"),
        ];
        for (view, expected) in cases {
            assert_eq!(change_line(&view), expected, "{:?}", view.matched);
        }

        let json_of = |view: &ChangeView| parse(&super::change(view, OutputFormat::Json).unwrap());
        assert_eq!(
            json_of(&change(apac.clone(), Some(Matched::Known(0))))["matched"],
            0
        );
        assert_eq!(
            json_of(&change(apac.clone(), Some(Matched::Unknown)))["matched"],
            Value::Null
        );
        assert!(
            json_of(&change(paused(), None)).get("matched").is_none(),
            "no count for a change of every collector"
        );
        let waited = WaitedChangeView {
            change: change(apac, Some(Matched::Known(0))),
            complete: true,
            status: None,
        };
        let value = parse(&waited_change(&waited, OutputFormat::Json).unwrap());
        assert_eq!(
            (value["matched"].clone(), value["complete"].clone()),
            (json!(0), json!(true))
        );
        assert!(
            waited_change(&waited, OutputFormat::Table)
                .unwrap()
                .contains("scope region=apac matched 0 connected collectors of demo"),
        );
    }
}
