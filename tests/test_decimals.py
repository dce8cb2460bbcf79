"""``round_places`` is ``round(x, places)``: the same value, sign and type, over random
floats, decimal ties and the floats next to them, the limits of its own path, and what
it leaves to ``round`` (ints, non-finite and large values)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators import decimals
from audienceflow.operators.decimals import round_places

PLACES = st.sampled_from([0, 1, 2, 3, 4, 6, 9])


def _same(x: object, places: int) -> None:
    want = round(x, places)  # type: ignore[call-overload]
    got = round_places(x, places)
    assert type(got) is type(want), (x, places)
    if isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
        return
    assert got == want, (x, places, got, want)
    assert math.copysign(1.0, got) == math.copysign(1.0, want), (x, places)  # -0.0


def _bits(n: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", n))[0])


@pytest.mark.timeout(60)
@given(st.floats(allow_nan=True, allow_infinity=True), PLACES)
@settings(max_examples=3000)
@example(2.675, 2)  # 2.67499999...: stored below the tie
@example(-1e-9, 6)  # rounds to -0.0
@example(-0.0, 3)
@example(0.5, 0)  # ties to even
@example(1.5, 0)
@example(2.5, 0)
@example(1774353602.1975, 3)  # a timestamp at a half millisecond
def test_equal_to_round_on_any_float(x: float, places: int) -> None:
    _same(x, places)


@pytest.mark.timeout(60)
@given(st.integers(-(10**13), 10**13), PLACES, st.sampled_from([-1, 0, 1]), st.integers(0, 3))
@settings(max_examples=3000)
def test_equal_to_round_at_and_next_to_decimal_ties(
    m: int, places: int, side: int, steps: int
) -> None:
    # m + 1/2 units of the last place, and the floats a few steps either side of it:
    # where the fast path's guard must hand over to ``round``.
    x = (m + 0.5) / 10**places
    for _ in range(steps):
        if side:
            x = math.nextafter(x, side * math.inf)
    _same(x, places)


@pytest.mark.timeout(60)
@given(st.integers(0, 2**64 - 1), PLACES)
@settings(max_examples=3000)
def test_equal_to_round_on_any_bit_pattern(n: int, places: int) -> None:
    _same(_bits(n), places)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("places", [0, 2, 3, 6, 9])
def test_equal_to_round_around_its_limit(places: int) -> None:
    # The fast path ends at |x * 10**places| = 2**44: values either side of it.
    edge = decimals._LIMIT / 10**places
    for base in (edge, -edge):
        x = base
        for _ in range(50):
            _same(x, places)
            _same(math.nextafter(x, math.inf), places)
            x = math.nextafter(x, 0.0) - 0.37 / 10**places


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", [0, 7, -3, 10**20, True])
def test_an_int_stays_an_int(value: int) -> None:
    _same(value, 2)


@pytest.mark.timeout(60)
def test_the_fast_path_is_taken() -> None:
    # Usual values never reach ``round(x, places)``: it is the cost this module removes.
    calls = []
    real = round

    def counting(*args: object) -> object:
        if len(args) == 2:
            calls.append(args)
        return real(*args)  # type: ignore[call-overload]

    decimals.round = counting  # type: ignore[attr-defined]
    try:
        round_places(1774353602.19751, 3)  # a timestamp to the millisecond
        for x in (0.1234567, 12.345, -0.004, 99999.99):
            round_places(x, 3)
            round_places(x, 6)
    finally:
        del decimals.round  # type: ignore[attr-defined]
    assert calls == []
