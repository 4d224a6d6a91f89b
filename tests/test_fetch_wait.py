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
