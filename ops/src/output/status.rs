//! `status` and `status --watch` ([`WatchRenderer`]): a status as a block, the line that
//! names collectors whose gate is not in the state intended for them ([`diverged_line`]),
//! and the one-line counts `--wait` shows as progress ([`progress_line`]).

use std::fmt::Write as _;
use std::time::Duration;

use super::program::state_rows;
use super::table::{Row, block, more, with_banner, with_more};
use super::{Error, OutputFormat, clean, json, json_line};
use crate::view::{AckTimesView, CollectorsView, Micros, RunState, StatusView};

/// `status`: the state, then who has acknowledged it.
pub fn status(view: &StatusView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table => Ok(status_block(view)),
    }
}

/// `status --watch`: every update as a status block, blocks separated by a blank line,
/// or as one compact JSON document per line (NDJSON).
#[derive(Debug)]
pub struct WatchRenderer {
    format: OutputFormat,
    first: bool,
}

impl WatchRenderer {
    /// Renders the updates of one watch.
    #[must_use]
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            first: true,
        }
    }

    /// The text for the next update.
    pub fn render(&mut self, view: &StatusView) -> Result<String, Error> {
        let first = std::mem::replace(&mut self.first, false);
        match self.format {
            OutputFormat::Json => json_line(view),
            OutputFormat::Table if first => Ok(status_block(view)),
            OutputFormat::Table => Ok(format!("\n{}", status_block(view))),
        }
    }
}

/// A status as a key/value block: the state, the counts, who is pending, errored,
/// diverged or disconnected, and the replicas; under the STOP-ALL banner when one is
/// active.
pub(super) fn status_block(view: &StatusView) -> String {
    let c = &view.collectors;
    let mut rows = vec![Row::new("program", &view.state.program)];
    rows.extend(state_rows(&view.state));
    let mut counts = format!(
        "{} connected, {} acknowledged, {} pending, {} errored",
        c.connected, c.acked, c.pending_count, c.errored_count
    );
    if c.diverged_count > 0 {
        let _ = write!(counts, ", {} diverged", c.diverged_count);
    }
    // Only a purge pause asks for deletion; elsewhere a purged count is noise.
    if view.state.purge {
        let _ = write!(counts, ", {} purged", c.purged);
    }
    // The counts cover only the collectors the last change was aimed at.
    if view.state.stop_all.is_some() {
        counts.push_str(" (every collector: stop-all)");
    } else if let Some(scope) = &view.state.scope {
        let _ = write!(counts, " (only {})", clean(scope));
    } else if let Some(rollout) = &view.state.rollout {
        let _ = write!(
            counts,
            " (only stage {}'s {}%)",
            rollout.stage, rollout.percent
        );
    }
    rows.push(Row::new("collectors", &counts));
    if let Some(times) = &view.ack_times {
        rows.push(Row::new("ack times", &ack_times(times)));
    }
    if c.pending_count > 0 {
        let mut line = c
            .pending
            .iter()
            .map(|id| clean(id))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(more) = more(c.pending_count, c.pending.len()) {
            if line.is_empty() {
                let _ = write!(line, "{more} not listed");
            } else {
                let _ = write!(line, " and {more} more");
            }
        }
        rows.push(Row::lines("pending", [line]));
    }
    if c.errored_count > 0 {
        let lines = view.errors.iter().map(|e| {
            format!(
                "{}: {}",
                collector(&e.collector_id, &e.replica),
                clean(&e.error)
            )
        });
        rows.push(Row::lines(
            "errored",
            with_more(lines, c.errored_count, view.errors.len()),
        ));
    }
    if let Some(line) = diverged_line(c, c.diverged.len()) {
        rows.push(Row::lines("diverged", [line]));
    }
    if c.disconnected_count > 0 {
        let lines = c.disconnected.iter().map(|d| {
            let who = collector(&d.collector_id, &d.replica);
            match &d.at {
                Some(at) => format!("{who} at {at}"),
                None => who,
            }
        });
        rows.push(Row::lines(
            "disconnected",
            with_more(lines, c.disconnected_count, c.disconnected.len()),
        ));
    }
    rows.push(Row::new("replicas", &view.replicas.join(", ")));
    if !view.replicas_behind.is_empty() {
        let behind = format!(
            "{} (not yet reported on this generation)",
            view.replicas_behind.join(", ")
        );
        rows.push(Row::new("behind", &behind));
    }
    if let Some(line) = pinned_labels_line(&view.pinned_labels) {
        rows.push(Row::new("pinned labels", &line));
    }
    with_banner(view.state.stop_all.as_ref(), block(&rows))
}

/// The pinned label keys as `status` and `collectors` show them, `region, team (from
/// collector certificates)`; `None` when none is pinned.
#[must_use]
pub(super) fn pinned_labels_line(keys: &[String]) -> Option<String> {
    (!keys.is_empty()).then(|| format!("{} (from collector certificates)", keys.join(", ")))
}

/// The collectors whose gate is not in the state intended for them, listing at most
/// `listed` of them: `2 effectively PAUSED although RUNNING is intended (lost contact?):
/// c7 (replica r1), c9 (replica r1)`; `None` when there are none.
#[must_use]
pub fn diverged_line(c: &CollectorsView, listed: usize) -> Option<String> {
    if c.diverged_count == 0 {
        return None;
    }
    let n = c.diverged_count;
    let shown = &c.diverged[..c.diverged.len().min(listed)];
    // One kind (the usual: paused for lost contact while RUNNING is intended) is said once;
    // anything else is said per collector.
    let kind = c.diverged.first().map(|d| (d.effective, d.intended));
    let one_kind = kind.filter(|k| c.diverged.iter().all(|d| (d.effective, d.intended) == *k));
    let mut line = match one_kind {
        Some((RunState::Paused, RunState::Running)) => {
            format!("{n} effectively PAUSED although RUNNING is intended (lost contact?)")
        }
        Some((effective, intended)) => {
            format!("{n} effectively {effective} although {intended} is intended")
        }
        None => format!("{n} not in the state intended for them"),
    };
    let ids: Vec<String> = shown
        .iter()
        .map(|d| {
            let replica = if d.replica.is_empty() {
                String::new()
            } else {
                format!("replica {}", clean(&d.replica))
            };
            let states = if one_kind.is_some() {
                String::new()
            } else {
                format!("{}, {} intended", d.effective, d.intended)
            };
            let detail: Vec<String> = [replica, states]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect();
            if detail.is_empty() {
                clean(&d.collector_id)
            } else {
                format!("{} ({})", clean(&d.collector_id), detail.join(", "))
            }
        })
        .collect();
    if !ids.is_empty() {
        let _ = write!(line, ": {}", ids.join(", "));
        if let Some(more) = more(n, shown.len()) {
            let _ = write!(line, " and {more} more");
        }
    }
    Some(line)
}

/// `p50 1.2ms, max 3.4ms, last ack 5.6ms after commit (3 acks)`
fn ack_times(times: &AckTimesView) -> String {
    format!(
        "p50 {}, max {}, last ack {} after commit ({} ack{})",
        millis(times.p50_ms),
        millis(times.max_ms),
        millis(times.propagation_ms),
        times.count,
        if times.count == 1 { "" } else { "s" }
    )
}

/// A latency for people: `0.85ms`, `12.3ms`, `2.50s`.
pub(super) fn millis(duration: Micros) -> String {
    let ms = duration.as_millis_f64();
    if duration.0 < 1_000 {
        format!("{ms:.2}ms")
    } else if duration.0 < 1_000_000 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// `id (replica)`, escaped; just `id` when the replica is unknown.
pub(super) fn collector(id: &str, replica: &str) -> String {
    if replica.is_empty() {
        clean(id)
    } else {
        format!("{} ({})", clean(id), clean(replica))
    }
}

/// A plain progress line for `--wait` when stderr is not a terminal, e.g.
/// `demo: 2/3 acknowledged, 1 pending, 0 errored (0.4s)`.
#[must_use]
pub fn progress_line(view: &StatusView, elapsed: Duration) -> String {
    counts_line(&clean(&view.state.program), view, elapsed)
}

/// [`progress_line`] under another `label` (already escaped), e.g. `demo stage 1/2
/// (20%): 2/2 acknowledged, 0 pending, 0 errored (0.4s)`; `, 1 diverged` follows the
/// errored count when a collector's gate is not in the state intended for it.
#[must_use]
pub fn counts_line(label: &str, view: &StatusView, elapsed: Duration) -> String {
    let c = &view.collectors;
    let mut line = format!(
        "{label}: {}/{} acknowledged, {} pending, {} errored",
        c.acked, c.connected, c.pending_count, c.errored_count
    );
    if c.diverged_count > 0 {
        let _ = write!(line, ", {} diverged", c.diverged_count);
    }
    let _ = writeln!(line, " ({:.1}s)", elapsed.as_secs_f64());
    line
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::output::fixtures::{
        BANNER, all_acked, at, flag, lost_contact, parse, scoped, status_json, status_view,
    };
    use crate::view::{CollectorErrorView, DivergedView, RolloutView};
    #[test]
    fn status_table() {
        let mut errored = status_view();
        errored.errors.push(CollectorErrorView {
            collector_id: "c3".to_owned(),
            error: "hook timed out".to_owned(),
            replica: String::new(),
        });
        errored.collectors.errored_count = 2;
        errored.collectors.purged = 1;
        errored.state.purge = true;
        assert_eq!(
            status(&errored, OutputFormat::Table).unwrap(),
            "\
program:       demo
state:         PAUSED
generation:    7
reason:        incident 42: leaking PII
incident:      INC-42
actor:         alice
changed:       2026-11-29T09:00:00Z
purge:         yes
collectors:    3 connected, 1 acknowledged, 1 pending, 2 errored, 1 purged
ack times:     p50 1.2ms, max 3.4ms, last ack 5.6ms after commit (1 ack)
pending:       c1
errored:       c2 (r1): disk full
               c3: hook timed out
disconnected:  c4 (r2) at 2026-11-29T08:59:00Z
replicas:      r1, r2
"
        );

        assert_eq!(
            status(&all_acked(), OutputFormat::Table).unwrap(),
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
    fn status_table_names_the_pinned_labels() {
        let mut view = all_acked();
        view.pinned_labels = vec!["region".to_owned(), "team".to_owned()];
        assert_eq!(
            status(&view, OutputFormat::Table).unwrap(),
            "\
program:        demo
state:          RUNNING
generation:     12
reason:         all clear
incident:       -
actor:          bob
changed:        -
collectors:     3 connected, 3 acknowledged, 0 pending, 0 errored
replicas:       -
pinned labels:  region, team (from collector certificates)
"
        );
        let value = parse(&status(&view, OutputFormat::Json).unwrap());
        assert_eq!(value["pinned_labels"], json!(["region", "team"]));
        // None pinned: no line (see `status_table`), an empty list in JSON.
        let value = parse(&status(&all_acked(), OutputFormat::Json).unwrap());
        assert_eq!(value["pinned_labels"], json!([]));
    }

    #[test]
    fn purged_counts_only_for_purge_pauses() {
        let cases = [
            (
                false,
                0,
                "3 connected, 3 acknowledged, 0 pending, 0 errored\n",
            ),
            (
                false,
                3,
                "3 connected, 3 acknowledged, 0 pending, 0 errored\n",
            ),
            (
                true,
                0,
                "3 connected, 3 acknowledged, 0 pending, 0 errored, 0 purged\n",
            ),
            (
                true,
                3,
                "3 connected, 3 acknowledged, 0 pending, 0 errored, 3 purged\n",
            ),
        ];
        for (purge, purged, expected) in cases {
            let mut view = all_acked();
            view.state.purge = purge;
            view.collectors.purged = purged;
            let shown = status(&view, OutputFormat::Table).unwrap();
            let line = format!("collectors:  {expected}");
            assert!(shown.contains(&line), "{purge} {purged}: {shown}");
            let value = parse(&status(&view, OutputFormat::Json).unwrap());
            assert_eq!(value["collectors"]["purged"], purged, "{purge} {purged}");
        }
    }

    #[test]
    fn status_table_says_how_many_are_not_listed() {
        let mut view = status_view();
        let c = &mut view.collectors;
        c.pending = vec!["c1".to_owned(), "c5".to_owned()];
        (c.pending_count, c.errored_count, c.disconnected_count) = (102, 3, 1);
        c.disconnected[0].at = None;
        view.ack_times = None;
        let shown = status(&view, OutputFormat::Table).unwrap();
        assert!(
            shown.contains(
                "\
collectors:    3 connected, 1 acknowledged, 102 pending, 3 errored
pending:       c1, c5 and 100 more
errored:       c2 (r1): disk full
               and 2 more
disconnected:  c4 (r2)
replicas:"
            ),
            "{shown}"
        );

        view.collectors.pending.clear();
        let shown = status(&view, OutputFormat::Table).unwrap();
        assert!(shown.contains("pending:       102 not listed\n"), "{shown}");
    }

    #[test]
    fn latencies() {
        let cases = [
            (0, "0.00ms"),
            (20, "0.02ms"),
            (850, "0.85ms"),
            (1_000, "1.0ms"),
            (1_234, "1.2ms"),
            (56_789, "56.8ms"),
            (999_000, "999.0ms"),
            (1_000_000, "1.00s"),
            (2_504_000, "2.50s"),
        ];
        for (us, expected) in cases {
            assert_eq!(millis(Micros(us)), expected, "{us}us");
        }
        let times = AckTimesView {
            count: 3,
            p50_ms: Micros(1_200),
            max_ms: Micros(3_400),
            propagation_ms: Micros(5_600),
        };
        assert_eq!(
            ack_times(&times),
            "p50 1.2ms, max 3.4ms, last ack 5.6ms after commit (3 acks)"
        );
    }

    #[test]
    fn watch_updates() {
        let mut table = WatchRenderer::new(OutputFormat::Table);
        let block = status(&all_acked(), OutputFormat::Table).unwrap();
        assert_eq!(table.render(&all_acked()).unwrap(), block);
        assert_eq!(table.render(&all_acked()).unwrap(), format!("\n{block}"));

        let mut ndjson = WatchRenderer::new(OutputFormat::Json);
        for _ in 0..2 {
            let line = ndjson.render(&status_view()).unwrap();
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert_eq!(parse(&line), status_json());
        }
    }

    #[test]
    fn progress_lines() {
        let mut view = status_view();
        view.state.program = "demo\u{1b}[2J".to_owned();
        assert_eq!(
            progress_line(&view, Duration::from_millis(440)),
            "demo\\u{1b}[2J: 1/3 acknowledged, 1 pending, 1 errored (0.4s)\n"
        );
    }

    #[test]
    fn status_table_with_rules_rollout_and_stop_all() {
        assert_eq!(
            status(&scoped(), OutputFormat::Table).unwrap(),
            "\
program:     demo
state:       RUNNING (where no rule below matches)
generation:  12
reason:      all clear
incident:    -
actor:       bob
changed:     -
scope:       region=emea
rules:       PAUSED for region=emea by alice at 2026-11-29T09:01:00Z: emea leak
             drill: PAUSED for region=emea by alice at 2026-11-29T09:01:00Z: emea leak
collectors:  2 connected, 2 acknowledged, 0 pending, 0 errored (only region=emea)
replicas:    -
"
        );

        let mut staged = all_acked();
        staged.state.state = RunState::Paused;
        staged.state.rollout = Some(RolloutView {
            stage: 2,
            stages_percent: vec![10, 50, 100],
            percent: 50,
            interval_ms: 90_000,
            stage_started_at: at(30),
        });
        let shown = status(&staged, OutputFormat::Table).unwrap();
        for line in [
            "state:       PAUSED (except the staged resume's current stage)\n",
            "rollout:     stage 2 of 3 (50%) since 2026-11-29T09:00:30Z; stages 10%,50%,100%, \
             each at least 1m 30s\n",
            "collectors:  3 connected, 3 acknowledged, 0 pending, 0 errored (only stage 2's 50%)\n",
        ] {
            assert!(shown.contains(line), "{line:?} in:\n{shown}");
        }

        let mut stopped = all_acked();
        stopped.state.stop_all = Some(flag());
        let shown = status(&stopped, OutputFormat::Table).unwrap();
        assert!(
            shown.starts_with(&format!("{BANNER}\nprogram:     demo\n")),
            "{shown}"
        );
        assert!(
            shown.contains(
                "state:       RUNNING (overridden: STOP-ALL, every collector is PAUSED)\n"
            ) && shown.contains("0 errored (every collector: stop-all)\n"),
            "{shown}"
        );
        let value = parse(&status(&stopped, OutputFormat::Json).unwrap());
        assert_eq!(
            value["stop_all"],
            json!({
                "active": true,
                "reason": "credential leak",
                "incident_id": "INC-9",
                "actor": "alice",
                "at": "2026-11-29T09:02:00Z",
                "generation": 42,
                "clear_request": null,
            })
        );
        let value = parse(&status(&scoped(), OutputFormat::Json).unwrap());
        assert_eq!(value["scope"], "region=emea");
        assert_eq!(
            value["rules"][1],
            json!({
                "selector": "region=emea",
                "state": "PAUSED",
                "actor": "alice",
                "reason": "emea leak",
                "at": "2026-11-29T09:01:00Z",
                "drill": true,
            })
        );
    }

    #[test]
    fn diverged_collectors_are_shown_in_status() {
        let mut view = all_acked();
        let c = &mut view.collectors;
        (c.acked, c.diverged_count) = (1, 2);
        c.diverged = vec![lost_contact("c7"), lost_contact("c9")];
        let shown = status(&view, OutputFormat::Table).unwrap();
        assert!(
            shown.contains(
                "\
collectors:  3 connected, 1 acknowledged, 0 pending, 0 errored, 2 diverged
diverged:    2 effectively PAUSED although RUNNING is intended (lost contact?): c7 (replica r1), c9 (replica r1)
replicas:"
            ),
            "{shown}"
        );
        let value = parse(&status(&view, OutputFormat::Json).unwrap());
        assert_eq!(value["collectors"]["diverged_count"], 2);
        assert_eq!(
            value["collectors"]["diverged"][1],
            json!({
                "collector_id": "c9",
                "replica": "r1",
                "effective": "PAUSED",
                "intended": "RUNNING",
            })
        );
        assert_eq!(
            progress_line(&view, Duration::from_millis(260)),
            "demo: 1/3 acknowledged, 0 pending, 0 errored, 2 diverged (0.3s)\n"
        );
        let mut watch = WatchRenderer::new(OutputFormat::Table);
        assert!(
            watch
                .render(&view)
                .unwrap()
                .contains("\ndiverged:    2 effectively")
        );
    }

    #[test]
    fn diverged_lines() {
        #[track_caller]
        fn check(count: u64, listed: Vec<DivergedView>, shown: usize, expected: Option<&str>) {
            let c = CollectorsView {
                diverged_count: count,
                diverged: listed,
                ..CollectorsView::default()
            };
            assert_eq!(diverged_line(&c, shown).as_deref(), expected);
        }
        check(0, vec![], 5, None);
        check(
            3,
            vec![lost_contact("c1"), lost_contact("c2"), lost_contact("c3")],
            2,
            Some(
                "3 effectively PAUSED although RUNNING is intended (lost contact?): c1 (replica \
                 r1), c2 (replica r1) and 1 more",
            ),
        );
        check(
            4,
            vec![lost_contact("c1")],
            5,
            Some(
                "4 effectively PAUSED although RUNNING is intended (lost contact?): c1 (replica \
                 r1) and 3 more",
            ),
        );
        check(2, vec![], 5, Some("2 not in the state intended for them"));
        let odd = DivergedView {
            collector_id: "c\n2".to_owned(),
            replica: String::new(),
            effective: RunState::Unspecified,
            intended: RunState::Paused,
        };
        check(
            1,
            vec![odd.clone()],
            5,
            Some("1 effectively UNSPECIFIED although PAUSED is intended: c\\n2"),
        );
        check(
            2,
            vec![lost_contact("c1"), odd],
            5,
            Some(
                "2 not in the state intended for them: c1 (replica r1, PAUSED, RUNNING \
                 intended), c\\n2 (UNSPECIFIED, PAUSED intended)",
            ),
        );
    }
}
