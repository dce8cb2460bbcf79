"""Streaming item-to-item recommendations: co-occurrence scored by log-likelihood ratio.

Each interaction (a view, a cart add, an order) of a user with an item is paired
with the user's ``window`` most recent items of the same domain (products, or
content such as videos); the pair counts, row sums and the grand total give each
pair Dunning's log-likelihood ratio (G², only for pairs that co-occur more often
than chance), and every item keeps its ``neighbours`` best partners, refreshed for
the pairs an event touches. Views followed by an order of another item add a
cross-occurrence (view → order) with its own LLR. Work per event is bounded:
at most ``window`` pairs, and heavy users and ubiquitous items are down-sampled
(a user past ``max_user_interactions``, an item past ``max_item_interactions``
pairs with probability max/count, decided by a seeded hash, so it does not
depend on the order of unrelated events). State is bounded per item
(``max_partners`` counts, ``neighbours`` scores) and per user (``window`` items
and ``max_bought`` purchases, kept by the caller in ``RecoUser``).

The model is split in a read side (``rank``, ``popular``, ``recommend``), which
never changes it, and a write side (``learn``), which takes one ``Observation``
holding everything it needs (the user's window *before* the event included), so
observations can be buffered and learned later in a canonical order.

>>> m = ItemModel(RecoSettings())
>>> for u, items in enumerate([("a", "b"), ("a", "b"), ("c", "d"), ("a", "b")]):
...     for k, it in enumerate(items):
...         ctx = (((items[0], 1.0),) if k else ())
...         m.learn(Observation(float(u), ((it, ""),), "view", 1.0, ctx, -1))
>>> [(r.item, r.because) for r in m.rank((("a", 1.0),), frozenset({"a"}), 2, -1, 3.0)]
[('b', 'a'), ('c', '')]
"""

from __future__ import annotations

import functools
import heapq
import math
import zlib
from collections import deque
from collections.abc import Callable, Container, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from operator import add, itemgetter, sub
from typing import Any

from audienceflow.operators.native import plain_class
from audienceflow.operators.reco_settings import RecoSettings
from audienceflow.operators.state import PendingRecs
from audienceflow.operators.state import RecoUser as RecoUser  # older pickles name it here

DOMAINS = ("products", "content")
# Segment spec: products carry ``product_id``; video and other content ``content_asset_id``.
ID_KEYS = {"products": ("product_id",), "content": ("content_asset_id", "asset_id")}
_RESCALE = 512.0  # forward-decay exponent at which stored popularity is rescaled
_FALLBACKS_KEPT = 4096  # rankings a view keeps (``ItemModel.fallbacks``), then forgets
_RANKED_FOR_KEPT = 4096  # users whose last ranking a view keeps (``ItemModel.ranked_for``)
_OWED_MIN = 1024  # entries of a view's ``owed`` before it first lets go of settled ones


# --- log-likelihood ratio -------------------------------------------------------


def llr(k11: float, k12: float, k21: float, k22: float) -> float:
    """Dunning's G² for a 2x2 table: 2·(H(rows) + H(columns) - H(cells)), never negative.

    With ``H(k…) = xlogx(Σk) - Σ xlogx(k)`` (unnormalised entropy, xlogx(0) = 0), which sums to
    ``xlogx(N) + Σ xlogx(cells) - Σ xlogx(row sums) - Σ xlogx(column sums)``.
    Independent counts give 0; a strong association a large value.

    >>> llr(1, 1, 1, 1), round(llr(10, 0, 0, 10), 3)
    (0.0, 27.726)
    """
    log = math.log
    g = 0.0
    for k in (k11 + k12 + k21 + k22, k11, k12, k21, k22):
        if k > 0.0:
            g += k * log(k)
    for k in (k11 + k12, k21 + k22, k11 + k21, k12 + k22):
        if k > 0.0:
            g -= k * log(k)
    return max(0.0, 2.0 * g)


def association(k11: float, row_a: float, row_b: float, total: float) -> float:
    """LLR of a pair seen ``k11`` times, if it co-occurs more often than chance, else 0."""
    if k11 * total <= row_a * row_b:
        return 0.0
    k12, k21 = row_a - k11, row_b - k11
    return llr(k11, max(k12, 0.0), max(k21, 0.0), max(total - k11 - k12 - k21, 0.0))


def sampled(p: float, *key: object) -> bool:
    """A deterministic coin with P(heads) = ``p``, from a hash of ``key``."""
    if p >= 1.0:
        return True
    h = zlib.crc32("\x1f".join(map(str, key)).encode())
    return h < p * 4294967296.0


# --- state ------------------------------------------------------------------------


@plain_class  # pickles (snapshots): the same class in both builds
@dataclass(slots=True)
class _Item:
    """What the model keeps per item; every container is bounded."""

    category: str
    count: int = 0  # interactions seen (for down-sampling)
    pop: float = 0.0  # forward-decayed popularity (see ``ItemModel.landmark``)
    row: float = 0.0  # co-occurrence row sum
    pairs: dict[str, float] = field(default_factory=dict)  # partner -> count, <= max_partners
    top: dict[str, float] = field(default_factory=dict)  # partner -> LLR, <= neighbours
    top_min: float = 0.0
    xrow: float = 0.0  # cross: views of this item followed by an order (of others)
    xcol: float = 0.0  # cross: orders of this item preceded by views (of others)
    xpairs: dict[str, float] | None = None  # ordered item -> count
    xtop: dict[str, float] | None = None  # ordered item -> LLR


@plain_class  # pickles (snapshots): the same class in both builds
class TopCounter:
    """The ``capacity`` heaviest keys of a weighted stream, with a lazy min-heap.

    ``add`` is Space-Saving (a newcomer to a full list evicts the lightest key and
    inherits its count: exact while not full, an overestimate after); ``offer``
    takes a key's exact total and admits it only above the lightest. Either costs
    O(log capacity) amortised: the heap keeps stale entries until it is rebuilt.
    ``top`` sorts the keys once per change (``ranked``, kept until the next one): an
    epoch's frozen copy, which every ranking of the epoch reads, is sorted once.
    """

    __slots__ = ("capacity", "heap", "ranked", "scores", "seq")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.scores: dict[str, float] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.seq = 0
        self.ranked: list[str] | None = None  # the keys heaviest first, None: changed since

    def add(self, key: str, w: float) -> None:
        s = self.scores
        old = s.get(key)
        if old is not None:
            self._set(key, old + w)
        elif len(s) < self.capacity:
            self._set(key, w)
        elif self.capacity:
            low, low_key = self._low()
            del s[low_key]
            self._set(key, low + w)

    def offer(self, key: str, total: float) -> None:
        s = self.scores
        if key in s or len(s) < self.capacity:
            self._set(key, total)
        elif self.capacity:
            low, low_key = self._low()
            if total > low:
                del s[low_key]
                self._set(key, total)

    def _set(self, key: str, value: float) -> None:
        self.scores[key] = value
        self.ranked = None
        self.seq += 1
        heapq.heappush(self.heap, (value, self.seq, key))
        if len(self.heap) > 4 * self.capacity + 64:
            self._rebuild()

    def _low(self) -> tuple[float, str]:
        heap, s = self.heap, self.scores
        while heap:
            value, _, key = heap[0]
            if s.get(key) == value:
                return value, key
            heapq.heappop(heap)
        raise AssertionError("a full TopCounter has a lightest key")

    def _rebuild(self) -> None:
        self.heap = [(v, i, k) for i, (k, v) in enumerate(self.scores.items())]
        heapq.heapify(self.heap)
        self.seq = len(self.heap)

    def top(
        self, n: int, exclude: Container[str], also: Container[str] = ()
    ) -> list[tuple[str, float]]:
        """The ``n`` heaviest keys in neither ``exclude`` nor ``also`` (ties: first counted
        first)."""
        s = self.scores
        out: list[tuple[str, float]] = []
        if n <= 0:
            return out
        for k in self._ranked():
            if k not in exclude and k not in also:
                out.append((k, s[k]))
                if len(out) == n:
                    break
        return out

    def keys(self, n: int, exclude: Container[str]) -> list[str]:
        """``top``'s keys without their weights, for the popularity baseline: no pairs to
        make and take apart again."""
        out: list[str] = []
        if n <= 0:
            return out
        for k in self._ranked():
            if k not in exclude:
                out.append(k)
                if len(out) == n:
                    break
        return out

    def _ranked(self) -> list[str]:
        """The keys heaviest first, sorted once per change (stable: ties keep insertion order)."""
        ranked = self.ranked
        if ranked is None:
            s = self.scores
            ranked = self.ranked = sorted(s, key=s.__getitem__, reverse=True)
        return ranked

    def copy(self) -> TopCounter:
        out = TopCounter(self.capacity)
        out.scores, out.heap, out.seq = dict(self.scores), list(self.heap), self.seq
        out.ranked = self.ranked  # never changed in place: replaced when the scores change
        return out

    def scale(self, factor: float) -> None:
        for k in self.scores:
            self.scores[k] *= factor
        self.ranked = None  # products may round to new ties
        self._rebuild()

    def __getstate__(self) -> tuple[int, dict[str, float], list[tuple[float, int, str]], int]:
        return self.capacity, self.scores, self.heap, self.seq

    def __setstate__(
        self, state: tuple[int, dict[str, float], list[tuple[float, int, str]], int]
    ) -> None:
        self.capacity, self.scores, self.heap, self.seq = state
        self.ranked = None


@plain_class  # pickles (snapshots): the same class in both builds
@dataclass(frozen=True, slots=True)
class Observation:
    """One interaction to learn from, with the user's context as it was before it.

    ``items`` are (item id, category); ``context`` the items of the user's window of
    the same domain that were kept for pairing (see ``ItemModel.keep``), as (item id,
    weight); ``paired`` whether each of ``items`` was kept (empty: all were). No user
    id: the model holds nothing per user.
    """

    ts: float
    items: tuple[tuple[str, str], ...]
    kind: str
    weight: float
    context: tuple[tuple[str, float], ...]
    cluster: int
    views: tuple[str, ...] = ()  # items viewed in the window, for cross-occurrence at an order
    paired: tuple[bool, ...] = ()


@plain_class  # pickles (snapshots): the same class in both builds
@dataclass(frozen=True, slots=True)
class Rec:
    """One recommended item: score and why (the seed item, or the fallback used)."""

    item: str
    score: float
    reason: str  # co_occurrence | popular_in_category | popular_in_cluster | popular
    because: str = ""  # the seed item (co_occurrence), category or cluster


@plain_class  # pickles (snapshots): the same class in both builds
class ItemModel:
    """Co-occurrence + cross-occurrence neighbours and decayed popularity of one item domain."""

    # A view's rankings of users with no items of their own and nothing to leave out (a
    # newcomer's first list, a session closing without items of the domain): the
    # fallbacks alone, the same for everyone of a cluster and categories, and a view never
    # changes. None: not kept (the live model learns). Never pickled.
    fallbacks: (
        dict[tuple[int, int, tuple[str, ...], bool], list[tuple[str, float, str, str]]] | None
    ) = None
    # A view's last ranking per user, with all it was ranked from (seeds, exclude, n,
    # cluster, categories, explain): a user's next ranking from equal inputs (the list a
    # cart change stored, scored again at the user's next interaction; a session close
    # after the last change) reads it. None: not kept (the live model). Never pickled.
    ranked_for: (
        dict[
            str,
            tuple[
                list[tuple[str, float]],
                AbstractSet[str],
                int,
                int,
                tuple[str, ...],
                bool,
                list[tuple[str, float, str, str]],
            ],
        ]
        | None
    ) = None
    # A current view's lists stored for users and not ranked yet (``PendingRecs``, made by
    # the recommender's refresh), ranked before the view stops being kept exact; None:
    # rank at once (the live model, a retired or restored view). Never pickled.
    owed: list[PendingRecs] | None = None
    # The live model's views dropped from ``views`` whose ``owed`` lists are still to be
    # ranked: exact until the next ``learn`` changes an item they no longer save (see
    # ``_settle``). Never pickled.
    retired: list[ItemModel] | None = None
    # ``owed``'s length past which ``compact_owed`` lets go of what it no longer owes.
    owed_limit: int = _OWED_MIN
    # ``_getters(self.items)``, made once (``items`` is never replaced). Never pickled.
    getters: (
        tuple[Callable[[str, _Item | None], _Item | None], Callable[[str], _Item | None]] | None
    ) = None

    def __init__(self, cfg: RecoSettings) -> None:
        self.cfg = cfg
        self.items: dict[str, _Item] = {}
        self.order: list[str] = []  # items in first-seen order (random baseline)
        self.total = 0.0  # co-occurrence grand total
        self.xtotal = 0.0
        self.landmark: float | None = None  # forward decay: weights are 2^((t - landmark)/hl)
        self.popular = TopCounter(cfg.popular)
        self.by_cluster: dict[int, TopCounter] = {}
        self.by_category: dict[str, TopCounter] = {}
        self.learned = 0
        self.pairs_updated = 0
        # Frozen views of earlier states that a model epoch still reads (see ``view``).
        self.views: list[ItemModel] = []

    def view(self) -> ItemModel:
        """A read-only view of the model as it is now, kept so by copy-on-write.

        Nothing is copied up front but the small popularity lists: when ``learn``
        is about to change an item, its old state is saved in the views that do not
        have it yet, so a view costs what the next epochs change, not the catalogue.
        The two newest views are kept up to date (a model epoch reads two versions).
        """
        v = ItemModel.__new__(ItemModel)
        v.cfg = self.cfg
        v.items = _Overlay(self.items)
        v.order = list(self.order)
        v.total, v.xtotal, v.landmark = self.total, self.xtotal, self.landmark
        v.popular = self.popular.copy()
        v.by_cluster = {k: tc.copy() for k, tc in self.by_cluster.items()}
        v.by_category = {k: tc.copy() for k, tc in self.by_category.items()}
        v.learned, v.pairs_updated = self.learned, self.pairs_updated
        v.views = []
        v.fallbacks = {}
        v.ranked_for = {}
        v.owed = []
        v.owed_limit = _OWED_MIN
        if len(self.views) > 1:
            old = self.views[0]
            if old.owed:
                self.retired = [*(self.retired or ()), old]
            else:
                old.owed = None
        self.views = [*self.views[-1:], v]
        return v

    def _settle(self) -> None:
        """Rank the lists owed by retired views, before ``learn`` changes an item: a view
        dropped from ``views`` no longer saves old states, yet reads the live items right
        until then (nothing else changes them), so its rankings are still the same."""
        retired = self.retired
        assert retired is not None
        self.retired = None
        for v in retired:
            owed = v.owed
            v.owed = None  # retired: a refresh reading it ranks at once
            for p in owed or ():
                if p.view is v:  # neither read, replaced nor dropped yet
                    p.settle()

    def compact_owed(self) -> None:
        """Let go of the entries of ``owed`` no longer owed (replaced, read or dropped).
        A view is current for a model epoch, and every cart change and session close of
        its users adds an entry, nearly all soon replaced: kept until the view retired,
        they made its memory grow with the epoch's events, not with its users. Run when
        ``owed`` doubles what it kept (amortised: one pass per entry added)."""
        owed = self.owed
        assert owed is not None
        owed[:] = [p for p in owed if p.view is self]
        self.owed_limit = max(_OWED_MIN, 2 * len(owed))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("fallbacks", None)  # a cache: a restored view ranks afresh
        state.pop("ranked_for", None)  # a cache too
        state.pop("owed", None)  # users' lists ranked on demand: a restored view ranks at once
        state.pop("retired", None)  # the same, of retired views
        state.pop("owed_limit", None)  # ``owed``'s bound, made again with it
        state.pop("getters", None)  # bound methods of ``items``: made again on reading
        return state

    def _touch(self, key: str, it: _Item | None) -> None:
        """``key`` is about to change (or be created): save its state in the views.

        Views without it saved yet all see its live state, so they share one copy
        (nothing changes a view's items): at most one copy per change, not one per view.
        """
        views = self.views
        if key in views[-1].items.undo:  # type: ignore[attr-defined]
            # The newest view was taken last: whatever changed since was saved in the older
            # one too, so every view has it already (most changes of an epoch come here).
            return
        saved: _Item | None = None
        for v in views:
            undo = v.items.undo  # type: ignore[attr-defined]
            if key not in undo:
                if saved is None and it is not None:
                    saved = _saved_item(it)
                undo[key] = saved

    def forget_users(self, user_ids: AbstractSet[str]) -> None:
        """A deletion: no kept ranking (``ranked_for``) of these users, in this model or
        any of its live views, retired ones still owing lists included (``retired``). A
        kept ranking holds the user's id, seeds and exclusions (what they viewed, carted
        and bought) for as long as its view lives."""
        for m in (self, *self.views, *(self.retired or ())):
            kept = m.ranked_for
            if kept:
                for uid in user_ids:
                    kept.pop(uid, None)

    # --- read side: never changes the model --------------------------------------

    def rank(
        self,
        seeds: Sequence[tuple[str, float]],
        exclude: Container[str],
        n: int,
        cluster: int,
        now: float,
        categories: Sequence[str] = (),
    ) -> list[Rec]:
        """The top ``n`` items for a user whose recent items are ``seeds`` (item, weight).

        Neighbour LLRs (plus cross-occurrence x ``cross_weight``) summed over the
        seeds; then popular items of the seeds' categories (cold seeds) and of
        ``categories``; then of the user's ``cluster``; then overall, scored by
        their popularity decayed to ``now``.
        """
        return [
            Rec(r["item"], r["score"], r["reason"], r["because"])
            for r in self.payload(seeds, exclude, n, cluster, now, categories)
        ]

    def payload(
        self,
        seeds: Sequence[tuple[str, float]],
        exclude: Container[str],
        n: int,
        cluster: int,
        now: float,
        categories: Sequence[str] = (),
        user: str | None = None,
        key: str = "item",
    ) -> list[dict[str, Any]]:
        """``rank``'s items as the recommender's JSON-ready dicts, made at once (no ``Rec``
        or tuple to take apart again): ``{key: item, "category", "score", "reason",
        "because"}``. ``user``: whose ranking this is, for a view to keep it
        (``ranked_for``)."""
        ranked = self._rank(seeds, exclude, n, cluster, categories, True, user)
        saved, live = self.getters or self._reads()
        return _payloads(ranked, self._decay(now), saved, live, key)

    def rank_items(
        self,
        seeds: Sequence[tuple[str, float]],
        exclude: Container[str],
        n: int,
        cluster: int,
        categories: Sequence[str] = (),
        user: str | None = None,
        explain: bool = False,
    ) -> list[str]:
        """The items of ``rank``, in its order, without scores and reasons (cheaper;
        ``explain``: ranked as ``payload`` ranks, for a view to keep for it)."""
        return [r[0] for r in self._rank(seeds, exclude, n, cluster, categories, explain, user)]

    def _rank(
        self,
        seeds: Sequence[tuple[str, float]],
        exclude: Container[str],
        n: int,
        cluster: int,
        categories: Sequence[str],
        explain: bool,
        user: str | None = None,
    ) -> list[tuple[str, float, str, str]]:
        fallbacks = self.fallbacks
        if fallbacks is not None:
            if not seeds and not exclude:
                key = (n, cluster, tuple(categories), explain)
                found = fallbacks.get(key)
                if found is None:
                    if len(fallbacks) >= _FALLBACKS_KEPT:
                        fallbacks.clear()
                    found = fallbacks[key] = self._rank_all(
                        seeds, exclude, n, cluster, categories, explain
                    )
                return found
            if user is not None and isinstance(exclude, AbstractSet):
                return self._rank_kept(user, seeds, exclude, n, cluster, categories, explain)
        return self._rank_all(seeds, exclude, n, cluster, categories, explain)

    def _rank_kept(
        self,
        user: str,
        seeds: Sequence[tuple[str, float]],
        exclude: AbstractSet[str],
        n: int,
        cluster: int,
        categories: Sequence[str],
        explain: bool,
    ) -> list[tuple[str, float, str, str]]:
        """``_rank_all``'s ranking, or ``user``'s last one on this view when it was ranked
        from equal inputs (a view never changes, so it is the same ranking)."""
        kept = self.ranked_for
        assert kept is not None  # a view's
        last = kept.get(user)
        if (
            last is not None
            and last[2] == n
            and last[3] == cluster
            and last[5] >= explain  # explained serves both; unexplained only itself
            and last[0] == seeds
            and last[1] == exclude
            and last[4] == categories
        ):
            if last[5] == explain:
                return last[6]
            # Unexplained, co-occurrence names no seed (``_co_occurring``); the rest is equal.
            return [(k, v, why, "" if why == "co_occurrence" else b) for k, v, why, b in last[6]]
        ranked = self._rank_all(seeds, exclude, n, cluster, categories, explain)
        if last is None and len(kept) >= _RANKED_FOR_KEPT:
            kept.clear()
        # Copies of what the caller may change later; the list ``_rank_all`` made is ours.
        kept[user] = (
            list(seeds),
            frozenset(exclude),
            n,
            cluster,
            tuple(categories),
            explain,
            ranked,
        )
        return ranked

    def _rank_all(
        self,
        seeds: Sequence[tuple[str, float]],
        exclude: Container[str],
        n: int,
        cluster: int,
        categories: Sequence[str],
        explain: bool,
    ) -> list[tuple[str, float, str, str]]:
        """``_rank``'s work (a list the caller never changes: ``_rank`` may keep it)."""
        saved, live = self.getters or self._reads()
        score: dict[str, float] = {}
        cold: list[str] = []
        hot: list[tuple[str, _Item, float]] = []
        xw = self.cfg.cross_weight
        get = score.get
        for seed, w in seeds:
            it = saved(seed, live(seed))
            if it is None:
                continue
            top, xtop = it.top, it.xtop
            if not top and not xtop:
                if it.category:
                    cold.append(it.category)
                continue
            hot.append((seed, it, w))
            if score:
                for nb, s in top.items():
                    score[nb] = get(nb, 0.0) + w * s
            else:  # nothing to add to yet: the loop's ``get`` would give 0.0 for every key
                score = _scaled(top, w)
                get = score.get
            if xtop and xw:
                for nb, s in xtop.items():
                    score[nb] = get(nb, 0.0) + w * xw * s
        out: list[tuple[str, float, str, str]] = []
        if score:  # (else the fallbacks alone, as for most users with few items: skip the rest)
            for ex in _excluded(score, exclude):
                del score[ex]
            # Ties keep the order candidates were met in: deterministic for equal state. A sort
            # (stable: ``heapq.nlargest``'s order, which it documents as this) runs in C; at
            # most ``window`` seeds of ``neighbours`` each, it beats nlargest's Python loop.
            # (``[:n]`` of a negative ``n`` would keep all but the last: nlargest kept none.)
            ranked = sorted(score.items(), key=itemgetter(1), reverse=True)[: max(n, 0)]
            out = _co_occurring(ranked, hot, xw, explain)
        if len(out) >= n:
            return out
        taken = {r[0] for r in out}
        if cold or categories:
            for cat in dict.fromkeys([*cold, *categories]):
                tc = self.by_category.get(cat)
                if tc is not None:
                    _fill(out, tc, n, exclude, taken, "popular_in_category", cat)
        if cluster >= 0 and cluster in self.by_cluster:
            tc = self.by_cluster[cluster]
            _fill(out, tc, n, exclude, taken, "popular_in_cluster", str(cluster))
        _fill(out, self.popular, n, exclude, taken, "popular", "")
        return out

    def popular_items(self, n: int, exclude: Container[str]) -> list[str]:
        """The ``n`` most popular items (decayed), the baseline ranking."""
        return self.popular.keys(n, exclude)

    def category(self, item: str) -> str:
        it = self._item(item)
        return it.category if it is not None else ""

    def _item(self, key: str) -> _Item | None:
        """``self.items.get(key)`` for the read side, which views run too: compiled code
        calls a ``dict``'s own ``get`` on a view's ``_Overlay``, past its override (the live
        items, not the view's), so reads go through ``_getters``."""
        saved, live = self.getters or self._reads()
        return saved(key, live(key))

    def _reads(
        self,
    ) -> tuple[Callable[[str, _Item | None], _Item | None], Callable[[str], _Item | None]]:
        """``_getters(self.items)``, kept in ``getters`` (made once per model or view)."""
        g = self.getters = _getters(self.items)
        return g

    def _decay(self, now: float) -> float:
        if self.landmark is None:
            return 1.0
        return math.exp2(min(max((self.landmark - now) / self.cfg.half_life, -1000.0), 1000.0))

    def keep(self, user: str, item: str, seen: int) -> bool:
        """Whether an interaction pairs (down-sampling; read-only, decided before ``learn``).

        A user past ``max_user_interactions`` (``seen`` so far) or an item past
        ``max_item_interactions`` pairs with probability max/count: a seeded hash of
        user, item and counts decides, so it does not depend on unrelated events.
        """
        cfg = self.cfg
        it = self._item(item)
        count = 0 if it is None else it.count
        p = min(cfg.max_user_interactions / (seen + 1), cfg.max_item_interactions / (count + 1))
        return p >= 1.0 or sampled(p, cfg.seed, user, item, seen, count)

    # --- write side ------------------------------------------------------------------

    def learn(self, obs: Observation) -> None:
        """Fold one interaction in: popularity, co-occurrence with the context, cross-occurrence."""
        cfg = self.cfg
        if self.retired:
            self._settle()
        if self.landmark is None:
            self.landmark = obs.ts
        exp = (obs.ts - self.landmark) / cfg.half_life
        if exp > _RESCALE:
            self._rescale(exp)
            exp = 0.0
        fw = obs.weight * math.exp2(exp)
        self.learned += 1
        views = self.views
        for i, (item, cat) in enumerate(obs.items):
            it = self.items.get(item)
            if views:
                self._touch(item, it)
            if it is None:
                it = self.items[item] = _Item(cat)
                self.order.append(item)
            elif cat and not it.category:
                it.category = cat
            it.count += 1
            it.pop += fw
            self.popular.offer(item, it.pop)  # exact: the item's whole popularity
            if it.category:
                tc = self._group(self.by_category, it.category)
                if tc is not None:
                    tc.offer(item, it.pop)  # an item has one category: exact too
            if obs.cluster >= 0:
                tc = self._group(self.by_cluster, obs.cluster)
                if tc is not None:
                    tc.add(item, fw)
            if obs.paired and not obs.paired[i]:
                continue
            for other, ow in obs.context:
                if other != item:
                    self._pair(item, it, other, min(obs.weight, ow))
            if obs.kind == "order":
                for viewed in obs.views:
                    if viewed != item:
                        self._cross(viewed, item, it)

    def _group(self, groups: dict[Any, TopCounter], key: Any) -> TopCounter | None:
        """The popularity list of a category or cluster; None once ``max_groups`` are tracked."""
        tc = groups.get(key)
        if tc is None:
            if len(groups) >= self.cfg.max_groups:
                return None
            tc = groups[key] = TopCounter(self.cfg.popular)
        return tc

    def _pair(self, a: str, ia: _Item, b: str, w: float) -> None:
        ib = self.items.get(b)
        if ib is None:
            return
        if self.views:
            self._touch(b, ib)
        self.pairs_updated += 1
        self.total += 2.0 * w
        ia.row += w
        ib.row += w
        kab = _bump(ia.pairs, b, w, self.cfg.max_partners)
        _bump(ib.pairs, a, w, self.cfg.max_partners)
        s = association(kab, ia.row, ib.row, self.total)
        k = self.cfg.neighbours
        _offer(ia, b, s, k)
        _offer(ib, a, s, k)

    def _cross(self, viewed: str, ordered: str, io: _Item) -> None:
        iv = self.items.get(viewed)
        if iv is None:
            return
        if self.views:
            self._touch(viewed, iv)
        if iv.xpairs is None:
            iv.xpairs, iv.xtop = {}, {}
        self.xtotal += 1.0
        iv.xrow += 1.0
        io.xcol += 1.0
        k11 = _bump(iv.xpairs, ordered, 1.0, self.cfg.max_partners)
        s = association(k11, iv.xrow, io.xcol, self.xtotal)
        xtop = iv.xtop
        assert xtop is not None
        if s > 0.0:
            if ordered in xtop or len(xtop) < self.cfg.neighbours:
                xtop[ordered] = s
            else:
                low = min(xtop, key=xtop.__getitem__)
                if s > xtop[low]:
                    del xtop[low]
                    xtop[ordered] = s
        else:
            xtop.pop(ordered, None)

    def _rescale(self, exp: float) -> None:
        """Move the forward-decay landmark so stored popularity stays finite (rare, O(items))."""
        assert self.landmark is not None
        factor = math.exp2(-exp)
        self.landmark += exp * self.cfg.half_life
        for key, it in self.items.items():
            if self.views:
                self._touch(key, it)
            it.pop *= factor
        for tc in (self.popular, *self.by_cluster.values(), *self.by_category.values()):
            tc.scale(factor)

    def report(self) -> dict[str, Any]:
        with_nb = sum(1 for it in self.items.values() if it.top)
        return {
            "items": len(self.items),
            "items_with_neighbours": with_nb,
            "interactions": self.learned,
            "pairs_updated": self.pairs_updated,
        }


@plain_class  # pickles (snapshots): the same class in both builds
class _Overlay(dict[str, _Item]):
    """The items of a view: saved old states first (None: did not exist), then the live ones.

    Readers on the hot path look up through ``_getters`` instead of ``get``: two dict
    lookups in C, no call of this class's Python. Compiled code (``make fast``) must too:
    its ``get`` on a value typed ``dict`` is the dict's own, which skips this override.
    """

    def __init__(self, live: dict[str, _Item]) -> None:
        super().__init__()
        self.live = live
        self.undo: dict[str, _Item | None] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.undo:
            found = self.undo[key]
            return default if found is None else found
        return self.live.get(key, default)


_NOTHING_SAVED: dict[str, _Item | None] = {}  # the live model's "saved states": never written


def _getters(
    items: dict[str, _Item],
) -> tuple[Callable[[str, _Item | None], _Item | None], Callable[[str], _Item | None]]:
    """``(saved, live)`` such that ``saved(key, live(key))`` is ``items.get(key)``.

    Both are dicts' own ``get``: a view (``_Overlay``) reads its saved state when it has
    one (None there: the item did not exist), else the live one; a live model has nothing
    saved. One Python call per ranking, not one per item looked up.
    """
    if isinstance(items, _Overlay):
        return items.undo.get, items.live.get
    return _NOTHING_SAVED.get, items.get


def _saved_item(it: _Item) -> _Item:
    """What a view reads of ``it`` (category, count, neighbours), saved before it changes.

    The pair counts (``pairs``, ``xpairs``: up to ``max_partners`` each) are the write
    side's alone, which no view reads: the copy leaves them empty, so saving an item
    costs its ``neighbours`` scores, not its whole row (and the collector fewer objects).
    """
    return _Item(
        it.category,
        it.count,
        it.pop,
        it.row,
        {},
        dict(it.top),
        it.top_min,
        it.xrow,
        it.xcol,
        None if it.xpairs is None else {},
        None if it.xtop is None else dict(it.xtop),
    )


def _fill(
    out: list[tuple[str, float, str, str]],
    tc: TopCounter,
    n: int,
    exclude: Container[str],
    taken: set[str],
    reason: str,
    because: str,
) -> None:
    """Add ``tc``'s heaviest keys, as ``tc.top`` gives them, until ``out`` holds ``n``."""
    if len(out) >= n:
        return
    # ``top``'s loop, inline: no list of pairs to make and take apart again (each key comes
    # once, so adding it to ``taken`` changes no later check).
    s = tc.scores
    for k in tc._ranked():
        if k not in exclude and k not in taken:
            out.append((k, s[k], reason, because))
            taken.add(k)
            if len(out) >= n:
                return


def _payloads(
    ranked: list[tuple[str, float, str, str]],
    decay: float,
    saved: Callable[[str, _Item | None], _Item | None],
    live: Callable[[str], _Item | None],
    key: str,
) -> list[dict[str, Any]]:
    """``ItemModel.payload``'s dicts: popularity scores decayed to now, each rounded to 4
    places, and each item's category. A loop: a comprehension would make its five
    arguments closure cells at every call (``tests/test_hot_cells.py``)."""
    out: list[dict[str, Any]] = []
    append = out.append
    for k, v, why, because in ranked:
        it = saved(k, live(k))
        append(
            {
                key: k,
                "category": "" if it is None else it.category,
                "score": round(v if why == "co_occurrence" else v * decay, 4),
                "reason": why,
                "because": because,
            }
        )
    return out


def _scaled(top: dict[str, float], w: float) -> dict[str, float]:
    """``_rank_all``'s sums of its first hot seed, in ``top``'s order (see ``_excluded``).
    ``0.0 +`` as the loop adds to its default: a ``-0.0`` product (a ``seed_decay`` of
    -0.0) sums to 0.0 there."""
    return {nb: 0.0 + w * s for nb, s in top.items()}


def _excluded(score: dict[str, float], exclude: Container[str]) -> list[str]:
    """The candidates of ``score`` in ``exclude`` (a module function: a comprehension in
    ``ItemModel._rank_all`` would make its locals closure cells at every call)."""
    return [k for k in score if k in exclude]


def _co_occurring(
    ranked: list[tuple[str, float]],
    hot: list[tuple[str, _Item, float]],
    xw: float,
    explain: bool,
) -> list[tuple[str, float, str, str]]:
    """``_rank_all``'s ranked candidates as recommendations (see ``_excluded``)."""
    if not explain:
        return [(k, v, "co_occurrence", "") for k, v in ranked]
    out: list[tuple[str, float, str, str]] = []
    for k, v in ranked:  # why: the seed contributing most to its score (the first of equals)
        best, best_c = "", 0.0
        for seed, it, w in hot:
            c = w * (it.top.get(k, 0.0) + (xw * it.xtop.get(k, 0.0) if it.xtop else 0.0))
            if c > best_c:
                best, best_c = seed, c
        out.append((k, v, "co_occurrence", best))
    return out


def _bump(pairs: dict[str, float], key: str, w: float, cap: int) -> float:
    old = pairs.get(key)
    if old is None and len(pairs) >= cap:
        # Bounded row: the weakest pair gives its place to the newcomer (the row sum keeps
        # counting it; inheriting its count, as Space-Saving does, would inflate newcomers).
        del pairs[min(pairs, key=pairs.__getitem__)]
    new = (old or 0.0) + w
    pairs[key] = new
    return new


def _offer(it: _Item, partner: str, s: float, k: int) -> None:
    """Refresh ``partner``'s LLR in ``it``'s top-k (``top_min``: their lowest once full)."""
    top = it.top
    old = top.get(partner)
    if old is not None:
        if s > 0.0:
            top[partner] = s
        else:
            del top[partner]
        if len(top) < k:
            it.top_min = 0.0
        elif old <= it.top_min or s < it.top_min:  # only then can the lowest have changed
            it.top_min = min(top.values())
    elif s > 0.0:
        if len(top) < k:
            top[partner] = s
            if len(top) >= k:
                it.top_min = min(top.values())
        elif s > it.top_min:
            del top[min(top, key=top.__getitem__)]
            top[partner] = s
            it.top_min = min(top.values())


# --- progressive evaluation ---------------------------------------------------------


@functools.cache
def _discounts(k: int) -> tuple[float, ...]:
    """NDCG's discount of each rank below ``k``: ``1 / log2(rank + 2)``."""
    return tuple(1.0 / math.log2(r + 2) for r in range(k))


@functools.cache
def _draw_steps(n: int) -> tuple[bytes, ...]:
    """What ``random_ranking`` chains into its hash at draw ``j`` (``j`` as 2 bytes, little
    endian), made once: building them at every draw was a fifth of its time."""
    return tuple(j.to_bytes(2, "little") for j in range(n))


_MISSES = (0.0,) * 6  # ``Evaluator.score``'s row when all three rankings miss


@functools.cache
def _ideal_dcg(m: int) -> float:
    """The DCG of ``m`` hits in the first ``m`` ranks (summed in rank order, as ``score``)."""
    return sum(1.0 / math.log2(r + 2) for r in range(m))


@plain_class  # pickles (snapshots): the same class in both builds
@dataclass(slots=True)
class Evaluator:
    """Hit rate@k and NDCG@k of the model and two baselines, cumulative and over a window."""

    k: int
    window: int
    seed: int
    scored: int = 0
    hits: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    ndcg: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    recent: deque[tuple[float, ...]] = field(default_factory=deque)
    recent_sum: list[float] = field(default_factory=lambda: [0.0] * 6)

    def random_ranking(self, model: ItemModel, exclude: Container[str], key: str) -> list[str]:
        """``k`` distinct known items drawn at random, none excluded.

        Seeded by ``seed`` and ``key`` (the event's message id), so a draw does not
        depend on which events were scored before it.
        """
        pool = model.order
        out: list[str] = []
        if not pool:
            return out
        size, crc32 = len(pool), zlib.crc32
        h = crc32(f"{self.seed}\x1f{key}".encode())
        for step in _draw_steps(4 * self.k):
            h = crc32(step, h)
            item = pool[h % size]
            if item not in exclude and item not in out:
                out.append(item)
                if len(out) == self.k:
                    break
        return out

    def score(self, targets: AbstractSet[str], n_targets: int, rankings: list[list[str]]) -> None:
        """Score the three rankings (model, popularity, random) against the items that came."""
        ideal = _ideal_dcg(min(n_targets, self.k))
        recent, rs = self.recent, self.recent_sum
        if all(map(targets.isdisjoint, rankings)):
            # Most events: every ranking misses. Adding their zeros changes no sum (none is
            # ever -0.0), so only the window moves: one shared row, and the row leaving it
            # is subtracted only when it is not that one (a restored window's may equal it).
            self.scored += 1
            recent.append(_MISSES)
            if len(recent) > self.window:
                old = recent.popleft()
                if old is not _MISSES:
                    rs[:] = map(sub, rs, old)
            return
        discounts = _discounts(self.k)
        hits, ndcg = self.hits, self.ndcg
        row: list[float] = []
        for i, ranked in enumerate(rankings):
            dcg = 0.0
            hit = 0.0
            if not targets.isdisjoint(ranked):  # most rankings miss: one pass in C says so
                # Not strict: ``discounts`` has k, so a longer ranking counts its first k.
                for discount, item in zip(discounts, ranked, strict=False):
                    if item in targets:
                        hit = 1.0
                        dcg += discount
            nd = dcg / ideal
            hits[i] += hit
            ndcg[i] += nd
            row += (hit, nd)
        self.scored += 1
        recent.append(tuple(row))
        # Element by element, as a loop would add them, without its bytecode per element.
        rs[:] = map(add, rs, row)
        if len(recent) > self.window:
            rs[:] = map(sub, rs, recent.popleft())

    def report(self) -> dict[str, Any]:
        names = ("model", "popularity", "random")
        n, w = self.scored, len(self.recent)
        rs = self.recent_sum
        return {
            "k": self.k,
            "events_scored": n,
            f"hit_rate_at_{self.k}": {
                m: (round(self.hits[i] / n, 6) if n else None) for i, m in enumerate(names)
            },
            f"ndcg_at_{self.k}": {
                m: (round(self.ndcg[i] / n, 6) if n else None) for i, m in enumerate(names)
            },
            "window": {
                "size": self.window,
                "events": w,
                f"hit_rate_at_{self.k}": {
                    m: (round(rs[2 * i] / w, 6) if w else None) for i, m in enumerate(names)
                },
                f"ndcg_at_{self.k}": {
                    m: (round(rs[2 * i + 1] / w, 6) if w else None) for i, m in enumerate(names)
                },
            },
            "_hits": list(self.hits),
            "_ndcg": list(self.ndcg),
            "_recent": list(rs),
            "_recent_n": w,
        }
