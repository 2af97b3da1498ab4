//! `stop-all`, `stop-all --clear` and `stop-all --show`: what happened to the flag, and
//! with `--wait` a row per program.

use super::table::{columns, stop_all_banner};
use super::{Error, OutputFormat, clean, json, or_dash, time};
use crate::view::StopAllResultView;

/// What `stop-all` was asked to do, for its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAllMode {
    /// `stop-all --reason`
    Set,
    /// `stop-all --clear`
    Clear,
    /// `stop-all --show`
    Show,
}

/// `stop-all`, `stop-all --clear` and `stop-all --show`: what happened to the flag (and
/// with `--wait`, a row per program), or one JSON document.
pub fn stop_all(
    view: &StopAllResultView,
    mode: StopAllMode,
    format: OutputFormat,
) -> Result<String, Error> {
    if format == OutputFormat::Json {
        return json(view);
    }
    let flag = &view.stop_all;
    let mut out = match (mode, flag.active, view.changed) {
        (StopAllMode::Set, true, true) => format!(
            "STOP-ALL SET at generation {}: every program is now PAUSED for every collector\n",
            flag.generation
        ),
        (StopAllMode::Set, true, false) => format!(
            "a stop-all was already active (nothing changed): set by {} at {}\n",
            or_dash(clean(&flag.actor)),
            time(flag.at.as_ref())
        ),
        (StopAllMode::Clear, false, true) => format!(
            "stop-all cleared at generation {}: every program is back to its own state \
             (see killswitch program list)\n",
            flag.generation
        ),
        (StopAllMode::Clear | StopAllMode::Show, false, _) => "no stop-all is active\n".to_owned(),
        (StopAllMode::Clear, true, _) => match &view.approval_request_id {
            Some(id) => {
                let id = clean(id);
                let expires = flag
                    .clear_request
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |r| time(r.expires_at.as_ref()));
                format!(
                    "clearing the stop-all needs a second admin (a program needs two operators \
                     to resume): requested as {id}, expires {expires}\n\
                     another admin must run: killswitch stop-all --clear --approve {id} \
                     --reason TEXT\n"
                )
            }
            None => "the stop-all is still active (nothing changed)\n".to_owned(),
        },
        (StopAllMode::Show, true, _) | (StopAllMode::Set, false, _) => String::new(),
    };
    if flag.active && (mode == StopAllMode::Show || view.changed) {
        out.push_str(&stop_all_banner(flag));
    } else if mode == StopAllMode::Set && !flag.active {
        out.push_str("the stop-all is not active: the control plane did not set it\n");
    }
    if !view.programs.is_empty() {
        let header = [
            "PROGRAM",
            "GENERATION",
            "CONNECTED",
            "ACKNOWLEDGED",
            "PENDING",
            "ERRORED",
            "COMPLETE",
        ]
        .map(str::to_owned);
        let rows: Vec<[String; 7]> = view
            .programs
            .iter()
            .map(|p| {
                let c = p.status.as_ref().map(|s| &s.collectors);
                let count = |f: fn(&crate::view::CollectorsView) -> u64| {
                    c.map_or_else(|| "-".to_owned(), |c| f(c).to_string())
                };
                [
                    clean(&p.program),
                    p.generation.to_string(),
                    count(|c| c.connected),
                    count(|c| c.acked),
                    count(|c| c.pending_count),
                    count(|c| c.errored_count),
                    if p.complete { "yes" } else { "NO" }.to_owned(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&columns(header, &rows));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::output::fixtures::{BANNER, all_acked, flag, parse};
    use crate::view::{StopAllView, WaitedProgramView};
    #[test]
    fn stop_all_results() {
        let result = |flag: StopAllView, changed: bool, approval: Option<&str>| StopAllResultView {
            stop_all: flag,
            changed,
            approval_request_id: approval.map(str::to_owned),
            programs: vec![],
        };
        let inactive = StopAllView {
            active: false,
            generation: 43,
            ..flag()
        };
        let table =
            |view: &StopAllResultView, mode| stop_all(view, mode, OutputFormat::Table).unwrap();
        assert_eq!(
            table(&result(flag(), true, None), StopAllMode::Set),
            format!(
                "STOP-ALL SET at generation 42: every program is now PAUSED for every \
                 collector\n{BANNER}"
            )
        );
        assert_eq!(
            table(&result(flag(), false, None), StopAllMode::Set),
            "a stop-all was already active (nothing changed): set by alice at \
             2026-11-29T09:02:00Z\n"
        );
        assert_eq!(
            table(&result(inactive.clone(), true, None), StopAllMode::Clear),
            "stop-all cleared at generation 43: every program is back to its own state (see \
             killswitch program list)\n"
        );
        assert_eq!(
            table(&result(inactive.clone(), false, None), StopAllMode::Clear),
            "no stop-all is active\n"
        );
        assert_eq!(
            table(&result(inactive.clone(), false, None), StopAllMode::Show),
            "no stop-all is active\n"
        );
        assert_eq!(
            table(&result(flag(), false, None), StopAllMode::Show),
            BANNER
        );
        let requested = table(&result(flag(), false, Some("0badcafe")), StopAllMode::Clear);
        assert!(
            requested.starts_with("clearing the stop-all needs a second admin")
                && requested.contains(
                    "another admin must run: killswitch stop-all --clear --approve 0badcafe \
                     --reason TEXT\n"
                ),
            "{requested}"
        );

        let mut waited = result(flag(), true, None);
        waited.programs = vec![
            WaitedProgramView {
                program: "a".to_owned(),
                generation: 42,
                complete: true,
                status: Some(all_acked()),
            },
            WaitedProgramView {
                program: "b".to_owned(),
                generation: 42,
                complete: false,
                status: None,
            },
        ];
        assert!(
            table(&waited, StopAllMode::Set).ends_with(
                "\n\
PROGRAM  GENERATION  CONNECTED  ACKNOWLEDGED  PENDING  ERRORED  COMPLETE
a        42          3          3             0        0        yes
b        42          -          -             -        -        NO
"
            ),
            "{}",
            table(&waited, StopAllMode::Set)
        );
        let value = parse(&stop_all(&waited, StopAllMode::Set, OutputFormat::Json).unwrap());
        assert_eq!(value["changed"], true);
        assert_eq!(value["approval_request_id"], Value::Null);
        assert_eq!(value["stop_all"]["generation"], 42);
        assert_eq!(value["programs"][1]["complete"], false);
    }
}
