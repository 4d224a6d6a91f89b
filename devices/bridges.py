"""Bridges from real transports to the drivers, each pushing what the drivers decode into the gateway.

* :class:`SerialBridge`: a serial port (pyserial URL) read by one thread. The port is read
  with a short timeout; a read that times out empty means the line went quiet, and the
  stream is flushed (a Chafon stream holds frames behind a stray length byte until then).
  A port that disappears is reopened with exponential backoff.
* :class:`MqttBridge`: one paho-mqtt connection subscribed (QoS 1, persistent session) to
  every MQTT device's topic. paho reconnects by itself; a message is acknowledged to the
  MQTT broker only after it is spooled.
* :class:`HttpPushBridge`: one HTTP server; each push device has its own POST path.

Which transport a payload device uses follows from its address: a path starting with ``/``
is an HTTP push endpoint, anything else an MQTT topic. Serial readers' addresses are pyserial
URLs or device paths. What some protocols need beyond that comes from the device's config:
Xovis ``routes`` (``"<serial>/<counter_id>"`` -> ``in``/``out``) and a car-park gate's
``direction`` (``entry``/``exit``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import serial
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from mallstream.auth import CHALLENGE, Gatekeeper, KeyLookup, KeyStore, Refused
from mallstream.settings import Device, Mqtt, Settings
from mallstream.transports import mqtt_client

from .anpr import Gate, PlateState, decode_hikvision, decode_plate_recognizer
from .counters import CounterState, decode_axis, decode_milesight, decode_xovis
from .normalise import Decoded, SequenceGap
from .rfid_json import ImpinjStream, ZebraStream
from .rfid_serial import ChafonStream, R2000Stream, SerialFrameStream
from .spool import SpoolFull

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger(__name__)

#: What one payload (an MQTT message, an HTTP body) yielded.
Outcome = tuple[Decoded, list[SequenceGap]]
S = TypeVar("S")


class BridgeConfigError(ValueError):
    """A device the gateway cannot bridge: unknown protocol, missing option, address used twice."""


class Bridge(Protocol):
    def close(self) -> None: ...


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- payload drivers ------------------------------------------------------------------------------


class PayloadDriver(Protocol):
    def __call__(self, payload: bytes, received_at: dt.datetime, content_type: str) -> Outcome: ...


class StreamDriver:
    """A JSON reader stream fed one whole message at a time."""

    def __init__(self, stream: ZebraStream | ImpinjStream) -> None:
        self.stream = stream

    def __call__(self, payload: bytes, received_at: dt.datetime, content_type: str) -> Outcome:
        return self.stream.feed(payload, received_at, final=True), []


class StatefulDriver(Generic[S]):
    """A pure decoding step with its state kept between payloads."""

    def __init__(self, state: S, step: Callable[[S, bytes, dt.datetime, str], tuple[S, Decoded, list[SequenceGap]]]):
        self.state = state
        self.step = step

    def __call__(self, payload: bytes, received_at: dt.datetime, content_type: str) -> Outcome:
        self.state, decoded, gaps = self.step(self.state, payload, received_at, content_type)
        return decoded, gaps


class _Anything(Mapping[str, S]):
    """Every key maps to one value: the device is known by its address, whatever it calls itself."""

    def __init__(self, value: S) -> None:
        self.value = value

    def __getitem__(self, key: str) -> S:
        return self.value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class Placed:
    """A configured device with what the settings say around it."""

    device: Device
    mall_id: str
    timezone: str
    car_park_id: str | None

    def option(self, name: str) -> Any:
        """A per-device setting the protocol cannot work without."""
        value = getattr(self.device, name)
        if not value:
            raise BridgeConfigError(f"device {self.device.id!r} ({self.device.protocol}) needs {name!r} in the config")
        return value


def _xovis(placed: Placed) -> PayloadDriver:
    specs: Mapping[str, str] = placed.option("routes")
    try:
        routes = {
            (serial_no, int(counter)): (placed.device.id, direction)
            for spec, direction in specs.items()
            for serial_no, _, counter in [spec.rpartition("/")]
        }
    except ValueError as exc:
        raise BridgeConfigError(
            f"device {placed.device.id!r}: routes keys are '<serial>/<counter_id>': {exc}"
        ) from None
    return StatefulDriver(CounterState(), lambda s, p, t, _: decode_xovis(s, p, t, routes))


def _axis(placed: Placed) -> PayloadDriver:
    counters, tz = _Anything(placed.device.id), ZoneInfo(placed.timezone)
    return StatefulDriver(CounterState(), lambda s, p, t, _: (*decode_axis(s, p, t, counters, tz), []))


def _milesight(placed: Placed) -> PayloadDriver:
    return StatefulDriver(CounterState(), lambda s, p, t, _: (*decode_milesight(s, p, t, placed.device.id), []))


def _gate(placed: Placed) -> Gate:
    direction = placed.option("direction")
    if direction not in ("entry", "exit") or placed.car_park_id is None:
        raise BridgeConfigError(f"device {placed.device.id!r} must be a car-park gate with direction entry or exit")
    return Gate(placed.device.id, placed.car_park_id, direction)


def _hikvision(placed: Placed) -> PayloadDriver:
    gate = _gate(placed)
    return StatefulDriver(
        PlateState(), lambda s, p, t, ct: (*decode_hikvision(s, p, t, gate, ct or "application/xml"), [])
    )


def _plate_recognizer(placed: Placed) -> PayloadDriver:
    gates = _Anything(_gate(placed))
    return StatefulDriver(PlateState(), lambda s, p, t, _: (*decode_plate_recognizer(s, p, t, gates), []))


#: Payload protocol names in the config -> how to build the device's driver.
PAYLOAD_PROTOCOLS: dict[str, Callable[[Placed], PayloadDriver]] = {
    "zebra-fx": lambda placed: StreamDriver(ZebraStream(placed.device.id)),
    "impinj-r700": lambda placed: StreamDriver(ImpinjStream(placed.device.id)),
    "xovis": _xovis,
    "axis": _axis,
    "milesight-vs350": _milesight,
    "hikvision-isapi": _hikvision,
    "plate-recognizer": _plate_recognizer,
}

#: Serial protocol names -> the reader's stream and line speed.
SERIAL_PROTOCOLS: dict[str, tuple[type[SerialFrameStream], int]] = {
    "chafon-288m": (ChafonStream, 57600),
    "r2000": (R2000Stream, 115200),
}


class PayloadInput:
    """One payload device's way into the gateway; payloads are decoded and spooled one at a time, in order."""

    def __init__(self, placed: Placed, driver: PayloadDriver, gateway: Gateway) -> None:
        self.device_id, self.mall_id = placed.device.id, placed.mall_id
        self.driver, self.gateway = driver, gateway
        self._lock = threading.Lock()

    def receive(self, payload: bytes, content_type: str = "") -> Decoded:
        """Decode and spool one payload; SpoolFull propagates so the transport can push back."""
        with self._lock:
            decoded, gaps = self.driver(payload, _now(), content_type)
            self.gateway.submit(self.device_id, decoded, mall_id=self.mall_id, gaps=gaps)
        return decoded


# --- serial ---------------------------------------------------------------------------------------


class SerialBridge:
    """One serial reader: a thread reads the port, feeds the stream, flushes it when the line goes quiet."""

    def __init__(
        self,
        placed: Placed,
        stream: SerialFrameStream,
        baudrate: int,
        gateway: Gateway,
        read_timeout: float = 0.05,
    ) -> None:
        self.device_id, self.mall_id, self.address = placed.device.id, placed.mall_id, placed.device.address
        self.stream, self.baudrate, self.gateway, self.read_timeout = stream, baudrate, gateway, read_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.device_id}", daemon=True)

    def start(self) -> SerialBridge:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        opening = Retrying(
            retry=retry_if_exception_type((serial.SerialException, OSError)),
            wait=wait_exponential(multiplier=0.1, max=5),
            stop=stop_when_event_set(self._stop),
            sleep=self._stop.wait,
            before_sleep=lambda state: self.gateway.record_error(self.device_id, str(state.outcome.exception())),
        )
        while not self._stop.is_set():
            try:
                port = opening(serial.serial_for_url, self.address, baudrate=self.baudrate, timeout=self.read_timeout)
            except RetryError:
                return
            with port:
                self._read_until_lost(port)

    def _read_until_lost(self, port: serial.SerialBase) -> None:
        try:
            while not self._stop.is_set():
                chunk = port.read(1)  # waits up to read_timeout for the line to speak
                chunk += port.read(port.in_waiting)  # and takes what came with it in one piece
                if chunk:
                    self._submit(self.stream.feed(chunk, _now()), frames=1)
                elif self.stream.buffered:
                    self._submit(self.stream.flush(_now()), frames=0)
        except (serial.SerialException, OSError) as exc:
            self.gateway.record_error(self.device_id, f"serial port lost: {exc}")
        self._submit(self.stream.flush(_now()), frames=0)

    def _submit(self, decoded: Decoded, frames: int) -> None:
        # a full spool is counted and logged by the gateway; a serial line cannot be asked to resend
        with contextlib.suppress(SpoolFull):
            self.gateway.submit(self.device_id, decoded, frames=frames, mall_id=self.mall_id)


# --- MQTT -----------------------------------------------------------------------------------------


class MqttBridge:
    """One MQTT connection for every MQTT device; each device's address is its topic filter."""

    def __init__(self, broker: Mqtt, inputs: Mapping[str, PayloadInput], client_id: str = "mallstream-gateway"):
        self.inputs = inputs
        self.client = mqtt_client(broker, client_id=client_id, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        #: Set once the broker confirmed the subscriptions: from then on no device message is missed.
        self.subscribed = threading.Event()
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.host, self.port = broker.host, broker.port
        self._refused = False

    def start(self) -> MqttBridge:
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._refused = reason_code.is_failure
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self.inputs])
            return
        for device in self.inputs.values():  # a wrong password, say: the devices' health says why nothing comes
            device.gateway.record_error(device.device_id, f"MQTT broker refused the connection: {reason_code}")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure and not self._refused:  # after a refusal, that is the news, not the hang-up
            for device in self.inputs.values():
                device.gateway.record_error(device.device_id, f"MQTT connection lost: {reason_code}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        for topic_filter, device in self.inputs.items():
            if mqtt.topic_matches_sub(topic_filter, message.topic):
                with contextlib.suppress(SpoolFull):  # counted and logged by the gateway
                    device.receive(message.payload)
                return


# --- HTTP push ------------------------------------------------------------------------------------


class HttpPushBridge:
    """A threaded HTTP server; each push device POSTs to its own path.

    Every push needs a key the ``gate`` admits to ``push`` (role device or admin): as bearer token,
    basic-auth password or the secret header, whichever the device can send. 401 without one or
    with a wrong one, 403 for a key of another role; both counted in :attr:`refused` and, for a
    device's path, in that device's health (``errors``, ``last_error``), and the body is not read.
    Then 404 for a path no device pushes to, 413 for a body over ``max_body`` bytes, 400 with the
    reasons when nothing in the body could be used (it is dead-lettered all the same), 503 when
    the spool is full (the device retries later), 200 otherwise.
    """

    def __init__(
        self, address: tuple[str, int], inputs: Mapping[str, PayloadInput], gate: Gatekeeper, max_body: int = 4 << 20
    ):
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bridge.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        self.inputs, self.gate, self.max_body = inputs, gate, max_body
        self.server = ThreadingHTTPServer(address, Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="http-push", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> HttpPushBridge:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def refused(self) -> Counter:
        """auth_refused_401 and auth_refused_403 since start."""
        return self.gate.refused

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        device = self.inputs.get(request.path.split("?", 1)[0])
        try:
            self.gate.admit(request.headers, ("push",))
        except Refused as refused:
            request.close_connection = True  # the body stays unread
            if device is not None:
                device.gateway.record_error(device.device_id, f"push refused ({refused.status}): {refused.reason}")
            log.warning(
                "push to %s from %s refused: %s",
                request.path.split("?", 1)[0],
                request.client_address[0],
                refused.reason,
            )
            return _reply(
                request,
                HTTPStatus(refused.status),
                {"error": refused.reason},
                CHALLENGE if refused.status == 401 else {},
            )
        if device is None:
            return _reply(request, HTTPStatus.NOT_FOUND, {"error": f"no device pushes to {request.path}"})
        length = request.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return _reply(request, HTTPStatus.LENGTH_REQUIRED, {"error": "a Content-Length is required"})
        if int(length) > self.max_body:
            request.close_connection = True
            return _reply(request, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {self.max_body} bytes"})
        body = request.rfile.read(int(length))
        try:
            decoded = device.receive(body, request.headers.get("Content-Type", ""))
        except SpoolFull as exc:
            return _reply(request, HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        if decoded.rejects and not decoded.events:
            return _reply(request, HTTPStatus.BAD_REQUEST, {"rejected": [r.reason for r in decoded.rejects]})
        _reply(request, HTTPStatus.OK, {"events": len(decoded.events), "rejected": [r.reason for r in decoded.rejects]})


def _reply(
    request: BaseHTTPRequestHandler, status: HTTPStatus, body: dict[str, Any], headers: Mapping[str, str] = {}
) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    for name, value in headers.items():
        request.send_header(name, value)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


# --- from settings --------------------------------------------------------------------------------


def transport_of(device: Device) -> Literal["serial", "http", "mqtt"]:
    """How the gateway listens to a device: serial by protocol, else an HTTP path (``/...``) or an MQTT topic."""
    if device.protocol in SERIAL_PROTOCOLS:
        return "serial"
    return "http" if device.address.startswith("/") else "mqtt"


def placed_devices(settings: Settings) -> list[Placed]:
    """Every configured RFID reader, people counter and car-park gate, with its mall and car park."""
    placed = []
    for mall in settings.malls:
        for device in [*mall.rfid_readers, *mall.people_counters]:
            placed.append(Placed(device, mall.id, mall.timezone, None))
        for car_park in mall.car_parks:
            for gate in car_park.gates:
                placed.append(Placed(gate, mall.id, mall.timezone, car_park.id))
    return placed


def start_bridges(
    settings: Settings,
    gateway: Gateway,
    *,
    http_address: tuple[str, int],
    keys: KeyLookup | None = None,
) -> list[Bridge]:
    """Build a bridge for every device (raising BridgeConfigError before anything starts), then start them.

    HTTP pushes are checked against ``keys`` (default: the keys file of ``settings.auth``).
    """
    serial_bridges: list[SerialBridge] = []
    http_inputs: dict[str, PayloadInput] = {}
    mqtt_inputs: dict[str, PayloadInput] = {}
    for placed in placed_devices(settings):
        device = placed.device
        if device.protocol in SERIAL_PROTOCOLS:
            stream_type, baudrate = SERIAL_PROTOCOLS[device.protocol]
            serial_bridges.append(SerialBridge(placed, stream_type(device.id), baudrate, gateway))
            continue
        if device.protocol not in PAYLOAD_PROTOCOLS:
            known = ", ".join(sorted([*SERIAL_PROTOCOLS, *PAYLOAD_PROTOCOLS]))
            raise BridgeConfigError(f"device {device.id!r}: unknown protocol {device.protocol!r}; known: {known}")
        inputs = http_inputs if transport_of(device) == "http" else mqtt_inputs
        if not device.address or device.address in inputs:
            raise BridgeConfigError(f"device {device.id!r}: address {device.address!r} is empty or used twice")
        inputs[device.address] = PayloadInput(placed, PAYLOAD_PROTOCOLS[device.protocol](placed), gateway)
    if mqtt_inputs and settings.mqtt.mode == "off":
        raise BridgeConfigError(f"MQTT devices {sorted(mqtt_inputs)} configured but mqtt.mode is off")
    bridges: list[SerialBridge | MqttBridge | HttpPushBridge] = list(serial_bridges)
    if mqtt_inputs:
        bridges.append(MqttBridge(settings.mqtt, mqtt_inputs))
    if http_inputs:
        if keys is None:
            keys = KeyStore.of(settings)
            if not any(record.role in ("device", "admin") and record.revoked_at is None for record in keys.records()):
                log.warning(
                    "no device keys in %s: every HTTP push will be refused (401) until one is made with "
                    "`mallstream keys create --role device --name <device>`",
                    keys.path,
                )
        gate = Gatekeeper(keys, settings.auth)
        # binds now: a taken port fails before any start
        bridges.append(HttpPushBridge(http_address, http_inputs, gate, settings.gateway.max_body_mb << 20))
    return [bridge.start() for bridge in bridges]
