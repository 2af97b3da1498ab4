//! A demo collector: "captures" synthetic events while the control plane lets it.
//!
//! ```text
//! cargo run -p killswitch-sdk --example collector -- --id c1 --program demo
//! cargo run -p killswitch-sdk --example collector -- --id c1 --state-file /tmp/c1.state
//! cargo run -p killswitch-sdk --example collector -- --id collector-1 \
//!     --endpoint https://localhost:7070 --ca pki/ca.pem \
//!     --cert pki/collector-1.pem --key pki/collector-1-key.pem
//! ```
//!
//! `--ca`, `--cert` and `--key` (all three, or none) switch to mutual TLS: the files are
//! those `killswitch certs init pki` writes, and the endpoints must be `https://`.
//!
//! It prints a line on every state change, with its cause, e.g.
//! `[c1] demo: PAUSED (lost contact) at generation 12`, and, every 2 s, how many events it
//! captured. Pause `demo` with the `killswitch` CLI and the count stops growing; stop the
//! control plane and a fail-closed program pauses by itself after its grace period;
//! Ctrl-C exits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use killswitch_sdk::{Client, Gate, StateEvent};
use tracing_subscriber::EnvFilter;

/// A demo collector that obeys the Killswitch control plane.
#[derive(Debug, Parser)]
struct Args {
    /// Address of a control replica; repeat for several.
    #[arg(
        long = "endpoint",
        value_name = "URL",
        env = "KILLSWITCH_ENDPOINT",
        default_value = "http://127.0.0.1:7070"
    )]
    endpoints: Vec<String>,

    /// This collector's stable id.
    #[arg(long, value_name = "ID")]
    id: String,

    /// A program to collect for; repeat for several.
    #[arg(long = "program", value_name = "NAME", default_value = "demo")]
    programs: Vec<String>,

    /// A descriptive label; repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,

    /// Keep the last applied states in this file, so a restart never goes back in time
    /// and fail-open programs resume at once.
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,

    /// CA certificate (PEM) that signed the control plane's certificate; enables TLS.
    #[arg(long, value_name = "PATH", env = "KILLSWITCH_CA", requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,

    /// This collector's certificate (PEM), presented to the control plane.
    #[arg(long, value_name = "PATH", env = "KILLSWITCH_CERT", requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "PATH", env = "KILLSWITCH_KEY", requires_all = ["ca", "cert"])]
    key: Option<PathBuf>,
}

/// Reads a PEM file named by a flag.
fn read_pem(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read --{flag} {}", path.display()))
}

/// Parses `KEY=VALUE`.
fn parse_label(label: &str) -> Result<(String, String), String> {
    match label.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {label:?}")),
    }
}

/// One program being "captured".
struct Capture {
    program: String,
    gate: Gate,
    events: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let id = args.id.clone();
    let on_pause = move |event: &StateEvent| {
        print_change(&id, "PAUSED", event);
        if event.purge {
            // This demo only counts events and buffers none, so nothing is left to
            // delete. A real collector deletes its unsent buffer first.
            event.confirm_purge();
        }
        Ok(())
    };
    let id = args.id.clone();
    let on_resume = move |event: &StateEvent| {
        print_change(&id, "RUNNING", event);
        Ok(())
    };
    let mut builder = Client::builder()
        .endpoints(&args.endpoints)
        .collector_id(&args.id)
        .on_pause(on_pause)
        .on_resume(on_resume);
    for (key, value) in &args.labels {
        builder = builder.label(key, value);
    }
    for program in &args.programs {
        builder = builder.program(program);
    }
    if let Some(path) = &args.state_file {
        builder = builder.state_file(path);
    }
    if let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) {
        builder = builder.tls(
            read_pem("ca", ca)?,
            read_pem("cert", cert)?,
            read_pem("key", key)?,
        );
    }
    let client = builder
        .start()
        .context("cannot start the killswitch client")?;

    let mut captures = Vec::new();
    for program in &args.programs {
        let gate = client
            .gate(program)
            .with_context(|| format!("program {program} is not registered"))?;
        captures.push(Capture {
            program: program.clone(),
            gate,
            events: 0,
        });
    }

    let mut capture_tick = tokio::time::interval(Duration::from_millis(50));
    let mut report_tick = tokio::time::interval(Duration::from_secs(2));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            signal = &mut ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                break;
            }
            _ = capture_tick.tick() => {
                for capture in &mut captures {
                    if capture.gate.is_active() {
                        capture.events += 1;
                    }
                }
            }
            _ = report_tick.tick() => {
                for capture in &captures {
                    let state = if capture.gate.is_active() { "collecting" } else { "paused" };
                    println!(
                        "[{}] {}: {state}, {} events captured",
                        args.id, capture.program, capture.events,
                    );
                }
            }
        }
    }

    client.shutdown().await;
    Ok(())
}

/// Prints a state change, e.g.
/// `[c1] demo: PAUSED (update) at generation 12 (reason: leak) by alice` or
/// `[c1] demo: PAUSED (lost contact) at generation 12`.
fn print_change(id: &str, state: &str, event: &StateEvent) {
    let mut line = format!(
        "[{id}] {}: {state} ({}) at generation {}",
        event.program, event.cause, event.generation,
    );
    if !event.reason.is_empty() {
        line.push_str(&format!(" (reason: {})", event.reason));
    }
    if !event.actor.is_empty() {
        line.push_str(&format!(" by {}", event.actor));
    }
    if !event.incident_id.is_empty() {
        line.push_str(&format!(", incident {}", event.incident_id));
    }
    if event.purge {
        line.push_str(", purge requested");
    }
    println!("{line}");
}
