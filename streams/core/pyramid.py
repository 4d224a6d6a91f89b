"""The seeds' value pyramid: A is the top 1% of spenders, B the next 4%, C the next 15%, D the rest.

Kept current by periodic exact recompute: :func:`pyramid_cutoffs` ranks every
member's net spend (a numpy sort, a fraction of a second for a million members)
into the least spend that still reaches A, B and C; between recomputes,
:func:`value_class` compares a member's current spend with those cut-offs, so a
member moves class as their spend arrives. Members tied on spend share the
better class; members who spent nothing are D.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

ValueClass = Literal["A", "B", "C", "D"]
#: Cumulative head-count shares of the classes above D.
CLASS_SHARES: tuple[tuple[ValueClass, float], ...] = (("A", 0.01), ("B", 0.05), ("C", 0.20))


class PyramidCutoffs(msgspec.Struct, frozen=True):
    """The least net spend (cents) of classes A, B and C, as of the last recompute over ``members``."""

    a_cents: int
    b_cents: int
    c_cents: int
    members: int


def pyramid_cutoffs(spend_cents: ArrayLike) -> PyramidCutoffs:
    """Exact cut-offs from every member's net spend; members who spent nothing are not ranked."""
    spend = np.sort(np.asarray(spend_cents, dtype=np.int64))[::-1]
    spenders = spend[spend > 0]
    if len(spenders) == 0:
        return PyramidCutoffs(a_cents=1, b_cents=1, c_cents=1, members=0)
    least = [int(spenders[max(math.ceil(share * len(spenders)), 1) - 1]) for _, share in CLASS_SHARES]
    return PyramidCutoffs(a_cents=least[0], b_cents=least[1], c_cents=least[2], members=len(spenders))


def value_class(spend_cents: int, cutoffs: PyramidCutoffs) -> ValueClass:
    """The member's class for their current net spend."""
    if spend_cents <= 0:
        return "D"
    if spend_cents >= cutoffs.a_cents:
        return "A"
    if spend_cents >= cutoffs.b_cents:
        return "B"
    if spend_cents >= cutoffs.c_cents:
        return "C"
    return "D"


def exact_classes(spend_cents: ArrayLike) -> NDArray[np.str_]:
    """Every member's class by rank, computed from scratch: the reference the cut-offs are checked against."""
    spend = np.asarray(spend_cents, dtype=np.int64)
    classes = np.full(len(spend), "D")
    spenders = np.flatnonzero(spend > 0)
    order = spenders[np.argsort(-spend[spenders], kind="stable")]
    start = 0
    for name, share in CLASS_SHARES:
        end = max(math.ceil(share * len(spenders)), 1) if len(spenders) else 0
        classes[order[start:end]] = name
        start = max(start, end)
    return classes
