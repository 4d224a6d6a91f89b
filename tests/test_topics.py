"""Topics are created with their partition counts on the real broker, and a mismatch is refused."""

import pytest
from kafka import KafkaConsumer

from mallstream.streams import topics
from tests.conftest import cli, write_config

pytestmark = pytest.mark.pipeline


def test_topics_and_changelogs_are_created_with_the_configured_partitions(broker):
    created = topics.ensure_topics(broker, 3, 1, "hub")
    assert "pos.transactions" in created and "hub-cards-changelog" in created
    consumer = KafkaConsumer(bootstrap_servers=broker)
    try:
        for name in created:
            assert len(consumer.partitions_for_topic(name)) == 3, name
    finally:
        consumer.close()
    assert topics.ensure_topics(broker, 3, 1, "hub") == []


def test_a_worker_refuses_topics_with_another_partition_count(broker, tmp_path):
    topics.ensure_topics(broker, 2, 1, "mallstream")
    config = write_config(tmp_path, broker)  # asks for 4
    result = cli(config, "worker", check=False, timeout=60)
    assert result.returncode == 2
    assert "has 2 partitions but kafka.partitions is 4" in result.stderr
