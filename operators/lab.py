"""Experiments at run time, per shard: decide candidates by arm, expose, attribute, read.

Every candidate of an experimented trigger becomes an action record that names
its experiments and arms (``trigger.experiment``, ``trigger.arm``) and one
``Exposure`` per experiment; in a held-out arm the action is ``suppressed``
with reason ``holdout`` (``global_control`` for the global control group) and
costs no cap: a ghost exposure of what would have been sent. Goals are
attributed to the user's first exposure in each experiment within the goal's
window of event time, into per-arm sums (``stats.ArmStats``) kept per shard.
An ``ExperimentUpdate`` is written when an arm's interval moves materially, and,
before every arm has ``FIRST_REPORT`` users, when the SRM test flags the split. A
record's SRM verdict is the sequential (anytime-valid) test's, as records are read
at every exposure; the end-of-replay summary's is the one-look chi-square test's.

Unit of assignment: the profile id (``user_id``). Stickiness across identity
merges (earliest exposure wins) is left to the identity work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audienceflow.operators.caps import FrequencyCaps
from audienceflow.operators.experiments import (
    LEGACY_LAYOUT,
    Experiment,
    Experiments,
    held_out,
    kept_exposure,
)
from audienceflow.operators.records import (
    Action,
    Event,
    ExperimentUpdate,
    Exposure,
    iso,
    stable_id,
)
from audienceflow.operators.sessions import order_counted_at, order_digest, order_key
from audienceflow.operators.state import UserState, hit
from audienceflow.operators.stats import METRICS, ArmStats, result, srm
from audienceflow.operators.triggers import Candidate

# An interval has moved "materially" when either end moved by more than this
# share of its last reported width, or significance flipped.
MATERIAL = 0.10
# Exposed users each arm of weight > 0 needs before its interval is first reported;
# before, a record is written only when the SRM verdict changes (``_maybe_report``).
FIRST_REPORT = 10
_THOMPSON_DRAWS = 500  # Monte Carlo draws for P(arm is best); the logged propensity is exact
# Order ids an exposure remembers (the latest), so an order sent twice (a reloaded
# confirmation page, a new messageId) counts once in the goal window, days long.
GOAL_ORDER_IDS = 16


@dataclass(slots=True)
class Exposed:
    """A user's standing in one experiment (in ``UserState.experiments``)."""

    arm: int
    first_at: float
    pre: float  # pre-exposure conversions (CUPED covariate)
    propensity: float
    converted: bool = False
    revenue: float = 0.0
    # The latest GOAL_ORDER_IDS counted, and the open session's orders at the exposure.
    order_ids: list[str] = field(default_factory=list)
    layout: int = LEGACY_LAYOUT  # ``Experiment.layout`` of the arms it was exposed under


@dataclass
class LabState:
    """A shard's experiment sums and reporting marks; pickles with the shard."""

    arms: dict[str, list[ArmStats]] = field(default_factory=dict)
    reported: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: int = 0
    layouts: dict[str, int] = field(default_factory=dict)  # the arms the sums are of


class Lab:
    """The experiments of one shard (``state``), under the configured ``experiments``."""

    def __init__(
        self,
        experiments: Experiments,
        caps: FrequencyCaps,
        state: LabState,
        shard: Callable[[], str] = str,
        shards: int = 1,
    ) -> None:
        self.cfg = experiments
        self.caps = caps
        self.state = state
        self.shard = shard
        # How many shards read their own users' split: each one's live SRM flag is at
        # ``SRM_ALPHA / shards``, so the experiment's chance of a false flag is SRM_ALPHA.
        self.shards = shards
        self._by_trigger: dict[str, list[Experiment]] = {}
        if not hasattr(state, "layouts"):  # pickled by a build that kept none
            state.layouts = {}
        for exp in experiments.items:
            sums = state.arms.get(exp.name)
            layout = state.layouts.get(exp.name, exp.layout)
            if sums is None or len(sums) != len(exp.arms) or layout != exp.layout:
                # New, or its arms changed since the snapshot: its reading starts again,
                # and the exposures under the old arms no longer count (``Experiment.kept``).
                state.arms[exp.name] = [ArmStats() for _ in exp.arms]
                state.reported.pop(exp.name, None)
            state.layouts[exp.name] = exp.layout

    def _exps(self, trigger: str) -> list[Experiment]:
        found = self._by_trigger.get(trigger)
        if found is None:
            found = self._by_trigger[trigger] = self.cfg.for_trigger(trigger)
        return found

    # --- decisions -------------------------------------------------------

    def decide(self, user: UserState, cands: list[Candidate], out: list[Any]) -> None:
        """Decide every candidate (in order) and clear the list."""
        for c in cands:
            self._one(user, c, out)
        cands.clear()

    def _one(self, user: UserState, c: Candidate, out: list[Any]) -> None:
        placed: list[tuple[Experiment, int, float]] = []
        reason: str | None = None
        payload = c.payload
        caps = self.caps
        exps = self._exps(c.trigger)
        # A user the global control group holds out is in no other experiment: counted
        # there as exposed to an arm, it would dilute the arm's reading with people who
        # got nothing, and teach a bandit from them (an outside pass found both).
        gc = next((e for e in exps if e.trigger is None), None)
        alone = held_out(gc, user)
        for exp in exps:
            if alone and exp is not gc:
                continue
            arm, propensity = self._arm(exp, user)
            if arm < 0:
                continue
            placed.append((exp, arm, propensity))
            a = exp.arms[arm]
            if a.payload:
                payload = {**payload, **a.payload}
            if a.holdout and reason is None:
                reason = "global_control" if exp.trigger is None else "holdout"
            if a.caps is not None:
                caps = a.caps
        if reason is None and c.cause.get("deferred"):
            reason = "deferred"  # the user's arm decides later: a ghost, at no cap
        elif reason is None and "when_false" in c.cause:
            reason = "when_false"  # the arm's `when` did not hold: a ghost, at no cap
        if reason is None:
            reason = caps.decide(user, c.action, c.at)
        cause = str(c.cause.get("segment") or c.cause.get("message_id") or "")
        action_id = stable_id(user.user_id, c.trigger, c.action, iso(c.at), cause)
        trigger: dict[str, Any] = {"name": c.trigger, **c.cause}
        if placed:
            main = next((p for p in placed if p[0].trigger is not None), placed[0])
            trigger["experiment"] = main[0].name
            trigger["arm"] = main[0].arms[main[1]].name
            if len(placed) > 1:
                trigger["experiments"] = {e.name: e.arms[i].name for e, i, _ in placed}
        status = "delivered" if reason is None else "suppressed"
        out.append(
            Action(action_id, user.user_id, c.action, c.at, trigger, payload, status, reason)
        )
        for exp, arm, propensity in placed:
            first = self._expose(exp, arm, propensity, user, c.at)
            out.append(
                Exposure(
                    exp.name,
                    exp.arms[arm].name,
                    user.user_id,
                    c.at,
                    action_id,
                    c.trigger,
                    c.action,
                    status,
                    reason,
                    first,
                    propensity,
                    stable_id(exp.name, action_id),
                )
            )
            if first:
                self._maybe_report(exp, c.at, out)

    def _arm(self, exp: Experiment, user: UserState) -> tuple[int, float]:
        """The user's arm and its propensity: sticky once exposed; by hash, or by the bandit."""
        mine = kept_exposure(exp, user)
        if mine is not None:
            return mine.arm, mine.propensity
        if exp.bandit is None:
            arm = exp.assign(user.user_id)
            return arm, (exp.arms[arm].weight if arm >= 0 else 0.0)
        return self._thompson(exp, user)

    def _thompson(self, exp: Experiment, user: UserState) -> tuple[int, float]:
        """Thompson sampling on Beta posteriors of the attributed conversion, with a floor.

        Deterministic: the generator is seeded by the experiment's seed, the
        bandit seed and the user, so a replay decides the same. The propensity
        is the probability this policy gave the chosen arm.
        """
        assert exp.bandit is not None
        if exp.assign(user.user_id) < 0:  # coverage still decides who is in
            return -1, 0.0
        live = exp.live  # a paused arm (weight 0) is picked for nobody
        sums = [self.state.arms[exp.name][i] for i in live]
        k = len(live)
        seed = int(stable_id(exp.seed, str(exp.bandit.seed), user.user_id)[:15], 16)
        rng = np.random.default_rng(seed)
        a = np.array([1.0 + s.conv for s in sums])
        b = np.array([1.0 + max(s.n - s.conv, 0.0) for s in sums])
        draws = rng.beta(a, b, size=(_THOMPSON_DRAWS, k))
        best = np.bincount(draws.argmax(axis=1), minlength=k) / _THOMPSON_DRAWS
        floor = exp.bandit.floor
        probs = floor + (1.0 - k * floor) * best
        pick = min(int(np.searchsorted(np.cumsum(probs), rng.random(), side="right")), k - 1)
        return live[pick], float(probs[pick])

    def _expose(
        self, exp: Experiment, arm: int, propensity: float, user: UserState, at: float
    ) -> bool:
        if user.experiments is None:
            user.experiments = {}
        if exp.kept(user.experiments.get(exp.name)):
            return False
        pre = float(user.total_orders)
        # The orders of the open session so far (the very order that exposed the user,
        # among them) are before the exposure: one re-sent after it (a reloaded
        # confirmation page) is not a conversion of it.
        open_ = user.session
        before = list(open_.order_ids)[-GOAL_ORDER_IDS:] if open_ is not None else []
        user.experiments[exp.name] = Exposed(
            arm, at, pre, propensity, order_ids=before, layout=exp.layout
        )
        s = self.state.arms[exp.name][arm]
        s.n += 1
        s.x += pre
        s.x2 += pre * pre
        return True

    # --- goals -----------------------------------------------------------

    def observe(
        self, user: UserState, ev: Event, out: list[Any], hits: dict[str, int] | None = None
    ) -> None:
        """A goal event of an exposed user, within the window after first exposure, counts,
        once per ``order_id`` (an event without one always counts; an order the user's
        recent orders, ``sessions.seen_order``, counted before the exposure never does);
        a value it gives that is no usable amount counts as 0, and once in ``hits`` as
        ``unusable:goal_value``."""
        mine = user.experiments
        if not mine:
            return
        key: str | None = None
        placed: float | None = None  # when the user's recent orders have its order counted
        unusable = False  # counted once per event, however many experiments read it
        for exp in self.cfg.items:
            ex = mine.get(exp.name)
            goal = exp.goal
            if ex is None or ev.name not in goal.events or not exp.kept(ex):
                continue
            if not ex.first_at <= ev.ts <= ex.first_at + goal.window:
                continue
            if key is None:
                key = order_key(ev.properties)
                if key:
                    placed = order_counted_at(user.orders_seen, order_digest(key))
            if key:
                if key in ex.order_ids:
                    continue
                if placed is not None and placed < ex.first_at:
                    # Counted before the exposure in an earlier session, sent again after
                    # it (an app store re-delivering it): no conversion of it.
                    continue
                ex.order_ids.append(key)
                if len(ex.order_ids) > GOAL_ORDER_IDS:
                    del ex.order_ids[0]
            s = self.state.arms[exp.name][ex.arm]
            if not ex.converted:
                ex.converted = True
                s.conv += 1
                s.xc += ex.pre
            value = goal.value_of(ev)
            if value is None:
                unusable, value = True, 0.0
            old = ex.revenue
            ex.revenue = old + value
            s.rev += value
            s.rev2 += ex.revenue * ex.revenue - old * old
            s.xr += ex.pre * value
            self._maybe_report(exp, ev.ts, out)
        if unusable:
            hit(hits, "unusable:goal_value")

    # --- reading ---------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Per experiment: its description and per-arm sums (merge across shards by adding)."""
        out: dict[str, Any] = {}
        for exp in self.cfg.items:
            sums = self.state.arms[exp.name]
            out[exp.name] = {
                **exp.describe(),
                "sums": [s.to_json() for s in sums],
            }
        return out

    def _maybe_report(self, exp: Experiment, at: float, out: list[Any]) -> None:
        sums = self.state.arms[exp.name]
        last = self.state.reported.get(exp.name)
        if min(sums[i].n for i in exp.live) < FIRST_REPORT:  # a paused arm has nobody
            # Before the gate only the split's verdict is news: 300 users against 9 is
            # a broken assignment that experiments.jsonl, the only live signal, must carry.
            was = last is not None and bool(last.get("srm", {}).get("flagged"))
            if _srm_flagged(exp, sums, self.shards) == was:
                return
        res = result(exp.describe(), sums, sequential=True, shards=self.shards)
        if last is not None and not _material(last, res):
            return
        self.state.reported[exp.name] = res
        out.append(ExperimentUpdate(exp.name, self.shard(), at, res))


def _srm_flagged(exp: Experiment, sums: list[ArmStats], shards: int = 1) -> bool:
    """Does the live SRM test flag the split (as a record's ``stats.result`` reads it: never
    a bandit's)? The sequential test: the split is read at every exposure, and the
    chi-square test read so flagged a fair split at some exposure in 2-4 % of runs, not 0.1 %.
    Each of ``shards`` shards tests its own users, at SRM_ALPHA / shards."""
    if exp.bandit is not None:
        return False
    counts = [s.n for s in sums]
    return bool(srm(counts, [a.weight for a in exp.arms], True, shards)["flagged"])


def _material(last: dict[str, Any], now: dict[str, Any]) -> bool:
    """Did any arm's interval move by more than ``MATERIAL`` of its width, or flip verdict?
    A comparison without an interval (a bandit's) moves when the experiment's exposed
    users or converters grew by more than ``MATERIAL`` since the last record."""
    if last.get("srm", {}).get("flagged") != now.get("srm", {}).get("flagged"):
        return True
    for arm, cmp in now.get("comparisons", {}).items():
        for metric in METRICS:
            a = (last.get("comparisons", {}).get(arm) or {}).get(metric)
            b = cmp.get(metric)
            if (a is None) != (b is None):
                return True
            if a is None or b is None:
                continue
            if a["diff_ci"] is None or b["diff_ci"] is None:
                if _grew(last, now):
                    return True
                continue
            if a["significant"] != b["significant"]:
                return True
            (lo0, hi0), (lo1, hi1) = a["diff_ci"], b["diff_ci"]
            width = hi0 - lo0
            if abs(lo1 - lo0) > MATERIAL * width or abs(hi1 - hi0) > MATERIAL * width:
                return True
    return False


def _grew(last: dict[str, Any], now: dict[str, Any]) -> bool:
    """Have the experiment's exposed users or converters grown by more than ``MATERIAL``?"""
    for key in ("exposed", "converters"):
        was = sum(a[key] for a in last["arms"].values())
        if sum(a[key] for a in now["arms"].values()) > was * (1.0 + MATERIAL):
            return True
    return False


def for_shard(settings: Any, shard: Any) -> Lab | None:
    """The lab of a shard (``engine.ShardState``), or None when no experiment is configured."""
    experiments: Experiments | None = getattr(settings, "experiments", None)
    if not experiments:
        return None
    if shard.lab is None:
        shard.lab = LabState()
    return Lab(experiments, settings.caps, shard.lab, lambda: str(shard.shard), settings.shards)
