"""The naive faust app, the yardstick the worker's throughput is compared with (``mallstream bench --e2e``).

Defined so it cannot be made slow on purpose: one agent per input topic, ``async for event
in stream``, the same rule cores as the worker called per event, one faust Table write per
touched key per event, the memory store and faust's default settings. It sends and sinks
nothing (no ledger, no ClickHouse), which only flatters it::

    python -m benchmarks.bench_naive CONFIG
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import faust
import msgspec

from mallstream.settings import Settings, load
from mallstream.streams import topics
from mallstream.streams.core.customers import CustomerState, observe
from mallstream.streams.core.engine import evaluate
from mallstream.streams.core.footfall import FootfallState, apply_event
from mallstream.streams.core.footfall_layout import FootfallLayout
from mallstream.streams.core.malls import MallDirectory
from mallstream.streams.core.parking import ParkingLayout, ParkingState, apply_parking_event
from mallstream.streams.core.routing import route_receipt
from mallstream.streams.core.rules import RuleFile
from mallstream.streams.core.snapshots import (
    footfall_from_bytes,
    footfall_to_bytes,
    parking_from_bytes,
    parking_to_bytes,
)
from mallstream.streams.core.vip import VipPlaces, VipState, on_read
from mallstream.streams.loyalty_agents import RULES_CHECK_S, decode_card, encode_card
from mallstream.streams.master_data import load_master_data
from mallstream.streams.records import FootfallTick, ParkingEvent, PosTransaction, RfidRead, decode

_pack = msgspec.msgpack.Encoder()


def naive_app(settings: Settings) -> faust.App:
    """The app, its tables and its four agents, under the consumer group ``<app_id>-naive``."""
    app = faust.App(
        f"{settings.worker.app_id}-naive",
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        web_port=settings.worker.web_port,
        web_host="127.0.0.1",
        autodiscover=False,
        # events and states are bytes already (JSON, msgpack): no codec on top
        key_serializer="raw",
        value_serializer="raw",
    )

    def table(name: str) -> faust.Table:
        return app.Table(name, partitions=settings.kafka.partitions, key_type=bytes, value_type=bytes)

    def topic(spec: topics.TopicSpec) -> faust.TopicT:
        return app.topic(spec.name, key_type=bytes, value_type=bytes)

    sale_owners, cards, customers, vip_states, footfall_states, parking_states = (
        table(name)
        for name in ("sale_owners", "cards", "customer_states", "vip_states", "footfall_states", "parking_states")
    )
    rules = RuleFile(settings.resolve(settings.rules.file), check_every_s=RULES_CHECK_S)  # as the worker does
    master = load_master_data(settings.members.source and settings.resolve(settings.members.source))
    malls = MallDirectory(settings.malls)
    mall = settings.malls[0]
    footfall_layout, parking_layout = FootfallLayout.of(mall), ParkingLayout.of(mall)
    places_of_reader = {reader.id: VipPlaces.of(mall) for reader in mall.rfid_readers}

    @app.agent(topic(topics.POS_TRANSACTIONS))
    async def receipts(stream: faust.StreamT) -> None:
        async for value in stream:
            txn = decode(PosTransaction, value)
            owner = sale_owners.get(txn.original_txn_id.encode()) if txn.original_txn_id else None
            routed = route_receipt(txn, owner.decode() if owner else None, malls)
            if routed.remember_owner:
                sale_owners[txn.routing_key.encode()] = routed.remember_owner.encode()
            member = routed.txn.member_id
            if member is None:
                continue
            key, now = member.encode(), dt.datetime.now(dt.UTC)
            stored = cards.get(key)
            card, _ = evaluate(decode_card(stored) if stored else None, routed.txn, rules.current(), now)
            cards[key] = encode_card(card)
            stored = customers.get(key)
            state = msgspec.msgpack.decode(stored, type=CustomerState) if stored else CustomerState(member)
            customers[key] = _pack.encode(observe(state, routed.txn, routed.txn.ts, settings.customers, None)[0])

    @app.agent(topic(topics.RFID_READS))
    async def reads(stream: faust.StreamT) -> None:
        async for value in stream:
            read = decode(RfidRead, value)
            member, places = master.member_of_tag(read.epc), places_of_reader.get(read.reader_id)
            if member is None or places is None:
                continue
            key = member.member_id.encode()
            stored = vip_states.get(key)
            state = msgspec.msgpack.decode(stored, type=VipState) if stored else None
            vip_states[key] = _pack.encode(on_read(state, read, member, read.ts, places, settings.vip)[0])

    @app.agent(topic(topics.FOOTFALL_TICKS))
    async def ticks(stream: faust.StreamT) -> None:
        async for value in stream:
            tick = decode(FootfallTick, value)
            key = mall.id.encode()
            stored = footfall_states.get(key)
            state = footfall_from_bytes(stored) if stored else FootfallState()
            footfall_states[key] = footfall_to_bytes(apply_event(state, tick, tick.ts.timestamp(), footfall_layout)[0])

    @app.agent(topic(topics.PARKING_EVENTS))
    async def gates(stream: faust.StreamT) -> None:
        async for value in stream:
            gate_event = decode(ParkingEvent, value)
            key = gate_event.car_park_id.encode()
            stored = parking_states.get(key)
            state = parking_from_bytes(stored) if stored else ParkingState()
            parking_states[key] = parking_to_bytes(
                apply_parking_event(state, gate_event, gate_event.ts, parking_layout)[0]
            )

    return app


if __name__ == "__main__":
    naive = naive_app(load(Path(sys.argv[1])))
    sys.argv[1:] = ["worker", "--loglevel", "warn"]
    naive.main()
