"""Rules read against hand-worked values: windows at their exact edge, segments that
read other segments (``in_segment``), and windows longer than the calendar.

Times are minutes after 2026-03-02T08:00Z; the default config's segments also run
and are filtered out. Windows are ``(now - W, now]``: an event at ``t`` counts until
exactly ``t + W``, and not at ``t + W``.
"""

from __future__ import annotations

from audienceflow.flows.testing import Clock, Result, event, run


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
