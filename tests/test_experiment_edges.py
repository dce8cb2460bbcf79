"""Experiment readings on streams at the edges: equal amounts, tiny counts, tiny means.

A reading must not claim what its data cannot support: an interval on revenue where no
arm has any spread (rounding noise is not spread), an SRM verdict from a handful of
users, a lift whose interval overflowed. Each is null instead, and every number a
reading writes is finite. The property test replays small random streams through the
real dataflow (``flows.testing.run``) and checks each reading against per-user revenues
worked out from the stream itself.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers import ev

from audienceflow.flows.testing import run
from audienceflow.operators.bucketing import bucket_ranges, choose, gb_hash
from audienceflow.operators.stats import ArmStats, compare, result, srm_p

SEED = "edge-seed"
WEIGHTS = [0.3, 0.7]
USERS = [f"e{i}" for i in range(40)]


def _config(cuped: bool) -> dict[str, Any]:
    return {
        "experiments": {
            "edge": {
                "trigger": "cart_abandonment",
                "seed": SEED,
                "cuped": cuped,
                "arms": {"holdout": {"weight": 0.3, "holdout": True}, "treatment": {"weight": 0.7}},
            }
        }
    }


def _arm(user: str) -> int:
    n = gb_hash(SEED, user, 2)
    assert n is not None
    return choose(n, bucket_ranges(2, 1.0, WEIGHTS))


HELD = [u for u in USERS if _arm(u) == 0]
TREATED = [u for u in USERS if _arm(u) == 1]


def _sums(per_user: list[float]) -> ArmStats:
    s = ArmStats()
    for v in per_user:
        s.n += 1
        s.conv += v > 0
        s.rev += v
        s.rev2 += v * v
    return s


def _stream(orders: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Each user adds to the cart at minute i (exposed at i + 15) and orders from i + 20 on."""
    out = []
    for i, (user, values) in enumerate(orders.items()):
        out.append(ev(user, i, "Product Added", product_id="p1", price=5))
        for k, v in enumerate(values):
            out.append(ev(user, i + 20 + k, "Order Completed", order_id=f"{user}-{k}", total=v))
    out.append(ev("zz-clock", len(orders) + 60, "Home"))  # every timer is due by then
    return sorted(out, key=lambda e: e["timestamp"])


def _numbers_are_finite(obj: Any, where: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _numbers_are_finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert v is not None, f"{where}[{i}] is null inside a list of numbers"
            _numbers_are_finite(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), f"{where} = {obj}"


# --- equal amounts: rounding noise is not spread -------------------------------


@pytest.mark.timeout(30)
def test_equal_revenues_in_each_arm_have_no_interval_however_they_round() -> None:
    # 5 x 0.1 against 3 x 0.7: neither arm has any spread, so there is no standard error;
    # the rounding of 5 x 0.01 - 5 x 0.1^2 made one of 1e-17, and the comparison read
    # [0.6, 0.6], significant, from 8 users.
    assert compare(_sums([0.1] * 5), _sums([0.7] * 3), "revenue") is None
    assert compare(_sums([1e15] * 4), _sums([1e15] * 7), "revenue") is None
    assert _sums([0.1] * 7).moments("revenue")[1] == 0.0
    # Any real spread still reads.
    cmp = compare(_sums([0.1] * 4 + [0.2]), _sums([0.7, 0.8, 0.7]), "revenue")
    assert cmp is not None and cmp.lo < cmp.diff < cmp.hi


@pytest.mark.timeout(120)
def test_a_replay_where_every_buyer_pays_the_same_reads_no_revenue_interval() -> None:
    # 3 x 0.1 against 2 x 0.7 read [0.6, 0.6], significant, in the summary.
    orders = {u: [0.1] for u in HELD[:3]} | {u: [0.7] for u in TREATED[:2]}
    r = run(_stream(orders), _config(False))
    assert r.contract_errors() == []
    exp = r.summary["experiments"]["edge"]
    assert exp["arms"]["holdout"]["revenue_per_user"] == 0.1
    assert exp["arms"]["treatment"]["revenue_per_user"] == 0.7
    assert exp["comparisons"]["treatment"]["revenue"] is None


@pytest.mark.timeout(30)
def test_cuped_on_a_covariate_that_predicts_revenue_exactly_has_no_interval() -> None:
    # y = 1.1 x in every arm: the adjusted revenue has no spread at all.
    def arm(xs: list[float]) -> ArmStats:
        s = ArmStats()
        for x in xs:
            y = 1.1 * x
            s.n += 1
            s.conv += y > 0
            s.rev, s.rev2 = s.rev + y, s.rev2 + y * y
            s.x, s.x2, s.xr, s.xc = s.x + x, s.x2 + x * x, s.xr + x * y, s.xc + x * (y > 0)
        return s

    # It read an interval of width 2e-6 around 0 from 6 users.
    assert compare(arm([5, 3]), arm([5, 1, 4, 0]), "revenue", cuped=True) is None


# --- sample-ratio mismatch from a handful of users ------------------------------


@pytest.mark.timeout(30)
def test_srm_is_not_read_until_every_arm_expects_five_users() -> None:
    # Both of 2 users in a 10 % arm: chi-square says p = 0.0001 (flagged at 0.001),
    # while the exact chance of it is 0.01; the approximation needs >= 5 expected per arm.
    assert srm_p([0, 0, 2], [0.45, 0.45, 0.1]) is None
    assert srm_p([30, 19], [0.9, 0.1]) is None  # 4.9 expected in the second arm
    assert srm_p([20, 30], [0.9, 0.1]) is not None
    reading = result({"arms": ["c", "t"], "weights": [0.95, 0.05]}, [_sums([0.0]), _sums([1.0])])
    assert reading["srm"] == {"p": None, "flagged": False}
