"""Boundaries a second mutation pass (sessions, caps, triggers, features, deadlines,
watermarks) found no test for: each test names the mutant it kills, on values small
enough to check by hand."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from audienceflow.operators import deadlines, features, sessions
from audienceflow.operators.amounts import MAX_AMOUNT
from audienceflow.operators.caps import FrequencyCaps
from audienceflow.operators.records import Event, SegmentChange
from audienceflow.operators.rules import compile_rule
from audienceflow.operators.shard_state import ShardState
from audienceflow.operators.state import INF, Limits, OpenSession, UserState
from audienceflow.operators.triggers import EventTrigger, SegmentTrigger, TimerTrigger
from audienceflow.operators.watermarks import PartitionClock, _quorum_index

pytestmark = pytest.mark.timeout(30)


def ev(ts: float, name: str = "Home", kind: str = "page", **props: Any) -> Event:
    return Event(f"m{ts}", "u", None, kind, name, ts, "navigation", props)


# --- sessions --------------------------------------------------------------------


def test_a_free_order_and_one_at_the_largest_amount_have_their_value() -> None:
    # ``0 <= value <= MAX_AMOUNT``: an order of total 0 (a voucher) is worth 0, not
    # unusable; one of exactly MAX_AMOUNT is worth that.
    assert sessions.order_value({"total": 0}) == 0.0
    assert sessions.order_value({"total": MAX_AMOUNT}) == MAX_AMOUNT
    assert sessions.order_value({"total": MAX_AMOUNT * 1.0000001}) is None


def test_a_session_given_way_to_the_count_exactly_at_the_age_bound_is_counted() -> None:
    # history_max=1: the first session (start 0) gives way to the second, closed at
    # 10,000 s, when it is exactly history_window old: still readable, so counted.
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_max=1, history_window=10_000.0)
    user = UserState("u", 0.0)
    hits: dict[str, int] = {}
    sessions.observe(user, ev(0.0), spec, hits)
    sessions.close(user, 1800.0, "inactivity", spec, hits)
    sessions.observe(user, ev(8000.0), spec, hits)
    sessions.close(user, 10_000.0, "inactivity", spec, hits)
    assert ([h[0] for h in user.history], hits) == ([8000.0], {"history_sessions": 1})


def test_a_session_closed_by_a_later_event_is_aged_from_its_deadline_not_that_event() -> None:
    # The history's age bound runs from when the session closed (its last event plus the
    # timeout, or its start plus max_length), not from the event that found it closed.
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_window=5000.0)
    user = UserState("u", 0.0)
    sessions.observe(user, ev(0.0), spec)
    (closed,) = sessions.observe(user, ev(10_000.0), spec)  # closed at 1800: 1800 - 5000 < 0
    assert (closed.end_reason, [h[0] for h in user.history]) == ("inactivity", [0.0])
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_window=3000.0)
    user = UserState("u", 0.0)
    for t in (2000.0, 3500.0, 5000.0):
        sessions.observe(user, ev(t), spec)
    # Closed at 5600 (2000 + max_length): started 3600 s before, past the bound of 3000
    # (from its last event, 5000, it would be 3000 s old exactly and kept).
    (closed,) = sessions.observe(user, ev(5600.0), spec)
    assert (closed.end_reason, user.history) == ("max_length", [])


# --- caps ------------------------------------------------------------------------


def test_no_cooldown_means_none_even_for_an_action_older_than_the_last_delivered() -> None:
    # Cooldown 0 (the default): an action decided at an earlier event time than the one
    # delivered before it (events in another order) is not in a cooldown of -50 s.
    caps = FrequencyCaps({"default": 5}, 10)
    user = UserState("u", 0.0)
    assert [caps.decide(user, "e", t) for t in (100.0, 50.0)] == [None, None]


# --- features ----------------------------------------------------------------------

SPEC_F = features.FeatureSpec()


def test_late_older_events_move_no_latest_time_back() -> None:
    user = UserState("u", 0.0)
    for t, name in ((100.0, "Product Added"), (90.0, "Order Completed")):
        features.update(user, ev(t, name, "track", product_id="p1"), SPEC_F)
    hits: dict[str, int] = {}
    for t, name in ((50.0, "Product Added"), (40.0, "Order Completed"), (30.0, "Home")):
        features.update(user, ev(t, name, "track", product_id="p2"), SPEC_F, hits)
    assert (user.last_ts, user.cart_updated, user.last_order_ts) == (100.0, 100.0, 90.0)
    # The order at 40 is older than the cart's change at 100: it does not empty the cart.
    assert (list(user.cart), hits) == (
        ["p1", "p2"],
        {"unusable:order_before_cart_change": 1},
    )


def test_an_order_or_a_cart_refresh_at_the_instant_of_the_carts_last_change_applies() -> None:
    user = UserState("u", 0.0)
    features.update(user, ev(100.0, "Product Added", "track", product_id="p1"), SPEC_F)
    features.update(user, ev(100.0, "Order Completed", "track"), SPEC_F)
    assert user.cart == {}
    features.update(user, ev(200.0, "Product Added", "track", product_id="p1"), SPEC_F)
    refresh = ev(200.0, "Cart Viewed", "track", products=[{"product_id": "p2"}])
    features.update(user, refresh, SPEC_F)
    assert list(user.cart) == ["p2"]


def test_a_quantity_of_zero_counts_as_one_and_is_reported() -> None:
    user, hits = UserState("u", 0.0), {}
    features.update(
        user, ev(1.0, "Product Added", "track", product_id="p", quantity=0), SPEC_F, hits
    )
    assert (user.cart["p"][2], hits) == (1, {"unusable:quantity": 1})


def test_a_removal_naming_no_product_removes_the_latest_anonymous_line() -> None:
    user = UserState("u", 0.0)
    for t, price in ((1.0, 5.0), (2.0, 7.0)):
        features.update(user, ev(t, "Product Added", "track", price=price), SPEC_F)
    features.update(user, ev(3.0, "Product Removed", "track"), SPEC_F)
    assert [line[1] for line in user.cart.values()] == [5.0]


def test_identify_keeps_a_trait_of_exactly_the_text_bound_and_up_to_the_count() -> None:
    limits = Limits(traits=1, trait_chars=3)
    user, hits = UserState("u", 0.0), {}
    idf = Event("m", "u", None, "identify", "", 1.0, "", {}, traits={"a": "xyz", "b": "q"})
    features.identify(user, idf, frozenset({"a", "b"}), frozenset(), limits, hits)
    assert (user.traits, hits) == ({"a": "xyz"}, {"traits": 1})
    features.identify(user, idf, frozenset({"a"}), frozenset(), Limits(trait_chars=2), hits)
    assert hits == {"traits": 1, "unusable:trait_value": 1}


@pytest.mark.parametrize("where", ["history", "open"])
def test_a_window_holds_a_session_started_at_now_not_one_started_its_length_before(
    where: str,
) -> None:
    # ``(now - seconds, now]``, for a closed session and the open one alike, over a
    # literal hour: (value, when the oldest counted leaves).
    def window(start: float, now: float) -> tuple[float, float]:
        user = UserState("u", 0.0)
        if where == "history":
            user.history.append((start, 1, 1, 0.0, 0, 0.0, 0, False))
        else:
            user.session = OpenSession("s", start, start)
        return features.window(user, "sessions", 3600.0, now)

    assert window(1000.0, 4600.0) == (0.0, INF)  # exactly an hour before now: out
    assert window(1000.0, 4599.5) == (1.0, 4600.0)
    assert window(4600.0, 4600.0) == (1.0, 8200.0)  # at now: in
    assert window(4600.5, 4600.0) == (0.0, INF)  # after now: out


def test_the_top_category_of_equal_affinities_is_the_first_by_name() -> None:
    user = UserState("u", 0.0)
    user.affinity = {"b": (2.0, 0.0), "a": (2.0, 0.0), "c": (1.0, 0.0)}
    assert features.top_category(user, 10.0, 100.0) == "a"


# --- deadlines ---------------------------------------------------------------------


def test_a_requeued_snapshot_keeps_only_the_earliest_minute_in_the_heap() -> None:
    # Filed: 10 s, 70 s and two hours on. The earliest minute is reached (its entry in
    # the heap); the next minute and the later hour wait in buckets behind a marker each.
    st = ShardState("shard-000")
    deadlines.requeue(st, [(7210.0, "c"), (10.0, "a"), (70.0, "b")])
    assert (st.near, st.near_min) == (0, 0)
    assert sorted(st.heap) == [(10.0, "a"), (60.0, deadlines.MARK), (7200.0, deadlines.MARK)]
    st = ShardState("shard-000")
    deadlines.cool_requeue(st, [(130.0, "b"), (10.0, "a")])
    assert st.cool_near == 0
    assert sorted(st.cooling) == [(10.0, "a"), (120.0, deadlines.MARK)]


def test_a_bucket_spilled_onto_a_run_not_yet_empty_keeps_the_run_sorted() -> None:
    # Not reached when deadlines are popped in order; the merge keeps it correct anyway.
    run: deque[tuple[float, str]] = deque([(5.0, "b")])
    deadlines._spill(run, ([1.0, 9.0], ["a", "c"]))
    assert list(run) == [(1.0, "a"), (5.0, "b"), (9.0, "c")]


def test_a_cap_named_for_an_action_applies_to_it_over_the_default() -> None:
    caps = FrequencyCaps({"email": 1, "default": 5}, 10)
    user = UserState("u", 0.0)
    assert [caps.decide(user, "email", t) for t in (0.0, 10.0)] == [None, "frequency_cap"]
    assert caps.decide(user, "push", 20.0) is None


# --- triggers --------------------------------------------------------------------


def cart_timer() -> TimerTrigger:
    return TimerTrigger(
        "ab",
        "ab",
        start_on=frozenset({"Product Added"}),
        cancel_on=frozenset({"Order Completed"}),
        after=900.0,
    )


def test_a_cancel_older_than_the_latest_start_arriving_late_leaves_the_timer() -> None:
    t, u = cart_timer(), UserState("u", 0.0)
    t.receive(u, ev(100.0, "Product Added", "track"))
    t.receive(u, ev(99.0, "Order Completed", "track"))  # out of order, before the add
    assert u.timers == {"ab": 1000.0}
    t.receive(u, ev(100.0, "Order Completed", "track"))  # at the add's time: cancels
    assert u.timers == {}


def test_a_late_older_cancel_does_not_let_a_start_before_the_latest_cancel_restart() -> None:
    # Cancels at 200 then (arriving late) at 100: an add at 150 is older than the order
    # at 200, which closed the cart, so it starts nothing.
    t, u = cart_timer(), UserState("u", 0.0)
    t.receive(u, ev(200.0, "Order Completed", "track"))
    t.receive(u, ev(100.0, "Order Completed", "track"))
    t.receive(u, ev(150.0, "Product Added", "track"))
    assert (u.timers or {}, u.cancelled) == ({}, {"ab": 200.0})


def test_a_late_older_start_does_not_move_the_timer_earlier() -> None:
    t, u = cart_timer(), UserState("u", 0.0)
    t.receive(u, ev(100.0, "Product Added", "track"))
    t.receive(u, ev(50.0, "Product Added", "track"))  # out of order
    assert u.timers == {"ab": 1000.0}
    assert t.fire(u, 999.0) == []


def test_a_timer_fired_late_proposes_its_action_at_its_due_time_with_the_cart() -> None:
    t = TimerTrigger("ab", "ab", start_on=frozenset({"Product Added"}), after=900.0, attach="cart")
    u = UserState("u", 0.0)
    u.cart["p1"] = ("shoes", 10.0, 2)
    t.receive(u, ev(100.0, "Product Added", "track"))
    (c,) = t.fire(u, 5000.0)  # the stream's time reached 5000 first: due at 1000
    assert (c.at, c.payload["items"], c.payload["value"]) == (1000.0, 2, 20.0)
    plain = cart_timer()
    plain.receive(u, ev(100.0, "Product Added", "track"))
    (c,) = plain.fire(u, 1000.0)
    assert c.payload == {}  # no ``attach: cart``: no cart


def test_an_attached_recommendation_list_is_cut_at_n() -> None:
    t = EventTrigger("r", "r", events=frozenset({"Home"}), recommendations=("products",), n=2)
    u = UserState("u", 0.0)
    u.recommendations = {"products": ["p1", "p2", "p3"]}
    (c,) = t.receive(u, ev(1.0))
    assert c.payload == {"recommendations": ["p1", "p2"]}


def test_only_a_name_ending_in_colon_star_is_a_wildcard() -> None:
    assert SegmentTrigger("s", "s", segment="video:*").matches("video:cooking")
    assert not SegmentTrigger("s", "s", segment="cluster*").matches("cluster3")


def test_a_segment_trigger_proposes_its_action_at_the_changes_time() -> None:
    u = UserState("u", 0.0)
    (c,) = SegmentTrigger("s", "s", segment="vip").receive(
        u, SegmentChange("u", "vip", "enter", 5.0, {})
    )
    assert c.at == 5.0


def test_an_event_triggers_condition_reads_the_events_own_properties() -> None:
    t = EventTrigger(
        "e",
        "e",
        when=compile_rule("e", "properties.plan == 'pro'", scope="event"),
        events=frozenset({"Home"}),
    )
    u = UserState("u", 0.0)
    (c,) = t.receive(u, ev(1.0, plan="pro"))
    assert c.blocked is None
    (c,) = t.receive(u, ev(2.0, plan="free"))
    assert c.blocked is not None


# --- watermarks ------------------------------------------------------------------


def test_an_event_exactly_max_future_ahead_is_accepted_live_and_in_replay() -> None:
    clock = PartitionClock(lateness=60.0, max_future=3600.0, quorum=1, window=8)
    assert clock.verdict(5.0) is None  # no base yet: nothing is in the future
    clock.observe(1000.0)
    assert (clock.verdict(4600.0), clock.verdict(4600.5)) == (None, "future")
    assert (clock.verdict(2e9 + 3600.0, now=2e9), clock.verdict(2e9 + 3601.0, now=2e9)) == (
        None,
        "future",
    )


def test_a_late_older_event_leaves_the_latest_time_and_one_at_the_base_moves_nothing() -> None:
    clock = PartitionClock(lateness=60.0, max_future=3600.0, quorum=1, window=8)
    assert clock.observe(100.0) is True
    assert clock.observe(100.0) is False  # at the base: not above it
    assert clock.observe(50.0) is False
    assert (clock.base, clock.top, clock.above) == (100.0, 100.0, [])


def test_an_event_exactly_window_events_back_no_longer_counts_for_the_quorum() -> None:
    # window=2: when 20 is read, 100 is two events back (out); 20 alone is no quorum.
    clock = PartitionClock(lateness=0.0, max_future=1e9, quorum=2, window=2)
    assert [clock.observe(t) for t in (100.0, 10.0, 20.0)] == [False, True, False]
    assert clock.base == 10.0


def test_users_votes_too_count_only_the_last_window_events() -> None:
    # As above, each event from a user of its own (replay): 100 leaves the window.
    clock = PartitionClock(lateness=0.0, max_future=1e9, quorum=2, window=2)
    assert [clock.observe(t, who=w) for t, w in ((100.0, 1), (10.0, 2), (20.0, 3))] == [
        False,
        True,
        False,
    ]
    assert clock.base == 10.0


def test_a_held_event_exactly_max_future_ahead_of_the_base_is_accepted_once() -> None:
    clock = PartitionClock(lateness=0.0, max_future=100.0, quorum=2, window=8)
    clock.base = 1000.0
    clock.observe(1000.0)  # an accepted event between: the held ones are not a gap
    clock.hold(1100.0, "ann", "at")
    clock.hold(1100.5, "bob", "past")
    clock.observe(1000.0)
    assert clock.settle() == (["at"], [])
    assert [h[3] for h in clock.held] == ["past"]


def test_a_first_gap_of_exactly_max_future_is_no_gap() -> None:
    assert PartitionClock(lateness=0.0, max_future=100.0).establish([0.0, 100.0]) is None
    assert PartitionClock(lateness=0.0, max_future=100.0).establish([0.0, 100.5]) == 100.5


def test_the_quorum_index_takes_exactly_events_entries() -> None:
    above: list[tuple[float, int, int | None]] = [(1.0, 1, 1), (2.0, 2, 2), (3.0, 3, 3)]
    assert [_quorum_index(above, 2, k) for k in (1, 2, 3, 4)] == [1, 1, 0, -1]


def test_entries_tying_with_the_new_base_leave_the_count() -> None:
    clock = PartitionClock(lateness=0.0, max_future=1e9, quorum=2, window=8)
    assert [clock.observe(100.0), clock.observe(100.0)] == [False, True]
    assert (clock.base, clock.above) == (100.0, [])
