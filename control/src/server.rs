//! Wires a control replica together and serves it until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use killswitch_proto::v1::admin_service_server::AdminServiceServer;
use killswitch_proto::v1::collector_service_server::CollectorServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::acks::AckBook;
use crate::admin::Admin;
use crate::cache::{StateCache, run_watcher};
use crate::publish::{PublishConfig, run_publisher};
use crate::session::{SessionConfig, Sessions};
use crate::store::{Store, StoreError};

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
    /// How long an etcd request may take before it fails. Default 3 s.
    pub etcd_timeout: Duration,
    /// Session timing.
    pub session: SessionConfig,
    /// How long shutdown waits for collectors to leave after Drain. Default 5 s.
    pub shutdown_grace: Duration,
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
            session: SessionConfig::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// Uses another etcd key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
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
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the collector and admin APIs on `listener` until `shutdown` completes, then
/// drains: stops accepting, sends Drain to every collector and waits up to
/// [`Config::shutdown_grace`] for them to leave.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store = Store::connect(&config.etcd_endpoints, &config.prefix, config.etcd_timeout).await?;
    let cache = Arc::new(StateCache::new());
    let book = Arc::new(AckBook::new());
    let stop = CancellationToken::new();

    let watcher = tokio::spawn(run_watcher(
        store.clone(),
        cache.clone(),
        config.session.heartbeat_interval,
        stop.child_token(),
    ));
    let publish = PublishConfig {
        replica_id: config.replica_id.clone(),
        advertise: config.advertise.clone(),
        lease_ttl: config.lease_ttl,
        debounce: config.ack_debounce,
    };
    let publisher = tokio::spawn(run_publisher(
        store.clone(),
        book.clone(),
        cache.clone(),
        publish,
        stop.child_token(),
    ));
    let sessions = Sessions::new(
        cache.clone(),
        book.clone(),
        config.session.clone(),
        stop.clone(),
    );
    let admin = Admin::new(store, book, cache, config.replica_id.clone(), stop.clone());

    let drain = stop.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining collectors");
        drain.cancel();
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(CollectorServiceServer::new(sessions))
        .add_service(AdminServiceServer::new(admin))
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
    for (task, name) in [(watcher, "etcd watcher"), (publisher, "publisher")] {
        if let Err(error) = task.await {
            tracing::error!(%error, "{name} task failed");
        }
    }
    Ok(result?)
}
