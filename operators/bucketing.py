"""Deterministic bucketing as GrowthBook's SDKs do it, so both put a user in the same arm.

Written from GrowthBook's "Build your own SDK" spec: hash version 2 is
``fnv1a32(str(fnv1a32(seed + id))) % 10000 / 10000``; an experiment's arms are
ranges of [0, 1) laid out from the weights, each shrunk by the coverage from its
own start, so lowering or raising coverage never moves anyone between arms (it
only moves people in or out). FNV-1a runs over UTF-16 code units, as the
JavaScript reference SDK does (the same as code points for ids in the BMP).

>>> round(gb_hash("seed", "a", 2), 4)
0.0505
>>> bucket_ranges(2, 0.5, None)
[(0.0, 0.25), (0.5, 0.75)]
>>> choose(0.3, bucket_ranges(2, 0.5, None))
-1
"""

from __future__ import annotations

from collections.abc import Sequence

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK = 0xFFFFFFFF


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a over the UTF-16 code units of ``text``."""
    h = _FNV_OFFSET
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h ^= data[i] | (data[i + 1] << 8)
        h = (h * _FNV_PRIME) & _MASK
    return h


def gb_hash(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook's bucket of ``value`` in [0, 1); ``None`` for an unknown version."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def bucket_ranges(
    arms: int, coverage: float, weights: Sequence[float] | None
) -> list[tuple[float, float]]:
    """Each arm's ``[start, end)``: arms laid end to end by weight, each cut to ``coverage``.

    As the spec says: coverage is clamped to [0, 1]; weights of the wrong length or
    not summing to 1 (within 0.01) fall back to equal weights.
    """
    coverage = min(1.0, max(0.0, coverage))
    equal = [1.0 / arms] * arms
    w = list(weights) if weights is not None else equal
    if len(w) != arms or not 0.99 <= sum(w) <= 1.01:
        w = equal
    out: list[tuple[float, float]] = []
    start = 0.0
    for weight in w:
        out.append((start, start + coverage * weight))
        start += weight
    return out


def choose(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """The arm whose range holds ``n`` (start inclusive, end exclusive), or -1."""
    for i, (lo, hi) in enumerate(ranges):
        if lo <= n < hi:
            return i
    return -1
