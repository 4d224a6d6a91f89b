"""People-counter drivers: cumulative totals to per-interval deltas, as pure steps."""

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mallstream.devices.counters import (
    CounterState,
    SequenceGap,
    cumulative_delta,
    decode_axis,
    decode_milesight,
    decode_xovis,
)
from mallstream.streams.records import FootfallTick

SERIAL = "80:1F:12:AA:BB:CC"
FORWARD, BACKWARD = 1008001, 1008002
ROUTES = {(SERIAL, FORWARD): ("door-a", "in"), (SERIAL, BACKWARD): ("door-a", "out")}
T0_MS = 1735725600000  # 2025-01-01T10:00:00Z, the doc example's frame time
T0 = dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def xovis_push(package_id: int, *frames: tuple[int | str, list[tuple[str, int, int]]]) -> bytes:
    """A live-data push shaped like the doc example; frames are (time, [(type, counter_id, value)])."""
    return json.dumps(
        {
            "live_data": {
                "package_info": {"version": "5.0", "id": package_id, "agent_id": 7},
                "sensor_info": {"serial_number": SERIAL, "type": "PC2SE"},
                "frames": [
                    {
                        "framenumber": 990 + i,
                        "time": time,
                        "tracked_objects": [],
                        "events": [
                            {
                                "category": "COUNT",
                                "type": kind,
                                "attributes": {"counter_id": counter, "counter_value": value, "track_id": 167},
                            }
                            for kind, counter, value in events
                        ],
                    }
                    for i, (time, events) in enumerate(frames)
                ],
            }
        }
    ).encode()


def counts(decoded) -> list[tuple[str, int, int]]:
    return [(tick.counter_id, tick.count_in, tick.count_out) for tick in decoded.events]


def test_the_doc_xovis_example_counts_what_the_total_advanced_since_the_previous_push():
    state, first, gaps = decode_xovis(
        CounterState(), xovis_push(1233, (T0_MS - 60_000, [("COUNT_INCREMENT", FORWARD, 55)])), T0, ROUTES
    )
    assert first.events == [] and first.rejects == [] and gaps == []  # the first total is only the baseline
    state, decoded, gaps = decode_xovis(
        state, xovis_push(1234, (T0_MS, [("COUNT_INCREMENT", FORWARD, 57)])), T0, ROUTES
    )
    assert decoded.events == [FootfallTick(counter_id="door-a", ts=T0, count_in=2, count_out=0, interval_s=60)]
    assert gaps == []


def test_xovis_rfc3339_times_and_line_crossings_in_both_directions_make_one_tick_per_push():
    state, _, _ = decode_xovis(
        CounterState(),
        xovis_push(
            1, ("2025-01-01T10:00:00Z", [("LINE_CROSS_FORWARD", FORWARD, 10), ("LINE_CROSS_BACKWARD", BACKWARD, 4)])
        ),
        T0,
        ROUTES,
    )
    _, decoded, _ = decode_xovis(
        state,
        xovis_push(
            2,
            ("2025-01-01T11:00:30+01:00", [("LINE_CROSS_FORWARD", FORWARD, 11)]),
            ("2025-01-01T11:00:40+01:00", [("LINE_CROSS_BACKWARD", BACKWARD, 5), ("LINE_CROSS_FORWARD", FORWARD, 12)]),
        ),
        T0 + MINUTE,
        ROUTES,
    )
    [tick] = decoded.events
    assert (tick.count_in, tick.count_out, tick.ts, tick.interval_s) == (2, 1, T0 + dt.timedelta(seconds=40), 40)
    assert tick.clock_skew_s == -20.0  # the newest frame is 20 s older than the receive time


def test_xovis_duplicates_and_backfill_re_pushes_count_nothing_twice():
    pushes = [xovis_push(n, (T0_MS + n * 1000, [("COUNT_INCREMENT", FORWARD, 100 + n)])) for n in range(6)]
    state, total = CounterState(), 0
    for payload in [*pushes[:4], pushes[3], pushes[1], pushes[2], *pushes[4:], *pushes]:
        state, decoded, _ = decode_xovis(state, payload, T0, ROUTES)
        total += sum(tick.count_in for tick in decoded.events)
    assert total == 5


def test_xovis_package_id_gaps_are_reported_and_a_re_push_of_old_ids_is_not_a_gap():
    state, _, _ = decode_xovis(CounterState(), xovis_push(10), T0, ROUTES)
    state, _, gaps = decode_xovis(state, xovis_push(14), T0, ROUTES)
    assert gaps == [SequenceGap(f"xovis:{SERIAL}:7", 11, 13)]
    state, _, gaps = decode_xovis(state, xovis_push(12), T0, ROUTES)
    assert gaps == [] and state.packages[f"xovis:{SERIAL}:7"] == 14


def test_xovis_count_reset_and_decrement_lower_the_total_without_counting():
    state, _, _ = decode_xovis(CounterState(), xovis_push(1, (T0_MS, [("COUNT_INCREMENT", FORWARD, 80)])), T0, ROUTES)
    state, decoded, _ = decode_xovis(
        state,
        xovis_push(
            2,
            (T0_MS + 1000, [("COUNT_RESET", FORWARD, 0)]),
            (T0_MS + 2000, [("COUNT_INCREMENT", FORWARD, 1), ("COUNT_INCREMENT", FORWARD, 2)]),
            (T0_MS + 3000, [("COUNT_DECREMENT", FORWARD, 1)]),
            (T0_MS + 4000, [("COUNT_INCREMENT", FORWARD, 2)]),
        ),
        T0,
        ROUTES,
    )
    assert counts(decoded) == [("door-a", 3, 0)]


def test_xovis_counters_not_routed_are_ignored_and_bad_pushes_are_rejected_whole():
    state, decoded, _ = decode_xovis(
        CounterState(), xovis_push(1, (T0_MS, [("COUNT_INCREMENT", 4242001, 9)])), T0, ROUTES
    )
    assert decoded.events == [] and decoded.rejects == [] and state.readings == {}
    bad_time = xovis_push(2, ("yesterday", [("COUNT_INCREMENT", FORWARD, 9)]))
    same, decoded, _ = decode_xovis(state, bad_time, T0, ROUTES)
    assert same is state and decoded.rejects[0].raw == bad_time and "Xovis" in decoded.rejects[0].reason


def axis(timestamp: str, count_in: int, count_out: int, serial: str = "ACCC8E000001") -> bytes:
    return json.dumps(
        {"serial": serial, "name": "Entrance A", "timestamp": timestamp, "in": count_in, "out": count_out}
    ).encode()


AXIS = {"ACCC8E000001": "entrance-a"}


def test_the_doc_axis_live_sum_yields_deltas_in_utc_from_the_camera_time_zone():
    cet = dt.timezone(dt.timedelta(hours=1))
    state, first = decode_axis(CounterState(), axis("20250101120000", 412, 377), T0, AXIS, cet)
    assert first.events == []
    received = dt.datetime(2025, 1, 1, 11, 1, 2, tzinfo=dt.UTC)
    state, decoded = decode_axis(state, axis("20250101120100", 430, 380), received, AXIS, cet)
    assert decoded.events == [
        FootfallTick(
            counter_id="entrance-a",
            ts=dt.datetime(2025, 1, 1, 11, 1, tzinfo=dt.UTC),
            count_in=18,
            count_out=3,
            interval_s=60,
        )
    ]
    _, again = decode_axis(state, axis("20250101120100", 430, 380), T0, AXIS, cet)
    assert again.events == []


def test_an_axis_total_that_drops_was_reset_and_counts_from_zero():
    state, _ = decode_axis(CounterState(), axis("20250101235900", 5000, 4900), T0, AXIS)
    _, decoded = decode_axis(state, axis("20250102000100", 3, 1), T0, AXIS)
    assert counts(decoded) == [("entrance-a", 3, 1)]


def test_an_unknown_axis_serial_is_rejected():
    payload = axis("20250101120000", 1, 1, serial="OTHER")
    _, decoded = decode_axis(CounterState(), payload, T0, AXIS)
    assert decoded.rejects[0].raw == payload and "OTHER" in decoded.rejects[0].reason


def vs350(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_milesight_totals_roll_over_at_65535_and_a_big_drop_is_a_reset():
    state, _ = decode_milesight(
        CounterState(), vs350(total_in=65530, total_out=22, period_in=19, period_out=20), T0, "vs-1"
    )
    state, decoded = decode_milesight(state, vs350(total_in=4, total_out=25), T0 + 10 * MINUTE, "vs-1")
    assert decoded.events == [
        FootfallTick(counter_id="vs-1", ts=T0 + 10 * MINUTE, count_in=10, count_out=3, interval_s=600)
    ]
    _, decoded = decode_milesight(state, vs350(total_in=2, total_out=1), T0 + 20 * MINUTE, "vs-1")
    assert counts(decoded) == [("vs-1", 2, 1)]  # 25 -> 1 as a rollover would be 65512 people in 10 minutes


def test_milesight_history_counts_periods_once_even_when_totals_follow():
    state, _ = decode_milesight(CounterState(), vs350(total_in=100, total_out=50), T0, "vs-1")
    history = [{"timestamp": int((T0 + n * 10 * MINUTE).timestamp()), "period_in": 7, "period_out": 2} for n in (2, 1)]
    state, decoded = decode_milesight(state, vs350(history=history), T0 + 30 * MINUTE, "vs-1")
    assert [(t.ts, t.count_in, t.count_out) for t in decoded.events] == [
        (T0 + 10 * MINUTE, 7, 2),
        (T0 + 20 * MINUTE, 7, 2),
    ]  # in time order; the live part has no counts
    state, decoded = decode_milesight(state, vs350(total_in=120, total_out=55), T0 + 30 * MINUTE, "vs-1")
    assert counts(decoded) == [("vs-1", 6, 1)]  # 20 in and 5 out since the total at T0, 14 and 4 already counted
    _, replayed = decode_milesight(state, vs350(history=history), T0 + 40 * MINUTE, "vs-1")
    assert replayed.events == []


def test_a_period_only_vs350_counts_its_periods():
    state, first = decode_milesight(CounterState(), vs350(period_in=4, period_out=1), T0, "vs-1", report_interval_s=300)
    assert [(t.count_in, t.count_out, t.interval_s) for t in first.events] == [(4, 1, 300)]
    _, second = decode_milesight(state, vs350(period_in=2, period_out=0), T0 + 5 * MINUTE, "vs-1")
    assert [(t.count_in, t.count_out, t.interval_s) for t in second.events] == [(2, 0, 300)]


# --- properties -----------------------------------------------------------------------------------

steps = st.lists(st.tuples(st.integers(0, 300), st.booleans(), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=200)
@given(steps)
def test_axis_deltas_add_up_to_the_true_count_minus_what_resets_hide(plan):
    """Each step is (people counted, reset before counting, read after counting).

    The rule: the first reading is the baseline. Across a reset, the people counted
    between the previous reading and the reset are lost; if the counter climbed back
    to at least the previous reading before being read, the reset is invisible and
    the previous reading's total is lost too. Nothing else is lost, nothing is negative.
    """
    state, emitted, expected = CounterState(), 0, 0
    total, previous_read, since_read, before_reset, reset = 0, None, 0, 0, False
    ts = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for people, reset_first, read in plan:
        if reset_first:
            total, before_reset, reset = 0, since_read, True
        total += people
        since_read += people
        if read:
            ts += MINUTE
            state, decoded = decode_axis(state, axis(ts.strftime("%Y%m%d%H%M%S"), total, 0), ts, AXIS)
            assert all(tick.count_in >= 0 and tick.count_out == 0 for tick in decoded.events)
            emitted += sum(tick.count_in for tick in decoded.events)
            if previous_read is not None:
                lost = (before_reset + (previous_read if total >= previous_read else 0)) if reset else 0
                expected += since_read - lost
            previous_read, since_read, before_reset, reset = total, 0, 0, False
    assert emitted == expected


@settings(max_examples=200)
@given(st.integers(0, 65535), st.lists(st.integers(0, 10_000), min_size=1, max_size=40))
def test_vs350_deltas_across_rollovers_add_up_exactly(start, increments):
    state, _ = decode_milesight(CounterState(), vs350(total_in=start, total_out=0), T0, "vs-1")
    total, emitted = start, 0
    for n, people in enumerate(increments, 1):
        total = (total + people) % 65536
        state, decoded = decode_milesight(state, vs350(total_in=total, total_out=0), T0 + n * MINUTE, "vs-1")
        emitted += sum(tick.count_in for tick in decoded.events)
    assert emitted == sum(increments)


@given(st.integers(0, 65535), st.integers(0, 65535), st.sampled_from([None, 65536]))
def test_cumulative_delta_is_never_negative(previous, current, modulus):
    assert cumulative_delta(previous, current, modulus=modulus, max_rollover_step=10_000) >= 0


@settings(max_examples=100)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=12), st.data())
def test_xovis_re_pushes_in_any_order_never_change_the_count(increments, data):
    values = [sum(increments[: i + 1]) for i in range(len(increments))]
    pushes = [xovis_push(i, (T0_MS + i * 1000, [("COUNT_INCREMENT", FORWARD, v)])) for i, v in enumerate(values)]
    replays = data.draw(st.lists(st.sampled_from(pushes), max_size=10))
    state, emitted = CounterState(), 0
    for payload in [*pushes, *replays]:
        state, decoded, _ = decode_xovis(state, payload, T0, ROUTES)
        emitted += sum(tick.count_in for tick in decoded.events)
    assert emitted == values[-1] - values[0]


# --- fuzzing: no exception escapes, every reject says why ---------------------------------------

json_keys = st.sampled_from(
    [
        "live_data",
        "package_info",
        "sensor_info",
        "serial_number",
        "frames",
        "time",
        "events",
        "type",
        "attributes",
        "counter_id",
        "counter_value",
        "id",
        "agent_id",
        "serial",
        "timestamp",
        "in",
        "out",
        "total_in",
        "total_out",
        "period_in",
        "period_out",
        "history",
        "COUNT_INCREMENT",
        "COUNT_RESET",
    ]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(
        ["20250101120000", "2025-01-01T10:00:00Z", SERIAL, "ACCC8E000001", "COUNT_INCREMENT", "COUNT_RESET"]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=6),
    max_leaves=30,
)
payloads = st.binary(max_size=200) | json_values.map(lambda value: json.dumps(value).encode())


@settings(max_examples=300)
@given(payloads)
def test_counter_parsers_turn_any_input_into_records_or_rejects_with_reasons(payload):
    for decoded in (
        decode_xovis(CounterState(), payload, T0, ROUTES)[1],
        decode_axis(CounterState(), payload, T0, AXIS)[1],
        decode_milesight(CounterState(), payload, T0, "vs-1")[1],
    ):
        assert all(isinstance(event, FootfallTick) for event in decoded.events)
        assert all(reject.reason for reject in decoded.rejects)
