"""Segments: declarative rules whose truth, per user and over event time,
becomes ``enter``/``exit`` segment changes.

A segment with ``per: category`` is instantiated for each category the user
has touched: ``video_enthusiast:cooking``. Rules are evaluated in config order,
so ``in_segment`` sees segments decided earlier in the same evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audienceflow.operators import registry
from audienceflow.operators.records import SegmentChange
from audienceflow.operators.rules import Context, Rule, compile_rule
from audienceflow.operators.state import INF, Limits, UserState, hit

_NO_LIMITS = Limits()


# What a time-driven evaluation can have changed, as ``changed`` for ``evaluate_all``.
# A segment re-check: values that time alone changes (``time``, which ``evaluate_all``
# adds whenever the re-check is due) and those that change unannounced (``drift``).
AT_RECHECK = frozenset({"drift"})
# A session close: the open session's values, the history and order totals (``event``,
# ``session_start`` and ``close`` kinds), and the unannounced ones; not a category's
# affinity events, video completions or the cart, which only an event changes.
AT_CLOSE = frozenset({"event", "session_start", "close", "drift"})
_TIME = frozenset({"time"})


def changes_on(names: frozenset[str]) -> frozenset[str]:
    """The kinds of change that can alter a rule reading ``names``.

    Read from the registry (``operators/registry.py``): the kinds of event-time change,
    plus ``time`` (a value that time alone changes, at a time it reports) and ``drift``
    (a value that can change unannounced). An event, a re-check or a close evaluates
    only the rules whose kinds it changed: skipping the others is exact.
    """
    return registry.changes_on(names) | registry.time_kinds(names)


@dataclass(frozen=True)
class SegmentRule:
    """One segment definition; ``evaluate`` is its one way to be evaluated."""

    name: str
    rule: Rule
    per: str | None = None
    changes_on: frozenset[str] = frozenset()
    fast: Any = None
    # Worked out once: ``category_local`` and the per-category segment names' prefix.
    local: bool = False
    prefix: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes_on", changes_on(self.rule.names))
        object.__setattr__(self, "fast", self.rule._fast)
        object.__setattr__(self, "local", self.category_local)
        object.__setattr__(self, "prefix", self.name + ":")

    @classmethod
    def parse(cls, name: str, when: str, per: str | None = None) -> SegmentRule:
        """Compile ``when`` (``RuleError`` says what is wrong)."""
        return cls(name, compile_rule(name, when, per), per)

    @property
    def category_local(self) -> bool:
        """A per-category rule that reads only that category's data (cheap at events)."""
        return self.per is not None and registry.category_local(self.rule.names)

    def members(self, user: UserState, focus: str | None = None) -> list[str]:
        """The segment names this rule could hold for ``user``.

        With ``focus`` (the category of the event just applied), a category-local
        rule is evaluated only for that category and those the user is in.
        """
        if self.per is None:
            return [self.name]
        prefix = self.prefix
        cut = len(prefix)
        segs = user.segments
        held = {s[cut:] for s in segs if s.startswith(prefix)} if segs else set()
        if focus is not None and self.local:
            if focus:
                held.add(focus)
            cats = held
        else:
            cats = held | set(user.affinity) | set(user.video_completions)
        return [prefix + c for c in sorted(cats)]

    def evaluate(
        self,
        user: UserState,
        ctx: Context,
        focus: str | None = None,
        limits: Limits = _NO_LIMITS,
        hits: dict[str, int] | None = None,
    ) -> list[SegmentChange]:
        changes: list[SegmentChange] = []
        held = -1
        per = self.per is not None
        cut = len(self.prefix)
        fast = self.fast
        for seg in self.members(user, focus):
            if per:
                ctx.category = seg[cut:]
            try:  # ``self.rule.holds(ctx)``, inlined
                holds = bool(fast(ctx))
            except (ArithmeticError, TypeError):
                holds = False
            inside = seg in user.segments
            if holds and not inside and self.per is not None:
                if held < 0:
                    prefix = self.name + ":"
                    held = sum(1 for s in user.segments if s.startswith(prefix))
                if held >= limits.category_segments:
                    hit(hits, "category_segments")
                    continue
                held += 1
            if holds != inside:
                reason = self.rule.explain(ctx)
                if self.per is not None:
                    reason["category"] = ctx.category
                if holds:
                    user.segments[seg] = ctx.now
                else:
                    del user.segments[seg]
                change = "enter" if holds else "exit"
                changes.append(SegmentChange(user.user_id, seg, change, ctx.now, reason))
        return changes


def evaluate_all(
    user: UserState,
    rules: list[SegmentRule],
    now: float,
    half_life: float,
    focus: str | None = None,
    changed: frozenset[str] | None = None,
    limits: Limits = _NO_LIMITS,
    hits: dict[str, int] | None = None,
) -> list[SegmentChange]:
    """Evaluate the segment rules for ``user`` at event time ``now`` (see ``Evaluator``)."""
    return Evaluator(rules).evaluate(user, now, half_life, focus, changed, limits, hits)


# One rule as the evaluation loop reads it: (rule, name, plain (not per category), fast).
_Step = tuple[SegmentRule, str, bool, Any]
# A plan compiled into one function (``compile_plan``):
# (context, the user's segments, user, focus, limits, hits, changes found) -> None.
_Run = Callable[
    [Context, dict[str, float], UserState, "str | None", Limits, "dict[str, int] | None",
     list[SegmentChange]],
    None,
]  # fmt: skip
_Plan = tuple[tuple[_Step, ...], bool, _Run]


def compile_plan(steps: tuple[_Step, ...]) -> _Run:
    """The steps of a plan as one function: each plain rule's fast expression inline.

    Equal to the loop it replaces (``evaluate_steps``; a test compares them): a plain
    rule is evaluated once (an exception: it does not hold), and only one whose truth
    differs from the user's membership is explained and recorded as a change, inline,
    as ``SegmentRule.evaluate`` would; a per-category rule always goes there.
    Inline, a rule costs no call, no loop step and no tuple unpacking.
    """
    env: dict[str, Any] = {
        "__builtins__": {},
        "ArithmeticError": ArithmeticError,
        "TypeError": TypeError,
        "_Change": SegmentChange,
    }
    lines = ["def run(c, segs, user, focus, limits, hits, changes):", "    pass"]
    for i, (rule, name, plain, fast) in enumerate(steps):
        env[f"_r{i}"], env[f"_n{i}"], env[f"_f{i}"] = rule, name, fast
        env[f"_x{i}"] = rule.rule.explain
        if not plain:
            lines += [
                f"    found = _r{i}.evaluate(user, c, focus, limits, hits)",
                "    if found:",
                "        changes.extend(found)",
            ]
            continue
        expr = rule.rule.fast_source or f"_f{i}(c)"
        # A plain rule whose truth differs from the membership: ``SegmentRule.evaluate``'s
        # change, without evaluating the rule again (its truth is ``h``): explained
        # before the membership moves, as there.
        lines += [
            "    try:",
            f"        h = ({expr})",
            "    except (ArithmeticError, TypeError):",
            "        h = False",
            "    if h:",
            f"        if _n{i} not in segs:",
            f"            why = _x{i}(c)",
            f"            segs[_n{i}] = c.now",
            f"            changes.append(_Change(user.user_id, _n{i}, 'enter', c.now, why))",
            f"    elif _n{i} in segs:",
            f"        why = _x{i}(c)",
            f"        del segs[_n{i}]",
            f"        changes.append(_Change(user.user_id, _n{i}, 'exit', c.now, why))",
        ]
    exec(compile("\n".join(lines), "<segments plan>", "exec"), env)
    run: _Run = env["run"]
    return run


def evaluate_steps(
    steps: tuple[_Step, ...],
    ctx: Context,
    segs: dict[str, float],
    user: UserState,
    focus: str | None,
    limits: Limits,
    hits: dict[str, int] | None,
    changes: list[SegmentChange],
) -> None:
    """The loop ``compile_plan`` unrolls: the reference it is tested against."""
    for rule, name, plain, fast in steps:
        # A plain rule whose truth did not change costs one call.
        if plain:
            try:
                holds = fast(ctx)
            except (ArithmeticError, TypeError):
                holds = False
            if (name in segs) if holds else (name not in segs):
                continue
        found = rule.evaluate(user, ctx, focus, limits, hits)
        if found:
            changes.extend(found)


class Evaluator:
    """Evaluates one list of segment rules; the engine keeps one for its config.

    Which rules an evaluation skips depends only on what changed (``changed``), on
    whether a reported change is due (``now >= user.segment_recheck``) and on whether
    the user is new, so the list of rules to evaluate and whether a skipped rule may
    own the pending re-check are worked out once per combination and kept
    (``plan``), instead of testing every rule's kinds at every evaluation; each kept
    plan is compiled into one function (``compile_plan``).
    """

    def __init__(self, rules: list[SegmentRule]) -> None:
        self.rules = list(rules)
        every = tuple((r, r.name, r.per is None, r.fast) for r in self.rules)
        self._all: _Plan = (every, False, compile_plan(every))
        self._plans: dict[tuple[frozenset[str], bool, bool], _Plan] = {}
        # One context, reset at each evaluation: building one per evaluation cost more
        # than the rules it served. Nothing keeps it past ``evaluate`` (an ``explain``
        # restores what it changed; triggers and diagnostics build their own).
        self._ctx = Context(UserState("", 0.0), 0.0, 1.0)

    def plan(
        self, changed: frozenset[str] | None, due: bool, first: bool
    ) -> tuple[tuple[_Step, ...], bool]:
        """(the rules to evaluate, whether a skipped one may own the pending re-check).

        ``changed`` as given to ``evaluate``; ``due``: a reported change is due, so every
        timed rule is evaluated too; ``first``: a new user, so every plain rule is.
        """
        if changed is None:
            return self._all[:2]
        key = (changed, due, first)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._make_plan(changed, due, first)
        return found[:2]

    def _make_plan(self, changed: frozenset[str], due: bool, first: bool) -> _Plan:
        # At a re-check or a close every timed rule is evaluated (they are all of the kinds
        # a close changes), so only a skipped timed rule can own the pending re-check; at an
        # event any skipped rule is taken to (kept as it was: re-check times decide when
        # drifting values are re-read, so they are part of the output).
        deadline = "drift" in changed
        kinds = changed | _TIME if due else changed
        steps: list[_Step] = []
        partial = False
        for rule in self.rules:
            # A new user: every plain rule once, even one that holds on an empty state (a
            # per-category rule has no category to hold for until an event brings one).
            if kinds.isdisjoint(rule.changes_on) and not (first and rule.per is None):
                if not deadline or "time" in rule.changes_on:
                    partial = True
                continue
            steps.append((rule, rule.name, rule.per is None, rule.fast))
        kept = tuple(steps)
        return kept, partial, compile_plan(kept)

    def evaluate(
        self,
        user: UserState,
        now: float,
        half_life: float,
        focus: str | None = None,
        changed: frozenset[str] | None = None,
        limits: Limits = _NO_LIMITS,
        hits: dict[str, int] | None = None,
    ) -> list[SegmentChange]:
        """Evaluate the rules for ``user`` at event time ``now``.

        With ``changed`` (what an event changed, ``AT_RECHECK`` or ``AT_CLOSE``; see
        ``changes_on``) only the rules that can be affected are evaluated; without it,
        all of them. Sets ``user.segment_recheck`` to the next time a time-dependent
        value used by a rule can change, so exits happen on time without an event.
        """
        pending = user.segment_recheck
        if changed is None:
            _, partial, run = self._all
        else:  # ``plan``, inlined (once per evaluation)
            key = (changed, now >= pending, user.total_events <= 1)
            kept = self._plans.get(key)
            if kept is None:
                kept = self._plans[key] = self._make_plan(*key)
            _, partial, run = kept
        ctx = self._ctx
        ctx.user = user
        ctx.now = now
        ctx.half_life = half_life
        ctx.next_change = INF
        ctx.category = ""
        ctx.segments = segs = user.segments
        changes: list[SegmentChange] = []
        run(ctx, segs, user, focus, limits, hits, changes)
        recheck = ctx.next_change
        if partial and now < pending < recheck:
            # A skipped rule may own the pending re-check: keep it (an early re-check is harmless).
            recheck = pending
        user.segment_recheck = recheck if recheck > now else INF
        return changes
