"""`mallstream bench` from a checkout: it finds benchmarks/ beside the package, whatever the working directory.

The figures themselves are not held to floors here: the machine running the tests is shared.
"""

from __future__ import annotations

import subprocess
import sys


def test_bench_runs_the_checkouts_benchmarks_from_another_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mallstream.cli", "bench", "--count", "300"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = dict(line.rsplit(None, 1) for line in result.stdout.splitlines())
    assert len(figures) == 11 and "(a) loyalty engine, receipts/s (every rule kind on)" in figures, result.stdout
    assert all(float(figure.replace(",", "")) > 0 for figure in figures.values()), result.stdout
