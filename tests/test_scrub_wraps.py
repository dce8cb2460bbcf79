"""Phone numbers a tab or a line wrap split, or a short number ends, masked up to a bound.

From a review of shapes left in clear: a trunk-0 number split by a tab (``07700\\t900123``),
one of three groups or more whose last group a line wrap put on the next line (``020
7946\\n0958``), a 00 number wrapped at "\\r\\n" or after a space, or once before a line's
own number, a bracketed number before a three-digit one (``(020) 7946 0958 123``), a "+"
number's wrapped last group before a colon (``+44 20 7946 09\\n58:1``). Each case is
written at its bound: the shape masked, and the same shape one digit past the bound left
as it is.
"""

from __future__ import annotations

import pytest
from helpers import phone_left, phone_masked

from audienceflow.operators.scrub import has_pii, scrub_text

pytestmark = pytest.mark.timeout(60)

_left, _masked = phone_left, phone_masked


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("07700\t900123", "<phone>"),
        ("call 07700\t900123 now", "call <phone> now"),
        # Nine and twelve digits, the trunk-0 number's bounds.
        ("0770\t90012", "<phone>"),
        ("07700\t9001234", "<phone>"),
        # A short group after it, read as after a space.
        ("07700\t900123\t12", "<phone>"),
    ],
)
def test_a_trunk_0_number_split_by_a_tab_is_masked(text: str, out: str) -> None:
    _masked(text, out)


@pytest.mark.parametrize(
    "text",
    [
        # Eight and thirteen digits: no trunk-0 number.
        "0770\t9001",
        "07700\t90012345",
        # A table's row: no number after a number and a tab, as after a space.
        "1\t07700\t900123",
        # One separator throughout.
        "07700\t900 123",
    ],
)
def test_a_tab_split_run_past_the_trunk_0_bounds_is_left(text: str) -> None:
    _left(text)


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("020 7946\n0958", "<phone>"),
        ("020-7946\n0958", "<phone>"),
        ("x\n020 7946\n0958\n1", "x\n<phone>\n1"),
        ("020 7946\u20280958 ok", "<phone> ok"),
        # Nine and twelve digits.
        ("020 79\n4609", "<phone>"),
        ("020 7946\n09581", "<phone>"),
        # A last group of three digits.
        ("0123 4567\n890", "<phone>"),
        # A first group of three digits after the 0 (five in all).
        ("01234 567\n890", "<phone>"),
        # "\r\n" or a space before the break, as a 00 number's wrap.
        ("020 7946\r\n0958", "<phone>"),
        ("020 7946 \n0958 ok", "<phone> ok"),
        ("020 7946 \r\n0958", "<phone>"),
        # Two groups, the second on the next line.
        ("07700\r\n900123", "<phone>"),
        ("07700 \n900123", "<phone>"),
    ],
)
def test_a_trunk_0_number_whose_last_group_wrapped_is_masked(text: str, out: str) -> None:
    _masked(text, out)


@pytest.mark.parametrize(
    "text",
    [
        # Eight and thirteen digits.
        "020 79\n460",
        "020 7946\n095812",
        # A last group of two digits: the next line's own number.
        "0123 4567\n89 items",
        # A first group of one digit: a list.
        "06 12 34 56\n78",
        "06 12 34 56\n789",
        # A first group of five digits (six in all) before three groups: none.
        "012345 67\n890",
        # Two line breaks: a list of numbers, seven digits before the last line.
        "020 79\n46\n0958",
        # The next line goes on with a separator and a digit: its own numbers.
        "020 7946\n0958 1234",
        # After a number and a separator, on one line.
        "1 020 7946\n0958",
        # The same bounds across "\r\n".
        "0123 4567\r\n89 items",
        "020 79\r\n46\r\n0958",
        "06 12 34 56\r\n789",
        # Two spaces before the break: two separators.
        "07700  \n900123",
    ],
)
def test_a_wrapped_run_past_the_bounds_is_left(text: str) -> None:
    _left(text)


@pytest.mark.parametrize(
    ("text", "out"),
    [
        # "\r\n" and a space before the break, wherever the wrap falls.
        ("0044 20 7946\r\n0958", "<phone>"),
        ("0044 20\r\n7946 0958", "<phone>"),
        ("0044 20 7946 \n0958", "<phone>"),
        ("0044 20 \n7946 0958", "<phone>"),
        ("0044 20\t\r\n7946 0958 ok", "<phone> ok"),
        # Short groups each side: no three digits, a separator and three.
        ("0044 20 \r\n7946", "<phone>"),
        # No separator but the wrap's three characters: the guards read those as one, in
        # ASCII text (byte classes) and in text that is not (a regex).
        ("004420 \r\n7946 0958", "<phone>"),
        ("電話 004420 \r\n7946 0958", "電話 <phone>"),
        # Ten and seventeen digits across the wrap.
        ("0044 20\r\n7946", "<phone>"),
        ("0044 20\r\n7946 0958 123", "<phone>"),
    ],
)
def test_a_00_number_wrapped_at_crlf_or_after_a_space_is_masked(text: str, out: str) -> None:
    _masked(text, out)


@pytest.mark.parametrize(
    "text",
    [
        # Nine and eighteen digits.
        "0044 20\r\n794",
        "0044 20\r\n7946 0958 1234",
        # Two spaces before the break: two separators.
        "0044 20  \n7946 0958",
    ],
)
def test_a_wrapped_00_run_past_its_bounds_is_left(text: str) -> None:
    _left(text)


@pytest.mark.parametrize("brk", ["\n", "\r\n", " \n", "\u2028"])
@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("0044 20{b}7946 0958", "<phone>"),
        # Nine digits before the wrap, the most a 00 number is read across it so.
        ("0044 20 79461{b}0958", "<phone>"),
        # Ten and seventeen digits to the end of the line after the wrap.
        ("0044 20{b}7946", "<phone>"),
        ("0044 20{b}7946 0958 123", "<phone>"),
        # Eighteen: none, and the next line's number no part of one either.
        ("0044 20{b}7946 0958 1234", "0044 20{b}7946 0958 1234"),
    ],
)
def test_a_00_number_wrapped_once_before_a_lines_own_number_is_masked(
    brk: str, number: str, masked: str
) -> None:
    # Read across every break it would be 22 digits or more: no number; wrapped once, the
    # next line's number is its own.
    text = number.format(b=brk) + f"{brk}12345678"
    assert scrub_text(text) == masked.format(b=brk) + f"{brk}12345678"


@pytest.mark.parametrize(
    ("text", "out"),
    [
        # A number of one to three digits after a bracketed one joins it.
        ("(020) 7946 0958 12", "<phone>"),
        ("(020) 7946 0958 123", "<phone>"),
        ("tel (020) 7946 0958 123 x", "tel <phone> x"),
        ("(0161) 496 0000 123", "<phone>"),
    ],
)
def test_a_bracketed_number_before_a_three_digit_number_is_masked(text: str, out: str) -> None:
    _masked(text, out)


@pytest.mark.parametrize(
    "text",
    [
        # Four digits: a run's next group, none of this number.
        "(020) 7946 0958 1234",
        # A trunk-0 number keeps its bound of two.
        "020 7946 0958 123",
    ],
)
def test_a_bracketed_number_before_four_digits_is_left(text: str) -> None:
    _left(text)


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("+44 20 7946 09\n58:1", "<phone>:1"),
        ("+44 20 7946 09\r\n58:1", "<phone>:1"),
        # 24: past the hours, the number's own.
        ("+44 20 7946 09\n24:00", "<phone>:00"),
        ("+44 20 7946 095\n8:1", "<phone>\n8:1"),
        # An hour on the next line: a time, no part of the number.
        ("+44 20 7946 09\n23:59", "<phone>\n23:59"),
        ("+44 20 7946 09\n12:30", "<phone>\n12:30"),
        ("+44 20 7946 09\n05:30", "<phone>\n05:30"),
    ],
)
def test_a_plus_numbers_wrapped_group_before_a_colon_is_masked_but_an_hour(
    text: str, out: str
) -> None:
    assert scrub_text(text) == out
    assert not has_pii(out)
