"""Behavioral features of a user: category affinity with time decay, video
completions, cart state, and the window aggregates that segment rules read.

All times are event times (epoch seconds). Affinity decays exponentially with
a half-life: a view worth 1.0 today is worth 0.5 one half-life later.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from audienceflow.operators.records import Event
from audienceflow.operators.state import H_START, HISTORY_METRICS, INF, UserState

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


def decayed(score: float, since: float, now: float, half_life: float) -> float:
    """``score`` recorded at ``since``, decayed to ``now``."""
    if now <= since:
        return score
    return score * math.exp2(-(now - since) / half_life)


def update(user: UserState, ev: Event, spec: FeatureSpec) -> None:
    """Fold one event into the user's behavioral features."""
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
    if isinstance(cat, str) and cat:
        cat = sys.intern(cat)
        weight = spec.affinity_weights.get(name)
        if weight is None and (ev.type == "page" or ev.type == "screen"):
            weight = spec.page_affinity_weight
        if weight:
            old = user.affinity.get(cat)
            base = 0.0 if old is None else decayed(old[0], old[1], ts, spec.affinity_half_life)
            user.affinity[cat] = (base + weight, max(ts, old[1]) if old else ts)
        if name in spec.video_complete_events:
            user.video_completions[cat] = user.video_completions.get(cat, 0) + 1
    if name in spec.cart_add_events:
        pid = props.get("product_id")
        if isinstance(pid, str | int):
            prev = user.cart.get(str(pid))
            qty = props.get("quantity", 1)
            qty = qty if isinstance(qty, int) and not isinstance(qty, bool) and qty > 0 else 1
            price = props.get("price", 0.0)
            price = (
                float(price)
                if isinstance(price, int | float) and not isinstance(price, bool)
                else 0.0
            )
            user.cart[str(pid)] = (
                cat if isinstance(cat, str) else "",
                price,
                qty + (prev[2] if prev else 0),
            )
            user.cart_updated = ts
    elif name in spec.cart_remove_events:
        pid = props.get("product_id")
        if pid is not None and user.cart.pop(str(pid), None) is not None:
            user.cart_updated = ts
    elif name in spec.order_events and ts >= user.cart_updated:
        user.cart.clear()
        user.cart_updated = ts
        user.last_order_ts = max(user.last_order_ts, ts)


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
    """The cart as an action payload: products (sorted), item count and value."""
    products = [
        {"product_id": pid, "category": c, "price": round(p, 2), "quantity": q}
        for pid, (c, p, q) in sorted(user.cart.items())
    ]
    return {
        "products": products,
        "items": sum(q for _, _, q in user.cart.values()),
        "value": round(sum((p * q for _, p, q in user.cart.values()), 0.0), 2),
    }


def profile(user: UserState, now: float, half_life: float) -> dict[str, object]:
    """The live profile other services read (Redis hash fields, profiles.jsonl)."""
    from audienceflow.operators.records import iso

    return {
        "user_id": user.user_id,
        "segments": sorted(user.segments),
        "cluster": user.cluster,
        "intent_score": round(user.intent_score, 6),
        "last_seen": iso(user.last_ts) if user.last_ts > -INF else None,
        "first_seen": iso(user.first_seen),
        "sessions": user.total_sessions,
        "events": user.total_events,
        "orders": user.total_orders,
        "revenue": round(user.total_revenue, 2),
        "top_category": top_category(user, now, half_life),
        "video_completions": dict(sorted(user.video_completions.items())),
        "cart_items": sum(q for _, _, q in user.cart.values()),
        "cart_value": round(sum((p * q for _, p, q in user.cart.values()), 0.0), 2),
        "device": user.device,
        "locale": user.locale,
        "recommendations": user.recommendations or {},
        "updated_at": iso(now),
    }
