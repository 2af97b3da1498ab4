//! `killswitch-control`: reads its settings (flags, environment, `--config` file), builds
//! the replica from the library, serves it until SIGINT or SIGTERM, then drains.

use anyhow::Context;
use killswitch_control::config::Settings;
use killswitch_control::security::{EtcdFiles, Security, TlsFiles};
use killswitch_control::{Config, logging, serve};

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
    config.session.max_sessions = args.max_sessions;
    config.session.max_sessions_per_collector = args.max_sessions_per_collector;
    config.metrics_listen = args.metrics_listen;

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
