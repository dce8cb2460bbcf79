"""Personal data found by pattern (e-mail, IPv4/IPv6, phone, card) and masked, in linear time.

Every pattern starts only where a token starts (a lookbehind rejects the middle of a
run) and uses possessive or bounded quantifiers, so the work per character is
bounded: 32,000 ``a`` in a row cost what any 32 KB line costs, not seconds.
``bounded_text`` scrubs *before* it cuts, so a truncated line never keeps the
first half of an address.

>>> scrub_text("mail ann.lee+x@mail.example.com from 10.0.0.1, +44 20 7946 0958")
'mail <email> from <ip>, <phone>'
>>> has_pii("u00160"), has_pii("(415) 555-0123")
(False, True)
>>> scrub_text("07700 900123, 0044 20 7946 0958, user-+14155550123, ann\\uff20example.com")
'<phone>, <phone>, user-<phone>, <email>'
>>> has_pii("00123456789"), has_pii("05.12.2026 14:09")  # no groups; a date and time
(False, False)
>>> scrub_text("card 4111 1111 1111 1111, 3782-822463-10005; not 4111 1111 1111 1112")
'card <card>, <card>; not 4111 1111 1111 1112'
>>> scrub_text("pan=4111111111111111, order 4111111111111112, ts 1772438400000000")
'pan=<card>, order 4111111111111112, ts 1772438400000000'
>>> scrub_text("+14155550123a:b:c:d:e:f:1:2")  # glued: a mask ends a token (``_passes``)
'<phone><ip>'
>>> scrub_text("tel 07700 900123 07700 900123 on 2024 11 30")  # side by side (``_parts``)
'tel <phone> <phone> on 2024 11 30'
"""

from __future__ import annotations

import json
import re
import unicodedata

# Characters that cannot be in the local part of an address as written in logs and
# JSON; a token starts after one of them (or at the start of the text).
_NOT_LOCAL = r"\s\"'<>@,;:"


# A domain's labels may hold percent-encoded bytes: an internationalised domain in a URL's
# query (``m%C3%BCller%40ex%C3%A4mple.de``) once its ``%40`` is decoded.
def _ranges(cps: list[int]) -> str:
    """A regex class body of the code points ``cps`` (sorted), as runs ``a-b``: the
    engine tests a run at once, where a list of single characters is tried one by one."""
    out: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        first, last = re.escape(chr(cps[i])), re.escape(chr(cps[j]))
        out.append(first if i == j else f"{first}-{last}")
        i = j + 1
    return "".join(out)


# A label's letters carry their combining marks (Unicode's categories Mn, Mc, Me): an
# accent written apart (``mu\u0308ller.de``, as macOS and some keyboards write it) and the
# vowel signs of Devanagari, Thai and the other Indic scripts (``\u0915\u093f...``).
# ``\w`` reads none of them, and an address in such a domain was left in clear. Those of
# the first plane only: a class within it is one table look-up, where one reaching past
# it is a list of ranges tried in turn (it tripled the cost of ``@a@a@a...``).
_COMBINING = _ranges(
    [
        cp
        for cp in range(0x300, 0x10000)
        if not (ch := chr(cp)).isalnum() and unicodedata.category(ch)[0] == "M"
    ]
)
_LABEL = rf"(?:[\w{_COMBINING}-]|%[0-9A-Fa-f]{{2}})++"
# Labels are separated by a full stop, or by one of the ideographic full stops (U+3002,
# U+FF61) that IDNA reads as one (``ann@example\u3002com``, as a CJK keyboard types it;
# the full-width U+FF0E is folded to "." by ``_FOLDS``).
_DOT = "[.\u3002\uff61]"
# RFC 5322 lets a local part be a quoted string, ``"ann"@example.com``, and inside the
# quotes RFC 5321 allows any printable character but a quote or backslash: commas,
# colons, spaces (``"ann,b"@example.com``, ``"a:b c"@example.com``). Up to 64 characters
# (RFC 5321's limit), as sent (a userId) or as JSON writes it in a line
# (``\"ann\"@example.com``). The quotes of a line's own strings are never read as one:
# what lies between two strings of a JSON line starts with a space or one of ``:,]}``
# (``{"handle":"@ann.lee"}``), so a quoted part holding a comma or colon must start with
# another character. (After a backslash a quote is escaped: it opens none.)
# A pattern of its own, searched only in a text holding '"@': one alternative more in
# ``_EMAIL`` is tried at every position and doubles its cost. Each alternative reads at
# most 64 characters after its quote: linear time whatever the text.
_QUOTED_PART = r'(?:[^"\\\r\n,:]{1,64}|[^"\\\s,:\]}][^"\\\r\n]{0,63})'
_QUOTED = rf'(?<!\\)(?:"{_QUOTED_PART}"|\\"{_QUOTED_PART}\\")'
_DOMAIN = rf"@{_LABEL}(?:{_DOT}{_LABEL})+"
_EMAIL = rf"(?<![^{_NOT_LOCAL}])[^{_NOT_LOCAL}]++{_DOMAIN}"
# An address ends a sentence as well as any word (``from 203.0.113.7. Blocked``): a full
# stop after it is no part of it, unless a letter or digit follows (``1.2.3.4.5`` is no
# address, nor is a host name ``1.2.3.4.example``).
_END_V4 = r"(?!\.?\w)"
# An octet is 0 to 255 (zero-padded too, ``010``): a four-part version with a larger part,
# such as the app build ``3.0.1.545`` of Segment's own example payload, is no address.
_OCTET = r"(?:25[0-5]|2[0-4]\d|[01]?\d?\d)"
_IPV4 = rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}{_END_V4}"
_HEX = r"[0-9A-Fa-f]{1,4}"
_V4 = r"\d{1,3}(?:\.\d{1,3}){3}"
# An IPv6 address ending in an IPv4 one (``::ffff:198.51.100.23``, what a dual-stack
# server records) is one address: masked whole, never as a head and three octets. Its
# colons make it no host name: it ends before a letter as the other forms do (``x
# ::ffff:1.2.3.4x`` kept ``.2.3.4`` in clear when only its head, ``::ffff:1``, was read
# as an address), but not before a digit or a full stop and a digit (no fifth octet).
_END_V4_TAIL = r"(?!\.?\d)"
_IPV6 = (
    rf"(?<![0-9A-Fa-f:])(?:(?:(?:{_HEX}:){{6}}|(?:{_HEX}(?::{_HEX}){{0,4}})?::(?:{_HEX}:){{0,5}})"
    rf"{_V4}{_END_V4_TAIL}"
    rf"|(?:(?:{_HEX}:){{3,7}}{_HEX}"
    rf"|(?:{_HEX}(?::{_HEX}){{0,6}})?::{_HEX}(?::{_HEX}){{0,6}})(?![0-9A-Fa-f:]))"
)
# ``_IPV6`` written from its first colon, a literal the engine skips to in C: as first
# written, every position was tried, the lookbehind and then each alternative (100 ns a
# character of hex letters, so a 32 KB value of ``abcd abcd ...`` after a "::" cost
# 3.3 ms a line). A match's first colon follows its first group, the whole run of one to
# four hex digits before it (``_HEX`` then ":" reads no fewer), or none ("::" at its
# start); so where the first colon is, a lookbehind finds where the address starts
# (after neither a hex digit nor a colon), and what follows is ``_IPV6`` with that group
# and colon read, its alternatives in the same order: it matches from that colon iff
# ``_IPV6`` does from that start, and ends where it ends (``Ipv6Pattern``).
# Where it starts is asked of the text before the colon, each condition a lookbehind of
# its own (a choice among alternatives costs the engine some ten times more): no colon
# right before (``:::``), and nothing but a hex digit or a colon after it; then either no
# hex digit before ("::" at its start), or a group (K1): no run of more than four hex
# digits, nor a colon before the run. The hex form is tried first where nothing of an
# address follows it, not even a "." (``_V6_END``): there the forms ending in an IPv4
# address cannot match (their "." would be inside the run of hex digits and colons it
# read to its end), and a list of short addresses (``::a ::a ...``) is spared their
# tries (1.6 ms to 0.9 ms in 32 KB). Where a "." follows, they come in ``_IPV6``'s order.
_H = "[0-9A-Fa-f]"
_V6_END = r"(?![0-9A-Fa-f:.])"
_K1_V6 = rf"(?:(?:{_HEX}:){{2,6}}{_HEX}|(?:{_HEX}(?::{_HEX}){{0,5}}:)?:{_HEX}(?::{_HEX}){{0,6}})"
_K2_V6 = rf"{_HEX}(?::{_HEX}){{0,6}}"
_IPV6_AT_COLON = (
    r":(?=[0-9A-Fa-f:])(?<!::)(?:"
    # "::" at its start (after a group, K1 tries these: its "::" branches).
    rf"(?<!{_H}:):(?:{_K2_V6}{_V6_END}|(?:{_HEX}:){{0,5}}{_V4}{_END_V4_TAIL}|{_K2_V6}(?![0-9A-Fa-f:]))"
    # K1: after a group.
    + rf"|(?<={_H}:)"
    + "".join(rf"(?<!:{_H}{{{k}}}:)" for k in range(1, 5))
    + rf"(?<!{_H}{{5}}:)"
    + rf"(?:{_K1_V6}{_V6_END}"
    rf"|(?:(?:{_HEX}:){{5}}|(?:{_HEX}(?::{_HEX}){{0,3}}:)?:(?:{_HEX}:){{0,5}}){_V4}{_END_V4_TAIL}"
    rf"|{_K1_V6}(?![0-9A-Fa-f:])))"
)
# The line breaks (what ``str.splitlines`` breaks a text at: ``\n``, ``\r``, U+2028 and
# U+2029, the vertical tab, form feed, U+0085 and the file, group and record separators).
# The rule that reads no number after a number and a separator (a table's ``1 07700
# 900123``, ``qty 2 4111 ...``) stops at one: a number at a line's start is read as at a
# text's start (``Order 1234\n07700 900123`` kept its number in clear).
# ``_SEP_IN_LINE``: a separator of those lookbehinds, whitespace but a line break, ".",
# "+" or "-"; one class, as ``[\s.+-]`` was. (No whitespace lies past the first plane.)
LINE_BREAKS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"
_SEP_IN_LINE = (
    "["
    + _ranges(
        sorted(
            {cp for cp in range(0x10000) if chr(cp).isspace() and chr(cp) not in LINE_BREAKS}
            | {ord(ch) for ch in ".+-"}
        )
    )
    + "]"
)
# International numbers (a leading +, E.164 has at most 15 digits) and the North
# American shape (415) 555-0123 / 415-555-0123, also after its country code 1 and a
# separator (1-800-555-0199, 1.415.555.0123); a looser pattern eats ISO dates. The
# bracketed area code marks a number whatever comes before it (``tel(415) 555-0123``,
# a second number written straight after a first), a trunk-0 one too (``tel(020) 7946
# 0958``; a card masked first left ``<card>-(020) 7946 0958`` in clear) but after a
# number and a separator, as any trunk-0 number (``1 (020) 7946 0958``). A "+"
# starts a number after a letter-less joint too: ``user-+14155550123``, ``id_+4477…``,
# and after a form-encoded space (``on++44+20…``: "call me on +44 20…" in a search box).
# Then the international prefix 00 (``0044 20 7946 0958``, ``00 44 20 7946 0958``: 10 to
# 17 digits in groups)
# and the national trunk-0 numbers of most of Europe, Japan, Australia and more
# (``07700 900123``, ``020 7946 0958``, ``06 12 34 56 78``, ``(020) 7946 0958``: 9 to 12
# digits in groups of two or more, one separator throughout; never 00 as they start, and
# never where a number and a separator come before; a trunk 0 after a "(" is one too,
# ``(07700 900123)`` and ``tel:(07700 900123`` were kept in clear, while a 00 number
# there was read). Both need their groups:
# a run of digits alone (``00123456789``, a zero-padded id) is left alone, as is a date
# (``05.12.2026``: 8 digits) and a date with a time (``05.12.2026 14``: two separators).
# Each number ends where no word character or "-" follows (an id's head, ``07700
# 900123-x``), but a "-" before a "+" and a digit (``07700 900123-+44 20 7946 0958``: the
# next number's start; the first was kept in clear), and, a 00 or trunk-0 number, where
# no separator and digit follow. A lookahead counts its
# digits first (bounded: the work per position stays constant). A "+" is a separator
# too: form encoding (a URL's query, a form posted) writes a space so
# (``tel=%2B1+415+555+0123``, ``06+12+34+56+78``); a "+" joined to a letter or digit
# still starts no number.
# PHONE is written from a number's first character, "+", "(" or a digit: the engine skips to one in
# C and tries the alternatives only there, where one lookbehind turns down the middle of a run of
# digits (a "+" or digit after a letter or digit; a "(" starts anywhere: one lookbehind, not a
# choice of two, which cost some 15% more on a run of glued numbers, ``+14155550123`` x 2700, where
# every digit is tried). Each lookbehind at the number's start so reads one character more (".":
# that first character, never a line break), and what an alternative reads first becomes a
# lookbehind. As first written, from the number's start, each position of the text tried all five
# alternatives (80 ns a character of digits, 230 of spaces); tests/test_scrub_linear.py keeps that
# pattern and checks that this one finds the same matches. Every number's second character is a
# digit or a separator. The count of a 00 number's digits is possessive: where one more digit
# follows, with or without a separator, the lookahead after it fails anyway (so fewer were only
# tried in vain). In order, the alternatives are: ``+`` and 8 to 26 digits and separators (and the
# rest of its run, ``_PLUS_TAIL``); the North
# American number, after ``1`` and a separator or not; the same with its area code bracketed, after
# anything; ``00`` and its groups; a trunk ``0`` number (``(0..)`` or one of ``_GROUPS``, after its
# ``0``).
# A trunk-0 number's first group is the 0 and up to five digits (India's ``098765 43210``
# was left in clear). A tab is a separator too, one throughout as the others (``07700\t900123``,
# a form's field pasted from a sheet, was left in clear); a number after a number and a tab
# (a table's row, ``1\t07700\t900123``) is still read as none.
# Two tabs are one separator too, two throughout (``07700\t\t900123``: a form's field
# pasted from a sheet, aligned by tabs, was left in clear); a table's row read so, a
# number after a number and two tabs, or one before two tabs and a number of three digits
# or more (an empty cell between two numbers), is none: ``_END_TWO_TABS``, as
# ``_END_TRUNK`` reads one separator and a number. It has its own count, that ends so
# (``_SEP_TRUNK``: the trunk-0 count's separator reads two tabs as one); where a number
# written with other separators ends is as it was (``07700 900123\t\t4567`` is
# ``<phone>\t\t4567``).
_SEP_TRUNK = rf"(?:\t\t|{_SEP_IN_LINE})"
_END_TWO_TABS = rf"(?!(?!\t\t\d{{1,2}}+(?!\w|-(?!\+\d)|{_SEP_TRUNK}\d))\t\t\d)"
_GROUPS = "|".join(
    [rf"[1-9]\d{{0,4}}{s}\d{{2,8}}(?:{s}\d{{2,8}}){{0,4}}" for s in (" ", r"\.", "-", r"\+", r"\t")]
    + [
        rf"(?=(?:(?:\t\t)?\d){{8,11}}(?!\d){_END_TWO_TABS})"
        rf"[1-9]\d{{0,4}}\t\t\d{{2,8}}(?:\t\t\d{{2,8}}){{0,4}}{_END_TWO_TABS}"
    ]
)
# A "+" number read to its 26th character of digits and separators, and the run of digit
# groups going on after it: masked with it (``+1 2 3 4 5 6 7 8 9 0 1 2 3 4 07700 900123``
# kept `` 4 07700 900123`` in clear, no number where a number and a separator come before).
# Possessive: a match's tail is read once, where the match ends.
_PLUS_TAIL = r"(?:(?:[\s().-]|(?<=\d)\+)++\d++)*+"
# A "+" number with ten digits or more on its line ends there, its tail too: what the next
# line holds is another text (``+44 20 7946 0958`` then a line ``2024-11-30 14:09`` was
# ``<phone>:09``). One with fewer is read across the break, as a 00 number is (``+44 20\n7946
# 0958``). Its ten digits are counted first, at most four separators between two
# (more, and the number is read as before): a constant bound of reading per "+". A "00"
# written after the "+" is no digit of the number (``+0044 20 7946\n0958`` left ``0958``
# in clear).
_IN_LINE = f"[^\\S{LINE_BREAKS}]"
_PLUS_IN_LINE = (
    rf"(?=(?:00)?+(?:(?:{_IN_LINE}|[().+-]){{0,4}}\d){{10}})"
    rf"\d(?:[\d().-]|{_IN_LINE}|(?<=\d)\+){{6,24}}\d(?!\d)"
)
# Its last group may go on past the break where a line wrap cut it (``+44 20 7946 09\n58``,
# ``+44 (0)20 7946 0\n958``: the rest was left in clear): one to three digits on the line,
# then one to three on the next that end there (four digits in all at most, the widest
# group after the first; a date, a time or a line's own number, ``2024-11-30``, ``12:30``,
# ``+354 555 1234\n12``, is not read).
# Before a colon and a digit, the part on the next line is read but where it is an hour, 0
# to 23 (``+44 20 7946 09\n58:1`` left ``58`` in clear; ``12:30`` is a time).
_WRAP_HOUR = rf"(?:(?<=[{LINE_BREAKS}]\d)|(?<=[{LINE_BREAKS}][01]\d)|(?<=[{LINE_BREAKS}]2[0-3]))"
_PLUS_WRAP = (
    rf"(?:(?:(?<=\D\d)(?:\r\n|[{LINE_BREAKS}])\d{{1,3}}|(?<=\D\d\d)(?:\r\n|[{LINE_BREAKS}])\d{{1,2}}"
    rf"|(?<=\D\d{{3}})(?:\r\n|[{LINE_BREAKS}])\d)(?!\w|[-/.]\d|{_WRAP_HOUR}:\d))?+"
)
_PLUS_TAIL_IN_LINE = rf"(?:(?:{_IN_LINE}|[().-]|(?<=\d)\+)++\d++)*+{_PLUS_WRAP}"
# Where a 00 or trunk-0 number ends: no word character, no "-" but before "+" and a digit
# (or a bracket and a digit: ``07700 900123-+(0161) 496 0000`` was left in clear),
# and no separator and digit within the line (a number on the next line is another one:
# ``07700 900123\n12345678`` was left in clear). Nor a colon and a digit after a last group
# of one or two digits: an hour (``05 12 2026 14:09``, ``14:30:00 2024 11 30 14:30:00``
# were masked), ``_DATE_HOUR``. ``_NO_BREAK``: no line break next.
_NO_BREAK = f"(?![{LINE_BREAKS}])"
# The last group of a number is an hour, where a colon and a digit follow it, only after a
# date: 0 to 23 after a year (``05 12 2026 14``) or after a year and two groups (``2024 11
# 30 14``). Else it is the number's own (``06 12 34 56 78:30``, ``0044 20 7946 0958 14:30``
# were masked up to the colon; read as an hour, they were left in clear). Fixed-width
# lookbehinds, one per width: read only where a colon and a digit follow a group.
_YEAR = r"(?<!\d)(?:19|20)\d\d[\s.+-]"
_DATE_HOUR = (
    "(?:"
    + "|".join(
        rf"(?<={_YEAR}{days}{hour})"
        for days in ("", *(rf"\d{{{a}}}[\s.+-]\d{{{b}}}[\s.+-]" for a in (1, 2) for b in (1, 2)))
        for hour in (r"\d", r"(?:[01]\d|2[0-3])")
    )
    + ")"
)
_BREAK = f"[{LINE_BREAKS}]"
_END_IN_LINE = rf"(?!\w|-(?!\+\(?\d)|{_SEP_IN_LINE}\d|{_DATE_HOUR}:\d)"
# Where a trunk-0 number ends: as ``_END_IN_LINE``, but a number of one or two digits
# that ends its run may follow it (``07700 900123 12``, ``020 7946 0958 14:30`` were left
# in clear: a trunk-0 number has at most twelve digits, so the run was none, and a number
# before a separator and a digit is none either). So short a group is no part of a longer
# one; a longer one still makes a run of numbers side by side, or an id's
# (``_SIDE_BY_SIDE``).
_END_TRUNK = (
    rf"(?!\w|-(?!\+\(?\d)|{_DATE_HOUR}:\d"
    rf"|(?!{_SEP_IN_LINE}\d{{1,2}}+(?!\w|-(?!\+\d)|{_SEP_IN_LINE}\d)){_SEP_IN_LINE}\d)"
)
# Where a number with a bracketed area code ends: as a trunk-0 one (``(020) 7946 0958 1``,
# ``(0161) 496 0000 2 times`` were left in clear), but a number of three digits may
# follow too (``(020) 7946 0958 123``, an extension, was left in clear: its count, twelve
# digits at most, stopped short of it); the bracket marks the number's start, so the run
# is no table's. Four digits or more are a run's next group (``_SIDE_BY_SIDE``).
_END_BRACKETED = (
    rf"(?!\w|-(?!\+\(?\d)|{_DATE_HOUR}:\d"
    rf"|(?!{_SEP_IN_LINE}\d{{1,3}}+(?!\w|-(?!\+\d)|{_SEP_IN_LINE}\d)){_SEP_IN_LINE}\d)"
)
# A line wrap: a line break, or "\r\n", with a space or tab before it or not (``0044 20
# 7946\r\n0958``, ``0044 20 7946 \n0958`` were masked up to the break, the rest left in
# clear); never two breaks (a blank line, ``0044 20\n\n7946 0958``: a paragraph's end,
# which no wrap makes, and what follows another text's; a "+" number's second reading
# takes it, as any whitespace). ``_SEP_ACROSS``: one separator of a number read across
# lines, a wrap or one of ``_SEP_IN_LINE`` (``[\s.+-]`` and those wraps, each read one way only).
_WRAP = rf"{_IN_LINE}?(?:\r\n|{_BREAK})"
_SEP_ACROSS = rf"(?:{_WRAP}|{_SEP_IN_LINE})"
# A 00 number read across line breaks (each whitespace a separator, each wrap one).
# It ends where no separator (a wrap too) and digit follow.
_END_ACROSS = rf"(?!\w|-(?!\+\(?\d)|{_SEP_ACROSS}\d|{_DATE_HOUR}:\d)"
_00_ACROSS = (
    rf"(?=0(?:{_SEP_ACROSS}?\d){{8,15}}+{_END_ACROSS})"
    rf"0[\s+]?[1-9]\d{{0,3}}(?:{_SEP_ACROSS}\d{{1,8}}){{1,5}}{_END_ACROSS}"
)
# A 00 number wrapped once, where read across every break it is none (``0044 20\n7946
# 0958\n12345678``: the next line's number made it 22 digits, and all was left in clear):
# read to the end of the line after the wrap, 10 to 17 digits in all. Counted exactly,
# one count for each number of digits before the wrap (fewer than ten: ``_PHONE``).
_00_WRAPPED = (
    "(?=0(?:"
    + "|".join(
        rf"(?:{_SEP_IN_LINE}?\d){{{x}}}{_WRAP}\d(?:{_SEP_IN_LINE}?\d){{{max(0, 7 - x)},{14 - x}}}+"
        for x in range(1, 10)
    )
    + rf"){_END_IN_LINE})"
    rf"0{_NO_BREAK}[\s+]?[1-9]\d{{0,3}}(?:{_SEP_IN_LINE}\d{{1,8}}){{0,4}}"
    rf"{_WRAP}\d{{1,8}}(?:{_SEP_IN_LINE}\d{{1,8}}){{0,4}}{_END_IN_LINE}"
)
# A trunk-0 number of three groups or more whose last group a line wrap put on the next
# line (``020 7946\n0958``: left in clear). On its line, the 0, a first group of three to
# five digits and one to three groups, one separator throughout, a tab too (``020\t7946
# \n0958`` was left in clear; a table's row is none, as on one line: no number after a
# number and a tab, none before a tab and a number); on the next, one group of three to
# eight digits that ends there; nine to twelve digits in all. The one group at least
# before the wrap is the two-group reading's bound (``01234\n5678``: four digits after
# the wrap, none). Counted exactly, one count for each number of digits before the break
# (``_WRAPPED_COUNT``): a count through any line break read ``020 79\n46\n0958``, seven
# digits and a list's number, as one. A last group of one or two digits is a line's own
# number (``0123 4567\n89 items``), and a first group of one digit a list's
# (``01 02 03\n04 05``).
_WRAPPED_GROUPS = "|".join(
    rf"[1-9]\d{{1,3}}(?:{s}\d{{2,8}}){{1,3}}" for s in (" ", r"\.", "-", r"\t")
)
_WRAPPED_COUNT = "|".join(
    rf"(?:[ .\t-]?\d){{{x}}}{_WRAP}\d{{{8 - x},{11 - x}}}(?!\d)" for x in range(4, 9)
)
_PHONE = (
    r"[+(\d](?<![^\W_][+\d])(?=[\d\s.+-])(?:"
    r"(?<=\+)(?<![^\W_]\+)(?<![\d+]\+\+)(?:"
    + _PLUS_IN_LINE
    + _PLUS_TAIL_IN_LINE
    + r"|\d(?:[\d\s().-]|(?<=\d)\+){6,24}\d(?!\d)"
    + _PLUS_TAIL
    + ")"
    + r"|(?<![\w.-].)(?<![+.-]\+.)"
    r"(?:(?<=1)[\s.+-](?:\(\d{3}\)[\s+]?|\d{3}[\s.+-])|(?<=\()\d{3}\)[\s+]?|(?<=\d)\d{2}[\s.+-])"
    r"\d{3}[\s.+-]\d{4}(?!\w|-(?!\+\d))"
    r"|(?<=\()\d{3}\)[\s+]?\d{3}[\s.+-]\d{4}(?!\w|-(?!\+\d))"
    # The last two start where no number and separator come before, nor a "+" after a
    # digit, "+", "." or "-"; a bracketed area code after anything (``1 (020) 7946 0958``,
    # ``1+(020) 7946 0958`` as a form encodes it, ``07700 900123-+(0161) 496 0000``: the
    # bracket marks a phone number; the last two were left in clear).
    r"|(?:(?<![\d+.-]\+.)"
    rf"(?<!\d{_SEP_IN_LINE}.)(?:"
    # Read within its line first (a number on the next line is another one: ``0044 20
    # 7946 0958\n12345678``); then across a line break (``0044 20\n7946 0958``).
    r"(?<=0)(?<![\w.-].)(?:"
    # Fewer than ten digits after its 00 before a line break and a digit: the break is a
    # line wrap, the number read across it first (``0044 20 7946\n0958`` left ``0958``
    # in clear), as a "+" number's (``_PLUS_IN_LINE``); where that reading fails, within
    # its line.
    rf"(?=0(?:{_SEP_IN_LINE}?\d){{0,9}}+{_WRAP}\d)(?:{_00_ACROSS}|{_00_WRAPPED})"
    rf"|(?=0(?:{_SEP_IN_LINE}?\d){{8,15}}+{_END_IN_LINE})"
    rf"0{_NO_BREAK}[\s+]?[1-9]\d{{0,3}}(?:{_SEP_IN_LINE}\d{{1,8}}){{1,5}}{_END_IN_LINE}"
    rf"|{_00_ACROSS})"
    # (What each start needs next, first: a trunk 0's first group and separator; the
    # bracketed area code's "0" and a digit. A trunk 0 after a "(" is tried, as it is read
    # there: a scan of ``(0770 (0770 ...`` costs 1.3 ms more in 32 KB.) A trunk 0's count
    # reads no ")", and a ")" and a number may follow it (``(07700 900123) 2``, ``mobile:
    # 07700 900123) 2`` were left in clear); the bracketed area code's count reads its
    # ")", and no ")" and number may follow it (``(020) 7946) 0958``).
    rf"|(?<![\w.-].)(?<!\d\t\t.)(?<=0)(?=[1-9]\d{{0,4}}[ .+\t-])"
    rf"(?=(?:{_SEP_TRUNK}?\d){{8,11}}{_END_TRUNK})"
    rf"(?:{_GROUPS}){_END_TRUNK}"
    # A trunk-0 number of two groups broken by a line break (``07700\n900123``, a form's
    # typed or pasted over two lines): it was left in clear. Nine to twelve digits, the first group
    # three to five, the second six or more (``01\n02\n03 ...``, a list, is none). A
    # wrap as a 00 number's (``_WRAP``): ``07700\r\n900123``, ``020 7946 \n0958`` were
    # left in clear.
    rf"|(?<![\w.-].)(?<=0)(?:(?=(?:{_WRAP}?\d){{8,11}}{_END_IN_LINE})"
    rf"[1-9]\d{{1,3}}{_WRAP}\d{{6,8}}{_END_IN_LINE}"
    # Three groups or more, the last on the next line (``_WRAPPED``).
    rf"|(?=(?:{_WRAPPED_COUNT}){_END_IN_LINE})(?:{_WRAPPED_GROUPS}){_WRAP}\d{{3,8}}{_END_IN_LINE}))"
    # A bracketed area code (``(020) 7946 0958``), or the UK's "(0)" before the area code
    # (``(0)20 7946 0958``, the trunk 0 one drops when dialling from abroad; it was left
    # in clear), the code two digits or more, the group after it three or more (as in every
    # country writing "(0)": ``(0)44 668 18 00``; a list, ``(0) 10 20 30 40 50``, is none).
    # After "(0)", groups may be split by "." (``(0)20.7946.0958``) and the code glued to
    # the next group (``(0)207946 0958``): both were left in clear.
    rf"|(?<=\()(?=0[1-9]|0\)[ +]?[1-9]\d)(?=0(?:\)?{_SEP_IN_LINE}?\d){{8,11}}{_END_BRACKETED})"
    r"0(?:[1-9]\d{0,3}\)[ +]?\d{2,8}(?:[ +-]\d{2,8}){0,4}"
    r"|\)[ +]?[1-9]\d{1,3}[ +.-]?\d{3,8}(?:[ +.-]\d{2,8}){0,4})"
    rf"{_END_BRACKETED}(?!\)[\s.+-]?\d)))"
)

# Payment card numbers (PAN) as they are written for a reader, in the groups of card
# number formatting: Braintree's credit-card-type (the gaps Stripe's and most checkout
# forms use) writes Visa, Mastercard, Discover, JCB, UnionPay and Maestro, 13 to 19
# digits, with a gap after the 4th, 8th and 12th digit (4-4-4-1 to 4-4-4-7), and
# American Express (15) and Diners Club (14) after the 4th and 10th (4-6-5, 4-6-4);
# a 17 to 19 digit number is also written in fours (4-4-4-4-1 to 4-4-4-4-3). One
# separator throughout: a space or a hyphen ("+" is a space in form encoding). A
# match is a card only if its digits pass the Luhn check (``_luhn``): a grouped
# number that fails it is left alone. The first digit is not 0 (ISO/IEC 7812 gives 0
# to no card issuer), so no trunk-0 or 00 phone number is ever read as one. A number
# is a whole run of groups: it starts at a token start, never after a word, a "." or a
# hyphen joined to one (``ORD-1234-5678-9012-3456``, an order id), nor after a number
# and a separator; it ends where no word character and no separator and digit follow,
# but for an expiry date (``4111 1111 1111 1111 12/28``: one or two digits and a "/",
# which no fifth group of a longer number is followed by). Masked before the phone
# numbers, so a card is one ``<card>``, never a phone in part. At most 23 characters
# read per position.
_CARD_START = r"(?<![\w.])(?<![\w.]-)"
# What follows a grouped number's first digit; and a run's (``_CARD_RUN`` below).
_CARD_GROUPS = (
    r"\d{3}([ +-])(?:\d{4}\1\d{4}\1(?:\d{4}\1\d{1,3}(?!/)|\d{1,7})|\d{6}\1\d{4,5})"
    r"(?!\w|[ +.-]\d(?!\d?/\d))"
)
_CARD_RUN_REST = r"\d{14,18}(?!\w|[.-]\d)"


# (A number and a separator before it but an expiry date's year, ``4111 1111 1111 1111
# 12/28 4111 1111 1111 1111``: the second card was left in clear.) Nor a zero-led group
# of two to eight digits (the longest group of a phone number) where a number starts:
# no quantity is written so, and with it the run is no number of ours (``00 4111 1111
# 1111 1111`` has 18 digits; a 00 number has at most 17, a trunk-0 one 12), so the card
# is read alone (it was left in clear). Not after a number and a separator (``07700
# 900123 00 4111 ...``): such a run is read as numbers side by side. ``_after_group``:
# the lookbehinds where ``tail`` (a card's first digit, or none) follows the separator:
# two digits at least (as an expiry date's year), then the year's "/" or a group of each
# length, its literal "0" first. (Where a group of one digit comes before, ``1 1 1 ...``,
# the first lookbehind fails; the choice still costs 25 ns a digit there, 0.45 ms in 32 KB.)
def _after_group(tail: str) -> str:
    return (
        rf"(?<=\d\d[ +]{tail})(?:(?<=/\d\d[ +]{tail})|"
        + "|".join(
            rf"(?<=0\d{{{k}}}[ +]{tail})(?<![\w.]0\d{{{k}}}[ +]{tail})"
            rf"(?<![\w.]-0\d{{{k}}}[ +]{tail})(?<!\d{_SEP_IN_LINE}0\d{{{k}}}[ +]{tail})"
            for k in range(1, 8)
        )
        + ")"
    )


_CARD = rf"{_CARD_START}(?:(?<!\d[ +])|{_after_group('')})[^\D0]{_CARD_GROUPS}"
# A card number without groups (``4111111111111111``, as a payment form's field or an
# API sends it) is a whole run of digits with the length and leading digits of a card
# the networks issue (``_issued``), passing the Luhn check: 15 digits from 34 or 37
# (American Express); 16 from 22 to 27 (Mastercard's 2-series, Mir), 30, 35, 36, 38, 39
# (Diners Club, JCB) or from 4, 5, 6 (Visa, Mastercard, Maestro, Discover, UnionPay); 19
# from 4, 5 or 6. A run of other digits is an id: epoch milliseconds to nanoseconds and
# today's Snowflake ids start with 1, EAN-13 and GTIN-14 product codes and the 13 to 14
# digit ids of e-commerce platforms have another length, zero-padded ids start with 0.
# The run starts as a grouped card does (never after a word, a "." or a word and a
# hyphen: ``m-4111111111111111`` is a message id) and ends where no word character and
# no "." or "-" and a digit follow (a decimal, an id's suffix); a space and a number
# may follow (an expiry date). At most 19 characters read per position.
_CARD_RUN = rf"{_CARD_START}[^\D0]{_CARD_RUN_REST}"
# ``_CARD|_CARD_RUN`` written from the first digit (the same matches): the engine
# skips to a digit in C, and the lookbehinds, a character longer, look past it; as
# written, every position was tried with both (30 ns a character of ``aaaa...``, 120
# of spaces). (".": the digit, never a line break.)
CARD_SHAPE = re.compile(
    r"[^\D0](?<![\w.].)(?<![\w.]-.)"
    rf"(?:(?:(?<!\d[ +].)|{_after_group('.')}){_CARD_GROUPS}|{_CARD_RUN_REST})"
)
_ISSUED_16 = frozenset(("22", "23", "24", "25", "26", "27", "30", "35", "36", "38", "39"))


def _issued(digits: str) -> bool:
    """Whether a run of ``digits`` (ASCII) has a card's length and leading digits."""
    n = len(digits)
    if n == 16:
        return digits[0] in "456" or digits[:2] in _ISSUED_16
    if n == 15:
        return digits[:2] in ("34", "37")
    return n == 19 and digits[0] in "456"


def _luhn(match: re.Match[str]) -> bool:
    """Whether the digits of ``match`` (a ``CARD_SHAPE`` match) pass the Luhn check,
    and, without groups, have a card's length and leading digits (``_issued``)."""
    sep = match.group(1)
    digits = match.group(0) if sep is None else match.group(0).replace(sep, "")
    if not digits.isascii():  # ``\d`` reads a full-width 4 as a 4
        digits = "".join(str(int(ch)) for ch in digits)
    if sep is None and not _issued(digits):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class CardPattern:
    """``CARD_SHAPE``'s matches that pass the Luhn check, searched and masked as a
    compiled pattern's are (``search``, ``sub``)."""

    __slots__ = ()

    def search(self, text: str) -> re.Match[str] | None:
        for match in CARD_SHAPE.finditer(text):
            if _luhn(match):
                return match
        return None

    def sub(self, mask: str, text: str) -> str:
        return CARD_SHAPE.sub(lambda m: mask if _luhn(m) else m.group(0), text)


CARD = CardPattern()
IPV6_AT_COLON = re.compile(_IPV6_AT_COLON)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class Ipv6Pattern:
    """``_IPV6``'s matches, found from their first colon (``_IPV6_AT_COLON``), searched and
    masked as a compiled pattern's are (``search``, ``sub``)."""

    __slots__ = ()

    def search(self, text: str) -> re.Match[str] | None:
        return IPV6_AT_COLON.search(text)

    def sub(self, mask: str, text: str) -> str:
        # In C where it can be (``_sub_loop`` does the same in Python, 0.4 us an address):
        # each match marked by a character the text lacks, then the group before each
        # marked colon (K1) taken into the mark, a fixed-length search from the mark in the
        # reversed text. Marks side by side are a match that starts where the last one
        # ends, its group in that one: glued by "::", it is masked from its colon, as the
        # marks show (``_sub_loop``); glued by one colon, it is none, and the search goes on
        # inside it: left to ``_sub_loop``, where an octet, a colon and a hex digit show.
        # Elsewhere a match's group is the run of hex digits right before its mark (no
        # match ends before a hex digit: each ends before none, or before no letter or
        # digit), but after an IPv4 tail, which may end before a letter (``1.2.3.4ab::1``):
        # a mark followed by a hex digit is left to ``_sub_loop`` too.
        mark = next((ch for ch in _MARKS if ch not in text), None)
        if mark is None:
            return self._sub_loop(mask, text)
        marked = IPV6_AT_COLON.sub(mark, text)
        if mark not in marked:
            return text
        if (mark + mark in marked and _OCTET_COLON_HEX.search(text) is not None) or _HEX_AFTER[
            mark
        ].search(marked) is not None:
            return self._sub_loop(mask, text)
        marked = _GROUP_BEFORE[mark].sub(mark, marked[::-1])[::-1]
        masked = marked.replace(mark, mask)
        # As ``re.sub``: a value that is one address becomes ``mask`` itself (pickles, which
        # share an object they meet twice, stay byte-identical).
        return mask if masked == mask else masked

    @staticmethod
    def _sub_loop(mask: str, text: str) -> str:
        # As ``re.sub``: the leftmost match from where the last one ended. A colon-first
        # match can start before that end (``::1.2.3.4:5``: the "4" a group before a
        # colon): ``_IPV6`` never tried there; the search goes on after that colon. But
        # an address glued after an IPv4-tailed one by its "::" (``::ffff:1.2.3.4::1``)
        # starts at that colon: ``_IPV6`` read it from the last octet's digits, the third of
        # ``::ffff:198.51.100.23`` x 3 as ``23::ffff:198.51.100.23``, and a second pass
        # masked ``::ffff:198`` of the second, leaving ``<ip><ip>.51.100.<ip>``. (The match
        # from the group ends where the one from the colon does: after "::" they read the
        # same.)
        parts: list[str] = []
        done = pos = 0
        while (found := IPV6_AT_COLON.search(text, pos)) is not None:
            colon = start = found.start()
            while colon - start < 4 and start > 0 and text[start - 1] in _HEX_DIGITS:
                start -= 1
            if start < done:
                # (Only an IPv4 tail ends before a hex digit: ``::1.2.3.4ab::1`` is no
                # address glued by its "::", ``ab::1`` none after the "4".)
                if colon != done or not text.startswith("::", colon):
                    pos = colon + 1
                    continue
                start = colon
            if start > done:
                parts.append(text[done:start])
            parts.append(mask)
            done = pos = found.end()
        if not parts:
            return text
        if done < len(text):
            parts.append(text[done:])
        # Joined as ``re.sub`` joins (no empty piece): one piece is returned as it is.
        return "".join(parts)


# ``Ipv6Pattern.sub``'s marks (one byte wide: a text of them stays one byte a character),
# and for each, the mark and a group of hex digits after it (in the reversed text).
_MARKS = ("\x00", "\x01", "\x02", "\x03")
_GROUP_BEFORE = {ch: re.compile(re.escape(ch) + "[0-9A-Fa-f]{1,4}") for ch in _MARKS}
_HEX_AFTER = {ch: re.compile(re.escape(ch) + "[0-9A-Fa-f]") for ch in _MARKS}
# An IPv4 tail's last octet, then one colon and a hex digit: where a match can be glued
# after an IPv4-tailed one by a single colon.
_OCTET_COLON_HEX = re.compile(r"\.\d{1,3}:[0-9A-Fa-f]")


EMAIL = re.compile(_EMAIL)
QUOTED_EMAIL = re.compile(_QUOTED + _DOMAIN)
IPV4 = re.compile(_IPV4)
IPV6 = Ipv6Pattern()
PHONE = re.compile(_PHONE)
_EMAIL_TAIL = re.compile(rf"(?<=<email>)@[\w{_COMBINING}@.\u3002\uff61-]*")
# And a local part glued before a mask ("a.b@c.com(a.b@c.com" leaves "(a.b@" before the
# second's mask: its local part starts after the first domain, which it swallowed).
# (From a token's start only, as ``_EMAIL``: linear time whatever the text.)
_EMAIL_HEAD = re.compile(rf"(?<![^{_NOT_LOCAL}])[^{_NOT_LOCAL}]++@(?=<email>)")
_MASKS = (
    (QUOTED_EMAIL, "<email>"),
    (EMAIL, "<email>"),
    (IPV6, "<ip>"),
    (IPV4, "<ip>"),
    (CARD, "<card>"),
    (PHONE, "<phone>"),
)
MASKS = frozenset(m for _, m in _MASKS)

# Longest value a pattern is expected to recognise (an address is at most 320
# characters by RFC 5321); a cut keeps nothing within this distance of the end of
# what was scanned.
MARGIN = 512
# Percent-encoding of the characters the patterns look for, and of those that end a
# token before them: an address or number in a URL's query (``?email=ann%40example.com``,
# ``tel=%2B4477...``) is found like any other. A URL inside a URL's query (a login's
# return address) is encoded again at each level (``%2540``): ``%25`` is decoded too,
# level by level, up to ``_PERCENT_LEVELS``.
_PERCENT_CHARS = {"40": "@", "2b": "+", "2e": ".", "3a": ":", "20": " ", "28": "(", "29": ")"}
_PERCENT_CHARS |= {"25": "%", "2f": "/", "3d": "=", "3f": "?", "26": "&"}
# And the separators a number's groups are written with but a space, "+" and ".": a tab, a
# line wrap (LF, CR) and a hyphen (``tel=%2B44%2020%097946%090958``, ``0044%2D20%2D7946%2D0958``
# were left in clear: the codes stayed in the number, no separator).
_PERCENT_CHARS |= {"09": "\t", "0a": "\n", "0d": "\r", "2d": "-"}
_PERCENT_LEVELS = 4
# Each spelling of a code (``%2f`` and ``%2F``) by the two characters after its ``%``.
_PERCENT_CODES = {c: ch for k, ch in _PERCENT_CHARS.items() for c in (k, k.upper(), k.lower())}
_PERCENT_LEVEL = {c: ch for c, ch in _PERCENT_CODES.items() if c != "25"}
# The decoding of one ``%`` and what follows it, all levels at once. Every decoded
# character is neither a hex digit nor (but for ``%25``) a ``%``, so no code straddles
# another and each ``%`` decodes on its own: ``%`` and n times ``25`` lose one ``25`` a
# level and, at the level after the last, the code behind them (if any) becomes its
# character. The levels run while a level's text holds ``%25``, at most
# ``_PERCENT_LEVELS``: so as many as the deepest ``%`` needs, and a deeper one stops
# part way (``_percent_run``).
_PERCENT_RUN = re.compile(r"%((?:25)++)(40|2[bBdDeEfF0689]|3[aAdDfF]|0[9aAdD])?")


def _percent_run(match: re.Match[str]) -> str:
    depth = len(match.group(1)) >> 1
    code = match.group(2)
    if code is None:  # % and 25 n times: a % after n levels
        return "%" + "25" * (depth - _PERCENT_LEVELS) if depth > _PERCENT_LEVELS else "%"
    if depth < _PERCENT_LEVELS:
        return _PERCENT_CHARS[code.lower()]
    return "%" + "25" * (depth - _PERCENT_LEVELS) + code


# More ``%`` than this in one text (a URL holds a few, a hostile 32 KB of ``%2540``
# thousands): decoded by ``_percent_replaced``, in C, without a Python call per code.
_PERCENT_MANY = 32
# ``_percent_replaced``'s steps: each spelling of each code, ``%25`` last (so the ``%`` it
# leaves is decoded only at the next level).
_PERCENT_STEPS = tuple(
    (f"%{code[0]}{case(code[1])}", char)
    for code, char in sorted(_PERCENT_CHARS.items(), key=lambda kv: kv[0] == "25")
    for case in ((str.lower, str.upper) if code[1].isalpha() else (str.lower,))
)


def _percent_decoded(text: str) -> str:
    """``text`` with the codes of ``_PERCENT_CHARS`` decoded, up to ``_PERCENT_LEVELS`` times.

    The same as decoding them level by level (one ``re.sub`` over all codes a level,
    again while the text holds ``%25``), in one pass: a text without ``%25`` has one
    level, decoded piece by piece between its ``%``; a deeper one by ``_PERCENT_RUN``.
    A text of many codes goes to ``_percent_replaced`` (the same decoding).
    """
    if text.count("%") > _PERCENT_MANY:
        return _percent_replaced(text)
    if "%25" in text:
        return _PERCENT_RUN.sub(_percent_run, _percent_level(text))
    return _percent_level(text)


def _percent_replaced(text: str) -> str:
    """``_percent_decoded`` level by level, each level a dozen ``str.replace``: the same
    as one ``re.sub`` over the codes, since codes cannot overlap (each starts with the
    only ``%``) and a decoded character is never a hex digit. Its cost does not grow
    with the number of codes, a Python call's per code does."""
    for _ in range(_PERCENT_LEVELS):
        decoded = text
        for escape, char in _PERCENT_STEPS:
            if escape in decoded:
                decoded = decoded.replace(escape, char)
        if decoded == text or "%25" not in text:
            return decoded
        text = decoded
    return text


def _percent_level(text: str) -> str:
    """One level of decoding, ``%25`` left as it is (``_percent_decoded`` reads it)."""
    head, *parts = text.split("%")
    get = _PERCENT_LEVEL.get
    return head + "".join(
        ["%" + part if (ch := get(part[:2])) is None else ch + part[2:] for part in parts]
    )


# Every IPv6 match without "::" has at least four groups of hex digits (three colons
# between them, or six before an IPv4 tail), so it holds a hex digit, a colon, then twice
# one to four hex digits and a colon; an ISO time ("08:00:02.197Z") does not. Written
# from its first colon (a literal the engine skips to in C; a hex digit first was tried
# at every letter of a-f, 30 ns a character of ``aaaa...``): only whether it matches is
# asked, never where.
_IPV6_HINT = re.compile(r":(?<=[0-9A-Fa-f]:)[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")

# Every phone shape above but the ones in brackets or with a "+" contains one of these:
# three digits, a separator, three digits; or nine digits or more with one separator at
# most between two, one of them a separator within the first nine. (A number matched
# from its start: its first group has at most eight digits, and it has nine or more.)
# A card number holds the first (four digits, a separator, four) or, without groups,
# fifteen digits in a row (``_CARD_RUN``), the third.
# Checking it first keeps the cost of an id or a name that holds nothing personal
# under a microsecond. Each match is ten characters or more (``HINT_CHARS``).
# A run of two or three separators between two digits is one there (a line wrap,
# ``_WRAP``: "\r\n", a space before a break): ``0044 20\r\n7946`` showed none.
_PHONE_HINT = re.compile(r"\d{3}[\s.-]\d{3}|(?=(?:\d[\s.-]{0,3}){8}\d)\d{1,8}[\s.-]{1,3}\d|\d{15}")
HINT_CHARS = 10
# The same test on ASCII text without the regex engine, which takes ~15 ns a character
# on ids full of digits: each digit (``\d``: str.isdecimal) becomes "0", each separator
# (``\s``: str.isspace, ".", "-") becomes "-", anything else "x"; then one substring search.
_HINT_CLASSES = bytes(
    ord("0") if ch.isdecimal() else ord("-") if ch.isspace() or ch in ".-" else ord("x")
    for ch in map(chr, range(256))
)
# A digit or a space that is not ASCII: ``\d`` and ``\s`` match it, so a text holding
# one is read by the patterns themselves (``_phone_hint``, ``_shape``). One class per
# kind: the engine tests a category at once (a class of the 669 code points as runs is
# three times slower).
_WIDE_DIGIT_OR_SPACE = re.compile(r"[^\x00-\x7f\D]|[^\x00-\x7f\S]")


# ``_PHONE_HINT``'s second branch in those classes, ``(?=(?:0-?){8}0)0{1,8}-0``, found
# where it holds a separator: one matches iff some "0-0" has g digits before its
# separator and a chain of r digits after it (one separator at most between two) with
# min(g, 8) + r >= 9. So the search starts only at a "0-0" (a literal: the engine
# skips to it in C), and reads at most 17 characters there; the branch as written
# tried every position, a lookahead first (30 ns a character on letters, 150 on a run
# of digits). Only whether it matches is asked, never where. The same in
# ``_GUARD_CLASSES`` is ``_RUN_GUARD``.
_RUN = (
    "0-0(?:"
    + "|".join(
        [r"(?<=0{8}-0)"]
        + [rf"(?<=0{{{g}}}-0)(?=(?:-?0){{{8 - g}}})" for g in range(7, 1, -1)]
        + [r"(?=(?:-?0){7})"]
    )
    + ")"
)
_RUN_CLASSES = re.compile(_RUN.encode())
# Two or three separators between digits, read as one (``_PHONE_HINT``'s ``[\s.-]{1,3}``).
# (From its literal "0--": the engine skips to it; a lookbehind first tried every position.)
_WRAP_CLASSES = re.compile(rb"0---?(?=0)")
_CARD_RUN_CLASSES = b"0" * 15  # ``_PHONE_HINT``'s third branch: a card without groups


def _phone_hint(text: str) -> bool:
    """Whether ``_PHONE_HINT`` matches somewhere in ``text``.

    Text that is not ASCII is read so too, each other character as a letter, unless it
    holds a digit or a space that is not ASCII (``_WIDE_DIGIT_OR_SPACE``): no other
    character is in a match (a search in C, against ``_PHONE_HINT``'s ~30 ns a
    character on Latin text)."""
    if text.isascii():
        classes = text.encode().translate(_HINT_CLASSES)
    elif _WIDE_DIGIT_OR_SPACE.search(text) is None:
        classes = text.encode("ascii", "replace").translate(_HINT_CLASSES)
    else:
        return _PHONE_HINT.search(text) is not None
    return (
        classes.find(b"000-000") >= 0
        or classes.find(_CARD_RUN_CLASSES) >= 0
        or _RUN_CLASSES.search(classes) is not None
        or (
            (classes.find(b"0--0") >= 0 or classes.find(b"0---0") >= 0)
            and _RUN_CLASSES.search(_WRAP_CLASSES.sub(b"0-", classes)) is not None
        )
    )


# For the guards of ``_searched`` on ASCII text: digits become "0", whitespace and "-" become
# "-", hex letters "h"; ".", "+", ":", "(" and ")" stay; anything else becomes "x".
_SHAPES = bytes(
    ord("0")
    if ch.isdecimal()
    else ord("-")
    if ch.isspace() or ch == "-"
    else ord(ch)
    if ch in ".+:()"
    else ord("h")
    if ch in "abcdefABCDEF"
    else ord("x")
    for ch in map(chr, range(256))
)
# What each match of IPV4 and of PHONE shows in ``_SHAPES`` (their lookarounds left out):
# four runs of one to three digits joined by dots; a "+", a digit, six to 24 of digits
# and separators ("+" one of them after a digit) and a digit; or the North American
# 415-555-0123 / (415) 555-0123. A
# URL's tracking ids (Google Analytics' ``_ga=2.70862151.1699999999``,
# ``utm_term=size+42``) pass the cheaper guards, "0.0" and "+0", but not these; each
# starts with a literal, so the regex engine skips to it, where the patterns themselves
# try every position (15 ns a character).
_IPV4_SHAPE = re.compile(r"0\.0{1,3}\.0{1,3}\.0")
# The international shape is PHONE's first alternative read in shapes: a "+" inside the
# number only right after a digit, so ``+1 +1 +1 ...`` (a form-encoded list of votes, or
# a line made to pass the guard) spares the pattern's scan of every position.
# The lookahead first turns down a second character that is a "+" after no digit: it
# fails there anyway, but only after the choice and the repeat are set up, some 60 ns,
# at every "+" of ``+1 +1 +1 ...`` (600 us in 32 KB).
_PLUS_SHAPE = re.compile(r"\+0(?![-.()+]\+)(?:[-0.()]|(?<=0)\+){6,24}0")
_NANP_SHAPE = re.compile(r"000[-.+]000[-.+]0000|\(000\)[-+]?000[-.+]0000")
# The 00 and trunk-0 numbers: a bracket and a digit; or, where no digit, hex letter, "."
# or "+" after a digit, "+" or "." comes before, nine digits or more with one separator
# at most between two, the first group two to six digits. (A tracking id's
# ``=2.70862151.1699999999`` is not: its runs start after a dot, or with one digit.)
# As written, ``\(0|(?<![0h.])(?<![0+.]\+)(?=(?:0[-.+]?){8}0)0{2,6}[-.+]0``; a bracket is
# asked apart (``_phone_shape``), the rest found at its separator (as ``_RUN``): the
# first group of a run, g digits, 2 to 6 (nothing of ``[0h.]`` or ``[0+.]\+`` before
# it), a separator and a chain of r digits with g + r >= 9. The separator is a class
# the engine skips to in C; there, a lookbehind and a lookahead first turn down what
# no g can make a match (g < 2, r < 3). Only whether one matches is asked, never where.
_S = "[-.+]"
_GROUPED_SHAPE = re.compile(
    rf"{_S}(?<=00{_S})0(?=(?:{_S}?0){{2}})(?:"
    + "|".join(
        rf"(?<=0{{{g}}}{_S}0)(?<![0h.]0{{{g}}}{_S}0)(?<![0+.]\+0{{{g}}}{_S}0)"
        rf"(?=(?:{_S}?0){{{8 - g}}})"
        for g in range(6, 1, -1)
    )
    + ")"
)
# A number with a bracket (but after a "+") has its area or trunk code in it, two to five
# digits (``(415) 555-0123``, ``(020) 7946 0958``), and nine digits or more in all, one
# separator at most between two: ``\(0{2,5}\)`` and 9 - g digits after. (Asked as "(0"
# once, any bracket and digit passed, and ``(0(0(0...`` had the phone pattern try every
# position: 4.7 ms a line.) Written from the code's last digits and the bracket, a
# literal the engine skips to; four digits at least follow (one choice among four costs
# the engine more than ``(00)(00)...`` should).
_BRACKET_SHAPE = re.compile(
    r"00\)(?=(?:[-.+]?0){4})(?:"
    + "|".join(rf"(?<=\(0{{{g}}}\))(?:[-.+]?0){{{9 - g}}}" for g in range(2, 6))
    + ")"
)
# The UK's "(0)" before an area code (``(0)20 7946 0958``): the "0" and eight digits more
# at least, one separator at most between two. Written from its literal "(0)".
_ZERO_BRACKET_SHAPE = re.compile(r"\(0\)[-+]?0(?:[-.+]?0){7}")
# The same without the lookbehind (``\(0|(?=(?:0[-.+]?){8}0)0{2,6}[-.+]0``): a match
# may start inside a group, so g is the digits before the separator, at most 6 counted.
_GROUPED_RUN = re.compile(
    rf"{_S}(?<=00{_S})0(?=(?:{_S}?0){{2}})(?:"
    + "|".join(rf"(?<=0{{{g}}}{_S}0)(?=(?:{_S}?0){{{8 - g}}})" for g in range(6, 1, -1))
    + ")"
)
# Percent-encodings of what the guards of ``_may_match`` read ("@", ":", ".", "+", "(",
# ")", a space, a tab, a line break, "-"), as deep as ``_percent_decoded`` decodes them (a
# ``%`` and at most three ``25``).
_PERCENT_SHOWN = re.compile(r"%(?:25){0,3}(?:40|2[bBdDeE089]|3[aA]|0[9aAdD])")


def _percent_shown(match: re.Match[str]) -> str:
    return _PERCENT_CHARS[match.group(0)[-2:].lower()]


# ``_PHONE_HINT``'s second branch in ``_GUARD_CLASSES`` (as ``_RUN_CLASSES``).
_RUN_GUARD = re.compile(_RUN)


# Each character that Unicode's compatibility form (NFKC) writes as one of the ASCII
# characters the patterns and their guards read: the full-width at sign and plus sign
# (U+FF20, U+FF0B), the small at sign (U+FE6B), the full-width colon, hyphen and full stop
# and the like; and the spaces that are not ASCII's, the no-break space (U+00A0) and the
# narrow one (U+202F) that French and much of Europe write between a number's groups
# (``06\u00a012\u00a034\u00a056\u00a078``), the ideographic space. Then the hyphens NFKC
# keeps, the non-breaking one (U+2011) a word processor puts in ``415\u2011555\u20110123``
# so the number is not broken at a line's end, and the figure dash (U+2012) made for
# numbers. One for one (but for the invisible characters below, which are removed).
_FOLDS: dict[int, str | None] = {
    cp: folded
    for cp in range(0x80, 0x10000)
    if len(folded := unicodedata.normalize("NFKC", chr(cp))) == 1 and folded in "@+.:-()% "
}
_FOLDS |= {0x2010: "-", 0x2011: "-", 0x2012: "-"}
# And the en dash and the minus sign, which typesetting and autocorrection put between a
# number's groups as often as a hyphen (``415\u2013555\u20130123``).
_FOLDS |= {0x2013: "-", 0x2212: "-"}
# Characters that show nothing: the zero-width space, soft hyphen, word joiner and
# invisible operators, byte-order mark, direction marks, embeddings, overrides and
# isolates (``_ABSENT``); the joiners and non-joiner, variation selectors, the combining
# grapheme joiner, tags and Unicode's other format characters (``_SHAPING``); and the
# prepended concatenation marks (the Arabic number sign U+0600 and its kin, which show
# before a number). One of them inside an address or a number (``ann@\u200bexample.com``,
# ``+1\u200b415...``, pasted from a web page or put there on purpose) would split what a
# reader and any system that strips them sees as one address: the patterns read the text
# without any of them (``_folded``). No cut depends on a text keeping its length: a
# shorter text is cut sooner, never later.
_ABSENT = (0x00AD, 0x061C, 0x180E, 0x200B, 0x200E, 0x200F, *range(0x202A, 0x202F),
           *range(0x2060, 0x2070), 0xFEFF, *range(0xFFF9, 0xFFFC),
           *range(0x1D173, 0x1D17B))  # fmt: skip
_SHOWN_FORMAT = (*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD,
                 0x110CD)  # fmt: skip
_SHAPING = sorted(
    (
        {cp for cp in range(0x80, 0x10000) if unicodedata.category(chr(cp)) == "Cf"}
        | {0x034F, *range(0xFE00, 0xFE10), *range(0x13430, 0x13440), *range(0x1BCA0, 0x1BCA4)}
        | {0xE0001, *range(0xE0020, 0xE0080), *range(0xE0100, 0xE01F0)}
    )
    - set(_ABSENT)
    - set(_SHOWN_FORMAT)
)
# What is returned where something was masked keeps the characters ordinary text needs
# (``_kept_folds``, ``scrub_text``): the joiners of emoji sequences, Persian and the Indic
# scripts, an emoji's variation selector, the number signs; only those right after an
# ASCII character go, and only if the text so read hides nothing the patterns find.
_KEEP_FOLDS = _FOLDS | {cp: None for cp in _ABSENT}
_FOLDS |= {cp: None for cp in (*_ABSENT, *_SHAPING, *_SHOWN_FORMAT)}
# The digits of other scripts (Arabic-Indic ``\u0660\u0667...``, full-width, Devanagari:
# the 650 that ``\d`` and ``str.isdecimal`` read as digits, all below U+20000) are read
# as the ASCII digit of the same value. ``\d`` matches them, but the patterns' ``0``,
# ``1``, ``[1-9]`` and hex digits are ASCII's: a trunk-0, 00 or North American number so
# written was left in clear, and a card or an address read by other rules than its ASCII
# writing. Kept in what is returned where the text read with them hides nothing and is
# masked as it is with ASCII digits (``scrub_text``): a price in Arabic-Indic digits
# beside a masked address stays as written.
_DIGIT_FOLDS = {
    cp: str(unicodedata.decimal(ch)) for cp in range(0x80, 0x20000) if (ch := chr(cp)).isdecimal()
}
_FOLDS |= _DIGIT_FOLDS
_WIDE_DIGIT = re.compile(r"[^\x00-\x7f\D]")


_AFTER_ASCII = re.compile("(?<=[\x00-\x7f])[" + _ranges(_SHAPING) + "]+")


# Where ``_folded`` has something to do: a search in C, a third of the cost of
# ``str.translate``, which looks each character up in ``_FOLDS`` (54 ns a character).
_FOLDED_CHARS = re.compile("[" + _ranges(sorted(_FOLDS)) + "]")


def _folded(text: str) -> str:
    """``text`` with ``_FOLDS`` applied, when it is not ASCII: an address or a number
    written in full-width forms, or with invisible characters inside, is read as the
    address or number it shows. (Unicode digits are digits to the patterns already:
    ``\\d`` matches a full-width 4.) Most text that is not ASCII (accents, CJK) holds
    none of ``_FOLDS``' characters and is returned as it is, found so by one search."""
    if text.isascii():
        return text
    found = _FOLDED_CHARS.search(text)
    if found is None:
        return text
    at = found.start()
    return text[:at] + text[at:].translate(_FOLDS) if at else text.translate(_FOLDS)


def _kept_folds(text: str) -> str:
    """``text`` as ``_folded`` reads it, but for the invisible characters ordinary text
    needs (``_KEEP_FOLDS``): those stay but right after an ASCII character."""
    return _AFTER_ASCII.sub("", text.translate(_KEEP_FOLDS))


def has_pii(text: str) -> bool:
    """Whether ``text`` contains an e-mail address, an IP address, a phone number or a
    payment card number.

    Text that is not ASCII is read with ``_FOLDS`` applied (``_folded``).
    """
    text = _folded(text)
    n = len(text)
    if n < 6:  # shorter than a@b.cd, 1.1.1.1 or any phone number
        return False
    if "%" in text:
        # A URL's codes are mostly "/", "=", "?", "&" and the levels of "%25", which
        # decode to nothing a guard reads. With only the others decoded, every guard
        # that passes on the whole decoding passes (what a guard reads, a character, a
        # count, a run of digits, separators, hex digits and colons, is the same; what
        # is left encoded only adds "%", digits and hex letters between runs), so
        # where none passes there, nothing is decoded. (A run's match holds wherever
        # it did: no guard looks left of its run, no lookbehind, no anchor. A guard
        # that did would not hold here.)
        # (Not for a text of many codes: a Python call each, see ``_PERCENT_MANY``.)
        if text.count("%") <= _PERCENT_MANY and not _may_match(
            _PERCENT_SHOWN.sub(_percent_shown, text), n
        ):
            return False
        text = _percent_decoded(text)
    if "@" in text and (
        EMAIL.search(text) is not None or ('"@' in text and QUOTED_EMAIL.search(text) is not None)
    ):
        return True
    # The first guards of ``_searched``, inline: most texts are short ids and values.
    if "::" in text or text.count(":") >= 3 or text.count(".") >= 3 or "+" in text or "(" in text:
        return _searched(text, n, True)
    # (The hint passed on: it is the dearest of the guards on digits and separators.)
    return n >= HINT_CHARS and _phone_hint(text) and _searched(text, n, True, hinted=True)


def _may_match(text: str, n: int) -> bool:
    """False only if no pattern matches in ``text`` (``n``: its length before decoding)."""
    return "@" in text or _searched(text, n, False)


def _searched(text: str, n: int, search: bool, hinted: bool = False) -> bool:
    """Whether IPV6, IPV4, PHONE or CARD matches in ``text``, each searched only where its
    guards pass; or (``search`` false) whether any one's guards pass. Each guard holds
    wherever its pattern matches; ``n`` is the length of the text before decoding;
    ``hinted``: ``_phone_hint(text)`` is known to hold."""
    colons = "::" in text or text.count(":") >= 3
    dots = text.count(".") >= 3  # an IPv4 address has 3 dots
    # The phone hint last: on a list of addresses (``1.2.3.4:1.2.3.4:...``, a chain of
    # digits and separators everywhere) it costs more than the IPv4 pattern's search.
    phone = hinted or "+" in text or "(" in text
    if not (colons or dots or phone):
        if n < HINT_CHARS or not _phone_hint(text):
            return False
        phone = True
    # Each pattern needs a run of its characters: an IPv4 address ``_IPV4_SHAPE``, a
    # phone ``_PLUS_SHAPE`` or ``_NANP_SHAPE``, an IPv6 address "::" or ``_IPV6_HINT``.
    # (The shapes are asked only behind a substring test, which is cheaper.)
    shape = _shape(text)
    if colons and _ipv6_hint(text, shape) and (not search or IPV6.search(text) is not None):
        return True
    if (
        dots
        and (shape is None or ("0.0" in shape and _IPV4_SHAPE.search(shape) is not None))
        and (not search or IPV4.search(text) is not None)
    ):
        return True
    if not phone and (n < HINT_CHARS or not _phone_hint(text)):
        return False
    phone_shape = shape is None or _phone_shape(shape, search)
    if phone_shape and (not search or PHONE.search(text) is not None):
        return True
    # A card number passes the phone guard too ("+", or ``_PHONE_HINT``: its first two
    # groups are four digits, a separator, four or six digits; or, without groups,
    # fifteen digits in a row).
    if (
        shape is None
        or "0000-0000" in shape
        or "0000+0000" in shape
        or (_CARD_RUN_SHAPE in shape and (not search or _CARD_RUN_ALONE.search(shape) is not None))
    ) and (not search or CARD.search(text) is not None):
        return True
    # Numbers side by side pass the phone guard (each holds ``_PHONE_HINT``); the shape's
    # test is ``_may_be_side_by_side``'s, inline (a Python call less on every text), but
    # for a run from a "+" (``_PLUS_PAIR_SHAPE``): its first part is a PHONE match, found
    # above.
    return (
        shape is None
        or (
            _SIDE_BY_SIDE_SHAPE.search(shape) is not None
            and (
                _LOOSE_SHAPE_AT.match(shape) is not None
                or _LOOSE_SHAPE_AFTER.search(shape) is not None
            )
        )
        # (A bracketed part is a phone number read alone: it holds the phone's shape.)
        or (phone_shape and _may_be_bracket_run(shape))
    ) and (not search or _side_by_side(text))


_CARD_RUN_SHAPE = "0" * 15
# A card without groups is a whole run of 15 to 19 digits (``_CARD_RUN``): a run of 32 KB
# of digits is none, and spares the card pattern's scan (35 ns a character). Not on a
# text partly percent-decoded (``_may_match``), where a code left (``%25``) may add
# digits to a run. The run starts with a literal: the engine tries only where fifteen
# zeros begin (a run is at most ``_LONG_RUN``'s, in a shape).
_CARD_RUN_ALONE = re.compile("0" * 15 + "(?<!0{16})0{0,4}(?!0)")
# A grouped card number in a shape: its first group of four digits where no digit, hex
# letter or "." comes before (``_CARD_START``: no word character nor "."; a letter g-z, an
# underscore and any symbol read "x", so "x" is never turned down), nor a digit and a
# separator (``(?<!\d[ +])``, and ``(?<![\w.]-)``: a hyphen after a digit), then a separator
# and four digits. Glued numbers (``+14155550123+14155550123...``) show "0000+0000" but no
# group of four after a number's start: the card pattern's scan of every digit (40 ns a
# character) is spared. Written from the group, a literal the engine skips to.
_CARD_GROUPS_SHAPE = re.compile(r"0000(?<![0h.]0000)(?:(?<!0[-+]0000)|(?<=x00[-+]0000))[-+]0000")
# A card after a zero-led group (``_after_group``), which a shape cannot tell from any
# group (every digit a "0": the shape's guard would pass after every group of two digits
# or more, so wherever a card's third group is), asked of the text: a "0" after no digit,
# one to seven digits, " " or "+", a card's first two groups. From the literal "0".
_ZERO_LED_CARD = re.compile(r"0(?<!\d0)\d{1,7}+[ +][^\D0]\d{3}[ +-]\d{4}")


# Numbers written side by side, one separator between (``07700 900123 07700 900123``, two
# cards, a phone and a card): each pattern above reads a number and a separator before or
# after a number as part of a longer one, so the run as a whole fits no shape and none was
# masked. A run of digit groups (each separator one character: whitespace, ".", "-" or "+")
# that no mask above reached is read as numbers side by side: each part of it (whole
# groups, at most ``_PART_CHARS`` characters) that is a card or a phone number on its own
# (``_part_shape``, ``_luhn``) and has another such part straight before or after it (one
# separator between) is masked (``_tiled``: where they overlap, the parts that cover the
# most of the run). A lone part in a longer run stays as written (``30 05 2024 14 30``,
# ``qty 2 4111 ...``: it may be one longer number). The run starts and ends as a number
# does (no word, "." or "-" before it, no word or "-" after it, but "-+" and a digit);
# a run glued to a word is an id. Only runs of four groups or more are read (a phone has
# two groups at least, a card three), only where a shape shows a group of two digits or
# more then three more groups (``_SIDE_BY_SIDE_SHAPE``, its literal "00" found in C) and
# two parts' layouts (``_LOOSE_SHAPE_AT``, ``_LOOSE_SHAPE_AFTER``), and only
# runs where ``_LOOSE_PAIR`` (two numbers of the parts' group layouts side by side, their
# digit counts and the Luhn check left out) matches. The parts are then read in Python, in
# runs of at most ``_SPLIT_CHARS`` characters in all in a text; a run past that (a list of
# a hundred numbers or more, or a line made of them) is masked whole: the work per
# character stays bounded.
# A bracketed trunk-0 area code (``(020) 7946 0958``), or the "(0)" of an international
# number (``+44 (0) 20 7946 0958``), is a group of a run: "(", "0", up to four digits, ")",
# then a digit or " " or "+" and a digit (PHONE reads no other separator after it). The
# phone pattern reads no such number with a number before or after it (``(020) 7946 0958
# 07700 900123``, ``07700 900123 (020) 7946 0958``); the run read from after the bracket
# found no part in it, and both were left in clear.
_BRACKET = r"\(0(?:[1-9]\d{0,3})?\)(?=[ +]?\d)"
_SIDE_BY_SIDE = re.compile(
    r"(?:\+(?<![^\W_]\+)(?<![\d+]\+\+)\d++"
    rf"|\((?<!\d{_SEP_IN_LINE}\()(?<![\d+.-]\+\()0(?:[1-9]\d{{0,3}})?\)(?=[ +]?\d)"
    rf"|\d(?<![\w.-].)(?<!\d{_SEP_IN_LINE}.)(?<![\d+.-]\+.)\d*+)"
    # A run without a bracket after its start first, as written before brackets were read:
    # a choice in each group costs the engine 15 ns a group (32 KB of ``01 01 ...``: 0.3 ms
    # to 0.45 ms a scan); then the same run with brackets.
    r"(?:(?:[\s.+-]\d++){3,}+(?!\w|-(?!\+\d)|[\s.+-]\()"
    rf"|(?:[\s.+-](?:\d++|{_BRACKET})|(?<=\))[ +]?\d++){{3,}}+(?!\w|-(?!\+\d)))"
)
_SIDE_BY_SIDE_SHAPE = re.compile(r"00[-.+]0++[-.+]0++[-.+]0")
# The layouts of the parts (``_PHONE``'s and ``CARD_SHAPE``'s groups, their separators
# and digit counts left free): a 00 or trunk-0 number, a card's, a North American one.
_S1 = r"[\s.+-]"


def _loose_part(d: str, nonzero: str, zero: str, one: str, sep: str) -> str:
    """``_LOOSE_PART`` written with ``d`` for a digit, ``nonzero``, ``zero`` and ``one`` for
    the digits it names, ``sep`` for a separator (so in ``_SHAPES`` too). A group's digits
    are read possessively: a separator or the part's end follows each (a glued number's
    long groups fail at once, not after every shorter reading)."""
    return (
        rf"(?:{zero}(?:{zero}{sep}?{nonzero}{d}{{0,3}}+(?:{sep}{d}{{1,8}}+){{1,5}}"
        rf"|{nonzero}{d}{{0,4}}+(?:{sep}{d}{{2,8}}+){{1,5}})"
        rf"|{nonzero}{d}{{3}}(?:{sep}{d}{{4}}{sep}{d}{{4}}(?:{sep}{d}{{4}})?{sep}{d}{{1,7}}+"
        rf"|{sep}{d}{{6}}{sep}{d}{{4,5}}+)"
        rf"|(?:{one}{sep})?{nonzero}{d}{{2}}{sep}{d}{{3}}{sep}{d}{{4}}"
        rf"|\({zero}(?:{nonzero}{d}{{0,3}}+\){sep}?{d}{{2,8}}+"
        rf"|\){sep}?{nonzero}{d}{{1,3}}+{sep}{d}{{2,8}}+)(?:{sep}{d}{{2,8}}+){{0,4}})"
    )


_LOOSE_PART = _loose_part(r"\d", "[1-9]", "0", "1", _S1)
_LOOSE_SHAPE_PART = _loose_part("0", "0", "0", "0", "[-.+]")
# The same pair in a shape (``_may_be_side_by_side``): where a run starts (after a
# separator, a space, or a character read "x", ":", "(" or ")") or at the shape's start.
# Glued numbers (``+14155550123+14155550123...``) show none: their groups are too long.
_LOOSE_SHAPE_PAIR = rf"{_LOOSE_SHAPE_PART}[-.+]{_LOOSE_SHAPE_PART}(?!0)"
_LOOSE_SHAPE_AT = re.compile(_LOOSE_SHAPE_PAIR)
# A pair's first four groups have at most six, eight, eight and eight digits
# (``_SHORT_GROUPS``): asked first at each separator, that fails at once where groups
# are longer (glued numbers, ``+00000000000+...``: 0.5 ms a 32 KB line for the pair's
# alternatives at every "+", 0.17 ms so).
_SHORT_GROUPS = r"0{1,6}+[-.+]0{1,8}+[-.+]0{1,8}+[-.+]0"
_LOOSE_SHAPE_AFTER = re.compile(rf"[-.+x:()](?={_SHORT_GROUPS})(?={_LOOSE_SHAPE_PAIR})")
_LOOSE_PAIR = re.compile(rf"{_LOOSE_PART}{_S1}{_LOOSE_PART}(?!\d)")
# Its card's layout, which names the mask of a run masked whole.
_LOOSE_CARD = re.compile(r"[1-9]\d{3}[\s.+-]\d{4}")
_LOOSE_PAIR_AFTER = re.compile(rf"(?:{_S1}|\))(?={_LOOSE_PART}{_S1}{_LOOSE_PART}(?!\d))")
# A run may start with a "+" where ``PHONE``'s first alternative starts (``+44 20 7946 0958
# 07700 900123``): its first part is that alternative's number, "+" and all, up to
# ``_PLUS_PART_CHARS`` characters. (Read from the digit after the "+", no part started
# there, ``44`` is no number's start; and the phone pattern took the "+" number and the
# first groups of the next, ``<phone> 900123``.) Its pair, and the same in a shape.
_PLUS_PART = r"\+\d(?:[\d\s().-]|(?<=\d)\+){6,24}\d"
_LOOSE_PLUS_PAIR = re.compile(rf"{_PLUS_PART}{_S1}{_LOOSE_PART}(?!\d)")
# In a shape, the second part is found first (a separator, then a first group of two to
# six digits, or ``1`` and a group of three, and a part's layout), then a "+" at most
# ``_PLUS_PART_CHARS`` characters before it: read from each "+", the first part's repeat
# was tried at every length (3.4 ms on 32 KB of glued numbers, ``+14155550123+...``,
# where no group is short enough to start a second part).
_PLUS_SECOND_SHAPE = (
    r"(?=00{1,5}+[-.+]0|0[-.+]000[-.+]0)"
    rf"(?={_LOOSE_SHAPE_PART}(?!0))(?:"
    + "|".join(rf"(?<=\+.{{{k}}}[-.+])" for k in range(7, 27))
    + ")"
)
_PLUS_PAIR_SHAPE = re.compile(rf"[-.+]{_PLUS_SECOND_SHAPE}")
# It and ``_LOOSE_SHAPE_AFTER`` in one scan: each costs the scan of every separator (0.16
# ms on the glued numbers), where the pair's short groups fail at once.
_PAIR_OR_PLUS_AFTER = re.compile(
    rf"[-.+x:()](?=0{{1,6}}+[-.+]0)"
    rf"(?:(?={_SHORT_GROUPS})(?={_LOOSE_SHAPE_PAIR})|(?<=[-.+]){_PLUS_SECOND_SHAPE})"
)
_PLUS_PART_CHARS = 27
# A run's groups: its brackets are groups of their own.
_GROUP = re.compile(r"\(0(?:[1-9]\d{0,3})?\)|\d+")
# A bracketed area code's part in a shape: one after a group and a separator (a part
# before it), or one followed by three groups (four in a run: its own second group, or a
# part after it); asked where the phone's bracket shape is (``_may_be_bracket_run``:
# ``(0(0(0...`` and ``(00)(00)...`` show none). A lone ``(020) 7946 0958`` shows neither.
_BRACKET_PAIR_SHAPE = re.compile(
    r"\((?:(?<=0[-.+]\()00{1,4}\)[-+]?00|00{1,4}\)[-+]?0++[-.+]0++[-.+]0)"
)


def _may_be_bracket_run(shape: str) -> bool:
    """False only if no run of ``shape`` has a bracketed area code's part beside another."""
    return (
        ")" in shape
        and "00)" in shape
        and _BRACKET_SHAPE.search(shape) is not None  # the part alone (``_phone_shape``)
        and _BRACKET_PAIR_SHAPE.search(shape) is not None
    )


# Where a part can start: a 00 number (``00 44``, ``0044``), a trunk-0 one (``07700``,
# ``020``), a card's first group of four or a North American number's area code, ``1``
# before one, the "+" a run starts with (``_LOOSE_PLUS_PAIR``), a bracketed area code, or
# the UK's "(0)" before one (``(0)20 7946 0958 07700 900123`` was left in clear).
_PART_START = re.compile(
    r"00(?:[\s+]?[1-9])|0[1-9]|[1-9]\d{2,3}(?!\d)|1[\s.+-]\d{3}(?!\d)|\+|\(0[1-9]|\(0\)"
)
# The longest part: a 00 number, 17 digits and six separators, or a card, 19 and four.
_PART_CHARS = 23
_SPLIT_CHARS = 2048


# A trunk-0 number of two groups parted by a line break (``07700\n900123``): a phone
# read alone, never a part (the end of a number and the next line, ``0044 20 7946
# 0958\n12345678``, would be one).
LINE_BROKEN = re.compile(rf"0\d+{_BREAK}\d+")


def _part_shape(part: str) -> re.Match[str] | bool:
    """Whether ``part`` read alone has a card's shape (its ``CARD_SHAPE`` match, the Luhn
    check still to pass) or is a phone number (True), but one of ``LINE_BROKEN``."""
    card = CARD_SHAPE.fullmatch(part)
    if card is not None:
        return card
    return PHONE.fullmatch(part) is not None and LINE_BROKEN.fullmatch(part) is None


def _adjacent(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Those of ``found`` (first group, last group, mask) with another straight before or
    after them."""
    firsts = {first for first, _, _ in found}
    lasts = {last for _, last, _ in found}
    return [f for f in found if f[1] + 1 in firsts or f[0] - 1 in lasts]


def _parts(run: str, groups: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """The parts of ``run`` (its digit ``groups``) to mask: (start, end, mask), in order;
    parts that overlap are one, a card's mask if one of them is a card."""
    shaped: list[tuple[int, int, str]] = []  # first group, last group, mask
    cards: dict[tuple[int, int], re.Match[str]] = {}
    for i, (a, _) in enumerate(groups):
        if _PART_START.match(run, a) is None:
            continue
        j = i + 1
        most = _PLUS_PART_CHARS if run[a] == "+" else _PART_CHARS
        while j < len(groups) and groups[j][1] - a <= most:
            shape = _part_shape(run[a : groups[j][1]])
            if isinstance(shape, re.Match):
                cards[i, j] = shape
                shaped.append((i, j, "<card>"))
            elif shape:
                shaped.append((i, j, "<phone>"))
            j += 1
    # The Luhn check only where a part's shape has another beside it: a run of one shape
    # (``3782 822463 3782 822463 ...``) costs no sum.
    found = _adjacent(
        [f for f in _adjacent(shaped) if f[2] != "<card>" or _luhn(cards[f[0], f[1]])]
    )
    return _tiled(found, groups)


def _tiled(
    found: list[tuple[int, int, str]], groups: list[tuple[int, int]]
) -> list[tuple[int, int, str]]:
    """The spans (start, end, mask) of ``found`` (first group, last group, mask; in order
    of their first group) masked: parts that do not overlap and cover the most groups
    (on a tie, a group left out before a part taken, a shorter part before a longer),
    one mask each, up to the next mask or the run's end (``020 7946 0958 020 7946 0958`` is
    two, not one of its six groups: ``0958 020 7946`` is a number too); a part sticking
    out of them is masked with those it overlaps, as one."""
    n = len(groups)
    best = [0] * (n + 1)  # the most groups covered from group i on
    take: list[tuple[int, int, str] | None] = [None] * (n + 1)
    by_first: dict[int, list[tuple[int, int, str]]] = {}
    for f in found:
        by_first.setdefault(f[0], []).append(f)
    for i in range(n - 1, -1, -1):
        best[i] = best[i + 1]
        for f in by_first.get(i, ()):
            if f[1] - i + 1 + best[f[1] + 1] > best[i]:
                best[i], take[i] = f[1] - i + 1 + best[f[1] + 1], f
    chosen: list[tuple[int, int, str]] = []
    covered = [False] * n
    i = 0
    while i < n:
        part = take[i] if best[i] != best[i + 1] else None
        if part is None:
            i += 1
            continue
        chosen.append(part)
        covered[part[0] : part[1] + 1] = [True] * (part[1] - part[0] + 1)
        i = part[1] + 1
    spans = sorted(
        [*chosen, *(f for f in found if not all(covered[f[0] : f[1] + 1]))],
        key=lambda f: (f[0], f[1]),
    )
    out: list[tuple[int, int, str]] = []
    firsts: list[int] = []
    last = -1
    for first, end, mask in spans:
        a, b = groups[first][0], groups[end][1]
        if out and first <= last:
            kept = "<card>" if "<card>" in (mask, out[-1][2]) else mask
            out[-1] = (out[-1][0], max(b, out[-1][1]), kept)
            last = max(last, end)
        else:
            out.append((a, b, mask))
            firsts.append(first)
            last = end
    # The groups a mask leaves before the next one or the run's end go with it: a number
    # may be read across two parts and leave its tail (``+44 20 7946 0958 1234 5678 9012``
    # kept ``9012``).
    if not out:
        return out
    ends = [f - 1 for f in firsts[1:]] + [len(groups) - 1]
    return [(a, groups[e][1], mask) for (a, _, mask), e in zip(out, ends, strict=True)]


class SideBySide:
    """The runs of numbers side by side in one text and their parts to mask (``_parts``),
    in order, ``_SPLIT_CHARS`` characters of runs read at most; a run past that is one
    part."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = _SPLIT_CHARS

    def parts(self, run: str) -> list[tuple[int, int, str]]:
        pair = (
            _LOOSE_PAIR.match(run)
            or (_LOOSE_PLUS_PAIR.match(run) if run[0] == "+" else None)
            or _LOOSE_PAIR_AFTER.search(run)
        )
        if pair is None:
            return []
        self.left -= len(run)
        if self.left < 0:
            # Its first pair's mask: a list of cards is masked as one.
            at = pair.start() + (pair.re is _LOOSE_PAIR_AFTER)  # after its separator
            return [(0, len(run), "<card>" if _LOOSE_CARD.match(run, at) else "<phone>")]
        groups = [m.span() for m in _GROUP.finditer(run)]
        if run[0] == "+":  # the "+" is its first part's
            groups[0] = (0, groups[0][1])
        return _parts(run, groups)

    def masked(self, match: re.Match[str]) -> str:
        run = match.group(0)
        parts = self.parts(run)
        if not parts:
            return run
        pieces: list[str] = []
        done = 0
        for a, b, mask in parts:
            pieces.append(run[done:a])
            pieces.append(mask)
            done = b
        pieces.append(run[done:])
        return "".join(pieces)


def _side_by_side(text: str) -> bool:
    """Whether ``text`` holds numbers side by side that ``_side_by_side_masked`` masks."""
    runs = SideBySide()
    return any(runs.parts(m.group(0)) for m in _SIDE_BY_SIDE.finditer(text))


def _side_by_side_masked(text: str) -> str:
    """``text`` with its numbers side by side masked."""
    return _SIDE_BY_SIDE.sub(SideBySide().masked, text)


def _may_be_side_by_side(shape: str | None) -> bool:
    """False only if ``_side_by_side`` is false on a text of ``shape`` (``_shape``)."""
    if shape is None or _may_be_bracket_run(shape):
        return True
    if _SIDE_BY_SIDE_SHAPE.search(shape) is not None:
        if _LOOSE_SHAPE_AT.match(shape) is not None:
            return True
        after = _PAIR_OR_PLUS_AFTER if "+0" in shape else _LOOSE_SHAPE_AFTER
        return after.search(shape) is not None
    # A run from a "+" whose groups show no four in a row from a group of two digits
    # (``+1 2 3 4 5 6 7 8 07700 900123``); its second part's first two groups asked as a
    # substring first (no text of one-digit groups, ``+1 2 3 4 ...``, is searched).
    return (
        "+0" in shape
        and ("00-0" in shape or "00.0" in shape or "00+0" in shape)
        and _PLUS_PAIR_SHAPE.search(shape) is not None
    )


# A digit and a whitespace other than " " (``\t``, a line break): the shape reads every
# whitespace as "-", where the card pattern's lookbehind turns down a number after a
# digit and " " or "+" only ("00\t4111 1111 1111 1111" holds a card); such a text is
# scanned.
_DIGIT_OTHER_SPACE = re.compile(r"\d[\t\n\x0b\x0c\r\x1c-\x1f]")


def _may_be_card(text: str) -> bool:
    """False only if ``CARD_SHAPE`` matches nowhere in ``text`` (fully decoded)."""
    shape = _shape(text)
    return (
        shape is None
        or (
            ("0000-0000" in shape or "0000+0000" in shape)
            and (
                _CARD_GROUPS_SHAPE.search(shape) is not None
                or _DIGIT_OTHER_SPACE.search(text) is not None
                or _ZERO_LED_CARD.search(text) is not None
            )
        )
        or (_CARD_RUN_SHAPE in shape and _CARD_RUN_ALONE.search(shape) is not None)
    )


# Runs of digits in a shape are cut to 20: every guard on a shape finds in a longer run
# what it finds in one of 20 (none counts more in a row than ``_CARD_RUN_ALONE``'s 19
# and the zero after); a substring search for "000-000" costs 100 µs in 32 KB of zeros.
_LONG_RUN = re.compile("0" * 20 + "0+")
_RUN_OF_20 = "0" * 20


def _shape(text: str) -> str | None:
    """``text`` by ``_SHAPES``, one character for each; None when it has none.

    A character that is not ASCII reads as a letter, ``x``: the patterns read no such
    character inside a match but a digit or a space (a full-width 4, an em space), and
    only a text without those has a shape. (A letter where the text has a symbol
    only makes a shape's lookbehind pass where the pattern's might not: a shape holds
    wherever its pattern matches, as on ASCII text.) So ``+1 +1 ...`` with one accented
    letter spares the phone pattern's scan of every position (9 ms for 32 KB) as the
    ASCII text does. A run of more than 20 digits is cut to 20 (``_LONG_RUN``)."""
    if text.isascii():
        shape = text.encode().translate(_SHAPES).decode()
    elif _WIDE_DIGIT_OR_SPACE.search(text) is not None:
        return None
    else:
        shape = text.encode("ascii", "replace").translate(_SHAPES).decode()
    return _LONG_RUN.sub(_RUN_OF_20, shape) if _RUN_OF_20 + "0" in shape else shape


# A wrap of two or three characters between digits (``_WRAP``: "\r\n", a space before a
# break) is one separator of a 00 number read across lines, "--" or "---" in a shape:
# where a shape shows no number, it is asked again with each read as one "-" (a guard
# that passes either way holds wherever ``PHONE`` matches). Asked only of a shape that
# holds one: no other text pays for it.
_WRAP_SHAPE = re.compile("0---?(?=0)")


def _phone_shape(shape: str, whole: bool = True) -> bool:
    """Whether ``shape`` (an ASCII text by ``_SHAPES``) shows a PHONE match's run.

    ``whole`` false: ``shape`` is of a text only partly percent-decoded (``_may_match``),
    where what comes before a number may still be a code (``%3D07700 900123``): the
    grouped numbers' shape is then asked without its lookbehind. A shape with a wrap of
    two or three characters is asked again with it read as one (``_WRAP_SHAPE``)."""
    return (
        ("+0" in shape and _PLUS_SHAPE.search(shape) is not None)
        or (
            ("000-000" in shape or "000.000" in shape or "000+000" in shape)
            and _NANP_SHAPE.search(shape) is not None
        )
        or (
            # Its first group has two digits or more: "0 0 0 ..." has no separator for
            # the search to try (each was tried: 300 us in 32 KB).
            ("00-0" in shape or "00.0" in shape or "00+0" in shape)
            and (_GROUPED_SHAPE if whole else _GROUPED_RUN).search(shape) is not None
        )
        or ("00)" in shape and _BRACKET_SHAPE.search(shape) is not None)
        or ("(0)" in shape and _ZERO_BRACKET_SHAPE.search(shape) is not None)
        # (Once: the shape so read holds no such wrap.)
        or (
            ("0--0" in shape or "0---0" in shape)
            and _phone_shape(_WRAP_SHAPE.sub("0-", shape), whole)
        )
    )


def _ipv6_hint(text: str, shape: str | None) -> bool:
    """Whether ``text`` holds "::" or ``_IPV6_HINT``; the hint is searched only where
    ``shape`` (``text`` by ``_SHAPES``, or ``None``) shows a hex digit, colon, hex digit."""
    if "::" in text:
        return True
    if shape is not None and not (
        "0:0" in shape or "0:h" in shape or "h:0" in shape or "h:h" in shape
    ):
        return False
    return _IPV6_HINT.search(text) is not None


def _may_be_ipv6(text: str) -> bool:
    """False only if ``IPV6`` matches nowhere in ``text``: each of its matches holds "::" or
    ``_IPV6_HINT``. Any JSON line has three colons; this spares the search (its cost per
    character is some twenty times the hint's) on a dead letter's line."""
    return "::" in text or (text.count(":") >= 3 and _IPV6_HINT.search(text) is not None)


def _may_be_phone(text: str) -> bool:
    """False only if ``PHONE`` matches nowhere in ``text``: a match holds "+", "(", or
    ``_PHONE_HINT`` within its ``HINT_CHARS`` characters or more."""
    return "+" in text or "(" in text or (len(text) >= HINT_CHARS and _phone_hint(text))


# For ``may_have_pii`` on ASCII text: "@", "+", "(", ":" and "%" become "!", the separators of
# ``_PHONE_HINT`` (whitespace, "." and "-") become "-", digits "0", anything else "a".
_GUARD_CLASSES = bytes(
    ord("!")
    if ch in "@+(:%"
    else ord("-")
    if ch.isspace() or ch in ".-"
    else ord("0")
    if ch.isdecimal()
    else ord("a")
    for ch in map(chr, range(256))
)


def may_have_pii(text: str) -> bool:
    """False only if no part of ``text`` can hold what ``has_pii`` looks for.

    A ``%`` may start a percent-encoded ``@`` or ``+``, so it is a guard too.
    Each term is implied by a guard ``has_pii`` passes before it searches (with the
    length conditions left out; on ASCII text, one colon stands for "::" or three),
    and each holds for ``text`` whenever it holds for any substring of it (a
    character present, a count reached, an unanchored search that matches): so one
    call on ids joined together clears each of them, and a ``True`` only means "ask
    ``has_pii``". ASCII text is read in one ``bytes.translate`` to character classes,
    where ``000-000`` is ``_PHONE_HINT`` (one separator, any of the three).
    """
    if text.isascii():
        # Back to str for ``in``: bytes.__contains__ first tries its argument as an int
        # (an exception raised and cleared), and find() parses its arguments the old,
        # slow way; a decode of ASCII is a copy.
        t = text.encode().translate(_GUARD_CLASSES).decode()
        # count() parses its arguments the slow way too: asked only of text with a dot.
        return (
            "!" in t
            or "000-000" in t
            or ("." in text and text.count(".") >= 3)
            or _RUN_GUARD.search(t) is not None
            or (
                ("0--0" in t or "0---0" in t)
                and _RUN_GUARD.search(_WRAP_SHAPE.sub("0-", t)) is not None
            )
            or _CARD_RUN_SHAPE in t
        )
    text = _folded(text)
    return (
        "@" in text
        or "%" in text
        or "+" in text
        or "(" in text
        or "::" in text
        or text.count(":") >= 3
        or text.count(".") >= 3
        or _phone_hint(text)
    )


def scrub_text(text: str) -> str:
    """``text`` with every e-mail, IP address, phone and card number masked (read, and where
    anything is masked returned, with ``_FOLDS`` applied: ``_folded``; the invisible
    characters ordinary text needs, and the digits of other scripts, are kept where the
    text so read hides nothing: ``_kept_folds``, ``_DIGIT_FOLDS``)."""
    if not has_pii(text):
        return text
    folded = _folded(text)
    if folded is not text:
        kept = _kept_folds(text)
        if kept != folded:  # it holds characters kept: is nothing hidden among them?
            kept, clean = _kept_passes(kept)
            if clean:
                return kept
    masked, clean = _passes(folded)
    return masked if clean else _whole_mask(masked)


def _kept_passes(kept: str) -> tuple[str, bool]:
    """``_passes`` on ``kept`` (``_kept_folds``), with its digits of other scripts kept
    where it is masked as with ASCII digits; else read and returned with ASCII digits
    (always in a text over ``_PASS_CHARS``: one reading only)."""
    if _WIDE_DIGIT.search(kept) is None:
        return _passes(kept)
    ascii_digits = kept.translate(_DIGIT_FOLDS)
    if len(kept) > _PASS_CHARS:
        return _passes(ascii_digits)
    masked, clean = _passes(kept)
    ascii_masked, ascii_clean = _passes(ascii_digits)
    if clean and ascii_clean and masked.translate(_DIGIT_FOLDS) == ascii_masked:
        return masked, True
    return ascii_masked, ascii_clean


# A pattern starts only where a token starts, and a match glued after another was, when
# ``re.sub`` read it, in the middle of that one's run: ``+14155550123a:b:c:d:e:f:1:2``
# kept its address after the phone was masked (``<phone>a:b:c:d:e:f:1:2``), as did
# ``ann@example.com(ann@example.com`` its second address; a mask is a token's end, so a
# second pass finds it. The masks are applied again while the text so masked still holds
# one (``has_pii``), at most ``_PASSES`` times in all: one glued to another, or a few in a
# row, need two or three. A text still holding one after that (a run of glued numbers
# made to need a pass for each) is masked whole. A pass after the first reads the whole
# text only in one of ``_PASS_CHARS`` characters or fewer; a longer one is read again
# only around its masks (``_repassed``: 32 KB of glued numbers cost 3.8 ms a pass, and
# four whole passes made it 17 ms a line).
_PASSES = 4
_PASS_CHARS = 2048


def _passes(text: str) -> tuple[str, bool]:
    """``_masked`` on ``text``, again while what it returns holds a pattern (``has_pii``)
    and the pass changes it, at most ``_PASSES`` passes (beyond ``_PASS_CHARS``, the later
    ones around the masks only: ``_repassed``); and whether what it returns holds none."""
    masked = _masked(text)
    if len(text) > _PASS_CHARS:
        if not has_pii(masked):
            return masked, True
        return (masked, False) if masked == text else _repassed(masked)
    for _ in range(_PASSES - 1):
        if not has_pii(masked):
            return masked, True
        if masked == text:
            return masked, False
        text, masked = masked, _masked(masked)
    return masked, not has_pii(masked)


# What a mask frees lies next to it: a match glued after it (its token now starts
# there), one glued before it (a lookahead that read the masked text's first character),
# or one that read the masked text in a lookbehind or lookahead; each within
# ``_NEAR - _EDGE`` characters of the mask (a phone is at most 27 characters, an IPv6
# address 45; the lookarounds read at most 7 characters back and 36 forward). Around
# each mask a window of ``_NEAR`` characters a side is masked again (windows that meet
# are one); its first and last ``_EDGE`` characters, unless the text starts or ends
# there, are a margin, where a cut may make a token start or end that the text does not
# have: a window whose margin changes is not trusted, and the text is masked whole. In
# the window's middle the patterns read what they read in the whole text. A match
# longer than that (an address with a local part of 80 characters glued after a mask)
# is not found there: the text is then masked whole too, since what is returned is
# clean only if ``has_pii`` finds nothing in the whole of it. Every pass after the first
# reads around the masks the one before made, at most ``_PASSES - 1`` passes reading
# at most as many characters as the text has (or ``_PASS_CHARS`` a pass, if more).
_NEAR = 128
_EDGE = 48
MASK_FOUND = re.compile("<(?:email|ip|phone|card)>")


def _windows(masks: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The windows (start, end) of ``_NEAR`` characters around each of ``masks`` (in
    order) in a text of ``n`` characters; windows that meet or overlap are one."""
    out: list[tuple[int, int]] = []
    for start, end in masks:
        a, b = max(0, start - _NEAR), min(n, end + _NEAR)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _common_head(x: str, y: str, most: int | None = None) -> int:
    """The length of the longest common start of ``x`` and ``y`` (at most ``most``), found
    by halving: each step one comparison of slices in C, where a loop reads each character."""
    lo, hi = 0, min(len(x), len(y)) if most is None else most
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if x[:mid] == y[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _repassed(text: str) -> tuple[str, bool]:
    """``text`` (a first pass's output, holding a pattern) masked again around its masks
    (``_NEAR``), then around the masks each such pass makes, at most ``_PASSES - 1``
    passes; and whether what it returns holds no pattern (``False`` also where a window
    cannot be trusted, or the passes or the characters they may read run out before
    it holds none)."""
    budget = max(len(text), (_PASSES - 1) * _PASS_CHARS)
    masks = [m.span() for m in MASK_FOUND.finditer(text)]
    for last in range(_PASSES - 2, -1, -1):
        n = len(text)
        windows = _windows(masks, n)
        budget -= sum(b - a for a, b in windows)
        if not windows or budget < 0:
            # The pass before may have left nothing: windows around every mask of a text
            # of addresses cover it whole, and the one after the pass that masked its last
            # pattern ran out (``_PASS_CHARS`` a pass) before finding it has none left.
            return text, not has_pii(text)
        parts: list[str] = []
        masks = []
        done = shift = 0
        for a, b in windows:
            old = text[a:b]
            new = _masked(old)
            if new == old:
                continue
            if (a > 0 and not new.startswith(text[a : a + _EDGE])) or (
                b < n and not new.endswith(text[b - _EDGE : b])
            ):
                return text, False
            if not last and has_pii(new):  # the passes run out here: spare the whole search
                return text, False
            parts.append(text[done:a])
            # What this pass changed (its masks, and a glued address's tail or head it
            # dropped), not every mask the window holds: those the pass before read
            # already, and around a text's every address they took the whole budget.
            head = _common_head(old, new)
            tail = _common_head(old[::-1], new[::-1], min(len(old), len(new)) - head)
            masks.append((a + shift + head, a + shift + len(new) - tail))
            parts.append(new)
            shift += len(new) - len(old)
            done = b
        if not parts:
            break
        parts.append(text[done:])
        text = "".join(parts)
    return text, not has_pii(text)


def _whole_mask(text: str) -> str:
    """The mask of a pattern found in ``text`` (decoded as ``_masked`` reads it): what stands
    for a text that ``_PASSES`` passes leave holding one. Each search behind its guard, the
    phone's before the card's (a run of glued numbers has a phone at its start, and a
    search for a card would read it all)."""
    decoded = _percent_decoded(text) if "%" in text else text
    if "@" in decoded and (EMAIL.search(decoded) or QUOTED_EMAIL.search(decoded)):
        return "<email>"
    if (_may_be_ipv6(decoded) and IPV6.search(decoded)) or (
        decoded.count(".") >= 3 and IPV4.search(decoded)
    ):
        return "<ip>"
    if _may_be_phone(decoded) and PHONE.search(decoded):
        return "<phone>"
    if CARD.search(decoded):
        return "<card>"
    return "<phone>" if _side_by_side(decoded) else "<email>"


def _masked(text: str) -> str:
    """``scrub_text``'s masks on ``text``, already folded."""
    if "%" in text:
        text = _percent_decoded(text)
    # The patterns of ``_MASKS`` in turn, each skipped where its guard (true wherever it
    # matches, in the text as the masks before it left it) proves it would change nothing.
    if '"@' in text:
        text = QUOTED_EMAIL.sub("<email>", text)
    if "@" in text:
        text = EMAIL.sub("<email>", text)
    if _may_be_ipv6(text):
        text = IPV6.sub("<ip>", text)
    if text.count(".") >= 3:
        text = IPV4.sub("<ip>", text)
    if _may_be_phone(text):  # a card number passes the phone guard too (``_searched``)
        if _may_be_card(text):
            text = CARD.sub("<card>", text)
        # Before the phone pattern, which may find a North American number inside a run
        # of numbers side by side (``...1486 917 020 7946 0958``) and leave the rest.
        if _may_be_side_by_side(_shape(text)):
            text = _side_by_side_masked(text)
        text = PHONE.sub("<phone>", text)
    if "<email>@" in text:
        # Addresses glued together ("a@b.coc@d.org") leave the last domain behind.
        text = _EMAIL_TAIL.sub("", text)
    if "@<email>" in text:
        text = _EMAIL_HEAD.sub("", text)
    return text


# Keys that open what describes the person rather than the event (privacy._PERSONAL:
# Segment's and RudderStack's mobile SDKs send the cached traits in ``context.traits`` on
# every call, the device id and name beside the device type, browsers their user agent).
# Single quotes too: a producer writing a Python dict's repr sends no JSON at all. And
# ``integrations`` holding a destination's options (an object, a list or a string in the
# object: what ``privacy._redact_personal`` redacts in a parsed line), where Segment puts
# a destination's ids of the device (``AppsFlyer.appsFlyerId``); its ``true``/``false``
# switches alone cut nothing.
PERSONAL_KEY = re.compile(
    r"""["'](?:traits|location|geo|device|userAgent)["']\s*:"""
    r"""|["']integrations["']\s*:\s*\{[^{}\[]*?(?:[{\[]|:\s*["'])"""
)


def cut_personal(text: str) -> str:
    """``text`` up to the first key of ``PERSONAL_KEY``: a line kept without being parsed.

    A dead letter's line that parses has those values redacted in place; one that does
    not (cut short, not JSON, not UTF-8, over the size limit) cannot be walked, so what
    it keeps ends before the first of them.

    >>> cut_personal('{"type":"identify","userId":"u1","traits":{"name":"Ann"')
    '{"type":"identify","userId":"u1",'
    """
    found = PERSONAL_KEY.search(text)
    return text if found is None else text[: found.start()]


# A line's JSON escapes (``\u0040``, ``\u002b``, ``\uff20``, ``\n`` before a "+") would hide
# what they write from the patterns. They are undone string by string: ``_PIECES`` reads
# the text as JSON does, left to right, in one linear pass; each match is a run of
# strings and text without an escape (``_CLEAN``, left as it is), then one string
# holding one (its closing quote missing where the line is cut short) or a run of text
# outside any string holding a backslash (a line that is not JSON: a Python repr's
# ``'ann\u0040x.io'``). ``\/``, ``\\`` and ``\"`` count as no escape: the patterns read
# a backslash before "/", "\" or a quote as they read the "/", "\" or quote it writes
# (none is a letter, digit or separator of theirs; the quoted local part is known in
# either writing), and JSON encoders write every "/" of a URL so: a text without any
# other (``_HIDING``) is not read this way at all. Only a string or run whose decoding
# holds a pattern is rewritten, its decoding masked, a string as JSON writes it: a line
# that parsed still parses, to the same values but for the masks, and keeps its
# structural scrub (``Privacy.scrub_raw``). (Undoing ``\\u0040``, an escaped backslash
# then ``u0040``, into ``\@`` once made such a line unparseable.)
_CLEAN = r'(?:"(?:[^"\\]++|\\[/"\\])*+"|[^"\\]++(?!\\))*+'
_HIDING = re.compile(r'\\[^/"\\]')
_PIECES = re.compile(rf'({_CLEAN})(?:"((?:[^"\\]++|\\.)*+)("?)|([^"]++))?', re.DOTALL)
_ESCAPE = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|(.))",
    re.DOTALL,
)
_SHORT_ESCAPES = {
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    '"': '"',
    "\\": "\\",
    "/": "/",
}


def _unescaped_char(match: re.Match[str]) -> str:
    """The character one JSON escape writes; a lone surrogate is U+FFFD (it would make the
    text unwritable), an escape JSON does not know is left as it is."""
    high, low, code, short = match.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
    if code is not None:
        point = int(code, 16)
        return "\ufffd" if 0xD800 <= point < 0xE000 else chr(point)
    return _SHORT_ESCAPES.get(short, match.group(0))


def _unescaped_scrubbed(text: str) -> tuple[str, int]:
    """``text`` with each string (or run outside one) whose JSON escapes hide a pattern
    rewritten, masked (``_PIECES``); and by how many characters the rewritten ones grew
    at most (a raw control character is escaped when written back)."""
    grown = 0

    def piece(match: re.Match[str]) -> str:
        nonlocal grown
        clean, body, close, run = match.groups()
        old = body if body is not None else run
        if old is None or "\\" not in old:
            return match.group(0)
        decoded = _ESCAPE.sub(_unescaped_char, old)
        if not has_pii(decoded):
            return match.group(0)
        new = scrub_text(decoded)
        if body is not None:
            new = json.dumps(new, ensure_ascii=False)[1:-1]
            new, old = f'"{new}{close}', f'"{old}{close}'
        grown += max(0, len(new) - len(old))
        return clean + new

    return _PIECES.sub(piece, text), grown


def bounded_text(raw: bytes | str, limit: int) -> str:
    """At most ``limit`` characters of ``raw``, decoded with replacement, scrubbed, then cut.

    Only ``limit + MARGIN`` units are ever decoded or scanned, whatever the size of
    ``raw``; what JSON escapes write is scrubbed too (``_PIECES``), so they hide nothing.
    """
    head = raw[: limit + MARGIN]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    grown = 0
    if "\\" in text and _HIDING.search(text) is not None:
        text, grown = _unescaped_scrubbed(text)
    text = scrub_text(text)
    if len(head) < len(raw):
        # What straddles the end of the scanned part may be half an address.
        text = text[: max(0, min(limit, len(text) - MARGIN - grown))]
    return text[:limit]


def preview(value: object, limit: int = 64) -> str:
    """A short, scrubbed description of a value for an error message (never its whole repr)."""
    if isinstance(value, str):
        return repr(bounded_text(value, limit))
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)[:limit]
    size = len(value) if isinstance(value, dict | list) else 0
    return f"a {type(value).__name__} of {size} items"
