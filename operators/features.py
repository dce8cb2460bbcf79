"""Behavioral features of a user: category affinity with time decay, video
completions, cart state, and the window aggregates that segment rules read.

All times are event times (epoch seconds). Affinity decays exponentially with
a half-life: a view worth 1.0 today is worth 0.5 one half-life later.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from audienceflow.operators.amounts import MAX_AMOUNT, MAX_QUANTITY, amount, quantity
from audienceflow.operators.decimals import round_places
from audienceflow.operators.money import CARTS, NO_MONEY, ORDERS, Money, count_currency
from audienceflow.operators.normalize import BLANK_PRINTABLE
from audienceflow.operators.records import Event, iso
from audienceflow.operators.sessions import order_value
from audienceflow.operators.state import (
    GROUP,
    GROUP_AT,
    GROUP_ID,
    H_START,
    HISTORY_METRICS,
    INF,
    MAX_CATEGORY_CHARS,
    NO_ITEMS,
    Limits,
    UserState,
    hit,
    recommendations_of,
    usable_category,
)

# Cart keys of lines known by something other than a product id (never a real id: \x1f).
_SKU: Final = "\x1fsku:"
_NAME: Final = "\x1fname:"
_ANON: Final = "\x1fanon:"

# ``products[]`` lines read of one event: for its categories (``product_categories``) and
# by the recommender (``models/recommender.py``).
PRODUCTS_READ: Final = 50

DEFAULT_AFFINITY_WEIGHTS = {
    "Product Viewed": 1.0,
    "Product Clicked": 1.0,
    "Product Added": 3.0,
    "Order Completed": 5.0,
    "Video Content Completed": 2.0,
    "Video Playback Started": 0.5,
}


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What feeds the features."""

    affinity_half_life: float = 7 * 86400.0
    affinity_weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_AFFINITY_WEIGHTS)
    )
    page_affinity_weight: float = 0.5
    video_complete_events: frozenset[str] = frozenset({"Video Content Completed"})
    cart_add_events: frozenset[str] = frozenset({"Product Added"})
    cart_remove_events: frozenset[str] = frozenset({"Product Removed"})
    order_events: frozenset[str] = frozenset({"Order Completed"})
    # Events whose ``products[]`` list is the whole cart (Segment's v2 e-commerce spec).
    cart_refresh_events: frozenset[str] = frozenset({"Cart Viewed", "Checkout Started"})
    limits: Limits = field(default_factory=Limits)
    money: Money = NO_MONEY  # the ``money`` section: what cart prices are in


def decayed(score: float, since: float, now: float, half_life: float) -> float:
    """``score`` recorded at ``since``, decayed to ``now``."""
    if now <= since:
        return score
    return score * math.exp2(-(now - since) / half_life)


def update(
    user: UserState,
    ev: Event,
    spec: FeatureSpec,
    hits: dict[str, int] | None = None,
    currencies: dict[str, list[int]] | None = None,
) -> str | None:
    """Fold one event into the user's behavioral features; return its categories.

    An event's category is ``properties.category``. An event with an affinity weight
    and no such text (Segment's ``Order Completed``) takes the categories of its
    ``products[]`` lines instead, each once and each with the event's whole weight: an
    order is a purchase in every category it bought from. The return is the one
    category, ``""`` for none, or ``None`` for several (the segment evaluation's
    ``focus``: ``None`` evaluates per-category rules for all of the user's categories),
    or for one that evicted another at ``max_categories_per_user`` (whose affinity fell
    to 0: a category-local rule may hold for it now).

    ``hits`` counts bounds hit and event meanings that could not be used
    (``unusable:<what>``), so nothing is dropped silently. ``currencies`` counts, with
    ``money.currency`` unset, a cart event carrying a price by the currency it names
    (``money.count_currency``: its prices are summed as sent).
    """
    ts = ev.ts
    user.total_events += 1
    if ts > user.last_ts:
        user.last_ts = ts
    if ev.device is not None:
        user.device = ev.device
    if ev.locale is not None:
        user.locale = ev.locale
    if ev.channel is not None:
        user.channel = ev.channel
    props = ev.properties
    name = ev.name
    cat = props.get("category")
    # ``usable_category``'s common case inline (once per event with a category): short
    # printable text that does not start with a blank character; anything else asks it.
    if (
        isinstance(cat, str)
        and cat
        and not (
            len(cat) <= MAX_CATEGORY_CHARS and cat.isprintable() and cat[0] not in BLANK_PRINTABLE
        )
        and not usable_category(cat)
    ):
        # Too long, blank, or holding a control or invisible character: it would become
        # part of segment names and profiles. It names no category, as if not given.
        hit(hits, "unusable:category")
        cat = None
    if isinstance(cat, str) and cat:
        focus: str | None = cat
        if _category(user, ev, cat, spec, hits):
            focus = None  # the evicted category changed too
    elif "products" in props and name in spec.affinity_weights:
        cats = product_categories(props["products"], hits)
        evicted = False
        weakest: list[tuple[float, str]] = []  # one heap for all the order's categories
        for c in cats:
            evicted = _category(user, ev, c, spec, hits, weakest) or evicted
        focus = None if evicted else cats[0] if len(cats) == 1 else "" if not cats else None
    else:
        focus = ""
    if name in spec.cart_add_events:
        _add_line(user, props, spec.limits, hits, spec.money.factor(props))
        user.cart_updated = max(user.cart_updated, ts)
        if currencies is not None and "price" in props and spec.money.currency is None:
            count_currency(currencies, props, CARTS)
    elif name in spec.cart_remove_events:
        if _remove_line(user, props):
            user.cart_updated = max(user.cart_updated, ts)
        else:
            hit(hits, "unusable:remove_not_in_cart")
    elif name in spec.order_events:
        value = order_value(props)  # as sent: a currency without a rate is told apart
        if value is None:
            given = props.get("total")
            if given is None:
                given = props.get("revenue")
            hit(hits, "unusable:order_value_text" if type(given) is str else "unusable:order_value")
        elif value:
            rate = spec.money.factor(props)
            if rate is None:
                hit(hits, "unusable:currency")
            elif value * rate > MAX_AMOUNT:  # ``Money.convert``'s bound: the session drops it
                hit(hits, "unusable:order_value")
        if ts >= user.cart_updated:
            user.cart.clear()
            user.cart_updated = ts
        else:
            hit(hits, "unusable:order_before_cart_change")
        user.last_order_ts = max(user.last_order_ts, ts)
    elif "products" in props and name in spec.cart_refresh_events:
        products = props["products"]
        if not isinstance(products, list):
            hit(hits, "unusable:products_not_a_list")
        elif ts < user.cart_updated:
            hit(hits, "unusable:cart_refresh_out_of_order")
        else:
            user.cart.clear()
            user.anon_lines = 0
            rate = spec.money.factor(props)
            priced = False
            for item in products:
                if isinstance(item, dict):
                    _add_line(user, item, spec.limits, hits, rate)
                    priced = priced or "price" in item
                else:
                    hit(hits, "unusable:product_not_an_object")
            user.cart_updated = ts
            if priced and currencies is not None and spec.money.currency is None:
                count_currency(currencies, props, CARTS)
    return focus


def summed_kind(name: str, props: dict[str, object], spec: FeatureSpec) -> int | None:
    """Whether a track event's amounts are summed, as ``update`` and ``sessions`` count it
    in ``currencies``: ``money.ORDERS`` for an order with a usable value above 0, ``CARTS``
    for a cart add or refresh carrying a price, else None (``check-config --sample`` reads
    a sample with it; the engine counts inline, an order sent again once).

    >>> spec, order = FeatureSpec(), "Order Completed"
    >>> summed_kind(order, {"total": "9"}, spec), summed_kind(order, {"total": 0}, spec)
    (0, None)
    >>> summed_kind("Cart Viewed", {"products": [{"price": 2}]}, spec), summed_kind("x", {}, spec)
    (1, None)
    """
    if name in spec.order_events:
        return ORDERS if order_value(props) else None
    if name in spec.cart_add_events:
        return CARTS if "price" in props else None
    if name in spec.cart_refresh_events:
        products = props.get("products")
        if type(products) is list and any(type(p) is dict and "price" in p for p in products):
            return CARTS
    return None


def product_categories(products: object, hits: dict[str, int] | None = None) -> tuple[str, ...]:
    """The distinct categories of an event's ``products[]`` lines, in their order.

    Segment's ``Order Completed`` names its categories only there. At most the first
    ``PRODUCTS_READ`` lines are read (as the recommender reads them), so no one event's
    list can make the engine walk without bound. A line's category that is not
    ``usable_category`` is skipped and counted as ``unusable:category``.
    """
    if type(products) is not list:
        return ()
    found: dict[str, None] = {}
    for item in products[:PRODUCTS_READ]:
        if type(item) is dict:
            c = item.get("category")
            if isinstance(c, str) and c:
                if usable_category(c):
                    found[c] = None
                else:
                    hit(hits, "unusable:category")
    return tuple(found)


def _category(
    user: UserState,
    ev: Event,
    cat: str,
    spec: FeatureSpec,
    hits: dict[str, int] | None,
    weakest: list[tuple[float, str]] | None = None,
) -> bool:
    """Add the event's weight (and video completion) to ``cat``; whether that evicted
    another category's affinity (the bound ``limits.categories``).

    ``weakest``: the event's heap for ``_evict``, shared by the calls for one event's
    categories (``[]`` before its first eviction); ``None`` for a call of its own.
    """
    # ``cat`` is interned (one copy however many users hold it) only where it becomes a
    # key: a category a user has already keeps the key it was first stored under.
    ts = ev.ts
    weight = spec.affinity_weights.get(ev.name)
    if weight is None and (ev.type == "page" or ev.type == "screen"):
        weight = spec.page_affinity_weight
    aff = user.affinity
    evicted = False
    if weight:
        old = aff.get(cat)
        if old is None:
            if len(aff) >= spec.limits.categories:
                # The weakest category (decayed to now) gives way to the new one.
                _evict(aff, ts, spec.affinity_half_life, [] if weakest is None else weakest)
                hit(hits, "categories")
                evicted = True
            score = weight
            aff[sys.intern(cat)] = (weight, ts)
        else:
            since = old[1]
            if ts <= since:  # ``decayed``, inline (once per event with a category)
                score = old[0] + weight
                aff[cat] = (score, since)
            else:
                base = old[0] * math.exp2(-(ts - since) / spec.affinity_half_life)
                score = base + weight
                aff[cat] = (score, ts)
        if weakest:
            # ``cat``'s affinity at ``ts`` is ``score`` (its time is ``ts`` or later:
            # ``decayed`` returns the score itself).
            heapq.heappush(weakest, (score, cat))
    if ev.name in spec.video_complete_events:
        done = user.video_completions
        if done is None:
            done = user.video_completions = {}
        n = done.get(cat)
        if n is None:
            if len(done) >= spec.limits.categories:
                hit(hits, "categories")
            else:
                done[sys.intern(cat)] = 1
        else:
            done[cat] = n + 1
    return evicted


def _evict(
    aff: dict[str, tuple[float, float]], ts: float, hl: float, weakest: list[tuple[float, str]]
) -> None:
    """Delete the category of lowest affinity decayed to ``ts``, the first by name of
    equal ones: ``min(sorted(aff), key=decayed to ts)``, without decaying and sorting
    every category again for each of an order's new categories.

    ``weakest`` is a heap of (affinity decayed to ``ts``, category), built here when
    empty; while it is not, whoever changes ``aff`` at ``ts`` pushes the changed
    category's new pair. A pair whose category is gone or whose affinity changed since
    is stale, skipped when popped. Equal pairs order by name, as the names' sort did
    (affinities are finite: never NaN).
    """
    if not weakest:
        weakest.extend([(decayed(s, t, ts, hl), c) for c, (s, t) in aff.items()])
        heapq.heapify(weakest)
    while True:
        value, cat = heapq.heappop(weakest)
        entry = aff.get(cat)
        if entry is not None and decayed(entry[0], entry[1], ts, hl) == value:
            del aff[cat]
            return


def _line_key(user: UserState, props: dict[str, object]) -> str | None:
    """What identifies a cart line: product_id, else sku, else name (None: anonymous)."""
    pid = props.get("product_id")
    if isinstance(pid, str | int) and not isinstance(pid, bool) and pid != "":
        return str(pid)
    for prefix, key in ((_SKU, "sku"), (_NAME, "name")):
        val = props.get(key)
        if isinstance(val, str | int) and not isinstance(val, bool) and val != "":
            return prefix + str(val)
    return None


def _add_line(
    user: UserState,
    props: dict[str, object],
    limits: Limits,
    hits: dict[str, int] | None,
    rate: float | None = 1.0,
) -> None:
    """One added product: a new line or more of an existing one (quantity default 1).

    Its ``price`` is multiplied by ``rate`` (the event's ``Money.factor``); with no rate
    (a currency ``money.rates`` does not name) it is 0, as an unusable price is, and
    counted as ``unusable:currency``."""
    key = _line_key(user, props)
    if key is None:
        user.anon_lines += 1
        key = f"{_ANON}{user.anon_lines}"
    qty = props.get("quantity", 1)
    if type(qty) is not int or not 0 < qty <= MAX_QUANTITY:
        # 2.0 is two (a JSON Number, as Segment's spec types it), so is "2" (a plain
        # decimal text, ``amounts``); anything else counts as 1.
        given, qty = qty, quantity(qty)
        if qty is None:
            if "quantity" in props:
                hit(hits, "unusable:quantity_text" if type(given) is str else "unusable:quantity")
            qty = 1
    given = props.get("price", 0.0)
    if type(given) is float or type(given) is int:  # ``amount``'s common case, inline
        price = float(given) if 0 <= given <= MAX_AMOUNT else None
    else:
        price = amount(given)
    if price is None:
        if "price" in props:
            hit(hits, "unusable:price_text" if type(given) is str else "unusable:price")
        price = 0.0
    elif rate is None:
        if "price" in props:
            hit(hits, "unusable:currency")
        price = 0.0
    elif rate != 1.0:
        price *= rate
        if price > MAX_AMOUNT:
            hit(hits, "unusable:price")
            price = 0.0
    prev = user.cart.get(key)
    if prev is None and len(user.cart) >= limits.cart_lines:
        hit(hits, "cart_lines")
        return
    if prev is not None and "price" not in props:
        price = prev[1]  # more of the same line: its known price stays
    cat = props.get("category")
    if prev is not None:
        qty += prev[2]
        if qty > MAX_QUANTITY:  # more of a line than any shop sells: it holds the most
            hit(hits, "unusable:quantity")
            qty = MAX_QUANTITY
    # An unusable category (see ``usable_category``) is not kept: the line has none.
    user.cart[key] = (cat if isinstance(cat, str) and usable_category(cat) else "", price, qty)


def _remove_line(user: UserState, props: dict[str, object]) -> bool:
    """Remove the identified line, or without identity the latest anonymous one."""
    key = _line_key(user, props)
    if key is not None:
        return user.cart.pop(key, None) is not None
    anon = [k for k in user.cart if k.startswith(_ANON)]
    if not anon:
        return False
    del user.cart[max(anon, key=lambda k: int(k[len(_ANON) :]))]
    return True


def identify(
    user: UserState,
    ev: Event,
    wanted: frozenset[str],
    pii: frozenset[str],
    limits: Limits,
    hits: dict[str, int] | None = None,
) -> None:
    """Keep the identify traits some rule reads (``wanted``), never a PII one.

    A trait named in ``privacy.pii_fields`` is never kept, not even hashed, and traits
    never reach an output. Only texts up to ``limits.trait_chars``, numbers and
    booleans are kept.
    """
    traits = ev.traits
    if not traits:
        return
    kept = user.traits
    for key in sorted(wanted):
        if key not in traits or key.lower() in pii:
            continue
        if kept is None:
            kept = user.traits = {}
        _keep(kept, key, traits[key], limits, hits)


def group(
    user: UserState,
    ev: Event,
    wanted: frozenset[str],
    pii: frozenset[str],
    limits: Limits,
    hits: dict[str, int] | None = None,
) -> None:
    """Keep the account traits some rule reads (``wanted``: the names of ``group.NAME``)
    of the user's latest group call in event time, as ``identify`` keeps a person's.

    A call naming the account of the traits kept (``GROUP_ID``: the digest of its
    ``groupId``) updates them, as identify traits are updated: a trait it names is set
    (``null`` removes it), the others stay, so a server library's call with one changed
    trait, or none (a user joined to the account), loses nothing. A call naming another
    account, or none known, replaces them. A call older than the one kept (a late one)
    changes nothing. Kept in ``user.traits`` under ``GROUP`` + NAME, with the call's time
    under ``GROUP_AT`` and the account's digest under ``GROUP_ID``; all count towards
    ``limits.traits``.

    >>> u = UserState("u1", first_seen=0.0)
    >>> ev = Event("m1", "u1", None, "group", "", 10.0, "identity", {}, traits={"plan": "pro"})
    >>> group(u, ev, frozenset({"plan", "seats"}), frozenset(), Limits()); u.traits
    {'@group': 10.0, 'group.plan': 'pro'}
    >>> ev.ts, ev.traits = 5.0, {"seats": 3}  # older: changes nothing
    >>> group(u, ev, frozenset({"plan", "seats"}), frozenset(), Limits()); u.traits
    {'@group': 10.0, 'group.plan': 'pro'}
    >>> ev.ts, ev.traits = 20.0, {"seats": 3, GROUP_ID: "a1"}  # an account: replaced
    >>> group(u, ev, frozenset({"plan", "seats"}), frozenset(), Limits()); u.traits
    {'@group': 20.0, '@group:id': 'a1', 'group.seats': 3}
    >>> ev.ts, ev.traits = 30.0, {"plan": "team", GROUP_ID: "a1"}  # the same: updated
    >>> group(u, ev, frozenset({"plan", "seats"}), frozenset(), Limits()); u.traits
    {'@group': 30.0, '@group:id': 'a1', 'group.seats': 3, 'group.plan': 'team'}
    """
    kept = user.traits
    at = -INF if kept is None else group_at(kept)
    if ev.ts < at:
        return
    if at == -INF and len(kept or NO_ITEMS) >= limits.traits:
        hit(hits, "traits")  # as a new trait: the account is not kept
        return
    if kept is None:
        kept = user.traits = {}
    traits = ev.traits or {}
    account = traits.get(GROUP_ID)
    if account is None or kept.get(GROUP_ID) != account:  # another account: replaced
        for key in [k for k in kept if k.startswith(GROUP)]:
            del kept[key]
    kept[GROUP_AT] = ev.ts
    if isinstance(account, str):
        kept[GROUP_ID] = account
    else:
        kept.pop(GROUP_ID, None)
    for name in sorted(wanted):
        if name in traits and name.lower() not in pii:
            _keep(kept, GROUP + name, traits[name], limits, hits)


def group_at(traits: Mapping[str, str | float | bool]) -> float:
    """The event time of the group call whose account traits ``traits`` holds; -INF for
    none."""
    at = traits.get(GROUP_AT)
    return at if type(at) is float else -INF


def _keep(
    kept: dict[str, str | float | bool],
    key: str,
    val: object,
    limits: Limits,
    hits: dict[str, int] | None,
) -> None:
    """Keep ``val`` under ``key`` if usable and within the bound; ``None`` removes it."""
    if val is None:
        kept.pop(key, None)
        return
    if not isinstance(val, str | int | float | bool) or (
        isinstance(val, str) and len(val) > limits.trait_chars
    ):
        hit(hits, "unusable:trait_value")
        return
    if key not in kept and len(kept) >= limits.traits:
        hit(hits, "traits")
        return
    kept[key] = val


def affinity(user: UserState, category: str, now: float, half_life: float) -> float:
    """The user's decayed affinity to ``category`` at ``now``."""
    entry = user.affinity.get(category)
    return 0.0 if entry is None else decayed(entry[0], entry[1], now, half_life)


def top_category(user: UserState, now: float, half_life: float) -> str:
    """The category with the highest decayed affinity ('' when none)."""
    best, best_score = "", 0.0
    for cat in sorted(user.affinity):
        score = affinity(user, cat, now, half_life)
        if score > best_score:
            best, best_score = cat, score
    return best


def window(user: UserState, metric: str, seconds: float, now: float) -> tuple[float, float]:
    """Sum of ``metric`` over sessions started within ``(now - seconds, now]``.

    Returns ``(value, next_change)``: the event time at which the oldest session
    counted leaves the window (``inf`` when nothing will leave). ``metric``
    "sessions" counts sessions.
    """
    cutoff = now - seconds
    total = 0.0
    oldest = INF
    idx = HISTORY_METRICS.get(metric)
    for h in user.history:
        start = h[H_START]
        if cutoff < start <= now:
            total += 1 if idx is None else h[idx]
            if start < oldest:
                oldest = start
    s = user.session
    if s is not None and cutoff < s.start <= now:
        total += 1 if idx is None else s.metric(idx)
        if s.start < oldest:
            oldest = s.start
    return total, (oldest + seconds if oldest < INF else INF)


def cart_summary(user: UserState) -> dict[str, object]:
    """The cart as an action payload: products (sorted), item count and value.

    A line known by sku or name carries that instead of ``product_id``; an anonymous
    line carries neither.
    """
    products: list[dict[str, object]] = []
    for key, (c, p, q) in sorted(user.cart.items()):
        line: dict[str, object] = {"category": c, "price": round_places(p, 2), "quantity": q}
        if key.startswith(_SKU):
            line["sku"] = key[len(_SKU) :]
        elif key.startswith(_NAME):
            line["name"] = key[len(_NAME) :]
        elif not key.startswith(_ANON):
            line["product_id"] = key
        products.append(line)
    return {
        "products": products,
        "items": sum(q for _, _, q in user.cart.values()),
        "value": round_places(sum((p * q for _, p, q in user.cart.values()), 0.0), 2),
    }


def profile(
    user: UserState, now: float, half_life: float, models: bool = True
) -> dict[str, object]:
    """The live profile other services read (Redis hash fields, profiles.jsonl).

    ``models``: whether the online models run; without them ``cluster`` and
    ``intent_score`` are null (the profile contract's "models off"), as a session's
    score is, so a reader cannot take them for a cold start or a score of 0."""
    # Orders and revenue right now: the closed sessions' (counted at their close) and the
    # open session's, so an order is in the profile (and Redis) the moment it is applied.
    orders, revenue, s = user.total_orders, user.total_revenue, user.session
    if s is not None:  # (a session without an order adds 0, converted or not)
        orders += s.orders
        revenue += s.order_value  # the sum ``sessions.close`` makes: the same float after it
    return {
        "user_id": user.user_id,
        "segments": sorted(user.segments),
        "cluster": user.cluster if models else None,
        "intent_score": round_places(user.intent_score, 6) if models else None,
        # The latest page, screen or track; a profile with none yet (only an identify or
        # an alias) is last seen at that call: the profile contract has no null here.
        "last_seen": iso(
            user.last_ts if user.last_ts > -INF else max(user.last_seen, user.first_seen)
        ),
        "first_seen": iso(user.first_seen),
        "sessions": user.total_sessions,
        "events": user.total_events,
        "orders": orders,
        "revenue": round_places(revenue, 2),
        "top_category": top_category(user, now, half_life),
        "video_completions": dict(sorted((user.video_completions or NO_ITEMS).items())),
        "cart_items": sum(q for _, _, q in user.cart.values()),
        "cart_value": round_places(sum((p * q for _, p, q in user.cart.values()), 0.0), 2),
        "device": user.device,
        "locale": user.locale,
        "recommendations": recommendations_of(user) or {},
        "updated_at": iso(now),
    }
