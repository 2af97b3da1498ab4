//! Rendering for people (aligned tables) and scripts (`--output json`): pure functions
//! from the [`crate::view`] types to the exact text printed on stdout.
//!
//! Every function returns the whole output, ending in a newline. JSON mode prints exactly
//! one pretty-printed document per command, except `status --watch`, which prints one
//! compact document per line (NDJSON). Table mode escapes control characters in values:
//! reasons, descriptions and collector errors are typed by other people, and must not be
//! able to move the cursor or forge lines on a responder's terminal.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::exit::{Error, Exit};
use crate::input::LostContact;
use crate::view::{
    AckTimesView, AuditEntryView, AuditListView, AuditVerdictView, ChangeView, CollectorListView,
    CollectorView, CollectorsView, DrillView, Matched, Micros, PolicyView, ProgramView,
    RolloutView, RuleView, RunState, StateView, StatusView, StopAllResultView, StopAllView, Time,
    WaitedChangeView, WaitedRolloutView,
};

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

/// A stage interval for people: `30s`, `1m 30s`, `0s`.
fn interval(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
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

fn status_block(view: &StatusView) -> String {
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
    with_banner(view.state.stop_all.as_ref(), block(&rows))
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

/// `text` under the STOP-ALL banner when `flag` is set.
fn with_banner(flag: Option<&StopAllView>, text: String) -> String {
    match flag {
        Some(flag) if flag.active => format!("{}\n{text}", stop_all_banner(flag)),
        _ => text,
    }
}

/// Lines that cannot be missed: a stop-all is active, by whom, why, and how it ends.
fn stop_all_banner(flag: &StopAllView) -> String {
    let mut out = String::from(
        "!! STOP-ALL ACTIVE: every program is PAUSED for every collector, whatever its \
         own state\n",
    );
    let _ = write!(
        out,
        "!! set by {} at {}: {}",
        or_dash(clean(&flag.actor)),
        time(flag.at.as_ref()),
        or_dash(clean(&flag.reason))
    );
    if !flag.incident_id.is_empty() {
        let _ = write!(out, " (incident {})", clean(&flag.incident_id));
    }
    out.push('\n');
    match &flag.clear_request {
        Some(request) => {
            let _ = writeln!(
                out,
                "!! clearing requested by {} as {}, waiting for a second admin (expires {}): \
                 killswitch stop-all --clear --approve {} --reason TEXT",
                clean(&request.requested_by),
                clean(&request.id),
                time(request.expires_at.as_ref()),
                clean(&request.id)
            );
        }
        None => out.push_str("!! clear it with: killswitch stop-all --clear --reason TEXT\n"),
    }
    out
}

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

/// `drill`: who took part, the time to safe, and whether everything was restored; or
/// one JSON document.
pub fn drill(view: &DrillView, format: OutputFormat) -> Result<String, Error> {
    if format == OutputFormat::Json {
        return json(view);
    }
    let program = clean(&view.program);
    let selector = clean(&view.selector);
    let verdict = match (view.safe, view.restored) {
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
    };
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
    Ok(format!("{verdict}\n{}", block(&rows)))
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

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
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

/// `pause after 30s` or `keep (fail open)`, for `program show`.
fn policy(policy: &PolicyView) -> String {
    match policy.on_lost_contact {
        LostContact::Pause => format!("pause after {}", grace(policy)),
        LostContact::Keep => "keep (fail open)".to_owned(),
    }
}

/// `pause 30s` or `keep`, for the `program list` column.
/// `program show`'s "resume needs" row: "1 operator", "2 operators".
fn operators(n: u32) -> String {
    if n == 1 {
        "1 operator".to_owned()
    } else {
        format!("{n} operators")
    }
}

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
fn millis(duration: Micros) -> String {
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
fn collector(id: &str, replica: &str) -> String {
    if replica.is_empty() {
        clean(id)
    } else {
        format!("{} ({})", clean(id), clean(replica))
    }
}

/// How many of `total` are not among the `listed`, if any.
fn more(total: u64, listed: usize) -> Option<u64> {
    let listed = u64::try_from(listed).unwrap_or(u64::MAX);
    (total > listed).then(|| total - listed)
}

/// `lines`, then `and N more` when the control plane listed only some of `total`.
fn with_more(lines: impl Iterator<Item = String>, total: u64, listed: usize) -> Vec<String> {
    let mut lines: Vec<String> = lines.collect();
    if let Some(more) = more(total, listed) {
        lines.push(format!("and {more} more"));
    }
    lines
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

/// `collectors`: one row per collector, or one JSON document.
pub fn collectors(view: &CollectorListView, format: OutputFormat) -> Result<String, Error> {
    match format {
        OutputFormat::Json => json(view),
        OutputFormat::Table if view.collectors.is_empty() => Ok("no collectors\n".to_owned()),
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
            Ok(columns(header.map(str::to_owned), &rows))
        }
    }
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
                "FROM→TO",
                "INCIDENT",
                "REASON",
            ]
            .map(str::to_owned);
            let rows: Vec<[String; 8]> = view.entries.iter().map(audit_row).collect();
            let mut out = if view.entries.iter().any(|e| !e.detail.is_empty()) {
                let with_detail = |row: [String; 8], detail: String| {
                    let [a, b, c, d, e, f, g, h] = row;
                    [a, b, c, d, e, f, g, h, detail]
                };
                let rows: Vec<[String; 9]> = rows
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

fn audit_row(e: &AuditEntryView) -> [String; 8] {
    // A change that kept the state (create, policy) shows that state alone.
    let states = if e.from == e.to {
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

/// `-` for an empty cell.
fn or_dash(value: String) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value
    }
}

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

/// The rows every state shows, after the program's name. `purge` only when set, so the
/// common case stays short.
fn state_rows(state: &StateView) -> Vec<Row> {
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

fn json_error(err: serde_json::Error) -> Error {
    Error::new(
        Exit::Error,
        format!("cannot encode the result as JSON: {err}"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use killswitch_proto::prost_types::Timestamp;
    use serde_json::{Value, json};

    use super::*;
    use crate::view::{
        ApprovalView, CollectorErrorView, DisconnectedView, DivergedView, Hex, StageView,
        WaitedProgramView,
    };

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
            policy: PolicyView::default(),
            scope: None,
            rules: vec![],
            rollout: None,
            stop_all: None,
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
            policy: PolicyView::default(),
            scope: None,
            rules: vec![],
            rollout: None,
            stop_all: None,
        }
    }

    fn demo() -> ProgramView {
        ProgramView {
            name: "demo".to_owned(),
            owner: "team-data".to_owned(),
            description: "click stream".to_owned(),
            created_at: at(-3600),
            created_by: "carol".to_owned(),
            policy: PolicyView::default(),
            resume_approvals: 1,
            state: paused(),
            approval: None,
        }
    }

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

    fn status_view() -> StatusView {
        StatusView {
            state: paused(),
            collectors: CollectorsView {
                connected: 3,
                acked: 1,
                pending: vec!["c1".to_owned()],
                errored: vec!["c2".to_owned()],
                pending_count: 1,
                errored_count: 1,
                disconnected_count: 1,
                disconnected: vec![DisconnectedView {
                    collector_id: "c4".to_owned(),
                    at: at(-60),
                    replica: "r2".to_owned(),
                }],
                purged: 0,
                diverged_count: 0,
                diverged: vec![],
            },
            errors: vec![CollectorErrorView {
                collector_id: "c2".to_owned(),
                error: "disk full".to_owned(),
                replica: "r1".to_owned(),
            }],
            replicas: vec!["r1".to_owned(), "r2".to_owned()],
            replicas_behind: vec![],
            ack_times: Some(AckTimesView {
                count: 1,
                p50_ms: Micros(1200),
                max_ms: Micros(3400),
                propagation_ms: Micros(5600),
            }),
        }
    }

    /// Every connected collector acknowledged; nothing timed.
    fn all_acked() -> StatusView {
        StatusView {
            state: running("demo"),
            collectors: CollectorsView {
                connected: 3,
                acked: 3,
                ..CollectorsView::default()
            },
            errors: vec![],
            replicas: vec![],
            replicas_behind: vec![],
            ack_times: None,
        }
    }

    fn status_json() -> Value {
        state_json_with(json!({
            "collectors": {
                "connected": 3,
                "acked": 1,
                "pending": ["c1"],
                "errored": ["c2"],
                "pending_count": 1,
                "errored_count": 1,
                "disconnected_count": 1,
                "disconnected": [
                    {"collector_id": "c4", "at": "2026-11-29T08:59:00Z", "replica": "r2"},
                ],
                "purged": 0,
                "diverged_count": 0,
                "diverged": [],
            },
            "errors": [{"collector_id": "c2", "error": "disk full", "replica": "r1"}],
            "replicas": ["r1", "r2"],
            "replicas_behind": [],
            "ack_times": {"count": 1, "p50_ms": 1.2, "max_ms": 3.4, "propagation_ms": 5.6},
        }))
    }

    fn collector_view(id: &str) -> CollectorView {
        CollectorView {
            collector_id: id.to_owned(),
            labels: [("region", "eu"), ("zone", "b")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            replica: "r1".to_owned(),
            generation: 7,
            effective: RunState::Paused,
            intended: RunState::Paused,
            acked_at: at(1),
            error: String::new(),
            connected_at: at(-10),
        }
    }

    fn collector_list() -> CollectorListView {
        CollectorListView {
            program: "demo".to_owned(),
            generation: 7,
            collectors: vec![
                collector_view("c1"),
                CollectorView {
                    replica: "r2".to_owned(),
                    error: "disk full".to_owned(),
                    labels: Default::default(),
                    ..collector_view("c2")
                },
                CollectorView {
                    generation: 0,
                    effective: RunState::Unspecified,
                    acked_at: None,
                    ..collector_view("c3")
                },
            ],
            unreachable_replicas: vec![],
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
            "policy": {"on_lost_contact": "pause", "grace_ms": 30000},
            "scope": null,
            "rules": [],
            "rollout": null,
            "stop_all": null,
        })
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
                }),
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

    fn audit_entry(seq: u64, action: &str, from: RunState, to: RunState) -> AuditEntryView {
        AuditEntryView {
            seq,
            at: at(i64::try_from(seq).unwrap() * 60),
            actor: "alice".to_owned(),
            action: action.to_owned(),
            program: "demo".to_owned(),
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
SEQ  TIME                  ACTOR  ACTION  PROGRAM  FROM→TO         INCIDENT  REASON                     DETAIL
1    2026-11-29T09:01:00Z  carol  create  demo     PAUSED          -         reason 1                   owner: data-team
2    2026-11-29T09:02:00Z  alice  resume  demo     PAUSED→RUNNING  -         reason 2                   -
3    2026-11-29T09:03:00Z  alice  pause   demo     RUNNING→PAUSED  INC-42    incident 42:\\nleaking PII  purge
"
        );
        let no_detail = AuditListView {
            entries: vec![audit_entry(8, "pause", RunState::Running, RunState::Paused)],
            omitted: 7,
        };
        assert_eq!(
            audit(&no_detail, OutputFormat::Table).unwrap(),
            "\
SEQ  TIME                  ACTOR  ACTION  PROGRAM  FROM→TO         INCIDENT  REASON
8    2026-11-29T09:08:00Z  alice  pause   demo     RUNNING→PAUSED  -         reason 8
(7 older entries not shown)
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

    fn rule(selector: &str, state: RunState, drill: bool) -> RuleView {
        RuleView {
            selector: selector.to_owned(),
            state,
            actor: "alice".to_owned(),
            reason: "emea leak".to_owned(),
            at: at(60),
            drill,
        }
    }

    fn flag() -> StopAllView {
        StopAllView {
            active: true,
            reason: "credential leak".to_owned(),
            incident_id: "INC-9".to_owned(),
            actor: "alice".to_owned(),
            at: at(120),
            generation: 42,
            clear_request: None,
        }
    }

    const BANNER: &str = "\
!! STOP-ALL ACTIVE: every program is PAUSED for every collector, whatever its own state
!! set by alice at 2026-11-29T09:02:00Z: credential leak (incident INC-9)
!! clear it with: killswitch stop-all --clear --reason TEXT
";

    fn scoped() -> StatusView {
        let mut view = all_acked();
        view.state.scope = Some("region=emea".to_owned());
        view.state.rules = vec![
            rule("region=emea", RunState::Paused, false),
            rule("region=emea", RunState::Paused, true),
        ];
        view.collectors.connected = 2;
        view.collectors.acked = 2;
        view
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
        use killswitch_control::selector::Selector;
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

    /// A collector paused for lost contact while RUNNING is intended, on r1.
    fn lost_contact(id: &str) -> DivergedView {
        DivergedView {
            collector_id: id.to_owned(),
            replica: "r1".to_owned(),
            effective: RunState::Paused,
            intended: RunState::Running,
        }
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
