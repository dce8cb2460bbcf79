"""Segments: declarative rules whose truth, per user and over event time,
becomes ``enter``/``exit`` segment changes.

A segment with ``per: category`` is instantiated for each category the user
has touched: ``video_enthusiast:cooking``. Rules are evaluated in config order,
except that a rule comes after every segment its ``in_segment`` reads (the
settings order them so), so ``in_segment`` sees the truth decided in the same
evaluation.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from audienceflow.operators import registry
from audienceflow.operators.records import SegmentChange
from audienceflow.operators.rules import Context, Rule, compile_rule
from audienceflow.operators.state import INF, Limits, UserState, hit
from audienceflow.operators.watermarks import MAX_TS

_NO_LIMITS: Final = Limits()


# What a time-driven evaluation can have changed, as ``changed`` for ``evaluate_all``.
# A segment re-check: values that time alone changes (``time``, which ``evaluate_all``
# adds whenever the re-check is due) and those that change unannounced (``drift``).
AT_RECHECK: Final = frozenset({"drift"})
# A session close: the open session's values, the history and order totals (``event``,
# ``session_start`` and ``close`` kinds), and the unannounced ones; not a category's
# affinity events, video completions or the cart, which only an event changes.
AT_CLOSE: Final = frozenset({"event", "session_start", "close", "drift"})
_TIME: Final = frozenset({"time"})
# A due evaluation is the re-check's (an event at its instant makes it): time's values,
# and the drifting ones the re-check re-reads.
_DUE: Final = _TIME | AT_RECHECK


def changes_on(names: frozenset[str]) -> frozenset[str]:
    """The kinds of change that can alter a rule reading ``names``.

    Read from the registry (``operators/registry.py``): the kinds of event-time change,
    plus ``time`` (a value that time alone changes, at a time it reports) and ``drift``
    (a value that can change unannounced). An event, a re-check or a close evaluates
    only the rules whose kinds it changed: skipping the others is exact.
    """
    return registry.changes_on(names) | registry.time_kinds(names)


def _held(segments: dict[str, float], prefix: str) -> int:
    """How many of ``segments`` start with ``prefix``. A function of its own: a generator
    in ``SegmentRule.evaluate`` made ``prefix`` a cell, created at every evaluation."""
    return sum(1 for s in segments if s.startswith(prefix))


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
        # Loops, not comprehensions: those would make ``prefix`` and ``cut`` cells, created
        # at every call (CPython 3.11).
        held = set()
        for s in user.segments:
            if s.startswith(prefix):
                held.add(s[cut:])
        if focus is not None and self.local:
            if focus:
                held.add(focus)
            cats = held
        else:
            cats = held | set(user.affinity) | set(user.video_completions or ())
        names = []
        for c in sorted(cats):
            names.append(prefix + c)
        return names

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
        # Enters refused at ``max_segments_per_category_rule``: tried again after the loop,
        # as an exit later in the (sorted) loop frees a slot for them.
        refused: list[str] | None = None
        for seg in self.members(user, focus):
            if per:
                ctx.category = seg[cut:]
            try:  # ``self.rule.holds(ctx)``, inlined
                holds = bool(fast(ctx))
            except (ArithmeticError, TypeError):
                holds = False
            inside = seg in user.segments
            if holds and not inside and per:
                if held < 0:
                    held = _held(user.segments, self.name + ":")
                if held >= limits.category_segments:
                    if refused is None:
                        refused = []
                    refused.append(seg)
                    continue
                held += 1
            elif inside and not holds and held >= 0:
                held -= 1  # counted as held above: its slot is free again
            if holds != inside:
                changes.append(self._change(user, ctx, seg, holds))
        if refused is not None:
            for seg in refused:
                if held >= limits.category_segments:
                    hit(hits, "category_segments")
                    continue
                ctx.category = seg[cut:]
                try:
                    holds = bool(fast(ctx))
                except (ArithmeticError, TypeError):
                    holds = False
                if holds and seg not in user.segments:
                    held += 1
                    changes.append(self._change(user, ctx, seg, True))
        return changes

    def _change(self, user: UserState, ctx: Context, seg: str, holds: bool) -> SegmentChange:
        """``user`` enters (``holds``) or exits ``seg``, explained by the context."""
        reason = self.rule.explain(ctx)
        if self.per is not None:
            reason["category"] = ctx.category
        if holds:
            user.segments[seg] = ctx.now
        else:
            del user.segments[seg]
        return SegmentChange(user.user_id, seg, "enter" if holds else "exit", ctx.now, reason)


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


def compile_plan(steps: tuple[_Step, ...]) -> _Run:
    """The steps of a plan as one function: each plain rule's fast expression inline.

    Equal to the loop it replaces (``evaluate_steps``; a test compares them): a plain
    rule is evaluated once (an exception: it does not hold), and only one whose truth
    differs from the user's membership is explained and recorded as a change, inline,
    as ``SegmentRule.evaluate`` would; a per-category rule always goes there.
    Inline, a rule costs no call, no loop step and no tuple unpacking.
    """
    env = _plan_env(steps)
    body, session = _step_lines(steps)
    lines = ["def run(c, segs, user, focus, limits, hits, changes):", "    now = c.now"]
    if session:
        lines.append("    _s = user.session")
    lines += body
    exec(compile("\n".join(lines), "<segments plan>", "exec"), env)
    run: _Run = env["run"]
    return run


# A whole evaluation compiled into one function (``compile_evaluation``):
# (user, now, half_life, focus, limits, hits) -> the changes found.
_Evaluation = Callable[
    [UserState, float, float, "str | None", Limits, "dict[str, int] | None"],
    list[SegmentChange],
]  # fmt: skip
_Plan = tuple[tuple[_Step, ...], bool, _Evaluation]


def compile_evaluation(steps: tuple[_Step, ...], partial: bool, ctx: Context) -> _Evaluation:
    """A plan's whole evaluation as one function: ``Evaluator.evaluate`` past its choice of
    plan, the context reset, the steps as ``compile_plan`` writes them, and the re-check.

    Specialised at compile time, not tested per evaluation: the re-check a skipped rule
    may own is kept only in a ``partial`` plan, and the open session the rules read
    inline is read once (``_s``), as nothing an evaluation does can change it.
    """
    env = _plan_env(steps)
    env["_ctx"], env["INF"], env["MAX_TS"] = ctx, INF, MAX_TS
    body, session = _step_lines(steps)
    lines = [
        "def evaluate(user, now, half_life, focus, limits, hits):",
        "    c = _ctx",
        "    c.user = user",
        "    c.now = now",
        "    c.half_life = half_life",
        "    c.next_change = INF",
        "    c.category = ''",
        "    c.segments = segs = user.segments",
    ]
    if session:
        lines.append("    _s = user.session")
    if partial:
        lines.append("    pending = user.segment_recheck")
    lines.append("    changes = []")
    lines += body
    lines.append("    recheck = c.next_change")
    if partial:
        # A skipped rule may own the pending re-check: keep it (an early re-check is harmless).
        lines += ["    if now < pending < recheck:", "        recheck = pending"]
    # A change due after the last valid event time (a window of 10,000,000d) is never
    # due: no event or record can carry a time in or past the year 10000.
    lines += [
        "    user.segment_recheck = recheck if now < recheck <= MAX_TS else INF",
        "    return changes",
    ]
    exec(compile("\n".join(lines), "<segments evaluation>", "exec"), env)
    run: _Evaluation = env["evaluate"]
    return run


def _plan_env(steps: tuple[_Step, ...]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "__builtins__": {},
        "ArithmeticError": ArithmeticError,
        "TypeError": TypeError,
        "_Change": SegmentChange,
    }
    for i, (rule, _, _, fast) in enumerate(steps):
        env[f"_r{i}"], env[f"_f{i}"] = rule, fast
        env[f"_x{i}"] = rule.rule.explain
    return env


def _step_lines(steps: tuple[_Step, ...]) -> tuple[list[str], bool]:
    """The steps as statements of a function with locals ``c`` (the context), ``segs``
    (the user's segments), ``user``, ``focus``, ``limits``, ``hits`` and ``changes``;
    and whether they read the local ``_s``, the user's open session, to bind first."""
    lines: list[str] = []
    session = False
    for i, (rule, name, plain, fast) in enumerate(steps):
        if not plain:
            lines += [
                f"    found = _r{i}.evaluate(user, c, focus, limits, hits)",
                "    if found:",
                "        changes.extend(found)",
            ]
            continue
        # The step's function: the rule's fast one, or the same pruned (``Evaluator``).
        source = rule.rule.pruned_source if fast is rule.rule._pruned else rule.rule.fast_source
        expr, reads = _local_reads(source) if source else (f"_f{i}(c)", False)
        session = session or reads
        n = repr(name)  # a constant, not a global read
        # A plain rule whose truth differs from the membership: ``SegmentRule.evaluate``'s
        # change, without evaluating the rule again (its truth is ``h``): explained
        # before the membership moves, as there.
        lines += [
            "    try:",
            f"        h = ({expr})",
            "    except (ArithmeticError, TypeError):",
            "        h = False",
            "    if h:",
            f"        if {n} not in segs:",
            f"            why = _x{i}(c)",
            f"            segs[{n}] = now",
            f"            changes.append(_Change(user.user_id, {n}, 'enter', now, why))",
            f"    elif {n} in segs:",
            f"        why = _x{i}(c)",
            f"        del segs[{n}]",
            f"        changes.append(_Change(user.user_id, {n}, 'exit', now, why))",
        ]
    return lines, session


_LOCALS: Final = frozenset({"user", "now"})


class _LocalReads(ast.NodeTransformer):
    """``c.user`` and ``c.now`` read as the locals ``user`` and ``now``, and the open
    session as the local ``_s`` (``(_s := c.user.session)``, as variables read it inline,
    becomes ``_s``): every function these expressions are compiled into binds all three
    before its steps (nothing an evaluation calls sets ``c.now``). A local is one
    instruction; ``c.now`` an attribute read, through a descriptor when ``Context`` is
    compiled."""

    def __init__(self) -> None:
        self.session = False

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if (
            isinstance(node.value, ast.Name)
            and node.value.id == "c"
            and node.attr in _LOCALS
            and isinstance(node.ctx, ast.Load)
        ):
            return ast.copy_location(ast.Name(node.attr, ast.Load()), node)
        return self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        self.generic_visit(node)
        v = node.value
        if (
            node.target.id == "_s"
            and isinstance(v, ast.Attribute)
            and v.attr == "session"
            and isinstance(v.value, ast.Name)
            and v.value.id == "user"
        ):
            self.session = True
            return ast.copy_location(ast.Name("_s", ast.Load()), node)
        return node


@functools.lru_cache(maxsize=1024)
def _local_reads(source: str) -> tuple[str, bool]:
    """``source`` (a fast expression of ``c``) reading ``user`` and ``_s`` as locals, and
    whether it reads ``_s``. Kept per source: a rule's expression is rewritten for every
    plan that holds it (parsed and unparsed, most of a plan's compile time)."""
    reads = _LocalReads()
    tree = reads.visit(ast.parse(source, mode="eval"))
    return ast.unparse(tree.body), reads.session


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
    plan is compiled into one function of the whole evaluation (``compile_evaluation``),
    found per evaluation by one dict read (``changed``) and two comparisons.
    """

    def __init__(self, rules: list[SegmentRule], prune: bool | None = None) -> None:
        self.rules = list(rules)
        # One context, reset at each evaluation: building one per evaluation cost more
        # than the rules it served. Nothing keeps it past ``evaluate`` (an ``explain``
        # restores what it changed; triggers and diagnostics build their own).
        self._ctx = Context(UserState("", 0.0), 0.0, 1.0)
        # Plans with the same steps and re-check share one compiled evaluation.
        self._compiled: dict[tuple[tuple[int, ...], bool], _Evaluation] = {}
        # A rule's re-checks are only those its truth can need (``Rule._pruned``) unless a
        # rule reads a drifting value: re-checks then decide when it is re-read, so each
        # one is part of the output. (``prune``: forced on or off, for tests.)
        drifting = any("drift" in registry.time_kinds(r.rule.names) for r in self.rules)
        self.prune = not drifting if prune is None else prune
        every = tuple((r, r.name, r.per is None, self._fast(r)) for r in self.rules)
        self._all: _Plan = (every, False, self._compile(every, False))
        self._plans: dict[tuple[frozenset[str], bool, bool], _Plan] = {}
        # Per ``changed``: the compiled evaluations by ``due + 2 * first`` (``_slot``),
        # each filled at its first use.
        self._runs: dict[frozenset[str] | None, list[_Evaluation | None]] = {
            None: [self._all[2]] * 4
        }

    def plan(
        self, changed: frozenset[str] | None, due: bool, first: bool
    ) -> tuple[tuple[_Step, ...], bool]:
        """(the rules to evaluate, whether a skipped one may own the pending re-check).

        ``changed`` as given to ``evaluate``; ``due``: a reported change is due, so every
        timed and drifting rule is evaluated too (the re-check's evaluation, which an
        event at its instant makes); ``first``: a new user, so every plain rule is.
        """
        if changed is None:
            return self._all[:2]
        return self._kept(changed, due, first)[:2]

    def _kept(self, changed: frozenset[str], due: bool, first: bool) -> _Plan:
        key = (changed, due, first)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = self._make_plan(changed, due, first)
        return found

    def _compile(self, steps: tuple[_Step, ...], partial: bool) -> _Evaluation:
        index = {id(r): i for i, r in enumerate(self.rules)}
        key = (tuple(index[id(s[0])] for s in steps), partial)
        run = self._compiled.get(key)
        if run is None:
            run = self._compiled[key] = compile_evaluation(steps, partial, self._ctx)
        return run

    def _make_plan(self, changed: frozenset[str], due: bool, first: bool) -> _Plan:
        # At a re-check or a close every timed rule is evaluated (they are all of the kinds
        # a close changes), so only a skipped timed rule can own the pending re-check; at an
        # event any skipped rule is taken to (kept as it was: re-check times decide when
        # drifting values are re-read, so they are part of the output).
        deadline = "drift" in changed
        kinds = changed | _DUE if due else changed
        steps: list[_Step] = []
        partial = False
        for rule in self.rules:
            # A new user: every plain rule once, even one that holds on an empty state (a
            # per-category rule has no category to hold for until an event brings one).
            if kinds.isdisjoint(rule.changes_on) and not (first and rule.per is None):
                if not deadline or "time" in rule.changes_on:
                    partial = True
                continue
            steps.append((rule, rule.name, rule.per is None, self._fast(rule)))
        kept = tuple(steps)
        return kept, partial, self._compile(kept, partial)

    def _fast(self, rule: SegmentRule) -> Any:
        """The function a plain rule is evaluated with (pruned, see ``__init__``)."""
        pruned = rule.rule._pruned
        if self.prune and rule.per is None and pruned is not None:
            return pruned
        return rule.fast

    def _slot(self, changed: frozenset[str], slot: int) -> _Evaluation:
        """Fill slot ``slot`` (``due + 2 * first``) of ``changed``'s evaluations."""
        runs = self._runs.setdefault(changed, [None, None, None, None])
        run = runs[slot] = self._kept(changed, slot & 1 == 1, slot >= 2)[2]
        return run

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
        runs = self._runs.get(changed)
        # The slot ``due + 2 * first``, by comparisons (``plan``'s key without a tuple).
        if now >= user.segment_recheck:
            slot = 3 if user.total_events <= 1 else 1
        else:
            slot = 2 if user.total_events <= 1 else 0
        run = None if runs is None else runs[slot]
        if run is None:
            assert changed is not None  # ``None``'s slots are all filled
            run = self._slot(changed, slot)
        return run(user, now, half_life, focus, limits, hits)
