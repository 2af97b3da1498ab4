//! The console's pages, rendered on the server from the CLI's views. Every count the
//! live script updates carries `data-field="NAME"`, every program row
//! `data-program="NAME"`, so that a test (or a person with the inspector) can read the
//! page back.

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::html::{self, Frame, badge, esc, url_encode, when};
use super::{Shared, failure};
use crate::client::Session;
use crate::exit::Error;
use crate::input::{CollectorFilter, ProgramName, Since};
use crate::output;
use crate::report::Query as ReportQuery;
use crate::view::{
    CollectorListView, CollectorView, IdentityView, ProgramView, StatusView, StopAllView,
};

/// At most this many pending or errored collectors are listed on a program's page.
pub(super) const LISTED: usize = 50;

/// `/`: every program with its state and policy, and the stop-all actions.
pub(super) async fn programs(State(console): State<Shared>) -> Response {
    let mut session = console.session.clone();
    let loaded = async {
        let identity = session.who_am_i().await?;
        let programs = session.list_programs().await?;
        let stop_all = session.get_stop_all().await?.stop_all;
        Ok::<_, Error>((identity, programs, stop_all))
    }
    .await;
    let (identity, programs, stop_all) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return failure(&err),
    };
    let frame = Frame {
        title: "Programs",
        identity: &identity,
        csrf: console.guard.csrf(),
        stop_all: Some(&stop_all),
    };
    let mut main = String::from("<h1>Programs</h1>\n");
    main.push_str(&stop_all_section(&frame, &stop_all));
    if programs.is_empty() {
        main.push_str(
            "<p>No programs yet: create one with <code>killswitch program create NAME \
             --owner TEAM</code>.</p>",
        );
    } else {
        main.push_str(
            "<div class=\"scroll\"><table id=\"programs\"><caption>Every program, as the \
             control plane holds it now</caption><thead><tr><th scope=\"col\">Program</th>\
             <th scope=\"col\">State</th><th scope=\"col\">Generation</th>\
             <th scope=\"col\">Changed</th><th scope=\"col\">By</th><th scope=\"col\">Reason</th>\
             <th scope=\"col\">On lost contact</th><th scope=\"col\">Resume needs</th>\
             <th scope=\"col\">Owner</th></tr></thead><tbody>",
        );
        for program in &programs {
            main.push_str(&program_row(program));
        }
        main.push_str("</tbody></table></div>");
    }
    frame.page("data-refresh=\"3000\"", &main).into_response()
}

/// One row of the programs table.
fn program_row(program: &ProgramView) -> String {
    let state = &program.state;
    let mut shown = badge(state.state);
    if !state.rules.is_empty() || state.rollout.is_some() {
        shown.push_str(" <small>(with rules)</small>");
    }
    format!(
        "<tr data-program=\"{name}\"><th scope=\"row\"><a href=\"/programs/{link}\">{name}</a></th>\
         <td>{shown}</td><td data-field=\"generation\">{generation}</td><td>{changed}</td>\
         <td>{actor}</td><td>{reason}</td><td>{policy}</td><td>{approvals}</td><td>{owner}</td></tr>",
        name = esc(&program.name),
        link = url_encode(&program.name),
        generation = state.generation,
        changed = state.changed_at.map(when).unwrap_or_default(),
        actor = esc(&state.actor),
        reason = esc(&state.reason),
        policy = esc(&output::policy(&program.policy)),
        approvals = if program.resume_approvals > 1 {
            format!("{} operators", program.resume_approvals)
        } else {
            "1 operator".to_owned()
        },
        owner = esc(&program.owner),
    )
}

/// The stop-all state and its two actions (admins only), with their dialogs.
fn stop_all_section(frame: &Frame<'_>, flag: &StopAllView) -> String {
    let mut section = String::from(
        "<section aria-labelledby=\"stop-all-title\" class=\"actions\">\
         <h2 id=\"stop-all-title\">Stop-all</h2>",
    );
    if flag.active {
        let _ = write!(
            section,
            "<p id=\"stop-all-state\">In force since generation {}.{}</p>",
            flag.generation,
            flag.clear_request
                .as_ref()
                .map(|request| format!(
                    " Clearing it waits for a second admin: request <code>{}</code> by {}.",
                    esc(&request.id),
                    esc(&request.requested_by)
                ))
                .unwrap_or_default()
        );
        section.push_str(&frame.action_button("clear-stop-all", "Clear stop-all…", "admin", None));
        section.push_str(&dialog(
            "clear-stop-all",
            "/stop-all/clear",
            "Clear the stop-all",
            "Every program returns to its own state: collectors of running programs start \
             collecting again.",
            &[Field::Reason, Field::Incident, Field::ApprovalId],
            "Clear stop-all",
            frame.csrf,
        ));
    } else {
        section.push_str(
            "<p id=\"stop-all-state\">Not in force: each program follows its own state.</p>",
        );
        section.push_str(&frame.action_button("stop-all", "Stop all…", "admin", None));
        section.push_str(&dialog(
            "stop-all",
            "/stop-all",
            "Stop every program",
            "Every collector of every program pauses until an admin clears the stop-all.",
            &[Field::Reason, Field::Incident],
            "Stop all programs",
            frame.csrf,
        ));
    }
    section.push_str("</section>");
    section
}

/// `/programs/{name}`: one program, live.
pub(super) async fn program(State(console): State<Shared>, Path(name): Path<String>) -> Response {
    if let Err(message) = ProgramName::parse(&name) {
        return failure(&Error::usage(message));
    }
    let mut session = console.session.clone();
    let loaded = async {
        let identity = session.who_am_i().await?;
        let program = session.get_program(&name).await?;
        let status = session.status(&name).await?;
        let stragglers = stragglers(&mut session, &name, &status).await?;
        Ok::<_, Error>((identity, program, status, stragglers))
    }
    .await;
    let (identity, program, status, stragglers) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return failure(&err),
    };
    let frame = Frame {
        title: &program.name,
        identity: &identity,
        csrf: console.guard.csrf(),
        stop_all: status.state.stop_all.as_ref(),
    };
    let main = program_main(&frame, &program, &status, &stragglers);
    let events = format!(
        "data-events=\"/programs/{}/events\" data-program=\"{}\"",
        url_encode(&program.name),
        esc(&program.name)
    );
    frame.page(&events, &main).into_response()
}

/// The pending and errored collectors behind a status, with their replica and labels
/// (at most [`LISTED`] of each); none asked for when there are none.
pub(super) async fn stragglers(
    session: &mut Session,
    program: &str,
    status: &StatusView,
) -> Result<Vec<CollectorView>, Error> {
    let mut listed = Vec::new();
    for (count, filter) in [
        (status.collectors.pending_count, CollectorFilter::Pending),
        (status.collectors.errored_count, CollectorFilter::Errored),
    ] {
        if count > 0 {
            let CollectorListView { collectors, .. } =
                session.list_collectors(program, filter).await?;
            listed.extend(collectors.into_iter().take(LISTED));
        }
    }
    Ok(listed)
}

/// The body of a program's page.
fn program_main(
    frame: &Frame<'_>,
    program: &ProgramView,
    status: &StatusView,
    stragglers: &[CollectorView],
) -> String {
    let name = &program.name;
    let state = &status.state;
    let c = &status.collectors;
    let mut main = format!(
        "<h1>{} {}</h1>\n<p class=\"lede\">Generation <b data-field=\"generation\">{}</b>, \
         by <span data-field=\"actor\">{}</span>{}: <span data-field=\"reason\">{}</span>\
         {}</p>\n",
        esc(name),
        badge(state.state),
        state.generation,
        esc(&state.actor),
        state
            .changed_at
            .map(|at| format!(" at {}", when(at)))
            .unwrap_or_default(),
        esc(&state.reason),
        if state.incident_id.is_empty() {
            String::new()
        } else {
            format!(" (incident {})", esc(&state.incident_id))
        },
    );
    let _ = writeln!(
        main,
        "<section aria-labelledby=\"confirmations\"><h2 id=\"confirmations\">Confirmations</h2>\
         <div class=\"counts\" aria-live=\"polite\">\
         <div><span class=\"n\" data-field=\"connected\">{}</span> connected</div>\
         <div><span class=\"n\" data-field=\"acked\">{}</span> acknowledged</div>\
         <div><span class=\"n\" data-field=\"pending\">{}</span> pending</div>\
         <div><span class=\"n\" data-field=\"errored\">{}</span> errored</div>\
         <div><span class=\"n\" data-field=\"disconnected\">{}</span> disconnected</div></div>\
         <progress id=\"progress\" max=\"{}\" value=\"{}\" aria-label=\"acknowledged of connected\"></progress>\
         <figure><svg id=\"curve\" viewBox=\"0 0 600 200\" role=\"img\" aria-labelledby=\"curve-caption\">\
         </svg><figcaption id=\"curve-caption\">Acknowledged collectors against time since the \
         commit of generation <span data-field=\"curve-generation\">{}</span>, as the updates \
         arrived: <span data-field=\"curve-summary\">waiting for the first update</span>.\
         </figcaption></figure></section>",
        c.connected,
        c.acked,
        c.pending_count,
        c.errored_count,
        c.disconnected_count,
        c.connected.max(1),
        c.acked,
        state.generation,
    );
    main.push_str(&stragglers_section(
        stragglers,
        c.pending_count,
        c.errored_count,
    ));
    main.push_str(&details_section(program, status));
    main.push_str(&program_actions(frame, program));
    main
}

/// The pending and errored collectors, with replica, labels and errors.
fn stragglers_section(stragglers: &[CollectorView], pending: u64, errored: u64) -> String {
    let mut section = String::from(
        "<section aria-labelledby=\"stragglers-title\"><h2 id=\"stragglers-title\">Pending and \
         errored collectors</h2><div id=\"stragglers\">",
    );
    section.push_str(&stragglers_table(stragglers, pending, errored));
    section.push_str("</div></section>\n");
    section
}

/// The table of [`stragglers_section`] (also what the script rebuilds from each update).
pub(super) fn stragglers_table(stragglers: &[CollectorView], pending: u64, errored: u64) -> String {
    if pending == 0 && errored == 0 {
        return "<p>None: every connected collector has acknowledged.</p>".to_owned();
    }
    let mut table = format!(
        "<p>{pending} pending, {errored} errored{}.</p><div class=\"scroll\"><table>\
         <thead><tr><th scope=\"col\">Collector</th><th scope=\"col\">Replica</th>\
         <th scope=\"col\">Labels</th><th scope=\"col\">Acknowledged</th>\
         <th scope=\"col\">Error</th></tr></thead><tbody>",
        if pending + errored > stragglers.len() as u64 {
            format!(" (the first {} listed)", stragglers.len())
        } else {
            String::new()
        }
    );
    for collector in stragglers {
        let labels: Vec<String> = collector
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = write!(
            table,
            "<tr data-collector=\"{id}\"><th scope=\"row\">{id}</th><td>{}</td><td>{}</td>\
             <td>generation {}</td><td>{}</td></tr>",
            esc(&collector.replica),
            esc(&labels.join(", ")),
            collector.generation,
            esc(&collector.error),
            id = esc(&collector.collector_id),
        );
    }
    table.push_str("</tbody></table></div>");
    table
}

/// State, reason, rules, scope and rollout; the policy.
fn details_section(program: &ProgramView, status: &StatusView) -> String {
    let mut section = String::from(
        "<section aria-labelledby=\"details-title\"><h2 id=\"details-title\">State</h2>\
         <dl id=\"details\">",
    );
    for (key, lines) in output::state_fields(&status.state) {
        let _ = write!(
            section,
            "<dt>{}</dt><dd data-detail=\"{key}\">{}</dd>",
            esc(key),
            lines
                .iter()
                .map(|l| esc(l))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    let _ = write!(
        section,
        "<dt>on lost contact</dt><dd>{}</dd><dt>resume needs</dt><dd>{}</dd>",
        esc(&output::policy(&program.policy)),
        if program.resume_approvals > 1 {
            format!("{} operators", program.resume_approvals)
        } else {
            "1 operator".to_owned()
        }
    );
    if !status.pinned_labels.is_empty() {
        let _ = write!(
            section,
            "<dt>pinned labels</dt><dd>{}</dd>",
            esc(&status.pinned_labels.join(", "))
        );
    }
    section.push_str("</dl></section>\n");
    section
}

/// The program's actions, each behind a confirmation dialog; the ones the role does not
/// allow are disabled and say which role they need.
fn program_actions(frame: &Frame<'_>, program: &ProgramView) -> String {
    let name = program.name.as_str();
    let link = url_encode(name);
    let mut section = String::from(
        "<section aria-labelledby=\"actions-title\" class=\"actions\"><h2 id=\"actions-title\">\
         Actions</h2><div class=\"buttons\">",
    );
    section.push_str(&frame.action_button("pause", "Pause…", "responder", Some(name)));
    section.push_str(&frame.action_button("resume", "Resume…", "owner", Some(name)));
    if program.state.rollout.is_some() {
        section.push_str(&frame.action_button(
            "abort-rollout",
            "Abort rollout…",
            "responder",
            Some(name),
        ));
    }
    if let Some(approval) = &program.approval {
        section.push_str(&frame.action_button("approve", "Approve resume…", "owner", Some(name)));
        section.push_str(&dialog(
            "approve",
            "/approve",
            &format!("Approve the resume of {name}"),
            &format!(
                "Request {} asks to resume {name}; approving makes the change now.",
                approval.id
            ),
            &[
                Field::Hidden("id", &approval.id),
                Field::Reason,
                Field::Incident,
            ],
            "Approve and resume",
            frame.csrf,
        ));
    }
    section.push_str("</div>");
    section.push_str(&dialog(
        "pause",
        &format!("/programs/{link}/pause"),
        &format!("Pause {name}"),
        "Collectors close their gate and run their pause hook. Leave the selector empty to \
         pause every collector of the program.",
        &[Field::Reason, Field::Incident, Field::Selector],
        &format!("Pause {name}"),
        frame.csrf,
    ));
    section.push_str(&dialog(
        "resume",
        &format!("/programs/{link}/resume"),
        &format!("Resume {name}"),
        "Collectors open their gate and collect again. A program that needs two operators \
         files a request for another owner to approve.",
        &[Field::Reason, Field::Incident, Field::Selector],
        &format!("Resume {name}"),
        frame.csrf,
    ));
    if program.state.rollout.is_some() {
        section.push_str(&dialog(
            "abort-rollout",
            &format!("/programs/{link}/rollout/abort"),
            &format!("Abort the staged resume of {name}"),
            "Every collector returns to PAUSED.",
            &[Field::Reason, Field::Incident],
            "Abort rollout",
            frame.csrf,
        ));
    }
    section.push_str("</section>\n");
    section
}

/// A field of an action's dialog.
enum Field<'a> {
    /// Why (required).
    Reason,
    /// The incident id (optional).
    Incident,
    /// A label selector, checked as it is typed (optional).
    Selector,
    /// The approval request id of a stop-all clear (optional).
    ApprovalId,
    /// A fixed value.
    Hidden(&'static str, &'a str),
}

/// A confirmation dialog: what the action does, its fields and the button that makes
/// it. The script opens it, sends the form with the CSRF token and shows the answer.
fn dialog(
    id: &str,
    action: &str,
    title: &str,
    explanation: &str,
    fields: &[Field<'_>],
    confirm: &str,
    csrf: &str,
) -> String {
    let mut dialog = format!(
        "<dialog id=\"{id}\" aria-labelledby=\"{id}-title\"><form method=\"post\" \
         action=\"{action}\" data-action><h2 id=\"{id}-title\">{}</h2><p>{}</p>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(title),
        esc(explanation),
        esc(csrf),
    );
    for field in fields {
        match field {
            Field::Reason => {
                let _ = write!(
                    dialog,
                    "<label for=\"{id}-reason\">Reason (recorded in the audit)</label>\
                     <input id=\"{id}-reason\" name=\"reason\" required maxlength=\"1024\" \
                     autocomplete=\"off\">"
                );
            }
            Field::Incident => {
                let _ = write!(
                    dialog,
                    "<label for=\"{id}-incident\">Incident (optional)</label>\
                     <input id=\"{id}-incident\" name=\"incident\" autocomplete=\"off\">"
                );
            }
            Field::Selector => {
                let _ = write!(
                    dialog,
                    "<label for=\"{id}-selector\">Selector (optional; e.g. region=emea, \
                     tier in (canary))</label><input id=\"{id}-selector\" name=\"selector\" \
                     autocomplete=\"off\" spellcheck=\"false\" data-selector-check \
                     aria-describedby=\"{id}-selector-check\"><pre id=\"{id}-selector-check\" \
                     class=\"check\" aria-live=\"polite\"></pre>"
                );
            }
            Field::ApprovalId => {
                let _ = write!(
                    dialog,
                    "<label for=\"{id}-approve\">Approve request (optional: another admin's \
                     clear request id)</label><input id=\"{id}-approve\" name=\"approve\" \
                     autocomplete=\"off\">"
                );
            }
            Field::Hidden(name, value) => {
                let _ = write!(
                    dialog,
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                    esc(value)
                );
            }
        }
    }
    let _ = write!(
        dialog,
        "<p class=\"result\" role=\"alert\" id=\"{id}-result\"></p><div class=\"buttons\">\
         <button type=\"submit\" id=\"{id}-confirm\" class=\"danger\">{}</button>\
         <button type=\"button\" data-close>Cancel</button></div></form></dialog>",
        esc(confirm)
    );
    dialog
}

/// The filters of `/audit`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditFilters {
    program: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    incident: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

/// Entries the audit page shows unless told otherwise.
const AUDIT_LIMIT: u32 = 200;

/// `/audit`: the audit log, newest first, with filters.
pub(super) async fn audit(
    State(console): State<Shared>,
    Query(filters): Query<AuditFilters>,
) -> Response {
    let some = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let program = some(&filters.program);
    let actor = some(&filters.actor);
    let action = some(&filters.action);
    let incident = some(&filters.incident);
    let since_text = some(&filters.since);
    let request = async {
        if let Some(program) = &program {
            ProgramName::parse(program).map_err(Error::usage)?;
        }
        let since = since_text
            .as_deref()
            .map(|s| {
                Since::parse(s)
                    .map(|since| since.resolve(SystemTime::now()))
                    .map_err(|e| Error::usage(format!("since: {e}")))
            })
            .transpose()?;
        let limit = match some(&filters.limit) {
            None => AUDIT_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    Error::usage(format!("limit {text:?} is not a number from 1 to 10000"))
                })?,
        };
        Ok::<_, Error>(killswitch_proto::v1::ListAuditRequest {
            program: program.clone().unwrap_or_default(),
            since: since.map(killswitch_proto::timestamp),
            limit,
        })
    }
    .await;
    let mut session = console.session.clone();
    let loaded = async {
        let request = request?;
        let identity = session.who_am_i().await?;
        let stop_all = session.get_stop_all().await?.stop_all;
        let list = session.list_audit(request).await?;
        Ok::<_, Error>((identity, stop_all, list))
    }
    .await;
    let (identity, stop_all, list) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return failure(&err),
    };
    let contains = |field: &str, filter: &Option<String>| {
        filter
            .as_deref()
            .is_none_or(|f| field.to_lowercase().contains(&f.to_lowercase()))
    };
    let entries: Vec<_> = list
        .entries
        .iter()
        .rev()
        .filter(|e| {
            contains(&e.actor, &actor)
                && contains(&e.action, &action)
                && contains(&e.incident_id, &incident)
        })
        .collect();
    let frame = Frame {
        title: "Audit log",
        identity: &identity,
        csrf: console.guard.csrf(),
        stop_all: Some(&stop_all),
    };
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or_default());
    let mut main = format!(
        "<h1>Audit log</h1>\n<form method=\"get\" action=\"/audit\" class=\"filters\" \
         role=\"search\" aria-label=\"Filter the audit log\">\
         <label>Program <input name=\"program\" value=\"{}\"></label>\
         <label>Actor <input name=\"actor\" value=\"{}\"></label>\
         <label>Action <input name=\"action\" value=\"{}\" placeholder=\"pause, resume, …\"></label>\
         <label>Incident <input name=\"incident\" value=\"{}\"></label>\
         <label>Since <input name=\"since\" value=\"{}\" placeholder=\"2h or 2026-12-05T09:00:00Z\"></label>\
         <button type=\"submit\">Filter</button> <a href=\"/audit\">Clear filters</a></form>\n\
         <p><span data-field=\"entries\">{}</span> entries shown, newest first{}.</p>",
        value(&program),
        value(&actor),
        value(&action),
        value(&incident),
        value(&since_text),
        entries.len(),
        if list.omitted > 0 {
            format!(
                "; {} older ones left out (narrow the filters or raise limit=)",
                list.omitted
            )
        } else {
            String::new()
        }
    );
    main.push_str(
        "<div class=\"scroll\"><table id=\"audit\"><thead><tr><th scope=\"col\">#</th>\
         <th scope=\"col\">When</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th>\
         <th scope=\"col\">Program</th><th scope=\"col\">Change</th>\
         <th scope=\"col\">Generation</th><th scope=\"col\">Reason</th>\
         <th scope=\"col\">Incident</th><th scope=\"col\">Detail</th></tr></thead><tbody>",
    );
    for entry in entries {
        let incident = if entry.incident_id.is_empty() {
            String::new()
        } else {
            format!(
                "<a href=\"/report?incident={}\">{}</a>",
                url_encode(&entry.incident_id),
                esc(&entry.incident_id)
            )
        };
        let _ = write!(
            main,
            "<tr data-seq=\"{}\"><td>{}</td><td>{}</td><td data-field=\"actor\">{}</td>\
             <td data-field=\"action\">{}</td><td><a href=\"/programs/{}\">{}</a></td>\
             <td>{} → {}</td><td>{}</td><td>{}</td><td>{incident}</td><td>{}</td></tr>",
            entry.seq,
            entry.seq,
            entry.at.map(when).unwrap_or_default(),
            esc(&entry.actor),
            esc(&entry.action),
            url_encode(&entry.program),
            esc(&entry.program),
            entry.from,
            entry.to,
            entry.generation,
            esc(&entry.reason),
            esc(&entry.detail),
        );
    }
    main.push_str("</tbody></table></div>");
    frame.page("", &main).into_response()
}

/// The query of `/report`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ReportParams {
    incident: Option<String>,
    program: Option<String>,
    download: Option<String>,
}

/// `/report`: the incident report `killswitch report --format html` writes, for an
/// incident or a program; a form to choose one without either.
pub(super) async fn report(
    State(console): State<Shared>,
    Query(params): Query<ReportParams>,
) -> Response {
    let incident = params.incident.filter(|i| !i.trim().is_empty());
    let program = params.program.filter(|p| !p.trim().is_empty());
    let mut session = console.session.clone();
    if incident.is_none() && program.is_none() {
        let loaded = async {
            let identity = session.who_am_i().await?;
            let stop_all = session.get_stop_all().await?.stop_all;
            Ok::<_, Error>((identity, stop_all))
        }
        .await;
        let (identity, stop_all) = match loaded {
            Ok(loaded) => loaded,
            Err(err) => return failure(&err),
        };
        return report_form(&console, &identity, &stop_all).into_response();
    }
    if let Some(program) = &program {
        if let Err(message) = ProgramName::parse(program) {
            return failure(&Error::usage(message));
        }
    }
    let query = ReportQuery {
        incident,
        program,
        since: None,
        until: None,
    };
    let built = crate::commands::gather_report(&mut session, &query, SystemTime::now()).await;
    let page = built.and_then(|report| output::report_html(&report));
    let page = match page {
        Ok(page) => page,
        Err(err) => return failure(&err),
    };
    let download = params.download.is_some();
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    // The report page is self-contained: its own inline style, no script to run.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    if download {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"killswitch-report.html\""),
        );
    }
    response
}

/// The form of `/report` without a query.
fn report_form(console: &Shared, identity: &IdentityView, stop_all: &StopAllView) -> Html<String> {
    let frame = Frame {
        title: "Reports",
        identity,
        csrf: console.guard.csrf(),
        stop_all: Some(stop_all),
    };
    frame.page(
        "",
        "<h1>Incident report</h1><p>Who paused, who confirmed and how fast, with the signed \
         evidence: the page <code>killswitch report --format html</code> writes. Save it \
         with the download link (or <kbd>Ctrl</kbd>+<kbd>S</kbd>) and check it offline with \
         <code>killswitch report verify FILE --ca CA.pem</code>.</p>\
         <form method=\"get\" action=\"/report\" class=\"filters\">\
         <label>Incident <input name=\"incident\" autocomplete=\"off\"></label>\
         <label>Program <input name=\"program\" autocomplete=\"off\"></label>\
         <button type=\"submit\">Show the report</button>\
         <button type=\"submit\" name=\"download\" value=\"1\">Download it</button></form>",
    )
}

/// Any other path.
pub(super) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        html::message_page("Not found", "There is no such page in the console."),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures;

    fn identity(role: &str) -> IdentityView {
        IdentityView {
            name: "bob".into(),
            role: role.into(),
            programs: Vec::new(),
            signing_required: false,
            insecure_dev: false,
        }
    }

    fn frame(identity: &IdentityView) -> Frame<'_> {
        Frame {
            title: "demo",
            identity,
            csrf: "token",
            stop_all: None,
        }
    }

    /// What the control plane or a collector says reaches the page as text, never as
    /// markup.
    #[test]
    fn hostile_text_is_escaped() {
        let hostile = "<script>alert(1)</script>\"'&";
        let mut program = fixtures::demo();
        program.state.reason = hostile.into();
        program.state.actor = hostile.into();
        let mut status = fixtures::status_view();
        status.state.reason = hostile.into();
        status.state.actor = hostile.into();
        let mut straggler = fixtures::collector_list().collectors.remove(0);
        straggler.labels.insert("team".into(), hostile.into());
        straggler.error = hostile.into();
        let bob = identity("responder");
        let frame = frame(&bob);
        let page = program_main(&frame, &program, &status, &[straggler]);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        let row = program_row(&program);
        assert!(!row.contains("<script>"), "{row}");
    }

    #[test]
    fn the_program_page_counts_and_gates_actions() {
        let status = fixtures::status_view();
        let c = &status.collectors;
        let bob = identity("responder");
        let frame = frame(&bob);
        let page = program_main(&frame, &fixtures::demo(), &status, &[]);
        for (field, value) in [
            ("connected", c.connected),
            ("acked", c.acked),
            ("pending", c.pending_count),
            ("errored", c.errored_count),
        ] {
            assert!(
                page.contains(&format!("data-field=\"{field}\">{value}<")),
                "{field}: {page}"
            );
        }
        assert!(
            page.contains("id=\"pause-button\" data-dialog=\"pause\""),
            "{page}"
        );
        assert!(
            page.contains("needs role owner (you are responder)"),
            "{page}"
        );
        assert!(page.contains("name=\"csrf\" value=\"token\""), "{page}");
        // More stragglers than listed: the page says how many it shows.
        let table = stragglers_table(&[], 3, 1);
        assert!(
            table.contains("3 pending, 1 errored (the first 0 listed)"),
            "{table}"
        );
        assert!(stragglers_table(&[], 0, 0).starts_with("<p>None"));
    }

    #[test]
    fn stop_all_actions_are_for_admins() {
        let flag = fixtures::flag();
        for (role, enabled) in [("owner", false), ("admin", true)] {
            let who = identity(role);
            let frame = Frame {
                title: "Programs",
                identity: &who,
                csrf: "token",
                stop_all: Some(&flag),
            };
            let section = stop_all_section(&frame, &flag);
            assert_eq!(!section.contains("disabled"), enabled, "{role}: {section}");
            assert!(section.contains("clear-stop-all-button"), "{section}");
        }
    }
}
