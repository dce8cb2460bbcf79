"""Amounts of money and quantities of Segment's e-commerce spec, as numbers or as text.

The spec types ``price``, ``total``, ``revenue`` and ``quantity`` as numbers, but
warehouse exports (a NUMERIC column is written as a JSON string), form posts and some
server libraries send them as text. A *plain decimal text* is read as its number: ASCII
digits, at most one ``.`` followed by digits, and an optional exponent (``1.5e3``, as
BigQuery writes a large FLOAT64). No sign (an amount is never below 0), no spaces,
thousands separators, decimal commas or currency symbols: ``"49,90"`` could be 49.9 or
4990, so it is not guessed at. A number or text outside 0 to ``MAX_AMOUNT`` is unusable.

>>> amount(49.9), amount("49.90"), amount("120"), amount("1.5e3")
(49.9, 49.9, 120.0, 1500.0)
>>> [amount(v) for v in ("49,90", "$49.90", "NaN", "1e999", "", " 5", "-3", True, None)]
[None, None, None, None, None, None, None, None, None]
>>> quantity(2), quantity(2.0), quantity("2"), quantity("2.0"), quantity("2.5"), quantity(0)
(2, 2, 2, 2, None, None)
>>> quantity(10**9), quantity(10**9 + 1), quantity(1e20), quantity("99999999999999999999")
(1000000000, None, None, None)
"""

from __future__ import annotations

import re
from typing import Final

# An amount of money beyond this (a quadrillion, in any currency) is no real price or
# order: JSON allows up to 1.8e308, and two such orders would sum to infinity, which a
# record can only write as null where its contract says number. Below 0 it is no price
# or order either (a refund is an ``Order Refunded``), and the contracts say minimum 0.
MAX_AMOUNT: Final = 1e15
# A quantity beyond this (a billion of one product) is none a shop sells. Unbounded, a
# line's quantity, and the cart's item count that sums them, could pass what a JSON
# integer holds in every reader (orjson writes none beyond 64 bits: one line of
# ``"quantity": 1e20`` stopped the whole replay at its first output).
MAX_QUANTITY: Final = 10**9
PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER = (int, float)


def amount(value: object) -> float | None:
    """``value`` as an amount from 0 to ``MAX_AMOUNT``: a JSON number or a plain decimal
    text; None for anything else (a bool, another text, out of range)."""
    if type(value) is str:
        if PLAIN_DECIMAL.fullmatch(value) is None:
            return None
        value = float(value)
    elif not isinstance(value, _NUMBER) or isinstance(value, bool):
        return None
    if 0 <= value <= MAX_AMOUNT:  # NaN is in no range
        return float(value)
    return None


def quantity(value: object) -> int | None:
    """``value`` as a quantity: a whole number from 1 to ``MAX_QUANTITY`` (``2.0`` is 2),
    also as a plain decimal text; None for anything else."""
    if type(value) is str:
        if PLAIN_DECIMAL.fullmatch(value) is None:
            return None
        value = float(value)
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and 0 < value <= MAX_QUANTITY:
        return value
    return None
