#!/usr/bin/env bash
# Make sure the system programs of the local platform exist: the PostgreSQL server tools,
# HAProxy, zstd and nftables (namespace hosts), plus Chromium (Web UI test) and promtool
# (compose check). Installs them with apt-get when we are root; otherwise says what to install.
set -euo pipefail

missing=()
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
for tool in initdb pg_ctl postgres pg_basebackup pg_rewind; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "$pg_bin/$tool" ]; then
    missing+=(postgresql)
    break
  fi
done
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  missing+=(haproxy)
fi
# promtool (Debian's prometheus package) checks the compose stack's Prometheus config and the
# Grafana dashboard's queries (tests/workers/test_compose.py).
if ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
# Tier 3 compresses the WAL segments it ships with zstd (archive/restore commands).
if ! command -v zstd >/dev/null 2>&1; then
  missing+=(zstd)
fi
# Namespace hosts (infra/hosts) partition a host and guard a fleet's subnet with nftables.
if ! command -v nft >/dev/null 2>&1 && [ ! -x /usr/sbin/nft ]; then
  missing+=(nftables)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "error: missing system packages: ${missing[*]}." >&2
  echo "       Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and rerun." >&2
  exit 2
fi
