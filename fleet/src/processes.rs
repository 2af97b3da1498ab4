//! The processes a run starts and stops: control replicas, `etcd grpc-proxy` instances
//! and subscriber processes (this binary's hidden `simulate` and `watch` subcommands).
//! Every one is killed when its handle is dropped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use killswitch_testkit::{Replica, free_addr, wait_until};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

use crate::pki::{self, Pki};
use crate::subscribers::{Command, Event};

/// A `killswitch-control` process, known by its replica id.
#[derive(Debug)]
pub struct ReplicaProcess {
    replica: Replica,
    /// Its replica id, which names its acknowledgement summaries in etcd.
    pub id: String,
}

impl ReplicaProcess {
    /// Starts `binary` on a free loopback port against `etcd`, serving TLS with `pki` or
    /// plain text (`--insecure-dev`) without; its log goes to `log`. Returns once it
    /// listens.
    pub fn start(
        binary: &Path,
        etcd: &str,
        id: &str,
        pki: Option<&Pki>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut args: Vec<OsString> = vec!["--replica-id".into(), id.into()];
        if let Some(pki) = pki {
            for (flag, file) in [
                ("--tls-cert", pki::SERVER_CERT),
                ("--tls-key", pki::SERVER_KEY),
                ("--client-ca", pki::CA_CERT),
                ("--auth-file", pki::AUTH_FILE),
            ] {
                args.extend([flag.into(), pki.path(file).into()]);
            }
        }
        Ok(Self {
            replica: Replica::start_binary(binary, etcd, &args, log)?,
            id: id.to_owned(),
        })
    }

    /// `https://127.0.0.1:PORT` with TLS, else `http://...`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        self.replica.endpoint()
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.replica.pid()
    }
}

/// The `killswitch-control` next to this executable (where cargo puts both).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    let binary = exe
        .parent()
        .context("this executable has no directory")?
        .join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} not found: build it (cargo build -p killswitch-control) or pass --control-bin",
        binary.display()
    );
    Ok(binary)
}

/// An `etcd grpc-proxy start` process in front of one etcd.
#[derive(Debug)]
pub struct GrpcProxy {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl GrpcProxy {
    /// Starts a proxy for `etcd` (`http://HOST:PORT`) with its data in `dir`, and waits
    /// until it answers.
    pub async fn start(etcd: &str, dir: &Path) -> anyhow::Result<Self> {
        let addr = free_addr()?;
        let upstream = etcd.trim_start_matches("http://");
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("proxy.log"))?;
        let child = std::process::Command::new("etcd")
            .args(["grpc-proxy", "start"])
            .arg(format!("--endpoints={upstream}"))
            .arg(format!("--listen-addr={addr}"))
            .arg(format!("--advertise-client-url={addr}"))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start `etcd grpc-proxy` (is etcd on PATH?)")?;
        // Made before waiting, so a proxy that never answers is killed on the way out.
        let proxy = Self {
            child,
            endpoint: format!("http://{addr}"),
        };
        let endpoint = proxy.endpoint.as_str();
        wait_until(
            Duration::from_secs(15),
            &format!("etcd grpc-proxy to answer on {endpoint}"),
            || async move {
                let options =
                    etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(1));
                match etcd_client::Client::connect([endpoint], Some(options)).await {
                    Ok(mut client) => client.get("/", None).await.is_ok(),
                    Err(_) => false,
                }
            },
        )
        .await?;
        Ok(proxy)
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GrpcProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Subscriber processes (this binary's `simulate` or `watch`), each answering over its
/// stdin and stdout.
#[derive(Debug)]
pub struct Subscribers {
    children: Vec<tokio::process::Child>,
    stdins: Vec<ChildStdin>,
    events: mpsc::Receiver<(usize, anyhow::Result<Event>)>,
    totals: Vec<usize>,
}

impl Subscribers {
    /// Starts one process per entry of `args` (the subcommand and its flags), with the
    /// number of subscribers it will hold.
    pub fn spawn(processes: Vec<(Vec<String>, usize)>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot locate this executable")?;
        let (tx, events) = mpsc::channel(64);
        let mut subscribers = Self {
            children: Vec::new(),
            stdins: Vec::new(),
            events,
            totals: Vec::new(),
        };
        for (index, (args, total)) in processes.into_iter().enumerate() {
            let mut child = tokio::process::Command::new(&exe)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {} {}", exe.display(), args.join(" ")))?;
            let stdout = child.stdout.take().context("no stdout")?;
            let stdin = child.stdin.take().context("no stdin")?;
            let tx = tx.clone();
            // Ends when the process closes its stdout (exits) or the run stops listening.
            tokio::spawn(async move {
                let mut lines = AsyncBufReader::new(stdout).lines();
                loop {
                    let event = match lines.next_line().await {
                        Ok(Some(line)) => serde_json::from_str::<Event>(&line)
                            .with_context(|| format!("bad line from a subscriber: {line:?}")),
                        Ok(None) => Err(anyhow::anyhow!("subscriber process {index} exited")),
                        Err(error) => Err(error.into()),
                    };
                    let end = event.is_err();
                    if tx.send((index, event)).await.is_err() || end {
                        return;
                    }
                }
            });
            subscribers.children.push(child);
            subscribers.stdins.push(stdin);
            subscribers.totals.push(total);
        }
        Ok(subscribers)
    }

    /// Subscribers over every process.
    #[must_use]
    pub fn total(&self) -> usize {
        self.totals.iter().sum()
    }

    /// The process ids.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .filter_map(tokio::process::Child::id)
            .collect()
    }

    async fn next(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<(usize, Event)> {
        let (index, event) = tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .context("timed out waiting for the subscriber processes")?
            .context("every subscriber process is gone")?;
        Ok((index, event?))
    }

    /// Waits until every process is ready, showing progress on `bar`.
    pub async fn wait_ready(&mut self, bar: &ProgressBar, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ready = vec![0; self.totals.len()];
        let mut done = vec![false; self.totals.len()];
        while !done.iter().all(|&d| d) {
            match self.next(deadline).await? {
                (i, Event::Progress { ready: n, .. }) => ready[i] = n,
                (i, Event::Ready { total }) => {
                    ready[i] = total;
                    done[i] = true;
                }
                (i, other) => bail!("unexpected event from subscriber process {i}: {other:?}"),
            }
            bar.set_position(ready.iter().sum::<usize>() as u64);
        }
        Ok(())
    }

    /// Asks every process when its subscribers heard of `generation`; returns every
    /// time (Unix nanoseconds) and how many subscribers had not heard of it.
    pub async fn report(
        &mut self,
        generation: u64,
        timeout: Duration,
    ) -> anyhow::Result<(Vec<u64>, usize)> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut line = serde_json::to_string(&Command::Report {
            generation,
            timeout_ms,
        })?;
        line.push('\n');
        for stdin in &mut self.stdins {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await?;
        }
        let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(30);
        let (mut times, mut missing) = (Vec::with_capacity(self.total()), 0);
        let mut answered = vec![false; self.totals.len()];
        while !answered.iter().all(|&a| a) {
            match self.next(deadline).await? {
                (
                    i,
                    Event::Report {
                        generation: g,
                        times_ns,
                        missing: m,
                    },
                ) if g == generation => {
                    times.extend(times_ns);
                    missing += m;
                    answered[i] = true;
                }
                (i, other) => bail!("unexpected event from subscriber process {i}: {other:?}"),
            }
        }
        Ok((times, missing))
    }

    /// Closes every process's stdin (which stops it) and waits for them to exit, killing
    /// any still running after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        self.stdins.clear();
        for child in &mut self.children {
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}
