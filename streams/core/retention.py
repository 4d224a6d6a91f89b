"""How far each partition may be trimmed: the retention keeper's decision, without the broker.

A record goes (Kafka DeleteRecords: the partition's low watermark moves up to an offset)
only when nothing of the hub can still need it:

* on a topic the hub's consumer groups read, every such group has committed past it, and
  it is older than the keep window (so a new consumer can still read the last ``keep_hours``);
  a group that has committed nothing yet will read from the start, so it holds everything;
* on a topic no group of the hub reads, it is older than the keep window;
* on a table's changelog, the local table store has applied and checkpointed it. faust seeks
  back to the checkpointed offset itself on recovery (and reads that record again), so that
  record stays too. Without a checkpoint (the in-memory store) the changelog stays whole.

The adapter (streams/retention.py) gathers these figures from the broker and the stores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: (topic, partition)
Where = tuple[str, int]

MS_PER_HOUR = 3_600_000


def keep_since_ms(now_ms: int, keep_hours: float) -> int:
    """The timestamp from which records are kept whatever the groups have read."""
    return now_ms - round(keep_hours * MS_PER_HOUR)


@dataclass(frozen=True)
class Partition:
    """What the keeper knows of one partition at one moment.

    ``newer_from``: the first offset whose record is stamped at or after :func:`keep_since_ms`
    (the broker's answer to ListOffsets by time); None when every record is older.
    ``committed``: each consumer group of the hub that reads the topic, and the offset it has
    committed (None: nothing yet). ``checkpoint``: for a changelog, the offset the local
    store has applied and persisted (None: nothing, or a store that keeps no checkpoint).
    """

    topic: str
    partition: int
    low: int
    end: int
    newer_from: int | None = None
    committed: Mapping[str, int | None] = field(default_factory=dict)
    changelog: bool = False
    checkpoint: int | None = None

    @property
    def where(self) -> Where:
        return self.topic, self.partition


@dataclass(frozen=True)
class Plan:
    """Where to move low watermarks, and who holds retention back."""

    #: partition -> the offset records before which go
    delete_before: dict[Where, int]
    #: consumer group -> records it has not read that would otherwise have gone
    held_by: Counter[str]


def _time_limit(part: Partition) -> int:
    return part.end if part.newer_from is None else min(part.newer_from, part.end)


def _changelog_limit(part: Partition) -> int:
    # the checkpointed record itself is read again on recovery: it stays
    return part.low if part.checkpoint is None else min(part.checkpoint, part.end)


def plan(partitions: Iterable[Partition]) -> Plan:
    """The deletions that lose nothing any group or table store still needs."""
    delete_before: dict[Where, int] = {}
    held_by: Counter[str] = Counter()
    for part in partitions:
        if part.changelog:
            limit = _changelog_limit(part)
        else:
            limit = _time_limit(part)
            for group, offset in part.committed.items():
                # nothing committed: the group starts at the earliest record kept
                position = part.low if offset is None else max(offset, part.low)
                if position < limit:
                    held_by[group] += limit - position
            limit = min([limit, *(part.low if offset is None else offset for offset in part.committed.values())])
        if limit > part.low:
            delete_before[part.where] = limit
    return Plan(delete_before, held_by)
