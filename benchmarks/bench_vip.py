"""Reads per second through the pure VIP core, state kept in a dict as the agent keeps it.

The reads look like a busy door: each time a VIP passes a reader, its tag is read in
a burst on several antennas, and the driver flags some reads as duplicates, so most
reads end in the dedup check and a few move presence and raise alerts.
"""

from __future__ import annotations

import datetime as dt
import random
import time

from mallstream.settings import Device, Mall, Place, Store, VipPolicy
from mallstream.streams.core.vip import Member, VipPlaces, VipState, on_read
from mallstream.streams.records import RfidRead

_START = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
_BENCH_MALL = Mall(
    id="bench",
    entrances=[Place(id="E-north"), Place(id="E-south")],
    zones=[Place(id="Z-vip")],
    stores=[Store(id="S101", brand_counters=["Lancome"]), Store(id="S102", brand_counters=["Dior"])],
    rfid_readers=[
        Device(id=f"R-{place}-{n}", place=place)
        for place in ("E-north", "E-south", "Z-vip", "S101", "S102")
        for n in (1, 2)
    ],
)
READS_PER_PASS = 12
PASS_SECONDS = 2.0


def vip_reads(count: int, members: int = 2000, seed: int = 1) -> list[RfidRead]:
    """``count`` reads in time order: VIPs walking from reader to reader, each pass a burst on two readers."""
    rng = random.Random(seed)
    readers = [reader.id for reader in _BENCH_MALL.rfid_readers]
    reads: list[RfidRead] = []
    clock = 0.0
    while len(reads) < count:
        epc = f"E2801160{rng.randrange(members):016X}"
        place = rng.randrange(len(readers) // 2)
        clock += rng.expovariate(5.0)
        for burst in range(READS_PER_PASS):
            reads.append(
                RfidRead(
                    reader_id=readers[2 * place + burst % 2],
                    antenna=1 + burst % 4,
                    epc=epc,
                    rssi_dbm=-55,
                    ts=_START + dt.timedelta(seconds=clock + burst * PASS_SECONDS / READS_PER_PASS),
                    duplicate=rng.random() < 0.1,
                )
            )
    return sorted(reads, key=lambda read: read.ts)[:count]


def bench_vip(count: int) -> float:
    """Reads per second through ``on_read`` (dedup, presence, alert policy), decided at read time."""
    reads = vip_reads(count)
    places, policy = VipPlaces.of(_BENCH_MALL), VipPolicy()
    members = {read.epc: Member(f"M{read.epc[-6:]}", "vip", top_brands=("Lancome",)) for read in reads}
    states: dict[str, VipState] = {}
    started = time.perf_counter()
    for read in reads:
        member = members[read.epc]
        states[member.member_id], _ = on_read(states.get(member.member_id), read, member, read.ts, places, policy)
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    print(f"vip core: {bench_vip(200_000):,.0f} reads/s")
