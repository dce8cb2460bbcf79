"""The models' fast paths give River's results bit for bit, and leave River's state as River
would: the same keys in the same order, the same floats, the same random generator state.

Each fast path is run side by side with River's own method on random inputs, including
features a centre or a scaler has never seen (which must take River's path, since reading
them inserts a value and, for a fresh KMeans centre, draws from its random generator).
"""

from __future__ import annotations

import collections
import copy
import functools
from typing import Any

import pytest
from helpers import pure_only
from hypothesis import given, settings
from hypothesis import strategies as st
from river import cluster

from audienceflow.models.clustering import (
    BehaviorClusters,
    _kmeans_learn_predict,
    _kmeans_predict,
)

NAMES = [f"f{i}" for i in range(7)]

# Values of very different scales and signs, exact zeros of both signs, ties.
values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 3.0]),
)


@st.composite
def vectors(draw: Any, names: list[str] = NAMES) -> dict[str, float]:
    """A feature dict over a random subset of ``names``, in a random order."""
    keys = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    return {k: draw(values) for k in keys}


def bits(d: Any) -> list[tuple[Any, str]]:
    """A dict's keys in order with the exact bits of each value (``-0.0`` differs from 0.0)."""
    return [(k, float(v).hex()) for k, v in d.items()]


def kmeans_state(model: Any) -> tuple[Any, ...]:
    return (
        [(c, bits(center)) for c, center in model.centers.items()],
        model._rng.getstate(),
    )


# --- KMeans: predict_one and learn_predict_one --------------------------------------------


@st.composite
def kmeans_runs(draw: Any) -> tuple[Any, list[tuple[bool, dict[str, float]]]]:
    """A KMeans (fresh random centres, centres seeded as ``_seed_centers`` does, with some
    keys only, or centres at nearly equal distances) and a sequence of (learn?, vector)
    calls."""
    k = draw(st.integers(1, 5))
    model = cluster.KMeans(
        n_clusters=k,
        halflife=draw(st.sampled_from([0.1, 0.5, 1.0])),
        p=draw(st.sampled_from([2, 2, 1, 3])),
        seed=draw(st.integers(0, 1000)),
    )
    layout = draw(st.sampled_from(["fresh", "seeded", "near ties", "near ties"]))
    if layout == "seeded":
        for c in model.centers:
            model.centers[c] = collections.defaultdict(float, draw(vectors()))
    elif layout == "near ties":
        model.p = 2
        model.centers, calls = draw(near_ties(max(k, 2)))
        return model, calls
    calls = draw(st.lists(st.tuples(st.booleans(), vectors()), min_size=1, max_size=25))
    return model, calls


@st.composite
def near_ties(draw: Any, k: int) -> tuple[dict[int, Any], list[tuple[bool, dict[str, float]]]]:
    """Centres holding one list of values in other orders (a few a unit in the last place
    apart), and vectors at their middle or holding those values too: distances River's
    sums make equal, or a few units apart one way or the other, where only the exact sums
    tell the nearest centre (the one of least sum, the first of equal ones)."""
    import math

    keys = draw(st.lists(st.sampled_from(NAMES), min_size=3, max_size=len(NAMES), unique=True))
    # Values of full mantissas (whose squares and sums round), which hypothesis seldom draws.
    rng = draw(st.randoms(use_true_random=False))
    base = [draw(values) if rng.random() < 0.2 else rng.uniform(-4.0, 4.0) for _ in keys]

    def nudged(vals: list[float]) -> list[float]:
        i = draw(st.integers(0, len(vals) - 1))
        steps = draw(st.sampled_from([0, 0, 1, -1, 2]))
        v = vals[i]
        for _ in range(abs(steps)):
            v = math.nextafter(v, math.inf if steps > 0 else -math.inf)
        return [*vals[:i], v, *vals[i + 1 :]]

    centers = {
        c: collections.defaultdict(
            float, zip(keys, nudged(draw(st.permutations(base))), strict=True)
        )
        for c in range(k)
    }
    middle = st.builds(dict.fromkeys, st.just(keys), st.sampled_from([0.0, 1.0]))
    same = st.builds(lambda vals: dict(zip(keys, vals, strict=True)), st.permutations(base))
    calls = draw(
        st.lists(st.tuples(st.booleans(), middle | middle | same), min_size=1, max_size=10)
    )
    return centers, calls


@settings(max_examples=300, deadline=None)
@given(kmeans_runs())
def test_fast_kmeans_equals_rivers_predict_and_learn_bit_for_bit(
    run: tuple[Any, list[tuple[bool, dict[str, float]]]],
) -> None:
    fast, calls = run
    river = copy.deepcopy(fast)
    orders: dict[int, Any] = {}
    for learn, x in calls:
        if learn:
            got, want = _kmeans_learn_predict(fast, dict(x), orders), river.learn_predict_one(x)
        else:
            got, want = _kmeans_predict(fast, dict(x), orders), river.predict_one(x)
        assert got == want
        assert kmeans_state(fast) == kmeans_state(river)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 5), st.sampled_from([0.0, 1.0]))
def test_fast_kmeans_leaves_near_ties_to_rivers_sums_bit_for_bit(
    seed: int, k: int, middle: float
) -> None:
    """Centres holding one list of full-mantissa values in other orders, one value moved a
    unit in the last place, seen from their middle: distances a few units apart, which
    River's sums order one way and exact arithmetic often the other. The fast path picks
    River's centre, and learns as River does (about 1 in 25 of these is decided wrongly
    by distances compared without a margin)."""
    import math
    import random

    rng = random.Random(seed)  # full mantissas, which hypothesis seldom draws
    for _ in range(40):
        keys = rng.sample(NAMES, rng.randint(3, len(NAMES)))
        base = [rng.uniform(-4.0, 4.0) for _ in keys]
        model, river = cluster.KMeans(n_clusters=k, seed=1), cluster.KMeans(n_clusters=k, seed=1)
        for c in model.centers:
            vals = rng.sample(base, len(base))
            i = rng.randrange(len(vals))
            vals[i] = math.nextafter(vals[i], rng.choice([-math.inf, math.inf]))
            model.centers[c] = collections.defaultdict(float, zip(keys, vals, strict=True))
            river.centers[c] = collections.defaultdict(float, model.centers[c])
        x = dict.fromkeys(keys, middle)
        assert _kmeans_predict(model, dict(x), {}) == river.predict_one(x)
        assert _kmeans_learn_predict(model, dict(x), {}) == river.learn_predict_one(x)
        assert kmeans_state(model) == kmeans_state(river)


def test_the_nearest_centre_is_told_from_distances_made_in_c_only_when_they_are_apart() -> None:
    """``_decided`` picks River's centre when the distances are far apart, and leaves a
    tie, a near tie and a distance River's square would overflow to River's sums."""
    from audienceflow.models.clustering import _decided

    def model(*centers: dict[str, float]) -> Any:
        m = cluster.KMeans(n_clusters=len(centers), seed=1)
        for c, center in enumerate(centers):
            m.centers[c] = collections.defaultdict(float, center)
        return m

    apart = model({"a": 0.0, "b": 0.0}, {"a": 3.0, "b": 1.0}, {"a": -2.0, "b": 5.0})
    for x in ({"a": 2.5, "b": 1.5}, {"b": 4.0, "a": -1.0}, {"a": 0.1, "b": -0.2}):
        assert _decided(apart, dict(x), {}) == copy.deepcopy(apart).predict_one(x)
    fewer = model({"a": 0.0, "b": 0.0, "c": 1.0}, {"a": 3.0, "b": 1.0, "c": 1.0})
    assert _decided(fewer, {"a": 2.9, "b": 1.0}, {}) == 1  # "c" read as River's 0
    tie = model({"a": 1.0, "b": 0.0}, {"a": -1.0, "b": 0.0})
    near = model({"a": 1.0, "b": 0.0}, {"a": -1.0 - 2.0**-52, "b": 0.0})
    huge = model({"a": 1e160, "b": 0.0}, {"a": -1.0, "b": 0.0})
    for undecided in (tie, near, huge):
        assert _decided(undecided, {"a": 0.0, "b": 0.0}, {}) is None
    assert _decided(apart, {"a": 0.0, "z": 1.0}, {}) is None  # a key no centre has
    assert all(len(c) == 2 for c in apart.centers.values())  # and nothing was inserted


def _counted_predictions(model: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, float]]:
    """The inputs of every call of River's own ``predict_one`` on ``model`` from now on."""
    calls: list[dict[str, float]] = []
    original = model.predict_one

    def counting(x: dict[str, float]) -> int:
        calls.append(x)
        return int(original(x))

    monkeypatch.setattr(model, "predict_one", counting)
    return calls


def test_fast_kmeans_takes_rivers_path_only_for_a_feature_a_centre_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = cluster.KMeans(n_clusters=3, seed=5)
    calls = _counted_predictions(model, monkeypatch)
    orders: dict[int, Any] = {}
    _kmeans_predict(model, {"a": 1.0, "b": 2.0}, orders)  # fresh centres lack both: River's
    assert len(calls) == 1 and all(len(c) == 2 for c in model.centers.values())
    state = model._rng.getstate()
    _kmeans_predict(model, {"b": 0.5}, orders)  # every centre has it
    _kmeans_learn_predict(model, {"a": 0.5, "b": 0.1}, orders)
    assert len(calls) == 1 and model._rng.getstate() == state
    _kmeans_predict(model, {"a": 1.0, "c": 2.0}, orders)  # "c" is new: River's again
    assert len(calls) == 2 and model._rng.getstate() != state


def test_fast_kmeans_leaves_the_sum_to_river_where_sum_is_compensated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From Python 3.12 ``sum()`` of floats is compensated, so the left fold would no
    longer be River's bits: there every prediction is River's own (tested here on 3.11
    by pretending)."""
    from audienceflow.models import clustering

    model = cluster.KMeans(n_clusters=3, seed=5)
    _kmeans_predict(model, {"a": 1.0, "b": 2.0}, {})  # the centres gain both keys
    calls = _counted_predictions(model, monkeypatch)
    orders: dict[int, Any] = {}
    _kmeans_predict(model, {"a": 0.5, "b": 0.1}, orders)
    assert calls == [] and orders  # the fold, on 3.11
    monkeypatch.setattr(clustering, "_FOLD", False)
    orders = {}
    _kmeans_predict(model, {"a": 0.5, "b": 0.1}, orders)
    assert len(calls) == 1 and orders == {}


def test_the_key_order_cache_follows_a_centre_that_gains_a_key() -> None:
    model = cluster.KMeans(n_clusters=2, seed=1)
    for c in model.centers:
        model.centers[c] = collections.defaultdict(float, {"a": 1.0 + c, "b": -1.0})
    river = copy.deepcopy(model)
    orders: dict[int, Any] = {}
    for x in ({"a": 1.0}, {"z": 3.0}, {"a": 2.0, "z": -3.0}, {"m": 1.0, "a": 0.0}, {"b": 9.0}):
        assert _kmeans_learn_predict(model, dict(x), orders) == river.learn_predict_one(x)
        assert kmeans_state(model) == kmeans_state(river)
        for c, (center, count, order, _) in orders.items():
            assert center is model.centers[c] and count <= len(center)
            if count == len(center):
                assert order == tuple({*center.keys()})


# --- BehaviorClusters: scaling with cached statistics, as a whole --------------------------


class RiverClusters(BehaviorClusters):
    """The clusterer as it was before the fast paths: River's methods only."""

    def assign(self, x: dict[str, float]) -> int:
        self.scaler.learn_one(x)
        self.learned += 1
        if not self.ready:
            self.buffer.append(x)
            if len(self.buffer) < self.warmup:
                return -1
            self._seed_centers()
        return int(self.model.learn_predict_one(self._scaled(x)))

    def nearest(self, x: dict[str, float]) -> int:
        if not self.ready:
            return -1
        return int(self.model.predict_one(self._scaled(x)))

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        z: dict[str, float] = self.scaler.transform_one(x)
        for key in self.scaler.means:
            z.setdefault(key, 0.0)
        for key, w in self.weights.items():
            if key in z:
                z[key] *= w
        return z


def clusters_state(bc: BehaviorClusters) -> tuple[Any, ...]:
    s = bc.scaler
    return (
        bits(s.means),
        bits(s.vars),
        list(s.counts.items()),
        kmeans_state(bc.model),
        bc.learned,
        bc.ready,
    )


@st.composite
def cluster_runs(draw: Any) -> tuple[dict[str, Any], list[tuple[str, dict[str, float]]]]:
    k = draw(st.integers(1, 4))
    params = {
        "k": k,
        "seed": draw(st.integers(0, 100)),
        "halflife": draw(st.sampled_from([0.1, 0.5])),
        "warmup": draw(st.integers(k, 6)),
        "weights": draw(st.dictionaries(st.sampled_from(NAMES), st.sampled_from([0.5, 2.0, 3.0]))),
    }
    # The first names are learned often; "f6" shows up rarely, so nearest() meets it unseen.
    ops = st.tuples(st.sampled_from(["assign", "nearest", "frozen"]), vectors())
    return params, draw(st.lists(ops, min_size=1, max_size=40))


@pure_only  # its reference subclasses BehaviorClusters, a native class compiled
@settings(max_examples=200, deadline=None)
@given(cluster_runs())
def test_fast_clusters_equal_rivers_pipeline_bit_for_bit(
    run: tuple[dict[str, Any], list[tuple[str, dict[str, float]]]],
) -> None:
    params, ops = run
    fast, river = BehaviorClusters(**params), RiverClusters(**params)
    frozen: tuple[BehaviorClusters, BehaviorClusters] | None = None
    for op, x in ops:
        if op == "assign":
            assert fast.assign(dict(x)) == river.assign(dict(x))
            frozen = None
        elif op == "nearest":
            assert fast.nearest(dict(x)) == river.nearest(dict(x))
            assert_planned_scaling_is_rivers(fast, river, x)
        else:  # a per-epoch version: a deep copy, read many times, never learning
            if frozen is None:
                frozen = (copy.deepcopy(fast), copy.deepcopy(river))
            assert frozen[0].nearest(dict(x)) == frozen[1].nearest(dict(x))
            assert_planned_scaling_is_rivers(*frozen, x)
            assert clusters_state(frozen[0]) == clusters_state(frozen[1])
        assert clusters_state(fast) == clusters_state(river)


def assert_planned_scaling_is_rivers(
    fast: BehaviorClusters, river: BehaviorClusters, x: dict[str, float]
) -> None:
    """The plan ``nearest`` kept holds the centres as they are now, and the vector it
    scaled, when it scaled it, is River's ``transform_one`` completed and weighted, in the
    plan's order, bit for bit."""
    from audienceflow.models.clustering import _plan_scaled

    plan = fast._plan
    if plan is None or not plan.values:
        return
    names = [f[0] for f in plan.features]
    centers = fast.model.centers
    assert plan.ids == tuple(centers)
    for c, values in zip(plan.ids, plan.values, strict=True):
        assert len(centers[c]) == len(names)
        assert [v.hex() for v in values] == [centers[c][f].hex() for f in names]
    z = _plan_scaled(plan, dict(x))
    if z is None:
        return
    want = river._scaled(dict(x))  # every feature of x known: River inserts nothing
    assert [v.hex() for v in z] == [float(want[f]).hex() for f in names]
    assert len(want) == len(z)


def test_scaled_reads_the_scaler_again_after_it_learns() -> None:
    bc = BehaviorClusters(k=1, warmup=1)
    bc.assign({"a": 1.0})
    bc.assign({"a": 3.0})
    before = bc._scaled({"a": 3.0})["a"]
    assert bc._scaled({"a": 3.0})["a"] == before  # cached
    bc.assign({"a": 10.0})
    assert bc._scaled({"a": 3.0})["a"] != before  # the new mean and variance


def test_caches_are_not_pickled_or_copied() -> None:
    import pickle

    used, unused = BehaviorClusters(k=2, warmup=2), BehaviorClusters(k=2, warmup=2)
    for bc in (used, unused):
        for i in range(6):
            bc.assign({"a": float(i), "b": float(i % 2)})
    used.nearest({"a": 1.0, "b": 0.0})
    used.nearest({"a": 2.0, "b": 1.0})
    assert used._orders and used._plan is not None and used._plan.values
    assert pickle.dumps(used) == pickle.dumps(unused)  # snapshots as before the caches
    for restored in (pickle.loads(pickle.dumps(used)), copy.deepcopy(used)):
        assert not restored._orders and not restored._stats and restored._plan is None
        assert restored.nearest({"a": 4.0, "b": 1.0}) == used.nearest({"a": 4.0, "b": 1.0})


# --- intent: the one-hot names ---------------------------------------------------------------


def test_intent_vector_names_its_one_hots_by_value_and_keeps_few_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audienceflow.models import vectors

    monkeypatch.setattr(vectors, "_STEP_NAMES", {})
    monkeypatch.setattr(vectors, "_NAMES_MAX", 2)
    hist = (0.0, 0.0, 0.0, 0.0, 0.0)
    for step in ("Cart Viewed", "page", "track", "screen", "track"):
        for device, channel, want in (
            ("tablet", "email", ("device=tablet", "channel=email")),
            ("fridge", "ads", ("device=other", "channel=other")),
            (None, None, ("device=other", "channel=other")),
        ):
            raw = (3, 1, 0, 0, 0, 10.0, step, device, channel)
            keys = list(vectors.intent_vector(raw, hist, {"email": None}))
            assert keys[12:] == [f"step={step}", *want]
    assert list(vectors._STEP_NAMES) == ["Cart Viewed", "page"]  # bounded: no more kept


# --- intent: the logistic score ----------------------------------------------------------------


@st.composite
def intent_runs(draw: Any) -> list[tuple[str, dict[str, float], bool]]:
    """Learn, predict and freeze calls; "sessions_before" and some one-hots are rarely or
    never learned."""
    from audienceflow.models.intent import NUMERIC

    names = [*NUMERIC[:7], "step=a", "step=b", "device=x"]
    ops = st.tuples(
        st.sampled_from(["learn", "learn", "predict", "frozen"]), vectors(names), st.booleans()
    )
    return draw(st.lists(ops, min_size=1, max_size=40))


@settings(max_examples=200, deadline=None)
@given(intent_runs())
def test_fast_intent_score_equals_rivers_pipeline_bit_for_bit(
    ops: list[tuple[str, dict[str, float], bool]],
) -> None:
    from audienceflow.models.intent import IntentModel

    fast = IntentModel(seed=1, learning_rate=0.05)
    river = copy.deepcopy(fast)  # learns the same; scores only through River's pipeline
    frozen: tuple[IntentModel, IntentModel] | None = None
    for op, x, y in ops:
        if op == "learn":
            fast.learn(dict(x), y, 0.5)
            river.learn(dict(x), y, 0.5)
            frozen = None
            continue
        pair = (fast, river)
        if op == "frozen":  # a per-epoch version, read many times
            frozen = frozen or (copy.deepcopy(fast), copy.deepcopy(river))
            pair = frozen
        got = pair[0].predict(dict(x))
        want = pair[1].model.predict_proba_one(dict(x))[True] if pair[1].learned else 0.5
        assert got.hex() == float(want).hex()
        # Reading a feature inserts it in the scaler, as River's transform does.
        assert bits(pair[0]._scaler.vars) == bits(pair[1]._scaler.vars)
        assert bits(pair[0]._scaler.means) == bits(pair[1]._scaler.means)


# --- intent: the score from the raw tuple, with kept terms -----------------------------------

# Small pools, so kept terms are met again (and 0.0 after -0.0, which a kept term equates).
counts = st.sampled_from([0, 1, 40])
raws = st.tuples(
    counts,
    counts,
    counts,
    counts,
    counts,
    st.sampled_from([0.0, -0.0, 30.0]),
    st.sampled_from(["page", "Product Added"]),
    st.sampled_from(["mobile", None]),
    st.sampled_from(["email", "ads", "new", None]),
)
hists = st.tuples(
    st.sampled_from([0.0, 2.0]),
    st.sampled_from([0.0, 1.0]),
    st.sampled_from([0.0, 1.0]),
    st.sampled_from([0.0, -0.0]),
    st.sampled_from([0.0, -0.0, 6.5]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(raws, hists, st.booleans()), min_size=3, max_size=30),
    st.lists(
        st.tuples(
            st.sampled_from(["learn", *["predict"] * 5, "frozen", "frozen", "channel"]),
            raws,
            hists,
            st.booleans(),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_intent_score_from_the_raw_tuple_equals_rivers_pipeline_bit_for_bit(
    lessons: list[tuple[tuple[Any, ...], tuple[float, ...], bool]],
    ops: list[tuple[str, tuple[Any, ...], tuple[float, ...], bool]],
) -> None:
    """``predict_raw`` with its kept count, one-hot and history terms against River's
    pipeline on the vector, after some lessons, while the model learns more and its
    channel vocabulary grows, and on frozen copies read many times; the scaler's state
    stays River's."""
    from audienceflow.models.intent import IntentModel
    from audienceflow.models.vectors import intent_vector

    fast = IntentModel(seed=1, learning_rate=0.05, max_channels=2)
    river = copy.deepcopy(fast)

    def learn(raw: tuple[Any, ...], hist: tuple[float, ...], y: bool) -> None:
        for m in (fast, river):
            m.see_channel(raw[-1])
            m.learn(intent_vector(raw, hist, m.channels), y, 0.5)

    for raw, hist, y in lessons:
        learn(raw, hist, y)
    frozen: tuple[IntentModel, IntentModel] | None = None
    for op, raw, hist, y in ops:
        if op == "learn":
            learn(raw, hist, y)
            frozen = None
            continue
        if op == "channel":  # a channel joins the vocabulary before its session is learned
            fast.see_channel(raw[-1])
            river.see_channel(raw[-1])
        pair = (fast, river)
        if op == "frozen":
            frozen = frozen or (copy.deepcopy(fast), copy.deepcopy(river))
            pair = frozen
        got = pair[0].predict_raw(raw, hist)
        x = intent_vector(raw, hist, pair[1].channels)
        want = pair[1].model.predict_proba_one(x)[True] if pair[1].learned else 0.5
        assert got.hex() == float(want).hex()
        assert bits(pair[0]._scaler.vars) == bits(pair[1]._scaler.vars)
        assert bits(pair[0]._scaler.means) == bits(pair[1]._scaler.means)


# --- clustering: the k-means++ seeding ---------------------------------------------------------


def _reference_dist2(a: dict[str, float], b: dict[str, float]) -> float:
    return sum((v - b.get(k, 0.0)) ** 2 for k, v in a.items())


def _reference_nearest(p: dict[str, float], centers: list[dict[str, float]]) -> tuple[int, float]:
    best, best_d = 0, float("inf")
    for j, c in enumerate(centers):
        d = _reference_dist2(p, c)
        if d < best_d:
            best, best_d = j, d
    return best, best_d


def _reference_kmeans(
    points: list[dict[str, float]], centers: list[dict[str, float]]
) -> tuple[list[dict[str, float]], float]:
    """``_kmeans`` as it was: every pass run, every distance summed in full."""
    from audienceflow.models.clustering import SEED_PASSES, _mean

    inertia = 0.0
    for _ in range(SEED_PASSES):
        groups: list[list[dict[str, float]]] = [[] for _ in centers]
        inertia = 0.0
        for p in points:
            j, d = _reference_nearest(p, centers)
            groups[j].append(p)
            inertia += d
        centers = [_mean(g) if g else c for g, c in zip(groups, centers, strict=True)]
    return centers, inertia


@st.composite
def seedings(draw: Any) -> tuple[list[dict[str, float]], int, int]:
    """Points over one key set, each in its own key order (as scaled user vectors are:
    a feature a vector lacks is appended), with ties and repeated points."""
    keys = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    pool = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-300, 3.0])
    points = []
    for _ in range(draw(st.integers(1, 25))):
        order = draw(st.permutations(keys))
        points.append({k: draw(st.one_of(pool, values)) for k in order})
    return points, draw(st.integers(1, 5)), draw(st.integers(0, 1000))


@settings(max_examples=300, deadline=None)
@given(seedings())
def test_seeding_equals_full_passes_and_full_sums_bit_for_bit(
    run: tuple[list[dict[str, float]], int, int],
) -> None:
    """k-means++ starts and batch passes, given up early (a distance past the least so
    far, passes once the assignment repeats), against the plain computation: the same
    centres (keys in order, exact bits), the same inertia, the same random draws."""
    import random

    from audienceflow.models import clustering

    points, k, seed = run
    fast_rng, ref_rng = random.Random(seed), random.Random(seed)
    for _ in range(3):
        starts = clustering._plus_plus(points, k, fast_rng)
        got = clustering._kmeans(points, starts)
        want = _reference_kmeans(points, starts)
        ref = [points[ref_rng.randrange(len(points))]]
        while len(ref) < k:  # ``_plus_plus`` with full distances
            d2 = [_reference_nearest(p, ref)[1] for p in points]
            r, i = ref_rng.random() * sum(d2), 0
            while i < len(points) - 1 and r >= d2[i]:
                r -= d2[i]
                i += 1
            ref.append(points[i])
        assert [bits(c) for c in starts] == [bits(c) for c in ref]
        assert [bits(c) for c in got[0]] == [bits(c) for c in want[0]]
        assert float(got[1]).hex() == float(want[1]).hex()
        assert fast_rng.getstate() == ref_rng.getstate()
        for p in points:
            assert clustering._nearest(p, got[0]) == _reference_nearest(p, got[0])


# --- the user vector: session counts in one pass -------------------------------------------------


def _reference_user_vector(
    user: Any, now: float, categories: tuple[str, ...], half_life: float
) -> dict[str, float]:
    """``vectors.user_vector`` as it was: ``features.window`` twice, ``features.affinity``
    per category."""
    import math

    from audienceflow.operators import features
    from audienceflow.operators.state import (
        H_CART_ADDS,
        H_CONVERTED,
        H_ENGAGED,
        H_EVENTS,
        H_START,
    )

    hist = user.history
    n = len(hist) or 1
    events = engaged = adds = orders = 0.0
    for h in hist:
        events += h[H_EVENTS]
        engaged += h[H_ENGAGED]
        adds += h[H_CART_ADDS]
        orders += 1 if h[H_CONVERTED] else 0  # converted sessions (conversion_events)
    x = {
        "sessions_7d": math.log1p(features.window(user, "sessions", 7 * 86400.0, now)[0]),
        "sessions_30d": math.log1p(features.window(user, "sessions", 30 * 86400.0, now)[0]),
        "events_per_session": math.log1p(events / n),
        "engaged_minutes": math.log1p(engaged / n / 60.0),
        "cart_adds": adds / n,
        "conversion_rate": orders / n,
        "video_completions": sum((user.video_completions or {}).values())
        / max(user.total_sessions, 1),
        "open_cart": 1.0 if user.cart else 0.0,
    }
    if len(hist) >= 2:
        gap = (hist[-1][H_START] - hist[-2][H_START]) / 3600.0
        x["recency_hours"] = math.log1p(max(gap, 0.0))
    total = 0.0
    for cat in user.affinity:
        total += features.affinity(user, cat, now, half_life)
    for cat in categories:
        share = features.affinity(user, cat, now, half_life) / total if total > 0 else 0.0
        x["affinity_" + cat] = share
    return x


DAY = 86400.0
# Times on and next to the 7- and 30-day cut-offs of ``now`` (a start exactly on a cut-off
# is out of the window, one at ``now`` in), and after ``now``.
starts = st.sampled_from(
    [0.0, -1.0, 1.0, -7 * DAY, -7 * DAY + 1e-6, -30 * DAY, -30 * DAY + 0.5, -40 * DAY, -3 * DAY]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(starts, st.integers(0, 50), st.floats(0, 1e4), st.booleans()), max_size=6),
    st.one_of(st.none(), starts),
    st.dictionaries(
        st.sampled_from(["deals", "tv", "books"]),
        st.tuples(st.floats(0, 100), st.sampled_from([-DAY, 0.0, 5.0])),
        max_size=3,
    ),
    st.sampled_from([1.7e9, 1.7e9 + 0.25, 3 * DAY, 0.0]),
    st.sampled_from([("deals",), ("deals", "tv"), ()]),
)
def test_user_vector_counts_sessions_as_the_windows_do_bit_for_bit(
    history: list[tuple[float, int, float, bool]],
    open_start: float | None,
    affinity: dict[str, tuple[float, float]],
    now: float,
    categories: tuple[str, ...],
) -> None:
    from audienceflow.models.vectors import user_vector
    from audienceflow.operators.state import OpenSession, UserState

    user = UserState("u", 0.0)
    for start, events, engaged, order in history:
        converted = order != (events % 2 == 1)  # an order is no conversion, nor its lack
        user.history.append(
            (now + start, events, 1, engaged, int(order), 0.0, events % 3, converted)
        )
    user.total_sessions = len(history) + (open_start is not None)
    if open_start is not None:
        user.session = OpenSession("u:1", now + open_start, now + open_start)
    user.affinity = {c: (score, now + since) for c, (score, since) in affinity.items()}
    user.video_completions = {"a": len(history)}
    got = user_vector(user, now, categories, 7 * DAY)
    want = _reference_user_vector(user, now, categories, 7 * DAY)
    assert bits(got) == bits(want)


# --- learning: the scaler learns and scales in one pass ------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(vectors(), min_size=1, max_size=30))
def test_learn_scale_equals_rivers_learn_then_transform_bit_for_bit(
    xs: list[dict[str, float]],
) -> None:
    from river import preprocessing

    from audienceflow.models.scaling import learn_scale

    fast, river = preprocessing.StandardScaler(), preprocessing.StandardScaler()
    for x in xs:
        got = learn_scale(fast, dict(x))
        river.learn_one(dict(x))
        assert bits(got) == bits(river.transform_one(dict(x)))
        assert list(fast.counts.items()) == list(river.counts.items())
        assert bits(fast.means) == bits(river.means)
        assert bits(fast.vars) == bits(river.vars)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            vectors(["events", "searches", "first_visit", "step=a", "device=x"]), st.booleans()
        ),
        max_size=30,
    )
)
def test_intent_learning_leaves_the_pipeline_as_rivers_learn_one_does(
    lessons: list[tuple[dict[str, float], bool]],
) -> None:
    """The intent model learns through the scaler and the regression itself: the pipeline
    (scaler, weights, intercept, optimizer, its kept plan) pickles to the same bytes as
    one that learned through River's ``Pipeline.learn_one``."""
    import pickle

    from audienceflow.models.intent import IntentModel

    fast = IntentModel(seed=1, learning_rate=0.05)
    river = copy.deepcopy(fast)
    for x, y in lessons:
        fast.learn(dict(x), y, 0.5)
        river.model.learn_one(dict(x), y)
        assert pickle.dumps(fast.model) == pickle.dumps(river.model)


def _regression(kind: str) -> Any:
    from river import linear_model, optim

    if kind == "weighted":  # class weights and a clip that binds: both read as River does
        return linear_model.LogisticRegression(
            optimizer=optim.SGD(0.3),
            loss=optim.losses.Log(weight_pos=3.0, weight_neg=0.7),
            intercept_lr=0.7,
            clip_gradient=0.25,
        )
    return linear_model.LogisticRegression(optimizer=optim.SGD(0.05), intercept_lr=0.1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(vectors(), st.booleans()), min_size=1, max_size=40),
    st.sampled_from(["intent", "weighted"]),
)
def test_the_sgd_log_step_leaves_the_regression_as_rivers_learn_one_does(
    lessons: list[tuple[dict[str, float], bool]], kind: str
) -> None:
    """Weights (values, bits and order), intercept and iteration count pickle to the same
    bytes after each step. Values up to 1e6 drive the logit far past the +-18 where the
    log loss's gradient changes formula, both ways."""
    import pickle

    from audienceflow.models.intent import _plain_sgd_log, sgd_log_step

    fast, river = _regression(kind), _regression(kind)
    assert _plain_sgd_log(fast)
    for x, y in lessons:
        sgd_log_step(fast, dict(x), y)
        river.learn_one(dict(x), y)
        assert pickle.dumps(fast) == pickle.dumps(river)


@pytest.mark.parametrize("kind", ["intent", "weighted"])
@pytest.mark.parametrize("y", [False, True])
@pytest.mark.parametrize("logit", [17.5, 18.0, 18.5, 30.0, -17.5, -18.0, -18.5, -30.0, 0.3])
def test_the_sgd_log_step_takes_rivers_formula_on_each_side_of_18(
    kind: str, y: bool, logit: float
) -> None:
    """The log loss's gradient has three formulas, split where the signed logit passes
    +-18 (strictly): a logit set on and around each boundary, for both labels."""
    import pickle

    from audienceflow.models.intent import sgd_log_step

    fast, river = _regression(kind), _regression(kind)
    fast.intercept = river.intercept = logit
    sgd_log_step(fast, {"f0": 0.0, "f1": 1e-9}, y)
    river.learn_one({"f0": 0.0, "f1": 1e-9}, y)
    assert pickle.dumps(fast) == pickle.dumps(river)


def test_the_intent_model_learns_through_the_sgd_log_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step is the one taken (River's ``learn_one`` is never called); a regression it
    does not reproduce (an L2 penalty) goes through River's ``learn_one``."""
    from river import linear_model

    from audienceflow.models.intent import IntentModel, _plain_sgd_log

    calls: list[int] = []
    monkeypatch.setattr(
        linear_model.LogisticRegression, "learn_one", lambda *a, **k: calls.append(1)
    )
    model = IntentModel(seed=1, learning_rate=0.05)
    model.learn({"events": 3.0, "searches": 1.0, "step=a": 1.0}, True, 0.5)
    assert calls == [] and model._linear.intercept != 0.0
    model._linear.l2 = 0.01
    assert not _plain_sgd_log(model._linear)
    model.learn({"events": 2.0, "step=a": 1.0}, False, 0.5)
    assert calls == [1]


intent_raws = st.tuples(
    st.integers(1, 40),
    st.integers(0, 9),
    st.integers(0, 3),
    st.integers(0, 4),
    st.integers(0, 3),
    st.sampled_from([0.0, 1.5, 30.0, 3599.0]),
    st.sampled_from(["page", "Product Viewed", "Cart Viewed", "track"]),
    st.sampled_from(["mobile", "desktop", "watch", None]),
    st.sampled_from(["email", "ads", "social", None]),
)
histories = st.tuples(
    st.sampled_from([0.0, 1.0, 4.0]),
    st.sampled_from([0.0, 2.0]),
    st.sampled_from([0.0, 1.0]),
    st.sampled_from([0.0, 1.0]),
    st.sampled_from([0.0, 3.2, 6.58]),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(intent_raws, histories, st.booleans(), st.floats(0.0, 1.0)), max_size=30),
)
def test_learning_from_the_raw_tuple_equals_learning_its_vector_bit_for_bit(
    lessons: list[tuple[tuple[Any, ...], tuple[float, ...], bool, float]],
) -> None:
    """``learn_raw`` (the vector made in its two parts) against ``learn`` of the whole
    ``intent_vector``: the model pickles to the same bytes after every lesson, and both
    parts together are the whole vector, in its order."""
    import pickle

    from audienceflow.models.intent import IntentModel, numeric_part, one_hot_part
    from audienceflow.models.vectors import intent_parts, intent_vector

    fast = IntentModel(seed=1, learning_rate=0.05, max_channels=2)
    whole = copy.deepcopy(fast)
    for raw, hist, y, recorded in lessons:
        for m in (fast, whole):
            m.see_channel(raw[-1])
        x = intent_vector(raw, hist, whole.channels)
        numeric, hots = intent_parts(raw, hist, fast.channels)
        assert (bits(numeric), bits(hots)) == (bits(numeric_part(x)), bits(one_hot_part(x)))
        assert bits({**numeric, **hots}) == bits(x)
        fast.learn_raw(raw, hist, y, recorded)
        whole.learn(x, y, recorded)
        assert pickle.dumps(fast) == pickle.dumps(whole)


def test_a_closed_session_is_learned_without_building_its_whole_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audienceflow.models import hook, intent, vectors

    def called(*args: Any) -> Any:
        raise AssertionError("the whole intent vector was built")

    m = _models()
    lesson = hook._Lesson(
        10.0, "u:1", (3, 1, 0, 1, 0, 2.0, "page", "mobile", "email"), (0.0,) * 5,
        True, 0.4, "email", 0.0, {"a": 1.0},
    )  # fmt: skip
    monkeypatch.setattr(vectors, "intent_vector", called)
    monkeypatch.setattr(intent, "intent_vector", called)
    monkeypatch.setattr(intent, "numeric_part", called)
    monkeypatch.setattr(intent, "one_hot_part", called)
    m._learn(lesson)
    assert m.intent.learned == 1 and m.intent._linear._weights


# --- cluster changes: the reported values, rounded once per value -----------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, -0.0, 0.00005, -0.00005, 0.12345, 1.00015, float("nan")]),
            st.integers(-3, 3),
        ),
        max_size=40,
    )
)
def test_rounded_values_are_rounds_bit_for_bit(xs: list[float]) -> None:
    """Remembered roundings against ``round(v, 4)``: the same type and bits, signed zeros
    and nan included, whatever was rounded before (each value twice, both signs of zero)."""
    from audienceflow.models.hook import rounded

    for v in [*xs, *xs, *(-v for v in xs)]:
        got, want = rounded({"v": v})["v"], round(v, 4)
        assert type(got) is type(want)
        assert repr(got) == repr(want) and (float(got).hex() == float(want).hex() or want != want)


# --- per event: the version read, and the intent tuple built in place ---------------------------


@functools.cache
def _settings() -> Any:
    from audienceflow.operators.settings import Settings

    return Settings.load(environ={})


def _models(epoch: float = 3600.0) -> Any:
    from audienceflow.models.hook import build_models

    m = build_models(_settings(), "shard-000")
    m.epoch = epoch
    return m


def _reference_version(m: Any, t: float) -> Any:
    """``ShardModels._version`` as it was: the epoch divided out at every call."""
    import math

    want = math.floor(t / m.epoch) - 1
    found = m.versions.get(want)
    if found is not None:
        return found
    keys = sorted(m.versions)
    return m.versions[keys[0] if want < keys[0] else keys[-1]]


def _near(epoch: float, e: int) -> st.SearchStrategy[float]:
    """Times on, and a few floats either side of, the starts of epochs ``e - 1 .. e + 2``."""
    import math

    def around(j: int, steps: int) -> float:
        t = j * epoch
        for _ in range(abs(steps)):
            t = math.nextafter(t, math.inf if steps > 0 else -math.inf)
        return t

    return st.builds(around, st.integers(e - 1, e + 2), st.integers(-3, 3)) | st.floats(
        (e - 1) * epoch, (e + 3) * epoch
    )


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from([3600.0, 1.0, 1.5, 7.3, 86400.0, 3]), st.integers(1, 10**6))
def test_the_version_read_is_the_epochs_bit_for_bit(data: Any, epoch: float, e: int) -> None:
    """Times around epoch boundaries (each float next to them), read in any order while
    the versions change as ``sync`` changes them: the version of the division each time."""
    from audienceflow.models.hook import _Version

    m = _models(epoch)
    # Real versions (distinct objects), not stand-ins: compiled code checks their type.
    versions = [_Version(m.intent, m.clusters) for _ in range(6)]
    m.versions = {e - 1: versions[0], e: versions[1]}
    for op in data.draw(st.lists(st.sampled_from(["read"] * 4 + ["sync"]), max_size=30)):
        if op == "sync":  # a new dict, as every change after the first
            m.versions = {e: versions[2], e + 1: data.draw(st.sampled_from(versions))}
            continue
        t = data.draw(_near(epoch, e))
        assert m._version(t) is _reference_version(m, t)


@pure_only  # counts calls through a patch, which compiled code calls past
def test_a_read_in_the_same_epoch_does_not_divide_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from audienceflow.models.hook import ShardModels

    m = _models()
    divided: list[float] = []
    epoch_of = ShardModels._epoch
    monkeypatch.setattr(
        ShardModels, "_epoch", lambda self, t: divided.append(t) or epoch_of(self, t)
    )
    m.sync(10 * 3600.0 + 5)
    divided.clear()
    first = m._version(10 * 3600.0 + 6)
    assert m._version(10 * 3600.0 + 3599) is first and m._version(10 * 3600.0 + 7) is first
    assert divided == [10 * 3600.0 + 6]
    m._version(11 * 3600.0)  # the next epoch: divided once more
    assert len(divided) == 2


def _reference_on_event(self: Any, user: Any, ev: Any) -> None:
    """``ShardModels.on_event`` as it was, with ``vectors.step_of`` and ``vectors.intent_raw``."""
    from audienceflow.models import vectors

    s = user.session
    m = user.model
    if m.get("sid") != s.session_id:
        for key in ("h", "pv", "qv", "step", "x", "p"):
            m.pop(key, None)
        m["sid"] = s.session_id
        m["h"] = vectors.open_history(user, s)
    if ev.name in self.product_events:
        last = m.get("pv")
        if last is not None and abs(ev.ts - last) <= self.cfg.quick_view_gap:
            m["qv"] = m.get("qv", 0) + 1
        m["pv"] = ev.ts
    model = _reference_version(self, ev.ts).intent
    if s.funnel_reached and s.intent_before_funnel is None:
        if "x" not in m:
            m["x"] = (0, 0, 0, 0, 0, 0.0, "", s.device, s.channel)
            m["p"] = model.predict_raw(m["x"], m["h"])
        s.intent_before_funnel = m["p"]
    m["step"] = vectors.step_of(ev)
    raw = vectors.intent_raw(s, m)
    p = model.predict_raw(raw, m["h"])
    user.intent_score = p
    if not s.funnel_reached:
        m["x"] = raw
        m["p"] = p


event_steps = st.tuples(
    st.sampled_from(["Home", "Product Viewed", "Product Added", "Cart Viewed", "Signed Up"]),
    st.sampled_from(["page", "track", "screen"]),
    st.sampled_from([0.0, 1.0, 30.0, 3599.0]),  # seconds after the event before
    st.tuples(*[st.integers(0, 3)] * 3),  # product views, cart adds, searches added
    st.booleans(),  # the funnel is reached
    st.sampled_from(["mobile", None]),
    st.sampled_from(["email", None]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(event_steps, min_size=1, max_size=25), st.booleans())
def test_on_event_scores_as_the_vectors_functions_did_bit_for_bit(
    steps: list[Any], trained: bool
) -> None:
    """The intent tuple built in place against ``vectors.step_of`` and ``intent_raw``: the
    same per-session memory and score bits, on a model that learned or not."""
    from audienceflow.models.hook import ShardModels
    from audienceflow.operators.records import Event
    from audienceflow.operators.state import OpenSession, UserState

    pair = (_models(), _models())
    if trained:
        for m in pair:
            for i in range(6):
                raw = (i + 1, i % 3, 0, i % 2, 0, 5.0, "page", "mobile", "email")
                m.intent.see_channel("email")
                m.intent.learn(vectors_of(raw, m), bool(i % 2), 0.5)
    users = (UserState("u", 0.0), UserState("u", 0.0))
    t = 7 * 3600.0
    for m in pair:
        m.sync(t)  # the first versions
    for k, (name, kind, dt, (views, adds, searches), funnel, device, channel) in enumerate(steps):
        t += dt
        ev = Event(f"m{k}", "u", None, kind, name, t, "navigation", {}, device, None, channel)
        for m, user in zip(pair, users, strict=True):
            s = user.session
            if s is None or k % 9 == 8:  # now and then a new session
                s = user.session = OpenSession(f"u:{k}", t, t, device=device, channel=channel)
                user.total_sessions += 1
            s.events += 1
            s.last = t
            s.product_views += views
            s.cart_adds += adds
            s.searches += searches
            s.funnel_reached = s.funnel_reached or funnel
            if m is pair[0]:
                ShardModels.on_event(m, user, ev)
            else:
                _reference_on_event(m, user, ev)
        fast, ref = users
        assert fast.model == ref.model and fast.intent_score.hex() == ref.intent_score.hex()
        assert fast.session is not None and ref.session is not None
        assert fast.session.intent_before_funnel == ref.session.intent_before_funnel


def vectors_of(raw: tuple[Any, ...], m: Any) -> dict[str, float]:
    from audienceflow.models.vectors import intent_vector

    return intent_vector(raw, (0.0, 0.0, 0.0, 0.0, 5.0), m.intent.channels)


def test_on_event_builds_the_intent_tuple_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from audienceflow.models import vectors
    from audienceflow.operators.records import Event
    from audienceflow.operators.state import OpenSession, UserState

    def called(*args: Any) -> Any:
        raise AssertionError("a function call per event")

    monkeypatch.setattr(vectors, "intent_raw", called)
    monkeypatch.setattr(vectors, "step_of", called)
    m, user = _models(), UserState("u", 0.0)
    user.session = OpenSession("u:1", 3600.0, 3601.0, events=2, device="mobile")
    m.on_event(user, Event("m", "u", None, "track", "Cart Viewed", 3601.0, "navigation", {}))
    assert user.model["x"] == (2, 0, 0, 0, 0, 1.0, "Cart Viewed", "mobile", None)


# --- the epoch's frozen copy: the same copy as deepcopy's, faster --------------------------------


def _trained_models(sessions: int, seed: int) -> Any:
    """Models that learned ``sessions`` random lessons (the clusterer seeded past warm-up
    when there are enough of them)."""
    import random

    m = _models()
    rng = random.Random(seed)
    for i in range(sessions):
        raw = (
            rng.randint(1, 9),
            rng.randint(0, 3),
            0,
            rng.randint(0, 2),
            0,
            4.0,
            "page",
            rng.choice(["mobile", None]),
            rng.choice(["email", "ads", None]),
        )
        m.intent.see_channel(raw[-1])
        m.intent.learn(vectors_of(raw, m), rng.random() < 0.3, rng.random())
        m.clusters.assign({"a": rng.random(), "b": float(i % 3), "c": rng.gauss(0, 1)})
    return m


@pytest.mark.parametrize(("sessions", "seed"), [(0, 1), (3, 2), (60, 3), (400, 4)])
def test_a_frozen_version_pickles_as_a_deepcopy_does(sessions: int, seed: int) -> None:
    """The version the models freeze (large parts copied directly) against ``deepcopy``:
    alone and in one pickle with the live models (shared strings pickle as references),
    before and after the live models learn more; and it predicts as the live model did."""
    import pickle

    from audienceflow.models.hook import _Version

    m = _trained_models(sessions, seed)
    fast = m._freeze()
    slow = _Version(copy.deepcopy(m.intent), copy.deepcopy(m.clusters), None)
    for obj in ("intent", "clusters"):
        assert pickle.dumps(getattr(fast, obj)) == pickle.dumps(getattr(slow, obj))
        assert pickle.dumps((m, getattr(fast, obj))) == pickle.dumps((m, getattr(slow, obj)))
    x = {"a": 0.5, "b": 1.0, "c": 0.0}
    want = (
        m.clusters.nearest(dict(x)),
        m.intent.predict(vectors_of((3, 1, 0, 0, 0, 4.0, "page", None, None), m)),
    )
    extra = _trained_models(50, seed + 100)  # the live models learn on: the copy stays
    for lesson in range(50):
        m.clusters.assign({"a": 9.0 * lesson, "b": 1.0, "c": -1.0})
    m.intent.pos[7] = m.intent.pos.get(7, 0) + 1
    assert pickle.dumps(fast.intent) == pickle.dumps(slow.intent)
    assert pickle.dumps(fast.clusters) == pickle.dumps(slow.clusters)
    got = (
        fast.clusters.nearest(dict(x)),
        fast.intent.predict(vectors_of((3, 1, 0, 0, 0, 4.0, "page", None, None), extra)),
    )
    assert got == want


def test_a_frozen_version_copies_its_large_parts_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """``deepcopy`` never walks the histograms, the scalers' statistics, the centres or
    the random generator's state: they are in its memo already."""
    from audienceflow.models import copies

    m = _trained_models(200, 5)
    parts = [*m.intent.copy_parts(), *m.clusters.copy_parts()]
    walked: list[int] = []
    deepcopy_dict = copy._deepcopy_dict  # type: ignore[attr-defined]

    def counting(x: Any, memo: Any, deepcopy: Any = copy.deepcopy) -> Any:
        walked.append(id(x))
        return deepcopy_dict(x, memo, deepcopy)

    monkeypatch.setitem(copy._deepcopy_dispatch, dict, counting)  # type: ignore[attr-defined]
    made = copies.seed_memo(parts)
    assert len(made) == len(parts)  # every part is one it copies directly
    m._freeze()
    assert not set(walked) & {id(p) for p in parts}
    assert walked  # the rest is deepcopy's own


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["dict", "counter", "float", "int", "partial"]),
    st.dictionaries(
        st.one_of(st.text(max_size=3), st.integers(), st.tuples(st.integers())),
        st.one_of(values, st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
        max_size=8,
    ),
)
def test_seeded_copies_are_deepcopys_copies(kind: str, entries: dict[Any, Any]) -> None:
    """Each container ``seed_memo`` copies itself, or leaves to deepcopy (a key or value
    that is not atomic, a factory that is not a plain type), pickles as deepcopy's copy,
    and is a new container with the same entries in order."""
    import pickle
    import random

    from audienceflow.models.copies import seed_memo

    rng = random.Random(3)
    made: Any = {
        "dict": lambda: dict(entries),
        "counter": lambda: collections.Counter(entries),
        "float": lambda: collections.defaultdict(float, entries),
        "int": lambda: collections.defaultdict(int, entries),
        "partial": lambda: collections.defaultdict(functools.partial(rng.gauss, 0, 1), entries),
    }[kind]()
    holder = {"d": made, "rng": rng}
    fast = copy.deepcopy(holder, seed_memo([made, rng]))
    slow = copy.deepcopy(holder)
    assert pickle.dumps((holder, fast)) == pickle.dumps((holder, slow))
    assert fast["d"] is not made and list(fast["d"].items()) == list(made.items())
    assert fast["rng"].random() == slow["rng"].random() == rng.random()


# --- k-means distances: squares without abs; scaling and weighting in one pass ----------------


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False) | st.sampled_from([-0.0, -1e-300, -1e308, float("-inf")]))
def test_a_square_is_the_square_of_the_absolute_value_bit_for_bit(a: float) -> None:
    """The same float, or the same error (an overflow raises either way); raised to the
    float 2.0 as to River's integer 2."""

    def outcome(f: Any) -> str:
        try:
            return str(f().hex())
        except OverflowError as e:
            return repr(e)

    assert outcome(lambda: a**2.0) == outcome(lambda: a**2) == outcome(lambda: abs(a) ** 2)


@pure_only  # counts calls through a patched module global, which compiled code calls past
def test_squared_distances_call_no_abs(monkeypatch: pytest.MonkeyPatch) -> None:
    from audienceflow.models import clustering

    calls: list[float] = []
    monkeypatch.setattr(clustering, "abs", lambda v: calls.append(v) or abs(v), raising=False)
    for p, want in ((2, 0), (3, 4)):
        model = cluster.KMeans(n_clusters=2, seed=5, p=p)
        for c in model.centers:
            model.centers[c] = collections.defaultdict(float, {"a": 1.0 + c, "b": -1.0})
        calls.clear()
        got = _kmeans_predict(model, {"a": -2.0, "b": 0.5}, {})
        assert got == copy.deepcopy(model).predict_one({"a": -2.0, "b": 0.5})
        assert len(calls) == want  # two centres, two keys: abs only for an odd power


def test_scaled_weighs_as_it_scales_after_the_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a learn, the first scaling is River's and ``_complete``'s; later ones read the
    kept statistics and weights and give the same bits (the contract test above checks
    them against River) without the second pass."""
    bc = BehaviorClusters(k=1, warmup=1, weights={"a": 0.5, "c": 3.0})
    for i in range(4):
        bc.assign({"a": float(i), "b": 2.0 * i, "c": 1.0 - i})
    x = {"b": 3.0, "a": 1.5, "new": 2.0}
    first = bc._scaled(dict(x))
    monkeypatch.setattr(BehaviorClusters, "_complete", lambda self, z: 1 / 0)
    again = bc._scaled(dict(x))
    assert bits(again) == bits(first)
    assert list(again) == ["b", "a", "new", "c"]  # a feature x lacks is added, weighted
