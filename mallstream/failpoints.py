"""Named crash points for fault-injection tests of exactly-once delivery.

``MALLSTREAM_FAILPOINT=sink.after_insert.ledger_entries:3`` kills the process with SIGKILL
the third time it passes that point. The points:

* ``sink.after_insert.<table>``: after a ClickHouse insert that stored at least one row
  into ``<table>``, before the Kafka offsets of its batch are committed;
* ``lane.<group>.after_steps|after_changelog|after_flush|after_save|after_commit``: at each
  step of a batch lane's checkpoint (streams/state/checkpoint.py), e.g. ``lane.mallstream-malls.after_flush``
  once the malls' footfall and parking states are on their changelogs, before the offsets are committed.

Several points may be armed at once, comma-separated. Unset, a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_armed: dict[str, int] = {}
for _spec in filter(None, os.environ.get("MALLSTREAM_FAILPOINT", "").split(",")):
    _name, _, _count = _spec.partition(":")
    _armed[_name] = int(_count or 1)


def failpoint(name: str) -> None:
    """Die here, as a power cut or OOM kill would, when armed for this pass."""
    remaining = _armed.get(name)
    if remaining is None:
        return
    if remaining <= 1:
        os.kill(os.getpid(), signal.SIGKILL)
    _armed[name] = remaining - 1
