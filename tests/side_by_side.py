"""A brute-force reading of numbers written side by side (``scrub._side_by_side_masked``),
for the scrubber's oracles: every part of every run tried, no filter and no bound."""

from __future__ import annotations

import functools
import re

from audienceflow.operators import scrub as scrub_mod

# Chains of digit groups, one separator between two, maybe after a "+"; a bracketed area
# code (or "(0)") before a digit, or " " or "+" and a digit, is a group too. A run is a
# whole chain (from its "+" where a "+" number starts, else from its first digit; from
# its "(" where a trunk-0 number starts, else from the digits after the bracket).
_BRACKET = r"\(0(?:[1-9]\d{0,3})?\)(?=[ +]?\d)"
_CHAIN = re.compile(rf"(?:\+?\d+|{_BRACKET})(?:[\s.+-](?:\d+|{_BRACKET})|(?<=\))[ +]?\d+)*")
_GROUP = re.compile(r"\(0(?:[1-9]\d{0,3})?\)|\d+")
# The line breaks (``str.splitlines``'s), after which a number starts as at a text's start.
_LINE_BREAKS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"


def _is_run(text: str, chain: re.Match[str]) -> bool:
    """Whether ``chain`` is a run ``scrub`` reads: four groups or more, starting and ending
    as a number does."""
    a, b = chain.span()
    before, after = text[max(0, a - 2) : a], text[b : b + 3]
    if len(_GROUP.findall(chain.group(0))) < 4:
        return False
    if chain.group(0)[0] == "+":  # where PHONE's "+" alternative starts
        if re.match(r"[^\W_]", before[-1:]) or re.fullmatch(r"[\d+]\+", before):
            return False
    elif chain.group(0)[0] == "(":  # where PHONE's bracketed trunk-0 alternative starts
        if re.fullmatch(r"\d[\s.+-]|[\d+.-]\+", before) and before[-1] not in _LINE_BREAKS:
            return False
    elif before[-1:] and (re.match(r"[\w.-]", before[-1]) or re.fullmatch(r"[\d+.-]\+", before)):
        return False
    return not re.match(r"\w|-(?!\+\d)", after)


def _mask(part: str, phone: re.Pattern[str], card_shape: re.Pattern[str]) -> str | None:
    card = card_shape.fullmatch(part)
    if card is not None and scrub_mod._luhn(card):
        return "<card>"
    if scrub_mod.LINE_BROKEN.fullmatch(part) is not None:  # a phone alone, never a part
        return None
    return "<phone>" if phone.fullmatch(part) is not None else None


def _tiling(parts: list[tuple[int, int, str]], n: int) -> list[tuple[int, int, str]]:
    """Of ``parts`` (first group, last group, mask) in a run of ``n`` groups: the parts that
    do not overlap and cover the most groups (on a tie, a group left out before a part
    taken, a shorter part before a longer); each part sticking out of them joined, as one
    mask, with the parts it overlaps."""

    @functools.cache
    def best(i: int) -> tuple[int, tuple[tuple[int, int, str], ...]]:
        if i >= n:
            return 0, ()
        out = best(i + 1)
        for p in sorted(q for q in parts if q[0] == i):
            size, rest = best(p[1] + 1)
            if size + p[1] - i + 1 > out[0]:
                out = (size + p[1] - i + 1, (p, *rest))
        return out

    chosen = list(best(0)[1])
    covered = {g for i, j, _ in chosen for g in range(i, j + 1)}
    spans = sorted(
        chosen + [p for p in parts if not set(range(p[0], p[1] + 1)) <= covered],
        key=lambda p: (p[0], p[1]),
    )
    out: list[tuple[int, int, str]] = []
    for i, j, mask in spans:
        if out and i <= out[-1][1]:
            m = "<card>" if "<card>" in (mask, out[-1][2]) else mask
            out[-1] = (out[-1][0], max(j, out[-1][1]), m)
        else:
            out.append((i, j, mask))
    return out


@functools.cache
def _widest(pattern: str) -> int:
    """The widest match of ``pattern``: parsed once (30 ms a parse of the phone pattern)."""
    return int(re._parser.parse(pattern).getwidth()[1])  # type: ignore[attr-defined]


def side_by_side_masked(
    text: str,
    phone: re.Pattern[str] = scrub_mod.PHONE,
    card_shape: re.Pattern[str] = scrub_mod.CARD_SHAPE,
) -> str:
    """``text`` with each part of a run that is a card or a phone number read alone (by
    ``card_shape`` and the Luhn check, or ``phone``) and has another straight before or
    after it masked; parts that overlap as one (a card's mask if one is a card)."""

    # A part is read without a "+" number's tail (what is left of its run after 26
    # characters, masked with it by the phone pattern; a part is that number alone).
    phone = re.compile(
        phone.pattern.replace(scrub_mod._PLUS_TAIL, "").replace(scrub_mod._PLUS_TAIL_IN_LINE, "")
    )
    # No part is longer than the patterns' widest match.
    widest = max(_widest(p.pattern) for p in (phone, card_shape))

    def run(chain: re.Match[str]) -> str:
        if not _is_run(text, chain):
            if chain.group(0)[0] in "+(":  # read from the digits after it
                at = re.compile(r"\+|\(\d+\)[ +]?").match(text, chain.start())
                assert at is not None
                rest = _CHAIN.match(text, at.end())
                assert rest is not None and rest.end() == chain.end()
                return at.group(0) + run(rest)
            # A run also starts after a line break (none reads as a number after a number
            # and a separator there): the chain read again from the group after its first.
            brk = re.compile(rf"[{_LINE_BREAKS}](?=\d|{_BRACKET})").search(
                text, chain.start() + 1, chain.end()
            )
            if brk is not None:
                rest = _CHAIN.match(text, brk.end())
                assert rest is not None and rest.end() == chain.end()
                return text[chain.start() : brk.end()] + run(rest)
            return chain.group(0)
        s = chain.group(0)
        groups = [g.span() for g in _GROUP.finditer(s)]
        if s[0] == "+":  # the "+" is its first part's
            groups[0] = (0, groups[0][1])
        found = [
            (i, j, mask)
            for i in range(len(groups))
            for j in range(i + 1, len(groups))
            if groups[j][1] - groups[i][0] <= widest
            and (mask := _mask(s[groups[i][0] : groups[j][1]], phone, card_shape)) is not None
        ]
        firsts, lasts = {f[0] for f in found}, {f[1] for f in found}
        kept = [f for f in found if f[1] + 1 in firsts or f[0] - 1 in lasts]
        tiles = _tiling(kept, len(groups))
        # Each mask reaches to the next one, or to the run's end (no group left after it).
        ends = [t[0] - 1 for t in tiles[1:]] + [len(groups) - 1] if tiles else []
        out = [
            (groups[i][0], groups[e][1], mask) for (i, _, mask), e in zip(tiles, ends, strict=True)
        ]
        pieces, done = [], 0
        for a, b, mask in out:
            pieces += [s[done:a], mask]
            done = b
        return "".join([*pieces, s[done:]])

    return _CHAIN.sub(run, text)


def has_side_by_side(text: str, **patterns: re.Pattern[str]) -> bool:
    """Whether ``side_by_side_masked`` masks anything in ``text``."""
    return side_by_side_masked(text, **patterns) != text
