#!/usr/bin/env bash
# Installs the Debian packages that tests use and that cannot come from PyPI or
# the Go module proxy: prometheus (and promtool) for the dashboard test.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: prometheus is missing; run 'sudo apt-get install prometheus' (the dashboard test skips without it)" >&2
  exit 0
fi
echo "==> installing prometheus from Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service on install where systemd runs; tests start their own.
systemctl stop prometheus 2>/dev/null || true
