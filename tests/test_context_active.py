"""Segment's ``context.active``: a call sent with it false is no activity of the user.

The Spec (Common fields, Context): "Whether a user is active. This is usually used to
flag an ``.identify()`` call to just update the traits but not 'last seen.'" Such a call
updates traits (identify, group) and the rules' event windows (count, since, sequence,
distinct); it opens or extends no session, moves neither the user's latest activity
(``active_within``, the profile's ``last_seen``) nor the eviction clock, and fires no
event trigger.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audienceflow.flows.testing import event, run

pytestmark = pytest.mark.timeout(60)

ENV = {"AUDIENCEFLOW_PII_SALT": "x", "AUDIENCEFLOW_MODELS__ENABLED": "false"}
QUIET = {"active": False}


def _segments(**rules: str) -> dict[str, Any]:
    # Only the rules under test: the default segments and triggers left out.
    return {
        "segments": {
            "frequent_visitor": None,
            "recent_engager": None,
            "high_recency_frequency": None,
            "high_engagement": None,
            "video_enthusiast": None,
            "high_intent": None,
            **{name: {"when": when} for name, when in rules.items()},
        },
        "triggers": {"cart_abandonment": None, "high_engagement_content": None},
    }


def _changes(result: Any, user: str) -> list[tuple[str, str, str]]:
    return [
        (c["segment"], c["change"], c["at"]) for c in result.segment_changes if c["user_id"] == user
    ]


def test_a_push_received_in_the_background_does_not_make_a_user_a_recent_visitor() -> None:
    # u1 visits at 08:00 (recent until 09:00); at 10:00 the app, in the background,
    # records a push it received, with context.active false; u2 moves time to 12:00.
    config = _segments(
        recent="active_within(1h)", pushed="count('Push Notification Received', 7d) >= 1"
    )
    events = [
        event("u1", "2026-03-02T08:00:00.000Z", "Home"),
        event("u1", "2026-03-02T10:00:00.000Z", "Push Notification Received", context=QUIET),
        event("u2", "2026-03-02T12:00:00.000Z", "Home"),
    ]
    result = run(events, config, ENV)
    assert result.summary["counts"]["processed"] == 3
    assert _changes(result, "u1") == [
        ("recent", "enter", "2026-03-02T08:00:00.000Z"),
        ("recent", "exit", "2026-03-02T09:00:00.000Z"),
        # the push is counted, as it was received; the user did nothing
        ("pushed", "enter", "2026-03-02T10:00:00.000Z"),
        ("pushed", "exit", "2026-03-09T10:00:00.000Z"),  # its 7 days, run out at the end
    ]
    # no session opened at 10:00: the one at 08:00 only
    assert [s["start"] for s in result.sessions if s["user_id"] == "u1"] == [
        "2026-03-02T08:00:00.000Z"
    ]
    profile = result.profile("u1")
    assert profile is not None and profile["last_seen"] == "2026-03-02T08:00:00.000Z"


def test_the_same_push_with_the_user_active_is_activity() -> None:
    config = _segments(recent="active_within(1h)")
    events = [
        event("u1", "2026-03-02T08:00:00.000Z", "Home"),
        event(
            "u1",
            "2026-03-02T10:00:00.000Z",
            "Push Notification Received",
            context={"active": True},
        ),
        event("u2", "2026-03-02T12:00:00.000Z", "Home"),
    ]
    result = run(events, config, ENV)
    assert ("recent", "enter", "2026-03-02T10:00:00.000Z") in _changes(result, "u1")
    assert len([s for s in result.sessions if s["user_id"] == "u1"]) == 2


def test_an_inactive_call_extends_no_open_session() -> None:
    # 08:00 visit; 08:20 a background call (it would extend the session to 08:50); the
    # session closes 30 min after 08:00, at 08:30, with one event.
    events = [
        event("u1", "2026-03-02T08:00:00.000Z", "Home"),
        event("u1", "2026-03-02T08:20:00.000Z", "Push Notification Received", context=QUIET),
        event("u2", "2026-03-02T12:00:00.000Z", "Home"),
    ]
    result = run(events, _segments(), ENV)
    (s,) = [s for s in result.sessions if s["user_id"] == "u1"]
    assert (s["start"], s["end"], s["events"]) == (
        "2026-03-02T08:00:00.000Z",
        "2026-03-02T08:00:00.000Z",
        1,
    )


def test_an_inactive_call_fires_no_event_trigger() -> None:
    config = {
        **_segments(),
        "triggers": {
            "cart_abandonment": None,
            "high_engagement_content": None,
            "on_push": {"type": "event", "events": ["Push Notification Received"]},
        },
    }
    quiet = event("u1", "2026-03-02T08:00:00.000Z", "Push Notification Received", context=QUIET)
    assert run([quiet], config, ENV).actions == []
    loud = event("u1", "2026-03-02T08:00:00.000Z", "Push Notification Received")
    assert [a["action"] for a in run([loud], config, ENV).actions] == ["on_push"]


def test_an_inactive_identify_updates_traits_but_not_the_eviction_clock() -> None:
    # history_window 1h: u1, last active at 08:00 (session closed 08:30), is evicted at
    # 09:00. An identify at 08:50 from a server (active false) sets its plan, and does not
    # keep it until 09:50 as an active identify would.
    config = {**_segments(plus="traits.plan == 'plus'"), "state": {"history_window": "1h"}}
    identify = {
        "type": "identify",
        "userId": "u1",
        "messageId": "id-1",
        "timestamp": "2026-03-02T08:50:00.000Z",
        "traits": {"plan": "plus"},
    }
    later = event("u2", "2026-03-02T12:00:00.000Z", "Home")
    first = event("u1", "2026-03-02T08:00:00.000Z", "Home")
    quiet = run([first, {**identify, "context": QUIET}, later], config, ENV)
    assert _changes(quiet, "u1") == [
        ("plus", "enter", "2026-03-02T08:50:00.000Z"),
        ("plus", "exit", "2026-03-02T09:00:00.000Z"),
    ]
    active = run([first, identify, later], config, ENV)
    assert _changes(active, "u1") == [
        ("plus", "enter", "2026-03-02T08:50:00.000Z"),
        ("plus", "exit", "2026-03-02T09:50:00.000Z"),
    ]


@pytest.mark.parametrize("value", [None, "false", 0])
def test_only_a_json_false_says_the_user_is_not_active(value: Any) -> None:
    config = _segments(recent="active_within(1h)")
    ev = event("u1", "2026-03-02T08:00:00.000Z", "Home", context={"active": value})
    assert _changes(run([ev], config, ENV), "u1")[:1] == [
        ("recent", "enter", "2026-03-02T08:00:00.000Z")
    ]


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("Order Completed", {}),
        ("Signed Up", {"sessions": {"conversion_events": ["Signed Up"]}}),
    ],
)
def test_an_order_or_a_conversion_sent_inactive_is_counted_as_any_other(
    name: str, config: dict[str, Any]
) -> None:
    # A server sending its orders (or sign-ups) with active false: money and conversions
    # are the user's acts whatever the flag says, not background noise.
    done = event("u1", "2026-03-02T08:00:00.000Z", name, context=QUIET, order_id="o1", total=30)
    result = run([done], {**_segments(), **config}, ENV)
    (s,) = [s for s in result.sessions if s["user_id"] == "u1"]
    assert s["converted"] is True
    assert result.summary["counts"]["processed"] == 1
    if name == "Order Completed":
        profile = result.profile("u1")
        assert profile is not None and profile["orders"] == 1


def test_an_order_sent_inactive_counts_where_orders_convert_no_session() -> None:
    # The order is counted for being an order, not for being a conversion: with sign-ups
    # the only conversion, an inactive order is still an order (and its revenue).
    done = event("u1", "2026-03-02T08:00:00.000Z", "Order Completed", context=QUIET, total=30)
    config = {**_segments(), "sessions": {"conversion_events": ["Signed Up"]}}
    result = run([done], config, ENV)
    (s,) = [s for s in result.sessions if s["user_id"] == "u1"]
    assert (s["converted"], s["order_value"]) == (False, 30.0)
    profile = result.profile("u1")
    assert profile is not None and (profile["orders"], profile["revenue"]) == (1, 30.0)


_NAMES = ("Home", "Product Viewed", "Order Completed", "Signed Up")
_GAPS = (0, 60, 1799, 1800, 1801, 4 * 3600)  # seconds: same instant, a timeout's edges


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_GAPS), st.sampled_from(_NAMES), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_any_interleaving_of_active_and_inactive_calls_reconciles(
    calls: list[tuple[int, str, bool]],
) -> None:
    # Whatever the order of active and inactive calls, at whatever instants (a session's
    # timeout, the same instant): every call is processed, the sessions hold exactly the
    # calls that are activity (active ones, and orders and conversions of inactive ones),
    # and the profile's orders and revenue are the sessions'.
    t, events, activity, orders = 1772438400, [], 0, 0
    for i, (gap, name, active) in enumerate(calls):
        t += gap
        at = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        props: dict[str, Any] = {"order_id": f"o{i}", "total": 2} if name == _NAMES[2] else {}
        ctx = {} if active else {"context": QUIET}
        events.append(event("u1", at, name, message_id=f"m{i}", **ctx, **props))
        activity += active or name in ("Order Completed", "Signed Up")
        orders += name == "Order Completed"
    config = {**_segments(), "sessions": {"conversion_events": ["Order Completed", "Signed Up"]}}
    result = run(events, config, ENV)
    counts = result.summary["counts"]
    assert counts["reconciled"] and counts["processed"] == len(events)
    mine = [s for s in result.sessions if s["user_id"] == "u1"]
    assert sum(s["events"] for s in mine) == activity
    profile = result.profile("u1")
    assert profile is not None
    assert (profile["orders"], profile["revenue"]) == (orders, 2.0 * orders)
    assert profile["sessions"] == len(mine)
    assert sum(s["order_value"] for s in mine) == 2.0 * orders
