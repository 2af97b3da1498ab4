#!/usr/bin/env bash
# Installs what building and testing Killswitch needs and is not in cargo's hands:
# etcd (Debian's etcd-server) and protoc (protobuf-compiler, for etcd-client's build).
# Idempotent: installs only what is missing.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
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
