"""``clustering._nearest`` (the k-means++ seeding's nearest centre) against the plain
computation, on centres that may lack some of a point's keys (read as 0.0, the slow way)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.models import clustering

NAMES = [f"f{i}" for i in range(5)]
values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 3.0]),
)


@st.composite
def vectors(draw: Any) -> dict[str, float]:
    keys = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=len(NAMES), unique=True))
    return {k: draw(values) for k in keys}


def _reference_nearest(p: dict[str, float], centers: list[dict[str, float]]) -> tuple[int, float]:
    best, best_d = 0, float("inf")
    for j, c in enumerate(centers):
        d = sum((v - c.get(k, 0.0)) ** 2 for k, v in p.items())
        if d < best_d:
            best, best_d = j, d
    return best, best_d


@settings(max_examples=400, deadline=None)
@given(vectors(), st.lists(vectors(), min_size=1, max_size=5))
def test_nearest_equals_full_sums_when_centres_lack_keys(
    p: dict[str, float], centers: list[dict[str, float]]
) -> None:
    j, d = clustering._nearest(p, centers)
    want_j, want_d = _reference_nearest(p, centers)
    assert (j, float(d).hex()) == (want_j, float(want_d).hex())


def test_nearest_reads_a_key_a_centre_lacks_as_zero_after_reading_others() -> None:
    """The missing key comes after a found one, and after a centre that has every key:
    the distance is summed again from the first term, given up at the least so far."""
    p = {"a": 1.0, "b": 2.0}
    assert clustering._nearest(p, [{"a": 1.0}]) == (0, 4.0)
    assert clustering._nearest(p, [{"a": 0.0, "b": 0.0}, {"a": 1.0}]) == (1, 4.0)
    assert clustering._nearest(p, [{"a": 1.0}, {"a": 1.0, "b": 0.0}]) == (0, 4.0)
    assert clustering._nearest(p, [{"a": 1.0, "b": 1.5}, {"a": 1.0}]) == (0, 0.25)
    assert clustering._dist2_until(p.items(), {"a": 1.0}, 4.0) == 4.0
    assert clustering._dist2_until(p.items(), {"a": 3.0}, 4.0) == 4.0  # given up at "a"


@settings(max_examples=400, deadline=None)
@given(vectors(), st.lists(vectors(), min_size=1, max_size=5), st.sampled_from([0.0, 1.0, 1e6]))
def test_seeding_rows_equal_the_dict_sums_whichever_way_they_are_told(
    p: dict[str, float], centers: list[dict[str, float]], least: float
) -> None:
    """The seeding's tuple paths (``_rows``, ``_row``): ``_nearest_of`` (the centre told
    by ``math.dist`` when apart, else the sums) and ``_nearer`` (a centre put past the
    least at once) give ``_nearest``'s very answer, bits included."""
    if not clustering._FOLD:
        return
    keys, values = clustering._rows([p])
    rows = [clustering._row(c, keys[0]) for c in centers]
    j, d = clustering._nearest_of(values[0], rows)
    want_j, want_d = _reference_nearest(p, centers)
    assert (j, float(d).hex()) == (want_j, float(want_d).hex())
    for c, row in zip(centers, rows, strict=True):
        got = clustering._nearer(values[0], row, least)
        want = clustering._nearest(p, [c], least)[1]
        assert float(got).hex() == float(want).hex()


def test_seeding_rows_tell_apart_centres_without_the_sums(monkeypatch: Any) -> None:
    """Centres far apart are told by ``math.dist`` alone: the one sum made is the
    nearest centre's, and a far centre leaves the least as it is."""
    if not clustering._FOLD:
        return
    p = (0.1, 0.2, 0.3)
    rows = [(5.0, 5.0, 5.0), (0.0, 0.0, 0.0), (-4.0, 2.0, 9.0)]

    def no_sums(*args: Any) -> Any:
        raise AssertionError("summed")

    monkeypatch.setattr(clustering, "_nearest_row", no_sums)
    j, d = clustering._nearest_of(p, rows)
    assert (j, d) == (1, ((0.1 - 0.0) ** 2.0 + (0.2 - 0.0) ** 2.0) + (0.3 - 0.0) ** 2.0)
    assert clustering._nearer(p, rows[0], 0.5) == 0.5
