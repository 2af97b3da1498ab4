//! `collectors`: one row per collector connected to any replica, the label keys their
//! certificates pin, and the warning when a replica did not answer.

use super::status::pinned_labels_line;
use super::table::columns;
use super::{Error, OutputFormat, clean, json, time};
use crate::view::{CollectorListView, CollectorView, RunState};

/// `collectors`: one row per collector, then `pinned labels: ...` when the control plane
/// pins some; or one JSON document.
pub fn collectors(view: &CollectorListView, format: OutputFormat) -> Result<String, Error> {
    let mut text = match format {
        OutputFormat::Json => return json(view),
        OutputFormat::Table if view.collectors.is_empty() => "no collectors\n".to_owned(),
        OutputFormat::Table => {
            let header = [
                "ID",
                "REPLICA",
                "GENERATION",
                "STATE",
                "ACKED",
                "ERROR",
                "LABELS",
            ];
            let rows: Vec<[String; 7]> = view.collectors.iter().map(collector_row).collect();
            columns(header.map(str::to_owned), &rows)
        }
    };
    if let Some(line) = pinned_labels_line(&view.pinned_labels) {
        text.push_str(&format!("pinned labels: {}\n", clean(&line)));
    }
    Ok(text)
}

/// The warning when some replicas did not answer `collectors`, e.g. `replicas r2 did not
/// answer; their collectors are missing`.
#[must_use]
pub fn missing_replicas(view: &CollectorListView) -> Option<String> {
    if view.unreachable_replicas.is_empty() {
        return None;
    }
    let replicas: Vec<String> = view.unreachable_replicas.iter().map(|r| clean(r)).collect();
    Some(format!(
        "replicas {} did not answer; their collectors are missing",
        replicas.join(", ")
    ))
}

/// One collector as the cells of its row, escaped.
fn collector_row(c: &CollectorView) -> [String; 7] {
    let or_dash = |value: String| {
        if value.is_empty() {
            "-".to_owned()
        } else {
            value
        }
    };
    // Generation 0: it has not acknowledged anything, so it has no effective state yet.
    let (generation, state) = if c.generation == 0 {
        ("-".to_owned(), "-".to_owned())
    } else if c.intended != c.effective && c.intended != RunState::Unspecified {
        // Not what the control plane intends, e.g. paused for lost contact.
        (
            c.generation.to_string(),
            format!("{} ({} intended)", c.effective, c.intended),
        )
    } else {
        (c.generation.to_string(), c.effective.to_string())
    };
    let labels = c
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect::<Vec<_>>()
        .join(",");
    [
        clean(&c.collector_id),
        or_dash(clean(&c.replica)),
        generation,
        state,
        time(c.acked_at.as_ref()),
        or_dash(clean(&c.error)),
        or_dash(labels),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::output::fixtures::{collector_list, parse};
    #[test]
    fn collectors_table() {
        assert_eq!(
            collectors(&collector_list(), OutputFormat::Table).unwrap(),
            "\
ID  REPLICA  GENERATION  STATE   ACKED                 ERROR      LABELS
c1  r1       7           PAUSED  2026-11-29T09:00:01Z  -          region=eu,zone=b
c2  r2       7           PAUSED  2026-11-29T09:00:01Z  disk full  -
c3  r1       -           -       -                     -          region=eu,zone=b
"
        );
        let empty = CollectorListView {
            collectors: vec![],
            ..collector_list()
        };
        assert_eq!(
            collectors(&empty, OutputFormat::Table).unwrap(),
            "no collectors\n"
        );
    }

    #[test]
    fn collectors_table_names_the_pinned_labels() {
        let list = CollectorListView {
            pinned_labels: vec!["region".to_owned(), "team".to_owned()],
            ..collector_list()
        };
        let shown = collectors(&list, OutputFormat::Table).unwrap();
        assert!(
            shown.ends_with(
                "c3  r1       -           -       -                     -          region=eu,zone=b
pinned labels: region, team (from collector certificates)
"
            ),
            "{shown}"
        );
        let empty = CollectorListView {
            collectors: vec![],
            ..list.clone()
        };
        assert_eq!(
            collectors(&empty, OutputFormat::Table).unwrap(),
            "no collectors\npinned labels: region, team (from collector certificates)\n"
        );
        let value = parse(&collectors(&list, OutputFormat::Json).unwrap());
        assert_eq!(value["pinned_labels"], json!(["region", "team"]));
    }

    #[test]
    fn missing_replicas_warning() {
        #[track_caller]
        fn check(unreachable: &[&str], expected: Option<&str>) {
            let view = CollectorListView {
                unreachable_replicas: unreachable.iter().map(|r| (*r).to_owned()).collect(),
                ..collector_list()
            };
            assert_eq!(missing_replicas(&view).as_deref(), expected);
        }
        check(&[], None);
        check(
            &["r2"],
            Some("replicas r2 did not answer; their collectors are missing"),
        );
        check(
            &["r2", "r\n3"],
            Some("replicas r2, r\\n3 did not answer; their collectors are missing"),
        );
    }

    #[test]
    fn collectors_show_the_intended_state_where_it_differs() {
        let mut list = collector_list();
        list.collectors[0].intended = RunState::Running;
        list.collectors[1].intended = RunState::Unspecified;
        let shown = collectors(&list, OutputFormat::Table).unwrap();
        assert_eq!(
            shown,
            "\
ID  REPLICA  GENERATION  STATE                      ACKED                 ERROR      LABELS
c1  r1       7           PAUSED (RUNNING intended)  2026-11-29T09:00:01Z  -          region=eu,zone=b
c2  r2       7           PAUSED                     2026-11-29T09:00:01Z  disk full  -
c3  r1       -           -                          -                     -          region=eu,zone=b
"
        );
        let value = parse(&collectors(&list, OutputFormat::Json).unwrap());
        assert_eq!(
            (
                value["collectors"][0]["effective"].clone(),
                value["collectors"][0]["intended"].clone()
            ),
            (json!("PAUSED"), json!("RUNNING"))
        );
    }
}
