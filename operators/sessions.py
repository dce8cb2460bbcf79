"""Sessionization by event time.

A user's session ends after ``timeout`` seconds without events or when it
reaches ``max_length``; both are measured on event timestamps, never on
arrival time. Events arriving out of order within a session are counted in it
(its start moves back when needed); the shard decides lateness before an event
gets here.

>>> from audienceflow.operators.records import Event
>>> from audienceflow.operators.state import UserState
>>> u = UserState("u1", first_seen=0.0)
>>> spec = SessionSpec(timeout=1800.0, max_length=86400.0, engaged_gap_cap=600.0)
>>> for ts in (0.0, 60.0, 4000.0):
...     ev = Event("m%d" % ts, "u1", None, "page", "Home", ts, "navigation", {})
...     closed = observe(u, ev, spec)
>>> [(s.start, s.end, s.events) for s in closed]
[(0.0, 60.0, 2)]
>>> close(u, u.session.last + spec.timeout, "inactivity", spec).events
1
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from struct import pack, unpack_from
from typing import Final

from audienceflow.operators.amounts import MAX_AMOUNT
from audienceflow.operators.money import NO_MONEY, ORDERS, Money, count_currency
from audienceflow.operators.records import Event, Session, iso
from audienceflow.operators.state import OpenSession, UserState, hit, usable_category

# Where the intent model's features stop (``OpenSession.funnel_reached``): the checkout
# steps, and whatever converts a session.
FUNNEL_EVENTS: Final = frozenset({"Checkout Started", "Payment Info Entered", "Order Completed"})


def conversion_funnel(conversion_events: frozenset[str]) -> frozenset[str]:
    """The funnel events for these conversion events: the checkout steps and them (the
    score held before the first of them is the session's, so a conversion never scores
    itself)."""
    return FUNNEL_EVENTS | conversion_events


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """How sessions are cut and what in them counts as what."""

    timeout: float
    max_length: float
    engaged_gap_cap: float
    scroll_events: frozenset[str] = frozenset({"Page Scrolled", "Scroll Depth Reached"})
    product_events: frozenset[str] = frozenset({"Product Viewed", "Product Clicked"})
    cart_add_events: frozenset[str] = frozenset({"Product Added"})
    search_events: frozenset[str] = frozenset({"Products Searched"})
    order_events: frozenset[str] = frozenset({"Order Completed"})
    # ``sessions.conversion_events``: a session with one is ``converted`` (the intent
    # model's label); they are funnel events too (``conversion_funnel``). An order counts
    # its value whether or not it converts.
    conversion_events: frozenset[str] = frozenset({"Order Completed"})
    funnel_events: frozenset[str] = FUNNEL_EVENTS
    history_max: int = 64
    history_window: float = 30 * 86400.0
    money: Money = NO_MONEY  # the ``money`` section: what an order's value is in
    # A session lists at most this many products and categories (``state:``
    # ``max_session_products``, ``max_categories_per_user``): a bot's day-long session of
    # distinct products would otherwise make a record past a Kafka message's 1 MB.
    max_products: int = 500
    max_categories: int = 200
    # The orders a user remembers across sessions (``state.max_recent_orders``): see
    # ``seen_order``.
    max_recent_orders: int = 8


_NONE_CLOSED: Final[tuple[Session, ...]] = ()


def _listed(
    listed: dict[str, None], key: str, most: int, hits: dict[str, int] | None, bound: str
) -> None:
    """List ``key`` (new) in a session's products or categories, while there is room; a
    full list keeps its first ones, and the hit is counted under ``bound``."""
    if len(listed) < most:
        listed[key] = None
    else:
        hit(hits, bound)


def observe(
    user: UserState,
    ev: Event,
    spec: SessionSpec,
    hits: dict[str, int] | None = None,
    currencies: dict[str, list[int]] | None = None,
) -> Sequence[Session]:
    """Add ``ev`` to the user's session; return any session this event closed.
    ``hits``: where a full list of the session's products or categories is counted;
    ``currencies``: where an order whose value is summed is counted by the currency it
    names, with ``money.currency`` unset (``money.count_currency``).

    An event at or beyond the open session's timeout or maximum length closes
    it (at the deadline) and opens a new one. Most events close nothing: then
    the answer is one shared empty tuple, and the event is counted in the session
    here, not through a further call (once per event; a test compares it with
    the two functions it replaced).
    """
    closed: Sequence[Session] = _NONE_CLOSED
    s = user.session
    ts = ev.ts
    if s is not None and ts >= s.last:
        if ts >= s.last + spec.timeout:
            closed = [close(user, s.last + spec.timeout, "inactivity", spec, hits)]
            s = None
        elif ts >= s.start + spec.max_length:
            closed = [close(user, s.start + spec.max_length, "max_length", spec, hits)]
            s = None
    if s is None:
        user.session_seq += 1
        # Named by user and start time, so ids stay unique even after the user is evicted
        # and comes back (the ordinal restarts then). Live, a partition that rejoined
        # behind can open a session at or before a time of the user's earlier events,
        # after the session holding them closed (README "Time"); never in a replay, where
        # a session opens after the last one's timeout. Such a session's start time may
        # be the closed one's, so the ordinal keeps its id its own.
        sid = f"{user.user_id}:{iso(ts)}"
        s = OpenSession(sid if ts > user.last_ts else f"{sid}~{user.session_seq}", ts, ts)
        s.device = ev.device
        s.channel = ev.channel
        user.session = s
        user.total_sessions += 1
    # Count the event in the session.
    last = s.last
    if ts >= last:
        gap = ts - last
        cap = spec.engaged_gap_cap
        s.engaged += gap if gap < cap else cap
        s.last = ts
    elif ts < s.start:
        s.start = ts
    s.events += 1
    by_category = s.by_category
    category = ev.category
    by_category[category] = by_category.get(category, 0) + 1
    name = ev.name
    props = ev.properties
    page_start = s.page_start
    if page_start is not None and ts > page_start and ts - page_start > s.max_page:
        s.max_page = ts - page_start
    etype = ev.type
    if etype == "page" or etype == "screen":
        if etype == "page":
            s.page_views += 1
        else:
            s.screen_views += 1
        if page_start is None or ts >= page_start:
            s.page_start = ts
        cat = props.get("category")
        if isinstance(cat, str) and cat and cat not in s.categories and usable_category(cat):
            _listed(s.categories, cat, spec.max_categories, hits, "categories")
    elif name in spec.scroll_events:
        pct = props.get("percent", props.get("depth"))
        if isinstance(pct, _NUMBER) and not isinstance(pct, bool) and pct > s.max_scroll:
            s.max_scroll = min(int(pct), 100)
    elif name in spec.product_events or name in spec.cart_add_events:
        # As the cart reads them (features._line_key): an empty product id or category
        # (a template's missing value) names nothing, and ``true`` is not an id.
        pid = props.get("product_id")
        if isinstance(pid, _ID) and pid != "" and pid is not True and pid is not False:
            key = str(pid)
            if key not in s.products:
                _listed(s.products, key, spec.max_products, hits, "session_products")
        cat = props.get("category")
        if isinstance(cat, str) and cat and cat not in s.categories and usable_category(cat):
            _listed(s.categories, cat, spec.max_categories, hits, "categories")
        if name in spec.cart_add_events:
            s.cart_adds += 1
        else:
            s.product_views += 1
    elif name in spec.search_events:
        s.searches += 1
    # An order sent again converts no session, as it counts no order: one re-sent in a
    # later session leaves that session unconverted (one in its own session finds it so).
    counted = name not in spec.order_events or _order(
        s, props, spec.money, user, ts, spec, hits, currencies
    )
    if counted and name in spec.conversion_events:
        s.converted = True
    if name in spec.funnel_events:
        s.funnel_reached = True
    s.last_step = name
    return closed


# Order ids a session remembers, to count an order sent twice once (a reloaded
# confirmation page sends its ``Order Completed`` again, with a new messageId).
MAX_ORDER_IDS = 16


def _order(
    s: OpenSession,
    props: dict[str, object],
    money: Money = NO_MONEY,
    user: UserState | None = None,
    ts: float = 0.0,
    spec: SessionSpec | None = None,
    hits: dict[str, int] | None = None,
    currencies: dict[str, list[int]] | None = None,
) -> bool:
    """Count one order event in its session: its value, unless the session already
    counted its ``order_id`` (Segment's id of the order; an order without one counts),
    or ``user``'s recent orders hold it (``seen_order``: one counted in an earlier
    session, within ``spec.history_window``). Whether it counted. An order whose value
    is summed as sent (``money.currency`` unset) is counted in ``currencies`` by the
    currency it names.

    >>> s = OpenSession("s", 0.0, 0.0)
    >>> for p in ({"order_id": "o1", "total": 5}, {"order_id": "o1", "total": 5}, {"total": 2}):
    ...     counted = _order(s, p)
    >>> s.orders, s.order_value, s.order_ids
    (2, 7.0, {'o1': 5.0})
    """
    key = order_key(props)
    if key and key in s.order_ids:
        return False
    digest = b""
    if key and user is not None and spec is not None:
        digest = order_digest(key)
        if seen_order(user.orders_seen, digest, ts, spec.history_window):
            return False
    value = order_value(props, money)
    s.orders += 1
    if value is not None:
        s.order_value += value
        if value and currencies is not None and money.currency is None:
            count_currency(currencies, props, ORDERS)
    if key and len(s.order_ids) < MAX_ORDER_IDS:
        s.order_ids[key] = 0.0 if value is None else value
    if digest and user is not None and spec is not None:
        user.orders_seen = remember_order(
            user.orders_seen, digest, ts, spec.history_window, spec.max_recent_orders, hits
        )
    return True


# A user's recent orders (``UserState.orders_seen``), so an order sent again in a later
# session (an app store re-delivering a purchase, a confirmation page reloaded the next
# day) is no new order either: one bytes value of entries, oldest first, each the first
# 8 bytes of the order id's BLAKE2b digest (no id text is kept) and the event time it
# was counted at (a big-endian double). Eviction after ``history_window`` without
# activity forgets them with the rest of the user.
ORDER_ENTRY: Final = 16


def order_digest(key: str) -> bytes:
    """What a user's recent orders know an order id by (``ORDER_ENTRY``).

    >>> order_digest("o1").hex()
    'b4536ee010d86a97'
    """
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def order_counted_at(memory: bytes, digest: bytes) -> float | None:
    """When ``memory`` (``UserState.orders_seen``) has the order ``digest`` counted, or None.

    >>> m = remember_order(b"", order_digest("o1"), 100.0, 50.0, 4)
    >>> order_counted_at(m, order_digest("o1")), order_counted_at(m, order_digest("o2"))
    (100.0, None)
    """
    for i in range(0, len(memory), ORDER_ENTRY):
        if memory[i : i + 8] == digest:
            at: float = unpack_from(">d", memory, i + 8)[0]
            return at
    return None


def seen_order(memory: bytes, digest: bytes, ts: float, window: float) -> bool:
    """Whether ``memory`` (``UserState.orders_seen``) holds the order ``digest``, counted
    less than ``window`` of event time from ``ts`` (before or after it: a late re-send).

    >>> m = remember_order(b"", order_digest("o1"), 100.0, 50.0, 4)
    >>> seen = [("o1", 149.0), ("o1", 150.0), ("o1", 51.0), ("o2", 100.0)]
    >>> [seen_order(m, order_digest(k), t, 50.0) for k, t in seen]
    [True, False, True, False]
    """
    at = order_counted_at(memory, digest)
    return at is not None and abs(ts - at) < window


def remember_order(
    memory: bytes,
    digest: bytes,
    ts: float,
    window: float,
    most: int,
    hits: dict[str, int] | None = None,
) -> bytes:
    """``memory`` with the order ``digest`` counted at ``ts`` added (a known digest
    replaced), those older than ``window`` before ``ts`` dropped, and at most ``most``
    kept: the oldest gives way, counted under ``recent_orders``.

    >>> m = b""
    >>> for k in ("o1", "o2", "o3"):
    ...     m = remember_order(m, order_digest(k), 10.0, 50.0, 2)
    >>> len(m) // ORDER_ENTRY, seen_order(m, order_digest("o1"), 10.0, 50.0)
    (2, False)
    """
    kept = [
        memory[i : i + ORDER_ENTRY]
        for i in range(0, len(memory), ORDER_ENTRY)
        if memory[i : i + 8] != digest and unpack_from(">d", memory, i + 8)[0] > ts - window
    ]
    kept.append(digest + pack(">d", ts))
    if len(kept) > most:
        for _ in range(len(kept) - most):
            hit(hits, "recent_orders")
        kept = kept[len(kept) - most :]
    return b"".join(kept)


def merged_orders(
    first: bytes, second: bytes, most: int, hits: dict[str, int] | None = None
) -> bytes:
    """Two halves' recent orders as one user's (an identity merge): both, by the time each
    was counted (an order both know: its later time), the newest ``most`` kept and the
    others counted under ``recent_orders``.

    >>> a = remember_order(b"", order_digest("o1"), 10.0, 50.0, 4)
    >>> b = remember_order(b"", order_digest("o2"), 5.0, 50.0, 4)
    >>> m = merged_orders(a, b, 1)
    >>> seen_order(m, order_digest("o1"), 10.0, 50.0), seen_order(m, order_digest("o2"), 5.0, 50.0)
    (True, False)
    """
    if not second:
        return first
    if not first:
        return second
    latest: dict[bytes, float] = {}
    for memory in (first, second):
        for i in range(0, len(memory), ORDER_ENTRY):
            digest = memory[i : i + 8]
            at: float = unpack_from(">d", memory, i + 8)[0]
            latest[digest] = max(at, latest.get(digest, at))
    entries = sorted(latest.items(), key=lambda e: (e[1], e[0]))
    if len(entries) > most:
        for _ in range(len(entries) - most):
            hit(hits, "recent_orders")
        entries = entries[len(entries) - most :]
    return b"".join([d + pack(">d", at) for d, at in entries])


def order_key(props: dict[str, object]) -> str:
    """The event's ``order_id`` as text (a whole number as its decimals), "" without one.

    >>> order_key({"order_id": 12}), order_key({"order_id": "o1"}), order_key({"order_id": True})
    ('12', 'o1', '')
    """
    oid = props.get("order_id")
    return oid if type(oid) is str else str(oid) if type(oid) is int else ""


_NUMBER: Final = (int, float)  # ``int | float``, without building the union at each check


def order_value(props: dict[str, object], money: Money = NO_MONEY) -> float | None:
    """An order's value by Segment's e-commerce spec: ``total``, else ``revenue`` (a null
    one counts as absent); 0.0 without either; None when the one given is not an amount
    (``amounts.amount``: a number or plain decimal text from 0 to ``MAX_AMOUNT``), or is
    in a currency ``money`` cannot convert (``Money.convert``).

    >>> order_value({"total": None, "revenue": 50}), order_value({}), order_value({"total": "9"})
    (50.0, 0.0, 9.0)
    >>> order_value({"total": 1e308}), order_value({"total": -3}), order_value({"total": "9,5"})
    (None, None, None)
    >>> order_value({"total": 8, "currency": "USD"}, Money("EUR", {"USD": 0.5}))
    4.0
    """
    value = props.get("total")
    if value is None:
        value = props.get("revenue")
        if value is None:
            return 0.0
    if money.currency is None and (type(value) is float or type(value) is int):
        return float(value) if 0 <= value <= MAX_AMOUNT else None  # the common case, inline
    return money.convert(value, props)


_ID: Final = (str, int)


def close(
    user: UserState, at: float, reason: str, spec: SessionSpec, hits: dict[str, int] | None = None
) -> Session:
    """Close the user's open session at event time ``at`` and fold it into history."""
    s = user.session
    assert s is not None, "close() needs an open session"
    user.session = None
    hist = user.history
    hist.append(
        (
            s.start,
            s.events,
            s.page_views,
            s.engaged,
            s.orders,
            s.order_value,
            s.cart_adds,
            s.converted,
        )
    )
    # History is bounded by count and by age, so per-user state stays small. A session
    # given way to the count while younger than the age bound is one that sessions(W) and
    # total(metric, W) no longer read: counted (``history_sessions``), as the other bounds.
    cutoff = at - spec.history_window
    while hist and (len(hist) > spec.history_max or hist[0][0] < cutoff):
        if hist[0][0] >= cutoff:
            hit(hits, "history_sessions")
        hist.pop(0)
    # (What a session without an order adds is 0: ``converted`` no longer says there was one.)
    user.total_orders += s.orders
    user.total_revenue += s.order_value
    user.last_session_converted = s.converted
    return Session(
        user_id=user.user_id,
        session_id=s.session_id,
        start=s.start,
        end=s.last,
        events=s.events,
        page_views=s.page_views,
        screen_views=s.screen_views,
        by_category=dict(sorted(s.by_category.items())),
        engaged_seconds=s.engaged,
        max_page_seconds=s.max_page,
        max_scroll_depth=s.max_scroll,
        products=sorted(s.products),
        categories=sorted(s.categories),
        converted=s.converted,
        order_value=s.order_value,
        end_reason=reason,
        device=s.device,
    )
