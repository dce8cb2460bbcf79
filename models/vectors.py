"""Feature vectors of the models, as plain ``dict[str, float]`` (River's currency).

Two vectors: ``user_vector`` describes a user's behaviour over their history
(for clustering, built at session close), ``intent_vector`` describes the open
session so far plus the user's history before it (for the intent model, built
on every event). Keys are a fixed, bounded set so model state stays small.

Per-user model memory lives in ``UserState.model`` under short keys, only
while a session is open, except ``"cart"`` (whether the cart was left open at
the last close):

- ``"sid"``: the session those keys belong to; ``"h"``: the history tuple
  captured when the session opened; ``"pv"``: time of the last product view;
  ``"qv"``: quick product views so far; ``"step"``: the latest step;
  ``"x"``: the raw intent tuple the last pre-funnel score came from;
  ``"p"``: that score.

>>> from audienceflow.operators.state import UserState
>>> sorted(user_vector(UserState("u1", 0.0), 0.0, ("deals",)))[:3]
['affinity_deals', 'cart_adds', 'conversion_rate']
"""

from __future__ import annotations

import math
from typing import Any

from audienceflow.operators.records import Event
from audienceflow.operators.state import (
    H_CART_ADDS,
    H_CONVERTED,
    H_ENGAGED,
    H_EVENTS,
    H_START,
    NO_ITEMS,
    OpenSession,
    UserState,
)

DAY = 86400.0
HOUR = 3600.0
WEEK = 7 * DAY
MONTH = 30 * DAY
# Recency of a user with one session: as if the previous visit were this long ago.
FIRST_VISIT_HOURS = 30 * 24.0

# Steps with their own one-hot; any other step is its event type (page, screen, track).
STEPS = frozenset(
    {
        "Product Viewed",
        "Product Clicked",
        "Product Added",
        "Product Removed",
        "Products Searched",
        "Product List Viewed",
        "Cart Viewed",
        "Video Playback Started",
        "Video Content Completed",
    }
)
DEVICES = frozenset({"mobile", "desktop", "tablet"})

# The user-vector features, with how a marketer reads a high and a low value.
USER_LABELS: dict[str, tuple[str, str]] = {
    "sessions_7d": ("high frequency", "low frequency"),
    "sessions_30d": ("frequent this month", "rare this month"),
    "recency_hours": ("long gaps between visits", "short gaps between visits"),
    "events_per_session": ("deep sessions", "shallow sessions"),
    "engaged_minutes": ("long engagement", "short engagement"),
    "cart_adds": ("high cart", "low cart"),
    "conversion_rate": ("high conversion", "low conversion"),
    "video_completions": ("video watcher", "no video"),
    "open_cart": ("cart left open", "empty cart"),
}


def user_label(feature: str, high: bool) -> str:
    """How a marketer reads a high (or low) value of a user-vector feature."""
    if feature.startswith("affinity_"):
        cat = feature[len("affinity_") :]
        return f"{cat} pages" if high else f"few {cat} pages"
    hi, lo = USER_LABELS.get(feature, (f"high {feature}", f"low {feature}"))
    return hi if high else lo


def user_vector(
    user: UserState, now: float, categories: tuple[str, ...], half_life: float = 7 * DAY
) -> dict[str, float]:
    """The user's behaviour at event time ``now``: frequency, recency, depth, affinities, cart.

    Per-session values are means over the retained history; affinities are each
    listed category's share of the user's total decayed affinity. The session counts
    are ``features.window``'s over 7 and 30 days, counted in one pass over the history.
    """
    hist = user.history
    n = len(hist) or 1
    events = engaged = adds = converted = 0.0
    cut7, cut30 = now - WEEK, now - MONTH  # ``features.window``'s cut-offs
    in7 = in30 = 0
    for h in hist:
        events += h[H_EVENTS]
        engaged += h[H_ENGAGED]
        adds += h[H_CART_ADDS]
        converted += 1 if h[H_CONVERTED] else 0  # ``sessions.conversion_events``, not orders
        start = h[H_START]
        if cut30 < start <= now:  # cut30 <= cut7: a start in the week is in the month
            in30 += 1
            if cut7 < start:
                in7 += 1
    s = user.session
    if s is not None and cut30 < s.start <= now:
        in30 += 1
        if cut7 < s.start:
            in7 += 1
    x = {
        "sessions_7d": math.log1p(in7),
        "sessions_30d": math.log1p(in30),
        "events_per_session": math.log1p(events / n),
        "engaged_minutes": math.log1p(engaged / n / 60.0),
        "cart_adds": adds / n,
        "conversion_rate": converted / n,
        "video_completions": sum((user.video_completions or NO_ITEMS).values())
        / max(user.total_sessions, 1),
        "open_cart": 1.0 if user.cart else 0.0,
    }
    if len(hist) >= 2:  # a first visit has no recency: left out, so it reads as average
        gap = (hist[-1][H_START] - hist[-2][H_START]) / HOUR
        x["recency_hours"] = math.log1p(max(gap, 0.0))
    # ``features.affinity`` of each category (``features.decayed``, inline: a call per
    # category was most of this loop's cost), decayed once and summed in the same order.
    # A loop, not a comprehension: one would make ``now`` a cell, read at every history
    # entry above through it (CPython 3.11 makes a comprehension's names cells).
    exp2 = math.exp2
    now_of: dict[str, float] = {}
    for cat, (score, since) in user.affinity.items():
        now_of[cat] = score if now <= since else score * exp2(-(now - since) / half_life)
    total = 0.0
    for value in now_of.values():
        total += value
    for cat in categories:
        share = now_of.get(cat, 0.0) / total if total > 0 else 0.0
        x[_affinity_name(cat)] = share
    return x


def _affinity_name(category: str) -> str:
    name = _AFFINITY_NAMES.get(category)
    if name is None:
        name = _AFFINITY_NAMES[category] = "affinity_" + category  # configured: bounded
    return name


_AFFINITY_NAMES: dict[str, str] = {}

_LOG_SCALED = frozenset(
    {"sessions_7d", "sessions_30d", "recency_hours", "events_per_session", "engaged_minutes"}
)


def in_original_units(feature: str, value: float) -> float:
    """Undo the log scale some user features are kept in (for centroid reports).

    Every user feature is a count, a rate or a share, never below 0; a centroid read
    back through the online scaler's later means can land a hair below (REES46's
    buyers-free cluster reported conversion_rate -0.0001), so it is reported as 0.
    """
    if feature in _LOG_SCALED:
        value = math.expm1(value)
    return value if value > 0.0 else 0.0


# --- intent -----------------------------------------------------------------


def open_history(user: UserState, s: OpenSession) -> tuple[float, float, float, float, float]:
    """The user's history as the session opens: (sessions before, orders in closed
    sessions (each order event once: two in one session are two), previous converted,
    cart left open, log1p hours since the previous visit)."""
    before = user.total_sessions - 1
    prev = user.history[-1][H_START] if user.history else None
    hours = (s.start - prev) / HOUR if prev is not None else FIRST_VISIT_HOURS
    return (
        float(before),
        float(user.total_orders),
        1.0 if before and user.last_session_converted else 0.0,
        1.0 if user.model.get("cart") else 0.0,
        math.log1p(max(hours, 0.0)),
    )


def step_of(ev: Event) -> str:
    """The bounded name of an event as the session's latest step."""
    name: str = ev.name if ev.name in STEPS else ev.type
    return name


def intent_raw(s: OpenSession, m: dict[str, Any]) -> tuple[Any, ...]:
    """A compact, picklable record of the session so far, enough to rebuild its vector."""
    gap = (s.last - s.start) / (s.events - 1) if s.events > 1 else 0.0
    return (
        s.events,
        s.product_views,
        m.get("qv", 0),
        s.cart_adds,
        s.searches,
        gap,
        m.get("step", ""),
        s.device,
        s.channel,
    )


# The one-hot feature names, made once: these strings are built on every event otherwise.
_NAMES_MAX = 1024
_STEP_NAMES: dict[str, str] = {}
_DEVICE_NAMES = {d: "device=" + d for d in DEVICES}
_CHANNEL_NAMES: dict[str, str] = {}


def _one_hot(names: dict[str, str], prefix: str, value: str) -> str:
    name = names.get(value)
    if name is None:
        name = prefix + value
        if len(names) < _NAMES_MAX:  # steps and channels are bounded sets; be sure
            names[value] = name
    return name


def one_hot_names(
    step: str, device: str | None, channel: str | None, channels: dict[str, None]
) -> tuple[str, str, str]:
    """The names of an intent vector's three one-hot features (step, device, channel)."""
    return (
        _one_hot(_STEP_NAMES, "step=", step),
        _DEVICE_NAMES.get(device, "device=other") if device is not None else "device=other",
        _one_hot(_CHANNEL_NAMES, "channel=", channel if channel in channels else "other"),
    )


def intent_vector(
    raw: tuple[Any, ...], hist: tuple[float, ...], channels: dict[str, None]
) -> dict[str, float]:
    """The intent model's input: the session so far and the history before it.

    Twelve numeric features (the model standardises them), then three one-hot ones
    (step, device, channel: 1.0, read as they are). ``channels`` is the model's bounded
    channel vocabulary; others read as "other".
    """
    x, hots = intent_parts(raw, hist, channels)
    x.update(hots)
    return x


def intent_parts(
    raw: tuple[Any, ...], hist: tuple[float, ...], channels: dict[str, None]
) -> tuple[dict[str, float], dict[str, float]]:
    """``intent_vector`` in its two parts, numeric features then one-hots (what the intent
    model's scaler and its regression take apart, made apart: ``IntentModel.learn_raw``)."""
    events, views, quick, adds, searches, gap, step, device, channel = raw
    before, past, prev, cart, since = hist
    step_name, device_name, channel_name = one_hot_names(step, device, channel, channels)
    numeric = {
        "events": math.log1p(events),
        "product_views": math.log1p(views),
        "quick_views": float(quick),
        "cart_adds": float(adds),
        "searches": float(searches),
        "mean_step_seconds": math.log1p(gap),
        "sessions_before": math.log1p(before),
        "past_conversions": math.log1p(past),
        "previous_converted": prev,
        "cart_left_open": cart,
        "hours_since_visit": since,
        "first_visit": 0.0 if before else 1.0,
    }
    return numeric, {step_name: 1.0, device_name: 1.0, channel_name: 1.0}
