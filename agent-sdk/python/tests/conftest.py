"""The harness of the Python tests: a real etcd, a real ``killswitch-control`` serving mutual
TLS, the real ``killswitch`` CLI, and collectors as subprocesses (examples/collector.py) or
in-process clients.

The binaries come from ``target/debug`` of the repository (``cargo build --bins``), or from
the directory in ``KILLSWITCH_BIN_DIR``. Every wait polls with a deadline.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TypeVar

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPO = PYTHON_DIR.parents[1]
BIN_DIR = Path(os.environ.get("KILLSWITCH_BIN_DIR", str(REPO / "target" / "debug")))
COLLECTOR = PYTHON_DIR / "examples" / "collector.py"

#: Generous: a loaded two-core machine must not fail a correct system.
DEADLINE = 10.0

#: Variables the CLI and the collector read, removed from every child's environment.
KILLSWITCH_ENV = [
    "KILLSWITCH_ENDPOINT",
    "KILLSWITCH_ACTOR",
    "KILLSWITCH_CA",
    "KILLSWITCH_CERT",
    "KILLSWITCH_KEY",
    "KILLSWITCH_TOKEN",
    "KILLSWITCH_TLS_CERT",
    "KILLSWITCH_TLS_KEY",
    "KILLSWITCH_DEMO_FAIL_PAUSE",
]

T = TypeVar("T")


def clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KILLSWITCH_ENV}
    env.update(extra)
    return env


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail("%s is missing: run `cargo build --workspace --bins` first" % path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check: Callable[[], Optional[T]], timeout: float = DEADLINE) -> T:
    """Polls ``check`` until it returns something truthy; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.02)


class Etcd:
    """A one-member etcd on free ports in its own temp dir (the flags testkit uses)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ks-etcd-")
        client, peer = free_port(), free_port()
        self.endpoint = "http://127.0.0.1:%d" % client
        peer_url = "http://127.0.0.1:%d" % peer
        self.log = open(os.path.join(self.dir, "etcd.log"), "ab")
        self.process = subprocess.Popen(
            [
                shutil.which("etcd") or "etcd",
                "--name=e1",
                "--data-dir=%s" % os.path.join(self.dir, "e1.data"),
                "--listen-client-urls=%s" % self.endpoint,
                "--advertise-client-urls=%s" % self.endpoint,
                "--listen-peer-urls=%s" % peer_url,
                "--initial-advertise-peer-urls=%s" % peer_url,
                "--initial-cluster=e1=%s" % peer_url,
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--log-level=error",
                "--logger=zap",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        wait_until("etcd to be healthy", self.healthy, timeout=15)

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail("etcd exited with %s; see %s" % (self.process.returncode, self.dir))
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as response:
                return json.load(response).get("health") == "true"
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Pki:
    """The development PKI of ``killswitch certs init`` (alice admin, bob responder,
    collector-1 to collector-3)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ks-pki-"))
        self.dir = self.root / "pki"
        init = subprocess.run(
            [str(binary("killswitch")), "certs", "init", str(self.dir)],
            env=clean_env(),
            capture_output=True,
            text=True,
        )
        assert init.returncode == 0, "certs init failed: %s" % init.stderr

    def file(self, name: str) -> str:
        return str(self.dir / name)

    def server_flags(self) -> List[str]:
        return [
            "--tls-cert", self.file("server.pem"),
            "--tls-key", self.file("server-key.pem"),
            "--client-ca", self.file("ca.pem"),
            "--auth-file", self.file("auth.toml"),
        ]  # fmt: skip

    def collector_tls(self, name: str) -> List[str]:
        """The example collector's TLS flags for ``pki/NAME.pem``."""
        return ["--ca", self.file("ca.pem"), "--cert", self.file(name + ".pem"), "--key", self.file(name + "-key.pem")]


class Replica:
    """A ``killswitch-control`` process serving mutual TLS on a free port."""

    def __init__(self, etcd: Etcd, pki: Pki, replica_id: str = "r1") -> None:
        self.pki = pki
        self.log_path = pki.root / ("%s.log" % replica_id)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                str(binary("killswitch-control")),
                "--listen", "127.0.0.1:0",
                "--etcd", etcd.endpoint,
                "--heartbeat-interval", "1s",
                "--replica-id", replica_id,
            ] + pki.server_flags(),  # fmt: skip
            env=clean_env(RUST_LOG=os.environ.get("RUST_LOG", "warn")),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.kill()
            pytest.fail("killswitch-control did not report its address (said %r); see %s" % (line, self.log_path))
        self.endpoint = "https://" + line[len("listening on ") :]
        # Keep draining stdout so the replica never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def cli(self, *args: str, who: str = "operator-alice") -> subprocess.CompletedProcess:
        """Runs ``killswitch --output json ARGS`` against this replica as ``who``."""
        command = [
            str(binary("killswitch")),
            "--endpoint", self.endpoint,
            "--ca", self.pki.file("ca.pem"),
            "--cert", self.pki.file(who + ".pem"),
            "--key", self.pki.file(who + "-key.pem"),
            "--output", "json",
        ] + list(args)  # fmt: skip
        return subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=30)

    def ok(self, *args: str) -> dict:
        """Runs the CLI, expecting success; its JSON output."""
        result = self.cli(*args)
        assert result.returncode == 0, "killswitch %s failed (%d): %s" % (args, result.returncode, result.stderr)
        return json.loads(result.stdout)

    def create(self, program: str, *flags: str) -> None:
        """Creates ``program`` (programs start PAUSED) and resumes it."""
        self.ok("program", "create", program, "--owner", "data-team", *flags)
        self.ok("resume", program, "--reason", "go")

    def status(self, program: str) -> dict:
        return self.ok("status", program)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Collector:
    """examples/collector.py as a subprocess; its stdout lines are collected as they come."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None) -> None:
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(COLLECTOR), "--report-interval", "0.2"] + list(args),
            env=clean_env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def output(self) -> List[str]:
        with self._lock:
            return list(self.lines)

    def wait_line(self, what: str, predicate: Callable[[str], bool], start: int = 0, timeout: float = DEADLINE) -> str:
        """The first line from index ``start`` on that satisfies ``predicate``."""

        def find() -> Optional[str]:
            if self.process.poll() is not None and not self._reader.is_alive():
                pytest.fail("the collector exited (%s) before %s: %s" % (self.process.returncode, what, self.dump()))
            return next((line for line in self.output()[start:] if predicate(line)), None)

        try:
            return wait_until(what, find, timeout)
        except BaseException:
            print(self.dump())
            raise

    def dump(self) -> str:
        return "stdout (last 20 lines):\n%s" % "\n".join(self.output()[-20:])

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=DEADLINE)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        return code


@pytest.fixture(scope="session")
def etcd():
    server = Etcd()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pki():
    made = Pki()
    yield made
    shutil.rmtree(made.root, ignore_errors=True)


@pytest.fixture
def replica(etcd, pki):
    """A fresh replica per test (tests use programs of their own in the shared etcd)."""
    started = Replica(etcd, pki)
    yield started
    started.stop()


@pytest.fixture
def collectors():
    """Starts collectors with ``collectors(args, env)``; stops those left at the end."""
    started: List[Collector] = []

    def start(args: Sequence[str], env: Optional[Dict[str, str]] = None) -> Collector:
        collector = Collector(args, env)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.stop()
