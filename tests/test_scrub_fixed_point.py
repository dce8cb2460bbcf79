"""``scrub_text`` leaves nothing a second call would mask, and masks all that one pass did.

A pattern starts only where a token starts, so a match glued straight after another one
(``+14155550123a:b:c:d:e:f:1:2``) was read, in the one pass ``re.sub`` makes, as the middle
of that one's run, and kept in clear behind its mask. Texts here are glued from the
shapes the patterns look for (phones in their formats, IPv4, IPv6 compressed and mapped,
e-mails, card numbers, URLs with credentials, percent codes) and separators and letters.
The one-pass scrubber as it was (``_one_pass``) is the oracle of the second property:
what the new one leaves in clear, the old one left in clear too.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators import scrub as scrub_mod
from audienceflow.operators.scrub import MASKS, has_pii, scrub_text

pytestmark = pytest.mark.timeout(300)

PIECES = [
    # phones
    "+14155550123",
    "+44 20 7946 0958",
    "+1",
    "(415) 555-0123",
    "415-555-0123",
    "1.415.555.0123",
    "07700 900123",
    "0044 20 7946 0958",
    "06 12 34 56 78",
    "(020) 7946 0958",
    # IPv4, IPv6 (full, compressed, mapped)
    "10.0.0.1",
    "203.0.113.7",
    "a:b:c:d:e:f:1:2",
    "1:2:3:4:5:6:7:8",
    "2001:db8::1",
    "fe80::1:2:3",
    "::1",
    "::ffff:198.51.100.23",
    # e-mails, cards, URLs with credentials, percent codes
    "ann@example.com",
    "a@b.co",
    '"a b"@x.io',
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "3782-822463-10005",
    "https://u:p@host.io/x",
    "user:pass@10.0.0.1",
    "%40",
    "%2B",
    "%3A",
    "%2540",
    # masks as sent, separators, letters, folded characters
    "<email>",
    "<ip>",
    "<phone>",
    "<card>",
    *"abfxZ019",
    "12",
    "123",
    *" -.+()@/,_=:;\"'",
    "::",
    "\u00a0",
    "\uff20",
    "\u200b",
    "é",
]
GLUED = st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join)


def _one_pass(text: str) -> str:
    """``scrub_text`` as it was before masks were applied again: one pass of ``_masked``."""
    if not has_pii(text):
        return text
    folded = scrub_mod._folded(text)
    if folded is not text:
        kept = scrub_mod._kept_folds(text)
        if kept != folded:
            kept = scrub_mod._masked(kept)
            if not has_pii(kept):
                return kept
    return scrub_mod._masked(folded)


_MASK = re.compile("|".join(sorted(map(re.escape, MASKS))))


def _in_clear(text: str) -> str:
    """What ``text`` shows but for its masks, decoded as the scrubber reads it."""
    for _ in range(8):  # the percent codes of every level a few passes decode
        text = scrub_mod._percent_decoded(text)
    return _MASK.sub("", scrub_mod._folded(text))


def _is_subsequence(small: str, big: str) -> bool:
    chars = iter(big)
    return all(ch in chars for ch in small)


@settings(max_examples=6000)
@given(GLUED)
@example("+14155550123a:b:c:d:e:f:1:2")  # an IPv6 address glued after a phone
@example("ann@example.com(ann@example.com")  # an address glued after another one
@example("+14155550123::1")
@example("4111111111111111::ffff:198.51.100.23")
@example("fe80::1:2:3(020) 7946 0958(020) 7946 0958")
@example("(020) 7946 0958" * 6)  # a run that needs a pass for each: masked whole
@example("::ffff:198.51.100.23" * 3)  # mapped addresses glued by their "::"
def test_a_scrubbed_text_holds_nothing_a_second_scrub_would_mask(text: str) -> None:
    once = scrub_text(text)
    assert not has_pii(once), (text, once)
    assert scrub_text(once) == once


@settings(max_examples=6000)
@given(GLUED)
@example("+14155550123a:b:c:d:e:f:1:2")
@example("x%25252540example.com %2525252540 +14155550123::1")
def test_scrub_text_keeps_in_clear_nothing_the_one_pass_scrubber_masked(text: str) -> None:
    new, old = scrub_text(text), _one_pass(text)
    assert _is_subsequence(_in_clear(new), _in_clear(old)), (text, old, new)


def test_the_glued_phone_leaves_no_address_in_clear() -> None:
    assert scrub_text("+14155550123a:b:c:d:e:f:1:2") == "<phone><ip>"
    assert scrub_text("ann@example.com(ann@example.com") == "<email><email>"
    assert scrub_text("call +14155550123::1 now") == "call <phone><ip> now"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        # The second address's local part starts after the first one's domain, which
        # the match of the third swallowed: "john.smith@" was left before its mask.
        ("john.smith@example.com(john.smith@example.com(john.smith@example.com", "<email><email>"),
        ("a@b@example.com", "<email>"),
        ("to x.y@a.org, from z@b.org", "to <email>, from <email>"),
    ],
)
def test_no_local_part_is_left_before_an_address_s_mask(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed


def test_mapped_addresses_glued_by_their_colons_are_masked_whole() -> None:
    # The third was read from the second's last octet (``23::ffff:198.51.100.23``), and a
    # second pass masked ``::ffff:198`` of the second: ``<ip><ip>.51.100.<ip>``.
    assert scrub_text("::ffff:198.51.100.23" * 3) == "<ip><ip><ip>"
    assert scrub_text("from ::ffff:10.0.0.1::1 and ::1.2.3.4::ffff:5.6.7.8.") == (
        "from <ip><ip> and <ip><ip>."
    )
    assert scrub_text("::ffff:198.51.100.23" * 2000) == "<ip>" * 2000


def test_a_run_of_glued_numbers_is_masked_whole_in_bounded_passes() -> None:
    text = "+14155550123" * 2700  # 32 KB: each pass would unmask one more number
    started = time.process_time()
    assert scrub_text(text) == "<phone>"
    assert time.process_time() - started < 2.0


def test_a_long_text_is_masked_again_around_its_masks_and_keeps_the_rest() -> None:
    # Over ``_PASS_CHARS``, the passes after the first read only around the masks: the
    # note is kept, where it was masked whole (``<ip>``, ``<phone>``) when a long text
    # got one pass only.
    note = "note " * 500
    text = note + "+14155550123a:b:c:d:e:f:1:2"
    assert len(text) > scrub_mod._PASS_CHARS
    assert scrub_text(text) == note + "<phone><ip>"
    # The second number starts after a number and a space: a mask frees it.
    text = f"{note}call (020) 7946 0958 (020) 7946 0958 or {note}"
    assert scrub_text(text) == f"{note}call <phone> <phone> or {note}"
    assert scrub_text(note + "+14155550123 a:b:c:d:e:f:1:2") == note + "<phone> <ip>"


def test_a_long_text_gets_the_passes_a_short_one_gets_and_no_more() -> None:
    note = "note " * 500
    pair = "+14155550123a:b:c:d:e:f:1:2"
    assert scrub_text(note + pair * 3 + note) == note + "<phone><ip>" * 3 + note
    assert scrub_text(note + pair * 4 + note) == "<ip>"


def test_a_long_text_of_addresses_gets_its_passes_around_what_each_one_changed() -> None:
    # An address every 76 characters: the windows around the first pass's masks cover
    # the whole text. The pass after reads only around what that one changed (the two
    # pairs, which need three passes), not again around every address, and the text
    # keeps what it says, as a short one does; it was masked whole (``<ip>``).
    notes = "ann@example.com note note note note note note note note note note note note "
    pair = "+14155550123a:b:c:d:e:f:1:2"
    text = notes * 40 + "call " + pair * 2 + " ok " + notes * 40
    assert len(text) > scrub_mod._PASS_CHARS
    masked = "<email> note note note note note note note note note note note note "
    assert scrub_text(text) == masked * 40 + "call " + "<phone><ip>" * 2 + " ok " + masked * 40


def test_a_long_text_left_clean_when_the_windows_run_out_is_kept() -> None:
    # Numbers freed by a mask throughout: the second pass masks them all, reading the
    # whole text; the third may read no more, but has nothing left to find, so the text is
    # kept, as a short one is, where it was masked whole. (An address glued after a
    # phone number; two bracketed numbers glued, ``(020) 7946 0958(020) 7946 0958``, are
    # masked in one pass since a bracketed area code starts a number after anything.)
    pairs = "call +14155550123a:b:c:d:e:f:1:2 note. " * 160
    assert len(pairs) > (scrub_mod._PASSES - 1) * scrub_mod._PASS_CHARS
    assert scrub_mod._masked(pairs) != scrub_mod._masked(scrub_mod._masked(pairs))
    assert scrub_text(pairs + "end") == "call <phone><ip> note. " * 160 + "end"


# Long texts whose windows meet the text's start, a margin, or ``_PASS_CHARS``.
LONG_NOTE = "note " * 500
GLUED_PAIR = "+14155550123a:b:c:d:e:f:1:2"


def test_a_long_text_starting_with_a_glued_pair_is_masked_again_at_its_start() -> None:
    # The window of a mask at the text's start has no margin there: the text starts there.
    assert scrub_text(GLUED_PAIR + " " + LONG_NOTE) == "<phone><ip> " + LONG_NOTE


def test_a_value_freed_far_from_its_mask_is_masked_in_the_window() -> None:
    # A 39-character address glued after a phone: freed by its mask, it ends 39
    # characters after it, within the window's middle, not its margin.
    v6 = "aaaa:bbbb:cccc:dddd:eeee:ffff:aaaa:bbbb"
    assert (
        scrub_text(LONG_NOTE + "+14155550123" + v6 + " " + LONG_NOTE)
        == LONG_NOTE + "<phone><ip> " + LONG_NOTE
    )


def test_what_the_windows_do_not_reach_makes_a_long_text_masked_whole() -> None:
    # An address percent-encoded five levels deep, far from any mask: the first pass
    # decodes four, the windows read only around the pair's mask; has_pii over the whole
    # text finds it, and the text is masked whole rather than returned with it.
    deep = "ann%2525252540example.com"
    text = LONG_NOTE + GLUED_PAIR + LONG_NOTE + deep + " " + LONG_NOTE
    out = scrub_text(text)
    assert not has_pii(out) and "ann" not in out


def test_a_text_of_pass_chars_gets_whole_passes_and_one_more_the_windows() -> None:
    # At ``_PASS_CHARS`` characters every pass reads the whole text: the second decodes
    # the fifth level of the address far from the first one's mask and masks it. One
    # more character: the windows around that mask do not reach it, masked whole.
    head, deep = "ann@example.com ", "ann%2525252540example.com"
    n = scrub_mod._PASS_CHARS
    text = head + "y" * (n - 1 - len(head) - len(deep)) + " " + deep
    assert len(text) == n
    assert scrub_text(text) == "<email> " + text[len(head) : -len(deep)] + "<email>"
    assert scrub_text(text + "y") == "<email>"


def test_a_text_of_pass_chars_keeps_its_other_digits_beside_a_mask() -> None:
    price = "price \u0661\u0662\u0663 "
    n = scrub_mod._PASS_CHARS
    email = "ann@example.com"
    text = price + "y" * (n - len(price) - len(email) - 1) + " " + email
    assert len(text) == n
    assert scrub_text(text) == text[: -len(email)] + "<email>"
    # One more: read and returned with ASCII digits (one reading only).
    assert (
        scrub_text("y" + text)
        == "y" + text[: -len(email)].replace("\u0661\u0662\u0663", "123") + "<email>"
    )


@pytest.mark.parametrize("gap", [103, 112])
def test_a_window_cut_that_makes_an_address_is_not_trusted(gap: int) -> None:
    # The window around the pair's mask ends (or starts) inside ``1.2.3.4.5``, no address:
    # read alone, the window shows one (``<ip>.5``, ``1.<ip>``). Its margin changed, so the
    # text is not masked as the window reads it: kept as the whole text reads it, or
    # masked whole.
    after = LONG_NOTE + GLUED_PAIR + " " + "x" * gap + " 1.2.3.4.5 " + LONG_NOTE
    before = LONG_NOTE + "1.2.3.4.5 " + "x" * gap + " " + GLUED_PAIR + " " + LONG_NOTE
    for text in (after, before):
        out = scrub_text(text)
        assert out in MASKS or "1.2.3.4.5" in out, out[2490:2700]


# A pad that ends and starts no token of any pattern: a glued text between two of them
# is read as it is alone.
PAD_LEFT, PAD_RIGHT = "note " * 450, " note" * 450


@settings(max_examples=1500, deadline=None)
@given(GLUED)
@example("(020) 7946 0958 (020) 7946 0958")
@example("+14155550123a:b:c:d:e:f:1:2" * 3)
def test_a_long_text_is_masked_as_the_short_text_it_holds(text: str) -> None:
    # What the passes around the masks return is what whole passes return, where these
    # leave nothing (else both are masked whole, or the long one may be).
    _, clean = scrub_mod._passes(scrub_mod._folded(text))
    long_text = PAD_LEFT + text + PAD_RIGHT
    assert len(long_text) > scrub_mod._PASS_CHARS
    scrubbed = scrub_text(long_text)
    assert not has_pii(scrubbed)
    if clean and has_pii(text):
        assert scrubbed == PAD_LEFT + scrub_text(text) + PAD_RIGHT, (text, scrubbed[2240:-2240])


def test_a_text_of_three_glued_pairs_gets_its_four_passes() -> None:
    # Each phone frees the address after it, and that one the next phone: three pairs
    # need four passes, all taken; a fourth pair needs a fifth and is masked whole.
    pair = "+14155550123a:b:c:d:e:f:1:2"
    assert scrub_text(pair * 3) == "<phone><ip>" * 3
    assert scrub_text(pair * 4) == "<ip>"


def test_a_text_of_pass_chars_still_gets_every_pass() -> None:
    # ``_PASS_CHARS`` characters and under: every pass on the whole text; one more: the
    # passes after the first around the masks, with the same result here.
    pair = "+14155550123a:b:c:d:e:f:1:2"
    n = scrub_mod._PASS_CHARS
    text = "y" * (n - 1 - len(pair)) + " " + pair
    assert len(text) == n and scrub_text(text) == text[: -len(pair)] + "<phone><ip>"
    assert scrub_text("y" + text) == "y" + text[: -len(pair)] + "<phone><ip>"  # around masks


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        # Its tail read as no address before a letter, only the head ``::ffff:1`` was.
        ("x ::ffff:1.2.3.4x", "x <ip>x"),
        ("x ::ffff:198.51.100.23_y", "x <ip>_y"),
        ("x 1:2:3:4:5:6:1.2.3.4zz", "x <ip>zz"),
        ("::ffff:1.2.3.4.example", "<ip>.example"),
        # Before a hex letter; then an address glued after the letters (a second pass).
        ("x ::ffff:1.2.3.4abc y", "x <ip>abc y"),
        ("x ::1.2.3.4ab::1 y", "x <ip><ip> y"),
        ("x ::1.2.3.4f:1:2:3:4 y", "x <ip><ip> y"),
    ],
)
def test_an_ipv4_tailed_address_glued_to_letters_is_masked_whole(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed
