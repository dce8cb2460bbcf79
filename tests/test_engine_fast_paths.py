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

import copy
import dataclasses
from typing import Any

import pytest
from helpers import pure_only
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_fast_paths import _kinds_per_event
from test_rule_registry import make_event, streams
from test_segment_skips import RULES

from audienceflow.operators import features, registry, rule_compile, segments
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.identity import IdentityGraph, IdentitySpec, Resolved
from audienceflow.operators.records import Event, Watermark
from audienceflow.operators.rules import Context, compile_rule, rounded
from audienceflow.operators.segments import Evaluator, SegmentRule
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import HISTORY_METRICS, INF, Limits, OpenSession, UserState

T0 = 1_772_438_400.0
# Times on a coarse grid around T0, so windows' edges are hit exactly.
times = st.integers(-40, 40).map(lambda k: T0 + k * 900.0)
small = st.integers(0, 50)
money = st.sampled_from([0.0, 0.1, 2.5, 19.99, 1e6])

# A user's fields, to copy one: read from the dataclass, not ``__slots__``, which the
# compiled build's native ``UserState`` does not have.
_FIELDS = tuple(f.name for f in dataclasses.fields(UserState))


@st.composite
def users(draw: st.DrawFn) -> UserState:
    user = UserState("u", first_seen=T0 - 86400.0)
    user.history = [
        (draw(times), draw(small), draw(small), draw(money), draw(st.integers(0, 1)),
         draw(money), draw(small), draw(st.booleans()))
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
    user.history = [(T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0, False)]
    ctx = Context(user, T0, 86400.0)
    assert ctx.sessions(3600.0) == 1.0
    assert ctx.next_change == T0 - 60.0 + 3600.0
    ctx = Context(user, T0, 86400.0)
    assert (ctx.total("page_views", 3600.0), ctx.events(1800.0)) == (1.0, 1.0)
    assert ctx.next_change == T0 - 60.0 + 1800.0


class _Unscanned(list[Any]):
    """A session history that fails when iterated."""

    def __iter__(self) -> Any:
        raise AssertionError("the history was scanned")


@pure_only  # compiled code iterates a list past a subclass's __iter__
def test_sessions_without_history_reads_the_open_session_without_a_scan() -> None:
    user = UserState("u", first_seen=T0)
    user.history = _Unscanned()
    user.session = OpenSession("u:s", start=T0 - 3600.0, last=T0)
    for seconds, want, nxt in ((3600.0, 0.0, INF), (3601.0, 1.0, T0 + 1.0)):
        ctx = Context(user, T0, 86400.0)
        got = ctx.sessions(seconds)  # the window's edges: (now - seconds, now]
        assert (got, type(got), ctx.next_change) == (want, float, nxt)
    user.session = None
    assert Context(user, T0, 86400.0).sessions(3600.0) == 0.0
    user.history.append((T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0, False))  # with a history, the scan
    with pytest.raises(AssertionError, match="scanned"):
        Context(user, T0, 86400.0).sessions(3600.0)


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


INLINED_CALLS = sorted(rule_compile.INLINE_CALLS)


def test_the_functions_called_per_event_have_inline_calls() -> None:
    assert {"active_within", "sessions"} <= set(INLINED_CALLS)
    assert all(registry.REGISTRY[n].is_function for n in INLINED_CALLS)


def test_a_fast_function_calls_an_inlined_function_only_to_explain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def gone(c: Context, *args: Any) -> Any:
        raise AssertionError("the function was called")

    rule = compile_rule("r", "active_within(1h) and sessions(2h) == 1 and sessions(3h) == 1")
    monkeypatch.setattr(Context, "active_within", gone)
    monkeypatch.setattr(Context, "sessions", gone)
    user = UserState("u", first_seen=T0)
    user.last_ts = T0 - 60.0
    user.session = OpenSession("u:s", start=T0 - 60.0, last=T0 - 60.0)
    ctx = Context(user, T0, 86400.0)
    assert rule._fast(ctx) is True
    assert ctx.next_change == T0 - 60.0 + 3600.0
    with pytest.raises(AssertionError, match="was called"):
        rule._explain(ctx)
    user.history.append((T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0, False))  # with a history: the call
    with pytest.raises(AssertionError, match="was called"):
        rule._fast(Context(user, T0, 86400.0))


@settings(max_examples=300, deadline=None)
@given(
    users(),
    times,
    st.one_of(times, st.sampled_from([-900.0, 0.0, 900.0])),
    st.sampled_from(SECONDS),
    st.sampled_from([INF, T0, T0 + 1800.0, T0 + 3600.0]),
)
def test_an_inlined_call_returns_and_sets_what_the_call_does(
    user: UserState, now: float, last: float, seconds: float, before: float
) -> None:
    """The inline form against the method, on a grid where the window's edge is met (a
    small ``last`` is an offset from it): the value and its type, and the next change it
    leaves (from a next change set before)."""
    user.last_ts = last if last > 1e6 else now - seconds + last
    if user.session is not None and last < 1e6:  # the open session's start at the edge too
        user.session.start = now - seconds + last
    for name in INLINED_CALLS:
        rule = compile_rule("r", f"{name}({int(seconds)}s)")
        fast, call = Context(user, now, 86400.0), Context(user, now, 86400.0)
        fast.next_change = call.next_change = before
        got, want = rule._fast(fast), getattr(call, name)(seconds)
        assert (got, type(got), fast.next_change) == (want, type(want), call.next_change), name


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
        for slot in _FIELDS:
            value = getattr(user, slot)
            setattr(twin, slot, dict(value) if isinstance(value, dict) else value)
        got = shared.evaluate(user, now, 86400.0, None, frozenset({"event"}))
        want = Evaluator(rules).evaluate(twin, now, 86400.0, None, frozenset({"event"}))
        assert [c.to_json() for c in got] == [c.to_json() for c in want]
        assert (user.segments, user.segment_recheck) == (twin.segments, twin.segment_recheck)


@pure_only
def test_an_evaluation_builds_no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    ev = Evaluator([_segment("visitor", "sessions(2h) >= 1")])

    def no(*args: Any) -> Any:
        raise AssertionError("a Context was built")

    monkeypatch.setattr(segments, "Context", no)
    user = UserState("u", first_seen=T0)
    user.history = [(T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0, False)]
    assert [c.segment for c in ev.evaluate(user, T0, 86400.0)] == ["visitor"]
    assert user.segment_recheck == T0 - 60.0 + 7200.0


# --- what an event changed, read from the engine's table inline ----------------------------


class _Capture(ShardEngine):
    """Records what each event evaluation was told the event changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.told: list[tuple[Event, frozenset[str] | None, bool]] = []
        self.worked_out = 0
        self.current: Event | None = None
        self.due = False  # inside ``_run_due``: its closes' and re-checks' evaluations
        self.closed = False  # the current event closed a session itself (``observe``)

    def _changed_by(self, ev: Event, category: bool, new_session: bool) -> frozenset[str]:
        self.worked_out += 1
        return super()._changed_by(ev, category, new_session)

    def _segments(
        self,
        user: UserState,
        at: float,
        out: list[Any],
        cands: list[Any],
        focus: str | None = None,
        changed: frozenset[str] | None = None,
        decide: bool = True,
    ) -> None:
        # An event's evaluation, not a close's or a re-check's run before it.
        ev = self.current
        if ev is not None and ev.type != "identify" and not self.due:
            assert changed is not None
            self.told.append((ev, changed, self.closed))
        super()._segments(user, at, out, cands, focus, changed, decide)

    def _run_due(self, *args: Any, **kwargs: Any) -> None:
        self.due = True
        super()._run_due(*args, **kwargs)
        self.due = False

    def _closed(self, *args: Any, **kwargs: Any) -> None:
        self.closed = self.closed or not self.due
        super()._closed(*args, **kwargs)

    def _apply(self, user: UserState, ev: Event, out: list[Any]) -> None:
        self.current, self.closed = ev, False
        super()._apply(user, ev, out)
        self.current = None


@pure_only
@settings(max_examples=60, deadline=None)
@given(streams)
@example([(0.0, 0, 0), (1800.0, 0, 0)])  # a page at the timeout: the close is left to it
def test_an_event_is_told_what_it_changed_as_worked_out_per_event(
    stream: list[tuple[float, int, int]],
) -> None:
    cfg = Settings.load(environ={})
    engine = _Capture(cfg, ShardState("shard-000"), partitions=["p"])
    ts, events = T0, []
    for i, (gap, kind, device) in enumerate(stream * 2):  # the repeat reads the table
        ts += gap
        events.append(make_event(i, ts, kind, device))
    engine.on_items([*events, Watermark("p", ts + 1.0)])
    assert len(engine.told) == sum(1 for e in events if e.type != "identify")
    seqs: dict[str, int] = {}
    for ev, changed, closed in engine.told:
        cat = ev.properties.get("category")
        cat = cat if isinstance(cat, str) else ""
        if not cat and ev.name in cfg.features.affinity_weights:  # an order's products
            products = ev.properties.get("products") or []
            cat = "".join(p.get("category") or "" for p in products if isinstance(p, dict))
        new = "session_start" in changed  # checked against the session count below
        # A session the event closes itself (at its instant: ``_run_due`` left the close
        # to it) is evaluated with it: what a close changes too.
        assert set(changed) == _kinds_per_event(cfg, ev, cat, new) | (
            segments.AT_CLOSE if closed else set()
        )
        seqs[ev.user_id] = seqs.get(ev.user_id, 0) + new
    assert seqs.get("ann", 0) == engine.state.users["ann"].session_seq
    # Worked out once per kind of event, then read from the table.
    assert engine.worked_out == len(engine._kinds) <= 16


# --- a plan compiled into one function ------------------------------------------------------

# Every registry entry's probes, plus rules that raise (a no-trait comparison, a division).
PLAN_RULES = [*RULES, "traits.plan > 3", "total_revenue / total_orders > 10"]


def _rule(i: int, source: str) -> SegmentRule:
    per = "category" if "(category)" in source or "category ==" in source else None
    return SegmentRule.parse(f"s{i}", source, per)


def _copy(user: UserState) -> UserState:
    twin = UserState(user.user_id, first_seen=user.first_seen)
    for slot in _FIELDS:
        value = getattr(user, slot)
        setattr(twin, slot, dict(value) if isinstance(value, dict) else value)
    return twin


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(PLAN_RULES), min_size=1, max_size=6, unique=True),
    users(),
    times,
    st.sets(st.integers(0, 5)),
    st.sampled_from([None, "", "shoes"]),
)
def test_a_compiled_plan_does_what_the_loop_over_its_steps_does(
    sources: list[str], user: UserState, now: float, inside: set[int], focus: str | None
) -> None:
    rules = [_rule(i, s) for i, s in enumerate(sources)]
    user.affinity = {"shoes": (2.0, now - 60.0), "hats": (1.0, now - 7200.0)}
    user.video_completions = {"shoes": 2}
    user.cart = {"p1": ("shoes", 10.0, 2)}
    user.traits = {"plan": "pro"} if 0 in inside else {}
    user.segments = {r.name: now - 1.0 for i, r in enumerate(rules) if i in inside}
    user.segments["s0:hats"] = now - 1.0
    steps = tuple((r, r.name, r.per is None, r.fast) for r in rules)
    results = []
    for run in (segments.compile_plan(steps), None):
        u = _copy(user)
        ctx = Context(u, now, 3600.0)
        changes: list[Any] = []
        if run is None:
            segments.evaluate_steps(steps, ctx, u.segments, u, focus, Limits(), {}, changes)
        else:
            run(ctx, u.segments, u, focus, Limits(), {}, changes)
        results.append(([c.to_json() for c in changes], u.segments, ctx.next_change, ctx.category))
    assert results[0] == results[1]


@pure_only
def test_a_compiled_plan_evaluates_a_plain_rule_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = _segment("visitor", "sessions(2h) >= 1 and session_page_views >= 0")
    calls: list[str] = []
    monkeypatch.setattr(segments, "evaluate_steps", lambda *a: calls.append("loop"))
    object.__setattr__(rule, "fast", lambda c: calls.append("fast"))
    run = segments.compile_plan(((rule, rule.name, True, rule.fast),))
    user = UserState("u", first_seen=T0)
    user.history = [(T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0, False)]
    user.segments = {"visitor": T0 - 1.0}
    changes: list[Any] = []
    run(Context(user, T0, 3600.0), user.segments, user, None, Limits(), None, changes)
    assert (calls, changes) == ([], [])  # held, still holds: no call, no loop, no change


def test_a_compiled_plan_records_a_plain_rules_change_without_evaluating_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The plan knows the truth it just computed: an entry and an exit are explained and
    # recorded inline, never through ``SegmentRule.evaluate`` (which would evaluate again).
    monkeypatch.setattr(SegmentRule, "evaluate", lambda *a, **k: pytest.fail("evaluated again"))
    enter = _segment("visitor", "sessions(2h) >= 1")
    leave = _segment("buyer", "total_orders >= 1")
    steps = tuple((r, r.name, True, r.fast) for r in (enter, leave))
    run = segments.compile_plan(steps)
    user = UserState("u", first_seen=T0)
    user.history = [(T0 - 60.0, 1, 1, 0.0, 0, 0.0, 0, False)]
    user.segments = {"buyer": T0 - 5.0}
    changes: list[Any] = []
    ctx = Context(user, T0, 3600.0)
    run(ctx, user.segments, user, None, Limits(), None, changes)
    assert [(c.segment, c.change, c.at) for c in changes] == [
        ("visitor", "enter", T0),
        ("buyer", "exit", T0),
    ]
    assert user.segments == {"visitor": T0}
    assert changes[0].reason == {
        "rule": "visitor", "when": "sessions(2h) >= 1", "holds": True, "values": {"sessions(2h)": 1}
    }  # fmt: skip
    assert ctx.next_change == T0 - 60.0 + 7200.0  # the explanation left it as it was


# --- identity: events that link nothing new ----------------------------------------------------

IDS = st.sampled_from([None, "u1", "u2", "a1", "a2", "a3", "null", " u1"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(IDS, IDS, IDS, st.booleans()), min_size=1, max_size=25))
def test_settled_answers_as_resolve_does_and_links_nothing(
    steps: list[tuple[str | None, str | None, str | None, bool]],
) -> None:
    graph = IdentityGraph(IdentitySpec(anonymous_ids=2))
    for i, (user_id, anon, previous, alias) in enumerate(steps):
        previous = previous if alias else None
        settled = graph.settled(user_id, anon, previous)
        before = copy.deepcopy(graph)
        try:
            res = graph.resolve(user_id, anon, previous, T0 + i, f"m{i}")
        except ValueError:
            assert settled is None
            continue
        if settled is not None:
            assert res == Resolved(settled)
            assert graph == before  # nothing linked, nothing moved
        else:
            again = copy.deepcopy(before).link(user_id, anon, previous, T0 + i, f"m{i}")
            assert again == res


@pure_only
def test_the_engine_resolves_only_events_that_link_something(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    link = IdentityGraph.link

    def counted(self: IdentityGraph, *args: Any) -> Any:
        calls.append(args[1] or "")
        return link(self, *args)

    monkeypatch.setattr(IdentityGraph, "link", counted)
    monkeypatch.setattr(IdentityGraph, "resolve", None)  # the engine must not need it
    engine = ShardEngine(Settings.load(environ={}), ShardState("shard-000"), partitions=["p"])
    events = [Event(f"m{i}", "u1", "a1", "track", "Home", T0 + i, "other", {}) for i in range(4)]
    events[0].user_id = "a1"  # anonymous first: ``user_id`` is then the anonymous id
    engine.on_items([*events, Watermark("p", T0 + 10.0)])
    assert calls == ["a1"]  # the first login links u1 and a1; later events are settled
    assert list(engine.state.users) == ["u1"]


# --- stream time read once per watermark in a replay --------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("e"), st.sampled_from([0.0, 30.0, 900.0, 2000.0]), st.integers(0, 12)
            ),
            st.tuples(st.just("w"), st.sampled_from(["p", "q"]), st.booleans()),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_replay_reads_stream_time_per_watermark_as_a_fresh_read_would(
    script: list[tuple[str, Any, Any]],
) -> None:
    cfg = Settings.load(environ={})
    replay = ShardEngine(cfg, ShardState("shard-000"), partitions=["p", "q"])
    # The reference reads stream time at every use: a wall clock with no fallback
    # (``idle_after`` None) gives the same time, through the per-use path.
    fresh = ShardEngine(cfg, ShardState("shard-000"), wall=lambda: 0.0, partitions=["p", "q"])
    fresh.state.clock.idle_after = None
    ts, items, mark = T0, [], T0 - 600.0
    for i, (what, a, b) in enumerate(script):
        if what == "e":
            ts += a
            items.append(make_event(i, ts, b, 0))
        else:
            mark = max(mark, ts - 300.0)
            items.append(Watermark(a, mark, b))
    outs = []
    for engine in (replay, fresh):
        out = []
        for k in range(0, len(items), 7):
            out += engine.on_items(items[k : k + 7])
        out += engine.finish()
        outs.append([r.to_json() if hasattr(r, "to_json") else repr(r) for r in out])
    assert outs[0] == outs[1]


def test_a_replay_reads_stream_time_once_per_watermark_not_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audienceflow.operators.clock import StreamClock

    reads: list[float] = []
    now = StreamClock.now

    def counted(self: StreamClock, wall: Any = None) -> float:
        reads.append(0.0)
        return now(self, wall)

    monkeypatch.setattr(StreamClock, "now", counted)
    counts = []
    for n in (5, 50):
        engine = ShardEngine(Settings.load(environ={}), ShardState("shard-000"), partitions=["p"])
        events = [make_event(i, T0 + i, 0, 0) for i in range(n)]
        reads.clear()
        engine.on_items([Watermark("p", T0 - 60.0), *events, Watermark("p", T0 - 30.0)])
        counts.append(len(reads))
    assert counts[0] == counts[1]


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(st.floats(), st.integers(-(10**6), 10**6).map(float), st.sampled_from([-0.0, 0.0]))
)
def test_an_explained_value_is_rounded_as_round_does(value: float) -> None:
    assert repr(rounded(value)) == repr(round(value, 4))


@pure_only
def test_a_whole_explained_value_skips_round(monkeypatch: pytest.MonkeyPatch) -> None:
    from audienceflow.operators import rules

    calls: list[float] = []
    real = rules.round_places
    monkeypatch.setattr(rules, "round_places", lambda x, n: calls.append(x) or real(x, n))
    assert (rounded(3.0), rounded(2.5)) == (3.0, 2.5) and calls == [2.5]
