"""Seeded synthetic Segment-spec clickstream, with planted behaviour and planted faults.

Users follow one of four archetypes (deal_seeker, browser, loyal_customer, video_fan) with
heavy-tailed activity, purchase funnels, cart abandonment and video binges; the arrival order
then gets invalid lines, duplicates and late events at the given rates. Equal arguments give
byte-identical lines. Times are integer milliseconds internally; sessions of one user are at
least 35 min apart and gaps inside a session are at most 12 min. The returned truth says what
was planted; its counts are over unique valid events unless named otherwise.

    >>> lines, truth = generate(users=20, seed=1)
    >>> len(truth["archetypes"]), truth["lines"] == len(lines)
    (20, True)

Script: ``python examples/generate.py --users 300 --seed 7 --out examples/stream.jsonl.gz``.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from bisect import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from random import Random
from typing import Any

import orjson

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MIN, HOUR, LATE_MS = 60_000, 3_600_000, 110_000  # late: under a 2 min allowed lateness
CATEGORIES = ("deals", "electronics", "home", "fashion", "beauty", "sports")
VIDEO_CATEGORIES = ("cooking", "fitness", "tech", "travel")
LOCALES = ("en-US", "en-US", "en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "nl-NL")
MEDIUM = {"google": "cpc", "newsletter": "email", "direct": "none", "facebook": "social"}
SOURCES = tuple(MEDIUM)
DEVICES = ("mobile", "desktop", "tablet")
OFFSETS = (("+01:00", 60), ("+02:00", 120), ("-05:00", -300), ("+05:30", 330))  # minutes
QUERIES = ("headphones", "running shoes", "sofa", "lipstick", "deals", "laptop", "yoga mat", "lamp")
PLANS = ("free", "plus", "pro")
NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov")
INVALID_KINDS = (
    "not_json",
    "not_object",
    "no_identity",
    "missing_timestamp",
    "bad_timestamp",
    "naive_timestamp",
    "unknown_type",
    "missing_group_id",
    "wrong_field_type",
    "oversize",
)
# Planted kinds are the validator's dead-letter reasons, except this one:
REASON = {"naive_timestamp": "bad_timestamp"}
# name -> (path, page category); None means "the category being looked at".
PAGES = {
    "Home": ("/", "landing"),
    "Deals": ("/deals", "deals"),
    "Category": ("/c/", None),
    "Product": ("/p/", None),
    "Search Results": ("/search", "search"),
    "Cart": ("/cart", "cart"),
}
PAGE_NAMES, PAGE_CUM = ("Home", "Category", "Product", "Search Results", "Cart"), (3, 6, 8, 9, 10)
ACTIONS = ("page", "scroll", "view", "add", "remove", "search", "video")
# archetype -> (session multiplier, actions lo, hi, conversion, device weights, action weights)
PROFILES: dict[str, tuple[float, int, int, float, tuple[int, ...], tuple[int, ...]]] = {
    "deal_seeker": (1.4, 2, 5, 0.03, (55, 35, 10), (22, 6, 40, 22, 3, 6, 1)),
    "browser": (0.9, 5, 15, 0.01, (50, 40, 10), (40, 33, 19, 2, 0, 5, 1)),
    "loyal_customer": (1.0, 3, 8, 0.4, (20, 70, 10), (18, 6, 44, 16, 2, 14, 0)),
    "video_fan": (1.0, 2, 4, 0.03, (60, 25, 15), (18, 8, 10, 2, 0, 2, 60)),
}
ARCHETYPES, ARCHETYPE_CUM = tuple(PROFILES), (30, 65, 80, 100)
_CUM = {a: [sum(p[5][: i + 1]) for i in range(len(ACTIONS))] for a, p in PROFILES.items()}
_prices = Random(0)  # one catalogue for every seed
CATALOG = {
    c: [
        {"product_id": f"p{j}{k:03d}", "name": f"{c.title()} {k}", "category": c, "price": p}
        for k, p in enumerate(_prices.randint(399, 24999) / 100 for _ in range(40))
    ]
    for j, c in enumerate(CATEGORIES)
}


@dataclass(slots=True)
class _User:
    key: str
    user_id: str | None
    anon: str
    arch: str
    device: str
    locale: str
    ip: str
    source: str
    consent: dict[str, bool]
    fav: str
    vfav: tuple[str, str]
    screens: bool
    cart: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    viewed: dict[str, Any] | None = None
    group: _Group | None = None  # item_groups > 0: the latent product group the user browses
    login_session: int = 0  # login_midway: the session this known user identifies in


@dataclass(frozen=True, slots=True)
class _Group:
    """Products of one latent group with cumulative popularity weights, and the noise rate."""

    products: list[dict[str, Any]]
    cum: list[float]
    noise: float
    everything: _Group | None = None  # the whole catalogue, for the noisy picks
    by_category: dict[str, list[dict[str, Any]]] | None = None  # group_categories: per category


def _groups(n: int, noise: float, skew: float, by_category: bool = False) -> list[_Group]:
    """The catalogue cut into ``n`` latent groups across categories (fixed for every seed).

    Products get Zipf-like popularity ``1 / rank**skew`` over a fixed shuffle; a user
    of a group picks within it with probability ``1 - noise``, else from everything.
    """
    rng = Random(f"item-groups/{n}")
    products = [p for c in CATEGORIES for p in CATALOG[c]]
    rng.shuffle(products)
    weights = [1.0 / (r + 1) ** skew for r in range(len(products))]

    def group(ps: list[dict[str, Any]], ws: list[float], every: _Group | None) -> _Group:
        cum, t = [], 0.0
        for w in ws:
            t += w
            cum.append(t)
        return _Group(ps, cum, noise, every)

    everything = group(products, weights, None)
    out = [group(products[g::n], weights[g::n], everything) for g in range(n)]
    if by_category:
        for g in out:
            cats: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
            for p in g.products:
                cats[p["category"]].append(p)
            object.__setattr__(g, "by_category", cats)
    return out


def _pick(rng: Random, g: _Group) -> dict[str, Any]:
    if g.everything is not None and rng.random() < g.noise:
        g = g.everything
    return g.products[min(bisect(g.cum, rng.random() * g.cum[-1]), len(g.products) - 1)]


@dataclass(slots=True)
class _Stats:
    counts: Counter[str] = field(default_factory=Counter)
    names: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, event or page name)
    binge_users: list[str] = field(default_factory=list)  # >= 3 completions in one category


_DAYS: dict[int, str] = {}


def _iso(ms: int, suffix: str = "Z") -> str:
    """Epoch ms → ``2026-03-02T08:14:03.120Z``; pass local ms and the offset as suffix."""
    day, rem = divmod(ms, 86_400_000)
    d = _DAYS.get(day) or _DAYS.setdefault(day, (date(1970, 1, 1) + timedelta(day)).isoformat())
    s, milli = divmod(rem, 1000)
    h, s = divmod(s, 3600)
    return f"{d}T{h:02d}:{s // 60:02d}:{s % 60:02d}.{milli:03d}{suffix}"


def _new_user(rng: Random, i: int, consent_withheld_rate: float) -> _User:
    arch = ARCHETYPES[bisect(ARCHETYPE_CUM, rng.random() * 100)]
    anon = f"anon-{rng.getrandbits(48):012x}"
    user_id = f"u{i:05d}" if rng.random() < 0.7 else None
    device = rng.choices(DEVICES, PROFILES[arch][4])[0]
    pers = rng.random() >= consent_withheld_rate
    vfav = tuple(rng.sample(VIDEO_CATEGORIES, 2))
    return _User(
        user_id or anon,
        user_id,
        anon,
        arch,
        device,
        rng.choice(LOCALES),
        f"203.0.113.{rng.randint(1, 254)}",
        "newsletter" if arch == "loyal_customer" and rng.random() < 0.5 else rng.choice(SOURCES),
        {"personalization": pers, "advertising": pers and rng.random() < 0.8},
        rng.choice(CATEGORIES[1:]),
        (vfav[0], vfav[1]),
        device == "mobile" and rng.random() < 0.4,
    )


def _product(rng: Random, u: _User) -> dict[str, Any]:
    g = u.group
    if g is not None and g.by_category is None:
        return _pick(rng, g)
    r = rng.random()
    if u.arch == "deal_seeker":
        cat = "deals" if r < 0.75 else rng.choice(CATEGORIES)
    else:
        cat = u.fav if r < 0.6 else rng.choice(CATEGORIES)
    if g is not None and g.by_category and g.by_category[cat] and rng.random() >= g.noise:
        return rng.choice(g.by_category[cat])  # the user's group, in the category they chose
    return rng.choice(CATALOG[cat])


def _page(rng: Random, u: _User, name: str | None = None) -> tuple[int, str, str, dict[str, Any]]:
    if name is None:
        deal = u.arch == "deal_seeker" and rng.random() < 0.7
        name = "Deals" if deal else PAGE_NAMES[bisect(PAGE_CUM, rng.random() * 10)]
    path, cat = PAGES[name]
    if name == "Product":
        p = _product(rng, u)
        path, cat = path + p["product_id"], p["category"]
    elif cat is None:
        cat = u.fav if rng.random() < 0.6 else rng.choice(CATEGORIES)
        path += cat
    props = {"path": path, "title": f"{name} | Shop", "category": cat}
    if u.screens:
        return -1, "screen", name, props
    props["url"] = "https://shop.example.com" + path
    return -1, "page", name, props


def _act(rng: Random, u: _User, act: str, steps: list[Any]) -> None:
    if act == "page":
        steps.append(_page(rng, u))
    elif act == "scroll":
        steps.append((-1, "track", "Page Scrolled", {"percent": rng.choice((25, 50, 75, 100))}))
    elif act == "add":
        p, q = u.viewed or _product(rng, u), 1 if rng.random() < 0.8 else rng.randint(2, 3)
        u.cart.append((p, q))
        steps.append((-1, "track", "Product Added", {**p, "quantity": q}))
    elif act == "remove" and u.cart:
        p, q = u.cart.pop(rng.randrange(len(u.cart)))
        steps.append((-1, "track", "Product Removed", {**p, "quantity": q}))
    elif act in ("view", "remove"):  # nothing to remove: look at something instead
        u.viewed = _product(rng, u)
        steps.append((-1, "track", "Product Viewed", u.viewed))
    elif act == "search":
        steps.append((-1, "track", "Products Searched", {"query": rng.choice(QUERIES)}))
    elif act == "video":
        r = rng.random()
        cat = u.vfav[0] if r < 0.7 else u.vfav[1] if r < 0.92 else rng.choice(VIDEO_CATEGORIES)
        length = rng.randint(60, 600)
        asset = f"v{VIDEO_CATEGORIES.index(cat)}{rng.randrange(60):03d}"
        base = {"content_asset_id": asset, "category": cat, "total_length": length}
        half = length // 2
        steps.append((-1, "track", "Video Playback Started", {**base, "position": 0}))
        steps.append((half * 1000, "track", "Video Content Playing", {**base, "position": half}))
        if rng.random() < 0.7:
            end = {**base, "position": length}
            steps.append(((length - half) * 1000, "track", "Video Content Completed", end))


def _checkout(rng: Random, u: _User, steps: list[Any]) -> None:
    """The quick funnel that ends a converting session; empties the cart."""
    p = _product(rng, u)
    u.cart.append((p, 1))
    items = [
        {k: p[k] for k in ("product_id", "category", "price")} | {"quantity": q} for p, q in u.cart
    ]
    revenue = round(sum(p["price"] * q for p, q in u.cart), 2)
    total = round(revenue + (0 if revenue >= 50 else 4.99), 2)
    oid = f"o-{rng.getrandbits(40):010x}"
    done = {"order_id": oid, "total": total, "revenue": revenue, "products": items}
    for name, props in (
        ("Product Viewed", p),
        ("Product Added", {**p, "quantity": 1}),
        ("Checkout Started", {"order_id": oid, "value": revenue, "products": items}),
        ("Payment Info Entered", {"order_id": oid}),
        ("Order Completed", done),
    ):
        steps.append((rng.randint(3_000, 25_000), "track", name, props))
    u.cart.clear()


def _simulate(
    rng: Random, u: _User, t0: int, period: int, st: _Stats, login: Random | None = None
) -> list[Any]:
    """All events of one user as ``(epoch ms, line)`` in time order; counts go to ``st``.

    ``login``: a known user's sessions before the one picked with it are anonymous
    (no ``userId``, no identify); the user identifies in that session.
    """
    mult, lo, hi, p_conv, _, _ = PROFILES[u.arch]
    n = max(1, min(int(period / (4 * HOUR)) + 1, int(rng.paretovariate(1.8) * mult)))
    slot, end, out, cum, stats = period // n, t0, [], _CUM[u.arch], st.counts
    completions: Counter[str] = Counter()
    known, first_known = u.user_id, 0
    if login is not None and known is not None and n > 1:
        first_known = login.randint(1, n - 1)  # one session at least on each side
    u.login_session = first_known
    for s in range(n):
        u.user_id = known if s >= first_known else None
        start = t0 + s * slot + int(rng.random() * slot * 0.9)
        if s and rng.random() < 0.1:
            start = end + rng.randint(35 * MIN, 59 * MIN)
        elif s and start < end + HOUR:
            start = end + rng.randint(HOUR, 2 * HOUR)
        if start > t0 + period:
            break
        device = u.device if rng.random() < 0.9 else rng.choice(DEVICES)
        locale = u.locale if rng.random() < 0.97 else rng.choice(LOCALES)
        src = u.source if rng.random() < 0.6 else rng.choice(SOURCES)
        ctx = {
            "device": {"type": device},
            "locale": locale,
            "ip": u.ip,
            "campaign": {"source": src, "medium": MEDIUM[src]},
            "consent": {"categoryPreferences": u.consent},
        }
        open_cart = bool(u.cart)
        steps = [_page(rng, u, "Deals" if u.arch == "deal_seeker" else "Home")]
        if u.user_id and (s == first_known or rng.random() < 0.15):
            traits = {
                "email": f"{u.user_id}@example.com",
                "phone": f"+1-555-{u.user_id[1:]}",
                "name": NAMES[int(u.user_id[1:]) % len(NAMES)],
                "plan": PLANS[int(u.user_id[1:]) % len(PLANS)],
            }
            steps.append((-1, "identify", "identify", traits))
        adds = 0
        for _ in range(rng.randint(lo, hi)):
            act = ACTIONS[bisect(cum, rng.random() * cum[-1])]
            adds += act == "add"
            _act(rng, u, act, steps)
        p = p_conv * (2.5 if open_cart else 1.0) * (2.0 if src == "newsletter" else 1.0)
        if rng.random() < p:
            stats["orders"] += 1
            stats["recovered_carts"] += open_cart
            _checkout(rng, u, steps)
        elif adds and u.cart:
            stats["abandoned_carts"] += 1
        stats["sessions"] += 1
        t, after_page = start, False
        for k, (gap, typ, name, props) in enumerate(steps):
            if k:
                t += gap if gap >= 0 else _gap(rng, after_page)
            after_page = typ == "page" or typ == "screen"
            out.append((t, _line(rng, u, ctx, t, typ, name, props)))
            st.names[typ, name] += 1
            if name == "Video Content Completed":
                completions[props["category"]] += 1
        end = t
    stats["events"] += len(out)
    if not u.consent["personalization"]:
        stats["consent_withheld_events"] += len(out)
    if completions and max(completions.values()) >= 3:
        st.binge_users.append(u.key)
    u.user_id = known
    return out


def _gap(rng: Random, after_page: bool) -> int:
    r = rng.random()
    if after_page and r < 0.05:
        return rng.randint(610_000, 720_000)  # long dwell on a page
    return rng.randint(300_000, 720_000) if r < 0.08 else rng.randint(5_000, 120_000)


def _line(
    rng: Random, u: _User, ctx: dict[str, Any], t: int, typ: str, name: str, props: dict[str, Any]
) -> bytes:
    r = rng.random()
    if r < 0.1:  # some senders stamp local time with an offset: same instant
        suffix, off = OFFSETS[int(r * 40)]
        ts = _iso(t + off * MIN, suffix)
    else:
        ts = _iso(t)
    ev: dict[str, Any] = {
        "type": typ,
        "messageId": f"m-{rng.getrandbits(64):016x}",
        "timestamp": ts,
        "anonymousId": u.anon,
    }
    if u.user_id:
        ev["userId"] = u.user_id
    if typ == "identify":
        ev["traits"] = props
    else:
        ev["event" if typ == "track" else "name"] = name
        ev["properties"] = props
    ev["context"] = ctx
    # orjson's bytes keep a 4 KiB allocation; a right-sized copy keeps 1.5M lines in ~1 GB.
    return memoryview(orjson.dumps(ev)).tobytes()


def _invalid(rng: Random, kind: str, nth: int, line: bytes) -> bytes:
    """A broken variant of ``line`` (with its own messageId) of the given kind."""
    ev = orjson.loads(line)
    ev["messageId"] = f"m-{rng.getrandbits(64):016x}"
    if kind == "not_json":
        raw = orjson.dumps(ev)
        return raw[: len(raw) // 2]
    if kind == "not_object":
        return orjson.dumps([ev])
    if kind == "no_identity":
        del ev["anonymousId"]
        ev.pop("userId", None)
    elif kind == "missing_timestamp":
        del ev["timestamp"]
    elif kind in ("bad_timestamp", "naive_timestamp"):
        ev["timestamp"] = "yesterday" if kind == "bad_timestamp" else ev["timestamp"][:19]
    elif kind in ("unknown_type", "missing_group_id"):
        ev["type"] = "bogus" if kind == "unknown_type" else "group"  # a group call: no groupId
    elif kind == "wrong_field_type" and nth % 2:
        # A fraction: a whole number is an id (Segment's libraries send one as is).
        ev["userId"] = 40000 + nth + 0.5
    elif kind == "wrong_field_type":
        ev["properties"] = "not-an-object"
    else:  # oversize: well over a 32 KiB line limit
        ev["properties"] = {**ev.get("properties", {}), "blob": "x" * 40_000}
    return orjson.dumps(ev)


def _arrive(
    rng: Random,
    events: list[Any],
    invalid_rate: float,
    duplicate_rate: float,
    out_of_order_rate: float,
    truth: dict[str, Any],
) -> list[bytes]:
    """Time-ordered events → arrival order, with late events, duplicates and invalid lines.

    A held-back line (late event or duplicate copy) is released after 1-5 later lines, but
    never after a line more than ``LATE_MS`` younger than it, so lateness stays under 2 min.
    """
    lines: list[bytes] = []
    held: list[list[Any]] = []  # [lines still to wait, deadline ms, ts, line, is duplicate]
    invalid = dict.fromkeys(INVALID_KINDS, 0)
    late = dups = n_inv = max_ts = 0

    def release(keep: Any) -> None:
        nonlocal held, late, dups, max_ts
        for h in held:
            if keep(h):
                continue
            lines.append(h[3])
            if h[4]:
                dups += 1
            else:  # late only if a younger event went out first
                late += h[2] < max_ts
                max_ts = max(max_ts, h[2])
        held = [h for h in held if keep(h)]

    for ts, line in events:
        if held:
            release(lambda h: ts <= h[1])  # noqa: B023
        r, new = rng.random(), None
        if r < out_of_order_rate:
            new = [rng.randint(1, 4), ts + LATE_MS, ts, line, False]
        else:
            lines.append(line)
            max_ts = max(max_ts, ts)
            if r < out_of_order_rate + duplicate_rate:
                new = [rng.randint(1, 5), ts + LATE_MS, ts, line, True]
        if held:
            for h in held:
                h[0] -= 1
            release(lambda h: h[0] > 0)
        if new:
            held.append(new)
        if invalid_rate and rng.random() < invalid_rate:
            kind = INVALID_KINDS[n_inv % len(INVALID_KINDS)]
            lines.append(_invalid(rng, kind, n_inv // len(INVALID_KINDS), line))
            invalid[kind] += 1
            n_inv += 1
    release(lambda h: False)
    reasons = Counter[str]()
    for kind, n in invalid.items():
        reasons[REASON.get(kind, kind)] += n
    truth.update(invalid=invalid, invalid_by_reason=dict(reasons), invalid_total=n_inv)
    truth.update(duplicates=dups, out_of_order=late)
    return lines


def generate(
    users: int,
    seed: int,
    days: float = 7.0,
    invalid_rate: float = 0.01,
    start: datetime | None = None,
    duplicate_rate: float = 0.005,
    consent_withheld_rate: float = 0.03,
    out_of_order_rate: float = 0.01,
    item_groups: int = 0,
    group_noise: float = 0.2,
    item_skew: float = 1.0,
    group_categories: bool = False,
    login_midway: float = 0.0,
) -> tuple[list[bytes], dict[str, Any]]:
    """Return (lines, truth): JSONL lines (bytes, no trailing newline) in arrival order.

    ``item_groups`` > 0 plants latent product groups across categories: each user
    browses and buys within one (a ``group_noise`` share of picks from the whole
    catalogue), products Zipf-popular with ``item_skew`` (not with ``group_categories``).
    ``item_groups=1`` is one group: popularity without any user structure. 0 (the default) keeps the
    category-preference stream, byte for byte. ``group_categories``: users still pick a
    category as their archetype does, then a product of their group in it (noise: any
    product of the category), so archetypes keep their category signal.
    ``login_midway``: the share of known users whose first sessions are anonymous and
    who identify later (0, the default, keeps the stream byte for byte).
    """
    start = START if start is None else start
    if start.tzinfo is None:
        raise ValueError(f"generate requires a timezone-aware start; got {start.isoformat()!r}")
    t0, period = int(start.timestamp() * 1000), int(days * 86_400_000)
    rng, st, events = Random(seed), _Stats(), []
    archetypes: dict[str, str] = {}
    withheld, identified = [], 0
    groups = _groups(item_groups, group_noise, item_skew, group_categories) if item_groups else []
    group_rng = Random(f"{seed}/item-groups")
    login_rng, logins = Random(f"{seed}/logins"), {}
    item_group: dict[str, int] = {}
    for i in range(users):
        u = _new_user(rng, i, consent_withheld_rate)
        if groups:
            g = group_rng.randrange(len(groups))
            u.group, item_group[u.key] = groups[g], g
        archetypes[u.key] = u.arch
        identified += u.user_id is not None
        if not u.consent["personalization"]:
            withheld.append(u.key)
        login = None
        if login_midway and u.user_id is not None and login_rng.random() < login_midway:
            login = login_rng
        events.extend(_simulate(rng, u, t0, period, st, login))
        if u.login_session:
            logins[u.user_id] = u.anon
    events.sort(key=itemgetter(0))  # stable: ties keep user order, so still deterministic
    truth: dict[str, Any] = {"seed": seed, "users": users, "days": days, "start": _iso(t0)}
    lines = _arrive(
        Random(f"{seed}/arrival"), events, invalid_rate, duplicate_rate, out_of_order_rate, truth
    )
    c, by_type, pages = st.counts, Counter[str](), Counter[str]()
    for (typ, name), n in st.names.items():
        by_type[typ] += n
        if typ in ("page", "screen"):
            pages[name] += n
    truth.update(
        lines=len(lines),
        valid_events=c["events"],
        sessions=c["sessions"],
        orders=c["orders"],
        abandoned_carts=c["abandoned_carts"],
        recovered_carts=c["recovered_carts"],
        identified_users=identified,
        consent_withheld_users=withheld,
        consent_withheld_events=c["consent_withheld_events"],
        events_by_type=dict(by_type),
        events_by_name={name: n for (typ, name), n in st.names.items() if typ == "track"},
        pages_by_name=dict(pages),
        video_binge_users=st.binge_users,
        archetype_counts=dict(Counter(archetypes.values())),
        archetypes=archetypes,
    )
    if login_midway:
        truth.update(login_midway=login_midway, logged_in_midway=logins)
    if groups:
        truth.update(
            item_groups=item_groups,
            group_noise=group_noise,
            group_categories=group_categories,
            user_item_group=item_group,
        )
    return lines, truth


def write(path: str | Path, lines: list[bytes]) -> None:
    """Write JSONL, gzip when the name ends in ``.gz`` (fixed header: equal lines, equal bytes)."""
    with open(path, "wb") as raw:
        f: Any = raw
        if str(path).endswith(".gz"):
            f = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        for i in range(0, len(lines), 10_000):  # in chunks: no second copy of a big stream
            f.write(b"\n".join(lines[i : i + 10_000]) + b"\n")
        f.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True, help="JSONL path; .gz compresses")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--invalid-rate", type=float, default=0.01)
    ap.add_argument("--duplicate-rate", type=float, default=0.005)
    ap.add_argument("--out-of-order-rate", type=float, default=0.01)
    ap.add_argument("--consent-withheld-rate", type=float, default=0.03)
    ap.add_argument("--item-groups", type=int, default=0, help="latent product groups (0: none)")
    ap.add_argument("--group-noise", type=float, default=0.2)
    ap.add_argument(
        "--login-midway", type=float, default=0.0, help="share of known users anonymous at first"
    )
    ap.add_argument("--item-skew", type=float, default=1.0)
    ap.add_argument("--group-categories", action="store_true", help="groups within categories")
    ap.add_argument("--start", type=datetime.fromisoformat, default=START, help="aware ISO-8601")
    ap.add_argument("--truth", help="write the ground truth JSON here")
    args = vars(ap.parse_args(argv))  # the remaining names are generate()'s parameters
    out, truth_path = args.pop("out"), args.pop("truth")
    lines, truth = generate(**args)
    write(out, lines)
    if truth_path:
        opts = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        Path(truth_path).write_bytes(orjson.dumps(truth, option=opts) + b"\n")
    counts = ", ".join(f"{truth[k]} {k}" for k in ("lines", "valid_events", "invalid_total"))
    print(f"{out}: {counts}, {truth['duplicates']} duplicates", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
