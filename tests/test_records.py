"""Record formatting: the cached, fast ``iso`` equals ``datetime``'s formatting exactly."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from audienceflow.operators import records
from audienceflow.operators.records import iso


def _datetime_iso(ts: float) -> str:
    """What ``iso`` computed before it was cached: the reference."""
    dt = datetime.fromtimestamp(round(ts, 3), UTC)
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"


# Whole milliseconds, half-milliseconds (where rounding decides) and the floats next to
# them, from 1970 to the year 9999.
_MS = st.integers(0, 253_402_300_799_000)
_TIMES = st.one_of(
    _MS.map(lambda ms: ms / 1000),
    _MS.map(lambda ms: ms / 1000 + 0.0005),
    st.tuples(_MS, st.sampled_from([-math.inf, math.inf])).map(
        lambda p: math.nextafter(p[0] / 1000 + 0.0005, p[1])
    ),
    st.floats(0.0, 253_402_300_799.0),
)


@given(_TIMES)
@example(0.0)
@example(0.9995)  # rounds up into the next second
@example(1_772_438_402.1975)
@example(253_402_300_799.999)
def test_iso_formats_every_time_exactly_as_datetime_does(ts: float) -> None:
    iso.cache_clear()
    records._DAY_PREFIXES.clear()
    assert iso(ts) == _datetime_iso(ts)
    assert iso(ts) == _datetime_iso(ts)  # and again, from the cache


@given(st.one_of(st.floats(-1e12, -1e-9), st.floats(2.5e11, 1e12), st.just(math.nan)))
def test_iso_outside_1970_to_9999_is_still_datetime_s_or_its_error(ts: float) -> None:
    try:
        expected = _datetime_iso(ts)
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            iso(ts)
    else:
        assert iso(ts) == expected


def test_iso_keeps_its_caches_bounded() -> None:
    for i in range(3 * records._MAX_PREFIXES):
        iso(1_772_438_400.0 + i * 86400.5)  # a day and a half second apart: new days
    assert iso.cache_info().currsize <= 4096
    assert len(records._DAY_PREFIXES) <= records._MAX_PREFIXES
