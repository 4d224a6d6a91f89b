#!/usr/bin/env bash
# Set up a fresh Debian machine (Python 3.11, root) for mallstream: system packages and .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # the tests make a CA for Mosquitto over TLS
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)  # tsc checks the dashboards against Grafana's schema; the tests run @clickhouse/client
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
echo "setup: installing mallstream and its dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: installing @grafana/schema and tsc for dashboard checks"
(cd dashboards/schema-check && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "setup: installing @clickhouse/client, which the tests run against the worker's ClickHouse endpoint"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "setup: done ($(.venv/bin/mallstream --help >/dev/null && echo 'mallstream command ready'))"
