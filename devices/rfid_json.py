"""Networked RFID readers that report tags as JSON: Zebra FX IoT Connector and Impinj R700.

* Zebra FX "IoT Connector" tag data event (MQTT, HTTP POST, websocket)::

    {"type":"SIMPLE","timestamp":"2025-05-01T10:00:00.000+0000",
     "data":{"antenna":1,"idHex":"7EDA...","peakRssi":-62,...}}

* Impinj R700 IoT device interface (HTTP stream or webhook)::

    {"timestamp":...,"hostname":...,"eventType":"tagInventory",
     "tagInventoryEvent":{"epc":<base64>,"epcHex":...,"antennaPort":1,"peakRssiCdbm":-7000,
                          "lastSeenTime":...}}

Payloads come as single objects, JSON arrays of events, newline-delimited, or objects glued
together with nothing in between (``}{``), and a TCP read may end inside an object.
:class:`JsonValueSplitter` cuts any of those into whole top-level values without caring about
the separators. Every outcome is a record or a :class:`Reject` with a reason; no payload makes
the driver raise.

Reader clocks are trusted for ``ts`` (converted to UTC) and compared with the gateway's clock
for ``clock_skew_s``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from abc import abstractmethod
from typing import Any

import msgspec

from mallstream.streams.records import RfidRead

from .normalise import Reject, clock_skew
from .rfid_serial import DuplicateWindow, ReaderStream, checked_read

TRUNCATED = "truncated JSON value at end of input"
NOT_A_VALUE = "not a JSON object or array"

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_OPENER = re.compile(rb"[{\[]")
_STRUCTURE = re.compile(rb'[{}\[\]"]')
_STRING_STOP = re.compile(rb'["\\]')


class JsonValueSplitter:
    """Cuts a byte stream into top-level JSON objects and arrays, whatever separates them.

    It only tracks nesting and strings to find where a value ends; the value itself is parsed
    (and judged) later. What is not the start of an object or array is rejected up to the next
    ``{`` or ``[``. A value still open after ``max_value_bytes`` is rejected so the buffer stays
    bounded, and scanning resumes at the next ``{`` or ``[`` inside it.
    """

    def __init__(self, max_value_bytes: int = 256 * 1024) -> None:
        self.max_value_bytes = max_value_bytes
        self._buffer = b""
        self._scanned = 0  # how far into the buffer the open value has been scanned
        self._depth = 0
        self._in_string = False

    @property
    def buffered(self) -> bytes:
        return self._buffer

    def split(self, chunk: bytes, *, final: bool = False) -> list[bytes | Reject]:
        """Whole values and rejected bytes, in input order; whitespace between values is dropped."""
        data = self._buffer + chunk
        pieces: list[bytes | Reject] = []
        pos, scan = 0, self._scanned
        while pos < len(data):
            if self._depth == 0:
                pos = _WHITESPACE.match(data, pos).end()  # type: ignore[union-attr]
                if pos == len(data):
                    break
                if data[pos] not in b"{[":
                    resume = _next_opener(data, pos)
                    pieces.append(Reject(NOT_A_VALUE, data[pos:resume]))
                    pos = resume
                    continue
                self._depth, self._in_string, scan = 1, False, pos + 1
            end, scan = self._scan(data, scan)
            if end is not None:
                pieces.append(data[pos:end])
                pos = end
                continue
            if not final and len(data) - pos <= self.max_value_bytes:
                break
            reason = TRUNCATED if final else f"JSON value longer than {self.max_value_bytes} bytes"
            resume = _next_opener(data, pos + 1)
            pieces.append(Reject(reason, data[pos:resume]))
            pos, self._depth = resume, 0
        self._buffer = data[pos:]
        self._scanned = scan - pos if self._depth else 0
        return pieces

    def _scan(self, data: bytes, pos: int) -> tuple[int | None, int]:
        """Where the open value ends (if it does in ``data``), and how far scanning got."""
        depth, in_string = self._depth, self._in_string
        while True:
            if in_string:
                stop = _STRING_STOP.search(data, pos)
                if stop is None:
                    pos = len(data)
                    break
                if stop[0] == b'"':
                    in_string, pos = False, stop.end()
                elif stop.end() < len(data):
                    pos = stop.end() + 1  # skip the escaped byte
                else:
                    pos = stop.start()  # the escaped byte has not arrived: look again next time
                    break
                continue
            mark = _STRUCTURE.search(data, pos)
            if mark is None:
                pos = len(data)
                break
            pos = mark.end()
            if mark[0] == b'"':
                in_string = True
            elif mark[0] in (b"{", b"["):
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    self._depth, self._in_string = 0, False
                    return pos, pos
        self._depth, self._in_string = depth, in_string
        return None, pos


def _next_opener(data: bytes, pos: int) -> int:
    found = _OPENER.search(data, pos)
    return found.start() if found else len(data)


def utc_timestamp(text: str) -> dt.datetime | str:
    """A reader's ISO 8601 timestamp in UTC, or why it is not usable (no offset means unknown zone)."""
    try:
        ts = dt.datetime.fromisoformat(text)
        if ts.tzinfo is None:
            return f"timestamp {text!r} has no UTC offset"
        return ts.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return f"timestamp {text!r} is not an ISO 8601 time"


class JsonReaderStream(ReaderStream):
    """A reader's JSON byte stream: each top-level object, or each element of an array, is an event."""

    def __init__(
        self, reader_id: str, duplicates: DuplicateWindow | None = None, max_value_bytes: int = 256 * 1024
    ) -> None:
        super().__init__(reader_id, duplicates)
        self._splitter = JsonValueSplitter(max_value_bytes)

    @property
    def buffered(self) -> bytes:
        return self._splitter.buffered

    def split(self, chunk: bytes, *, final: bool = False) -> list[bytes | Reject]:
        return self._splitter.split(chunk, final=final)

    def _reads_in(self, piece: bytes, received_at: dt.datetime) -> list[RfidRead | Reject]:
        try:
            value = msgspec.json.decode(piece)
        except (msgspec.DecodeError, ValueError, RecursionError) as exc:
            return [Reject(f"malformed JSON: {exc}", piece)]
        if not isinstance(value, list):
            return self._outcome(value, piece, received_at)
        outcomes: list[RfidRead | Reject] = []
        for event in value:
            outcomes.extend(self._outcome(event, msgspec.json.encode(event), received_at))
        return outcomes

    def _outcome(self, event: Any, raw: bytes, received_at: dt.datetime) -> list[RfidRead | Reject]:
        if not isinstance(event, dict):
            return [Reject("event is not a JSON object", raw)]
        read = self._read(event, raw, received_at)
        return [] if read is None else [read]

    @abstractmethod
    def _read(self, event: dict[str, Any], raw: bytes, received_at: dt.datetime) -> RfidRead | Reject | None:
        """The tag read in one event; None for events that are not tag reads."""

    def _timed_read(
        self, raw: bytes, received_at: dt.datetime, timestamp: str, antenna: int, epc: str, rssi_dbm: float
    ) -> RfidRead | Reject:
        ts = utc_timestamp(timestamp)
        if isinstance(ts, str):
            return Reject(ts, raw)
        return checked_read(
            raw,
            reader_id=self.reader_id,
            antenna=antenna,
            epc=epc.upper(),
            rssi_dbm=rssi_dbm,
            ts=ts,
            clock_skew_s=clock_skew(ts, received_at),
        )


class _ZebraTagData(msgspec.Struct):
    idHex: str
    antenna: int
    peakRssi: float


class _ZebraEvent(msgspec.Struct):
    timestamp: str
    data: _ZebraTagData


class ZebraStream(JsonReaderStream):
    """Zebra FX IoT Connector tag data events; ``peakRssi`` is in dBm, ``antenna`` 1-based."""

    def _read(self, event: dict[str, Any], raw: bytes, received_at: dt.datetime) -> RfidRead | Reject:
        try:
            tag_event = msgspec.convert(event, _ZebraEvent)
        except msgspec.ValidationError as exc:
            return Reject(f"not a Zebra tag data event: {exc}", raw)
        data = tag_event.data
        return self._timed_read(raw, received_at, tag_event.timestamp, data.antenna, data.idHex, data.peakRssi)


class _ImpinjTagInventory(msgspec.Struct):
    antennaPort: int
    peakRssiCdbm: int
    epcHex: str | None = None
    epc: str | None = None
    lastSeenTime: str | None = None


class _ImpinjEvent(msgspec.Struct):
    timestamp: str
    tagInventoryEvent: _ImpinjTagInventory


class ImpinjStream(JsonReaderStream):
    """Impinj R700 IoT device interface events; only ``tagInventory`` events carry tags.

    ``peakRssiCdbm`` is in hundredths of a dBm. The EPC comes from ``epcHex`` or, failing that,
    the base64 ``epc``; ``ts`` is ``lastSeenTime`` when the reader sends it, else ``timestamp``.
    """

    TAG_EVENT = "tagInventory"

    def _read(self, event: dict[str, Any], raw: bytes, received_at: dt.datetime) -> RfidRead | Reject | None:
        event_type = event.get("eventType")
        if not isinstance(event_type, str):
            return Reject("not an Impinj event: no eventType", raw)
        if event_type != self.TAG_EVENT:
            return None
        try:
            tag_event = msgspec.convert(event, _ImpinjEvent)
        except msgspec.ValidationError as exc:
            return Reject(f"not an Impinj tagInventory event: {exc}", raw)
        tag = tag_event.tagInventoryEvent
        epc = tag.epcHex if tag.epcHex is not None else _base64_hex(tag.epc)
        if epc is None:
            return Reject("tagInventoryEvent has no usable epcHex or base64 epc", raw)
        timestamp = tag.lastSeenTime if tag.lastSeenTime is not None else tag_event.timestamp
        return self._timed_read(raw, received_at, timestamp, tag.antennaPort, epc, tag.peakRssiCdbm / 100)


def _base64_hex(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError):
        return None
