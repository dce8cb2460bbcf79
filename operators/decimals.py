"""``round(x, places)`` for the few places outputs round to, equal bit for bit, faster.

CPython's ``round(x, n)`` writes ``x`` as a correctly rounded decimal string and
reads it back (``_Py_dg_dtoa``, ``_Py_dg_strtod``): ~2,000 instructions a call, and
records round two numbers per event. ``round_places`` gets the same float without the
string when it can prove it does:

- ``Y = x * 10**places`` exactly is within ``|y| * 2**-53`` of ``y``, the float
  product (``10**places`` is exact for ``places <= 22``). With ``|y| < 2**44`` that is
  below ``2**-9``, so if ``y`` is more than ``_GUARD`` (> ``2**-9``) from every
  half-integer, ``Y`` rounds to the integer ``y`` rounds to, ``m``, whatever the rule
  for ties (there is none to break). ``y - m`` is exact (Sterbenz).
- ``round`` returns the double nearest ``m / 10**places``; ``m`` and ``10**places``
  are exact doubles, and IEEE division is correctly rounded (ties to even, as strtod
  rounds): ``m / 10.0**places`` is that double. A zero keeps the sign of ``x``, as
  ``round`` gives it (``round(-1e-9, 6)`` is ``-0.0``): ``x * 0.0``.
- Anything else (a value near a tie, a large or non-finite one, an ``int``, which
  ``round`` returns as an ``int``) is ``round``'s own answer.

``tests/test_decimals.py`` compares it with ``round`` over random floats, ties and
near-ties.

>>> round_places(2.675, 2), round(2.675, 2)
(2.67, 2.67)
>>> round_places(-1e-9, 6), round_places(7, 2), round_places(0.0000125, 5)
(-0.0, 7, 1e-05)
"""

from __future__ import annotations

from typing import Any, Final

_SCALES: Final = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
_LIMIT: Final = 17592186044416.0  # 2**44: below it, ``x * scale`` is within 2**-9 of exact
_GUARD: Final = 0.498  # |y - m| below this: y is over 2**-9 from a half-integer


def round_places(x: Any, places: int) -> Any:
    """``round(x, places)``, the same value and type, for ``0 <= places <= 9``."""
    if type(x) is float and 0 <= places < 10:
        f: float = x
        scale: float = _SCALES[places]
        y = f * scale
        if -_LIMIT < y < _LIMIT:
            # The integer nearest y (a tie is never used: see the guard), in operations
            # mypyc compiles to C (``round`` and ``math`` are calls of Python objects).
            m = int(y)
            rest = y - m
            if rest >= 0.5:
                m += 1
            elif rest <= -0.5:
                m -= 1
            rest = y - m
            if -_GUARD < rest < _GUARD:
                if m == 0:
                    return f * 0.0  # the zero of the sign of x
                return m / scale
    return round(x, places)
