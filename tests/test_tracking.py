"""The window structures of count/since/sequence/distinct against brute-force definitions.

Events arrive out of order within the allowed lateness (as the engine applies them);
every evaluation happens at or after the stream's cutoff. The reference computes each
value from the full list of events; the tracker keeps only its pruned, bounded state.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators import tracking
from audienceflow.operators.records import Event
from audienceflow.operators.rules import compile_rule
from audienceflow.operators.state import INF, Limits, UserState

T0 = 1_772_438_400.0
SLACK = 120.0
W = 600.0
NAMES = ["A", "B", "C"]


def event(i: int, ts: float, name: str, cat: str) -> Event:
    etype = "page" if name == "C" else "track"
    return Event(f"m{i}", "u", None, etype, name, ts, "other", {"category": cat})


def tracker_of(source: str) -> tracking.Tracker:
    (t,) = compile_rule("x", source).trackers
    return t


# arrival: (gap from the latest event time so far, how far back within the lateness, name, cat)
arrivals = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 30.0, 200.0, 599.0, 600.0, 601.0, 2000.0]),
        st.sampled_from([0.0, 0.0, 50.0, SLACK]),
        st.sampled_from(NAMES),
        st.sampled_from(["x", "y", "z"]),
    ),
    min_size=1,
    max_size=25,
)


def replay(spec: list[tuple[float, float, str, str]], t: tracking.Tracker, cap: int = 1000):  # type: ignore[no-untyped-def]
    """Feed arrivals; yield (user, events so far, cutoff, latest) after each."""
    u = UserState("u", 0.0)
    seen: list[Event] = []
    latest = T0
    for i, (gap, back, name, cat) in enumerate(spec):
        latest += gap
        ev = event(i, latest - back, name, cat)
        seen.append(ev)
        t.observe(u, ev, Limits(window_events=cap), SLACK)
        yield u, seen, latest - SLACK, latest


def times(cutoff: float, latest: float) -> list[float]:
    return [cutoff, cutoff + 0.5, latest - 1, latest, latest + 1, latest + W - 1, latest + W]


def ref_count(seen: list[Event], now: float) -> int:
    return sum(1 for e in seen if e.name in ("A", "B") and e.ts <= now < e.ts + W)


@settings(max_examples=150, deadline=None)
@given(arrivals)
def test_count_equals_its_definition_and_no_change_comes_before_the_reported_time(
    spec: list[tuple[float, float, str, str]],
) -> None:
    t = tracker_of("count(['A', 'B'], 10m) >= 1")
    for u, seen, cutoff, latest in replay(spec, t):
        for now in times(cutoff, latest):
            value, change = tracking.count((u.tracks or {}).get(t.key), W, now)
            assert value == ref_count(seen, now)
            if change < INF:
                for probe in (
                    math.nextafter(now, INF),
                    (now + change) / 2,
                    math.nextafter(change, -INF),
                ):
                    if now < probe < change:
                        assert ref_count(seen, probe) == value


@settings(max_examples=150, deadline=None)
@given(arrivals)
def test_since_equals_its_definition_even_for_late_evaluation_times(
    spec: list[tuple[float, float, str, str]],
) -> None:
    t = tracker_of("since('C') > 10m")
    for u, seen, cutoff, latest in replay(spec, t):
        for now in times(cutoff, latest):
            before = [e.ts for e in seen if e.name == "C" and e.ts <= now]
            expected = max(before) if before else -INF
            assert tracking.last_at((u.tracks or {}).get(t.key), now) == expected


def ref_sequence(seen: list[Event], now: float) -> bool:
    """Forward greedy subsequence match of A, B, C over events in the window."""
    order = sorted(enumerate(seen), key=lambda p: (p[1].ts, p[0]))
    steps = ["A", "B", "C"]
    i = 0
    for _, e in order:
        if e.ts <= now < e.ts + W and e.name == steps[i]:
            i += 1
            if i == len(steps):
                return True
    return False


@settings(max_examples=200, deadline=None)
@given(arrivals)
def test_sequence_equals_its_definition(spec: list[tuple[float, float, str, str]]) -> None:
    t = tracker_of("sequence('A', 'B', 'Page Viewed', within=10m)")
    for u, seen, cutoff, latest in replay(spec, t):
        for now in times(cutoff, latest):
            value, change = tracking.sequence((u.tracks or {}).get(t.key), 3, W, now)
            assert value == ref_sequence(seen, now), now - T0
            if now < change < INF:
                assert ref_sequence(seen, (now + change) / 2) == value


@settings(max_examples=150, deadline=None)
@given(arrivals)
def test_distinct_equals_its_definition_at_and_after_the_latest_event(
    spec: list[tuple[float, float, str, str]],
) -> None:
    t = tracker_of("distinct(properties.category, 10m) >= 2")
    for u, seen, _, latest in replay(spec, t):
        newest = max(e.ts for e in seen)
        for now in (newest, latest, latest + 1, latest + W - 1, latest + W):
            cats = {e.properties["category"] for e in seen if e.ts <= now < e.ts + W}
            value, _ = tracking.distinct((u.tracks or {}).get(t.key), W, now)
            assert value == len(cats)


@settings(max_examples=100, deadline=None)
@given(arrivals)
def test_a_capped_count_reads_the_true_count_up_to_the_cap(
    spec: list[tuple[float, float, str, str]],
) -> None:
    t = tracker_of("count(['A', 'B'], 10m) >= 1")
    for u, seen, _, latest in replay(spec, t, cap=3):
        assert len((u.tracks or {}).get(t.key) or []) <= 3
        newest = max(e.ts for e in seen)
        for now in (newest, latest, latest + W - 1):
            assert tracking.count((u.tracks or {}).get(t.key), W, now)[0] == min(
                ref_count(seen, now), 3
            )


def test_where_reads_the_events_own_fields_and_a_missing_one_is_false() -> None:
    t = tracker_of(
        "count('Page Viewed', 1h, name == 'Pricing' and properties.plan in ['pro']) >= 1"
    )
    u = UserState("u", 0.0)
    pricing = Event("m1", "u", None, "page", "Pricing", T0, "navigation", {"plan": "pro"})
    other = Event("m2", "u", None, "page", "Home", T0, "navigation", {"plan": "pro"})
    no_plan = Event("m3", "u", None, "page", "Pricing", T0, "navigation", {})
    track = Event("m4", "u", None, "track", "Pricing", T0, "other", {"plan": "pro"})
    for e in (pricing, other, no_plan, track):
        t.observe(u, e, Limits())
    assert tracking.count(u.tracks[t.key], 3600.0, T0)[0] == 1


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("count(Pricing, 1h) > 1", "needs a quoted event or page name"),
        ("count('Pricing') > 1", "count() takes 3 argument(s)"),
        ("count('Pricing', 1h, email == 'x') > 1", "unknown event field 'email'"),
        ("count('Pricing', 1h, properties.x * 3 > 1) > 1", "BinOp is not allowed"),
        ("count('Pricing', 1h, context.device.type == 'mobil') > 1", "known values: mobile"),
        ("since('A') > 1", "since() must be compared with a duration"),
        ("since('A') + 1 > 1h", "since() is compared with a duration"),
        ("since('A') == 1h", "since() is compared once with <, <=, > or >="),
        ("sequence('A', 'B')", "sequence() needs within="),
        ("sequence('A', 'B', within=3)", "needs within= a duration"),
        ("distinct(email, 1h) > 1", "needs an event field"),
        ("traits.a.b == 1", "a trait is written traits.NAME"),
        ("traits.company.plan == 'pro'", "nested traits (Segment's company object) are not read"),
        ("properties.plan == 'pro'", "only in an event trigger's 'when'"),
        ("device.type == 'x'", "Attribute is not allowed"),
    ],
)
def test_misused_window_functions_are_rejected_saying_why(source: str, needle: str) -> None:
    from audienceflow.operators.rules import RuleError

    with pytest.raises(RuleError) as exc:
        compile_rule("x", source)
    assert needle in str(exc.value)
