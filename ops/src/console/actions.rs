//! The changes the console makes, each a form POST carrying this start's CSRF token
//! (checked by [`super::guard::Guard::check_change`] before anything else), answered
//! with JSON: `{"ok": true, "message": "..."}`, or `{"ok": false, "error": "..."}` with
//! the control plane's own words and 400 (bad input), 403 (refused: role, CSRF) or 502
//! (any other error of the control plane). The control plane decides: the console checks
//! the input, never the role.
//!
//! Form fields: `csrf`, `reason` (required), `incident`, `selector` (pause and resume),
//! `id` (approve), `approve` (clear a stop-all as the second admin).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use killswitch_proto::selector::Selector;
use killswitch_proto::v1;
use serde::{Deserialize, Serialize};

use super::{Shared, http_status};
use crate::commands::{approval_signature, resume_authorization, with_pointer};
use crate::exit::Error;
use crate::input::{ProgramName, Reason, SelectorArg};
use crate::keys::StatementScope;
use crate::view::{ChangeView, StopAllResultView};

/// How long a resume request made on the page waits for approval (the CLI's default).
const RESUME_REQUEST_TTL: Duration = Duration::from_secs(15 * 60);

/// The fields of every action's form; each action reads the ones it needs.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    csrf: Option<String>,
    reason: Option<String>,
    incident: Option<String>,
    selector: Option<String>,
    id: Option<String>,
    approve: Option<String>,
}

impl ActionForm {
    /// The reason, required.
    fn reason(&self) -> Result<String, Error> {
        Reason::parse(self.reason.as_deref().unwrap_or_default())
            .map(Reason::into_string)
            .map_err(Error::usage)
    }

    /// The incident id; empty when none.
    fn incident(&self) -> String {
        self.incident
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// The selector; `None` (every collector) when blank.
    fn selector(&self) -> Result<Option<SelectorArg>, Error> {
        match self.selector.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => SelectorArg::parse(text).map(Some).map_err(Error::usage),
        }
    }
}

/// The JSON answer.
#[derive(Debug, Serialize)]
struct Answer {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// 200 with `message`, or the error's status with its text.
fn answer(result: Result<String, Error>) -> Response {
    match result {
        Ok(message) => Json(Answer {
            ok: true,
            message: Some(message),
            error: None,
        })
        .into_response(),
        Err(err) => refused(http_status(&err), err.message().to_owned()),
    }
}

/// An error answer.
fn refused(status: StatusCode, error: String) -> Response {
    (
        status,
        Json(Answer {
            ok: false,
            message: None,
            error: Some(error),
        }),
    )
        .into_response()
}

/// The form, once the request has passed the CSRF check; otherwise the status and error
/// to answer.
fn accept(
    console: &Shared,
    headers: &HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<ActionForm, (StatusCode, String)> {
    // A body that is not a form still gets the CSRF verdict first, from the header.
    let form = form.map(|Form(form)| form);
    let token = form.as_ref().ok().and_then(|f| f.csrf.as_deref());
    console
        .guard
        .check_change(headers, token)
        .map_err(|error| (StatusCode::FORBIDDEN, error))?;
    form.map_err(|rejection| {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "the request is not a form the console understands: {rejection} (send \
                 application/x-www-form-urlencoded fields)"
            ),
        )
    })
}

/// Runs `action` with the form once the request passed the CSRF check, and answers with
/// its message or error.
async fn act<F, Fut>(
    console: Shared,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
    action: F,
) -> Response
where
    F: FnOnce(Shared, ActionForm) -> Fut,
    Fut: Future<Output = Result<String, Error>>,
{
    match accept(&console, &headers, form) {
        Ok(form) => answer(action(console, form).await),
        Err((status, error)) => refused(status, error),
    }
}

/// `POST /programs/{name}/pause`: `reason`, `incident`, `selector`.
pub(super) async fn pause(
    State(console): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(console, headers, form, |console, form| async move {
        let program = ProgramName::parse(&name).map_err(Error::usage)?;
        let selector = form.selector()?;
        let request = v1::PauseRequest {
            program: program.as_str().to_owned(),
            reason: form.reason()?,
            incident_id: form.incident(),
            purge: false,
            selector: selector
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
        };
        let change = console
            .session
            .clone()
            .pause(request)
            .await
            .map_err(|err| with_pointer(err, selector.as_ref()))?;
        Ok(describe("Paused", &change))
    })
    .await
}

/// `POST /programs/{name}/resume`: `reason`, `incident`, `selector`; signed with the
/// console's `--signing-key` when it has one.
pub(super) async fn resume(
    State(console): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(console, headers, form, |console, form| async move {
        let program = ProgramName::parse(&name).map_err(Error::usage)?;
        let selector = form.selector()?;
        let reason = form.reason()?;
        let mut session = console.session.clone();
        let authorization = match &console.signing_key {
            None => None,
            Some(path) => {
                let scope = StatementScope {
                    selector: canonical(selector.as_ref())?,
                    stages_percent: Vec::new(),
                    stage_interval_ms: 0,
                };
                Some(
                    resume_authorization(
                        &mut session,
                        path,
                        program.as_str(),
                        &scope,
                        RESUME_REQUEST_TTL,
                    )
                    .await?,
                )
            }
        };
        let request = v1::ResumeRequest {
            program: program.as_str().to_owned(),
            reason,
            incident_id: form.incident(),
            ttl_ms: u64::try_from(RESUME_REQUEST_TTL.as_millis()).unwrap_or(u64::MAX),
            authorization,
            selector: selector
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            stages_percent: Vec::new(),
            stage_interval_ms: 0,
        };
        let change = session
            .resume(request)
            .await
            .map_err(|err| with_pointer(err, selector.as_ref()))?;
        Ok(describe("Resumed", &change))
    })
    .await
}

/// The canonical form of a selector (what a signed statement names); empty for none.
fn canonical(selector: Option<&SelectorArg>) -> Result<String, Error> {
    selector.map_or(Ok(String::new()), |selector| {
        Selector::parse(selector.as_str())
            .map(|parsed| parsed.to_string())
            .map_err(|error| Error::usage(format!("{error}\n{}", error.pointer(selector.as_str()))))
    })
}

/// `POST /approve`: `id`, `reason`, `incident`; signed with the console's
/// `--signing-key` when it has one.
pub(super) async fn approve(
    State(console): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(console, headers, form, |console, form| async move {
        let id = crate::input::parse_request_id(form.id.as_deref().unwrap_or_default().trim())
            .map_err(Error::usage)?;
        let reason = form.reason()?;
        let mut session = console.session.clone();
        let signature = match &console.signing_key {
            None => None,
            Some(path) => approval_signature(&mut session, path, &id).await?,
        };
        let change = session
            .approve(v1::ApproveRequest {
                request_id: id,
                reason,
                incident_id: form.incident(),
                signature,
            })
            .await?;
        Ok(describe("Approved", &change))
    })
    .await
}

/// `POST /programs/{name}/rollout/abort`: `reason`, `incident`.
pub(super) async fn abort_rollout(
    State(console): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(console, headers, form, |console, form| async move {
        let program = ProgramName::parse(&name).map_err(Error::usage)?;
        let change = console
            .session
            .clone()
            .abort_rollout(v1::AbortRolloutRequest {
                program: program.as_str().to_owned(),
                reason: form.reason()?,
                incident_id: form.incident(),
            })
            .await?;
        Ok(describe("Aborted the staged resume of", &change))
    })
    .await
}

/// `POST /stop-all`: `reason`, `incident`.
pub(super) async fn stop_all(
    State(console): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(console, headers, form, |console, form| async move {
        let result = console
            .session
            .clone()
            .stop_all(v1::StopAllRequest {
                reason: form.reason()?,
                incident_id: form.incident(),
            })
            .await?;
        Ok(describe_stop_all(&result))
    })
    .await
}

/// `POST /stop-all/clear`: `reason`, `incident`, `approve` (a clear request's id, as
/// the second admin).
pub(super) async fn clear_stop_all(
    State(console): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    act(console, headers, form, |console, form| async move {
        let result = console
            .session
            .clone()
            .clear_stop_all(v1::ClearStopAllRequest {
                reason: form.reason()?,
                incident_id: form.incident(),
                approve: form
                    .approve
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })
            .await?;
        Ok(describe_stop_all(&result))
    })
    .await
}

/// What a change did, in one sentence: `Paused demo: generation 7.`
fn describe(done: &str, change: &ChangeView) -> String {
    let state = &change.state;
    if let Some(approval) = &change.approval {
        return format!(
            "Nothing changed yet: {} needs a second operator. Approval request {} is waiting \
             for another owner{}.",
            state.program,
            approval.id,
            approval
                .expires_at
                .map(|at| format!(" until {at}"))
                .unwrap_or_default()
        );
    }
    if change.changed {
        format!("{done} {}: generation {}.", state.program, state.generation)
    } else {
        format!(
            "Nothing changed: {} was already in that state (generation {}).",
            state.program, state.generation
        )
    }
}

/// What a stop-all or its clear did.
fn describe_stop_all(result: &StopAllResultView) -> String {
    if let Some(id) = &result.approval_request_id {
        return format!(
            "Nothing changed yet: clearing the stop-all needs a second admin. Approval request \
             {id} is waiting for them."
        );
    }
    let flag = &result.stop_all;
    match (flag.active, result.changed) {
        (true, true) => format!(
            "STOP-ALL in force: every program is paused for every collector (generation {}).",
            flag.generation
        ),
        (false, true) => "Stop-all cleared: each program follows its own state again.".to_owned(),
        (true, false) => "Nothing changed: the stop-all was already in force.".to_owned(),
        (false, false) => "Nothing changed: no stop-all was in force.".to_owned(),
    }
}

/// The query of `/api/selector`.
#[derive(Debug, Deserialize)]
pub(super) struct SelectorQuery {
    selector: Option<String>,
}

/// The verdict of `/api/selector`.
#[derive(Debug, Serialize)]
pub(super) struct SelectorVerdict {
    ok: bool,
    /// What the selector means, or what is wrong with it (the CLI's message).
    message: String,
    /// The selector with a caret under the column the message names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<String>,
}

/// `GET /api/selector?selector=TEXT`: the selector checked with the CLI's parser, as the
/// pause and resume dialogs check it while it is typed. Changes nothing.
pub(super) async fn check_selector(Query(query): Query<SelectorQuery>) -> Json<SelectorVerdict> {
    let text = query.selector.unwrap_or_default();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Json(SelectorVerdict {
            ok: true,
            message: "no selector: every collector of the program".to_owned(),
            pointer: None,
        });
    }
    if let Err(message) = SelectorArg::parse(trimmed) {
        return Json(SelectorVerdict {
            ok: false,
            message,
            pointer: None,
        });
    }
    Json(match Selector::parse(trimmed) {
        Ok(selector) => SelectorVerdict {
            ok: true,
            message: format!("valid: collectors whose labels match {selector}"),
            pointer: None,
        },
        Err(error) => SelectorVerdict {
            ok: false,
            message: error.to_string(),
            pointer: Some(error.pointer(trimmed)),
        },
    })
}
