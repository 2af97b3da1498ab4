//! Rendering for people (aligned tables) and scripts (`--output json`): pure functions
//! from the [`crate::view`] types to the exact text printed on stdout.
//!
//! Every function returns the whole output, ending in a newline. JSON mode always prints
//! exactly one pretty-printed document. Table mode escapes control characters in values:
//! reasons and descriptions are typed by other people, and must not be able to move the
//! cursor or forge lines on a responder's terminal.

use std::fmt::Write as _;

use serde::Serialize;

use crate::exit::{Error, Exit};
use crate::view::{ChangeView, ProgramView, StateView, StatusView};

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

/// `program show` and `program create`.
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
            ];
            rows.extend(state_rows(&view.state));
            Ok(block(&rows))
        }
    }
}

/// `program list`: a JSON array, or one row per program.
pub fn programs(views: &[ProgramView], format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(&views),
        OutputFormat::Table if views.is_empty() => Ok("no programs\n".to_owned()),
        OutputFormat::Table => {
            let header = ["NAME", "STATE", "GENERATION", "OWNER", "CHANGED", "REASON"];
            let rows: Vec<[String; 6]> = views
                .iter()
                .map(|p| {
                    [
                        clean(&p.name),
                        p.state.state.to_string(),
                        p.state.generation.to_string(),
                        clean(&p.owner),
                        time(p.state.changed_at.as_ref()),
                        truncate(&clean(&p.state.reason), LIST_REASON_CHARS),
                    ]
                })
                .collect();
            Ok(columns(header.map(str::to_owned), &rows))
        }
    }
}

/// `pause` and `resume`: one line, e.g. `demo: PAUSED at generation 12`.
pub fn change(view: &ChangeView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table => {
            let StateView {
                program,
                state,
                generation,
                ..
            } = &view.state;
            let program = clean(program);
            Ok(if view.changed {
                format!("{program}: {state} at generation {generation}\n")
            } else {
                format!("{program}: already {state} at generation {generation} (nothing changed)\n")
            })
        }
    }
}

/// `status`: the state, then who has acknowledged it.
pub fn status(view: &StatusView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table => {
            let c = &view.collectors;
            let mut rows = vec![Row::new("program", &view.state.program)];
            rows.extend(state_rows(&view.state));
            rows.push(Row::new(
                "collectors",
                &format!(
                    "{} connected, {} acknowledged, {} pending, {} errored",
                    c.connected,
                    c.acked,
                    c.pending.len(),
                    view.errors.len()
                ),
            ));
            if !c.pending.is_empty() {
                rows.push(Row::lines("pending", c.pending.iter().map(|id| clean(id))));
            }
            if !view.errors.is_empty() {
                rows.push(Row::lines(
                    "errored",
                    view.errors
                        .iter()
                        .map(|e| format!("{}: {}", clean(&e.collector_id), clean(&e.error))),
                ));
            }
            rows.push(Row::new("replicas", &view.replicas.join(", ")));
            Ok(block(&rows))
        }
    }
}

/// The rows every state shows, after the program's name. `purge` only when set, so the
/// common case stays short.
fn state_rows(state: &StateView) -> Vec<Row> {
    let mut rows = vec![
        Row::new("state", state.state.as_str()),
        Row::new("generation", &state.generation.to_string()),
        Row::new("reason", &state.reason),
        Row::new("incident", &state.incident_id),
        Row::new("actor", &state.actor),
        Row::new("changed", &time(state.changed_at.as_ref())),
    ];
    if state.purge {
        rows.push(Row::new("purge", "yes"));
    }
    rows
}

/// One key of a key/value block; a value may span several lines.
struct Row {
    key: &'static str,
    lines: Vec<String>,
}

impl Row {
    /// A one-line value, escaped; empty shows as `-`.
    fn new(key: &'static str, value: &str) -> Self {
        let value = if value.is_empty() {
            "-".to_owned()
        } else {
            clean(value)
        };
        Self {
            key,
            lines: vec![value],
        }
    }

    /// Already escaped lines.
    fn lines(key: &'static str, lines: impl IntoIterator<Item = String>) -> Self {
        Self {
            key,
            lines: lines.into_iter().collect(),
        }
    }
}

/// `key:  value` lines with the values aligned; continuation lines are indented to the
/// value column.
fn block(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.key.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for row in rows {
        let key = format!("{}:", row.key);
        let mut lines = row.lines.iter();
        let first = lines.next().map_or("-", String::as_str);
        let _ = writeln!(out, "{key:<width$}  {first}");
        for line in lines {
            let _ = writeln!(out, "{:width$}  {line}", "");
        }
    }
    out
}

/// Columns separated by two spaces, each as wide as its widest cell; the last column is
/// not padded, so lines carry no trailing spaces.
fn columns<const N: usize>(header: [String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let pad = width.saturating_sub(cell.chars().count());
                let _ = write!(line, "{cell}{:pad$}  ", "");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An optional time as RFC 3339, `-` when unknown.
fn time(at: Option<&crate::view::Time>) -> String {
    at.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// Escapes control characters (newlines, tabs, ANSI escapes) so a value stays on its line
/// and cannot drive the terminal.
fn clean(value: &str) -> String {
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
fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| {
        Error::new(
            Exit::Error,
            format!("cannot encode the result as JSON: {e}"),
        )
    })?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use killswitch_proto::prost_types::Timestamp;
    use serde_json::{Value, json};

    use super::*;
    use crate::view::{CollectorErrorView, CollectorsView, RunState, Time};

    /// 2026-11-29T09:00:00Z
    fn at(offset_seconds: i64) -> Option<Time> {
        Time::from_wire(&Timestamp {
            seconds: 1_795_942_800 + offset_seconds,
            nanos: 0,
        })
    }

    fn paused() -> StateView {
        StateView {
            program: "demo".to_owned(),
            state: RunState::Paused,
            generation: 7,
            reason: "incident 42: leaking PII".to_owned(),
            incident_id: "INC-42".to_owned(),
            actor: "alice".to_owned(),
            changed_at: at(0),
            purge: false,
        }
    }

    fn running(name: &str) -> StateView {
        StateView {
            program: name.to_owned(),
            state: RunState::Running,
            generation: 12,
            reason: "all clear".to_owned(),
            incident_id: String::new(),
            actor: "bob".to_owned(),
            changed_at: None,
            purge: false,
        }
    }

    fn demo() -> ProgramView {
        ProgramView {
            name: "demo".to_owned(),
            owner: "team-data".to_owned(),
            description: "click stream".to_owned(),
            created_at: at(-3600),
            created_by: "carol".to_owned(),
            state: paused(),
        }
    }

    fn status_view() -> StatusView {
        StatusView {
            state: paused(),
            collectors: CollectorsView {
                connected: 3,
                acked: 1,
                pending: vec!["c1".to_owned()],
                errored: vec!["c2".to_owned()],
            },
            errors: vec![CollectorErrorView {
                collector_id: "c2".to_owned(),
                error: "disk full".to_owned(),
            }],
            replicas: vec!["r1".to_owned(), "r2".to_owned()],
        }
    }

    fn parse(text: &str) -> Value {
        assert!(text.ends_with('\n'), "{text:?}");
        serde_json::from_str(text).unwrap()
    }

    fn state_json() -> Value {
        json!({
            "program": "demo",
            "state": "PAUSED",
            "generation": 7,
            "reason": "incident 42: leaking PII",
            "incident_id": "INC-42",
            "actor": "alice",
            "changed_at": "2026-11-29T09:00:00Z",
            "purge": false,
        })
    }

    fn program_json() -> Value {
        json!({
            "name": "demo",
            "owner": "team-data",
            "description": "click stream",
            "created_at": "2026-11-29T08:00:00Z",
            "created_by": "carol",
            "state": state_json(),
        })
    }

    /// `extra` merged into the state object's fields.
    fn state_json_with(extra: Value) -> Value {
        let mut value = state_json();
        let (Value::Object(fields), Value::Object(extra)) = (&mut value, extra) else {
            panic!("objects expected");
        };
        fields.extend(extra);
        value
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
                "change",
                json_of(change(
                    &ChangeView {
                        state: paused(),
                        changed: true,
                    },
                    f,
                )),
                state_json_with(json!({"changed": true})),
            ),
            (
                "status",
                json_of(status(&status_view(), f)),
                state_json_with(json!({
                    "collectors": {
                        "connected": 3,
                        "acked": 1,
                        "pending": ["c1"],
                        "errored": ["c2"],
                    },
                    "errors": [{"collector_id": "c2", "error": "disk full"}],
                    "replicas": ["r1", "r2"],
                })),
            ),
        ];
        for (name, got, expected) in cases {
            assert_eq!(got, expected, "{name}");
        }
    }

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
            let view = ChangeView { state, changed };
            assert_eq!(change(&view, OutputFormat::Table).unwrap(), expected);
        }
    }

    #[test]
    fn program_table() {
        assert_eq!(
            program(&demo(), OutputFormat::Table).unwrap(),
            "\
name:         demo
owner:        team-data
description:  click stream
created:      2026-11-29T08:00:00Z
created by:   carol
state:        PAUSED
generation:   7
reason:       incident 42: leaking PII
incident:     INC-42
actor:        alice
changed:      2026-11-29T09:00:00Z
"
        );
    }

    #[test]
    fn program_list_table() {
        let long = ProgramView {
            name: "web-logs".to_owned(),
            owner: "t".to_owned(),
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
NAME      STATE    GENERATION  OWNER      CHANGED               REASON
demo      PAUSED   7           team-data  2026-11-29T09:00:00Z  incident 42: leaking PII
web-logs  RUNNING  12          t          -                     {}...
",
                "x".repeat(LIST_REASON_CHARS - 3)
            )
        );
        assert_eq!(programs(&[], OutputFormat::Table).unwrap(), "no programs\n");
    }

    #[test]
    fn status_table() {
        let mut errored = status_view();
        errored.errors.push(CollectorErrorView {
            collector_id: "c3".to_owned(),
            error: "hook timed out".to_owned(),
        });
        errored.state.purge = true;
        assert_eq!(
            status(&errored, OutputFormat::Table).unwrap(),
            "\
program:     demo
state:       PAUSED
generation:  7
reason:      incident 42: leaking PII
incident:    INC-42
actor:       alice
changed:     2026-11-29T09:00:00Z
purge:       yes
collectors:  3 connected, 1 acknowledged, 1 pending, 2 errored
pending:     c1
errored:     c2: disk full
             c3: hook timed out
replicas:    r1, r2
"
        );

        let all_acked = StatusView {
            state: running("demo"),
            collectors: CollectorsView {
                connected: 3,
                acked: 3,
                ..CollectorsView::default()
            },
            errors: vec![],
            replicas: vec![],
        };
        assert_eq!(
            status(&all_acked, OutputFormat::Table).unwrap(),
            "\
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
        };
        let shown = program(
            &ProgramView {
                state: view.state.clone(),
                ..demo()
            },
            OutputFormat::Table,
        )
        .unwrap();
        assert!(shown.contains("reason:       a\\nb\n"), "{shown}");
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
