"""The live alert board and staff acknowledgements, served by every worker.

    <prefix>/<mall>/<zone>  (alerts, whichever worker decided them)
        --paho <prefix>/#--> AlertFeed --SSE /board/events--> board page (/board/)
    POST /alerts/<id>/ack, MQTT <prefix>/ack (a shared subscription: one worker takes each)
        --> Reception --> reception topic --sink--> ClickHouse reception_records
                      \\-> <prefix>/<mall>/<zone>/ack, so every board marks the alert taken

The board is fed from MQTT rather than from this worker's partitions of ``alerts``: any
worker shows every alert. Reception records are keyed by what was acknowledged (alert,
staff member, note), and the sink keeps one row per key, so an acknowledgement sent twice
is recorded once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from aiohttp import web

from mallstream.settings import Mqtt, Settings
from mallstream.sinks.alerts import zone_topic
from mallstream.transports import mqtt_client

from . import topics
from .access import principal_of
from .records import Acknowledgement, Alert, InvalidEvent, ReceptionRecord, decode, encode, reception_id

if TYPE_CHECKING:
    from .app import Hub

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).with_name("board_page")
#: Alerts a board shows when it (re)connects.
RECENT_ALERTS = 500
#: An SSE comment this often keeps proxies and the browser from giving up on a quiet stream.
KEEPALIVE_S = 15.0
Channel = Literal["http", "mqtt"]
#: How long an acknowledgement waits for its alert to reach this worker's feed before ClickHouse is asked.
ALERT_WAIT_S = 2.0


class UnknownAlert(LookupError):
    """An acknowledgement of an alert this hub never published."""


def ack_topic(prefix: str) -> str:
    """Where PDAs publish acknowledgements; each carries its ``alert_id``."""
    return f"{prefix}/ack"


def _mqtt_client(broker: Mqtt, on_connect, on_message) -> mqtt.Client:
    client = mqtt_client(broker)
    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    client.connect_async(broker.host, broker.port)
    client.loop_start()
    return client


class AlertFeed:
    """Every alert and acknowledgement published under the prefix, fanned out to the board's SSE clients.

    paho calls back on its own thread; everything is handed to the event loop, so the
    recent alerts and the listeners are only touched there.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        #: alert_id -> (the alert, the JSON it was published as), oldest first
        self.recent: OrderedDict[str, tuple[Alert, bytes]] = OrderedDict()
        #: alert_id -> the JSON of its latest reception record
        self.taken: dict[str, bytes] = {}
        self._listeners: set[asyncio.Queue[tuple[str, bytes] | None]] = set()
        #: set, and replaced, whenever an alert arrives
        self._news = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None

    def start(self, broker: Mqtt, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._client = _mqtt_client(broker, self._subscribe, self._received)

    def _subscribe(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"{self.prefix}/#", qos=1)

    def _received(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == ack_topic(self.prefix):
            return  # a PDA's raw acknowledgement: Reception takes it, the board waits for its record
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._take, message.payload)

    def _take(self, payload: bytes) -> None:
        try:
            kind = json.loads(payload).get("type")
            if kind == "alert":
                alert = decode(Alert, payload)
                self.recent[alert.alert_id] = (alert, payload)
                self.recent.move_to_end(alert.alert_id)
                while len(self.recent) > RECENT_ALERTS:
                    self.taken.pop(self.recent.popitem(last=False)[0], None)
                self._news.set()
                self._news = asyncio.Event()
            elif kind == "reception_record":
                self.taken[decode(ReceptionRecord, payload).alert_id] = payload
            else:
                return
        except (ValueError, AttributeError, InvalidEvent) as exc:  # not ours to judge; the board just skips it
            log.debug("board skips a message under %s: %s", self.prefix, exc)
            return
        event = "alert" if kind == "alert" else "ack"
        for listener in self._listeners:
            listener.put_nowait((event, payload))

    async def alert(self, alert_id: str, within: float) -> Alert | None:
        """The alert, waiting up to ``within`` seconds for it: a PDA may hear of it before this worker does."""
        deadline = asyncio.get_running_loop().time() + within
        while alert_id not in self.recent:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._news.wait(), remaining)
            except TimeoutError:
                return None
        return self.recent[alert_id][0]

    def snapshot(self) -> list[tuple[str, bytes]]:
        """What a board that connects now should show: the recent alerts, then which were taken."""
        alerts = [("alert", payload) for _, payload in self.recent.values()]
        return alerts + [("ack", payload) for payload in self.taken.values()]

    @contextmanager
    def listening(self) -> Iterator[asyncio.Queue[tuple[str, bytes] | None]]:
        """A queue of (event, JSON) for one SSE client; ``None`` when the worker is stopping."""
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def hang_up(self) -> None:
        """End every SSE stream, so the web server can stop without waiting for browsers to leave."""
        for listener in self._listeners:
            listener.put_nowait(None)

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()


class Reception:
    """Acknowledgements to reception records on the ``reception`` topic."""

    def __init__(self, hub: Hub, feed: AlertFeed | None) -> None:
        self.hub = hub
        self.feed = feed
        self.prefix = hub.settings.alerts.mqtt_prefix
        self.timezone = {mall.id: ZoneInfo(mall.timezone) for mall in hub.settings.malls}
        self.from_mqtt: asyncio.Queue[bytes] = asyncio.Queue()
        self._client: mqtt.Client | None = None

    def start(self, broker: Mqtt, loop: asyncio.AbstractEventLoop) -> None:
        """Take PDAs' acknowledgements; the shared subscription hands each to one worker of the group."""

        def subscribe(client: mqtt.Client, *_: object) -> None:
            client.subscribe(f"$share/{self.hub.settings.worker.app_id}/{ack_topic(self.prefix)}", qos=1)

        def received(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
            loop.call_soon_threadsafe(self.from_mqtt.put_nowait, message.payload)

        self._client = _mqtt_client(broker, subscribe, received)

    async def take_mqtt_acks(self) -> None:
        """Record PDAs' acknowledgements as they come; one that cannot be recorded becomes a dead letter."""
        source = f"mqtt:{ack_topic(self.prefix)}"
        while True:
            payload = await self.from_mqtt.get()
            try:
                ack = decode(Acknowledgement, payload)
                if not ack.alert_id:
                    raise InvalidEvent("an acknowledgement on MQTT must carry alert_id")
                await self.record(ack.alert_id, ack, "mqtt")
            except InvalidEvent as exc:
                await self.hub.dead_letter(source, str(exc), payload)
            except UnknownAlert as exc:
                await self.hub.dead_letter(source, f"acknowledges an unknown alert {exc}", payload)

    async def record(
        self, alert_id: str, ack: Acknowledgement, channel: Channel, may_take: Callable[[Alert], bool] | None = None
    ) -> ReceptionRecord:
        """Record an acknowledgement of ``alert_id``; raises :class:`UnknownAlert` for an alert never published,
        and PermissionError for one ``may_take`` refuses (another counter's alert)."""
        alert = await self._alert(alert_id)
        if may_take is not None and not may_take(alert):
            raise PermissionError(f"alert {alert_id} is for {alert.zone_id}, not one of your counters")
        now = dt.datetime.now(dt.UTC)
        record = ReceptionRecord(
            reception_id=reception_id(alert_id, ack),
            alert_id=alert_id,
            mall_id=alert.mall_id,
            zone_id=alert.zone_id,
            alert_kind=alert.kind,
            member_id=alert.member_id,
            tier=alert.tier,
            alert_ts=alert.ts,
            staff_id=ack.staff_id,
            acked_at=now,
            business_day=now.astimezone(self.timezone.get(alert.mall_id, dt.UTC)).date(),
            channel=channel,
            note_kind=ack.note_kind,
            note=ack.note.strip(),
        )
        payload = encode(record)
        await self.hub.topic(topics.RECEPTION).send(key=alert_id.encode(), value=payload)
        self.hub.counters["reception_records"] += 1
        if self._client is not None:
            self._client.publish(f"{zone_topic(self.prefix, alert)}/ack", payload, qos=1)
        return record

    async def _alert(self, alert_id: str) -> Alert:
        """The alert from the board's feed, or, for one older than the feed remembers, from ClickHouse."""
        known = await self.feed.alert(alert_id, within=ALERT_WAIT_S) if self.feed else None
        if known is not None:
            return known
        _, rows = await asyncio.to_thread(
            self.hub.warehouse.query,
            "SELECT mall_id, kind, ts, member_id, tier, zone_id FROM {db}.alerts WHERE alert_id = {id:String} LIMIT 1",
            {"id": alert_id},
        )
        if not rows:
            raise UnknownAlert(alert_id)
        mall_id, kind, ts, member_id, tier, zone_id = rows[0]
        return Alert(
            alert_id=alert_id,
            mall_id=mall_id,
            kind=kind,
            ts=ts.replace(tzinfo=ts.tzinfo or dt.UTC),
            member_id=member_id,
            tier=tier,
            zone_id=zone_id,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()


def board_places(settings: Settings) -> list[dict[str, str]]:
    """The places alerts come from (those with a reader), for the board's counter filter."""
    places = []
    for mall in settings.malls:
        names = {place.id: place.name for place in [*mall.entrances, *mall.zones, *mall.stores]}
        for place in dict.fromkeys(reader.place for reader in mall.rfid_readers):
            places.append(
                {"mall_id": mall.id, "timezone": mall.timezone, "id": place, "name": names.get(place) or place}
            )
    return places


def _sse(event: str, payload: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload.replace(b"\n", b"") + b"\n\n"


def register_board(hub: Hub) -> None:
    """Serve the board and the acknowledgement endpoint on the worker's web port; listen on MQTT while it runs."""
    settings = hub.settings
    feed = AlertFeed(settings.alerts.mqtt_prefix) if settings.mqtt.mode != "off" else None
    reception = Reception(hub, feed)

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE_DIR / "index.html")

    async def places(request: web.Request) -> web.Response:
        """The places of the key's counters (all, for a key not limited to zones)."""
        mine = [place for place in board_places(settings) if principal_of(request).sees_zone(place["id"])]
        return web.json_response({"places": mine, "live": feed is not None})

    async def events(request: web.Request) -> web.StreamResponse:
        """Alerts and acknowledgements as server-sent events: those of the key's counters only."""
        principal = principal_of(request)

        def shown(payload: bytes) -> bool:
            return not principal.zones or principal.sees_zone(json.loads(payload).get("zone_id"))

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if feed is None:
            await response.write(b"retry: 60000\n\n")  # no MQTT, nothing to show
            return response
        with feed.listening() as queue:
            for event, payload in feed.snapshot():
                if shown(payload):
                    await response.write(_sse(event, payload))
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if message is None:
                    return response
                if shown(message[1]):
                    await response.write(_sse(*message))

    async def acknowledge(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        principal = principal_of(request)
        try:
            ack = decode(Acknowledgement, await request.read())
            if ack.alert_id not in (None, alert_id):
                raise InvalidEvent(f"the body acknowledges {ack.alert_id}, the URL {alert_id}")
            record = await reception.record(alert_id, ack, "http", lambda alert: principal.sees_zone(alert.zone_id))
        except InvalidEvent as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except UnknownAlert:
            return web.json_response({"error": f"no alert {alert_id}"}, status=404)
        except PermissionError as exc:
            hub.counters["auth_refused_403"] += 1
            return web.json_response({"error": str(exc)}, status=403)
        return web.Response(body=encode(record), status=201, content_type="application/json")

    router = hub.app.web.web_app.router
    router.add_get("/board/", page)
    router.add_get("/board/places", places)
    router.add_get("/board/events", events)
    router.add_static("/board/static", PAGE_DIR)
    router.add_post("/alerts/{alert_id}/ack", acknowledge)

    if feed is not None:

        async def hang_up(_app: web.Application) -> None:
            feed.hang_up()

        hub.app.web.web_app.on_shutdown.append(hang_up)

    @hub.app.task
    async def listen_on_mqtt() -> None:
        if settings.mqtt.mode == "off":
            return
        loop = asyncio.get_running_loop()
        assert feed is not None
        feed.start(settings.mqtt, loop)
        reception.start(settings.mqtt, loop)
        try:
            await reception.take_mqtt_acks()
        finally:
            feed.close()
            reception.close()
