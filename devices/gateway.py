"""The gateway: decoded device input goes into the spool, a publisher thread moves it to Kafka.

Delivery is **at least once**, in order per key:

* :meth:`Gateway.submit` returns only after the messages are committed to the on-disk
  :class:`~.spool.Spool`; nothing the gateway accepted is lost to a broker outage, a crash or
  a restart.
* The publisher hands what is spooled to kafka-python (``acks="all"``, the idempotent
  producer) in rounds, while up to ``ROUNDS_IN_FLIGHT`` earlier rounds await the broker,
  and deletes from the spool only the acknowledged prefix. (One round at a time held a
  VIP's card read up to 55 ms behind the busy readers' round trip; no limit had the
  producer's thread send a request per message, which halved the gateway's throughput.)
  Messages go out in spool order and the idempotent producer keeps partition order through
  its own retries, so a key (one device) stays in order. (noida-db 0.2.3 accepts the
  idempotent producer; tests/test_gateway.py stops and restarts it under load.)
* An acknowledgement is not trusted across a broker's restart. The embedded broker
  acknowledges writes while it stops and saves without them (measured: 2-4 records lost in
  3 of 5 ``noida-db down`` under load; the producer's next send then fails with
  ``OutOfOrderSequenceNumberError``). So the gateway keeps the last ``max_in_flight``
  acknowledged messages in memory, and after any failed send it sends them again before
  going on from the first failed one.
* It is not exactly once. The idempotent producer removes duplicates from its own retries
  within one producer session only. A message whose acknowledgement was lost (broker died
  after writing it, or the gateway died before deleting it from the spool) is sent again by
  the next attempt or the next gateway process, and so is any sent after a failed one or
  acknowledged shortly before it, so the worker must drop repeats: every event keeps the
  ``event_id`` it was stamped with, and dead letters their ``dead_letter_id``.

While the broker is unreachable the publisher retries with exponential backoff (tenacity)
and input keeps flowing into the spool. Per-device health goes out as JSON on
``devices.health`` every ``health_interval`` seconds, through the spool like everything else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence

import msgspec
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from mallstream.settings import Kafka, Settings
from mallstream.streams.records import DeviceEvent, DeviceHealth, Record, RfidRead, dead_letter, encode
from mallstream.streams.topics import DEAD_LETTERS, DEVICE_HEALTH, INPUT_KEYS, INPUT_TOPICS, ensure_topics
from mallstream.transports import kafka_options

from .bridges import start_bridges
from .normalise import Decoded, SequenceGap
from .spool import Message, Spool, Spooled, SpoolFull

log = logging.getLogger(__name__)

HEALTH_TOPIC = DEVICE_HEALTH.name
#: Rounds of sends (what one look at the spool found) awaiting the broker at once; more wait for the oldest.
ROUNDS_IN_FLIGHT = 2


def event_message(record: Record) -> Message:
    """A normalised event on its input topic, keyed as that topic requires."""
    kind = type(record).__struct_config__.tag
    key = INPUT_KEYS[kind](msgspec.to_builtins(record))
    return Message(INPUT_TOPICS[kind].name, key.encode() if key else None, encode(record))


def _stamped(record: DeviceEvent, mall_id: str | None) -> DeviceEvent:
    """The event with its mall and an id of its own, which it keeps through every redelivery."""
    return msgspec.structs.replace(record, mall_id=record.mall_id or mall_id, event_id=uuid.uuid4().hex)


class Gateway:
    """Owns the spool, the Kafka producer, the publisher thread and the per-device health."""

    def __init__(
        self,
        spool: Spool,
        kafka: Kafka,
        app_id: str = "mallstream",
        *,
        max_in_flight: int = 1000,
        health_interval: float = 10.0,
        send_timeout: float = 10.0,
    ) -> None:
        self.spool = spool
        self.kafka = kafka
        self.app_id = app_id
        self.max_in_flight = max_in_flight
        self.health_interval = health_interval
        self.send_timeout = send_timeout
        self._health: dict[str, DeviceHealth] = {}
        self._health_lock = threading.Lock()
        self._stopping = threading.Event()
        #: Wakes the publisher: the spool sets it when messages can be peeked, the producer when the broker answers.
        self._wake = spool.appended
        self._producer: KafkaProducer | None = None
        #: Messages handed to the producer and not yet acknowledged, oldest first (so in id order),
        #: with the spool id of the last one handed over: the next are spooled after it.
        self._in_flight: deque[tuple[Spooled, FutureRecordMetadata]] = deque()
        self._sent_up_to = 0
        #: The highest spool id acknowledged, and the latest acknowledged messages: a broker that
        #: restarts may have lost them, so they are sent again after a failure, from ``_resend``.
        self._acknowledged_up_to = 0
        self._acknowledged_lately: deque[Spooled] = deque(maxlen=max_in_flight)
        self._resend: deque[Spooled] = deque()
        #: The last message of each round of sends not yet answered.
        self._rounds: deque[FutureRecordMetadata] = deque()
        self._threads = [
            threading.Thread(target=self._publish, name="gateway-publisher", daemon=True),
            threading.Thread(target=self._report_health, name="gateway-health", daemon=True),
        ]
        #: Messages the broker acknowledged since start.
        self.delivered = 0

    # --- input -------------------------------------------------------------------------------

    def submit(
        self,
        device_id: str,
        decoded: Decoded,
        *,
        frames: int = 1,
        mall_id: str | None = None,
        gaps: Sequence[SequenceGap] = (),
    ) -> None:
        """Spool one transport unit's events and dead letters; raises SpoolFull (counted) if the disk budget is spent."""
        messages = [event_message(_stamped(record, mall_id)) for record in decoded.events]
        for reject in decoded.rejects:
            letter = dead_letter(device_id, reject.reason, reject.raw)
            messages.append(Message(DEAD_LETTERS.name, letter.dead_letter_id.encode(), encode(letter)))
        now = dt.datetime.now(dt.UTC)
        self._count(device_id, now, last_seen=now.isoformat(), frames=frames)
        for gap in gaps:
            self.record_error(device_id, f"{gap.source}: messages {gap.first_missing}..{gap.last_missing} missing")
        try:
            if messages:
                self.spool.append(messages)
        except SpoolFull as exc:
            self._count(device_id, now, refused=len(messages))
            self.record_error(device_id, str(exc))
            log.error("device %s: %s", device_id, exc)
            raise
        duplicates = sum(1 for e in decoded.events if isinstance(e, RfidRead) and e.duplicate)
        self._count(device_id, now, events=len(decoded.events), rejects=len(decoded.rejects), duplicates=duplicates)

    def record_error(self, device_id: str, error: str) -> None:
        """A transport fault (port gone, connection lost) or a sequence gap: counted in the device's health."""
        self._count(device_id, dt.datetime.now(dt.UTC), errors=1, last_error=error)

    def health(self) -> dict[str, DeviceHealth]:
        """Every device's counters as they stand."""
        with self._health_lock:
            return dict(self._health)

    def _count(
        self,
        device_id: str,
        now: dt.datetime,
        *,
        last_seen: str | None = None,
        last_error: str | None = None,
        **increments: int,
    ) -> None:
        """Add to a device's counters (and note when it was seen or what failed last)."""
        with self._health_lock:
            health = self._health.get(device_id) or DeviceHealth(device_id=device_id, ts=now)
            changes: dict = {name: getattr(health, name) + n for name, n in increments.items()}
            if last_seen is not None:
                changes["last_seen"] = last_seen
            if last_error is not None:
                changes["last_error"] = last_error
            self._health[device_id] = msgspec.structs.replace(health, ts=now, **changes)

    def publish_health(self) -> None:
        """Queue one health message per device on ``devices.health``, keyed by device id."""
        now = dt.datetime.now(dt.UTC)
        messages = [
            Message(HEALTH_TOPIC, device.encode(), encode(msgspec.structs.replace(health, ts=now)))
            for device, health in self.health().items()
        ]
        if messages:
            try:
                self.spool.append(messages)
            except SpoolFull as exc:
                log.error("health not queued: %s", exc)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Gateway:
        for thread in self._threads:
            thread.start()
        return self

    def drained(self, timeout: float = 60.0) -> bool:
        """Wait until the broker took everything spooled so far; False if it did not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.spool):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop publishing; what is not delivered yet stays in the spool for the next start."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                self._producer.flush(timeout=1)
            self._forget_acknowledged()  # so the next start does not send them again
            self._producer.close(timeout=1)
        self.spool.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- publishing --------------------------------------------------------------------------

    def _report_health(self) -> None:
        while not self._stopping.wait(self.health_interval):
            self.publish_health()

    def _publish(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(KafkaError),
            wait=wait_exponential(multiplier=0.1, max=5),
            stop=stop_when_event_set(self._stopping),
            sleep=self._stopping.wait,
            before_sleep=lambda state: log.warning("broker unavailable, retrying: %s", state.outcome.exception()),
            reraise=False,
        )
        while not self._stopping.is_set():
            self._wake.clear()  # before looking: whatever is spooled or acknowledged from here on wakes the wait
            try:
                busy = retrying(self._pump)
            except RetryError:
                return  # stopping; the unacknowledged messages stay spooled
            if not busy:
                self._wake.wait(0.5)

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            security = kafka_options(self.kafka)
            ensure_topics(
                self.kafka.bootstrap_servers,
                self.kafka.partitions,
                self.kafka.replication_factor,
                self.app_id,
                security,
                retention_ms=self.kafka.topic_retention_ms,
            )
            self._producer = KafkaProducer(
                bootstrap_servers=self.kafka.bootstrap_servers,
                **security,
                client_id="mallstream-gateway",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                max_block_ms=int(self.send_timeout * 1000),
                request_timeout_ms=int(self.send_timeout * 1000) // 2,
                delivery_timeout_ms=int(self.send_timeout * 1000),
                reconnect_backoff_max_ms=1000,
            )
        return self._producer

    def _pump(self) -> bool:
        """Send what is to be sent again, then what was spooled since the last send; then forget in
        the spool what the broker acknowledged.

        False when there was nothing to do either way. A failed message raises, after the
        producer has settled everything sent after it, so that sending again from it keeps
        the spool's order.
        """
        producer = self._connect()
        while self._rounds and self._rounds[0].is_done:
            self._rounds.popleft()
        room = self.max_in_flight - len(self._in_flight) if len(self._rounds) < ROUNDS_IN_FLIGHT else 0
        batch = list(itertools.islice(self._resend, room))
        if room > len(batch):
            batch += self.spool.peek(room - len(batch), after=self._sent_up_to)
        for spooled in batch:
            message = spooled.message
            future = producer.send(message.topic, key=message.key, value=message.value)
            if self._resend and self._resend[0] is spooled:
                self._resend.popleft()  # only once handed over: a send that raises leaves it queued
            self._in_flight.append((spooled, future))
            self._sent_up_to = max(self._sent_up_to, spooled.id)
        if batch:
            self._rounds.append(future)
            future.add_both(self._acknowledged)
        taken = self._forget_acknowledged()
        if self._in_flight and self._in_flight[0][1].failed():
            with contextlib.suppress(KafkaError):
                producer.flush(self.send_timeout)
            failure = self._in_flight[0][1].exception
            self._start_again_after_failure()
            raise failure
        return bool(batch or taken)

    def _start_again_after_failure(self) -> None:
        """Queue the lately acknowledged and the unanswered messages that the spool no longer holds
        to be sent again, and go on in the spool from its first unanswered message."""
        unanswered = [spooled for spooled, _ in self._in_flight]
        again = {spooled.id: spooled for spooled in self._acknowledged_lately}
        again.update((s.id, s) for s in unanswered if s.id <= self._acknowledged_up_to)
        self._resend = deque(sorted(again.values(), key=lambda spooled: spooled.id))
        self._acknowledged_lately.clear()
        still_spooled = [s.id for s in unanswered if s.id > self._acknowledged_up_to]
        if still_spooled:
            self._sent_up_to = still_spooled[0] - 1
        self._in_flight.clear()
        self._rounds.clear()

    def _forget_acknowledged(self) -> int:
        """Delete from the spool the in-flight messages up to the first not yet acknowledged; how many."""
        taken = 0
        while self._in_flight and self._in_flight[0][1].succeeded():
            spooled = self._in_flight.popleft()[0]
            self._acknowledged_lately.append(spooled)
            self._acknowledged_up_to = max(self._acknowledged_up_to, spooled.id)
            taken += 1
        if taken:
            self.spool.ack(self._acknowledged_up_to)
            self.delivered += taken
        return taken

    def _acknowledged(self, _outcome: object) -> None:
        """The broker answered for a message (the producer's thread calls this): wake the publisher."""
        self._wake.set()


def run_gateway(settings: Settings, stop_event: threading.Event) -> None:
    """Run every configured device's bridge into one gateway until ``stop_event`` is set.

    Bridges are built (and configuration mistakes raised as BridgeConfigError) before anything
    starts; on stop, bridges close first so their last input is spooled, then the publisher.
    """
    conf = settings.gateway
    spool = Spool(settings.resolve(conf.spool_path), max_bytes=conf.spool_max_mb * 1024 * 1024)
    gateway = Gateway(spool, settings.kafka, settings.worker.app_id, health_interval=conf.health_interval)
    try:
        bridges = start_bridges(settings, gateway, http_address=(conf.http_host, conf.http_port))
    except BaseException:
        spool.close()
        raise
    gateway.start()
    # what exists by now lives as long as the process: full collections then walk only what came since,
    # and do not hold a read's way to the broker up for tens of milliseconds (as in the worker)
    gc.collect()
    gc.freeze()
    try:
        stop_event.wait()
    finally:
        for bridge in bridges:
            bridge.close()
        gateway.close()
