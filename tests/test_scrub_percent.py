"""Percent-decoding in one pass, and ``has_pii``'s look at a URL before decoding it all.

``scrub._percent_decoded`` decodes every level at once; ``has_pii`` first decodes only
the codes its guards read (``_PERCENT_SHOWN``) and decodes the rest only where a guard
passes on that. Both are compared here with the plain computation, a ``re.sub`` over
all codes a level, again while the text holds ``%25`` (the decoding as first written),
then every pattern searched: on texts glued from codes, their levels and the shapes
the patterns look for, and on web addresses encoded one to five times with a planted
address, number or IP.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators import scrub as scrub_mod
from audienceflow.operators.scrub import (
    CARD,
    EMAIL,
    IPV4,
    IPV6,
    PHONE,
    QUOTED_EMAIL,
    has_pii,
    scrub_text,
)
from tests.side_by_side import has_side_by_side, side_by_side_masked

_PLAIN = re.compile(r"%(?:40|2[bBdDeEfF056]|3[aAdDfF]|2[89]|0[9aAdD])")


def _plain_decoded(text: str) -> str:
    """Level by level: every code at once, again while the level's text held ``%25``."""
    for _ in range(4):
        decoded = _PLAIN.sub(lambda m: scrub_mod._PERCENT_CHARS[m.group(0)[1:].lower()], text)
        if decoded == text or "%25" not in text:
            return decoded
        text = decoded
    return text


def _plain_has_pii(text: str) -> bool:
    text = text.translate(scrub_mod._FOLDS)
    plain = _plain_decoded(text) if "%" in text else text
    searched = any(
        p.search(plain) is not None for p in (QUOTED_EMAIL, EMAIL, IPV6, IPV4, CARD, PHONE)
    )
    return len(text) >= 6 and (searched or has_side_by_side(plain))


def _plain_pass(text: str) -> str:
    text = _plain_decoded(text) if "%" in text else text
    for pattern, mask in scrub_mod._MASKS:  # every pattern, in turn
        if pattern is PHONE:  # numbers side by side just before
            text = side_by_side_masked(text)
        text = pattern.sub(mask, text)
    text = scrub_mod._EMAIL_TAIL.sub("", text) if "<email>@" in text else text
    return scrub_mod._EMAIL_HEAD.sub("", text) if "@<email>" in text else text


def _plain_scrub(text: str) -> str:
    """A pass of every pattern, again while what it returns holds one (a pass decodes four
    levels more), at most ``scrub._PASSES``; what still holds one is masked whole. (Beyond
    ``scrub._PASS_CHARS``, ``scrub_text`` reads the passes after the first around the
    masks only, and may mask a text whole where these do not: ``_same_scrub``.)"""
    if not _plain_has_pii(text):
        return text
    text = text.translate(scrub_mod._FOLDS)
    masked = _plain_pass(text)
    for _ in range(scrub_mod._PASSES - 1):
        if not _plain_has_pii(masked) or masked == text:
            break
        text, masked = masked, _plain_pass(masked)
    if not _plain_has_pii(masked):
        return masked
    plain = _plain_decoded(masked) if "%" in masked else masked
    order = ((QUOTED_EMAIL, "<email>"), (EMAIL, "<email>"), (IPV6, "<ip>"), (IPV4, "<ip>"))
    order += ((PHONE, "<phone>"), (CARD, "<card>"))  # a phone's mask before a card's
    return next((mask for pattern, mask in order if pattern.search(plain)), "<phone>")


# Codes at every depth, near misses (a "%" without a code, "%2", "%252"), and what the
# patterns are made of, so that runs of digits, separators and colons cross codes.
CODES = ["40", "2B", "2b", "2E", "2e", "3A", "3a", "20", "28", "29", "2F", "3D", "3f", "26"]
CODES += ["09", "0A", "0a", "0D", "0d", "2D", "2d"]  # a tab, a line break, a hyphen
PIECES = [
    *(f"%{'25' * depth}{code}" for depth in range(6) for code in CODES),
    *("%" + "25" * depth for depth in range(7)),
    "%",
    "%%",
    "%2",
    "%252",
    "%4",
    "25",
    "2540",
    "40",
    "3A",
    "2",
    "5",
    "0",
    "1",
    "4",
    "9",
    "123",
    "555",
    "0123",
    "a",
    "F",
    "fe80",
    "x",
    "=",
    "/",
    "@",
    ".",
    ":",
    "::",
    "+",
    "(",
    ")",
    "-",
    " ",
    "\t",
    "é",
    "\u0663",
    "ann.lee",
    "example.com",
    "198.51",
    "100.23",
    "7946",
    "07700",  # a national number's pieces: a code before it is read undecoded by the guards
    "900123",
    "07700 900123",
    "06 12 34 56 78",
    "06+12+34+56+78",  # form encoding's "+" for a space
    "415+555+0123",
    "%C3%A4",  # a domain's label percent-encoded
]
GLUED = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)

PII = [
    "ann.lee@example.com",
    "j.doe+promo@mail.example.org",
    "+44 20 7946 0958",
    "(415) 555-0123",
    "415.555.0123",
    "1+415+555+0123",
    "m%C3%BCller@ex%C3%A4mple.de",
    "198.51.100.23",
    "2001:db8::1",
    "fe80:1:2:3",
    "1:2:3:4:5:6:7:8",
    "07700 900123",
    "0044 20 7946 0958",
    "020\t7946\t0958",  # encoded as %09
    "0044 20\r\n7946 0958",  # as %0D%0A
]
NOT_PII = ["size 42", "2026-03-02", "2.70862151.526020949.1701836239", "a&b=c", "50% off"]
URLS = [
    "https://shop.example.com/cart?step=2&ref=nav",
    "https://m.example.net/account/login?utm_source=google&utm_campaign=spring%20sale",
    "?gclid=Cj0KCQiA-x_9&q=red+shoes&_ga=2.1.2.3",
    "https://www.google.com/url?sa=t&url=https%3A%2F%2Fshop.example.com%2F",
]


def _encoded(url: str, value: str, levels: int, safe: str) -> str:
    text = f"{url}&contact={quote(value, safe=safe)}"
    for _ in range(levels):
        text = f"https://shop.example.com/login?returnTo={quote(text, safe=safe)}"
    return text


# A value planted in a URL nested 0 to 5 times, each level encoded as a browser does
# (``safe=""``) or leaving "@", ":", "." or "+" as they are; then pieces put in anywhere.
ENCODED = st.builds(
    _encoded,
    st.sampled_from(URLS),
    st.sampled_from(PII + NOT_PII),
    st.integers(0, 5),
    st.sampled_from(["", "/", "@", ":", ".+", "()"]),
)


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(ENCODED)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 4))
        text = text[:at] + draw(st.sampled_from(PIECES)) + text[at + cut :]
    return text


TEXTS = GLUED | ENCODED | _mutated()


@settings(max_examples=4000)
@given(TEXTS)
@example("%2525252540")  # deeper than four levels: decoded four times
@example("%252525252")
@example("%25%2540")  # a "%" decoded next to a code
@example("%%2540x")
def test_the_one_pass_decoding_is_the_level_by_level_one(text: str) -> None:
    assert scrub_mod._percent_decoded(text) == _plain_decoded(text)


@settings(max_examples=4000)
@given(TEXTS)
@example("x%252540example.com")  # an address encoded twice, then three times
@example("x%25252540example.com")
@example("%2525252B44 20 7946 0958")  # a number encoded four times
@example("%253D415-555-0123")  # a boundary ("=") decoded at the second level
@example("ip%3D198%252E51%252E100%252E23")
@example("fe80%253A1%253A2%253A3")
def test_has_pii_finds_what_the_plain_decoding_and_every_pattern_find(text: str) -> None:
    assert has_pii(text) is _plain_has_pii(text)


def _same_scrub(text: str, scrubbed: str, oracle: str) -> bool:
    """Whether ``scrubbed`` is ``oracle`` but for digits of other scripts, which it may keep
    as written (``scrub._DIGIT_FOLDS``); or, ``text`` longer than ``scrub._PASS_CHARS``,
    one mask: the passes around its masks could not trust a window (``scrub._repassed``)."""
    digits = scrub_mod._DIGIT_FOLDS
    return scrubbed.translate(digits) == oracle.translate(digits) or (
        len(text) > scrub_mod._PASS_CHARS and scrubbed in scrub_mod.MASKS
    )


@settings(max_examples=1500)
@given(TEXTS)
def test_scrub_text_masks_what_the_plain_decoding_and_every_pattern_mask(text: str) -> None:
    assert _same_scrub(text, scrub_text(text), _plain_scrub(text))


def test_a_planted_value_is_found_at_every_depth_and_a_plain_url_is_not_decoded() -> None:
    # Not vacuous: each shape is found through the prefilter at each depth it decodes to.
    for value in PII:
        for levels in range(4):
            assert has_pii(_encoded(URLS[0], value, levels, "")), (value, levels)
    url = _encoded(URLS[3], "size 42", 2, "")
    shown = scrub_mod._PERCENT_SHOWN.sub(scrub_mod._percent_shown, url)
    assert "%252F" in shown and not scrub_mod._may_match(shown, len(url))


# --- texts of many codes (``_PERCENT_MANY``): no Python call per code -------------------


def python_calls(fn: Callable[..., Any], *args: Any) -> int:
    """How many Python-level function calls ``fn(*args)`` makes, itself included (not C's)."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return calls


# Texts past ``_PERCENT_MANY`` codes: the test texts repeated.
MANY = st.builds(lambda text, n: text * n, TEXTS, st.integers(1, 40))


@settings(max_examples=1000)
@given(TEXTS)
@example("%2540")
@example("%%4040")
@example("%25%2540")
def test_the_decoding_by_replacement_is_the_level_by_level_one(text: str) -> None:
    assert scrub_mod._percent_replaced(text) == _plain_decoded(text)


@settings(max_examples=500)
@given(MANY)
def test_a_text_of_many_codes_is_judged_and_masked_as_the_plain_way_does(text: str) -> None:
    assert scrub_mod._percent_decoded(text) == _plain_decoded(text)
    assert has_pii(text) is _plain_has_pii(text)
    assert _same_scrub(text, scrub_text(text), _plain_scrub(text))


def test_a_text_of_many_codes_makes_no_python_call_per_code() -> None:
    # 32 KB of ``%2540`` took 6-11 ms in a Python call per code (twice: the look before
    # decoding, then the decoding): 150-250 normal lines.
    for text in ("%40" * 10_000, "%2540a" * 5_000, "%2B%3a%28" * 3_000):
        assert python_calls(scrub_mod._percent_decoded, text) <= 2
        assert python_calls(has_pii, text) <= 8
    assert python_calls(has_pii, "%2540" * 6_500) <= 8 and has_pii("ann%2540example.com")
