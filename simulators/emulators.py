"""Device emulators: a simulated day's records sent back as the wire traffic of each configured device.

The mall-day model (:mod:`.mallday`) says what the devices saw, already normalised. Playing it
through the gateway needs what the devices would really send, over their real transports, so
every driver and bridge is exercised without hardware:

* RFID reads of a Chafon 288M or R2000 reader become serial frames written to a pseudo-terminal;
  the gateway opens its slave path as it would open ``/dev/ttyUSB0``. Zebra FX and Impinj R700
  reads become JSON messages published with paho-mqtt to the reader's topic.
* Footfall ticks become the cumulative totals counters really report (:class:`CumulativeCounter`):
  Xovis live-data pushes, Axis live sums, Milesight VS350 uint16 totals. A counter's first report
  only sets the hub's baseline, so the emulator sends a zero baseline at the start of the first
  interval and every simulated person is counted.
* Parking events become Hikvision ISAPI ANPR alerts (XML, optionally the multipart push with a
  picture) or Plate Recognizer Stream webhooks.
* Receipts are rung up by emulated tills, which publish them as a POS integrator would:
  through :class:`~mallstream.devices.pos_producer.PosProducer`, validated and keyed by sale,
  straight to the broker (tills do not go through the gateway).

A payload device pushes over HTTP when its address is a path (``/push/xovis``) and over MQTT
otherwise, as the gateway's bridges expect. :meth:`DeviceEmulators.play` sends every record of
a day, devices and tills, in one ordered play.

:class:`WireFaults` damage the traffic on its way, seeded per device and kind of fault, and
:class:`Injected` tells what they did, so a test can state the exact effect:

* corrupt units: an RFID read or plate read whose first unit (the one carrying the reading)
  gets a flipped bit or is cut short, so the record is lost; or garbage bytes go down a serial
  line before the frame, and the record survives. Every damaged byte is dead-lettered.
* counter resets (a Xovis COUNT_RESET event, Axis totals restarting at 0) just after a report,
  uint16 rollover (Milesight totals starting just below 65536), and counter reports pushed twice:
  none of them loses or invents a person. Counters' reports are never damaged: a lost total is
  made up by the next one, so it would only blur the intervals.

Record-level faults (duplicate reads, clock skew, late events, outages) are the mall-day
model's (:class:`~mallstream.simulators.mallday.FaultKnobs`) and play through as they are.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import os
import random
import struct
import termios
import time
import tty
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo

import msgspec

from mallstream.auth import OneKey, Principal
from mallstream.devices.bridges import PAYLOAD_PROTOCOLS, SERIAL_PROTOCOLS, Placed, placed_devices, transport_of
from mallstream.devices.counters import UINT16_MODULUS, Direction
from mallstream.devices.normalise import Decoded
from mallstream.devices.pos_producer import PosProducer
from mallstream.devices.rfid_serial import Tag
from mallstream.sending import producer_limits
from mallstream.settings import Device, Kafka, Mqtt, Settings
from mallstream.simulators.pacing import Pacer
from mallstream.streams.records import FootfallTick, InputEvent, ParkingEvent, PosTransaction, RfidRead, encode
from mallstream.transports import kafka_options, mqtt_client

from .rfid_frames import (
    chafon_inventory_frames,
    impinj_payload,
    impinj_tag_event,
    r2000_inventory_frames,
    zebra_payload,
    zebra_tag_event,
)

JSON = "application/json"
ISAPI_NAMESPACE = "http://www.isapi.org/ver20/XMLSchema"
MULTIPART_BOUNDARY = "MIME_boundary"
#: Enough of a JPEG (start and end of image) for a picture part the gateway must skip.
PICTURE = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\xff\xd9"
#: People a Milesight counter with ``uint16_rollover`` counts before its totals wrap.
ROLLOVER_HEADROOM = 5
#: Longest run of garbage bytes put on a serial line before a frame.
MAX_GARBAGE = 8

TransportKind = Literal["serial", "mqtt", "http", "kafka"]


class EmulatorError(RuntimeError):
    """The gateway refused or never acknowledged what an emulated device sent."""


class Payload(NamedTuple):
    """One transport unit as a device sends it: a serial write, an MQTT message, an HTTP body, a receipt.

    ``corrupt`` marks a unit damaged on purpose, which the gateway is expected to refuse.
    """

    body: bytes
    content_type: str = JSON
    corrupt: bool = False


#: Turns one normalised record back into what its device sends for it.
Encoder = Callable[[InputEvent], list[Payload]]


# --- wire faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireFaults:
    """Damage on the wire between the devices and the gateway; all off by default.

    Rates are chances per record: ``corrupt_rate`` per RFID read or plate read, the counter
    knobs per counter report. Each device draws from its own stream per kind of fault, seeded
    by ``seed``, so turning one knob does not reshuffle another.
    """

    corrupt_rate: float = 0.0
    counter_reset_rate: float = 0.0
    uint16_rollover: bool = False
    repeat_rate: float = 0.0
    seed: int = 0


#: Kinds of injected fault, as :class:`Injected` counts them.
BIT_FLIP, TRUNCATED, GARBAGE = "bit_flip", "truncated", "garbage"
COUNTER_RESET, UINT16_ROLLOVER, REPEATED_PUSH = "counter_reset", "uint16_rollover", "repeated_push"
#: Corruptions that destroy the unit carrying a reading: its record never reaches the hub.
RECORD_LOST = (BIT_FLIP, TRUNCATED)


@dataclass
class Injected:
    """What the wire faults did: times per (device, kind), and bytes per device the gateway must dead-letter."""

    faults: Counter[tuple[str, str]] = field(default_factory=Counter)
    corrupt_bytes: Counter[str] = field(default_factory=Counter)

    def per_device(self, *kinds: str) -> Counter[str]:
        """Times faults of these kinds hit each device."""
        times: Counter[str] = Counter()
        for (device, kind), n in self.faults.items():
            if kind in kinds:
                times[device] += n
        return times


class DeviceWire:
    """One device's end of the wire: how it sends (``multipart_anpr``) and the faults that hit it."""

    def __init__(
        self,
        device_id: str,
        faults: WireFaults = WireFaults(),
        injected: Injected | None = None,
        *,
        multipart_anpr: bool = False,
    ) -> None:
        self.device_id, self.faults, self.multipart_anpr = device_id, faults, multipart_anpr
        self.injected = injected if injected is not None else Injected()
        self._rngs: dict[str, random.Random] = {}

    def rng(self, kind: str) -> random.Random:
        if kind not in self._rngs:
            self._rngs[kind] = random.Random(f"{self.faults.seed}:{self.device_id}:{kind}")
        return self._rngs[kind]

    def happens(self, kind: str, rate: float) -> bool:
        return rate > 0 and self.rng(kind).random() < rate

    def note(self, kind: str, times: int = 1, corrupt_bytes: int = 0) -> None:
        self.injected.faults[self.device_id, kind] += times
        self.injected.corrupt_bytes[self.device_id] += corrupt_bytes

    def damaging(self, encode: Encoder, serial: bool) -> Encoder:
        """``encode`` for a device whose records are single readings, each maybe damaged on the wire."""
        return lambda record: self.damaged(encode(record), serial)

    def damaged(self, payloads: list[Payload], serial: bool) -> list[Payload]:
        """The units of one reading, maybe damaged: the first (which carries the reading) bit-flipped
        or cut within its first half (no JSON value inside it can close), or garbage before it."""
        if not self.happens("corrupt", self.faults.corrupt_rate):
            return payloads
        rng = self.rng("corrupt")
        first, rest = payloads[0], payloads[1:]
        kind = rng.choice((BIT_FLIP, TRUNCATED, GARBAGE)) if serial else TRUNCATED
        if kind == GARBAGE:
            noise = rng.randbytes(rng.randint(1, MAX_GARBAGE))
            self.note(kind, corrupt_bytes=len(noise))
            return [Payload(noise, first.content_type, corrupt=True), *payloads]
        body = bytearray(first.body)
        if kind == BIT_FLIP:
            bit = rng.randrange(len(body) * 8)
            body[bit // 8] ^= 1 << bit % 8
        else:
            del body[rng.randint(1, len(body) // 2) :]
        self.note(kind, corrupt_bytes=len(body))
        return [first._replace(body=bytes(body), corrupt=True), *rest]


# --- RFID readers ---------------------------------------------------------------------------------


def _tag(read: RfidRead) -> Tag:
    return Tag(read.antenna, bytes.fromhex(read.epc), read.rssi_dbm)


def chafon_frames(read: RfidRead) -> list[Payload]:
    """A one-tag inventory answer of a Chafon 288M, a write per frame; the reader has no clock, so ``ts`` is not sent."""
    return [Payload(frame, "") for frame in chafon_inventory_frames([_tag(read)])]


def r2000_frames(read: RfidRead) -> list[Payload]:
    """A one-tag real-time inventory round of an R2000 reader, a write per frame; no clock, as for the Chafon."""
    return [Payload(frame, "") for frame in r2000_inventory_frames([_tag(read)])]


def zebra_message(read: RfidRead) -> list[Payload]:
    return [Payload(zebra_payload([zebra_tag_event(_tag(read), read.ts)]))]


def impinj_message(read: RfidRead) -> list[Payload]:
    return [Payload(impinj_payload([impinj_tag_event(_tag(read), read.ts)]))]


# --- people counters ------------------------------------------------------------------------------

#: The reports a counter sends at ``ts`` for its running totals, keyed by route.
Report = Callable[[dt.datetime, Mapping[str, int]], list[Payload]]


class CumulativeCounter:
    """Per-interval ticks turned back into the running totals a counter reports.

    ``routes`` maps each of the device's counters to the direction it counts; a tick's count for
    a direction goes to the first route of that direction. The first tick is preceded by a
    report of all zeros at the start of its interval: the hub takes a counter's first report as
    its baseline only, so without it the first interval's people would not be counted.

    Faults: a counter that can ``reset`` restarts at zero halfway between two reports, telling
    the hub with ``reset``; one whose totals wrap at ``wraps_at`` starts just below it with
    ``uint16_rollover``; any report may be pushed twice.
    """

    def __init__(
        self,
        routes: Mapping[str, Direction],
        report: Report,
        wire: DeviceWire,
        *,
        reset: Report | None = None,
        wraps_at: int | None = None,
    ) -> None:
        self.report, self.wire, self.reset, self.wraps_at = report, wire, reset, wraps_at
        start = wraps_at - ROLLOVER_HEADROOM if wraps_at and wire.faults.uint16_rollover else 0
        self.totals = dict.fromkeys(routes, start)
        self._last_report: dt.datetime | None = None
        self._route_of: dict[Direction, str] = {}
        for route, direction in routes.items():
            self._route_of.setdefault(direction, route)

    def __call__(self, tick: FootfallTick) -> list[Payload]:
        payloads = []
        last = self._last_report
        if last is None:
            last = tick.ts - dt.timedelta(seconds=tick.interval_s)
            payloads += self.report(last, self.totals)
        elif (
            self.reset
            and tick.ts - last >= dt.timedelta(seconds=2)  # an Axis stamps whole seconds
            and self.wire.happens(COUNTER_RESET, self.wire.faults.counter_reset_rate)
        ):
            self.totals = dict.fromkeys(self.totals, 0)
            payloads += self.reset(last + (tick.ts - last) / 2, self.totals)
            self.wire.note(COUNTER_RESET)
        for direction, count in (("in", tick.count_in), ("out", tick.count_out)):
            if direction in self._route_of:
                route = self._route_of[direction]
                before, self.totals[route] = self.totals[route], self.totals[route] + count
                if self.wraps_at and before // self.wraps_at != self.totals[route] // self.wraps_at:
                    self.wire.note(UINT16_ROLLOVER)
        reports = self.report(tick.ts, self.totals)
        if self.wire.happens(REPEATED_PUSH, self.wire.faults.repeat_rate):
            reports += reports
            self.wire.note(REPEATED_PUSH)
        self._last_report = max(last, tick.ts)
        return payloads + reports


class XovisPushes:
    """Xovis live-data pushes, one per sensor, each counter's total as a COUNT_INCREMENT event.

    Route keys are ``"<sensor serial>/<counter_id>"`` as in the device config. Every push carries
    every counter, changed or not, so a quiet interval still reaches the hub as a tick.
    """

    def __init__(self, agent_id: int = 1) -> None:
        self.agent_id = agent_id
        self._package_id = 0

    def __call__(self, ts: dt.datetime, totals: Mapping[str, int]) -> list[Payload]:
        return self._pushes(ts, totals, "COUNT_INCREMENT")

    def reset(self, ts: dt.datetime, totals: Mapping[str, int]) -> list[Payload]:
        """The sensor's counters restarted: a COUNT_RESET event per counter."""
        return self._pushes(ts, totals, "COUNT_RESET")

    def _pushes(self, ts: dt.datetime, totals: Mapping[str, int], event_type: str) -> list[Payload]:
        by_sensor: dict[str, list[tuple[int, int]]] = {}
        for route, value in totals.items():
            serial, _, counter_id = route.rpartition("/")
            by_sensor.setdefault(serial, []).append((int(counter_id), value))
        return [self._push(serial, counters, ts, event_type) for serial, counters in by_sensor.items()]

    def _push(self, serial: str, counters: list[tuple[int, int]], ts: dt.datetime, event_type: str) -> Payload:
        self._package_id += 1
        events = [
            {"category": "COUNT", "type": event_type, "attributes": {"counter_id": counter_id, "counter_value": value}}
            for counter_id, value in counters
        ]
        frame = {
            "framenumber": self._package_id,
            "time": round(ts.timestamp() * 1000),
            "tracked_objects": [],
            "events": events,
        }
        return Payload(
            msgspec.json.encode(
                {
                    "live_data": {
                        "package_info": {"version": "5.0", "id": self._package_id, "agent_id": self.agent_id},
                        "sensor_info": {"serial_number": serial, "type": "PC2SE"},
                        "frames": [frame],
                    }
                }
            )
        )


def xovis_counter(placed: Placed, wire: DeviceWire) -> CumulativeCounter:
    pushes = XovisPushes()
    return CumulativeCounter(placed.device.routes, pushes, wire, reset=pushes.reset)


def axis_reports(serial: str, device_tz: dt.tzinfo) -> Report:
    """Axis live sums: totals since the count began, stamped in the camera's zone without an offset."""

    def report(ts: dt.datetime, totals: Mapping[str, int]) -> list[Payload]:
        stamp = ts.astimezone(device_tz).strftime("%Y%m%d%H%M%S")
        return [
            Payload(
                msgspec.json.encode({"serial": serial, "timestamp": stamp, "in": totals["in"], "out": totals["out"]})
            )
        ]

    return report


def axis_counter(placed: Placed, wire: DeviceWire) -> CumulativeCounter:
    """An Axis camera that restarts reports its zeroed totals at once: the hub sees them drop."""
    report = axis_reports(placed.device.id, ZoneInfo(placed.timezone))
    return CumulativeCounter(BOTH_WAYS, report, wire, reset=report)


def milesight_report(ts: dt.datetime, totals: Mapping[str, int]) -> list[Payload]:
    """A VS350 uplink: uint16 totals that wrap at 65536; a live uplink carries no device time."""
    return [
        Payload(
            msgspec.json.encode(
                {"total_in": totals["in"] % UINT16_MODULUS, "total_out": totals["out"] % UINT16_MODULUS}
            )
        )
    ]


BOTH_WAYS: Mapping[str, Direction] = {"in": "in", "out": "out"}


# --- car-park gates -------------------------------------------------------------------------------


def hikvision_alert(event: ParkingEvent) -> bytes:
    """An ISAPI EventNotificationAlert for one plate read; the gate's direction is config, not camera."""
    root = ET.Element("EventNotificationAlert", version="2.0", xmlns=ISAPI_NAMESPACE)
    for name, text in (("dateTime", event.ts.isoformat()), ("eventType", "ANPR"), ("eventState", "active")):
        ET.SubElement(root, name).text = text
    anpr = ET.SubElement(root, "ANPR")
    ET.SubElement(anpr, "licensePlate").text = event.plate
    ET.SubElement(anpr, "confidenceLevel").text = "95"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def hikvision_multipart(alert: bytes) -> Payload:
    """The multipart/form-data push cameras send with pictures: the alert as anpr.xml, then a plate picture."""

    def part(name: str, content_type: str, content: bytes) -> bytes:
        head = (
            f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\nContent-Length: {len(content)}\r\n\r\n"
        )
        return head.encode() + content + b"\r\n"

    body = part("anpr.xml", "text/xml", alert) + part("licensePlatePicture.jpg", "image/jpeg", PICTURE)
    return Payload(
        body + f"--{MULTIPART_BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"
    )


def hikvision_encoder(multipart: bool) -> Encoder:
    def encode(event: ParkingEvent) -> list[Payload]:
        alert = hikvision_alert(event)
        return [hikvision_multipart(alert) if multipart else Payload(alert, "application/xml")]

    return encode


def plate_recognizer_encoder(camera_id: str) -> Encoder:
    """Stream webhooks from one camera: the plate in lower case, as Stream reports it, in UTC."""

    def encode(event: ParkingEvent) -> list[Payload]:
        data = {
            "camera_id": camera_id,
            "timestamp": event.ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "results": [{"plate": event.plate.lower(), "score": 0.9}],
        }
        return [Payload(msgspec.json.encode({"hook": {"id": camera_id, "event": "recognition"}, "data": data}))]

    return encode


def till_receipt(receipt: PosTransaction) -> list[Payload]:
    """A receipt as a till publishes it: the hub's own JSON."""
    return [Payload(encode(receipt))]


#: Protocol names in the config -> how to build a device's encoder for its end of the wire.
ENCODERS: dict[str, Callable[[Placed, DeviceWire], Encoder]] = {
    "chafon-288m": lambda placed, wire: wire.damaging(chafon_frames, serial=True),
    "r2000": lambda placed, wire: wire.damaging(r2000_frames, serial=True),
    "zebra-fx": lambda placed, wire: wire.damaging(zebra_message, serial=False),
    "impinj-r700": lambda placed, wire: wire.damaging(impinj_message, serial=False),
    "xovis": xovis_counter,
    "axis": axis_counter,
    "milesight-vs350": lambda placed, wire: CumulativeCounter(
        BOTH_WAYS, milesight_report, wire, wraps_at=UINT16_MODULUS
    ),
    "hikvision-isapi": lambda placed, wire: wire.damaging(hikvision_encoder(wire.multipart_anpr), serial=False),
    "plate-recognizer": lambda placed, wire: wire.damaging(plate_recognizer_encoder(placed.device.id), serial=False),
}


def gateway_decoder(placed: Placed) -> Callable[[Payload, dt.datetime], Decoded]:
    """The driver the gateway's bridges use for this device, one payload at a time, without transport:
    what checks an encoder (and benches a driver) on its own. For a serial reader, an empty payload
    stands for the line going quiet: the bridge then decides about the bytes it still holds."""
    protocol = placed.device.protocol
    if protocol in SERIAL_PROTOCOLS:  # an empty payload is the line going quiet, when the bridge flushes
        stream = SERIAL_PROTOCOLS[protocol][0](placed.device.id)
        return lambda payload, received_at: (
            stream.feed(payload.body, received_at) if payload.body else stream.flush(received_at)
        )
    driver = PAYLOAD_PROTOCOLS[protocol](placed)
    return lambda payload, received_at: driver(payload.body, received_at, payload.content_type)[0]


# --- transports -----------------------------------------------------------------------------------


class Transport(Protocol):
    def send(self, payload: Payload) -> None: ...


class PseudoTerminal:
    """A serial line without hardware: the emulator writes the master side, the gateway opens :attr:`path`."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes pass untouched: no echo, no CR/LF translation
        self._own_speed = termios.tcgetattr(self._slave)[4]
        self.path = os.ttyname(self._slave)

    def opened(self) -> bool:
        """Whether the other side has opened and configured the line (it set its own speed).

        pyserial empties the input when it opens a port, so bytes written before are lost,
        as they would be on a real line.
        """
        return termios.tcgetattr(self._slave)[4] != self._own_speed

    def unread(self) -> int:
        """Bytes written that the other side has not read yet."""
        return struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]

    def send(self, payload: Payload) -> None:
        view = memoryview(payload.body)
        while view:
            view = view[os.write(self._master, view) :]

    def close(self) -> None:
        os.close(self._master)
        os.close(self._slave)


class MqttPublisher:
    """One paho-mqtt connection shared by every MQTT device; messages go out with QoS 1."""

    def __init__(self, broker: Mqtt, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.client = mqtt_client(broker)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def topic(self, name: str) -> Transport:
        return _MqttTopic(self, name)

    def publish(self, topic: str, body: bytes) -> None:
        """Returns once the MQTT broker acknowledged the message, so devices stay in time order."""
        info = self.client.publish(topic, body, qos=1)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise EmulatorError(f"MQTT message to {topic} not acknowledged within {self.timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _MqttTopic(NamedTuple):
    publisher: MqttPublisher
    topic: str

    def send(self, payload: Payload) -> None:
        self.publisher.publish(self.topic, payload.body)


class HttpPush(NamedTuple):
    """POSTs to one push path of the gateway, logging in with HTTP basic auth as the devices do (user: the device,
    password: its key); an answer other than 2xx (400 for a corrupt unit) is an EmulatorError."""

    url: str
    device_id: str
    key: str
    timeout: float = 10.0

    def send(self, payload: Payload) -> None:
        login = base64.b64encode(f"{self.device_id}:{self.key}".encode()).decode()
        request = urllib.request.Request(
            self.url,
            data=payload.body,
            method="POST",
            headers={"Content-Type": payload.content_type, "Authorization": f"Basic {login}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            if not (payload.corrupt and error.code == 400):
                raise EmulatorError(f"POST {self.url}: {error.code} {error.read()[:500]!r}") from None


class Tills:
    """Every till of the mall, publishing as a POS integrator does: one PosProducer, connected at the first receipt."""

    def __init__(self, kafka: Kafka) -> None:
        self.kafka = kafka
        self._producer: PosProducer | None = None

    def send(self, payload: Payload) -> None:
        if self._producer is None:
            self._producer = PosProducer(
                self.kafka.bootstrap_servers, **kafka_options(self.kafka), **producer_limits(self.kafka)
            )
        self._producer.send(payload.body)

    def flush(self) -> None:
        """Wait until the broker has every receipt sent."""
        if self._producer is not None:
            self._producer.flush()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


# --- the devices of a mall ------------------------------------------------------------------------


def device_of(record: InputEvent) -> str:
    """The device that reports a record: its reader, counter or gate, or the till that rang up a receipt."""
    if isinstance(record, RfidRead):
        return record.reader_id
    if isinstance(record, FootfallTick):
        return record.counter_id
    if isinstance(record, ParkingEvent):
        return record.gate_id
    return record.workstation_id


class Sent(NamedTuple):
    """One unit a device sent: over which transport, and at what time of the simulated day."""

    device_id: str
    transport: TransportKind
    payload: Payload
    at: dt.datetime


class _Emulator(NamedTuple):
    encode: Encoder
    transport: Transport
    kind: TransportKind


class DeviceEmulators:
    """Every RFID reader, people counter and car-park gate of ``settings``, speaking its protocol, and the tills.

    Serial readers get a pseudo-terminal each; :attr:`settings` is the configuration with their
    addresses replaced by the terminals' paths, the one the gateway must run with. MQTT devices
    publish to ``settings.mqtt``; HTTP devices push to the gateway at ``settings.gateway``; tills
    publish to ``settings.kafka``. HTTP devices log in with :attr:`push_key`, a key that exists only in this
    process: the gateway driving them must take it (:class:`~.live.LiveGateway` does). ``multipart_anpr`` makes Hikvision gates send the multipart
    push with a picture; ``faults`` damage the wire (:attr:`injected` says how); ``on_send``
    sees every unit sent, e.g. to record it (:mod:`.raw`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        multipart_anpr: bool = False,
        faults: WireFaults = WireFaults(),
        on_send: Callable[[Sent], None] | None = None,
    ) -> None:
        placed = placed_devices(settings)
        for unknown in (p.device for p in placed if p.device.protocol not in ENCODERS):
            raise ValueError(f"device {unknown.id!r}: no emulator speaks {unknown.protocol!r}")
        self.terminals = {p.device.id: PseudoTerminal() for p in placed if p.device.protocol in SERIAL_PROTOCOLS}
        self.settings = _readdressed(settings, {device: pty.path for device, pty in self.terminals.items()})
        self.injected = Injected()
        #: Units sent per device since start.
        self.sent: Counter[str] = Counter()
        self.on_send = on_send
        needs_mqtt = any(transport_of(p.device) == "mqtt" for p in placed)
        self._mqtt = MqttPublisher(settings.mqtt) if needs_mqtt else None
        self.tills = Tills(settings.kafka)
        self.push_key = OneKey(Principal("simulated devices", "device"))
        gateway = settings.gateway
        host = "127.0.0.1" if gateway.http_host in ("0.0.0.0", "") else gateway.http_host
        self._emulators: dict[str, _Emulator] = {}
        for device in placed:
            transport: Transport
            kind = transport_of(device.device)
            if kind == "serial":
                transport = self.terminals[device.device.id]
            elif kind == "http":
                transport = HttpPush(
                    f"http://{host}:{gateway.http_port}{device.device.address}", device.device.id, self.push_key.key
                )
            else:
                assert self._mqtt is not None
                transport = self._mqtt.topic(device.device.address)
            wire = DeviceWire(device.device.id, faults, self.injected, multipart_anpr=multipart_anpr)
            self._emulators[device.device.id] = _Emulator(
                ENCODERS[device.device.protocol](device, wire), transport, kind
            )

    def transport_kind(self, device_id: str) -> TransportKind:
        """How a device (or, if not configured, a till) reaches the hub."""
        emulator = self._emulators.get(device_id)
        return emulator.kind if emulator else "kafka"

    def wait_for_serial_readers(self, timeout: float = 10.0) -> bool:
        """Wait until the gateway has opened every pseudo-terminal, so no frame written is flushed away."""
        deadline = time.monotonic() + timeout
        while not all(pty.opened() for pty in self.terminals.values()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        time.sleep(0.1)  # pyserial empties the input just after configuring the line
        return True

    def play(self, records: Iterable[InputEvent], speed: float = 0.0) -> Counter[str]:
        """Send each record as its device or till would, in the given order; records played per device.

        ``speed`` > 0 keeps the records' own spacing, ``speed`` seconds of event time per second
        (60: a minute per second); 0 sends as fast as the transports take it. Every device send
        returns once the transport took it (serial write, MQTT acknowledgement, HTTP answer), so
        the order holds across devices; receipts keep their order per sale (the producer's key)
        and are all acknowledged when play returns. Records of devices not configured are skipped.
        """
        played: Counter[str] = Counter()
        pacer = Pacer(speed)
        till = _Emulator(till_receipt, self.tills, "kafka")
        for record in records:
            device_id = device_of(record)
            emulator = till if isinstance(record, PosTransaction) else self._emulators.get(device_id)
            if emulator is None:
                continue
            pacer.wait_for(record.ts.timestamp())
            for payload in emulator.encode(record):
                self._send(emulator.transport, Sent(device_id, emulator.kind, payload, record.ts))
            played[device_id] += 1
        self.tills.flush()
        return played

    def play_sent(self, units: Iterable[Sent], speed: float = 0.0) -> Counter[str]:
        """Send units again exactly as they were sent (see :mod:`.raw`), paced as :meth:`play`; units per device.

        Devices reach the gateway as configured here, whatever the recording said of their address.
        """
        played: Counter[str] = Counter()
        pacer = Pacer(speed)
        for unit in units:
            emulator = self._emulators.get(unit.device_id)
            if emulator is None and unit.transport != "kafka":
                raise ValueError(f"device {unit.device_id!r} sent {unit.transport} traffic but is not configured")
            pacer.wait_for(unit.at.timestamp())
            self._send(emulator.transport if emulator else self.tills, unit)
            played[unit.device_id] += 1
        self.tills.flush()
        return played

    def _send(self, transport: Transport, unit: Sent) -> None:
        transport.send(unit.payload)
        self.sent[unit.device_id] += 1
        if self.on_send is not None:
            self.on_send(unit)

    def close(self) -> None:
        self.tills.close()
        if self._mqtt is not None:
            self._mqtt.close()
        for terminal in self.terminals.values():
            terminal.close()

    def __enter__(self) -> DeviceEmulators:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _readdressed(settings: Settings, addresses: Mapping[str, str]) -> Settings:
    """``settings`` with the serial readers named in ``addresses`` moved to new ports."""

    def moved(device: Device) -> Device:
        return device.model_copy(update={"address": addresses[device.id]}) if device.id in addresses else device

    malls = [
        mall.model_copy(update={"rfid_readers": [moved(reader) for reader in mall.rfid_readers]})
        for mall in settings.malls
    ]
    return settings.model_copy(update={"malls": malls})
