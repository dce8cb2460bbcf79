"""Assignment matches GrowthBook's SDKs, so a web front end and the engine agree on arms.

The vectors below are GrowthBook's language-agnostic SDK test cases, from
``packages/sdk-js/test/cases.json`` of the public repository growthbook/growthbook
(spec version 0.5.4), sections ``hash`` ([seed, value, version, expected]),
``getBucketRange`` ([name, [arms, coverage, weights], expected ranges]) and, for
whole assignments, the ``feature`` cases "empty experiment rule - a/b/c"
(hash v1, seed = feature key, three equal arms) and "creates experiments
properly" (hash v2, coverage 0.99, ranges [[0, 0.1], [0.1, 1]]) and "disables sticky
bucketing when disabled by experiment" (hash v2, seed feature-exp, unequal weights).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audienceflow.operators.bucketing import bucket_ranges, choose, fnv1a32, gb_hash

HASH_CASES = [
    ("", "a", 1, 0.22),
    ("", "b", 1, 0.077),
    ("b", "a", 1, 0.946),
    ("ef", "d", 1, 0.652),
    ("asdf", "8952klfjas09ujk", 1, 0.549),
    ("", "123", 1, 0.011),
    ("", '___)((*":&', 1, 0.563),
    ("seed", "a", 2, 0.0505),
    ("seed", "b", 2, 0.2696),
    ("foo", "ab", 2, 0.2575),
    ("foo", "def", 2, 0.2019),
    ("89123klj", "8952klfjas09ujkasdf", 2, 0.124),
    ("90850943850283058242805", "123", 2, 0.7516),
    ("()**(%$##$%#$#", '___)((*":&', 2, 0.0128),
    ("abc", "def", 99, None),
]

RANGE_CASES = [
    ("normal 50/50", (2, 1, None), [(0, 0.5), (0.5, 1)]),
    ("reduced coverage", (2, 0.5, None), [(0, 0.25), (0.5, 0.75)]),
    ("zero coverage", (2, 0, None), [(0, 0), (0.5, 0.5)]),
    ("4 variations", (4, 1, None), [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]),
    ("uneven weights", (2, 1, [0.4, 0.6]), [(0, 0.4), (0.4, 1)]),
    ("uneven weights, 3 variations", (3, 1, [0.2, 0.3, 0.5]), [(0, 0.2), (0.2, 0.5), (0.5, 1)]),
    (
        "uneven weights, reduced coverage, 3 variations",
        (3, 0.2, [0.2, 0.3, 0.5]),
        [(0, 0.04), (0.2, 0.26), (0.5, 0.6)],
    ),
    ("negative coverage", (2, -0.2, None), [(0, 0), (0.5, 0.5)]),
    ("coverage above 1", (2, 1.5, None), [(0, 0.5), (0.5, 1)]),
    ("weights sum below 1", (2, 1, [0.4, 0.1]), [(0, 0.5), (0.5, 1)]),
    ("weights sum above 1", (2, 1, [0.7, 0.6]), [(0, 0.5), (0.5, 1)]),
    (
        "weights.length not equal to num variations",
        (4, 1, [0.4, 0.4, 0.2]),
        [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)],
    ),
    ("weights sum almost equals 1", (2, 1, [0.4, 0.5999]), [(0, 0.4), (0.4, 0.9999)]),
]


@pytest.mark.parametrize(("seed", "value", "version", "expected"), HASH_CASES)
def test_hash_matches_growthbook_vectors(
    seed: str, value: str, version: int, expected: float | None
) -> None:
    got = gb_hash(seed, value, version)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("name", "args", "expected"), RANGE_CASES, ids=[c[0] for c in RANGE_CASES])
def test_bucket_ranges_match_growthbook_vectors(
    name: str, args: tuple[int, float, list[float] | None], expected: list[tuple[float, float]]
) -> None:
    got = bucket_ranges(*args)
    assert len(got) == len(expected)
    for (lo, hi), (elo, ehi) in zip(got, expected, strict=True):
        assert lo == pytest.approx(elo, abs=1e-9) and hi == pytest.approx(ehi, abs=1e-9)


@pytest.mark.parametrize(
    ("user", "seed", "version", "ranges", "bucket", "arm"),
    [
        ("123", "feature", 1, bucket_ranges(3, 1, None), 0.863, 2),
        ("456", "feature", 1, bucket_ranges(3, 1, None), 0.178, 0),
        ("fds", "feature", 1, bucket_ranges(3, 1, None), 0.514, 1),
        ("123", "feature", 2, [(0, 0.1), (0.1, 1.0)], 0.5231, 1),
        ("i123", "feature-exp", 2, bucket_ranges(3, 1, [0.3334, 0.3333, 0.3333]), 0.9943, 2),
    ],
)
def test_whole_assignment_matches_growthbook_feature_cases(
    user: str, seed: str, version: int, ranges: list[tuple[float, float]], bucket: float, arm: int
) -> None:
    n = gb_hash(seed, user, version)
    assert n == pytest.approx(bucket, abs=1e-12)
    assert choose(n, ranges) == arm


def test_fnv1a32_of_the_empty_string_is_the_offset_basis() -> None:
    assert fnv1a32("") == 2166136261
    assert fnv1a32("a") == 0xE40C292C  # the published FNV-1a 32-bit test value


def test_range_ends_are_exclusive() -> None:
    ranges = [(0.0, 0.5), (0.5, 1.0)]
    assert choose(0.5, ranges) == 1
    assert choose(0.4999, ranges) == 0
    assert choose(1.0, ranges) == -1


@given(
    user=st.text(min_size=1, max_size=20),
    cov=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    w=st.floats(0.05, 0.95),
)
def test_changing_coverage_never_moves_a_user_between_arms(
    user: str, cov: tuple[float, float], w: float
) -> None:
    low, high = sorted(cov)
    n = gb_hash("exp-seed", user, 2)
    assert n is not None
    before = choose(n, bucket_ranges(2, low, [w, 1 - w]))
    after = choose(n, bucket_ranges(2, high, [w, 1 - w]))
    if before >= 0:
        assert after == before  # raising coverage only lets people in
