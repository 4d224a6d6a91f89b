#!/usr/bin/env bash
# mypy, strict on the rule core (streams/core/) and the sinks (sinks/); its settings are [tool.mypy] in pyproject.toml.
# The repo's folders are sub-packages of `mallstream` only through [tool.setuptools.package-dir], which mypy cannot
# read (nor see through the editable install's import hook), so this lays that layout out as symlinks under
# .mypy_cache/tree/ and checks it there; errors are printed with the repo's own paths. Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=.mypy_cache/tree
rm -rf "$tree"
mkdir -p "$tree/mallstream"

# "<sub-package> <folder>" for each mallstream.<sub-package> that package-dir maps to a folder of the repo; deeper
# mappings must be that folder's own sub-folders (mallstream.streams.core = streams/core), which the links give
mapping=$(.venv/bin/python - <<'EOF'
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
tops = {name.split(".")[1]: path for name, path in package_dir.items() if name.count(".") == 1}
for name, path in package_dir.items():
    parts = name.split(".")
    if parts[0] != "mallstream" or (len(parts) == 1 and path != "mallstream"):
        sys.exit(f"typecheck: package-dir maps {name} to {path}, which this script does not lay out")
    if len(parts) > 2 and path != "/".join([tops[parts[1]], *parts[2:]]):
        sys.exit(f"typecheck: package-dir maps {name} to {path}, not to a sub-folder of {tops[parts[1]]}")
for sub, path in tops.items():
    print(sub, path)
EOF
)

for f in mallstream/*; do
  [ "$f" = mallstream/__pycache__ ] || ln -s "$root/$f" "$tree/$f"
done
# mypy names files by the path it found them at (relative to here); these turn them back into the repo's paths
to_repo=(-e "s#$root/##g")
while read -r sub path; do
  ln -s "$root/$path" "$tree/mallstream/$sub"
  to_repo+=(-e "s#^$tree/mallstream/$sub/#$path/#")
done <<<"$mapping"
to_repo+=(-e "s#^$tree/mallstream/#mallstream/#")

set +e
MYPYPATH=$tree .venv/bin/python -m mypy --config-file pyproject.toml -p mallstream.streams.core -p mallstream.sinks "$@" \
  >"$tree.out" 2>&1
status=$?
set -e
sed "${to_repo[@]}" "$tree.out"
exit "$status"
