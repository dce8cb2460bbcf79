"""Validation of Segment-spec events: one raw line in, an ``Event`` or a
``DeadLetter`` with a precise reason out. Never raises on bad input.

>>> v = Validator(Taxonomy.default())
>>> v(b'{"type":"track","event":"Product Viewed","userId":"u1",'
...   b'"timestamp":"2026-03-02T08:00:00Z","messageId":"m1"}', "s:1").category
'engagement'
>>> v(b'{"type":"track","userId":"u1"}', "s:2").reason
'missing_timestamp'

Hostile lines get a reason too: invalid UTF-8 and lone surrogates are
``bad_encoding``; NaN, Infinity and 1e400 are ``not_json``; an id or name longer
than ``MAX_FIELD_CHARS`` or holding a control character (NUL) is
``oversize_field``/``wrong_field_type``; a repeated identity key is
``duplicate_key``; properties nested deeper than ``bounds.MAX_DEPTH`` are
``too_deep``; a line of more than ``bounds.MAX_VALUES`` values is
``too_many_values``. A byte-order mark at the start of a line is stripped.

A call without ``timestamp`` takes its time from Segment's time fields
(``derive_timestamp``):

>>> v(b'{"type":"page","userId":"u1","receivedAt":"2026-03-02T08:00:00Z"}', "s:3").ts
1772438400.0
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from audienceflow.operators.bounds import (
    MAX_DEPTH,
    MAX_VALUES,
    exceeds_depth,
    exceeds_values,
    values_bound,
)
from audienceflow.operators.normalize import AGENTS as _AGENTS
from audienceflow.operators.normalize import BLANK_PRINTABLE as _BLANK_PRINTABLE
from audienceflow.operators.normalize import DEVICES as _DEVICES
from audienceflow.operators.normalize import LOCALES as _LOCALES
from audienceflow.operators.normalize import (
    MAX_AGENT_CACHED,
    blank,
    device_from_agent,
    device_from_model,
)
from audienceflow.operators.normalize import MODELS as _MODELS
from audienceflow.operators.normalize import PLATFORMS as _PLATFORMS
from audienceflow.operators.normalize import SOURCES as _SOURCES
from audienceflow.operators.records import DeadLetter, Event, iso, stable_id
from audienceflow.operators.scrub import bounded_text, cut_personal, preview
from audienceflow.operators.state import GROUP_ID
from audienceflow.operators.watermarks import MAX_TS, MIN_TS

MAX_EVENT_BYTES: Final = 32 * 1024
OVERSIZE_KEEP: Final = 1024  # characters of an oversize line its dead letter keeps
MAX_FIELD_CHARS: Final = 512  # ids and event names
_BOM: Final = b"\xef\xbb\xbf"
_VALUES_BYTES: Final = 2 * MAX_VALUES  # a line no longer holds at most ``MAX_VALUES`` values
# The per-line calls as constants: compiled, ``orjson.loads`` is two lookups by name per
# call (the module, then its attribute); a ``Final`` is read as a C constant.
_LOADS: Final = orjson.loads
_DUMPS: Final = orjson.dumps
_FROMISO: Final = datetime.fromisoformat
CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
_MIN_TS: Final = MIN_TS  # 1970-01-01T00:00:00Z
_NAN: Final = float("nan")  # in no range: the time goes through ``parse_timestamp``
_MAX_TS: Final = MAX_TS  # 9998-12-31T23:59:59Z: deadline arithmetic can never leave the calendar
TYPES: Final = frozenset({"track", "page", "screen", "identify", "alias", "group"})
# What a sender with a bug writes for a ``messageId`` it does not have (JavaScript's
# ``String(undefined)``, a null column, a default of 0), compared stripped and in lower
# case. Taken as an id, each made every other event carrying it within the dedup window,
# of any user, a duplicate: such an event's id is derived from its line instead, as an
# absent one's is (so a resent line is still a duplicate).
PLACEHOLDER_MESSAGE_IDS: Final = frozenset(
    {"", "undefined", "null", "none", "nil", "nan", "0", "-1", "anonymous", "[object object]"}
)
_PLACEHOLDER_CHARS: Final = max(map(len, PLACEHOLDER_MESSAGE_IDS))
# ``Taxonomy.category`` of every type but track (whose category depends on its name).
_CATEGORIES: Final = {
    "page": "navigation",
    "screen": "navigation",
    "identify": "identity",
    "alias": "identity",
    "group": "identity",
}
# Segment's video spec describes content by ``genre`` and has no ``category``: for these
# events the genre is the category (affinity, video completions, per-category segments).
GENRE_EVENTS: Final = frozenset(
    {"Video Content Started", "Video Content Playing", "Video Content Completed"}
)

# Segment's retired e-commerce v1 names, each read as its v2 name (when the taxonomy
# has it). From Segment's "Spec: V1 Ecommerce Events" (Viewed Product Category, Viewed
# Product, Added/Removed Product, Completed Order) and the backward-compatible matching
# of its analytics.js integrations (the ``analytics-events`` package: every v2 name also
# in action-object order, "viewed product category" for a product list; and their
# ``startedOrder`` for a checkout). Folded like any name (``completed_order`` too).
V1_NAMES = {
    "Searched Products": "Products Searched",
    "Viewed Product List": "Product List Viewed",
    "Viewed Product Category": "Product List Viewed",
    "Filtered Product List": "Product List Filtered",
    "Viewed Promotion": "Promotion Viewed",
    "Clicked Promotion": "Promotion Clicked",
    "Clicked Product": "Product Clicked",
    "Viewed Product": "Product Viewed",
    "Added Product": "Product Added",
    "Removed Product": "Product Removed",
    "Shared Product": "Product Shared",
    "Viewed Cart": "Cart Viewed",
    "Started Checkout": "Checkout Started",
    "Started Order": "Checkout Started",
    "Viewed Checkout Step": "Checkout Step Viewed",
    "Completed Checkout Step": "Checkout Step Completed",
    "Entered Payment Info": "Payment Info Entered",
    "Completed Order": "Order Completed",
    "Updated Order": "Order Updated",
    "Refunded Order": "Order Refunded",
    "Cancelled Order": "Order Cancelled",
}

REASONS = (
    "oversize",
    "not_json",
    "not_object",
    "unknown_type",
    "no_identity",
    "bad_alias",
    "missing_group_id",
    "missing_timestamp",
    "bad_timestamp",
    "wrong_field_type",
    "missing_event_name",
    "bad_encoding",
    "oversize_field",
    "duplicate_key",
    "too_deep",
    "too_many_values",
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
                "Promotion Viewed",
                "Promotion Clicked",
                "Product Viewed",
                "Product Clicked",
                "Product Added",
                "Product Removed",
                "Product Shared",
                "Cart Viewed",
                "Cart Shared",
                "Product Reviewed",
                "Product Added to Wishlist",
                "Product Removed from Wishlist",
                "Wishlist Product Added to Cart",
                "Coupon Entered",
                "Coupon Applied",
                "Coupon Denied",
                "Coupon Removed",
                "Video Playback Started",
                "Video Playback Paused",
                "Video Playback Interrupted",
                "Video Playback Buffer Started",
                "Video Playback Buffer Completed",
                "Video Playback Seek Started",
                "Video Playback Seek Completed",
                "Video Playback Resumed",
                "Video Playback Exited",
                "Video Content Started",
                "Video Content Playing",
                "Video Content Completed",
                "Video Playback Completed",
                "Video Ad Started",
                "Video Ad Playing",
                "Video Ad Completed",
                "Video Quality Updated",
            ],
            "conversion": [
                "Checkout Started",
                "Checkout Step Viewed",
                "Checkout Step Completed",
                "Payment Info Entered",
                "Order Completed",
                "Signed Up",
                "Subscription Started",
            ],
            # After an order: not a step towards one (a refund is no conversion).
            "post_purchase": ["Order Updated", "Order Refunded", "Order Cancelled"],
            # Segment's Native Mobile Spec: what analytics-swift and analytics-kotlin
            # send unasked as the app starts, updates and goes to the background ...
            "lifecycle": [
                "Application Installed",
                "Application Opened",
                "Application Backgrounded",
                "Application Foregrounded",
                "Application Updated",
                "Application Uninstalled",
                "Application Crashed",
            ],
            # ... and its campaign events: attribution, push notifications, deep links.
            "campaign": [
                "Install Attributed",
                "Push Notification Received",
                "Push Notification Tapped",
                "Push Notification Bounced",
                "Deep Link Clicked",
                "Deep Link Opened",
            ],
        }
        return cls({name: cat for cat, names in groups.items() for name in names})

    def category(self, etype: str, name: str) -> str:
        if etype == "page" or etype == "screen":
            return "navigation"
        if etype == "identify" or etype == "alias" or etype == "group":
            return "identity"
        return self.by_name.get(name, self.default_track)


def parse_timestamp(value: str) -> float:
    """ISO-8601 with an offset or ``Z`` → epoch seconds; raises ValueError otherwise.

    RFC 3339 (section 5.6, the profile of ISO 8601 JSON senders write) lets the ``T``
    and ``Z`` be lower case, which ``datetime.fromisoformat`` refuses:

    >>> parse_timestamp("2026-03-02t08:00:00.5z")
    1772438400.5

    BigQuery writes a TIMESTAMP as text (``bq extract``, its console, a CSV or JSON
    export) with a space for the ``T`` and the zone named ``UTC``, or as a short offset:

    >>> parse_timestamp("2026-03-02 08:00:00.5 UTC"), parse_timestamp("2026-03-02 08:00:00+00")
    (1772438400.5, 1772438400.0)

    Only ``UTC`` is read by name: an abbreviation such as ``PST`` names no one offset.
    """
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        try:
            dt = _other_iso(value)
        except ValueError:
            if _empty_fraction(value):
                raise ValueError(_EMPTY_FRACTION_WHY) from None
            raise
    if not dt.microsecond and _empty_fraction(value):
        raise ValueError(_EMPTY_FRACTION_WHY)
    if ("." in value or "," in value) and _COARSE_FRACTION.search(value) is not None:
        raise ValueError(_COARSE_FRACTION_WHY)
    if dt.tzinfo is None:
        raise ValueError("it has no UTC offset or Z, so its instant is unknown")
    ts = dt.timestamp()
    if not _MIN_TS <= ts <= _MAX_TS:
        raise ValueError("it is outside the years 1970 to 9998 UTC")
    return ts


# A decimal sign with no digit after it (``10:00:00.Z``), which Python reads as no
# fraction; ISO 8601 and RFC 3339 need at least one digit after the sign.
_NO_FRACTION_DIGIT = re.compile(r"\d[.,](?![0-9])")
_EMPTY_FRACTION_WHY: Final = (
    "it has a decimal point with no digit after it; ISO 8601 needs one or more, as in "
    "10:00:00.0Z, or none and no point, as in 10:00:00Z"
)


# A decimal fraction of an hour or a minute (``10.5``, ``10:00.5``): ISO 8601 reads it
# as a part of that unit (10:30, 10:00:30), Python as a part of a second (10:00:00.5).
# RFC 3339 has no such form; neither reading is safe to guess.
_FRACTION_SIGNS: Final = (".", ",")  # after ``YYYY-MM-DDTHH:MM:SS``: of a second
_COARSE_FRACTION = re.compile(r"[Tt ]\d\d(?::?\d\d)?[.,]\d")
_COARSE_FRACTION_WHY: Final = (
    "it has a decimal fraction of an hour or a minute, which ISO 8601 and Python read "
    "differently (10:00.5 is 10:00:30 or 10:00:00.5); write the seconds, as in 10:00:30Z"
)


def _empty_fraction(value: str) -> bool:
    """Whether the time in ``value`` (before any RFC 9557 suffix) has a decimal sign with
    no digit after it."""
    if "." not in value and "," not in value:
        return False
    return _NO_FRACTION_DIGIT.search(value.partition("[")[0]) is not None


# A zone named after the time, as BigQuery writes it (``2024-03-02 08:00:00 UTC``).
_ZONE_NAME = re.compile(r"(.+\d:\d\d(?::\d\d(?:\.\d+)?)?) ([A-Za-z][A-Za-z_/+-]{0,40})")


# RFC 9557's suffixes after an RFC 3339 time with its offset, as Java's ZonedDateTime
# writes them (``2026-03-02T10:00:00+01:00[Europe/Paris]``, ``…Z[UTC]``, ``[u-ca=…]``).
_SUFFIXES = re.compile(r"(.+?(?:[zZ]|[+-]\d\d(?::?\d\d)?))((?:\[!?[A-Za-z0-9_.+/=-]{1,64}\]){1,4})")


def _other_iso(value: str) -> datetime:
    """``value`` read where ``datetime.fromisoformat`` refuses it: RFC 3339's lower-case
    ``t``/``z``, BigQuery's zone name ``UTC`` after the time, RFC 9557's suffixes after
    an offset (the offset gives the instant: a zone's name says only which rules apply
    later, which an instant does not need); ValueError otherwise."""
    # (Only a short text ending in "]" is tried: the lazy head is quadratic in length.)
    suffixed = _SUFFIXES.fullmatch(value) if len(value) <= 200 and value[-1:] == "]" else None
    if suffixed is not None:
        head = suffixed.group(1)
        try:
            return datetime.fromisoformat(head)
        except ValueError:
            return _other_iso(head)  # no suffix left: at most one level deeper
    named = _ZONE_NAME.fullmatch(value)
    if named is not None:
        zone = named.group(2)
        if zone.upper() != "UTC":
            raise ValueError(
                f"it names the zone {zone!r}: of zone names only UTC is read (as "
                "BigQuery writes it), else an offset such as -08:00 or Z"
            )
        given = named.group(1) + "+00:00"
    else:
        given = value.replace("t", "T").replace("z", "Z")
    try:
        return datetime.fromisoformat(given)
    except ValueError:
        pass
    # ISO 8601's end of a day (``24:00:00``) and a leap second (``23:59:60``, which RFC
    # 3339 allows): the next day's midnight, the next minute's start, as PostgreSQL and
    # POSIX time read them (Unix time has no leap seconds). Python refuses both.
    edge = _DAY_END_OR_LEAP.fullmatch(given)
    if edge is not None:
        head, hhmm, frac, zone = edge.group(1, 2, 3, 4)
        frac = frac or ""
        if hhmm.startswith("24:"):
            if frac.strip(".0"):
                raise ValueError("it is past 24:00, the end of the day")
            base = f"{head}T00:00:00{zone}"
            step = timedelta(days=1)
        else:
            base = f"{head}T{hhmm}:59{frac}{zone}"
            step = timedelta(seconds=1)
        try:
            dt = datetime.fromisoformat(base)
            if not hhmm.startswith("24:") and not _ends_utc_day(dt):
                raise ValueError(
                    f"it has a leap second at {hhmm}:60{zone}: RFC 3339 allows one only "
                    "as the last second of a day in UTC, 23:59:60Z"
                )
            return dt + step
        except ValueError as exc:
            if str(exc).startswith("it "):
                raise
        except OverflowError:  # 9999-12-31T24:00: no datetime, and an event a replay reads
            raise ValueError("it is outside the years 1970 to 9998 UTC") from None
    raise ValueError(f"Invalid isoformat string: {value!r}") from None


def _ends_utc_day(dt: datetime) -> bool:
    """Whether ``dt`` (aware, at second 59) is 23:59:59 in UTC, the second a leap second
    follows (RFC 3339, section 5.7: at the end of a UTC day, in any month)."""
    offset = dt.utcoffset()
    if offset is None:
        return False
    utc_seconds = dt.hour * 3600 + dt.minute * 60 + dt.second - offset.total_seconds()
    return utc_seconds % 86400 == 86399


# ``24:00``, ``24:00:00`` (with zeros after the point only) and a second ``60``.
_DAY_END_OR_LEAP = re.compile(
    r"(\d{4}-\d\d-\d\d)[T ](24:00(?=(?::00)?(?:\.\d+)?(?:Z|[+-]))|\d\d:\d\d(?=:60))"
    r"(?::00|:60)?(\.\d{1,9})?(Z|[+-]\d\d(?::?\d\d)?)"
)


# Segment's time fields of a call (its Spec, "Common fields" and "Timestamps"): the
# client's clock when the call was made and when it was sent, the server's on receipt.
SEGMENT_TIME_FIELDS: Final = ("originalTimestamp", "sentAt", "receivedAt")


def _epoch_hint(value: object) -> str:
    """What a number given as ``timestamp`` would be as Unix time, to say so in the error.

    >>> _epoch_hint(1772438400000)
    ' (as Unix milliseconds it would be 2026-03-02T08:00:00.000Z)'
    >>> _epoch_hint(1772438400.5), _epoch_hint(True), _epoch_hint(7)
    (' (as Unix seconds it would be 2026-03-02T08:00:00.500Z)', '', '')
    """
    if type(value) is not int and type(value) is not float:
        return ""
    for unit, scale in (("seconds", 1), ("milliseconds", 1e3)):
        ts = value / scale
        if 946684800 <= ts < 4102444800:  # the years 2000 to 2099: a plausible event time
            return f" (as Unix {unit} it would be {iso(ts)})"
    return ""


def derive_timestamp(obj: dict[str, Any]) -> float | tuple[str, str]:
    """The event time of a call without ``timestamp``, as Segment works it out; else
    ``(reason, detail)`` of its dead letter.

    Segment's Spec: ``timestamp = receivedAt - (sentAt - originalTimestamp)``, which
    corrects the client's clock by the skew seen between sending and receipt. Without
    ``sentAt`` no skew is known: ``originalTimestamp`` (when the call was made) is the
    time; without either client time, ``receivedAt`` (Segment's default, the server's
    time on receipt). A time field that is present must be a valid time: a bad one is a
    ``bad_timestamp`` naming it, never silently passed over.

    >>> derive_timestamp({"originalTimestamp": "2026-03-02T08:00:00Z",
    ...     "sentAt": "2026-03-02T08:00:05Z", "receivedAt": "2026-03-02T08:00:03Z"})
    1772438398.0
    >>> derive_timestamp({"receivedAt": "2026-03-02T08:00:03Z"})
    1772438403.0
    >>> reason, detail = derive_timestamp({"sentAt": "2026-03-02T08:00:05Z"})
    >>> reason, detail[:48]
    ('missing_timestamp', "event has only 'sentAt', when its batch was sent")
    """
    times: dict[str, float] = {}
    for key in SEGMENT_TIME_FIELDS:
        value = obj.get(key)
        if value is None:
            continue
        if type(value) is not str:
            return "bad_timestamp", (
                f"no 'timestamp', and {key!r} must be an ISO-8601 string; got "
                f"{type(value).__name__} {preview(value)}"
            )
        try:
            times[key] = parse_timestamp(value)
        except ValueError as exc:
            why = str(exc) if str(exc).startswith("it ") else "it is not ISO-8601"
            return "bad_timestamp", f"no 'timestamp', and {key!r} {preview(value)}: {why}"
    made, sent, received = (times.get(k) for k in SEGMENT_TIME_FIELDS)
    if made is not None and sent is not None and received is not None:
        ts = received - (sent - made)
        if not _MIN_TS <= ts <= _MAX_TS:
            return "bad_timestamp", (
                "no 'timestamp', and receivedAt - (sentAt - originalTimestamp) is outside "
                "the years 1970 to 9998 UTC"
            )
        return ts
    if made is not None:
        return made
    if received is not None:
        return received
    if sent is not None:
        # A batch's send time, copied onto its calls: it bounds when the call was made
        # but is not that time (a client queues calls for seconds, or days offline).
        return "missing_timestamp", (
            "event has only 'sentAt', when its batch was sent, not when it happened: "
            "give 'timestamp', 'originalTimestamp' or 'receivedAt'"
        )
    return "missing_timestamp", (
        "event has no 'timestamp', nor an 'originalTimestamp' or 'receivedAt' to derive it from"
    )


def correct_skew(obj: dict[str, Any], ts: float) -> float | tuple[str, str]:
    """The time of a raw call that gives ``timestamp`` (its client's clock), corrected as
    Segment does; else ``(reason, detail)`` of its dead letter.

    Segment's Spec calls the ``timestamp`` a call is sent with (by a client library, or
    passed to a server library or the HTTP API) ``originalTimestamp`` and works out
    ``timestamp = receivedAt - (sentAt - originalTimestamp)``. A line with
    ``originalTimestamp`` was timestamped so already (Segment delivered it): its
    ``timestamp`` is the time. A line without it, but with ``sentAt`` (the client's
    clock on sending) and ``receivedAt`` (the collector's on receipt), is a raw call:
    the correction is applied to it. It moves the time by ``receivedAt - sentAt`` only,
    so a historical import stays in its past. Without both, no skew is known.

    >>> correct_skew({"sentAt": "2026-03-02T11:07:05Z",
    ...     "receivedAt": "2026-03-02T08:00:05Z"}, 1772449620.0)  # 11:07:00, 3h07 fast
    1772438400.0
    >>> correct_skew({"originalTimestamp": "2026-03-02T11:07:00Z",
    ...     "sentAt": "2026-03-02T11:07:05Z", "receivedAt": "2026-03-02T08:00:05Z"}, 1.0)
    1.0
    """
    if obj.get("originalTimestamp") is not None:
        return ts
    sent_raw = obj.get("sentAt")
    received_raw = obj.get("receivedAt")
    if sent_raw is None or received_raw is None:
        return ts
    times: list[float] = []
    for key, value in (("sentAt", sent_raw), ("receivedAt", received_raw)):
        if type(value) is not str:
            return "bad_timestamp", (
                f"no 'originalTimestamp': {key!r} corrects 'timestamp' for the client's "
                f"clock and must be an ISO-8601 string; got {type(value).__name__} "
                f"{preview(value)}"
            )
        try:
            times.append(parse_timestamp(value))
        except ValueError as exc:
            why = str(exc) if str(exc).startswith("it ") else "it is not ISO-8601"
            return "bad_timestamp", (
                f"no 'originalTimestamp': {key!r} {preview(value)} corrects 'timestamp' "
                f"for the client's clock: {why}"
            )
    corrected = times[1] - (times[0] - ts)
    if not _MIN_TS <= corrected <= _MAX_TS:
        return "bad_timestamp", (
            "no 'originalTimestamp', and receivedAt - (sentAt - timestamp) is outside "
            "the years 1970 to 9998 UTC"
        )
    return corrected


def event_time(raw: bytes) -> float | None:
    """The event time a replay would give this line (its ``timestamp``, else Segment's
    derived time), or None when it has none (a line validation dead-letters).

    >>> event_time(b'{"type":"page","userId":"u","timestamp":"2026-03-02T09:00:00+01:00"}')
    1772438400.0
    >>> event_time(b'{"type":"page","userId":"u","timestamp":"noon"}') is None
    True
    """
    if raw.startswith(_BOM):
        raw = raw[3:]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    ts_raw = obj.get("timestamp")
    if ts_raw is None:
        derived = derive_timestamp(obj)
        return derived if isinstance(derived, float) else None
    if type(ts_raw) is not str:
        return None
    try:
        ts = parse_timestamp(ts_raw)
    except ValueError:
        return None
    corrected = correct_skew(obj, ts)
    return corrected if isinstance(corrected, float) else None


def _escape_of(chars: str) -> re.Pattern[bytes]:
    """A JSON escape (``\\u0049``, hex digits in either case) of one of the ASCII ``chars``."""
    codes = sorted({f"{ord(c):02x}" for c in chars if c.isascii()})
    return re.compile(rb"\\u00(?:" + "|".join(codes).encode() + rb")", re.IGNORECASE)


# A letter or digit written as an escape (``"user\u0049d"``): a parser reads the key as
# ``userId``, so a copy of a key spelled so is not seen by counting its plain spelling.
# A line with one gets the exact check. No serializer escapes a letter or a digit; the
# other printable characters some do by default (Go's encoding/json and Rails ``<``,
# ``>``, ``&``; Gson ``=`` and ``'``; .NET's System.Text.Json ``+`` too, so each offset
# ``+01:00``), and no identity or time key holds one.
_ESCAPED_ASCII = _escape_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _escapes_ascii(data: bytes, escaped: re.Pattern[bytes] = _ESCAPED_ASCII) -> bool:
    """Whether ``data`` may spell a key with an escaped character of ``escaped`` (rarely:
    a line without ``\\u00`` is answered by one scan in C; Latin-1 text escaped,
    ``\\u00e9``, and ``\\u0026`` are not such characters)."""
    return b"\\u00" in data and escaped.search(data) is not None


def _may_repeat_time(raw: bytes | str) -> bool:
    """Whether one of Segment's time fields may be written twice (see ``_may_repeat_identity``)."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")
    return any(data.count(f'"{key}"'.encode()) > 1 for key in SEGMENT_TIME_FIELDS) or (
        _escapes_ascii(data)
    )


def top_level_duplicates(raw: bytes | str) -> list[str]:
    """Keys repeated in the top-level object of a line (json keeps every pair; orjson the last)."""
    try:
        pairs = json.loads(raw, object_pairs_hook=lambda p: p)
    except RecursionError:  # deeper than json reads (orjson reads 1,024 levels)
        pairs = [(key, None) for key in _top_level_keys(raw)]
    if not isinstance(pairs, list):
        return []
    seen: set[str] = set()
    dups: list[str] = []
    for key, _ in pairs:
        if key in seen and key not in dups:
            dups.append(key)
        seen.add(key)
    return dups


_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]')


def _top_level_keys(raw: bytes | str) -> list[str]:
    """The keys of the top-level object of a line orjson read, in order, without
    recursion: its strings and brackets as tokens, a string followed by ":" at depth one
    a key (decoded, so an escaped spelling is the same key)."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")
    keys: list[str] = []
    depth = 0
    last: bytes | None = None
    for m in _TOKEN.finditer(data):
        tok = m.group()
        if tok in (b"{", b"["):
            depth += 1
        elif tok in (b"}", b"]"):
            depth -= 1
        elif tok == b":" and depth == 1 and last is not None:
            keys.append(json.loads(last))
        last = tok if tok[:1] == b'"' else None
    return keys


class _Pairs:
    """A JSON object read as its list of pairs, each repeated key kept (a class of its
    own, not a ``list`` subclass, which mypyc cannot compile: ``make fast``)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _withholding_copy(raw: bytes | str, path: tuple[str, ...]) -> Any:
    """The first value at ``path`` in any copy of a repeated key that does not grant
    consent (an object is ``{}``), or None when every one present grants it.

    A line too deep for ``json`` to read again withholds (``False``): its consent cannot
    be told."""
    try:
        nodes: list[Any] = [json.loads(raw, object_pairs_hook=_Pairs)]
    except (ValueError, RecursionError):
        return False
    for key in path:
        nodes = [v for node in nodes if type(node) is _Pairs for k, v in node.pairs if k == key]
    for value in nodes:
        if value is None or value is True:
            continue
        if type(value) is _Pairs:
            return {}
        if type(value) is list:
            return []
        if not grants(value):
            return value
    return None


def _canonical(obj: dict[str, Any], raw: bytes | str) -> bool:
    """Whether ``raw`` is exactly orjson's compact writing of ``obj``.

    Such a line names each key of each object once (``obj`` is a dict, and its
    writing is what a parse of ``raw`` reads back), so it needs no duplicate check;
    one re-serialization costs a third of the six scans of the line that check
    makes. Compact writers (orjson, JSON.stringify) give such lines; any other line
    is only checked as before.

    This test needs the parsed dict, which is why lines are not decoded into typed
    structs (msgspec): on bench lines a struct decode takes 1.1 µs against orjson's
    1.8, but the per-key counts that must then stand in for this test, plus the
    checks for what msgspec reads differently (integers beyond 64 bits), bring it to
    3.6 µs against 2.05 for ``loads`` and this test (2,000 lines, best of 7).
    Counted in instructions per bench line (cachegrind, msgspec 0.22): ``loads`` 18.4k,
    with this test 26.1k; a msgspec Struct decode 12.6k to 14.9k, but each exact check
    for repeated top-level keys without the dict costs more than the decode saves: six
    ``bytes.count`` 14.7k, a regex ``findall`` of the identity keys 22k, the top level
    decoded as ``dict[str, msgspec.Raw]`` and re-encoded 14.9k. msgspec also reads an
    integer beyond 64 bits as an int where orjson gives a float.
    """
    if type(raw) is not bytes:
        return False
    try:
        return orjson.dumps(obj) == raw
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return False


def _bad_byte(raw: bytes | str) -> str:
    """Where a line stops being UTF-8, said plainly (orjson says "surrogates not allowed"
    of a Latin-1 byte read as text); "" when the bytes are UTF-8 (a JSON escape of a lone
    surrogate, ``"\\ud800"``: orjson's own words then say it)."""
    try:
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
        data.decode("utf-8")
    except UnicodeEncodeError:
        return ""
    except UnicodeDecodeError as exc:
        return (
            f"byte 0x{data[exc.start]:02x} at byte {exc.start + 1} is not UTF-8 (is the "
            "file Latin-1 or Windows-1252? re-encode it as UTF-8)"
        )
    return ""


def _may_repeat_identity(raw: bytes | str, obj: dict[str, Any]) -> bool:
    """Whether an identity key is written more often than the parsed object explains.

    The identity keys (``type``, ``userId``, ``anonymousId``, ``messageId``,
    ``timestamp``, ``event``) are those whose repetition would let two readers see two
    different events; a line naming one of them twice gets the exact (slower) check.
    ``"type"`` is also the key of ``context.device.type``, so that one is allowed for.
    A line that may spell a key with escapes (``_escapes_ascii``) gets it too.
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")
    count = data.count
    if (
        count(b'"userId"') > 1
        or count(b'"anonymousId"') > 1
        or count(b'"messageId"') > 1
        or count(b'"timestamp"') > 1
        or count(b'"event"') > 1
        or _escapes_ascii(data)
    ):
        return True
    seen = count(b'"type"')
    if seen <= 1:
        return False
    ctx = obj.get("context")
    dev = ctx.get("device") if isinstance(ctx, dict) else None
    return not (seen == 2 and isinstance(dev, dict) and "type" in dev)


class Validator:
    """Callable turning ``(raw line, position)`` into an Event or a DeadLetter.

    ``consent_path`` is where, in the event, the personalization consent lives
    (Segment's consent manager: ``context.consent.categoryPreferences.personalization``).
    Absent or null there means allowed; a value that is present withholds consent
    unless it grants it (``grants``): fail closed, as a privacy control must.
    ``blocked``: identity's blocked values (``identity.is_blocked`` of the config's), which
    name no account either: a group call whose ``groupId`` is one names none.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        consent_path: str = "context.consent.categoryPreferences.personalization",
        max_bytes: int = MAX_EVENT_BYTES,
        blocked: Callable[[str | None], bool] | None = None,
    ) -> None:
        self.taxonomy = taxonomy
        self.blocked = blocked
        # The taxonomy's names folded (lower case, ``_`` as a space): a track event named
        # as one of them but for case or underscores is read as that name (``_fold``).
        self._folded: dict[str, str] = {}
        for known in taxonomy.by_name:
            self._folded.setdefault(_fold(known), known)
        # Segment's v1 names folded, read as their v2 names; their properties are
        # renamed as v2 names them (``_v1_properties``).
        self._v1_folded: set[str] = set()
        for old, new in V1_NAMES.items():
            if new in taxonomy.by_name and old not in taxonomy.by_name:
                self._v1_folded.add(_fold(old))
                self._folded.setdefault(_fold(old), new)
        # The names as sent among ``_folds`` that were v1 names (cleared with it).
        self._v1_sent: set[str] = set()
        # What ``_fold`` made of the other names seen (custom events, mostly: their folding
        # is a regex), the taxonomy's name or "" for none; cleared when it holds
        # ``FOLDS_KEPT``, so a sender of endless new names cannot grow it.
        self._folds: dict[str, str] = {}
        self.consent_path = tuple(consent_path.split("."))
        # A path in the context is walked from the context, already read (None or a dict).
        self._consent_in_context = self.consent_path[0] == "context"
        self._consent_walk = self.consent_path[self._consent_in_context :]
        # Each key of the path as it is written in a line, to spot one written twice.
        self._consent_leaf = orjson.dumps(self.consent_path[-1])
        self._consent_above = tuple(
            orjson.dumps(key) for key in dict.fromkeys(self.consent_path[:-1])
        )
        self._consent_slash = any("/" in key for key in self.consent_path)  # ``\/`` spells it
        # An escape of a character of the path's keys spells it (``person\u0061lization``).
        self._consent_escape = _escape_of("".join(self.consent_path))
        # A key with a character that is not printable ASCII (``personnalis\u00e9``, as
        # Python's json writes it by default): any ``\u`` escape may spell it.
        self._consent_wide = not all(k.isascii() and k.isprintable() for k in self.consent_path)
        self.max_bytes = max_bytes

    def reads_as(self, name: str) -> str:
        """The name a track event called ``name`` is read under: the taxonomy's name it
        folds to (case, spaces, underscores, camelCase; a retired v1 name's v2 name), else
        ``name``. A rule or trigger naming the other spelling never matches it."""
        if name in self.taxonomy.by_name:
            return name
        return self._folded.get(_fold(name), name)

    def _dead(
        self, reason: str, detail: str, raw: bytes | str, position: str, keep: int = 0
    ) -> DeadLetter:
        # Scrub, then cut (never the reverse); the DeadLetter scrubs every field again.
        if keep:
            text = bounded_text(raw, keep)
        else:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        return DeadLetter(reason, f"step 'validate': {detail}", position, text)

    def __call__(self, raw: bytes | str, position: str) -> Event | DeadLetter:
        given = raw  # a ``sources.LongLine`` loses its ``whole`` to a byte-order mark's cut
        if isinstance(raw, bytes):
            if raw.startswith(_BOM):
                raw = raw[3:]
            size = len(raw)
        else:
            if raw.startswith("\ufeff"):
                raw = raw[1:]
            size = len(raw.encode("utf-8", "replace"))
        if size > self.max_bytes:
            # A line too long to hold is read as its first bytes (``sources.LongLine``),
            # which know the whole line's length.
            whole = getattr(given, "whole", None)
            if whole is not None:
                size = whole - (len(given) - len(raw))
            detail = f"event is {size} bytes; the limit is {self.max_bytes}"
            dead = self._dead("oversize", detail, raw, position, keep=OVERSIZE_KEEP)
            dead.raw = cut_personal(dead.raw)  # not parsed: kept only up to personal data
            return dead
        try:
            obj = _LOADS(raw)
        except orjson.JSONDecodeError as exc:
            msg = str(exc)
            if "UTF-8" in msg or "surrogate" in msg:
                detail = f"line is not valid UTF-8: {_bad_byte(raw) or msg}"
                return self._dead("bad_encoding", detail, raw, position)
            return self._dead("not_json", f"line is not JSON: {msg}", raw, position)
        # Before anything walks or keeps the whole line (the dead letters below keep it).
        # ``values_bound`` is half the length or less: a line of up to twice ``MAX_VALUES``
        # bytes (``size`` is at least its length) holds no more, and is not counted.
        if (
            size > _VALUES_BYTES
            and values_bound(raw) > MAX_VALUES
            and exceeds_values(obj, MAX_VALUES)
        ):
            dead = self._dead(
                "too_many_values",
                f"line holds more than {MAX_VALUES} JSON values",
                raw,
                position,
                keep=OVERSIZE_KEEP,
            )
            dead.raw = cut_personal(dead.raw)  # not walked: kept only up to personal data
            return dead
        if not isinstance(obj, dict):
            kind = type(obj).__name__
            return self._dead("not_object", f"expected a JSON object; got a {kind}", raw, position)
        # ``_canonical``, inline (one call less per line).
        try:
            canonical = type(raw) is bytes and _DUMPS(obj) == raw
        except orjson.JSONEncodeError:  # nested deeper than orjson writes
            canonical = False
        if not canonical and _may_repeat_identity(raw, obj):
            dups = top_level_duplicates(raw)
            if dups:
                detail = f"keys {dups} appear more than once; which one is meant is ambiguous"
                return self._dead("duplicate_key", detail, raw, position)
        # The event's fields, read in this same call (a method of their own cost one
        # Python call more per line). ``obj`` comes from orjson: each value is exactly a
        # dict, list, str, int, float, bool or None (no subclass), so ``type(x) is T``
        # stands for isinstance here. ``obj.get`` each time, not a bound ``get``: compiled,
        # that is a direct dict lookup, where a bound method is a generic call.
        etype = obj.get("type")
        if type(etype) is not str or etype not in TYPES:
            low = etype.lower() if type(etype) is str else None
            if low in TYPES:
                etype = low  # ``Identify``, ``Track``: some senders capitalise it
            else:
                detail = f"'type' must be one of {sorted(TYPES)}; got {preview(etype)}"
                return self._dead("unknown_type", detail + _type_hint(obj), raw, position)
        # Ids and names: the common case (a short printable str) is checked inline, as
        # ``_bad_string`` checks it first; anything else goes through it.
        # A whole number is an id too (Segment's libraries accept one and send it as its
        # decimal text): 42 is "42". ``type(...) is int`` leaves out ``true``/``false``.
        user_id = obj.get("userId")
        if user_id is not None and not (
            type(user_id) is str and len(user_id) <= MAX_FIELD_CHARS and user_id.isprintable()
        ):
            if type(user_id) is int:
                user_id = str(user_id)
            bad = self._bad_string("userId", user_id, raw, position)
            if bad is not None:
                return bad
        anon = obj.get("anonymousId")
        if anon is not None and not (
            type(anon) is str and len(anon) <= MAX_FIELD_CHARS and anon.isprintable()
        ):
            if type(anon) is int:
                anon = str(anon)
            bad = self._bad_string("anonymousId", anon, raw, position)
            if bad is not None:
                return bad
        message_id = obj.get("messageId")
        if message_id is not None and not (
            type(message_id) is str
            and len(message_id) <= MAX_FIELD_CHARS
            and message_id.isprintable()
        ):
            if type(message_id) is int:
                message_id = str(message_id)
            bad = self._bad_string("messageId", message_id, raw, position)
            if bad is not None:
                return bad
            if blank(message_id):  # invisible characters only: as absent, as blanks are
                message_id = None
        if (
            message_id is not None
            and (
                len(message_id) <= _PLACEHOLDER_CHARS
                or message_id[0].isspace()
                or message_id[-1].isspace()
            )
            and message_id.strip().lower() in PLACEHOLDER_MESSAGE_IDS
        ):
            message_id = None  # derived from the line below, as for an absent one
        elif message_id is not None and message_id[0] in _BLANK_PRINTABLE and blank(message_id):
            # Printable characters that show nothing (Hangul fillers, a Braille blank) skip
            # the check above for unprintable ones: as absent too, or every event so sent
            # after the first within the dedup window was dropped as a duplicate.
            message_id = None
        if not user_id and not anon:
            detail = "event has neither 'userId' nor 'anonymousId'" + _near_id_keys(obj)
            return self._dead("no_identity", detail, raw, position)
        previous = None  # an alias's ``previousId``
        group_id = None  # a group call's ``groupId``
        if etype == "alias":
            previous = obj.get("previousId")
            if type(previous) is int:
                previous = str(previous)
            if not user_id or not isinstance(previous, str) or not previous:
                # Name what is wrong: an alias with an anonymousId and a previousId but no
                # userId (seen in RudderStack's fixtures) lacks the userId.
                got = "no 'userId'" if not user_id else f"previousId {preview(previous)}"
                return self._dead(
                    "bad_alias",
                    f"an alias needs a 'userId' and a non-empty string 'previousId'; got {got}",
                    raw,
                    position,
                )
            bad = self._bad_string("previousId", previous, raw, position)
            if bad is not None:
                return bad
        elif etype == "group":
            group_id = obj.get("groupId")
            bad = self._bad_group_id(group_id, raw, position)
            if bad is not None:
                return bad
        props = obj.get("properties")
        if props is not None and type(props) is not dict:
            return self._not_object("properties", props, raw, position)
        traits = obj.get("traits")
        if traits is not None and type(traits) is not dict:
            return self._not_object("traits", traits, raw, position)
        ctx = obj.get("context")
        if ctx is not None and type(ctx) is not dict:
            return self._not_object("context", ctx, raw, position)
        if props:
            for val in props.values():
                if type(val) is dict or type(val) is list:
                    # Nested. Fewer brackets in the whole line than the limit: no need to walk.
                    if _brackets(raw) > MAX_DEPTH and exceeds_depth(props, MAX_DEPTH):
                        return self._dead(
                            "too_deep",
                            f"'properties' nest more than {MAX_DEPTH} levels deep",
                            raw,
                            position,
                        )
                    break
        ts_raw = obj.get("timestamp")
        if type(ts_raw) is str:
            # ``parse_timestamp`` inline for the usual time (ISO, aware, in range); any
            # other goes through it, which says why it is rejected.
            try:
                dt: datetime | None = _FROMISO(ts_raw)
            except ValueError:
                dt = None
            ts = dt.timestamp() if dt is not None and dt.tzinfo is not None else _NAN
            if (
                dt is not None
                and ("." in ts_raw or "," in ts_raw)
                and (not dt.microsecond or ts_raw[19:20] not in _FRACTION_SIGNS)
            ):
                # Maybe ``10:00:00.Z``, read as no fraction, or a fraction not of a
                # second (``10:00.5``): see ``parse_timestamp``, which says which.
                ts = _NAN
            if not _MIN_TS <= ts <= _MAX_TS:
                try:
                    ts = parse_timestamp(ts_raw)
                except ValueError as exc:
                    why = str(exc) if str(exc).startswith("it ") else "it is not ISO-8601"
                    return self._dead(
                        "bad_timestamp",
                        f"'timestamp' {preview(ts_raw)} is rejected: {why}",
                        raw,
                        position,
                    )
            if (
                obj.get("sentAt") is not None
                and obj.get("receivedAt") is not None
                and obj.get("originalTimestamp") is None
            ):
                # A raw call (a client's clock) with the collector's receipt: Segment's
                # correction (``correct_skew``).
                corrected = correct_skew(obj, ts)
                if isinstance(corrected, tuple):
                    return self._dead(corrected[0], corrected[1], raw, position)
                if not canonical and _may_repeat_time(raw):
                    dups = [k for k in top_level_duplicates(raw) if k in SEGMENT_TIME_FIELDS]
                    if dups:
                        detail = (
                            f"keys {dups} appear more than once; which one is meant is ambiguous"
                        )
                        return self._dead("duplicate_key", detail, raw, position)
                ts = corrected
        elif ts_raw is None:
            # Segment's and RudderStack's raw calls may leave it out: their time fields
            # give it (``derive_timestamp``), else it is missing.
            derived = derive_timestamp(obj)
            if isinstance(derived, tuple):
                return self._dead(derived[0], derived[1], raw, position)
            if not canonical and _may_repeat_time(raw):
                dups = [k for k in top_level_duplicates(raw) if k in SEGMENT_TIME_FIELDS]
                if dups:
                    detail = f"keys {dups} appear more than once; which one is meant is ambiguous"
                    return self._dead("duplicate_key", detail, raw, position)
            ts = derived
        else:
            return self._dead(
                "wrong_field_type",
                f"'timestamp' must be an ISO-8601 string; got {type(ts_raw).__name__}"
                + _epoch_hint(ts_raw),
                raw,
                position,
            )
        if etype == "track":
            tax = self.taxonomy  # its ``category``, inline
            name = obj.get("event")
            # Blanks name no event, as they name no user (an id of spaces is empty), and
            # neither do invisible characters (a zero-width space).
            if (
                type(name) is not str
                or not name
                or (not (name[0].isprintable() and name[0] not in _BLANK_PRINTABLE) and blank(name))
            ):
                return self._dead(
                    "missing_event_name",
                    f"a track event needs a non-empty string 'event'; got {preview(name)}",
                    raw,
                    position,
                )
            if not (len(name) <= MAX_FIELD_CHARS and name.isprintable()):
                bad = self._bad_string("event", name, raw, position)
                if bad is not None:
                    return bad
            category = tax.by_name.get(name)
            if category is None:
                # ``order completed``, ``PRODUCT_ADDED``, ``productAdded``: the taxonomy's
                # name, as senders' destinations match Segment's e-commerce names whatever
                # their case.
                known = self._folds.get(name)
                if known is None:
                    if len(self._folds) >= FOLDS_KEPT:
                        self._folds.clear()
                        self._v1_sent.clear()
                    folded = _fold(name)
                    known = self._folds[name] = self._folded.get(folded, "")
                    if folded in self._v1_folded:
                        self._v1_sent.add(name)
                if known:
                    if name in self._v1_sent and props:
                        props = _v1_properties(props)
                    name = known
                    category = tax.by_name[known]
                else:
                    category = tax.default_track
            if name in GENRE_EVENTS and props and "category" not in props:
                genre = props.get("genre")
                if type(genre) is str and genre:
                    props = {**props, "category": genre}
        else:
            category = _CATEGORIES[etype]
            name = obj.get("name")
            if name is not None:
                bad = self._bad_string("name", name, raw, position)
                if bad is not None:
                    return bad
            name = name or ""
            if etype == "identify" or etype == "alias" or etype == "group":
                # The Spec names none of these calls: a top-level ``name`` there is the
                # person's or the company's (a sender's bug), never kept, never written.
                name = ""
            else:
                if not name:
                    name = _view_name(props, obj.get("event"))
                # analytics-swift and analytics-kotlin write a screen's category beside its
                # name (analytics.js copies a page's into properties too): the same field.
                top = obj.get("category")
                if type(top) is str and top and (not props or "category" not in props):
                    props = {**props, "category": top} if props else {"category": top}
        if not message_id:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            message_id = "derived:" + stable_id(text)
        consent: Any = ctx if self._consent_in_context else obj
        try:
            for key in self._consent_walk:
                consent = consent.get(key)
        except AttributeError:  # not a dict on the way: of orjson's values, only it has get
            consent = None
        # Absent (or null) is consent; present, only a granting value is (``grants``).
        granted = consent is None or consent is True or grants(consent)
        if granted and not canonical and self._consent_repeated(raw):
            # A key of the path written twice: orjson keeps the last value, a reader
            # keeping the first may see consent withheld. Fail closed: any value the
            # path holds in any of the copies that does not grant it withholds it.
            consent = _withholding_copy(raw, self.consent_path)
            granted = consent is None
        device = device_type = locale = channel = None
        active = True
        if ctx:
            # Segment's ``context.active``: only ``false`` says the user is not active.
            active = ctx.get("active") is not False
            dev = ctx.get("device")
            if type(dev) is dict:
                device_type = dev.get("type")
            # analytics.js sends no device type: then the browser's own word for it.
            device = _DEVICES[device_type] if type(device_type) is str else _web_device(ctx)
            # ``_app_device`` reads only ``device.model``, ``os`` and ``userAgent``: most
            # calls that read as a phone have none of them. The agent only with a device
            # type (an app's): a browser's mobile call, already read from its agent, has
            # nothing more to learn from it (~100 ns a call saved).
            if device == "mobile" and (
                (type(dev) is dict and "model" in dev)
                or "os" in ctx
                or (device_type is not None and "userAgent" in ctx)
            ):
                device = _app_device(device_type, dev, ctx)
            locale = ctx.get("locale")
            campaign = ctx.get("campaign")
            if type(campaign) is dict:
                channel = campaign.get("source")
        # Free text reduced to a fixed vocabulary (normalize.py), interned and cached.
        return Event(
            message_id,
            str(user_id or anon),
            anon,
            etype,
            name,
            ts,
            category,
            props or {},
            device,
            _LOCALES[locale] if type(locale) is str else None,
            _SOURCES[channel] if type(channel) is str else None,
            position,
            granted,
            _identify_traits(traits, ctx)
            if etype == "identify"
            else _group_traits(etype, traits, group_id)
            if etype == "group"
            else None,  # (``_group_traits``'s answer, without its call per event)
            previous,
            "" if granted else withheld_by(consent),
            active,
        )

    def _consent_repeated(self, raw: bytes | str) -> bool:
        """Whether a key of the consent path may be written more than once in ``raw``.

        A line that never names the path's last key holds no value at it in any copy
        (most lines: a sender without a consent manager), so nothing there can withhold.
        Keys are matched as written: one spelled with escapes (``"person\\u0061lization"``)
        is not counted that way, so a line that may spell one so (``_escapes_ascii``;
        ``\\/`` too if a key of the path has a ``/``, any ``\\u`` if one has a character
        that is not printable ASCII) is answered yes: the copies are then read by a
        parser, which decodes the keys."""
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")
        count = data.count
        if (
            _escapes_ascii(data, self._consent_escape)
            or (self._consent_slash and b"\\/" in data)
            or (self._consent_wide and b"\\u" in data)
        ):
            return True
        leaf = count(self._consent_leaf)
        if leaf != 1:
            return leaf > 1
        for key in self._consent_above:  # noqa: SIM110 (a loop: no generator per line)
            if count(key) > 1:
                return True
        return False

    def _not_object(self, field: str, val: Any, raw: bytes | str, position: str) -> DeadLetter:
        detail = f"{field!r} must be an object; got {type(val).__name__}"
        return self._dead("wrong_field_type", detail, raw, position)

    def _bad_group_id(self, group_id: Any, raw: bytes | str, position: str) -> DeadLetter | None:
        """A dead letter unless a group call names its account: ``groupId`` a short string
        (or a whole number, its text) that is neither blank nor a placeholder a sender with
        a bug writes for an id it does not have (``PLACEHOLDER_MESSAGE_IDS``, and the
        config's blocked values: ``self.blocked``)."""
        if type(group_id) is int:
            group_id = str(group_id)
        if group_id is not None:
            bad = self._bad_string("groupId", group_id, raw, position)
            if bad is not None:
                return bad
            if (
                not blank(group_id)
                and group_id.strip().lower() not in PLACEHOLDER_MESSAGE_IDS
                and (self.blocked is None or not self.blocked(group_id))
            ):
                return None
        return self._dead(
            "missing_group_id",
            "a group call needs a 'groupId' naming the account (a non-blank string or a whole"
            " number, not a placeholder such as 'undefined' nor one of"
            f" identity.blocked_values or identity.blocked_patterns); got {_given(group_id)}",
            raw,
            position,
        )

    def _bad_string(
        self, field: str, val: Any, raw: bytes | str, position: str
    ) -> DeadLetter | None:
        """A dead letter if an id or name is not a short string without control characters
        (an id given as a whole number is its text already: the detail says it may be one)."""
        if type(val) is str and len(val) <= MAX_FIELD_CHARS and val.isprintable():
            return None  # the common case, without a regex
        if not isinstance(val, str):
            kinds = "a string or a whole number" if field in _NUMBER_IDS else "a string"
            return self._dead(
                "wrong_field_type",
                f"{field!r} must be {kinds}; got {type(val).__name__} {preview(val)}",
                raw,
                position,
            )
        if len(val) > MAX_FIELD_CHARS:
            return self._dead(
                "oversize_field",
                f"{field!r} is {len(val)} characters long; at most {MAX_FIELD_CHARS} are accepted",
                raw,
                position,
            )
        if CONTROL_CHARS.search(val) is not None:
            return self._dead(
                "wrong_field_type",
                f"{field!r} contains a control character (such as NUL)",
                raw,
                position,
            )
        return None


# The ids a whole number may give (``42`` is ``"42"``, as Segment's libraries send it).
_NUMBER_IDS: Final = frozenset({"userId", "anonymousId", "messageId", "previousId", "groupId"})
FOLDS_KEPT: Final = 4096  # names whose folding a validator keeps (``Validator._folds``)
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # ``productAdded``: a word per capital


def _fold(name: str) -> str:
    """An event name as the taxonomy's names are matched: lower case, ``_`` and ``-`` as
    a space, a space before a camelCase capital, a run of spaces as one, outer spaces
    dropped (each name is folded once: ``Validator._folds`` keeps what it made).

    >>> [_fold(n) for n in ("PRODUCT_ADDED", "productAdded", "order-completed", "Cart Viewed ")]
    ['product added', 'product added', 'order completed', 'cart viewed']
    >>> [_fold(n) for n in ("Order  Completed", "order__completed", "order - completed")]
    ['order completed', 'order completed', 'order completed']
    """
    if " " not in name and "_" not in name and "-" not in name:
        name = _WORD_START.sub(" ", name)  # only a name of one word can be camelCase
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _v1_properties(props: dict[str, Any]) -> dict[str, Any]:
    """An event's properties with the v1 names of Segment's e-commerce spec also under
    their v2 names: ``id`` (a product's, also in ``products[]``) as ``product_id``,
    ``orderId`` as ``order_id``; a v2 name the event also gives wins. A copy when
    anything is added, so the raw properties are never changed.

    >>> _v1_properties({"id": "p1", "orderId": "o1", "products": [{"id": "p2"}, 3]})
    {'id': 'p1', 'orderId': 'o1', 'products': [{'id': 'p2', 'product_id': 'p2'}, 3], \
'product_id': 'p1', 'order_id': 'o1'}
    """
    out = props
    if "id" in props and "product_id" not in props:
        out = {**out, "product_id": props["id"]}
    if "orderId" in props and "order_id" not in props:
        out = {**out, "order_id": props["orderId"]}
    products = props.get("products")
    if type(products) is list and any(_v1_line(p) for p in products):
        lines = [{**p, "product_id": p["id"]} if _v1_line(p) else p for p in products]
        out = {**out, "products": lines}
    return out


def _v1_line(line: object) -> bool:
    return type(line) is dict and "id" in line and "product_id" not in line


def _web_device(ctx: dict[str, Any]) -> str | None:
    """The device type of a call without ``context.device.type``: ``mobile`` when the
    browser's client hints say so (``context.userAgentData.mobile``, analytics.js), else
    read from ``context.userAgent`` (``normalize.device_from_agent``), else unknown."""
    dev = ctx.get("device")
    if type(dev) is dict and _model_device(dev) == "tv":
        return "tv"
    hints = ctx.get("userAgentData")
    if type(hints) is dict and hints.get("mobile") is True:
        return "mobile"
    return _agent_device(ctx)


def _agent_device(ctx: dict[str, Any]) -> str | None:
    """The device type ``context.userAgent`` reads as (``normalize.device_from_agent``)."""
    agent = ctx.get("userAgent")
    if not isinstance(agent, str) or not agent:
        return None
    if len(agent) > MAX_AGENT_CACHED:
        return device_from_agent(agent)
    return _AGENTS[agent]


def _model_device(dev: dict[str, Any]) -> str | None:
    """``tv`` if ``context.device.model`` names a TV (``normalize.device_from_model``)."""
    model = dev.get("model")
    if type(model) is not str or not model:
        return None
    if len(model) > MAX_AGENT_CACHED:
        return device_from_model(model)
    return _MODELS[model]


def _app_device(device_type: Any, dev: Any, ctx: dict[str, Any]) -> str:
    """The device type of a call whose device type reads as a phone: ``tv`` when the type
    names a platform (``android``, ``ios``) and the model or the user agent is a TV's (an
    Android TV, a Fire TV, an Apple TV), ``tablet`` for an iPad (``_apple_tablet``), else
    ``mobile``.

    >>> _app_device("android", {"model": "AFTMM"}, {})
    'tv'
    >>> _app_device("android", {"model": "Pixel 8"}, {"userAgent": "Dalvik/2.1.0 (Linux; U; "
    ...     "Android 11; SHIELD Android TV Build/RQ1A.210105.003)"})
    'tv'
    >>> _app_device("mobile", {"model": "AFTMM"}, {}), _app_device("ios", {"model": "iPad13,4"}, {})
    ('mobile', 'tablet')
    """
    if type(device_type) is str and _PLATFORMS[device_type] is not None:
        if type(dev) is dict and "model" in dev and _model_device(dev) == "tv":
            return "tv"
        if "userAgent" in ctx and _agent_device(ctx) == "tv":
            return "tv"
    return "tablet" if _apple_tablet(dev, ctx) else "mobile"


def _type_hint(obj: dict[str, Any]) -> str:
    """What to add to an ``unknown_type`` detail when the line's shape says what it is:
    Segment's HTTP API batch envelope (``/v1/batch``) written as one line; the body of a
    call to ``/v1/track``, which names its type by its path; Segment's ``delete`` (a
    request to delete a user's data, as Segment sends it to webhooks and functions).

    >>> _type_hint({"event": "Order Completed", "userId": "u1"}).endswith('"type": "track"')
    True
    >>> _type_hint({"type": "page", "userId": "u1"})
    ''
    """
    etype = obj.get("type")
    batch = obj.get("batch")
    if etype is None and type(batch) is list:
        n = len(batch)
        return (
            f": the line is a batch envelope holding {n} "
            f"call{'' if n == 1 else 's'}; give each call on a line of its own"
        )
    if "type" not in obj and type(obj.get("event")) is str:
        return (
            ": the line has no 'type' but has an 'event', as the body of a call to Segment's"
            ' HTTP API at /v1/track has (its path names the type); give it "type": "track"'
        )
    if etype == "delete":
        return (
            ": Segment's 'delete' asks to delete a user's data; the event stream does not"
            " apply it: send it as a data subject's request (replay --control,"
            " kafka.control_topic; README: Privacy)"
        )
    return ""


_ID_KEYS = frozenset({"userid", "anonymousid"})
_SPEC_IDS = frozenset({"userId", "anonymousId"})


def _near_id_keys(obj: dict[str, Any]) -> str:
    """What to add to a ``no_identity`` detail: which of the spec's ids the line gives
    empty (``""`` or null, as a template with no value sends them), and whether it names
    its ids otherwise: Segment's warehouse columns (``user_id``, ``anonymous_id``) or
    another case (``userID``), as rows converted to JSON by hand often do.

    >>> _near_id_keys({"user_id": "u1", "event": "x"})
    "; it has 'user_id': the spec's fields are 'userId' and 'anonymousId', in that case"
    >>> _near_id_keys({"userId": "", "anonymousId": None})
    "; 'userId' is empty; 'anonymousId' is null"
    >>> _near_id_keys({"event": "x"})
    ''
    """
    given = "".join(
        f"; {k!r} is {'null' if obj[k] is None else 'empty'}"
        for k in ("userId", "anonymousId")
        if k in obj
    )
    near = [k for k in obj if k not in _SPEC_IDS and k.replace("_", "").lower() in _ID_KEYS][:4]
    if not near:
        return given
    names = ", ".join(repr(k[:64]) for k in near)
    return (
        f"{given}; it has {names}: the spec's fields are 'userId' and 'anonymousId', in that case"
    )


def _apple_tablet(dev: Any, ctx: dict[str, Any]) -> bool:
    """Whether a call whose device type reads as a phone comes from an iPad.

    Segment's iOS libraries (analytics-swift's ``iOSVendorSystem``, analytics-ios) send
    ``context.device.type`` ``ios`` on an iPhone and an iPad alike; the iPad shows in
    ``context.device.model`` (the hardware name, ``iPad13,4``) and in ``context.os.name``
    (UIDevice's ``systemName``, ``iPadOS`` since iPadOS 15).

    >>> _apple_tablet({"type": "ios", "model": "iPad13,4"}, {})
    True
    >>> _apple_tablet({"type": "ios"}, {"os": {"name": "iPadOS"}})
    True
    >>> _apple_tablet({"type": "ios", "model": "iPhone15,3"}, {"os": {"name": "iOS"}})
    False
    """
    if type(dev) is dict:
        model = dev.get("model")
        if type(model) is str and model.startswith("iPad"):
            return True
    os_ = ctx.get("os")
    if type(os_) is dict:
        name = os_.get("name")
        return type(name) is str and name.lower() == "ipados"
    return False


def _view_name(props: Any, event: Any) -> str:
    """A page or screen's name where it has no ``name``: ``properties.name``, else ``event``.

    RudderStack's Android and iOS SDKs send a screen as ``event`` and ``properties.name``
    (ScreenPropertyBuilder), with no top-level ``name``. A value that is not a short
    printable string is passed over, as the line is valid without it.
    """
    for val in (props.get("name") if props else None, event):
        if type(val) is str and val and len(val) <= MAX_FIELD_CHARS and val.isprintable():
            return val
    return ""


def _identify_traits(traits: Any, ctx: Any) -> dict[str, Any] | None:
    """An identify call's traits: ``traits``, else ``context.traits``, where RudderStack's
    SDKs put them ("RudderStack stores the traits as context.traits")."""
    if traits or not ctx:
        return traits  # type: ignore[no-any-return]
    inner = ctx.get("traits")
    return inner if type(inner) is dict else traits


def _given(value: Any) -> str:
    """``value`` as a detail quotes it, or ``none`` when it is absent (or null)."""
    return "none" if value is None else preview(value)


def _group_traits(etype: str, traits: Any, group_id: Any) -> dict[str, Any] | None:
    """A group call's traits, its account's: ``traits`` only (``context.traits`` holds the
    person's cached identify traits, not the account's), with its ``groupId`` (as text)
    under ``GROUP_ID``, which the privacy step replaces by a salted digest: whether two
    calls name one account decides whether the second updates the first's traits."""
    if etype != "group":
        return None
    return {**(traits or {}), GROUP_ID: str(group_id)}


def _brackets(raw: bytes | str) -> int:
    if isinstance(raw, bytes):
        return raw.count(b"{") + raw.count(b"[")
    return raw.count("{") + raw.count("[")


# What grants consent at the consent path, in any case and with spaces around it: JSON
# ``true`` and ``1``, and the words senders write for it (Segment's consent categories are
# booleans; Google's Consent Mode says ``granted``/``denied``; CMP exports say yes/no).
GRANTING = frozenset({"true", "granted", "yes", "1"})
# Words that withhold it, named as they are in a ``consent_withheld`` detail; any other
# text withholds too, described without being echoed (it could be anything).
WITHHOLDING = frozenset({"false", "denied", "no", "0", ""})


def grants(value: object) -> bool:
    """Whether a value present at the consent path grants consent.

    >>> [grants(v) for v in (True, 1, " Granted ", "YES", "true")]
    [True, True, True, True, True]
    >>> [grants(v) for v in (False, 0, "false", "denied", "no", "", {}, "maybe", 2, 1.5)]
    [False, False, False, False, False, False, False, False, False, False]
    """
    if value is True:
        return True
    if type(value) is str:
        return value.strip().lower() in GRANTING
    return (type(value) is int or type(value) is float) and value == 1


def withheld_by(value: object) -> str:
    """What a ``consent_withheld`` detail says was found: a word of the consent
    vocabulary or a kind of value, never a text that is not one of those words.

    >>> [withheld_by(v) for v in (False, " Denied", 0, {"a": 1}, [])]
    ['false', "the text 'denied'", 'the number 0', 'an object', 'a list']
    >>> withheld_by("sure")
    'a text that is not a consent word'
    """
    if value is False:
        return "false"
    if type(value) is str:
        word = value.strip().lower()
        if word in WITHHOLDING:
            return f"the text {word!r}"
        return "a text that is not a consent word"
    if type(value) is int or type(value) is float:
        return "the number 0" if value == 0 else "a number other than 1"
    if type(value) is dict:
        return "an object"
    if type(value) is list:
        return "a list"
    return f"a {type(value).__name__}"
