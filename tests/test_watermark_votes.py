"""The users' rules of a partition's time, at their edges: live (``_live``: distinct users
among the latest events, users heard in the window, the wall clock's cap) and in a replay
(``_users``: a whole horizon counted, a vote exactly a horizon old).

Each case is worked out by hand from ``operators/watermarks.py``'s definitions; each was
written against a hand mutant of those lines that the other tests let through."""

from __future__ import annotations

import pytest

from audienceflow.operators.watermarks import HORIZON_WINDOWS, PartitionClock


def _clock(quorum: int, window: int) -> PartitionClock:
    return PartitionClock(lateness=0.0, max_future=7 * 86400.0, quorum=quorum, window=window)


@pytest.mark.timeout(60)
def test_live_a_burst_of_one_device_waits_while_its_window_heard_another_user() -> None:
    """Live, quorum 2: the partition's time moves to a time with 2 of the last events at or
    after it from 2 different users. Two events of one device above the base are one
    user: while the window also heard another user above the base, it waits for them
    (counting the device twice, or the window's users one short, moved it to 110)."""
    c = _clock(quorum=2, window=3)
    assert c.observe(110.0, now=110.0, who=2) is False  # one event: no quorum
    assert c.observe(100.0, now=120.0, who=4) is True and c.base == 100.0  # 2 users
    # Above 100: 110 and 120, both user 2's; the window heard users 2 and 4 above it.
    assert c.observe(120.0, now=120.0, who=2) is False and c.base == 100.0
    # User 4 again, at 130: 120 (user 2) and 130 (user 4) are two users.
    assert c.observe(130.0, now=130.0, who=4) is True and c.base == 120.0


@pytest.mark.timeout(60)
def test_live_a_lone_device_moves_its_partitions_time_with_no_one_else_to_wait_for() -> None:
    """Live, quorum 2: where the window heard fewer than 2 users above the base (one
    device alone: a quiet partition, a burst filling the window), the time moves as
    without users, to the 2nd latest event (counting that one device twice, or as one
    more, made it wait for someone who never comes)."""
    c = _clock(quorum=2, window=2)
    assert c.observe(80.0, now=100.0, who=1) is False
    assert c.observe(90.0, now=100.0, who=1) is True and c.base == 80.0


@pytest.mark.timeout(60)
def test_live_observe_says_the_time_stood_still_when_the_wall_clock_caps_it_where_it_is() -> None:
    """Live, the partition's time never passes the wall clock: capped where it already
    stands, it did not move, and ``observe`` says so (it said True, as if it had)."""
    c = _clock(quorum=1, window=3)
    assert c.observe(100.0, now=100.0, who=1) is True and c.base == 100.0
    assert c.observe(110.0, now=100.0, who=1) is False and c.base == 100.0
    assert c.observe(120.0, now=105.0, who=1) is True and c.base == 105.0


@pytest.mark.timeout(60)
def test_replay_a_lone_user_moves_the_time_once_its_events_cover_a_whole_horizon() -> None:
    """Replay, quorum 2, window 2 (a horizon of 64 events): until the users counted cover
    a whole horizon the partition is taken to have quorum users, and waits for a second
    vote. One user's 64th event covers it: one user lately, so the time moves, to the
    earlier of the events' rule (the 2nd latest, 262) and that user's latest (263); not
    one event later."""
    c = _clock(quorum=2, window=2)
    assert c.horizon == 2 * HORIZON_WINDOWS == 64
    moved = [c.observe(200.0 + i, who=1) for i in range(64)]
    assert moved == [False] * 63 + [True] and c.base == 262.0


@pytest.mark.timeout(60)
def test_replay_a_vote_exactly_a_horizon_old_no_longer_counts_as_a_user() -> None:
    """Replay, quorum 2, window 2 (a horizon of 64 events): user 2 once at 100, then
    user 1 at 200, 201, ... Two users, so the time moves to 100 and waits for a second
    vote above it. At the 65th event user 2's event is exactly a horizon old: not among
    the last 64, so one user lately, and the time moves to 262 (counting that vote, it
    stayed at 100 until user 1's next event)."""
    c = _clock(quorum=2, window=2)
    assert c.observe(100.0, who=2) is False
    moved = [c.observe(200.0 + i, who=1) for i in range(63)]
    assert moved == [True] + [False] * 62 and c.base == 100.0
    assert c.observe(263.0, who=1) is True and c.base == 262.0
