"""Always-valid comparison of experiment arms from sufficient statistics.

An arm is kept as sums (``ArmStats``): exposed users, converters, revenue and its
square, and the pre-exposure covariate for CUPED with its cross products. Sums
merge across shards by addition, so the summary of a sharded run is exact.

The interval on a difference of means is the two-sided normal-mixture
confidence sequence of Howard, Ramdas, McAuliffe and Sekhon (2021), in the
parameterisation GrowthBook's sequential mode uses: with ``N`` users in the two
arms, per-user variance ``s2`` of the estimator (its variance times ``N``) and
a mixing parameter ``rho`` tuned to be tightest at ``tuning`` users,

    half-width = sqrt(s2 * 2 (N rho^2 + 1) / (N^2 rho^2) * ln(sqrt(N rho^2 + 1) / alpha))

so the chance that the interval ever excludes the truth, at any number of
looks, is at most ``alpha`` (asymptotically, by the central limit theorem).

>>> a = ArmStats(n=1000, conv=100)
>>> b = ArmStats(n=1000, conv=150)
>>> r = compare(a, b, "conversion")
>>> round(r.diff, 3), r.lo < r.diff < r.hi, r.significant
(0.05, True, True)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

# Only ``chdtrc`` (``chi2.sf``'s own function): scipy.stats is no longer imported here.
# (When it was, from bf74916, it was for a replay measured 12 % faster with scipy.stats
# imported at this module's load than later, by River; with the demo config on 100k
# lines, importing it here again or not gave the same CPU time, paired runs.)
from scipy.special import chdtrc

METRICS = ("conversion", "revenue")

# ``sum y^2 - n mean^2`` cancels: equal amounts leave rounding noise of a few units in the
# last place of the sum of squares (5 users paying 0.1 left 1e-17, 4 paying 1e15 left
# 3e14), and noise read as spread gave an interval of width 0 from a handful of users. A
# spread below this share of the sum of squares (a standard deviation under about 3e-5 of
# the amounts) is read as none; real revenue, zeros beside buyers, is far above it.
NOISE = 1e-9


@dataclass(slots=True)
class ArmStats:
    """Sums over an arm's exposed users: y = converted (0/1) or revenue, x = pre-exposure orders."""

    n: int = 0
    conv: float = 0.0
    rev: float = 0.0
    rev2: float = 0.0
    x: float = 0.0
    x2: float = 0.0
    xc: float = 0.0
    xr: float = 0.0

    def add(self, other: ArmStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_json(self) -> dict[str, Any]:
        """The sums as they are: rounded (to 6 decimals, as readings are), 3 users paying
        0.0015 had a sum of squares of 7e-6 for 6.75e-6, a spread that is not there."""
        return {f.name: _exact(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ArmStats:
        return cls(**{f.name: obj.get(f.name, 0) for f in fields(cls)})

    def moments(self, metric: str) -> tuple[float, float, float, float, float]:
        """(mean y, var y, mean x, var x, cov xy) with the n-1 denominator."""
        n = self.n
        if metric == "conversion":
            sy, syy, sxy = self.conv, self.conv, self.xc
        else:
            sy, syy, sxy = self.rev, self.rev2, self.xr
        my, mx = sy / n, self.x / n
        d = max(n - 1, 1)
        vy = _spread(syy, n * my * my) / d
        vx = _spread(self.x2, n * mx * mx) / d
        cxy = (sxy - n * mx * my) / d
        return my, vy, mx, vx, cxy


def _spread(squares: float, cancelled: float) -> float:
    """``squares - cancelled`` (a sum of squared deviations); 0 when it is rounding noise."""
    left = squares - cancelled
    return left if left > NOISE * squares else 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """A treatment arm against control: difference of means, relative lift, and intervals."""

    metric: str
    control_mean: float
    treatment_mean: float
    diff: float
    lo: float
    hi: float
    rel: float | None
    rel_lo: float | None
    rel_hi: float | None
    significant: bool
    cuped: bool
    # The anytime-valid p-value of a difference of 0 (``sequence_p``): below ``alpha``
    # exactly when the interval excludes 0. Written only under a correction (``result``).
    p: float = 1.0
    # What ``at`` needs to move the intervals to another level: the level they are at, the
    # difference's half-width and the log ratio's (nan without a lift interval), the
    # treatment-to-control ratio of means, and ln sqrt(a) of ``halfwidth`` (rho's, fixed).
    alpha: float = 0.05
    hw: float = math.nan
    lhw: float = math.nan
    ratio: float = math.nan
    log_root_a: float = 0.0

    def at(self, level: float) -> Comparison:
        """The comparison with its intervals at ``level`` instead of ``alpha``: the same
        confidence sequence (rho stays tuned at ``alpha``, as ``p``'s is), its half-widths
        times sqrt(ln(sqrt(a) / level) / ln(sqrt(a) / alpha)), so the interval at ``level``
        excludes 0 exactly when ``p`` < ``level``. ``significant`` is left as it was."""
        k = math.sqrt(
            (self.log_root_a - math.log(level)) / (self.log_root_a - math.log(self.alpha))
        )
        rel_lo, rel_hi = _lift_ci(self.ratio, self.lhw * k)
        hw = self.hw * k
        return dataclasses.replace(
            self, lo=self.diff - hw, hi=self.diff + hw, rel_lo=rel_lo, rel_hi=rel_hi, alpha=level
        )

    def intervals(self) -> dict[str, Any]:
        """``diff_ci`` and ``lift_ci`` as a record writes them (``lift_ci`` null without one)."""
        return {
            "diff_ci": [_r(self.lo), _r(self.hi)],
            "lift_ci": None if self.rel_lo is None else [_r(self.rel_lo), _r(self.rel_hi)],
        }

    def to_json(self, why: str | None = None) -> dict[str, Any]:
        """The comparison; with ``why`` (the reason its intervals do not hold), without
        intervals or a verdict: ``diff_ci``, ``lift_ci`` and ``significant`` are null."""
        ci = self.intervals()
        out = {
            "metric": self.metric,
            "control_mean": _r(self.control_mean),
            "treatment_mean": _r(self.treatment_mean),
            "diff": _r(self.diff),
            "diff_ci": ci["diff_ci"],
            "lift": None if self.rel is None else _r(self.rel),
            "lift_ci": ci["lift_ci"],
            "significant": self.significant,
            "cuped": self.cuped,
        }
        if why is not None:
            out.update(diff_ci=None, lift_ci=None, significant=None, why=why)
        return out


# Why a bandit's comparisons carry no interval: the confidence sequences assume each
# user's arm is drawn with fixed probabilities, independent of earlier outcomes. A
# bandit's allocation follows the conversions so far, so its arms' means are biased
# and their intervals do not cover at the stated level; the exposures log the
# propensities for an off-policy (inverse-propensity) estimate outside the engine.
ADAPTIVE = "adaptive allocation"


def _r(v: float | None) -> float | None:
    if v is None or isinstance(v, int):
        return v
    return round(v, 6) if math.isfinite(v) else None


def _exact(v: float) -> float | None:
    return v if math.isfinite(v) else None


def rho_for(tuning: float, alpha: float) -> float:
    """The mixing parameter that makes the sequence tightest at ``tuning`` users."""
    la = -2.0 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1.0)) / tuning)


def halfwidth(s2: float, n: float, alpha: float = 0.05, tuning: float = 5000.0) -> float:
    """Half-width of the confidence sequence for a mean of ``n`` users with per-user variance s2."""
    if n <= 0:
        return math.inf
    rho2 = rho_for(tuning, alpha) ** 2
    a = n * rho2 + 1.0
    return math.sqrt(s2 * 2.0 * a / (n * n * rho2) * math.log(math.sqrt(a) / alpha))


_LOG_MAX = 700.0  # exp() of more overflows a float

# Converters each arm needs before revenue is compared. Revenue is mostly zeros and a
# long tail: an arm's mean and its variance, read from a few buyers, are both low
# together, and the interval then excludes the truth far more often than alpha (A/A,
# a 5 % arm against 95 %, 5 % buyers, lognormal amounts read every 200 of 20k users:
# 31 % of runs ever "significant"; 15 % from 10 converters, 8 % from 30, 1.5 % from 50).
REVENUE_MIN_CONVERTERS = 50


def compare(
    control: ArmStats,
    treatment: ArmStats,
    metric: str,
    alpha: float = 0.05,
    tuning: float = 5000.0,
    cuped: bool = False,
) -> Comparison | None:
    """Treatment minus control on ``metric``; ``None`` until each arm has 2 users and variance
    (for revenue, ``REVENUE_MIN_CONVERTERS`` converters).

    With ``cuped``, y is adjusted by theta (x - mean x), theta the pooled
    regression slope of y on the pre-exposure covariate x (CUPED, Deng et al. 2013).
    """
    nc, nt = control.n, treatment.n
    if nc < 2 or nt < 2:
        return None
    if metric == "revenue" and min(control.conv, treatment.conv) < REVENUE_MIN_CONVERTERS:
        return None
    mc, vc, xc, vxc, cc = control.moments(metric)
    mt, vt, xt, vxt, ct = treatment.moments(metric)
    if metric == "conversion":
        # At least Agresti-Caffo's: the plug-in variance of a rare rate in a small arm is
        # too small (0 with no converter yet); read against a larger arm's, it claimed a
        # difference in 6-10 % of A/A runs of a 10 % holdout at a 5 % rate (at most 5 % now).
        vc = max(vc, _ac_variance(control))
        vt = max(vt, _ac_variance(treatment))
    diff = mt - mc
    theta = 0.0
    if cuped:
        pooled = ArmStats()
        pooled.add(control)
        pooled.add(treatment)
        _, _, _, vx, cxy = pooled.moments(metric)
        theta = cxy / vx if vx > 0 else 0.0
        diff -= theta * (xt - xc)
        # A covariate that predicts y exactly leaves only rounding noise, as above.
        vc = _spread(vc + theta * theta * vxc, 2 * theta * cc)
        vt = _spread(vt + theta * theta * vxt, 2 * theta * ct)
    if vt <= 0 or vc <= 0:
        # An arm without variance (no converter yet) has no usable standard error.
        return None
    var = vt / nt + vc / nc
    n = nc + nt
    hw = halfwidth(var * n, n, alpha, tuning)
    rel = rel_lo = rel_hi = None
    ratio = lhw = math.nan
    m2 = mc * mc
    if m2 > 0:  # a control mean of 0, or so near it (1e-200) that its square is 0: no lift
        r = (mc + diff) / mc
        # Delta method on the log of the ratio, so the interval is skewed as the ratio is:
        # symmetric about it, a rare control rate's interval missed the true lift at some
        # look in 15 % of runs (1 % now).
        rvar = vt / (nt * m2) + r * r * vc / (nc * m2)
        rhw = halfwidth(rvar * n, n, alpha, tuning)
        if math.isfinite(r) and math.isfinite(rhw):  # a control mean of 1e-155 overflows
            rel = r - 1.0
            if r > 0:  # none while the treatment mean is 0 (or, adjusted, below)
                ratio, lhw = r, rhw / r  # the log ratio's variance is rvar / ratio^2
                rel_lo, rel_hi = _lift_ci(ratio, lhw)
    lo, hi = diff - hw, diff + hw
    p = sequence_p(diff, var * n, n, alpha, tuning)
    root_a = 0.5 * math.log(n * rho_for(tuning, alpha) ** 2 + 1.0)
    return Comparison(
        metric, mc, mc + diff, diff, lo, hi, rel, rel_lo, rel_hi, lo > 0 or hi < 0, theta != 0.0,
        p, alpha, hw, lhw, ratio, root_a,
    )  # fmt: skip


def _lift_ci(ratio: float, lhw: float) -> tuple[float | None, float | None]:
    """The lift's interval from the log ratio's half-width; none when either is not finite,
    or its top overflows."""
    if not (math.isfinite(lhw) and math.isfinite(ratio)):
        return None, None
    top = math.log(ratio) + lhw
    if top >= _LOG_MAX:
        return None, None
    return ratio * math.exp(-lhw) - 1.0, math.exp(top) - 1.0


def sequence_p(
    diff: float, s2: float, n: float, alpha: float = 0.05, tuning: float = 5000.0
) -> float:
    """The anytime-valid p-value of a difference of 0: the smallest level whose confidence
    sequence (``halfwidth``, its mixing parameter ``rho`` fixed by ``alpha`` and ``tuning``)
    excludes 0, ``min(1, sqrt(a) exp(-diff^2 n^2 rho^2 / (2 a s2)))``, a = n rho^2 + 1: the
    inverse of the normal-mixture martingale, so below any level at some look with a
    chance of at most that level (Ville), and below ``alpha`` exactly when the interval
    (at ``alpha``) excludes 0.

    >>> round(sequence_p(halfwidth(1.0, 400), 1.0, 400), 9)  # at the interval's end: alpha
    0.05
    """
    if n <= 0 or s2 <= 0:
        return 1.0
    rho2 = rho_for(tuning, alpha) ** 2
    a = n * rho2 + 1.0
    log_p = 0.5 * math.log(a) - diff * diff * n * n * rho2 / (2.0 * a * s2)
    return 1.0 if log_p >= 0 else math.exp(log_p)


def holm(ps: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the i-th smallest p of m is
    multiplied by m - i + 1 (i from 1), and none is below an adjusted smaller one (the
    step-down: a hypothesis is rejected at level alpha, adjusted p <= alpha, only if every
    smaller p was). The family-wise error stays at most alpha whatever the dependence.

    >>> holm([0.01, 0.04, 0.03, 0.005])  # 0.04 <= 0.05, yet kept: 0.03 > 0.05 / 2 stopped it
    [0.03, 0.06, 0.06, 0.02]

    A p that is not a number (none is known to arise) is read as 1, no evidence: sorted
    as it is, it would take a place at random and lift every p after it to 1.

    >>> holm([float("nan"), 0.01])
    [1.0, 0.02]
    """
    ps = [p if p == p else 1.0 for p in ps]
    m = len(ps)
    out = [1.0] * m
    running = 0.0
    for j, i in enumerate(sorted(range(m), key=lambda k: ps[k])):
        running = max(running, min(1.0, (m - j) * ps[i]))
        out[i] = running
    return out


def _ac_variance(s: ArmStats) -> float:
    """Per-user variance of an arm's conversion rate as Agresti and Caffo (2000) read it: the
    rate with one converter and one non-converter added, p (1 - p) / (n + 2) for the mean.

    >>> round(_ac_variance(ArmStats(n=40, conv=0)) / 40, 6)  # none converted: not 0
    0.000553
    """
    p = (s.conv + 1.0) / (s.n + 2.0)
    return p * (1.0 - p) * s.n / (s.n + 2.0)


SRM_MIN_EXPECTED = 5  # users each arm expects before the split is judged (Cochran's rule)


def srm_p(counts: list[int], weights: list[float]) -> float | None:
    """Sample-ratio-mismatch chi-square p-value of arm counts against the configured weights;
    None until every arm expects ``SRM_MIN_EXPECTED`` users (the chi-square approximation
    needs them: both of 2 users in a 10 % arm read p = 0.0001, flagged, for a chance of 0.01).
    An arm of weight 0 (paused) is no cell of the test: it expects nobody, and as a degree
    of freedom it made a broken split read as a fair one.

    >>> round(srm_p([555, 445], [0.5, 0.5]), 5), round(srm_p([555, 445, 0], [0.5, 0.5, 0]), 5)
    (0.0005, 0.0005)
    """
    total = sum(counts)
    wsum = sum(weights)
    cells = sum(w > 0 for w in weights)
    if total == 0 or cells < 2 or wsum <= 0:
        return None
    if min(w for w in weights if w > 0) * total < SRM_MIN_EXPECTED * wsum:
        return None
    stat = 0.0
    for c, w in zip(counts, weights, strict=True):
        e = total * w / wsum
        if e > 0:
            stat += (c - e) ** 2 / e
    # ``chi2.sf``'s own computation (scipy's ``chi2_gen._sf``), without the distribution
    # object's argument handling around it (~100x the cost of the function, per report).
    return float(chdtrc(cells - 1, stat))


SRM_ALPHA = 0.001

# The Dirichlet prior's concentration ``k`` of the sequential SRM test: Dirichlet(k * weights),
# centred on the configured split (Lindon and Malek 2022; the default of their ``savvi``).
SRM_PRIOR = 100.0


def srm_log_bayes_factor(counts: list[int], weights: list[float]) -> float | None:
    """Log Bayes factor of a broken split against the configured one (Lindon and Malek 2022,
    "Anytime-Valid Inference for Multinomial Count Data"): the Dirichlet-multinomial marginal
    likelihood of the counts over their multinomial likelihood under the weights,

        BF = B(a + n) / B(a) / prod_i theta_i^n_i,   a = SRM_PRIOR * theta,

    B the multivariate beta function. Under a fair split BF is a martingale of mean 1, so
    (Ville) the chance it *ever* reaches 1/alpha, however often it is read, is at most
    alpha. None without two arms of weight > 0 (a paused arm is no cell, as in ``srm_p``).

    >>> round(srm_log_bayes_factor([0, 0], [0.5, 0.5]), 6), srm_log_bayes_factor([3], [1.0])
    (0.0, None)
    """
    wsum = sum(w for w in weights if w > 0)
    cells = [(c, w / wsum) for c, w in zip(counts, weights, strict=True) if w > 0]
    if len(cells) < 2:
        return None
    k = SRM_PRIOR
    out = math.lgamma(k) - math.lgamma(k + sum(c for c, _ in cells))
    for c, theta in cells:
        a = k * theta
        out += math.lgamma(a + c) - math.lgamma(a) - c * math.log(theta)
    return out


def srm_sequential_p(counts: list[int], weights: list[float]) -> float | None:
    """The anytime-valid p-value of the split, ``min(1, 1 / BF)`` (``srm_log_bayes_factor``):
    below alpha at some look with a chance of at most alpha under a fair split.

    >>> round(srm_sequential_p([555, 445], [0.5, 0.5]), 5)  # chi-square: p = 0.0005
    0.01339
    >>> round(srm_sequential_p([58, 9], [1, 1]), 6)  # the Bayes factor is past 1000
    0.000839
    """
    log_bf = srm_log_bayes_factor(counts, weights)
    if log_bf is None:
        return None
    return 1.0 if log_bf <= 0 else math.exp(-log_bf)


def srm(
    counts: list[int], weights: list[float], sequential: bool, shards: int = 1
) -> dict[str, Any]:
    """The SRM verdict: ``sequential`` (a live record, read at every exposure) by the
    anytime-valid test, else (the end of a replay: one look) by the chi-square test.
    ``test`` names which one ``p`` and ``flagged`` are of.

    ``shards``: how many shards each read their own users' split live. Each one's flag is
    at ``SRM_ALPHA / shards`` (Bonferroni), so that some shard's record ever flagging a fair
    split has a chance of at most ``SRM_ALPHA`` for the experiment, not ``shards`` times it.
    The one-look test reads the shards' counts added up: one test, at ``SRM_ALPHA``.

    >>> srm([58, 9], [1, 1], True)["flagged"], srm([58, 9], [1, 1], True, shards=2)["flagged"]
    (True, False)
    """
    if sequential:
        p = srm_sequential_p(counts, weights)
        # The Bayes factor reached shards / alpha.
        flagged = p is not None and p <= SRM_ALPHA / shards
    else:
        p = srm_p(counts, weights)
        flagged = p is not None and p < SRM_ALPHA
    return {
        "test": "sequential" if sequential else "chi-square",
        "p": None if p is None else _r(p),
        "flagged": flagged,
    }


def result(
    describe: dict[str, Any], sums: list[ArmStats], sequential: bool = False, shards: int = 1
) -> dict[str, Any]:
    """An experiment's reading: per arm, each treatment against the first arm, and SRM.

    ``describe`` is ``Experiment.describe()`` (arm names, weights, alpha, tuning,
    cuped, bandit); ``sums`` the arms' sums in the same order. ``sequential``: the SRM
    verdict of a reading taken at every exposure, by one of ``shards`` shards (see
    ``srm``); under a correction such a reading's ``significant`` is at ``alpha / shards``
    too, each shard's family being its own users' (``_correct``), and so are its intervals
    under Holm. A bandit's comparisons carry no interval nor verdict (``ADAPTIVE``), and
    its split is not tested.
    """
    names: list[str] = describe["arms"]
    alpha = float(describe.get("alpha", 0.05))
    tuning = float(describe.get("tuning", 5000.0))
    cuped = bool(describe.get("cuped", False))
    arms: dict[str, Any] = {}
    for name, s in zip(names, sums, strict=True):
        mean_rev, var_rev = (s.moments("revenue")[:2]) if s.n else (0.0, 0.0)
        arms[name] = {
            "exposed": s.n,
            "converters": int(s.conv),
            "conversion_rate": _r(s.conv / s.n) if s.n else None,
            "revenue": _r(s.rev),
            "revenue_per_user": _r(mean_rev) if s.n else None,
            "revenue_variance": _r(var_rev) if s.n > 1 else None,  # undefined for one user
        }
    bandit = bool(describe.get("bandit"))
    why = ADAPTIVE if bandit else None
    correction = str(describe.get("correction", "none"))
    by_holm = correction == "holm" and not bandit
    comparisons: dict[str, Any] = {}
    family: list[tuple[str, str, Comparison | None]] = []
    weights = list(describe.get("weights") or [1.0] * len(names))
    for name, s, w in zip(names[1:], sums[1:], weights[1:], strict=True):
        comparisons[name] = {}
        for metric in METRICS:
            cmp = compare(sums[0], s, metric, alpha, tuning, cuped)
            comparisons[name][metric] = None if cmp is None else cmp.to_json(why)
            if w > 0:  # a paused arm is compared with nobody: no member of the family
                family.append((name, metric, cmp))
            elif cmp is not None and by_holm:  # its intervals are at its own level
                comparisons[name][metric]["ci_alpha"] = _level(alpha)
    if by_holm:
        # Each shard's records read only its users: some shard's record ever reading a
        # false difference has a chance of at most alpha over the shards (Bonferroni).
        level = alpha / shards if sequential else alpha
        read = _correct([cmp for _, _, cmp in family], level)
        for (name, metric, _), rec in zip(family, read, strict=True):
            if rec is not None:
                comparisons[name][metric] = rec
    counts = [s.n for s in sums]
    if bandit:  # its split follows the conversions, not the weights: nothing to test
        split = {"test": None, "p": None, "flagged": False}
    else:
        split = srm(counts, list(describe["weights"]), sequential, shards)
    out = {
        "control": names[0],
        "arms": arms,
        "comparisons": comparisons,
        "srm": split,
        "alpha": alpha,
    }
    if correction != "none":
        out["correction"] = correction
    return out


def holm_corrected(
    family: list[Comparison | None], alpha: float
) -> list[tuple[Comparison, float] | None]:
    """Holm over an experiment's comparisons (each live treatment arm x each metric): each
    comparison read with its Holm-adjusted p, ``significant`` when that is <= ``alpha``,
    and its intervals moved to its level under Holm (``holm_level``), so that its
    difference's interval excludes 0 exactly when it is ``significant``. The family is
    fixed, so that the level holds over every look: a comparison not yet read (``None``:
    too few users or converters) is in it with p = 1, and stays ``None``."""
    adjusted = holm([1.0 if cmp is None else cmp.p for cmp in family])
    out: list[tuple[Comparison, float] | None] = []
    for cmp, adj in zip(family, adjusted, strict=True):
        if cmp is None:
            out.append(None)
            continue
        moved = cmp.at(holm_level(cmp.p, adj, alpha, len(family)))
        out.append((dataclasses.replace(moved, significant=adj <= alpha), adj))
    return out


def _correct(family: list[Comparison | None], alpha: float) -> list[dict[str, Any] | None]:
    """``holm_corrected`` as records write it: each comparison read with its ``p`` and
    ``p_holm``, its intervals at ``ci_alpha``, and those at its own level (the experiment's
    ``alpha``) kept as ``diff_ci_unadjusted`` and ``lift_ci_unadjusted``."""
    out: list[dict[str, Any] | None] = []
    for cmp, read in zip(family, holm_corrected(family, alpha), strict=True):
        if cmp is None or read is None:
            out.append(None)
            continue
        moved, adj = read
        unadjusted = cmp.intervals()
        rec = moved.to_json()
        rec.update(
            p=_r(cmp.p),
            p_holm=_r(adj),
            ci_alpha=_level(moved.alpha),
            diff_ci_unadjusted=unadjusted["diff_ci"],
            lift_ci_unadjusted=unadjusted["lift_ci"],
        )
        out.append(rec)
    return out


def _level(v: float) -> float:
    """A level to 6 significant digits (0.05 / 3 as 0.0166667): 6 decimals would lose one
    of alpha = 1e-6 / 4."""
    return float(f"{v:.6g}")


def holm_level(p: float, p_holm: float, alpha: float, m: int) -> float:
    """The level of a comparison's interval under Holm over ``m``: ``alpha`` times
    ``p / p_holm``, so that the interval (which excludes 0 when ``p`` < its level) excludes
    0 exactly when ``p_holm`` < ``alpha``. As ``p_holm`` <= m p, the share is within [1/m,
    1]: 1 / (m - i + 1), Holm's own step, for the i-th smallest p unless a smaller one's
    adjusted p is larger; 1 when p = 1 (``p_holm`` = 1: no evidence, the level as without
    Holm). Both 0 (p underflowed: the interval is far from 0 at any level): 1/m,
    Bonferroni's share, the widest interval Holm can ask for.

    >>> [round(holm_level(p, adj, 0.05, 4), 6) for p, adj in [(0.01, 0.03), (0.04, 0.06)]]
    [0.016667, 0.033333]
    >>> holm_level(0.0, 0.0, 0.05, 4), holm_level(1.0, 1.0, 0.05, 4)
    (0.0125, 0.05)
    >>> holm_level(float("nan"), 1.0, 0.05, 4)  # not a number: as p = 1 (``holm``)
    0.05
    """
    if p != p:
        return alpha
    return alpha * (p / p_holm if p_holm > 0 else 1.0 / m)


def cuped_metrics(reading: dict[str, Any]) -> list[str]:
    """The metrics (of ``METRICS``) a reading compares CUPED-adjusted; its arms' own rates
    and means are raw, so a table or chart showing both must say which is which.

    >>> desc = {"arms": ["c", "t"], "weights": [0.5, 0.5], "cuped": True}
    >>> sums = [ArmStats(n=4, conv=1, x=1, x2=1, xc=1), ArmStats(n=4, conv=2, x=2, x2=2, xc=1)]
    >>> cuped_metrics(result(desc, sums)), cuped_metrics(result({**desc, "cuped": False}, sums))
    (['conversion'], [])
    """
    comparisons = (reading.get("comparisons") or {}).values()
    return [m for m in METRICS if any(((c or {}).get(m) or {}).get("cuped") for c in comparisons)]


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the shards' ``Lab.report()`` sums per experiment and read each experiment."""
    out: dict[str, Any] = {}
    names = sorted({name for rep in reports for name in rep})
    for name in names:
        parts = [rep[name] for rep in reports if name in rep]
        describe = parts[0]
        sums = [ArmStats() for _ in describe["arms"]]
        for part in parts:
            for total, s in zip(sums, part["sums"], strict=True):
                total.add(ArmStats.from_json(s))
        out[name] = {
            "trigger": describe.get("trigger"),
            "bandit": describe.get("bandit", False),
            **result(describe, sums),
        }
    return out
