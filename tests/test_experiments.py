"""Experiments through real replays: holdouts, global control, A/B arms, exposures, attribution.

Arms come from GrowthBook's v2 hash (checked against GrowthBook's vectors in
test_bucketing.py), so each test picks its users by that hash and works the
expected records out by hand. Default config: cart abandonment after 15 min,
cancelled by an order; caps 2 cart_abandonment a day with a 4 h cooldown.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import at, ev, read_jsonl, write_stream

from audienceflow.flows.replay import replay
from audienceflow.operators.bucketing import bucket_ranges, choose, gb_hash
from audienceflow.operators.config import ConfigError
from audienceflow.operators.lab import Lab, LabState
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import UserState
from audienceflow.operators.stats import ArmStats

pytestmark = pytest.mark.slow


def arm_of(seed: str, user: str, weights: list[float], coverage: float = 1.0) -> int:
    n = gb_hash(seed, user, 2)
    assert n is not None
    return choose(n, bucket_ranges(len(weights), coverage, weights))


def users_in(seed: str, weights: list[float], arm: int, count: int, prefix: str = "u") -> list[str]:
    found = (f"{prefix}{i}" for i in itertools.count())
    return list(itertools.islice((u for u in found if arm_of(seed, u, weights) == arm), count))


def run(tmp_path: Path, events: list, config: str, name: str = "out") -> dict:
    src = write_stream(tmp_path / f"{name}.jsonl", events)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(config)
    out = tmp_path / name
    summary = replay([str(src)], out, Settings.load(cfg, environ={}))
    files = {f: read_jsonl(out / f"{f}.jsonl") for f in ("actions", "exposures", "experiments")}
    return {"summary": summary, "out": out, **files}


def add(user: str, minutes: float) -> dict:
    return ev(user, minutes, "Product Added", product_id="p1", category="shoes", price=50)


HOLDOUT = """
experiments:
  cart_holdout:
    trigger: cart_abandonment
    seed: cart-holdout-1
    arms:
      holdout: {weight: 0.3, holdout: true}
      treatment: {weight: 0.7}
"""


@pytest.mark.timeout(120)
def test_holdout_users_get_no_delivered_action_and_ghosts_match_the_share(tmp_path: Path) -> None:
    users = [f"h{i}" for i in range(400)]
    r = run(tmp_path, [add(u, i * 0.05) for i, u in enumerate(users)], HOLDOUT)
    held = {u for u in users if arm_of("cart-holdout-1", u, [0.3, 0.7]) == 0}
    carts = [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert len(carts) == 400  # one decision per user, every one of them exposed
    delivered = {a["user_id"] for a in carts if a["status"] == "delivered"}
    ghosts = [a for a in carts if a.get("suppressed_reason") == "holdout"]
    assert not delivered & held
    assert {a["user_id"] for a in ghosts} == held
    assert delivered == set(users) - held
    # ghosts ~ 30 % of decisions: within 4 binomial standard deviations
    assert abs(len(ghosts) - 0.3 * 400) <= 4 * math.sqrt(400 * 0.3 * 0.7)
    for a in carts:
        assert a["trigger"]["experiment"] == "cart_holdout"
        assert a["trigger"]["arm"] == ("holdout" if a["user_id"] in held else "treatment")
    exposures = r["exposures"]
    assert len(exposures) == 400
    assert {e["action_id"] for e in exposures} == {a["action_id"] for a in carts}
    assert all(e["first"] for e in exposures)
    exp = r["summary"]["experiments"]["cart_holdout"]
    assert exp["arms"]["holdout"]["exposed"] == len(held)
    assert exp["arms"]["treatment"]["exposed"] == 400 - len(held)
    assert exp["srm"]["flagged"] is False


def test_arms_override_the_timer_after(tmp_path: Path) -> None:
    cfg = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: timing-1
    arms:
      control: {weight: 0.5}
      one_hour: {weight: 0.5, after: 1h, payload: {variant: late}}
"""
    (early,) = users_in("timing-1", [0.5, 0.5], 0, 1)
    (late,) = users_in("timing-1", [0.5, 0.5], 1, 1)
    r = run(tmp_path, [add(early, 0), add(late, 0)], cfg)
    at = {a["user_id"]: a for a in r["actions"] if a["action"] == "cart_abandonment"}
    assert at[early]["at"] == "2026-03-02T08:15:00.000Z"
    assert at[late]["at"] == "2026-03-02T09:00:00.000Z"
    assert at[late]["payload"]["variant"] == "late"
    assert "variant" not in at[early]["payload"]
    assert at[late]["trigger"]["after_seconds"] == 3600.0
    # Both arms are exposed when the soonest arm decides (08:15): the one-hour user by a
    # deferred ghost; the one-hour e-mail at 09:00 is a later exposure.
    got = sorted((e["at"][11:16], e["arm"], e["status"], e["suppressed_reason"], e["first"])
                 for e in r["exposures"])  # fmt: skip
    assert got == [
        ("08:15", "control", "delivered", None, True),
        ("08:15", "one_hour", "suppressed", "deferred", True),
        ("09:00", "one_hour", "delivered", None, False),
    ]


@pytest.mark.timeout(60)
def test_a_later_arm_exposes_no_one_whose_when_is_false_when_the_soonest_arm_decides(
    tmp_path: Path,
) -> None:
    # An e-mail only to opted-in shoppers with a cart: at 08:15 the control arm decides
    # nothing for a shopper who emptied the cart or never opted in, so the one-hour arm's
    # deferred ghost must not expose such a shopper either (it did: every anonymous or
    # opted-out cart of the slower arm was exposed, 680 users against 360 and an SRM flag
    # on a retailer's stream).
    cfg = """
triggers:
  cart_abandonment: {when: "cart_items > 0 and traits.opt_in == true"}
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: timing-1
    arms:
      control: {weight: 0.5}
      one_hour: {weight: 0.5, after: 1h}
"""
    early_in, early_out, early_gone, early_later = users_in("timing-1", [0.5, 0.5], 0, 4)
    late_in, late_out, late_gone, late_later = users_in("timing-1", [0.5, 0.5], 1, 4)
    events: list[dict[str, Any]] = []
    for user in (early_in, early_out, early_gone, late_in, late_out, late_gone):
        opted = user not in (early_out, late_out)
        events.append({"type": "identify", "userId": user, "timestamp": at(0),
                       "messageId": f"id-{user}", "traits": {"opt_in": opted}})  # fmt: skip
        events.append(add(user, 1))
    for user in (early_gone, late_gone):  # the cart emptied before the soonest arm decides
        events.append(ev(user, 5, "Product Removed", product_id="p1"))
    for user in (early_later, late_later):  # opts in after the soonest arm's moment
        events.append(add(user, 1))
        events.append({"type": "identify", "userId": user, "timestamp": at(20),
                       "messageId": f"id-{user}", "traits": {"opt_in": True}})  # fmt: skip
    r = run(tmp_path, events, cfg)
    got = sorted((e["user_id"], e["at"][11:16], e["arm"], e["status"], e["suppressed_reason"])
                 for e in r["exposures"])  # fmt: skip
    assert got == sorted([
        (early_in, "08:16", "control", "delivered", None),
        (late_in, "08:16", "one_hour", "suppressed", "deferred"),
        (late_in, "09:01", "one_hour", "delivered", None),
    ])  # fmt: skip
    # The control decides nothing for a cart whose `when` is false at 08:16, and its timer
    # is spent; the one-hour arm's is too, or its 09:01 e-mail to a shopper who opted in at
    # 08:20 would expose a user the control arm never exposes.
    assert not [a for a in r["actions"] if a["user_id"] in (early_later, late_later)]
    arms = r["summary"]["experiments"]["cart_timing"]["arms"]
    assert (arms["control"]["exposed"], arms["one_hour"]["exposed"]) == (1, 1)


@pytest.mark.timeout(60)
def test_a_later_arm_whose_own_when_is_false_at_the_soonest_moment_is_exposed_by_a_when_false_ghost(
    tmp_path: Path,
) -> None:
    # The arms' `when` differ: at 08:16 the control exposes every cart (its `when` holds),
    # so the one-hour arm must expose every cart then too, where its own stricter `when`
    # does not hold by a ghost carrying the values under `trigger.when_false` (its reason
    # stays `deferred`: the arm's own decision is still to come), and keeps its timer: the
    # 09:01 decision reads its `when` as configured, for a user already exposed. A ghost
    # that read the trigger's `when` had no `when_false`; one that made no ghost decision
    # for a false `when` exposed nobody of the one-hour arm at 08:16.
    cfg = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: timing-1
    arms:
      control: {weight: 0.5}
      one_hour: {weight: 0.5, after: 1h, when: "cart_items > 0 and traits.opt_in == true"}
"""
    (early,) = users_in("timing-1", [0.5, 0.5], 0, 1)
    late_later, late_never = users_in("timing-1", [0.5, 0.5], 1, 2)
    events: list[dict[str, Any]] = [add(early, 1), add(late_later, 1), add(late_never, 1)]
    events.append({"type": "identify", "userId": late_later, "timestamp": at(20),
                   "messageId": f"id-{late_later}", "traits": {"opt_in": True}})  # fmt: skip
    r = run(tmp_path, events, cfg)
    got = sorted((e["user_id"], e["at"][11:16], e["arm"], e["suppressed_reason"], e["first"])
                 for e in r["exposures"])  # fmt: skip
    assert got == sorted([
        (early, "08:16", "control", None, True),
        (late_later, "08:16", "one_hour", "deferred", True),
        (late_later, "09:01", "one_hour", None, False),
        (late_never, "08:16", "one_hour", "deferred", True),
    ])  # fmt: skip
    ghosts = {a["user_id"]: a["trigger"] for a in r["actions"] if a["at"][11:16] == "08:16"}
    assert ghosts[late_never]["when_false"]["traits.opt_in"] is None
    assert ghosts[late_later]["when_false"]["traits.opt_in"] is None
    arms = r["summary"]["experiments"]["cart_timing"]["arms"]
    assert (arms["control"]["exposed"], arms["one_hour"]["exposed"]) == (1, 2)


TIMING = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: timing-1
    arms:
      control: {weight: 0.5}
      one_hour: {weight: 0.5, after: 1h}
"""


def _anonymous(anon: str, minutes: float, name: str, **props: Any) -> dict[str, Any]:
    e = ev(anon, minutes, name, **props)
    e["anonymousId"] = e.pop("userId")
    return e


def _login(anon: str, user: str, minutes: float) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "anonymousId": anon, "timestamp": at(minutes),
            "messageId": f"login-{anon}", "traits": {}}  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("anon_arm", "user_arm"), [(1, 0), (0, 1)], ids=["late-in", "soon-in"])
def test_a_cart_timer_follows_the_arm_of_the_profile_it_is_merged_into(
    tmp_path: Path, anon_arm: int, user_arm: int
) -> None:
    """The cart starts anonymously, so the timer's deadline is the anonymous id's arm's;
    the login two minutes later makes the profile the userId's, whose arm (by its hash,
    nobody being exposed yet) decides at 08:15. The timer followed the anonymous arm:
    a control user got the one-hour timing and a deferred ghost under the control label,
    or a one-hour user got the 15-minute e-mail labelled one_hour."""
    (anon,) = users_in("timing-1", [0.5, 0.5], anon_arm, 1, prefix="anon-")
    (user,) = users_in("timing-1", [0.5, 0.5], user_arm, 1, prefix="user-")
    stream = [
        _anonymous(anon, 0, "Product Added", product_id="p1", category="shoes", price=50),
        _login(anon, user, 2),
    ]
    r = run(tmp_path, stream, TIMING)
    acts = [(a["at"][11:16], a["user_id"], a["status"], a.get("suppressed_reason"),
             a["trigger"]["arm"], a["trigger"]["after_seconds"]) for a in r["actions"]]  # fmt: skip
    if user_arm == 0:
        assert acts == [("08:15", user, "delivered", None, "control", 900.0)]
    else:
        assert acts == [
            ("08:15", user, "suppressed", "deferred", "one_hour", 900.0),
            ("09:00", user, "delivered", None, "one_hour", 3600.0),
        ]


@pytest.mark.timeout(60)
def test_a_merge_at_the_decision_keeps_the_arm_exposed_there_and_decides_once(
    tmp_path: Path,
) -> None:
    """The login comes at 08:15, the instant the soonest arm decides: the anonymous
    one-hour half's ghost decides first (a deadline goes before the events of its
    instant), which exposes it, and the profile keeps that exposure's arm. Its timer
    keeps the one-hour deadline, and the decision already made is not made again."""
    (anon,) = users_in("timing-1", [0.5, 0.5], 1, 1, prefix="anon-")
    (user,) = users_in("timing-1", [0.5, 0.5], 0, 1, prefix="user-")
    stream = [
        _anonymous(anon, 0, "Product Added", product_id="p1", category="shoes", price=50),
        _login(anon, user, 15),
    ]
    r = run(tmp_path, stream, TIMING)
    acts = [(a["at"][11:16], a["user_id"], a["status"], a.get("suppressed_reason"),
             a["trigger"]["arm"]) for a in r["actions"]]  # fmt: skip
    assert acts == [
        ("08:15", anon, "suppressed", "deferred", "one_hour"),
        ("09:00", user, "delivered", None, "one_hour"),
    ]


def _acts(r: dict) -> list[tuple[str, str, str, str | None, str]]:
    return [(a["at"][11:16], a["user_id"], a["status"], a.get("suppressed_reason"),
             a["trigger"]["arm"]) for a in r["actions"]]  # fmt: skip


def _cart(who: str, minutes: float, anonymous: bool = False) -> dict[str, Any]:
    make = _anonymous if anonymous else ev
    return make(who, minutes, "Product Added", product_id="p1", category="shoes", price=50)


@pytest.mark.timeout(60)
def test_the_global_control_groups_held_out_users_are_in_no_other_experiment(
    tmp_path: Path,
) -> None:
    """g_held is in the global control group's held-out half and in cart_timing's
    one-hour arm; g_in is in the personalized half and the one-hour arm. g_held gets
    nothing, so it is counted in the global control group only: it was counted as
    exposed to the one-hour arm it never got, diluting the arm's reading, and it taught a
    bandit (an outside pass found both). It keeps its arm's schedule, so both halves of
    the group are exposed at the soonest arm's instant (08:15)."""
    cfg = TIMING + "  global_control:\n    share: 0.5\n    seed: gc-1\n"
    held = next(u for u in users_in("gc-1", [0.5, 0.5], 0, 40, prefix="g")
                if arm_of("timing-1", u, [0.5, 0.5]) == 1)  # fmt: skip
    kept = next(u for u in users_in("gc-1", [0.5, 0.5], 1, 40, prefix="g")
                if arm_of("timing-1", u, [0.5, 0.5]) == 1)  # fmt: skip
    r = run(tmp_path, [_cart(held, 0), _cart(kept, 0)], cfg)
    acts = sorted(_acts(r), key=lambda a: (a[1], a[0]))
    assert [a for a in acts if a[1] == held] == [
        ("08:15", held, "suppressed", "global_control", "control"),
        ("09:00", held, "suppressed", "global_control", "control"),
    ]
    assert [a[:4] for a in acts if a[1] == kept] == [
        ("08:15", kept, "suppressed", "deferred"),
        ("09:00", kept, "delivered", None),
    ]
    firsts = sorted((x["user_id"], x["experiment"]) for x in r["exposures"] if x["first"])
    assert firsts == sorted([(held, "global_control"), (kept, "global_control"),
                             (kept, "cart_timing")])  # fmt: skip
    arms = r["summary"]["experiments"]["cart_timing"]["arms"]
    assert sum(a["exposed"] for a in arms.values()) == 1
    gc_first = {x["user_id"]: x["at"][11:16] for x in r["exposures"]
                if x["first"] and x["experiment"] == "global_control"}  # fmt: skip
    assert gc_first == {held: "08:15", kept: "08:15"}


@pytest.mark.timeout(60)
def test_a_held_out_user_of_arms_whose_when_differ_is_decided_once(tmp_path: Path) -> None:
    """Arms whose ``when`` differ make a false ``when`` a decision (a ghost) until the
    user's first exposure; a user the global control group holds out is never exposed in
    the experiment, so each event made another suppressed action, unless its exposure in
    the group counts as its decision."""
    cfg = """
triggers:
  promo:
    type: event
    events: [Product Viewed]
    action: promo
experiments:
  promo_when:
    trigger: promo
    seed: w-1
    arms:
      a: {weight: 0.5}
      b: {weight: 0.5, when: "cart_items > 0"}
  global_control:
    share: 0.5
    seed: gc-1
"""
    held = next(u for u in users_in("gc-1", [0.5, 0.5], 0, 40, prefix="g")
                if arm_of("w-1", u, [0.5, 0.5]) == 1)  # fmt: skip
    stream = [ev(held, m, "Product Viewed", product_id="p1") for m in (1, 2, 3)]
    r = run(tmp_path, stream, cfg)
    assert [(a["at"][11:16], a["suppressed_reason"]) for a in r["actions"]] == [
        ("08:01", "global_control")
    ]


@pytest.mark.timeout(60)
def test_the_global_control_groups_halves_are_exposed_at_the_same_moment(
    tmp_path: Path,
) -> None:
    """An arm 5 min sooner than the trigger's 15: held-out users ran the trigger's own
    delay, so an order at 10 min cancelled their timers before any exposure, and the
    group read 3 personalized against 0 held out (a review of the first version)."""
    cfg = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: t-1
    arms:
      fast: {weight: 0.5, after: 5m}
      standard: {weight: 0.5}
  global_control:
    share: 0.5
    seed: gc-1
"""
    held = users_in("gc-1", [0.5, 0.5], 0, 3, prefix="g")
    kept = users_in("gc-1", [0.5, 0.5], 1, 3, prefix="g")
    stream = [_cart(u, 0) for u in held + kept]
    stream += [ev(u, 10, "Order Completed", order_id=f"o-{u}", revenue=50) for u in held + kept]
    r = run(tmp_path, sorted(stream, key=lambda x: x["timestamp"]), cfg)
    arms = r["summary"]["experiments"]["global_control"]["arms"]
    assert (arms["control"]["exposed"], arms["personalized"]["exposed"]) == (3, 3)
    cart = r["summary"]["experiments"]["cart_timing"]["arms"]
    assert sum(a["exposed"] for a in cart.values()) == 3


@pytest.mark.timeout(60)
def test_a_timer_a_merge_ends_takes_its_ghost_with_it(tmp_path: Path) -> None:
    """The one-hour half's cart (08:00; ghost 08:15) is ended by the control half's order
    before it (the merge's cancel check); the cart started again at 08:10 is the control
    arm's, with no ghost of its own. The ghost left behind decided at 08:15, labelled
    control (a review found it)."""
    (anon,) = users_in("timing-1", [0.5, 0.5], 1, 1, prefix="anon-")
    (user,) = users_in("timing-1", [0.5, 0.5], 0, 1, prefix="user-")
    stream = [_cart(anon, 0, anonymous=True), ev(user, 0.5, "Order Completed", order_id="o1",
              total=50), _login(anon, user, 2), _cart(user, 10)]  # fmt: skip
    r = run(tmp_path, stream, TIMING)
    assert _acts(r) == [("08:25", user, "delivered", None, "control")]


@pytest.mark.timeout(60)
def test_a_deadline_a_merge_moves_before_the_merge_fires_at_the_merge(tmp_path: Path) -> None:
    """The userId was exposed as control at 03:15, so the profile keeps control; the
    one-hour anonymous half's cart (08:00) is the control arm's after the login at 08:20,
    due 08:15 by its start: past, so it fires at the merge, not stamped before it."""
    (anon,) = users_in("timing-1", [0.5, 0.5], 1, 1, prefix="anon-")
    (user,) = users_in("timing-1", [0.5, 0.5], 0, 1, prefix="user-")
    stream = [_cart(user, -300), _cart(anon, 0, anonymous=True), _login(anon, user, 20)]
    r = run(tmp_path, stream, TIMING)
    assert _acts(r) == [
        ("03:15", user, "delivered", None, "control"),
        ("08:15", anon, "suppressed", "deferred", "one_hour"),
        ("08:20", user, "delivered", None, "control"),
    ]


@pytest.mark.timeout(60)
def test_a_merge_past_the_soonest_arms_instant_with_no_decision_decides_at_once(
    tmp_path: Path,
) -> None:
    """Half the users are in the experiment (coverage 0.5); the soonest arm waits 5 min.
    The anonymous half is outside (the trigger's 15 min, no ghost), the userId in control
    (15 min): after a login at 08:07 the control profile's decision instant, 08:05, is
    past with no decision made, so it is made at the login, as every arm's is at the same
    moment of the same behaviour; without it only a shopper still not converted at 08:15
    would be exposed."""
    cfg = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: timing-1
    coverage: 0.5
    arms:
      control: {weight: 0.5}
      fast: {weight: 0.5, after: 5m}
"""

    def arm(u: str) -> int:
        return arm_of("timing-1", u, [0.5, 0.5], coverage=0.5)

    anon = next(u for u in (f"anon-{i}" for i in itertools.count()) if arm(u) == -1)
    user = next(u for u in (f"user-{i}" for i in itertools.count()) if arm(u) == 0)
    r = run(tmp_path, [_cart(anon, 0, anonymous=True), _login(anon, user, 7)], cfg)
    assert _acts(r) == [
        ("08:07", user, "suppressed", "deferred", "control"),
        ("08:15", user, "delivered", None, "control"),
    ]


@pytest.mark.timeout(60)
def test_a_timer_started_before_its_experiment_was_configured_reads_its_own_start(
    tmp_path: Path,
) -> None:
    """A cart timer of the trigger's 15 min, restored under a config that adds the
    experiment: the user's arm waits an hour, so its delay read a start 45 min early,
    and a cancel before the cart ended it at a merge (a review found it)."""
    from audienceflow.operators.experiments import ArmedTimer

    (trig,) = [t for t in load(tmp_path, TIMING).triggers if isinstance(t, ArmedTimer)]
    (late,) = users_in("timing-1", [0.5, 0.5], 1, 1)
    user = UserState(late, 0.0)
    user.timers = {trig.name: 1000.0 + 900.0}  # the plain trigger's, no ghost
    assert trig.started(user) == 1000.0
    (soon,) = users_in("timing-1", [0.5, 0.5], 0, 1)
    other = UserState(soon, 0.0)
    other.timers = {trig.name: 1000.0 + 900.0}
    assert trig.started(other) == 1000.0


@pytest.mark.timeout(60)
def test_an_order_after_the_merge_cancels_a_cart_timer_started_under_another_arm(
    tmp_path: Path,
) -> None:
    """The one-hour arm's cart (started 08:00, due 09:00) becomes a control profile's at
    the login: its order at 08:05 came after the cart, so it cancels the timer. Read
    with the control arm's 15 minutes, the timer seemed to start at 08:45, after the
    order, and the shopper who had bought got the cart e-mail."""
    (anon,) = users_in("timing-1", [0.5, 0.5], 1, 1, prefix="anon-")
    (user,) = users_in("timing-1", [0.5, 0.5], 0, 1, prefix="user-")
    stream = [
        _anonymous(anon, 0, "Product Added", product_id="p1", category="shoes", price=50),
        _login(anon, user, 2),
        ev(user, 5, "Order Completed", order_id="o1", total=50),
    ]
    r = run(tmp_path, stream, TIMING)
    assert [a for a in r["actions"] if a["action"] == "cart_abandonment"] == []


def test_arm_caps_override_the_trigger_caps(tmp_path: Path) -> None:
    cfg = """
experiments:
  cart_caps:
    trigger: cart_abandonment
    seed: caps-1
    arms:
      control: {weight: 0.5}
      relaxed: {weight: 0.5, caps: {cooldown: 0s}}
"""
    (strict,) = users_in("caps-1", [0.5, 0.5], 0, 1)
    (relaxed,) = users_in("caps-1", [0.5, 0.5], 1, 1)
    # two abandonments an hour apart: the default 4 h cooldown suppresses the second
    stream = [add(u, m) for m in (0, 60) for u in (strict, relaxed)]
    r = run(tmp_path, sorted(stream, key=lambda e: e["timestamp"]), cfg)
    got = [
        (a["user_id"], a["status"], a.get("suppressed_reason"))
        for a in r["actions"]
        if a["action"] == "cart_abandonment"
    ]
    assert sorted(got, key=str) == sorted(
        [
            (strict, "delivered", None),
            (strict, "suppressed", "cooldown"),
            (relaxed, "delivered", None),
            (relaxed, "delivered", None),
        ],
        key=str,
    )


def test_global_control_users_receive_no_action_of_any_trigger(tmp_path: Path) -> None:
    cfg = """
experiments:
  global_control:
    share: 0.5
    seed: gc-1
"""
    users = [f"g{i}" for i in range(40)]
    stream = []
    for i, u in enumerate(users):
        stream.append(add(u, i * 0.1))
        stream += [ev(u, i * 0.1 + 0.01 * k, "Home", mid=f"{u}-home-{k}") for k in range(1, 7)]
    r = run(tmp_path, sorted(stream, key=lambda e: e["timestamp"]), cfg)
    control = {u for u in users if arm_of("gc-1", u, [0.5, 0.5]) == 0}
    assert control and control != set(users)
    kinds = {a["action"] for a in r["actions"]}
    assert kinds == {"cart_abandonment", "high_engagement_content"}
    for a in r["actions"]:
        if a["user_id"] in control:
            assert (a["status"], a["suppressed_reason"]) == ("suppressed", "global_control")
            assert a["trigger"]["arm"] == "control"
        else:
            assert a["status"] == "delivered"
    firsts = [e for e in r["exposures"] if e["first"]]
    assert len(firsts) == len(users)  # one first exposure per user, later ones not first
    assert len(r["exposures"]) == len(r["actions"])


def test_goals_are_attributed_to_the_first_exposure_within_the_window(tmp_path: Path) -> None:
    held = users_in("cart-holdout-1", [0.3, 0.7], 0, 2, "a")
    (treated,) = users_in("cart-holdout-1", [0.3, 0.7], 1, 1, "a")
    day = 24 * 60
    stream = [
        add(held[0], 0),
        add(held[1], 0),
        add(treated, 0),
        # exposures at 08:15; treated orders 50 at 08:20 (counted), held[0] 20 at 08:30
        ev(treated, 20, "Order Completed", order_id="o1", total=50),
        ev(held[0], 30, "Order Completed", order_id="o2", total=20),
        ev("zed", 4 * day, "Home"),  # moves stream time so day 8 is not in the future
        # 8 days after exposure: outside the 7 d window, not counted
        ev(treated, 8 * day, "Order Completed", order_id="o3", total=999),
    ]
    r = run(tmp_path, stream, HOLDOUT)
    arms = r["summary"]["experiments"]["cart_holdout"]["arms"]
    assert arms["holdout"]["exposed"] == 2
    assert arms["holdout"]["converters"] == 1
    assert arms["holdout"]["revenue"] == 20.0
    assert arms["holdout"]["revenue_per_user"] == 10.0
    assert arms["treatment"]["exposed"] == 1
    assert arms["treatment"]["converters"] == 1
    assert arms["treatment"]["revenue"] == 50.0


BANDIT = """
experiments:
  global_control:
    share: 0.1
    seed: gc-2
  cart_timing:
    trigger: cart_abandonment
    seed: timing-2
    arms:
      control: {weight: 0.5}
      one_hour: {weight: 0.5, after: 1h}
  content_bandit:
    trigger: high_engagement_content
    bandit: {floor: 0.1, seed: 3}
    arms:
      a: {weight: 0.5, payload: {module: a}}
      b: {weight: 0.5, payload: {module: b}}
"""


def _mixed_stream() -> list:
    stream = []
    for i in range(120):
        u = f"m{i}"
        t = i * 0.7
        stream.append(add(u, t))
        stream += [ev(u, t + 0.01 * k, "Home", mid=f"{u}-h{k}") for k in range(1, 7)]
        if i % 3 == 0:
            stream.append(ev(u, t + 70, "Order Completed", order_id=f"o{i}", total=10 + i))
    return sorted(stream, key=lambda e: e["timestamp"])


@pytest.mark.timeout(120)
def test_replays_with_experiments_and_a_bandit_are_byte_identical(tmp_path: Path) -> None:
    stream = _mixed_stream()
    one = run(tmp_path, stream, BANDIT, "one")
    two = run(tmp_path, stream, BANDIT, "two")
    names = sorted(p.name for p in one["out"].iterdir())
    assert "exposures.jsonl" in names and "experiments.jsonl" in names
    for name in names:
        assert (one["out"] / name).read_bytes() == (two["out"] / name).read_bytes(), name
    bandit = [e for e in one["exposures"] if e["experiment"] == "content_bandit"]
    assert bandit and all(0.1 <= e["propensity"] <= 0.9 for e in bandit)
    assert len({e["decision_id"] for e in one["exposures"]}) == len(one["exposures"])


def test_thompson_sampling_favours_the_better_arm_but_keeps_the_floor() -> None:
    settings = Settings.load(None, environ={})
    from audienceflow.operators import experiments

    loc_yaml = {
        "experiments": {
            "b": {
                "trigger": "high_engagement_content",
                "bandit": {"floor": 0.1},
                "arms": {"worse": {"weight": 0.5}, "better": {"weight": 0.5}},
            }
        }
    }
    from audienceflow.operators.config import Located

    exps = experiments.parse(Located(loc_yaml), list(settings.triggers), settings.caps)
    state = LabState()
    lab = Lab(exps, settings.caps, state)
    state.arms["b"] = [ArmStats(n=1000, conv=50), ArmStats(n=1000, conv=300)]
    picks = [lab._arm(exps.items[0], UserState(f"t{i}", 0.0)) for i in range(300)]
    better = sum(1 for arm, _ in picks if arm == 1)
    assert 0.8 * 300 <= better < 300  # ~ 0.9 of users, yet the floor keeps the other arm alive
    assert {round(p, 3) for _, p in picks} == {0.1, 0.9}


# --- config checks -------------------------------------------------------------


def load(tmp_path: Path, text: str) -> Settings:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    return Settings.load(cfg, environ={})


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            "experiments:\n  e:\n    trigger: cart_abandonment\n    arms:\n"
            "      a: {weight: 0.5}\n      b: {weight: 0.4}\n",
            ":4: experiments.e.arms:",  # the line of the key
            "must sum to 1",
        ),
        (
            "experiments:\n  e:\n    trigger: cart_abandonment\n    seed: s\n    arms:\n"
            "      a: {weight: 0.5}\n      b: {weight: 0.5}\n"
            "  f:\n    trigger: high_engagement_content\n    seed: s\n    arms:\n"
            "      a: {weight: 0.5}\n      b: {weight: 0.5}\n",
            ":10: experiments.f.seed:",
            "also the seed of 'e'",
        ),
        (
            "experiments:\n  e:\n    trigger: cart_abandonment\n    arms:\n"
            "      a: {weight: 0.5}\n      b: {weight: 0.5}\n"
            "  f:\n    trigger: cart_abandonment\n    arms:\n"
            "      a: {weight: 0.5}\n      b: {weight: 0.5, holdout: true}\n",
            ":3: experiments.e.trigger:",
            "declare overlap: true",
        ),
        (
            "experiments:\n  e:\n    trigger: nope\n    arms:\n      a: {weight: 1}\n",
            ":3: experiments.e.trigger:",
            "names no trigger",
        ),
        (
            "experiments:\n  e:\n    trigger: cart_abandonmnt\n    arms:\n      a: {weight: 1}\n",
            ":3: experiments.e.trigger:",
            "names no trigger: 'cart_abandonmnt' (did you mean 'cart_abandonment'?); known: ",
        ),
        (
            "experiments:\n  e:\n    trigger: high_engagement_content\n    arms:\n"
            "      a: {weight: 0.5}\n      b: {weight: 0.5, after: 1h}\n",
            ":6: experiments.e.arms.b.after:",
            "is not a timer",
        ),
        (
            "experiments:\n  e:\n    trigger: cart_abandonment\n    arms:\n"
            "      a: {weight: 0.5}\n      b: {weight: 0.5, when: 'cart_items >'}\n",
            ":6: experiments.e.arms.b.when:",
            "",
        ),
        (
            "experiments:\n  e:\n    trigger: cart_abandonment\n    arms:\n"
            "      a: {weight: 0}\n      b: {weight: 1}\n",
            ":5: experiments.e.arms.a.weight:",
            "an arm of weight 0 is assigned to nobody; put an arm of weight > 0 first",
        ),
        (
            "experiments:\n  global_control:\n    share: 0.9\n",
            ":3: experiments.global_control.share:",
            "from 0 to 0.5",
        ),
        (
            "experiments:\n  e:\n    trigger: cart_abandonment\n    correction: bonferroni\n"
            "    arms:\n      a: {weight: 0.5}\n      b: {weight: 0.5}\n",
            ":4: experiments.e.correction:",
            "must be one of none, holm",
        ),
        (
            "experiments:\n  e:\n    trigger: cart_abandonment\n    bandit: true\n"
            "    correction: holm\n    arms:\n      a: {weight: 0.5}\n      b: {weight: 0.5}\n",
            ":5: experiments.e.correction:",
            "nothing to correct",
        ),
    ],
)
def test_bad_experiment_config_names_file_line_and_key(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "config.yaml") + where), msg
    assert reason in msg


def test_global_control_takes_a_correction_too(tmp_path: Path) -> None:
    # README: `correction` is "also on `global_control`". Accepted there but not kept,
    # the holdout's reading would have been at alpha per comparison without a word.
    s = load(tmp_path, "experiments:\n  global_control:\n    share: 0.05\n    correction: holm\n")
    [gc] = [e for e in s.experiments.items if e.name == "global_control"]
    assert gc.correction == "holm" and gc.describe()["correction"] == "holm"


def test_a_correction_is_read_per_experiment_and_none_by_default(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "experiments:\n  e:\n    trigger: cart_abandonment\n    correction: holm\n    arms:\n"
        "      a: {weight: 0.5}\n      b: {weight: 0.5}\n"
        "  global_control:\n    share: 0.05\n",
    )
    by_name = {e.name: e for e in s.experiments.items}
    assert by_name["e"].describe()["correction"] == "holm"
    assert by_name["global_control"].correction == "none"
    assert "correction" not in by_name["global_control"].describe()
    # The summary reads the shards' reports (their describe) with it, and the table says so.
    import io

    from rich.console import Console

    from audienceflow.flows.summary import render_experiments
    from audienceflow.operators.stats import ArmStats, merged

    sums = [ArmStats(n=2000, conv=200).to_json(), ArmStats(n=2000, conv=284).to_json()]
    reading = merged([{"e": {**by_name["e"].describe(), "sums": sums}}])["e"]
    assert reading["correction"] == "holm"
    assert reading["comparisons"]["b"]["conversion"]["p_holm"] is not None
    buf = io.StringIO()
    render_experiments({"e": reading}, Console(file=buf, width=300, color_system=None))
    # Under Holm each interval is at its own level: the title names no "95%" (1 - alpha).
    want = "e (always-valid interval, by Holm over its comparisons: each at alpha x p / p_holm, "
    assert want + "alpha = 0.05)" in buf.getvalue()


def test_overlap_is_allowed_when_declared(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "experiments:\n  e:\n    trigger: cart_abandonment\n    overlap: true\n    arms:\n"
        "      a: {weight: 0.5}\n      b: {weight: 0.5}\n"
        "  f:\n    trigger: cart_abandonment\n    overlap: true\n    arms:\n"
        "      a: {weight: 0.5}\n      b: {weight: 0.5, holdout: true}\n",
    )
    assert [e.name for e in s.experiments.for_trigger("cart_abandonment")] == ["e", "f"]


def test_readme_worked_config_and_demo_config_load(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Experiments", 1)[1]
    block = section.split("```yaml", 1)[1].split("```", 1)[0]
    s = load(tmp_path, block)
    assert [e.name for e in s.experiments.items] == ["global_control", "cart_timing"]
    demo = Settings.load(Path(__file__).parent.parent / "examples" / "demo.yaml", environ={})
    (exp,) = demo.experiments.items
    assert [a.name for a in exp.arms] == ["after_15m", "after_1h", "holdout"]


def test_zero_coverage_runs_the_trigger_as_configured_and_exposes_no_one(tmp_path: Path) -> None:
    cfg = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    coverage: 0
    arms:
      control: {weight: 0.5}
      one_hour: {weight: 0.5, after: 1h}
"""
    users = [f"z{i}" for i in range(10)]
    r = run(tmp_path, [add(u, 0) for u in users], cfg)
    carts = [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert {a["at"] for a in carts} == {"2026-03-02T08:15:00.000Z"}
    assert len(carts) == 10 and all("experiment" not in a["trigger"] for a in carts)
    assert r["exposures"] == []


def test_an_experiment_whose_arms_change_starts_its_reading_again() -> None:
    settings = Settings.load(None, environ={})
    from audienceflow.operators import experiments
    from audienceflow.operators.config import Located

    def exps(arms: dict) -> experiments.Experiments:
        spec = {"experiments": {"e": {"trigger": "high_engagement_content", "arms": arms}}}
        return experiments.parse(Located(spec), list(settings.triggers), settings.caps)

    state = LabState()
    Lab(exps({"a": {"weight": 0.5}, "b": {"weight": 0.5}}), settings.caps, state)
    state.arms["e"][1].n = 7
    Lab(exps({"a": {"weight": 0.5}, "b": {"weight": 0.5}}), settings.caps, state)
    assert state.arms["e"][1].n == 7  # a restart with the same arms keeps the sums
    three = {"a": {"weight": 0.4}, "b": {"weight": 0.3}, "c": {"weight": 0.3}}
    Lab(exps(three), settings.caps, state)
    assert [s.n for s in state.arms["e"]] == [0, 0, 0]


@pytest.mark.timeout(120)
def test_a_deleted_users_sums_stay_and_a_return_is_a_new_first_exposure(tmp_path: Path) -> None:
    (u,) = users_in("cart-holdout-1", [0.3, 0.7], 1, 1, "d")
    stream = [
        add(u, 0),  # exposed at 08:15
        ev(u, 20, "Order Completed", order_id="o1", total=50),
        add(u, 60),  # after the deletion at 08:30: a new profile, exposed at 09:15
        ev("zed", 200, "Home"),
    ]
    src = write_stream(tmp_path / "s.jsonl", stream)
    ctl = write_stream(
        tmp_path / "c.jsonl",
        [{"type": "delete", "id": u, "requestId": "r1", "timestamp": at(30)}],
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(HOLDOUT)
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(cfg, environ={}), control=[str(ctl)])
    firsts = [e for e in read_jsonl(out / "exposures.jsonl") if e["first"]]
    assert [e["at"] for e in firsts] == [at(15), at(75)]
    arm = summary["experiments"]["cart_holdout"]["arms"]["treatment"]
    assert (arm["exposed"], arm["converters"], arm["revenue"]) == (2, 1, 50.0)


@pytest.mark.timeout(120)
def test_across_a_merge_the_earlier_exposure_is_kept_and_both_stay_counted(
    tmp_path: Path,
) -> None:
    (anon,) = users_in("cart-holdout-1", [0.3, 0.7], 0, 1, "anon")  # held out
    (known,) = users_in("cart-holdout-1", [0.3, 0.7], 1, 1, "known")  # treated
    as_anon = add(anon, 0)  # exposed (a ghost) at 08:15
    as_anon.pop("userId")
    as_anon["anonymousId"] = anon
    identify = {"type": "identify", "userId": known, "anonymousId": anon, "traits": {},
                "timestamp": at(30), "messageId": "id1"}  # fmt: skip
    stream = [
        as_anon,
        add(known, 5),  # exposed, delivered, at 08:20
        identify,  # the anonymous half's exposure is the earlier: kept
        add(known, 40),  # decided at 08:55 in the kept arm: held out
        ev(known, 60, "Order Completed", order_id="o1", total=30),
        ev("zed", 200, "Home"),
    ]
    r = run(tmp_path, stream, HOLDOUT)
    late = [a for a in r["actions"] if a["at"] == at(55)]
    assert [(a["trigger"]["arm"], a["suppressed_reason"]) for a in late] == [("holdout", "holdout")]
    arms = r["summary"]["experiments"]["cart_holdout"]["arms"]
    assert (arms["holdout"]["exposed"], arms["holdout"]["converters"]) == (1, 1)
    assert arms["holdout"]["revenue"] == 30.0
    assert (arms["treatment"]["exposed"], arms["treatment"]["converters"]) == (1, 0)


@pytest.mark.timeout(180)
def test_arms_that_differ_only_in_after_read_alike_when_the_action_changes_nothing(
    tmp_path: Path,
) -> None:
    # 3000 cart adds; 30 % order at a time drawn uniformly within 2 h of the add,
    # whatever the arm: the e-mail has no effect, so the arms must read alike.
    config = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: demo-cart-timing
    arms:
      after_15m: {weight: 0.5}
      after_1h: {weight: 0.5, after: 1h}
"""
    rnd = np.random.default_rng(1)
    stream = []
    for i in range(3000):
        t = i * 0.05
        stream.append(add(f"s{i}", t))
        if rnd.random() < 0.3:
            total = 10
            stream.append(ev(f"s{i}", t + rnd.uniform(1, 120), "Order Completed", total=total))
    stream.append(ev("zed", 3000 * 0.05 + 24 * 60, "Home"))
    stream.sort(key=lambda e: e["timestamp"])
    r = run(tmp_path, stream, config)
    exp = r["summary"]["experiments"]["cart_timing"]
    arms = {k: (a["exposed"], a["conversion_rate"]) for k, a in exp["arms"].items()}
    cmp = exp["comparisons"]["after_1h"]["conversion"]
    assert not exp["srm"]["flagged"] and not cmp["significant"], (arms, exp["srm"], cmp["lift"])


@pytest.mark.timeout(60)
def test_a_timer_no_trigger_owns_any_more_is_dropped_when_due(tmp_path: Path) -> None:
    # A snapshot taken while a slower arm's deferred ghost was pending, resumed with the
    # experiment removed: nothing fires that key, and the engine must not spin on it.
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.records import Event, Watermark

    timing = """
experiments:
  cart_timing:
    trigger: cart_abandonment
    seed: timing-1
    arms:
      control: {weight: 0.5}
      one_hour: {weight: 0.5, after: 1h}
"""
    (late,) = users_in("timing-1", [0.5, 0.5], 1, 1)
    t0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
    env = {"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"}
    with_exp = tmp_path / "with.yaml"
    with_exp.write_text(timing)
    eng = ShardEngine(Settings.load(with_exp, environ=env), ShardState("s"), partitions=["p"])
    cart = {"product_id": "p1", "category": "shoes", "price": 50}
    eng.on_items([Event("m1", late, None, "track", "Product Added", t0, "conversion", cart)])
    eng.on_items([Watermark("p", t0)])
    assert len(eng.state.users[late].timers) == 2  # its own e-mail and the deferred ghost
    plain = ShardEngine(Settings.load(None, environ=env), eng.state, partitions=["p"])
    out = plain.on_items([Watermark("p", t0 + 7200)])
    actions = [r for r in out if type(r).__name__ == "Action"]
    assert [(a.at - t0, a.status) for a in actions] == [(3600.0, "delivered")]


def _both_arms_when(name: str, seed: str, when: str) -> str:
    """A cart-abandonment experiment whose two arms act only when ``when`` holds: an
    arm's rule read as no segment or trigger reads it."""
    return f"""
experiments:
  {name}:
    trigger: cart_abandonment
    seed: {seed}
    arms:
      a: {{weight: 0.5, when: "{when}"}}
      b: {{weight: 0.5, when: "{when}"}}
"""


ARM_READS_A_TRAIT = _both_arms_when("by_plan", "by-plan", "traits.plan == 'pro'")


def test_an_arm_reading_a_trait_no_segment_or_trigger_reads_sees_it(tmp_path: Path) -> None:
    # Traits are kept only when a rule reads them: an arm's `when` is such a rule. It saw
    # `traits.plan` as null (every action suppressed `when_false`) when only segments and
    # triggers counted.
    events = []
    for n, plan in enumerate(("pro", "pro", "free")):
        user = f"u{n}"
        events += [ev(user, n, "identify", etype="identify"), add(user, n + 1)]
        events[-2]["traits"] = {"plan": plan, "name": "Ann"}
    events.append(ev("bob", 100))
    r = run(tmp_path, events, ARM_READS_A_TRAIT)
    status = {a["user_id"]: a["status"] for a in r["actions"]}
    assert status == {"u0": "delivered", "u1": "delivered", "u2": "suppressed"}


ARM_COUNTS_VIEWS = _both_arms_when("by_views", "by-views", "count('Product Viewed', 1h) >= 2")


def test_an_arm_counting_events_no_segment_or_trigger_counts_sees_them(tmp_path: Path) -> None:
    # Window structures exist only for what some rule counts: an arm's `when` is such a
    # rule. Its count was 0 for everyone (every action suppressed `when_false`) when only
    # segments and triggers counted.
    events = []
    for n, views in enumerate((3, 2, 1)):
        user = f"u{n}"
        for k in range(views):
            events.append(ev(user, n + k * 0.01, "Product Viewed", product_id="p1"))
        events.append(add(user, n + 0.5))
    events.append(ev("bob", 100))
    r = run(tmp_path, events, ARM_COUNTS_VIEWS)
    status = {a["user_id"]: a["status"] for a in r["actions"]}
    assert status == {"u0": "delivered", "u1": "delivered", "u2": "suppressed"}


@pytest.mark.timeout(120)
def test_goal_values_are_amounts_in_the_stream_currency(tmp_path: Path) -> None:
    # An order's value reaches the arm's sums only as an amount sessions would count:
    # JSON's 1e300 made the arm's sum of squares infinite and its interval NaN; a JPY
    # order without a rate was added to euros as if it were euros.
    held = users_in("cart-holdout-1", [0.3, 0.7], 0, 1, "a")[0]
    (treated,) = users_in("cart-holdout-1", [0.3, 0.7], 1, 1, "a")
    stream = [
        add(held, 0),
        add(treated, 0),
        ev(treated, 20, "Order Completed", order_id="o1", total=50, currency="USD"),
        ev(treated, 21, "Order Completed", order_id="o2", total=7000, currency="JPY"),
        ev(held, 30, "Order Completed", order_id="o3", total=1e300, revenue=1e300),
        ev(held, 31, "Order Completed", order_id="o4", revenue=-20, total=20),
    ]
    money = "money:\n  currency: EUR\n  rates: {USD: 0.5}\n"
    arms = run(tmp_path, stream, HOLDOUT + money)["summary"]["experiments"]["cart_holdout"]["arms"]
    assert arms["treatment"]["revenue"] == 25.0  # 50 USD; the yen not counted
    assert arms["holdout"]["revenue"] == 20.0  # the total, past the unusable revenue
    assert arms["treatment"]["converters"] == arms["holdout"]["converters"] == 1
    # Without a ``money`` section currencies are not read: amounts sum as sent.
    plain = run(tmp_path, stream, HOLDOUT, "plain")["summary"]["experiments"]["cart_holdout"]
    assert plain["arms"]["treatment"]["revenue"] == 7050.0
    assert plain["arms"]["holdout"]["revenue"] == 20.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("trigger", ["event", "timer"])
def test_an_order_placed_before_the_exposure_and_sent_again_after_it_is_no_conversion(
    tmp_path: Path, trigger: str
) -> None:
    """A reloaded confirmation page sends its order again, same order_id. Re-sent after
    the exposure (of the order's own trigger, or of a cart timer after a new add), it
    counted as a converter with the order's whole value; a new order still counts."""
    if trigger == "event":
        triggers = """
triggers:
  thanks:
    type: event
    events: [Order Completed]
    action: thank_you
"""
        exp_trigger = "thanks"
    else:
        triggers = ""
        exp_trigger = "cart_abandonment"
    config = (
        triggers
        + f"""
experiments:
  t:
    trigger: {exp_trigger}
    arms:
      a: {{weight: 0.5}}
      b: {{weight: 0.5}}
"""
    )
    order = {"order_id": "o-1", "revenue": 120.0}
    events = [ev("u1", 0, "Order Completed", **order)]
    if trigger == "timer":  # a new add after the order: its timer exposes at 16
        events.append(ev("u1", 1, "Product Added", product_id="p1", price=5.0, quantity=1))
    events += [
        ev("u1", 25, "Order Completed", mid="reload", **order),  # after either exposure
        ev("u2", 25.5, "Home"),
    ]
    r = run(tmp_path, events, config)
    first = [x for x in r["exposures"] if x["user_id"] == "u1" and x["first"]]
    assert len(first) == 1 and first[0]["at"] == at(0 if trigger == "event" else 16)
    arm = first[0]["arm"]
    reading = r["summary"]["experiments"]["t"]["arms"][arm]
    assert (reading["exposed"], reading["converters"], reading["revenue"]) == (1, 0, 0.0)
    r2 = run(
        tmp_path,
        [*events, ev("u1", 26, "Order Completed", order_id="o-2", revenue=30.0)],
        config,
        name="out2",
    )
    again = r2["summary"]["experiments"]["t"]["arms"][arm]
    assert (again["converters"], again["revenue"]) == (1, 30.0)


@pytest.mark.timeout(60)
def test_an_order_of_an_earlier_session_sent_again_after_the_exposure_is_no_conversion(
    tmp_path: Path,
) -> None:
    """u1 orders o-1 at 0, and adds to the cart at 60 in a later session (its timer
    exposes at 75); an app store re-delivers o-1 at 180, in a third session: no order,
    so no conversion (the exposure knew its open session's orders only: it counted
    120.0)."""
    config = """
experiments:
  t:
    trigger: cart_abandonment
    arms:
      a: {weight: 0.5}
      b: {weight: 0.5}
"""
    order = {"order_id": "o-1", "revenue": 120.0}
    events = [
        ev("u1", 0, "Order Completed", **order),
        ev("u1", 60, "Product Added", product_id="p1", price=5.0, quantity=1),
        ev("u1", 180, "Order Completed", mid="redelivered", **order),
        ev("u2", 260, "Home"),
    ]
    r = run(tmp_path, events, config)
    assert [x["at"] for x in r["exposures"] if x["first"]] == [at(75)]
    arms = r["summary"]["experiments"]["t"]["arms"]
    assert sum(a["exposed"] for a in arms.values()) == 1
    assert sum(a["converters"] for a in arms.values()) == 0
    assert sum(a["revenue"] for a in arms.values()) == 0.0


@pytest.mark.timeout(60)
def test_a_merge_keeps_the_orders_both_exposed_halves_placed_before_their_exposures(
    tmp_path: Path,
) -> None:
    """a1 is exposed at 5 (its cart timer), u1 at 16 after its order o-1; the identify
    at 17 makes them one profile, which keeps a1's earlier exposure. It kept only a1's
    order ids, so u1's o-1 sent again at 25 counted as a conversion."""
    config = """
experiments:
  t:
    trigger: cart_abandonment
    arms:
      a: {weight: 0.5}
      b: {weight: 0.5}
"""

    def anon(minutes: float, name: str, **props: Any) -> dict:
        event = ev("x", minutes, name, mid=f"a1-{minutes}", **props)
        del event["userId"]
        return {**event, "anonymousId": "a1"}

    order = {"order_id": "o-1", "revenue": 120.0}
    events = [
        anon(-10, "Product Added", product_id="p9", price=5.0, quantity=1),  # exposed at 5
        ev("u1", 0, "Order Completed", **order),
        ev("u1", 1, "Product Added", product_id="p1", price=5.0, quantity=1),  # exposed at 16
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "timestamp": at(17),
            "messageId": "link",
            "traits": {},
        },
        ev("u1", 25, "Order Completed", mid="reload", **order),
        ev("u2", 40, "Home"),
    ]
    r = run(tmp_path, events, config)
    assert sorted(x["user_id"] for x in r["exposures"] if x["first"]) == ["a1", "u1"]
    arms = r["summary"]["experiments"]["t"]["arms"]
    assert sum(a["converters"] for a in arms.values()) == 0
    assert sum(a["revenue"] for a in arms.values()) == 0.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("ordered", "converters"), [(0, 0), (18, 1)], ids=["before", "after"])
def test_an_order_of_the_unexposed_half_sent_again_after_the_merge(
    tmp_path: Path, ordered: float, converters: int
) -> None:
    """Only u1 is exposed (16, its cart timer); a1 orders o-1 on the other device, and
    the login at 20 makes them one profile, whose open session holds o-1. Ordered at 0,
    before the exposure, o-1 sent again at 25 is no conversion, as under one id; the
    merge passed the other half's orders only to an exposure both halves had, so it
    counted (an outside pass found it). Ordered at 18, after the exposure, neither half
    counted it, and its repeat counts once."""
    config = """
experiments:
  t:
    trigger: cart_abandonment
    arms:
      a: {weight: 0.5}
      b: {weight: 0.5}
"""
    order = {"order_id": "o-1", "revenue": 120.0}
    events = [
        ev("u1", 1, "Product Added", product_id="p1", price=5.0, quantity=1),  # exposed at 16
        _anonymous("a1", ordered, "Order Completed", **order),
        _login("a1", "u1", 20),
        ev("u1", 25, "Order Completed", mid="reload", **order),
        ev("u2", 40, "Home"),
    ]
    r = run(tmp_path, sorted(events, key=lambda x: x["timestamp"]), config)
    assert [x["user_id"] for x in r["exposures"] if x["first"]] == ["u1"]
    arms = r["summary"]["experiments"]["t"]["arms"]
    assert sum(a["converters"] for a in arms.values()) == converters
