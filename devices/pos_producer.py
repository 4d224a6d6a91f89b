"""For POS integrators: publish receipts to the hub, validated and keyed before they leave the till.

    from mallstream.devices.pos_producer import PosProducer
    with PosProducer("kafka-1:9092") as hub:
        hub.send({"type": "pos_transaction", "txn_id": "...", ...})   # or a PosTransaction

A receipt the hub would refuse raises :class:`~mallstream.streams.records.InvalidEvent`
here, with the reason, instead of becoming a dead letter later; a receipt the broker never
took raises its Kafka error from the next ``send`` or ``flush``, instead of being lost quietly. Receipts are keyed by
the sale they belong to, so a return reaches the partition that knows the sale's member.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import msgspec
from kafka import KafkaProducer

from mallstream.sending import Deliveries
from mallstream.streams.records import PosTransaction, dead_letter, decode, encode
from mallstream.streams.topics import DEAD_LETTERS, POS_TRANSACTIONS

from .normalise import Decoded


class PosProducer:
    """A kafka-python producer that only sends receipts that validate."""

    def __init__(self, bootstrap_servers: str, **producer_config: Any) -> None:
        config = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, **producer_config}
        self._hub = Deliveries(KafkaProducer(bootstrap_servers=bootstrap_servers, **config))

    def send(self, receipt: PosTransaction | dict[str, Any] | bytes) -> None:
        """Validate and queue one receipt; ``flush()`` (or leaving the ``with``) waits for the broker."""
        if isinstance(receipt, PosTransaction):
            receipt.validate()
            txn = receipt
        else:
            payload = (
                receipt if isinstance(receipt, bytes) else msgspec.json.encode({"type": "pos_transaction", **receipt})
            )
            txn = decode(PosTransaction, payload)
        self._hub.send(POS_TRANSACTIONS.name, key=txn.routing_key.encode(), value=encode(txn))

    def publish(self, decoded: Decoded, source: str, mall_id: str | None = None) -> None:
        """Send what an importer decoded: receipts (stamped with ``mall_id``) and its rejects as dead letters."""
        for txn in decoded.events:  # an importer of receipts decodes nothing else
            self.send(msgspec.structs.replace(txn, mall_id=txn.mall_id or mall_id))
        for reject in decoded.rejects:
            letter = dead_letter(source, reject.reason, reject.raw)
            self._hub.send(DEAD_LETTERS.name, key=letter.dead_letter_id.encode(), value=encode(letter))

    def flush(self, timeout: float | None = None) -> None:
        self._hub.flush(timeout)

    def close(self) -> None:
        self._hub.close()

    def __enter__(self) -> PosProducer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.flush()
        finally:
            self._hub.close(failed=kind is not None)
