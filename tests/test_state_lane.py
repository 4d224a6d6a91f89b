"""A stateful lane (streams/lanes.py with streams/state/) on the real broker: restore, a lost store, SIGKILL at
every step of the checkpoint, and partitions moving between two workers; the totals stay exact.

The worker is tests/lane_counter.py: per account, the running total of the amounts it was sent.
Every test writes its inputs first (a backlog), runs workers until the group has committed
all of them, then compares the changelog's last totals, the local stores and the outputs with
the sums of the inputs: an input lost or counted twice shows.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.conftest import SCALE, free_port
from tests.lane_counter import CHANGELOG, GROUP, INPUTS, OUTPUTS, PARTITIONS, create_topics

pytestmark = [pytest.mark.pipeline, pytest.mark.heavy, pytest.mark.timeout(600)]

ACCOUNTS = 40
ROOT = Path(__file__).resolve().parent.parent


class LaneWorker:
    def __init__(self, bootstrap: str, state_dir: Path, instance: str, log: Path) -> None:
        self.bootstrap, self.state_dir, self.instance, self.log = bootstrap, state_dir, instance, log
        self.process: subprocess.Popen | None = None

    def start(self, failpoint: str | None = None) -> LaneWorker:
        env = {k: v for k, v in os.environ.items() if k != "MALLSTREAM_FAILPOINT"}
        if failpoint:
            env["MALLSTREAM_FAILPOINT"] = failpoint
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.lane_counter",
                    self.bootstrap,
                    str(self.state_dir),
                    self.instance,
                    str(free_port()),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        return self

    def killed_by_failpoint(self, timeout: float = 120) -> bool:
        assert self.process is not None
        try:
            return self.process.wait(timeout) == -signal.SIGKILL
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def send_inputs(bootstrap: str, count: int, seed: int, first_id: int = 0) -> dict[str, int]:
    """``count`` inputs over the accounts, as a backlog; returns the sum per account."""
    create_topics(bootstrap)
    rng = random.Random(seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    sums: dict[str, int] = defaultdict(int)
    for n in range(first_id, first_id + count):
        account, amount = f"acct-{rng.randrange(ACCOUNTS)}", rng.randrange(1, 1000)
        sums[account] += amount
        producer.send(INPUTS, key=account.encode(), value=json.dumps({"id": n, "amount": amount}).encode())
    producer.flush()
    producer.close()
    return sums


def wait_until_committed(bootstrap: str, *workers: LaneWorker, timeout: float = 180) -> None:
    """Until the group has committed every input; fails at once when every worker has exited."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    try:
        parts = [TopicPartition(INPUTS, p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends = consumer.end_offsets(parts)
            if all((consumer.committed(tp) or 0) >= ends[tp] for tp in parts):
                return
            if workers and all(w.process is None or w.process.poll() is not None for w in workers):
                raise AssertionError(f"the workers exited: {workers[0].log.read_text()[-3000:]}")
            time.sleep(0.5)
        raise AssertionError(f"the lane did not commit its inputs within {timeout} s")
    finally:
        consumer.close()


def run_to_the_end(bootstrap: str, worker: LaneWorker) -> None:
    """Start the worker, wait until the group committed every input, and stop it."""
    worker.start()
    try:
        wait_until_committed(bootstrap, worker)
    finally:
        worker.stop()


def read_topic(bootstrap: str, topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    ends = consumer.end_offsets(parts)
    records = []
    while any(consumer.position(tp) < ends[tp] for tp in parts):
        for batch in consumer.poll(timeout_ms=1000).values():
            records += batch
    consumer.close()
    return records


def changelog_totals(bootstrap: str) -> dict[str, dict]:
    """The last value per key of the changelog: what a worker with no local store would restore."""
    return {r.key.decode(): json.loads(r.value) for r in read_topic(bootstrap, CHANGELOG)}


def local_totals(state_dir: Path) -> dict[str, dict]:
    found = {}
    for path in (state_dir / GROUP / "totals").glob("*.sqlite3"):
        with sqlite3.connect(path) as db:
            found |= {key.decode(): json.loads(value) for key, value in db.execute("SELECT key, value FROM kv")}
    return found


def assert_exact(bootstrap: str, sums: dict[str, int], inputs: int) -> None:
    """Totals equal the sums, every id counted once, and each id's first output shows the total after it."""
    totals = changelog_totals(bootstrap)
    assert {account: state["total"] for account, state in totals.items()} == dict(sums)
    seen = [n for state in totals.values() for n in state["seen"]]
    assert sorted(seen) == list(range(inputs))
    first: dict[int, int] = {}
    for record in read_topic(bootstrap, OUTPUTS):
        output = json.loads(record.value)
        first[output["id"]] = min(first.get(output["id"], output["total"]), output["total"])
    assert sorted(first) == list(range(inputs)), "an input without its output"
    running: dict[str, int] = defaultdict(int)
    for state in totals.values():
        del state  # the order of application per account is the inputs' order: rebuild it from the backlog
    for record in read_topic(bootstrap, INPUTS):
        event = json.loads(record.value)
        running[record.key.decode()] += event["amount"]
        assert first[event["id"]] == running[record.key.decode()], f"output of input {event['id']}"


def test_a_restarted_lane_restores_its_state_from_the_local_store_and_the_changelog_tail(broker, tmp_path):
    sums = send_inputs(broker, 2000, seed=1)
    worker = LaneWorker(broker, tmp_path / "state", "w1", tmp_path / "w1.log")
    run_to_the_end(broker, worker)
    assert local_totals(tmp_path / "state") == changelog_totals(broker)
    more = send_inputs(broker, 1000, seed=2, first_id=2000)
    run_to_the_end(broker, worker)
    log = (tmp_path / "w1.log").read_text()
    assert "restored (0 changelog records)" in log, "the second start read the changelog again, not the local store"
    for account, amount in more.items():
        sums[account] += amount
    assert_exact(broker, sums, 3000)


def test_a_lost_store_comes_back_whole_from_its_changelog(broker, tmp_path):
    sums = send_inputs(broker, 1500, seed=3)
    worker = LaneWorker(broker, tmp_path / "state", "w1", tmp_path / "w1.log")
    run_to_the_end(broker, worker)
    shutil.rmtree(tmp_path / "state")
    more = send_inputs(broker, 500, seed=4, first_id=1500)
    run_to_the_end(broker, worker)
    for account, amount in more.items():
        sums[account] += amount
    assert_exact(broker, sums, 2000)
    assert local_totals(tmp_path / "state") == changelog_totals(broker)


@pytest.mark.parametrize("step", ["after_steps", "after_changelog", "after_flush", "after_save", "after_commit"])
def test_sigkill_at_every_step_of_the_checkpoint_loses_nothing_and_counts_nothing_twice(broker, tmp_path, step):
    sums = send_inputs(broker, 3000, seed=5)
    worker = LaneWorker(broker, tmp_path / "state", "w1", tmp_path / "w1.log")
    try:
        # a kill in the first batches and (at full size) one later, each with state on the changelog before it
        for passes in (2, 5) if SCALE > 1 else (3,):
            worker.start(failpoint=f"lane.{GROUP}.{step}:{passes}")
            assert worker.killed_by_failpoint(), f"{step} never fired: {(tmp_path / 'w1.log').read_text()[-2000:]}"
        worker.start()
        wait_until_committed(broker, worker)
    finally:
        worker.stop()
    assert_exact(broker, sums, 3000)
    assert local_totals(tmp_path / "state") == changelog_totals(broker)


def test_partitions_moving_between_two_workers_keep_their_state(broker, tmp_path):
    sums = send_inputs(broker, 2000, seed=6)
    one = LaneWorker(broker, tmp_path / "one", "one", tmp_path / "one.log").start()
    two = LaneWorker(broker, tmp_path / "two", "two", tmp_path / "two.log")
    try:
        time.sleep(3)
        two.start()  # takes half the partitions from one, with their state
        more = send_inputs(broker, 2000, seed=7, first_id=2000)
        time.sleep(2)
        one.kill()  # its partitions go to two once the session times out
        more2 = send_inputs(broker, 1000, seed=8, first_id=4000)
        time.sleep(8)
        one.start()  # and some come back
        wait_until_committed(broker, one, two)
    finally:
        one.stop()
        two.stop()
    for extra in (more, more2):
        for account, amount in extra.items():
            sums[account] += amount
    assert_exact(broker, sums, 5000)
    assert "restored" in (tmp_path / "two.log").read_text()
