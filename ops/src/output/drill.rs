//! `drill`: who took part, the time to safe, and whether everything was restored.

use std::fmt::Write as _;

use super::status::{collector, diverged_line, millis};
use super::table::{Row, block, more, with_more};
use super::{Error, OutputFormat, clean, json, plural};
use crate::view::{DrillView, StatusView};

/// `drill`: who took part, the time to safe, and whether everything was restored; or
/// one JSON document.
pub fn drill(view: &DrillView, format: OutputFormat) -> Result<String, Error> {
    if format == OutputFormat::Json {
        return json(view);
    }
    let mut rows = summary_rows(view);
    rows.extend(straggler_rows(view));
    Ok(format!("{}\n{}", verdict(view), block(&rows)))
}

/// The first line: whether the selected collectors paused, confirmed and were restored.
fn verdict(view: &DrillView) -> String {
    let program = clean(&view.program);
    let selector = clean(&view.selector);
    match (view.safe, view.restored) {
        _ if view.collectors == 0 && view.safe => format!(
            "drill of {program} on {selector}: NO connected collector matched: nothing was \
             tested"
        ),
        (true, true) => format!(
            "drill of {program} on {selector}: {} collector{} paused, confirmed and restored",
            view.collectors,
            plural(view.collectors)
        ),
        (true, false) => format!(
            "drill of {program} on {selector}: {} collector{} paused and confirmed; the \
             restore was NOT confirmed by all",
            view.collectors,
            plural(view.collectors)
        ),
        (false, _) => format!(
            "drill of {program} on {selector}: NOT every selected collector confirmed the \
             pause ({} of {})",
            view.acked, view.collectors
        ),
    }
}

/// How many collectors it matched, how long they took, and the counts of both phases.
fn summary_rows(view: &DrillView) -> Vec<Row> {
    let program = clean(&view.program);
    let matched = match view.matched {
        Some(n) => format!("{n} connected collector{} of {program}", plural(n)),
        None => format!(
            "not known (no status of generation {} that every replica had reported on)",
            view.drill_generation
        ),
    };
    let mut rows = vec![Row::new("matched", &matched)];
    rows.push(Row::new(
        "time to safe",
        &view.time_to_safe_ms.map_or_else(
            || "-".to_owned(),
            |t| {
                format!(
                    "{} (from the drill's commit to the last acknowledgement, by the control \
                     plane's ack times)",
                    millis(t)
                )
            },
        ),
    ));
    rows.push(Row::new(
        "observed",
        &view.observed_ms.map_or_else(
            || "-".to_owned(),
            |t| {
                format!(
                    "{} (by this command: from sending the drill to seeing every \
                     acknowledgement)",
                    millis(t)
                )
            },
        ),
    ));
    rows.push(Row::new(
        "drill",
        &phase(view.drill_generation, view.drill_status.as_ref()),
    ));
    rows.push(Row::new(
        "restore",
        &view.restore_generation.map_or_else(
            || "NOT ENDED: the drill is still active".to_owned(),
            |generation| phase(generation, view.restore_status.as_ref()),
        ),
    ));
    rows
}

/// The collectors that held either phase up: pending ones, then errored ones, then those
/// not in the state intended for them.
fn straggler_rows(view: &DrillView) -> Vec<Row> {
    let mut rows = Vec::new();
    for (key, status) in [
        ("drill pending", view.drill_status.as_ref()),
        ("restore pending", view.restore_status.as_ref()),
    ] {
        if let Some(status) = status.filter(|s| s.collectors.pending_count > 0) {
            let c = &status.collectors;
            let mut line = c
                .pending
                .iter()
                .map(|id| clean(id))
                .collect::<Vec<_>>()
                .join(", ");
            if let Some(more) = more(c.pending_count, c.pending.len()) {
                let _ = write!(line, " and {more} more");
            }
            rows.push(Row::lines(key, [line]));
        }
    }
    for (key, status) in [
        ("drill errored", view.drill_status.as_ref()),
        ("restore errored", view.restore_status.as_ref()),
    ] {
        if let Some(status) = status.filter(|s| s.collectors.errored_count > 0) {
            let lines = status.errors.iter().map(|e| {
                format!(
                    "{}: {}",
                    collector(&e.collector_id, &e.replica),
                    clean(&e.error)
                )
            });
            rows.push(Row::lines(
                key,
                with_more(lines, status.collectors.errored_count, status.errors.len()),
            ));
        }
    }
    for (key, status) in [
        ("drill diverged", view.drill_status.as_ref()),
        ("restore diverged", view.restore_status.as_ref()),
    ] {
        if let Some(line) =
            status.and_then(|s| diverged_line(&s.collectors, s.collectors.diverged.len()))
        {
            rows.push(Row::lines(key, [line]));
        }
    }
    rows
}

/// `generation 14, 2/2 acknowledged, 0 pending, 0 errored`, or just the generation when
/// no status of it was seen.
fn phase(generation: u64, status: Option<&StatusView>) -> String {
    match status.filter(|s| s.state.generation == generation) {
        Some(status) => {
            let c = &status.collectors;
            let mut line = format!(
                "generation {generation}, {}/{} acknowledged, {} pending, {} errored",
                c.acked, c.connected, c.pending_count, c.errored_count
            );
            if c.diverged_count > 0 {
                let _ = write!(line, ", {} diverged", c.diverged_count);
            }
            line
        }
        None => format!("generation {generation}, no status seen"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::output::fixtures::{lost_contact, parse, scoped};
    use crate::view::Micros;
    fn drill_view() -> DrillView {
        let mut drilled = scoped();
        drilled.state.generation = 14;
        let mut restored = scoped();
        restored.state.generation = 15;
        DrillView {
            program: "demo".to_owned(),
            selector: "region=emea".to_owned(),
            drill_generation: 14,
            restore_generation: Some(15),
            collectors: 2,
            matched: Some(2),
            acked: 2,
            safe: true,
            time_to_safe_ms: Some(Micros(4_200)),
            observed_ms: Some(Micros(153_900)),
            restored: true,
            drill_status: Some(drilled),
            restore_status: Some(restored),
        }
    }

    #[test]
    fn drill_tables() {
        assert_eq!(
            drill(&drill_view(), OutputFormat::Table).unwrap(),
            "\
drill of demo on region=emea: 2 collectors paused, confirmed and restored
matched:       2 connected collectors of demo
time to safe:  4.2ms (from the drill's commit to the last acknowledgement, by the control plane's ack times)
observed:      153.9ms (by this command: from sending the drill to seeing every acknowledgement)
drill:         generation 14, 2/2 acknowledged, 0 pending, 0 errored
restore:       generation 15, 2/2 acknowledged, 0 pending, 0 errored
"
        );

        let mut late = drill_view();
        late.safe = false;
        late.acked = 1;
        late.time_to_safe_ms = None;
        late.observed_ms = None;
        late.restore_generation = None;
        late.restore_status = None;
        late.matched = None;
        if let Some(status) = late.drill_status.as_mut() {
            status.collectors.acked = 1;
            status.collectors.pending_count = 1;
            status.collectors.pending = vec!["stuck".to_owned()];
        }
        let shown = drill(&late, OutputFormat::Table).unwrap();
        for line in [
            "drill of demo on region=emea: NOT every selected collector confirmed the pause (1 of 2)\n",
            "time to safe:   -\n",
            "drill:          generation 14, 1/2 acknowledged, 1 pending, 0 errored\n",
            "restore:        NOT ENDED: the drill is still active\n",
            "drill pending:  stuck\n",
            "matched:        not known (no status of generation 14 that every replica had \
             reported on)\n",
        ] {
            assert!(shown.contains(line), "{line:?} in:\n{shown}");
        }

        let nobody = DrillView {
            collectors: 0,
            matched: Some(0),
            acked: 0,
            time_to_safe_ms: None,
            ..drill_view()
        };
        assert!(
            drill(&nobody, OutputFormat::Table)
                .unwrap()
                .starts_with("drill of demo on region=emea: NO connected collector matched"),
        );
        let value = parse(&drill(&drill_view(), OutputFormat::Json).unwrap());
        assert_eq!(value["time_to_safe_ms"], 4.2);
        assert_eq!(value["observed_ms"], 153.9);
        assert_eq!(value["collectors"], 2);
        assert_eq!(value["matched"], 2);
        assert_eq!(value["drill_status"]["generation"], 14);
        let value = parse(&drill(&nobody, OutputFormat::Json).unwrap());
        assert_eq!(value["matched"], 0);
        let value = parse(&drill(&late, OutputFormat::Json).unwrap());
        assert_eq!(value["matched"], Value::Null);

        // A collector paused for lost contact holds the restore: shown, by name.
        let mut lost = drill_view();
        lost.restored = false;
        if let Some(status) = lost.restore_status.as_mut() {
            status.state.generation = 15;
            status.collectors.acked = 1;
            status.collectors.diverged_count = 1;
            status.collectors.diverged = vec![lost_contact("c1")];
        }
        let shown = drill(&lost, OutputFormat::Table).unwrap();
        for line in [
            "restore:           generation 15, 1/2 acknowledged, 0 pending, 0 errored, 1 diverged\n",
            "restore diverged:  1 effectively PAUSED although RUNNING is intended (lost contact?): \
             c1 (replica r1)\n",
        ] {
            assert!(shown.contains(line), "{line:?} in:\n{shown}");
        }
    }
}
