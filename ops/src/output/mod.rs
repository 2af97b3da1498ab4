//! Rendering for people (aligned tables) and scripts (`--output json`): pure functions
//! from the [`crate::view`] types to the exact text printed on stdout.
//!
//! Every function returns the whole output, ending in a newline. JSON mode prints exactly
//! one pretty-printed document per command, except `status --watch`, which prints one
//! compact document per line (NDJSON). Table mode escapes control characters in values:
//! reasons, descriptions and collector errors are typed by other people, and must not be
//! able to move the cursor or forge lines on a responder's terminal.
//!
//! # Layout
//! One renderer per file, its unit tests beside it; every public function is re-exported
//! here, so callers name it `crate::output::NAME`.
//! - `program`: `program show`, `list`, `create` and `set`, and the rows of a program's
//!   state, which `status` shows too.
//! - `change`: the result of a change (`pause`, `resume`, `approve`, `rollout abort`,
//!   `drill --end`), waited for or not, a staged resume followed through its stages, and
//!   the picture under a selector the control plane refused.
//! - `status`: `status`, `status --watch`, the line naming diverged collectors and the
//!   `--wait` progress lines.
//! - `stop_all`: `stop-all`, `stop-all --clear` and `stop-all --show`.
//! - `drill`: `drill`.
//! - `collectors`: `collectors`.
//! - `audit`: `audit` and `audit verify`.
//! - `reload`: `reload`.
//! - `report`: `report` (the terminal summary, or JSON) and `report verify`'s verdict.
//! - `report_html`: `report --format html`, one self-contained page.
//! - `table`: what they are drawn with: key/value blocks, column tables, the STOP-ALL
//!   banner.
//!
//! This file holds [`OutputFormat`] and the value helpers the renderers share: escaping
//! (`clean`), times, plurals and JSON (`json`). `fixtures` holds the views their tests
//! share.

mod audit;
mod change;
mod collectors;
mod drill;
mod program;
mod reload;
mod report;
mod report_html;
mod status;
mod stop_all;
mod table;

#[cfg(test)]
pub(crate) mod fixtures;

use std::time::Duration;

use serde::Serialize;

use crate::exit::{Error, Exit};
use crate::view::Time;

pub use audit::{audit, audit_verdict, broken_chain};
pub use change::{change, selector_pointer, waited_change, waited_rollout};
pub use collectors::{collectors, missing_replicas};
pub use drill::drill;
pub use program::{policy, program, programs, state_fields};
pub use reload::reload;
pub use report::{report, report_failure, report_verdict};
pub use report_html::{esc as escape_html, report_html};
pub use status::{WatchRenderer, counts_line, diverged_line, progress_line, status};
pub use stop_all::{StopAllMode, stop_all};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Table,
    /// One pretty-printed JSON document, for scripts.
    Json,
}

/// Longest reason shown in the `program list` table, in characters; `program show` and
/// `status` show it whole.
pub const LIST_REASON_CHARS: usize = 60;

/// A stage interval for people: `30s`, `1m 30s`, `0s`.
fn interval(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// `s` after a count other than 1.
fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `-` for an empty cell.
fn or_dash(value: String) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value
    }
}

/// An optional time as RFC 3339, `-` when unknown.
fn time(at: Option<&Time>) -> String {
    at.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// Escapes control characters (newlines, tabs, ANSI escapes) so a value stays on its line
/// and cannot drive the terminal.
pub(crate) fn clean(value: &str) -> String {
    if !value.chars().any(char::is_control) {
        return value.to_owned();
    }
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// At most `max` characters, ending in `...` when cut.
fn truncate(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_owned();
    }
    let kept: String = value.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// One pretty-printed JSON document and a newline.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(value).map_err(json_error)?;
    text.push('\n');
    Ok(text)
}

/// One compact JSON document on one line.
fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string(value).map_err(json_error)?;
    text.push('\n');
    Ok(text)
}

/// A view serde could not encode (exit 1).
fn json_error(err: serde_json::Error) -> Error {
    Error::new(
        Exit::Error,
        format!("cannot encode the result as JSON: {err}"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::input::LostContact;
    use crate::output::fixtures::{
        all_acked, collector_list, demo, parse, paused, state_json, state_json_with, status_json,
        status_view,
    };
    use crate::view::{ChangeView, PolicyView, ProgramView, StateView, WaitedChangeView};
    /// `demo` with a fail-open policy, in the program and its state.
    fn fails_open() -> ProgramView {
        let policy = PolicyView {
            on_lost_contact: LostContact::Keep,
            grace_ms: 10_000,
        };
        ProgramView {
            policy,
            state: StateView { policy, ..paused() },
            ..demo()
        }
    }

    fn program_json() -> Value {
        json!({
            "name": "demo",
            "owner": "team-data",
            "description": "click stream",
            "created_at": "2026-11-29T08:00:00Z",
            "created_by": "carol",
            "policy": {"on_lost_contact": "pause", "grace_ms": 30000},
            "resume_approvals": 1,
            "state": state_json(),
        })
    }

    #[test]
    fn json_documents() {
        let json_of = |text: Result<String, Error>| parse(&text.unwrap());
        let f = OutputFormat::Json;
        let cases = [
            ("program", json_of(program(&demo(), f)), program_json()),
            (
                "programs",
                json_of(programs(&[demo()], f)),
                json!([program_json()]),
            ),
            ("no programs", json_of(programs(&[], f)), json!([])),
            (
                "program that fails open",
                json_of(program(&fails_open(), f)),
                json!({
                    "name": "demo",
                    "owner": "team-data",
                    "description": "click stream",
                    "created_at": "2026-11-29T08:00:00Z",
                    "created_by": "carol",
                    "policy": {"on_lost_contact": "keep", "grace_ms": 10000},
                    "resume_approvals": 1,
                    "state": state_json_with(json!({
                        "policy": {"on_lost_contact": "keep", "grace_ms": 10000},
                    })),
                }),
            ),
            (
                "change",
                json_of(change(
                    &ChangeView {
                        state: paused(),
                        changed: true,
                        approval: None,
                        matched: None,
                    },
                    f,
                )),
                state_json_with(json!({"changed": true})),
            ),
            ("status", json_of(status(&status_view(), f)), status_json()),
            (
                "status without ack times",
                json_of(status(&all_acked(), f))["ack_times"].clone(),
                Value::Null,
            ),
            (
                "waited change",
                json_of(waited_change(
                    &WaitedChangeView {
                        change: ChangeView {
                            state: paused(),
                            changed: true,
                            approval: None,
                            matched: None,
                        },
                        complete: false,
                        status: Some(status_view()),
                    },
                    f,
                )),
                state_json_with(json!({
                    "changed": true,
                    "complete": false,
                    "status": status_json(),
                })),
            ),
            (
                "waited change without a status",
                json_of(waited_change(
                    &WaitedChangeView {
                        change: ChangeView {
                            state: paused(),
                            changed: false,
                            approval: None,
                            matched: None,
                        },
                        complete: false,
                        status: None,
                    },
                    f,
                )),
                state_json_with(json!({
                    "changed": false,
                    "complete": false,
                    "status": null,
                })),
            ),
            (
                "collectors",
                json_of(collectors(&collector_list(), f)),
                json!({
                    "program": "demo",
                    "generation": 7,
                    "collectors": [
                        {
                            "collector_id": "c1",
                            "labels": {"region": "eu", "zone": "b"},
                            "replica": "r1",
                            "generation": 7,
                            "effective": "PAUSED",
                            "intended": "PAUSED",
                            "acked_at": "2026-11-29T09:00:01Z",
                            "error": "",
                            "connected_at": "2026-11-29T08:59:50Z",
                        },
                        {
                            "collector_id": "c2",
                            "labels": {},
                            "replica": "r2",
                            "generation": 7,
                            "effective": "PAUSED",
                            "intended": "PAUSED",
                            "acked_at": "2026-11-29T09:00:01Z",
                            "error": "disk full",
                            "connected_at": "2026-11-29T08:59:50Z",
                        },
                        {
                            "collector_id": "c3",
                            "labels": {"region": "eu", "zone": "b"},
                            "replica": "r1",
                            "generation": 0,
                            "effective": "UNSPECIFIED",
                            "intended": "PAUSED",
                            "acked_at": null,
                            "error": "",
                            "connected_at": "2026-11-29T08:59:50Z",
                        },
                    ],
                    "unreachable_replicas": [],
                    "pinned_labels": [],
                }),
            ),
        ];
        for (name, got, expected) in cases {
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn table_values_cannot_drive_the_terminal() {
        let cases = [
            ("plain", "plain"),
            ("two\nlines", "two\\nlines"),
            ("\u{1b}[2Jcleared", "\\u{1b}[2Jcleared"),
            ("tab\there", "tab\\there"),
            ("naïve", "naïve"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "{input:?}");
        }
        let view = ChangeView {
            state: StateView {
                reason: "a\nb".to_owned(),
                ..paused()
            },
            changed: true,
            approval: None,
            matched: None,
        };
        let shown = program(
            &ProgramView {
                state: view.state.clone(),
                ..demo()
            },
            OutputFormat::Table,
        )
        .unwrap();
        assert!(shown.contains("reason:           a\\nb\n"), "{shown}");
        // JSON keeps the text as it is; the encoder escapes it.
        let value = parse(&change(&view, OutputFormat::Json).unwrap());
        assert_eq!(value["reason"], "a\nb");
    }

    #[test]
    fn truncation() {
        let cases = [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("a bit too long", 10, "a bit t..."),
        ];
        for (input, max, expected) in cases {
            assert_eq!(truncate(input, max), expected, "{input:?}");
        }
    }
}
