//! `killswitch-control`: parses flags, builds the replica from the library, serves it until
//! SIGINT or SIGTERM, then drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use killswitch_control::server::{EtcdFiles, Security, TlsFiles};
use killswitch_control::{Config, serve};
use tracing_subscriber::EnvFilter;

/// A Killswitch control replica: keeps program state in etcd, streams pause and resume to
/// collectors and gathers their acknowledgements.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on for collectors and operators (port 0 picks a free port).
    #[arg(long, env = "KILLSWITCH_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "KILLSWITCH_ETCD",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    /// Key prefix in etcd.
    #[arg(long, env = "KILLSWITCH_PREFIX", default_value = "/killswitch/v1")]
    prefix: String,
    /// Name of this replica in status output [default: HOSTNAME-PORT].
    #[arg(long, env = "KILLSWITCH_REPLICA_ID")]
    replica_id: Option<String>,
    /// URL where peer replicas reach this one [default: https://LISTEN-ADDRESS (http://
    /// with --insecure-dev), with the host name when listening on all interfaces]. With
    /// TLS, its host must be a name or address in --tls-cert.
    #[arg(long, env = "KILLSWITCH_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Lease time-to-live of this replica's keys in etcd: how long its collectors still
    /// count after it dies.
    #[arg(long, env = "KILLSWITCH_LEASE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    /// How often to heartbeat collectors while the etcd watch is healthy.
    #[arg(long, env = "KILLSWITCH_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// How long an etcd request may take before the call fails.
    #[arg(long, env = "KILLSWITCH_ETCD_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    etcd_timeout: Duration,
    /// How often to compare the whole cached state with etcd, to catch a change the watch
    /// missed.
    #[arg(long, env = "KILLSWITCH_RECONCILE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    reconcile_interval: Duration,
    /// How long shutdown waits for collectors to leave after Drain.
    #[arg(long, env = "KILLSWITCH_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Most collector sessions this replica serves; more are refused with
    /// RESOURCE_EXHAUSTED so collectors move to another replica.
    #[arg(long, env = "KILLSWITCH_MAX_SESSIONS", default_value_t = killswitch_control::session::DEFAULT_MAX_SESSIONS)]
    max_sessions: usize,
    /// PEM certificate chain this replica presents (also to peer replicas).
    #[arg(long, env = "KILLSWITCH_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "KILLSWITCH_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate that issues collectors' and operators' client certificates (and
    /// peer replicas' certificates). A client certificate is optional: operators may use a
    /// bearer token instead.
    #[arg(long, env = "KILLSWITCH_CLIENT_CA", value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// The trust domain and the operators with their roles (auth.toml).
    #[arg(long, env = "KILLSWITCH_AUTH_FILE", value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// Plain text without authentication: every caller is an admin named by
    /// killswitch-actor and collectors are trusted by their Hello. Only on a loopback
    /// --listen address; for development and tests.
    #[arg(
        long,
        env = "KILLSWITCH_INSECURE_DEV",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with_all = ["tls_cert", "tls_key", "client_ca", "auth_file"]
    )]
    insecure_dev: bool,
    /// PEM CA of etcd's server certificates (etcd endpoints must then be https://).
    #[arg(long, env = "KILLSWITCH_ETCD_CA", value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key and --etcd-ca).
    #[arg(long, env = "KILLSWITCH_ETCD_CERT", value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "KILLSWITCH_ETCD_KEY", value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// etcd user (with --etcd-password).
    #[arg(long, env = "KILLSWITCH_ETCD_USER", value_name = "NAME")]
    etcd_user: Option<String>,
    /// etcd password; prefer the environment variable to keep it out of `ps`.
    #[arg(
        long,
        env = "KILLSWITCH_ETCD_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    etcd_password: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.heartbeat_interval >= Duration::from_millis(100),
        "--heartbeat-interval must be at least 100ms"
    );
    anyhow::ensure!(
        args.reconcile_interval >= Duration::from_secs(1),
        "--reconcile-interval must be at least 1s"
    );
    anyhow::ensure!(
        args.lease_ttl >= Duration::from_secs(2),
        "--lease-ttl must be at least 2s"
    );

    let security = if args.insecure_dev {
        Security::insecure_dev(args.listen)?
    } else {
        let files = TlsFiles {
            cert: args.tls_cert,
            key: args.tls_key,
            client_ca: args.client_ca,
            auth_file: args.auth_file,
        };
        Security::Tls(Box::new(files.load()?))
    };
    let etcd = EtcdFiles {
        ca: args.etcd_ca,
        cert: args.etcd_cert,
        key: args.etcd_key,
        user: args.etcd_user,
        password: args.etcd_password,
    }
    .load()?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let replica_id = args
        .replica_id
        .unwrap_or_else(|| format!("{}-{}", hostname(), local.port()));
    let advertise = args.advertise_url.unwrap_or_else(|| {
        let host = if local.ip().is_unspecified() {
            hostname()
        } else {
            local.ip().to_string()
        };
        format!("{}://{host}:{}", security.scheme(), local.port())
    });
    let mut config = Config::new(args.etcd, replica_id, advertise)
        .prefix(args.prefix)
        .heartbeat_interval(args.heartbeat_interval)
        .security(security)
        .etcd_access(etcd);
    config.lease_ttl = args.lease_ttl;
    config.etcd_timeout = args.etcd_timeout;
    config.reconcile_interval = args.reconcile_interval;
    config.shutdown_grace = args.shutdown_grace;
    config.session.max_sessions = args.max_sessions;

    tracing::info!(%local, replica = config.replica_id, etcd = ?config.etcd_endpoints, "starting");
    // Scripts and tests wait for this line on stdout to learn the bound address.
    println!("listening on {local}");
    serve(config, listener, shutdown_signal())
        .await
        .context("control replica failed")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".to_owned())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                tracing::error!(%error, "cannot listen for SIGINT");
            }
        }
        () = terminate => {}
    }
}
