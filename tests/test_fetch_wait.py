"""The consumer waits after an empty fetch instead of re-sending it at once, and still sees new records."""

from __future__ import annotations

import asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from mallstream.streams import fetch_wait


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


def test_an_idle_consumer_fetches_at_the_waits_pace_and_still_gets_new_records(broker: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic("quiet", 1, 1), NewTopic("busy", 1, 1)])
    admin.close()
    original = Fetcher._proc_fetch_request
    try:
        busy_polls = _fetches_in_a_second_then_a_record(broker, "busy")  # aiokafka as shipped
        fetch_wait.install(100)
        idle_polls = _fetches_in_a_second_then_a_record(broker, "quiet")
    finally:
        Fetcher._proc_fetch_request = original
    assert busy_polls > 50  # the embedded broker answers empty fetches at once: the consumer spins
    assert idle_polls <= 11  # one fetch per 100 ms wait


def test_a_gathering_consumer_fetches_once_per_max_wait_while_records_trickle_in(broker: str) -> None:
    """The sink lane's consumer (fetch_min_bytes > 1) pauses ``fetch_max_wait_ms`` after every fetch, as Kafka
    would hold it, and still gets every record."""
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic("trickle", 1, 1)])
    admin.close()
    original, fetches = Fetcher._proc_fetch_request, [0]
    fetch_wait.install(10)
    gathering = Fetcher._proc_fetch_request

    async def counted(self, *args):  # type: ignore[no-untyped-def]
        fetches[0] += 1
        return await gathering(self, *args)

    async def scenario() -> list[bytes]:
        consumer = AIOKafkaConsumer("trickle", bootstrap_servers=broker, auto_offset_reset="earliest",
                                    fetch_min_bytes=1024 * 1024, fetch_max_wait_ms=200)
        await consumer.start()
        producer = KafkaProducer(bootstrap_servers=broker, linger_ms=0)
        got: list[bytes] = []

        async def read() -> None:  # as a lane gathers: asking for more all the time
            while len(got) < 200:
                batches = await consumer.getmany(timeout_ms=50)
                got.extend(record.value for records in batches.values() for record in records)

        try:
            fetches[0] = 0
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
    try:
        got = asyncio.run(scenario())
    finally:
        Fetcher._proc_fetch_request = original
    assert got == [str(number).encode() for number in range(200)]
    assert fetches[0] <= 12, "about one fetch per 200 ms over the second and a bit of the records coming in"
