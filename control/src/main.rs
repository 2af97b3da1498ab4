//! `killswitch-control`: parses flags, builds the replica from the library, serves it until
//! SIGINT or SIGTERM, then drains.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
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
    /// URL where peer replicas reach this one [default: http://LISTEN-ADDRESS, with the
    /// host name when listening on all interfaces].
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
    /// How long shutdown waits for collectors to leave after Drain.
    #[arg(long, env = "KILLSWITCH_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
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
        args.lease_ttl >= Duration::from_secs(2),
        "--lease-ttl must be at least 2s"
    );

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
        format!("http://{host}:{}", local.port())
    });
    let mut config = Config::new(args.etcd, replica_id, advertise)
        .prefix(args.prefix)
        .heartbeat_interval(args.heartbeat_interval);
    config.lease_ttl = args.lease_ttl;
    config.etcd_timeout = args.etcd_timeout;
    config.shutdown_grace = args.shutdown_grace;

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
