"""A worker with one stateful lane, for the lane's own tests: per account, a running total of amounts.

    python -m tests.lane_counter BOOTSTRAP STATE_DIR INSTANCE WEB_PORT

It reads ``lanetest.inputs`` (key: account, value: ``{"id": n, "amount": a}``), keeps per
account the total and the ids applied (so an input read again changes nothing) in the store
``totals``, and sends ``{"id", "account", "total"}`` to ``lanetest.outputs`` for every input,
again for one read again. The tests arm the lane's checkpoint failpoints through
MALLSTREAM_FAILPOINT and compare what comes out with the inputs.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import faust
from aiokafka import ConsumerRecord
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from mallstream.settings import Kafka, Worker
from mallstream.streams import framework_patches
from mallstream.streams.lanes import BatchLane

GROUP = "lanetest-counter"
INPUTS, OUTPUTS, CHANGELOG = "lanetest.inputs", "lanetest.outputs", "lanetest-totals-changelog"
PARTITIONS = 4


def create_topics(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for name in (INPUTS, OUTPUTS, CHANGELOG):
            configs = {"cleanup.policy": "compact"} if name == CHANGELOG else {}
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs=configs)])
    finally:
        admin.close()


def build(bootstrap: str, state_dir: Path, instance: str, web_port: int) -> faust.App:
    (state_dir / "faust").mkdir(parents=True, exist_ok=True)
    framework_patches.install(broker_long_polls=False, flush_timeout_s=30, empty_fetch_wait_ms=50)
    app = faust.App(
        "lanetest",
        broker=f"kafka://{bootstrap}",
        web_port=web_port,
        web_host="127.0.0.1",
        datadir=str(state_dir / "faust"),
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=6,
        broker_heartbeat_interval=0.6,
        autodiscover=False,
        consumer_group_instance_id=instance,
    )
    kafka = Kafka(mode="external", bootstrap_servers=bootstrap, partitions=PARTITIONS)
    worker = Worker(instance_id=instance, state_dir=state_dir, session_timeout=6)
    lane = BatchLane(app, kafka, worker, GROUP, max_records=200, max_wait_s=0.05)
    totals = lane.store("totals", CHANGELOG, state_dir, PARTITIONS)

    async def count(records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            store = totals.partition(record.partition)
            event = json.loads(record.value)
            state = json.loads(store.get(record.key) or b'{"total": 0, "seen": []}')
            if event["id"] not in state["seen"]:
                state["total"] += event["amount"]
                state["seen"].append(event["id"])
                store[record.key] = json.dumps(state).encode()
            output = {"id": event["id"], "account": record.key.decode(), "total": state["total"]}
            await app.producer.send(OUTPUTS, record.key, json.dumps(output).encode(), None, None, None)

    lane.step(INPUTS, count)
    lane.install()
    return app


if __name__ == "__main__":
    bootstrap, state_dir, instance, web_port = sys.argv[1:5]
    create_topics(bootstrap)
    worker = faust.Worker(
        build(bootstrap, Path(state_dir), instance, int(web_port)), loglevel="info", quiet=True, redirect_stdouts=False
    )
    worker.spinner = None
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
