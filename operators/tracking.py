"""Per-user windows over matching events: what ``count``, ``since``, ``sequence`` and
``distinct`` read.

A tracker is made when a rule is compiled, from one call: which events it matches
(names, a ``where`` condition on the event's own fields), and for ``distinct`` which
field it collects. Calls with the same key share one structure per user, kept in
``UserState.tracks``; only trackers some rule uses exist. Every structure is bounded:
at most ``Limits.window_events`` timestamps (the oldest give way) or
``Limits.distinct_values`` values (the least recently seen give way), and entries that
no evaluation can read any more (older than the longest window plus the allowed
lateness) are pruned when a new one arrives.

Page and screen views match by their own name and by ``'Page Viewed'`` /
``'Screen Viewed'``: ``count('Page Viewed', 24h, name == 'Pricing')`` and
``count('Pricing', 24h)`` count the same page views (the second also counts a track
event named "Pricing").

>>> from audienceflow.operators.records import Event
>>> t = Tracker("log", "log:x", (frozenset({"Page Viewed"}),), None, (), 3600.0)
>>> u = UserState("u", first_seen=0.0)
>>> for ts in (0.0, 10.0, 20.0):
...     t.observe(u, Event("m", "u", None, "page", "Pricing", ts, "navigation", {}), Limits())
>>> count(u.tracks["log:x"], 3600.0, 3605.0)
(2, 3610.0)
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audienceflow.operators.amounts import amount
from audienceflow.operators.records import Event
from audienceflow.operators.state import INF, Limits, UserState, hit

PAGE_EVENT = "Page Viewed"
SCREEN_EVENT = "Screen Viewed"

# Fields of an event that a ``where`` condition or ``distinct`` may read.
EVENT_FIELDS = (
    "name",
    "type",
    "category",
    "context.device.type",
    "context.locale",
    "context.campaign.source",
    "properties.<key>",
)
_CONTEXT = {
    ("context", "device", "type"): "device",
    ("context", "locale"): "locale",
    ("context", "campaign", "source"): "channel",
}
_MAX_VALUE_CHARS = 64


def check_field(path: tuple[str, ...]) -> str | None:
    """``None`` when ``path`` names an event field, else why not."""
    if path in (("name",), ("type",), ("category",)) or path in _CONTEXT:
        return None
    if len(path) >= 2 and path[0] == "properties":
        return None
    return f"unknown event field '{'.'.join(path)}'; known: {', '.join(EVENT_FIELDS)}"


# The e-commerce spec's amounts, which a rule reads as numbers when sent as plain
# decimal text (a product line's too: ``products`` is not read by a rule).
AMOUNT_KEYS = frozenset({"price", "total", "revenue", "quantity"})


def field_value(ev: Event, path: tuple[str, ...]) -> Any:
    """The value of an event field (``None`` when absent)."""
    head = path[0]
    if head == "properties":
        cur: Any = ev.properties
        for key in path[1:]:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(key)
        if type(cur) is str and path[-1] in AMOUNT_KEYS:
            # ``properties.price > 40`` reads "49.90" as the cart does (``amounts``).
            number = amount(cur)
            return cur if number is None else number
        return cur
    if head == "name":
        return ev.name
    if head == "type":
        return ev.type
    if head == "category":
        return ev.category
    attr = _CONTEXT.get(path)
    return None if attr is None else getattr(ev, attr)


def matches_name(ev: Event, names: frozenset[str]) -> bool:
    """Whether ``ev`` is one of ``names`` (page/screen views also as Page/Screen Viewed)."""
    if ev.name in names:
        return True
    if ev.type == "page":
        return PAGE_EVENT in names
    if ev.type == "screen":
        return SCREEN_EVENT in names
    return False


@dataclass(frozen=True, slots=True)
class Tracker:
    """One per-user window structure; ``observe`` folds an event into it.

    ``kind``: ``log`` (sorted timestamps: count, since), ``seq`` (timestamps with the
    steps each event matches: sequence), ``distinct`` (value -> latest time).
    ``steps`` are the event names of each step (empty: any event).
    ``horizon``: the longest window any call with this key reads.
    """

    kind: str
    key: str
    steps: tuple[frozenset[str], ...]
    where: Callable[[Event], bool] | None
    field: tuple[str, ...]
    horizon: float

    def _match(self, ev: Event, names: frozenset[str]) -> bool:
        if names and not matches_name(ev, names):
            return False
        if self.where is not None:
            try:
                return bool(self.where(ev))
            except (TypeError, ArithmeticError):  # e.g. properties.price > 10 with a text price
                return False
        return True

    def observe(
        self,
        user: UserState,
        ev: Event,
        limits: Limits,
        slack: float = 0.0,
        hits: dict[str, int] | None = None,
    ) -> None:
        if ev.type == "identify" or ev.type == "group":
            return
        if self.kind == "seq":
            mask = 0
            for i, names in enumerate(self.steps):
                if self._match(ev, names):
                    mask |= 1 << i
            if mask:
                self._insert(user, (ev.ts, mask), ev.ts, limits, slack, hits)
        elif self._match(ev, self.steps[0]):
            if self.kind == "log":
                self._insert(user, ev.ts, ev.ts, limits, slack, hits)
            else:
                self._distinct(user, ev, limits, hits)

    def _insert(
        self,
        user: UserState,
        entry: Any,
        ts: float,
        limits: Limits,
        slack: float,
        hits: dict[str, int] | None,
    ) -> None:
        tracks = _own_tracks(user)
        log: list[Any] | None = tracks.get(self.key)
        if log is None:
            log = tracks[self.key] = []
        if self.kind == "seq":
            bisect.insort_right(log, entry, key=_first)
            newest = log[-1][0]
            cut = bisect.bisect_left(log, newest - self.horizon - slack, key=_first)
        else:
            bisect.insort_right(log, entry)
            newest = log[-1]
            cut = bisect.bisect_left(log, newest - self.horizon - slack)
        # Nothing older than the cut can be read again; the last one before it still
        # answers since() for any evaluation time the engine can reach.
        if cut > 1:
            del log[: cut - 1]
        if len(log) > limits.window_events:
            del log[: len(log) - limits.window_events]
            hit(hits, "window_events")

    def _distinct(
        self, user: UserState, ev: Event, limits: Limits, hits: dict[str, int] | None
    ) -> None:
        value = field_value(ev, self.field)
        if value is None or isinstance(value, dict | list):
            return
        text = str(value)
        if len(text) > _MAX_VALUE_CHARS:
            text = "#" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
        tracks = _own_tracks(user)
        seen: dict[str, float] | None = tracks.get(self.key)
        if seen is None:
            seen = tracks[self.key] = {}
        old = seen.get(text)
        if old is None and len(seen) >= limits.distinct_values:
            del seen[min(seen, key=seen.__getitem__)]
            hit(hits, "distinct_values")
        if old is None or ev.ts > old:
            seen[text] = ev.ts


def _first(entry: tuple[float, int]) -> float:
    return entry[0]


def count(log: list[float] | None, seconds: float, now: float) -> tuple[int, float]:
    """Entries in ``(now - seconds, now]`` and the next time that number changes.

    An entry at ``t`` leaves exactly at ``t + seconds`` (compared as ``t + seconds <=
    now``, the same sum that is reported as the change time).
    """
    if not log:
        return 0, INF
    lo = bisect.bisect_right(log, now, key=lambda t: t + seconds)
    hi = bisect.bisect_right(log, now)
    change = log[lo] + seconds if lo < hi else INF
    if hi < len(log) and log[hi] < change:
        change = log[hi]
    return max(hi - lo, 0), change


def last_at(log: list[float] | None, now: float) -> float:
    """The latest entry at or before ``now`` (``-inf`` when none)."""
    if not log:
        return -INF
    hi = bisect.bisect_right(log, now)
    return log[hi - 1] if hi else -INF


def next_after(log: list[float] | None, now: float) -> float:
    """The earliest entry after ``now`` (``inf`` when none)."""
    if not log:
        return INF
    hi = bisect.bisect_right(log, now)
    return log[hi] if hi < len(log) else INF


def sequence(
    log: list[tuple[float, int]] | None, steps: int, seconds: float, now: float
) -> tuple[bool, float]:
    """Whether the steps happened in order, all within ``(now - seconds, now]``.

    Scans back from ``now`` taking the latest event of each step (latest first), which
    gives the chain that starts latest; it holds until that start leaves the window.
    """
    if not log:
        return False, INF
    hi = bisect.bisect_right(log, now, key=_first)
    change = log[hi][0] if hi < len(log) else INF
    step = steps - 1
    i = hi - 1
    while i >= 0:
        ts, mask = log[i]
        if ts + seconds <= now:
            break
        if mask >> step & 1:
            step -= 1
            if step < 0:
                return True, min(change, ts + seconds)
        i -= 1
    return False, change


def distinct(seen: dict[str, float] | None, seconds: float, now: float) -> tuple[int, float]:
    """Values last seen within ``(now - seconds, now]`` and the next time that changes."""
    if not seen:
        return 0, INF
    n = 0
    change = INF
    for t in seen.values():
        if t > now:
            change = min(change, t)
        elif t + seconds > now:
            n += 1
            change = min(change, t + seconds)
    return n, change


def merge(trackers: list[Tracker]) -> list[Tracker]:
    """One tracker per key, reading as far back as the longest call with that key."""
    by_key: dict[str, Tracker] = {}
    for t in trackers:
        old = by_key.get(t.key)
        if old is None or t.horizon > old.horizon:
            by_key[t.key] = t
    return [by_key[k] for k in sorted(by_key)]


def _own_tracks(user: UserState) -> dict[str, Any]:
    """``user.tracks``, made on its first write (it is None until then: ``state.NO_ITEMS``)."""
    tracks = user.tracks
    if tracks is None:
        tracks = user.tracks = {}
    return tracks
