"""The retention keeper's decision (streams/core/retention.py): what may go, and who holds the rest back."""

from __future__ import annotations

import bisect

from mallstream.streams.core.retention import MS_PER_HOUR, Partition, keep_since_ms, plan

NOW = 1_800_000_000_000
#: one record an hour over the last ten hours: offset i is stamped 10 - i hours ago
STAMPS = [NOW - (10 - i) * MS_PER_HOUR for i in range(10)]


def newer_from(stamps: list[int], keep_hours: float) -> int | None:
    """What the broker answers ListOffsets by time with: the first offset stamped at or after the keep window."""
    first = bisect.bisect_left(stamps, keep_since_ms(NOW, keep_hours))
    return first if first < len(stamps) else None


def topic(committed: dict[str, int | None], keep_hours: float = 0, low: int = 0) -> Partition:
    return Partition("pos.transactions", 0, low, len(STAMPS), newer_from(STAMPS, keep_hours), committed)


def test_what_every_group_has_read_and_is_past_the_keep_window_goes() -> None:
    decided = plan([topic({"mallstream": 9, "mallstream-routes": 8}, keep_hours=3)])
    # the groups have read up to 8; records 7.. are stamped three hours ago or later
    assert decided.delete_before == {("pos.transactions", 0): 7}
    assert not decided.held_by


def test_the_keep_window_holds_records_every_group_has_read() -> None:
    decided = plan([topic({"mallstream": 10}, keep_hours=2.5)])
    assert decided.delete_before == {("pos.transactions", 0): 8}  # stamped 2 h and 1 h ago stay
    assert not decided.held_by
    assert plan([topic({"mallstream": 10}, keep_hours=24)]).delete_before == {}


def test_a_lagging_group_holds_retention_back_and_is_named() -> None:
    decided = plan([topic({"mallstream": 10, "mallstream-sinks": 3}, keep_hours=0)])
    assert decided.delete_before == {("pos.transactions", 0): 3}
    assert decided.held_by == {"mallstream-sinks": 7}


def test_a_group_that_has_committed_nothing_holds_everything() -> None:
    decided = plan([topic({"mallstream": 10, "mallstream-sinks": None}, keep_hours=0, low=2)])
    assert decided.delete_before == {}
    assert decided.held_by == {"mallstream-sinks": 8}


def test_nothing_is_asked_again_below_the_low_watermark() -> None:
    assert plan([topic({"mallstream": 4}, keep_hours=0, low=4)]).delete_before == {}
    assert plan([topic({"mallstream": 2}, keep_hours=0, low=4)]).delete_before == {}


def test_a_topic_no_group_reads_is_kept_for_the_window_only() -> None:
    assert plan([topic({}, keep_hours=4)]).delete_before == {("pos.transactions", 0): 6}
    # every record older than the window: all go
    assert plan([topic({}, keep_hours=0.5)]).delete_before == {("pos.transactions", 0): 10}


def test_a_changelog_goes_up_to_the_checkpointed_record_which_stays() -> None:
    changelog = Partition("mallstream-cards-changelog", 1, 0, 50, changelog=True, checkpoint=41)
    # faust seeks back to the checkpointed offset itself on recovery: record 41 stays
    assert plan([changelog]).delete_before == {("mallstream-cards-changelog", 1): 41}


def test_a_changelog_without_a_checkpoint_stays_whole_whatever_its_age() -> None:
    changelog = Partition("mallstream-cards-changelog", 1, 0, 50, newer_from=None, changelog=True, checkpoint=None)
    assert plan([changelog]).delete_before == {}


def test_partitions_are_decided_each_on_their_own() -> None:
    parts = [Partition("ledger", p, 0, 10, None, {"mallstream-sinks": offset}) for p, offset in enumerate([10, 0, 5])]
    decided = plan(parts)
    assert decided.delete_before == {("ledger", 0): 10, ("ledger", 2): 5}
    assert decided.held_by == {"mallstream-sinks": 15}
