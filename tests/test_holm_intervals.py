"""Under ``correction: holm`` a comparison's intervals are at its level under Holm.

Each comparison's interval is at ``alpha x p / p_holm`` (``stats.holm_level``), with the
sequence's rho left where ``alpha`` tuned it, so that ``diff_ci`` excludes 0 exactly when
``p_holm <= alpha``, i.e. when the comparison is ``significant``. Comparisons are built
from revenue arms of a chosen mean and variance, the difference solved for a chosen p, so
that a family can be put right at Holm's boundary.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators.stats import (
    REVENUE_MIN_CONVERTERS,
    ArmStats,
    Comparison,
    _correct,
    compare,
    holm_corrected,
    result,
    rho_for,
)

MEAN, VAR = 10.0, 4.0


def _arm(n: int, mean: float, var: float = VAR) -> ArmStats:
    """``n`` users whose revenue has this mean and variance (and the converters revenue needs)."""
    return ArmStats(
        n=n, conv=REVENUE_MIN_CONVERTERS, rev=n * mean, rev2=(n - 1) * var + n * mean * mean
    )


def _with_p(
    p: float, n: int = 2000, alpha: float = 0.05, tuning: float = 5000.0, sign: float = 1.0
) -> Comparison:
    """A revenue comparison of two arms of ``n`` users whose p-value is ``p``: the difference
    solved from the sequence's p (README: p = sqrt(a) exp(-diff^2 N^2 rho^2 / (2 a s2))),
    s2 the per-user variance of the difference over the N = 2n users; p = 1 is a
    difference of 0, p = 0 one so far that p underflows."""
    total = 2 * n
    s2 = 2 * VAR / n * total
    rho2 = rho_for(tuning, alpha) ** 2
    a = total * rho2 + 1.0
    if p >= 1:
        diff = 0.0
    elif p > 0:
        diff = math.sqrt((0.5 * math.log(a) - math.log(p)) * 2 * a * s2 / (total**2 * rho2))
    else:
        diff = 100.0
    cmp = compare(_arm(n, MEAN), _arm(n, MEAN + sign * diff), "revenue", alpha, tuning)
    assert cmp is not None
    return cmp


def _excludes_zero(cmp: Comparison) -> bool:
    return cmp.lo > 0 or cmp.hi < 0


# A p near alpha / c for c of 1..m (Holm's thresholds), off by one of these shares: Holm's
# p_holm of such a family lands near alpha, on either side, where a level that is wrong by
# a little (an off-by-one in the step, rho retuned at the new level) changes the verdict
# of the interval but not that of p_holm.
NEAR = [-0.3, -1e-2, -1e-4, -1e-6, 1e-6, 1e-4, 1e-2, 0.3]


@st.composite
def _family(draw: st.DrawFn) -> tuple[float, list[Comparison | None]]:
    alpha = draw(st.sampled_from([0.05, 0.01, 0.1, 0.2, 1e-4]))
    tuning = draw(st.sampled_from([200.0, 5000.0, 1e5]))
    m = draw(st.integers(1, 6))
    family: list[Comparison | None] = []
    for _ in range(m):
        kind = draw(st.sampled_from(["near", "near", "any", "none", "unread", "overwhelming"]))
        if kind == "unread":
            family.append(None)
            continue
        if kind == "near":
            p = alpha / draw(st.integers(1, m)) * (1 + draw(st.sampled_from(NEAR)))
        elif kind == "any":
            p = draw(st.floats(1e-12, 1.0))
        else:
            p = 1.0 if kind == "none" else 0.0
        n = draw(st.integers(50, 200_000))
        sign = draw(st.sampled_from([1.0, -1.0]))
        family.append(_with_p(p, n, alpha, tuning, sign))
    return alpha, family


@settings(max_examples=150)
@given(_family())
def test_under_holm_an_interval_excludes_zero_exactly_when_its_comparison_is_significant(
    drawn: tuple[float, list[Comparison | None]],
) -> None:
    alpha, family = drawn
    for cmp, read in zip(family, holm_corrected(family, alpha), strict=True):
        if cmp is None:
            assert read is None
            continue
        assert read is not None
        moved, p_holm = read
        assert moved.significant == (p_holm <= alpha)
        # Never narrower than at alpha, never wider than at alpha / m (Bonferroni's).
        assert moved.lo <= cmp.lo and moved.hi >= cmp.hi
        assert alpha / len(family) * (1 - 1e-12) <= moved.alpha <= alpha
        # At p_holm = alpha the interval's end is at 0: which side of it float rounding
        # leaves is not a verdict. Off it by 1e-9 or more, the interval agrees.
        if abs(p_holm / alpha - 1) > 1e-9:
            assert _excludes_zero(moved) == moved.significant, (cmp.p, p_holm, moved.alpha)


def test_the_family_at_the_boundary_has_cases_on_both_sides() -> None:
    # The property's near-boundary draws: p = alpha / 2 x (1 +- 1e-6) in a family of 2
    # with p = 1: p_holm = 2 p is 1e-6 either side of alpha, so the verdict flips there and
    # the interval must flip with it (at alpha / 2 it still excluded 0 on both sides).
    for e, significant in ((-1e-6, True), (1e-6, False)):
        family: list[Comparison | None] = [_with_p(0.025 * (1 + e)), _with_p(1.0)]
        read = holm_corrected(family, 0.05)[0]
        assert read is not None
        moved, p_holm = read
        assert abs(p_holm / 0.05 - 1) < 2e-6
        assert moved.significant is significant and _excludes_zero(moved) is significant
        assert family[0] is not None and _excludes_zero(family[0])  # alone, at 0.05: excludes


def test_moving_an_interval_keeps_its_sequence_and_changes_only_its_level() -> None:
    # By hand from README's half-width with rho tuned at alpha = 0.05 and N = 4000 users:
    # hw(level) = sqrt(s2 2 a / (N^2 rho^2) ln(sqrt(a) / level)); s2 = 2 x 4 / 2000 x 4000.
    # The lift's is the log ratio's, its variance (vt + ratio^2 vc) / (n m_c^2) x N / ratio^2.
    cmp = _with_p(0.004)
    rho2 = rho_for(5000.0, 0.05) ** 2
    a = 4000 * rho2 + 1.0

    def hw(s2: float, level: float) -> float:
        return math.sqrt(s2 * 2 * a / (4000**2 * rho2) * math.log(math.sqrt(a) / level))

    for level in (0.05, 0.02, 0.0125, 0.004 * (1 + 1e-7), 0.004 * (1 - 1e-7)):
        moved = cmp.at(level)
        h = hw(2 * VAR / 2000 * 4000, level)
        assert math.isclose((moved.hi - moved.lo) / 2, h, rel_tol=1e-9)
        assert math.isclose((moved.hi + moved.lo) / 2, cmp.diff, rel_tol=1e-12)
        ratio = (MEAN + cmp.diff) / MEAN
        lhw = hw((VAR + ratio**2 * VAR) / (2000 * MEAN**2) * 4000, level) / ratio
        assert moved.rel_lo is not None and moved.rel_hi is not None
        assert math.isclose(moved.rel_lo, ratio * math.exp(-lhw) - 1, rel_tol=1e-9)
        assert math.isclose(moved.rel_hi, ratio * math.exp(lhw) - 1, rel_tol=1e-9)
        assert _excludes_zero(moved) == (cmp.p < level)  # p = 0.004: right at its level
        assert (moved.alpha, moved.p, moved.significant) == (level, cmp.p, cmp.significant)
    assert cmp.at(0.05) == cmp  # at its own level: the very same


# --- the edges -------------------------------------------------------------------------


def _records(family: list[Comparison | None], alpha: float = 0.05) -> list[dict[str, Any]]:
    out = _correct(family, alpha)
    return [r for r in out if r is not None]


def test_a_p_that_underflowed_to_0_is_read_at_bonferronis_level() -> None:
    # p = 0 gives p_holm = 0 and no share p / p_holm: the level is alpha / m, the widest
    # interval Holm can ask for; it still excludes 0 (p = 0 is below any level).
    family: list[Comparison | None] = [_with_p(0.0), _with_p(0.3), None]
    assert family[0] is not None and family[0].p == 0.0
    zero, _ = _records(family)
    assert (zero["p"], zero["p_holm"], zero["significant"]) == (0.0, 0.0, True)
    assert zero["ci_alpha"] == 0.0166667  # 0.05 / 3: the unread comparison is one of m
    assert zero["diff_ci"][0] > 0 and zero["diff_ci"][0] < zero["diff_ci_unadjusted"][0]


def test_a_p_holm_capped_at_1_puts_the_interval_at_alpha_times_p() -> None:
    # Four comparisons at p = 0.3: each p_holm is min(1, 4 x 0.3) = 1, the share p / 1,
    # the level 0.05 x 0.3 = 0.015 (finite: no infinite interval), wider than at 0.05.
    family: list[Comparison | None] = [_with_p(0.3) for _ in range(4)]
    for rec in _records(family):
        assert (rec["p_holm"], rec["significant"], rec["ci_alpha"]) == (1.0, False, 0.015)
        lo, hi = rec["diff_ci"]
        lo0, hi0 = rec["diff_ci_unadjusted"]
        assert lo < lo0 < 0 < hi0 < hi
        (rlo, rhi), (rlo0, rhi0) = rec["lift_ci"], rec["lift_ci_unadjusted"]
        assert rlo < rlo0 < 0 < rhi0 < rhi


def test_no_evidence_keeps_the_interval_at_alpha() -> None:
    # A difference of 0: p = 1 = p_holm, the share 1: the interval at alpha, as without Holm.
    rec, _ = _records([_with_p(1.0), _with_p(0.001)])
    assert (rec["p"], rec["p_holm"], rec["ci_alpha"]) == (1.0, 1.0, 0.05)
    assert rec["diff_ci"] == rec["diff_ci_unadjusted"]
    assert rec["lift_ci"] == rec["lift_ci_unadjusted"]


def test_a_comparison_not_read_stays_null_and_a_bandits_carry_no_level() -> None:
    # Revenue before 50 converters an arm is null with or without Holm; a bandit is never
    # corrected (its comparisons have no interval: adaptive allocation).
    desc = {"arms": ["a", "b"], "weights": [0.5, 0.5], "alpha": 0.05, "correction": "holm"}
    sums = [ArmStats(n=2000, conv=200), ArmStats(n=2000, conv=284)]
    reading = result(desc, sums)
    assert reading["comparisons"]["b"]["revenue"] is None
    assert reading["comparisons"]["b"]["conversion"]["ci_alpha"] == 0.025  # 2 x p: 0.05 / 2
    bandit = result({**desc, "bandit": True}, sums)["comparisons"]["b"]["conversion"]
    assert bandit["diff_ci"] is None and bandit["significant"] is None
    assert not {"ci_alpha", "p_holm", "diff_ci_unadjusted"} & set(bandit)


def test_a_paused_arms_comparison_is_at_alpha_and_says_so() -> None:
    # A paused arm (weight 0) is no member of the family: its interval and verdict are
    # at alpha, as without Holm, and ``ci_alpha`` says so.
    desc = {"arms": ["a", "b", "p"], "weights": [0.5, 0.5, 0.0], "alpha": 0.05}
    sums = [ArmStats(n=2000, conv=200), ArmStats(n=2000, conv=284), ArmStats(n=2000, conv=264)]
    plain = result(desc, sums)["comparisons"]["p"]["conversion"]
    paused = result({**desc, "correction": "holm"}, sums)["comparisons"]["p"]["conversion"]
    assert paused == {**plain, "ci_alpha": 0.05}


def test_a_shards_live_record_has_its_intervals_at_the_level_split_across_shards() -> None:
    # One of 8 shards: the family's level is 0.05 / 8; b's p_holm = 4 p, so its interval
    # is at 0.05 / 8 / 4 = 0.0015625, and with p_holm = 0.0082 > 0.00625 it is not
    # significant and its interval includes 0; the interval at alpha stays beside it.
    desc = {"arms": ["a", "b", "c"], "weights": [1 / 3] * 3, "alpha": 0.05, "correction": "holm"}
    sums = [ArmStats(n=2000, conv=200), ArmStats(n=2000, conv=284), ArmStats(n=2000, conv=264)]
    b = result(desc, sums, sequential=True, shards=8)["comparisons"]["b"]["conversion"]
    assert (b["ci_alpha"], b["significant"]) == (0.0015625, False)
    assert b["diff_ci"][0] < 0 < b["diff_ci_unadjusted"][0]
    one = result(desc, sums)["comparisons"]["b"]["conversion"]
    assert (one["ci_alpha"], one["significant"]) == (0.0125, True) and one["diff_ci"][0] > 0
