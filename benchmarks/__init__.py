"""The hub's benchmarks: throughput and latency figures, run from a checkout of the source.

``mallstream bench [--e2e|--history|--week]`` runs them, or one at a time ``python -m benchmarks.bench_x``
from the checkout's root. They are not part of the installed package (the wheel leaves this folder out).
"""
