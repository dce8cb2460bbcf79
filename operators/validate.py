"""Validation of Segment-spec events: one raw line in, an ``Event`` or a
``DeadLetter`` with a precise reason out. Never raises on bad input.

>>> v = Validator(Taxonomy.default())
>>> v(b'{"type":"track","event":"Product Viewed","userId":"u1",'
...   b'"timestamp":"2026-03-02T08:00:00Z","messageId":"m1"}', "s:1").category
'engagement'
>>> v(b'{"type":"track","userId":"u1"}', "s:2").reason
'missing_timestamp'
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from audienceflow.operators.records import DeadLetter, Event, stable_id
from audienceflow.operators.watermarks import MAX_TS, MIN_TS

MAX_EVENT_BYTES = 32 * 1024
_MIN_TS = MIN_TS  # 1970-01-01T00:00:00Z
_MAX_TS = MAX_TS  # 9998-12-31T23:59:59Z: deadline arithmetic can never leave the calendar
TYPES = frozenset({"track", "page", "screen", "identify"})
UNSUPPORTED_TYPES = frozenset({"alias", "group"})

REASONS = (
    "oversize",
    "not_json",
    "not_object",
    "unknown_type",
    "unsupported_type",
    "no_identity",
    "missing_timestamp",
    "bad_timestamp",
    "wrong_field_type",
    "missing_event_name",
)


@dataclass(frozen=True)
class Taxonomy:
    """Event names mapped to categories; page and screen views are navigation."""

    by_name: dict[str, str]
    default_track: str = "other"

    @classmethod
    def default(cls) -> Taxonomy:
        groups = {
            "navigation": [
                "Products Searched",
                "Product List Viewed",
                "Product List Filtered",
                "Page Scrolled",
            ],
            "engagement": [
                "Product Viewed",
                "Product Clicked",
                "Product Added",
                "Product Removed",
                "Product Shared",
                "Cart Viewed",
                "Product Added to Wishlist",
                "Video Playback Started",
                "Video Playback Paused",
                "Video Content Started",
                "Video Content Playing",
                "Video Content Completed",
                "Video Playback Completed",
            ],
            "conversion": [
                "Checkout Started",
                "Checkout Step Completed",
                "Payment Info Entered",
                "Order Completed",
                "Signed Up",
                "Subscription Started",
            ],
        }
        return cls({name: cat for cat, names in groups.items() for name in names})

    def category(self, etype: str, name: str) -> str:
        if etype == "page" or etype == "screen":
            return "navigation"
        if etype == "identify":
            return "identity"
        return self.by_name.get(name, self.default_track)


def parse_timestamp(value: str) -> float:
    """ISO-8601 with an offset or ``Z`` → epoch seconds; raises ValueError otherwise."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError("it has no UTC offset or Z, so its instant is unknown")
    ts = dt.timestamp()
    if not _MIN_TS <= ts <= _MAX_TS:
        raise ValueError("it is outside the years 1970 to 9998 UTC")
    return ts


def _get(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


class Validator:
    """Callable turning ``(raw line, position)`` into an Event or a DeadLetter.

    ``consent_path`` is where, in the event, the personalization consent lives
    (Segment's consent manager: ``context.consent.categoryPreferences.personalization``).
    An explicit ``false`` there marks the event as withheld; absence means allowed.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        consent_path: str = "context.consent.categoryPreferences.personalization",
        max_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.taxonomy = taxonomy
        self.consent_path = tuple(consent_path.split("."))
        self.max_bytes = max_bytes

    def _dead(self, reason: str, detail: str, raw: bytes | str, position: str) -> DeadLetter:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        return DeadLetter(reason, f"step 'validate': {detail}", position, text)

    def __call__(self, raw: bytes | str, position: str) -> Event | DeadLetter:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "replace"))
        if size > self.max_bytes:
            detail = f"event is {size} bytes; the limit is {self.max_bytes}"
            return self._dead("oversize", detail, raw[:1024], position)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._dead("not_json", f"line is not JSON: {exc}", raw, position)
        if not isinstance(obj, dict):
            kind = type(obj).__name__
            return self._dead("not_object", f"expected a JSON object; got a {kind}", raw, position)
        return self._event(obj, raw, position)

    def _event(self, obj: dict[str, Any], raw: bytes | str, position: str) -> Event | DeadLetter:
        etype = obj.get("type")
        if not isinstance(etype, str) or etype not in TYPES:
            if isinstance(etype, str) and etype in UNSUPPORTED_TYPES:
                return self._dead(
                    "unsupported_type", f"type {etype!r} is not supported yet", raw, position
                )
            return self._dead(
                "unknown_type",
                f"'type' must be one of {sorted(TYPES)}; got {etype!r}",
                raw,
                position,
            )
        user_id = obj.get("userId")
        anon = obj.get("anonymousId")
        for field, val in (
            ("userId", user_id),
            ("anonymousId", anon),
            ("messageId", obj.get("messageId")),
        ):
            if val is not None and not isinstance(val, str):
                return self._dead(
                    "wrong_field_type",
                    f"{field!r} must be a string; got {type(val).__name__} {val!r}",
                    raw,
                    position,
                )
        if not user_id and not anon:
            return self._dead(
                "no_identity", "event has neither 'userId' nor 'anonymousId'", raw, position
            )
        for field in ("properties", "traits", "context"):
            val = obj.get(field)
            if val is not None and not isinstance(val, dict):
                return self._dead(
                    "wrong_field_type",
                    f"{field!r} must be an object; got {type(val).__name__}",
                    raw,
                    position,
                )
        ts_raw = obj.get("timestamp")
        if ts_raw is None:
            return self._dead("missing_timestamp", "event has no 'timestamp'", raw, position)
        if not isinstance(ts_raw, str):
            return self._dead(
                "wrong_field_type",
                f"'timestamp' must be an ISO-8601 string; got {type(ts_raw).__name__}",
                raw,
                position,
            )
        try:
            ts = parse_timestamp(ts_raw)
        except ValueError as exc:
            why = str(exc) if str(exc).startswith("it ") else "it is not ISO-8601"
            return self._dead(
                "bad_timestamp", f"'timestamp' {ts_raw!r} is rejected: {why}", raw, position
            )
        if etype == "track":
            name = obj.get("event")
            if not isinstance(name, str) or not name:
                return self._dead(
                    "missing_event_name",
                    f"a track event needs a non-empty string 'event'; got {name!r}",
                    raw,
                    position,
                )
        else:
            name = obj.get("name")
            if name is not None and not isinstance(name, str):
                return self._dead(
                    "wrong_field_type",
                    f"'name' must be a string; got {type(name).__name__}",
                    raw,
                    position,
                )
            name = name or ""
        ctx = obj.get("context") or {}
        message_id = obj.get("messageId") or "derived:" + stable_id(
            raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        )
        consent = _get(obj, self.consent_path) is not False
        device = _get(ctx, ("device", "type"))
        locale = ctx.get("locale")
        channel = _get(ctx, ("campaign", "source"))
        return Event(
            message_id=message_id,
            user_id=str(user_id or anon),
            anonymous_id=anon,
            type=etype,
            name=name,
            ts=ts,
            category=self.taxonomy.category(etype, name),
            properties=obj.get("properties") or {},
            # Interned: a handful of distinct values shared by millions of profiles.
            device=sys.intern(device) if isinstance(device, str) else None,
            locale=sys.intern(locale) if isinstance(locale, str) else None,
            channel=sys.intern(channel) if isinstance(channel, str) else None,
            position=position,
            consent=consent,
        )
