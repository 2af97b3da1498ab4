//! Prometheus metrics of a replica, and the plain-HTTP endpoint that serves them.
//!
//! [`Metrics`] holds what is counted as it happens: acknowledgements and their
//! commit-to-ack time, heartbeats, authentication and authorization failures, admin
//! calls. What describes the replica's state (open sessions, the etcd watch's health,
//! revision and silence, reconcile differences) is read from the sessions and the state
//! cache at scrape time by [`replica_state::ReplicaState`], so it cannot drift from them.
//! [`Metrics::registry`] gathers both; [`serve_metrics`] answers `GET /metrics` with them
//! in the Prometheus text format (version 0.0.4). [`AdminMetrics`] wraps the admin
//! service: it counts and times every call by method and gRPC status, and runs it in an
//! `admin` span. `docs/metrics.md` lists the metrics with suggested alerts.
//!
//! **Layer:** the counters here are a leaf that every layer may bump; they import
//! nothing of the crate. [`replica_state`] reads the replica and the gRPC edge, so it sits
//! with the server.
//!
//! One [`Metrics`] is created per replica in [`crate::serve`] and shared through an
//! `Arc`; there are no global registries. Labels take values from fixed sets (RPC
//! names, gRPC codes, failure reasons), with one bounded exception: refused
//! acknowledgements name the collector that sent them, for at most
//! [`REFUSED_ACK_COLLECTORS`] distinct collectors (the rest are counted under
//! `collector="_other"`), so a caller cannot grow the number of series without bound.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tracing::Instrument;

pub mod replica_state;

/// Upper bounds of `killswitch_commit_to_ack_seconds`, in seconds: a pause should be
/// acknowledged within a second; the tail shows collectors that were away.
const COMMIT_TO_ACK_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Upper bounds of `killswitch_admin_call_duration_seconds`, in seconds.
const ADMIN_DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The `AdminService` methods, the only values of the `method` label besides `unknown`
/// (a path no method has). A unit test checks this list against `admin.proto`.
pub const ADMIN_METHODS: [&str; 22] = [
    "CreateProgram",
    "GetProgram",
    "ListPrograms",
    "SetPolicy",
    "Pause",
    "Resume",
    "Approve",
    "GetApproval",
    "Status",
    "WatchStatus",
    "ListCollectors",
    "ListAudit",
    "ListReceipts",
    "VerifyAudit",
    "AbortRollout",
    "StopAll",
    "ClearStopAll",
    "GetStopAll",
    "StartDrill",
    "EndDrill",
    "Reload",
    "WhoAmI",
];

/// What an acknowledgement reported, as `killswitch_acks_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckResult {
    /// The hooks succeeded.
    Ok,
    /// The hooks succeeded and the pause hook confirmed deleting buffered data.
    Purged,
    /// A hook failed (the collector still applied the state: pause always wins).
    Error,
    /// No error, but the gate is not in the state sent (PAUSED for lost contact).
    Diverged,
}

impl AckResult {
    /// The label value: `ok`, `purged`, `error` or `diverged`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AckResult::Ok => "ok",
            AckResult::Purged => "purged",
            AckResult::Error => "error",
            AckResult::Diverged => "diverged",
        }
    }
}

/// Most distinct collector ids `killswitch_refused_acks_total` names; acknowledgements
/// refused from further collectors are counted under `collector="_other"`.
pub const REFUSED_ACK_COLLECTORS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
    collector: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn admin_duration_histogram() -> Histogram {
    Histogram::new(ADMIN_DURATION_BUCKETS)
}

/// The replica's event counters and histograms. Cheap to update: each is an atomic or a
/// short lock. A `Metrics` that no registry shows (e.g. [`Metrics::default`] in a unit
/// test) simply counts unseen.
#[derive(Debug, Clone)]
pub struct Metrics {
    acks: Family<ResultLabel, Counter>,
    commit_to_ack: Histogram,
    heartbeats: Counter,
    auth_failures: Family<ReasonLabel, Counter>,
    admin_calls: Family<CallLabels, Counter>,
    admin_call_duration: HistogramFamily<MethodLabel>,
    refused_acks: Family<RefusedLabels, Counter>,
    reloads: Family<ResultLabel, Counter>,
    /// The collector ids `refused_acks` names so far, at most [`REFUSED_ACK_COLLECTORS`].
    refused_collectors: Arc<Mutex<HashSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            acks: Family::default(),
            commit_to_ack: Histogram::new(COMMIT_TO_ACK_BUCKETS),
            heartbeats: Counter::default(),
            auth_failures: Family::default(),
            admin_calls: Family::default(),
            admin_call_duration: Family::new_with_constructor(admin_duration_histogram),
            refused_acks: Family::default(),
            reloads: Family::default(),
            refused_collectors: Arc::default(),
        }
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts an acknowledgement received from a collector.
    pub fn ack(&self, result: AckResult) {
        self.acks
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    /// Records the time from a state's commit to a collector's acknowledgement of it.
    pub fn commit_to_ack(&self, latency: Duration) {
        self.commit_to_ack.observe(latency.as_secs_f64());
    }

    /// Counts an acknowledgement refused because it does not match what the session sent
    /// (`reason` is [`crate::api::session::AckRefusal::reason`]), under the collector's id.
    pub fn refused_ack(&self, reason: &'static str, collector: &str) {
        let collector = {
            let mut named = self
                .refused_collectors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if named.contains(collector) {
                collector.to_owned()
            } else if named.len() < REFUSED_ACK_COLLECTORS {
                named.insert(collector.to_owned());
                collector.to_owned()
            } else {
                "_other".to_owned()
            }
        };
        self.refused_acks
            .get_or_create(&RefusedLabels { reason, collector })
            .inc();
    }

    /// Counts a heartbeat sent to a collector.
    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    /// Counts a caller refused by authentication or authorization, by `reason` (a fixed
    /// name per kind of refusal, such as `unknown_token`).
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a reload of the replica's credentials (SIGHUP or `AdminService.Reload`):
    /// `ok` when the new ones were put in force, `error` when they were refused.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    fn admin_call(&self, method: &'static str, code: Code, elapsed: Duration) {
        self.admin_calls
            .get_or_create(&CallLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.admin_call_duration
            .get_or_create(&MethodLabel { method })
            .observe(elapsed.as_secs_f64());
    }

    /// A registry showing these metrics and, read at each scrape, `state`.
    #[must_use]
    pub fn registry(&self, state: impl Collector + 'static) -> Registry {
        let mut registry = Registry::default();
        self.register(&mut registry);
        registry.register_collector(Box::new(state));
        registry
    }

    /// The counters and histograms alone, in the exposition format.
    #[cfg(test)]
    pub(crate) fn encode_events(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        {
            panic!("cannot encode: {error}");
        }
        text
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "killswitch_acks",
            "Acknowledgements recorded from collectors, by what they report: ok, purged (ok, and buffered data deleted), error (a hook failed) or diverged (no error, but the gate is not in the state sent, e.g. paused for lost contact)",
            self.acks.clone(),
        );
        registry.register_with_unit(
            "killswitch_commit_to_ack",
            "Time from a state's commit in etcd (its changed_at) to the moment the collector applied it (the Ack's applied_at), for the first Ack of the program's current generation from each collector session; the same values killswitch status summarizes",
            Unit::Seconds,
            self.commit_to_ack.clone(),
        );
        registry.register(
            "killswitch_refused_acks",
            "Acknowledgements refused because they do not match a state the session sent (reason: unknown-program, never-sent, future, wrong-effective), by collector id (at most 100 ids, then _other); none of them counts in status",
            self.refused_acks.clone(),
        );
        registry.register(
            "killswitch_heartbeats",
            "Heartbeats sent to collectors; only sent while the etcd watch is healthy",
            self.heartbeats.clone(),
        );
        registry.register(
            "killswitch_auth_failures",
            "Callers refused by authentication or authorization, by reason",
            self.auth_failures.clone(),
        );
        registry.register(
            "killswitch_reloads",
            "Reloads of the TLS certificate, key, client CA and auth file (SIGHUP or AdminService.Reload), by result: ok (in force) or error (refused; the previous credentials stay in force)",
            self.reloads.clone(),
        );
        registry.register(
            "killswitch_admin_calls",
            "Completed AdminService calls, by method and gRPC status code",
            self.admin_calls.clone(),
        );
        registry.register_with_unit(
            "killswitch_admin_call_duration",
            "Duration of AdminService calls, by method (for WatchStatus, the stream's lifetime)",
            Unit::Seconds,
            self.admin_call_duration.clone(),
        );
    }
}

/// The gRPC code's name as gRPC's own libraries spell it (`OK`, `NotFound`,
/// `Canceled`, ...), so dashboards written for them work.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The label value for a request path: the `AdminService` method, or `unknown`.
fn admin_method(service: &str, path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|path| path.strip_prefix(service))
        .and_then(|path| path.strip_prefix('/'))
        .and_then(|method| ADMIN_METHODS.iter().find(|known| **known == method))
        .copied()
        .unwrap_or("unknown")
}

/// The `grpc-status` in `headers` (response headers of a trailers-only response, or
/// trailers), if any.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// Wraps the `AdminService` server: counts every call in `killswitch_admin_calls_total`
/// by method and gRPC status and times it, and runs the handler (and, for streams, the
/// production of each message) inside an `admin` span with fields `method` and
/// `operator` (empty; the handler records the authenticated operator's name in it).
///
/// The status of a failed call is in the response headers (a trailers-only response);
/// that of a successful one is in the trailers, so the call is counted when the body
/// ends. A call whose response or body is dropped before its status was known (the
/// client went away) counts as `Canceled`.
#[derive(Debug, Clone)]
pub struct AdminMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> AdminMetrics<S> {
    /// Measures `inner` into `metrics`.
    #[must_use]
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<S: NamedService> NamedService for AdminMetrics<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for AdminMetrics<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>, Error = Infallible>
        + NamedService,
    S::Future: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = admin_method(S::NAME, request.uri().path());
        let span = tracing::info_span!("admin", method, operator = tracing::field::Empty);
        let call = Call {
            metrics: self.metrics.clone(),
            method,
            started: Instant::now(),
            code: None,
        };
        let response = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let Ok(response) = response.await;
            let (parts, body) = response.into_parts();
            if let Some(code) = grpc_status(&parts.headers) {
                call.finish(code);
                return Ok(Response::from_parts(parts, body));
            }
            let body = MeteredBody {
                inner: body,
                call: Some(call),
                span,
            };
            Ok(Response::from_parts(parts, tonic::body::Body::new(body)))
        })
    }
}

/// One admin call being measured; counted when dropped.
struct Call {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    code: Option<Code>,
}

impl Call {
    /// Counts the call as ended with `code`.
    fn finish(mut self, code: Code) {
        self.code = Some(code);
        drop(self);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        self.metrics
            .admin_call(self.method, code, self.started.elapsed());
    }
}

/// A successful response's body: counts the call when its trailers (with the status)
/// go by, or when it ends or is dropped without them.
struct MeteredBody {
    inner: tonic::body::Body,
    call: Option<Call>,
    span: tracing::Span,
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        // A stream's messages are produced as the body is polled: in the call's span too.
        let _entered = this.span.enter();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let code = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) => grpc_status(trailers).unwrap_or(Code::Unknown),
                None => return polled,
            },
            Poll::Ready(Some(Err(status))) => status.code(),
            Poll::Ready(None) => Code::Unknown,
        };
        if let Some(call) = this.call.take() {
            call.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Most scrapes served at once; further connections wait in the listen backlog.
const MAX_SCRAPES: usize = 16;
/// How long a scraper may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `registry` on `listener` as `GET /metrics` in the Prometheus text format,
/// plain HTTP/1.1, one request per connection; anything else gets 404. Ends when `stop`
/// fires, closing the connections still open.
pub async fn serve_metrics(listener: TcpListener, registry: Registry, stop: CancellationToken) {
    let registry = Arc::new(registry);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false);
    // Dropped when this function returns, which aborts the connections still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < MAX_SCRAPES => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // E.g. out of file descriptors: give the replica a moment.
                        tracing::warn!(%error, "cannot accept a metrics connection");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                };
                let registry = registry.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(&request, &registry);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = http.serve_connection(TokioIo::new(stream), service);
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "metrics connection failed");
                    }
                });
            }
        }
    }
}

/// The answer to one HTTP request.
fn respond<B>(request: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try GET /metrics\n".into(),
        );
    }
    let mut body = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
        Ok(()) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n".into(),
            )
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::{Auth, AuthError};
    use crate::api::session::SessionConfig;
    use crate::api::session::Sessions;
    use crate::metrics::replica_state::ReplicaState;
    use crate::replica::acks::AckBook;
    use crate::replica::cache::StateCache;

    fn registry(metrics: &Metrics, cache: Arc<StateCache>) -> Registry {
        let sessions = Sessions::new(
            cache.clone(),
            Arc::new(AckBook::new()),
            SessionConfig::default(),
            CancellationToken::new(),
            Arc::new(Auth::insecure_dev()),
        );
        metrics.registry(ReplicaState::new(cache, sessions))
    }

    fn exposition(registry: &Registry) -> String {
        let request = Request::get("/metrics").body(()).expect("a valid request");
        let response = respond(&request, registry);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static(
                "text/plain; version=0.0.4; charset=utf-8"
            ))
        );
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, registry).expect("encodes");
        text
    }

    /// The value of the sample `series` (name and labels, exactly as exposed).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    /// Every metric has HELP and TYPE lines and every sample line is `name{labels} value`
    /// with a known name: the text a Prometheus server parses.
    #[test]
    fn the_exposition_is_well_formed_and_complete() {
        let metrics = Metrics::new();
        let cache = Arc::new(StateCache::new());
        metrics.ack(AckResult::Ok);
        metrics.ack(AckResult::Ok);
        metrics.ack(AckResult::Error);
        metrics.commit_to_ack(Duration::from_millis(30));
        metrics.heartbeat();
        metrics.auth_failure(AuthError::UnknownToken.reason());
        metrics.admin_call("Pause", Code::Ok, Duration::from_millis(3));
        metrics.admin_call("GetProgram", Code::NotFound, Duration::from_millis(1));
        let text = exposition(&registry(&metrics, cache));

        let mut described = Vec::new();
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.is_empty(), "{line}");
                described.push(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.push(name.to_owned());
            } else {
                let (series, value) = line.rsplit_once(' ').expect("series value");
                value
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("bad value: {line}"));
                let name = series.split('{').next().expect("a name");
                assert!(
                    described.iter().any(|d| name == d
                        || name.strip_suffix("_bucket") == Some(d)
                        || name.strip_suffix("_sum") == Some(d)
                        || name.strip_suffix("_count") == Some(d)),
                    "sample without HELP: {line}"
                );
            }
        }
        assert_eq!(described, typed);
        for name in [
            "killswitch_acks_total",
            "killswitch_commit_to_ack_seconds",
            "killswitch_heartbeats_total",
            "killswitch_auth_failures_total",
            "killswitch_admin_calls_total",
            "killswitch_admin_call_duration_seconds",
            "killswitch_sessions",
            "killswitch_etcd_watch_healthy",
            "killswitch_etcd_watch_revision",
            "killswitch_etcd_watch_lag_seconds",
            "killswitch_reconcile_differences_total",
        ] {
            assert!(
                described.iter().any(|d| d == name),
                "{name} missing:\n{text}"
            );
        }

        for (series, value) in [
            ("killswitch_acks_total{result=\"ok\"}", 2.0),
            ("killswitch_acks_total{result=\"error\"}", 1.0),
            ("killswitch_commit_to_ack_seconds_count", 1.0),
            ("killswitch_commit_to_ack_seconds_bucket{le=\"0.025\"}", 0.0),
            ("killswitch_commit_to_ack_seconds_bucket{le=\"0.05\"}", 1.0),
            ("killswitch_heartbeats_total", 1.0),
            (
                "killswitch_auth_failures_total{reason=\"unknown_token\"}",
                1.0,
            ),
            (
                "killswitch_admin_calls_total{method=\"Pause\",code=\"OK\"}",
                1.0,
            ),
            (
                "killswitch_admin_calls_total{method=\"GetProgram\",code=\"NotFound\"}",
                1.0,
            ),
            ("killswitch_sessions", 0.0),
            ("killswitch_etcd_watch_healthy", 0.0),
            ("killswitch_reconcile_differences_total", 0.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series}:\n{text}");
        }
        let lag = sample(&text, "killswitch_etcd_watch_lag_seconds").expect("lag");
        assert!((0.0..60.0).contains(&lag), "{lag}");
    }

    #[test]
    fn anything_but_get_metrics_is_not_found() {
        let registry = registry(&Metrics::new(), Arc::new(StateCache::new()));
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/metrics/"),
            (Method::GET, "/metricsx"),
            (Method::POST, "/metrics"),
            (Method::DELETE, "/metrics"),
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(())
                .expect("a valid request");
            assert_eq!(
                respond(&request, &registry).status(),
                StatusCode::NOT_FOUND,
                "{method} {path}"
            );
        }
        let request = Request::get("/metrics?x=1").body(()).expect("valid");
        assert_eq!(respond(&request, &registry).status(), StatusCode::OK);
    }

    #[test]
    fn method_labels_come_from_a_fixed_set() {
        let service = "killswitch.v1.AdminService";
        for (path, method) in [
            ("/killswitch.v1.AdminService/Pause", "Pause"),
            ("/killswitch.v1.AdminService/WatchStatus", "WatchStatus"),
            ("/killswitch.v1.AdminService/Pause2", "unknown"),
            ("/killswitch.v1.AdminService/", "unknown"),
            ("/killswitch.v1.AdminServiceX/Pause", "unknown"),
            ("/other.Service/Pause", "unknown"),
            ("", "unknown"),
        ] {
            assert_eq!(admin_method(service, path), method, "{path:?}");
        }
    }

    /// [`ADMIN_METHODS`] is `admin.proto`'s list of methods.
    #[test]
    fn admin_methods_match_the_proto() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(killswitch_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let service = set
            .file
            .iter()
            .filter(|file| file.package() == "killswitch.v1")
            .flat_map(|file| &file.service)
            .find(|service| service.name() == "AdminService")
            .expect("AdminService in the descriptors");
        let mut declared: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        let mut listed = ADMIN_METHODS.to_vec();
        declared.sort_unstable();
        listed.sort_unstable();
        assert_eq!(declared, listed);
    }

    #[test]
    fn code_names_are_grpc_names() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::NotFound), "NotFound");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(grpc_status(&headers), Some(Code::NotFound));
        headers.insert("grpc-status", HeaderValue::from_static("garbage"));
        assert_eq!(grpc_status(&headers), Some(Code::Unknown));
    }
}
