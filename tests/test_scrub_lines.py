"""A line break ends the rule that reads no number after a number and a separator.

A trunk-0 or 00 number, a bracketed trunk-0 area code, a run of numbers side by side and
a card after a zero-led group are not read after a number and a separator (``1 07700
900123``, ``qty 2 4111 1111 1111 1111``: a table's numbers, a quantity). That rule read
across a line break: ``scrub_text("Order 1234\\n07700 900123")`` returned the text
unchanged and ``has_pii`` was False. A number at a line's start is now read as at a
text's start; on one line the rule holds as before.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators import scrub as scrub_mod
from audienceflow.operators.scrub import has_pii, may_have_pii, scrub_text
from tests.side_by_side import side_by_side_masked

pytestmark = pytest.mark.timeout(120)

# Every line break ``str.splitlines`` knows, "\r\n" too.
BREAKS = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\x1c", "\x1d", "\x1e"]


def test_the_line_breaks_are_those_str_splitlines_breaks_at() -> None:
    breaks = {chr(cp) for cp in range(0x110000) if len(f"a{chr(cp)}b".splitlines()) == 2}
    assert breaks == set(scrub_mod.LINE_BREAKS)
    # The lookbehinds' separator: whitespace but those, ".", "+" or "-".
    sep = re.compile(scrub_mod._SEP_IN_LINE)
    seps = {chr(cp) for cp in range(0x110000) if sep.fullmatch(chr(cp))}
    assert seps == {chr(cp) for cp in range(0x110000) if chr(cp).isspace()} - breaks | set(".+-")


@pytest.mark.parametrize("brk", BREAKS)
@pytest.mark.parametrize(
    ("head", "number", "masked"),
    [
        # The repro, and the other trunk-0 and 00 shapes.
        ("Order 1234", "07700 900123", "<phone>"),
        ("1", "020 7946 0958", "<phone>"),
        ("12.50", "06 12 34 56 78", "<phone>"),
        ("1", "0044 20 7946 0958", "<phone>"),
        ("2024-11-30", "00 44 20 7946 0958", "<phone>"),
        ("1", "(020) 7946 0958", "<phone>"),
        ("qty 2", "(07700 900123)", "(<phone>)"),
        # A run side by side that starts on the line (its line before is glued to a word).
        ("a1", "07700 900123 07700 900123", "<phone> <phone>"),
        ("a1", "(020) 7946 0958 07700 900123", "<phone> <phone>"),
        # A card after a zero-led group (no quantity): read alone, as at a text's start.
        ("1", "07 4111 1111 1111 1111", "07 <card>"),
        ("1", "00 4111 1111 1111 1111", "00 <card>"),
    ],
)
def test_a_number_at_a_lines_start_is_read_as_at_a_texts_start(
    brk: str, head: str, number: str, masked: str
) -> None:
    text = f"{head}{brk}{number}"
    out = scrub_text(text)
    assert out == f"{head}{brk}{masked}"
    assert out.replace(f"{head}{brk}", "", 1) == scrub_text(number)  # as alone
    assert has_pii(text) and may_have_pii(text)
    assert not has_pii(out)


@pytest.mark.parametrize(
    "text",
    [
        # On one line the rule holds, whatever whitespace separates (a tab, a no-break
        # space): a table's numbers, a quantity.
        "1 07700 900123",
        "1\t07700 900123",
        "1\u00a007700 900123",
        "1\u200307700 900123",
        "1 0044 20 7946 0958",
        "qty 2 4111 1111 1111 1111",
        "1 07 4111 1111 1111 1111",
        "12.07700 900123",
        # A line break after the number, not before it, changes nothing.
        "x 1\n\n2 07700 900123",
    ],
)
def test_on_one_line_no_number_is_read_after_a_number_and_a_separator(text: str) -> None:
    assert scrub_text(text) == text
    assert not has_pii(text)


@pytest.mark.parametrize("brk", BREAKS)
@pytest.mark.parametrize(
    ("number", "tail"),
    [
        # A trunk-0 or 00 number ends at a line break: a number on the next line is another
        # one (the end rule, no separator and digit after the number, read across the
        # break and left the phone in clear).
        ("07700 900123", "12345678"),
        ("07700 900123", "2"),
        ("020 7946 0958", "1234 x"),
        ("06 12 34 56 78", "2024-11-30"),
        ("(020) 7946 0958", "1"),
        ("(07700 900123", "42"),
        ("0044 20 7946 0958", "12345678"),
        ("00 44 20 7946 0958", "1"),
    ],
)
def test_a_number_with_a_number_on_the_next_line_is_masked(
    brk: str, number: str, tail: str
) -> None:
    text = f"{number}{brk}{tail}"
    out = scrub_text(text)
    assert out == f"{scrub_text(number)}{brk}{tail}"
    assert scrub_text(number) != number
    assert has_pii(text) and not has_pii(out)


@pytest.mark.parametrize(
    "text",
    [
        # A number too short to be a phone, with digits on the next line: a trunk-0
        # number's count of digits read across the break while its groups and its end
        # did not, so a date and the time below it was masked as one.
        "05.12.2026\n14:09",
        "01-02-2024\n12",
        "0800 1234\n5",
        "(020) 79\n4609",
        "(0)12 3456\n78",
        "log 05.12.2026\u202814:09 ok",
    ],
)
def test_a_short_number_does_not_count_digits_on_the_next_line(text: str) -> None:
    assert scrub_text(text) == text
    assert not has_pii(text)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # A date and time written with spaces: its hour was the last group of a trunk-0
        # or 00 number ("14:30:00 2024..." reads "00 2024 11 30 14"), masked as a phone.
        ("05 12 2026 14:09", "05 12 2026 14:09"),
        ("sent 05 12 2026 14:09:30 ok", "sent 05 12 2026 14:09:30 ok"),
        ("14:30:00 2024 11 30 14:30:00", "14:30:00 2024 11 30 14:30:00"),
        ("at 14:30:05 12 2026 14:30:00", "at 14:30:05 12 2026 14:30:00"),
        ("14:30:00 2024\n11 30 14:30:00", "14:30:00 2024\n11 30 14:30:00"),
        # A last group of three digits or more is no hour: still masked.
        ("020 7946 0958:09", "<phone>:09"),
        ("tel 07700 900123: ok", "tel <phone>: ok"),
        ("0044 20 7946 0958:1", "<phone>:1"),
        ("0044 20\n7946 0958:1", "<phone>:1"),
        ("0044 20 7946\n0958:1", "<phone>:1"),
        # A last group of one or two digits is an hour only after a date (a year, or a
        # year and two groups): else it is the number's own, masked up to the colon (these
        # were left in clear, read as an hour).
        ("06 12 34 56 78:30", "<phone>:30"),
        ("call 0032 2 123 45 67:30:00", "call <phone>:30:00"),
        ("0044 20 7946 0958 14:30", "<phone>:30"),
        ("06 12 34 56 78 09:00-17:00", "<phone>:00-17:00"),
        ("0049 171\n1234567\n14:30", "<phone>:30"),
        ("0044 20\n7946 09:30", "<phone>:30"),
        ("05 12 2026 24:09", "<phone>:09"),
    ],
)
def test_a_date_and_time_written_with_spaces_is_no_phone(text: str, masked: str) -> None:
    out = scrub_text(text)
    assert out == masked
    assert has_pii(text) is (out != text)
    assert not has_pii(out)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # A "+" number with ten digits on its line read the next line's date and time
        # into its run: ``<phone>:09``.
        ("+44 20 7946 0958\n2024-11-30 14:09", "<phone>\n2024-11-30 14:09"),
        ("tel +1 415 555 0123\r\n2024-11-30 14:09 ok", "tel <phone>\r\n2024-11-30 14:09 ok"),
        ("+354 555 1234\n12", "<phone>\n12"),
        # The next line is read as any line: a number there is masked on its own.
        ("+1 2 3 4 5 6 7 8 9 0 1 2 3 4\n07700 900123", "<phone>\n<phone>"),
        # Fewer than ten digits on its line: read across the break, as a 00 number.
        ("+44 20\n7946 0958", "<phone>"),
        ("+44 20 7946\n0958 ok", "<phone> ok"),
        # A "00" after the "+" is no digit of the number: eight on the line, read across
        # (``0958`` was left in clear).
        ("+0044 20 7946\n0958", "<phone>"),
        ("+0044 20 7946\n0958:1", "<phone>:1"),
        # Nine digits after the "+00" on its line, ten after the "+0": read across (a "0" of
        # the "00" counted, ``7890`` would be left in clear).
        ("+0033 6 12 3456\n7890", "<phone>"),
        ("+0044 20 7946 0958\n2024-11-30 14:09", "<phone>\n2024-11-30 14:09"),
    ],
)
def test_a_plus_number_ends_at_its_line_end_once_it_has_ten_digits(text: str, masked: str) -> None:
    out = scrub_text(text)
    assert out == masked
    assert has_pii(text) and not has_pii(out)


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\u2028"])
@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # A line wrap inside a "+" number's last group, ten digits on the line: the rest
        # was left in clear.
        ("+44 20 7946 09{}58", "<phone>"),
        ("tel +44 (0)20 7946 0{}958 ok", "tel <phone> ok"),
        ("+44 20 7946 095{}8 23:59", "<phone> 23:59"),
        ("+33 6 12 34 56 7{}8.", "<phone>."),
        # A whole group on the line, or a date, a time, an id on the next: not read.
        ("+354 555 1234{}12", "<phone>{}12"),
        ("+44 20 7946 09{}12:30", "<phone>{}12:30"),
        ("+44 20 7946 09{}2024-11-30", "<phone>{}2024-11-30"),
        ("+44 20 7946 09{}1234", "<phone>{}1234"),
        ("+44 20 7946 09{}58x", "<phone>{}58x"),
    ],
)
def test_a_line_wrap_inside_a_plus_numbers_last_group_is_masked(
    brk: str, text: str, masked: str
) -> None:
    text, masked = text.replace("{}", brk), masked.replace("{}", brk)
    out = scrub_text(text)
    assert out == masked
    assert has_pii(text) and not has_pii(out)


@pytest.mark.parametrize("brk", ["\n", "\r", "\u2028"])
@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # A trunk-0 number of two groups over two lines: left in clear.
        ("07700{}900123", "<phone>"),
        ("call 020{}79460958 ok", "call <phone> ok"),
        ("Order 1234{}0161{}4960000", "Order 1234{}<phone>"),
        ("07700{}900123{}12", "<phone>{}12"),
        # A second group of five digits or fewer, a list, a number before: none.
        ("0123{}45678", "0123{}45678"),
        ("01{}02{}03{}04{}05{}06", "01{}02{}03{}04{}05{}06"),
        ("1 07700{}900123", "1 07700{}900123"),
        ("07700{}9001234567", "07700{}9001234567"),
    ],
)
def test_a_trunk_number_of_two_groups_over_two_lines_is_masked(
    brk: str, text: str, masked: str
) -> None:
    text, masked = text.replace("{}", brk), masked.replace("{}", brk)
    out = scrub_text(text)
    assert out == masked
    assert has_pii(text) is (out != text)
    assert may_have_pii(text) or not has_pii(text)
    assert not has_pii(out)


def test_a_00_number_broken_over_two_lines_is_still_one_number() -> None:
    assert scrub_text("0044 20\n7946 0958") == "<phone>"
    assert scrub_text("tel 0044 20\n7946 0958 ok") == "tel <phone> ok"
    # Fewer than ten digits after the 00 on its line: read across the break too (the
    # next line's ``0958`` was left in clear); where that reading fails, within its line.
    assert scrub_text("0044 20 7946\n0958") == "<phone>"
    assert scrub_text("tel 0044 20 7946\n0958 ok") == "tel <phone> ok"
    assert scrub_text("0044 20 7946\n12345678") == "<phone>\n12345678"
    assert scrub_text("0044 20 7946 0958\n12345678") == "<phone>\n12345678"
    # Nine digits after the 00 on its line: read across; ten: the line ends it.
    assert scrub_text("0033 6 12 34 56\n78") == "<phone>"
    assert scrub_text("0044 20 7946 09\n1234") == "<phone>\n1234"


def test_many_short_lines_of_numbers_each_have_their_phone_masked() -> None:
    text = "".join(f"Order {i}\n07700 900123\n" for i in range(200))
    out = scrub_text(text)
    assert out == "".join(f"Order {i}\n<phone>\n" for i in range(200))
    assert has_pii(text) and may_have_pii(text) and not has_pii(out)


# Heads a number follows on its own line, line breaks, and the numbers.
HEADS = ["1", "12", "qty 2", "a1", "2024-11-30", "Order 1234", "07700 900123", "x", ""]
NUMBERS = [
    "07700 900123",
    "020 7946 0958",
    "0044 20 7946 0958",
    "(020) 7946 0958",
    "(07700 900123",
    "07 4111 1111 1111 1111",
    "4111 1111 1111 1111",
    "07700 900123 07700 900123",
    "+44 20 7946 0958",
    "415-555-0123",
]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(HEADS),
    st.sampled_from(BREAKS),
    st.sampled_from(NUMBERS),
    st.sampled_from(["", ".", " end", ", ok"]),
)
def test_has_pii_and_may_have_pii_agree_with_the_scrub_of_a_number_on_its_own_line(
    head: str, brk: str, number: str, tail: str
) -> None:
    text = f"{head}{brk}{number}{tail}"
    out = scrub_text(text)
    assert has_pii(text) and may_have_pii(text), text
    assert not has_pii(out), (text, out)
    for group in re.split(r"[-.+ ()]", number):
        if len(group) >= 4:
            assert group not in out.split(brk, 1)[-1], (text, out)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(NUMBERS + HEADS + ["0", "00", "07", "(0)", "1 2"]),
            st.sampled_from([*BREAKS, " ", "-", ".", "+", "\t"]),
        ),
        max_size=8,
    )
)
@example(["a1", "\r", "07700 900123 07700 900123"])
@example(["a1", "\n", "(020) 7946 0958", " ", "07700 900123"])
@example(["a1", "\u2029", "(020) 7946 0958", " ", "(020) 7946 0958"])
@example(["1", "\n", "2", "\r", "07700 900123 07700 900123"])
def test_numbers_side_by_side_across_lines_are_masked_as_the_brute_force_reading_does(
    pieces: list[str],
) -> None:
    text = "".join(pieces)
    assert scrub_mod._side_by_side_masked(text) == side_by_side_masked(text)
    assert scrub_mod._side_by_side(text) is (side_by_side_masked(text) != text)
