//! `program show`, `program create`, `program set` and `program list`, and the rows of a
//! program's state (its rules and staged resume included), which `status` shows too.

use std::time::Duration;

use super::table::{Row, block, columns, with_banner};
use super::{
    Error, LIST_REASON_CHARS, OutputFormat, clean, interval, json, or_dash, time, truncate,
};
use crate::input::LostContact;
use crate::view::{PolicyView, ProgramView, RolloutView, RuleView, StateView};

/// `program show`, `program create` and `program set`.
pub fn program(view: &ProgramView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table => {
            let mut rows = vec![
                Row::new("name", &view.name),
                Row::new("owner", &view.owner),
                Row::new("description", &view.description),
                Row::new("created", &time(view.created_at.as_ref())),
                Row::new("created by", &view.created_by),
                Row::new("on lost contact", &policy(&view.policy)),
                Row::new("resume needs", &operators(view.resume_approvals)),
            ];
            rows.extend(state_rows(&view.state));
            let mut text = block(&rows);
            if let Some(approval) = &view.approval {
                let id = clean(&approval.id);
                text.push_str(&format!(
                    "{}: the change weakens a program that needs two operators, so nothing \
                     changed yet: request {id} waits until {} for another operator to run: \
                     killswitch approve {id} --reason ...\n",
                    clean(&view.name),
                    time(approval.expires_at.as_ref())
                ));
            }
            Ok(with_banner(view.state.stop_all.as_ref(), text))
        }
    }
}

/// `program list`: a JSON array, or one row per program.
pub fn programs(views: &[ProgramView], format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(&views),
        OutputFormat::Table if views.is_empty() => Ok("no programs\n".to_owned()),
        OutputFormat::Table => {
            let header = [
                "NAME",
                "STATE",
                "GENERATION",
                "OWNER",
                "POLICY",
                "CHANGED",
                "REASON",
            ];
            let rows: Vec<[String; 7]> = views
                .iter()
                .map(|p| {
                    [
                        clean(&p.name),
                        p.state.state.to_string(),
                        p.state.generation.to_string(),
                        clean(&p.owner),
                        short_policy(&p.policy),
                        time(p.state.changed_at.as_ref()),
                        truncate(&clean(&p.state.reason), LIST_REASON_CHARS),
                    ]
                })
                .collect();
            // Every program carries the flag; the first one active is the banner.
            let flag = views.iter().find_map(|p| p.state.stop_all.as_ref());
            Ok(with_banner(flag, columns(header.map(str::to_owned), &rows)))
        }
    }
}

/// `pause after 30s` or `keep (fail open)`, for `program show`.
pub fn policy(policy: &PolicyView) -> String {
    match policy.on_lost_contact {
        LostContact::Pause => format!("pause after {}", grace(policy)),
        LostContact::Keep => "keep (fail open)".to_owned(),
    }
}

/// `program show`'s "resume needs" row: "1 operator", "2 operators".
fn operators(n: u32) -> String {
    if n == 1 {
        "1 operator".to_owned()
    } else {
        format!("{n} operators")
    }
}

/// `pause 30s` or `keep`, for the `program list` column.
fn short_policy(policy: &PolicyView) -> String {
    match policy.on_lost_contact {
        LostContact::Pause => format!("pause {}", grace(policy)),
        LostContact::Keep => "keep".to_owned(),
    }
}

/// The grace period for people: `30s`, `1m 30s`.
fn grace(policy: &PolicyView) -> String {
    humantime::format_duration(Duration::from_millis(policy.grace_ms)).to_string()
}

/// The rows of [`state_rows`] as (key, lines): what the console's program page lists.
#[must_use]
pub fn state_fields(state: &StateView) -> Vec<(&'static str, Vec<String>)> {
    state_rows(state).into_iter().map(Row::into_parts).collect()
}

/// The rows every state shows, after the program's name. `purge` only when set, so the
/// common case stays short.
pub(super) fn state_rows(state: &StateView) -> Vec<Row> {
    // The base state alone would mislead when something overrides it.
    let shown = if state.stop_all.is_some() {
        format!(
            "{} (overridden: STOP-ALL, every collector is PAUSED)",
            state.state
        )
    } else if state.rollout.is_some() {
        format!("{} (except the staged resume's current stage)", state.state)
    } else if !state.rules.is_empty() {
        format!("{} (where no rule below matches)", state.state)
    } else {
        state.state.to_string()
    };
    let mut rows = vec![
        Row::new("state", &shown),
        Row::new("generation", &state.generation.to_string()),
        Row::new("reason", &state.reason),
        Row::new("incident", &state.incident_id),
        Row::new("actor", &state.actor),
        Row::new("changed", &time(state.changed_at.as_ref())),
    ];
    if state.purge {
        rows.push(Row::new("purge", "yes"));
    }
    if let Some(scope) = &state.scope {
        rows.push(Row::new("scope", scope));
    }
    if !state.rules.is_empty() {
        rows.push(Row::lines("rules", state.rules.iter().map(rule_line)));
    }
    if let Some(rollout) = &state.rollout {
        rows.push(Row::new("rollout", &rollout_line(rollout)));
    }
    rows
}

/// `PAUSED for region=emea by alice at 2026-11-29T09:00:00Z: leak`, `drill:` first for
/// a drill's rule.
fn rule_line(rule: &RuleView) -> String {
    format!(
        "{}{} for {} by {} at {}: {}",
        if rule.drill { "drill: " } else { "" },
        rule.state,
        clean(&rule.selector),
        or_dash(clean(&rule.actor)),
        time(rule.at.as_ref()),
        or_dash(clean(&rule.reason))
    )
}

/// `stage 1 of 3 (10%) since 2026-11-29T09:00:00Z; stages 10%,50%,100%, each at least 30s`
fn rollout_line(rollout: &RolloutView) -> String {
    let stages: Vec<String> = rollout
        .stages_percent
        .iter()
        .map(|p| format!("{p}%"))
        .collect();
    format!(
        "stage {} of {} ({}%) since {}; stages {}, each at least {}",
        rollout.stage,
        rollout.stage_count(),
        rollout.percent,
        time(rollout.stage_started_at.as_ref()),
        stages.join(","),
        interval(rollout.interval_ms)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::output::fixtures::{BANNER, at, demo, flag, running};
    use crate::output::table::stop_all_banner;
    #[test]
    fn program_table() {
        assert_eq!(
            program(&demo(), OutputFormat::Table).unwrap(),
            "\
name:             demo
owner:            team-data
description:      click stream
created:          2026-11-29T08:00:00Z
created by:       carol
on lost contact:  pause after 30s
resume needs:     1 operator
state:            PAUSED
generation:       7
reason:           incident 42: leaking PII
incident:         INC-42
actor:            alice
changed:          2026-11-29T09:00:00Z
"
        );
    }

    #[test]
    fn policies_in_tables() {
        use LostContact::{Keep, Pause};
        let cases = [
            (Pause, 30_000, "pause after 30s", "pause 30s"),
            (Pause, 1_500, "pause after 1s 500ms", "pause 1s 500ms"),
            (Pause, 90_000, "pause after 1m 30s", "pause 1m 30s"),
            (Pause, 86_400_000, "pause after 1day", "pause 1day"),
            (Keep, 30_000, "keep (fail open)", "keep"),
            (Keep, 0, "keep (fail open)", "keep"),
        ];
        for (on_lost_contact, grace_ms, long, short) in cases {
            let view = ProgramView {
                policy: PolicyView {
                    on_lost_contact,
                    grace_ms,
                },
                ..demo()
            };
            let shown = program(&view, OutputFormat::Table).unwrap();
            assert!(
                shown.contains(&format!("\non lost contact:  {long}\n")),
                "{shown}"
            );
            let listed = programs(&[view], OutputFormat::Table).unwrap();
            let row = listed.lines().nth(1).unwrap();
            assert!(row.contains(&format!("  {short}  ")), "{listed}");
        }
    }

    #[test]
    fn absurd_graces_still_render() {
        // Network input: whatever the control plane sends must print, not panic.
        let view = PolicyView {
            on_lost_contact: LostContact::Pause,
            grace_ms: u64::MAX,
        };
        assert!(
            policy(&view).starts_with("pause after "),
            "{}",
            policy(&view)
        );
    }

    #[test]
    fn program_list_table() {
        let long = ProgramView {
            name: "web-logs".to_owned(),
            owner: "t".to_owned(),
            policy: PolicyView {
                on_lost_contact: LostContact::Keep,
                grace_ms: 5_000,
            },
            state: StateView {
                reason: "x".repeat(100),
                ..running("web-logs")
            },
            ..demo()
        };
        assert_eq!(
            programs(&[demo(), long], OutputFormat::Table).unwrap(),
            format!(
                "\
NAME      STATE    GENERATION  OWNER      POLICY     CHANGED               REASON
demo      PAUSED   7           team-data  pause 30s  2026-11-29T09:00:00Z  incident 42: leaking PII
web-logs  RUNNING  12          t          keep       -                     {}...
",
                "x".repeat(LIST_REASON_CHARS - 3)
            )
        );
        assert_eq!(programs(&[], OutputFormat::Table).unwrap(), "no programs\n");
    }

    #[test]
    fn program_list_and_show_carry_the_banner() {
        let mut stopped = demo();
        stopped.state.stop_all = Some(flag());
        let list = programs(&[demo(), stopped.clone()], OutputFormat::Table).unwrap();
        assert!(list.starts_with(&format!("{BANNER}\nNAME ")), "{list}");
        let show = program(&stopped, OutputFormat::Table).unwrap();
        assert!(show.starts_with(&format!("{BANNER}\nname:")), "{show}");
        assert!(
            !programs(&[demo()], OutputFormat::Table)
                .unwrap()
                .contains("STOP-ALL")
        );

        let mut waiting = flag();
        waiting.clear_request = Some(crate::view::ClearRequestView {
            id: "0badcafe".to_owned(),
            requested_by: "bob".to_owned(),
            expires_at: at(900),
        });
        assert!(stop_all_banner(&waiting).ends_with(
            "!! clearing requested by bob as 0badcafe, waiting for a second admin (expires \
             2026-11-29T09:15:00Z): killswitch stop-all --clear --approve 0badcafe --reason TEXT\n"
        ));
    }
}
