//! `killswitch-control`: reads its settings (flags, environment, `--config` file), builds
//! the replica from the library, serves it until SIGINT or SIGTERM, then drains. SIGHUP
//! reloads a TLS replica's certificate, key, client CA and auth file.

use std::sync::Arc;

use anyhow::Context;
use killswitch_control::config::Settings;
use killswitch_control::security::{EtcdFiles, Security, TlsFiles};
use killswitch_control::tls::Credentials;
use killswitch_control::{Config, Replica, logging};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Flags over KILLSWITCH_* variables over the --config file over defaults; clap prints
    // usage errors itself and exits 2.
    let args = Settings::parse_args()?;
    if args.print_config {
        print!("{}", args.to_toml()?);
        return Ok(());
    }
    logging::init(args.log_format)?;

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
    config.receipt_retention = args.receipt_retention;
    config.session.max_sessions = args.max_sessions;
    config.session.max_sessions_per_collector = args.max_sessions_per_collector;
    config.metrics_listen = args.metrics_listen;

    tracing::info!(%local, replica = config.replica_id, etcd = ?config.etcd_endpoints, "starting");
    // Scripts and tests wait for this line on stdout to learn the bound address.
    println!("listening on {local}");
    let replica = Replica::build(config, local)
        .await
        .context("control replica failed")?;
    let reloads = tokio::spawn(reload_on_sighup(replica.credentials()));
    let result = replica.run(listener, shutdown_signal()).await;
    reloads.abort();
    result.context("control replica failed")
}

/// Reloads the credentials at each SIGHUP; never returns. A refused reload is logged
/// (at error) and counted by `Credentials`, and the credentials in force stay.
async fn reload_on_sighup(credentials: Option<Arc<Credentials>>) {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGHUP: credentials reload only through `killswitch reload`");
            return std::future::pending().await;
        }
    };
    while hangups.recv().await.is_some() {
        match &credentials {
            // Logged by `reload` either way.
            Some(credentials) => {
                let _ = credentials.reload();
            }
            None => {
                tracing::warn!("SIGHUP: nothing to reload, this replica runs with --insecure-dev")
            }
        }
    }
    std::future::pending().await
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
