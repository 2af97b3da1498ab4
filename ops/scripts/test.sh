#!/usr/bin/env bash
# Runs the whole Killswitch test suite: unit tests, tests against a real etcd, and
# end-to-end tests through the real binaries. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/../.."

ops/scripts/setup.sh
# The end-to-end tests run the real binaries and the demo collector: build them first.
cargo build --workspace --bins --examples
cargo test --workspace "$@"
# The Python package over the SDK: built from source, tested with pytest against real
# processes.
agent-sdk/python/test.sh
