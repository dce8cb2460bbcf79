"""Merging the states of two profiles that turned out to be one person.

The result is what one state would hold had both halves' events come under one id,
as far as the halves' accumulated state can say it:

- counters, revenue, video completions, cart adds: summed; decayed affinities are
  brought to the later of their times and summed;
- closed-session history: both, in start order (the newest ``history_max`` kept);
- two open sessions become one (both were active within the session timeout of the
  linking event, so no gap of a timeout separates them): earliest start, latest
  activity, counts summed, and one session in the lifetime count;
- carts: lines of both (a product in both: quantities summed); timers: both (the
  same trigger on both: the one started later, as a start restarts it under one id);
  delivered actions: both, so frequency
  caps and cooldowns count what either half already got; but a half's cart changed
  last at or before the other half's latest order is emptied, and its timers started
  at or before the other half's latest cancel of them are dropped, as that order or
  cancel would have done under one id;
- rule windows (``count``/``since``/``sequence``/``distinct``): both, bounded as usual;
- identify traits: both (``kept``'s where both have one); account traits (``group.X``):
  those of the half whose group call was later;
- experiment exposures: the earlier one per experiment (an arm is sticky across a merge);
- segments: ``kept``'s; the engine has the absorbed half exit its own and re-evaluates;
- recent orders (an order sent again in a later session is known by them): both, the
  newest ``state.max_recent_orders`` kept;
- the recommender's memory of the user: both halves' purchases and recent items (the
  later half's newest), so neither half's purchases are recommended again.

Sessions already closed and emitted are not re-cut: outputs are never taken back.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from audienceflow.operators.amounts import MAX_QUANTITY
from audienceflow.operators.features import decayed, group_at
from audienceflow.operators.lab import GOAL_ORDER_IDS
from audienceflow.operators.sessions import MAX_ORDER_IDS, merged_orders
from audienceflow.operators.state import (
    INF,
    NO_ITEMS,
    Limits,
    OpenSession,
    RecoUser,
    UserState,
    account_key,
    drop_recommendations,
    hit,
    recommendations_of,
)

# When a user's timer of a trigger started, by its name (None: no such timer trigger).
TimerStart = Callable[[UserState, str], float | None]


def merge_users(
    kept: UserState, other: UserState, canonical: str, history_max: int, half_life: float,
    limits: Limits, timer_start: TimerStart | None = None,
    reco_bounds: tuple[int, int] = (0, 0), starts: dict[str, float] | None = None,
    current: Callable[[str, Any], bool] | None = None, *, at: float | None = None,
    hits: dict[str, int] | None = None, history_window: float = INF,
) -> UserState:  # fmt: skip
    """Fold ``other`` into ``kept`` (which becomes ``canonical``); returns ``kept``.

    ``timer_start(half, name)``: when the half's timer ``name`` started (None: not a
    timer of a trigger, which is kept). ``starts``, if given, gets the earliest start of
    each timer left, read before ``kept`` is renamed (an arm's delay may depend on the
    id: ``experiments.ArmedTimer.replan``).
    ``reco_bounds``: the recommender's ``window`` and ``max_bought`` (0: unbounded).
    ``current(experiment, exposure)``: whether an exposure is of the experiment's arms as
    configured now (``Experiment.kept``); one that is wins over an earlier one that is not.

    ``at``: the merge's time (where a category's affinity is compared for the bound;
    default the latest of the halves' affinities). Each bound the union of the halves
    exceeds gives way as it does to an event, and each entry that gives way is counted
    in ``hits`` under the bound's name (``Limits``): a closed session of the last
    ``history_window`` before ``at`` under ``history_sessions``, as ``sessions.close``.
    """
    u = kept
    # Each half's open-session orders and latest order, before the halves are folded
    # (``_sessions`` folds the sessions): what an exposure of the other half knew not.
    open_orders = {
        id(half): (list(half.session.order_ids) if half.session else [], half.last_order_ts)
        for half in (u, other)
    }
    # Timers of a trigger, by name: under one id each start restarts the timer (``max``
    # in ``TimerTrigger.receive``), so the half whose timer started later gives it.
    known: set[str] = set()
    theirs: set[str] = set()  # of those, the ones the other half's timer gives
    if timer_start is not None:
        _end_by(u, other, timer_start)
        _end_by(other, u, timer_start)
        for name in (*(u.timers or ()), *(other.timers or ())):
            found = {
                id(half): t
                for half in (u, other)
                if name in (half.timers or NO_ITEMS) and (t := timer_start(half, name)) is not None
            }
            if not found:
                continue
            known.add(name)
            if id(other) in found and found[id(other)] > found.get(id(u), -INF):
                theirs.add(name)
            if starts is not None:
                starts[name] = max(found.values())
    u.user_id = canonical
    u.first_seen = min(u.first_seen, other.first_seen)
    later = other if other.last_seen > u.last_seen else u
    u.last_ts = max(u.last_ts, other.last_ts)
    u.last_seen = max(u.last_seen, other.last_seen)
    both_open = u.session is not None and other.session is not None
    u.session = _sessions(u.session, other.session, limits, hits)
    u.session_seq += other.session_seq
    # The merged history's last session is the later of the halves' last ones: whether
    # it converted is that half's (with ``sessions.conversion_events`` other than the
    # orders, its order count does not say).
    own_last = u.history[-1] if u.history else None
    their_last = other.history[-1] if other.history else None
    if their_last is not None and (own_last is None or their_last > own_last):
        u.last_session_converted = other.last_session_converted
    history = sorted([*u.history, *other.history])
    if len(history) > history_max:
        cut = len(history) - history_max
        since = (at if at is not None else -INF) - history_window
        for h in history[:cut]:
            if h[0] >= since:
                hit(hits, "history_sessions")
        history = history[cut:]
    u.history = history
    u.total_events += other.total_events
    u.total_sessions += other.total_sessions - both_open  # two open sessions became one
    u.total_orders += other.total_orders
    u.total_revenue += other.total_revenue
    for cat, (score, ts) in other.affinity.items():
        aff = u.affinity.get(cat)
        if aff is None:
            u.affinity[cat] = (score, ts)
        else:
            # ``latest``, not ``at``: the merge's time judges the bound below.
            latest = max(ts, aff[1])
            total = decayed(aff[0], aff[1], latest, half_life) + decayed(
                score, ts, latest, half_life
            )
            u.affinity[cat] = (total, latest)
    if len(u.affinity) > limits.categories:
        # The weakest categories (decayed to the merge) give way, as to a new category.
        now = at if at is not None else max(ts for _, ts in u.affinity.values())
        for cat in _weakest(u.affinity, len(u.affinity) - limits.categories, now, half_life):
            del u.affinity[cat]
            hit(hits, "categories")
    if other.video_completions:
        if u.video_completions is None:
            u.video_completions = {}
        _bounded_sum(u.video_completions, other.video_completions, limits.categories, hits)
    for key, (cat, price, qty) in other.cart.items():
        line = u.cart.get(key)
        if line is not None:  # one line of both halves: at most ``MAX_QUANTITY``, as an add
            cat, price, qty = line[0], line[1], min(line[2] + qty, MAX_QUANTITY)
        u.cart[key] = (cat, price, qty)
    if len(u.cart) > limits.cart_lines:
        for key in list(u.cart)[: len(u.cart) - limits.cart_lines]:
            del u.cart[key]
            hit(hits, "cart_lines")
    u.cart_updated = max(u.cart_updated, other.cart_updated)
    u.last_order_ts = max(u.last_order_ts, other.last_order_ts)
    # The lazy containers (``state.NO_ITEMS``) are filled in dicts of ``u``'s own, kept
    # only when not empty.
    timers = {} if u.timers is None else u.timers
    for name in theirs:
        _drop_timer(timers, name)
    for name, due in (other.timers or NO_ITEMS).items():
        base = name.split("\x00", 1)[0]
        if base in theirs:
            timers[name] = due
        elif base not in known:  # a timer of no trigger now (removed from the config)
            timers[name] = min(due, timers.get(name, INF))
    u.timers = timers or None
    cancelled = {} if u.cancelled is None else u.cancelled
    for name, when in (other.cancelled or NO_ITEMS).items():
        cancelled[name] = max(when, cancelled.get(name, -INF))
    u.cancelled = cancelled or None
    u.delivered = sorted([*u.delivered, *other.delivered])
    u.device = later.device or u.device or other.device
    u.locale = later.locale or u.locale or other.locale
    u.channel = later.channel or u.channel or other.channel
    u.intent_score = later.intent_score
    reco = _reco(u.model.get("reco"), other.model.get("reco"), later is other, reco_bounds)
    if u.cluster < 0:
        u.cluster = other.cluster
        u.model = other.model
    if reco is not None:
        u.model["reco"] = reco
    if u.recommendations is None:
        recommendations_of(other)  # ranked in place: ``other`` goes, and its view's list
        u.recommendations = other.recommendations
    else:
        drop_recommendations(other)  # never read: not ranked
    if u.experiments or other.experiments:
        exps = u.experiments or {}
        for name in sorted({*exps, *(other.experiments or {})} - {*(other.experiments or {})}):
            _knows_orders(exps[name], *open_orders[id(other)])  # exposed in ``u`` only
        for name, exposed in (other.experiments or {}).items():
            mine = exps.get(name)
            if mine is None:
                _knows_orders(exposed, *open_orders[id(u)])
                exps[name] = exposed
                continue
            first, second = (exposed, mine) if exposed.first_at < mine.first_at else (mine, exposed)
            if current is not None and current(name, first) != current(name, second):
                # Changed arms start the reading again: an exposure under the old arms
                # counts for nothing now, and keeping it would expose the person anew
                # (``Lab._expose``), twice in one reading.
                first, second = (first, second) if current(name, first) else (second, first)
            # The earlier exposure stays, knowing both halves' orders: one of them sent
            # again (a reloaded confirmation page) is no conversion of it (``Lab._expose``).
            ids = [*first.order_ids, *(o for o in second.order_ids if o not in first.order_ids)]
            first.order_ids = ids[-GOAL_ORDER_IDS:]
            exps[name] = first
        u.experiments = exps
    tracks = {} if u.tracks is None else u.tracks
    for key, track in (other.tracks or NO_ITEMS).items():
        tracks[key] = _tracks(tracks.get(key), track, limits, hits)
    u.tracks = tracks or None
    # The account traits follow the later group call (``features.group``): the other
    # half's replace these when its call was later, else they are not taken.
    traits = {} if u.traits is None else u.traits
    other_traits = other.traits or NO_ITEMS
    theirs_later = group_at(other_traits) > group_at(traits)
    if theirs_later:
        for key in [k for k in traits if account_key(k)]:
            del traits[key]
    for key, value in other_traits.items():
        if key in traits or (not theirs_later and account_key(key)):
            continue
        if len(traits) >= limits.traits:  # as ``features.identify``: a new one is not kept
            hit(hits, "traits")
        else:
            traits[key] = value
    u.traits = traits or None
    u.anon_lines += other.anon_lines
    u.known = u.known or other.known
    u.orders_seen = merged_orders(u.orders_seen, other.orders_seen, limits.recent_orders, hits)
    u.segment_recheck = min(u.segment_recheck, other.segment_recheck)
    u.scheduled = INF
    return u


def _knows_orders(exposed: Any, orders: list[str], last_order: float) -> None:
    """An exposure of one half learns the other half's open-session orders when all of
    that half's orders came before the exposure: under one id they were the open session's
    orders then (``Lab._expose``), and one sent again (a reloaded confirmation page) is
    no conversion of it. An order of that half after the exposure is left out: its
    first sending was no conversion either half counted, so its repeat counts once."""
    if orders and last_order < exposed.first_at:  # (a deadline's exposure goes before
        # the events of its instant: an order then came after it)
        ids = [*exposed.order_ids, *(o for o in orders if o not in exposed.order_ids)]
        exposed.order_ids = ids[-GOAL_ORDER_IDS:]


def _end_by(mine: UserState, theirs: UserState, timer_start: TimerStart) -> None:
    """Drop what of ``mine`` the other half's latest order or cancel would have ended had
    their events come under one id: cart lines all added by then (an order empties the
    cart, ``features.update``), and timers started by then (``TimerTrigger.receive``)."""
    if mine.cart and theirs.last_order_ts >= mine.cart_updated:
        mine.cart.clear()
    timers = mine.timers
    if not timers:
        return
    for name in list(timers):
        start = timer_start(mine, name)
        if start is not None and (theirs.cancelled or NO_ITEMS).get(name, -INF) >= start:
            _drop_timer(timers, name)


def _drop_timer(timers: dict[str, float], name: str) -> None:
    """Drop timer ``name`` and the keys it owns (``name`` + NUL + ...: an experiment's
    deferred ghost, ``experiments.DEFERRED``)."""
    for key in [k for k in timers if k == name or k.startswith(name + "\x00")]:
        del timers[key]


def _reco(
    a: RecoUser | None, b: RecoUser | None, b_later: bool, bounds: tuple[int, int]
) -> RecoUser | None:
    """Both halves' recommender memory: recent items per domain (the later half's newest,
    an item in both where the later half has it) and purchases, within the bounds."""
    if a is None or b is None:
        return a if b is None else b
    old, new = (a, b) if b_later else (b, a)
    window, max_bought = bounds
    out = RecoUser(seen=a.seen + b.seen)
    for domain in sorted({*old.recent, *new.recent}):
        newer = new.recent.get(domain, [])
        items = {entry[0] for entry in newer}
        recent = [entry for entry in old.recent.get(domain, []) if entry[0] not in items]
        recent += newer
        out.recent[domain] = recent[-window:] if window else recent
    out.bought = dict(old.bought)
    for item in new.bought:
        out.bought.pop(item, None)
        out.bought[item] = None
    while max_bought and len(out.bought) > max_bought:
        del out.bought[next(iter(out.bought))]
    return out


def _bounded_union(
    into: dict[str, None], more: dict[str, None], most: int, hits: dict[str, int] | None, bound: str
) -> None:
    """``into.update(more)`` while ``into`` holds fewer than ``most`` (as a session lists);
    each key of ``more`` left out is counted under ``bound``."""
    for key in more:
        if key in into:
            continue
        if len(into) >= most:
            hit(hits, bound)
        else:
            into[key] = None


def _sessions(
    a: OpenSession | None, b: OpenSession | None, limits: Limits, hits: dict[str, int] | None
) -> OpenSession | None:
    if a is None or b is None:
        return a if b is None else b
    first, second = (a, b) if (a.start, a.session_id) <= (b.start, b.session_id) else (b, a)
    latest = a if a.last >= b.last else b
    first.last = latest.last
    first.events += second.events
    first.page_views += second.page_views
    first.screen_views += second.screen_views
    for cat, n in second.by_category.items():
        first.by_category[cat] = first.by_category.get(cat, 0) + n
    first.engaged += second.engaged
    first.max_page = max(first.max_page, second.max_page)
    first.page_start = latest.page_start
    first.max_scroll = max(first.max_scroll, second.max_scroll)
    _bounded_union(first.products, second.products, limits.session_products, hits,
                   "session_products")  # fmt: skip
    _bounded_union(first.categories, second.categories, limits.categories, hits, "categories")
    first.converted = first.converted or second.converted
    first.orders += second.orders
    first.order_value += second.order_value
    for oid, value in second.order_ids.items():  # an order both halves counted: once
        if oid in first.order_ids:
            first.orders -= 1
            first.order_value -= value
        elif len(first.order_ids) < MAX_ORDER_IDS:
            first.order_ids[oid] = value
    first.cart_adds += second.cart_adds
    first.product_views += second.product_views
    first.searches += second.searches
    first.last_step = latest.last_step
    first.funnel_reached = first.funnel_reached or second.funnel_reached
    if first.intent_before_funnel is None:
        first.intent_before_funnel = second.intent_before_funnel
    first.device = first.device or second.device
    first.channel = first.channel or second.channel
    return first


def _bounded_sum(
    mine: dict[str, int], theirs: dict[str, int], cap: int, hits: dict[str, int] | None
) -> None:
    for key, n in theirs.items():
        if key in mine or len(mine) < cap:
            mine[key] = mine.get(key, 0) + n
        else:  # as ``features._category``: a new category is not counted
            hit(hits, "categories")


def _weakest(
    affinity: dict[str, tuple[float, float]], n: int, now: float, half_life: float
) -> list[str]:
    """The ``n`` categories of lowest affinity decayed to ``now`` (ties: by name, as
    ``features._category`` picks the one that gives way), lowest first."""
    # (affinity, name) pairs order as a stable sort by affinity of the sorted names
    # (names are distinct; affinities are finite, never NaN), with one sort, not two.
    pairs = [(decayed(s, t, now, half_life), c) for c, (s, t) in affinity.items()]
    return [c for _, c in heapq.nsmallest(n, pairs)]


def _tracks(mine: Any, theirs: Any, limits: Limits, hits: dict[str, int] | None) -> Any:
    """Both halves' window entries (lists: sorted timestamps; dicts: value -> last seen)."""
    if mine is None:
        return theirs
    if isinstance(mine, dict):
        for value, ts in theirs.items():
            mine[value] = max(ts, mine.get(value, -INF))
        while len(mine) > limits.distinct_values:
            del mine[min(mine, key=mine.__getitem__)]
            hit(hits, "distinct_values")
        return mine
    merged = sorted([*mine, *theirs])
    for _ in range(len(merged) - limits.window_events):
        hit(hits, "window_events")
    return merged[-limits.window_events :]
