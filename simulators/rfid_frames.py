"""Simulated RFID readers: the bytes and payloads real readers send, so emulators and tests can round-trip.

Serial frames carry their real checksums (computed by the drivers' own :func:`crc16` and
:func:`lrc`), so a frame built here is exactly what a reader on the line would send. RSSI goes
through the readers' 1 dB byte (serial), whole dBm (Zebra) or centi-dBm (Impinj), so pick
values those encodings can carry if you compare them after a round trip.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from mallstream.devices.rfid_serial import ChafonStream, R2000Stream, Tag, crc16, lrc, rssi_byte

CHAFON_MORE_FRAMES = 0x03
CHAFON_FINISHED = 0x01
#: Len = Adr reCmd Status + Ant Num + CRC(2) before any tag.
_CHAFON_EMPTY_LEN = 7
_MAX_LEN = 0xFF


def chafon_frame(address: int, command: int, status: int, data: bytes) -> bytes:
    """``Len Adr reCmd Status Data CRC-LSB CRC-MSB``, Len counting every byte after itself."""
    body = bytes([len(data) + 5, address, command, status]) + data
    crc = crc16(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def _chafon_antenna_bit(antenna: int) -> int:
    if not 1 <= antenna <= len(ChafonStream.ANTENNA_BITS):
        raise ValueError(f"a Chafon 288M has no antenna {antenna}")
    return 1 << (antenna - 1)


def chafon_inventory(tags: Sequence[Tag], address: int = 0x00, tags_per_frame: int = 255) -> bytes:
    """One inventory answer of a UHFReader288M, its frames back to back."""
    return b"".join(chafon_inventory_frames(tags, address, tags_per_frame))


def chafon_inventory_frames(tags: Sequence[Tag], address: int = 0x00, tags_per_frame: int = 255) -> list[bytes]:
    """The frames of one inventory answer of a UHFReader288M.

    Tags go out in frames of one antenna each with status 0x03 (more frames follow), as many as
    fit in a frame (or ``tags_per_frame``), and a closing status 0x01 frame with no tag.
    """
    frames = []
    for antenna, run in itertools.groupby(tags, key=lambda tag: tag.antenna):
        batch: list[bytes] = []
        for tag in run:
            entry = bytes([len(tag.epc)]) + tag.epc + bytes([rssi_byte(tag.rssi_dbm)])
            frame_len = _CHAFON_EMPTY_LEN + sum(map(len, batch)) + len(entry)
            if batch and (frame_len > _MAX_LEN or len(batch) == tags_per_frame):
                frames.append(_chafon_tag_frame(address, antenna, batch))
                batch = []
            batch.append(entry)
        frames.append(_chafon_tag_frame(address, antenna, batch))
    frames.append(chafon_frame(address, ChafonStream.INVENTORY, CHAFON_FINISHED, bytes([0x01, 0x00])))
    return frames


def _chafon_tag_frame(address: int, antenna: int, entries: list[bytes]) -> bytes:
    data = bytes([_chafon_antenna_bit(antenna), len(entries)]) + b"".join(entries)
    return chafon_frame(address, ChafonStream.INVENTORY, CHAFON_MORE_FRAMES, data)


def r2000_frame(address: int, command: int, data: bytes) -> bytes:
    """``A0 Len Addr Cmd Data Check``, Len counting every byte after itself, Check the LRC."""
    body = bytes([R2000Stream.HEAD, len(data) + 3, address, command]) + data
    return body + bytes([lrc(body)])


def _r2000_antenna_bits(antenna: int) -> int:
    if not 1 <= antenna <= 4:
        raise ValueError(f"an R2000 frame has no antenna {antenna}")
    return antenna - 1


def r2000_tag_frame(tag: Tag, address: int = 0x01, frequency: int = 0) -> bytes:
    """A real-time inventory (0x89) tag frame: FreqAnt, PC (EPC length in words), EPC, RSSI."""
    freq_ant = (frequency & 0x3F) << 2 | _r2000_antenna_bits(tag.antenna)
    pc = (len(tag.epc) // 2) << 11
    data = bytes([freq_ant]) + pc.to_bytes(2, "big") + tag.epc + bytes([rssi_byte(tag.rssi_dbm)])
    return r2000_frame(address, R2000Stream.REAL_TIME_INVENTORY, data)


def r2000_round_summary(antenna: int, read_rate: int, total_reads: int, address: int = 0x01) -> bytes:
    """The Len=0x0A frame closing an inventory round: antenna, read rate, total reads."""
    data = bytes([_r2000_antenna_bits(antenna)]) + read_rate.to_bytes(2, "big") + total_reads.to_bytes(4, "big")
    return r2000_frame(address, R2000Stream.REAL_TIME_INVENTORY, data)


def r2000_inventory(tags: Sequence[Tag], address: int = 0x01) -> bytes:
    """Real-time inventory rounds, their frames back to back."""
    return b"".join(r2000_inventory_frames(tags, address))


def r2000_inventory_frames(tags: Sequence[Tag], address: int = 0x01) -> list[bytes]:
    """Real-time inventory rounds, one per run of tags on the same antenna, each closed by its summary."""
    frames = []
    for antenna, run in itertools.groupby(tags, key=lambda tag: tag.antenna):
        round_tags = list(run)
        frames.extend(r2000_tag_frame(tag, address) for tag in round_tags)
        frames.append(r2000_round_summary(antenna, len(round_tags), len(round_tags), address))
    return frames


def zebra_tag_event(tag: Tag, ts: dt.datetime, event_num: int = 1, mac: str = "C4:7D:CC:FF:FF:FF") -> dict[str, Any]:
    """A Zebra FX IoT Connector tag data event; the timestamp keeps ``ts``'s offset, as ``+0000``."""
    timestamp = f"{ts:%Y-%m-%dT%H:%M:%S}.{ts.microsecond // 1000:03d}{ts:%z}"
    return {
        "type": "SIMPLE",
        "timestamp": timestamp,
        "data": {
            "MAC": mac,
            "antenna": tag.antenna,
            "eventNum": event_num,
            "format": "epc",
            "idHex": tag.epc.hex().upper(),
            "peakRssi": round(tag.rssi_dbm),
            "reads": 1,
        },
    }


def zebra_payload(events: Iterable[dict[str, Any]]) -> bytes:
    """Events back to back with nothing in between (``}{``), as the connector streams them."""
    return b"".join(msgspec.json.encode(event) for event in events)


def _iso_utc(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def impinj_tag_event(tag: Tag, ts: dt.datetime, hostname: str = "impinj-01-23-45") -> dict[str, Any]:
    """An Impinj R700 ``tagInventory`` event: EPC both base64 and hex, RSSI in centi-dBm."""
    return {
        "timestamp": _iso_utc(ts),
        "hostname": hostname,
        "eventType": "tagInventory",
        "tagInventoryEvent": {
            "epc": base64.b64encode(tag.epc).decode(),
            "epcHex": tag.epc.hex().upper(),
            "antennaPort": tag.antenna,
            "antennaName": f"ANTENNA-{tag.antenna}",
            "peakRssiCdbm": round(tag.rssi_dbm * 100),
            "lastSeenTime": _iso_utc(ts),
        },
    }


def impinj_payload(events: Sequence[dict[str, Any]], framing: Literal["array", "lines"] = "array") -> bytes:
    """A webhook batch (JSON array) or the HTTP stream's newline-delimited events."""
    if framing == "array":
        return msgspec.json.encode(list(events))
    return b"".join(msgspec.json.encode(event) + b"\n" for event in events)
