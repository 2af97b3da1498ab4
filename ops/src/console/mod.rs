//! `killswitch console`: the web console, served by the CLI on the responder's machine.
//!
//! It is a client of the control plane like every other command: one [`Session`] with
//! the operator's own credentials, so it adds no way in. Every page is rendered on the
//! server from the same views the CLI prints ([`crate::view`]); a small script
//! (`assets/console.js`, embedded in the binary) follows `WatchStatus` through
//! server-sent events, draws the confirmation curve, checks selectors as they are typed
//! and sends the actions. Nothing is fetched from the network but the console itself.
//!
//! # Layout
//! - `mod.rs`: [`serve`]: the listener, this start's tokens, the routes.
//! - `guard.rs`: who may use the console: the user check of `peer.rs`, the Host check
//!   against DNS rebinding, the
//!   access token of a non-loopback console, the CSRF token of every change, and the
//!   security headers of every response.
//! - `pages.rs`: the HTML pages (programs, one program, audit log, report).
//! - `actions.rs`: the changes (pause, resume, approve, rollout abort, stop-all, clear)
//!   and the selector check.
//! - `events.rs`: the live status of one program as server-sent events.
//! - `html.rs`: escaping and the page frame shared by every page.
//! - `peer.rs`: which user opened a loopback connection (Linux's socket table).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::cli::ConsoleArgs;
use crate::client::Session;
use crate::exit::{Error, Exit};
use crate::sink::Sink;

mod actions;
mod events;
mod guard;
mod html;
mod pages;
mod peer;

use guard::Guard;

/// What every request handler shares.
#[derive(Debug)]
struct Console {
    /// The connection to the control plane; cloned per request (a cheap handle).
    session: Session,
    /// The access token and CSRF token of this start, and the hosts accepted.
    guard: Guard,
    /// Signs resumes and approvals made on the page (`--signing-key`).
    signing_key: Option<PathBuf>,
}

/// Shared state of the handlers.
type Shared = Arc<Console>;

/// Serves the console on `args.listen` until Ctrl-C (or SIGTERM), printing its URL first.
pub async fn serve(
    mut session: Session,
    args: ConsoleArgs,
    out: &mut Sink<'_>,
) -> Result<(), Error> {
    let loopback = args.listen.ip().is_loopback();
    if !loopback && !args.allow_remote {
        return Err(Error::usage(format!(
            "--listen {} is not a loopback address: the console acts with your credentials, \
             so serving it to other machines needs --allow-remote (it then requires the \
             access token it prints at start); use 127.0.0.1 to keep it on this machine",
            args.listen
        )));
    }
    if let Some(path) = &args.signing_key {
        // Refuse a broken key now rather than at the first resume.
        crate::keys::SigningKey::load(path)?;
    }
    // Who we are, checked before serving: credentials the control plane refuses fail here.
    let identity = session.who_am_i().await?;
    let listener = TcpListener::bind(args.listen).await.map_err(|err| {
        Error::new(
            Exit::Error,
            format!(
                "cannot listen on {}: {err} (is another console or program using it? choose \
                 another with --listen)",
                args.listen
            ),
        )
    })?;
    let bound = listener.local_addr().map_err(|err| {
        Error::new(
            Exit::Error,
            format!("cannot read the console's address: {err}"),
        )
    })?;
    let guard = Guard::new(bound, loopback)?;
    let url = guard.start_url(bound);
    let console = Arc::new(Console {
        session,
        guard,
        signing_key: args.signing_key,
    });
    out.write(&format!(
        "killswitch console for {} ({}) at {url}\n",
        identity.name, identity.role
    ))?;
    // Not a graceful shutdown: open pages hold their event streams forever, so waiting
    // for every connection to end would never finish. A change in flight when Ctrl-C
    // comes is either committed by the control plane or not; the audit says which.
    tokio::select! {
        served = axum::serve(
            listener,
            router(console).into_make_service_with_connect_info::<SocketAddr>(),
        ) => served
            .map_err(|err| Error::new(Exit::Error, format!("the console stopped: {err}"))),
        () = shutdown() => Ok(()),
    }
}

/// The routes, behind the guard.
fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(pages::programs))
        .route("/programs/{name}", get(pages::program))
        .route("/programs/{name}/events", get(events::stream))
        .route("/programs/{name}/pause", post(actions::pause))
        .route("/programs/{name}/resume", post(actions::resume))
        .route(
            "/programs/{name}/rollout/abort",
            post(actions::abort_rollout),
        )
        .route("/approve", post(actions::approve))
        .route("/stop-all", post(actions::stop_all))
        .route("/stop-all/clear", post(actions::clear_stop_all))
        .route("/audit", get(pages::audit))
        .route("/report", get(pages::report))
        .route("/api/selector", get(actions::check_selector))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/console.js", get(script))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            guard::check,
        ))
        .with_state(console)
}

/// `assets/console.css`.
async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/console.css"),
    )
}

/// `assets/console.js`.
async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/console.js"),
    )
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The address a browser should open for `bound`: a wildcard address is served on every
/// interface, so name loopback for it.
fn browsable(bound: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
    } else {
        bound
    }
}

/// The HTTP status for a failed command: 400 for bad input, 403 for a refusal of the
/// operator's role, 502 for anything else the control plane answered (or its absence).
fn http_status(err: &Error) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match err.exit() {
        Exit::Usage => StatusCode::BAD_REQUEST,
        Exit::Denied => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// A page saying what failed, in the control plane's own words.
fn failure(err: &Error) -> axum::response::Response {
    (
        http_status(err),
        html::message_page("The control plane refused", err.message()),
    )
        .into_response()
}
