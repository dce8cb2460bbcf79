"""The patterns of ``operators/scrub.py`` rewritten for speed find what they found as first
written; and each one scanned over a whole text starts where the engine can skip to.

The patterns as first written are kept here, the oracles: each of them tried every
position of a text, a lookbehind or lookahead first (30 to 230 ns a character, so a
32 KB value of digits and one ``-7`` cost 31 ms a line). The rewrites start with a
literal or a class the regex engine skips to in C. A pattern whose matches are used
(``PHONE``, ``CARD_SHAPE``) must match where and as the oracle does; a guard asked only
whether it matches, that alone. Then ``has_pii`` and ``scrub_text`` as a whole, every
guard included, against the oracle patterns searched on every text.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from helpers import pure_only
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators import scrub as scrub_mod
from audienceflow.operators.scrub import IPV4, IPV6, has_pii, scrub_text
from tests.side_by_side import has_side_by_side, side_by_side_masked

pytestmark = pytest.mark.timeout(300)

# --- the oracles: the patterns as first written -----------------------------------------

# A separator but a line break (``str.splitlines``'s): the rule that reads no number after a
# number and a separator stops at a line's end.
_NO_BREAK = r"(?![\n\x0b\x0c\r\x1c-\x1e\x85\u2028\u2029])"
_IN_LINE = _NO_BREAK + r"[\s.+-]"
_BREAK = r"[\n\x0b\x0c\r\x1c-\x1e\x85\u2028\u2029]"
# A 00 or trunk-0 number's end: no word, no "-" but before "+" and a digit, no separator
# and digit within the line, no colon and digit after an hour after a date.
_END_IN_LINE = rf"(?!\w|-(?!\+\(?\d)|{_IN_LINE}\d|{scrub_mod._DATE_HOUR}:\d)"


# A trunk-0 number's end: a number of one or two digits ending its run may follow; a
# bracketed area code's, of one to three.
def _end_short(most: int) -> str:
    return (
        rf"(?!\w|-(?!\+\(?\d)|{scrub_mod._DATE_HOUR}:\d"
        rf"|(?!{_IN_LINE}\d{{1,{most}}}+(?!\w|-(?!\+\d)|{_IN_LINE}\d)){_IN_LINE}\d)"
    )


_END_TRUNK = _end_short(2)
_END_BRACKETED = _end_short(3)

OLD_GROUPS = "|".join(
    rf"0[1-9]\d{{0,4}}{s}\d{{2,8}}(?:{s}\d{{2,8}}){{0,4}}" for s in (" ", r"\.", "-", r"\+", r"\t")
)
# Each separator whitespace, ".", "+" or "-", or a line wrap ("\r\n", a space before a break).
_ACROSS_SEP = rf"(?:(?:{_NO_BREAK}\s)?(?:\r\n|{_BREAK})|[\s.+-])"
OLD_ACROSS = (
    rf"(?=00(?:{_ACROSS_SEP}?\d){{8,15}}(?!\w|-(?!\+\(?\d)|{_ACROSS_SEP}\d|{scrub_mod._DATE_HOUR}:\d))"
    rf"00[\s+]?[1-9]\d{{0,3}}(?:{_ACROSS_SEP}\d{{1,8}}){{1,5}}(?!\w|-(?!\+\(?\d)|{_ACROSS_SEP}\d|"
    + scrub_mod._DATE_HOUR
    + r":\d)"
)
OLD_PHONE = re.compile(
    r"(?<![^\W_])(?<![\d+]\+)\+(?:"
    + scrub_mod._PLUS_IN_LINE
    + scrub_mod._PLUS_TAIL_IN_LINE
    + r"|\d(?:[\d\s().-]|(?<=\d)\+){6,24}\d(?!\d)"
    + scrub_mod._PLUS_TAIL
    + ")"
    + (
        r"|(?<![\w.-])(?<![+.-]\+)(?:1[\s.+-])?(?:\(\d{3}\)[\s+]?|\d{3}[\s.+-])\d{3}[\s.+-]\d{4}(?!\w|-(?!\+\d))"
        r"|\(\d{3}\)[\s+]?\d{3}[\s.+-]\d{4}(?!\w|-(?!\+\d))"
        r"|(?<![\w.-])(?<![\d+.-]\+)(?<!\d"
        + _IN_LINE
        # Within the line first (a number on the next line is another one), then across.
        # Fewer than ten digits after the 00 before a line break and a digit: across first.
        + rf")(?:(?=00(?:{_IN_LINE}?\d){{0,9}}+{scrub_mod._WRAP}\d)"
        + rf"(?:{OLD_ACROSS}|0{scrub_mod._00_WRAPPED})"
        + rf"|(?=00(?:{_IN_LINE}?\d){{8,15}}{_END_IN_LINE})"
        + rf"00(?:{_NO_BREAK}[\s+])?[1-9]\d{{0,3}}(?:{_IN_LINE}\d{{1,8}}){{1,5}}"
        + _END_IN_LINE
        + rf"|{OLD_ACROSS})"
        r"|(?:(?=\()|(?<![\w.-]))"
        # A bracketed area code after anything (its count reads the ")"; no ")" and number
        # after it), or a trunk-0 number (no ")" read; one may follow) after no "+" that
        # follows a digit, "+", "." or "-".
         + rf"(?:(?=\(0(?:\)?{_IN_LINE}?\d){{8,11}}{_END_BRACKETED})"
        r"\(0(?:[1-9]\d{0,3}\)[ +]?\d{2,8}(?:[ +-]\d{2,8}){0,4}"
        r"|\)[ +]?[1-9]\d{1,3}[ +.-]?\d{3,8}(?:[ +.-]\d{2,8}){0,4})"
        rf"{_END_BRACKETED}(?!\)[\s.+-]?\d)"
        rf"|(?<![\d+.-]\+)(?<!\d{_IN_LINE})(?=0(?:{_IN_LINE}?\d){{8,11}}{_END_TRUNK})(?:{OLD_GROUPS}){_END_TRUNK}"
        # Two groups parted by a line break.
        rf"|(?<![\d+.-]\+)(?<!\d{_IN_LINE})(?=0(?:{scrub_mod._WRAP}?\d){{8,11}}{_END_IN_LINE})"
        rf"0[1-9]\d{{1,3}}{scrub_mod._WRAP}\d{{6,8}}{_END_IN_LINE}"
        # Three groups or more, the last on the next line.
        rf"|(?<![\d+.-]\+)(?<!\d{_IN_LINE})(?=0(?:{scrub_mod._WRAPPED_COUNT}){_END_IN_LINE})"
        rf"0(?:{scrub_mod._WRAPPED_GROUPS}){scrub_mod._WRAP}\d{{3,8}}{_END_IN_LINE})"
    )
)
# A zero-led group of two to eight digits where a number starts, then a separator.
OLD_ZERO_LED = "|".join(
    rf"(?<=(?<![\w.])(?<![\w.]-)(?<!\d{_IN_LINE})0\d{{{k}}}[ +])" for k in range(1, 8)
)
OLD_CARD_SHAPE = re.compile(
    rf"(?<![\w.])(?<![\w.]-)(?:(?<!\d[ +])|(?<=/\d\d[ +])|{OLD_ZERO_LED})[^\D0]\d{{3}}([ +-])"
    r"(?:\d{4}\1\d{4}\1(?:\d{4}\1\d{1,3}(?!/)|\d{1,7})|\d{6}\1\d{4,5})"
    r"(?!\w|[ +.-]\d(?!\d?/\d))"
    r"|(?<![\w.])(?<![\w.]-)[^\D0]\d{14,18}(?!\w|[.-]\d)"
)
# ``_PHONE_HINT``'s second branch in character classes ("0" a digit, "-" a separator).
OLD_RUN = r"(?=(?:0-?){8}0)0{1,8}-0"
OLD_GROUPED = r"(?=(?:0[-.+]?){8}0)0{2,6}[-.+]0"
OLD_GROUPED_SHAPE = re.compile(rf"\(0|(?<![0h.])(?<![0+.]\+){OLD_GROUPED}")
OLD_GROUPED_RUN = re.compile(rf"\(0|{OLD_GROUPED}")
OLD_PLUS_SHAPE = re.compile(r"\+0(?:[-0.()]|(?<=0)\+){6,24}0")
OLD_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_OLD_HEX = r"[0-9A-Fa-f]{1,4}"
# An IPv4 tail ends before no digit nor "." and a digit; a letter may follow (``::ffff:1.2.3.4x``:
# as first written, ``(?!\.?\w)``, only ``::ffff:1`` was masked, and ``.2.3.4x`` kept).
_OLD_V4 = r"\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)"
_OLD_V6_BODY = (
    rf"(?:(?:(?:{_OLD_HEX}:){{6}}"
    rf"|(?:{_OLD_HEX}(?::{_OLD_HEX}){{0,4}})?::(?:{_OLD_HEX}:){{0,5}}){_OLD_V4}"
    rf"|(?:(?:{_OLD_HEX}:){{3,7}}{_OLD_HEX}"
    rf"|(?:{_OLD_HEX}(?::{_OLD_HEX}){{0,6}})?::{_OLD_HEX}(?::{_OLD_HEX}){{0,6}})(?![0-9A-Fa-f:]))"
)
OLD_IPV6 = re.compile(rf"(?<![0-9A-Fa-f:]){_OLD_V6_BODY}")
# What ``IPV6.sub`` masks: ``OLD_IPV6``'s matches, and an address glued by its "::" after the
# octets of an IPv4-tailed one (``::ffff:1.2.3.4::1``): it also starts after a "." and one
# to three digits. (Anywhere else such a start is no leftmost match: the one from the
# digits, which ``OLD_IPV6`` finds, ends where it ends.)
GLUED_IPV6 = re.compile(
    r"(?:(?<![0-9A-Fa-f:])|(?=::)(?:(?<=\.\d)|(?<=\.\d\d)|(?<=\.\d\d\d)))" + _OLD_V6_BODY
)


def _old_card_sub(text: str) -> str:
    return OLD_CARD_SHAPE.sub(lambda m: "<card>" if scrub_mod._luhn(m) else m.group(0), text)


def _old_has_card(text: str) -> bool:
    return any(scrub_mod._luhn(m) for m in OLD_CARD_SHAPE.finditer(text))


def _oracle_has_pii(text: str) -> bool:
    """``has_pii`` of a text without "@", "%" or anything ``_FOLDS`` reads: one of the
    patterns matches, each searched on the whole text."""
    return len(text) >= 6 and (
        OLD_IPV6.search(text) is not None
        or IPV4.search(text) is not None
        or _old_has_card(text)
        or OLD_PHONE.search(text) is not None
        or has_side_by_side(text, phone=OLD_PHONE, card_shape=OLD_CARD_SHAPE)
    )


def _oracle_pass(text: str) -> str:
    """Each pattern's masks in ``scrub._MASKS``' order."""
    text = GLUED_IPV6.sub("<ip>", text)
    text = IPV4.sub("<ip>", text)
    text = side_by_side_masked(_old_card_sub(text), phone=OLD_PHONE, card_shape=OLD_CARD_SHAPE)
    return OLD_PHONE.sub("<phone>", text)


def _oracle_scrub(text: str) -> str:
    """``scrub_text`` of such a text: ``_oracle_pass`` again while what it returns holds a
    pattern, at most ``scrub._PASSES`` passes (beyond ``scrub._PASS_CHARS``, ``scrub_text``
    reads them around the masks only); what still holds one is masked whole (an
    address's mask first, then a phone's, then a card's)."""
    if not _oracle_has_pii(text):
        return text
    masked = _oracle_pass(text)
    for _ in range(scrub_mod._PASSES - 1):
        if masked == text or not _oracle_has_pii(masked):
            break
        text, masked = masked, _oracle_pass(masked)
    if not _oracle_has_pii(masked):
        return masked
    if OLD_IPV6.search(masked) is not None or IPV4.search(masked) is not None:
        return "<ip>"
    if OLD_PHONE.search(masked) is None and _old_has_card(masked):
        return "<card>"
    return "<phone>"  # a phone, or numbers side by side


# --- texts made of what the patterns read -----------------------------------------------

# Digits (a 0 and a 1 most: trunk and country prefixes), the separators, brackets,
# letters (hex and not), a colon, a slash (an expiry date), line breaks, an underscore.
ALPHABET = "0001147789" + "   --++..()" + "aAfxz:/_\n\r\u2028"
# Pieces of numbers the patterns find, and their near misses.
PIECES = [
    "+44 20 7946 0958",
    "+1 415 555 0123",
    "+14155550123",
    "(415) 555-0123",
    "415-555-0123",
    "1-800-555-0199",
    "1.415.555.0123",
    "0044 20 7946 0958",
    "00 44 20 7946 0958",
    "07700 900123",
    "020 7946 0958",
    "06 12 34 56 78",
    "06+12+34+56+78",
    "(020) 7946 0958",
    "(0)20 7946",
    "(07700 900123)",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111 12/28",
    "00 4111 1111 1111 1111",
    "4111111111111111",
    "3782-822463-10005",
    "05.12.2026 14",
    "198.51.100.23",
    "::ffff:198.51.100.23",
    "fe80:1:2:3",
    "user-+",
    "id_",
    "ORD-",
    "-7",
    "1\n",  # a number's line ends: the next one starts as a text does
    # A tab's groups, a line wrap: after the last group, "\r\n", a space before a break.
    "07700\t900123",
    "020 7946\n0958",
    "0044 20 7946\r\n0958",
    "0044 20 \n7946 0958",
    "0044 20\n7946 0958\n12345678",
    "(020) 7946 0958 123",
    "+44 20 7946 09\n58:1",
    "a2\r",
]


@st.composite
def _texts(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.text(st.sampled_from(ALPHABET), max_size=12)))
        elif kind == 1:
            piece = draw(st.sampled_from(PIECES))
            if draw(st.booleans()):  # one character changed, added or left out
                at = draw(st.integers(0, len(piece)))
                new = draw(st.sampled_from(["", *ALPHABET]))
                piece = piece[:at] + new + piece[at + draw(st.integers(0, 1)) :]
            parts.append(piece)
        elif kind == 2:  # a run of one digit: ids, the 15 to 19 of a card, more than 20
            parts.append(draw(st.sampled_from("0147")) * draw(st.integers(1, 40)))
        else:  # groups of digits with one separator: the phone hint's chains
            sep = draw(st.sampled_from([" ", "-", ".", "+", "  ", "", "\t", "\n", "\r\n", " \n"]))
            groups = draw(st.lists(st.integers(1, 9), min_size=1, max_size=5))
            parts.append(sep.join("0" * g for g in groups))
    return "".join(parts)


# The shapes that once cost milliseconds a line, repeated: runs of "(0" and of brackets,
# hex letters after "::", colons, lists of addresses, digits and separators in turn.
HOSTILE_UNITS = ["(0", "(00)", "(020)", "(415) ", ")", "abcd ", "a:", "a: ", ":", "::", "ffff:",
                 "1.2.3.4:", "1.2.3.4.", "0 ", "1 1-", "+1 ", "00-", "01.", "9+"]  # fmt: skip


@st.composite
def _hostile(draw: st.DrawFn) -> str:
    """A few hostile units repeated, with an address, a number or a near miss of one in
    between: what a guard or a rewrite must judge as the patterns as first written do."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        unit = draw(st.sampled_from(HOSTILE_UNITS))
        parts.append(unit * draw(st.integers(1, 12)))
        if draw(st.booleans()):
            parts.append(draw(_texts()))
    return "".join(parts)


TEXTS = st.one_of(_texts(), _hostile())
# The same texts in the character classes of ``_HINT_CLASSES``, and of ``_SHAPES``.
CLASSES = st.text(st.sampled_from("000000--x"), max_size=40)
SHAPES = st.text(st.sampled_from("000000-.+(h:x)"), max_size=40)


def _spans(pattern: Any, text: str) -> list[tuple[tuple[int, int], tuple[Any, ...]]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text)]


# --- each rewrite against its oracle ----------------------------------------------------


@settings(max_examples=3000)
@given(TEXTS)
@example("(020) 7946 0958")
@example("0044 20 7946 0958 1")
@example("1-800-555-0199")
@example("+1 +1 +1 +44 20 7946 0958")
# A line break ends the rule of no number after a number and a separator; a tab does not.
@example("1\u20280044 20 7946 0958 1\r(020) 7946 0958 1\x8507700 900123 1\t07700 900123")
# A number on the next line is another one: the one before it ends at the line break.
@example("07700 900123\n12345678 0044 20 7946 0958\r\n1 0044 20\n7946 0958 (020) 7946 0958\u20282")
# A short number after a trunk-0 number; a six-digit first group; a 00 number's line wrap.
@example(
    "07700 900123 12 020 7946 0958 14:30 098765 43210 0044 20 7946\n0958 0033 6 12 34 56 78\n1"
)
def test_the_phone_pattern_finds_the_matches_it_found_as_first_written(text: str) -> None:
    assert _spans(scrub_mod.PHONE, text) == _spans(OLD_PHONE, text)
    assert scrub_mod.PHONE.sub("<phone>", text) == OLD_PHONE.sub("<phone>", text)


@settings(max_examples=3000)
@given(TEXTS)
@example("4111 1111 1111 1111 12/28")
@example("x.4111111111111111")
@example("1\u202807 4111 1111 1111 1111 1\x0c00 4111 1111 1111 1111 1\t07 4111 1111 1111 1111")
def test_the_card_shape_finds_the_matches_it_found_as_first_written(text: str) -> None:
    assert _spans(scrub_mod.CARD_SHAPE, text) == _spans(OLD_CARD_SHAPE, text)
    assert scrub_mod.CARD.sub("<card>", text) == _old_card_sub(text)


@settings(max_examples=3000)
@given(TEXTS | st.text(st.sampled_from("0001479 -+.xa_/\u20ac"), max_size=40))
# What may come before a first group: a symbol, a letter and a space, a "." and a space,
# a symbol that is not ASCII (read "x"), a "+" after a letter; after a long run.
@example("/4111 1111 1111 1111")
@example("a 4111 1111 1111 1111")
@example(". 4111-1111-1111-1111")
@example("a -4111 1111 1111 1111")  # a hyphen after a space
@example("\u20ac4111+1111+1111+1111")
@example("a+3782+822463+10005")
@example("1" * 25 + " x 4111 1111 1111 1111 12/28")
@example("00 4111 1111 1111 1111")  # after a zero-led group
@example("x 00000000+3782+822463+10005")
@example("1 0 012 4111-1111-1111-1111")
def test_the_card_guard_holds_wherever_the_card_shape_matches(text: str) -> None:
    if OLD_CARD_SHAPE.search(text) is not None:
        assert scrub_mod._may_be_card(text)


@settings(max_examples=3000)
@given(CLASSES)
@example("0" * 8 + "-0")
@example("0-" * 8 + "0")
@example("0" * 7 + "-0")
@example("x00-0000000")
def test_the_phone_hints_run_matches_where_it_matched_as_first_written(text: str) -> None:
    old = re.search(OLD_RUN, text) is not None
    assert (scrub_mod._RUN_GUARD.search(text) is not None) is old
    assert (scrub_mod._RUN_CLASSES.search(text.encode()) is not None) is old


@settings(max_examples=3000)
@given(SHAPES)
@example("00.0000000")
@example("h00-0000000")
@example("0+00-0000000")
@example("(0")
def test_the_grouped_shapes_match_where_they_matched_as_first_written(text: str) -> None:
    bracket = "(0" in text  # asked apart, by ``_phone_shape``
    shape = bracket or scrub_mod._GROUPED_SHAPE.search(text) is not None
    run = bracket or scrub_mod._GROUPED_RUN.search(text) is not None
    assert shape is (OLD_GROUPED_SHAPE.search(text) is not None)
    assert run is (OLD_GROUPED_RUN.search(text) is not None)


@settings(max_examples=3000)
@given(st.one_of(SHAPES, st.text(st.sampled_from("0+-.()x"), max_size=40)))
@example("+0-+0-+0-+0")
@example("+0+0+0+0+0")
@example("+0++0000000")
@example("+00+0000000")
def test_the_plus_shape_matches_where_it_matched_as_first_written(text: str) -> None:
    assert (scrub_mod._PLUS_SHAPE.search(text) is not None) is (
        OLD_PLUS_SHAPE.search(text) is not None
    )


@settings(max_examples=2000)
@given(st.text(st.sampled_from("0aAfx::-. g"), max_size=30))
@example("a:1:2:")
@example("::1:2:")
def test_the_ipv6_hint_matches_where_it_matched_as_first_written(text: str) -> None:
    assert (scrub_mod._IPV6_HINT.search(text) is not None) is (
        OLD_IPV6_HINT.search(text) is not None
    )


# Hex digits, colons and what ends an address: IPv6 addresses, their near misses and runs.
V6_TEXTS = st.one_of(
    st.text(st.sampled_from("0aAfF9x::.. g1"), max_size=40),
    st.lists(
        st.sampled_from(
            [
                "::",
                ":",
                "abcd",
                "abcde",
                "a",
                "1.2.3.4",
                "1",
                " ",
                ".",
                "g",
                "2001:db8::1",
                "::ffff:198.51.100.23",
                "1:2:3:4:5:6:7:8",
                "fe80::1:2:3",
                "1:2:3:4:5:6:1.2.3.4",
                "ffff",
                "1.2.3.4x",
            ]
        ),
        max_size=10,
    ).map("".join),
    _hostile(),
)


@settings(max_examples=4000)
@given(V6_TEXTS)
@example("::1.2.3.4:5:6:7::8")  # a colon-first match starting inside the last one
@example("::abcd abcd")
@example("x:: abcd abcd")
@example("abcde::1")
@example(":1:2:3:4")
# Groups before the first colon (taken into the mark in the reversed text): one to four
# hex digits, after the text's start, a space, a mask-like "<", another address.
@example("abcd::1 ab:cd:ef:01:23:45:67:89 1::2")
@example("x1::1,12::1,123::1,1234::1,12345::1")
@example("fe80::1 ::ffff:1.2.3.4 a:b:c:d:e:f:1.2.3.4")
@example("::ffff:1.2.3.4 1::2::3 :1:2::3")
# A mark character in the text: the next one marks (or, all in it, the loop masks).
@example("\x00::1 \x00\x01ab::1")
@example("\x00\x01\x02\x03::1 ab::1")
# Glued after an IPv4-tailed address: by "::" (an address from the colon), by ":" (none).
@example("::ffff:198.51.100.23::ffff:198.51.100.23::ffff:198.51.100.23")
@example("::1.2.3.4::1 1:2:3:4:5:6:1.2.3.4::a:b x.12::1")
@example("::1.2.3.4:5:6:7::8 ::1.2.3.4:::1")
@example("::1.2.3.4::1::1.2.3.4:a:b:c::d")
# An IPv4 tail glued to letters, hex digits among them, and an address after those.
@example("x ::ffff:1.2.3.4x ::ffff:1.2.3.4abcd::1 ::1.2.3.4ab:c:d:e ::1.2.3.4a:1::2")
@example("::1.2.3.4abcde::1 1:2:3:4:5:6:1.2.3.4f:1:2:3:4")
def test_the_ipv6_pattern_finds_and_masks_what_it_did_as_first_written(text: str) -> None:
    assert (IPV6.search(text) is not None) is (OLD_IPV6.search(text) is not None)
    mask = "<ip>"
    new, old = IPV6.sub(mask, text), GLUED_IPV6.sub(mask, text)
    assert new == old
    # The same object where ``re.sub`` returns one: pickles share what they meet twice.
    assert (new is text, new is mask) == (old is text, old is mask)
    # The Python loop (where marks sit side by side, or the text holds every mark) too.
    looped = scrub_mod.Ipv6Pattern._sub_loop(mask, text)
    assert looped == old
    assert (looped is text, looped is mask) == (old is text, old is mask)


@settings(max_examples=3000)
@given(TEXTS)
@example("(415) 555-0123")
@example("1 (415) 555-0123")
@example("(020) 7946 0958")
@example("(01)2345678")
@example("(01234) 5678")
@example("(0" * 20 + "(00000)0000")
# A trunk number whose only separator is a "+" (form-encoded), a "." or a "-": each is
# the one separator the grouped shape's substring test may find.
@example("tel=01632+960123")
@example("tel=01632.960123")
@example("tel=01632-960123")
def test_the_phone_shape_holds_wherever_the_phone_pattern_matches(text: str) -> None:
    shape = scrub_mod._shape(text)
    if shape is not None and OLD_PHONE.search(text) is not None:
        assert scrub_mod._phone_shape(shape)
        assert scrub_mod._phone_shape(shape, whole=False)


# --- the whole scan, guards included ----------------------------------------------------


@settings(max_examples=3000)
@given(TEXTS)
@example("1" * 40 + "-7")  # a run longer than a shape keeps
@example("1" * 40 + " 4111111111111111")
@example("0" * 25 + "-7946 0958")
@example("+0" + "0" * 22 + "-0")
@example("(0" * 40 + "(020) 7946 0958")
@example("::" + "abcd " * 20 + "1:2:3:4:5:6:7:8")
@example("1.2.3.4:" * 10 + "415-555-0123")
@example("0 " * 30 + "06 12 34 56 78")
@example("00 4111 1111 1111 1111")  # a zero-led group before a card
@example("07700 900123 00 4111 1111 1111 1111")
@example("0 00 4111+1111+1111+1111 x00000000 4111 1111 1111 1111")
@example("00 " * 20 + "4111 1111 1111 1111")
@example("tel:(07700 900123) (020 7946 0958 x(06 12 34 56 78")  # a trunk 0 after a "("
@example("(0" * 20 + "(07700 900123)")
def test_has_pii_and_scrub_text_find_and_mask_what_the_first_patterns_did(text: str) -> None:
    assert has_pii(text) is _oracle_has_pii(text)
    assert scrub_text(text) == _oracle_scrub(text)


# --- what the engine skips to ------------------------------------------------------------

# The patterns scanned over a whole text (where their guards pass): each starts with a
# literal, or a class of no letter, never a lookaround or a choice of them, so the
# engine skips in C to where a match can start and tries only there (a class of hex
# digits first, as ``_IPV6_HINT`` was, is tried at every letter of a-f). Not timed: read
# from the parsed pattern.
SCANNED = {
    "PHONE": "IN",  # [+(\d]
    "CARD_SHAPE": "IN",  # a digit but 0
    "_GROUPED_SHAPE": "IN",  # a separator
    "_GROUPED_RUN": "IN",
    "_RUN_CLASSES": "LITERAL",
    "_RUN_GUARD": "LITERAL",
    "_IPV6_HINT": "LITERAL",
    "_CARD_RUN_ALONE": "LITERAL",
    "IPV6_AT_COLON": "LITERAL",
    "_BRACKET_SHAPE": "LITERAL",
}


@pytest.mark.parametrize("name", sorted(SCANNED))
def test_a_scanned_pattern_starts_with_what_the_engine_skips_to(name: str) -> None:
    pattern = getattr(scrub_mod, name)
    first, _ = re._parser.parse(pattern.pattern, pattern.flags)[0]  # type: ignore[attr-defined]
    assert str(first) == SCANNED[name], (name, first)


@pure_only
def test_a_32_kb_run_of_digits_is_judged_without_the_card_patterns_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run of 32 KB of digits and a ``-7`` passed every guard of a card number (fifteen
    digits in a row): the card pattern scanned all of it (35 ns a character). A card
    without groups is a whole run of 15 to 19 digits; this run is none."""
    searched: list[int] = []

    class Counted:
        def search(self, text: str) -> Any:
            searched.append(len(text))
            return None

    monkeypatch.setattr(scrub_mod, "CARD", Counted())
    for digit in "017":
        assert has_pii(digit * 32_000 + "-7") is False
    assert searched == []
    assert has_pii("x" * 32_000 + " 4111111111111111") is False  # masked by the real one
    assert len(searched) == 1


def test_runs_of_brackets_and_digits_are_judged_without_the_phone_patterns_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any "(0" in a text's shape once passed the phone guard: ``(0(0(0...`` had PHONE try
    every position (4.7 ms a line), as did ``(00)(00)...``. A bracketed number has its
    code, two to five digits, in the bracket and nine digits in all."""
    searched: list[int] = []

    class Counted:
        def search(self, text: str) -> Any:
            searched.append(len(text))
            return None

    monkeypatch.setattr(scrub_mod, "PHONE", Counted())
    for unit in ("(0", "(00)", "(0)", "(00000)0", "(415)"):
        assert has_pii(unit * 4000) is False, unit
    assert searched == []
    assert has_pii("(0" * 4000 + " (020) 7946 0958") is False  # the real one finds it
    assert len(searched) == 1


@pure_only
def test_glued_phone_numbers_are_masked_without_the_card_patterns_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``+14155550123`` glued 2,700 times (32 KB) passed the phone guard, and the card
    pattern, asked wherever the phone one is, tried every digit (1.3 ms a line) for
    nothing: no group of four digits follows a number's start there."""
    searched: list[int] = []
    card = scrub_mod.CARD

    class Counted:
        def sub(self, mask: str, text: str) -> str:
            searched.append(len(text))
            return card.sub(mask, text)

        def search(self, text: str) -> Any:
            searched.append(len(text))
            return card.search(text)

    monkeypatch.setattr(scrub_mod, "CARD", Counted())
    assert scrub_text("+14155550123" * 2700) == "<phone>"
    assert scrub_text("+14155550123::1" * 2200) == "<ip>"
    assert searched == []
    assert scrub_text("+14155550123, 4111 1111 1111 1111") == "<phone>, <card>"
    assert searched


@pure_only
def test_the_phone_hint_is_read_once_and_after_the_address_guards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``has_pii`` passed the hint to ``_searched``, which computed it again; and on a list
    of addresses (``1.2.3.4:`` repeated) the hint, dearer there than the IPv4 search that
    finds the first address, was computed first."""
    calls: list[int] = []
    hint = scrub_mod._phone_hint

    def counted(text: str) -> bool:
        calls.append(len(text))
        return hint(text)

    monkeypatch.setattr(scrub_mod, "_phone_hint", counted)
    assert has_pii("0 " * 4000) is False
    assert len(calls) == 1
    calls.clear()
    assert has_pii("1.2.3.4:" * 1000) is True
    assert calls == []
