//! `report` (the terminal summary, or the whole report as JSON) and `report verify` (the
//! verdict on a report's evidence).

use std::fmt::Write as _;

use super::table::{Row, block};
use super::{Error, OutputFormat, audit, clean, json};
use crate::report::verify::Verified;
use crate::report::{ChangeReport, Percentiles, Report};
use crate::view::AuditListView;

/// `report`: the summary for a terminal (the timeline, then each change: who confirmed,
/// how fast, who did not), or the whole report with its evidence as one JSON document.
pub fn report(report: &Report, format: OutputFormat) -> Result<String, Error> {
    if format == OutputFormat::Json {
        return json(report);
    }
    let totals = &report.totals;
    let mut out = String::new();
    let mut rows = vec![
        Row::new("report", &describe_query(report)),
        Row::new("programs", &report.programs.join(", ")),
        Row::new("generated", &report.generated_at),
        Row::new(
            "audit",
            &format!(
                "{} entries in the timeline; chain segment {}..{} ({} entries) embedded",
                totals.timeline_entries, totals.first_seq, totals.last_seq, totals.audit_entries
            ),
        ),
        Row::new(
            "receipts",
            &format!(
                "{} ({} signed, {} unsigned)",
                totals.receipts, totals.signed, totals.unsigned
            ),
        ),
    ];
    if !report.notes.is_empty() {
        rows.push(Row::lines("notes", report.notes.iter().map(|n| clean(n))));
    }
    out.push_str(&block(&rows));
    out.push_str("\nTIMELINE\n");
    let timeline = AuditListView {
        entries: report.timeline.clone(),
        omitted: 0,
    };
    out.push_str(&audit(&timeline, OutputFormat::Table)?);
    out.push_str("\nCHANGES\n");
    if report.changes.is_empty() {
        out.push_str("no change produced a generation\n");
    }
    for change in &report.changes {
        out.push_str(&change_summary(change));
    }
    let _ = writeln!(out, "\n{}", crate::report::CLOCK_NOTE);
    Ok(out)
}

/// `incident INC-7, program demo, since ...`.
pub(super) fn describe_query(report: &Report) -> String {
    let q = &report.query;
    let mut parts = Vec::new();
    if let Some(incident) = &q.incident {
        parts.push(format!("incident {incident}"));
    }
    if let Some(program) = &q.program {
        parts.push(format!("program {program}"));
    }
    if let Some(since) = &q.since {
        parts.push(format!("since {since}"));
    }
    if let Some(until) = &q.until {
        parts.push(format!("until {until}"));
    }
    parts.join(", ")
}

/// One change: its heading line, then a key/value block indented under it.
fn change_summary(c: &ChangeReport) -> String {
    let mut out = format!(
        "\n{}: {} at generation {} (entry {}) by {}, committed {}, {} (program state {})\n",
        clean(&c.program),
        clean(&c.action),
        c.generation,
        c.seq,
        clean(&c.actor),
        c.committed_at.as_deref().unwrap_or("at an unknown time"),
        c.scope.as_ref().map_or_else(
            || "whole program".to_owned(),
            |s| format!("scope {}", clean(s))
        ),
        c.state,
    );
    let mut confirmed = format!(
        "{} of {} collectors ({} errored)",
        c.confirmed, c.collectors, c.errored
    );
    if c.purged > 0 {
        let _ = write!(confirmed, ", purge confirmed by {}", c.purged);
    }
    let mut rows = vec![Row::new("confirmed", &confirmed)];
    if let (Some(first), Some(last)) = (&c.first_confirmed_at, &c.last_confirmed_at) {
        rows.push(Row::new("first, last", &format!("{first}, {last}")));
    }
    rows.push(Row::new(
        "commit to gate",
        &percentiles(c.commit_to_gate_changed_ms.as_ref()),
    ));
    rows.push(Row::new(
        "commit to ack",
        &percentiles(c.commit_to_ack_ms.as_ref()),
    ));
    let errored: Vec<String> = c
        .receipts
        .iter()
        .filter(|r| !r.error.is_empty())
        .map(|r| format!("{}: {}", clean(&r.collector_id), clean(&r.error)))
        .collect();
    if !errored.is_empty() {
        rows.push(Row::lines("errors", errored));
    }
    let stragglers: Vec<String> = c
        .stragglers
        .iter()
        .map(|s| match (&s.last_contact, s.last_contact_from) {
            (Some(at), Some(from)) => {
                format!("{} (last contact {at}, {from})", clean(&s.collector_id))
            }
            _ => format!("{} (last contact unknown)", clean(&s.collector_id)),
        })
        .collect();
    rows.push(if stragglers.is_empty() {
        Row::new("stragglers", "none")
    } else {
        Row::lines("stragglers", stragglers)
    });
    for line in block(&rows).lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// `p50 240 ms, p90 480 ms, p99 480 ms, max 480 ms (4)`, or `-`.
fn percentiles(p: Option<&Percentiles>) -> String {
    p.map_or_else(
        || "-".to_owned(),
        |p| {
            format!(
                "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} receipts)",
                p.p50, p.p90, p.p99, p.max, p.count
            )
        },
    )
}

/// `report verify`: `report verified: N receipts, M audit entries`, with the unsigned
/// receipts named when there are any; or the verdict as JSON.
pub fn report_verdict(verified: &Verified, format: OutputFormat) -> Result<String, Error> {
    if format == OutputFormat::Json {
        #[derive(serde::Serialize)]
        struct Verdict<'a> {
            verified: bool,
            #[serde(flatten)]
            details: &'a Verified,
        }
        return json(&Verdict {
            verified: true,
            details: verified,
        });
    }
    let mut out = format!(
        "report verified: {} receipts, {} audit entries",
        verified.receipts, verified.audit_entries
    );
    if !verified.unsigned.is_empty() {
        let named: Vec<String> = verified
            .unsigned
            .iter()
            .map(|u| format!("{} at generation {}", clean(&u.collector_id), u.generation))
            .collect();
        let _ = write!(
            out,
            " ({} unsigned: {})",
            verified.unsigned.len(),
            named.join(", ")
        );
    }
    out.push('\n');
    Ok(out)
}

/// `report verify` of a report that does not verify: nothing in a table (the error says
/// why, on stderr), or `{"verified": false, "problem": ...}`.
pub fn report_failure(problem: &str, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Table => Ok(String::new()),
        OutputFormat::Json => json(&serde_json::json!({"verified": false, "problem": problem})),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::fixtures::Incident;

    #[test]
    fn the_summary_shows_the_timeline_and_each_change() {
        let text = report(&Incident::new().report(), OutputFormat::Table).unwrap();
        for needle in [
            "report:     incident INC-7",
            "receipts:   12 (11 signed, 1 unsigned)",
            "chain segment 3..9 (7 entries) embedded",
            "rollout-complete",
            "demo: pause at generation 10 (entry 3) by alice, committed \
             2026-11-29T09:00:00.000Z, whole program (program state PAUSED)",
            "confirmed:       4 of 6 collectors (0 errored), purge confirmed by 4",
            "commit to ack:   p50 240 ms, p90 480 ms, p99 480 ms, max 480 ms (4 receipts)",
            "c-5 (last contact 2026-11-29T09:33:20.000Z, collectors)",
            "demo: resume at generation 13 (entry 6) by alice, committed \
             2026-11-29T09:11:40.000Z, scope region=emea (program state RUNNING)",
            "errors:          c-3: hook exited 1",
            "collectors' own clocks",
        ] {
            assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
        }
    }

    #[test]
    fn the_verdict_names_unsigned_receipts() {
        let verified = Verified {
            receipts: 3,
            signed: 2,
            unsigned: vec![crate::report::verify::Unsigned {
                collector_id: "c-4".to_owned(),
                generation: 10,
                reason: "no certificate".to_owned(),
            }],
            audit_entries: 7,
            first_seq: 3,
            last_seq: 9,
        };
        assert_eq!(
            report_verdict(&verified, OutputFormat::Table).unwrap(),
            "report verified: 3 receipts, 7 audit entries (1 unsigned: c-4 at generation 10)\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&report_verdict(&verified, OutputFormat::Json).unwrap()).unwrap();
        assert_eq!(json["verified"], true);
        assert_eq!(json["unsigned"][0]["collector_id"], "c-4");
    }
}
