"""Kafka clients of the commands (replay, import-poslog, simulate): they give up when the broker stays away.

kafka-python by default retries a produce request without end ("retrying (inf attempts left)"),
and a command that never looks at its records' futures goes on sending to a dead broker until
it is killed. Here every wait of a client is bounded by ``kafka.unreachable_timeout_s``, and a
record the broker never took becomes :class:`BrokerError`, naming the broker and how long it
was tried, which the CLI prints before exiting non-zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from .settings import Kafka


class BrokerError(RuntimeError):
    """The broker stayed unreachable for ``kafka.unreachable_timeout_s``, or refused a record."""


def producer_limits(conf: Kafka) -> dict[str, int]:
    """kafka-python producer options that bound each wait for the broker by ``unreachable_timeout_s``.

    A batch not acknowledged within the delivery timeout fails instead of being retried again.
    """
    limit = int(conf.unreachable_timeout_s * 1000)
    return {
        "bootstrap_timeout_ms": limit,
        "max_block_ms": limit,
        "delivery_timeout_ms": limit,
        "request_timeout_ms": min(30_000, limit // 2),
        "reconnect_backoff_max_ms": min(1000, limit // 4),
    }


def client_limits(conf: Kafka) -> dict[str, int]:
    """The same bounds for a consumer or admin client (their request timeout must exceed a fetch's 500 ms wait)."""
    limit = int(conf.unreachable_timeout_s * 1000)
    return {
        "bootstrap_timeout_ms": limit,
        "request_timeout_ms": min(30_000, max(1000, limit // 2)),
        "reconnect_backoff_max_ms": min(1000, limit // 4),
    }


@contextmanager
def broker_errors(conf: Kafka) -> Iterator[None]:
    """kafka-python's errors as one :class:`BrokerError` that says which broker and, for a timeout, for how long."""
    try:
        yield
    except KafkaTimeoutError as exc:
        raise BrokerError(
            f"the Kafka broker at {conf.bootstrap_servers} did not answer for "
            f"{conf.unreachable_timeout_s:g} s (kafka.unreachable_timeout_s); gave up: {exc}"
        ) from exc
    except KafkaError as exc:
        raise BrokerError(f"the Kafka broker at {conf.bootstrap_servers} refused a record: {exc!r}") from exc


class Deliveries:
    """A producer whose first undelivered record is raised, by the next send or by :meth:`flush`."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.producer = producer
        self._failure: BaseException | None = None

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.raise_failure()
        self.producer.send(topic, key=key, value=value).add_errback(self._failed)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every record sent (the delivery timeout bounds it); raise the first that failed."""
        self.producer.flush(timeout)
        self.raise_failure()

    def close(self, failed: bool = False) -> None:
        """Close; after a failure at once, dropping what still waits rather than waiting for it to expire."""
        self.producer.close(timeout=0 if failed or self._failure is not None else None)

    def __enter__(self) -> Deliveries:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(failed=kind is not None)

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _failed(self, error: Any) -> None:
        # called on the producer's thread; the first failure is the one to report
        if self._failure is None:
            self._failure = error
