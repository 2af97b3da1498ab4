//! `killswitch-testkit`: the harness of every test that runs real processes, and of the
//! `fleet` load tool. A real etcd (one member, or a cluster whose members a test can
//! kill, stop and restart) on free loopback ports in its own temp dir, real
//! `killswitch-control` processes, a TCP [`Proxy`] to cut connections, [`wait_until`],
//! free ports, and a plain HTTP request and metric lookup for scraping a replica's
//! `--metrics-listen`. Every process stops when its handle is dropped.
//!
//! It starts the replica as a binary and reaches etcd with its own client, so it does not
//! link `killswitch-control`'s library: the shipped replica carries no test code.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// What to run when `etcd` is missing.
const SETUP_HINT: &str = "install it with `ops/scripts/test.sh` (or `apt-get install etcd-server`)";

/// An etcd cluster on loopback, started for one test: one member by default
/// ([`Etcd::start`]) or several ([`Etcd::cluster`]) whose members a test can kill, stop
/// and restart.
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

/// One etcd member: its process (while running) and its URLs.
#[derive(Debug)]
struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    child: Option<Child>,
}

impl Etcd {
    /// Starts a single-member etcd from `PATH` on free loopback ports and waits until it
    /// serves requests.
    pub async fn start() -> anyhow::Result<Self> {
        Self::cluster(1).await
    }

    /// Starts a cluster of `size` members and waits until every member serves and they
    /// have elected a leader. Members use a 50 ms heartbeat and a 500 ms election
    /// timeout, so a test that kills the leader sees a new one within about a second.
    pub async fn cluster(size: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(size >= 1, "an etcd cluster needs at least one member");
        let binary =
            find_on_path("etcd").with_context(|| format!("etcd is not on PATH: {SETUP_HINT}"))?;
        let mut last_error = None;
        // A free port can be taken by someone else between probing and etcd binding it.
        for _ in 0..3 {
            match Self::start_once(&binary, size).await {
                Ok(etcd) => return Ok(etcd),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    async fn start_once(binary: &Path, size: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir for etcd")?;
        let mut members = Vec::with_capacity(size);
        for index in 0..size {
            members.push(Member {
                name: format!("m{index}"),
                client_url: format!("http://127.0.0.1:{}", free_port()?),
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
                child: None,
            });
        }
        let mut etcd = Self { members, dir };
        for index in 0..size {
            etcd.spawn(binary, index)?;
        }
        etcd.wait_ready(Duration::from_secs(15)).await?;
        Ok(etcd)
    }

    fn spawn(&mut self, binary: &Path, index: usize) -> anyhow::Result<()> {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let dir = self.dir.path().to_owned();
        let member = &mut self.members[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", member.name)))
            .context("cannot create the etcd log")?;
        let child = Command::new(binary)
            .arg(format!("--name={}", member.name))
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("{}.data", member.name)).display()
            ))
            .arg(format!("--listen-client-urls={}", member.client_url))
            .arg(format!("--advertise-client-urls={}", member.client_url))
            .arg(format!("--listen-peer-urls={}", member.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", member.peer_url))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .args(["--heartbeat-interval=50", "--election-timeout=500"])
            .arg("--log-level=error")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        member.child = Some(child);
        Ok(())
    }

    /// Waits until every running member answers and knows a leader.
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ready = true;
            for index in 0..self.members.len() {
                let Some(child) = self.members[index].child.as_mut() else {
                    continue;
                };
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "etcd member {} exited with {status}",
                        self.members[index].name
                    );
                }
                ready &= self.has_leader(index).await;
            }
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd did not serve with a leader within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn has_leader(&self, index: usize) -> bool {
        match self.member_client(index).await {
            Ok(mut client) => client.status().await.is_ok_and(|s| s.leader() != 0),
            Err(_) => false,
        }
    }

    /// The first member's client URL, e.g. `http://127.0.0.1:40123`.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.members[0].client_url
    }

    /// Every member's client URL.
    #[must_use]
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Every member's client URL, comma-separated, as `--etcd` takes them.
    #[must_use]
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// A client of every member that has completed one request.
    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        let running: Vec<&str> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.as_str())
            .collect();
        connect(&running).await
    }

    async fn member_client(&self, index: usize) -> anyhow::Result<etcd_client::Client> {
        connect(&[self.members[index].client_url.as_str()]).await
    }

    /// Every key and value under `prefix`, for asserting that nothing changed.
    pub async fn dump(&self, prefix: &str) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let response = self
            .client()
            .await?
            .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
            .await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect())
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to every running member.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        (0..self.members.len()).try_for_each(|index| self.signal_member(index, signal))
    }

    /// Sends `signal` to member `index`, if it runs.
    pub fn signal_member(&self, index: usize, signal: &str) -> anyhow::Result<()> {
        let Some(child) = self.members[index].child.as_ref() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Kills member `index` with SIGKILL and waits for it to exit.
    pub fn kill_member(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.members[index].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Restarts a killed member on its data dir and ports. It serves once a quorum runs:
    /// wait for that with [`Etcd::ready`].
    pub fn restart_member(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.members[index].child.is_none(),
            "etcd member {index} is running"
        );
        let binary =
            find_on_path("etcd").with_context(|| format!("etcd is not on PATH: {SETUP_HINT}"))?;
        self.spawn(&binary, index)
    }

    /// Waits until every running member serves and knows a leader.
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        self.wait_ready(Duration::from_secs(15)).await
    }

    /// The index of the member that is the leader now, as the members report it.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        for index in 0..self.members.len() {
            if self.members[index].child.is_none() {
                continue;
            }
            let Ok(mut client) = self.member_client(index).await else {
                continue;
            };
            let Ok(status) = client.status().await else {
                continue;
            };
            if status
                .header()
                .is_some_and(|h| h.member_id() == status.leader())
            {
                return Ok(index);
            }
        }
        bail!("no etcd member reports itself the leader")
    }

    /// The current etcd revision.
    pub async fn revision(&self) -> anyhow::Result<i64> {
        let response = self.client().await?.get("/", None).await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.signal("CONT");
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

async fn connect(endpoints: &[&str]) -> anyhow::Result<etcd_client::Client> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(5));
    let mut client = etcd_client::Client::connect(endpoints, Some(options)).await?;
    client.status().await?;
    Ok(client)
}

/// A `killswitch-control` process. Killed (SIGKILL) when dropped; [`Replica::stop`] sends
/// SIGTERM and waits, for a graceful shutdown.
#[derive(Debug)]
pub struct Replica {
    child: Child,
    addr: SocketAddr,
    tls: bool,
}

impl Replica {
    /// Starts the binary on a free port against `etcd_endpoint`, with `extra` flags, and
    /// waits until it listens. Unless `extra` has `--tls-cert`, it runs with
    /// `--insecure-dev`: plain text, every caller an admin.
    pub fn start(etcd_endpoint: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), etcd_endpoint, extra)
    }

    /// [`Replica::start`] on a given address, e.g. the one a stopped replica had, so its
    /// collectors find the new process where they knew the old one.
    pub fn start_on(
        listen: SocketAddr,
        etcd_endpoint: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn(&control_binary()?, listen, etcd_endpoint, extra, None)
    }

    /// [`Replica::start`] of a given `binary`, with its stderr written to `log` instead
    /// of the caller's: for a tool that runs replicas outside `cargo test` (`fleet`).
    pub fn start_binary(
        binary: &Path,
        etcd_endpoint: &str,
        extra: &[impl AsRef<OsStr>],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::spawn(binary, listen, etcd_endpoint, extra, Some(log))
    }

    /// Starts `binary` and reads the address it reports; stderr goes to `log` if given.
    fn spawn(
        binary: &Path,
        listen: SocketAddr,
        etcd_endpoint: &str,
        extra: &[impl AsRef<OsStr>],
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let tls = extra.iter().any(|arg| {
            arg.as_ref()
                .to_str()
                .is_some_and(|arg| arg.starts_with("--tls-cert"))
        });
        let stderr = match log {
            Some(log) => Stdio::from(
                std::fs::File::create(log)
                    .with_context(|| format!("cannot create {}", log.display()))?,
            ),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(binary)
            .args(["--listen", &listen.to_string(), "--etcd", etcd_endpoint])
            .args((!tls).then_some("--insecure-dev"))
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        match read_address(&mut child) {
            Ok(addr) => Ok(Self { child, addr, tls }),
            Err(error) => {
                // Useless without its address, and nothing would ever stop it.
                let _ = child.kill();
                let _ = child.wait();
                Err(match log {
                    Some(log) => error.context(format!(
                        "{} did not start; see {}",
                        binary.display(),
                        log.display()
                    )),
                    None => error,
                })
            }
        }
    }

    /// `http://ADDR`, or `https://ADDR` when started with `--tls-cert`, for the CLI and
    /// the SDK.
    #[must_use]
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn stop(mut self) -> anyhow::Result<bool> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(self.child.wait()?.success())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address a starting replica prints as its first line, `listening on ADDR`.
fn read_address(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = child
        .stdout
        .take()
        .context("no stdout from killswitch-control")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("cannot read killswitch-control's stdout")?;
    line.trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("killswitch-control did not report its address (said {line:?})"))
}

/// The `killswitch-control` binary next to the running test, built first if missing.
pub fn control_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Tests run from target/<profile>/deps/; binaries live in target/<profile>/.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("unexpected test binary location")?;
    let binary = profile_dir.join("killswitch-control");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "killswitch-control",
                "--bin",
                "killswitch-control",
            ])
            .status()
            .context("cannot run cargo to build killswitch-control")?;
        anyhow::ensure!(status.success(), "building killswitch-control failed");
    }
    Ok(binary)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A TCP forwarder between a client and a server that a test can cut and restore, to
/// break connections the way a network fault would.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    open: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards `127.0.0.1:PORT` (a free port) to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = std::sync::Arc::new(tokio::sync::watch::channel(true).0);
        let state = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut open = state.subscribe();
                if !*open.borrow_and_update() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = open.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Ok(Self { addr, open, task })
    }

    /// `http://ADDR` of the proxy.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every forwarded connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `condition` every 20 ms until it holds; fails with `what` after `timeout`.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut condition: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A free loopback address, for a listener a test must know in advance (such as
/// `--metrics-listen`, which the replica does not print).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One plain HTTP/1.1 request with `Connection: close`: the status code, the head (status
/// line and headers) and the body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String, String)> {
    http_raw(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends `request` (a whole HTTP/1.1 request, which should say `Connection: close`) as
/// written and reads the response to its end: the status code, the head and the body.
pub async fn http_raw(addr: SocketAddr, request: &str) -> anyhow::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line: {head:?}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// The value of `series` (a metric name with its labels, exactly as exposed) in a
/// Prometheus text exposition.
#[must_use]
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_reads_the_exact_series() {
        let text = "# HELP sessions Sessions.\n# TYPE sessions gauge\nsessions 3\n\
                    acks_total{result=\"ok\"} 7\nacks_total{result=\"ok\",x=\"y\"} 9\n";
        assert_eq!(metric_value(text, "sessions"), Some(3.0));
        assert_eq!(metric_value(text, "acks_total{result=\"ok\"}"), Some(7.0));
        assert_eq!(metric_value(text, "acks_total"), None);
        assert_eq!(metric_value(text, "missing"), None);
    }

    #[tokio::test]
    async fn wait_until_polls_until_the_condition_holds_or_times_out() {
        let mut polls = 0;
        wait_until(Duration::from_secs(5), "the third poll", || {
            polls += 1;
            std::future::ready(polls >= 3)
        })
        .await
        .expect("the condition holds");
        assert_eq!(polls, 3);

        let error = wait_until(Duration::from_millis(50), "never", || async { false })
            .await
            .expect_err("the condition never holds");
        assert!(error.to_string().contains("waiting for never"), "{error}");
    }

    #[tokio::test]
    async fn the_proxy_forwards_until_cut_and_again_once_restored() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let server = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = server.local_addr().expect("address");
        let serving = tokio::spawn(async move {
            while let Ok((mut stream, _)) = server.accept().await {
                let mut request = [0; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")
                    .await;
            }
        });
        let proxy = Proxy::start(target).await.expect("proxy");
        let addr: SocketAddr = proxy
            .endpoint()
            .trim_start_matches("http://")
            .parse()
            .expect("the proxy's address");

        let (status, _, body) = http_request(addr, "GET", "/").await.expect("forwarded");
        assert_eq!((status, body.as_str()), (200, "hello"));
        proxy.cut();
        assert!(http_request(addr, "GET", "/").await.is_err(), "cut");
        proxy.restore();
        let (status, _, _) = http_request(addr, "GET", "/").await.expect("restored");
        assert_eq!(status, 200);
        serving.abort();
    }

    #[tokio::test]
    async fn etcd_serves_and_dumps_what_was_written() {
        let etcd = Etcd::start().await.expect("etcd on PATH");
        let before = etcd.revision().await.expect("revision");
        etcd.client()
            .await
            .expect("client")
            .put("/t/key", "value", None)
            .await
            .expect("put");
        assert_eq!(
            etcd.dump("/t/").await.expect("dump"),
            vec![(b"/t/key".to_vec(), b"value".to_vec())]
        );
        assert!(etcd.revision().await.expect("revision") > before);
        assert_eq!(etcd.leader().await.expect("leader"), 0);
    }
}
