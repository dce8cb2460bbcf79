"""The ingest's fast paths give exactly what the full paths give.

Each fast path skips work only when it has proved the work would change nothing:
``scrub._phone_hint`` stands for a regex search, ``scrub._may_be_ipv6`` and
``_may_be_phone`` skip a search that cannot match, ``scrub.may_have_pii`` clears a whole
set of ids at once, ``Privacy._untouched`` clears a properties dict (with remembered
clean strings), ``validate._canonical`` clears a line of duplicate keys, ``PartitionClock.observe``
appends an in-order time and routing lets an event between the watermark and the
future limit through without asking the clock. Each is
compared here with the path it shortcuts, on random values built from the shapes that
make the patterns hard: addresses, IPv4/IPv6, phone numbers, separators, escapes,
control characters and non-ASCII digits and spaces.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import re
from typing import Any

import orjson
import pytest
from helpers import pure_only
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators import privacy as privacy_mod
from audienceflow.operators import scrub as scrub_mod
from audienceflow.operators.normalize import (
    DEVICES,
    LOCALES,
    MAX_AGENT_CACHED,
    SOURCES,
    Normalized,
    normalize_device,
    normalize_locale,
    normalize_source,
)
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.scrub import (
    _PHONE_HINT,
    CARD,
    EMAIL,
    IPV4,
    IPV6,
    PHONE,
    QUOTED_EMAIL,
    _may_be_ipv6,
    _may_be_phone,
    _phone_hint,
    has_pii,
    may_have_pii,
    scrub_text,
)
from audienceflow.operators.validate import (
    Taxonomy,
    Validator,
    _app_device,
    _canonical,
    _web_device,
    top_level_duplicates,
)
from audienceflow.operators.watermarks import HORIZON_WINDOWS, NEG_INF, VOICES, PartitionClock
from tests.side_by_side import has_side_by_side, side_by_side_masked

# Pieces that, glued together, make every shape the patterns look for, near misses
# of each, and the characters their boundaries turn on.
PIECES = [
    "a", "Z", "x", "0", "1", "4", "9", "12", "123", "555", "0123", "7946", " ", "\t", "\n",
    "\x0b", "\x1c", "\x1f", "\x00", "\x7f", "\xa0", "\u2003", "\u2028", "\u0663\u0664\u0665",
    "\uff11\uff12\uff13", "\u00b2", ".", "..", ":", "::", "@", "+", "(", ")", "-", "_", "/",
    ",", ";", "<", ">", '"', "'", "\\", "é", "日本", "\U0001f600", "\\u0040", "\\u002e",
    "ann.lee+x@mail.example.com", "a@b.co", "evil@example.com", "10.0.0.1", "1.2.3.4",
    "203.0.113.11", "1.2.3", "2001:db8::1", "::1", "fe80::1:2:3", "1:2:3:4:5:6:7:8", "fe80:1:2:3",
    "+44 20 7946 0958", "+12345678", "+1", "(415) 555-0123", "(415)555-0123",
    "415-555-0123", "415.555.0123", "415 555 0123", "123 456", "2026-03-02T08:00:00Z",
    "https://shop.example.com/deals", "<email>", "<ip>", "<phone>", "u19951",
    "anon-e0af6f71ca46", "m-d5a3da5b5956128e",
    # The 00 and trunk-0 numbers, their pieces and near misses (dates, padded ids).
    "0044 20 7946 0958", "07700 900123", "020 7946 0958", "06 12 34 56 78", "(020) 7946 0958",
    "01.23.45.67.89", "090-1234-5678", "00", "07700", "900123", "06", " 12", "00123456789",
    "05.12.2026", "05.12.2026 14", "user-", "id_", "\uff20", "\uff0b", "\ufe6b", "\uff0e",
    "\u202f", "\u2011", "00 44", "06\u00a012\u00a034\u00a056\u00a078", "415\u2011555\u20110123",
    "\u3002", "\uff61", "ann@example\u3002com", '"ann"', '\\"ann\\"', '"ann"@example.com',
    # Card numbers in their layouts, their groups, and near misses (a failed Luhn check).
    "4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005", "3056 930902 5904",
    "4111+1111+1111+1111", "4111 1111 1111 1112", "4111", " 1111", "-1111", "822463",
    # Without groups: 15, 16 and 19 digits, and runs one digit short.
    "4111111111111111", "371449635398431", "4111111111111111110", "41111111111111",
    "1111111111111111", "m-4111111111111111",
]  # fmt: skip
TEXT = st.lists(st.sampled_from(PIECES), max_size=6).map("".join) | st.text(max_size=30)
PII_SHAPES = [
    "a@b.co",
    "1.2.3.4",
    "fe80::1",
    "1:2:3:4:5:6:7:8",
    "fe80:1:2:3",
    "+12345678",
    "(415) 555-0123",
    "415-555-0123",
    "415.555.0123",
    "415 555 0123",
    "0044 20 7946 0958",
    "07700 900123",
    "06 12 34 56 78",
    "(020) 7946 0958",
    "user-+14155550123",
    "ann\uff20example.com",
    "00 44 20 7946 0958",
    "06\u00a012\u00a034\u00a056\u00a078",
    "415\u2011555\u20110123",
    "ann@example\uff61com",
    "4111 1111 1111 1111",
    "3782-822463-10005",
    "4111+1111+1111+1111",
    "4111111111111111",
    "371449635398431",
]


# --- scrub: the phone hint without the regex engine ----------------------------------


def test_the_phone_hint_reads_every_ascii_character_as_the_regex_does() -> None:
    for c in map(chr, range(128)):
        for text in (
            f"123{c}456",
            f"12{c}3456",
            f"x{c}123-456",
            f"123-45{c}6",
            f"0123{c}45678",  # nine digits, one separator: the second branch
            f"01234567{c}8",
            f"012345678{c}9",  # a separator after the ninth digit
            f"0{c}12345678",
            f"06 12{c}34",  # six digits
            f"41111111111111{c}1",  # fifteen digits: a card without groups
        ):
            assert _phone_hint(text) is (_PHONE_HINT.search(text) is not None), repr(text)


@pytest.mark.timeout(120)
def test_the_phone_hint_reads_every_other_character_as_the_regex_does() -> None:
    # Text that is not ASCII is read in classes too, unless it holds a digit or a space
    # that is not ASCII: each character of the Basic Multilingual Plane in each place.
    for c in map(chr, range(0x80, 0x10000)):
        if "\ud800" <= c <= "\udfff":
            continue
        for text in (f"123{c}456", f"0123{c}45678", f"012345678{c}9", f"{c}12 34", f"1{c}"):
            assert _phone_hint(text) is (_PHONE_HINT.search(text) is not None), repr(text)


@settings(max_examples=1500)
@given(TEXT)
@example("\u0663\u0664\u0665-123")  # non-ASCII digits: the regex decides
@example("123\u2003456")  # a non-ASCII space
def test_the_phone_hint_matches_where_the_regex_matches(text: str) -> None:
    assert _phone_hint(text) is (_PHONE_HINT.search(text) is not None)


# --- scrub: each pattern skipped where it cannot match ---------------------------------

# Near misses of IPv6 too: groups of five hex digits, two or three colons, times.
IPV6_PIECES = [
    "0",
    "a",
    "F",
    "g",
    "fe80",
    "abcd:",
    "1:",
    "abcde",
    "12345",
    ":",
    "::",
    ".",
    "1.2.3.4",
    "08:00:02",
]
IPV6_TEXT = st.lists(st.sampled_from(IPV6_PIECES), max_size=12).map("".join)


def _unguarded_pass(text: str) -> str:
    """A pass of ``scrub_text`` as it was before its guards: every pattern, in turn."""
    if "%" in text:
        text = scrub_mod._percent_decoded(text)
    for pattern, mask in scrub_mod._MASKS:  # every pattern, in turn
        if pattern is PHONE:  # numbers side by side just before (tests/side_by_side.py)
            text = side_by_side_masked(text)
        text = pattern.sub(mask, text)
    if "<email>@" in text:
        text = scrub_mod._EMAIL_TAIL.sub("", text)
    if "@<email>" in text:
        text = scrub_mod._EMAIL_HEAD.sub("", text)
    return text


def _scrub_text_unguarded(text: str) -> str:
    """``scrub_text`` as it was before its guards: ``_unguarded_pass`` again while what
    it returns holds a pattern, at most ``scrub._PASSES`` passes (beyond
    ``scrub._PASS_CHARS`` ``scrub_text`` reads them around the masks only, and may mask
    such a text whole where these do not: ``_same_scrub``); what still holds one is
    masked whole (``scrub._whole_mask``, whose choice of mask is not what this checks)."""
    if not has_pii(text):
        return text
    text = text.translate(scrub_mod._FOLDS)
    masked = _unguarded_pass(text)
    for _ in range(scrub_mod._PASSES - 1):
        if masked == text or not has_pii(masked):
            break
        text, masked = masked, _unguarded_pass(masked)
    return masked if not has_pii(masked) else scrub_mod._whole_mask(masked)


def _same_scrub(text: str, scrubbed: str, oracle: str) -> bool:
    """Whether ``scrubbed`` is ``oracle`` but for the characters the scrubber reads folded
    (``scrub._FOLDS``: digits of other scripts, invisible tags), which it may keep as
    written where it masks nothing near them; or, ``text`` longer than
    ``scrub._PASS_CHARS``, one mask: the passes around its masks could not trust a window
    (``scrub._repassed``)."""
    folds = scrub_mod._FOLDS
    return scrubbed.translate(folds) == oracle.translate(folds) or (
        len(text) > scrub_mod._PASS_CHARS and scrubbed in scrub_mod.MASKS
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sep", ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f"])
def test_the_card_guard_holds_for_a_card_after_a_digit_and_a_whitespace_not_a_space(
    sep: str,
) -> None:
    """The shape reads every whitespace as "-"; the card pattern turns down a number after
    a digit and " " or "+" only, so after a digit and a tab it matches: the guard holds."""
    text = f"00{sep}4111 1111 1111 1111"
    assert CARD.search(text) is not None
    assert scrub_mod._may_be_card(text)
    assert scrub_text(text) == f"00{sep}<card>"
    assert not scrub_mod._may_be_card("2 4111 1111 1111 1111")  # a space: no card there


@settings(max_examples=3000)
@given(TEXT | IPV6_TEXT)
@example("1:2:3:4:5:6:7:8")
@example("a:bcde:f:1")  # one group of four between colons
@example("1:2:3:4:5:6:1.2.3.4")
@example("fe80::1")
@example("T08:00:02.197Z 1:2:3")  # a time and three colons: not an address
def test_the_ipv6_and_phone_guards_hold_wherever_their_pattern_matches(text: str) -> None:
    if IPV6.search(text) is not None:
        assert _may_be_ipv6(text), text
    if PHONE.search(text) is not None:
        assert _may_be_phone(text), text


def test_the_ipv6_guard_passes_over_a_json_line_with_times() -> None:
    line = '{"timestamp":"2026-03-02T08:00:02.197Z","context":{"ip":"203.0.113.11"}}'
    assert not _may_be_ipv6(line)  # else the guard spares nothing
    assert _may_be_ipv6(line.replace("203.0.113.11", "fe80:0:0:1"))


@settings(max_examples=3000)
@given(st.lists(TEXT | IPV6_TEXT, max_size=8).map(lambda parts: '","'.join(parts)))
@example("a@b.co 1:2:3:4:5:6:7:8 +44 20 7946 0958 (415) 555-0123 10.0.0.1")
@example("ann%40x.io::1 1.2.3.4")
@example("00\t4111 1111 1111 1111")  # a card after a digit and a tab: the card guard's shape
@example('ann.lee+x@mail.example.com","\x80\U000e0020')  # a tag kept as written
def test_scrub_text_masks_what_every_pattern_in_turn_masks(text: str) -> None:
    assert _same_scrub(text, scrub_text(text), _scrub_text_unguarded(text))
    plain = text.translate(scrub_mod._FOLDS)
    plain = scrub_mod._percent_decoded(plain) if "%" in plain else plain
    searched = any(
        p.search(plain) is not None for p in (QUOTED_EMAIL, EMAIL, IPV6, IPV4, CARD, PHONE)
    ) or has_side_by_side(plain)
    assert has_pii(text) is (len(text) >= 6 and searched)


# --- scrub: one check for several ids -------------------------------------------------


def test_every_pii_shape_is_found_by_has_pii_and_kept_by_may_have_pii() -> None:
    # Not vacuous: each shape reaches has_pii's search by a different guard.
    for shape in PII_SHAPES:
        assert has_pii(shape), shape
        assert may_have_pii(shape), shape
        assert may_have_pii(f"u1\0{shape}\0m-1"), shape


@settings(max_examples=1500)
@given(TEXT, TEXT, TEXT)
@example("", "+12345678", "")
@example("u1\0", "1:2:3:4:5:6:7:8", "\0m-1")
@example("", "fe80:1:2:3", "")
@example("", "415.555.0123", "")
@example("", "415 555 0123", "")
@example("x", "415\t555\t0123", "")
@example("é", "1.2.3.4", "")  # not ASCII: the guards are checked one by one
@example("日本", "fe80:1:2:3", "")
@example("\u2003", "+12345678", "")
def test_may_have_pii_holds_for_any_text_holding_a_value_has_pii_flags(
    before: str, text: str, after: str
) -> None:
    if has_pii(text):
        assert may_have_pii(text)
        assert may_have_pii(before + text + after)
        assert may_have_pii(f"{before}\0{text}\0{after}")


@settings(max_examples=1000)
@given(TEXT.filter(str.isascii))
@example("fe80:1:2:3")
@example("1.2.3.4")
@example("415 555 0123")
def test_the_ascii_reading_of_the_guards_is_no_less_careful_than_each_guard(text: str) -> None:
    # Text with a non-ASCII character is read guard by guard, and "é" adds to none.
    if may_have_pii(text + "é"):
        assert may_have_pii(text)


# --- privacy: ids and properties --------------------------------------------------------


def event(user: str, mid: str, name: str, anon: str | None, prev: str | None) -> Event:
    return Event(mid, user, anon, "track", name, 1772438400.0, "other", {}, previous_id=prev)


def full_ids(p: Privacy, ev: Event) -> tuple[Any, ...]:
    """What the id step gives without the joint pre-check: each id on its own."""
    return (
        p.pseudonym(ev.user_id, "uid"),
        None if ev.anonymous_id is None else p.pseudonym(ev.anonymous_id, "uid"),
        None if ev.previous_id is None else p.pseudonym(ev.previous_id, "uid"),
        p.pseudonym(ev.message_id, "mid"),
        scrub_text(ev.name) if has_pii(ev.name) else ev.name,
    )


@settings(max_examples=800)
@given(TEXT, TEXT, TEXT, st.none() | TEXT, st.none() | TEXT)
@example("u1", "m-1", "Viewed", None, "+12345678")
@example("u1", "m-1", "call 415 555 0123", "a1", None)
def test_ids_are_cleared_as_each_id_on_its_own_would_be(
    user: str, mid: str, name: str, anon: str | None, prev: str | None
) -> None:
    p = Privacy(("email",), salt="s")
    ev = event(user, mid, name, anon, prev)
    expected = full_ids(p, copy.copy(ev))
    out = p(ev)
    assert isinstance(out, Event)
    assert (out.user_id, out.anonymous_id, out.previous_id, out.message_id, out.name) == expected


KEYS = (
    st.sampled_from(
        ["email", "Email", "EMAIL", "phone", "ip", "IP", "category", "product_id", "note", "x"]
    )
    | TEXT
)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
PROPS = st.dictionaries(KEYS, VALUES, max_size=5)
PRIVACIES = st.sampled_from(
    [
        Privacy(("email", "phone", "ip"), "hash", "s"),
        Privacy(("email", "category"), "drop", "s"),
        Privacy((), "hash", "s"),
    ]
)


@settings(max_examples=1500)
@given(PRIVACIES, PROPS, PROPS)
@example(Privacy(("email",)), {"Email": "x"}, {})
@example(Privacy(("email",)), {"a": ["x", ["a@b.co"]]}, {})
@example(Privacy(("email",)), {"a": [{"IP": 1}]}, {})
@example(Privacy(("email",)), {"category": "415-555-0123"}, {})
@example(Privacy(("email",)), {"a@b.co": 1}, {})
# A list of dicts judged at once: every key seen, one value not (and holding PII).
@example(Privacy(("email",)), {"p": [{"a": "x"}, {"a": "a@b.co"}]}, {"p": [{"a": "x"}]})
@example(Privacy(("email",)), {"p": [{"a": "x"}, {"Email": "x"}]}, {"p": [{"a": "x"}]})
@example(Privacy(("email",)), {"p": [{"a": "x"}, ["a@b.co"]]}, {"p": [{"a": "x"}]})
def test_properties_come_out_as_the_full_path_gives_them(
    p: Privacy, props: dict[str, Any], earlier: dict[str, Any]
) -> None:
    p(Event("m", "u", None, "track", "n", 0.0, "other", copy.deepcopy(earlier)))  # fills the caches
    expected = p.clean_properties(copy.deepcopy(props))
    untouched = p._untouched(props)
    out = p(Event("m", "u", None, "track", "n", 0.0, "other", props))
    assert isinstance(out, Event)
    assert out.properties == expected
    assert repr(out.properties) == repr(expected)  # key order and types too
    if untouched:
        assert p.clean_properties(props) is props  # the full path would not have copied


def test_the_clean_caches_are_bounded_and_never_hold_pii(monkeypatch: pytest.MonkeyPatch) -> None:
    # The values' bound, shared by the process, made small enough to be passed here.
    monkeypatch.setattr(privacy_mod, "_CLEAN_VALUES_MAX", 5_000)
    p = Privacy(("email",), salt="s")
    n = privacy_mod._CLEAN_MAX + 100
    for i in range(n):
        props = {f"k{i}": f"value {i}", "q": f"mail ann{i}@example.com", "long": "v" * 300, "n": i}
        p(Event(f"m{i}", f"u{i}", f"a{i}", "track", f"Name {i}", 0.0, "other", props))
        p(Event(f"m{i}", f"u{i}@example.com", None, "track", "Name", 0.0, "other", {}))
    for cache, most in ((p._clean_keys, privacy_mod._CLEAN_MAX), (p._clean_values, 5_000)):
        assert 0 < len(cache) <= most
        assert not any(isinstance(s, str) and has_pii(s) for s in cache)
        assert "v" * 300 not in cache  # longer than _CLEAN_CHARS: checked, not remembered
    # Ids are never remembered, in any set the ingest keeps: a deleted user's ids must
    # not outlive their events. Read through ``dir``, not ``vars``: the compiled build's
    # ``Privacy`` is a native class, whose attributes are there but not in a ``__dict__``.
    sets = {name: getattr(p, name) for name in dir(p)}
    sets = {name: v for name, v in sets.items() if isinstance(v, set | frozenset)}
    assert {"_clean_keys", "_clean_values"} <= sets.keys()  # the sets are found in both builds
    ids = {f"{kind}{i}" for i in range(n) for kind in ("u", "a", "m")}
    assert not ids & set().union(*sets.values())


class _CountedCheck:
    """``has_pii`` as the privacy step calls it, each text it is asked about listed."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, text: str) -> bool:
        self.asked.append(text)
        return has_pii(text)


@pure_only
def test_the_clean_values_are_shared_by_the_partitions_and_the_keys_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A catalog's values checked through one partition are known to the next one (its
    ``Privacy`` does not check them again); a key clean under one partition's
    ``pii_fields`` is still dropped under another's that names it."""
    counted = _CountedCheck()
    monkeypatch.setattr(privacy_mod, "has_pii", counted)
    catalog = [{"name": f"Shared product {i}", "url": f"/p/shared-{i}"} for i in range(20)]
    first, second = Privacy(("email",), "drop", "s"), Privacy(("phone",), "drop", "s")
    first(Event("m1", "u1", None, "track", "n", 0.0, "other", {"products": catalog}))
    values = {v for line in catalog for v in line.values()}
    assert values <= set(counted.asked)
    counted.asked.clear()
    out = second(Event("m2", "u2", None, "track", "n", 0.0, "other", {"products": catalog}))
    assert isinstance(out, Event) and out.properties["products"] == catalog
    assert not values & set(counted.asked)
    # "name" was a clean key for both; not for a partition whose ``pii_fields`` name it.
    third = Privacy(("name",), "drop", "s")
    out = third(Event("m3", "u3", None, "track", "n", 0.0, "other", {"products": catalog}))
    assert isinstance(out, Event)
    assert out.properties["products"] == [{"url": line["url"]} for line in catalog]


@pure_only
def test_a_products_list_seen_before_is_judged_without_a_check_per_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A list of 50 dicts whose keys and values are all known is cleared at once: no
    call per line (``_walk_untouched``), and nothing checked again."""
    p = Privacy(("email",), "hash", "s")
    products = [{"product_id": f"listed-{i}", "price": i + 0.5, "position": i} for i in range(50)]
    p(Event("m1", "u1", None, "track", "n", 0.0, "other", {"products": products}))
    walked: list[Any] = []
    walk = p._walk_untouched
    monkeypatch.setattr(p, "_walk_untouched", lambda d: walked.append(d) or walk(d))
    props = {"products": [dict(line) for line in products]}
    assert p._untouched_list(props["products"]) is True
    assert walked == []
    props["products"][7]["note"] = "call ann@example.com"
    assert p._untouched_list(props["products"]) is False
    assert walked and walked[-1] is props["products"][7]


# --- validate: lines written canonically need no duplicate check ----------------------


IDENTITY = ["type", "userId", "anonymousId", "messageId", "timestamp", "event"]
OBJECTS = st.dictionaries(st.sampled_from([*IDENTITY, "properties", "x"]), VALUES, max_size=6)


@settings(max_examples=800)
@given(OBJECTS, st.sampled_from(IDENTITY), st.booleans(), st.booleans())
def test_a_line_is_canonical_only_without_duplicate_keys(
    obj: dict[str, Any], key: str, repeat: bool, spaced: bool
) -> None:
    if repeat:  # the key written once more, first, as a second producer might
        obj.setdefault(key, "v")
    raw = orjson.dumps(obj)
    if repeat:
        raw = raw.replace(b"{", b'{"' + key.encode() + b'":"other",', 1)
    if spaced:
        raw = b" " + raw  # the same object, not written as orjson writes it
    parsed = orjson.loads(raw)
    if _canonical(parsed, raw):
        assert top_level_duplicates(raw) == []
    out = Validator(Taxonomy.default())(raw, "in:1")
    dups = top_level_duplicates(raw)
    if any(k in IDENTITY for k in dups):
        assert isinstance(out, DeadLetter) and out.reason == "duplicate_key"
    else:
        assert not (isinstance(out, DeadLetter) and out.reason == "duplicate_key")


@pytest.mark.parametrize("key", IDENTITY)
def test_a_repeated_identity_key_in_a_compact_line_is_a_duplicate(key: str) -> None:
    obj = {
        "type": "track",
        "event": "E",
        "userId": "u1",
        "anonymousId": "a1",
        "messageId": "m1",
        "timestamp": "2026-03-02T08:00:00Z",
    }
    raw = orjson.dumps(obj)[:-1] + b',"' + key.encode() + b'":"other"}'
    out = Validator(Taxonomy.default())(raw, "in:1")
    assert isinstance(out, DeadLetter) and out.reason == "duplicate_key"


# --- watermarks: the in-order append and the trim without bisect ----------------------


class _ReferenceClock:
    """``PartitionClock.observe`` by its definition, over every event kept.

    An event without a user: the base moves to the latest time with ``quorum`` events at
    or after it among the last ``window`` events above the base. An event of user
    ``who``: each user's vote is the latest time of theirs above the base, kept while
    they are heard from at least once a horizon (``window * HORIZON_WINDOWS`` events);
    the base moves to the ``quorum``-th latest vote, or to the events' time above if that
    is earlier (no move without one); at most ``VOICES * quorum`` votes, beyond which the
    earliest go. If there are fewer votes and the
    partition had fewer users than ``quorum`` in its last horizon (once users were
    counted over a whole one), it moves to the earliest of those users' latest event
    times (the time of each one's last event, whatever its others), or to the events'
    time above if that is earlier. Capped at ``now``."""

    def __init__(self, quorum: int, window: int) -> None:
        self.quorum, self.window = quorum, window
        self.horizon = window * HORIZON_WINDOWS
        self.base, self.top, self.seq = NEG_INF, NEG_INF, 0
        self.events: list[tuple[float, int, int | None]] = []  # each above the base then
        self.users: list[tuple[int, int, float]] = []  # (seq, who, ts): events naming a user
        self.votes: dict[int, tuple[float, int]] = {}  # who -> (time, seq last heard)
        self.heard: list[int] = []  # live: the user of each event above the base then

    def _latest(self, users: int = 0) -> float | None:
        """The latest time with ``quorum`` of the last ``window`` events above the base at
        or after it, from ``users`` different users (``None`` one user)."""
        recent = [e for e in self.events if e[1] > self.seq - self.window and e[0] > self.base]
        ranked = sorted(recent, key=lambda e: e[0], reverse=True)
        for k in range(self.quorum - 1, len(ranked)):
            if len({e[2] for e in ranked[: k + 1]}) >= users:
                return ranked[k][0]
        return None

    def observe(self, ts: float, now: float | None, who: int | None) -> bool:
        self.seq += 1
        self.top = max(self.top, ts)
        if who is not None:
            self.users.append((self.seq, who, ts))
        if ts <= self.base:
            return False
        if who is not None and now is not None:
            self.heard.append(who)  # live: the users of events above the base
        self.events.append((ts, self.seq, who))
        oldest = self.seq - self.horizon
        candidate: float | None
        if who is None:
            candidate = self._latest()  # events, whoever they are from
        elif now is not None:  # live: from ``quorum`` users; or none, if the window has them
            candidate = self._latest(self.quorum)
            if candidate is None and len(set(self.heard[-self.window :])) < self.quorum:
                candidate = self._latest()  # fewer users: events, whoever they are from
        else:
            old = self.votes.get(who)
            alive = old is not None and old[1] > oldest and old[0] > self.base
            self.votes[who] = (max(old[0], ts) if alive and old else ts, self.seq)
            live = {w: t for w, (t, s) in self.votes.items() if s > oldest and t > self.base}
            if len(live) > VOICES * self.quorum:  # at most so many: the earliest go
                low = min(live.values())
                for w, t in live.items():
                    if t == low:
                        del self.votes[w]
            votes = sorted(
                (t for t, s in self.votes.values() if s > oldest and t > self.base), reverse=True
            )
            events = self._latest()
            if len(votes) >= self.quorum:
                candidate = None if events is None else min(events, votes[self.quorum - 1])
            else:
                latest = {u: t for s, u, t in self.users if s > oldest}  # each one's last
                few = self.users[0][0] - 1 <= oldest and len(latest) < self.quorum
                # (few: counted over a whole horizon, and fewer users than the quorum)
                candidate = None if events is None or not few else min(events, *latest.values())
        if candidate is None:
            return False
        base = candidate if now is None else min(candidate, now)
        if base <= self.base:
            return False
        self.base = base
        return True


# Few distinct times, so ties (with the base, with the last entry) are common; few users,
# so the same user is often counted twice.
TIME = st.integers(0, 12).map(float) | st.floats(0, 1e9, allow_nan=False)
USERS = st.sampled_from([None, 1, 2, 3]) | st.integers(4, 60)  # and many: voices pruned


@settings(max_examples=1000)
@given(
    st.lists(st.tuples(TIME, USERS), max_size=100),
    st.integers(1, 5),
    st.integers(1, 8),  # horizons of 32 to 256 events
    st.sampled_from([None, 4.0, 1e10]),
)
@example([(3.0, None), (3.0, None), (3.0, None), (1.0, None), (3.0, None), (4.0, None)], 2, 8, None)
@example([(9.0, None), (1.0, None), (2.0, None), (3.0, None), (4.0, None), (5.0, None)], 2, 3, None)
@example([(1.0, 1), (2.0, 2), (5.0, 1), (6.0, 1), (7.0, 1), (3.0, 3)], 2, 8, None)
@example([(1.0, 1), (6.0, 2), (7.0, 3), (2.0, 1)], 2, 8, 4.0)  # capped at now
@example([(float(t), 1) for t in range(70)], 2, 2, None)  # one user: a whole horizon
@example([(1.0, 1), (2.0, 2), *[(9.0 + t, 2) for t in range(70)]], 3, 2, None)  # two users
@example([(1.0, None), (2.0, 1), (3.0, 1), (4.0, 1), (5.0, 1)], 2, 8, None)  # one saved, one user
# the events' rule holds it back while 21 users vote: at most 16 votes are kept
@example(
    [(1.0, 100), (1.0, 101), *[e for i in range(21) for e in ((5.0 + i, 200 + i), (0.5, 1))]],
    2,
    2,
    None,
)
# a vote not heard from in a horizon is forgotten, even if nothing moved it out (1: 100)
@example([(100.0, 1), *[(60.0, 2)] * 70, (50.0, 1), (70.0, 3)], 3, 2, None)
# three users in runs longer than the window: each votes, so time moves at each new run
# (counted among the window's events only, it never moved: 3 users never in 4 of 4 events)
@example([(float(t), 1 + (t // 6) % 3) for t in range(200)], 4, 4, None)
# two users; 2 sends one event far ahead, then older ones (a batch uploaded late): its
# vote is its latest event's time, so it holds the base back (the latest of its times,
# 500, would let user 1 alone move it past 2's next events)
@example(
    [(float(t), 1 + t % 2) for t in range(130)]
    + [(500.0, 2)]
    + [e for t in range(130, 140) for e in ((t + 5.0, 1), (t - 3.0, 2))],
    3,
    4,
    None,
)
# live: a phone (9) ahead bursts among users 1-3 (quorum 3): one user of the window's,
# so time stays with theirs; then it alone fills the window, and time follows its events
@example([(float(t), 1 + t % 3) for t in range(12)] + [(100.0, 9)] * 12, 3, 4, 1e10)
# live: user 3's clock stands still (at the base): never waited for, time moves with 1, 2
@example(
    [(float(t), 1 + t % 3) for t in range(9)]
    + [e for t in range(9, 30, 2) for e in ((float(t), 1), (t + 1.0, 2), (6.0, 3))],
    3,
    4,
    1e10,
)
# live: a user who left (4) waits only until the window forgets them
@example(
    [(float(t), 1 + t % 4) for t in range(8)] + [(8.0 + t, 1 + t % 3) for t in range(9)], 4, 4, 1e10
)
# 17 users (voices pruned to the last 2), then one user: alone once they leave the horizon
@example([(float(t), 4 + t) for t in range(17)] + [(17.0 + t, 1) for t in range(70)], 2, 2, None)
def test_a_partition_clock_moves_as_its_definition_says(
    events: list[tuple[float, int | None]], quorum: int, window: int, now: float | None
) -> None:
    fast = PartitionClock(60.0, 3600.0, quorum, window)
    slow = _ReferenceClock(quorum, window)
    for ts, who in events:
        assert fast.observe(ts, now, who) is slow.observe(ts, now, who)
        assert (fast.base, fast.top, fast.seq) == (slow.base, slow.top, slow.seq)
        # its memory is bounded: of users, of events, of votes (one per user)
        assert len(fast.voices) <= VOICES * quorum
        assert len(fast.above) <= 2 * window + quorum
        assert len(fast.ahead) <= VOICES * quorum


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 200).map(float), st.integers(1, 5)), max_size=300),
    st.integers(1, 4),
    st.integers(1, 4),
)
# user 1's vote, far ahead, outlives a horizon (64 events) unheard while 2 and 3 move time
@example(
    [(float(t), 2 + t % 2) for t in range(70)]
    + [(1000.0, 1)]
    + [(float(t), 2 + t % 2) for t in range(70, 150)],
    2,
    2,
)
# an outlier above the base leaves the window (4 events) while others move time
@example([(500.0, 1)] + [(float(t), 2 + t % 3) for t in range(12)], 3, 4)
def test_a_clock_looks_for_entries_that_left_its_window_only_where_one_can_have(
    events: list[tuple[float, int]], quorum: int, window: int
) -> None:
    # ``above_floor`` and ``ahead_floor`` spare the look at most events: the entries kept
    # are those of a clock that looks at every one.
    fast = PartitionClock(60.0, 3600.0, quorum, window)
    slow = PartitionClock(60.0, 3600.0, quorum, window)
    for ts, who in events:
        slow.above_floor = slow.ahead_floor = -(1 << 62)  # looks at every event
        assert fast.observe(ts, None, who) is slow.observe(ts, None, who)
        assert (fast.base, fast.above, fast.ahead) == (slow.base, slow.above, slow.ahead)
        # what the base passed is dropped, ties too: entries and votes are above it
        assert all(e[0] > fast.base for e in fast.above + fast.ahead)


class _Deletes(list):  # type: ignore[type-arg]
    """A list that counts its deletions: each of an entry by index moves all after it."""

    deletes = 0

    def __delitem__(self, key: Any) -> None:
        self.deletes += 1
        super().__delitem__(key)


@pytest.mark.parametrize("window", [4, 1000])
def test_an_advance_past_many_entries_drops_them_at_once_not_one_by_one(window: int) -> None:
    # One user ahead fills the window (a single vote: the base waits), then a second vote
    # lets it pass them all. Deleted one at a time, each deletion moves all the entries
    # after it: quadratic in ``time.watermark_window`` (no upper bound but sys.maxsize).
    clock = PartitionClock(60.0, 1e12, 2, window)
    for i in range(window):
        clock.observe(1000.0 + i, None, 1)
    assert clock.base == NEG_INF and len(clock.above) == window
    clock.above = above = _Deletes(clock.above)
    clock.ahead = ahead = _Deletes(clock.ahead)
    assert clock.observe(1e9, None, 2) and clock.base == 1000.0 + window - 1
    assert clock.above == [(1e9, window + 1, 2)] and clock.ahead == [(1e9, window + 1, 2)]
    assert above.deletes <= 1 and ahead.deletes <= 1


def _restored(clock: PartitionClock, how: int) -> PartitionClock:
    """``clock`` as a restart or a copy finds it: pickled with its source's offset, copied,
    or read from a plain class's pickle (saved before the floors were, or by that class)."""
    if how == 0:
        return pickle.loads(pickle.dumps(clock))
    if how == 1:
        return copy.deepcopy(clock)
    slots = {f.name: getattr(clock, f.name) for f in dataclasses.fields(clock) if f.compare}
    plain = PartitionClock.__new__(PartitionClock)
    plain.__setstate__((None, copy.deepcopy(slots)))
    return plain


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 200).map(float), st.integers(1, 5)), max_size=200),
    st.integers(1, 4),
    st.integers(1, 4),
    st.dictionaries(st.integers(0, 200), st.integers(0, 2)),
)
# an outlier above the base, restored two events after it came: it leaves the window at 5
@example([(500.0, 1)] + [(float(t), 2 + t % 3) for t in range(12)], 3, 4, {3: 0})
@example([(500.0, 1)] + [(float(t), 2 + t % 3) for t in range(12)], 3, 4, {3: 2})
# user 1's vote, far ahead, restored after it came, outlives a horizon (64 events)
@example(
    [(float(t), 2 + t % 2) for t in range(70)]
    + [(1000.0, 1)]
    + [(float(t), 2 + t % 2) for t in range(70, 150)],
    2,
    2,
    {80: 0},
)
@example(
    [(float(t), 2 + t % 2) for t in range(70)]
    + [(1000.0, 1)]
    + [(float(t), 2 + t % 2) for t in range(70, 150)],
    2,
    2,
    {80: 2},
)
def test_a_restored_clock_looks_for_entries_that_left_its_window_as_it_did_before(
    events: list[tuple[float, int]], quorum: int, window: int, restarts: dict[int, int]
) -> None:
    # The floors are not saved: each restore derives them from the entries it reads, so
    # a restored clock keeps the entries that a clock looking at every event keeps.
    fast = PartitionClock(60.0, 3600.0, quorum, window)
    slow = PartitionClock(60.0, 3600.0, quorum, window)
    for i, (ts, who) in enumerate(events):
        if i in restarts:
            fast, slow = _restored(fast, restarts[i]), _restored(slow, restarts[i])
        slow.above_floor = slow.ahead_floor = -(1 << 62)  # looks at every event
        assert fast.observe(ts, None, who) is slow.observe(ts, None, who)
        assert (fast.base, fast.above, fast.ahead) == (slow.base, slow.above, slow.ahead)


def test_a_clock_saved_before_users_were_kept_counts_each_entry_as_a_user() -> None:
    old = PartitionClock(60.0, 3600.0, 2, 8, base=1.0, seq=2, above=[(5.0, 1), (6.0, 2)])  # type: ignore[list-item]
    assert old.above == [(5.0, 1, None), (6.0, 2, None)]
    # Its entries are events without users: no votes (a burst saved before an upgrade does
    # not move it), but they still count where the partition's users are few.
    assert not old.observe(7.0, who=1)
    assert old.observe(8.0, who=2) and old.base == 7.0
    state = (None, {"lateness": 60.0, "max_future": 3600.0, "quorum": 2, "window": 8,
                    "base": 1.0, "top": 6.0, "seq": 2, "above": [(5.0, 1), (6.0, 2)]})  # fmt: skip
    plain = PartitionClock.__new__(PartitionClock)
    plain.__setstate__(state)
    assert plain.above == [(5.0, 1, None), (6.0, 2, None)] and plain.held == []
    assert not plain.observe(7.0, who=1)  # and it counts on as the other does
    assert plain.observe(8.0, who=2) and plain.base == 7.0


@settings(max_examples=1000)
@given(
    st.sampled_from([NEG_INF, 0.0, 100.0, 1e9]),
    st.sampled_from([0.0, 1.0, 60.0, math.inf]),
    st.sampled_from([0.0, 1.0, 3600.0, math.inf]),
    st.floats(-1.0, 2e9, allow_nan=False) | st.sampled_from([39.0, 40.0, 100.0, 101.0, 3700.0]),
)
def test_an_event_between_the_watermark_and_the_future_limit_is_never_judged(
    base: float, lateness: float, max_future: float, ts: float
) -> None:
    clock = PartitionClock(lateness, max_future, base=base)
    if base - lateness <= ts <= base + max_future:  # routing's shortcut
        assert clock.verdict(ts) is None


# --- normalised context fields read from dicts ------------------------------------


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from(["iPad", " Smart TV", "en_us", "zh-Hant-TW", "google", "ann@x.io", ""])
        | st.text(max_size=12),
        max_size=20,
    )
)
def test_the_normalized_dicts_give_what_their_functions_give(values: list[str]) -> None:
    for value in values + values:  # a miss, then a hit
        assert DEVICES[value] == normalize_device(value)
        assert LOCALES[value] == normalize_locale(value)
        assert SOURCES[value] == normalize_source(value)


def test_a_normalized_dict_computes_each_value_once_and_is_cleared_when_full() -> None:
    calls: list[str] = []

    def upper(value: str) -> str:
        calls.append(value)
        return value.upper()

    cache = Normalized(upper, size=2)
    assert (cache["a"], cache["b"], cache["a"]) == ("A", "B", "A")
    assert calls == ["a", "b"] and len(cache) == 2
    assert cache["c"] == "C" and len(cache) == 1  # full: cleared before c is kept
    assert cache["a"] == "A" and calls == ["a", "b", "c", "a"]
    # A value longer than MAX_AGENT_CACHED is read each time and never kept: a sender
    # padding device types to 30 KB made the device cache hold ~130 MB.
    long, longer = "x" * MAX_AGENT_CACHED, "y" * (MAX_AGENT_CACHED + 1)
    assert cache[long] == long.upper() and long in cache  # at the bound: kept
    assert cache[longer] == longer.upper() and cache[longer] == longer.upper()
    assert longer not in cache and calls[-2:] == [longer, longer]


# --- the device type: an iPad or a TV read without asking _app_device for every phone ---

_DEV_FIELD = (
    st.none()
    | st.sampled_from(["iPad13,4", "iPhone15,3", "", "ipad", "AFTMM", "AppleTV11,1"])
    | st.integers(-9, 9)
)
_OS_NAME = st.none() | st.sampled_from(["iPadOS", "ipados", "iOS", "Android"]) | st.integers(-9, 9)


def _absent_or(value: Any, key: str) -> dict[str, Any]:
    return {} if value is None else {key: value}


@settings(max_examples=400)
@given(
    st.none() | st.sampled_from(["ios", "mobile", "android", "iPadOS", "desktop"]),
    _DEV_FIELD,
    st.none() | st.builds(lambda n: _absent_or(n, "name"), _OS_NAME) | st.just("iOS"),
    st.booleans(),
)
@example("ios", None, {"name": "iPadOS"}, True)  # the iPad shows only in os.name
@example("ios", "iPad13,4", None, True)  # only in device.model
@example(None, None, {"name": "iPadOS"}, False)  # no device: the agent says mobile
@example("android", "AFTMM", None, True)  # a Fire TV shows only in device.model
@example("android", None, None, True)  # ... or only in the agent
def test_the_device_type_is_what_the_full_app_device_check_gives(
    dev_type: str | None, model: Any, os_: Any, has_device: bool
) -> None:
    dev = {**_absent_or(dev_type, "type"), **_absent_or(model, "model")}
    agent = "Dalvik/2.1.0 (Linux; U; Android 9; AFTMM Build/PS7633)"
    if dev_type != "android" or model is not None:
        agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4) Mobile"
    ctx: dict[str, Any] = {"userAgent": agent}
    if has_device:
        ctx["device"] = dev
    if os_ is not None:
        ctx["os"] = os_
    line = {"type": "page", "userId": "u1", "timestamp": "2026-03-02T08:00:00Z", "context": ctx}
    ev = Validator(Taxonomy.default())(orjson.dumps(line), "in:1")
    assert isinstance(ev, Event)
    got = ctx.get("device")
    kind = got.get("type") if isinstance(got, dict) else None
    device = DEVICES[kind] if isinstance(kind, str) else _web_device(ctx)
    expected = _app_device(kind, got, ctx) if device == "mobile" else device
    assert ev.device == expected


# --- scrub: the IPv4 and phone shapes on ASCII text ------------------------------------


def _shape(text: str) -> str:
    """One character for each of ``text``'s, a run of more than 20 digits cut to 20."""
    shape = text.encode().translate(scrub_mod._SHAPES).decode()
    return re.sub("0{21,}", "0" * 20, shape)


@settings(max_examples=3000)
@given(TEXT)
@example("+1 (415) 555-0123 \u00e9")
@example("\u00e9+44 20 7946 0958")  # a letter that is not ASCII right before the "+"
@example("\u00b7+44 20 7946 0958")  # a symbol there: read as a letter, the shape passes
@example("+44\u200320 7946 0958")  # an em space: no shape, the pattern decides
@example("+\uff14\uff14 20 7946 0958")  # full-width digits: no shape either
# Read as letters, these would hide the whole number from its shape (and NFKC folds
# neither): Arabic-Indic digits, the Ogham space mark.
@example("+\u0661\u0664\u0661\u0665\u0665\u0665\u0660\u0661\u0662\u0663")
@example("415\u1680555\u16800123")
@example("\u00e910.0.0.1")
@example("\u00e9fe80:1:2:3:4")
def test_a_shape_holds_wherever_its_pattern_matches_in_any_text(text: str) -> None:
    shape = scrub_mod._shape(text)
    if shape is None:  # a digit or a space that is not ASCII
        assert scrub_mod._WIDE_DIGIT_OR_SPACE.search(text) is not None, text
        return
    assert len(shape) == len(re.sub("[0-9]{21,}", "0" * 20, text))
    assert not text.isascii() or shape == _shape(text)
    if IPV4.search(text) is not None:
        assert scrub_mod._IPV4_SHAPE.search(shape) is not None, text
    if PHONE.search(text) is not None:
        assert scrub_mod._phone_shape(shape), text
    if scrub_mod.IPV6.search(text) is not None:
        assert scrub_mod._ipv6_hint(text, shape), text


@settings(max_examples=1500)
@given(TEXT)
@example("a\u00a0b")
@example("\u00e9\uff20")
@example("\U000e0041x")
def test_folded_text_is_the_text_translated_by_the_folds(text: str) -> None:
    expected = text if text.isascii() else text.translate(scrub_mod._FOLDS)
    assert scrub_mod._folded(text) == expected


@settings(max_examples=4000)
@given(TEXT.filter(str.isascii))
@example("1.2.3.4")
@example("10.100.200.1")  # three digits between dots
@example("+12345678")  # the shortest international number: "+", a digit and seven
@example("+1 (415) 5")
@example("(415)555-0123")
@example("(415) 555-0123")
@example("415 555\t0123")
@example("415.555-0123")
@example("415.555.0123")  # each separator of the North American shape a dot
@example("(415) 555.0123")
@example("+1+415+555+0123")  # form-encoded: a "+" after a digit is a separator
@example("+1 (415) 555-0123")
@example("+44 20 7946 0958")
@example("x+1.2.3.4.5.6.7")
def test_the_ipv4_and_phone_shapes_hold_wherever_their_pattern_matches(text: str) -> None:
    if IPV4.search(text) is not None:
        assert scrub_mod._IPV4_SHAPE.search(_shape(text)) is not None, text
    if PHONE.search(text) is not None:
        assert scrub_mod._phone_shape(_shape(text)), text


class _Counted:
    """A pattern whose searches are counted."""

    def __init__(self, pattern: Any) -> None:
        self.pattern, self.searches = pattern, 0

    def search(self, text: str) -> Any:
        self.searches += 1
        return self.pattern.search(text)

    def sub(self, repl: str, text: str) -> Any:
        self.searches += 1
        return self.pattern.sub(repl, text)


def test_a_urls_tracking_ids_reach_no_ipv4_or_phone_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Google Analytics' ``_ga`` (three dots, a run "000.000") and a form-encoded search
    (``+42``) pass the cheaper guards; the shapes spare the pattern searches, which try
    every position of the URL (before them: one IPV4 and one PHONE search for the
    first, a PHONE search for the second). A number or an address planted beside them
    is still searched and found, so the shapes are not too strict either."""
    ipv4, phone = _Counted(IPV4), _Counted(PHONE)
    monkeypatch.setattr(scrub_mod, "IPV4", ipv4)
    monkeypatch.setattr(scrub_mod, "PHONE", phone)
    clean = [
        "https://shop.example.com/?_ga=2.70862151.1699999999.1700000000",
        "https://shop.example.com/search?q=size+42+rain+jacket&page=2",
    ]
    for text in clean:
        assert not has_pii(text), text
    assert (ipv4.searches, phone.searches) == (0, 0)
    planted = {
        "https://shop.example.com/?_ga=2.70862151.1699999999&ip=198.51.100.23": ipv4,
        "https://shop.example.com/search?q=size+42&tel=+44 20 7946 0958": phone,
        "https://shop.example.com/?_ga=2.70862151.1699999999&tel=415.555.0123": phone,
    }
    for text, pattern in planted.items():
        before = pattern.searches
        assert has_pii(text), text
        assert pattern.searches == before + 1, text


def test_a_text_of_plus_signs_between_digits_reaches_no_phone_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``+1 +1 +1 ...`` (a form-encoded list, or 32 KB made to pass the guard) has a "+",
    a digit and separators everywhere; no number, as a "+" inside one follows a digit.
    The shape said "maybe" and the pattern scanned every position (16 ms for 32 KB, 4.5x
    a normal line's cost per byte). A number among them is still searched and found."""
    phone = _Counted(PHONE)
    monkeypatch.setattr(scrub_mod, "PHONE", phone)
    text = "+1 " * 200
    assert scrub_text(text) == text
    assert phone.searches == 0
    accented = text + "\u00e9"  # one letter that is not ASCII: read in shapes too
    assert scrub_text(accented) == accented
    assert phone.searches == 0
    planted = text + "call +1 415 555 0123"
    assert scrub_text(planted).endswith("call <phone>")
    assert phone.searches > 0


@pytest.mark.timeout(60)
def test_padded_device_types_locales_and_sources_are_not_kept_by_any_cache() -> None:
    """300 calls whose device type, locale and campaign source are each padded to ~30 KB
    (unique): nothing of them stays in memory once validated. The caches kept each (the
    device type's twice: its dict and an lru_cache under it), ~9 MB for these 300."""
    import gc
    import tracemalloc

    import orjson

    from audienceflow.operators.validate import Taxonomy, Validator

    v = Validator(Taxonomy.default(), max_bytes=1 << 20)
    pad = "x" * 30_000

    def line(i: int) -> bytes:
        ctx = {"device": {"type": f"{pad}{i}"}, "locale": f"{pad}{i}",
               "campaign": {"source": f"{pad}{i}"}}  # fmt: skip
        return orjson.dumps({"type": "page", "userId": "u1", "messageId": f"m{i}",
                             "timestamp": "2026-03-02T08:00:00Z", "context": ctx})  # fmt: skip

    lines = [line(i) for i in range(300)]
    v(lines[0], "p:0")  # first-use allocations out of the count
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, raw in enumerate(lines[1:], 1):
        v(raw, f"p:{i}")
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert kept < 1_000_000, kept
