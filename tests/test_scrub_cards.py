"""Payment card numbers: masked as ``<card>`` in text, pseudonymised in ids, like an e-mail.

A card is a grouped number in a layout of card-number formatting (4-4-4-1 to 4-4-4-7,
4-4-4-4-1 to 4-4-4-4-3, 4-6-4, 4-6-5), one separator throughout, that passes the Luhn
check; or a whole run of 15, 16 or 19 digits with a card's leading digits that passes
it. The check digits here are worked out by this file's own Luhn (``_check_digit``),
and the well-known test numbers of the card networks are used where they exist.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import helpers
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.flows.replay import replay
from audienceflow.operators import scrub as scrub_mod
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.scrub import has_pii, may_have_pii, scrub_text
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.timeout(60)

PII = ("email", "phone", "ip")


def _luhn_sum(digits: str) -> int:
    """Every second digit from the right doubled, the digits of each product summed."""
    return sum(
        sum(map(int, str(int(d) * (2 if i % 2 else 1)))) for i, d in enumerate(reversed(digits))
    )


def _check_digit(body: str) -> str:
    return next(d for d in "0123456789" if _luhn_sum(body + d) % 10 == 0)


def _grouped(digits: str, layout: tuple[int, ...], sep: str) -> str:
    out, at = [], 0
    for size in layout:
        out.append(digits[at : at + size])
        at += size
    return sep.join(out)


LAYOUTS = [
    *((4, 4, 4, n) for n in range(1, 8)),  # 13 to 19 digits: Visa, Mastercard, Discover, ...
    *((4, 4, 4, 4, n) for n in range(1, 4)),  # 17 to 19 digits written in fours
    (4, 6, 4),  # Diners Club, 14
    (4, 6, 5),  # American Express, 15
]


def _card(layout: tuple[int, ...], sep: str = " ", body: str = "453957876362148917") -> str:
    """A number passing the Luhn check, in ``layout``: ``body`` cut to length, a check digit."""
    head = body[: sum(layout) - 1]
    return _grouped(head + _check_digit(head), layout, sep)


def _off_by_one(card: str) -> str:
    """``card`` with its last digit one more (mod 10): it fails the Luhn check."""
    return card[:-1] + str((int(card[-1]) + 1) % 10)


# --- masking in text ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: "-".join(map(str, layout)))
@pytest.mark.parametrize("sep", [" ", "-", "+"], ids=["space", "hyphen", "form-space"])
def test_a_card_in_each_layout_is_masked_whole(layout: tuple[int, ...], sep: str) -> None:
    card = _card(layout, sep)
    assert len(card.replace(sep, "")) == sum(layout)
    assert has_pii(card) and may_have_pii(card)
    assert scrub_text(f"paid with {card}, thanks") == "paid with <card>, thanks"
    assert scrub_text(f'{{"card_number":"{card}"}}') == '{"card_number":"<card>"}'


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: "-".join(map(str, layout)))
def test_a_grouped_number_failing_the_luhn_check_by_one_digit_is_not_masked(
    layout: tuple[int, ...],
) -> None:
    card = _card(layout)
    near = _off_by_one(card)
    assert not has_pii(near)
    assert scrub_text(f"ref {near}, {card}") == f"ref {near}, <card>"


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",  # Visa's test number
        "4111-1111-1111-1111",
        "5500 0000 0000 0004",  # Mastercard's
        "3782 822463 10005",  # American Express's
        "3056 930902 5904",  # Diners Club's
        "6011 1111 1111 1117",  # Discover's
        "4222 2222 2222 2",  # Visa's 13-digit test number
        "4111\u00a01111\u00a01111\u00a01111",  # no-break spaces, as a word processor writes
        "4111\u20131111\u20131111\u20131111",  # en dashes
        "4111 1111 1111 1111".translate({c: c + 0xFEE0 for c in range(0x30, 0x3A)}),  # full width
        "4111%201111%201111%201111",  # percent-encoded in a URL
    ],
)
def test_the_networks_test_numbers_are_masked(card: str) -> None:
    assert scrub_text(f"card={card}&x=1") == "card=<card>&x=1"


@pytest.mark.parametrize(
    ("text", "card"),
    [
        # No groups, passing the Luhn check, but no card's length and leading digits.
        ("1234567890123452", "1234 5678 9012 3452"),  # 1: epoch times, Snowflake ids
        ("4111 1111-1111 1111", "4111 1111 1111 1111"),  # mixed separators
        ("4111-1111 1111-1111", "4111-1111-1111-1111"),
        ("4111  1111  1111  1111", "4111 1111 1111 1111"),  # separators doubled
        ("4111 1111 1111", "4111 1111 1111 9"),  # 12 digits, 13
        ("4111 1111 1111 1111 1111", "4111 1111 1111 1111 110"),  # 20 digits, 19
        ("0000 0000 0000 0000", "1000 0000 0000 0008"),  # no card starts with 0
        ("ORD-4111-1111-1111-1111", "card-no 4111-1111-1111-1111"),  # joined to a word
        ("v2.4111 1111 1111 1111", "v2: 4111 1111 1111 1111"),
        ("4111 1111 1111 1111x", "4111 1111 1111 1111."),
        ("4111 11111 111 1111", "4111 111111 1114"),  # groups of another shape
        ("2026-03-02 1111 1111", "2026-0302-1111-1110"),  # a date
        ("4111 1111 1111 11111115", "4111 1111 1111 1111110"),  # 4-4-4-8 (20), 4-4-4-7
        ("4111 1111 1111 1111.5", "4111 1111 1111 1111. 5"),  # a decimal's digits
        ("4111 1111 1111 1111 123/4", "4111 1111 1111 1111 12/28"),  # a 4-4-4-4-3 and a /
    ],
)
def test_what_is_not_a_grouped_card_number_is_not_masked(text: str, card: str) -> None:
    assert not has_pii(text), text
    assert scrub_text(text) == text
    assert "<card>" in scrub_text(card), card  # its nearest card is


@pytest.mark.parametrize("sep", [" ", "-", ""], ids=["space", "hyphen", "no-groups"])
@pytest.mark.parametrize("expiry", ["12/28", "1/28", "12/2028"])
def test_a_card_followed_by_its_expiry_date_is_masked(sep: str, expiry: str) -> None:
    card = "4111 1111 1111 1111".replace(" ", sep)
    assert scrub_text(f"card {card} {expiry} cvc 123") == f"card <card> {expiry} cvc 123"
    amex = "3782 822463 10005".replace(" ", sep)
    assert scrub_text(f"{amex} {expiry}") == f"<card> {expiry}"


@pytest.mark.parametrize("sep", [" ", "-", "+"])
@pytest.mark.parametrize("expiry", ["12/28", "1/28"])
def test_a_card_after_an_expiry_date_is_masked(sep: str, expiry: str) -> None:
    # A grouped card after a number and a separator is read as part of a longer number
    # and left; but not after an expiry date's year: the second of two cards each with
    # its date (``4111 1111 1111 1111 12/28 4111 1111 1111 1111``) was left in clear.
    card = "4111 1111 1111 1111".replace(" ", sep)
    assert scrub_text(f"{card} {expiry} {card}") == f"<card> {expiry} <card>"
    assert scrub_text(f"exp {expiry} {card}.") == f"exp {expiry} <card>."
    assert scrub_text(f"qty 28 {card}") == f"qty 28 {card}"  # as before


@pytest.mark.parametrize("sep", [" ", "-", "+"])
@pytest.mark.parametrize("group", ["00", "01", "0044", "00000000"])
def test_a_card_after_a_zero_led_group_is_masked(sep: str, group: str) -> None:
    # ``00 4111 1111 1111 1111`` was left in clear: a card after a number and a separator
    # is read as part of a longer number (``qty 2 4111 ...``). A zero-led group of two
    # digits or more is no quantity, and with it the run is no phone (a 00 number has at
    # most 17 digits, a trunk-0 one 12) and no card: the card is read alone.
    card = "4111 1111 1111 1111".replace(" ", sep)
    gap = " " if sep == "-" else sep  # (a hyphen joins the group to the card: an id)
    for text in (f"{group}{gap}{card}", f"ref {group}{gap}{card}.", f"x: {group}{gap}{card}"):
        out = scrub_text(text)
        assert out == text.replace(card, "<card>"), text
        assert has_pii(text) and may_have_pii(text) and not has_pii(out)
    # Not a quantity's digit, nor a group glued to a word, nor one longer than eight digits;
    # nor one after a number and a separator, where the run is read as numbers side by side.
    for head in ("qty 2", "0", f"x{group}", f"v1.{group}", "000000000", f"1 {group}"):
        text = f"{head}{gap}{card}"
        assert scrub_text(text) == text and not has_pii(text), text
    # Numbers side by side: the phone and the short group after it, then the card.
    assert scrub_text("07700 900123 00 4111 1111 1111 1111") == "<phone> <card>"


# --- without groups --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",  # Visa's test number
        "4012888888881881",
        "4111111111111111110",  # Visa, 19 digits (its check digit by ``_check_digit``)
        "5555555555554444",  # Mastercard's
        "2223003122003222",  # Mastercard's 2-series
        "378282246310005",  # American Express's
        "371449635398431",
        "6011111111111117",  # Discover's
        "6011000990139424",
        "3530111333300000",  # JCB's
        "6200000000000005",  # UnionPay's
        "3056930009020004",  # Diners Club's 16-digit
        "\uff14111111111111111",  # full width, as ``\\d`` reads it
    ],
)
def test_a_card_number_without_groups_is_masked_in_text_and_ids(card: str) -> None:
    assert _luhn_sum(card.replace("\uff14", "4")) % 10 == 0, card
    assert has_pii(card) and may_have_pii(card)
    assert scrub_text(card) == "<card>"
    assert scrub_text(f"pan={card}&exp=12/28") == "pan=<card>&exp=12/28"
    assert scrub_text(f'{{"card":{card},"cc":"{card}"}}') == '{"card":<card>,"cc":"<card>"}'
    assert scrub_text(f"paid with {card} 12/28, thanks") == "paid with <card> 12/28, thanks"
    assert scrub_text(f"{card},{card};{card}") == "<card>,<card>;<card>"
    e = Event("m1", card, card, "track", "Product Viewed", 1772438400.0, "other", {})
    out = Privacy(PII, salt="pepper")(e)
    assert isinstance(out, Event)
    digest = hashlib.sha256(b"pepper" + b"uid\0" + card.encode()).hexdigest()[:32]
    assert out.user_id == out.anonymous_id == "uid:" + digest


def _run(head: str, n: int) -> str:
    """``head`` cut or padded with 1s to ``n - 1`` digits, and its check digit: passes the
    Luhn check."""
    body = (head + "1" * n)[: n - 1]
    return body + _check_digit(body)


# Every leading digits and length the README names as a card's, one run each.
ISSUED = [
    *(
        (p, 16)
        for p in ["4", "5", "6", "22", "23", "24", "25", "26", "27", "30", "35", "36", "38", "39"]
    ),
    ("34", 15),
    ("37", 15),
    *((p, 19) for p in ["4", "5", "6"]),
]


@pytest.mark.parametrize(("head", "n"), ISSUED, ids=[f"{h}-{n}" for h, n in ISSUED])
def test_every_issuer_prefix_and_length_named_in_the_readme_is_masked(head: str, n: int) -> None:
    card = _run(head, n)
    assert has_pii(card) and may_have_pii(card), card
    assert scrub_text(f"pan {card}.") == "pan <card>."


@pytest.mark.parametrize(
    "text",
    [
        _run("1772438400", 13),  # epoch milliseconds
        _run("1772438400", 16),  # microseconds
        _run("1772438400", 19),  # nanoseconds; and today's Snowflake ids start with 1
        _run("4006381", 13),  # an EAN-13 product code (as long as a Visa of old)
        _run("4006381", 14),  # a GTIN-14, as long as Diners Club's 4-6-4
        _run("411", 17),  # 17 and 18 digits: older Snowflake ids, no card
        _run("411", 18),
        _run("411", 20),  # longer than any card
        _run("0411", 16),  # zero-padded
        _run("7", 16),  # 7, 8, 9: fuel cards, health, national: no network's
        _run("8", 16),
        _run("9", 19),
        _run("31", 16),  # 31 to 33: no network's
        _run("33", 16),
        _run("21", 16),  # 20, 21 and 28, 29: no network's
        _run("28", 16),
        _run("41", 15),  # 15 digits are an American Express only (34, 37)
        _run("35", 15),
        _run("34", 16),  # 34, 16 digits: no network's
        "4111111111111112",  # a Visa failing the Luhn check
        "378282246310006",
        "m-4111111111111111",  # joined to a word: a message id
        "ORD-4111111111111111",
        "u4111111111111111",
        "4111111111111111x",
        "4111111111111111_2",
        "v1.4111111111111111",
        "4111111111111111.5",  # a decimal
        "4111111111111111-2",  # an id's suffix
        "12-4111111111111111",
    ],
)
def test_a_run_of_digits_that_is_not_a_card_is_not_masked(text: str) -> None:
    assert not has_pii(text), text
    assert scrub_text(text) == text
    assert scrub_text(f"id {text}, {text}") == f"id {text}, {text}"


def test_a_card_is_one_card_mask_never_a_phone_in_part_and_phones_stay_phones() -> None:
    text = "4111 1111 1111 1111 / +44 20 7946 0958 / 3782-822463-10005 / 07700 900123"
    assert scrub_text(text) == "<card> / <phone> / <card> / <phone>"
    assert scrub_text("from 203.0.113.9 card 5500-0000-0000-0004.") == "from <ip> card <card>."


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uid", ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500 0000 0000 0004"]
)
def test_a_user_id_holding_a_card_number_is_pseudonymised_as_an_email_id_is(uid: str) -> None:
    e = Event("m1", uid, uid, "track", "Product Viewed", 1772438400.0, "other", {})
    out = Privacy(PII, salt="pepper")(e)
    assert isinstance(out, Event)
    digest = hashlib.sha256(b"pepper" + b"uid\0" + uid.encode()).hexdigest()[:32]
    assert out.user_id == out.anonymous_id == "uid:" + digest


def test_a_dead_letters_raw_and_detail_keep_no_card_number() -> None:
    raw = '{"type":"track","userId":"u1","card_number":"4111 1111 1111 1111"}'
    d = Privacy(PII, salt="s")(DeadLetter("bad", "timestamp '4111-1111-1111-1111'", "p:1", raw))
    assert isinstance(d, DeadLetter)
    assert orjson.loads(d.raw) == {"type": "track", "userId": "u1", "card_number": "<card>"}
    assert d.detail == "timestamp '<card>'"


# --- the guard ---------------------------------------------------------------------------

# Text around a card: what a token start turns on, and pieces of other patterns.
AROUND = st.lists(
    st.sampled_from(["", " ", "a", "1", "-", "+", ".", ",", '"', ":", "\0", "é", "07700 900123",
                     "ann@example.com", "\u00a0", "4111 1111 1111 1112", "12/28", "00 ",
                     "0"]),
    max_size=4,
).map("".join)  # fmt: skip


@settings(max_examples=400)
@given(
    st.sampled_from(LAYOUTS),
    st.sampled_from([" ", "-", "+", "\u00a0", "\u2013"]),
    st.text("0123456789", min_size=18, max_size=18).filter(lambda b: b[0] != "0"),
    AROUND,
    AROUND,
)
@example((4, 4, 4, 4), " ", "411111111111111111", "u1\0", "\0m-1")
def test_may_have_pii_is_true_wherever_has_pii_finds_a_card(
    layout: tuple[int, ...], sep: str, body: str, before: str, after: str
) -> None:
    card = _card(layout, sep, body)
    assert has_pii(card)
    assert scrub_text(card) == "<card>"
    for text in (before + card + after, f"{before}\0{card}\0{after}"):
        if has_pii(text):
            assert may_have_pii(text), text


@settings(max_examples=400)
@given(
    st.sampled_from([(15, "34"), (15, "37"), (16, "2"), (16, "3"), (16, "4"), (16, "5"),
                     (16, "6"), (19, "4"), (19, "6")]),
    st.text("0123456789", min_size=18, max_size=18),
    AROUND,
    AROUND,
)  # fmt: skip
def test_may_have_pii_is_true_wherever_has_pii_finds_a_card_without_groups(
    shape: tuple[int, str], body: str, before: str, after: str
) -> None:
    n, head = shape
    card = _run(head + body, n)
    if has_pii(card):  # (16 from 2 or 3: only some leading digits are a network's)
        assert scrub_text(card) == "<card>"
    for text in (before + card + after, f"{before}\0{card}\0{after}"):
        if has_pii(text):
            assert may_have_pii(text), text


# --- linear time ---------------------------------------------------------------------------

SIZE = 32_000
# Runs of groups (each a start the lookbehind refuses but the first), near misses, cards.
HOSTILE = {
    "groups_of_four": "4111 " * (SIZE // 5),
    "hyphenated_groups": "4111-" * (SIZE // 5),
    "amex_groups": "3782 822463 " * (SIZE // 12),
    "cards_in_a_run": "4111 1111 1111 1111 " * (SIZE // 20),
    "cards_in_a_list": "4111 1111 1111 1111, " * (SIZE // 21),
    "failing_cards": "4111 1111 1111 1112, " * (SIZE // 21),
    "digits": "4" * SIZE,
    "runs_of_16": "4111111111111111 " * (SIZE // 17),
    "runs_in_a_list": "4111111111111111," * (SIZE // 17),
    "failing_runs": "4111111111111112 " * (SIZE // 17),
    "runs_of_20": "41111111111111111111 " * (SIZE // 21),
}


def _width(pattern: str) -> tuple[int, int]:
    return re._parser.parse(pattern).getwidth()  # type: ignore[attr-defined]


def test_the_card_pattern_reads_at_most_23_characters_from_any_position() -> None:
    # Every quantifier bounded, lookbehinds of fixed width: the work per position is
    # bounded, so 32,000 characters cost what any 32 KB line costs (not timed: counted).
    assert _width(scrub_mod._CARD) == (16, 23)  # 4-4-4-1 or 4-6-4; 4-4-4-4-3
    assert _width(scrub_mod._CARD_RUN) == (15, 19)  # without groups
    for pattern in (scrub_mod._CARD, scrub_mod._CARD_RUN):
        assert "+" not in re.sub(r"\[[^]]*\]", "", pattern)  # no unbounded repeat
        assert "*" not in pattern


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_32_kb_line_checks_at_most_one_luhn_sum_per_candidate(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    luhn = scrub_mod._luhn

    def counted(match: re.Match[str]) -> bool:
        calls.append(len(match.group(0)))
        return luhn(match)

    monkeypatch.setattr(scrub_mod, "_luhn", counted)
    text = HOSTILE[name]
    out = scrub_text(text)
    # Each call reads one match of at most 23 characters; matches never overlap.
    assert sum(calls) <= len(text) and max(calls, default=0) <= 23
    if name == "cards_in_a_list":
        assert out == "<card>, " * (SIZE // 21)
    elif name == "runs_of_16":
        assert out == "<card> " * (SIZE // 17)
    elif name == "runs_in_a_list":
        assert out == "<card>," * (SIZE // 17)
    elif name in ("cards_in_a_run", "groups_of_four"):
        # Cards side by side (or their layout) in one run of more than ``_SPLIT_CHARS``
        # characters: masked whole (``scrub.SideBySide``).
        assert out == "<card> "
    else:
        assert "<card>" not in out


# --- end to end ------------------------------------------------------------------------------

CARD = _card((4, 4, 4, 4))  # 4539 5787 6362 148x
CARD_HYPHENS = CARD.replace(" ", "-")
AMEX = _card((4, 6, 5), "-", "371449635398431")


@pytest.mark.timeout(120)
def test_a_replay_keeps_no_digit_run_of_a_card_in_ids_or_dead_letters(tmp_path: Path) -> None:
    good = helpers.ev(CARD, 0, "Product Viewed", product_id="p1")
    events: list[dict[str, Any] | str] = [
        good,
        helpers.ev(CARD_HYPHENS, 1, "Home"),
        helpers.ev(AMEX, 2, "Home"),
        # Dead letters: an unsupported type, a bad timestamp holding a card, a cut line.
        orjson.dumps(
            {**helpers.ev("u2", 3, "Home"), "type": "bogus", "card_number": CARD}
        ).decode(),
        orjson.dumps({**helpers.ev("u3", 4, "Home"), "timestamp": CARD_HYPHENS}).decode(),
        orjson.dumps({**helpers.ev("u4", 5, "Home"), "card_number": AMEX}).decode()[:-2],
        helpers.ev("bob", 120, "Home"),  # closes their sessions
    ]
    src = helpers.write_stream(tmp_path / "in.jsonl", events)
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "pep"}))
    assert summary["counts"]["reconciled"] is True
    dead = helpers.read_jsonl(out / "dead_letters.jsonl")
    assert len(dead) == 3 and sum("<card>" in d["raw"] + d["detail"] for d in dead) == 3
    sessions = helpers.read_jsonl(out / "sessions.jsonl")
    uid = "uid:" + hashlib.sha256(b"pep" + b"uid\0" + CARD.encode()).hexdigest()[:32]
    assert uid in {s["user_id"] for s in sessions}
    assert {s["user_id"].startswith("uid:") for s in sessions if s["user_id"] != "bob"} == {True}
    digits = [c.replace(" ", "").replace("-", "") for c in (CARD, AMEX)]
    needles = [*digits, *(d[i : i + 8] for d in digits for i in range(0, 8, 4))]
    needles += [CARD, CARD_HYPHENS, AMEX, CARD[:9], AMEX[:11]]
    for f in out.iterdir():
        text = f.read_text()
        for needle in needles:
            assert needle not in text, (f.name, needle)


RUN = "4539578763621486"  # 16 digits from 4, passing the Luhn check
RUN_AMEX = "371449635398431"


@pytest.mark.timeout(120)
def test_a_replay_keeps_no_card_number_without_groups_in_ids_or_dead_letters(
    tmp_path: Path,
) -> None:
    assert _luhn_sum(RUN) % 10 == 0 and _luhn_sum(RUN_AMEX) % 10 == 0
    events: list[dict[str, Any] | str] = [
        helpers.ev(RUN, 0, "Product Viewed", product_id="p1"),
        orjson.dumps({**helpers.ev("u2", 1, "Home"), "type": "bogus", "pan": RUN_AMEX}).decode(),
        orjson.dumps({**helpers.ev("u3", 2, "Home"), "timestamp": RUN}).decode(),
        # A card as a JSON number, in a line that is not JSON (cut short).
        orjson.dumps({"card": int(RUN), **helpers.ev("u4", 3, "Home")}).decode()[:-2],
        helpers.ev("bob", 120, "Home"),  # closes their sessions
    ]
    src = helpers.write_stream(tmp_path / "in.jsonl", events)
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "pep"}))
    assert summary["counts"]["reconciled"] is True
    dead = helpers.read_jsonl(out / "dead_letters.jsonl")
    assert len(dead) == 3 and sum("<card>" in d["raw"] + d["detail"] for d in dead) == 3
    sessions = helpers.read_jsonl(out / "sessions.jsonl")
    uid = "uid:" + hashlib.sha256(b"pep" + b"uid\0" + RUN.encode()).hexdigest()[:32]
    assert uid in {s["user_id"] for s in sessions}
    for f in out.iterdir():
        text = f.read_text()
        for needle in (RUN, RUN_AMEX, RUN[:8], RUN[8:]):
            assert needle not in text, (f.name, needle)
