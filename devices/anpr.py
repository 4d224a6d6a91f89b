"""Car-park gate cameras (Hikvision ISAPI, Plate Recognizer Stream) to parking events.

Entry or exit comes from the gate's configuration, never from the camera: the
camera's own direction field describes motion in its image, not which side of
the barrier the car park is on.

Gate cameras read a car waiting at the barrier again and again. A plate read at
the same gate within ``window`` of its last read (emitted or not) is suppressed,
so a queue of repeated reads yields one event; the state remembering last reads
is explicit and pure, like the counters'.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from mallstream.streams.records import InvalidEvent, ParkingEvent, decode, encode

from .normalise import Decoded, Reject, clock_skew
from .xml import find_text, local_name, parse_xml

DEFAULT_WINDOW = dt.timedelta(seconds=10)
_BOUNDARY = re.compile(r'^multipart/.*;\s*boundary="?([^";\s]+)', re.IGNORECASE | re.DOTALL)
_ANPR_XML_NAME = re.compile(r'name="?anpr\.xml\b', re.IGNORECASE)
_XML_CONTENT_TYPE = re.compile(r"^content-type:\s*[\w.+-]+/xml\b", re.IGNORECASE | re.MULTILINE)
#: What Hikvision cameras put in licensePlate when they saw a vehicle but read no plate.
_NO_PLATE = frozenset({"", "UNKNOWN", "无车牌"})


@dataclass(frozen=True, slots=True)
class Gate:
    """One camera's place in the car park, from the caller's configuration."""

    gate_id: str
    car_park_id: str
    direction: Literal["entry", "exit"]


@dataclass(frozen=True, slots=True)
class PlateState:
    """When each plate was last read at each gate (device time, UTC)."""

    last_read: Mapping[tuple[str, str], dt.datetime] = field(default_factory=dict)


def _admit(
    state: PlateState,
    gate: Gate,
    plate: str,
    ts: dt.datetime,
    received_at: dt.datetime,
    raw: bytes,
    window: dt.timedelta,
) -> tuple[PlateState, Decoded]:
    """The parking event of one plate read, unless it repeats a read within the window."""
    key = (gate.gate_id, plate)
    last = state.last_read.get(key)
    # reads more than a window older than this one can no longer suppress anything
    kept = {k: seen for k, seen in state.last_read.items() if seen >= ts - window}
    kept[key] = ts if last is None else max(last, ts)
    new_state = PlateState(kept)
    if last is not None and abs(ts - last) <= window:
        return new_state, Decoded()
    event = ParkingEvent(
        gate_id=gate.gate_id,
        car_park_id=gate.car_park_id,
        plate=plate,
        direction=gate.direction,
        ts=ts,
        clock_skew_s=clock_skew(ts, received_at),
    )
    try:
        return new_state, Decoded(events=[decode(ParkingEvent, encode(event))])
    except InvalidEvent as exc:
        return state, Decoded(rejects=[Reject(f"invalid parking event: {exc}", raw)])


def anpr_xml_part(body: bytes, content_type: str) -> bytes | None:
    """The ANPR XML of a Hikvision multipart/form-data push: the part named anpr.xml, else the first XML part.

    The JPEG parts (plate and scene pictures) are ignored. A plain splitter on the
    boundary: it cannot raise on a malformed header, unlike the stdlib email parser.
    """
    boundary = _BOUNDARY.search(content_type)
    if boundary is None:
        return None
    parts = []
    for chunk in body.split(b"--" + boundary.group(1).encode("utf-8", "replace"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, blank_line, content = chunk.partition(b"\r\n\r\n")
        if not blank_line:
            head, blank_line, content = chunk.partition(b"\n\n")
        if blank_line:
            parts.append((head.decode("latin-1"), content.removesuffix(b"\n").removesuffix(b"\r")))
    named = [content for head, content in parts if _ANPR_XML_NAME.search(head)]
    xml = [content for head, content in parts if _XML_CONTENT_TYPE.search(head)]
    return next(iter(named or xml), None)


def decode_hikvision(
    state: PlateState,
    body: bytes,
    received_at: dt.datetime,
    gate: Gate,
    content_type: str = "application/xml",
    window: dt.timedelta = DEFAULT_WINDOW,
) -> tuple[PlateState, Decoded]:
    """One Hikvision ISAPI EventNotificationAlert, bare XML or the multipart push with pictures.

    ``gate`` is the camera the caller received the push from. Other event types
    (heartbeats, video loss) are not parking events and are ignored.
    """
    document = anpr_xml_part(body, content_type) if content_type.lower().startswith("multipart/") else body
    if document is None:
        return state, Decoded(rejects=[Reject("multipart push without an anpr.xml part", body)])
    try:
        root = parse_xml(document)
    except ValueError as exc:
        return state, Decoded(rejects=[Reject(f"not well-formed or unsafe XML: {exc}", body)])
    if local_name(root.tag) != "EventNotificationAlert" or (find_text(root, "eventType") or "").upper() != "ANPR":
        return state, Decoded()
    plate = (find_text(root, "licensePlate") or "").upper()
    if plate in _NO_PLATE:
        return state, Decoded(rejects=[Reject("ANPR event without a plate read", body)])
    try:
        ts = dt.datetime.fromisoformat(find_text(root, "dateTime") or "")
    except ValueError:
        return state, Decoded(rejects=[Reject("ANPR event without a valid dateTime", body)])
    if ts.tzinfo is None:
        return state, Decoded(rejects=[Reject("ANPR dateTime has no UTC offset", body)])
    return _admit(state, gate, plate, ts.astimezone(dt.UTC), received_at, body, window)


class _PlateResult(msgspec.Struct):
    plate: str
    score: float = 0.0


class _StreamData(msgspec.Struct):
    camera_id: str
    timestamp: str
    results: list[_PlateResult] = []


class _StreamWebhook(msgspec.Struct):
    data: _StreamData


def decode_plate_recognizer(
    state: PlateState,
    payload: bytes,
    received_at: dt.datetime,
    gates: Mapping[str, Gate],
    window: dt.timedelta = DEFAULT_WINDOW,
) -> tuple[PlateState, Decoded]:
    """One Plate Recognizer Stream webhook: the best-scoring plate, upper-cased, at the camera's gate.

    ``gates`` maps the Stream camera_id to its gate. The camera's clock drifts, so its
    timestamp is kept and the drift reported as clock skew.
    """
    try:
        data = msgspec.json.decode(payload, type=_StreamWebhook).data
        ts = dt.datetime.fromisoformat(data.timestamp)
    except (msgspec.DecodeError, ValueError) as exc:
        return state, Decoded(rejects=[Reject(f"not a Plate Recognizer webhook: {exc}", payload)])
    if ts.tzinfo is None:
        return state, Decoded(rejects=[Reject("Plate Recognizer timestamp has no UTC offset", payload)])
    gate = gates.get(data.camera_id)
    if gate is None:
        return state, Decoded(rejects=[Reject(f"camera {data.camera_id!r} is not a configured gate", payload)])
    plates = [result for result in data.results if result.plate.strip()]
    if not plates:
        return state, Decoded(rejects=[Reject("webhook without a plate read", payload)])
    best = max(plates, key=lambda result: result.score)
    return _admit(state, gate, best.plate.strip().upper(), ts.astimezone(dt.UTC), received_at, payload, window)
