"""Merged time ranges of what a counter counted, against a model that keeps every counted second."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from mallstream.streams.core.coverage import cover, covered, forget_before

periods = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), max_size=40)


@given(periods, st.integers(0, 200), st.integers(1, 30))
def test_a_period_is_covered_exactly_when_every_second_of_it_was_counted(added, start, length):
    ranges, seconds = [], set()
    for first, span in added:
        cover(ranges, first, first + span)
        seconds |= set(range(first, first + span))
    assert covered(ranges, start, start + length) == seconds.issuperset(range(start, start + length))
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges)), "sorted, disjoint and never touching"


def test_back_to_back_ticks_are_one_range_and_old_ranges_are_forgotten():
    ranges = []
    for end in range(60, 86_400, 60):
        cover(ranges, end - 60, end)
    cover(ranges, 90_000, 90_060)
    assert ranges == [[0, 86_340], [90_000, 90_060]]
    forget_before(ranges, 86_341)
    assert ranges == [[90_000, 90_060]]
