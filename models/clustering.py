"""Behavioural clusters of users, learned online: StandardScaler then KMeans (or DBSTREAM).

Each user vector is scaled with running means and variances, the clusterer
learns it, and the user is assigned to the nearest cluster. A cluster is
described from its centroid: the scaled centroid is a z-score per feature, so
"high frequency, deals pages, low cart" lists the features furthest from the
average user.

>>> bc = BehaviorClusters(k=2, seed=1, warmup=4)
>>> for i in range(20):
...     _ = bc.assign({"a": float(i % 2), "b": 1.0 - i % 2})
>>> bc.assign({"a": 1.0, "b": 0.0}) != bc.assign({"a": 0.0, "b": 1.0})
True
"""

from __future__ import annotations

import collections
import itertools
import math
import operator
import random
import sys
from dataclasses import dataclass
from typing import Any, Final

from river import cluster, preprocessing

from audienceflow.models.scaling import learn_scale
from audienceflow.models.vectors import in_original_units, user_label
from audienceflow.operators import native

# A feature enters a description when its centroid is this many standard deviations off.
DESCRIBE_Z = 0.5
DESCRIBE_TOP = 3
SEED_PASSES = 10
SEED_STARTS = 10
# ``sum`` of floats is a plain left fold from 0 before Python 3.12 (compensated since).
_FOLD = sys.version_info < (3, 12)
# ``_decided``: how far apart (relative) two approximate squared distances must be for the
# exact ones to be surely in the same order, and below what distance it is tried at all.
_APART: Final = 2.0**-40
_TINY: Final = 1e-290
_FAR: Final = 1e150
_MANY: Final = 256  # features at most: River's fold may then be 2**-45 off, far within _APART
_TWOS: Final = itertools.repeat(2.0)  # the exponent of every term (``_nearest_of``)


def _dist2(a: dict[str, float], b: dict[str, float]) -> float:
    return sum((v - b.get(k, 0.0)) ** 2 for k, v in a.items())


def _mean(points: list[dict[str, float]]) -> dict[str, float]:
    # ``sum(p[k] for p in points)``, each value read in C (``itemgetter``), not in a generator.
    n = len(points)
    return {k: sum(map(operator.itemgetter(k), points)) / n for k in points[0]}


def _nearest(
    p: dict[str, float], centers: list[dict[str, float]], least: float = math.inf
) -> tuple[int, float]:
    """The first centre of least ``_dist2`` from ``p``, and that distance; (0, ``least``)
    when none is below ``least`` (the least distance to centres looked at before these).

    ``_dist2`` summed in a loop (``sum`` of floats is that left fold from 0 before Python
    3.12), given up once the partial sum reaches the least distance so far: the terms
    are squares, never negative, so the rest cannot bring it back below. A centre
    given up would not have been taken, so the result is ``_dist2``'s.
    """
    if not _FOLD:
        best, best_d = 0, least
        for j, c in enumerate(centers):
            d = _dist2(p, c)
            if d < best_d:
                best, best_d = j, d
        return best, best_d
    best, best_d = 0, least
    items = p.items()
    for j, c in enumerate(centers):
        d = 0.0
        try:
            # ``** 2.0``: ``float_pow`` converts the integer 2 to that very double
            for k, v in items:
                d += (v - c[k]) ** 2.0
                if d >= best_d:
                    break
            else:
                if d < best_d:
                    best, best_d = j, d
        except KeyError:  # ``c`` lacks a key of ``p``: read as 0.0, from the first term
            d = _dist2_until(items, c, best_d)
            if d < best_d:
                best, best_d = j, d
    return best, best_d


def _dist2_until(items: Any, c: dict[str, float], limit: float) -> float:
    """``_dist2`` of ``items`` from ``c`` summed in a loop, given up (returned as it is)
    once it reaches ``limit``."""
    get = c.get
    d = 0.0
    for k, v in items:
        d += (v - get(k, 0.0)) ** 2
        if d >= limit:
            break
    return d


def _rows(points: list[dict[str, float]]) -> tuple[list[tuple[str, ...]], list[tuple[float, ...]]]:
    """Each point's keys, in its order (points of one order share one tuple), and values."""
    orders: dict[tuple[str, ...], tuple[str, ...]] = {}
    keys: list[tuple[str, ...]] = []
    values: list[tuple[float, ...]] = []
    for p in points:
        ks = tuple(p)
        keys.append(orders.setdefault(ks, ks))
        values.append(tuple(p.values()))
    return keys, values


def _row(center: dict[str, float], keys: tuple[str, ...]) -> tuple[float, ...]:
    """``center``'s values in the order ``keys``, a key it lacks as 0.0 (as ``_nearest``
    reads it, through ``_dist2_until``)."""
    return tuple(map(center.get, keys, itertools.repeat(0.0, len(keys))))


def _center_rows(
    centers: list[dict[str, float]], keys: list[tuple[str, ...]]
) -> dict[tuple[str, ...], list[tuple[float, ...]]]:
    """The centres' values (``_row``) in each key order of the points."""
    rows: dict[tuple[str, ...], list[tuple[float, ...]]] = {}
    for ks in keys:
        if ks not in rows:
            rows[ks] = [_row(c, ks) for c in centers]
    return rows


def _nearest_row(
    p: tuple[float, ...], rows: list[tuple[float, ...]], least: float = math.inf
) -> tuple[int, float]:
    """``_nearest`` with ``p``'s values and the centres' in its key order (``_rows``,
    ``_row``): the same terms in the same order, without a dict read per term."""
    best, best_d = 0, least
    for j, c in enumerate(rows):
        d = 0.0
        for v, w in zip(p, c, strict=True):
            d += (v - w) ** 2.0
            if d >= best_d:
                break
        else:
            if d < best_d:
                best, best_d = j, d
    return best, best_d


def _nearest_of(p: tuple[float, ...], rows: list[tuple[float, ...]]) -> tuple[int, float]:
    """``_nearest_row(p, rows)``, the centre told from ``math.dist`` when the distances
    are apart (``_pick``'s test, inline, as ``_decided`` tells River's choice: our sum is
    the same left fold of the same squares), only its distance then summed; else
    ``_nearest_row``."""
    if len(p) <= _MANY:
        dist = math.dist
        far = _FAR
        dists = []
        best = -1
        least = math.inf
        for i, c in enumerate(rows):
            d = dist(p, c)
            if not d < far:  # too far for its square, or inf, or nan
                return _nearest_row(p, rows)
            dists.append(d)
            if d < least:
                best, least = i, d
        if best >= 0:
            bound = least * least * (1.0 + _APART) + _TINY
            below = 1.0 - _APART
            for i, d in enumerate(dists):
                if i != best and not d * d * below > bound:
                    return _nearest_row(p, rows)
            # The loop's left fold from 0.0, in C: ``sum`` of floats is that fold before
            # Python 3.12 (``_FOLD``), and ``operator.pow`` with 2.0 is ``** 2.0``.
            squares = map(operator.pow, map(operator.sub, p, rows[best]), _TWOS)
            return best, sum(squares, 0.0)
    return _nearest_row(p, rows)


def _nearer(p: tuple[float, ...], c: tuple[float, ...], least: float) -> float:
    """``_nearest_row(p, [c], least)[1]``: ``c``'s distance if below ``least``, else
    ``least``; ``least`` at once when ``math.dist`` puts ``c`` surely past it (the test
    of ``_pick``, against ``least``, itself an exact sum)."""
    if len(p) <= _MANY:
        d = math.dist(p, c)
        if d < _FAR and d * d * (1.0 - _APART) > least * (1.0 + _APART) + _TINY:
            return least
    return _nearest_row(p, [c], least)[1]


def _plus_plus(
    points: list[dict[str, float]], k: int, rng: random.Random
) -> list[dict[str, float]]:
    """k-means++ seeding: each next centre drawn with probability ~ squared distance.

    A point's least distance to the centres is kept from one draw to the next and only
    the newest centre is looked at: ``_nearest`` over all of them would meet it last,
    with that very least distance so far.
    """
    centers = [points[rng.randrange(len(points))]]
    d2 = [math.inf] * len(points)
    keys, values = _rows(points)
    while len(centers) < k:
        if _FOLD:  # ``_nearest`` on each point's values (``_rows``)
            newest = centers[-1]
            row: dict[tuple[str, ...], tuple[float, ...]] = {}
            for ks in keys:
                if ks not in row:
                    row[ks] = _row(newest, ks)
            d2 = [_nearer(pv, row[ks], d) for pv, ks, d in zip(values, keys, d2, strict=True)]
        else:
            d2 = [_nearest(p, centers[-1:], d)[1] for p, d in zip(points, d2, strict=True)]
        r, i = rng.random() * sum(d2), 0
        while i < len(points) - 1 and r >= d2[i]:
            r -= d2[i]
            i += 1
        centers.append(points[i])
    return centers


def _kmeans(
    points: list[dict[str, float]], centers: list[dict[str, float]]
) -> tuple[list[dict[str, float]], float]:
    """Batch (Lloyd) passes from ``centers``: the centres and their inertia.

    Up to ``SEED_PASSES``; a pass that assigns every point as the one before ends
    them early: its groups, so its centres, are the last pass's, and every pass after
    it would repeat it, inertia included.
    """
    inertia = 0.0
    last: list[int] | None = None
    keys, values = _rows(points)
    for _ in range(SEED_PASSES):
        groups: list[list[dict[str, float]]] = [[] for _ in centers]
        inertia = 0.0
        assigned = []
        if _FOLD:
            rows = _center_rows(centers, keys)
            for p, ks, pv in zip(points, keys, values, strict=True):
                j, d = _nearest_of(pv, rows[ks])
                groups[j].append(p)
                assigned.append(j)
                inertia += d
        else:
            for p in points:
                j, d = _nearest(p, centers)
                groups[j].append(p)
                assigned.append(j)
                inertia += d
        if assigned == last:
            break  # the centres are already these groups' means
        last = assigned
        centers = [_mean(g) if g else c for g, c in zip(groups, centers, strict=True)]
    return centers, inertia


# Its attributes in the order ``__init__`` sets them: a plain class's ``__dict__``, the state
# it pickles (``native.attrs_state``), the same from the compiled build's native class.
_CLUSTERS_ATTRS = (
    "algorithm",
    "k",
    "seed",
    "halflife",
    "dbstream",
    "weights",
    "scaler",
    "model",
    "warmup",
    "buffer",
    "ready",
    "learned",
    "_stats",
    "_stats_learned",
    "_orders",
    "_plan",
)
_CLUSTERS_CACHES = ("_stats", "_stats_learned", "_orders", "_plan")  # never pickled
_CLUSTERS_STATE = tuple(a for a in _CLUSTERS_ATTRS if a not in _CLUSTERS_CACHES)


class BehaviorClusters:
    """Online clustering of user vectors; ``assign`` learns a vector and returns its cluster."""

    def __new__(cls, *args: Any, **kwargs: Any) -> BehaviorClusters:
        # What pickle and ``copy`` make before ``__setstate__``: mypyc's own ``__new__``
        # of a native class (compiled build) would run ``__init__``, without arguments.
        return super().__new__(cls)

    def __init__(
        self,
        algorithm: str = "kmeans",
        k: int = 4,
        seed: int = 42,
        halflife: float = 0.1,
        dbstream: dict[str, float] | None = None,
        weights: dict[str, float] | None = None,
        warmup: int = 50,
    ) -> None:
        self.algorithm = algorithm
        self.k = k
        self.seed = seed
        self.halflife = halflife
        self.dbstream = dict(dbstream or {})
        self.weights = dict(weights or {})
        self.scaler: Any = preprocessing.StandardScaler()
        self.model: Any
        if algorithm == "kmeans":
            self.model = cluster.KMeans(n_clusters=k, halflife=halflife, seed=seed)
        elif algorithm == "dbstream":
            self.model = cluster.DBSTREAM(**self.dbstream)
        else:
            raise ValueError(f"unknown clustering algorithm {algorithm!r}; known: kmeans, dbstream")
        self.warmup = max(warmup, k) if algorithm == "kmeans" else 0
        self.buffer: list[dict[str, float]] = []
        self.ready = self.warmup == 0
        self.learned = 0
        self._caches_reset()

    def _caches_reset(self) -> None:
        # Per feature (mean, standard deviation or 0) read from the scaler, valid while
        # it has learned ``_stats_learned`` vectors; per centre the order of its keys.
        self._stats: dict[str, tuple[float, float, float | None]] = {}
        self._stats_learned = -1
        self._orders: dict[int, Any] = {}
        # ``_Plan`` of ``nearest``, valid while the model has learned ``_plan.learned``
        self._plan: _Plan | None = None

    def copy_parts(self) -> list[Any]:
        """The large parts of this model, for ``copies.seed_memo`` (a version's copy)."""
        scaler = self.scaler
        parts: list[Any] = [scaler.counts, scaler.means, scaler.vars]
        if self.algorithm == "kmeans":
            parts.append(self.model._rng)
            parts += self.model.centers.values()
        return parts

    def __getstate__(self) -> dict[str, Any]:
        return native.attrs_state(self, _CLUSTERS_STATE)  # not the caches (``_caches_reset``)

    def __setstate__(self, state: dict[str, Any]) -> None:
        native.set_attrs(self, state)
        self._caches_reset()

    def assign(self, x: dict[str, float]) -> int:
        """Learn ``x`` and return its cluster (nearest before the update); -1 while warming up."""
        if self.ready:  # the scaler learns x and scales it (``_scaled``'s first call after)
            z = learn_scale(self.scaler, x)
            self.learned += 1
            self._stats = {}
            self._stats_learned = self.learned
            z = self._complete(z)
            if self.algorithm == "kmeans":
                return _kmeans_learn_predict(self.model, z, self._orders)
            self.model.learn_one(z)
            return int(self.model.predict_one(z))
        self.scaler.learn_one(x)
        self.learned += 1
        if not self.ready:
            self.buffer.append(x)
            if len(self.buffer) < self.warmup:
                return -1
            self._seed_centers()
        z = self._scaled(x)
        if self.algorithm == "kmeans":
            return _kmeans_learn_predict(self.model, z, self._orders)
        self.model.learn_one(z)
        return int(self.model.predict_one(z))

    def nearest(self, x: dict[str, float]) -> int:
        """The cluster of ``x`` without learning it; -1 while warming up.

        Per session close (on an epoch's version, which never learns) and per user at a
        checkpoint. k-means reads ``_Plan``'s flat tuples, made once per state of the
        model, when they tell the centre (``_planned``); otherwise the scaled vector and
        River's centres, as before, which may add a feature to the scaler or the centres:
        the plan is made again.
        """
        if not self.ready:
            return -1
        if self.algorithm == "kmeans":
            plan = self._plan
            if plan is None or plan.learned != self.learned:
                plan = self._plan = _Plan.of(self)
            if plan.values:
                found = _planned(plan, x)
                if found is not None:
                    return found
                self._plan = None
            return _kmeans_predict(self.model, self._scaled(x), self._orders)
        return int(self.model.predict_one(self._scaled(x)))

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        """River's ``StandardScaler.transform_one(x)``, every feature the scaler knows
        (a missing one reads as the average: 0), times its configured weight.

        The scaling is River's arithmetic on the mean and standard deviation read once
        per feature until the scaler learns again (``_feature_stats``), each value
        weighted as it is scaled: the floats of ``_complete`` after the scaling, made in
        one pass.
        """
        if self._stats_learned != self.learned:
            # First call since the scaler learned (each ``assign``): River's own.
            self._stats = {}
            self._stats_learned = self.learned
            return self._complete(self.scaler.transform_one(x))
        stats = self._stats
        z: dict[str, float] = {}
        for name, xi in x.items():
            try:
                mean, sd, w = stats[name]
            except KeyError:
                mean, sd, w = stats[name] = self._feature_stats(name)
            v = (xi - mean) / sd if sd else 0.0
            z[name] = v if w is None else v * w
        means = self.scaler.means
        if not means.keys() <= z.keys():
            weights = self.weights
            for key in means:
                if key not in z:
                    w = weights.get(key)
                    z[key] = 0.0 if w is None else 0.0 * w
        return z

    def _complete(self, z: dict[str, float]) -> dict[str, float]:
        """A scaled vector with every feature the scaler knows (0 for one it lacks), weighted."""
        means = self.scaler.means
        if not means.keys() <= z.keys():
            for key in means:
                z.setdefault(key, 0.0)
        for key, w in self.weights.items():
            if key in z:
                z[key] *= w
        return z

    def _feature_stats(self, name: str) -> tuple[float, float, float | None]:
        """(mean, standard deviation or 0, configured weight or None) of a feature, read
        from the scaler's defaultdicts as ``transform_one`` reads them (the variance first;
        the mean only if it is not 0)."""
        w = self.weights.get(name)
        v = self.scaler.vars[name]
        if not v:
            return 0.0, 0.0, w
        return self.scaler.means[name], v**0.5, w

    def _seed_centers(self) -> None:
        """Best of a few k-means++ starts with batch passes over the warm-up vectors.

        River's KMeans starts from random centres, and in a space of a dozen
        features most of them are never nearest to anyone; starting from the
        data gives every centre users of its own.
        """
        points = [self._scaled(x) for x in self.buffer]
        rng = random.Random(self.seed)
        best: tuple[list[dict[str, float]], float] | None = None
        for _ in range(SEED_STARTS):
            centers, inertia = _kmeans(points, _plus_plus(points, self.k, rng))
            if best is None or inertia < best[1]:
                best = (centers, inertia)
        assert best is not None
        for cid, c in zip(sorted(self.model.centers), best[0], strict=True):
            # A feature first seen later starts at the average (0), not at a random draw.
            self.model.centers[cid] = collections.defaultdict(float, c)
        self.buffer = []
        self.ready = True

    def centers(self) -> dict[int, dict[str, float]]:
        """Cluster centroids in scaled units (z-scores), by cluster id."""
        if not self.ready:
            return {}
        return {int(c): dict(center) for c, center in sorted(self.model.centers.items())}

    def describe(self, sizes: dict[int, int]) -> dict[str, dict[str, Any]]:
        """Size, readable description and centroid (in original units) of every cluster.

        A description lists the features on which the cluster's centroid lies
        furthest from the average member of all clusters, in standard deviations.
        """
        means, variances = self.scaler.means, self.scaler.vars
        zs = {
            cid: {f: v / self.weights.get(f, 1.0) for f, v in c.items()}
            for cid, c in self.centers().items()
        }
        live = {cid: z for cid, z in zs.items() if sizes.get(cid, 0) > 0}
        members = sum(sizes[cid] for cid in live)
        ref = (
            {
                f: sum(sizes[cid] * z[f] for cid, z in live.items()) / members
                for f in next(iter(live.values()), {})
            }
            if members
            else {}
        )
        out: dict[str, dict[str, Any]] = {}
        for cid, z in zs.items():
            if cid not in live and self.algorithm == "kmeans":
                continue  # a centre no user is nearest to
            contrast = sorted(((f, v - ref.get(f, 0.0)) for f, v in z.items()), key=_by_size)
            words = [
                user_label(f, d > 0) for f, d in contrast[:DESCRIBE_TOP] if abs(d) >= DESCRIBE_Z
            ]
            centroid = {
                f: round(
                    in_original_units(f, v * math.sqrt(variances.get(f, 0.0)) + means.get(f, 0.0)),
                    4,
                )
                for f, v in sorted(z.items())
            }
            out[str(cid)] = {
                "size": sizes.get(cid, 0),
                "description": ", ".join(words) or "average on every feature",
                "centroid": centroid,
            }
        return out


@dataclass(slots=True, frozen=True)
class _Plan:
    """What ``BehaviorClusters.nearest`` reads to tell the nearest k-means centre of a
    vector, in flat tuples: per feature, in the first centre's key order, (name, mean,
    standard deviation or 0, weight or None, the scaled value of a feature the vector
    lacks); per centre, its id and its values in that order. Made when every centre has
    the features the scaler knows, and only those (else ``values`` is empty: no plan),
    read only while the model has learned ``learned`` vectors."""

    learned: int
    features: tuple[tuple[str, float, float, float | None, float], ...] = ()
    ids: tuple[int, ...] = ()
    values: tuple[tuple[float, ...], ...] = ()

    @classmethod
    def of(cls, bc: BehaviorClusters) -> _Plan:
        """The plan of ``bc`` as it is now, read as ``_scaled`` and ``_kmeans_predict`` read
        it (the scaler's statistics as ``_feature_stats``, nothing inserted)."""
        model = bc.model
        none = cls(bc.learned)
        if not _FOLD or model.p != 2 or not model.centers:
            return none
        centers = list(model.centers.items())
        names = tuple(centers[0][1])
        means, vars_ = bc.scaler.means, bc.scaler.vars
        if not 2 <= len(names) <= _MANY or means.keys() != vars_.keys():
            return none
        if any(c.keys() != means.keys() for _, c in centers):
            return none
        features = []
        for name in names:
            mean, sd, w = bc._feature_stats(name)  # known to the scaler: inserts nothing
            features.append((name, mean, sd, w, 0.0 if w is None else 0.0 * w))
        getter = operator.itemgetter(*names)
        return cls(
            bc.learned,
            tuple(features),
            tuple(c for c, _ in centers),
            tuple(getter(c) for _, c in centers),
        )


def _planned(plan: _Plan, x: dict[str, float]) -> int | None:
    """The centre River's ``KMeans.predict_one`` picks for ``x`` scaled (``_scaled``), told
    from ``plan`` as ``_decided`` tells it, or None (a feature the plan lacks, or distances
    too close to tell)."""
    z = _plan_scaled(plan, x)
    if z is None:
        return None
    dist = math.dist
    far = []  # a loop: a comprehension would make ``z`` and ``dist`` cells (CPython 3.11)
    for values in plan.values:
        far.append(dist(values, z))
    return _pick(plan.ids, far)


def _plan_scaled(plan: _Plan, x: dict[str, float]) -> list[float] | None:
    """``_scaled(x)``'s values in the plan's feature order, the same floats
    (``tests/test_model_fast_paths.py`` checks them bit for bit against River's scaling),
    or None when ``x`` has a feature the plan lacks (one the scaler has not seen, which
    ``_scaled`` would insert)."""
    get = x.get
    z = []
    seen = 0
    for name, mean, sd, w, lacking in plan.features:
        xi: Any = get(name, _LACKING)
        if xi is _LACKING:
            z.append(lacking)
            continue
        seen += 1
        v = (xi - mean) / sd if sd else 0.0
        z.append(v if w is None else v * w)
    if seen != len(x):
        return None
    return z


_LACKING: Final = object()


def _pick(ids: tuple[int, ...] | list[int], dists: list[float]) -> int | None:
    """The id of the least of ``dists`` (``math.dist`` of each centre from one vector)
    when it is surely least in River's sums too (``_decided``), else None."""
    best = -1
    least = math.inf
    far = _FAR
    for i, d in enumerate(dists):
        if not d < far:  # too far for its square, or inf, or nan
            return None
        if d < least:
            best, least = i, d
    if best < 0:
        return None
    bound = least * least * (1.0 + _APART) + _TINY
    below = 1.0 - _APART
    for i, d in enumerate(dists):
        if i != best and not d * d * below > bound:
            return None
    return int(ids[best])


def _kmeans_predict(model: Any, x: dict[str, float], orders: dict[int, Any]) -> int:
    """River's ``KMeans.predict_one(x)``, bit for bit, without building a set per centre.

    River sums ``abs(center[k] - x.get(k, 0)) ** p`` over the set ``{*center, *x}``, in
    the order that set iterates, and takes the first centre of least distance. When every
    key of ``x`` is already in the centre, adding ``x``'s keys leaves the set as it is,
    so its order depends on the centre's keys alone; keys are only ever added, so the
    order is kept per centre while the centre's key count is unchanged. With as many
    keys as the centre and every one of its keys found, ``x`` has the centre's keys
    (the usual case); otherwise the keys are compared. A key the centre lacks runs
    River's own method: reading it inserts a draw of the centre's default factory
    (KMeans' random generator), which must happen exactly as River does it
    (``tests/test_model_fast_paths.py`` checks all of this against River).

    Most of the time River's sums need not be made at all: ``_decided`` finds the
    nearest centre from distances made in C, when they surely order as River's do.

    With ``p == 2`` a term is squared without ``abs``: CPython's float power raises
    ``abs(a)`` to an even integer power for a negative ``a`` (``float_pow``), so the
    square is the same float; only a nan may keep its sign, and a nan distance is
    never less than another, signed or not. The exponent is the float 2.0: ``float_pow``
    converts River's integer 2 to that very double before calling the platform's ``pow``,
    so the call is the same, without the conversion per term (``a * a`` would not be:
    ``pow`` is not correctly rounded, and rounds some squares the other way).
    """
    if not _FOLD:  # River's sum() is compensated from Python 3.12: let River add it up
        return int(model.predict_one(x))
    p = model.p
    if p == 2 and type(x) is dict:
        found = _decided(model, x, orders)
        if found is not None:
            return found
    keys = x.keys()
    get = x.get
    best, best_d = -1, 0.0
    for c, center in model.centers.items():
        n = len(center)
        entry = orders.get(c)
        if entry is None or entry[0] is not center or entry[1] != n:
            if not keys <= center.keys():
                return int(model.predict_one(x))  # nothing was read or written yet
            entry = _entry(orders, c, center, keys)
        # sum(): a left fold from the integer 0, in the set's order; 0 + x is 0.0 + x for
        # every float x (the int is converted first), and a float keeps the build typed.
        d = 0.0
        if n == len(x):  # the usual case, the same keys: x[k] is x.get(k, 0)
            try:
                if p == 2:  # squares: see the docstring
                    for k in entry[2]:
                        d += (center[k] - x[k]) ** 2.0
                else:
                    for k in entry[2]:
                        d += abs(center[k] - x[k]) ** p
            except KeyError:  # x has a key the centre lacks
                return int(model.predict_one(x))
        else:
            if not keys <= center.keys():
                return int(model.predict_one(x))
            for k in entry[2]:
                d += abs(center[k] - get(k, 0)) ** p
        if best < 0 or d < best_d:  # min(): the first of equal distances wins
            best, best_d = c, d
    return int(best)


def _entry(orders: dict[int, Any], c: int, center: Any, keys: Any) -> tuple[Any, ...]:
    """Centre ``c``'s kept (centre, key count, River's key order, a getter of the values
    of those keys in that order), made when ``keys`` (the vector's) are all the centre's.
    Centres whose orders are equal share one getter (``_decided`` reads ``x`` once)."""
    order = tuple({*center.keys(), *keys})
    getter = None
    if len(order) >= 2:  # an itemgetter of one key returns the value, not a tuple
        for other in orders.values():
            if other[2] == order and other[3] is not None:
                getter = other[3]
                break
        else:
            getter = operator.itemgetter(*order)
    entry = orders[c] = (center, len(center), order, getter)
    return entry


def _decided(model: Any, x: dict[str, float], orders: dict[int, Any]) -> int | None:
    """The centre River's ``predict_one(x)`` picks (``p == 2``), found without River's
    sums, or None when these distances cannot tell it (then the caller adds them up).

    Each distance is ``math.dist`` of the centre's values and ``x``'s in one order: the
    square root of the sum of the very differences River squares, to within a few units
    in the last place (measured: under 4), where River's left fold of ``pow`` squares is
    within ``n`` units of the same sum. So a centre whose squared distance is more than
    a relative ``_APART`` (4096 units) below every other one's is below them in River's
    sums too, and it is River's choice; a closer call, a tie, a distance too large for
    its square (where River may raise ``OverflowError``), an inf or a nan, is left to
    the sums. Only centres having every key of ``x`` are read, and ``x`` only as a plain
    dict (a missing key raises or reads as River's 0, inserts nothing), so nothing is
    read or written that River would not (``tests/test_model_fast_paths.py`` checks the
    choice against River's).
    """
    keys = x.keys()
    n = len(x)
    if n > _MANY:
        return None
    dist = math.dist
    ids: list[int] = []
    dists: list[float] = []
    last = None
    here: Any = None
    for c, center in model.centers.items():
        m = len(center)
        if m > _MANY:
            return None
        entry = orders.get(c)
        if entry is None or entry[0] is not center or entry[1] != m:
            if not keys <= center.keys():
                return None
            entry = _entry(orders, c, center, keys)
        getter = entry[3]
        if getter is None:
            return None
        if m == n:  # the usual case: x has the centre's keys, or lacks one (it raises)
            if getter is not last:
                try:
                    here = getter(x)
                except KeyError:
                    return None
                last = getter
            theirs = here
        elif m > n and keys <= center.keys():  # River reads a key x lacks as 0
            theirs = tuple(map(x.get, entry[2], itertools.repeat(0, m)))
        else:
            return None
        ids.append(c)
        dists.append(dist(getter(center), theirs))
    return _pick(ids, dists)


def _kmeans_learn_predict(model: Any, x: dict[str, float], orders: dict[int, Any]) -> int:
    """River's ``KMeans.learn_predict_one(x)``, bit for bit: the nearest centre, moved."""
    closest = _kmeans_predict(model, x, orders)
    center = model.centers[closest]
    halflife = model.halflife
    for i, xi in x.items():
        center[i] += halflife * (xi - center[i])
    return closest


def _by_size(item: tuple[str, float]) -> tuple[float, str]:
    return (-abs(item[1]), item[0])
