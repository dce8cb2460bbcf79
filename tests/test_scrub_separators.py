"""Phone numbers split by a tab and a line wrap, by two tabs, or by percent-encoded
separators, masked up to a bound; a blank line inside one, read as two texts.

From a review of shapes left in clear: a trunk-0 number with tabs and a wrap (``020\\t7946
\\n0958``), two tabs between groups (``07700\\t\\t900123``), a tab, a line break or a hyphen
percent-encoded in a URL's query (``tel=%2B44%2020%097946%090958``). Each case is written
at its bound: the shape masked, and the same shape one digit past the bound left as it
is. Then witnesses of two bounds no test held: the guard's three separators between two
digits, and the wrapped trunk-0 number's one group at least before the wrap.
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
        ("020\t7946\n0958", "<phone>"),
        ("020\t7946\r\n0958", "<phone>"),
        ("020\t7946\t\n0958", "<phone>"),
        ("x\t020\t7946\n0958\tok", "x\t<phone>\tok"),
        # Nine and twelve digits.
        ("020\t79\n4609", "<phone>"),
        ("020\t7946\n09581", "<phone>"),
        # A last group of three digits.
        ("0123\t4567\n890", "<phone>"),
    ],
)
def test_a_trunk_0_number_split_by_tabs_and_a_wrap_is_masked(text: str, out: str) -> None:
    _masked(text, out)


@pytest.mark.parametrize(
    "text",
    [
        # Eight and thirteen digits.
        "020\t79\n460",
        "020\t7946\n095812",
        # A table's row: after a number and a tab; before a tab and a number.
        "1\t020\t7946\n0958",
        "x\t020\t7946\n0958\t12",
        # A last group of two digits, a first group of one: a line's own number, a list.
        "0123\t4567\n89 items",
        "06\t12\t34\t56\n789",
        # One separator throughout.
        "020\t79 46\n0958",
    ],
)
def test_a_tab_and_wrap_split_run_past_the_bounds_is_left(text: str) -> None:
    _left(text)


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("07700\t\t900123", "<phone>"),
        ("020\t\t7946\t\t0958", "<phone>"),
        ("a\t\t07700\t\t900123\t\tb", "a\t\t<phone>\t\tb"),
        # Nine and twelve digits.
        ("0770\t\t90012", "<phone>"),
        ("07700\t\t9001234", "<phone>"),
        # Groups of two digits (a French number; then six groups after the first), and a
        # group of two between longer ones.
        ("01\t\t23\t\t45\t\t67\t\t89", "<phone>"),
        ("01\t\t23\t\t45\t\t67\t\t89\t\t01", "<phone>"),
        ("07700\t\t12\t\t3456", "<phone>"),
        # A short number after it that ends the run, read as after a space.
        ("07700\t\t900123\t\t12", "<phone>"),
        ("07700\t\t900123\t\t12 ok", "<phone> ok"),
        # Two tabs throughout: a short number after one tab is no group of it.
        ("07700\t\t900123\t45", "<phone>\t45"),
        # Where a number written with another separator ends is as it was.
        ("07700 900123\t\t4567", "<phone>\t\t4567"),
    ],
)
def test_a_trunk_0_number_split_by_two_tabs_is_masked(text: str, out: str) -> None:
    _masked(text, out)


@pytest.mark.parametrize(
    "text",
    [
        # Eight and thirteen digits (in two groups, in three); eight before a short
        # number after a space.
        "0770\t\t9001",
        "07700\t\t90012345",
        "07700\t\t9001\t\t2345",
        "07700\t\t900 12",
        # A table's row with an empty cell: after a number and two tabs, before two tabs
        # and a number of three digits or more (as after one tab or a space).
        "1\t\t07700\t\t900123",
        "07700\t\t900123\t\t123",
        "07700\t\t900123\t\t4567",
        # A short number that does not end the run (as ``07700 900123 1 2``).
        "07700\t\t900123\t\t1\t\t2",
        "07700\t\t900123\t\t12\t\t345",
        # Two tabs throughout; three are none.
        "07700\t\t900\t123",
        "07700\t\t\t900123",
    ],
)
def test_a_two_tab_split_run_past_the_bounds_is_left(text: str) -> None:
    _left(text)


def test_a_plus_number_is_read_across_a_blank_line() -> None:
    # The "+" marks a number: its reading takes any whitespace between groups.
    _masked("+44 20\n\n7946 0958", "<phone>")


@pytest.mark.parametrize(
    "text",
    [
        "0044 20\n\n7946 0958",
        "0044 20\r\n\r\n7946 0958",
        "0044 20 79\n\n46 0958",
        "020 7946\n\n0958",
        "07700\n\n900123",
    ],
)
def test_a_00_or_trunk_0_number_is_not_read_across_a_blank_line(text: str) -> None:
    # A blank line is a paragraph's end, which no line wrap makes: the digits after it
    # are another text's (a list's next item, a table's next row), as a line's own number
    # after a full one is. Across one wrap the same numbers are masked.
    _left(text)
    assert scrub_text(text.replace("\r\n\r\n", "\n").replace("\n\n", "\n")) == "<phone>"


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("tel=%2B44%2020%097946%090958", "tel=<phone>"),
        ("tel=07700%09900123&x=1", "tel=<phone>&x=1"),
        ("0044%2D20%2D7946%2D0958", "<phone>"),
        ("q=020%2d7946%2d0958", "q=<phone>"),
        ("q=0044%2020%0D%0A7946%200958", "q=<phone>"),
        ("q=0044%2020%0a7946%200958", "q=<phone>"),
        ("q=%2B44%0A20%0A7946%0A0958", "q=<phone>"),
        # Encoded twice (a URL in a URL's query).
        ("next=%3Ftel%3D0044%252D20%252D7946%252D0958", "next=?tel=<phone>"),
        ("next=%3Ftel%3D07700%2509900123", "next=?tel=<phone>"),
    ],
)
def test_a_number_with_percent_encoded_separators_is_masked(text: str, out: str) -> None:
    _masked(text, out)


@pytest.mark.parametrize(
    "text",
    [
        "q=a%0Ab%09c%2Dd",  # codes around no number: left encoded
        "q=0044%2D20%2D79",  # eight digits
        "q=020%097946%2D0958",  # two separators
        "/2024%2D01%2D15/",  # a date in a path: too few digits, no trunk 0
        "/events/2024%2D01%2D15%2D1200/",
        "t=2024%2D01%2D15T10%3A00%3A00",
    ],
)
def test_percent_encoded_separators_around_no_number_are_left(text: str) -> None:
    assert scrub_text(text) == text
    assert not has_pii(text)


def test_a_wrap_of_three_characters_is_one_separator_to_the_regex_guard() -> None:
    # A space that is not ASCII (U+2028) sends the text to ``_PHONE_HINT`` itself, whose
    # one to three separators between two digits read " \r\n" as one.
    _masked("07700 \r\n900123\u2028", "<phone>\u2028")


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("01234\n5678", "01234\n5678"),  # two groups, four digits after the wrap: none
        ("01234\n567890", "<phone>"),  # two groups, six after it
        ("01234 56\n789", "<phone>"),  # three groups, the last wrapped
    ],
)
def test_a_wrapped_trunk_0_number_has_a_group_before_its_wrapped_last_one(
    text: str, out: str
) -> None:
    assert scrub_text(text) == out
