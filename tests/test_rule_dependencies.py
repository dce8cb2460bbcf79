"""Rules read against hand-worked values: windows at their exact edge, segments that
read other segments (``in_segment``), and windows longer than the calendar.

Times are minutes after 2026-03-02T08:00Z; the default config's segments also run
and are filtered out. Windows are ``(now - W, now]``: an event at ``t`` counts until
exactly ``t + W``, and not at ``t + W``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audienceflow.flows.testing import Clock, Result, event, run
from audienceflow.operators.config import ConfigError
from audienceflow.operators.settings import Settings


def changes(result: Result, *segments: str) -> list[tuple[str, str, str, str]]:
    """(user, segment, enter/exit, HH:MM on 2026-03-02 or the full time) in output order."""
    out = []
    for c in result.segment_changes:
        if c["segment"] in segments:
            at = c["at"]
            at = at[11:16] if at.startswith("2026-03-02T") and at.endswith(":00.000Z") else at
            out.append((c["user_id"], c["segment"], c["change"], at))
    return sorted(out, key=lambda c: (c[3], c[0], c[1], c[2]))


# --- windows at their edge --------------------------------------------------------------

EDGES = {
    "segments": {
        "two_views": {"when": "count('Product Viewed', 1h) >= 2"},
        "two_sessions": {"when": "sessions(1h) >= 2"},
        "two_orders": {"when": "total('orders', 1h) >= 2"},
        "seen": {"when": "active_within(2h)"},
        "viewed_long_ago": {"when": "since('Product Viewed') >= 90m"},
    }
}


def test_an_event_exactly_a_window_later_does_not_pair_with_the_first() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    t0, t20, t60 = clock.now(), clock.advance("20m"), clock.advance("40m")
    events = [
        # ann: views at 08:00 and exactly 09:00 (a new session: the timeout is 30 min).
        event("ann", t0, "Product Viewed", product_id="p1"),
        event("ann", t60, "Product Viewed", product_id="p1"),
        # bob: orders in sessions started at 08:00 and 09:00; never a product view.
        event("bob", t0, "Order Completed", revenue=10.0),
        event("bob", t60, "Order Completed", revenue=10.0),
        # cid: views at 08:00 and 08:20, one session.
        event("cid", t0, "Product Viewed", product_id="p1"),
        event("cid", t20, "Product Viewed", product_id="p2"),
    ]
    result = run(sorted(events, key=lambda e: str(e["timestamp"])), EDGES)
    assert changes(result, *EDGES["segments"]) == [
        ("ann", "seen", "enter", "08:00"),
        ("bob", "seen", "enter", "08:00"),
        ("bob", "viewed_long_ago", "enter", "08:00"),  # never viewed: infinitely long ago
        ("cid", "seen", "enter", "08:00"),
        ("cid", "two_views", "enter", "08:20"),
        # 08:00 leaves (now - 1h, now] at 09:00: cid's pair breaks, and ann's and bob's
        # second event, at 09:00, pairs with nothing (no two views, sessions or orders).
        ("cid", "two_views", "exit", "09:00"),
        ("cid", "viewed_long_ago", "enter", "09:50"),  # 08:20 + 90m
        ("cid", "seen", "exit", "10:20"),  # 08:20 + 2h
        ("ann", "viewed_long_ago", "enter", "10:30"),  # 09:00 + 90m
        ("ann", "seen", "exit", "11:00"),
        ("bob", "seen", "exit", "11:00"),
    ]


def test_an_open_session_leaves_a_window_exactly_that_long_after_it_started() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    # One session (gaps of 20 min) from 08:00 to 09:00, the user's first.
    events = [event("dee", clock.now(), "Home")]
    events += [event("dee", clock.advance("20m"), "Home") for _ in range(3)]
    result = run(events, {"segments": {"session_in_hour": {"when": "sessions(1h) >= 1"}}})
    assert changes(result, "session_in_hour") == [
        ("dee", "session_in_hour", "enter", "08:00"),
        ("dee", "session_in_hour", "exit", "09:00"),  # still open, but started at 08:00
    ]


# --- segments reading segments ----------------------------------------------------------

# ``reads_later`` comes first in the config but reads ``two_in_hour``, defined after it.
READS = {
    "segments": {
        "reads_later": {"when": "in_segment('two_in_hour')"},
        "two_in_hour": {"when": "count('Product Viewed', 1h) >= 2"},
        "reads_earlier": {"when": "not in_segment('two_in_hour') and in_session"},
    }
}


def test_a_segment_reading_another_moves_at_the_same_instant_whatever_the_config_order() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    events = [
        event("ann", clock.now(), "Product Viewed", product_id="p1"),
        event("ann", clock.advance("10m"), "Product Viewed", product_id="p2"),
    ]
    result = run(events, READS)
    assert changes(result, *READS["segments"]) == [
        ("ann", "reads_earlier", "enter", "08:00"),
        # The second view: two in the hour, so both readers move at 08:10, ...
        ("ann", "reads_earlier", "exit", "08:10"),
        ("ann", "reads_later", "enter", "08:10"),
        ("ann", "two_in_hour", "enter", "08:10"),
        # ... and the first view lapses at 09:00 (no event then): all three move at 09:00,
        # except that the session closed at 08:40, so reads_earlier stays out.
        ("ann", "reads_later", "exit", "09:00"),
        ("ann", "two_in_hour", "exit", "09:00"),
    ]


def config_error(tmp_path: Path, segments: str) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("segments:\n" + segments)
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    return str(err.value).replace(f"{tmp_path}/", "")


def test_a_segment_reading_itself_is_rejected_at_load(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "  flip:\n    when: not in_segment('flip')\n")
    assert msg.startswith("c.yaml:3: segments.flip.when: in_segment('flip') reads the segment")
    assert msg.endswith("""; got "not in_segment('flip')\"""")


def test_segments_reading_each_other_in_a_cycle_are_rejected_at_load(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        "  a:\n    when: in_segment('b')\n"
        "  b:\n    when: in_segment('c') or in_segment('recent_engager')\n"
        "  c:\n    when: in_segment('a') and active_within(1h)\n",
    )
    assert msg.startswith(
        "c.yaml:3: segments.a.when: segments read each other through in_segment in a cycle:"
        " a -> b -> c -> a;"
    )


def test_a_segment_waiting_on_a_cycle_names_the_cycle(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path,
        "  first:\n    when: in_segment('x')\n"
        "  x:\n    when: in_segment('y')\n"
        "  y:\n    when: in_segment('x')\n",
    )
    assert "segments.first.when: segments read each other through in_segment in a cycle:" in msg
    assert "x -> y -> x" in msg


# --- windows longer than the calendar ---------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        "active_within(10000000d)",
        "count('Product Viewed', 10000000d) >= 1",
        "sessions(10000000d) >= 1",
        "since('Product Viewed') < 100000000000000000000d",
    ],
)
def test_a_window_longer_than_the_calendar_is_entered_and_never_lapses(rule: str) -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    events = [event("ann", clock.now(), "Product Viewed", product_id="p1")]
    result = run(events, {"segments": {"forever": {"when": rule}}})
    assert changes(result, "forever") == [("ann", "forever", "enter", "08:00")]


def test_a_timer_due_past_the_calendar_is_rejected_at_load(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("triggers:\n  cart_abandonment:\n    after: 366d\n")
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert str(err.value).replace(f"{tmp_path}/", "") == (
        "c.yaml:3: triggers.cart_abandonment.after: must be at most 365d; got '366d'"
    )
    cfg.write_text("triggers:\n  cart_abandonment:\n    after: 365d\n")
    Settings.load(cfg, environ={})
