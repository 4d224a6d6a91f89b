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

A payload device pushes over HTTP when its address is a path (``/push/xovis``) and over MQTT
otherwise, as the gateway's bridges expect. POS receipts are not device traffic here: tills
reach the hub through ``mallstream replay``.
"""

from __future__ import annotations

import datetime as dt
import os
import termios
import time
import tty
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

import msgspec
import paho.mqtt.client as mqtt

from mallstream.devices.bridges import PAYLOAD_PROTOCOLS, SERIAL_PROTOCOLS, Placed, placed_devices, transport_of
from mallstream.simulators.pacing import Pacer
from mallstream.devices.counters import UINT16_MODULUS, Direction
from mallstream.devices.normalise import Decoded
from mallstream.devices.rfid_serial import Tag
from mallstream.settings import Device, Settings
from mallstream.streams.records import FootfallTick, InputEvent, ParkingEvent, RfidRead

from .rfid_frames import chafon_inventory, impinj_payload, impinj_tag_event, r2000_inventory, zebra_payload, zebra_tag_event

JSON = "application/json"
ISAPI_NAMESPACE = "http://www.isapi.org/ver20/XMLSchema"
MULTIPART_BOUNDARY = "MIME_boundary"
#: Enough of a JPEG (start and end of image) for a picture part the gateway must skip.
PICTURE = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\xff\xd9"


class EmulatorError(RuntimeError):
    """The gateway refused or never acknowledged what an emulated device sent."""


class Payload(NamedTuple):
    """One transport unit as a device sends it: a serial write, an MQTT message, an HTTP body."""

    body: bytes
    content_type: str = JSON


#: Turns one normalised record back into what its device sends for it.
Encoder = Callable[[InputEvent], list[Payload]]


# --- RFID readers ---------------------------------------------------------------------------------


def _tag(read: RfidRead) -> Tag:
    return Tag(read.antenna, bytes.fromhex(read.epc), read.rssi_dbm)


def chafon_frames(read: RfidRead) -> list[Payload]:
    """A one-tag inventory answer of a Chafon 288M; the serial reader has no clock, so ``ts`` is not sent."""
    return [Payload(chafon_inventory([_tag(read)]), "")]


def r2000_frames(read: RfidRead) -> list[Payload]:
    """A one-tag real-time inventory round of an R2000 reader; no clock, as for the Chafon."""
    return [Payload(r2000_inventory([_tag(read)]), "")]


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
    """

    def __init__(self, routes: Mapping[str, Direction], report: Report) -> None:
        self.report = report
        self.totals = dict.fromkeys(routes, 0)
        self._baseline_sent = False
        self._route_of: dict[Direction, str] = {}
        for route, direction in routes.items():
            self._route_of.setdefault(direction, route)

    def __call__(self, tick: FootfallTick) -> list[Payload]:
        payloads = []
        if not self._baseline_sent:
            payloads += self.report(tick.ts - dt.timedelta(seconds=tick.interval_s), self.totals)
            self._baseline_sent = True
        for direction, count in (("in", tick.count_in), ("out", tick.count_out)):
            if direction in self._route_of:
                self.totals[self._route_of[direction]] += count
        return payloads + self.report(tick.ts, self.totals)


class XovisPushes:
    """Xovis live-data pushes, one per sensor, each counter's total as a COUNT_INCREMENT event.

    Route keys are ``"<sensor serial>/<counter_id>"`` as in the device config. Every push carries
    every counter, changed or not, so a quiet interval still reaches the hub as a tick.
    """

    def __init__(self, agent_id: int = 1) -> None:
        self.agent_id = agent_id
        self._package_id = 0

    def __call__(self, ts: dt.datetime, totals: Mapping[str, int]) -> list[Payload]:
        by_sensor: dict[str, list[tuple[int, int]]] = {}
        for route, value in totals.items():
            serial, _, counter_id = route.rpartition("/")
            by_sensor.setdefault(serial, []).append((int(counter_id), value))
        return [self._push(serial, counters, ts) for serial, counters in by_sensor.items()]

    def _push(self, serial: str, counters: list[tuple[int, int]], ts: dt.datetime) -> Payload:
        self._package_id += 1
        events = [{"category": "COUNT", "type": "COUNT_INCREMENT",
                   "attributes": {"counter_id": counter_id, "counter_value": value}}
                  for counter_id, value in counters]
        frame = {"framenumber": self._package_id, "time": round(ts.timestamp() * 1000), "tracked_objects": [],
                 "events": events}
        return Payload(msgspec.json.encode({"live_data": {
            "package_info": {"version": "5.0", "id": self._package_id, "agent_id": self.agent_id},
            "sensor_info": {"serial_number": serial, "type": "PC2SE"},
            "frames": [frame],
        }}))


def axis_reports(serial: str, device_tz: dt.tzinfo) -> Report:
    """Axis live sums: totals since the count began, stamped in the camera's zone without an offset."""
    def report(ts: dt.datetime, totals: Mapping[str, int]) -> list[Payload]:
        stamp = ts.astimezone(device_tz).strftime("%Y%m%d%H%M%S")
        return [Payload(msgspec.json.encode({"serial": serial, "timestamp": stamp,
                                              "in": totals["in"], "out": totals["out"]}))]
    return report


def milesight_report(ts: dt.datetime, totals: Mapping[str, int]) -> list[Payload]:
    """A VS350 uplink: uint16 totals that wrap at 65536; a live uplink carries no device time."""
    return [Payload(msgspec.json.encode({"total_in": totals["in"] % UINT16_MODULUS,
                                         "total_out": totals["out"] % UINT16_MODULUS}))]


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
        head = (f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                f"Content-Type: {content_type}\r\nContent-Length: {len(content)}\r\n\r\n")
        return head.encode() + content + b"\r\n"

    body = part("anpr.xml", "text/xml", alert) + part("licensePlatePicture.jpg", "image/jpeg", PICTURE)
    return Payload(body + f"--{MULTIPART_BOUNDARY}--\r\n".encode(),
                   f"multipart/form-data; boundary={MULTIPART_BOUNDARY}")


def hikvision_encoder(multipart: bool) -> Encoder:
    def encode(event: ParkingEvent) -> list[Payload]:
        alert = hikvision_alert(event)
        return [hikvision_multipart(alert) if multipart else Payload(alert, "application/xml")]
    return encode


def plate_recognizer_encoder(camera_id: str) -> Encoder:
    """Stream webhooks from one camera: the plate in lower case, as Stream reports it, in UTC."""
    def encode(event: ParkingEvent) -> list[Payload]:
        data = {"camera_id": camera_id, "timestamp": event.ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
                "results": [{"plate": event.plate.lower(), "score": 0.9}]}
        return [Payload(msgspec.json.encode({"hook": {"id": camera_id, "event": "recognition"}, "data": data}))]
    return encode


#: Protocol names in the config -> how to build a device's encoder; the flag makes Hikvision gates send multipart.
ENCODERS: dict[str, Callable[[Placed, bool], Encoder]] = {
    "chafon-288m": lambda placed, _: chafon_frames,
    "r2000": lambda placed, _: r2000_frames,
    "zebra-fx": lambda placed, _: zebra_message,
    "impinj-r700": lambda placed, _: impinj_message,
    "xovis": lambda placed, _: CumulativeCounter(placed.device.routes, XovisPushes()),
    "axis": lambda placed, _: CumulativeCounter(BOTH_WAYS, axis_reports(placed.device.id, ZoneInfo(placed.timezone))),
    "milesight-vs350": lambda placed, _: CumulativeCounter(BOTH_WAYS, milesight_report),
    "hikvision-isapi": lambda placed, multipart: hikvision_encoder(multipart),
    "plate-recognizer": lambda placed, _: plate_recognizer_encoder(placed.device.id),
}


def gateway_decoder(placed: Placed) -> Callable[[Payload, dt.datetime], Decoded]:
    """The driver the gateway's bridges use for this device, one payload at a time, without transport:
    what checks an encoder (and benches a driver) on its own."""
    protocol = placed.device.protocol
    if protocol in SERIAL_PROTOCOLS:
        stream = SERIAL_PROTOCOLS[protocol][0](placed.device.id)
        return lambda payload, received_at: stream.feed(payload.body, received_at)
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

    def send(self, payload: Payload) -> None:
        view = memoryview(payload.body)
        while view:
            view = view[os.write(self._master, view):]

    def close(self) -> None:
        os.close(self._master)
        os.close(self._slave)


class MqttPublisher:
    """One paho-mqtt connection shared by every MQTT device; messages go out with QoS 1."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.connect(host, port)
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
    """POSTs to one push path of the gateway; anything but a 2xx answer is an :class:`EmulatorError`."""

    url: str
    timeout: float = 10.0

    def send(self, payload: Payload) -> None:
        request = urllib.request.Request(self.url, data=payload.body, method="POST",
                                         headers={"Content-Type": payload.content_type})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise EmulatorError(f"POST {self.url}: {error.code} {error.read()[:500]!r}") from None


# --- the devices of a mall ------------------------------------------------------------------------


def device_of(record: InputEvent) -> str | None:
    """The device that reports a record; None for POS receipts, which come from tills."""
    if isinstance(record, RfidRead):
        return record.reader_id
    if isinstance(record, FootfallTick):
        return record.counter_id
    if isinstance(record, ParkingEvent):
        return record.gate_id
    return None


class DeviceEmulators:
    """Every RFID reader, people counter and car-park gate of ``settings``, speaking its protocol.

    Serial readers get a pseudo-terminal each; :attr:`settings` is the configuration with their
    addresses replaced by the terminals' paths, the one the gateway must run with. MQTT devices
    publish to ``settings.mqtt``; HTTP devices push to the gateway at ``settings.gateway``.
    ``multipart_anpr`` makes Hikvision gates send the multipart push with a picture.
    """

    def __init__(self, settings: Settings, *, multipart_anpr: bool = False) -> None:
        placed = placed_devices(settings)
        for unknown in (p.device for p in placed if p.device.protocol not in ENCODERS):
            raise ValueError(f"device {unknown.id!r}: no emulator speaks {unknown.protocol!r}")
        self.terminals = {p.device.id: PseudoTerminal() for p in placed if p.device.protocol in SERIAL_PROTOCOLS}
        self.settings = _readdressed(settings, {device: pty.path for device, pty in self.terminals.items()})
        needs_mqtt = any(transport_of(p.device) == "mqtt" for p in placed)
        self._mqtt = MqttPublisher(settings.mqtt.host, settings.mqtt.port) if needs_mqtt else None
        gateway = settings.gateway
        host = "127.0.0.1" if gateway.http_host in ("0.0.0.0", "") else gateway.http_host
        self._emulators: dict[str, tuple[Encoder, Transport]] = {}
        for device in placed:
            transport: Transport
            kind = transport_of(device.device)
            if kind == "serial":
                transport = self.terminals[device.device.id]
            elif kind == "http":
                transport = HttpPush(f"http://{host}:{gateway.http_port}{device.device.address}")
            else:
                assert self._mqtt is not None
                transport = self._mqtt.topic(device.device.address)
            self._emulators[device.device.id] = (ENCODERS[device.device.protocol](device, multipart_anpr), transport)

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
        """Send each record as its device would, in the given order; records played per device.

        ``speed`` > 0 keeps the records' own spacing, ``speed`` seconds of event time per second
        (60: a minute per second); 0 sends as fast as the transports take it. Every send returns
        once the transport took it (serial write, MQTT acknowledgement, HTTP answer), so the
        order holds across devices. Records of devices not configured here are skipped.
        """
        played: Counter[str] = Counter()
        pacer = Pacer(speed)
        for record in records:
            device_id = device_of(record)
            if device_id is None or device_id not in self._emulators:
                continue
            pacer.wait_for(record.ts.timestamp())
            encode, transport = self._emulators[device_id]
            for payload in encode(record):
                transport.send(payload)
            played[device_id] += 1
        return played

    def close(self) -> None:
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

    malls = [mall.model_copy(update={"rfid_readers": [moved(reader) for reader in mall.rfid_readers]})
             for mall in settings.malls]
    return settings.model_copy(update={"malls": malls})
