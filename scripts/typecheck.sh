#!/usr/bin/env bash
# mypy, strict on the rule core (streams/core/) and the sinks (sinks/); its settings are [tool.mypy] in pyproject.toml.
# The repo's folders are sub-packages of `mallstream` only through [tool.setuptools.package-dir], which mypy cannot
# read (nor see through the editable install's import hook), so this lays that layout out as symlinks under
# .mypy_cache/tree/ and checks it there. Errors are printed with the repo's own paths.
# Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=$root/.mypy_cache/tree
rm -rf "$tree"
mkdir -p "$tree/mallstream"
for f in mallstream/*; do
  [ "$f" = mallstream/__pycache__ ] || ln -s "$root/$f" "$tree/$f"
done
# the folders that pyproject.toml's package-dir maps to mallstream.<name>
for d in streams devices sinks simulators dashboards config; do
  ln -s "$root/$d" "$tree/mallstream/$d"
done
set +e
MYPYPATH=$tree .venv/bin/python -m mypy --config-file pyproject.toml -p mallstream.streams.core -p mallstream.sinks "$@" \
  >"$tree/out" 2>&1
status=$?
set -e
# mypy names files by the path it found them at, relative to here: .mypy_cache/tree/mallstream/<dir>/... is <dir>/...
# in the repo, and .mypy_cache/tree/mallstream/x.py is mallstream/x.py
sed -e "s#$root/##g" \
  -e 's#\.mypy_cache/tree/mallstream/\(streams\|devices\|sinks\|simulators\|dashboards\|config\)/#\1/#g' \
  -e 's#\.mypy_cache/tree/mallstream/#mallstream/#g' "$tree/out"
exit "$status"
