"""Raw recordings: every unit each emulated device sent, kept so it can be sent to a gateway again.

A recording is a directory with one JSON-lines file per device, ``<device id>.jsonl``. Each
line is one unit, exactly as it went out::

    {"seq": 17, "at": "2026-11-23T10:00:05+08:00", "transport": "mqtt",
     "content_type": "application/json", "corrupt": false, "body": "eyJ0eXBlIjoi..."}

* ``seq`` numbers the units of the whole play, so the files merge back into the order sent;
* ``at`` is the simulated time the device sent it (what ``--speed`` paces by);
* ``transport`` is ``serial``, ``mqtt``, ``http`` or ``kafka`` (a till's receipt);
* ``corrupt`` marks a unit damaged on purpose (a wire fault), which the gateway refuses;
* ``body`` is the bytes, base64: serial writes, MQTT messages, HTTP bodies, receipts.

Nothing in a line depends on where the devices were: a recording plays back to any gateway
whose configuration has the same devices.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from .emulators import Payload, Sent, TransportKind

SUFFIX = ".jsonl"


class RawUnit(msgspec.Struct, frozen=True):
    """One line of a device's file."""

    seq: int
    at: dt.datetime
    transport: TransportKind
    content_type: str
    corrupt: bool
    body: bytes


class RawRecorder:
    """Writes every unit it is given (see :class:`~.emulators.DeviceEmulators`'s ``on_send``) to its device's file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, IO[bytes]] = {}
        self._seq = 0
        self._encoder = msgspec.json.Encoder()

    def __call__(self, unit: Sent) -> None:
        out = self._files.get(unit.device_id)
        if out is None:
            out = self._files[unit.device_id] = device_file(self.directory, unit.device_id).open("wb")
        payload = unit.payload
        line = RawUnit(self._seq, unit.at, unit.transport, payload.content_type, payload.corrupt, payload.body)
        out.write(self._encoder.encode(line) + b"\n")
        self._seq += 1

    def close(self) -> None:
        for out in self._files.values():
            out.close()

    def __enter__(self) -> RawRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def device_file(directory: Path, device_id: str) -> Path:
    if "/" in device_id or device_id.startswith("."):
        raise ValueError(f"device id {device_id!r} cannot name a file")
    return directory / f"{device_id}{SUFFIX}"


def read_raw(directory: Path) -> Iterator[Sent]:
    """Every unit of a recording, in the order it was sent."""
    files = sorted(directory.glob(f"*{SUFFIX}"))
    if not files:
        raise FileNotFoundError(f"no raw recording (*{SUFFIX}) in {directory}")
    merged = heapq.merge(*(_units(path) for path in files), key=lambda item: item[0])
    return (sent for _, sent in merged)


def _units(path: Path) -> Iterator[tuple[int, Sent]]:
    device_id, decoder = path.name.removesuffix(SUFFIX), msgspec.json.Decoder(RawUnit)
    with path.open("rb") as lines:
        for line in lines:
            unit = decoder.decode(line)
            yield (
                unit.seq,
                Sent(device_id, unit.transport, Payload(unit.body, unit.content_type, unit.corrupt), unit.at),
            )


def count_raw(directory: Path) -> int:
    """Units in a recording, for a progress bar."""
    total = 0
    for path in directory.glob(f"*{SUFFIX}"):
        with path.open("rb") as lines:
            total += sum(1 for _ in lines)
    return total
