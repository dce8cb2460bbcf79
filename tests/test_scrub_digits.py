"""Digits of other scripts are read as the ASCII digits of the same value.

``\\d`` matches an Arabic-Indic or full-width digit, but the patterns' ``0``, ``1`` and
``[1-9]`` are ASCII's: a trunk-0 or 00 number so written (``\\u0660\\u0667\\u0667...``) was
left in clear, and a card number read by other rules than its ASCII writing.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators.scrub import has_pii, scrub_text

pytestmark = pytest.mark.timeout(300)

# The zero of a few scripts' digits (each script's ten are in a row from its zero).
ZEROS = {
    "arabic-indic": 0x0660,
    "extended arabic-indic": 0x06F0,
    "devanagari": 0x0966,
    "full-width": 0xFF10,
    "mathematical bold": 0x1D7CE,
}


def _written_in(zero: int, text: str) -> str:
    return text.translate({ord("0") + d: chr(zero + d) for d in range(10)})


def _as_ascii(text: str) -> str:
    return "".join(str(int(ch)) if ch.isdecimal() else ch for ch in text)


@pytest.mark.parametrize("zero", list(ZEROS.values()), ids=list(ZEROS))
@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("call 07700 900123 now", "call <phone> now"),
        ("call (020) 7946 0958 now", "call <phone> now"),
        ("call 0044 20 7946 0958 now", "call <phone> now"),
        ("call 06 12 34 56 78 now", "call <phone> now"),
        ("call 1-800-555-0199 now", "call <phone> now"),
        ("call +44 20 7946 0958 now", "call <phone> now"),
        ("from 10.0.0.1 now", "from <ip> now"),
        ("card 4111 1111 1111 1111 now", "card <card> now"),
        ("card 4111111111111111 now", "card <card> now"),
        ("order 0411111111111111 now", "order 0411111111111111 now"),  # no card starts 0
    ],
)
def test_a_number_in_other_digits_is_masked_as_its_ascii_writing(
    zero: int, text: str, scrubbed: str
) -> None:
    wide = _written_in(zero, text)
    assert _as_ascii(scrub_text(wide)) == scrubbed
    assert has_pii(wide) is (scrubbed != text)


def test_other_digits_stay_as_written_where_only_something_else_is_masked() -> None:
    text = "ann@example.com paid \u0663\u0665\u0660 \u0631\u064a\u0627\u0644"
    assert scrub_text(text) == text.replace("ann@example.com", "<email>")
    assert scrub_text("\u0663\u0665\u0660 \u0631\u064a\u0627\u0644") == (
        "\u0663\u0665\u0660 \u0631\u064a\u0627\u0644"
    )


PIECES = [
    "07700 900123", "(020) 7946 0958", "0044 20 7946 0958", "00 44 20 7946 0958",
    "+44 20 7946 0958", "(415) 555-0123", "415-555-0123", "1.415.555.0123", "10.0.0.1",
    "4111 1111 1111 1111", "4111111111111111", "3782-822463-10005", "05.12.2026",
    "00123456789", "::ffff:10.0.0.1", "12", "0", "1", " ", "-", ".", "+", "(", ")", "x", "/",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join),
    st.sampled_from(list(ZEROS.values())),
)
@example("07700 900123", 0x0660)
def test_other_digits_are_read_as_the_ascii_ones(text: str, zero: int) -> None:
    wide = _written_in(zero, text)
    assert has_pii(wide) is has_pii(text)
    assert _as_ascii(scrub_text(wide)) == scrub_text(text)
