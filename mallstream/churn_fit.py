"""The offline BG/NBD fit behind ``mallstream churn fit``: histories in, a parameters file out.

Purchase days are whole-day numbers (``date.toordinal()`` or offsets from any
fixed day, as long as ``as_of_day`` uses the same origin). The parameters file
is JSON with the fitted parameters, the date they describe and how many
members they were fitted on, so the stream can say which fit it runs on.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
import numpy as np
from numpy.typing import NDArray

from .streams.core.bgnbd import BgNbdParams, fit_bgnbd
from .streams.core.customers import CustomerState, bgnbd_summary


class FittedParams(msgspec.Struct, frozen=True):
    """What a fit produced and what it was fitted on."""

    params: BgNbdParams
    as_of: dt.date | None
    members: int
    fitted_at: dt.datetime


def summarise_histories(
    purchase_days: Iterable[Sequence[int] | NDArray[np.int64]], as_of_day: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(x, t_x, T) per member from their purchase days before ``as_of_day``; members with none are skipped."""
    rows = []
    for days in purchase_days:
        seen = np.unique(np.asarray(days, dtype=np.int64))
        seen = seen[seen < as_of_day]
        if len(seen):
            rows.append((len(seen) - 1, seen[-1] - seen[0], as_of_day - seen[0]))
    x, t_x, T = np.array(rows, dtype=np.int64).reshape(-1, 3).T
    return x, t_x, T


def fit_from_histories(purchase_days: Iterable[Sequence[int] | NDArray[np.int64]], as_of_day: int) -> BgNbdParams:
    """BG/NBD parameters for the members' purchase days as of ``as_of_day``."""
    return fit_bgnbd(*summarise_histories(purchase_days, as_of_day))


def fit_from_states(states: Iterable[CustomerState], as_of: dt.datetime) -> BgNbdParams:
    """BG/NBD parameters from the stream's member states, which already hold (x, t_x, T)."""
    rows = [bgnbd_summary(state, as_of) for state in states if state.has_purchased]
    if not rows:
        raise ValueError("no member has purchased yet: nothing to fit")
    return fit_bgnbd(*np.array(rows, dtype=np.int64).T)


def save_params(path: Path, fitted: FittedParams) -> None:
    """Write the parameters file atomically, so the stream never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=path.name, delete=False) as handle:
        handle.write(msgspec.json.format(msgspec.json.encode(fitted)))
    os.replace(handle.name, path)


def load_params(path: Path) -> FittedParams:
    """Read a parameters file written by :func:`save_params`."""
    return msgspec.json.decode(path.read_bytes(), type=FittedParams)


def purchase_days_from_receipts(path: Path) -> dict[str, set[int]]:
    """Each member's sale days (``date.toordinal()``) in a JSON-lines file of events, as `mallstream replay` takes.

    Lines of other types are skipped; a receipt that does not decode is an error naming its line.
    """
    from .streams.records import InvalidEvent, PosTransaction, decode

    days: dict[str, set[int]] = {}
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if b'"pos_transaction"' not in line:
                continue
            try:
                txn = decode(PosTransaction, line)
            except InvalidEvent as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
            if txn.member_id and txn.kind == "sale":
                days.setdefault(txn.member_id, set()).add(txn.business_day.toordinal())
    return days


def summary_from_snapshots(
    rows: Iterable[tuple[dt.date, dt.date, int]], as_of_day: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(x, t_x, T) from the stream's member snapshots: (first purchase, last purchase, repeat days) per member.

    A snapshot cannot be rewound, so an as-of day not after every member's last purchase is refused.
    """
    summary = np.array([(first.toordinal(), last.toordinal(), repeat) for first, last, repeat in rows], dtype=np.int64)
    if len(summary) == 0:
        raise ValueError("no member has purchased yet: nothing to fit")
    first, last, repeat = summary.reshape(-1, 3).T
    if last.max() >= as_of_day:
        raise ValueError(
            f"as of {dt.date.fromordinal(as_of_day)} is not after the last purchase on "
            f"{dt.date.fromordinal(int(last.max()))}: the stream's snapshots cannot be rewound"
        )
    return repeat, last - first, as_of_day - first
