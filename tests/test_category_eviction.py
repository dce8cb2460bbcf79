"""The category that gives way at ``max_categories_per_user`` is the one it always was.

``features._evict`` (a heap kept for one event's categories) and ``merge._weakest``
replaced decaying and sorting every category for each new one. They must pick exactly
what ``min(sorted(aff), key=affinity decayed to the event's time)`` picked: the lowest
decayed affinity, the first name of equal ones, decayed to the event's time (not to the
user's latest, nor to the entry's own). Affinities here are drawn so that ties are
common: scores that halve into each other over whole half-lives, and times before, at
and after the event's.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators import features, merge
from audienceflow.operators.features import FeatureSpec, decayed
from audienceflow.operators.records import Event
from audienceflow.operators.state import Limits, UserState

pytestmark = pytest.mark.timeout(120)

T0 = 1_772_438_400.0
# Insertion order is drawn; names whose sort differs from any natural order.
NAMES = ("b", "a", "a10", "a2", "B", "ab", "c", "Z", "é", "a1", "ba", "_")

half_lives = st.sampled_from([1.0, 3600.0, 7 * 86400.0])
scores = st.one_of(
    st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0, 5.0]),
    st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False),
)
# Whole and half half-lives before and after the event's time, and just off it.
offsets = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 1e-6])
entries = st.lists(
    st.tuples(st.sampled_from(NAMES), scores, offsets), unique_by=lambda e: e[0], max_size=10
)


def _map(drawn: list[tuple[str, float, float]], hl: float) -> dict[str, tuple[float, float]]:
    return {name: (score, T0 + off * hl) for name, score, off in drawn}


def _old_pick(aff: dict[str, tuple[float, float]], ts: float, hl: float) -> str:
    return min(sorted(aff), key=lambda c: decayed(aff[c][0], aff[c][1], ts, hl))


def _old_category(
    aff: dict[str, tuple[float, float]], cat: str, weight: float, ts: float, hl: float, cap: int
) -> bool:
    """``features._category``'s affinity as it was (before the heap)."""
    old = aff.get(cat)
    if old is None:
        evicted = len(aff) >= cap
        if evicted:
            del aff[_old_pick(aff, ts, hl)]
        aff[cat] = (weight, ts)
        return evicted
    since = old[1]
    if ts <= since:
        aff[cat] = (old[0] + weight, since)
    else:
        aff[cat] = (old[0] * math.exp2(-(ts - since) / hl) + weight, ts)
    return False


@settings(max_examples=400)
@given(entries.filter(bool), half_lives, offsets)
def test_the_evicted_category_is_the_lowest_decayed_then_the_first_name(
    drawn: list[tuple[str, float, float]], hl: float, at: float
) -> None:
    aff = _map(drawn, hl)
    ts = T0 + at * hl
    want = _old_pick(aff, ts, hl)
    got = dict(aff)
    features._evict(got, ts, hl, [])
    assert set(aff) - set(got) == {want}
    assert list(got.items()) == [(c, v) for c, v in aff.items() if c != want]


orders = st.lists(
    st.tuples(offsets, st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300)
@given(
    entries,
    half_lives,
    orders,
    st.sampled_from([1.0, 0.5, 5.0, 2.0, -1.0]),  # any sign: the heap must not rely on it
    st.integers(1, 6),
    st.booleans(),
)
def test_events_with_many_categories_evict_as_one_at_a_time_did(
    drawn: list[tuple[str, float, float]],
    hl: float,
    events: list[tuple[float, list[str]]],
    weight: float,
    cap: int,
    one_each: bool,
) -> None:
    # An order's products[] share one heap; an event with ``properties.category``
    # (``one_each``) evicts with its own.
    spec = FeatureSpec(
        affinity_half_life=hl,
        affinity_weights={"Order Completed": weight},
        limits=Limits(categories=cap),
    )
    user = UserState("u", first_seen=T0)
    user.affinity = _map(drawn, hl)
    want = dict(user.affinity)
    for i, (at, cats) in enumerate(events):
        ts = T0 + at * hl
        hits: dict[str, int] = {}
        evicted = [_old_category(want, c, weight, ts, hl, cap) for c in cats]
        if one_each:
            focus = [
                features.update(user, _event(i, ts, {"category": c}), spec, hits) for c in cats
            ]
            assert focus == [None if e else c for c, e in zip(cats, evicted, strict=True)]
        else:
            products = [{"product_id": f"p{k}", "category": c} for k, c in enumerate(cats)]
            focus_one = features.update(user, _event(i, ts, {"products": products}), spec, hits)
            assert (focus_one is None) == (any(evicted) or len(cats) > 1)
        assert hits.get("categories", 0) == sum(evicted)
        # Order, scores and times bit for bit (repr tells -0.0 and every last bit apart).
        assert repr(list(user.affinity.items())) == repr(list(want.items()))


def _event(i: int, ts: float, props: dict[str, object]) -> Event:
    return Event(f"m{i}", "u", None, "track", "Order Completed", ts, "other", props)


@settings(max_examples=300)
@given(entries.filter(bool), half_lives, offsets, st.integers(1, 10))
def test_a_merge_drops_the_lowest_decayed_categories_first_names_first(
    drawn: list[tuple[str, float, float]], hl: float, at: float, n: int
) -> None:
    aff = _map(drawn, hl)
    now = T0 + at * hl
    key = lambda c: decayed(aff[c][0], aff[c][1], now, hl)  # noqa: E731
    assert merge._weakest(aff, n, now, hl) == sorted(sorted(aff), key=key)[:n]


@pytest.mark.parametrize(
    ("aff", "gone"),
    [
        # Equal at the event's time (2.0 a half-life ago is 1.0): the first name goes.
        ({"b": (1.0, T0), "a": (2.0, T0 - 3600.0), "c": (3.0, T0)}, "a"),
        # A time after the event's is not decayed: 1.5 there stays above 1.0 here.
        ({"x": (1.5, T0 + 3600.0), "y": (2.0, T0 - 3600.0)}, "y"),
    ],
)
def test_the_evicted_category_is_worked_out_at_the_events_time(
    aff: dict[str, tuple[float, float]], gone: str
) -> None:
    left = dict(aff)
    features._evict(left, T0, 3600.0, [])
    assert set(aff) - set(left) == {gone}
