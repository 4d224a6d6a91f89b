"""Serial UHF RFID readers: inventory frames in, :class:`RfidRead` records out.

Two wire dialects (sources: wabson/chafon-rfid and hex-in/pyImpinj):

* Chafon UHFReader288M family: ``Len Adr reCmd Status Data CRC-LSB CRC-MSB``, where ``Len``
  counts every byte after itself and the CRC is CRC-16 (preset 0xFFFF, reflected poly 0x8408).
  Inventory data is ``Ant(bitmask) Num [EpcLen EPC RSSI]...``; status 0x03 means more frames
  follow, and every frame can be decoded on its own. (The UHFReader18 answer has no antenna
  and no RSSI byte and is not supported.)
* R2000 "0xA0": ``A0 Len Addr Cmd Data Check``, ``Len`` counts the bytes after itself and
  ``Check`` is the two's complement of the byte sum. Real-time inventory (0x89) tag frames carry
  ``FreqAnt PC(2) EPC RSSI``; a frame with ``Len=0x0A`` closes an inventory round.

RSSI: the R2000 reports ``dBm = byte - 129``. wabson/chafon-rfid hands the Chafon byte out raw;
the 288M is an R2000-based reader and its bench vectors (0x64..0x6C) only make sense as strong
reads under the same mapping (-29..-21 dBm; read as ``-byte`` they would sit below the
receiver's sensitivity), so both dialects use :func:`rssi_dbm`.

Serial reads cut frames anywhere, so each dialect is a stream: :meth:`ReaderStream.feed` takes
whatever bytes arrived and keeps an incomplete frame for the next call. Bytes that are not a
frame (line noise, a frame with a bad checksum) are skipped one at a time until a frame checks
out again, and come back as one :class:`Reject` per skipped run. Nothing is ever buffered
beyond one maximum-size frame. A stray byte that reads as a long length makes the stream wait
for that many bytes before it can tell; the caller calls :meth:`ReaderStream.flush` when the line
has been quiet longer than a frame takes (readers send a frame's bytes back to back), and the
frames behind the stray byte come out then.

The serial reader has no clock: a read's ``ts`` is when the gateway received it.

:func:`checked_read`, :class:`DuplicateWindow` and :class:`ReaderStream` are shared with the
networked readers in :mod:`.rfid_json`.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import msgspec

from mallstream.streams.records import InvalidEvent, RfidRead

from .normalise import Decoded, Reject

GARBAGE = "garbage before frame"
TRUNCATED = "truncated frame at end of input"


class Tag(NamedTuple):
    """One tag as a reader frame carries it: antenna is the 1-based index."""

    antenna: int
    epc: bytes
    rssi_dbm: float


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC16_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """Chafon frame CRC: CRC-16, preset 0xFFFF, reflected polynomial 0x8408, no final XOR."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC16_TABLE[(crc ^ byte) & 0xFF]
    return crc


def lrc(data: bytes) -> int:
    """R2000 frame check: the byte that makes the frame's bytes sum to zero (mod 256)."""
    return -sum(data) & 0xFF


def rssi_dbm(raw: int) -> float:
    """dBm from a reader's RSSI byte (R2000 convention, used for the Chafon 288M too)."""
    return float(raw - 129)


def rssi_byte(dbm: float) -> int:
    """The RSSI byte a reader sends for ``dbm``, rounded to the reader's 1 dB resolution."""
    raw = round(dbm) + 129
    if not 0 <= raw <= 0xFF:
        raise ValueError(f"{dbm} dBm has no RSSI byte")
    return raw


def checked_read(raw: bytes, **fields: object) -> RfidRead | Reject:
    """An :class:`RfidRead` checked against the record's own constraints, or why it is not one.

    Building a msgspec Struct directly skips its field constraints; ``convert`` applies them, so
    an impossible antenna, EPC or RSSI becomes a dead letter here instead of failing downstream.
    """
    try:
        read = msgspec.convert(fields, RfidRead)
        read.validate()
    except (msgspec.ValidationError, InvalidEvent) as exc:
        return Reject(f"invalid tag read: {exc}", raw)
    return read


class DuplicateWindow:
    """Flags repeat reads of a tag on the same reader antenna as duplicates.

    A reader reports a tag on every inventory round, many times a second. A read is fresh when
    the same tag was last reported fresh on that antenna at least ``window`` ago (or never);
    reads in between are kept but marked ``duplicate=True``. A tag that stays in the field
    therefore yields one fresh read per window, like a reader-side report filter. Pure state:
    time is the reads' own ``ts``.
    """

    def __init__(self, window: dt.timedelta = dt.timedelta(seconds=1)) -> None:
        self.window = window
        self._fresh_at: dict[tuple[str, int, str], dt.datetime] = {}
        self._sweep_above = 1024

    def mark(self, read: RfidRead) -> RfidRead:
        key = (read.reader_id, read.antenna, read.epc.upper())
        last_fresh = self._fresh_at.get(key)
        if last_fresh is not None and abs(read.ts - last_fresh) < self.window:
            return msgspec.structs.replace(read, duplicate=True)
        self._fresh_at[key] = read.ts
        if len(self._fresh_at) > self._sweep_above:
            self._forget_before(read.ts - self.window)
        return read

    def _forget_before(self, horizon: dt.datetime) -> None:
        """Drop tags not seen fresh since ``horizon``: memory stays proportional to tags in the field."""
        self._fresh_at = {key: ts for key, ts in self._fresh_at.items() if ts >= horizon}
        self._sweep_above = max(1024, 2 * len(self._fresh_at))


class ReaderStream(ABC):
    """One reader's byte stream turned into records: subclasses say how to cut it and read a piece."""

    def __init__(self, reader_id: str, duplicates: DuplicateWindow | None = None) -> None:
        self.reader_id = reader_id
        self.duplicates = duplicates if duplicates is not None else DuplicateWindow()

    def feed(self, chunk: bytes, received_at: dt.datetime, *, final: bool = False) -> Decoded:
        """Decode what ``chunk`` completes; ``final`` says nothing more follows (a whole message, a closed port)."""
        decoded = Decoded()
        for piece in self.split(chunk, final=final):
            if isinstance(piece, Reject):
                decoded.rejects.append(piece)
                continue
            for outcome in self._reads_in(piece, received_at):
                if isinstance(outcome, Reject):
                    decoded.rejects.append(outcome)
                else:
                    decoded.events.append(self.duplicates.mark(outcome))
        return decoded

    def flush(self, received_at: dt.datetime) -> Decoded:
        """Decide about everything still buffered, e.g. when the line has gone quiet."""
        return self.feed(b"", received_at, final=True)

    @property
    @abstractmethod
    def buffered(self) -> bytes:
        """Bytes kept for the next feed: the start of a piece not yet complete."""

    @abstractmethod
    def split(self, chunk: bytes, *, final: bool = False) -> list[bytes | Reject]:
        """Complete pieces and rejected bytes, in input order; together with :attr:`buffered` they are the input."""

    @abstractmethod
    def _reads_in(self, piece: bytes, received_at: dt.datetime) -> list[RfidRead | Reject]:
        """The reads (or reasons for not reading) in one complete piece."""


class SerialFrameStream(ReaderStream):
    """Frames cut out of a serial byte stream by their length byte and checksum."""

    #: Longest frame the dialect can express; the buffer never holds a full one.
    max_frame: ClassVar[int]

    def __init__(self, reader_id: str, duplicates: DuplicateWindow | None = None) -> None:
        super().__init__(reader_id, duplicates)
        self._buffer = b""

    @property
    def buffered(self) -> bytes:
        return self._buffer

    def split(self, chunk: bytes, *, final: bool = False) -> list[bytes | Reject]:
        data = self._buffer + chunk
        pieces: list[bytes | Reject] = []
        run_start, run_reason = -1, ""  # bytes being skipped since run_start, and why the run began

        def end_run(at: int) -> None:
            nonlocal run_start
            if run_start >= 0:
                pieces.append(Reject(run_reason, data[run_start:at]))
                run_start = -1

        pos = 0
        while pos < len(data):
            found = self._frame_at(data, pos)
            if found is None and final:
                found = TRUNCATED
            if found is None:
                break
            if isinstance(found, int):
                end_run(pos)
                pieces.append(data[pos : pos + found])
                pos += found
                continue
            # A run of skipped bytes is one Reject; a broken frame ends a run of plain garbage.
            if run_start < 0 or (run_reason == GARBAGE and found != GARBAGE):
                end_run(pos)
                run_start, run_reason = pos, found
            pos += 1
        end_run(pos)
        self._buffer = data[pos:]
        return pieces

    def _reads_in(self, piece: bytes, received_at: dt.datetime) -> list[RfidRead | Reject]:
        tags = self._tags(piece)
        if isinstance(tags, Reject):
            return [tags]
        ts = received_at.astimezone(dt.UTC)
        return [
            checked_read(
                piece,
                reader_id=self.reader_id,
                antenna=tag.antenna,
                epc=tag.epc.hex().upper(),
                rssi_dbm=tag.rssi_dbm,
                ts=ts,
            )
            for tag in tags
        ]

    @abstractmethod
    def _frame_at(self, data: bytes, start: int) -> int | str | None:
        """Length of the valid frame at ``data[start]``; None if more bytes may complete one; else why not."""

    @abstractmethod
    def _tags(self, frame: bytes) -> list[Tag] | Reject:
        """Tags reported by one checksummed frame (none for answers to other commands)."""


class ChafonStream(SerialFrameStream):
    """A Chafon UHFReader288M serial line."""

    max_frame = 1 + 0xFF
    INVENTORY = 0x01
    #: Inventory finished, timed out, more frames follow, buffer full: all carry tag data.
    TAG_DATA_STATUSES = frozenset({0x01, 0x02, 0x03, 0x04})
    NO_TAG_STATUS = 0xFB
    #: Antenna bitmask in the data field -> 1-based antenna index.
    ANTENNA_BITS: ClassVar[dict[int, int]] = {0x01: 1, 0x02: 2, 0x04: 3, 0x08: 4}
    _MIN_LEN = 5  # Adr reCmd Status CRC(2)

    def _frame_at(self, data: bytes, start: int) -> int | str | None:
        length = data[start]
        if length < self._MIN_LEN:
            return GARBAGE
        end = start + 1 + length
        if end > len(data):
            return None
        received = data[end - 2] | data[end - 1] << 8
        return 1 + length if crc16(data[start : end - 2]) == received else "bad CRC"

    def _tags(self, frame: bytes) -> list[Tag] | Reject:
        command, status, data = frame[2], frame[3], frame[4:-2]
        if command != self.INVENTORY or status == self.NO_TAG_STATUS:
            return []
        if status not in self.TAG_DATA_STATUSES:
            return Reject(f"reader status 0x{status:02X}", frame)
        if len(data) < 2:
            return Reject("inventory data shorter than Ant and Num", frame)
        antenna_bits, count = data[0], data[1]
        if count == 0:
            return []
        antenna = self.ANTENNA_BITS.get(antenna_bits)
        if antenna is None:
            return Reject(f"antenna bitmask 0x{antenna_bits:02X} is not one antenna", frame)
        tags, pos = [], 2
        for _ in range(count):
            if pos >= len(data) or pos + 1 + data[pos] + 1 > len(data):
                return Reject(f"inventory data ends inside tag {len(tags) + 1} of {count}", frame)
            epc_end = pos + 1 + data[pos]
            tags.append(Tag(antenna, data[pos + 1 : epc_end], rssi_dbm(data[epc_end])))
            pos = epc_end + 1
        if pos != len(data):
            return Reject(f"{len(data) - pos} bytes after the last of {count} tags", frame)
        return tags


class R2000Stream(SerialFrameStream):
    """An R2000 "0xA0" serial line in real-time inventory."""

    HEAD = 0xA0
    max_frame = 2 + 0xFF
    REAL_TIME_INVENTORY = 0x89
    ROUND_SUMMARY_LEN = 0x0A  # AntID ReadRate(2) TotalRead(4): no tag
    ERROR_LEN = 0x04  # ErrorCode
    _MIN_LEN = 3  # Addr Cmd Check
    _MIN_TAG_DATA = 4  # FreqAnt PC(2) RSSI, around the EPC

    def _frame_at(self, data: bytes, start: int) -> int | str | None:
        if data[start] != self.HEAD:
            return GARBAGE
        if start + 1 >= len(data):
            return None
        length = data[start + 1]
        if length < self._MIN_LEN:
            return GARBAGE
        end = start + 2 + length
        if end > len(data):
            return None
        return 2 + length if lrc(data[start : end - 1]) == data[end - 1] else "bad checksum"

    def _tags(self, frame: bytes) -> list[Tag] | Reject:
        length, command, data = frame[1], frame[3], frame[4:-1]
        if command != self.REAL_TIME_INVENTORY or length == self.ROUND_SUMMARY_LEN:
            return []
        if length == self.ERROR_LEN:
            return Reject(f"reader error code 0x{data[0]:02X}", frame)
        if len(data) < self._MIN_TAG_DATA:
            return Reject("inventory data shorter than FreqAnt, PC and RSSI", frame)
        antenna = (data[0] & 0x03) + 1
        return [Tag(antenna, data[3:-1], rssi_dbm(data[-1]))]
