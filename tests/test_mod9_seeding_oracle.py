"""The k-means seeding's tuple paths (``_nearest_of``, ``_nearer``, ``_mean``, and the
``_kmeans`` and ``_plus_plus`` built on them) against the dict code they replaced, kept
here as the oracle: the same centre, distances, centres and inertia, bit for bit, on
values chosen to stress the ``math.dist`` margin (near ties told apart by one unit in
the last place, subnormals, values near ``_FAR``, nan, inf, -0.0, many features,
points with keys a centre lacks)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.models import clustering

pytestmark = pytest.mark.skipif(not clustering._FOLD, reason="the tuple paths run before 3.12")


# -- the oracle: the code before the tuple paths (commit f0f5ac2), as it was -------------


def _old_dist2_until(items: Any, c: dict[str, float], limit: float) -> float:
    get = c.get
    d = 0.0
    for k, v in items:
        d += (v - get(k, 0.0)) ** 2
        if d >= limit:
            break
    return d


def _old_nearest(
    p: dict[str, float], centers: list[dict[str, float]], least: float = math.inf
) -> tuple[int, float]:
    best, best_d = 0, least
    items = p.items()
    for j, c in enumerate(centers):
        d = 0.0
        try:
            for k, v in items:
                d += (v - c[k]) ** 2.0
                if d >= best_d:
                    break
            else:
                if d < best_d:
                    best, best_d = j, d
        except KeyError:
            d = _old_dist2_until(items, c, best_d)
            if d < best_d:
                best, best_d = j, d
    return best, best_d


def _old_mean(points: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(p[k] for p in points) / len(points) for k in points[0]}


def _old_plus_plus(
    points: list[dict[str, float]], k: int, rng: random.Random
) -> list[dict[str, float]]:
    centers = [points[rng.randrange(len(points))]]
    d2 = [math.inf] * len(points)
    while len(centers) < k:
        newest = centers[-1:]
        d2 = [_old_nearest(p, newest, d)[1] for p, d in zip(points, d2, strict=True)]
        r, i = rng.random() * sum(d2), 0
        while i < len(points) - 1 and r >= d2[i]:
            r -= d2[i]
            i += 1
        centers.append(points[i])
    return centers


def _old_kmeans(
    points: list[dict[str, float]], centers: list[dict[str, float]]
) -> tuple[list[dict[str, float]], float]:
    inertia = 0.0
    last: list[int] | None = None
    for _ in range(clustering.SEED_PASSES):
        groups: list[list[dict[str, float]]] = [[] for _ in centers]
        inertia = 0.0
        assigned = []
        for p in points:
            j, d = _old_nearest(p, centers)
            groups[j].append(p)
            assigned.append(j)
            inertia += d
        if assigned == last:
            break
        last = assigned
        centers = [_old_mean(g) if g else c for g, c in zip(groups, centers, strict=True)]
    return centers, inertia


# -- helpers -------------------------------------------------------------------------------


def _bits(x: Any) -> Any:
    """A float as its bits (nan equal to nan, -0.0 apart from 0.0), anything else as it is."""
    return float(x).hex() if isinstance(x, float) else x


def _new_nearest(p: dict[str, float], centers: list[dict[str, float]]) -> tuple[int, float]:
    keys, values = clustering._rows([p])
    return clustering._nearest_of(values[0], [clustering._row(c, keys[0]) for c in centers])


def _new_nearer(p: dict[str, float], c: dict[str, float], least: float) -> float:
    keys, values = clustering._rows([p])
    return clustering._nearer(values[0], clustering._row(c, keys[0]), least)


def _outcome(f: Any, *args: Any) -> Any:
    """What ``f(*args)`` gives, floats as bits, or the type of what it raises (a square
    too large for a double raises ``OverflowError``, in both codes alike)."""
    try:
        got = f(*args)
    except ArithmeticError as e:
        return type(e)
    return tuple(map(_bits, got)) if isinstance(got, tuple) else _bits(got)


def _same_nearest(p: dict[str, float], centers: list[dict[str, float]]) -> None:
    assert _outcome(_new_nearest, p, centers) == _outcome(_old_nearest, p, centers)
    # ``_nearer`` against the least of every other centre: the exact sums it is told by
    leasts = [math.inf, 0.0]
    for c in centers:
        least = _outcome(lambda c: _old_nearest(p, [c])[1], c)
        if isinstance(least, str):
            leasts.append(float.fromhex(least))
    for c in centers:
        for least in leasts:
            got = _outcome(_new_nearer, p, c, least)
            assert got == _outcome(lambda c, least: _old_nearest(p, [c], least)[1], c, least)


def _centres_bits(centers: list[dict[str, float]]) -> list[list[tuple[str, Any]]]:
    return [[(k, _bits(v)) for k, v in c.items()] for c in centers]


# -- strategies ----------------------------------------------------------------------------

NAMES = [f"f{i}" for i in range(6)]
SPECIAL = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1e-310,
    1e-162,  # its square underflows to 0
    1.5e-154,
    1e-150,
    1e149,
    1e150,  # _FAR
    -1e150,
    1.3e154,  # its square near the largest double
    1e300,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
]
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-4.0, max_value=4.0),
    st.sampled_from(SPECIAL),
)


@st.composite
def vectors(draw: Any, names: list[str] = NAMES) -> dict[str, float]:
    keys = draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True))
    return {k: draw(floats) for k in keys}


def _nudged(draw: Any, v: float) -> float:
    steps = draw(st.integers(-3, 3))
    for _ in range(abs(steps)):
        v = math.nextafter(v, math.copysign(math.inf, steps))
    return v


@st.composite
def near_ties(draw: Any) -> tuple[dict[str, float], list[dict[str, float]]]:
    """A point and centres at (nearly) equal distances: one centre's offsets from the
    point permuted, or mirrored, or scaled, each value then moved a few units in the
    last place, so that the distances differ, if at all, below any margin."""
    n = draw(st.integers(1, 8))
    names = NAMES[:n] if n <= len(NAMES) else [f"g{i}" for i in range(n)]
    scale = draw(st.sampled_from([1.0, 1e-160, 1e-154, 1e-150, 1e140, 1e149, 1e-300]))
    p = {k: draw(st.floats(-2.0, 2.0)) * scale for k in names}
    base = [draw(st.floats(-2.0, 2.0)) * scale for _ in names]
    centers = []
    for _ in range(draw(st.integers(2, 4))):
        offsets = draw(st.permutations(base))
        sign = draw(st.sampled_from([1.0, -1.0]))
        centers.append(
            {k: _nudged(draw, p[k] + sign * o) for k, o in zip(names, offsets, strict=True)}
        )
    if draw(st.booleans()):  # the point itself among them
        centers.insert(draw(st.integers(0, len(centers))), dict(p))
    return p, centers


# -- the nearest centre ----------------------------------------------------------------------


@settings(max_examples=1500, deadline=None)
@given(vectors(), st.lists(vectors(), min_size=1, max_size=5))
@example({"a": 1e-162, "b": 1e-162}, [{"a": 0.0, "b": 0.0}, {"a": 1e-162, "b": 1e-162}])
def test_nearest_of_gives_the_dict_sums_answer_on_any_values(
    p: dict[str, float], centers: list[dict[str, float]]
) -> None:
    _same_nearest(p, centers)


@settings(max_examples=1500, deadline=None)
@given(near_ties())
def test_nearest_of_gives_the_dict_sums_answer_on_near_ties(
    case: tuple[dict[str, float], list[dict[str, float]]],
) -> None:
    _same_nearest(*case)


def test_nearest_of_leaves_distances_equal_in_the_sums_to_them_one_unit_apart_in_dist() -> None:
    """``math.dist`` puts the second centre nearer by one unit in the last place, while
    the sums (a left fold of ``pow`` squares) are equal: the first centre is taken, as
    the sums take it. Without the margin the second would be."""
    p = {"a": 0.5016027041240549, "b": 0.05666874199415095, "c": -0.5856348587546525}
    far = {"a": 0.35476941784515675, "b": -0.3571820946534834, "c": -0.3515664173825892}
    near = {"a": 0.3547694178451568, "b": -0.3571820946534834, "c": -0.3515664173825892}
    assert math.dist(tuple(p.values()), tuple(near.values())) < math.dist(
        tuple(p.values()), tuple(far.values())
    )
    assert _old_nearest(p, [far]) == _old_nearest(p, [near])
    assert _new_nearest(p, [far, near]) == _old_nearest(p, [far, near])
    assert _new_nearest(p, [far, near])[0] == 0


def test_nearest_of_leaves_squares_underflowing_in_the_sums_to_them() -> None:
    """Each square underflows to 0 in the sums, so both centres are at 0 and the first
    is taken; ``math.dist`` (scaled) still sees the first one further off, its square a
    subnormal above 0: ``_TINY`` keeps that from deciding."""
    n = 256
    p = {f"f{i}": 0.0 for i in range(n)}
    off = {f"f{i}": 1e-162 for i in range(n)}
    d = math.dist(tuple(p.values()), tuple(off.values()))
    assert d * d > 0.0 and _old_nearest(p, [off]) == (0, 0.0)
    assert _new_nearest(p, [off, dict(p)]) == _old_nearest(p, [off, dict(p)]) == (0, 0.0)
    assert _new_nearer(p, off, 0.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.integers(250, 260), st.integers(0, 2**32 - 1))
def test_nearest_of_on_many_features_gives_the_dict_sums_answer(n: int, seed: int) -> None:
    """Around ``_MANY`` features, centres whose distances differ in the last places."""
    rng = random.Random(seed)
    names = [f"g{i}" for i in range(n)]
    p = {k: rng.uniform(-1.0, 1.0) for k in names}
    base = [rng.uniform(-1.0, 1.0) for _ in names]
    centers = []
    for _ in range(3):
        rng.shuffle(base)
        c = {k: p[k] + o for k, o in zip(names, base, strict=True)}
        k = rng.choice(names)
        c[k] = math.nextafter(c[k], rng.choice([-math.inf, math.inf]))
        centers.append(c)
    _same_nearest(p, centers)


def test_nearest_of_sums_a_point_of_more_features_than_many() -> None:
    """Past ``_MANY`` features the left fold may be further off than the margin: here
    65536 squares just under half a unit of 1.0 each vanish in the sum, the first
    centre's sum is 1.0, below the second's, while ``math.dist`` puts the first
    2**-37 further: only the sums tell the first."""
    small = math.sqrt(2.0**-53) * (1.0 - 2.0**-20)
    n = 2**16 + 1
    p = {f"g{i}": 0.0 for i in range(n)}
    lost = {f"g{i}": (1.0 if i == 0 else small) for i in range(n)}
    one = {f"g{i}": (1.0 + 2.0**-40 if i == 0 else 0.0) for i in range(n)}
    here = tuple(p.values())
    assert math.dist(here, tuple(lost.values())) > math.dist(here, tuple(one.values()))
    assert _old_nearest(p, [lost, one]) == (0, 1.0)
    assert _new_nearest(p, [lost, one]) == (0, 1.0)
    assert _new_nearer(p, lost, _old_nearest(p, [one])[1]) == 1.0


def test_nearer_leaves_a_distance_one_unit_past_the_least_in_dist_to_the_sums() -> None:
    """``math.dist`` puts the centre past the least (its own sum, the same float) by one
    unit: the sum is not below the least, which is kept, as the sums keep it; and a
    least one unit above the sum gives the sum."""
    p = {"a": 0.5016027041240549, "b": 0.05666874199415095, "c": -0.5856348587546525}
    far = {"a": 0.35476941784515675, "b": -0.3571820946534834, "c": -0.3515664173825892}
    near = {"a": 0.3547694178451568, "b": -0.3571820946534834, "c": -0.3515664173825892}
    least = _old_nearest(p, [near])[1]
    assert _new_nearer(p, far, least) == _old_nearest(p, [far], least)[1] == least
    above = math.nextafter(least, math.inf)
    assert _new_nearer(p, far, above) == _old_nearest(p, [far], above)[1] == least


# -- means, seeding and batch passes -----------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(NAMES[:3]), floats, min_size=3), min_size=1))
def test_mean_sums_in_the_same_order(points: list[dict[str, float]]) -> None:
    assert _centres_bits([clustering._mean(points)]) == _centres_bits([_old_mean(points)])


def test_mean_raises_as_before_on_a_point_lacking_a_key() -> None:
    points = [{"a": 1.0, "b": 2.0}, {"a": 3.0}]
    with pytest.raises(KeyError, match="'b'"):
        _old_mean(points)
    with pytest.raises(KeyError, match="'b'"):
        clustering._mean(points)


@st.composite
def point_sets(draw: Any) -> list[dict[str, float]]:
    """Warm-up vectors as ``_scaled`` gives them (the same keys, in orders that may
    differ), some repeated, some mirrored: equal and nearly equal distances."""
    n = draw(st.integers(1, 5))
    names = NAMES[:n]
    odd = [0.0, -0.0, 1e-162, 1e-300, 1e149, 1e155, math.inf, math.nan]
    value = st.one_of(st.floats(-3.0, 3.0), st.sampled_from(odd))
    pool = [{k: draw(value) for k in names} for _ in range(draw(st.integers(1, 6)))]
    points = []
    for _ in range(draw(st.integers(1, 16))):
        q = dict(draw(st.sampled_from(pool)))
        if draw(st.booleans()):
            q = {k: -v for k, v in q.items()}
        order = draw(st.permutations(list(q)))
        points.append({k: q[k] for k in order})
    return points


@settings(max_examples=300, deadline=None)
@given(point_sets(), st.integers(1, 4), st.integers(0, 2**16))
def test_seeding_gives_the_dict_codes_centres_and_inertia(
    points: list[dict[str, float]], k: int, seed: int
) -> None:
    def seeded(plus_plus: Any, kmeans: Any) -> Any:
        try:
            first = plus_plus(points, k, random.Random(seed))
            centers, inertia = kmeans(points, first)
        except ArithmeticError as e:  # a square too large for a double
            return type(e)
        return [id(c) for c in first], _centres_bits(centers), _bits(inertia)

    got = seeded(clustering._plus_plus, clustering._kmeans)
    assert got == seeded(_old_plus_plus, _old_kmeans)
