"""Named crash points for fault-injection tests of exactly-once delivery.

``MALLSTREAM_FAILPOINT=sink.after_insert:3`` kills the process with SIGKILL the
third time the sink passes that point (after a ClickHouse insert, before the
Kafka offsets are acknowledged). Unset, a failpoint costs one dict lookup.
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
