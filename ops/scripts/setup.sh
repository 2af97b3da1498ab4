#!/usr/bin/env bash
# Installs what building and testing Killswitch needs and is not in cargo's hands:
# etcd (Debian's etcd-server), protoc (protobuf-compiler, for etcd-client's build) and
# headless Chromium with its WebDriver (chromium, which the test of `killswitch report
# --format html` renders the page with, and chromium-driver, through which the console's
# tests drive it). Idempotent: installs only what is missing.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
  missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || {
  echo "setup: cargo is missing; install Rust from your distribution or with rustup" >&2
  exit 1
}

# Python grpcio, health checking and reflection: a gRPC client that is not ours, which
# control/tests/operability.rs runs (control/tests/grpc_probe.py) against a replica.
command -v python3 >/dev/null 2>&1 || {
  echo "setup: python3 is missing; install it (3.8 or newer, with pip) from your distribution" >&2
  exit 1
}
if ! python3 -c 'import grpc, grpc_health, grpc_reflection' >/dev/null 2>&1; then
  echo "setup: installing grpcio, grpcio-health-checking and grpcio-reflection for python3" >&2
  python3 -m pip install --quiet --disable-pip-version-check \
    grpcio grpcio-health-checking grpcio-reflection
fi

# grpcio-tools: control/tests/protocol.rs runs control/tests/protocol_client.py, a second
# collector client that generates its Python stubs from proto/ at test time.
if ! python3 -c 'import grpc_tools.protoc' >/dev/null 2>&1; then
  echo "setup: installing grpcio-tools for python3" >&2
  python3 -m pip install --quiet --disable-pip-version-check grpcio-tools
fi

# maturin (the build backend of the Python package in agent-sdk/python) and pytest, which
# agent-sdk/python/test.sh uses to build it and run its tests.
if ! python3 -c 'import pytest, maturin' >/dev/null 2>&1; then
  echo "setup: installing maturin and pytest for python3" >&2
  python3 -m pip install --quiet --disable-pip-version-check maturin pytest
fi
