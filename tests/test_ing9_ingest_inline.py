"""The ingest's inlined steps decide exactly what the functions they stand for decide.

``Validator.__call__`` parses the usual event time itself (ISO, with an offset, from
1970 to 9998 UTC) and sends every other time to ``parse_timestamp`` for its reason;
``Privacy.__call__`` checks an event's ids at once before ``_ids`` and clears a
properties dict seen before before ``_walk_untouched``. Each is compared here with its
function, at the boundaries of the range to the microsecond and on random times.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from helpers import pure_only
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.validate import Taxonomy, Validator, parse_timestamp
from audienceflow.operators.watermarks import MAX_TS, MIN_TS

V = Validator(Taxonomy.default())
FIRST = datetime(1970, 1, 1, tzinfo=UTC)
LAST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
US = timedelta(microseconds=1)
MS = timedelta(milliseconds=1)  # near 9998 a float holds times to ~30 µs


def check(ts: object) -> Event | DeadLetter:
    raw = orjson.dumps({"type": "page", "userId": "u1", "messageId": "m1", "timestamp": ts})
    return V(raw, "in:1")


def expected(value: str) -> float | str:
    """The event time ``parse_timestamp`` gives, or the reason it gives for refusing it."""
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        return str(exc) if str(exc).startswith("it ") else "it is not ISO-8601"


def outcome(value: str) -> float | str:
    out = check(value)
    if isinstance(out, Event):
        return out.ts
    assert out.reason == "bad_timestamp", out
    return out.detail.rsplit("is rejected: ", 1)[1]


def test_the_range_ends_are_the_clock_s_own() -> None:
    assert FIRST.timestamp() == MIN_TS and LAST.timestamp() == MAX_TS


@pytest.mark.parametrize(
    ("moment", "accepted"),
    [
        (FIRST, True),
        (FIRST - US, False),  # one microsecond before 1970
        (FIRST + US, True),
        (LAST, True),
        (LAST + MS, False),  # one millisecond after the last second of 9998
        (LAST - MS, True),
    ],
)
@pytest.mark.parametrize(
    "offset", [timedelta(0), timedelta(hours=5, minutes=30), -timedelta(hours=8)]
)
def test_an_event_time_at_each_end_of_the_range_is_judged_to_the_microsecond(
    moment: datetime, accepted: bool, offset: timedelta
) -> None:
    text = moment.astimezone(timezone(offset)).isoformat()
    got = outcome(text)
    assert got == expected(text)
    if accepted:
        assert got == moment.timestamp()
    else:
        assert got == "it is outside the years 1970 to 9998 UTC"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026-03-02T08:00:00", "it has no UTC offset or Z, so its instant is unknown"),
        ("yesterday", "it is not ISO-8601"),
        ("2026-02-30T08:00:00Z", "it is not ISO-8601"),
        ("0001-01-01T00:00:00+01:00", "it is outside the years 1970 to 9998 UTC"),
        ("9999-12-31T23:59:59Z", "it is outside the years 1970 to 9998 UTC"),
    ],
)
def test_an_unusual_time_is_refused_with_parse_timestamps_reason(text: str, why: str) -> None:
    assert outcome(text) == why == expected(text)


MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.none() | st.timezones(),
)


@settings(max_examples=500)
@given(MOMENTS, st.sampled_from(["auto", "milliseconds", "seconds", "minutes"]), st.booleans())
@example(datetime(1970, 1, 1), "auto", True)
@example(datetime(9998, 12, 31, 23, 59, 59), "seconds", True)
def test_any_iso_time_is_judged_as_parse_timestamp_judges_it(
    moment: datetime, spec: str, zulu: bool
) -> None:
    if zulu and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.isoformat(timespec=spec)
    if zulu and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    assert outcome(text) == expected(text)


@settings(max_examples=300)
@given(
    st.text(max_size=40)
    | st.from_regex(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,6})?)?(Z|[+-]\d\d:\d\d)?", fullmatch=True
    )
)
def test_any_text_as_a_time_is_judged_as_parse_timestamp_judges_it(text: str) -> None:
    assert outcome(text) == expected(text)


# --- privacy: the checks before _ids and _walk_untouched --------------------------------


@pytest.mark.parametrize("field", ["message_id", "user_id", "anonymous_id", "name", "previous_id"])
def test_personal_data_in_any_one_id_or_the_name_is_cleared(field: str) -> None:
    p = Privacy(("email",), salt="s")
    ev = Event("m1", "u1", "a1", "alias", "Aliased", 0.0, "identity", {}, previous_id="p1")
    setattr(ev, field, "ann@example.com")
    out = p(ev)
    assert isinstance(out, Event)
    assert "ann@example.com" not in repr(out)


def test_properties_seen_clean_before_are_kept_as_they_are_and_new_pii_is_masked() -> None:
    p = Privacy(("email",), salt="s")
    props = {"path": "/", "title": "Home"}
    first = p(Event("m1", "u1", None, "page", "Home", 0.0, "navigation", props))
    assert isinstance(first, Event) and first.properties is props
    again = copy.deepcopy(props)
    second = p(Event("m2", "u1", None, "page", "Home", 0.0, "navigation", again))
    assert isinstance(second, Event) and second.properties is again  # seen: not copied
    # The same keys with one new value holding an address: walked, and masked.
    third = p(
        Event("m3", "u1", None, "page", "Home", 0.0, "navigation", {"path": "/", "title": "a@b.co"})
    )
    assert isinstance(third, Event) and third.properties == {"path": "/", "title": "<email>"}
    # A PII key among clean values, and a nested value (the set check cannot hash it).
    fourth = p(Event("m4", "u1", None, "page", "Home", 0.0, "navigation", {"email": "/"}))
    assert isinstance(fourth, Event) and fourth.properties["email"].startswith("sha256:")
    nested = {"path": ["/", {"note": "mail a@b.co"}]}
    fifth = p(Event("m5", "u1", None, "page", "Home", 0.0, "navigation", nested))
    assert isinstance(fifth, Event)
    assert fifth.properties == {"path": ["/", {"note": "mail <email>"}]}


# --- the inlined steps are taken: the functions run only for what they are left -------


@pure_only  # counts calls through a patched module function, which compiled code calls directly
def test_a_usual_time_is_parsed_without_parse_timestamp_up_to_each_end_of_the_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audienceflow.operators import validate

    calls: list[str] = []

    def counted(value: str) -> float:
        calls.append(value)
        return parse_timestamp(value)

    monkeypatch.setattr(validate, "parse_timestamp", counted)
    for moment in (FIRST, FIRST + US, LAST - MS, LAST):
        assert isinstance(check(moment.isoformat()), Event)
    assert isinstance(check("2026-03-02T08:00:00.197Z"), Event)
    assert calls == []
    for text in ((FIRST - US).isoformat(), (LAST + MS).isoformat(), "2026-03-02T08:00:00"):
        assert isinstance(check(text), DeadLetter)
    assert len(calls) == 3


@pure_only  # counts calls through a patched module function, which compiled code calls directly
def test_a_compact_line_skips_the_duplicate_key_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    from audienceflow.operators import validate

    calls: list[object] = []
    scan = validate._may_repeat_identity

    def counted(raw: bytes | str, obj: dict[str, object]) -> bool:
        calls.append(raw)
        return scan(raw, obj)

    monkeypatch.setattr(validate, "_may_repeat_identity", counted)
    assert isinstance(check("2026-03-02T08:00:00Z"), Event)  # orjson's own writing
    assert calls == []
    spaced = b'{"type": "page", "userId": "u1", "timestamp": "2026-03-02T08:00:00Z"}'
    assert isinstance(V(spaced, "in:2"), Event)
    assert isinstance(V(spaced.decode(), "in:3"), Event)  # a str line is never compared
    assert len(calls) == 2


@pure_only  # sets Privacy._ids, read-only on a native class
def test_clean_ids_and_properties_seen_before_take_no_further_step() -> None:
    p = Privacy(("email",), salt="s")
    ids: list[Event] = []
    walked: list[object] = []
    ids_step, walk = p._ids, p._walk_untouched
    p._ids = lambda ev: (ids.append(ev), ids_step(ev))[1]  # type: ignore[method-assign]
    p._walk_untouched = lambda props: (walked.append(props), walk(props))[1]  # type: ignore[method-assign]
    props = {"path": "/", "n": 1}
    p(Event("m1", "u1", "a1", "page", "Home", 0.0, "navigation", dict(props)))
    assert ids == [] and len(walked) == 1  # new keys and values: walked once
    p(Event("m2", "u2", "a2", "page", "Home", 0.0, "navigation", dict(props)))
    assert ids == [] and len(walked) == 1  # seen: neither step runs
    p(Event("m3", "u3@example.com", None, "page", "Home", 0.0, "navigation", {}))
    assert len(ids) == 1


# --- validate: the consent walk starts from the context already read ------------------


def walk(obj: object, path: str) -> bool:
    """The consent rule, walked from the top of the event: absent or null is consent; a
    value present withholds it unless it grants it (true, 1, "true", "granted", "yes")."""
    for key in path.split("."):
        if type(obj) is not dict:
            return True
        obj = obj.get(key)
    if obj is None or obj is True:
        return True
    if type(obj) is str:
        return obj.strip().lower() in ("true", "granted", "yes", "1")
    return type(obj) is int and obj == 1


PATHS = [
    "context.consent.categoryPreferences.personalization",
    "context",
    "context.track",
    "contexts.track",
    "properties.consent",
    "consent",
    "x.context.track",
]
CONSENT_VALUES = st.recursive(
    st.sampled_from([False, True, None, 0, 1, "false", " Granted", "no", "", []]),
    lambda inner: st.dictionaries(
        st.sampled_from(["context", "consent", "categoryPreferences", "personalization", "track"]),
        inner,
        max_size=3,
    ),
    max_leaves=6,
)


@settings(max_examples=600)
@given(
    st.sampled_from(PATHS),
    st.dictionaries(
        st.sampled_from(["context", "properties", "consent", "contexts", "x"]),
        CONSENT_VALUES,
        max_size=4,
    ),
)
@example("context.track", {"context": {"track": False}})
@example("context", {"context": False})  # not an object: wrong_field_type
@example("contexts.track", {"contexts": {"track": False}, "context": {"track": True}})
def test_consent_is_read_at_the_configured_path_as_a_walk_from_the_top_reads_it(
    path: str, extra: dict[str, object]
) -> None:
    obj = {"type": "page", "userId": "u1", "messageId": "m1", "timestamp": "2026-03-02T08:00:00Z"}
    obj.update(extra)
    out = Validator(Taxonomy.default(), path)(orjson.dumps(obj), "in:1")
    if isinstance(out, Event):
        assert out.consent is walk(obj, path)


def test_a_path_in_the_context_is_walked_from_the_context() -> None:
    v = Validator(Taxonomy.default())
    assert v._consent_in_context
    assert v._consent_walk == ("consent", "categoryPreferences", "personalization")
    other = Validator(Taxonomy.default(), "contexts.track")
    assert not other._consent_in_context and other._consent_walk == ("contexts", "track")
