"""One user's state as compact, explicit, versioned bytes: ``encode_user``, ``decode_user``.

The form of a user in recovery snapshots and in the shard's cold tier. A MessagePack
array: the format version, then every field of ``UserState`` in ``USER_FIELDS`` order
as plain values (an open session as an array in ``SESSION_FIELDS`` order, an
experiment exposure in ``EXPOSED_FIELDS`` order, the recommender's memory in
``RECO_FIELDS`` order). Floats are 64-bit (bit for bit, infinities included), ints
stay ints, dicts keep their insertion order, and what was a tuple or a list comes
back as one. No code runs on decoding: unlike a pickle, these bytes name no class.

A field added to one of those dataclasses must be taught here (a contract test
compares the field lists); a changed layout gets a new ``VERSION``.

>>> u = UserState("u1", first_seen=0.0)
>>> u.segments["vip"] = 5.0
>>> decode_user(encode_user(u)) == u
True
>>> decode_user(b"\\x92\\x07\\xa1x")
Traceback (most recent call last):
...
ValueError: user state format version 7 is not known to this build (it reads versions 1, 2, 3, 4, 5)
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from audienceflow.operators.lab import Exposed
from audienceflow.operators.state import (
    H_ORDERS,
    OpenSession,
    RecoUser,
    StoredRecs,
    UserState,
    recommendations_of,
)

# 2: an open session counts its orders, and the order ids it counted;
# 3: an exposure remembers the order ids its goal counted, and the arms it was under;
# 4: ``known``, after every other field (an older user reads as never seen by a userId);
# 5: a history session says whether it converted (``sessions.conversion_events``), after
#    its other values (an older one reads as converted when it had an order); and
#    ``orders_seen``, after ``known`` (an older user reads as remembering no earlier order).
VERSION: Final = 5
READS: Final = (1, 2, 3, 4, 5)  # version 1 is read as one order per converted session

USER_FIELDS = (
    "user_id",
    "first_seen",
    "last_ts",
    "session",
    "session_seq",
    "history",
    "total_events",
    "total_sessions",
    "total_orders",
    "total_revenue",
    "last_session_converted",
    "affinity",
    "video_completions",
    "cart",
    "cart_updated",
    "last_order_ts",
    "segments",
    "segment_recheck",
    "timers",
    "cancelled",
    "delivered",
    "device",
    "locale",
    "channel",
    "intent_score",
    "cluster",
    "scheduled",
    "model",
    "last_seen",
    "via",
    "recommendations",
    "experiments",
    "tracks",
    "traits",
    "anon_lines",
    "known",
    "orders_seen",
)
SESSION_FIELDS = (
    "session_id",
    "start",
    "last",
    "events",
    "page_views",
    "screen_views",
    "by_category",
    "engaged",
    "max_page",
    "page_start",
    "max_scroll",
    "products",  # dict[str, None]: its keys
    "categories",  # dict[str, None]: its keys
    "converted",
    "order_value",
    "cart_adds",
    "product_views",
    "searches",
    "last_step",
    "funnel_reached",
    "intent_before_funnel",
    "device",
    "channel",
    "orders",
    "order_ids",
)
EXPOSED_FIELDS = (
    "arm",
    "first_at",
    "pre",
    "propensity",
    "converted",
    "revenue",
    "order_ids",
    "layout",
)
RECO_FIELDS = ("recent", "bought", "seen")  # bought: dict[str, None]: its keys
# Keys of ``UserState.model`` (models/vectors.py) whose values are tuples; "reco" is a
# ``RecoUser``; any other key must hold a plain scalar.
MODEL_TUPLES: Final = frozenset({"h", "x"})
_SCALARS: Final = (str, int, float, bool, type(None))

# A lazy container of ``UserState`` that is None is written as the empty map it stands for.
_EMPTY: Final[dict[str, Any]] = {}
_pack: Final = msgpack.Packer(
    use_bin_type=True, autoreset=True, unicode_errors="surrogatepass"
).pack


def encode_user(u: UserState) -> bytes:
    """The user's state as bytes (see the module docstring for the layout)."""
    s = u.session
    ex = u.experiments
    recs = recommendations_of(u)  # lists, never a pending one (the format names no class)
    data: bytes = _pack(
        (
            VERSION,
            u.user_id,
            u.first_seen,
            u.last_ts,
            None if s is None else _session(s),
            u.session_seq,
            u.history,
            u.total_events,
            u.total_sessions,
            u.total_orders,
            u.total_revenue,
            u.last_session_converted,
            u.affinity,
            u.video_completions or _EMPTY,
            u.cart,
            u.cart_updated,
            u.last_order_ts,
            u.segments,
            u.segment_recheck,
            u.timers or _EMPTY,
            u.cancelled or _EMPTY,
            u.delivered,
            u.device,
            u.locale,
            u.channel,
            u.intent_score,
            u.cluster,
            u.scheduled,
            _model(u.model, u.user_id) if u.model else None,
            u.last_seen,
            u.via,
            None if recs is None else _recs(recs),
            None if ex is None else {k: _exposed(e) for k, e in ex.items()},
            u.tracks or _EMPTY,
            u.traits or _EMPTY,
            u.anon_lines,
            u.known,
            u.orders_seen,
        )
    )
    return data


def _session(s: OpenSession) -> tuple[Any, ...]:
    return (
        s.session_id,
        s.start,
        s.last,
        s.events,
        s.page_views,
        s.screen_views,
        s.by_category,
        s.engaged,
        s.max_page,
        s.page_start,
        s.max_scroll,
        tuple(s.products),
        tuple(s.categories),
        s.converted,
        s.order_value,
        s.cart_adds,
        s.product_views,
        s.searches,
        s.last_step,
        s.funnel_reached,
        s.intent_before_funnel,
        s.device,
        s.channel,
        s.orders,
        s.order_ids,
    )


def _exposed(e: Exposed) -> tuple[Any, ...]:
    return (e.arm, e.first_at, e.pre, e.propensity, e.converted, e.revenue, e.order_ids, e.layout)


def _model(m: dict[str, Any], uid: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in m.items():
        if k == "reco":
            out[k] = (v.recent, tuple(v.bought), v.seen)
        elif k in MODEL_TUPLES or isinstance(v, _SCALARS):
            out[k] = v
        else:
            raise TypeError(
                f"user state codec: model key {k!r} of user {uid!r} holds a "
                f"{type(v).__name__}; teach operators/codec.py its encoding"
            )
    return out


def _recs(recs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each domain's items as columns: their keys once, then one row of values per item."""
    out: dict[str, Any] = {}
    for domain, items in recs.items():
        keys = tuple(items[0]) if items else ()
        if all(len(r) == len(keys) and tuple(r) == keys for r in items):
            out[domain] = (keys, [tuple(r.values()) for r in items])
        else:  # items of different shapes (none today): each dict as it is
            out[domain] = (None, items)
    return out


def _unrecs(recs: dict[str, Any]) -> StoredRecs:  # lists only, none pending
    return {
        domain: list(rows) if keys is None else [dict(zip(keys, r, strict=True)) for r in rows]
        for domain, (keys, rows) in recs.items()
    }


def decode_user(data: bytes) -> UserState:
    """The user state ``encode_user`` wrote; ``ValueError`` for another format version."""
    t = msgpack.unpackb(data, use_list=False, raw=False, unicode_errors="surrogatepass")
    if t[0] not in READS:
        raise ValueError(
            f"user state format version {t[0]!r} is not known to this build "
            f"(it reads versions {', '.join(map(str, READS))})"
        )
    (_, uid, first_seen, last_ts, s, session_seq, history, total_events, total_sessions,
     total_orders, total_revenue, last_converted, affinity, video, cart, cart_updated,
     last_order_ts, segs, recheck, timers, cancelled, delivered, device, locale, channel,
     intent, cluster, scheduled, model, last_seen, via, recs, ex, tracks, traits,
     anon_lines) = t[:36]  # fmt: skip
    return UserState(
        uid,
        first_seen,
        last_ts,
        None if s is None else _open_session(s, t[0]),
        session_seq,
        list(history) if t[0] > 4 else [(*h, h[H_ORDERS] > 0) for h in history],
        total_events,
        total_sessions,
        total_orders,
        total_revenue,
        last_converted,
        affinity,
        video,
        cart,
        cart_updated,
        last_order_ts,
        segs,
        recheck,
        timers,
        cancelled,
        list(delivered),
        device,
        locale,
        channel,
        intent,
        cluster,
        scheduled,
        {} if model is None else _unmodel(model),
        last_seen,
        via,
        None if recs is None else _unrecs(recs),
        None if ex is None else {k: _unexposed(e) for k, e in ex.items()},
        {k: list(v) if type(v) is tuple else v for k, v in tracks.items()} if tracks else None,
        traits,
        anon_lines,
        t[36] if t[0] > 3 else False,
        t[37] if t[0] > 4 else b"",
    )


def _open_session(s: tuple[Any, ...], version: int) -> OpenSession:
    (sid, start, last, events, page_views, screen_views, by_category, engaged, max_page,
     page_start, max_scroll, products, categories, converted, order_value, cart_adds,
     product_views, searches, last_step, funnel_reached, before_funnel, device,
     channel) = s[:23]  # fmt: skip
    # Version 1 kept no order count; it counted a converted session as one order.
    orders = s[23] if version > 1 else (1 if converted else 0)
    order_ids = dict(s[24]) if version > 1 else {}
    return OpenSession(
        sid,
        start,
        last,
        events,
        page_views,
        screen_views,
        by_category,
        engaged,
        max_page,
        page_start,
        max_scroll,
        dict.fromkeys(products),
        dict.fromkeys(categories),
        converted,
        order_value,
        cart_adds,
        product_views,
        searches,
        last_step,
        funnel_reached,
        before_funnel,
        device,
        channel,
        orders,
        order_ids,
    )


def _unexposed(e: tuple[Any, ...]) -> Exposed:
    # Before version 3 an exposure remembered no order ids and no layout (6 values): it
    # counts under the arms its snapshot's sums were of.
    arm, first_at, pre, propensity, converted, revenue = e[:6]
    if len(e) == 6:
        return Exposed(arm, first_at, pre, propensity, converted, revenue)
    return Exposed(arm, first_at, pre, propensity, converted, revenue, list(e[6]), e[7])


def _unmodel(m: dict[str, Any]) -> dict[str, Any]:
    reco = m.get("reco")
    if reco is not None:
        recent, bought, seen = reco
        m["reco"] = RecoUser({k: list(v) for k, v in recent.items()}, dict.fromkeys(bought), seen)
    return m
