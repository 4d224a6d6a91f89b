"""RFID drivers: published vectors, stream reassembly, resync, fuzzing and encoder round trips."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mallstream.devices.normalise import Reject
from mallstream.devices.rfid_json import ImpinjStream, JsonValueSplitter, ZebraStream
from mallstream.devices.rfid_serial import (
    ChafonStream,
    DuplicateWindow,
    R2000Stream,
    ReaderStream,
    Tag,
    crc16,
    lrc,
)
from mallstream.simulators.rfid_frames import (
    chafon_frame,
    chafon_inventory,
    impinj_payload,
    impinj_tag_event,
    r2000_frame,
    r2000_inventory,
    r2000_round_summary,
    r2000_tag_frame,
    zebra_payload,
    zebra_tag_event,
)
from mallstream.streams.records import RfidRead, decode, encode

RECEIVED = dt.datetime(2025, 5, 1, 10, 0, 0, tzinfo=dt.UTC)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))

# Published vectors: wabson/chafon-rfid tests/test_uhfreader288.py, hex-in/pyImpinj, ZebraDevs examples.
CHAFON_ONE_TAG = bytes.fromhex("15 00 01 03 01 01 0C 00 00 00 00 00 00 00 00 00 00 03 13 6B B1 A5")
CHAFON_TWO_TAGS = bytes.fromhex("2300010301020c0000000000000000000003136b0c0000000000000000000003146c70f2")
CHAFON_ANTENNA_3 = bytes.fromhex("1500010304010c49440000000000000a0003346425c0")
CHAFON_NO_TAGS = bytes.fromhex("0700010101001e4b")
R2000_TAG = bytes.fromhex("A0 13 01 89 00 30 00 E2 80 11 70 20 00 14 CD 9B 5A 08 EC 4B 7B")
ZEBRA_EVENT = (
    b'{"type":"SIMPLE","timestamp":"2025-05-01T10:00:00.000+0000",'
    b'"data":{"MAC":"C4:7D:CC:FF:FF:FF","antenna":1,"eventNum":42,"format":"epc",'
    b'"idHex":"7EDA9038051002710002C0AE","peakRssi":-62,"reads":1}}'
)
# reelyactive/barnowl-impinj lib/testlistener.js, with a fixed time.
IMPINJ_EVENT = {
    "timestamp": "2025-05-01T10:00:01.250Z",
    "hostname": "impinj-01-23-45",
    "eventType": "tagInventory",
    "tagInventoryEvent": {
        "epc": "ftqQOAUQAnEAAsCu",
        "epcHex": "7EDA9038051002710002C0AE",
        "tid": "4oARcCAAFM2bWgjs",
        "tidHex": "E2801170200014CD9B5A08EC",
        "pc": "NAA=",
        "antennaPort": 2,
        "antennaName": "ANTENNA-NAME",
        "peakRssiCdbm": -7000,
        "frequency": 927250,
        "transmitPowerCdbm": 3000,
        "lastSeenTime": "2025-05-01T10:00:01.000Z",
        "phaseAngle": 69.00,
    },
}


def triples(events: list[RfidRead]) -> list[tuple[int, str, float]]:
    return [(e.antenna, e.epc, e.rssi_dbm) for e in events]


def tag_triples(tags: list[Tag]) -> list[tuple[int, str, float]]:
    return [(t.antenna, t.epc.hex().upper(), float(round(t.rssi_dbm))) for t in tags]


def decode_chunks(stream: ReaderStream, chunks: list[bytes], received_at: dt.datetime = RECEIVED):
    events, rejects = [], []
    for chunk in chunks:
        decoded = stream.feed(chunk, received_at)
        events += decoded.events
        rejects += decoded.rejects
    decoded = stream.flush(received_at)
    return events + decoded.events, rejects + decoded.rejects


def cut(payload: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted(points), len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(edges)]


# --- published vectors -------------------------------------------------------------------------


def test_chafon_vector_crc_and_read():
    assert crc16(CHAFON_ONE_TAG[:-2]) == 0xA5B1  # sent LSB first: B1 A5
    decoded = ChafonStream("dock-1").feed(CHAFON_ONE_TAG, RECEIVED.astimezone(SHANGHAI))
    assert decoded.rejects == []
    assert decoded.events == [
        RfidRead(reader_id="dock-1", antenna=1, epc="000000000000000000000313", rssi_dbm=0x6B - 129, ts=RECEIVED)
    ]
    assert decoded.events[0].ts.utcoffset() == dt.timedelta(0)


def test_chafon_vectors_multi_tag_antenna_bitmask_and_no_tags():
    stream = ChafonStream("dock-1", DuplicateWindow(dt.timedelta(0)))
    decoded = stream.feed(CHAFON_TWO_TAGS + CHAFON_ANTENNA_3 + CHAFON_NO_TAGS, RECEIVED)
    assert decoded.rejects == []
    assert triples(decoded.events) == [
        (1, "000000000000000000000313", 0x6B - 129),
        (1, "000000000000000000000314", 0x6C - 129),
        (3, "49440000000000000A000334", 0x64 - 129),  # bitmask 0x04 is the third antenna
    ]


def test_r2000_documented_example_verifies_and_decodes():
    assert lrc(R2000_TAG[:-1]) == R2000_TAG[-1] == 0x7B
    decoded = R2000Stream("gate-2").feed(R2000_TAG, RECEIVED)
    assert decoded.rejects == []
    [read] = decoded.events
    assert (read.antenna, read.epc, read.rssi_dbm) == (1, "E2801170200014CD9B5A08EC", 0x4B - 129)
    assert read.ts == RECEIVED and read.clock_skew_s is None


def test_zebra_documented_event():
    decoded = ZebraStream("fx-1").feed(ZEBRA_EVENT, RECEIVED + dt.timedelta(seconds=12))
    assert decoded.rejects == []
    assert decoded.events == [
        RfidRead(
            reader_id="fx-1", antenna=1, epc="7EDA9038051002710002C0AE", rssi_dbm=-62, ts=RECEIVED, clock_skew_s=-12.0
        )
    ]


def test_impinj_event_array_uses_last_seen_time_and_centi_dbm():
    decoded = ImpinjStream("r700").feed(json.dumps([IMPINJ_EVENT]).encode(), RECEIVED)
    assert decoded.rejects == []
    [read] = decoded.events
    assert (read.antenna, read.epc, read.rssi_dbm) == (2, "7EDA9038051002710002C0AE", -70.0)
    assert read.ts == RECEIVED + dt.timedelta(seconds=1)
    assert read.clock_skew_s is None  # within tolerance


def test_impinj_base64_epc_when_no_hex():
    tag = {k: v for k, v in IMPINJ_EVENT["tagInventoryEvent"].items() if k != "epcHex"}
    decoded = ImpinjStream("r700").feed(json.dumps({**IMPINJ_EVENT, "tagInventoryEvent": tag}).encode(), RECEIVED)
    assert triples(decoded.events) == [(2, "7EDA9038051002710002C0AE", -70.0)]


# --- framing, resync, bounds --------------------------------------------------------------------


def test_frame_split_at_every_position_decodes_the_same():
    cases = [
        (lambda: ChafonStream("c"), CHAFON_TWO_TAGS + CHAFON_NO_TAGS),
        (lambda: R2000Stream("r"), R2000_TAG + r2000_round_summary(1, 40, 40)),
        (lambda: ZebraStream("z"), ZEBRA_EVENT + ZEBRA_EVENT.replace(b'"antenna":1', b'"antenna":2')),
        (lambda: ImpinjStream("i"), impinj_payload([IMPINJ_EVENT, IMPINJ_EVENT], framing="lines")),
    ]
    for make, payload in cases:
        whole, rejects = decode_chunks(make(), [payload])
        assert whole and rejects == []
        for at in range(len(payload) + 1):
            events, rejects = decode_chunks(make(), [payload[:at], payload[at:]])
            assert events == whole and rejects == [], (make, at)


def test_chafon_resyncs_after_garbage_and_bad_crc():
    corrupt = bytearray(CHAFON_ANTENNA_3)
    corrupt[-1] ^= 0x01
    garbage = b"\x00\x01\x02\x03"
    stream = ChafonStream("c", DuplicateWindow(dt.timedelta(0)))
    decoded = stream.feed(garbage + CHAFON_ONE_TAG + bytes(corrupt) + CHAFON_TWO_TAGS, RECEIVED)
    assert [e.epc[-4:] for e in decoded.events] == ["0313"]
    assert decoded.rejects[0] == Reject("garbage before frame", garbage)
    assert decoded.rejects[1].reason == "bad CRC" and corrupt.startswith(decoded.rejects[1].raw)
    # A byte inside the broken frame reads as a length reaching past the input: the stream waits for
    # it until more bytes come or the line goes quiet (flush); then the frames behind it come out.
    assert stream.buffered.endswith(CHAFON_TWO_TAGS)
    rest = stream.flush(RECEIVED)
    assert [e.epc[-4:] for e in rest.events] == ["0313", "0314"]
    assert b"".join(r.raw for r in decoded.rejects[1:] + rest.rejects) == bytes(corrupt)


def test_r2000_resyncs_after_bad_checksum_and_skips_summary_without_reject():
    corrupt = bytearray(R2000_TAG)
    corrupt[10] ^= 0x40
    stream = R2000Stream("r")
    payload = b"\x13\x37" + bytes(corrupt) + R2000_TAG + r2000_round_summary(1, 12, 34)
    decoded = stream.feed(payload, RECEIVED)
    assert triples(decoded.events) == [(1, "E2801170200014CD9B5A08EC", -54.0)]
    assert decoded.rejects == [Reject("garbage before frame", b"\x13\x37"), Reject("bad checksum", bytes(corrupt))]


def test_reader_error_answers_are_rejects_other_commands_are_not():
    chafon = ChafonStream("c").feed(
        chafon_frame(0, 0x01, 0xFB, b"") + chafon_frame(0, 0x01, 0xF8, b"") + chafon_frame(0, 0x21, 0x00, b"\x01\x02"),
        RECEIVED,
    )
    assert chafon.events == [] and [r.reason for r in chafon.rejects] == ["reader status 0xF8"]
    r2000 = R2000Stream("r").feed(r2000_frame(1, 0x89, b"\x22") + r2000_frame(1, 0x72, b"\x01\x02"), RECEIVED)
    assert r2000.events == [] and [r.reason for r in r2000.rejects] == ["reader error code 0x22"]


def test_malformed_chafon_inventory_data_is_rejected_whole():
    bad_antenna = chafon_frame(0, 0x01, 0x03, b"\x03\x01\x02\xab\xcd\x60")
    short = chafon_frame(0, 0x01, 0x03, b"\x01\x02\x02\xab\xcd\x60\x0c\x00")
    decoded = ChafonStream("c").feed(bad_antenna + short, RECEIVED)
    assert decoded.events == []
    assert [(r.reason, r.raw) for r in decoded.rejects] == [
        ("antenna bitmask 0x03 is not one antenna", bad_antenna),
        ("inventory data ends inside tag 2 of 2", short),
    ]


def test_chafon_multi_frame_inventory_status_03():
    tags = [Tag(1, bytes([i]) * 12, -40) for i in range(3)] + [Tag(4, b"\xee" * 12, -60)]
    payload = chafon_inventory(tags, tags_per_frame=2)
    assert payload.count(b"\x00\x01\x03") == 3  # frames [2 tags], [1 tag], [antenna 4] say more follow
    events, rejects = decode_chunks(ChafonStream("c"), [payload])
    assert rejects == [] and triples(events) == tag_triples(tags)


def test_long_length_byte_waits_then_flush_recovers_the_frame():
    stream = ChafonStream("c")
    assert stream.feed(b"\xf0" + CHAFON_ONE_TAG, RECEIVED).events == []  # 0xF0 could be a 241-byte frame
    decoded = stream.flush(RECEIVED)
    assert triples(decoded.events) == [(1, "000000000000000000000313", -22.0)]
    assert decoded.rejects == [Reject("truncated frame at end of input", b"\xf0")]
    assert stream.buffered == b""


def test_buffers_stay_bounded_on_endless_input():
    chafon = ChafonStream("c")
    r2000 = R2000Stream("r")
    for _ in range(50):
        chafon.feed(b"\xff" * 97, RECEIVED)
        r2000.feed(b"\xa0\xff" * 50, RECEIVED)
        assert len(chafon.buffered) < ChafonStream.max_frame and len(r2000.buffered) < R2000Stream.max_frame
    splitter = JsonValueSplitter(max_value_bytes=1000)
    rejects = []
    for _ in range(50):
        rejects += splitter.split(b'{"a":"' + b"x" * 97)
        assert len(splitter.buffered) <= 1000
    assert rejects and all(r.reason == "JSON value longer than 1000 bytes" for r in rejects)


def test_json_splitter_handles_glued_lines_arrays_strings_and_garbage():
    payload = b'{"a":"}{\\"["}{"b":[1,{"c":2}]}\n[{"d":3}]  noise {"e":\'x\'} {"f":'
    splitter = JsonValueSplitter()
    assert splitter.split(payload) == [
        b'{"a":"}{\\"["}',
        b'{"b":[1,{"c":2}]}',
        b'[{"d":3}]',
        Reject("not a JSON object or array", b"noise "),
        b"{\"e\":'x'}",
    ]
    assert splitter.buffered == b'{"f":'
    assert splitter.split(b"4}") == [b'{"f":4}'] and splitter.buffered == b""


def test_json_events_are_judged_one_by_one():
    no_offset = ZEBRA_EVENT.replace(b".000+0000", b".000")
    bad_epc = ZEBRA_EVENT.replace(b"7EDA", b"XYZ!")
    array = b'[1, {"type":"SIMPLE"}]'
    decoded = ZebraStream("z").feed(b"{oops}" + no_offset + bad_epc + array + ZEBRA_EVENT, RECEIVED)
    assert triples(decoded.events) == [(1, "7EDA9038051002710002C0AE", -62.0)]
    reasons = [r.reason for r in decoded.rejects]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "timestamp '2025-05-01T10:00:00.000' has no UTC offset"
    assert reasons[2].startswith("invalid tag read:") and "epc" in reasons[2]
    assert reasons[3] == "event is not a JSON object" and decoded.rejects[3].raw == b"1"
    assert reasons[4].startswith("not a Zebra tag data event")


def test_impinj_other_event_types_are_ignored_not_rejected():
    status = {
        "timestamp": "2025-05-01T10:00:00Z",
        "hostname": "h",
        "eventType": "inventoryStatus",
        "inventoryStatusEvent": {"inventoryStatus": "running"},
    }
    decoded = ImpinjStream("i").feed(impinj_payload([status, IMPINJ_EVENT, {"hostname": "h"}]), RECEIVED)
    assert len(decoded.events) == 1
    assert [r.reason for r in decoded.rejects] == ["not an Impinj event: no eventType"]


def test_duplicate_window_marks_repeats_per_antenna():
    window = DuplicateWindow(dt.timedelta(seconds=1))
    stream = R2000Stream("r", window)
    at = [RECEIVED + dt.timedelta(milliseconds=ms) for ms in (0, 400, 999, 1000, 1500)]
    flags = [stream.feed(R2000_TAG, t).events[0].duplicate for t in at]
    assert flags == [False, True, True, False, True]
    other_antenna = r2000_tag_frame(Tag(2, bytes.fromhex("E2801170200014CD9B5A08EC"), -54))
    assert stream.feed(other_antenna, at[-1]).events[0].duplicate is False
    never = R2000Stream("r", DuplicateWindow(dt.timedelta(0)))
    assert [never.feed(R2000_TAG, RECEIVED).events[0].duplicate for _ in range(3)] == [False] * 3


# --- properties: fuzzing and round trips ------------------------------------------------------

STREAMS = [ChafonStream, R2000Stream, ZebraStream, ImpinjStream]
WHITESPACE = b" \t\r\n"


def assert_accounted(payload: bytes, pieces: list[bytes | Reject], buffered: bytes, gaps: bytes = b"") -> None:
    """Pieces and the buffer are the input, in order; only ``gaps`` bytes may fall between them."""
    pos = 0
    for piece in [*pieces, buffered]:
        raw = piece.raw if isinstance(piece, Reject) else piece
        if isinstance(piece, Reject):
            assert piece.reason and raw
        while not payload.startswith(raw, pos) and pos < len(payload) and payload[pos] in gaps:
            pos += 1
        assert payload.startswith(raw, pos), (payload, pieces, buffered)
        pos += len(raw)
    assert all(byte in gaps for byte in payload[pos:])


chunked = st.lists(st.binary(max_size=64), max_size=12)


@pytest.mark.parametrize("make", STREAMS)
@given(chunks=chunked)
@settings(max_examples=150, deadline=None)
def test_fuzz_every_byte_is_a_piece_a_reject_or_buffered(make, chunks):
    stream = make("fuzz")
    gaps = WHITESPACE if issubclass(make, (ZebraStream, ImpinjStream)) else b""
    pieces = []
    for chunk in chunks:
        pieces += stream.split(chunk)
        assert len(stream.buffered) <= 256 * 1024 + 1
    assert_accounted(b"".join(chunks), pieces, stream.buffered, gaps)
    assert_accounted(b"".join(chunks), pieces + stream.split(b"", final=True), b"", gaps)
    assert stream.buffered == b""


def assert_sound(decoded_events: list[RfidRead], rejects: list[Reject]) -> None:
    for event in decoded_events:
        assert decode(RfidRead, encode(event)) == event  # every record passes the wire validation
    assert all(r.reason for r in rejects)


@pytest.mark.parametrize("make", STREAMS)
@given(chunks=chunked)
@settings(max_examples=150, deadline=None)
def test_fuzz_feed_never_raises_on_bytes(make, chunks):
    assert_sound(*decode_chunks(make("fuzz"), chunks))


@given(
    frames=st.lists(
        st.tuples(st.sampled_from([0x01, 0x01, 0x01, 0x21]), st.integers(0, 255), st.binary(max_size=60)),
        max_size=6,
    )
)
@settings(max_examples=300, deadline=None)
def test_fuzz_checksummed_chafon_frames_with_arbitrary_data(frames):
    payload = b"".join(chafon_frame(0, cmd, status, data) for cmd, status, data in frames)
    events, rejects = decode_chunks(ChafonStream("c"), [payload])
    assert_sound(events, rejects)
    assert not any(r.reason in ("bad CRC", "garbage before frame") for r in rejects)


@given(frames=st.lists(st.tuples(st.sampled_from([0x89, 0x89, 0x72]), st.binary(max_size=40)), max_size=6))
@settings(max_examples=300, deadline=None)
def test_fuzz_checksummed_r2000_frames_with_arbitrary_data(frames):
    payload = b"".join(r2000_frame(1, cmd, data) for cmd, data in frames)
    events, rejects = decode_chunks(R2000Stream("r"), [payload])
    assert_sound(events, rejects)
    assert not any(r.reason in ("bad checksum", "garbage before frame") for r in rejects)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
interesting_keys = st.sampled_from(
    [
        "type",
        "timestamp",
        "data",
        "idHex",
        "antenna",
        "peakRssi",
        "eventType",
        "tagInventoryEvent",
        "epc",
        "epcHex",
        "antennaPort",
        "peakRssiCdbm",
        "lastSeenTime",
    ]
)
json_values = st.recursive(
    json_scalars | st.sampled_from(["tagInventory", "2025-05-01T10:00:00Z", "7EDA", "ABCD", "q80="]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(interesting_keys | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("make", [ZebraStream, ImpinjStream])
@given(values=st.lists(json_values, max_size=5), separator=st.sampled_from(["", "\n", " ", ","]), data=st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_arbitrary_json_text(make, values, separator, data):
    payload = separator.join(json.dumps(v) for v in values).encode()
    points = data.draw(st.lists(st.integers(0, len(payload)), max_size=4))
    assert_sound(*decode_chunks(make("fuzz"), cut(payload, points)))


epcs = st.integers(1, 16).flatmap(lambda words: st.binary(min_size=2 * words, max_size=2 * words))
tags_strategy = st.lists(
    st.builds(Tag, antenna=st.integers(1, 4), epc=epcs, rssi_dbm=st.integers(-110, -20).map(float)), max_size=12
)


def encode_for(make, tags: list[Tag]) -> bytes:
    if make is ChafonStream:
        return chafon_inventory(tags)
    if make is R2000Stream:
        return r2000_inventory(tags)
    if make is ZebraStream:
        return zebra_payload(zebra_tag_event(t, RECEIVED, i) for i, t in enumerate(tags))
    return impinj_payload([impinj_tag_event(t, RECEIVED) for t in tags], framing="array")


@pytest.mark.parametrize("make", STREAMS)
@given(tags=tags_strategy, data=st.data())
@settings(max_examples=150, deadline=None)
def test_round_trip_random_tags_random_chunks(make, tags, data):
    payload = encode_for(make, tags)
    points = data.draw(st.lists(st.integers(0, len(payload)), max_size=8))
    events, rejects = decode_chunks(make("rt"), cut(payload, points))
    assert rejects == []
    assert triples(events) == tag_triples(tags)
    assert all(e.ts == RECEIVED and e.reader_id == "rt" for e in events)


# Noise that cannot start a frame or a JSON value; noise that can is covered by the fuzz tests above
# and by the explicit bad-checksum resync tests.
NOISE = {
    ChafonStream: st.binary(max_size=8).map(lambda b: bytes(x % 5 for x in b)),
    R2000Stream: st.binary(max_size=8).map(lambda b: b.replace(b"\xa0", b"\x0a")),
    ZebraStream: st.text("abc xyz0129\n", max_size=8).map(str.encode),
    ImpinjStream: st.text("abc xyz0129\n", max_size=8).map(str.encode),
}
FRAMES = {
    ChafonStream: lambda tags: [chafon_inventory([t]) for t in tags],
    R2000Stream: lambda tags: [r2000_tag_frame(t) for t in tags],
    ZebraStream: lambda tags: [zebra_payload([zebra_tag_event(t, RECEIVED)]) for t in tags],
    ImpinjStream: lambda tags: [impinj_payload([impinj_tag_event(t, RECEIVED)], framing="lines") for t in tags],
}


@pytest.mark.parametrize("make", STREAMS)
@given(tags=tags_strategy, data=st.data())
@settings(max_examples=150, deadline=None)
def test_round_trip_with_noise_between_frames(make, tags, data):
    parts = []
    for frame in FRAMES[make](tags):
        parts += [data.draw(NOISE[make]), frame]
    payload = b"".join(parts)
    points = data.draw(st.lists(st.integers(0, len(payload)), max_size=8))
    events, rejects = decode_chunks(make("rt"), cut(payload, points))
    assert triples(events) == tag_triples(tags)
    noise, rejected = b"".join(parts[0::2]), b"".join(r.raw for r in rejects)
    if make in (ZebraStream, ImpinjStream):  # whitespace between values is a separator, not noise
        noise, rejected = noise.translate(None, WHITESPACE), rejected.translate(None, WHITESPACE)
    assert rejected == noise
