"""Boundaries a mutation pass over caps, sessions, watermarks and tracking found no test
for: each test below fails when its boundary moves by one (``<`` for ``<=``), a window
is halved, or the latest value is read as the first."""

from __future__ import annotations

from typing import Any

import pytest

from audienceflow.operators import sessions, tracking
from audienceflow.operators.caps import FrequencyCaps
from audienceflow.operators.records import Event
from audienceflow.operators.state import Limits, UserState
from audienceflow.operators.watermarks import PartitionClock

pytestmark = pytest.mark.timeout(30)

SPEC = sessions.SessionSpec(1800.0, 3600.0, 600.0)


def ev(ts: float, name: str = "Home", kind: str = "page", **props: Any) -> Event:
    return Event(f"m{ts}", "u", None, kind, name, ts, "navigation", props)


def test_the_cooldown_runs_from_the_latest_delivery_not_the_first() -> None:
    caps = FrequencyCaps({"default": 5}, 10, {"default": 100.0})
    user = UserState("u", 0.0)
    assert [caps.decide(user, "e", t) for t in (0.0, 100.0, 150.0)] == [None, None, "cooldown"]


def test_an_action_no_cap_names_and_no_default_is_unlimited() -> None:
    user = UserState("u", 0.0)
    caps = FrequencyCaps({"email": 1})
    assert [caps.decide(user, "push", float(t)) for t in range(5)] == [None] * 5


def test_the_cap_window_is_a_day_of_event_time() -> None:
    # A literal day, not the module's constant (halved, the test would move with it).
    caps = FrequencyCaps({"default": 1})
    user = UserState("u", 0.0)
    got = [caps.decide(user, "e", t) for t in (0.0, 43_201.0, 86_399.0, 86_400.0)]
    assert got == [None, "frequency_cap", "frequency_cap", None]


def test_an_event_at_the_sessions_last_time_after_its_start_moved_back_closes_it() -> None:
    user = UserState("u", 0.0)
    for t in (0.0, 1700.0, 3400.0, -200.0):  # the last one moves the start back
        sessions.observe(user, ev(t), SPEC)
    closed = sessions.observe(user, ev(3400.0), SPEC)  # at s.last: 3600 s after the start
    assert [(s.start, s.end_reason) for s in closed] == [(-200.0, "max_length")]


def test_a_session_opened_at_a_closed_ones_start_gets_its_own_id() -> None:
    user = UserState("u", 0.0)
    sessions.observe(user, ev(0.0), SPEC)
    user.last_ts = 0.0
    assert user.session is not None
    first = user.session.session_id
    sessions.close(user, 1800.0, "inactivity", SPEC)
    sessions.observe(user, ev(0.0), SPEC)  # a partition that rejoined behind
    assert user.session is not None
    assert (first, user.session.session_id) == (
        "u:1970-01-01T00:00:00.000Z",
        "u:1970-01-01T00:00:00.000Z~2",
    )


def test_session_history_keeps_a_session_exactly_at_the_window_and_the_count_exactly() -> None:
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_max=3, history_window=10_000.0)
    user = UserState("u", 0.0)
    for start, end in ((0.0, 1800.0), (8000.0, 10_000.0)):
        sessions.observe(user, ev(start), spec)
        sessions.close(user, end, "inactivity", spec)
    assert [h[0] for h in user.history] == [0.0, 8000.0]  # 0 is exactly 10,000 s old
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_max=2, history_window=1e9)
    user = UserState("u", 0.0)
    for start in (0.0, 5000.0, 9000.0):
        sessions.observe(user, ev(start), spec)
        sessions.close(user, start + 1800.0, "inactivity", spec)
    assert [h[0] for h in user.history] == [5000.0, 9000.0]


def test_the_end_of_a_partition_releases_what_it_held_and_moves_its_base_to_the_top() -> None:
    clock = PartitionClock(lateness=0.0, max_future=100.0, quorum=2, window=8)
    for t in (0.0, 0.0, 90.0):
        clock.observe(t)
    clock.hold(150.0, "ann", "x")
    assert clock.base == 0.0
    assert clock.end() == (["x"], [])
    # 90 first (150 is within max_future of it), then 150, the latest accepted: each item
    # accepted moves it again (a sparse partition's last events, each within max_future
    # of the one before, were future events when it moved once).
    assert clock.base == 150.0


def test_a_window_log_holds_exactly_its_bound_without_a_hit() -> None:
    tracker = tracking.Tracker("log", "k", (frozenset(),), None, (), 1e9)
    user = UserState("u", 0.0)
    hits: dict[str, int] = {}
    for ts in (1.0, 2.0, 3.0):
        tracker.observe(user, ev(ts, "X", "track"), Limits(window_events=3), 0.0, hits)
    assert (user.tracks["k"], hits) == ([1.0, 2.0, 3.0], {})
    tracker.observe(user, ev(4.0, "X", "track"), Limits(window_events=3), 0.0, hits)
    assert (user.tracks["k"], hits) == ([2.0, 3.0, 4.0], {"window_events": 1})


def test_merged_trackers_of_one_key_keep_the_longest_horizon() -> None:
    short = tracking.Tracker("log", "k", (frozenset(),), None, (), 60.0)
    long = tracking.Tracker("log", "k", (frozenset(),), None, (), 3600.0)
    for pair in ([short, long], [long, short]):
        assert [t.horizon for t in tracking.merge(pair)] == [3600.0]
