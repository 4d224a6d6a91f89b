"""The member master data of a simulated mall: every VIP card the mall-day model can hand out.

VIPs of :mod:`.mallday` are member numbers 1..``vip_pool``; their cards carry
:func:`~.mallday.epc_of` the number, and two in three list the plates of their cars
(:func:`~.mallday.plates_of`), the cars they drive to the mall in. Tiers and preferences are drawn from a seed, so the
same day and seed always give the same master data.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mallstream.settings import Mall
from mallstream.streams.core.vip import Member

from .mallday import MallDay, epc_of, member_id_of, plates_of
from .pos import CATALOGUE

CATEGORIES = sorted({category for category, _, _ in CATALOGUE})

#: Share of VIPs on the top tier.
PLATINUM_SHARE = 0.1


def vip_members(mall: Mall, day: MallDay, seed: int = 7) -> Iterator[tuple[Member, str, tuple[str, ...]]]:
    """Each VIP with the EPC of their card and their cars' plates: tier, a name, up to three brands and categories
    they favour."""
    rng = np.random.default_rng([seed, 1])
    brands = sorted(
        {brand for store in mall.stores for brand in store.brand_counters}
        | {store.name for store in mall.stores if store.name and not store.brand_counters}
    )
    for number in range(1, day.vip_pool + 1):
        tier = "platinum" if rng.random() < PLATINUM_SHARE else "vip"
        liked = rng.choice(brands, size=min(3, len(brands)), replace=False).tolist() if brands else []
        categories = rng.choice(CATEGORIES, size=min(3, len(CATEGORIES)), replace=False).tolist()
        yield (
            Member(member_id_of(number), tier, f"Member {number}", tuple(liked), tuple(categories)),
            epc_of(number),
            plates_of(number),
        )
