"""The currency of amounts of money: the one place an event's amounts are converted.

Segment's e-commerce spec types amounts as numbers and gives an event its ``currency``
(an ISO 4217 code) beside them. Sessions, carts and experiment goals read amounts only
through ``amounts.amount`` and ``Money``, so each reads them the same way:

- an amount is a number, or a plain decimal text, from 0 to ``MAX_AMOUNT``
  (``amounts.amount``), else it is unusable (the caller counts ``unusable:<what>``);
- with ``money.currency`` unset (the default), an event's ``currency`` is not read and
  amounts are summed as sent, the way they were before currencies were read at all;
- with ``money.currency`` set (``EUR``), an event without a ``currency`` is taken to be
  in it; an event in another currency is converted with ``money.rates`` (how many units
  of ``money.currency`` one unit of that currency is worth: fixed rates you choose), and
  an event in a currency without a rate has no usable amount (``unusable:currency``):
  summing euros with yen would be a number with no meaning.

>>> eur = Money("EUR", {"USD": 0.5})
>>> eur.factor({"total": 4}), eur.factor({"currency": " usd "}), eur.factor({"currency": "JPY"})
(1.0, 0.5, None)
>>> Money().factor({"currency": "JPY"}), eur.convert("8", {"currency": "USD"})
(1.0, 4.0)

With ``money.currency`` unset, the currencies of the amounts summed are still counted
(``count_currency``), so a stream that mixes them is told (``mixed_warning``):

>>> seen: dict[str, list[int]] = {}
>>> for code in ("JPY", " eur", "USD", "Euro", None):
...     count_currency(seen, {"currency": code}, ORDERS)
>>> seen
{'JPY': [1, 0], 'EUR': [1, 0], 'USD': [1, 0], 'other': [1, 0]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from audienceflow.operators.amounts import MAX_AMOUNT, amount

CURRENCY_CODE = re.compile(r"[A-Z]{3}")  # an ISO 4217 alphabetic code, as configured


@dataclass(frozen=True)
class Money:
    """The ``money`` section: the stream's currency and fixed rates into it."""

    currency: str | None = None
    rates: Mapping[str, float] = field(default_factory=dict)

    def factor(self, props: Mapping[str, object]) -> float | None:
        """What the event's amounts are multiplied by to be in ``currency`` (1.0 when
        currencies are not read, or the event is in ``currency`` or names none); None
        when its currency is unknown here, or not text."""
        if self.currency is None:
            return 1.0
        code = props.get("currency")
        if code is None:
            return 1.0
        if type(code) is not str:
            return None
        code = code.strip().upper()
        if code == self.currency or code == "":
            return 1.0
        return self.rates.get(code)

    def convert(self, value: object, props: Mapping[str, object]) -> float | None:
        """``amount(value)`` in ``currency``; None when either is unusable.

        A converted amount past ``MAX_AMOUNT`` is unusable too, so no rate can make a
        sum overflow.
        """
        got = amount(value)
        if got is None or self.currency is None:
            return got
        f = self.factor(props)
        if f is None:
            return None
        got *= f
        return got if got <= MAX_AMOUNT else None


NO_MONEY = Money()  # currencies not read: amounts summed as sent

# With ``money.currency`` unset: the events whose amounts were summed, per currency they
# name (code -> [orders, cart events]). At most ``MAX_CODES`` codes are kept (a shard's
# first ones); the rest, and a ``currency`` that is no ISO code once normalised as
# ``Money.factor`` normalises it (or not text), count as ``OTHER``. Only ISO-shaped codes
# become keys, so no free text of an event reaches the summary or a metric's labels.
MAX_CODES: Final = 16
OTHER: Final = "other"
ORDERS: Final = 0
CARTS: Final = 1


def currency_seen(props: Mapping[str, object]) -> str | None:
    """The currency an event names, as ``count_currency`` counts it: its code (``" usd "``
    is USD), ``OTHER`` for anything else; None when it names none (absent or blank)."""
    code = props.get("currency")
    if code is None:
        return None
    if type(code) is not str:
        return OTHER
    code = code.strip().upper()
    if code == "":
        return None
    return code if CURRENCY_CODE.fullmatch(code) else OTHER


def count_currency(seen: dict[str, list[int]], props: Mapping[str, object], kind: int) -> None:
    """Count one event whose amounts were summed (``kind``: ``ORDERS`` or ``CARTS``) under
    the currency it names; one naming none is not counted."""
    code = currency_seen(props)
    if code is None:
        return
    got = seen.get(code)
    if got is None:
        if code != OTHER and len(seen) - (OTHER in seen) >= MAX_CODES:
            code = OTHER
            got = seen.get(code)
        if got is None:
            got = seen[code] = [0, 0]
    got[kind] += 1


def merge_currencies(parts: Iterable[Mapping[str, Sequence[int]]]) -> dict[str, dict[str, int]]:
    """Shards' ``count_currency`` counts summed, as the summary shows them: per code
    ``{"orders": n, "cart_events": m}``, codes in order then ``OTHER``; past ``MAX_CODES``
    codes the least counted (then the latest in order) join ``OTHER``.

    >>> merge_currencies([{"EUR": [2, 1]}, {"EUR": [1, 0], "other": [0, 3], "USD": [1, 0]}])
    {'EUR': {'orders': 3, 'cart_events': 1}, 'USD': {'orders': 1, 'cart_events': 0}, \
'other': {'orders': 0, 'cart_events': 3}}
    """
    total: dict[str, list[int]] = {}
    for part in parts:
        for code, counts in part.items():
            got = total.setdefault(code, [0, 0])
            got[ORDERS] += int(counts[ORDERS])
            got[CARTS] += int(counts[CARTS])
    other = total.pop(OTHER, [0, 0])
    codes = sorted(total, key=lambda c: (-sum(total[c]), c))
    for code in codes[MAX_CODES:]:
        other[ORDERS] += total[code][ORDERS]
        other[CARTS] += total[code][CARTS]
    keep = sorted(codes[:MAX_CODES])
    if sum(other):
        keep.append(OTHER)
        total[OTHER] = other
    return {c: {"orders": total[c][ORDERS], "cart_events": total[c][CARTS]} for c in keep}


def mixed_warning(merged: Mapping[str, Mapping[str, int]], ahead: bool = False) -> str | None:
    """The warning for amounts of more than one currency summed as one (``merged``: as
    ``merge_currencies`` gives it, counted with ``money.currency`` unset); None for one.
    ``ahead``: of a sample not replayed yet (they *would be* summed).

    >>> print(mixed_warning({"EUR": {"orders": 1, "cart_events": 0},
    ...                      "JPY": {"orders": 2, "cart_events": 1}}))
    amounts in 2 currencies were summed as if they were one (money.currency is unset, so \
an event's currency is not read): EUR 1 order, JPY 2 orders and 1 cart event; revenue, \
order values, cart values and experiment revenue mix them. Set money.currency and \
money.rates (README: Carts, Money) to convert them into one
    """
    if len(merged) < 2:
        return None
    named = []
    for code, n in merged.items():
        what = " and ".join(
            _plural(k, noun)
            for k, noun in ((n["orders"], "order"), (n["cart_events"], "cart event"))
            if k
        )
        label = "other (not an ISO 4217 code, or past the codes kept)" if code == OTHER else code
        named.append(f"{label} {what}")
    return (
        f"amounts in {len(merged)} currencies {'would be' if ahead else 'were'} summed as if "
        "they were one "
        "(money.currency is unset, so an event's currency is not read): "
        + ", ".join(named)
        + "; revenue, order values, cart values and experiment revenue mix them. Set "
        "money.currency and money.rates (README: Carts, Money) to convert them into one"
    )


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
