"""Experiments on triggers: the ``experiments:`` config, checked at load, and arm-aware triggers.

Three kinds, all assigned per profile id with GrowthBook's v2 hash (see
``bucketing``): a global control group (``global_control: {share: 0.05}``: those
users get no action at all), a per-trigger holdout (an arm with
``holdout: true``), and A/B/n variants of a trigger whose arms override any of
``after``, ``when``, ``payload`` and ``caps``::

    experiments:
      cart_timing:
        trigger: cart_abandonment
        arms:
          control: {weight: 0.5}
          one_hour: {weight: 0.5, after: 1h}

The first arm is the control the others are compared with. Arms are decided
at the decision (see ``lab``); a trigger whose arms change when or whether it
fires (``after``, ``when``) is wrapped so each user's timer and condition follow
the user's arm.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

from audienceflow.operators.bucketing import bucket_ranges, choose, gb_hash
from audienceflow.operators.caps import FrequencyCaps
from audienceflow.operators.config import Located, Reader, parse_duration, suggest
from audienceflow.operators.money import NO_MONEY, Money
from audienceflow.operators.records import Event, SegmentChange
from audienceflow.operators.rules import Context, RuleError, compile_rule
from audienceflow.operators.state import NO_ITEMS, Limits, UserState
from audienceflow.operators.tracking import matches_name
from audienceflow.operators.triggers import (
    Candidate,
    EventTrigger,
    SegmentTrigger,
    TimerTrigger,
    Trigger,
)

GLOBAL_CONTROL = "global_control"
# The layout of an exposure written before exposures recorded one: taken as current.
LEGACY_LAYOUT = -1
DAY = 86400.0
_ARM_KEYS = {"weight", "holdout", "after", "when", "payload", "caps"}
_EXP_KEYS = {
    "trigger",
    "seed",
    "coverage",
    "arms",
    "goal",
    "alpha",
    "tuning",
    "cuped",
    "correction",
    "bandit",
    "overlap",
    "description",
}


# An experiment's ``correction`` for its several comparisons (``stats.holm``).
CORRECTIONS: Final = ("none", "holm")


# A goal's ``events`` when it names none: the config's ``sessions.conversion_events``,
# whose default this is.
DEFAULT_GOAL_EVENTS: Final = frozenset({"Order Completed"})


@dataclass(frozen=True)
class Goal:
    """What counts as a conversion, its value property, and how long after exposure."""

    events: frozenset[str] = DEFAULT_GOAL_EVENTS
    value: tuple[str, ...] = ("revenue", "total")
    window: float = 7 * DAY
    money: Money = NO_MONEY  # the ``money`` section

    def value_of(self, ev: Event) -> float | None:
        """The first of ``value``'s properties that is a usable amount (``Money.convert``:
        from 0 to ``MAX_AMOUNT``, in a currency the ``money`` section converts); 0.0
        when none is given; None when some are given and none is usable (the caller
        counts ``unusable:goal_value``). An amount out of range would make the arm's
        sums infinite.

        >>> ev = lambda **p: Event("m", "u", None, "track", "Order Completed", 0.0, "", p)
        >>> g = Goal(money=Money("EUR", {"USD": 0.5}))  # reads revenue, else total
        >>> g.value_of(ev(revenue=1e300, total=4)), g.value_of(ev(revenue=-2)), g.value_of(ev())
        (4.0, None, 0.0)
        >>> g.value_of(ev(revenue=6, currency="USD")), g.value_of(ev(revenue=6, currency="JPY"))
        (3.0, None)
        """
        props = ev.properties
        given = False
        for key in self.value:
            v = props.get(key)
            if v is not None:
                got = self.money.convert(v, props)
                if got is not None:
                    return got
                given = True
        return None if given else 0.0


@dataclass(frozen=True)
class Arm:
    """One arm: its share, whether it is held out, and the trigger and caps it runs with."""

    name: str
    weight: float
    holdout: bool = False
    trigger: Trigger | None = None
    caps: FrequencyCaps | None = None
    # A bandit arm's own payload keys: the bandit picks the arm at the decision, after
    # the trigger proposed, so the lab lays them over the proposal.
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class Bandit:
    """Thompson sampling over arms on the attributed binary goal, each arm kept >= ``floor``."""

    floor: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class Experiment:
    """An experiment as configured; ``ranges`` are the arms' GrowthBook bucket ranges."""

    name: str
    seed: str
    trigger: str | None  # None: the global control group (every trigger)
    arms: tuple[Arm, ...]
    coverage: float = 1.0
    goal: Goal = field(default_factory=Goal)
    alpha: float = 0.05
    tuning: float = 5000.0
    cuped: bool = False
    bandit: Bandit | None = None
    overlap: bool = False
    # ``holm``: the significance of the experiment's comparisons (each treatment arm x
    # each metric) is Holm-Bonferroni's over all of them, not each one's at ``alpha``, and
    # each one's intervals are at its level under Holm (``stats.holm_level``).
    correction: str = "none"
    # The arms as the sums read them (names and weights, in order): another layout is
    # another reading, and exposures under an earlier one no longer count.
    layout: int = field(init=False, default=0, repr=False, compare=False)
    # The arms of weight > 0, by index: an arm of weight 0 (paused) is assigned to
    # nobody, so it sets no deadline, no degree of freedom and no reporting gate.
    live: tuple[int, ...] = field(init=False, default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        key = "\x1f".join(f"{a.name}\x1e{a.weight!r}" for a in self.arms)
        object.__setattr__(self, "layout", zlib.crc32(key.encode("utf-8", "surrogatepass")))
        live = tuple(i for i, a in enumerate(self.arms) if a.weight > 0)
        object.__setattr__(self, "live", live)

    def kept(self, mine: Any) -> bool:
        """Is ``mine`` (a user's ``lab.Exposed``, or None) an exposure under these arms?"""
        return (
            mine is not None
            and (mine.layout == self.layout or mine.layout == LEGACY_LAYOUT)
            and mine.arm < len(self.arms)
        )

    @property
    def ranges(self) -> list[tuple[float, float]]:
        return bucket_ranges(len(self.arms), self.coverage, [a.weight for a in self.arms])

    def assign(self, user_id: str) -> int:
        """The user's arm index by hash, or -1 outside the coverage."""
        n = gb_hash(self.seed, user_id, 2)
        assert n is not None
        return choose(n, self.ranges)

    def describe(self) -> dict[str, Any]:
        """What the statistics need to read this experiment's sums (see ``stats.result``);
        ``correction`` only when there is one (the shards' reports stay as they were)."""
        out = {
            "arms": [a.name for a in self.arms],
            "weights": [a.weight for a in self.arms],
            "holdout": [a.holdout for a in self.arms],
            "trigger": self.trigger,
            "alpha": self.alpha,
            "tuning": self.tuning,
            "cuped": self.cuped,
            "bandit": self.bandit is not None,
        }
        if self.correction != "none":
            out["correction"] = self.correction
        return out


@dataclass(frozen=True)
class Experiments:
    """All experiments, by trigger, and the triggers as the engine must run them."""

    items: tuple[Experiment, ...] = ()
    triggers: tuple[Trigger, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    def for_trigger(self, trigger: str) -> list[Experiment]:
        return [e for e in self.items if e.trigger is None or e.trigger == trigger]


def kept_exposure(exp: Experiment, user: UserState) -> Any:
    """The user's exposure in ``exp`` (a ``lab.Exposed``) if it is of the arms configured
    now (``Experiment.kept``), else None."""
    mine = user.experiments.get(exp.name) if user.experiments else None
    return mine if mine is not None and exp.kept(mine) else None


def held_out(gc: Experiment | None, user: UserState) -> bool:
    """Whether ``user`` is in the global control group ``gc``'s held-out arm (by the arm
    kept at the user's exposure, else by the hash): such a user is in no other
    experiment, which would count, as exposed in its arms, people who got nothing."""
    if gc is None:
        return False
    mine = kept_exposure(gc, user)
    arm = mine.arm if mine is not None else gc.assign(user.user_id)
    return arm >= 0 and gc.arms[arm].holdout


# --- triggers whose parameters follow the user's arm ------------------------


class _Armed:
    """Delegates receive/fire to the variant of the user's arm (the base outside coverage)."""

    experiment: Experiment
    variants: tuple[Trigger, ...]
    base: Trigger
    when_apart: bool  # the arms' ``when`` differ: a ``when`` false is an arm's decision too
    outside: Experiment | None  # the global control group (``_decided``)

    def _held(self, user: UserState, cands: list[Candidate], arm: int) -> list[Candidate]:
        """Candidates whose ``when`` did not hold in the user's arm, as ghost decisions when
        the arms' ``when`` differ and the user is not exposed yet: otherwise an arm with a
        stricter ``when`` would expose only the users it acts on (the lab suppresses them
        as ``when_false``). Once exposed, the arm is kept and a false ``when`` is no
        decision: a ghost then would only write an action and an exposure per event."""
        if not self.when_apart or arm < 0 or all(c.blocked is None for c in cands):
            return cands
        if self._decided(user):
            return cands
        return [
            c
            if c.blocked is None
            else Candidate(c.trigger, c.action, c.at, {}, {**c.cause, "when_false": c.blocked})
            for c in cands
        ]

    def _variant(self, user: UserState) -> tuple[int, Trigger]:
        """The user's arm (``_arm``) and its variant, the base outside the coverage."""
        arm = self._arm(user)
        return arm, self.base if arm < 0 else self.variants[arm]

    def _arm(self, user: UserState) -> int:
        """The user's arm as far as the trigger can tell: once exposed, the arm kept in the
        user's state (after an identity merge, or a change of coverage, the hash may say
        otherwise); -1 outside the coverage, and for a bandit before its first decision
        (the lab lays the picked arm's payload over it)."""
        exp = self.experiment
        mine = kept_exposure(exp, user)
        if mine is not None:
            kept: int = mine.arm
            return kept
        return -1 if exp.bandit is not None else exp.assign(user.user_id)

    def _decided(self, user: UserState) -> bool:
        """Whether the user has had a decision of this experiment's arms: is exposed in
        it, or, held out by the global control group (``outside``), which keeps such a
        user out of every other experiment (``Lab._one``), is exposed in that group. A
        held-out user still runs its arm's schedule (a deferred ghost at the soonest
        arm's instant, a ``when_false`` ghost), so that the group's halves are exposed at
        the same moments of the same behaviour."""
        if kept_exposure(self.experiment, user) is not None:
            return True
        gc = self.outside
        return gc is not None and held_out(gc, user) and kept_exposure(gc, user) is not None

    def _relevant(self, item: Event | SegmentChange) -> bool:
        b = self.base
        if isinstance(b, TimerTrigger):
            return isinstance(item, Event) and (
                matches_name(item, b.start_on) or matches_name(item, b.cancel_on)
            )
        if isinstance(b, EventTrigger):
            return isinstance(item, Event) and matches_name(item, b.events)
        if isinstance(b, SegmentTrigger):
            return (
                isinstance(item, SegmentChange) and item.change == b.on and b.matches(item.segment)
            )
        return True

    def receive(self, user: UserState, item: Event | SegmentChange) -> list[Candidate]:
        if not self._relevant(item):
            return []
        arm, variant = self._variant(user)
        return self._held(user, variant.receive(user, item), arm)

    def ignores(self, item: Event | SegmentChange) -> bool:
        return not self._relevant(item)

    def fire(self, user: UserState, at: float) -> list[Candidate]:
        if self.base.name not in (user.timers or NO_ITEMS):
            return []
        arm, variant = self._variant(user)
        return self._held(user, variant.fire(user, at), arm)


# The ``UserState.timers`` key (after the trigger's name) of a deferred ghost's due time.
DEFERRED = "\x00deferred"


@dataclass(frozen=True)
class ArmedTimer(_Armed, TimerTrigger):
    """A timer trigger whose ``after``/``when``/payload follow the user's arm.

    Exposure is at the decision, so an arm that waits longer than the soonest arm
    would expose only the users who had not converted meanwhile. When the soonest
    arm decides, a user of a later arm gets a *deferred* ghost decision instead (a
    candidate with ``cause.deferred``; the lab suppresses it as ``deferred``), and
    every arm is exposed at the same moment of the same behaviour.
    """

    experiment: Experiment = None  # type: ignore[assignment]
    variants: tuple[Trigger, ...] = ()
    base: Trigger = None  # type: ignore[assignment]
    when_apart: bool = False
    outside: Experiment | None = None

    def receive(self, user: UserState, item: Event | SegmentChange) -> list[Candidate]:
        if not self._relevant(item):
            return []
        arm, variant = self._variant(user)
        name = self.base.name
        before = (user.timers or NO_ITEMS).get(name)
        out = variant.receive(user, item)
        timers = user.timers
        if timers is None:  # no timer, no ghost
            return out
        due = timers.get(name)
        if due is None:  # cancelled, or never started
            timers.pop(name + DEFERRED, None)
        elif due != before:  # (re)started: the soonest arm decides earlier
            extra = getattr(variant, "after", 0.0) - self.soonest()
            if extra > 0 and arm >= 0:
                timers[name + DEFERRED] = due - extra
            else:  # a ghost of another arm's (a merge's other half) is not this start's
                timers.pop(name + DEFERRED, None)
        return out

    def ignores(self, item: Event | SegmentChange) -> bool:
        return not self._relevant(item)

    def fire(self, user: UserState, at: float) -> list[Candidate]:
        name = self.base.name
        timers = user.timers
        if timers is None:
            return []
        ghost = timers.get(name + DEFERRED)
        out: list[Candidate] = []
        if ghost is not None and ghost <= at:
            del timers[name + DEFERRED]
            # A ghost stands for its timer: left without it (a merge ended the timer,
            # ``merge._end_by``), it decides nothing.
            if name in timers:
                decided = self._ghost(user, ghost)
                if all(c.blocked is not None for c in decided):
                    # The soonest arm decides nothing here and its timer is spent: so is
                    # this arm's, or a `when` turning true before its own deadline (a
                    # login after an anonymous cart) would expose users here alone.
                    del timers[name]
                out.extend(decided)
        if name in timers:
            arm, variant = self._variant(user)
            out.extend(self._held(user, variant.fire(user, at), arm))
        return out

    def _ghost(self, user: UserState, at: float) -> list[Candidate]:
        """The deferred ghost decision at the soonest arm's instant ``at``: a decision
        only where the user's arm's ``when`` holds then, as the soonest arm decides only
        where its ``when`` holds (a false one is a ``when_false`` ghost while the arms'
        ``when`` differ, ``_held``). Without this a later arm exposed users no other arm
        decides for (a cart e-mail's ``traits.email_opt_in == true``: every anonymous
        cart of the later arm exposed), so its reading held people the others leave out."""
        cause: dict[str, Any] = {
            "type": "timer",
            "after_seconds": self.soonest(),
            "deferred": True,
        }
        arm, variant = self._variant(user)
        ghost = Candidate(self.base.name, self.base.action, at, {}, cause)
        if variant.when is not None:
            ctx = Context(user, at, variant.half_life, None)
            if not variant.when.holds(ctx):
                values = variant.when.explain(ctx)["values"]
                ghost = Candidate(self.base.name, self.base.action, at, {}, cause, values)
        return self._held(user, [ghost], arm)

    def soonest(self) -> float:
        """The shortest ``after`` of the variants of arms of weight > 0: a paused arm
        (weight 0) has no users, and its delay would expose everyone else early."""
        return min(getattr(self.variants[i], "after", 0.0) for i in self.experiment.live)

    def started(self, user: UserState) -> float | None:
        """When the user's timer started (None: no timer), by the deadlines ``receive``
        gave it under the user's arm: its ghost is the soonest arm's delay after the
        start, and without one the deadline is the user's own arm's delay after it."""
        name = self.base.name
        timers = user.timers or NO_ITEMS
        due = timers.get(name)
        if due is None:
            return None
        ghost = timers.get(name + DEFERRED)
        if ghost is not None:
            return ghost - self.soonest()
        # No ghost: the timer of the user's arm (the base's outside the coverage), or a
        # later arm's whose ghost has decided, which exposed the user. A later arm's
        # without a ghost, unexposed, was started before this experiment was configured:
        # with the trigger's own delay (a later arm's would read a start before it).
        arm, variant = self._variant(user)
        after: float = getattr(variant, "after", self.soonest())
        if arm >= 0 and after > self.soonest() and not self._decided(user):
            base_after: float = getattr(self.base, "after", after)
            return due - base_after
        return due - after

    def replan(self, user: UserState, start: float, at: float) -> None:
        """Set the deadlines of the user's timer that started at ``start`` as ``receive``
        would for the user's arm now: a merge at ``at`` may have changed the profile's id,
        and so its arm (by the id's hash, before any exposure; the earlier exposure of the
        halves after). Without this the timer kept the other id's delay under this arm's
        label, and this arm's ``after`` misread when it started (an order after the cart
        did not cancel it). A ghost whose decision is past (the halves' deadlines up to
        ``at`` have run) is not made again."""
        name = self.base.name
        timers = user.timers
        if timers is None or name not in timers:
            return
        arm, variant = self._variant(user)
        soonest = self.soonest()
        after: float = getattr(variant, "after", soonest)
        # Not before the merge: its halves' deadlines up to ``at`` have run, and one
        # past would be an action stamped before the event that made it.
        timers[name] = max(start + after, at)
        timers.pop(name + DEFERRED, None)
        if arm < 0 or after <= soonest:
            return
        if start + soonest > at:
            timers[name + DEFERRED] = start + soonest
        elif not self._decided(user):
            # The soonest arm's instant has passed with no decision (a half outside the
            # coverage, or of the soonest arm): the decision is now, as every arm's is.
            timers[name + DEFERRED] = at


@dataclass(frozen=True)
class ArmedTrigger(_Armed, Trigger):
    """A segment or event trigger whose ``when``/payload follow the user's arm."""

    experiment: Experiment = None  # type: ignore[assignment]
    variants: tuple[Trigger, ...] = ()
    base: Trigger = None  # type: ignore[assignment]
    when_apart: bool = False
    outside: Experiment | None = None


def armed(base: Trigger, exp: Experiment, outside: Experiment | None = None) -> Trigger:
    """``base`` wrapped so each user runs their arm's variant of it (``outside``: the
    global control group, whose held-out users are decided once it exposes them)."""
    variants = tuple(a.trigger or base for a in exp.arms)
    # A paused arm's (weight 0) own `when` decides nobody's: it makes no ghosts.
    apart = any(variants[i].when is not base.when for i in exp.live)
    own = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    if isinstance(base, TimerTrigger):
        return ArmedTimer(**own, experiment=exp, variants=variants, base=base, when_apart=apart,
                          outside=outside)  # fmt: skip
    return ArmedTrigger(
        **{k: own[k] for k in ("name", "action", "when", "payload", "half_life")},
        experiment=exp,
        variants=variants,
        base=base,
        when_apart=apart,
        outside=outside,
    )


# --- config ------------------------------------------------------------------


def parse(
    loc: Located,
    triggers: list[Trigger],
    caps: FrequencyCaps,
    money: Money = NO_MONEY,
    limits: Limits | None = None,
    goal_events: frozenset[str] = DEFAULT_GOAL_EVENTS,
) -> Experiments:
    """Check the ``experiments:`` section and build the experiments and the triggers to run.

    ``limits``: the per-user bounds the rules run with (``state.max_*``), which an arm's
    ``when`` is checked against as any rule is (``value_range``). ``goal_events``: a
    goal's ``events`` when it names none (``sessions.conversion_events``).

    Rejected values raise ``ConfigError`` as ``FILE:LINE: experiments.NAME.key: reason``.
    """
    section = loc.data.get("experiments") or {}
    if not isinstance(section, dict):
        raise loc.error(("experiments",), "must be a mapping of experiment names")
    by_name = {t.name: t for t in triggers}
    items: list[Experiment] = []
    for name, spec in section.items():
        path = ("experiments", str(name))
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise loc.error(path, "an experiment must be a mapping")
        if name == GLOBAL_CONTROL:
            items.append(_global_control(loc, path, spec, money, goal_events))
        else:
            items.append(
                _experiment(loc, path, str(name), spec, by_name, caps, money, limits, goal_events)
            )
    _check_together(loc, items)
    out = list(triggers)
    gc = next((e for e in items if e.trigger is None), None)
    for exp in items:
        if exp.trigger is None or not any(a.trigger is not None for a in exp.arms):
            continue
        i = next(k for k, t in enumerate(out) if t.name == exp.trigger)
        out[i] = armed(out[i], exp, gc)
    return Experiments(tuple(items), tuple(out))


def _number(loc: Located, path: tuple[str, ...], val: Any, lo: float, hi: float) -> float:
    if isinstance(val, bool) or not isinstance(val, int | float) or not lo <= val <= hi:
        raise loc.error(path, f"must be a number from {lo:g} to {hi:g}", val)
    return float(val)


def _flag(loc: Located, path: tuple[str, ...], val: Any) -> bool:
    if not isinstance(val, bool):
        raise loc.error(path, "must be true or false", val)
    return val


def _duration(
    loc: Located, path: tuple[str, ...], val: Any, minimum: float, maximum: float | None = None
) -> float:
    try:
        secs = parse_duration(val)
    except ValueError as exc:  # its "; got" is the error's own
        raise loc.error(path, str(exc).rsplit("; got ", 1)[0]) from None
    if secs < minimum:
        raise loc.error(path, f"must be at least {minimum:g}s", val)
    if maximum is not None and secs > maximum:
        raise loc.error(path, f"must be at most {maximum / 86400:g}d", val)
    return secs


def _goal(
    loc: Located,
    path: tuple[str, ...],
    spec: Any,
    money: Money,
    events_default: frozenset[str] = DEFAULT_GOAL_EVENTS,
) -> Goal:
    if spec is None:
        return Goal(events_default, money=money)
    if not isinstance(spec, dict):
        raise loc.error(path, "must be a mapping with events, value, window")
    Reader(loc).only(path, spec, ("events", "value", "window"))
    events = spec.get("events", sorted(events_default))
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise loc.error((*path, "events"), "must be a list of event names", events)
    value = spec.get("value", ["revenue", "total"])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise loc.error((*path, "value"), "must be a property name or a list", value)
    window = _duration(loc, (*path, "window"), spec.get("window", "7d"), 1.0)
    return Goal(frozenset(events), tuple(value), window, money)


def _global_control(
    loc: Located,
    path: tuple[str, ...],
    spec: dict[str, Any],
    money: Money,
    goal_events: frozenset[str] = DEFAULT_GOAL_EVENTS,
) -> Experiment:
    Reader(loc).only(
        path,
        spec,
        ("share", "seed", "goal", "alpha", "tuning", "cuped", "correction", "description"),
    )
    share = _number(loc, (*path, "share"), spec.get("share"), 0.0, 0.5)
    arms = (Arm("control", share, holdout=True), Arm("personalized", 1.0 - share))
    return Experiment(
        GLOBAL_CONTROL,
        _seed(loc, path, spec, GLOBAL_CONTROL),
        None,
        arms,
        goal=_goal(loc, (*path, "goal"), spec.get("goal"), money, goal_events),
        alpha=_number(loc, (*path, "alpha"), spec.get("alpha", 0.05), 1e-6, 0.5),
        tuning=_number(loc, (*path, "tuning"), spec.get("tuning", 5000), 1.0, 1e9),
        cuped=_flag(loc, (*path, "cuped"), spec.get("cuped", False)),
        overlap=True,
        correction=_correction(loc, path, spec, None),
    )


def _seed(loc: Located, path: tuple[str, ...], spec: dict[str, Any], default: str) -> str:
    seed = spec.get("seed", default)
    if not isinstance(seed, str | int) or isinstance(seed, bool) or str(seed) == "":
        raise loc.error((*path, "seed"), "must be a non-empty string", seed)
    return str(seed)


def _experiment(
    loc: Located,
    path: tuple[str, ...],
    name: str,
    spec: dict[str, Any],
    triggers: dict[str, Trigger],
    caps: FrequencyCaps,
    money: Money,
    limits: Limits | None = None,
    goal_events: frozenset[str] = DEFAULT_GOAL_EVENTS,
) -> Experiment:
    Reader(loc).only(path, spec, _EXP_KEYS)
    trig_name = spec.get("trigger")
    if trig_name not in triggers:
        raise loc.error(
            (*path, "trigger"),
            f"names no trigger: {trig_name!r}"
            f"{suggest(str(trig_name), triggers) if trig_name is not None else ''}"
            f"; known: {', '.join(sorted(triggers))}",
        )
    base = triggers[str(trig_name)]
    arms_spec = spec.get("arms")
    if not isinstance(arms_spec, dict) or len(arms_spec) < 2:
        raise loc.error((*path, "arms"), "needs at least two arms, e.g. control: {weight: 0.5}")
    bandit = _bandit(loc, (*path, "bandit"), spec.get("bandit"))
    arms = [
        _arm(loc, (*path, "arms", str(an)), str(an), aspec, base, caps, bandit, limits)
        for an, aspec in arms_spec.items()
    ]
    total = sum(a.weight for a in arms)
    if abs(total - 1.0) > 1e-9:
        raise loc.error(
            (*path, "arms"), f"arm weights must sum to 1; they sum to {total:g}", quote_hint=False
        )
    if arms[0].weight == 0:
        raise loc.error(
            (*path, "arms", arms[0].name, "weight"),
            "the first arm is the control every other arm is compared with, and an arm of "
            "weight 0 is assigned to nobody; put an arm of weight > 0 first",
            0.0,
        )
    live = sum(a.weight > 0 for a in arms)  # a paused arm (weight 0) the bandit never picks
    if bandit is not None and bandit.floor * live > 1.0 + 1e-9:
        # Past 1/k the floors alone exceed 1, and the policy starves its best arm.
        raise loc.error(
            (*path, "bandit", "floor"),
            f"each of the {live} arms kept at least {bandit.floor:g} adds up to more "
            f"than 1; the floor can be at most 1/{live}",
            quote_hint=False,
        )
    return Experiment(
        name,
        _seed(loc, path, spec, name),
        base.name,
        tuple(arms),
        coverage=_number(loc, (*path, "coverage"), spec.get("coverage", 1.0), 0.0, 1.0),
        goal=_goal(loc, (*path, "goal"), spec.get("goal"), money, goal_events),
        alpha=_number(loc, (*path, "alpha"), spec.get("alpha", 0.05), 1e-6, 0.5),
        tuning=_number(loc, (*path, "tuning"), spec.get("tuning", 5000), 1.0, 1e9),
        cuped=_flag(loc, (*path, "cuped"), spec.get("cuped", False)),
        bandit=bandit,
        overlap=_flag(loc, (*path, "overlap"), spec.get("overlap", False)),
        correction=_correction(loc, path, spec, bandit),
    )


def _correction(
    loc: Located, path: tuple[str, ...], spec: dict[str, Any], bandit: Bandit | None
) -> str:
    val = spec.get("correction", "none")
    if val not in CORRECTIONS:
        raise loc.error((*path, "correction"), f"must be one of {', '.join(CORRECTIONS)}", val)
    if val != "none" and bandit is not None:
        raise loc.error(
            (*path, "correction"),
            "a bandit's comparisons carry no interval nor verdict (adaptive allocation), "
            "so there is nothing to correct; remove it",
            val,
        )
    return str(val)


def _bandit(loc: Located, path: tuple[str, ...], spec: Any) -> Bandit | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        return Bandit()
    if not isinstance(spec, dict):
        raise loc.error(path, "must be true or a mapping with floor, seed")
    Reader(loc).only(path, spec, ("floor", "seed"))
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise loc.error((*path, "seed"), "must be a whole number", seed)
    return Bandit(_number(loc, (*path, "floor"), spec.get("floor", 0.05), 0.0, 0.5), seed)


def _arm(
    loc: Located,
    path: tuple[str, ...],
    name: str,
    spec: Any,
    base: Trigger,
    caps: FrequencyCaps,
    bandit: Bandit | None,
    limits: Limits | None = None,
) -> Arm:
    spec = spec or {}
    if not isinstance(spec, dict):
        raise loc.error(path, "an arm must be a mapping, e.g. {weight: 0.5, after: 1h}")
    Reader(loc).only(path, spec, _ARM_KEYS)
    weight = _number(loc, (*path, "weight"), spec.get("weight"), 0.0, 1.0)
    holdout = _flag(loc, (*path, "holdout"), spec.get("holdout", False))
    if bandit is not None and ("after" in spec or "when" in spec):
        raise loc.error(
            path,
            "a bandit picks the arm at the decision, so its arms can override payload "
            "and caps only, not after or when",
        )
    changes: dict[str, Any] = {}
    if "after" in spec:
        if not isinstance(base, TimerTrigger):
            raise loc.error((*path, "after"), f"trigger {base.name!r} is not a timer")
        # At most a year, as the trigger's own ``after`` (settings): the timer's deadline
        # is the action's time, written from any valid event time.
        changes["after"] = _duration(loc, (*path, "after"), spec["after"], 1.0, 365 * 86400.0)
    if "when" in spec:
        try:
            changes["when"] = compile_rule(base.name, spec["when"], None, limits=limits)
        except RuleError as exc:
            raise loc.error((*path, "when"), str(exc)) from None
    if "payload" in spec:
        if not isinstance(spec["payload"], dict):
            raise loc.error((*path, "payload"), "must be a mapping")
        changes["payload"] = {**base.payload, **spec["payload"]}
    trig = dataclasses.replace(base, **changes) if changes else None
    arm_caps = _arm_caps(loc, (*path, "caps"), spec.get("caps"), base.action, caps)
    own = changes.get("payload") if bandit is not None else None
    return Arm(name, weight, holdout, trig, arm_caps, None if own is None else spec["payload"])


def _arm_caps(
    loc: Located, path: tuple[str, ...], spec: Any, action: str, caps: FrequencyCaps
) -> FrequencyCaps | None:
    if spec is None:
        return None
    if isinstance(spec, dict) and spec:
        Reader(loc).only(path, spec, ("per_day", "cooldown"))  # names the closest key
    else:
        raise loc.error(path, "must be a mapping with per_day and/or cooldown")
    per_action = dict(caps.per_action_per_day)
    cooldown = dict(caps.cooldown)
    if "per_day" in spec:
        v = spec["per_day"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise loc.error((*path, "per_day"), "must be a count", v)
        per_action[action] = v
    if "cooldown" in spec:
        cooldown[action] = _duration(loc, (*path, "cooldown"), spec["cooldown"], 0.0)
    return FrequencyCaps(per_action, caps.per_user_per_day, cooldown)


def _check_together(loc: Located, items: list[Experiment]) -> None:
    """Unique seeds; one experiment per trigger unless every one on it says ``overlap: true``."""
    seeds: dict[str, str] = {}
    for e in items:
        other = seeds.get(e.seed)
        if other is not None:
            raise loc.error(
                ("experiments", e.name, "seed"),
                f"seed {e.seed!r} is also the seed of {other!r}: the two would put "
                "the same users in the same arms",
            )
        seeds[e.seed] = e.name
    by_trigger: dict[str, list[Experiment]] = {}
    for e in items:
        if e.trigger is not None:
            by_trigger.setdefault(e.trigger, []).append(e)
    for trig, exps in by_trigger.items():
        if len(exps) < 2:
            continue
        if not all(e.overlap for e in exps):
            names = ", ".join(e.name for e in exps)
            first = next(e for e in exps if not e.overlap)
            raise loc.error(
                ("experiments", first.name, "trigger"),
                f"experiments {names} all run on trigger {trig!r}; declare overlap: true "
                "on each of them to allow it",
            )
        if sum(any(a.trigger is not None for a in e.arms) for e in exps) > 1:
            raise loc.error(
                ("experiments", exps[1].name, "arms"),
                f"only one experiment on trigger {trig!r} may override its parameters",
            )
