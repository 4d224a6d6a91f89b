"""The patches of faust and aiokafka: each one's effect through the patched classes, and the version check."""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import Iterator
from types import SimpleNamespace

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from mallstream.cli.base import run_service
from mallstream.settings import load
from mallstream.streams import framework_patches
from mallstream.streams.app import Hub
from tests.conftest import REPO, write_config

PATCHED = [
    (Consumer, "perform_seek"),
    (Consumer, "getmany"),
    (ThreadDelegateConsumer, "_getmany"),
    (ProducerBuffer, "_send_pending"),
    (ProducerBuffer, "flush"),
    (Fetcher, "_proc_fetch_request"),
]


@pytest.fixture(autouse=True)
def unpatched() -> Iterator[None]:
    """Each test starts from the libraries as shipped (or as an earlier test left them) and leaves them so."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name in PATCHED]
    yield
    for owner, name, method in saved:
        setattr(owner, name, method)


def install(*, broker_long_polls: bool = True, empty_fetch_wait_ms: int = 0, flush_timeout_s: float = 60.0) -> None:
    framework_patches.install(
        broker_long_polls=broker_long_polls, empty_fetch_wait_ms=empty_fetch_wait_ms, flush_timeout_s=flush_timeout_s
    )


# -- versions ----------------------------------------------------------------------------------------------------


def test_pyproject_pins_exactly_the_versions_the_patches_were_verified_with() -> None:
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, verified in framework_patches.VERIFIED.items():
        assert any(pin.split("[")[0].split("=")[0] == package and pin.endswith(f"=={verified}") for pin in pins), (
            package
        )
    framework_patches.check_versions()  # and this environment has them


@pytest.mark.parametrize(("found", "shown"), [("0.15.0", "0.15.0"), (None, "not installed")])
def test_a_worker_refuses_to_start_on_another_version_of_a_patched_library(
    tmp_path, monkeypatch, capsys, found, shown
) -> None:
    def installed(package: str) -> str:
        if package != "aiokafka":
            return framework_patches.VERIFIED[package]
        if found is None:
            raise framework_patches.PackageNotFoundError(package)
        return found

    monkeypatch.setattr(framework_patches, "version", installed)
    settings = load(write_config(tmp_path, "127.0.0.1:1"))
    with pytest.raises(SystemExit) as exit_:
        run_service(Hub, settings, None, "main")  # as `mallstream worker` runs it
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert f"aiokafka {shown} is installed" in error and "aiokafka==0.14.0" in error
    assert Fetcher.__dict__["_proc_fetch_request"] is not framework_patches._fetch_then_wait  # nothing patched


# -- seek guard --------------------------------------------------------------------------------------------------

MOVED = TP("pos.by_member", 1)  # committed offset 2: the seek moves it back there


class ConsumerThread:
    """The broker end of faust's consumer thread: a batch from the committed offset 2, a slow seek back there
    (the batch is fetched again from there), then nothing."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.batches = 1  # fetched before the seek
        self.seeks = 0

    async def getmany(self, active_partitions: set, timeout: float) -> dict:
        if self.batches:
            self.batches -= 1
            return {
                MOVED: [
                    ConsumerRecord(MOVED.topic, MOVED.partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])
                    for offset in range(2, 6)
                ]
            }
        if self.seeks:
            self.done.set()  # the batch came again after the seek, and nothing since
        await asyncio.sleep(0.01)
        return {}

    def highwater(self, tp: TP) -> int:
        return 6

    async def seek_to_committed(self) -> dict:
        await asyncio.sleep(0.05)  # the broker's answer
        self.seeks += 1
        self.batches = 1
        return {MOVED: 2}


def test_every_record_from_the_committed_offset_is_delivered_after_the_seek_that_ends_a_rebalance() -> None:
    """faust's own drain loop; the seek lands while record 3 is being delivered (its agent's queue full), as when
    ``Recovery.on_recovery_completed`` seeks with the flow running. What was delivered before the seek ended is
    thrown away with the agents' queues (``flow_control.resume``); everything from offset 2 on must come again."""
    install()

    async def scenario() -> tuple[list[int], int]:
        consumer = faust.App("seek-test", broker="kafka://127.0.0.1:1").consumer
        thread = consumer._thread = ConsumerThread()
        consumer._active_partitions = {MOVED}
        kept: list[int] = []  # delivered after the seek ended: what the agents process
        seek: asyncio.Future | None = None

        async def deliver(message: faust.types.Message) -> None:
            nonlocal seek
            if seek is None and message.offset == 3:
                seek = asyncio.ensure_future(consumer.perform_seek())
                await seek
            if seek is not None and seek.done():
                kept.append(message.offset)

        consumer.callback = deliver
        fetcher = SimpleNamespace(_stopped=thread.done)
        await asyncio.wait_for(consumer._drain_messages(fetcher), 10)
        return kept, consumer._read_offset[MOVED]

    kept, read_offset = asyncio.run(scenario())
    assert set(range(2, 6)) <= set(kept), f"offsets lost for good: {set(range(2, 6)) - set(kept)}"
    assert read_offset == 5


def test_a_fetch_does_not_overlap_a_seek() -> None:
    install()
    log = []

    class Thread:
        async def seek_to_committed(self) -> dict:
            log.append("seek starts")
            await asyncio.sleep(0.05)
            log.append("seek ends")
            return {}

        async def getmany(self, active_partitions: set, timeout: float) -> dict:
            log.append("fetch")
            return {}

    async def scenario() -> None:
        consumer = faust.App("seek-test", broker="kafka://127.0.0.1:1").consumer
        consumer._thread = Thread()
        seeking = asyncio.ensure_future(consumer.perform_seek())
        await asyncio.sleep(0.01)
        await consumer._getmany({MOVED}, 1.0)
        await seeking

    asyncio.run(scenario())
    assert log == ["seek starts", "seek ends", "fetch"]


# -- producer drain ----------------------------------------------------------------------------------------------


class SlowChannel:
    """Hands each message over in ``seconds`` (longer than faust's 0.1 s patience), or at once when released."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.released = asyncio.Event()
        self.published: list[int] = []

    async def publish_message(self, fut: SimpleNamespace, wait: bool = False) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.released.wait(), self.seconds)
        self.published.append(fut.number)


async def _flush_five(channel: SlowChannel) -> tuple[int, list[int]]:
    """What is left in the buffer after a flush, and what the channel got by then."""
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    await buffer.start()
    try:
        for number in range(5):
            buffer.put(SimpleNamespace(number=number, message=SimpleNamespace(channel=channel)))
        await asyncio.wait_for(buffer.flush(), 10)
        return buffer.size, list(channel.published)
    finally:
        channel.released.set()
        await buffer.flush()  # the rest goes at once now: a buffer stops only when empty
        await buffer.stop()


def test_the_pre_commit_flush_returns_only_when_every_message_is_handed_over() -> None:
    install()
    left, published = asyncio.run(_flush_five(SlowChannel(0.25)))
    assert left == 0
    assert published == [0, 1, 2, 3, 4]  # the last one too, still in flight once the queue was empty


def test_a_flush_the_broker_does_not_take_fails_loudly_at_its_deadline() -> None:
    install(flush_timeout_s=0.3)
    with pytest.raises(framework_patches.ProducerFlushTimeout, match=r"kafka.flush_timeout_s \(0.3 s\)"):
        asyncio.run(_flush_five(SlowChannel(3600)))


# -- fetch pacing --------------------------------------------------------------------------------------------------


def _fetches_in_a_second_then_a_record(bootstrap: str, topic: str) -> int:
    """Fetch requests sent in one idle second; a record sent afterwards must still arrive."""
    sent = 0
    patched = Fetcher._proc_fetch_request

    async def counted(self, *args):  # type: ignore[no-untyped-def]
        nonlocal sent
        sent += 1
        return await patched(self, *args)

    async def scenario() -> int:
        nonlocal sent
        Fetcher._proc_fetch_request = counted
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            sent = 0
            await asyncio.sleep(1.0)
            idle_fetches = sent
            producer = KafkaProducer(bootstrap_servers=bootstrap)
            producer.send(topic, b"hello").get(timeout=10)
            producer.close()
            record = await asyncio.wait_for(consumer.getone(), 10)
            assert record.value == b"hello"
            return idle_fetches
        finally:
            await consumer.stop()
            Fetcher._proc_fetch_request = patched

    return asyncio.run(scenario())


def test_an_idle_consumer_fetches_at_the_waits_pace_only_where_the_broker_does_not_long_poll(broker: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic("quiet", 1, 1), NewTopic("busy", 1, 1)])
    admin.close()
    install(broker_long_polls=True, empty_fetch_wait_ms=100)  # as against Kafka: aiokafka's own fetch
    busy_polls = _fetches_in_a_second_then_a_record(broker, "busy")
    install(broker_long_polls=False, empty_fetch_wait_ms=100)
    idle_polls = _fetches_in_a_second_then_a_record(broker, "quiet")
    assert busy_polls > 50  # noida-db answers empty fetches at once: unpaced, the consumer spins
    assert idle_polls <= 11  # one fetch per 100 ms wait


def test_a_gathering_consumer_fetches_once_per_max_wait_while_records_trickle_in(broker: str) -> None:
    """The sink lane's consumer (fetch_min_bytes > 1) pauses ``fetch_max_wait_ms`` after every fetch, as Kafka
    would hold it, and still gets every record."""
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic("trickle", 1, 1)])
    admin.close()
    install(broker_long_polls=False, empty_fetch_wait_ms=10)
    fetches = 0
    gathering = Fetcher._proc_fetch_request

    async def counted(self, *args):  # type: ignore[no-untyped-def]
        nonlocal fetches
        fetches += 1
        return await gathering(self, *args)

    async def scenario() -> list[bytes]:
        nonlocal fetches
        consumer = AIOKafkaConsumer(
            "trickle",
            bootstrap_servers=broker,
            auto_offset_reset="earliest",
            fetch_min_bytes=1024 * 1024,
            fetch_max_wait_ms=200,
        )
        await consumer.start()
        producer = KafkaProducer(bootstrap_servers=broker, linger_ms=0)
        got: list[bytes] = []

        async def read() -> None:  # as a lane gathers: asking for more all the time
            while len(got) < 200:
                batches = await consumer.getmany(timeout_ms=50)
                got.extend(record.value for records in batches.values() for record in records)

        try:
            fetches = 0
            reading = asyncio.create_task(read())
            for number in range(200):  # a record every 5 ms for a second
                producer.send("trickle", str(number).encode()).get(timeout=10)
                await asyncio.sleep(0.005)
            await asyncio.wait_for(reading, 10)
            return got
        finally:
            producer.close()
            await consumer.stop()

    Fetcher._proc_fetch_request = counted
    got = asyncio.run(scenario())
    assert got == [str(number).encode() for number in range(200)]
    assert fetches <= 12, "about one fetch per 200 ms over the second and a bit of the records coming in"
