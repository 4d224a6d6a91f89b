#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on real parts. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then  # only the tests need a browser: the alert board's test drives it
  echo "test: apt-get install chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "test: ruff (lint and format)"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
echo "test: mypy (strict on streams/core and sinks)"
bash scripts/typecheck.sh
pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider)
# two test processes, a module each at a time (module fixtures stay in one): most tests wait on brokers and workers
parallel=(-n "${MALLSTREAM_TEST_PROCESSES:-2}" --dist loadfile --durations=25)
set +e
if [ "$#" -gt 0 ]; then
  "${pytest[@]}" "${parallel[@]}" "$@"
  status=$?
else
  # the outage tests time a broker or ClickHouse going away: they run alone, after the rest
  "${pytest[@]}" "${parallel[@]}" -m "not alone"
  status=$?
  echo "test: the outage tests, alone"
  "${pytest[@]}" -m alone
  alone=$?
  [ "$status" -eq 0 ] && status=$alone
fi
set -e
if [ "$status" -eq 5 ]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
