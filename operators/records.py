"""The record types that flow through audienceflow, defined once.

Timestamps inside the engine are float seconds since the Unix epoch (UTC); they
become ISO-8601 UTC strings with a ``Z`` only when a record is serialized, so
every comparison on the hot path is a float comparison and no naive datetime
can sneak in.

Records cross Bytewax workers and sit in held queues that snapshots pickle, so each
pickles as a call of its class with its fields (``__reduce__``): the same bytes whether
the class is a plain Python class or, in the compiled build (``make fast``), a native
one, so either build loads the other's items. Pickles written before that (slots state)
still load in both through ``__setstate__``.
"""

from __future__ import annotations

import functools
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from hashlib import blake2b as _blake2b
from typing import Any, Final

import orjson

from audienceflow.operators.bounds import bounded_value
from audienceflow.operators.decimals import round_places
from audienceflow.operators.scrub import bounded_text

# MAJOR.MINOR of the output contracts (flows/schemas/*.json, ``x-schema-version``), sent
# as the ``schema-version`` header: a minor version only adds optional fields.
SCHEMA_VERSION = "1.1"

_DUMPS_OPTS: Final = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


_DAY_PREFIXES: Final[dict[int, str]] = {}  # "2026-03-02T" by day since the epoch, bounded
_MAX_PREFIXES: Final = 4096
_YEAR_10000: Final = 253402300800.0
_HOUR_MINUTE: Final = [
    f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)
]  # by minute of day
_SECOND: Final = [f"{s:02d}." for s in range(60)]
_MILLI: Final = [f"{ms:03d}Z" for ms in range(1000)]


@functools.lru_cache(maxsize=4096)
def iso(ts: float) -> str:
    """Format epoch seconds as ISO-8601 UTC with millisecond precision and ``Z``.

    Cached: a record's time is formatted more than once (a segment change's id and
    its ``at``, a session's id and its ``start``, the actions it causes). Equal to
    ``datetime.fromtimestamp(round(ts, 3), UTC).isoformat(timespec="milliseconds")``
    less the offset, plus ``Z``, for every float (``tests/test_records.py`` checks
    it against that): the microseconds are rounded half-even from the fraction as
    ``datetime`` does, then truncated to milliseconds; the date comes from
    ``datetime`` itself, cached per day, and the time of day is the whole second's
    remainder of the day (UTC has no leap seconds): most times are formatted once,
    so a cache per whole second rarely hit and ``datetime`` ran for nearly each.
    """
    r = round_places(ts, 3)
    if not 0.0 <= r < _YEAR_10000:  # before 1970 or out of range: as datetime does it
        dt = datetime.fromtimestamp(r, UTC)
        return dt.isoformat(timespec="milliseconds")[:-6] + "Z"
    # ``math.modf``, ``divmod`` and ``round`` as typed arithmetic (C in the compiled
    # build): r >= 0, so ``int`` is its integral part, and a float less its integral
    # part is exact, as is ``y - us`` below.
    whole: int = int(r)
    frac: float = r - whole
    day: int = whole // 86400
    second: int = whole - day * 86400
    # ``round(frac * 1e6)``, half to even. r is a float within half an ulp (< 16 µs
    # here) of a whole millisecond, so this never rounds up to a whole second, which
    # datetime would carry.
    y: float = frac * 1e6
    us: int = int(y)
    rest: float = y - us
    if rest > 0.5 or (rest == 0.5 and us & 1):
        us += 1
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        if len(_DAY_PREFIXES) >= _MAX_PREFIXES:
            _DAY_PREFIXES.clear()
        prefix = datetime.fromtimestamp(day * 86400, UTC).isoformat()[:11]
        _DAY_PREFIXES[day] = prefix
    minute: int = second // 60
    second -= minute * 60
    # Pieces from tables, not formatted per call: ``HH:MM:``, ``SS.``, ``mmmZ``.
    return f"{prefix}{_HOUR_MINUTE[minute]}{_SECOND[second]}{_MILLI[us // 1000]}"


def restore(record: Any, state: Any) -> None:
    """Fill ``record`` from the state of a pickle written before records pickled as calls
    of their class: ``(None, {slot: value})`` (a slots class) or the field values in
    order (a frozen one, as dataclasses pickled it). A field the pickle lacks (added
    since) takes its default.

    In the compiled build pickle makes a native record without running its ``__init__``
    (mypyc leaves a dataclass's generated ``__init__`` to ``tp_init``), so no field is
    set until this runs; mypyc's own ``__setstate__`` reads only a dict.
    """
    names = [f.name for f in fields(record)]
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        values: dict[str, Any] = state[1]
    elif isinstance(state, dict):
        values = state
    else:
        values = dict(zip(names, state, strict=False))
    for f in fields(record):
        if f.name in values:
            value = values[f.name]
        elif f.default is not MISSING:
            value = f.default
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"a pickled {type(record).__name__} has no {f.name!r}")
        object.__setattr__(record, f.name, value)  # frozen records too


def dumps(obj: dict[str, Any]) -> bytes:
    """Serialize a record: sorted keys, so equal records give equal bytes."""
    return orjson.dumps(obj, option=_DUMPS_OPTS)


def owned(data: bytes) -> bytes:
    """``data`` in a bytes object of its own size, for bytes that are kept.

    orjson's output holds on to orjson's 4 KB working buffer whatever its length
    (tracemalloc: 4,097 bytes for a 12-byte value kept, 54 for this copy of it), so
    what is kept for long (the Redis writer's remembered profiles, ``make live``'s
    re-timed stream) is kept as a copy; what is used at once and dropped needs none.
    """
    return bytes(memoryview(data))


@dataclass(slots=True, init=False)
class Event:
    """A validated, privacy-filtered Segment-spec event.

    ``user_id`` is the profile key: ``userId`` when present, else ``anonymousId``.
    ``category`` is the taxonomy category of ``name`` (navigation, engagement,
    conversion or other).

    Its ``__init__`` is written out, not generated: one is made per input line, and in
    the compiled build mypyc compiles a written ``__init__`` (fields stored in the
    struct) but leaves a generated one interpreted (each field set through a
    descriptor). Being compiled, it needs its arguments even when pickle makes an
    event: a pickle from before ``__reduce__`` loads through ``shard_codec``.
    """

    message_id: str
    user_id: str
    anonymous_id: str | None
    type: str
    name: str
    ts: float
    category: str
    properties: dict[str, Any]
    device: str | None = None
    locale: str | None = None
    channel: str | None = None
    position: str = ""
    consent: bool = True
    # identify and group only: the person's traits, or (group) its account's, for the few
    # a rule reads (never written to any output)
    traits: dict[str, Any] | None = None
    previous_id: str | None = None  # alias only: the ``previousId`` linked to ``user_id``
    # Without consent: what was found at the consent path (never a value sent as text
    # but a word of the consent vocabulary), for the ``consent_withheld`` detail.
    consent_found: str = ""
    # Segment's ``context.active``: False when the call was sent not by the user's doing
    # (an identify from a server that updates traits only, a push received in the
    # background); such a call is no activity (see ``engine``). Absent, true or any
    # other value: True.
    active: bool = True

    def __init__(
        self,
        message_id: str,
        user_id: str,
        anonymous_id: str | None,
        type: str,
        name: str,
        ts: float,
        category: str,
        properties: dict[str, Any],
        device: str | None = None,
        locale: str | None = None,
        channel: str | None = None,
        position: str = "",
        consent: bool = True,
        traits: dict[str, Any] | None = None,
        previous_id: str | None = None,
        consent_found: str = "",
        active: bool = True,
    ) -> None:
        self.message_id = message_id
        self.user_id = user_id
        self.anonymous_id = anonymous_id
        self.type = type
        self.name = name
        self.ts = ts
        self.category = category
        self.properties = properties
        self.device = device
        self.locale = locale
        self.channel = channel
        self.position = position
        self.consent = consent
        self.traits = traits
        self.previous_id = previous_id
        self.consent_found = consent_found
        self.active = active

    @property
    def known(self) -> bool:
        """The event has a ``userId`` (``user_id`` is the anonymous id otherwise)."""
        return self.anonymous_id is None or self.user_id != self.anonymous_id

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # (a field is named ``type``)
        return Event, (
            self.message_id,
            self.user_id,
            self.anonymous_id,
            self.type,
            self.name,
            self.ts,
            self.category,
            self.properties,
            self.device,
            self.locale,
            self.channel,
            self.position,
            self.consent,
            self.traits,
            self.previous_id,
            self.consent_found,
            self.active,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


MAX_DEAD_RAW: Final = 32 * 1024  # characters of the line a dead letter keeps
MAX_DEAD_DETAIL: Final = 1024


@dataclass(slots=True)
class DeadLetter:
    """An input line that could not be processed, with why and where.

    Built safe: every field is scrubbed of e-mails, IPs, phone and card numbers and
    bounded when the record is created, whoever creates it, so no producer of
    dead letters can forget to (``operators/scrub.py``).
    """

    reason: str
    detail: str
    position: str
    raw: str
    stage: str = "validate"

    def __post_init__(self) -> None:
        self.reason = bounded_text(self.reason, 64)
        self.detail = bounded_text(self.detail, MAX_DEAD_DETAIL)
        self.position = bounded_text(self.position, 256)
        self.raw = bounded_text(self.raw, MAX_DEAD_RAW)
        self.stage = bounded_text(self.stage, 64)

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "position": self.position,
            "raw": self.raw,
            "stage": self.stage,
        }

    def __reduce__(self) -> tuple[type[DeadLetter], tuple[Any, ...]]:
        return DeadLetter, (self.reason, self.detail, self.position, self.raw, self.stage)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True)
class Filtered:
    """A valid event deliberately not processed (consent withheld, duplicate).

    ``detail`` says why where the reason alone does not (what was found at the consent
    path); it holds no personal data. It is left out of the ``repr``, which stays the
    record's identity (reason, position, message id) as output comparisons read it.
    """

    reason: str
    position: str
    message_id: str = ""
    detail: str = field(default="", repr=False)

    def __reduce__(self) -> tuple[type[Filtered], tuple[Any, ...]]:
        return Filtered, (self.reason, self.position, self.message_id, self.detail)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True, init=False)
class Session:
    """A closed session of one user, in event time.

    Its ``__init__`` is written out, as ``Event``'s is (one is made per session,
    segment change or action, and mypyc compiles only a written one).
    """

    user_id: str
    session_id: str
    start: float
    end: float
    events: int
    page_views: int
    screen_views: int
    by_category: dict[str, int]
    engaged_seconds: float
    max_page_seconds: float
    max_scroll_depth: int
    products: list[str]
    categories: list[str]
    converted: bool
    order_value: float
    end_reason: str
    device: str | None
    intent_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        user_id: str,
        session_id: str,
        start: float,
        end: float,
        events: int,
        page_views: int,
        screen_views: int,
        by_category: dict[str, int],
        engaged_seconds: float,
        max_page_seconds: float,
        max_scroll_depth: int,
        products: list[str],
        categories: list[str],
        converted: bool,
        order_value: float,
        end_reason: str,
        device: str | None,
        intent_score: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.start = start
        self.end = end
        self.events = events
        self.page_views = page_views
        self.screen_views = screen_views
        self.by_category = by_category
        self.engaged_seconds = engaged_seconds
        self.max_page_seconds = max_page_seconds
        self.max_scroll_depth = max_scroll_depth
        self.products = products
        self.categories = categories
        self.converted = converted
        self.order_value = order_value
        self.end_reason = end_reason
        self.device = device
        self.intent_score = intent_score
        self.extra = {} if extra is None else extra

    def to_json(self) -> dict[str, Any]:
        out = {
            "user_id": self.user_id,
            "session_id": self.session_id,
            "start": iso(self.start),
            "end": iso(self.end),
            "duration_seconds": round_places(self.end - self.start, 3),
            "events": self.events,
            "page_views": self.page_views,
            "screen_views": self.screen_views,
            "events_by_category": self.by_category,
            "engaged_seconds": round_places(self.engaged_seconds, 3),
            "max_page_seconds": round_places(self.max_page_seconds, 3),
            "max_scroll_depth": self.max_scroll_depth,
            "products": self.products,
            "categories": self.categories,
            "converted": self.converted,
            "order_value": round_places(self.order_value, 2),
            "end_reason": self.end_reason,
            "device": self.device,
            "intent_score": (
                None if self.intent_score is None else round_places(self.intent_score, 6)
            ),
        }
        out.update(self.extra)
        return out

    def __reduce__(self) -> tuple[type[Session], tuple[Any, ...]]:
        return Session, (
            self.user_id,
            self.session_id,
            self.start,
            self.end,
            self.events,
            self.page_views,
            self.screen_views,
            self.by_category,
            self.engaged_seconds,
            self.max_page_seconds,
            self.max_scroll_depth,
            self.products,
            self.categories,
            self.converted,
            self.order_value,
            self.end_reason,
            self.device,
            self.intent_score,
            self.extra,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True, init=False)
class SegmentChange:
    """A user entering or leaving a segment, at an event time.

    Its ``__init__`` is written out, as ``Event``'s is (one is made per session,
    segment change or action, and mypyc compiles only a written one).
    """

    user_id: str
    segment: str
    change: str  # "enter" | "exit"
    at: float
    reason: dict[str, Any]
    identifier: str | None = None  # the identifier that produced it, when not ``user_id``

    def __init__(
        self,
        user_id: str,
        segment: str,
        change: str,
        at: float,
        reason: dict[str, Any],
        identifier: str | None = None,
    ) -> None:
        self.user_id = user_id
        self.segment = segment
        self.change = change
        self.at = at
        self.reason = reason
        self.identifier = identifier

    @property
    def change_id(self) -> str:
        return stable_id(self.user_id, self.segment, self.change, iso(self.at))

    def to_json(self) -> dict[str, Any]:
        at = iso(self.at)
        out = {
            "change_id": stable_id(self.user_id, self.segment, self.change, at),
            "user_id": self.user_id,
            "segment": self.segment,
            "change": self.change,
            "at": at,
            "reason": self.reason,
        }
        if self.identifier is not None:
            out["identifier"] = self.identifier
        return out

    def __reduce__(self) -> tuple[type[SegmentChange], tuple[Any, ...]]:
        return SegmentChange, (
            self.user_id,
            self.segment,
            self.change,
            self.at,
            self.reason,
            self.identifier,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True, init=False)
class Action:
    """A trigger's decision: delivered, or suppressed with the reason.

    Its ``__init__`` is written out, as ``Event``'s is (one is made per session,
    segment change or action, and mypyc compiles only a written one).
    """

    action_id: str
    user_id: str
    action: str
    at: float
    trigger: dict[str, Any]
    payload: dict[str, Any]
    status: str  # "delivered" | "suppressed"
    suppressed_reason: str | None = None
    identifier: str | None = None  # the identifier that produced it, when not ``user_id``

    def __init__(
        self,
        action_id: str,
        user_id: str,
        action: str,
        at: float,
        trigger: dict[str, Any],
        payload: dict[str, Any],
        status: str,
        suppressed_reason: str | None = None,
        identifier: str | None = None,
    ) -> None:
        self.action_id = action_id
        self.user_id = user_id
        self.action = action
        self.at = at
        self.trigger = trigger
        self.payload = payload
        self.status = status
        self.suppressed_reason = suppressed_reason
        self.identifier = identifier

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action_id": self.action_id,
            "user_id": self.user_id,
            "action": self.action,
            "at": iso(self.at),
            "trigger": self.trigger,
            "payload": self.payload,
            "status": self.status,
        }
        if self.suppressed_reason is not None:
            out["suppressed_reason"] = self.suppressed_reason
        if self.identifier is not None:
            out["identifier"] = self.identifier
        return out

    def __reduce__(self) -> tuple[type[Action], tuple[Any, ...]]:
        return Action, (
            self.action_id,
            self.user_id,
            self.action,
            self.at,
            self.trigger,
            self.payload,
            self.status,
            self.suppressed_reason,
            self.identifier,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True)
class Drift:
    """A drift detector fired: what it watched, where, and at which event time."""

    detector: str
    signal: str
    shard: str
    at: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "signal": self.signal,
            "shard": self.shard,
            "at": iso(self.at),
            "details": self.details,
        }

    def __reduce__(self) -> tuple[type[Drift], tuple[Any, ...]]:
        return Drift, (self.detector, self.signal, self.shard, self.at, self.details)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True)
class ProfileUpdate:
    """The live profile of a user after a batch, for the profile store."""

    user_id: str
    fields: dict[str, Any]
    identifiers: tuple[str, ...] = ()  # every identifier of the profile (lookup keys)

    def __reduce__(self) -> tuple[type[ProfileUpdate], tuple[Any, ...]]:
        return ProfileUpdate, (self.user_id, self.fields, self.identifiers)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True)
class ShardStats:
    """Counters a shard reports at end of input (and on request)."""

    shard: str
    processed: int
    filtered: dict[str, int]
    dead_lettered: dict[str, int]
    users: int
    extra: dict[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple[type[ShardStats], tuple[Any, ...]]:
        return ShardStats, (
            self.shard,
            self.processed,
            self.filtered,
            self.dead_lettered,
            self.users,
            self.extra,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True, frozen=True)
class Watermark:
    """An input partition's watermark, broadcast to every shard.

    ``at``: no later event of ``partition`` is older than this (older ones are
    dead-lettered as late at ingest). ``idle``: the partition is at its end or has
    delivered nothing for ``time.idle_after``, so it stops holding stream time back.
    ``shard``: the key of the shard it is sent to, which names a shard that has had no
    event yet (Bytewax does not tell a stateful step its key); not compared.
    """

    partition: str
    at: float
    idle: bool = False
    shard: str = field(default="", compare=False)

    def __reduce__(self) -> tuple[type[Watermark], tuple[Any, ...]]:
        return Watermark, (self.partition, self.at, self.idle, self.shard)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


def stable_id(*parts: str) -> str:
    """A short deterministic id from its parts (for idempotent consumers)."""
    return _blake2b("|".join(parts).encode(), digest_size=10).hexdigest()


@dataclass(slots=True, frozen=True)
class DueMark:
    """Records just before this one were produced by deadline work due at event time
    ``at`` (a session close, a segment exit, a timer): lets the live sink measure how
    long after its due time such work was published. Not an output of its own."""

    at: float
    records: int

    def __reduce__(self) -> tuple[type[DueMark], tuple[Any, ...]]:
        return DueMark, (self.at, self.records)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


def event_line(ev: Event) -> str:
    """The event as a Segment-spec JSON line for a dead letter, its properties bounded.

    Never re-serialises more than ``bounds.MAX_DEPTH`` levels or ``bounds.MAX_NODES``
    values, so a deeply nested value cannot make ``orjson.dumps`` raise; the
    ``DeadLetter`` the line goes into scrubs and truncates it when built.
    """
    obj: dict[str, Any] = {
        "type": ev.type,
        "event" if ev.type == "track" else "name": ev.name,
        "userId": ev.user_id,
        "messageId": ev.message_id,
        "timestamp": iso(ev.ts),
        "properties": bounded_value(ev.properties),
    }
    if ev.anonymous_id is not None:
        obj["anonymousId"] = ev.anonymous_id
    try:
        return dumps(obj).decode()
    except TypeError:  # orjson.JSONEncodeError: a value JSON has no form for
        obj["properties"] = "<unserialisable>"
        return dumps(obj).decode()


@dataclass(slots=True)
class Exposure:
    """A decision of an experimented trigger: which arm the user was in when it was taken.

    Written for delivered and held-out (ghost) decisions alike, so every arm is
    exposed at the same moment of the same behaviour. ``first`` marks the user's
    first exposure in the experiment (the one goals are attributed to);
    ``propensity`` is the probability the user had of being in this arm.
    """

    experiment: str
    arm: str
    user_id: str
    at: float
    action_id: str
    trigger: str
    action: str
    status: str
    suppressed_reason: str | None
    first: bool
    propensity: float
    decision_id: str
    identifier: str | None = None  # the identifier that produced it, when not ``user_id``

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "arm": self.arm,
            "user_id": self.user_id,
            "at": iso(self.at),
            "action_id": self.action_id,
            "trigger": self.trigger,
            "action": self.action,
            "status": self.status,
            "suppressed_reason": self.suppressed_reason,
            "first": self.first,
            "propensity": round_places(self.propensity, 6),
            "decision_id": self.decision_id,
            **({} if self.identifier is None else {"identifier": self.identifier}),
        }

    def __reduce__(self) -> tuple[type[Exposure], tuple[Any, ...]]:
        return Exposure, (
            self.experiment,
            self.arm,
            self.user_id,
            self.at,
            self.action_id,
            self.trigger,
            self.action,
            self.status,
            self.suppressed_reason,
            self.first,
            self.propensity,
            self.decision_id,
            self.identifier,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True)
class ExperimentUpdate:
    """An experiment's result on one shard after an arm's interval changed materially."""

    experiment: str
    shard: str
    at: float
    result: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "shard": self.shard,
            "at": iso(self.at),
            **self.result,
        }

    def __reduce__(self) -> tuple[type[ExperimentUpdate], tuple[Any, ...]]:
        return ExperimentUpdate, (self.experiment, self.shard, self.at, self.result)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True)
class IdentityChange:
    """Identifiers linked into one profile (``merge``), or a link refused (``rejected_merge``).

    ``canonical``: the profile's id after the merge (for a refusal, the id the event
    was applied under); ``previous``: the canonical ids of the profiles the link joined
    (or would have); ``reason``: what linked them (``event``: an event carrying both
    ids, ``alias``) or why the link was refused (``user_id_limit``, ``anonymous_id_limit``).
    """

    kind: str  # "merge" | "rejected_merge"
    canonical: str
    identifiers: list[str]
    previous: list[str]
    at: float
    reason: str
    message_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "identity_id": stable_id(self.kind, self.message_id, *self.identifiers),
            "type": self.kind,
            "canonical_id": self.canonical,
            "identifiers": self.identifiers,
            "previous_canonical_ids": self.previous,
            "at": iso(self.at),
            "reason": self.reason,
            "message_id": self.message_id,
        }

    def __reduce__(self) -> tuple[type[IdentityChange], tuple[Any, ...]]:
        return IdentityChange, (
            self.kind,
            self.canonical,
            self.identifiers,
            self.previous,
            self.at,
            self.reason,
            self.message_id,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


CONTROL_TYPES = ("delete", "suppress", "unsuppress", "delete_and_suppress")
RECEIPT_STATUSES = ("done", "not_found")  # a receipt's ``status`` (flows/schemas/receipt.json)


@dataclass(slots=True, frozen=True)
class ControlRequest:
    """A data subject's request (deletion, suppression), broadcast to every shard.

    ``ids`` are pseudonymised like event ids; the request reaches every identifier
    linked to them. It takes effect at event time ``ts`` (or at once, if stream time
    has passed it: a request is never late).
    """

    kind: str
    ids: tuple[str, ...]
    request_id: str
    ts: float
    position: str = ""

    def __reduce__(self) -> tuple[type[ControlRequest], tuple[Any, ...]]:
        return ControlRequest, (self.kind, self.ids, self.request_id, self.ts, self.position)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True)
class Receipt:
    """What a shard did for a control request: the auditor's record.

    ``identifiers`` are salted hashes, never the ids; ``chain`` is the hash of the
    previous receipt's chain and this receipt, so a dropped receipt breaks the chain.
    """

    request_id: str
    kind: str
    shard: str
    status: str  # one of RECEIPT_STATUSES
    at: float
    identifiers: list[str]
    purged: dict[str, int]
    seq: int
    chain: str = ""
    # Where the request was read (``control.read_at``: ``topic:partition:offset``, ``file:line``).
    source: str = ""

    def body(self) -> dict[str, Any]:
        # The request as the shard read it, and where it was read: applied again (from a
        # snapshot, or by a worker reading the control topic without state, whose
        # numbering restarts) it gets the same id, to de-duplicate on. Two requests under
        # one request id (two systems numbering tickets alike) differ in kind or
        # identifiers; the same request sent twice differs in where it was read, so each
        # keeps its receipt (one id for both, a consumer de-duplicating dropped one and
        # the chain showed a receipt missing). ``source`` "": a receipt of a request held
        # in a snapshot of a version that did not keep it (ids as that version made them).
        if self.source:
            rid = stable_id(self.request_id, self.shard, self.kind, self.source, *self.identifiers)
        else:
            rid = stable_id(self.request_id, self.shard, self.kind, *self.identifiers)
        return {
            "receipt_id": rid,
            "request_id": self.request_id,
            "type": self.kind,
            "shard": self.shard,
            "status": self.status,
            "at": iso(self.at),
            "identifiers": self.identifiers,
            "purged": self.purged,
            "seq": self.seq,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "chain": self.chain}

    def __reduce__(self) -> tuple[type[Receipt], tuple[Any, ...]]:
        return Receipt, (
            self.request_id,
            self.kind,
            self.shard,
            self.status,
            self.at,
            self.identifiers,
            self.purged,
            self.seq,
            self.chain,
            self.source,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True, frozen=True)
class Erasure:
    """A profile was deleted: the profile store drops it and every lookup key of its
    identifiers. Not an output of its own (it carries the raw ids)."""

    canonical: str
    identifiers: tuple[str, ...]

    def __reduce__(self) -> tuple[type[Erasure], tuple[Any, ...]]:
        return Erasure, (self.canonical, self.identifiers)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True, frozen=True)
class Rejected:
    """An event ingest dead-letters (late, or too far ahead), sent to its user's shard
    with its identifiers instead of straight out: there a suppressed person's is
    filtered (``suppressed``), as their other events are, and anyone else's is the dead
    letter. Ingest holds no suppression list (the shards do). Not an output; held in a
    shard's snapshot until stream time reaches ``at``."""

    dead: DeadLetter
    user_id: str
    anonymous_id: str | None
    previous_id: str | None
    message_id: str
    # Its partition's watermark when it was rejected (-inf before the first): the shard
    # judges it once stream time reaches that, after the requests before it.
    at: float

    def __reduce__(self) -> tuple[type[Rejected], tuple[Any, ...]]:
        return Rejected, (
            self.dead,
            self.user_id,
            self.anonymous_id,
            self.previous_id,
            self.message_id,
            self.at,
        )

    def __setstate__(self, state: Any) -> None:
        restore(self, state)


@dataclass(slots=True, frozen=True)
class LinkNotice:
    """An event linked ``here`` (an identifier whose events go to this shard) to
    ``there`` (one whose events go to another shard): the states cannot merge, but a
    deletion or suppression naming ``there`` must reach ``here``. Not an output."""

    here: str
    there: str
    ts: float

    def __reduce__(self) -> tuple[type[LinkNotice], tuple[Any, ...]]:
        return LinkNotice, (self.here, self.there, self.ts)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)
