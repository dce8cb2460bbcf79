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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

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
