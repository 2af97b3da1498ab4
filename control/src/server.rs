//! Builds a control replica from its [`Config`] and runs it until shutdown: [`serve`] is
//! [`Replica::build`] then [`Replica::run`]. How the replica secures its listener and
//! reaches etcd is [`crate::security`]'s; a TLS replica serves TLS through
//! [`crate::tls`], which also reloads its credentials.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use killswitch_proto::v1::admin_service_server::AdminServiceServer;
use killswitch_proto::v1::collector_service_server::CollectorServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::admin::Admin;
use crate::api::session::{MAX_MESSAGE_BYTES, SessionConfig, Sessions};
use crate::metrics::replica_state::ReplicaState;
use crate::metrics::{AdminMetrics, Metrics, serve_metrics};
use crate::replica::acks::AckBook;
use crate::replica::cache::{MAX_PROBE_INTERVAL, StateCache, WatchTiming, run_watcher};
use crate::replica::publish::{PublishConfig, run_publisher};
use crate::security::{EtcdAccess, Security, SecurityError, check_loopback};
use crate::store::{Store, StoreError};
use crate::tls::{Acceptor, Credentials};

/// Default of [`Config::receipt_retention`]: 90 days.
pub const DEFAULT_RECEIPT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// A replica's configuration. [`Config::new`] fills in the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// etcd endpoints, e.g. `http://127.0.0.1:2379`.
    pub etcd_endpoints: Vec<String>,
    /// Key prefix in etcd. Default `/killswitch/v1`.
    pub prefix: String,
    /// This replica's name, reported in status. Must be unique among replicas.
    pub replica_id: String,
    /// Where peer replicas reach this one's admin API, e.g. `http://10.0.0.5:7070`.
    pub advertise: String,
    /// The lease bounding this replica's keys in etcd: how long its collectors are still
    /// counted after it dies. Default 10 s.
    pub lease_ttl: Duration,
    /// After a change, how often the publisher looks whether every collector here has
    /// acknowledged it, to publish the summary then. Default 5 ms.
    pub ack_debounce: Duration,
    /// How long an etcd request may take, retries on UNAVAILABLE included, before it
    /// fails. Default 3 s.
    pub etcd_timeout: Duration,
    /// How often the watcher compares its whole cache with a fresh listing, to catch an
    /// event the watch missed. Default 30 s.
    pub reconcile_interval: Duration,
    /// Session timing.
    pub session: SessionConfig,
    /// How long shutdown waits for collectors to leave after Drain. Default 5 s.
    pub shutdown_grace: Duration,
    /// How long collectors' receipts are kept in etcd. Default 90 days.
    pub receipt_retention: Duration,
    /// TLS and who may call what, or `--insecure-dev`. Default [`Security::InsecureDev`],
    /// which [`serve`] refuses on anything but a loopback address.
    pub security: Security,
    /// How to authenticate to etcd. Default: plain text, no user.
    pub etcd: EtcdAccess,
    /// Where to serve Prometheus metrics (plain HTTP `GET /metrics`, see
    /// [`crate::metrics`]). Default: nowhere.
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// A configuration with defaults for everything but the etcd endpoints, the replica
    /// id and the address peers reach it at.
    #[must_use]
    pub fn new(
        etcd_endpoints: Vec<String>,
        replica_id: impl Into<String>,
        advertise: impl Into<String>,
    ) -> Self {
        Self {
            etcd_endpoints,
            prefix: "/killswitch/v1".to_owned(),
            replica_id: replica_id.into(),
            advertise: advertise.into(),
            lease_ttl: Duration::from_secs(10),
            ack_debounce: Duration::from_millis(5),
            etcd_timeout: Duration::from_secs(3),
            reconcile_interval: Duration::from_secs(30),
            session: SessionConfig::default(),
            shutdown_grace: Duration::from_secs(5),
            receipt_retention: DEFAULT_RECEIPT_RETENTION,
            security: Security::InsecureDev,
            etcd: EtcdAccess::default(),
            metrics_listen: None,
        }
    }

    /// How the etcd watch paces its checks: its progress probes follow the heartbeat
    /// interval, at most [`MAX_PROBE_INTERVAL`] apart, so a replica that heartbeats
    /// rarely still notices a stalled etcd as soon.
    #[must_use]
    pub fn watch_timing(&self) -> WatchTiming {
        WatchTiming {
            probe_interval: self.session.heartbeat_interval.min(MAX_PROBE_INTERVAL),
            reconcile_interval: self.reconcile_interval,
        }
    }

    /// Secures the listener with `security`.
    #[must_use]
    pub fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Reaches etcd with `etcd`.
    #[must_use]
    pub fn etcd_access(mut self, etcd: EtcdAccess) -> Self {
        self.etcd = etcd;
        self
    }

    /// Uses another etcd key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Serves Prometheus metrics on `addr`.
    #[must_use]
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.metrics_listen = Some(addr);
        self
    }

    /// Heartbeats at another interval.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.session.heartbeat_interval = interval;
        self
    }
}

/// Why a replica could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The etcd client could not be set up.
    #[error("cannot set up the etcd client: {0}")]
    Etcd(#[from] StoreError),
    /// The security settings are unusable.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The listener's address cannot be read.
    #[error("cannot read the listening address: {0}")]
    Listener(#[source] std::io::Error),
    /// The metrics listener cannot be opened.
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsListen {
        /// `--metrics-listen`.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not read the compiled protobuf descriptors (a build
    /// problem, not a configuration one).
    #[error("cannot set up gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The services whose `grpc.health.v1` status follows the etcd watch: the whole server
/// (`""`) and each Killswitch service.
const HEALTH_CHECKED: [&str; 3] = [
    "",
    <CollectorServiceServer<Sessions> as NamedService>::NAME,
    <AdminServiceServer<Admin> as NamedService>::NAME,
];

/// Reports SERVING on `grpc.health.v1` while the etcd watch is healthy, NOT_SERVING
/// otherwise, and NOT_SERVING from the moment the replica starts draining, so load
/// balancers send new connections elsewhere. Ends when `stop` fires or the cache is gone.
async fn report_health(
    reporter: HealthReporter,
    mut healthy: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        let serving = *healthy.borrow_and_update();
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in HEALTH_CHECKED {
            reporter.set_service_status(service, status).await;
        }
        tokio::select! {
            changed = healthy.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = stop.cancelled() => break,
        }
    }
    for service in HEALTH_CHECKED {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}

/// Serves the collector and admin APIs on `listener` until `shutdown` completes, then
/// drains: [`Replica::build`] then [`Replica::run`].
///
/// Refuses [`Security::InsecureDev`] unless `listener` is on a loopback address.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener.local_addr().map_err(ServerError::Listener)?;
    Replica::build(config, local)
        .await?
        .run(listener, shutdown)
        .await
}

/// A replica built from its [`Config`], with its etcd client, cache, acknowledgement book,
/// services and background tasks' inputs, ready to [`run`](Replica::run).
pub struct Replica {
    config: Config,
    server: tonic::transport::Server,
    /// The TLS configuration in force; `None` under `--insecure-dev`.
    acceptor: Option<Acceptor>,
    credentials: Option<Arc<Credentials>>,
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    metrics: Arc<Metrics>,
    store: Store,
    cache: Arc<StateCache>,
    book: Arc<AckBook>,
    sessions: Sessions,
    admin: Admin,
    stop: CancellationToken,
}

impl Replica {
    /// Checks the security settings against the address it will listen on (`local`),
    /// opens the metrics listener (so a taken port fails the start) and connects to etcd.
    ///
    /// # Errors
    ///
    /// [`Security::InsecureDev`] off loopback, unusable TLS material, a metrics port
    /// that cannot be bound, an etcd client that cannot be set up.
    pub async fn build(config: Config, local: SocketAddr) -> Result<Self, ServerError> {
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(crate::api::session::MAX_STREAMS_PER_CONNECTION);
        if let Security::InsecureDev = &config.security {
            check_loopback(local)?;
            tracing::warn!(%local, "--insecure-dev: plain text, no authentication");
        }
        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::MetricsListen { addr, source })?;
                let addr = listener
                    .local_addr()
                    .map_err(|source| ServerError::MetricsListen { addr, source })?;
                Some((listener, addr))
            }
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let auth = Arc::new(config.security.auth().with_metrics(metrics.clone()));
        let options = config.etcd.connect_options(config.etcd_timeout);
        let client = etcd_client::Client::connect(&config.etcd_endpoints, Some(options))
            .await
            .map_err(StoreError::from)?;
        let store = Store::from_client(client, &config.prefix).with_budget(config.etcd_timeout);
        let cache = Arc::new(StateCache::new());
        let book = Arc::new(AckBook::with_metrics(metrics.clone()));
        let stop = CancellationToken::new();
        let sessions = Sessions::new(
            cache.clone(),
            book.clone(),
            config.session.clone(),
            stop.clone(),
            auth.clone(),
        )
        .with_metrics(metrics.clone());
        let mut admin = Admin::new(
            store.clone(),
            book.clone(),
            cache.clone(),
            config.replica_id.clone(),
            stop.clone(),
            auth.clone(),
        );
        let (acceptor, credentials) = match &config.security {
            Security::InsecureDev => (None, None),
            Security::Tls(tls) => {
                let acceptor = Acceptor::new(tls.server_config());
                let credentials = Arc::new(Credentials::new(
                    tls,
                    acceptor.clone(),
                    auth,
                    metrics.clone(),
                ));
                admin = admin.with_reloader(credentials.clone());
                (Some(acceptor), Some(credentials))
            }
        };
        Ok(Self {
            config,
            server,
            acceptor,
            credentials,
            metrics_listener,
            metrics,
            store,
            cache,
            book,
            sessions,
            admin,
            stop,
        })
    }

    /// What reloads a TLS replica's credentials (SIGHUP in `main`); `None` under
    /// `--insecure-dev`.
    #[must_use]
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.credentials.clone()
    }

    /// Serves on `listener` until `shutdown` completes, then drains: stops accepting,
    /// sends Drain to every collector and waits up to [`Config::shutdown_grace`] for them
    /// to leave.
    ///
    /// The same listener serves the standard `grpc.health.v1.Health` service (SERVING only
    /// while the etcd watch is healthy; `""` and each Killswitch service) and gRPC server
    /// reflection (`grpc.reflection.v1` and `v1alpha`), both without credentials, as load
    /// balancers and `grpcurl` expect: they reveal nothing but the replica's health and its
    /// public API's schema. Every Killswitch RPC authorizes its caller itself.
    ///
    /// With [`Config::metrics_listen`], Prometheus metrics are served there (see
    /// [`crate::metrics`]) until the drain is over.
    ///
    /// # Errors
    ///
    /// The reflection service cannot be built, or the gRPC server fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(killswitch_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let Self {
            config,
            server,
            acceptor,
            credentials: _,
            metrics_listener,
            metrics,
            store,
            cache,
            book,
            sessions,
            admin,
            stop,
        } = self;

        // Starts NOT_SERVING: the watch is not healthy until it has listed the state.
        let (reporter, health) = tonic_health::server::health_reporter();
        for service in HEALTH_CHECKED {
            reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        let mut tasks = vec![(
            tokio::spawn(report_health(reporter, cache.health(), stop.clone())),
            "health reporter",
        )];
        tasks.extend(spawn_loops(&config, &store, &cache, &book, &stop));
        // Serves through the drain, so the sessions gauge shows collectors leaving; stops
        // when this function returns or its future is dropped.
        let metrics_stop = CancellationToken::new();
        let _metrics_stop = metrics_stop.clone().drop_guard();
        if let Some((listener, addr)) = metrics_listener {
            tracing::info!(%addr, "serving Prometheus metrics on http://{addr}/metrics");
            let registry = metrics.registry(ReplicaState::new(cache.clone(), sessions.clone()));
            tasks.push((
                tokio::spawn(serve_metrics(listener, registry, metrics_stop.clone())),
                "metrics server",
            ));
        }

        let drain = stop.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: draining collectors");
            drain.cancel();
        };
        // Requests are small (see MAX_MESSAGE_BYTES); admin responses (audit lists) may not be.
        let collectors = CollectorServiceServer::new(sessions)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let admin = AdminMetrics::new(
            AdminServiceServer::new(admin).max_decoding_message_size(MAX_MESSAGE_BYTES),
            metrics,
        );
        let router = server
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .add_service(collectors)
            .add_service(admin)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let mut server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
            match acceptor {
                Some(acceptor) => {
                    let incoming = crate::tls::incoming(listener, acceptor, stop.clone());
                    Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
                }
                // As the TLS acceptor does: an Update or an Ack is one small write, never
                // worth holding back for the peer's acknowledgement of the previous one.
                None => Box::pin(router.serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    signal,
                )),
            };

        let result = tokio::select! {
            result = &mut server => result,
            () = stop.cancelled() => {
                match tokio::time::timeout(config.shutdown_grace, &mut server).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(grace = ?config.shutdown_grace, "collectors still connected after the grace period; closing");
                        Ok(())
                    }
                }
            }
        };
        stop.cancel();
        metrics_stop.cancel();
        for (task, name) in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "{name} task failed");
            }
        }
        Ok(result?)
    }
}

/// A background task and its name, for the log if it fails.
type Task = (tokio::task::JoinHandle<()>, &'static str);

/// Starts the replica's loops: the etcd watcher that keeps the cache current, the
/// publisher of this replica's registration and summaries, and the staged-resume driver.
fn spawn_loops(
    config: &Config,
    store: &Store,
    cache: &Arc<StateCache>,
    book: &Arc<AckBook>,
    stop: &CancellationToken,
) -> [Task; 3] {
    let timing = config.watch_timing();
    let publish = PublishConfig {
        replica_id: config.replica_id.clone(),
        advertise: config.advertise.clone(),
        lease_ttl: config.lease_ttl,
        debounce: config.ack_debounce,
        progress_interval: Duration::from_secs(1),
        receipt_retention: config.receipt_retention,
    };
    [
        (
            tokio::spawn(run_watcher(
                store.clone(),
                cache.clone(),
                timing,
                stop.child_token(),
            )),
            "etcd watcher",
        ),
        (
            tokio::spawn(run_publisher(
                store.clone(),
                book.clone(),
                cache.clone(),
                publish,
                stop.child_token(),
            )),
            "publisher",
        ),
        (
            tokio::spawn(crate::replica::rollout::run_driver(
                store.clone(),
                cache.clone(),
                config.replica_id.clone(),
                config.lease_ttl,
                stop.child_token(),
            )),
            "rollout driver",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::{Config, MAX_PROBE_INTERVAL};
    use std::time::Duration;

    #[test]
    fn heartbeats_every_10_s_and_probes_etcd_at_most_5_s_apart() {
        let config = Config::new(vec![], "r1", "http://127.0.0.1:7070");
        assert_eq!(config.session.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(config.watch_timing().probe_interval, MAX_PROBE_INTERVAL);
        assert_eq!(MAX_PROBE_INTERVAL, Duration::from_secs(5));
        let fast = config.heartbeat_interval(Duration::from_millis(200));
        assert_eq!(
            fast.watch_timing().probe_interval,
            Duration::from_millis(200)
        );
    }
}
