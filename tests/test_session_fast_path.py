"""``sessions.observe`` counts an event in the open session itself, without a call per
event, and answers one shared empty tuple when it closed nothing: compared, over random
streams of events (Hypothesis), with the two functions it replaced, kept here as the
reference; a test fails when the counting goes back to a separate function.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators import sessions
from audienceflow.operators.records import Event, Session, iso
from audienceflow.operators.sessions import SessionSpec
from audienceflow.operators.state import OpenSession, UserState

T0 = 1_772_438_400.0
SPEC = SessionSpec(timeout=1800.0, max_length=3600.0, engaged_gap_cap=600.0)


def reference_observe(user: UserState, ev: Event, spec: SessionSpec) -> list[Session]:
    """``sessions.observe`` as it was before it counted the event itself (the reference).

    An event at or beyond the open session's timeout or maximum length closes
    it (at the deadline) and opens a new one.
    """
    closed: list[Session] = []
    s = user.session
    if s is not None and ev.ts >= s.last:
        if ev.ts >= s.last + spec.timeout:
            closed.append(sessions.close(user, s.last + spec.timeout, "inactivity", spec))
            s = None
        elif ev.ts >= s.start + spec.max_length:
            closed.append(sessions.close(user, s.start + spec.max_length, "max_length", spec))
            s = None
    if s is None:
        user.session_seq += 1
        # Named by user and start time, so ids stay unique even after the user is evicted
        # and comes back (the ordinal restarts then).
        s = OpenSession(f"{user.user_id}:{iso(ev.ts)}", start=ev.ts, last=ev.ts)
        s.device = ev.device
        s.channel = ev.channel
        user.session = s
        user.total_sessions += 1
    _reference_accumulate(s, ev, spec)
    return closed


def _reference_accumulate(s: OpenSession, ev: Event, spec: SessionSpec) -> None:
    ts = ev.ts
    last = s.last
    if ts >= last:
        gap = ts - last
        cap = spec.engaged_gap_cap
        s.engaged += gap if gap < cap else cap
        s.last = ts
    elif ts < s.start:
        s.start = ts
    s.events += 1
    by_category = s.by_category
    category = ev.category
    by_category[category] = by_category.get(category, 0) + 1
    name = ev.name
    props = ev.properties
    page_start = s.page_start
    if page_start is not None and ts > page_start and ts - page_start > s.max_page:
        s.max_page = ts - page_start
    etype = ev.type
    if etype == "page" or etype == "screen":
        if etype == "page":
            s.page_views += 1
        else:
            s.screen_views += 1
        if page_start is None or ts >= page_start:
            s.page_start = ts
        cat = props.get("category")
        if isinstance(cat, str) and cat:
            s.categories[cat] = None
    elif name in spec.scroll_events:
        pct = props.get("percent", props.get("depth"))
        if isinstance(pct, int | float) and not isinstance(pct, bool) and pct > s.max_scroll:
            s.max_scroll = min(int(pct), 100)
    elif name in spec.product_events or name in spec.cart_add_events:
        pid = props.get("product_id")
        if isinstance(pid, str | int) and pid != "" and not isinstance(pid, bool):
            s.products[str(pid)] = None
        cat = props.get("category")
        if isinstance(cat, str) and cat:
            s.categories[cat] = None
        if name in spec.cart_add_events:
            s.cart_adds += 1
        else:
            s.product_views += 1
    elif name in spec.search_events:
        s.searches += 1
    if name in spec.order_events:
        s.converted = True
        s.orders += 1  # each order counts (a session may hold several)
        total = props.get("total")  # Segment's e-commerce spec: total, else revenue
        if total is None:  # (a null total is no total)
            total = props.get("revenue", 0.0)
        if isinstance(total, int | float) and not isinstance(total, bool) and 0 <= total <= 1e15:
            s.order_value += float(total)  # a usable amount (sessions.MAX_AMOUNT)
    if name in spec.funnel_events:
        s.funnel_reached = True
    s.last_step = name


NAMES = [
    "Home", "Page Scrolled", "Scroll Depth Reached", "Product Viewed", "Product Clicked",
    "Product Added", "Products Searched", "Order Completed", "Checkout Started", "Other",
]  # fmt: skip
VALUES = st.sampled_from([None, 0, 7, 55.5, 150, True, "x", "", -3, 12.0])


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    out = []
    ts = T0
    for i in range(draw(st.integers(1, 25))):
        ts += draw(st.sampled_from([0.0, 1.0, 30.0, 599.0, 600.0, 1799.0, 1800.0, 4000.0, -5.0]))
        etype = draw(st.sampled_from(["page", "screen", "track"]))
        props: dict[str, Any] = {}
        for key in draw(st.sets(st.sampled_from(
            ["category", "percent", "depth", "product_id", "total", "revenue"]
        ))):  # fmt: skip
            props[key] = draw(VALUES)
        out.append(Event(
            f"m{i}", "u", None, etype, draw(st.sampled_from(NAMES)), ts,
            draw(st.sampled_from(["navigation", "conversion"])), props,
            device=draw(st.sampled_from([None, "mobile"])),
        ))  # fmt: skip
    return out


def _state(user: UserState) -> dict[str, Any]:
    s = user.session
    return {
        "session": None
        if s is None
        else {f.name: getattr(s, f.name) for f in dataclasses.fields(OpenSession)},
        "seq": user.session_seq,
        "sessions": user.total_sessions,
        "history": list(user.history),
        "orders": (user.total_orders, user.total_revenue),
    }


@settings(max_examples=400, deadline=None)
@given(events())
def test_observe_counts_events_as_the_functions_it_replaced(stream: list[Event]) -> None:
    mine, ref = UserState("u", T0), UserState("u", T0)
    for ev in stream:
        got = sessions.observe(mine, ev, SPEC)
        want = reference_observe(ref, ev, SPEC)
        assert [dataclasses.asdict(s) for s in got] == [dataclasses.asdict(s) for s in want]
        assert _state(mine) == _state(ref)


def test_observe_counts_the_event_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "_accumulate", lambda *a: pytest.fail("a call per event"),
                        raising=False)  # fmt: skip
    user = UserState("u", T0)
    first = sessions.observe(user, Event("m1", "u", None, "page", "Home", T0, "n", {}), SPEC)
    again = sessions.observe(user, Event("m2", "u", None, "page", "Home", T0 + 9, "n", {}), SPEC)
    assert first == () and again is first  # nothing closed: the one shared empty answer
    assert user.session is not None and (user.session.events, user.session.page_views) == (2, 2)
