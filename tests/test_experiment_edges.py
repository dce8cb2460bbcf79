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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audienceflow.flows.testing import run
from audienceflow.operators import stats
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


def _stream(
    orders: dict[str, list[float]], pre: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Each user adds to the cart at minute i (exposed at i + 15) and orders from i + 20 on;
    a user in ``pre`` also ordered an hour before, in a session of its own (CUPED's x)."""
    out = []
    for i, (user, values) in enumerate(orders.items()):
        if user in pre:
            out.append(ev(user, i - 60, "Order Completed", order_id=f"{user}-pre", total=5))
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


@pytest.fixture
def revenue_from_one_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numerical edges below are read from a handful of users: compare revenue from one
    converter an arm (``stats.REVENUE_MIN_CONVERTERS`` is 50, for validity, not for these)."""
    monkeypatch.setattr(stats, "REVENUE_MIN_CONVERTERS", 1)


# --- equal amounts: rounding noise is not spread -------------------------------


@pytest.mark.usefixtures("revenue_from_one_converter")
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


@pytest.mark.usefixtures("revenue_from_one_converter")
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


@pytest.mark.usefixtures("revenue_from_one_converter")
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
    assert reading["srm"] == {"test": "chi-square", "p": None, "flagged": False}


# --- a lift whose interval overflows --------------------------------------------


@pytest.mark.usefixtures("revenue_from_one_converter")
@pytest.mark.timeout(30)
def test_a_lift_too_large_to_bound_is_null_with_its_interval() -> None:
    # A control mean of 1e-155: the lift is 1e155 and its interval's half-width overflows
    # to infinity, which JSON can only write as null inside the interval.
    cmp = compare(_sums([1e-155, 3e-155, 0.0]), _sums([1.0, 2.0, 0.0]), "revenue")
    assert cmp is not None
    out = cmp.to_json()
    assert out["lift"] is None and out["lift_ci"] is None
    _numbers_are_finite(out)


@pytest.mark.usefixtures("revenue_from_one_converter")
@pytest.mark.timeout(30)
def test_a_refund_that_leaves_a_treatment_mean_near_zero_has_no_lift_interval() -> None:
    # A buyer's refund leaves the treatment's mean at 0.01 with a spread of ~100: the log
    # ratio's half-width is ~1e5, so the interval's top, exp(log ratio + half-width),
    # overflows a float (OverflowError) unless it is null.
    cmp = compare(_sums([10.0, 20.0, 30.0]), _sums([100.0, -99.99, 0.02]), "revenue")
    assert cmp is not None
    out = cmp.to_json()
    assert out["lift"] == pytest.approx(-0.9995) and out["lift_ci"] is None
    _numbers_are_finite(out)


@pytest.mark.usefixtures("revenue_from_one_converter")
@pytest.mark.timeout(120)
def test_a_replay_with_a_control_mean_near_zero_writes_no_null_inside_an_interval() -> None:
    # The shard's records carry the unrounded sums: lift_ci was [null, null] beside a lift.
    tiny = [[1e-155], [3e-155]] * 5
    orders = dict(zip(HELD, tiny, strict=False)) | {
        u: [1.0 + i % 2] for i, u in enumerate(TREATED[:10])
    }
    r = run(_stream(orders), _config(False))
    records = r.experiments  # type: ignore[attr-defined]
    assert records and records[-1]["comparisons"]["treatment"]["revenue"] is not None
    for rec in records:
        _numbers_are_finite(rec)


@pytest.mark.usefixtures("revenue_from_one_converter")
@pytest.mark.timeout(120)
def test_cuped_with_a_control_mean_whose_square_underflows_does_not_stop_the_replay() -> None:
    # One order of 1e-200 (a usable amount) in a CUPED control arm: the mean is 1e-201,
    # its square 0, and the lift's variance divided by it: ZeroDivisionError in the shard,
    # which stopped the whole replay.
    out = [ev("zz-clock", 200, "Home")]

    def user(name: str, i: int, pre: bool, values: list[float]) -> None:
        if pre:  # an order in a session closed before the exposure: the covariate
            out.append(ev(name, i, "Order Completed", order_id=f"{name}-pre", total=5))
        out.append(ev(name, i + 60, "Product Added", product_id="p1", price=5))
        for k, v in enumerate(values):
            out.append(ev(name, i + 80 + k, "Order Completed", order_id=f"{name}-{k}", total=v))

    for i, u in enumerate(HELD[:10]):
        user(u, i, i % 2 == 1, [1e-200] if i == 0 else [])
    for i, u in enumerate(TREATED[:10]):
        user(u, 10 + i, i % 3 == 0, [1e15] if i == 1 else [1.1] if i % 3 == 0 else [])
    r = run(sorted(out, key=lambda e: e["timestamp"]), _config(True))
    records = r.experiments  # type: ignore[attr-defined]
    revenue = records[-1]["comparisons"]["treatment"]["revenue"]
    assert revenue["cuped"] is True and revenue["lift"] is None
    for rec in records:
        _numbers_are_finite(rec)
    assert compare(_sums([1e-200, 0.0]), _sums([1.0, 2.0]), "revenue") is None  # no spread


# --- small random streams through the real replay -------------------------------

AMOUNTS = st.sampled_from([0.0, 0.0015, 0.1, 0.7, 19.99, 1e15, 1e-200, 1e-155, 5e-324])
USER = st.tuples(st.booleans(), st.lists(AMOUNTS, max_size=3))  # (ordered before?, orders)
TEN = [(i % 2 == 1, [1e-200] if i == 0 else []) for i in range(10)]


@pytest.mark.timeout(240)
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(
    held=st.lists(USER, max_size=11),
    treated=st.lists(USER, max_size=11),
    constant=st.booleans(),
    cuped=st.booleans(),
)
@example(held=TEN, treated=[(i % 3 == 0, [1.1 * i]) for i in range(10)], constant=False, cuped=True)
def test_readings_of_small_streams_are_finite_and_claim_nothing_unsupported(
    held: list[tuple[bool, list[float]]],
    treated: list[tuple[bool, list[float]]],
    constant: bool,
    cuped: bool,
) -> None:
    if constant:  # one order per user, one amount per arm: the case rounding hides
        held = [(p, [0.1]) for p, _ in held]
        treated = [(p, [1.1]) for p, _ in treated]
    pre = frozenset(
        [u for u, (p, _) in zip(HELD, held, strict=False) if p]
        + [u for u, (p, _) in zip(TREATED, treated, strict=False) if p]
    )
    held_orders = [v for _, v in held]
    treated_orders = [v for _, v in treated]
    orders = dict(zip(HELD, held_orders, strict=False)) | dict(
        zip(TREATED, treated_orders, strict=False)
    )
    r = run(_stream(orders, pre), _config(cuped))
    assert r.contract_errors() == []
    for rec in r.experiments:  # type: ignore[attr-defined]
        _numbers_are_finite(rec)
    exp = r.summary["experiments"].get("edge")
    if exp is None:
        assert not orders
        return
    _numbers_are_finite(exp)
    # Per-user revenue as the engine sums it: in event order, amounts as sent.
    per_arm = []
    for users in (HELD, TREATED):
        revs = []
        for u in users:
            if u in orders:
                total = 0.0
                for v in orders[u]:
                    total += v
                revs.append(total)
        per_arm.append(revs)
    arms = exp["arms"]
    assert [arms["holdout"]["exposed"], arms["treatment"]["exposed"]] == [len(a) for a in per_arm]
    comparison = exp["comparisons"]["treatment"]
    if min(len(a) for a in per_arm) < 2:
        assert comparison == {"conversion": None, "revenue": None}
    if any(len(set(a)) <= 1 for a in per_arm) and not (cuped and pre):
        assert comparison["revenue"] is None  # (CUPED's adjusted revenue may have spread)
    expected = [sum(len(a) for a in per_arm) * w for w in WEIGHTS]
    if min(expected) < 5:
        assert exp["srm"] == {"test": "chi-square", "p": None, "flagged": False}
    for side in comparison.values():
        if side is not None and side["lift"] is None:
            assert side["lift_ci"] is None


# --- the console table -----------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_console_table_prints_a_small_revenue_difference_to_the_cent() -> None:
    # A difference of 0.30 per user in [0.29, 0.31] printed as "+0 [+0, +0] *": a
    # significant difference of nothing.
    import io

    from rich.console import Console

    from audienceflow.flows.summary import render_experiments

    reading = result(
        {"arms": ["c", "t"], "weights": [0.5, 0.5]},
        [_sums([0.1, 0.2] * 300), _sums([0.4, 0.5] * 300)],
    )
    revenue = reading["comparisons"]["t"]["revenue"]
    assert revenue["significant"] and 0 < revenue["diff_ci"][0] < 0.3 < revenue["diff_ci"][1] < 1
    buf = io.StringIO()
    render_experiments({"e": reading}, Console(file=buf, width=300, color_system=None))
    lo, hi = revenue["diff_ci"]
    assert f"+0.30 [{lo:+.2f}, {hi:+.2f}] *" in buf.getvalue()


@pytest.mark.timeout(30)
def test_an_arm_of_one_user_has_no_revenue_variance() -> None:
    # The sample variance of one user is undefined; it read 0.0, no spread at all.
    reading = result({"arms": ["c", "t"], "weights": [0.5, 0.5]}, [_sums([4.0]), _sums([])])
    assert reading["arms"]["c"]["revenue_per_user"] == 4.0
    assert reading["arms"]["c"]["revenue_variance"] is None
    assert reading["arms"]["t"]["revenue_per_user"] is None
    two = result({"arms": ["c", "t"], "weights": [0.5, 0.5]}, [_sums([4.0, 2.0]), _sums([])])
    assert two["arms"]["c"]["revenue_variance"] == 2.0


@pytest.mark.timeout(30)
def test_the_report_draws_no_conversion_bar_for_an_arm_nobody_was_exposed_to() -> None:
    # A bandit arm never chosen has no conversion rate (null); the report drew it as a
    # bar at 0 %, an arm that converts nobody.
    from audienceflow.flows.report import _experiment_figures

    reading = result({"arms": ["a", "b"], "weights": [0.5, 0.5]}, [_sums([1.0, 0.0]), _sums([])])
    [fig] = _experiment_figures({"e": reading})
    bars = next(t for t in fig["data"] if t["type"] == "bar")
    assert bars["y"] == [0.5, None]


@pytest.mark.timeout(120)
def test_sub_cent_amounts_keep_their_precision_across_the_shard_sums() -> None:
    # Shards handed their sums to the summary rounded to 6 decimals: 3 users paying
    # 0.0015 had a sum of squares of 6.75e-6 sent as 7e-6, a spread that is not there,
    # and the summary read a revenue interval from users who all paid the same.
    orders = {u: [0.0015] for u in HELD[:3]} | {u: [0.0025] for u in TREATED[:3]}
    r = run(_stream(orders), _config(False))
    exp = r.summary["experiments"]["edge"]
    assert exp["arms"]["holdout"]["revenue_per_user"] == 0.0015
    assert exp["comparisons"]["treatment"]["revenue"] is None


@pytest.mark.timeout(30)
def test_the_console_table_names_each_experiments_own_level_and_a_bandits_lack_of_one() -> None:
    # The title said "always-valid 95% interval" whatever the alpha, over bandit rows too.
    import io

    from rich.console import Console

    from audienceflow.flows.summary import render_experiments

    sums = [_sums([0.1, 0.2] * 30), _sums([0.4, 0.5] * 30)]
    tight = result({"arms": ["c", "t"], "weights": [0.5, 0.5], "alpha": 0.1}, sums)
    desc = {"arms": ["c", "t"], "weights": [0.5, 0.5], "bandit": True}
    bandit = {**result(desc, sums), "bandit": True}
    buf = io.StringIO()
    render_experiments({"e": tight, "b": bandit}, Console(file=buf, width=300, color_system=None))
    text = buf.getvalue()
    assert "e (always-valid 90% interval)" in text
    # A bandit's lift and diff are plain differences of biased means: the table says so.
    bandit_level = (
        "bandit: lift and diff biased by adaptive allocation, no interval nor significance"
    )
    assert f"b ({bandit_level})" in text
    assert "+0.30 (biased, no interval)" in text  # the difference of means, without an interval
    assert "95%" not in text


@pytest.mark.timeout(30)
def test_the_console_table_calls_only_a_bandits_lift_biased() -> None:
    # A randomized arm that converts nobody has a lift of -100 % and no lift interval (its
    # mean is 0, the log ratio has none), yet its difference is significant. The table
    # called that lift "(biased, no interval)", a bandit's wording, and hid its "*".
    import io

    from rich.console import Console

    from audienceflow.flows.summary import render_experiments

    sums = [_sums([0.0, 20.0] * 100), _sums([0.0] * 200)]
    reading = result({"arms": ["c", "t"], "weights": [0.5, 0.5]}, sums)
    conversion = reading["comparisons"]["t"]["conversion"]
    assert conversion["lift"] == -1.0 and conversion["lift_ci"] is None
    assert conversion["significant"]
    buf = io.StringIO()
    render_experiments({"e": reading}, Console(file=buf, width=300, color_system=None))
    text = buf.getvalue()
    assert "-100% (no interval) *" in text, text
    assert "biased" not in text


@pytest.mark.timeout(30)
def test_the_console_table_shows_a_small_srm_p_value_as_small() -> None:
    # p = 0.0036 printed as "p=0.00", a p-value of nothing.
    import io

    from rich.console import Console

    from audienceflow.flows.summary import render_experiments

    desc = {"arms": ["c", "t"], "weights": [0.5, 0.5]}
    # 546 against 454: chi2 = 2 * 46^2 / 500 = 8.46 on 1 df, p = 0.0036; 600 against 400:
    # chi2 = 80, p = 4e-19, below any digits.
    near = result(desc, [ArmStats(n=546), ArmStats(n=454)])
    broken = result(desc, [ArmStats(n=600), ArmStats(n=400)])
    fair = result(desc, [ArmStats(n=510), ArmStats(n=490)])  # chi2 = 0.4, p = 0.53
    buf = io.StringIO()
    render_experiments(
        {"near": near, "broken": broken, "fair": fair},
        Console(file=buf, width=300, color_system=None),
    )
    text = buf.getvalue()
    assert "SRM ok p=0.0036" in text
    assert "SRM MISMATCH p<0.001" in text
    assert "SRM ok p=0.53" in text


@pytest.mark.timeout(30)
def test_the_report_does_not_call_a_bandits_interval_always_valid() -> None:
    # The console table and the README say a bandit's intervals are not always-valid;
    # the report's figure title said "always-valid 95% interval" over them.
    from audienceflow.flows.report import _experiment_figures

    sums = [_sums([0.1, 0.2] * 30), _sums([0.4, 0.5] * 30)]
    reading = result({"arms": ["c", "t"], "weights": [0.5, 0.5]}, sums)
    desc = {"arms": ["c", "t"], "weights": [0.5, 0.5], "bandit": True}
    adaptive = {**result(desc, sums), "bandit": True}
    [fig, bandit] = _experiment_figures({"a": reading, "b": adaptive})
    assert "with its always-valid 95% interval" in fig["title"]
    assert "always-valid 95%" not in bandit["title"]
    assert "biased and without interval" in bandit["title"]  # its lift: a biased reading
    lift = next(t for t in bandit["data"] if t["type"] == "scatter")
    assert lift["y"][1] is not None and lift["error_y"]["array"] == [None, None]


def _with_pre(users: list[tuple[float, float]]) -> ArmStats:
    """Sums of users given as (pre-exposure orders, revenue after the exposure)."""
    s = _sums([v for _, v in users])
    for x, v in users:
        s.x += x
        s.x2 += x * x
        s.xc += x * (v > 0)
        s.xr += x * v
    return s


@pytest.mark.usefixtures("revenue_from_one_converter")
@pytest.mark.timeout(30)
def test_a_cuped_lift_is_marked_beside_the_raw_rates_in_the_table_and_the_report() -> None:
    # With cuped: true the table showed raw rate and rev/user beside adjusted lift and
    # diff, and the report raw bars beside an adjusted lift, with nothing to say so.
    import io

    from rich.console import Console

    from audienceflow.flows.report import _experiment_figures
    from audienceflow.flows.summary import render_experiments

    control = _with_pre([(0.0, 0.0), (1.0, 5.0), (2.0, 0.0), (3.0, 9.0)] * 20)
    treated = _with_pre([(0.0, 4.0), (1.0, 0.0), (2.0, 6.0), (3.0, 8.0)] * 20)
    desc = {"arms": ["c", "t"], "weights": [0.5, 0.5]}
    adjusted = result({**desc, "cuped": True}, [control, treated])
    raw = result(desc, [control, treated])
    assert adjusted["comparisons"]["t"]["conversion"]["cuped"]
    assert adjusted["comparisons"]["t"]["revenue"]["cuped"]
    buf = io.StringIO()
    render_experiments({"e": adjusted, "r": raw}, Console(file=buf, width=300, color_system=None))
    text = buf.getvalue()
    assert (
        "e (always-valid 95% interval; conversion lift and rev/user diff CUPED-adjusted, "
        "rate and rev/user raw)" in text
    )
    assert "r (always-valid 95% interval)" in text
    [fig, plain] = _experiment_figures({"e": adjusted, "r": raw})
    assert "lift vs the control arm c (CUPED-adjusted; the bars are raw)" in fig["title"]
    assert "CUPED" not in plain["title"]


@pytest.mark.timeout(120)
def test_an_arm_timer_due_past_the_calendar_is_rejected_at_load(tmp_path: Any) -> None:
    """An arm's ``after`` moves the trigger's deadline, the time its action is written at:
    unbounded, ``after: 20000000w`` passed check-config and stopped the replay at its end
    ("year 385333 is out of range"). Bounded as the trigger's own ``after`` is."""
    from audienceflow.operators.config import ConfigError
    from audienceflow.operators.settings import Settings

    def config(after: str) -> dict[str, Any]:
        arms = {"a": {"weight": 0.5, "after": after}, "b": {"weight": 0.5}}
        return {"experiments": {"t": {"trigger": "cart_abandonment", "seed": "s", "arms": arms}}}

    cfg = tmp_path / "c.yaml"
    cfg.write_text("experiments:\n  t:\n    trigger: cart_abandonment\n    arms:\n"
                   "      a: {weight: 0.5, after: 366d}\n      b: {weight: 0.5}\n")  # fmt: skip
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert str(err.value).replace(f"{tmp_path}/", "") == (
        "c.yaml:5: experiments.t.arms.a.after: must be at most 365d; got '366d'"
    )
    # The bound itself stays writable from the latest valid event time, in either arm.
    events = [ev(f"u{i}", 0, "Product Added", product_id="p1", price=5.0) for i in range(8)]
    for e in events:
        e["timestamp"] = "9998-12-31T23:50:00.000Z"
    result = run(events, config("365d"))
    assert {a["action"] for a in result.actions} == {"cart_abandonment"}
    assert max(a["at"] for a in result.actions) <= "9999-12-31T23:50:00.000Z"


@pytest.mark.timeout(30)
def test_the_report_does_not_call_an_interval_under_holm_one_at_alpha() -> None:
    # Under Holm each lift's interval is at its own level, alpha x p / p_holm (b's here at
    # 0.05 / 4): the figure's title said "always-valid 95% interval" over them.
    from audienceflow.flows.report import _experiment_figures

    desc = {"arms": ["a", "b", "c"], "weights": [1 / 3] * 3, "alpha": 0.05}
    sums = [ArmStats(n=2000, conv=200), ArmStats(n=2000, conv=284), ArmStats(n=2000, conv=264)]
    holm = result({**desc, "correction": "holm"}, sums)
    assert holm["comparisons"]["b"]["conversion"]["ci_alpha"] == 0.0125
    [plain, fig] = _experiment_figures({"a": result(desc, sums), "b": holm})
    assert "with its always-valid 95% interval" in plain["title"]
    assert "95%" not in fig["title"]
    assert "by Holm over its comparisons: each at alpha x p / p_holm, alpha = 0.05" in fig["title"]
