//! `killswitch-fleet floor`: what the machine itself allows, without gRPC, HTTP/2, TLS or
//! protobuf. A plain tokio server (this binary's hidden `floor-server`, in its own process
//! so its CPU time can be read from `/proc`) holds N loopback connections, one task each,
//! woken through one `tokio::sync::watch` channel as a replica's sessions are by its
//! state cache; each task writes a 32-byte frame and reads a 32-byte ack back. The
//! clients are tasks of this process. Reported per round: the time from the broadcast to
//! the server having read the last ack, and the server's CPU time per connection: the
//! floor under a replica's last ack and CPU per collector on the same machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

use crate::procfs;
use crate::stats::median;

/// Bytes of each frame and of each ack.
const FRAME: usize = 32;

/// The floor's settings.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    /// Connections.
    pub connections: usize,
    /// Broadcasts measured.
    pub rounds: usize,
    /// Most connections being opened at once.
    pub in_flight: usize,
}

/// What `floor` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FloorReport {
    /// Connections.
    pub connections: usize,
    /// `/proc/loadavg` before.
    pub load_before: Option<[f64; 3]>,
    /// Each round: broadcast to the last ack read, milliseconds.
    pub last_ack_ms: Vec<f64>,
    /// Each round: the server's CPU time per connection, microseconds.
    pub cpu_us_per_connection: Vec<f64>,
    /// Median of `last_ack_ms`.
    pub median_last_ack_ms: Option<f64>,
    /// Median of `cpu_us_per_connection`.
    pub median_cpu_us_per_connection: Option<f64>,
}

impl FloorReport {
    /// The report as text.
    #[must_use]
    pub fn render(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} ms"));
        format!(
            "floor: {} loopback connections, plain tokio, one 32-byte frame out and one back \
             each; median of {} rounds: last ack {}, server CPU {} per connection; load \
             before {}",
            self.connections,
            self.last_ack_ms.len(),
            ms(self.median_last_ack_ms),
            self.median_cpu_us_per_connection
                .map_or("-".to_owned(), |us| format!("{us:.1} µs")),
            self.load_before.map_or("?".to_owned(), |l| format!(
                "{:.2} {:.2} {:.2}",
                l[0], l[1], l[2]
            )),
        )
    }
}

/// Starts the server process, connects the clients, measures `rounds` broadcasts.
pub async fn floor(config: &FloorConfig) -> anyhow::Result<FloorReport> {
    let ticks = procfs::clock_ticks();
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "floor-server",
            "--connections",
            &config.connections.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the floor server")?;
    let pid = child.id().context("the floor server has no pid")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let port: u16 = lines
        .next_line()
        .await?
        .and_then(|line| line.strip_prefix("listening ")?.parse().ok())
        .context("the floor server did not say where it listens")?;

    let gate = Arc::new(Semaphore::new(config.in_flight.max(1)));
    let mut clients = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let permit = Arc::clone(&gate).acquire_owned().await?;
        clients.push(tokio::spawn(async move {
            // Held until the server has accepted the connection (it says so with one
            // byte), so no more than the in-flight limit wait in its accept queue.
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let mut accepted = [0u8; 1];
            stream.read_exact(&mut accepted).await?;
            drop(permit);
            let mut frame = [0u8; FRAME];
            loop {
                if stream.read_exact(&mut frame).await.is_err() {
                    return Ok::<(), std::io::Error>(());
                }
                stream.write_all(&frame).await?;
            }
        }));
    }
    anyhow::ensure!(
        lines.next_line().await?.as_deref() == Some("connected"),
        "the floor server did not count every connection"
    );

    let mut report = FloorReport {
        connections: config.connections,
        load_before: procfs::load_average(),
        ..FloorReport::default()
    };
    for _ in 0..config.rounds {
        let before = procfs::usage(pid, ticks)?;
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
        let nanos: u64 = lines
            .next_line()
            .await?
            .and_then(|line| line.strip_prefix("acked ")?.parse().ok())
            .context("the floor server did not report a round")?;
        let after = procfs::usage(pid, ticks)?;
        report.last_ack_ms.push(nanos as f64 / 1e6);
        report.cpu_us_per_connection.push(
            after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6
                / config.connections.max(1) as f64,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.median_last_ack_ms = median(report.last_ack_ms.iter().copied());
    report.median_cpu_us_per_connection = median(report.cpu_us_per_connection.iter().copied());
    drop(stdin);
    let _ = child.kill().await;
    for client in clients {
        client.abort();
    }
    Ok(report)
}

/// The floor's server: listens on a free loopback port (printed as `listening PORT`),
/// says `connected` once `connections` are open, then for every `go` on stdin wakes every
/// connection's task, each writes a frame and reads the ack, and prints `acked NANOS`.
pub async fn serve(connections: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?.port());
    let (go, _) = watch::channel(0u64);
    let acked = Arc::new(AtomicUsize::new(0));
    let all_acked = Arc::new(Notify::new());
    for _ in 0..connections {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        stream.write_all(&[1]).await?;
        let mut rounds = go.subscribe();
        let acked = Arc::clone(&acked);
        let all_acked = Arc::clone(&all_acked);
        tokio::spawn(async move {
            let mut frame = [7u8; FRAME];
            while rounds.changed().await.is_ok() {
                if stream.write_all(&frame).await.is_err()
                    || stream.read_exact(&mut frame).await.is_err()
                {
                    return;
                }
                if acked.fetch_add(1, Ordering::AcqRel) + 1 == connections {
                    all_acked.notify_one();
                }
            }
        });
    }
    println!("connected");
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = commands.next_line().await? {
        if line != "go" {
            continue;
        }
        acked.store(0, Ordering::Release);
        let started = Instant::now();
        go.send_modify(|round| *round += 1);
        all_acked.notified().await;
        println!("acked {}", started.elapsed().as_nanos());
    }
    Ok(())
}
