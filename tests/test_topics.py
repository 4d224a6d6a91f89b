"""Topics are created with their partition counts (and, on external Kafka, retention) on the real broker."""

import logging

import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

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


def topic_config(broker: str, name: str, key: str) -> str | None:
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="ALL")
    finally:
        admin.close()
    return found["topic"][name].get(key, {}).get("value")


def test_an_external_kafka_gets_the_retention_and_existing_topics_set_otherwise_are_reported(broker, caplog):
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:  # made by hand before the hub: no retention, and a changelog that is not compacted
        admin.create_topics([NewTopic("ledger", 3, 1), NewTopic("hub-cards-changelog", 3, 1)])
    finally:
        admin.close()
    three_days = 3 * 24 * 3_600_000
    with caplog.at_level(logging.WARNING, logger=topics.__name__):
        topics.ensure_topics(broker, 3, 1, "hub", retention_ms=three_days)
    assert topic_config(broker, "pos.transactions", "retention.ms") == str(three_days)
    assert topic_config(broker, "hub-sale_owners-changelog", "cleanup.policy") == "compact"
    # the hub's warnings only: a busy machine may add kafka-python's own
    [warning] = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.name == topics.__name__
    ]
    # what the broker has by default: a week, and delete
    assert f"ledger retention.ms=604800000 (wanted {three_days})" in warning
    assert "hub-cards-changelog cleanup.policy=delete (wanted compact)" in warning
    assert "pos.transactions" not in warning
