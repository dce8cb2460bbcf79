"""Everything audienceflow knows about one user, in one object.

Keeping a user's whole state in one ``UserState`` is what makes "forget this
user" one ``del`` and "merge the anonymous profile into the known one" one
function. Fields are plain floats, ints, small dicts and tuples so the state
pickles compactly (snapshots) and copies cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from audienceflow.operators.native import plain_class

INF: Final = float("inf")

# One closed session in a user's history (oldest first):
# (start, events, page_views, engaged_seconds, orders, revenue, cart_adds)
H_START, H_EVENTS, H_PAGE_VIEWS, H_ENGAGED, H_ORDERS, H_REVENUE, H_CART_ADDS = range(7)
HISTORY_METRICS = {
    "events": H_EVENTS,
    "page_views": H_PAGE_VIEWS,
    "engaged_seconds": H_ENGAGED,
    "orders": H_ORDERS,
    "revenue": H_REVENUE,
    "cart_adds": H_CART_ADDS,
}


@plain_class  # part of the settings, which pickle: the same class in both builds
@dataclass(frozen=True, slots=True)
class Limits:
    """Per-user bounds on state a stream can grow (issue: one user must not grow the engine).

    When a bound is hit the oldest or weakest entry gives way (or the new one is not
    kept) and the hit is counted under the bound's name (see ``LIMIT_NAMES``).
    """

    categories: int = 200  # affinity / video_completions keys per user
    category_segments: int = 50  # segments per user of one ``per: category`` rule
    window_events: int = 1000  # timestamps kept per user and count()/since()/sequence()
    distinct_values: int = 100  # values kept per user and distinct()
    traits: int = 50  # traits kept per user (only those a rule reads)
    trait_chars: int = 256  # a longer text trait is not kept
    cart_lines: int = 200  # lines in a user's cart


LIMIT_NAMES = (
    "categories",
    "category_segments",
    "window_events",
    "distinct_values",
    "traits",
    "cart_lines",
)


def hit(hits: dict[str, int] | None, what: str) -> None:
    """Count one occurrence of ``what`` (a bound hit or an unusable event meaning)."""
    if hits is not None:
        hits[what] = hits.get(what, 0) + 1


@dataclass(slots=True)
class OpenSession:
    """The accumulators of a user's session that has not closed yet."""

    session_id: str
    start: float
    last: float
    events: int = 0
    page_views: int = 0
    screen_views: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    engaged: float = 0.0
    max_page: float = 0.0
    page_start: float | None = None
    max_scroll: int = 0
    products: dict[str, None] = field(default_factory=dict)
    categories: dict[str, None] = field(default_factory=dict)
    converted: bool = False
    order_value: float = 0.0
    cart_adds: int = 0
    product_views: int = 0
    searches: int = 0
    last_step: str = ""
    funnel_reached: bool = False
    intent_before_funnel: float | None = None
    device: str | None = None
    channel: str | None = None
    orders: int = 0  # its order events: a session may hold several orders
    # The order ids counted (``sessions.MAX_ORDER_IDS`` at most), with the value counted.
    order_ids: dict[str, float] = field(default_factory=dict)

    def metric(self, index: int) -> float:
        """The value this session will have in the history tuple at ``index``."""
        return (
            self.start,
            self.events,
            self.page_views,
            self.engaged,
            self.orders,
            self.order_value,
            self.cart_adds,
        )[index]


@dataclass(slots=True)
class RecoUser:
    """A user's recent items per domain (newest last) and purchases, both bounded
    (``UserState.model["reco"]``, kept by ``models/recommender.py``).

    A recent item is (item id, weight, kind, kept for pairing).
    """

    recent: dict[str, list[tuple[str, float, str, bool]]] = field(default_factory=dict)
    bought: dict[str, None] = field(default_factory=dict)
    seen: int = 0


@dataclass(slots=True)
class UserState:
    """The whole state of one user."""

    user_id: str
    first_seen: float
    last_ts: float = -INF
    session: OpenSession | None = None
    session_seq: int = 0
    history: list[tuple[float, int, int, float, int, float, int]] = field(default_factory=list)
    total_events: int = 0
    total_sessions: int = 0
    total_orders: int = 0
    total_revenue: float = 0.0
    last_session_converted: bool = False
    # category -> (decayed score at ts, ts)
    affinity: dict[str, tuple[float, float]] = field(default_factory=dict)
    video_completions: dict[str, int] = field(default_factory=dict)
    # product_id -> (category, price, quantity)
    cart: dict[str, tuple[str, float, int]] = field(default_factory=dict)
    cart_updated: float = -INF
    last_order_ts: float = -INF
    segments: dict[str, float] = field(default_factory=dict)
    segment_recheck: float = INF
    # trigger name -> deadline (event time)
    timers: dict[str, float] = field(default_factory=dict)
    # trigger name -> latest cancel time, so an out-of-order start is ignored
    cancelled: dict[str, float] = field(default_factory=dict)
    # delivered actions in the last 24 h: (at, action)
    delivered: list[tuple[float, str]] = field(default_factory=list)
    device: str | None = None
    locale: str | None = None
    channel: str | None = None
    intent_score: float = 0.0
    cluster: int = -1
    scheduled: float = INF  # the deadline this user is filed under in the shard's timer heap
    model: dict[str, Any] = field(default_factory=dict)
    last_seen: float = -INF  # latest event of any kind (identify included), for eviction
    via: str = ""  # the identifier of the user's latest event (canonical id or another)
    # domain ("products", "content") -> top items, refreshed by the recommender
    recommendations: dict[str, list[dict[str, Any]]] | None = None
    experiments: dict[str, Any] | None = None  # experiment -> lab.Exposed, once exposed
    # Per-rule window structures of count()/since()/sequence()/distinct(), keyed by the
    # tracker's key (see operators/tracking.py); only trackers some rule uses exist.
    tracks: dict[str, Any] = field(default_factory=dict)
    # Traits from identify that some rule reads (``traits.X``), after PII handling.
    traits: dict[str, str | float | bool] = field(default_factory=dict)
    anon_lines: int = 0  # cart lines added without any product identity, for unique keys

    def next_deadline(self, timeout: float, max_length: float) -> float:
        """The earliest event time at which something is due for this user."""
        t = self.segment_recheck
        s = self.session
        if s is not None:
            t = min(t, s.last + timeout, s.start + max_length)
        for d in self.timers.values():
            t = min(t, d)
        return t
