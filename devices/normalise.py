"""What every device driver returns: the hub's records, plus rejects with reasons.

Drivers are pure: bytes (or a decoded payload) and an explicit receive time in,
records out. A frame or payload that cannot be understood is never an exception
escaping the driver: it becomes a :class:`Reject`, which the gateway sends to the
dead-letter topic with its reason, and the driver goes on with the next frame.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from mallstream.streams.records import Record

#: Device clocks further than this from the gateway's clock are flagged on the event.
SKEW_TOLERANCE = dt.timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Reject:
    """Input that could not be turned into a record: why, and the bytes exactly as received."""

    reason: str
    raw: bytes


@dataclass(slots=True)
class Decoded:
    """The outcome of feeding input to a driver."""

    events: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def extend(self, other: Decoded) -> None:
        self.events.extend(other.events)
        self.rejects.extend(other.rejects)


def clock_skew(device_ts: dt.datetime, received_at: dt.datetime) -> float | None:
    """Seconds the device clock runs ahead (+) or behind (-) the gateway, if beyond tolerance."""
    skew = device_ts - received_at
    return round(skew.total_seconds(), 3) if abs(skew) > SKEW_TOLERANCE else None


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """Messages a device numbered but the hub never received: not an error in any one input."""

    source: str
    first_missing: int
    last_missing: int
