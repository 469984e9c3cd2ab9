#!/usr/bin/env bash
# Setup of the cluster benchmark (`cargo run --release -p cell-bench --features etcd --bin
# cluster`, docs/benchmarks.md): installs etcd 3.4 (Debian's `etcd-server`, plus
# `etcd-client` for etcdctl) and protoc (`protobuf-compiler`: the etcd-client crate generates
# its gRPC code at build time). Run as root (or through sudo); it does nothing that is already
# done. The benchmark starts its own three members on loopback in temporary directories; the
# package's system service is stopped and disabled here, so that no second etcd competes with
# them for the CPUs and the disk.
set -euo pipefail

sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  # Without systemd (a container), the package's start request is refused and nothing runs.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# With systemd, installing `etcd-server` starts and enables `etcd.service` (on 2379/2380, data
# in /var/lib/etcd). Stop it: the benchmark's members use other ports, but an idle etcd still
# ticks, heartbeats and fsyncs on the same two cores.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  if systemctl is-enabled --quiet etcd.service 2>/dev/null \
    || systemctl is-active --quiet etcd.service 2>/dev/null; then
    echo "stopping and disabling the system etcd service" >&2
    $sudo systemctl disable --now etcd.service
  fi
fi
if pgrep -x etcd >/dev/null 2>&1; then
  echo "warning: an etcd process runs already (not started by this script; left alone):" >&2
  pgrep -a -x etcd >&2 || true
fi

version=$(etcd --version | sed -n 's/^etcd Version: //p')
case "$version" in
  3.4.*) echo "etcd $version, $(etcdctl version | head -n 1), $(protoc --version)" >&2 ;;
  *)
    echo "error: the benchmark's anchor is etcd 3.4; this is etcd $version" >&2
    exit 1
    ;;
esac
