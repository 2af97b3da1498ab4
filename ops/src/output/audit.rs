//! `audit` (the entries, oldest first) and `audit verify` (the verdict on the chain).

use std::fmt::Write as _;

use super::table::columns;
use super::{Error, LIST_REASON_CHARS, OutputFormat, clean, json, or_dash, time, truncate};
use crate::view::{AuditEntryView, AuditListView, AuditVerdictView, RunState};

/// `audit`: one row per entry, oldest first, then how many older ones were left out; or
/// a JSON array of the entries. A DETAIL column is shown only when some entry has one.
pub fn audit(view: &AuditListView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(&view.entries),
        OutputFormat::Table if view.entries.is_empty() => Ok("no audit entries\n".to_owned()),
        OutputFormat::Table => {
            let header = [
                "SEQ",
                "TIME",
                "ACTOR",
                "ACTION",
                "PROGRAM",
                "GENERATION",
                "FROM→TO",
                "INCIDENT",
                "REASON",
            ]
            .map(str::to_owned);
            let rows: Vec<[String; 9]> = view.entries.iter().map(audit_row).collect();
            let mut out = if view.entries.iter().any(|e| !e.detail.is_empty()) {
                let with_detail = |row: [String; 9], detail: String| {
                    let [a, b, c, d, e, f, g, h, i] = row;
                    [a, b, c, d, e, f, g, h, i, detail]
                };
                let rows: Vec<[String; 10]> = rows
                    .into_iter()
                    .zip(&view.entries)
                    .map(|(row, e)| with_detail(row, or_dash(clean(&e.detail))))
                    .collect();
                columns(with_detail(header, "DETAIL".to_owned()), &rows)
            } else {
                columns(header, &rows)
            };
            if view.omitted > 0 {
                let _ = writeln!(
                    out,
                    "({} older {} not shown)",
                    view.omitted,
                    if view.omitted == 1 {
                        "entry"
                    } else {
                        "entries"
                    }
                );
            }
            Ok(out)
        }
    }
}

/// One entry as the cells of its row, escaped.
fn audit_row(e: &AuditEntryView) -> [String; 9] {
    // A change that kept the state (create, policy) shows that state alone; one that
    // involves none (a replica's reload) shows `-`.
    let states = if e.from == e.to && e.to == RunState::Unspecified {
        "-".to_owned()
    } else if e.from == e.to {
        e.to.to_string()
    } else {
        format!("{}→{}", e.from, e.to)
    };
    [
        e.seq.to_string(),
        time(e.at.as_ref()),
        or_dash(clean(&e.actor)),
        or_dash(clean(&e.action)),
        or_dash(clean(&e.program)),
        // A change that produced no generation (a replica's reload) shows `-`.
        match e.generation {
            0 => "-".to_owned(),
            g => g.to_string(),
        },
        states,
        or_dash(clean(&e.incident_id)),
        or_dash(truncate(&clean(&e.reason), LIST_REASON_CHARS)),
    ]
}

/// `audit verify`: `audit chain intact: N entries verified`, nothing when it is broken
/// ([`broken_chain`] says why, on stderr); or the verdict as one JSON document.
pub fn audit_verdict(view: &AuditVerdictView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table if !view.ok => Ok(String::new()),
        OutputFormat::Table => Ok(format!(
            "audit chain intact: {} {} verified\n",
            view.entries_checked,
            if view.entries_checked == 1 {
                "entry"
            } else {
                "entries"
            }
        )),
    }
}

/// The error when the chain is broken, e.g. `audit chain BROKEN at entry 4: entry 4 is
/// missing`.
#[must_use]
pub fn broken_chain(view: &AuditVerdictView) -> Option<String> {
    if view.ok {
        return None;
    }
    let problem = if view.problem.is_empty() {
        "the control plane did not say what is wrong".to_owned()
    } else {
        clean(&view.problem)
    };
    Some(format!(
        "audit chain BROKEN at entry {}: {problem}",
        view.first_bad_seq
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::output::fixtures::{at, parse};
    use crate::view::Hex;
    fn audit_entry(seq: u64, action: &str, from: RunState, to: RunState) -> AuditEntryView {
        AuditEntryView {
            seq,
            at: at(i64::try_from(seq).unwrap() * 60),
            actor: "alice".to_owned(),
            action: action.to_owned(),
            program: "demo".to_owned(),
            generation: seq * 10,
            from,
            to,
            reason: format!("reason {seq}"),
            incident_id: String::new(),
            detail: String::new(),
            hash: Hex(vec![0xab; 32]),
            prev_hash: Hex(vec![0; 32]),
        }
    }

    fn audit_list() -> AuditListView {
        use RunState::{Paused, Running};
        AuditListView {
            entries: vec![
                AuditEntryView {
                    detail: "owner: data-team".to_owned(),
                    actor: "carol".to_owned(),
                    ..audit_entry(1, "create", Paused, Paused)
                },
                audit_entry(2, "resume", Paused, Running),
                AuditEntryView {
                    incident_id: "INC-42".to_owned(),
                    reason: "incident 42:\nleaking PII".to_owned(),
                    detail: "purge".to_owned(),
                    ..audit_entry(3, "pause", Running, Paused)
                },
            ],
            omitted: 0,
        }
    }

    #[test]
    fn audit_table() {
        assert_eq!(
            audit(&audit_list(), OutputFormat::Table).unwrap(),
            "\
SEQ  TIME                  ACTOR  ACTION  PROGRAM  GENERATION  FROM→TO         INCIDENT  REASON                     DETAIL
1    2026-11-29T09:01:00Z  carol  create  demo     10          PAUSED          -         reason 1                   owner: data-team
2    2026-11-29T09:02:00Z  alice  resume  demo     20          PAUSED→RUNNING  -         reason 2                   -
3    2026-11-29T09:03:00Z  alice  pause   demo     30          RUNNING→PAUSED  INC-42    incident 42:\\nleaking PII  purge
"
        );
        let no_detail = AuditListView {
            entries: vec![audit_entry(8, "pause", RunState::Running, RunState::Paused)],
            omitted: 7,
        };
        assert_eq!(
            audit(&no_detail, OutputFormat::Table).unwrap(),
            "\
SEQ  TIME                  ACTOR  ACTION  PROGRAM  GENERATION  FROM→TO         INCIDENT  REASON
8    2026-11-29T09:08:00Z  alice  pause   demo     80          RUNNING→PAUSED  -         reason 8
(7 older entries not shown)
"
        );
        let reload = AuditListView {
            entries: vec![AuditEntryView {
                generation: 0,
                ..audit_entry(9, "reload", RunState::Unspecified, RunState::Unspecified)
            }],
            omitted: 0,
        };
        assert_eq!(
            audit(&reload, OutputFormat::Table).unwrap(),
            "\
SEQ  TIME                  ACTOR  ACTION  PROGRAM  GENERATION  FROM→TO  INCIDENT  REASON
9    2026-11-29T09:09:00Z  alice  reload  demo     -           -        -         reason 9
"
        );
        let empty = AuditListView {
            entries: vec![],
            omitted: 0,
        };
        assert_eq!(
            audit(&empty, OutputFormat::Table).unwrap(),
            "no audit entries\n"
        );
    }

    #[test]
    fn audit_json() {
        let value = parse(&audit(&audit_list(), OutputFormat::Json).unwrap());
        assert_eq!(
            value[2],
            json!({
                "seq": 3,
                "at": "2026-11-29T09:03:00Z",
                "actor": "alice",
                "action": "pause",
                "program": "demo",
                "generation": 30,
                "from": "RUNNING",
                "to": "PAUSED",
                "reason": "incident 42:\nleaking PII",
                "incident_id": "INC-42",
                "detail": "purge",
                "hash": "ab".repeat(32),
                "prev_hash": "00".repeat(32),
            })
        );
        assert_eq!(value.as_array().map(Vec::len), Some(3));
        let empty = AuditListView {
            entries: vec![],
            omitted: 2,
        };
        assert_eq!(
            parse(&audit(&empty, OutputFormat::Json).unwrap()),
            json!([])
        );
    }

    #[test]
    fn audit_verdicts() {
        #[track_caller]
        fn check(view: AuditVerdictView, table: &str, error: Option<&str>) {
            assert_eq!(audit_verdict(&view, OutputFormat::Table).unwrap(), table);
            assert_eq!(broken_chain(&view).as_deref(), error);
            let value = parse(&audit_verdict(&view, OutputFormat::Json).unwrap());
            assert_eq!(
                value,
                json!({
                    "ok": view.ok,
                    "entries_checked": view.entries_checked,
                    "first_bad_seq": view.first_bad_seq,
                    "problem": view.problem,
                })
            );
        }
        let intact = |n| AuditVerdictView {
            ok: true,
            entries_checked: n,
            first_bad_seq: 0,
            problem: String::new(),
        };
        check(
            intact(12),
            "audit chain intact: 12 entries verified\n",
            None,
        );
        check(intact(1), "audit chain intact: 1 entry verified\n", None);
        check(intact(0), "audit chain intact: 0 entries verified\n", None);
        let broken = |seq, problem: &str| AuditVerdictView {
            ok: false,
            entries_checked: seq - 1,
            first_bad_seq: seq,
            problem: problem.to_owned(),
        };
        check(
            broken(4, "entry 4 is missing"),
            "",
            Some("audit chain BROKEN at entry 4: entry 4 is missing"),
        );
        check(
            broken(5, "entry\n5"),
            "",
            Some("audit chain BROKEN at entry 5: entry\\n5"),
        );
        check(
            broken(2, ""),
            "",
            Some("audit chain BROKEN at entry 2: the control plane did not say what is wrong"),
        );
    }
}
