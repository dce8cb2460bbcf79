"""The rule language of segments and trigger conditions.

A rule is one expression over a user's state at an event time, e.g.
``sessions(24h) > 3`` or ``count('Page Viewed', 24h, name == 'Pricing') >= 3``.
It is parsed once at start-up into a small Python function; anything outside
the language (unknown names, wrong argument kinds, repetition, oversized
literals, too deep or too large expressions) is rejected then, with the reason.

Every function and variable is declared once, next to its implementation
below, in ``operators/registry.py``'s table (arguments, return type, what can
change it, whether it changes with time alone and how it is kept
incrementally). Durations are written ``30s``, ``15m``, ``24h``, ``7d``.
Time-dependent functions report the next event time at which their value can
change, so a segment is left exactly when, say, the last hour lapses, not at
the user's next event.

>>> r = compile_rule("vip", "total('orders', 30d) >= 2 and device == 'desktop'")
>>> sorted(r.names)
['device', 'total']
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from audienceflow.operators import features, tracking
from audienceflow.operators.decimals import round_places
from audienceflow.operators.native import plain_class
from audienceflow.operators.records import Event
from audienceflow.operators.registry import DEVICE_TYPES, Entry, functions, register, variables
from audienceflow.operators.rule_compile import (
    RuleError,
    compile_source,
    set_inline,
    set_inline_call,
)
from audienceflow.operators.state import HISTORY_METRICS, INF, NO_ITEMS, Limits, UserState
from audienceflow.operators.tracking import Tracker

_F = Callable[..., Any]


def function(
    args: tuple[str, ...],
    returns: str,
    changes_on: str,
    incremental: str,
    example: str,
    timed: bool = False,
    category_local: bool = False,
    keywords: tuple[tuple[str, str], ...] = (),
    drifts: bool = False,
    inline: str | None = None,
    over_time: int | None = None,
    unit: str = "",
    value_range: tuple[float | str, float | str] | None = None,
) -> Callable[[_F], _F]:
    """Declare a ``Context`` method as a rule function (and ``inline``, an expression of
    the context ``c`` and the arguments ``_a0``, ... equal to the call, with the same
    effect on ``c``, in rules' fast functions when every argument is a constant)."""

    def declare(name: str) -> None:
        if inline is not None:
            set_inline_call(name, inline)
        register(
            Entry(
                name,
                args,
                returns,
                changes_on,
                timed,
                incremental,
                example,
                category_local,
                keywords,
                drifts=drifts,
                over_time=over_time,
                unit=unit,
                value_range=value_range,
            )
        )

    def deco(fn: _F) -> _F:
        _DECLARED.append((fn, declare))
        return fn

    return deco


# What the class body of ``Context`` declares, in its order, registered once the class
# exists (``_register``): a method's name is read there, from the class, as a method
# compiled by mypyc has no ``__name__``.
_DECLARED: list[tuple[Any, Callable[[str], None]]] = []


def _register(cls: type) -> None:
    names = {id(value): name for name, value in vars(cls).items()}
    for fn, declare in _DECLARED:
        declare(names[id(fn)] if fn is not None else "")
    _DECLARED.clear()


def variable(
    name: str,
    returns: str,
    changes_on: str,
    incremental: str,
    example: str,
    get: Callable[[Context], Any],
    vocabulary: tuple[str, ...] = (),
    category_local: bool = False,
    where: str = "any",
    drifts: bool = False,
    inline: str | None = None,
    unit: str = "",
    value_range: tuple[float | str, float | str] | None = None,
) -> Any:
    """Declare a rule variable, read by ``get`` (and by ``inline``, an expression of the
    context ``c`` equal to ``get(c)``, in rules' fast functions)."""

    def declare(_: str) -> None:
        if inline is not None:
            set_inline(name, inline)
        register(
            Entry(
                name,
                None,
                returns,
                changes_on,
                False,
                incremental,
                example,
                category_local,
                vocabulary=vocabulary,
                where=where,
                drifts=drifts,
                unit=unit,
                value_range=value_range,
            )
        )

    _DECLARED.append((None, declare))
    return property(get)


_SESSION = "an accumulator of the open session, updated per event"
_COUNT: Final = (0.0, INF)  # a count or a time: never negative


def _s_inline(attr: str) -> str:
    return f"(0 if (_s := c.user.session) is None else _s.{attr})"


def _s(attr: str) -> Callable[[Context], Any]:
    def get(c: Context) -> Any:
        s = c.user.session
        return 0 if s is None else getattr(s, attr)

    return get


def _session_seconds(c: Context) -> float:
    s = c.user.session
    return 0.0 if s is None else s.last - s.start


@plain_class  # its class body registers the rule names: kept a plain class when compiled
class Context:
    """What a rule sees: one user's state at one event time.

    ``next_change`` collects the earliest future time at which a
    time-dependent function's value would change. ``event`` is the event
    being handled, for ``properties.X`` in event triggers.
    """

    __slots__ = (
        "_record",
        "category",
        "event",
        "half_life",
        "next_change",
        "now",
        "segments",
        "user",
    )

    def __init__(
        self, user: UserState, now: float, half_life: float, event: Event | None = None
    ) -> None:
        self.user = user
        self.now = now
        self.half_life = half_life
        self.next_change = INF
        self.category = ""
        self.event = event
        self.segments: dict[str, float] = user.segments
        self._record: dict[str, Any] | None = None

    def _r(self, key: str, value: Any) -> Any:
        if self._record is not None:
            self._record[key] = rounded(value) if isinstance(value, float) else value
        return value

    @staticmethod
    def num(value: Any) -> Any:
        """A value of any type in arithmetic (``rule_compile``): a number (a bool reads as
        one, as ``true`` does), else the arithmetic cannot be made (unknown: ``guard``)."""
        if type(value) is int or type(value) is float or type(value) is bool:
            return value
        raise TypeError(f"arithmetic on a {type(value).__name__}")

    def guard(self, comparison: Callable[[], Any], when_raised: bool) -> Any:
        """A comparison that cannot be made (``rule_compile._guards``) is unknown: it
        takes the value that leaves the rule's truth to the rest of the rule."""
        try:
            return comparison()
        except (ArithmeticError, TypeError):
            return when_raised

    def _until(self, t: float) -> None:
        if self.now < t < self.next_change:
            self.next_change = t

    def _drop(self, mark: float, value: Any) -> Any:
        """Forget the changes reported since ``mark`` (what ``next_change`` was then): the
        truth they could change cannot change with time (``rule_compile._Compiler.trend``)."""
        self.next_change = mark
        return value

    def _next(self, t: float, value: Any) -> Any:
        """``t`` is the next change; ``value`` what an inline call returns with it
        (``rules.function(inline=...)``)."""
        self.next_change = t
        return value

    # --- functions over session history -------------------------------------------------

    @function(
        ("duration",),
        "number",
        "session_start",
        "scan of the kept session history (at most state.history_max_sessions)",
        "sessions(24h) > 3",
        timed=True,
        value_range=_COUNT,
        over_time=-1,  # sessions leave the window; one starts only at an event
        # Without a closed session (most users), the call's first branch below as an
        # expression (~2 calls per event with the defaults; the call was the cost).
        inline="(c.sessions(_a0) if c.user.history else"
        " (0.0 if (_s := c.user.session) is None or not (c.now - _a0 < (_t := _s.start) <= c.now)"
        " else (1.0 if not (c.now < (_t := _t + _a0) < c.next_change) else c._next(_t, 1.0))))",
    )
    def sessions(self, seconds: float) -> float:
        # ``features.window(user, "sessions", ...)`` inlined (a test keeps them equal):
        # histories are short (most users have 0-2 closed sessions), so the calls, not
        # the scan, were the cost, at ~2.4 calls per event.
        now = self.now
        user = self.user
        history = user.history
        if not history:  # most users: at most the open session, and no loop to set up
            s = user.session
            if s is not None:
                start = s.start
                if now - seconds < start <= now:
                    change = start + seconds
                    if now < change < self.next_change:
                        self.next_change = change
                    return 1.0
            return 0.0
        cutoff = now - seconds
        total = 0.0
        oldest = INF
        for h in history:
            start = h[0]
            if cutoff < start <= now:
                total += 1
                if start < oldest:
                    oldest = start
        s = user.session
        if s is not None:
            start = s.start
            if cutoff < start <= now:
                total += 1
                if start < oldest:
                    oldest = start
        if oldest < INF:
            change = oldest + seconds
            if now < change < self.next_change:  # ``_until``, inlined
                self.next_change = change
        return total

    @function(
        ("duration",),
        "number",
        "event",
        "scan of the kept session history plus the open session",
        "events(1h) >= 20",
        timed=True,
        value_range=_COUNT,
        over_time=-1,  # sessions' event counts leave the window
    )
    def events(self, seconds: float) -> float:
        value: float = self.total("events", seconds)
        return value

    @function(
        ("metric", "duration"),
        "number",
        "event",
        "scan of the kept session history plus the open session",
        "total('orders', 30d) >= 2",
        timed=True,
    )
    def total(self, metric: str, seconds: float) -> float:
        # ``features.window``, inlined as in ``sessions`` (a test keeps them equal).
        idx = HISTORY_METRICS.get(metric)
        if idx is None:
            counted: float = self.sessions(seconds)
            return counted
        now = self.now
        cutoff = now - seconds
        total = 0.0
        oldest = INF
        user = self.user
        for h in user.history:
            start = h[0]
            if cutoff < start <= now:
                total += h[idx]
                if start < oldest:
                    oldest = start
        s = user.session
        if s is not None:
            start = s.start
            if cutoff < start <= now:
                total += s.metric(idx)
                if start < oldest:
                    oldest = start
        if oldest < INF:
            change = oldest + seconds
            if now < change < self.next_change:
                self.next_change = change
        return total

    @function(
        ("duration",),
        "bool",
        "event",
        "the user's latest event time",
        "active_within(1h)",
        timed=True,
        over_time=-1,  # true until the latest event is that old
        # The call's body as an expression: a rule evaluation makes ~3 of these calls per
        # event (the defaults), and the call, not its two comparisons, was the cost. The
        # next change is set (``_next``) only when it moves, as below.
        inline="(c.now < (_t := c.user.last_ts + _a0)"
        " and (_t >= c.next_change or c._next(_t, True)))",
    )
    def active_within(self, seconds: float) -> bool:
        end = self.user.last_ts + seconds
        if self.now < end:
            if end < self.next_change:
                self.next_change = end
            return True
        return False

    # --- category functions ---------------------------------------------------------------

    @function(
        ("category",),
        "number",
        "affinity",
        "decayed score per category, updated per categorised event",
        "affinity('shoes') > 2",
        category_local=True,
        drifts=True,  # decays with event time
    )
    def affinity(self, category: str) -> float:
        return features.affinity(self.user, category, self.now, self.half_life)

    def affinity_cmp(self, category: str, op: str, bound: float, label: str) -> bool:
        """``affinity(category) op bound`` (``rule_compile``'s rewrite), reporting the first
        time the decaying score puts it the other way: a score only falls without events,
        so a comparison on its high side (``> 2`` holding, ``< 2`` not) flips once, when
        the score crosses ``bound`` (never, for a bound of 0 or less)."""
        entry = self.user.affinity.get(category)
        half_life = self.half_life
        value = 0.0 if entry is None else features.decayed(entry[0], entry[1], self.now, half_life)
        if self._record is not None:
            self._r(label, value)
        holds = _compare(op, value, bound)
        if entry is not None and bound > 0.0 and value > 0.0 and holds == (op in ("gt", "ge")):
            self._until(_crossing(entry[0], entry[1], half_life, op, bound, holds))
        return holds

    @function(
        ("category",),
        "number",
        "video",
        "counter per category",
        "video_completions(category) >= 3",
        category_local=True,
        value_range=_COUNT,
    )
    def video_completions(self, category: str) -> int:
        return (self.user.video_completions or NO_ITEMS).get(category, 0)

    @function(
        (),
        "text",
        "affinity",
        "scan of the user's categories (at most state.max_categories_per_user)",
        "top_category() == 'deals'",
        drifts=True,  # ranks decayed scores
    )
    def top_category(self) -> str:
        return features.top_category(self.user, self.now, self.half_life)

    @function(
        ("segment",),
        "bool",
        "event",
        "the user's segments, decided earlier in the same evaluation",
        "in_segment('frequent_visitor')",
        drifts=True,  # whatever changes the other segment
    )
    def in_segment(self, name: str) -> bool:
        return name in self.segments

    # --- functions over matching events (operators/tracking.py) ---------------------------

    @function(
        ("events", "duration", "where?"),
        "number",
        "event",
        "sorted timestamps of matching events per user (at most state.max_window_events)",
        "count('Page Viewed', 24h, name == 'Pricing') >= 3",
        timed=True,
        value_range=(0.0, "window_events"),  # the timestamps kept per user
    )
    def count(self, key: str, seconds: float) -> int:
        value, change = tracking.count((self.user.tracks or NO_ITEMS).get(key), seconds, self.now)
        self._until(change)
        return value

    @function(
        ("events",),
        "number",
        "event",
        "the timestamps of count(); compared with a duration, it reports when it crosses it",
        "since('Product Added') > 1h",
        timed=True,
        unit="seconds",
        value_range=_COUNT,  # the time since a past event (inf: none yet)
    )
    def since(self, key: str) -> float:
        last = tracking.last_at((self.user.tracks or NO_ITEMS).get(key), self.now)
        return INF if last == -INF else self.now - last

    def since_cmp(self, key: str, op: str, seconds: float, label: str) -> bool:
        """``since(...) op seconds``, exact at the crossing time ``last + seconds``."""
        log = (self.user.tracks or NO_ITEMS).get(key)
        last = tracking.last_at(log, self.now)
        self._until(tracking.next_after(log, self.now))
        if self._record is not None:
            self._r(label, INF if last == -INF else self.now - last)
        if last == -INF:  # never happened: longer ago than any duration
            return op in ("gt", "ge")
        cross = last + seconds
        if op == "ge" or op == "lt":
            self._until(cross)
        else:
            self._until(_after(cross))
        if op == "gt":
            return self.now > cross
        if op == "ge":
            return self.now >= cross
        if op == "lt":
            return self.now < cross
        return self.now <= cross

    @function(
        ("events*",),
        "bool",
        "event",
        "timestamps with the steps each matching event fits (at most state.max_window_events)",
        "sequence('Product Viewed', 'Product Added', within=1h)",
        timed=True,
        keywords=(("within", "duration"),),
    )
    def sequence(self, key: str, steps: int, seconds: float) -> bool:
        value, change = tracking.sequence(
            (self.user.tracks or NO_ITEMS).get(key), steps, seconds, self.now
        )
        self._until(change)
        return value

    @function(
        ("field", "duration"),
        "number",
        "event",
        "latest time per value (at most state.max_distinct_values)",
        "distinct(properties.category, 7d) >= 3",
        timed=True,
        value_range=(0.0, "distinct_values"),  # the values kept per user
    )
    def distinct(self, key: str, seconds: float) -> int:
        value, change = tracking.distinct(
            (self.user.tracks or NO_ITEMS).get(key), seconds, self.now
        )
        self._until(change)
        return value

    def trait(self, key: str) -> Any:
        """``traits.X`` (``key`` X) or ``group.X`` (``key`` ``state.GROUP`` + X)."""
        return (self.user.traits or NO_ITEMS).get(key)

    def prop(self, path: tuple[str, ...]) -> Any:
        ev = self.event
        return None if ev is None else tracking.field_value(ev, ("properties", *path))

    # --- variables ---------------------------------------------------------------------

    session_events = variable(
        "session_events",
        "number",
        "event",
        _SESSION,
        "session_events > 20",
        _s("events"),
        inline=_s_inline("events"),
        value_range=_COUNT,
    )
    session_page_views = variable(
        "session_page_views", "number", "event", _SESSION, "session_page_views > 5",
        _s("page_views"), inline=_s_inline("page_views"),
        value_range=_COUNT,
    )  # fmt: skip
    session_screen_views = variable(
        "session_screen_views", "number", "event", _SESSION, "session_screen_views > 5",
        _s("screen_views"), inline=_s_inline("screen_views"),
        value_range=_COUNT,
    )  # fmt: skip
    session_seconds = variable(
        "session_seconds", "number", "event", _SESSION, "session_seconds > 10m",
        _session_seconds, inline="(0.0 if (_s := c.user.session) is None else _s.last - _s.start)",
        unit="seconds", value_range=_COUNT,
    )  # fmt: skip
    session_engaged_seconds = variable(
        "session_engaged_seconds", "number", "event", _SESSION,
        "session_engaged_seconds > 5m", _s("engaged"), inline=_s_inline("engaged"), unit="seconds",
        value_range=_COUNT,
    )  # fmt: skip
    session_max_page_seconds = variable(
        "session_max_page_seconds", "number", "event", _SESSION,
        "session_max_page_seconds > 600", _s("max_page"), inline=_s_inline("max_page"),
        unit="seconds", value_range=_COUNT,
    )  # fmt: skip
    session_scroll_depth = variable(
        "session_scroll_depth", "number", "event", _SESSION, "session_scroll_depth >= 75",
        _s("max_scroll"), inline=_s_inline("max_scroll"),
        value_range=(0.0, 100.0),  # a percentage, capped at 100 (sessions.py)
    )  # fmt: skip
    session_cart_adds = variable(
        "session_cart_adds", "number", "event", _SESSION, "session_cart_adds >= 2",
        _s("cart_adds"), inline=_s_inline("cart_adds"),
        value_range=_COUNT,
    )  # fmt: skip
    session_product_views = variable(
        "session_product_views", "number", "event", _SESSION, "session_product_views >= 2",
        _s("product_views"), inline=_s_inline("product_views"),
        value_range=_COUNT,
    )  # fmt: skip
    session_searches = variable(
        "session_searches", "number", "event", _SESSION, "session_searches >= 3",
        _s("searches"), inline=_s_inline("searches"),
        value_range=_COUNT,
    )  # fmt: skip
    in_session = variable(
        "in_session", "bool", "event", "whether a session is open", "in_session",
        lambda c: c.user.session is not None, inline="(c.user.session is not None)",
    )  # fmt: skip
    total_events = variable(
        "total_events", "number", "event", "a counter per user", "total_events > 100",
        lambda c: c.user.total_events, inline="c.user.total_events",
        value_range=_COUNT,
    )  # fmt: skip
    total_sessions = variable(
        "total_sessions", "number", "session_start", "a counter per user",
        "total_sessions >= 5", lambda c: c.user.total_sessions, inline="c.user.total_sessions",
        value_range=_COUNT,
    )  # fmt: skip
    total_orders = variable(
        "total_orders", "number", "close", "a counter per user, at session close",
        "total_orders >= 1", lambda c: c.user.total_orders, inline="c.user.total_orders",
        value_range=_COUNT,
    )  # fmt: skip
    total_revenue = variable(
        "total_revenue", "number", "close", "a sum per user, at session close",
        "total_revenue > 500", lambda c: c.user.total_revenue, inline="c.user.total_revenue",
    )  # fmt: skip
    cart_items = variable(
        "cart_items", "number", "cart", "sum over the cart lines (at most state.max_cart_lines)",
        "cart_items > 0", lambda c: sum(q for _, _, q in c.user.cart.values()),
    )  # fmt: skip
    cart_value = variable(
        "cart_value", "number", "cart", "sum over the cart lines (at most state.max_cart_lines)",
        "cart_value >= 100", lambda c: sum(p * q for _, p, q in c.user.cart.values()),
    )  # fmt: skip
    device = variable(
        "device", "text", "event", "the latest context.device.type", "device == 'mobile'",
        lambda c: c.user.device or "", inline="(c.user.device or '')", vocabulary=DEVICE_TYPES,
    )  # fmt: skip
    locale = variable(
        "locale", "text", "event", "the latest context.locale", "locale == 'en-GB'",
        lambda c: c.user.locale or "", inline="(c.user.locale or '')",
    )  # fmt: skip
    channel = variable(
        "channel", "text", "event", "the latest context.campaign.source",
        "channel == 'newsletter'", lambda c: c.user.channel or "", inline="(c.user.channel or '')",
    )  # fmt: skip
    intent_score = variable(
        "intent_score", "number", "event", "the intent model's score, updated per event",
        "intent_score >= 0.6", lambda c: c.user.intent_score, inline="c.user.intent_score",
        value_range=(0.0, 1.0),  # a probability
    )  # fmt: skip
    cluster = variable(
        "cluster", "number", "close", "the clustering model's assignment, at session close",
        "cluster == 2", lambda c: c.user.cluster, inline="c.user.cluster",
        drifts=True,  # assigned when the models learn, not at an evaluation
    )  # fmt: skip
    category_ = variable(
        "category", "text", "", "the category a per: category rule is evaluated for",
        "video_completions(category) >= 3", lambda c: c.category, category_local=True,
    )  # fmt: skip
    traits_ = variable(
        "traits", "any", "event",
        "identify traits a rule reads, kept per user (at most state.max_traits)",
        "traits.plan == 'pro'", lambda c: c.user.traits,
    )  # fmt: skip
    group_ = variable(
        "group", "any", "event",
        "the account traits a rule reads of the latest group call, kept per user (in max_traits)",
        "group.plan == 'enterprise'", lambda c: None,
    )  # fmt: skip
    properties_ = variable(
        "properties", "any", "", "the event being handled (event triggers' when only)",
        "properties.plan == 'pro'", lambda c: None, where="event",
    )  # fmt: skip


_register(Context)


def rounded(value: float) -> float:
    """``round(value, 4)``: a whole number (the counts windows return) is its own answer,
    without ``round``'s decimal conversion (a test compares the two over all floats)."""
    return value if value.is_integer() else round_places(value, 4)


def _compare(op: str, a: float, b: float) -> bool:
    if op == "gt":
        return a > b
    if op == "ge":
        return a >= b
    if op == "lt":
        return a < b
    return a <= b


@functools.lru_cache(maxsize=4096)
def _crossing(
    score: float, since: float, half_life: float, op: str, bound: float, holds: bool
) -> float:
    """The first time at which ``decayed(score, since, t) op bound`` is no longer ``holds``
    (which it is from ``since`` until then: the score only falls): from the closed form
    ``since + half_life * log2(score / bound)``, then to the exact float by bisection on
    the decayed value itself (what the evaluation at that time computes), so the re-check
    there finds the comparison flipped, and one a float earlier would not. INF when it
    never flips (the score underflows first). Kept per score, as every evaluation of the
    rule until the score changes asks again."""

    def flipped(t: float) -> bool:
        return _compare(op, features.decayed(score, since, t, half_life), bound) != holds

    guess = since + half_life * math.log2(score / bound)
    lo = since  # not flipped: the score itself, on the side the caller found it
    hi = guess if guess > since else _after(since)
    step = max(abs(hi) * 2.0**-40, 1e-6)
    for _ in range(200):  # gallop up to a flipped time (the guess is within a few floats)
        if flipped(hi):
            break
        lo, hi = hi, hi + step
        step *= 2.0
    else:
        return INF
    while True:  # bisect to adjacent floats: ``lo`` not flipped, ``hi`` flipped
        mid = lo + (hi - lo) / 2.0
        if mid <= lo or mid >= hi:
            return hi
        if flipped(mid):
            hi = mid
        else:
            lo = mid


def _after(t: float) -> float:
    """The first time after ``t``: a strict comparison at ``t`` flips just after it."""
    return math.nextafter(t, INF)


FUNCTIONS = functions()
VARIABLES = frozenset(variables())


@dataclass(frozen=True)
class Rule:
    """A compiled rule: ``holds(ctx)`` is its one way to be evaluated."""

    name: str
    source: str
    names: frozenset[str]
    _fast: Callable[[Context], Any]
    _explain: Callable[[Context], Any]
    trackers: tuple[Tracker, ...] = ()
    traits: frozenset[str] = frozenset()
    fast_source: str = ""  # ``_fast``'s body, an expression of the context ``c``
    properties: frozenset[tuple[str, ...]] = frozenset()  # ``properties`` paths compared
    # ``_fast`` reporting only the changes time can make to the truth (the segment
    # evaluator's, when no segment rule drifts), and its body.
    _pruned: Callable[[Context], Any] | None = None
    pruned_source: str = ""
    notes: tuple[str, ...] = ()  # warnings: parts that compile but never match (check-config)
    segments: tuple[str, ...] = ()  # the names ``in_segment`` reads, in source order
    # Lapse tests: (text, seconds) of parts that hold only after that long without
    # something (``Compiled.lapses``; check-config compares them with eviction).
    lapses: tuple[tuple[str, float, bool], ...] = ()

    def holds(self, ctx: Context) -> bool:
        try:
            return bool(self._fast(ctx))
        except (ArithmeticError, TypeError):  # e.g. revenue / orders with no orders; no trait
            return False

    def explain(self, ctx: Context) -> dict[str, Any]:
        """Evaluate again, recording the value of every function and variable used."""
        saved_next = ctx.next_change
        ctx._record = {}
        try:
            try:
                result = bool(self._explain(ctx))
            except (ArithmeticError, TypeError):
                result = False
            values = ctx._record
        finally:
            ctx._record = None
            ctx.next_change = saved_next
        return {"rule": self.name, "when": self.source, "holds": result, "values": values}


def compile_rule(
    name: str,
    source: object,
    per: str | None = None,
    scope: str = "any",
    limits: Limits | None = None,
) -> Rule:
    """Parse and check ``source``; raise ``RuleError`` saying what is wrong.

    ``scope`` is ``"event"`` for an event trigger's ``when`` (which may read the
    event's ``properties.X``), else ``"any"``. ``limits``: the per-user bounds it runs
    with (the defaults if None): a comparison no value within them can satisfy is
    rejected. ``source`` is any value a config gave: one that is no string is a
    ``RuleError`` too (typed ``str``, the compiled build raised a ``TypeError`` instead,
    which reached the user without the config's file and key).
    """
    c = compile_source(name, source, per, scope, limits)
    assert isinstance(source, str)  # compile_source rejects any other value
    return Rule(
        name, source, c.names, c.fast, c.explain, c.trackers, c.traits, c.fast_source,
        c.properties, c.pruned, c.pruned_source, c.notes, c.segments, c.lapses,
    )  # fmt: skip


__all__ = ["FUNCTIONS", "VARIABLES", "Context", "Rule", "RuleError", "compile_rule"]
