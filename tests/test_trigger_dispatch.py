"""The engine hands an event or a segment change only to the triggers that do not ignore it.

``Trigger.ignores(item)`` is a contract of every kind of trigger: when it says True,
``receive(user, item)`` proposes nothing and changes nothing, whatever the user. The
engine keeps, per event name (or segment and direction), the triggers that do not
ignore it (``ShardEngine._listeners``) and calls only those. Checked over every kind
(the plain ones, experiments' armed wrappers, the base class) with random items and
users; a test fails when the engine calls every trigger again.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, SegmentChange, Watermark
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import UserState
from audienceflow.operators.triggers import (
    EventTrigger,
    SegmentTrigger,
    TimerTrigger,
    Trigger,
    ignores,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_772_438_400.0
NAMES = ["Product Added", "Order Completed", "Page Viewed", "Signed Up", "Cart Viewed", "x"]
SEGMENTS = [
    "high_engagement",
    "video_enthusiast:cooking",
    "video_enthusiast:",
    "other",
    "cluster:1",
]


def _kinds() -> list[Trigger]:
    """One trigger of every kind the settings build, armed ones included."""
    demo = Settings.load(ROOT / "examples" / "demo.yaml", environ={})  # an armed timer
    found: list[Trigger] = list(demo.triggers)
    found += [
        Trigger("base", "base"),
        TimerTrigger(
            "cart", "cart", start_on=frozenset({"Product Added"}),
            cancel_on=frozenset({"Order Completed"}), after=60.0,
        ),
        SegmentTrigger("seg", "seg", segment="high_engagement", on="enter"),
        SegmentTrigger("exit", "exit", segment="high_engagement", on="exit"),
        SegmentTrigger("star", "star", segment="video_enthusiast:*", on="enter"),
        EventTrigger("signup", "signup", events=frozenset({"Signed Up"})),
    ]  # fmt: skip
    kinds = {type(t).__name__ for t in found}
    assert {"ArmedTimer", "Trigger", "TimerTrigger", "SegmentTrigger", "EventTrigger"} <= kinds
    return found


KINDS = _kinds()


@st.composite
def items(draw: st.DrawFn) -> Event | SegmentChange:
    ts = T0 + draw(st.integers(0, 7200))
    if draw(st.booleans()):
        name = draw(st.sampled_from(NAMES))
        props = {"product_id": "p1", "price": 5} if draw(st.booleans()) else {}
        return Event("m", "u", None, "track", name, ts, "other", props)
    seg = draw(st.sampled_from(SEGMENTS))
    return SegmentChange("u", seg, draw(st.sampled_from(["enter", "exit"])), ts, {})


@st.composite
def users(draw: st.DrawFn) -> UserState:
    user = UserState(draw(st.sampled_from(["u", "u7", "h3"])), first_seen=T0 - 60.0)
    if draw(st.booleans()):
        user.timers = {"cart_abandonment": T0 + 900.0, "cart": T0 + 60.0}
    if draw(st.booleans()):
        user.cancelled = {"cart_abandonment": T0 + 30.0, "cart": T0 + 30.0}
    user.cart = {"p1": ("shoes", 5.0, 1)} if draw(st.booleans()) else {}
    return user


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(KINDS))), items(), users())
def test_a_trigger_that_ignores_an_item_does_nothing_with_it(
    kind: int, item: Event | SegmentChange, user: UserState
) -> None:
    trig = KINDS[kind]
    if not ignores(trig, item):
        return
    before = copy.deepcopy(user)
    assert trig.receive(user, item) == []
    for slot in UserState.__slots__:  # type: ignore[attr-defined]
        assert getattr(user, slot) == getattr(before, slot), slot


def test_each_kind_listens_to_what_it_acts_on() -> None:
    # The contract above holds trivially for a kind that ignores nothing: these pin the
    # answers down, so a kind that ignored too much (or too little) is seen.
    def event(name: str) -> Event:
        return Event("m", "u", None, "track", name, T0, "other", {})

    timer, seg, exit_, star, signup = KINDS[-5:]
    assert not timer.ignores(event("Product Added")) and not timer.ignores(event("Order Completed"))
    assert timer.ignores(event("Page Viewed"))
    assert timer.ignores(SegmentChange("u", "high_engagement", "enter", T0, {}))
    assert not seg.ignores(SegmentChange("u", "high_engagement", "enter", T0, {}))
    assert seg.ignores(SegmentChange("u", "high_engagement", "exit", T0, {}))
    assert seg.ignores(SegmentChange("u", "high_engagement_x", "enter", T0, {}))
    assert seg.ignores(event("Product Added"))
    assert not exit_.ignores(SegmentChange("u", "high_engagement", "exit", T0, {}))
    assert not star.ignores(SegmentChange("u", "video_enthusiast:cooking", "enter", T0, {}))
    assert star.ignores(SegmentChange("u", "video_enthusiast", "enter", T0, {}))
    assert not signup.ignores(event("Signed Up")) and signup.ignores(event("Signed"))
    assert not KINDS[-6].ignores(event("x"))  # the base class: everything reaches it
    armed = next(t for t in KINDS if type(t).__name__ == "ArmedTimer")
    assert not armed.ignores(event("Product Added")) and armed.ignores(event("Page Viewed"))


def _engine() -> ShardEngine:
    cfg = Settings.load(None, environ={})
    return ShardEngine(cfg, ShardState("shard-000"), partitions=["in"])


def _stream() -> list[Any]:
    names = ["Page Viewed", "Product Added", "Page Viewed", "Order Completed", "Page Viewed"]
    evs: list[Any] = [
        Event(f"m{i}", "ann", None, "track", n, T0 + 60.0 * i, "other",
              {"product_id": "p1", "price": 5.0} if n == "Product Added" else {})
        for i, n in enumerate(names)
    ]  # fmt: skip
    return [*evs, Watermark("in", T0 + 3600.0, idle=True)]


@pytest.mark.timeout(60)
def test_the_engine_hands_an_event_only_to_the_triggers_that_listen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str]] = []
    real = TimerTrigger.receive

    def spy(self: TimerTrigger, user: UserState, item: Event | SegmentChange) -> Any:
        seen.append((self.name, item.name if isinstance(item, Event) else item.segment))
        return real(self, user, item)

    monkeypatch.setattr(TimerTrigger, "receive", spy)
    engine = _engine()
    engine.on_items(_stream())
    # The add starts the cart timer, the order cancels it; page views reach no timer.
    assert seen == [("cart_abandonment", "Product Added"), ("cart_abandonment", "Order Completed")]
    assert engine.state.users["ann"].cancelled == {"cart_abandonment": T0 + 180.0}


@pytest.mark.timeout(60)
def test_listening_triggers_give_what_every_trigger_gives() -> None:
    fast = _engine()
    slow = _engine()
    # Every trigger listens to everything: the engine as it was before the tables.
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as m:
        m.setattr(slow, "_listeners", lambda item: tuple(
            slow._on_event if isinstance(item, Event) else slow._on_change
        ))  # fmt: skip
        m.setattr(slow, "_event_listeners", _Never())
        m.setattr(slow, "_change_listeners", _Never())
        got = [(type(r).__name__, getattr(r, "to_json", lambda: None)()) for r in
               slow.on_items(_stream()) + slow.finish()]  # fmt: skip
    want = [(type(r).__name__, getattr(r, "to_json", lambda: None)()) for r in
            fast.on_items(_stream()) + fast.finish()]  # fmt: skip
    assert got == want
    assert any(t == "Action" for t, _ in want) or any(t == "SegmentChange" for t, _ in want)


class _Never(dict):  # type: ignore[type-arg]
    """A table that never holds anything: every lookup asks ``_listeners``."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default


class _Forwarding(TimerTrigger):
    """Receives as it likes, says nothing of what it ignores: it must get everything."""

    def receive(self, user: UserState, item: Event | SegmentChange) -> list[Any]:
        return []


def test_a_kind_that_changes_receive_without_saying_what_it_ignores_gets_everything() -> None:
    fwd = _Forwarding("f", "f", start_on=frozenset({"Product Added"}))
    page = Event("m", "u", None, "track", "Page Viewed", T0, "other", {})
    assert fwd.ignores(page)  # the answer it inherited, about TimerTrigger's receive ...
    assert not ignores(fwd, page)  # ... is not trusted
    assert ignores(KINDS[-5], page)  # the timer's own is
