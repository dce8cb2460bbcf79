"""Unit tests of the small operators, each without a dataflow or an engine."""

from __future__ import annotations

import math

import pytest

from audienceflow.models import vectors
from audienceflow.operators import features, merge, sessions
from audienceflow.operators.caps import DAY, FrequencyCaps
from audienceflow.operators.clock import StreamClock
from audienceflow.operators.records import Event, SegmentChange
from audienceflow.operators.rules import Context
from audienceflow.operators.segments import SegmentRule, evaluate_all
from audienceflow.operators.state import Limits, UserState
from audienceflow.operators.triggers import EventTrigger, SegmentTrigger, TimerTrigger

SPEC = sessions.SessionSpec(timeout=1800.0, max_length=3600.0, engaged_gap_cap=600.0)
FSPEC = features.FeatureSpec(affinity_half_life=3600.0)


def ev(t: float, name: str = "Home", etype: str = "page", **props: object) -> Event:
    return Event(f"m{t}{name}", "u", None, etype, name, t, "navigation", dict(props))


# --- sessions -----------------------------------------------------------------


def test_a_session_is_cut_at_its_maximum_length_even_without_a_gap() -> None:
    u = UserState("u", 0.0)
    closed = []
    for t in range(0, 4000, 600):  # every 10 min for over an hour; max length 1 h
        closed += sessions.observe(u, ev(float(t)), SPEC)
    assert [(s.start, s.end, s.events, s.end_reason) for s in closed] == [
        (0.0, 3000.0, 6, "max_length")
    ]
    assert u.session is not None and u.session.start == 3600.0


def test_engaged_time_caps_each_gap_and_scroll_depth_keeps_the_maximum() -> None:
    u = UserState("u", 0.0)
    sessions.observe(u, ev(0.0), SPEC)
    sessions.observe(u, ev(100.0, "Page Scrolled", "track", percent=50), SPEC)
    sessions.observe(u, ev(1500.0, "Page Scrolled", "track", percent=25), SPEC)  # 1400 s gap
    s = sessions.close(u, 3300.0, "inactivity", SPEC)
    assert s.engaged_seconds == 100.0 + 600.0
    assert s.max_scroll_depth == 50
    assert u.history and u.history[0][0] == 0.0


def test_history_keeps_only_the_window_and_the_count() -> None:
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_max=2, history_window=10_000.0)
    u = UserState("u", 0.0)
    for start in (0.0, 5000.0, 9000.0, 20_000.0):
        sessions.observe(u, ev(start), spec)
        sessions.close(u, start + 1800.0, "inactivity", spec)
    assert [h[0] for h in u.history] == [20_000.0]  # 9000 is older than 10,000 s by then


def test_two_orders_in_one_session_are_two_orders_and_one_converted_session() -> None:
    # REES46's real stream has buyers with two purchases minutes apart in one session;
    # counting converted sessions made them one order, with both orders' revenue.
    u = UserState("u", 0.0)
    for t, total in ((0.0, 10.0), (60.0, 5.0)):
        sessions.observe(u, ev(t, "Order Completed", "track", total=total), SPEC)
    assert features.window(u, "orders", 3600.0, 60.0)[0] == 2.0  # open session
    s = sessions.close(u, 1860.0, "inactivity", SPEC)
    assert s.converted and s.order_value == 15.0
    assert (u.total_orders, u.total_revenue) == (2, 15.0)
    assert features.window(u, "orders", 3600.0, 1860.0)[0] == 2.0  # closed session
    assert features.profile(u, 1860.0, 3600.0)["orders"] == 2
    assert vectors.user_vector(u, 1860.0, ())["conversion_rate"] == 1.0  # share of sessions


def test_a_profile_counts_the_open_sessions_orders_once() -> None:
    # The profile is who the user is now: an order is in it when applied, not 30 minutes
    # later when its session closes (a replay's profiles are as of the last event).
    u = UserState("u", 0.0)
    sessions.observe(u, ev(0.0, "Product Viewed", "track"), SPEC)
    assert features.profile(u, 0.0, 3600.0)["orders"] == 0
    for t, total in ((30.0, 10.0), (60.0, 5.25)):
        sessions.observe(u, ev(t, "Order Completed", "track", total=total), SPEC)
    open_now = features.profile(u, 60.0, 3600.0)
    assert (open_now["orders"], open_now["revenue"]) == (2, 15.25)
    sessions.close(u, 1860.0, "inactivity", SPEC)
    closed = features.profile(u, 1860.0, 3600.0)
    assert (closed["orders"], closed["revenue"]) == (2, 15.25)  # not counted twice
    sessions.observe(u, ev(4000.0, "Order Completed", "track", total=1.0), SPEC)
    assert features.profile(u, 4000.0, 3600.0)["orders"] == 3


def _orders(u: UserState, t: float, **props: object) -> None:
    sessions.observe(u, ev(t, "Order Completed", "track", **props), SPEC)


def test_an_order_sent_twice_in_a_session_counts_once() -> None:
    # A reloaded confirmation page sends Order Completed again with a new messageId:
    # one order, its value once; orders without an order_id each count.
    u = UserState("u", 0.0)
    _orders(u, 0.0, order_id="o1", total=10.0)
    _orders(u, 30.0, order_id="o1", total=10.0)
    _orders(u, 40.0, order_id=7, total=1.0)
    _orders(u, 50.0, order_id="7", total=1.0)  # the same id as text
    _orders(u, 60.0, total=2.0)
    _orders(u, 70.0, total=2.0)
    assert features.profile(u, 70.0, 3600.0)["orders"] == 4
    s = sessions.close(u, 1870.0, "inactivity", SPEC)
    assert (s.order_value, u.total_orders, u.total_revenue) == (15.0, 4, 15.0)
    _orders(u, 4000.0, order_id="o2", total=3.0)  # a later session counts a new one
    assert features.profile(u, 4000.0, 3600.0)["orders"] == 5


def test_an_order_sent_again_in_a_later_session_counts_once() -> None:
    # An app store re-delivers a purchase, a confirmation page is reloaded the next day:
    # the same order_id in a later session (within state.history_window) is no order, no
    # revenue, and converts nothing; after the window it is an order again.
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_window=30 * 86400.0)
    u = UserState("u", 0.0)
    for t in (0.0, 60.0, 7200.0, 86400.0):
        sessions.observe(u, ev(t, "Order Completed", "track", order_id="GPA.1", total=9.99), spec)
    sessions.close(u, 86400.0 + 1800.0, "inactivity", spec)
    assert (u.total_sessions, u.total_orders, u.total_revenue) == (3, 1, 9.99)
    assert [h[4] for h in u.history] == [1, 0, 0] and not u.last_session_converted
    assert b"GPA" not in u.orders_seen  # a digest, not the id
    later = 30 * 86400.0 + 1.0  # the window after the first one counted: an order again
    sessions.observe(u, ev(later, "Order Completed", "track", order_id="GPA.1", total=9.99), spec)
    assert u.session is not None and (u.session.orders, u.session.converted) == (1, True)


def test_a_user_remembers_at_most_max_recent_orders() -> None:
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, max_recent_orders=2)
    u, hits = UserState("u", 0.0), {}
    for i, oid in enumerate(("o1", "o2", "o3", "o1", "o3")):  # each in its own session
        t = i * 4000.0
        sessions.observe(u, ev(t, "Order Completed", "track", order_id=oid, total=1.0), spec, hits)
    sessions.close(u, 5 * 4000.0, "inactivity", spec)
    # o1 gave way to o3 and counts again; o3 is remembered.
    assert [h[4] for h in u.history] == [1, 1, 1, 1, 0]
    assert len(u.orders_seen) == 2 * sessions.ORDER_ENTRY and hits == {"recent_orders": 2}


def test_a_recent_order_is_known_within_the_window_either_side_of_its_count() -> None:
    # A late re-send (event time before the count) is the same order within the window,
    # and a new one beyond it, as a re-send after it is.
    m = sessions.remember_order(b"", sessions.order_digest("o1"), 100.0, 50.0, 4)
    seen = [
        (t, sessions.seen_order(m, sessions.order_digest("o1"), t, 50.0))
        for t in (51.0, 50.0, 40.0, 149.0, 150.0)
    ]
    assert seen == [(51.0, True), (50.0, False), (40.0, False), (149.0, True), (150.0, False)]


def test_a_merge_remembers_the_orders_of_both_halves_earlier_sessions() -> None:
    # Each half counted its orders in a session now closed; after the merge a re-send of
    # either is no order. An order both halves counted is known from the later count.
    spec = sessions.SessionSpec(1800.0, 3600.0, 600.0, history_window=10000.0)
    anon, known = UserState("a", 0.0), UserState("u", 0.0)
    for half, t, oid in ((anon, 0.0, "o1"), (anon, 100.0, "o2"), (known, 5000.0, "o1")):
        sessions.observe(half, ev(t, "Order Completed", "track", order_id=oid, total=2.0), spec)
    sessions.close(anon, 1900.0, "inactivity", spec)
    sessions.close(known, 6800.0, "inactivity", spec)
    u = merge.merge_users(known, anon, "u", 64, 3600.0, Limits())
    for t, oid in ((8000.0, "o2"), (12000.0, "o1")):  # o1: 7000 after 5000, 12000 after 0
        sessions.observe(u, ev(t, "Order Completed", "track", order_id=oid, total=2.0), spec)
    assert u.session is not None and u.session.orders == 0
    assert u.total_orders == 3 and len(u.orders_seen) == 2 * sessions.ORDER_ENTRY


def test_a_session_remembers_at_most_max_order_ids() -> None:
    n = sessions.MAX_ORDER_IDS
    u = UserState("u", 0.0)
    for i in range(n + 1):
        _orders(u, float(i), order_id=f"o{i}", total=1.0)
    for i in (n - 1, n):  # the last one listed; the first one not, but the user knows it
        _orders(u, 100.0 + i, order_id=f"o{i}", total=1.0)
    assert u.session is not None and len(u.session.order_ids) == n
    assert u.session.orders == n + 1
    assert f"o{n}" not in u.session.order_ids


def test_a_merge_counts_an_order_both_halves_counted_once() -> None:
    anon, known = UserState("a", 0.0), UserState("u", 0.0)
    _orders(anon, 0.0, order_id="o1", total=4.0)
    _orders(known, 60.0, order_id="o1", total=4.0)
    _orders(known, 70.0, order_id="o2", total=1.0)
    u = merge.merge_users(known, anon, "u", 64, 3600.0, Limits())
    assert u.session is not None and (u.session.orders, u.session.order_value) == (2, 5.0)
    _orders(u, 80.0, order_id="o2", total=1.0)
    assert u.session.orders == 2


def test_a_merge_of_two_open_sessions_keeps_the_orders_of_both() -> None:
    anon, known = UserState("a", 0.0), UserState("u", 0.0)
    sessions.observe(anon, ev(0.0, "Order Completed", "track", total=1.0), SPEC)
    sessions.observe(known, ev(60.0, "Order Completed", "track", total=2.0), SPEC)
    u = merge.merge_users(known, anon, "u", 64, 3600.0, Limits())
    sessions.close(u, 1860.0, "inactivity", SPEC)
    assert (u.total_orders, u.total_revenue) == (2, 3.0)


def _halves() -> tuple[UserState, UserState]:
    """Two halves each at the bounds of ``Limits(categories=3, traits=2, cart_lines=2,
    distinct_values=2, window_events=3)`` and ``history_max`` 3, none of it shared."""
    known, anon = UserState("u", 0.0), UserState("a", 0.0)
    for half, tag, base in ((known, "k", 100.0), (anon, "a", 200.0)):
        # Affinities all at time 0, so their order is their score's: ``a`` weakest.
        half.affinity = {f"{tag}{i}": (float(i + (tag == "k")), 0.0) for i in range(3)}
        half.video_completions = {f"{tag}{i}": 1 for i in range(3)}
        half.traits = {f"{tag}t{i}": i for i in range(2)}
        half.cart = {f"{tag}p{i}": ("c", 1.0, 1) for i in range(2)}
        half.tracks = {"d": {f"{tag}v{i}": base + i for i in range(2)},
                       "w": [base + i for i in range(3)]}  # fmt: skip
        half.history = [(base + i, 1, 1, 0.0, 0, 0.0, 0, False) for i in range(3)]
    return known, anon


LIMITS = Limits(categories=3, traits=2, cart_lines=2, distinct_values=2, window_events=3)


def test_a_merge_keeps_each_bound_and_counts_what_gives_way() -> None:
    known, anon = _halves()
    hits: dict[str, int] = {}
    u = merge.merge_users(known, anon, "u", 3, 3600.0, LIMITS, at=300.0, hits=hits,
                          history_window=250.0)  # fmt: skip
    # The three strongest categories (``k2`` 3.0, ``a2``/``k1`` 2.0: ``a1`` 1.0 and the
    # rest give way), the first traits, the newest values, timestamps and sessions.
    assert sorted(u.affinity) == ["a2", "k1", "k2"]
    assert u.video_completions == {"k0": 1, "k1": 1, "k2": 1}
    assert u.traits == {"kt0": 0, "kt1": 1}
    assert list(u.cart) == ["ap0", "ap1"]
    assert u.tracks["d"] == {"av0": 200.0, "av1": 201.0}
    assert u.tracks["w"] == [200.0, 201.0, 202.0]
    assert [h[0] for h in u.history] == [200.0, 201.0, 202.0]
    # Sessions given way: 100, 101, 102, of which those of the window's last 250 s
    # before 300 (started at 50 or later): all three; video completions, the affinity's
    # three: 3 + 3 under ``categories``.
    assert hits == {"categories": 6, "traits": 2, "cart_lines": 2, "distinct_values": 2,
                    "window_events": 3, "history_sessions": 3}  # fmt: skip


def test_a_merge_counts_a_session_given_way_only_within_the_history_window() -> None:
    known, anon = _halves()
    hits: dict[str, int] = {}
    # Sessions before 300 - 199 = 101 are past the window: of 100, 101, 102 given way,
    # only 101 and 102 are counted, as ``sessions.close`` counts them.
    merge.merge_users(known, anon, "u", 3, 3600.0, LIMITS, at=300.0, hits=hits,
                      history_window=199.0)  # fmt: skip
    assert hits["history_sessions"] == 2


def test_a_merge_within_the_bounds_counts_nothing() -> None:
    known, anon = _halves()
    roomy = Limits(categories=6, traits=4, cart_lines=4, distinct_values=4, window_events=6)
    hits: dict[str, int] = {}
    u = merge.merge_users(known, anon, "u", 6, 3600.0, roomy, at=300.0, hits=hits)
    assert (len(u.affinity), len(u.traits), len(u.cart), len(u.history)) == (6, 4, 4, 6)
    assert hits == {}


def test_a_centroid_is_reported_in_original_units_and_never_below_zero() -> None:
    assert vectors.in_original_units("engaged_minutes", math.log1p(2.0)) == pytest.approx(2.0)
    assert vectors.in_original_units("conversion_rate", 0.25) == 0.25
    assert vectors.in_original_units("conversion_rate", -1e-4) == 0.0
    assert vectors.in_original_units("sessions_7d", -1e-4) == 0.0


# --- features -----------------------------------------------------------------


def test_affinity_halves_every_half_life() -> None:
    u = UserState("u", 0.0)
    features.update(u, ev(0.0, "Product Viewed", "track", category="deals"), FSPEC)
    assert features.affinity(u, "deals", 3600.0, 3600.0) == pytest.approx(0.5)
    assert features.affinity(u, "deals", 7200.0, 3600.0) == pytest.approx(0.25)
    assert features.top_category(u, 7200.0, 3600.0) == "deals"


def test_cart_adds_removes_and_an_order_empties_it() -> None:
    u = UserState("u", 0.0)
    add = dict(product_id="p1", category="c", price=2.5, quantity=2)
    features.update(u, ev(0.0, "Product Added", "track", **add), FSPEC)
    features.update(u, ev(1.0, "Product Added", "track", **add), FSPEC)
    assert features.cart_summary(u) == {
        "products": [{"product_id": "p1", "category": "c", "price": 2.5, "quantity": 4}],
        "items": 4,
        "value": 10.0,
    }
    features.update(u, ev(2.0, "Order Completed", "track", total=10), FSPEC)
    assert u.cart == {} and u.last_order_ts == 2.0


def test_window_counts_sessions_started_inside_it_and_says_when_the_oldest_leaves() -> None:
    u = UserState("u", 0.0)
    u.history = [(100.0, 3, 1, 0.0, 1, 20.0, 0, True), (5000.0, 2, 2, 0.0, 0, 0.0, 1, False)]
    assert features.window(u, "sessions", 3600.0, 6000.0) == (1.0, 8600.0)
    assert features.window(u, "orders", 10_000.0, 6000.0) == (1.0, 10_100.0)
    assert features.window(u, "events", 10.0, 6000.0) == (0.0, math.inf)


# --- caps -----------------------------------------------------------------------


def test_caps_count_only_delivered_actions_in_a_rolling_day() -> None:
    caps = FrequencyCaps({"default": 2}, per_user_per_day=10, cooldown={"default": 0.0})
    u = UserState("u", 0.0)
    assert [caps.decide(u, "a", t) for t in (0.0, 10.0, 20.0)] == [None, None, "frequency_cap"]
    assert caps.decide(u, "a", DAY + 1.0) is None  # the first one left the window


def test_cooldown_and_the_per_user_cap_across_actions() -> None:
    caps = FrequencyCaps({"default": 5}, per_user_per_day=2, cooldown={"a": 600.0})
    u = UserState("u", 0.0)
    assert caps.decide(u, "a", 0.0) is None
    assert caps.decide(u, "a", 100.0) == "cooldown"
    assert caps.decide(u, "b", 200.0) is None
    assert caps.decide(u, "c", 300.0) == "frequency_cap"


# --- triggers -------------------------------------------------------------------


def test_a_timer_restarts_on_start_events_and_fires_once() -> None:
    t = TimerTrigger(
        "ab",
        "ab",
        start_on=frozenset({"Product Added"}),
        cancel_on=frozenset({"Order Completed"}),
        after=900.0,
        attach="cart",
    )
    u = UserState("u", 0.0)
    t.receive(u, ev(0.0, "Product Added", "track"))
    t.receive(u, ev(100.0, "Product Added", "track"))
    assert t.fire(u, 999.0) == []
    (c,) = t.fire(u, 1000.0)
    assert (c.at, c.action, c.cause["due"]) == (1000.0, "ab", "1970-01-01T00:16:40.000Z")
    assert t.fire(u, 5000.0) == []


def test_segment_and_event_triggers_with_a_condition() -> None:
    from audienceflow.operators.rules import compile_rule

    seg = SegmentTrigger("v", "v", segment="video:*")
    u = UserState("u", 0.0)
    enter = SegmentChange("u", "video:cooking", "enter", 5.0, {})
    (c,) = seg.receive(u, enter)
    assert c.payload == {"segment": "video:cooking"}
    assert seg.receive(u, SegmentChange("u", "other", "enter", 5.0, {})) == []
    mobile = EventTrigger(
        "m", "m", when=compile_rule("m", "device == 'mobile'"), events=frozenset({"Home"})
    )
    (blocked,) = mobile.receive(u, ev(1.0))
    assert blocked.blocked == {"device": ""}  # not proposed: the engine only counts it
    u.device = "mobile"
    (c,) = mobile.receive(u, ev(2.0))
    assert c.cause["condition"] == {"device": "mobile"}


# --- segments and clock -----------------------------------------------------------


def test_per_category_segments_enter_and_exit_per_category() -> None:
    rule = SegmentRule.parse("fan", "video_completions(category) >= 2", per="category")
    u = UserState("u", 0.0)
    u.video_completions = {"cooking": 2, "tech": 1}
    changes = evaluate_all(u, [rule], 10.0, 3600.0)
    assert [(c.segment, c.change) for c in changes] == [("fan:cooking", "enter")]
    u.video_completions["cooking"] = 0
    assert [(c.segment, c.change) for c in rule.evaluate(u, Context(u, 20.0, 3600.0))] == [
        ("fan:cooking", "exit")
    ]


def test_stream_time_is_the_slowest_active_partition_never_moving_back() -> None:
    c = StreamClock(lateness=60.0)
    c.expect(["a", "b"])
    c.update("a", 100.0, False)
    assert c.now() == -math.inf  # b has not reported: its backlog may be older
    c.update("b", 40.0, False)
    assert c.now() == 40.0
    c.update("b", 150.0, False)
    assert c.now() == 100.0  # now a is the slowest
    c.update("a", 100.0, True)  # a idle: it no longer holds time back
    assert c.now() == 150.0
    c.update("a", 120.0, False)  # a rejoins behind: stream time does not move back
    assert c.now() == 150.0
    c.finish()
    assert c.now() == math.inf


def test_a_partition_first_heard_of_late_is_added_to_the_minimum() -> None:
    c = StreamClock()
    c.update("a", 100.0, False)
    c.update("new", 50.0, False)
    assert c.now() == 100.0  # never back; and from now on "new" holds it
    c.update("a", 300.0, False)
    assert c.now() == 100.0
    c.update("new", 200.0, False)
    assert c.now() == 200.0


@pytest.mark.timeout(30)
def test_a_merge_gives_way_by_affinity_at_the_merge_time_after_a_shared_category() -> None:
    # ``s``, in both halves, is summed at its own latest time (0); the categories that
    # give way are still judged decayed to the merge (2000), where ``x``, seen at 1000,
    # is the strongest, and ``z`` the weakest (as ``features._category`` judges them).
    known, anon = UserState("u", 0.0), UserState("a", 0.0)
    known.affinity = {"x": (1.0, 1000.0), "s": (5.0, 0.0)}
    anon.affinity = {"s": (1.0, 0.0), "z": (3.0, 0.0)}
    hits: dict[str, int] = {}
    u = merge.merge_users(known, anon, "u", 3, 100.0, Limits(categories=2), at=2000.0, hits=hits)
    assert sorted(u.affinity) == ["s", "x"]
    assert hits == {"categories": 1}


@pytest.mark.timeout(30)
def test_a_merge_of_two_open_sessions_counts_the_products_and_categories_left_out() -> None:
    from audienceflow.operators.state import OpenSession

    known, anon = UserState("u", 0.0), UserState("a", 0.0)
    known.session, anon.session = OpenSession("u:1", 0.0, 10.0), OpenSession("a:1", 5.0, 20.0)
    known.session.products = {"p1": None, "p2": None}
    anon.session.products = {"p2": None, "p3": None, "p4": None}  # p2 is in both: kept once
    known.session.categories = {"c1": None}
    anon.session.categories = {"c2": None, "c3": None}
    hits: dict[str, int] = {}
    limits = Limits(session_products=3, categories=2)
    u = merge.merge_users(known, anon, "u", 3, 3600.0, limits, at=30.0, hits=hits)
    assert u.session is not None
    assert (list(u.session.products), list(u.session.categories)) == (
        ["p1", "p2", "p3"],
        ["c1", "c2"],
    )
    assert hits == {"session_products": 1, "categories": 1}


@pytest.mark.timeout(30)
def test_a_merge_gives_way_between_equal_affinities_by_name() -> None:
    # ``b`` and ``a`` are equally weak: ``a`` gives way, first by name, as
    # ``features._category`` picks it, whatever the halves' order.
    known, anon = UserState("u", 0.0), UserState("x", 0.0)
    known.affinity = {"c": (5.0, 0.0), "b": (1.0, 0.0)}
    anon.affinity = {"a": (1.0, 0.0)}
    u = merge.merge_users(known, anon, "u", 3, 100.0, Limits(categories=2), at=10.0)
    assert sorted(u.affinity) == ["b", "c"]
