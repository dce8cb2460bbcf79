"""The per-event shortcuts of the engine's rule evaluation compute what they replace.

- ``Context.sessions`` and ``Context.total`` scan the session history themselves instead
  of calling ``features.window``: equal values and equal next change times;
- a rule's fast function reads a variable through its declared inline expression
  (``rules.variable(inline=...)``) instead of its property: equal values;
- ``segments.Evaluator`` resets one context per evaluation instead of building one:
  nothing of one evaluation (user, category, next change) reaches the next.

Each is compared with the plain computation over random states (Hypothesis), and each
has a test that fails when the shortcut is taken out.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators import features, registry, rule_compile, segments
from audienceflow.operators.rules import Context, compile_rule
from audienceflow.operators.segments import Evaluator, SegmentRule
from audienceflow.operators.state import HISTORY_METRICS, INF, OpenSession, UserState

T0 = 1_772_438_400.0
# Times on a coarse grid around T0, so windows' edges are hit exactly.
times = st.integers(-40, 40).map(lambda k: T0 + k * 900.0)
small = st.integers(0, 50)
money = st.sampled_from([0.0, 0.1, 2.5, 19.99, 1e6])


@st.composite
def users(draw: st.DrawFn) -> UserState:
    user = UserState("u", first_seen=T0 - 86400.0)
    user.history = [
        (draw(times), draw(small), draw(small), draw(money), draw(st.integers(0, 1)),
         draw(money), draw(small))
        for _ in range(draw(st.integers(0, 6)))
    ]  # fmt: skip
    if draw(st.booleans()):
        start = draw(times)
        s = OpenSession("u:s", start=start, last=start + draw(st.sampled_from([0.0, 60.0, 7200.0])))
        s.events, s.page_views, s.screen_views = draw(small), draw(small), draw(small)
        s.engaged, s.max_page, s.max_scroll = draw(money), draw(money), draw(st.integers(0, 100))
        s.cart_adds, s.product_views, s.searches = draw(small), draw(small), draw(small)
        s.converted, s.order_value = draw(st.booleans()), draw(money)
        user.session = s
    user.total_events, user.total_sessions, user.total_orders = (
        draw(small),
        draw(small),
        draw(small),
    )
    user.total_revenue = draw(money)
    user.device = draw(st.sampled_from([None, "", "mobile", "desktop"]))
    user.locale = draw(st.sampled_from([None, "en-GB"]))
    user.channel = draw(st.sampled_from([None, "newsletter"]))
    user.intent_score = draw(st.sampled_from([0.0, 0.5, 0.61]))
    user.cluster = draw(st.integers(-1, 3))
    return user


SECONDS = [900.0, 3600.0, 86400.0, 7 * 86400.0]


@settings(max_examples=300, deadline=None)
@given(users(), times, st.sampled_from(SECONDS), st.sampled_from([INF, T0, T0 + 1800.0]))
def test_sessions_and_total_equal_the_window_they_inline(
    user: UserState, now: float, seconds: float, before: float
) -> None:
    for metric in [None, *HISTORY_METRICS]:
        ctx = Context(user, now, 86400.0)
        ctx.next_change = before
        got = ctx.sessions(seconds) if metric is None else ctx.total(metric, seconds)
        value, change = features.window(user, metric or "sessions", seconds, now)
        want_next = change if now < change < before else before
        assert (got, type(got), ctx.next_change) == (value, type(value), want_next)


def test_sessions_and_total_no_longer_call_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(*args: Any) -> Any:
        raise AssertionError("features.window was called")

    monkeypatch.setattr(features, "window", gone)
    user = UserState("u", first_seen=T0)
    user.history = [(T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0)]
    ctx = Context(user, T0, 86400.0)
    assert ctx.sessions(3600.0) == 1.0
    assert ctx.next_change == T0 - 60.0 + 3600.0
    ctx = Context(user, T0, 86400.0)
    assert (ctx.total("page_views", 3600.0), ctx.events(1800.0)) == (1.0, 1.0)
    assert ctx.next_change == T0 - 60.0 + 1800.0


INLINED = sorted(rule_compile.INLINE)


def test_the_session_and_user_variables_have_inline_reads() -> None:
    want = {e.name for e in registry.REGISTRY.values() if e.name.startswith("session_")}
    want |= {"in_session", "total_events", "total_sessions", "total_orders", "total_revenue",
             "device", "locale", "channel", "intent_score", "cluster"}  # fmt: skip
    assert want <= set(INLINED)
    assert all(not registry.REGISTRY[n].is_function for n in INLINED)


@pytest.mark.parametrize("name", INLINED)
def test_a_fast_function_reads_an_inlined_variable_without_its_property(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(c: Context) -> Any:
        raise AssertionError(f"the property {name} was read")

    rule = compile_rule("r", name)
    monkeypatch.setattr(Context, name, property(gone))
    ctx = Context(UserState("u", first_seen=T0), T0, 86400.0)
    rule._fast(ctx)
    with pytest.raises(AssertionError, match="was read"):
        rule._explain(ctx)


@settings(max_examples=200, deadline=None)
@given(users(), times)
def test_an_inlined_variable_reads_what_its_property_reads(user: UserState, now: float) -> None:
    for name in INLINED:
        rule = compile_rule("r", name)
        ctx = Context(user, now, 86400.0)
        got, want = rule._fast(ctx), getattr(ctx, name)
        assert (got, type(got)) == (want, type(want)), name


def _segment(name: str, when: str, per: str | None = None) -> SegmentRule:
    return SegmentRule.parse(name, when, per)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(users(), times, st.booleans()), min_size=1, max_size=4))
def test_a_reused_context_evaluates_as_a_fresh_one_each_time(
    runs: list[tuple[UserState, float, bool]],
) -> None:
    rules = [
        _segment("visitor", "sessions(2h) >= 1"),
        _segment("engaged", "session_page_views > 3 or session_seconds > 1h"),
        _segment("cat", "category == 'shoes' or affinity(category) > 0", per="category"),
        _segment("intent", "in_session and intent_score >= 0.6"),
    ]
    shared = Evaluator(rules)
    for user, now, seen in runs:
        user.affinity = {"shoes": (1.0, now - 60.0)} if seen else {}
        twin = UserState("u", first_seen=user.first_seen)
        for slot in UserState.__slots__:  # type: ignore[attr-defined]
            value = getattr(user, slot)
            setattr(twin, slot, dict(value) if isinstance(value, dict) else value)
        got = shared.evaluate(user, now, 86400.0, None, frozenset({"event"}))
        want = Evaluator(rules).evaluate(twin, now, 86400.0, None, frozenset({"event"}))
        assert [c.to_json() for c in got] == [c.to_json() for c in want]
        assert (user.segments, user.segment_recheck) == (twin.segments, twin.segment_recheck)


def test_an_evaluation_builds_no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    ev = Evaluator([_segment("visitor", "sessions(2h) >= 1")])

    def no(*args: Any) -> Any:
        raise AssertionError("a Context was built")

    monkeypatch.setattr(segments, "Context", no)
    user = UserState("u", first_seen=T0)
    user.history = [(T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0)]
    assert [c.segment for c in ev.evaluate(user, T0, 86400.0)] == ["visitor"]
    assert user.segment_recheck == T0 - 60.0 + 7200.0
