#!/usr/bin/env bash
# Builds and installs the Python package `killswitch` (agent-sdk/python) from source, then
# runs its tests against real processes: etcd, target/debug/killswitch-control and the
# killswitch CLI. Needs what ops/scripts/setup.sh installs (etcd, maturin, pytest).
#
# The extension is built in the dev profile and in the workspace's target directory, so it
# reuses what `cargo build --workspace` compiled; set MATURIN_PEP517_ARGS or
# CARGO_TARGET_DIR to change either.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The binaries the tests run (a no-op when they are up to date).
cargo build --quiet -p killswitch-control -p killswitch-ops --bins

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./agent-sdk/python

python3 -m pytest agent-sdk/python/tests -q -p no:cacheprovider "$@"
