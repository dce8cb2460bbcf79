"""Everything audienceflow knows about one user, in one object.

Keeping a user's whole state in one ``UserState`` is what makes "forget this
user" one ``del`` and "merge the anonymous profile into the known one" one
function. Fields are plain floats, ints, small dicts and tuples so the state
pickles compactly (snapshots) and copies cheaply.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from audienceflow.operators import native
from audienceflow.operators.native import plain_class
from audienceflow.operators.normalize import blank

INF: Final = float("inf")
# What a lazy container of ``UserState`` (``video_completions``, ``timers``, ``cancelled``,
# ``tracks``, ``traits``) reads as while it is None: most users never fill them, and a
# None costs no object of its own, so an event touches fewer cache lines of its user.
# A write makes the user's own dict first (``user.timers = {}`` when None); ``__init__``
# (so ``codec.decode_user``) keeps an empty one given as None.
NO_ITEMS: Final[Mapping[str, Any]] = MappingProxyType({})
# ``UserState.traits`` holds the account's traits too (a group call's, read by rules as
# ``group.NAME``) under ``GROUP`` and the name, and the event time of the group call they
# are from under ``GROUP_AT``: keys no identify trait can be kept under, as those are the
# names rules read as ``traits.NAME``, identifiers, without a dot or an ``@``.
GROUP: Final = "group."
GROUP_AT: Final = "@group"
# The account the kept traits are of: a salted digest of the group call's ``groupId``
# (``privacy``), never the id; on an event, in its ``traits`` under this key.
GROUP_ID: Final = "@group:id"


def account_key(key: str) -> bool:
    """Whether a key of ``UserState.traits`` is the account's (``group.NAME``, the call's
    time or the account's digest), not an identify trait."""
    return key.startswith(GROUP) or key.startswith(GROUP_AT)


# One closed session in a user's history (oldest first):
# (start, events, page_views, engaged_seconds, orders, revenue, cart_adds, converted)
# ``converted``: it held one of ``sessions.conversion_events`` (an order need not).
H_START, H_EVENTS, H_PAGE_VIEWS, H_ENGAGED, H_ORDERS, H_REVENUE, H_CART_ADDS, H_CONVERTED = range(8)
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
    session_products: int = 500  # product ids listed in one session (its ``products``)
    recent_orders: int = 8  # order ids a user remembers across sessions


LIMIT_NAMES = (
    "categories",
    "category_segments",
    "window_events",
    "distinct_values",
    "traits",
    "cart_lines",
    "session_products",
    "recent_orders",
)


# The longest category kept, as the longest id or event name (``validate.MAX_FIELD_CHARS``).
MAX_CATEGORY_CHARS: Final = 512


def usable_category(cat: object) -> bool:
    """Whether ``cat`` can name a category: non-empty text of at most
    ``MAX_CATEGORY_CHARS`` printable characters (no control, format or line separator
    character). A category becomes part of segment names (``video_enthusiast:<category>``)
    and profiles, so it must read as sent there.

    Readable text a shop writes is kept, though ``str.isprintable`` says no: a space
    other than U+0020 (a no-break space from HTML), a zero-width (non-)joiner inside a
    word (Persian and Indic spelling, emoji sequences), a character newer than this
    Python's Unicode tables (a new emoji). Blank text (``normalize.blank``: spaces,
    a Hangul filler) shows nothing: no category, as an empty one.

    >>> [usable_category(c) for c in ("Mode\u00a0femme", "\u0645\u06cc\u200c\u0631", "\u200d")]
    [True, True, False]
    >>> usable_category(" "), usable_category("\u00a0"), usable_category(" Shoes")
    (False, False, True)
    """
    if type(cat) is not str or not 0 < len(cat) <= MAX_CATEGORY_CHARS:
        return False
    return (cat.isprintable() or _readable(cat)) and not blank(cat)


_JOINERS: Final = frozenset("\u200c\u200d")  # zero-width non-joiner, joiner


def _readable(cat: str) -> bool:
    """``cat``, not ``isprintable``, holds only what ``usable_category`` also keeps."""
    last = len(cat) - 1
    for i, c in enumerate(cat):
        if c.isprintable():
            continue
        if c in _JOINERS:
            if 0 < i < last:  # joins two characters; alone or at an end it is invisible
                continue
            return False
        kind = unicodedata.category(c)
        if kind == "Zs":
            continue
        if kind == "Cn" and not _noncharacter(c):  # assigned after this Python's tables
            continue
        return False
    return True


def _noncharacter(c: str) -> bool:
    n = ord(c)
    return 0xFDD0 <= n <= 0xFDEF or n & 0xFFFE == 0xFFFE


def hit(hits: dict[str, int] | None, what: str) -> None:
    """Count one occurrence of ``what`` (a bound hit or an unusable event meaning)."""
    if hits is not None:
        hits[what] = hits.get(what, 0) + 1


@dataclass(slots=True, init=False)
class OpenSession:
    """The accumulators of a user's session that has not closed yet.

    Its ``__init__`` is written out, as ``UserState``'s is (see there).
    """

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

    def __new__(cls, *args: Any, **kwargs: Any) -> OpenSession:
        # What pickle and ``copy`` make before ``__setstate__``: mypyc's own ``__new__``
        # of a native class (compiled build) would run the written ``__init__``, without
        # arguments (``IntentModel`` does the same).
        return object.__new__(cls)

    def __init__(
        self,
        session_id: str,
        start: float,
        last: float,
        events: int = 0,
        page_views: int = 0,
        screen_views: int = 0,
        by_category: dict[str, int] | None = None,
        engaged: float = 0.0,
        max_page: float = 0.0,
        page_start: float | None = None,
        max_scroll: int = 0,
        products: dict[str, None] | None = None,
        categories: dict[str, None] | None = None,
        converted: bool = False,
        order_value: float = 0.0,
        cart_adds: int = 0,
        product_views: int = 0,
        searches: int = 0,
        last_step: str = "",
        funnel_reached: bool = False,
        intent_before_funnel: float | None = None,
        device: str | None = None,
        channel: str | None = None,
        orders: int = 0,
        order_ids: dict[str, float] | None = None,
    ) -> None:
        self.session_id = session_id
        self.start = start
        self.last = last
        self.events = events
        self.page_views = page_views
        self.screen_views = screen_views
        self.by_category = {} if by_category is None else by_category
        self.engaged = engaged
        self.max_page = max_page
        self.page_start = page_start
        self.max_scroll = max_scroll
        self.products = {} if products is None else products
        self.categories = {} if categories is None else categories
        self.converted = converted
        self.order_value = order_value
        self.cart_adds = cart_adds
        self.product_views = product_views
        self.searches = searches
        self.last_step = last_step
        self.funnel_reached = funnel_reached
        self.intent_before_funnel = intent_before_funnel
        self.device = device
        self.channel = channel
        self.orders = orders
        self.order_ids = {} if order_ids is None else order_ids

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # A plain slots class's state, from the compiled build's native class too.
        return native.slots_state(self)

    def __setstate__(self, state: Any) -> None:
        native.set_slots(self, state)

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
            self.converted,
        )[index]


class PendingRecs:
    """A stored recommendation list not ranked yet: the frozen item-model view it reads
    and every input, taken at the refresh (the user changes after).

    ``models/reco.py`` registers it with its view, which ranks it (``settle``) before it
    stops being kept exact; a reader ranks it at once (``recommendations_of``); a refresh
    that replaces it, or an erasure, drops it (``drop``): most lists a cart change stores
    are replaced by the next one before anything reads them.
    """

    __slots__ = ("args", "result", "view")

    def __init__(self, view: Any, args: tuple[Any, ...]) -> None:
        self.view: Any = view  # None once settled or dropped
        self.args = args  # ``view.payload``'s arguments
        self.result: list[dict[str, Any]] | None = None

    def settle(self) -> list[dict[str, Any]]:
        """The list, ranked now if it was not yet (a dropped one is empty)."""
        out = self.result
        if out is None:
            view = self.view
            out = self.result = [] if view is None else view.payload(*self.args)
            self.view, self.args = None, ()
        return out

    def drop(self) -> None:
        """Never rank it: replaced, or its user erased (the view lets go of the inputs)."""
        if self.result is None:
            self.view, self.args = None, ()


# A user's stored recommendations: domain -> its list, or the list not ranked yet.
StoredRecs = dict[str, list[dict[str, Any]] | PendingRecs]


def recommendations_of(user: UserState) -> dict[str, list[dict[str, Any]]] | None:
    """``user.recommendations`` with every pending list ranked: what every reader reads."""
    recs = user.recommendations
    if recs is None:
        return None
    for domain, items in recs.items():
        if isinstance(items, PendingRecs):
            recs[domain] = items.settle()  # a value replaced, no key added: iteration holds
    return recs  # type: ignore[return-value]  # no entry is pending any more


def drop_recommendations(user: UserState) -> None:
    """An erasure: the user's pending lists are never ranked, their inputs let go."""
    for items in (user.recommendations or NO_ITEMS).values():
        if isinstance(items, PendingRecs):
            items.drop()


@dataclass(slots=True)
class RecoUser:
    """A user's recent items per domain (newest last) and purchases, both bounded
    (``UserState.model["reco"]``, kept by ``models/recommender.py``).

    A recent item is (item id, weight, kind, kept for pairing).
    """

    recent: dict[str, list[tuple[str, float, str, bool]]] = field(default_factory=dict)
    bought: dict[str, None] = field(default_factory=dict)
    seen: int = 0


@dataclass(slots=True, init=False)
class UserState:
    """The whole state of one user.

    Its ``__init__`` is written out, not generated: a user is made for each new
    profile and each revival from the cold tier, and in the compiled build mypyc
    compiles a written ``__init__`` (fields stored in the struct) but leaves a
    generated one interpreted (35 fields each set through a descriptor, ~13,000
    instructions). A field whose default is a factory takes ``None`` for "make one".
    ``tests/test_written_inits.py`` checks it against the fields. Its ``__new__`` and
    state methods let pickle and ``copy`` make one without arguments in either build (a
    user is stored as ``codec.encode_user`` writes it; tests copy and pickle states).
    """

    user_id: str
    first_seen: float
    last_ts: float = -INF
    session: OpenSession | None = None
    session_seq: int = 0
    history: list[tuple[float, int, int, float, int, float, int, bool]] = field(
        default_factory=list
    )
    total_events: int = 0
    total_sessions: int = 0
    total_orders: int = 0
    total_revenue: float = 0.0
    last_session_converted: bool = False
    # category -> (decayed score at ts, ts)
    affinity: dict[str, tuple[float, float]] = field(default_factory=dict)
    video_completions: dict[str, int] | None = None  # lazy (NO_ITEMS)
    # product_id -> (category, price, quantity)
    cart: dict[str, tuple[str, float, int]] = field(default_factory=dict)
    cart_updated: float = -INF
    last_order_ts: float = -INF
    segments: dict[str, float] = field(default_factory=dict)
    segment_recheck: float = INF
    # trigger name -> deadline (event time)
    timers: dict[str, float] | None = None  # lazy (NO_ITEMS)
    # trigger name -> latest cancel time, so an out-of-order start is ignored
    cancelled: dict[str, float] | None = None  # lazy (NO_ITEMS)
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
    # domain ("products", "content") -> top items, refreshed by the recommender; an entry
    # may be a ``PendingRecs`` not ranked yet: read it only through ``recommendations_of``
    recommendations: StoredRecs | None = None
    experiments: dict[str, Any] | None = None  # experiment -> lab.Exposed, once exposed
    # Per-rule window structures of count()/since()/sequence()/distinct(), keyed by the
    # tracker's key (see operators/tracking.py); only trackers some rule uses exist.
    tracks: dict[str, Any] | None = None  # lazy (NO_ITEMS)
    # Traits from identify that some rule reads (``traits.X``), after PII handling; the
    # account's from the latest group call too (``group.X``: under ``GROUP`` + X, with the
    # call's time under ``GROUP_AT``).
    traits: dict[str, str | float | bool] | None = None  # lazy (NO_ITEMS)
    anon_lines: int = 0  # cart lines added without any product identity, for unique keys
    # The profile's id was an event's userId (not only an anonymousId): an alias naming it
    # as its previousId links a second userId (identity.py), though no link keeps it.
    known: bool = False
    # The user's recent orders, across sessions (``sessions.seen_order``): b"" for none.
    orders_seen: bytes = b""

    def __new__(cls, *args: Any, **kwargs: Any) -> UserState:
        # What pickle and ``copy`` make before ``__setstate__``: mypyc's own ``__new__``
        # of a native class (compiled build) would run the written ``__init__``, without
        # arguments (``IntentModel`` does the same).
        return object.__new__(cls)

    def __init__(
        self,
        user_id: str,
        first_seen: float,
        last_ts: float = -INF,
        session: OpenSession | None = None,
        session_seq: int = 0,
        history: list[tuple[float, int, int, float, int, float, int, bool]] | None = None,
        total_events: int = 0,
        total_sessions: int = 0,
        total_orders: int = 0,
        total_revenue: float = 0.0,
        last_session_converted: bool = False,
        affinity: dict[str, tuple[float, float]] | None = None,
        video_completions: dict[str, int] | None = None,
        cart: dict[str, tuple[str, float, int]] | None = None,
        cart_updated: float = -INF,
        last_order_ts: float = -INF,
        segments: dict[str, float] | None = None,
        segment_recheck: float = INF,
        timers: dict[str, float] | None = None,
        cancelled: dict[str, float] | None = None,
        delivered: list[tuple[float, str]] | None = None,
        device: str | None = None,
        locale: str | None = None,
        channel: str | None = None,
        intent_score: float = 0.0,
        cluster: int = -1,
        scheduled: float = INF,
        model: dict[str, Any] | None = None,
        last_seen: float = -INF,
        via: str = "",
        recommendations: StoredRecs | None = None,
        experiments: dict[str, Any] | None = None,
        tracks: dict[str, Any] | None = None,
        traits: dict[str, str | float | bool] | None = None,
        anon_lines: int = 0,
        known: bool = False,
        orders_seen: bytes = b"",
    ) -> None:
        self.user_id = user_id
        self.first_seen = first_seen
        self.last_ts = last_ts
        self.session = session
        self.session_seq = session_seq
        self.history = [] if history is None else history
        self.total_events = total_events
        self.total_sessions = total_sessions
        self.total_orders = total_orders
        self.total_revenue = total_revenue
        self.last_session_converted = last_session_converted
        self.affinity = {} if affinity is None else affinity
        self.video_completions = video_completions or None
        self.cart = {} if cart is None else cart
        self.cart_updated = cart_updated
        self.last_order_ts = last_order_ts
        self.segments = {} if segments is None else segments
        self.segment_recheck = segment_recheck
        self.timers = timers or None
        self.cancelled = cancelled or None
        self.delivered = [] if delivered is None else delivered
        self.device = device
        self.locale = locale
        self.channel = channel
        self.intent_score = intent_score
        self.cluster = cluster
        self.scheduled = scheduled
        self.model = {} if model is None else model
        self.last_seen = last_seen
        self.via = via
        self.recommendations = recommendations
        self.experiments = experiments
        self.tracks = tracks or None
        self.traits = traits or None
        self.anon_lines = anon_lines
        self.known = known
        self.orders_seen = orders_seen

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # A plain slots class's state, from the compiled build's native class too; the
        # recommendations ranked (a pending one names a model view, never pickled).
        recommendations_of(self)
        return native.slots_state(self)

    def __setstate__(self, state: Any) -> None:
        native.set_slots(self, state)

    def next_deadline(self, timeout: float, max_length: float) -> float:
        """The earliest event time at which something is due for this user."""
        t = self.segment_recheck
        s = self.session
        if s is not None:
            t = min(t, s.last + timeout, s.start + max_length)
        timers = self.timers
        if timers:
            for d in timers.values():
                t = min(t, d)
        return t
