//! Wires a control replica together and serves it until shutdown; its configuration,
//! including how it secures its listener ([`Security`]) and reaches etcd ([`EtcdAccess`]).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use killswitch_proto::v1::admin_service_server::AdminServiceServer;
use killswitch_proto::v1::collector_service_server::CollectorServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use x509_parser::pem::Pem;

use crate::api::admin::Admin;
use crate::api::auth::{Auth, AuthConfig, AuthFileError};
use crate::api::session::{MAX_MESSAGE_BYTES, SessionConfig, Sessions};
use crate::metrics::replica_state::ReplicaState;
use crate::metrics::{AdminMetrics, Metrics, serve_metrics};
use crate::replica::acks::AckBook;
use crate::replica::cache::{StateCache, WatchTiming, run_watcher};
use crate::replica::publish::{PublishConfig, run_publisher};
use crate::store::{Store, StoreError};

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Wait after an acknowledgement before publishing the summary. Default 100 ms.
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
            ack_debounce: Duration::from_millis(100),
            etcd_timeout: Duration::from_secs(3),
            reconcile_interval: Duration::from_secs(30),
            session: SessionConfig::default(),
            shutdown_grace: Duration::from_secs(5),
            security: Security::InsecureDev,
            etcd: EtcdAccess::default(),
            metrics_listen: None,
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

/// How a replica secures its listener and knows its callers.
#[derive(Debug, Clone, Default)]
pub enum Security {
    /// `--insecure-dev`: plain text and no authentication. Every caller is an admin named
    /// by its `killswitch-actor` metadata and collectors are whoever their Hello says.
    /// Only allowed on a loopback address.
    #[default]
    InsecureDev,
    /// TLS on the listener; callers authenticate with a client certificate or a bearer
    /// token and are authorized by role (see [`crate::api::auth`]).
    Tls(Box<TlsSettings>),
}

impl Security {
    /// `--insecure-dev` on `listen`, which must be a loopback address.
    pub fn insecure_dev(listen: SocketAddr) -> Result<Self, SecurityError> {
        check_loopback(listen)?;
        Ok(Security::InsecureDev)
    }

    /// The URL scheme clients use: `http` or `https`.
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        match self {
            Security::InsecureDev => "http",
            Security::Tls(_) => "https",
        }
    }

    /// The authentication and authorization the services apply.
    fn auth(&self) -> Auth {
        match self {
            Security::InsecureDev => Auth::insecure_dev(),
            Security::Tls(tls) => {
                // Peers present this replica's certificate and verify each other's server
                // certificates against the client CA (`killswitch certs init` issues both).
                let peer = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.client_ca_pem))
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
                Auth::tls(tls.auth.clone(), tls.leaf_der.clone(), peer)
            }
        }
    }
}

fn check_loopback(addr: SocketAddr) -> Result<(), SecurityError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(SecurityError::NotLoopback(addr))
    }
}

/// A TLS replica's certificate, key, client CA and operators, checked.
#[derive(Clone)]
pub struct TlsSettings {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Vec<u8>,
    leaf_der: Vec<u8>,
    auth: AuthConfig,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("trust_domain", &self.auth.trust_domain)
            .field("operators", &self.auth.operators.len())
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Checks PEM contents: `cert_pem` is the certificate chain this replica presents
    /// (leaf first), `key_pem` its private key, `client_ca_pem` the CA that issues client
    /// certificates (also trusted for peer replicas' server certificates), and `auth` the
    /// trust domain and operators.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        client_ca_pem: Vec<u8>,
        auth: AuthConfig,
    ) -> Result<Self, SecurityError> {
        let leaf_der =
            first_pem(&cert_pem, |label| label == "CERTIFICATE").ok_or(SecurityError::NoPem {
                flag: "--tls-cert",
                what: "CERTIFICATE",
            })?;
        first_pem(&client_ca_pem, |label| label == "CERTIFICATE").ok_or(SecurityError::NoPem {
            flag: "--client-ca",
            what: "CERTIFICATE",
        })?;
        first_pem(&key_pem, |label| label.ends_with("PRIVATE KEY")).ok_or(
            SecurityError::NoPem {
                flag: "--tls-key",
                what: "PRIVATE KEY",
            },
        )?;
        let settings = Self {
            cert_pem,
            key_pem,
            client_ca_pem,
            leaf_der,
            auth,
        };
        // Builds the TLS acceptor once now, so that e.g. a key that is not the
        // certificate's fails at startup rather than after the replica says it listens.
        tonic::transport::Server::builder()
            .tls_config(settings.server_config())
            .map_err(SecurityError::Tls)?;
        Ok(settings)
    }

    fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.client_ca_pem))
            // Operators may come with a bearer token instead of a certificate; a caller
            // with neither is refused per call, with a message saying how to authenticate.
            .client_auth_optional(true)
            .timeout(TLS_HANDSHAKE_TIMEOUT)
    }
}

/// The contents of the first PEM block in `pem` whose label `wanted` accepts.
fn first_pem(pem: &[u8], wanted: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    Pem::iter_from_buffer(pem)
        .map_while(Result::ok)
        .find(|block| wanted(&block.label))
        .map(|block| block.contents)
}

/// The TLS files, as the flags name them; [`TlsFiles::load`] requires all four.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// `--tls-cert`: PEM certificate chain the replica presents.
    pub cert: Option<PathBuf>,
    /// `--tls-key`: its PEM private key.
    pub key: Option<PathBuf>,
    /// `--client-ca`: PEM CA certificate that issues client certificates.
    pub client_ca: Option<PathBuf>,
    /// `--auth-file`: the trust domain and operators (`auth.toml`).
    pub auth_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads and checks every file; names the flags that are missing.
    pub fn load(&self) -> Result<TlsSettings, SecurityError> {
        let named = [
            ("--tls-cert", &self.cert),
            ("--tls-key", &self.key),
            ("--client-ca", &self.client_ca),
            ("--auth-file", &self.auth_file),
        ];
        let missing: Vec<&str> = named
            .iter()
            .filter(|(_, path)| path.is_none())
            .map(|(flag, _)| *flag)
            .collect();
        let [Some(cert), Some(key), Some(client_ca), Some(auth_file)] =
            named.map(|(_, path)| path.as_deref())
        else {
            return Err(SecurityError::MissingTls(missing.join(", ")));
        };
        TlsSettings::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
            read("--client-ca", client_ca)?,
            AuthConfig::load(auth_file)?,
        )
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// How a replica authenticates to etcd. Default: plain text, no user.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// PEM CA of etcd's server certificates; with it, etcd endpoints must be `https://`.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key for etcd's client certificate authentication.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// etcd user and password.
    pub user: Option<(String, String)>,
}

impl fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl EtcdAccess {
    fn connect_options(&self, timeout: Duration) -> etcd_client::ConnectOptions {
        // As `Store::connect`, plus credentials.
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_require_leader(true);
        if let Some(ca) = &self.ca_pem {
            let mut tls = etcd_client::TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        if let Some((user, password)) = &self.user {
            options = options.with_user(user, password);
        }
        options
    }
}

/// The etcd credential flags; [`EtcdFiles::load`] reads the files.
#[derive(Clone, Default)]
pub struct EtcdFiles {
    /// `--etcd-ca`: PEM CA of etcd's server certificates.
    pub ca: Option<PathBuf>,
    /// `--etcd-cert`: PEM client certificate (needs `--etcd-key` and `--etcd-ca`).
    pub cert: Option<PathBuf>,
    /// `--etcd-key`: its PEM private key.
    pub key: Option<PathBuf>,
    /// `--etcd-user` (needs `--etcd-password`).
    pub user: Option<String>,
    /// `--etcd-password` (`KILLSWITCH_ETCD_PASSWORD`).
    pub password: Option<String>,
}

impl fmt::Debug for EtcdFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdFiles")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl EtcdFiles {
    /// Reads the files and checks that the flags that go together came together.
    pub fn load(&self) -> Result<EtcdAccess, SecurityError> {
        let pair = |a: &'static str, b: &'static str| SecurityError::Together(a, b);
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((read("--etcd-cert", cert)?, read("--etcd-key", key)?)),
            (None, None) => None,
            _ => return Err(pair("--etcd-cert", "--etcd-key")),
        };
        if identity.is_some() && self.ca.is_none() {
            return Err(pair("--etcd-cert", "--etcd-ca"));
        }
        let user = match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => return Err(pair("--etcd-user", "--etcd-password")),
        };
        let ca_pem = self
            .ca
            .as_deref()
            .map(|ca| read("--etcd-ca", ca))
            .transpose()?;
        Ok(EtcdAccess {
            ca_pem,
            identity,
            user,
        })
    }
}

/// Why the security settings are unusable. Each message names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// TLS is the default and some of its flags are missing.
    #[error(
        "missing {0}: a replica serves TLS unless --insecure-dev is given (plain text without authentication, on a loopback address only)"
    )]
    MissingTls(String),
    /// `--insecure-dev` on an address others can reach.
    #[error(
        "--insecure-dev serves plain text and trusts every caller, so it only listens on a loopback address, and {0} is not one: use --tls-cert, --tls-key, --client-ca and --auth-file instead"
    )]
    NotLoopback(SocketAddr),
    /// A file cannot be read.
    #[error("cannot read {flag} {}: {source}", path.display())]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds nothing of the expected kind.
    #[error("{flag} holds no PEM {what} block")]
    NoPem {
        /// The flag naming the file.
        flag: &'static str,
        /// The PEM label expected.
        what: &'static str,
    },
    /// The auth file is unusable.
    #[error("--auth-file: {0}")]
    AuthFile(#[from] AuthFileError),
    /// A flag came without the one it needs.
    #[error("{0} needs {1}")]
    Together(&'static str, &'static str),
    /// The certificate, key and client CA cannot be used together.
    #[error("cannot use --tls-cert, --tls-key and --client-ca: {}", error_chain(.0))]
    Tls(#[source] tonic::transport::Error),
}

/// `error: cause: cause`, for errors whose `Display` leaves out their source.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
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
    /// The TLS certificate or key was refused.
    #[error("cannot use --tls-cert, --tls-key and --client-ca: {}", error_chain(.0))]
    Tls(#[source] tonic::transport::Error),
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
/// drains: stops accepting, sends Drain to every collector and waits up to
/// [`Config::shutdown_grace`] for them to leave.
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
/// Refuses [`Security::InsecureDev`] unless `listener` is on a loopback address.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener.local_addr().map_err(ServerError::Listener)?;
    let mut server = tonic::transport::Server::builder()
        .max_concurrent_streams(crate::api::session::MAX_STREAMS_PER_CONNECTION);
    match &config.security {
        Security::InsecureDev => {
            check_loopback(local)?;
            tracing::warn!(%local, "--insecure-dev: plain text, no authentication");
        }
        Security::Tls(tls) => {
            server = server
                .tls_config(tls.server_config())
                .map_err(ServerError::Tls)?;
        }
    }
    // Opened first, so that a taken port fails the start rather than going unnoticed.
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

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(killswitch_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    // Starts NOT_SERVING: the watch is not healthy until it has listed the state.
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in HEALTH_CHECKED {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    let health_task = tokio::spawn(report_health(reporter, cache.health(), stop.clone()));

    let timing = WatchTiming {
        probe_interval: config.session.heartbeat_interval,
        reconcile_interval: config.reconcile_interval,
    };
    let watcher = tokio::spawn(run_watcher(
        store.clone(),
        cache.clone(),
        timing,
        stop.child_token(),
    ));
    let publish = PublishConfig {
        replica_id: config.replica_id.clone(),
        advertise: config.advertise.clone(),
        lease_ttl: config.lease_ttl,
        debounce: config.ack_debounce,
        progress_interval: Duration::from_secs(1),
    };
    let publisher = tokio::spawn(run_publisher(
        store.clone(),
        book.clone(),
        cache.clone(),
        publish,
        stop.child_token(),
    ));
    let driver = tokio::spawn(crate::replica::rollout::run_driver(
        store.clone(),
        cache.clone(),
        config.replica_id.clone(),
        config.lease_ttl,
        stop.child_token(),
    ));
    let sessions = Sessions::new(
        cache.clone(),
        book.clone(),
        config.session.clone(),
        stop.clone(),
        auth.clone(),
    )
    .with_metrics(metrics.clone());
    // Serves through the drain, so the sessions gauge shows collectors leaving; stops
    // when this function returns or its future is dropped.
    let metrics_stop = CancellationToken::new();
    let _metrics_stop = metrics_stop.clone().drop_guard();
    let metrics_task = metrics_listener.map(|(listener, addr)| {
        tracing::info!(%addr, "serving Prometheus metrics on http://{addr}/metrics");
        let registry = metrics.registry(ReplicaState::new(cache.clone(), sessions.clone()));
        tokio::spawn(serve_metrics(listener, registry, metrics_stop.clone()))
    });
    let admin = Admin::new(
        store,
        book,
        cache,
        config.replica_id.clone(),
        stop.clone(),
        auth,
    );

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
    let server = server
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(collectors)
        .add_service(admin)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    tokio::pin!(server);

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
    let tasks = [
        (Some(watcher), "etcd watcher"),
        (Some(publisher), "publisher"),
        (Some(driver), "rollout driver"),
        (Some(health_task), "health reporter"),
        (metrics_task, "metrics server"),
    ];
    for (task, name) in tasks
        .into_iter()
        .filter_map(|(task, name)| Some((task?, name)))
    {
        if let Err(error) = task.await {
            tracing::error!(%error, "{name} task failed");
        }
    }
    Ok(result?)
}
