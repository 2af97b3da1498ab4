//! `/programs/{name}/events`: the program's status as server-sent events, fed by one
//! `WatchStatus` call per open page. Each `status` event's data is
//!
//! ```json
//! {"status": {...}, "elapsed_ms": 812.5, "stragglers_html": "<p>..."}
//! ```
//!
//! where `status` is exactly what `killswitch status --output json` prints,
//! `elapsed_ms` the time since the state's commit when the console received it (the
//! console's clock against the control plane's commit time, as `--wait` measures), and
//! `stragglers_html` the pending and errored collectors' table. A `failure` event carries
//! the error text when the stream cannot start or breaks; the browser then reconnects.

use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use super::pages::{stragglers, stragglers_table};
use crate::client::Session;
use crate::exit::{Error, Exit};
use crate::view::{CollectorView, StatusView};

/// The pending and errored collectors are asked for at most this often while a change
/// is in progress (a `ListCollectors` goes to every replica).
const STRAGGLERS_EVERY: Duration = Duration::from_secs(1);

/// One `status` event.
#[derive(Serialize)]
struct Update<'a> {
    status: &'a StatusView,
    elapsed_ms: Option<f64>,
    stragglers_html: String,
}

/// The event stream of one program's page.
pub(super) async fn stream(
    State(console): State<Shared>,
    Path(name): Path<String>,
) -> impl IntoResponse {
    let (events, receiver) = mpsc::channel(16);
    tokio::spawn(feed(console.session.clone(), name, events));
    Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default())
}

/// Follows `WatchStatus` for `program` into `events` until the page goes away or the
/// stream ends.
async fn feed(
    mut session: Session,
    program: String,
    events: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut statuses = match session.watch_status(&program).await {
        Ok(statuses) => statuses,
        Err(err) => {
            let _ = events.send(Ok(failure(&err).event)).await;
            return;
        }
    };
    let mut listed = Listed::default();
    loop {
        let next = tokio::select! {
            () = events.closed() => return,
            next = statuses.next() => next,
        };
        let event = match next {
            Ok(Some(status)) => match listed.refresh(&mut session, &program, &status).await {
                Ok(()) => update(&status, &listed.collectors),
                Err(err) => failure(&err),
            },
            Ok(None) => failure(&Error::new(
                Exit::Error,
                "the control plane ended the status stream",
            )),
            Err(err) => failure(&err),
        };
        if events.send(Ok(event.event)).await.is_err() || event.ends {
            return;
        }
    }
}

/// An event, and whether the stream ends after it (a failure).
struct Built {
    event: Event,
    ends: bool,
}

/// The pending and errored collectors last listed.
#[derive(Default)]
struct Listed {
    generation: u64,
    at: Option<Instant>,
    collectors: Vec<CollectorView>,
}

impl Listed {
    /// Lists them again for a new generation, or when the last list is older than
    /// [`STRAGGLERS_EVERY`]; in between, drops the ones no longer pending or errored.
    async fn refresh(
        &mut self,
        session: &mut Session,
        program: &str,
        status: &StatusView,
    ) -> Result<(), Error> {
        let c = &status.collectors;
        if c.pending_count == 0 && c.errored_count == 0 {
            self.collectors.clear();
            return Ok(());
        }
        let stale = self.generation != status.state.generation
            || self.at.is_none_or(|at| at.elapsed() >= STRAGGLERS_EVERY);
        if stale {
            self.collectors = stragglers(session, program, status).await?;
            self.generation = status.state.generation;
            self.at = Some(Instant::now());
        } else {
            self.collectors.retain(|collector| {
                c.pending.contains(&collector.collector_id)
                    || c.errored.contains(&collector.collector_id)
            });
        }
        Ok(())
    }
}

/// A `status` event.
fn update(status: &StatusView, stragglers: &[CollectorView]) -> Built {
    let elapsed_ms = status
        .state
        .changed_at
        .and_then(|at| SystemTime::now().duration_since(at.system_time()).ok())
        .map(|d| d.as_secs_f64() * 1000.0);
    let c = &status.collectors;
    let update = Update {
        status,
        elapsed_ms,
        stragglers_html: stragglers_table(stragglers, c.pending_count, c.errored_count),
    };
    match serde_json::to_string(&update) {
        Ok(json) => Built {
            event: Event::default().event("status").data(json),
            ends: false,
        },
        Err(err) => failure(&Error::new(
            Exit::Error,
            format!("cannot encode the status: {err}"),
        )),
    }
}

/// A `failure` event with the error's text.
fn failure(err: &Error) -> Built {
    Built {
        event: Event::default().event("failure").data(err.message()),
        ends: true,
    }
}
