//! A TLS replica serves TLS itself rather than through tonic's static `tls_config`, so
//! that its credentials can be replaced while it runs: [`incoming`] accepts TCP
//! connections and completes each handshake in its own task (a slow client cannot hold
//! up the others) with the configuration in force at that moment ([`Acceptor`]), then
//! hands the `TlsStream` to tonic, which reads the client's certificates from it for
//! `Request::peer_certs`. [`Credentials`] reads the files again and replaces the
//! configuration and the auth file together (on SIGHUP, [`Credentials::reload`], or
//! through `AdminService.Reload`, as a [`Reloader`]). Established connections keep the
//! session they negotiated: collectors stay connected across a reload.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::api::auth::{Auth, serial_of};
use crate::api::reload::{ReloadError, Reloaded, Reloader, Staged};
use crate::metrics::Metrics;
use crate::security::{TlsFiles, TlsSettings};

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the accept loop pauses after the system refused a connection (out of file
/// descriptors, say), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Handshaken connections waiting for tonic to take them.
const HANDED_OVER: usize = 64;

/// The TLS server configuration new handshakes use; [`Acceptor::replace`] swaps it.
#[derive(Debug, Clone)]
pub(crate) struct Acceptor(Arc<RwLock<Arc<ServerConfig>>>);

impl Acceptor {
    pub(crate) fn new(config: Arc<ServerConfig>) -> Self {
        Self(Arc::new(RwLock::new(config)))
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = config;
    }
}

/// The TLS connections accepted on `listener`, for tonic's `serve_with_incoming_shutdown`.
/// The accept loop ends when `stop` fires or the stream is dropped; handshakes still
/// under way then are abandoned.
pub(crate) fn incoming(
    listener: TcpListener,
    acceptor: Acceptor,
    stop: CancellationToken,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(HANDED_OVER);
    tokio::spawn(accept_loop(listener, acceptor, tx, stop));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Acceptor,
    tx: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
    stop: CancellationToken,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tx.closed() => return,
            Some(_) = handshakes.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    // Each handshake uses the configuration in force when it starts.
                    let config = acceptor.current();
                    handshakes.spawn(handshake(stream, remote, config, tx.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}

/// Completes one TLS handshake within [`TLS_HANDSHAKE_TIMEOUT`] and hands the connection
/// over; a failed one is only logged (scanners and misconfigured clients are common).
async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    config: Arc<ServerConfig>,
    tx: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
    }
    let accepting = TlsAcceptor::from(config).accept(stream);
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accepting).await {
        Ok(Ok(tls)) => {
            // Fails only when the server is gone, and the connection with it.
            let _ = tx.send(Ok(tls)).await;
        }
        Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
        Err(_) => {
            tracing::debug!(%remote, timeout = ?TLS_HANDSHAKE_TIMEOUT, "TLS handshake timed out")
        }
    }
}

/// A TLS replica's credentials, reloadable: the files they come from, the configuration
/// new handshakes use, and the auth file its services judge callers by.
#[derive(Debug)]
pub struct Credentials {
    files: Option<TlsFiles>,
    acceptor: Acceptor,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
}

impl Credentials {
    pub(crate) fn new(
        settings: &TlsSettings,
        acceptor: Acceptor,
        auth: Arc<Auth>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            files: settings.files().cloned(),
            acceptor,
            auth,
            metrics,
        }
    }

    /// Reads the files again and puts them in force (what SIGHUP does); a refusal keeps
    /// the credentials in force. Logged and counted either way.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let reloaded = self.stage()?.apply();
        tracing::warn!(%reloaded, "credentials reloaded");
        Ok(reloaded)
    }

    fn read(&self) -> Result<TlsSettings, ReloadError> {
        let files = self.files.as_ref().ok_or(ReloadError::NoFiles)?;
        files
            .load()
            .map_err(|error| ReloadError::Refused(error.to_string()))
    }
}

impl Reloader for Credentials {
    fn stage(&self) -> Result<Staged, ReloadError> {
        let settings = match self.read() {
            Ok(settings) => settings,
            Err(error) => {
                tracing::error!(%error, "cannot reload the credentials");
                self.metrics.reload(false);
                return Err(error);
            }
        };
        let leaf = settings.leaf_der();
        let config = settings.auth_config();
        let summary = Reloaded {
            operators: config.operators.len(),
            collector_rules: config.collectors.len(),
            revoked_collectors: config.revoked.collectors(),
            revoked_serials: config.revoked.serials(),
            certificate_serial: serial_of(leaf).unwrap_or_default(),
            certificate_not_after: not_after(leaf),
        };
        let (acceptor, auth, metrics) = (
            self.acceptor.clone(),
            self.auth.clone(),
            self.metrics.clone(),
        );
        Ok(Staged::new(summary, move || {
            acceptor.replace(settings.server_config());
            auth.replace(
                settings.auth_config().clone(),
                settings.leaf_der().to_vec(),
                settings.peer_tls(),
            );
            metrics.reload(true);
        }))
    }
}

/// When the DER certificate `der` expires.
fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let seconds = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}
