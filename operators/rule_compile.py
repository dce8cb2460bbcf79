"""The rule compiler: source text → checked AST → two Python functions of a ``Context``.

Everything that makes a rule cheap and safe is decided here, once, at load:
the language is a small expression grammar (no attribute access but ``traits.X``,
``group.X`` and ``properties.X``, no subscripts, no repetition ``[1] * n``, lists only after
``in``), literals are bounded (``MAX_TEXT`` characters, ``MAX_LIST`` items,
``|x| <= MAX_NUMBER``), and so is the expression (``MAX_CHARS`` characters,
``MAX_NODES`` nodes, ``MAX_DEPTH`` levels). Each step is linear in the rule's
size, and since every function costs at most a bounded scan (see the registry),
one evaluation costs at most ``MAX_NODES`` bounded calls.
"""

from __future__ import annotations

import ast
import copy
import io
import math
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audienceflow.operators import tracking
from audienceflow.operators.amounts import amount
from audienceflow.operators.config import suggest
from audienceflow.operators.normalize import normalize_locale
from audienceflow.operators.registry import REGISTRY, Entry, never_holds, value_range
from audienceflow.operators.state import GROUP, HISTORY_METRICS, Limits
from audienceflow.operators.tracking import Tracker

MAX_CHARS = 4000
MAX_NODES = 600
MAX_DEPTH = 32
MAX_TEXT = 200
MAX_LIST = 100
MAX_NUMBER = 1e15

_DURATION = re.compile(
    r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|\b(\d+(?:\.\d+)?)(ms|s|m|h|d|w)\b"""
)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PLACEHOLDER = re.compile(r"__dur\d+\b")
_ORDERING = (ast.Gt, ast.GtE, ast.Lt, ast.LtE)
# The names read with an attribute: ``traits.X``, ``group.X`` (an account's), ``properties.X``.
_ATTRIBUTES = ("traits", "group", "properties")
_OPS = {ast.Gt: "gt", ast.GtE: "ge", ast.Lt: "lt", ast.LtE: "le"}
_FLIP = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Gt,
    ast.GtE,
    ast.Lt,
    ast.LtE,
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Tuple,
    ast.List,
    ast.Attribute,
    ast.keyword,
)
_WHERE_ALLOWED = (
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Gt,
    ast.GtE,
    ast.Lt,
    ast.LtE,
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Tuple,
    ast.List,
    ast.Attribute,
)


# The fast-path expression of a rule variable, in terms of the context ``c`` (declared
# with the variable: ``rules.variable(inline=...)``). A rule's fast function reads the
# state through it, not through the variable's property (a property, a closure and a
# ``getattr`` per read); its explain function keeps the property, and a test keeps the
# two equal for every variable that has one.
INLINE: dict[str, ast.expr] = {}


def set_inline(name: str, source: str) -> None:
    """Declare ``source`` (an expression of ``c``) as the fast read of variable ``name``."""
    INLINE[name] = ast.parse(source, mode="eval").body


# The fast-path expression of a rule function called with constant arguments, in terms of
# the context ``c`` and the arguments ``_a0``, ``_a1``, ... (declared with the function:
# ``rules.function(inline=...)``): what the call returns, with the same effect on ``c``.
# Its explain function keeps the call; a test keeps the two equal for every entry.
INLINE_CALLS: dict[str, ast.expr] = {}


def set_inline_call(name: str, source: str) -> None:
    """Declare ``source`` as the fast call of function ``name`` with constant arguments."""
    INLINE_CALLS[name] = ast.parse(source, mode="eval").body


class _Arguments(ast.NodeTransformer):
    """An inline call's template with its arguments (``_a0``, ...) put in."""

    def __init__(self, args: list[ast.expr]) -> None:
        self.args = {f"_a{i}": a for i, a in enumerate(args)}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        arg = self.args.get(node.id)
        return node if arg is None else copy.deepcopy(arg)


def _inline_call(fname: str, args: list[ast.expr]) -> ast.expr | None:
    """The inline form of ``fname(*args)``, or None (no template, or an argument that is
    not a constant: an inlined argument would be evaluated as often as it is named)."""
    template = INLINE_CALLS.get(fname)
    if template is None or not all(isinstance(a, ast.Constant) for a in args):
        return None
    out = _Arguments(args).visit(copy.deepcopy(template))
    assert isinstance(out, ast.expr)
    return out


class RuleError(ValueError):
    """A rule expression was rejected."""


# JSON's and YAML's spellings of the literals, as a marketer writes them: no rule name
# is spelt so, so each reads only one way.
_LITERALS: dict[str, bool | None] = {"true": True, "false": False, "null": None}


class _Literals(ast.NodeTransformer):
    """``true``/``false``/``null`` as constants (Python's ``True``, ``False``, ``None``),
    and a signed number (``-5``, ``+1.5``) as the constant it is: Python parses the
    sign as an operator, so ``traits.tz_offset in [-5, -8]`` was refused as a list of
    something other than numbers."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _LITERALS:
            return ast.copy_location(ast.Constant(_LITERALS[node.id]), node)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        operand = node.operand
        if (
            isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(operand, ast.Constant)
            and type(operand.value) in (int, float)
        ):
            value = operand.value
            assert isinstance(value, int | float)
            signed = -value if isinstance(node.op, ast.USub) else +value
            return ast.copy_location(ast.Constant(signed), node)
        return node


Durations = dict[str, tuple[float, str]]

# What a number that is not a time is, for the error naming it (else "a number").
_WHAT = {"events": "a count of events", "count": "a count of events",
         "sessions": "a count of sessions", "total_events": "a count of events",
         "total_sessions": "a count of sessions", "total_orders": "a count of orders",
         "total_revenue": "an amount", "cart_value": "an amount",
         "cart_items": "a count of items", "intent_score": "a score",
         "affinity": "a score"}  # fmt: skip


def _locale_note(field: str, value: str, rule: str) -> list[str]:
    """A note when ``field == value`` never matches: ingest writes locales normalised."""
    norm = normalize_locale(value)
    if norm == value:
        return []
    if norm is None:
        return [f"{field} is never {value!r}: it is a BCP 47 language-Region tag such as"
                f" 'en-GB' (or 'en'), or absent: {rule}"]  # fmt: skip
    return [f"{field} is read normalised at ingest, so it is never {value!r}: write"
            f" {norm!r}: {rule}"]  # fmt: skip


_NULL_USE = (
    "null (absent) is only compared with == or != to traits.NAME, group.NAME or properties.NAME"
    " (traits.plan == null: no plan, or one sent as null)"
)
_NULL_USE_WHERE = "null (absent) is only compared with == or != to a field"


def _preprocess(source: str) -> tuple[str, Durations]:
    durations: Durations = {}

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1)
        name = f"__dur{len(durations)}"
        durations[name] = (float(m.group(2)) * _UNIT[m.group(3)], m.group(0))
        return name

    return _DURATION.sub(sub, source), durations


def _restore(text: str, durations: Durations) -> str:
    """Put the durations as written back in place of their placeholders."""
    return _PLACEHOLDER.sub(lambda m: durations[m.group(0)][1], text)


def _bounded(tree: ast.AST) -> None:
    """Reject oversized expressions without recursion (a 2,000-term sum is 2,000 deep)."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise RuleError(f"the rule is too large: more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise RuleError(f"the rule nests too deeply: more than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str) and len(v) > MAX_TEXT:
                raise RuleError(f"a quoted text longer than {MAX_TEXT} characters")
            # ``abs(v) <= MAX_NUMBER`` first: an int of 400 digits compares exactly, where
            # ``math.isfinite`` raised OverflowError (a traceback from check-config).
            if isinstance(v, int | float) and not (
                isinstance(v, bool) or (abs(v) <= MAX_NUMBER and math.isfinite(v))
            ):
                raise RuleError(f"a number outside ±{MAX_NUMBER:g}: {v!r}")
        if isinstance(node, ast.List | ast.Tuple) and len(node.elts) > MAX_LIST:
            raise RuleError(f"a list of more than {MAX_LIST} items")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _path(node: ast.AST) -> tuple[str, ...] | None:
    """``a.b.c`` → ``('a', 'b', 'c')``; anything else → ``None``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return tuple(reversed(parts))


@dataclass(frozen=True)
class Compiled:
    names: frozenset[str]
    fast: Callable[..., Any]
    explain: Callable[..., Any]
    trackers: tuple[Tracker, ...]
    traits: frozenset[str]
    # ``fast``'s body as source, an expression of ``c``: for evaluators that compile
    # several rules into one function (``segments.Evaluator``).
    fast_source: str = ""
    # The ``properties`` paths compared: an event trigger's ``properties.X`` and the
    # fields of ``where`` conditions (the settings refuse those the privacy step hashes).
    properties: frozenset[tuple[str, ...]] = frozenset()
    # ``fast`` reporting only the changes time alone can make to the rule's truth (see
    # ``_Compiler.trend``), and its source; ``fast`` itself where there is nothing to drop.
    pruned: Callable[..., Any] | None = None
    pruned_source: str = ""
    notes: tuple[str, ...] = ()  # warnings: parts that compile but never match
    # The names ``in_segment`` reads, as written, in the order of the source.
    segments: tuple[str, ...] = ()
    # Lapse tests (the part's text, its duration in seconds, whether it is the user's
    # inactivity): parts that hold only once something has not happened for that long
    # (``since(...) > 60d``; ``not active_within(60d)``, inactivity), which eviction
    # after ``state.history_window`` can outrun.
    lapses: tuple[tuple[str, float, bool], ...] = ()


class _Compiler:
    """Checks the tree (``check``) and rewrites it into context calls (``rewrite``)."""

    def __init__(
        self,
        src: str,
        durations: Durations,
        per: str | None,
        scope: str,
        limits: Limits | None = None,
    ) -> None:
        self.src = src
        self.limits = Limits() if limits is None else limits  # the bounds of ``value_range``
        self.durations = durations
        self.per = per
        self.scope = scope
        self.names: set[str] = set()
        self.trackers: list[Tracker] = []
        self.traits: set[str] = set()
        self.properties: set[tuple[str, ...]] = set()
        self.pruning = False  # ``rewrite`` drops the re-checks the truth cannot need
        self.absent: set[int] = set()  # ``null`` constants compared with traits.X, properties.X
        self.notes: list[str] = []  # warnings: a part that never matches, and why
        self.lapses: list[tuple[str, float, bool]] = []  # ``Compiled.lapses``
        self.segments: dict[str, None] = {}  # what ``in_segment`` reads (``Compiled``)
        # Comparisons that can raise (``_guards``), by node id: the value each takes then.
        self.guards: dict[int, bool] = {}
        # Under an odd number of ``not`` (through ``and``/``or`` only): a comparison that
        # can never hold is then an always-true one (``check_range``).
        self.negated = False
        self._temps = 0
        self._lines = [0]
        for line in src.splitlines(keepends=True):
            self._lines.append(self._lines[-1] + len(line))

    # --- helpers ----------------------------------------------------------------------

    def text(self, node: ast.AST) -> str:
        """The node as written (linear: offsets into the source, not a re-scan)."""
        try:
            lo = self._lines[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
            hi = self._lines[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
            raw = self.src[lo:hi]
        except (AttributeError, IndexError, TypeError):
            raw = ast.unparse(node)
        return _restore(raw, self.durations)

    def duration(self, node: ast.AST) -> float | None:
        if isinstance(node, ast.Name) and node.id in self.durations:
            return self.durations[node.id][0]
        return None

    def kind(self, node: ast.AST) -> str:
        """``text``, ``number``, ``bool`` or ``any``: enough to reject text arithmetic."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return "bool"
            if node.value is None:
                return "any"
            return "text" if isinstance(node.value, str) else "number"
        if isinstance(node, ast.Name):
            if node.id in self.durations:
                return "number"
            e = REGISTRY.get(node.id)
            return "any" if e is None else e.returns
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            e = REGISTRY.get(node.func.id)
            return "any" if e is None else e.returns
        if isinstance(node, ast.BinOp):
            return "number"
        if isinstance(node, ast.UnaryOp):
            return "bool" if isinstance(node.op, ast.Not) else "number"
        if isinstance(node, ast.List | ast.Tuple):
            return "list"
        return "any"

    # --- the check --------------------------------------------------------------------

    def check(self, node: ast.AST) -> None:
        if not isinstance(node, _ALLOWED) or isinstance(node, ast.keyword):
            raise RuleError(f"{type(node).__name__} is not allowed in a rule")
        if isinstance(node, ast.Constant) and node.value is None:
            if id(node) not in self.absent:
                raise RuleError(_NULL_USE + f": {self.text(node)}")
            return
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise RuleError(f"constant {node.value!r} is not allowed in a rule")
        if isinstance(node, ast.Name):
            self.check_name(node)
            return
        if isinstance(node, ast.Attribute):
            self.check_attribute(node)
            return
        if isinstance(node, ast.Call):
            self.check_call(node)
            return
        if isinstance(node, ast.List | ast.Tuple):
            raise RuleError(f"a list can only follow 'in': {self.text(node)}")
        if isinstance(node, ast.BinOp):
            for side in (node.left, node.right):
                k = self.kind(side)
                if k == "text":
                    raise RuleError(f"arithmetic on text is not allowed: {self.text(node)}")
                if k == "list":
                    raise RuleError(f"list arithmetic is not allowed: {self.text(node)}")
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and self.kind(node.operand) == "text"
        ):
            raise RuleError(f"arithmetic on text is not allowed: {self.text(node)}")
        if isinstance(node, ast.Compare):
            self.check_compare(node)
            return
        outer = self.negated
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.negated = not outer
        elif not isinstance(node, ast.BoolOp):
            self.negated = False  # an argument or operand: its truth is not the rule's
        try:
            for child in ast.iter_child_nodes(node):
                self.check(child)
        finally:
            self.negated = outer

    def check_name(self, node: ast.Name) -> None:
        if node.id in self.durations:
            return
        e = REGISTRY.get(node.id)
        if e is not None and e.is_function:
            raise RuleError(f"'{node.id}' is a function: call it, e.g. {node.id}(...)")
        if e is not None and node.id in _ATTRIBUTES:
            # Not "unknown name 'group' (did you mean 'group'?)": it is known, by a field.
            raise RuleError(f"'{node.id}' is read by a field, {node.id}.NAME, as in {e.example}")
        if e is None:
            known = sorted(n for n, x in REGISTRY.items() if not x.is_function)
            hint = suggest(node.id, known)
            raise RuleError(f"unknown name '{node.id}'{hint}; known: {', '.join(known)}")
        if node.id == "category" and self.per != "category":
            raise RuleError("'category' can only be used in a rule with 'per: category'")
        self.names.add(node.id)

    def check_attribute(self, node: ast.Attribute) -> None:
        path = _path(node)
        if path is None or path[0] not in _ATTRIBUTES:
            raise RuleError(
                f"Attribute is not allowed in a rule (only traits.X, group.X and properties.X):"
                f" {self.text(node)}"
            )
        if path[0] == "traits" and len(path) != 2:
            raise RuleError(
                "a trait is written traits.NAME, a top-level trait: an identify's nested"
                " traits (Segment's company object) are not read; send the value as a"
                " trait of its own (company_plan), or the account's traits in a group call"
                f" (group.plan): {self.text(node)}"
            )
        if path[0] == "group" and len(path) != 2:
            raise RuleError(
                "an account trait is written group.NAME, a top-level trait of the latest"
                f" group call: {self.text(node)}"
            )
        if path[0] == "properties" and self.scope != "event":
            raise RuleError(
                "properties.X reads the event being handled: only in an event trigger's"
                f" 'when' (use count(..., where) over past events): {self.text(node)}"
            )
        self.names.add(path[0])
        if path[0] == "traits":
            self.traits.add(path[1])
        elif path[0] == "group":
            self.traits.add(GROUP + path[1])  # as ``UserState.traits`` keeps it
        else:
            self.properties.add(path[1:])

    def check_compare(self, node: ast.Compare) -> None:
        negated, self.negated = self.negated, False  # the operands' own comparisons
        try:
            self._check_compare(node, negated)
        finally:
            self.negated = negated

    def _check_compare(self, node: ast.Compare, negated: bool) -> None:
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            for a, b in ((left, right), (right, left)):
                if (
                    isinstance(b, ast.Constant)
                    and b.value is None
                    and isinstance(op, ast.Eq | ast.NotEq)
                    and (_path(a) or ("",))[0] in _ATTRIBUTES
                ):
                    self.absent.add(id(b))
                if isinstance(op, (*_ORDERING, ast.Eq, ast.NotEq)):
                    self.check_units(a, b, node)
                if isinstance(a, ast.Name) and a.id == "locale":
                    self.check_locale(b, node)
            kinds = {self.kind(left), self.kind(right)}
            if isinstance(op, _ORDERING) and (
                kinds == {"text", "number"} or _quoted_amount(left, right)
            ):
                raise RuleError(
                    f"cannot order text against a number: {self.text(node)}"
                    + _amount_hint(left, right)
                )
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right, ast.List | ast.Tuple):
                    raise RuleError(
                        f"'in' needs a list such as ['mobile', 'tablet']: {self.text(node)}"
                    )
                for elt in right.elts:
                    if not isinstance(elt, ast.Constant) or isinstance(elt.value, bool | None):
                        raise RuleError(f"a list after 'in' holds quoted texts or numbers: "
                                        f"{self.text(node)}")  # fmt: skip
            for a, b in ((left, right), (right, left)):
                if _is_call(a, "since"):
                    if len(node.ops) != 1 or not isinstance(op, _ORDERING):
                        raise RuleError(
                            "since() is compared once with <, <=, > or >= and a duration,"
                            f" e.g. since('Product Added') > 1h: {self.text(node)}"
                        )
                    seconds = self.duration(b)
                    if seconds is None:
                        raise RuleError(
                            f"since() must be compared with a duration such as 1h: "
                            f"{self.text(node)}"
                        )
                    since_op = _OPS[type(op)] if a is left else _FLIP[_OPS[type(op)]]
                    if (since_op in ("gt", "ge")) != negated:  # (``not since(X) <= D`` too)
                        text = self.text(node)
                        self.lapses.append((f"not {text}" if negated else text, seconds, False))
                if isinstance(a, ast.Name) and isinstance(b, ast.Constant | ast.List):
                    self.check_vocabulary(REGISTRY.get(a.id), b, node)
        for child in (node.left, *node.comparators):
            if isinstance(child, ast.List | ast.Tuple):
                continue
            if _is_call(child, "since"):
                assert isinstance(child, ast.Call)
                self.check_call(child, in_compare=True)
                continue
            self.check(child)
        # After the operands' own checks, which say more (text arithmetic, None).
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            how = "eq" if isinstance(op, ast.Eq) else _OPS.get(type(op))
            if how is not None:
                self.check_range(left, how, right, node, negated)
                self.check_range(right, _FLIP.get(how, how), left, node, negated)
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            if isinstance(op, ast.Eq | ast.NotEq):
                others = [right]
            elif isinstance(op, ast.In | ast.NotIn):
                others = list(right.elts) if isinstance(right, ast.List | ast.Tuple) else []
            else:
                continue
            if any(
                {self.kind(left), self.kind(o)} == {"text", "number"} or _quoted_amount(left, o)
                for o in others
            ):
                raise RuleError(
                    f"text is never equal to a number: {self.text(node)}"
                    + _amount_hint(left, *others)
                )

    def check_range(
        self, a: ast.AST, how: str, b: ast.AST, node: ast.AST, negated: bool = False
    ) -> None:
        """``a how b`` with ``b`` a constant outside every value ``a`` can take (its
        registry ``value_range``): ``distinct(...) > 100`` with 100 values kept per user,
        ``count(...) < 0``. Such a rule can never hold, so it is a mistake.

        ``negated``: the comparison is under an odd number of ``not`` (through ``and`` and
        ``or`` only). Its negation always holds, and by De Morgan the rule is one with an
        always-true comparison, ``not (count(...) > 5000)`` is ``count(...) <= 5000``: accepted,
        as that is (a value always within its range is no mistake)."""
        e = _entry_of(a)
        if negated or e is None or e.value_range is None:
            return
        bound = _constant_number(b)
        if bound is None:
            bound = self.duration(b)
        if bound is None:
            return
        span_of = value_range(e, self.limits)
        assert span_of is not None  # ``e.value_range`` is set
        lo, hi = span_of
        if not never_holds(how, bound, lo, hi):
            return
        top = e.value_range[1]
        if hi == math.inf:
            span = f"never below {lo:g}"
        else:
            span = f"between {lo:g} and {hi:g}"
            if isinstance(top, str):
                span += f" (state.max_{top} is {hi:g})"
        raise RuleError(f"{self.text(node)} can never hold: {self.text(a)} is {span}")

    def check_units(self, a: ast.AST, b: ast.AST, node: ast.AST) -> None:
        """A count, amount or score compared with a duration (``events(1h) > 1h``): a
        duration is its seconds, so that is never meant."""
        seconds = self.duration(b)
        e = _entry_of(a)
        if seconds is None or e is None or e.returns != "number" or e.unit == "seconds":
            return
        if isinstance(a, ast.Call) and e.name == "total" and a.args:
            metric = a.args[0]
            if isinstance(metric, ast.Constant) and metric.value == "engaged_seconds":
                return
        raise RuleError(
            f"{self.text(a)} is {_WHAT.get(e.name, 'a number')}, not a time: compared "
            f"with {self.text(b)} it means the number {seconds:g}; compare it with a number "
            f"(e.g. {e.example}): {self.text(node)}"
        )

    def check_locale(self, other: ast.AST, node: ast.AST) -> None:
        """A note for a locale that ingest never leaves as written (``en_GB``)."""
        elts = other.elts if isinstance(other, ast.List | ast.Tuple) else [other]
        for elt in elts:
            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                self.notes.extend(_locale_note("locale", elt.value, self.text(node)))

    def check_vocabulary(self, e: Entry | None, other: ast.AST, node: ast.AST) -> None:
        if e is None or not e.vocabulary:
            return
        _vocabulary(e.name, e.vocabulary, other, self.text(node))

    def check_call(self, node: ast.Call, in_compare: bool = False) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in REGISTRY:
            fname = self.text(node.func)
            known = sorted(n for n, x in REGISTRY.items() if x.is_function)
            hint = suggest(fname, known)
            raise RuleError(f"unknown function '{fname}'{hint}; known: {', '.join(known)}")
        e = REGISTRY[node.func.id]
        if not e.is_function:
            raise RuleError(f"'{e.name}' is not a function")
        if e.name == "since" and not in_compare:
            raise RuleError("since() is compared with a duration, e.g. since('Product Added') > 1h")
        args = e.args or ()
        need = [a for a in args if not a.endswith("?")]
        variadic = bool(args) and args[-1].endswith("*")
        kw_names = {k for k, _ in e.keywords}
        given_kw = {k.arg for k in node.keywords}
        n = len(node.args)
        ok_count = (n >= 1) if variadic else len(need) <= n <= len(args)
        if ok_count and given_kw < kw_names:  # sequence('A', 'B') without within=
            missing = ", ".join(f"{k}=" for k in sorted(kw_names - given_kw))
            raise RuleError(f"{e.name}() needs {missing} a duration such as 1h")
        if not ok_count or given_kw != kw_names:
            usage = ", ".join([*args, *(f"{k}=duration" for k in sorted(kw_names))])
            raise RuleError(f"{e.name}() takes {len(args)} argument(s): {usage}")
        for kw in node.keywords:
            if not self.duration(kw.value):  # None, or 0s: a window that holds nothing
                raise RuleError(
                    f"{e.name}() needs {kw.arg}= a duration such as 1h; got {self.text(kw.value)}"
                )
        kinds = [args[0].rstrip("*")] * n if variadic else [a.rstrip("?") for a in args[:n]]
        for arg, kind in zip(node.args, kinds, strict=True):
            self.check_arg(e.name, arg, kind)
        if e.name == "active_within" and self.negated:  # ``not active_within(D)``
            seconds = self.duration(node.args[0])
            if seconds is not None:
                self.lapses.append((f"not {self.text(node)}", seconds, True))
        if e.name == "in_segment":  # a quoted name (``check_arg``), however it is spaced
            name = node.args[0]
            assert isinstance(name, ast.Constant) and isinstance(name.value, str)
            self.segments[name.value] = None
        self.names.add(e.name)

    def check_arg(self, fname: str, arg: ast.expr, kind: str) -> None:
        if kind == "duration":
            seconds = self.duration(arg)
            if seconds is None:
                raise RuleError(f"{fname}() needs a duration such as 24h; got {self.text(arg)}")
            if seconds == 0:  # (now - 0s, now] holds no time, so nothing is ever in it
                raise RuleError(f"{fname}() needs a window longer than 0; got {self.text(arg)}")
        elif kind == "metric":
            ok = isinstance(arg, ast.Constant) and arg.value in HISTORY_METRICS
            if not ok:
                # Not "got": the config error ends with "; got" and the whole rule.
                given = arg.value if isinstance(arg, ast.Constant) else None
                hint = suggest(given, HISTORY_METRICS) if isinstance(given, str) else ""
                if isinstance(arg, ast.Name) and arg.id in HISTORY_METRICS:
                    hint = f" (quote it: {arg.id!r})"
                elif not hint and isinstance(given, str) and given:
                    hint = f" (count({given!r}, ...) counts events so named)"
                raise RuleError(
                    f"{fname}() needs a metric, one of {', '.join(sorted(HISTORY_METRICS))};"
                    f" {self.text(arg)} is not one{hint}"
                )
        elif kind == "category" and isinstance(arg, ast.Name) and arg.id == "category":
            self.check_name(arg)
        elif kind == "events":
            self.event_names(fname, arg)
        elif kind == "where":
            _WhereCheck(self, arg).check(arg)
        elif kind == "field":
            self.field(fname, arg)
        elif not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise RuleError(f"{fname}() needs a quoted name; got {self.text(arg)}")

    def event_names(self, fname: str, arg: ast.expr) -> frozenset[str]:
        elts = arg.elts if isinstance(arg, ast.List | ast.Tuple) else [arg]
        if not elts:  # no names would match every event (a step's empty set means any)
            raise RuleError(f"{fname}() needs at least one event name; got {self.text(arg)}")
        names = []
        for elt in elts:
            if not (isinstance(elt, ast.Constant) and isinstance(elt.value, str) and elt.value):
                raise RuleError(
                    f"{fname}() needs a quoted event or page name (or a list of them);"
                    f" got {self.text(arg)}"
                )
            names.append(elt.value)
        return frozenset(names)

    def field(self, fname: str, arg: ast.expr) -> tuple[str, ...]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            path: tuple[str, ...] | None = tuple(arg.value.split("."))
        else:
            path = _path(arg)
        why = "not a field" if path is None else tracking.check_field(path)
        if why is not None or path is None:
            raise RuleError(f"{fname}() needs an event field: {why}; got {self.text(arg)}")
        return path

    # --- the re-checks a rule needs ---------------------------------------------------
    # A timed function reports when its value will change (``Context.next_change``), and
    # the engine re-evaluates the user then. ``sessions(24h) > 3`` reports each session
    # leaving the window, though a count that only falls with time cannot make a false
    # comparison true: with the defaults, three re-checks in five changed nothing,
    # each waking a user idle for a day out of the cold tier. So a rule's fast function
    # keeps only the changes its truth can take: a false operand of ``and`` whose truth
    # never rises with time (``trend`` -1, or 0) makes the ``and`` false until an event,
    # and what it and the operands before it reported is dropped (``Context._drop``);
    # likewise a true operand of ``or`` that never falls, and the rule as a whole.

    def trend(self, node: ast.AST) -> int | None:
        """How ``node``'s value moves as event time passes with no event: 0 it stays,
        -1 it never rises, +1 it never falls (a truth: false < true); None: not known."""
        if isinstance(node, ast.Constant | ast.List | ast.Tuple | ast.Attribute):
            return 0  # literals; traits.X and properties.X change only with an event
        if isinstance(node, ast.Name):
            if node.id in self.durations or node.id == "category":
                return 0
            return _entry_trend(REGISTRY.get(node.id))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                return None
            return _entry_trend(REGISTRY.get(node.func.id))
        if isinstance(node, ast.UnaryOp):
            operand = node.operand
            inner = self.truth(operand) if isinstance(node.op, ast.Not) else self.trend(operand)
            return None if inner is None else -inner
        if isinstance(node, ast.BinOp):
            a, b = self.trend(node.left), self.trend(node.right)
            if isinstance(node.op, ast.Add):
                return _together(a, b)
            if isinstance(node.op, ast.Sub):
                return _together(a, None if b is None else -b)
            if a == 0 and b == 0:
                return 0
            # A product or quotient by a constant moves as the other side (or against it).
            if isinstance(node.op, ast.Div) or not isinstance(node.left, ast.Constant):
                k, other = node.right, a
            else:
                k, other = node.left, b
            if (
                isinstance(node.op, ast.Mult | ast.Div)
                and isinstance(k, ast.Constant)
                and isinstance(k.value, int | float)
                and not isinstance(k.value, bool)
                and k.value != 0
                and other is not None
            ):
                return other if k.value > 0 else -other
            return None
        if isinstance(node, ast.BoolOp):
            joint: int | None = 0
            for v in node.values:
                joint = _together(joint, self.truth(v))
            # Its value is an operand's: as a number (``(A or 2) > 1``) it moves as its
            # truth only if every operand is a truth.
            if joint != 0 and not all(_boolean(v) for v in node.values):
                return None
            return joint
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_call(o, "since") for o in operands):
                return None
            trends = [self.trend(o) for o in operands]
            if all(t == 0 for t in trends):
                return 0
            if len(node.ops) != 1 or not isinstance(node.ops[0], _ORDERING):
                return None
            a, b = trends
            d = _together(a, None if b is None else -b)  # of left - right
            if d is None or isinstance(node.ops[0], ast.Gt | ast.GtE):
                return d
            return -d
        return None

    def truth(self, node: ast.AST) -> int | None:
        """``trend`` of ``node``'s truth."""
        t = self.trend(node)
        if t == 0 or _boolean(node):
            return t
        return None  # a number's truth (non-zero) need not move as the number does

    def timed(self, node: ast.AST) -> bool:
        """Whether ``node`` reads a value that reports changes with time."""
        for sub in ast.walk(node):
            e = _entry_of(sub)
            if e is not None and e.timed:
                return True
        return False

    def _temp(self, prefix: str) -> str:
        self._temps += 1
        return f"{prefix}{self._temps}"

    def keep_only(self, new: ast.expr, falsy: bool, mark: str) -> ast.expr:
        """``new`` dropping what was reported since ``mark`` when it is false (``falsy``)
        or true: ``((_kv := new) or c._drop(mark, _kv))``, the value unchanged."""
        x = self._temp("_kv")
        drop = ast.Call(
            ast.Attribute(ast.Name("c", ast.Load()), "_drop", ast.Load()),
            [ast.Name(mark, ast.Load()), ast.Name(x, ast.Load())],
            [],
        )
        held = ast.NamedExpr(ast.Name(x, ast.Store()), new)
        return ast.BoolOp(ast.Or() if falsy else ast.And(), [held, drop])

    @staticmethod
    def marked(new: ast.expr, mark: str) -> ast.expr:
        """``(new if (mark := c.next_change) is not None else None)``: ``new`` evaluated
        after noting what was reported so far (``next_change`` is never None)."""
        test = ast.Compare(
            ast.NamedExpr(
                ast.Name(mark, ast.Store()),
                ast.Attribute(ast.Name("c", ast.Load()), "next_change", ast.Load()),
            ),
            [ast.IsNot()],
            [ast.Constant(None)],
        )
        return ast.IfExp(test, new, ast.Constant(None))

    def pruned_top(self, node: ast.AST, new: ast.expr) -> ast.expr:
        """The rule's rewrite ``new`` keeping only the changes its truth can take."""
        t = self.truth(node)
        if t is None or t == 0 or not self.timed(node):
            return new
        if isinstance(node, ast.Call | ast.Name):
            return new  # one value: nothing reported beside it (a false one reports nothing)
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And) == (t < 0):
            return new  # its operands drop what it reported (``rewrite``)
        mark = self._temp("_km")
        return self.marked(self.keep_only(new, t < 0, mark), mark)

    # --- trackers and the rewrite -------------------------------------------------------

    def tracker(self, node: ast.Call) -> tuple[Tracker, list[ast.expr]]:
        """The tracker of a count/since/sequence/distinct call and the rest of its args."""
        assert isinstance(node.func, ast.Name)
        fname = node.func.id
        if fname in ("count", "since"):
            names = self.event_names(fname, node.args[0])
            where = None
            wtext = ""
            if len(node.args) > 2:
                wtext = self.text(node.args[2])
                where = _WhereCheck(self, node.args[2]).compile(node.args[2])
            key = f"log:{sorted(names)!r}|{wtext}"
            horizon = self.duration(node.args[1]) if fname == "count" else 0.0
            t = Tracker("log", key, (names,), where, (), horizon or 0.0)
            return t, list(node.args[1:2]) if fname == "count" else []
        if fname == "sequence":
            steps = tuple(self.event_names(fname, a) for a in node.args)
            within = self.duration(node.keywords[0].value) or 0.0
            key = "seq:" + repr([sorted(s) for s in steps])
            t = Tracker("seq", key, steps, None, (), within)
            return t, [ast.Constant(len(steps)), ast.Constant(within)]
        path = self.field(fname, node.args[0])
        key = "distinct:" + ".".join(path)
        t = Tracker("distinct", key, (frozenset(),), None, path, self.duration(node.args[1]) or 0)
        return t, list(node.args[1:])

    def guarded(self, node: ast.AST, explain: bool, when_raised: bool) -> ast.expr:
        """``c.guard(lambda: <node>, when_raised)``: ``node`` is unknown when it raises."""
        self.guards.pop(id(node))
        try:
            inner = self.rewrite(node, explain)
        finally:
            self.guards[id(node)] = when_raised
        lam = ast.Lambda(ast.arguments([], [], None, [], [], None, []), inner)
        guard = ast.Attribute(ast.Name("c", ast.Load()), "guard", ast.Load())
        return ast.Call(guard, [lam, ast.Constant(when_raised)], [])

    def rewrite(self, node: ast.AST, explain: bool) -> ast.expr:
        c = ast.Name("c", ast.Load())

        def call(attr: str, args: list[ast.expr]) -> ast.expr:
            return ast.Call(ast.Attribute(c, attr, ast.Load()), args, [])

        def wrap(orig: ast.AST, new: ast.expr) -> ast.expr:
            if not explain:
                return new
            return call("_r", [ast.Constant(self.text(orig)), new])

        if not isinstance(node, ast.Compare):  # a number read as a truth (``_guards``)
            when_raised = self.guards.get(id(node))
            if when_raised is not None:
                return self.guarded(node, explain, when_raised)
        if isinstance(node, ast.Name):
            if node.id in self.durations:
                return ast.Constant(self.durations[node.id][0])
            inline = None if explain else INLINE.get(node.id)
            if inline is not None:
                return copy.deepcopy(inline)
            return wrap(node, ast.Attribute(c, node.id, ast.Load()))
        if isinstance(node, ast.Attribute):
            path = _path(node)
            assert path is not None
            if path[0] == "traits":
                return wrap(node, call("trait", [ast.Constant(path[1])]))
            if path[0] == "group":
                return wrap(node, call("trait", [ast.Constant(GROUP + path[1])]))
            return wrap(node, call("prop", [_const_tuple(path[1:])]))
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            fname = node.func.id
            if fname in ("count", "sequence", "distinct"):
                t, rest = self.tracker(node)
                self.trackers.append(t)
                args = [ast.Constant(t.key), *(self.rewrite(a, explain) for a in rest)]
                return wrap(node, call(fname, args))
            args = [self.rewrite(a, explain) for a in node.args]
            inline = None if explain or node.keywords else _inline_call(fname, args)
            if inline is not None:
                return inline
            return wrap(node, call(fname, args))
        if isinstance(node, ast.Compare):
            since = self.since_compare(node)
            if since is not None:
                return since
            decaying = self.affinity_compare(node, explain)
            if decaying is not None:
                return decaying
            when_raised = self.guards.get(id(node))
            if when_raised is not None:
                return self.guarded(node, explain, when_raised)
        if isinstance(node, ast.List | ast.Tuple):
            return ast.Tuple([self.rewrite(e, explain) for e in node.elts], ast.Load())
        if isinstance(node, ast.BinOp):
            # A value of any type in arithmetic goes through ``c.num``: text or a list
            # (``'high' * 2``, ``'a' + 'b'``) cannot be computed, as a missing one cannot.
            sides = []
            for side in (node.left, node.right):
                new_side = self.rewrite(side, explain)
                sides.append(call("num", [new_side]) if _loose(side) else new_side)
            return ast.copy_location(ast.BinOp(sides[0], node.op, sides[1]), node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _loose(node.operand):
            operand = call("num", [self.rewrite(node.operand, explain)])
            return ast.copy_location(ast.UnaryOp(ast.USub(), operand), node)
        if isinstance(node, ast.BoolOp) and self.pruning and not explain and self.timed(node):
            conj = isinstance(node.op, ast.And)
            mark = self._temp("_km")
            values: list[ast.expr] = []
            dropped = False
            for v in node.values:
                new_v = self.rewrite(v, explain)
                way = self.truth(v)
                if way is not None and (way <= 0 if conj else way >= 0):
                    new_v = self.keep_only(new_v, conj, mark)
                    dropped = True
                values.append(new_v)
            op = ast.BoolOp(node.op, values)
            return self.marked(op, mark) if dropped else op
        new = ast.copy_location(type(node)(), node)
        for name, value in ast.iter_fields(node):
            if isinstance(value, list):
                value = [self.rewrite(v, explain) if isinstance(v, ast.expr) else v for v in value]
            elif isinstance(value, ast.expr):
                value = self.rewrite(value, explain)
            setattr(new, name, value)
        assert isinstance(new, ast.expr)
        return new

    def affinity_compare(self, node: ast.Compare, explain: bool) -> ast.expr | None:
        """``affinity(category) op number``: ``c.affinity_cmp``, which also reports when the
        decaying score crosses the number (``Context.affinity_cmp``), so the membership
        lapses then, not at whatever later evaluation reads it."""
        if len(node.ops) != 1 or type(node.ops[0]) not in _OPS:
            return None
        left, right, op = node.left, node.comparators[0], _OPS[type(node.ops[0])]
        if _is_call(right, "affinity"):
            left, right, op = right, left, _FLIP[op]
        if not _is_call(left, "affinity") or not isinstance(right, ast.Constant):
            return None
        bound = right.value
        if type(bound) is not int and type(bound) is not float:  # not bool, not text
            return None
        if not math.isfinite(bound):
            return None
        assert isinstance(left, ast.Call) and len(left.args) == 1
        args: list[ast.expr] = [
            self.rewrite(left.args[0], explain),
            ast.Constant(op),
            ast.Constant(float(bound)),
            ast.Constant(self.text(left)),
        ]
        c = ast.Name("c", ast.Load())
        return ast.Call(ast.Attribute(c, "affinity_cmp", ast.Load()), args, [])

    def since_compare(self, node: ast.Compare) -> ast.expr | None:
        left, right, op = node.left, node.comparators[0], node.ops[0]
        if _is_call(left, "since"):
            call_node, dur, name = left, right, _OPS[type(op)]
        elif _is_call(right, "since"):
            call_node, dur, name = right, left, _FLIP[_OPS[type(op)]]
        else:
            return None
        assert isinstance(call_node, ast.Call)
        t, _ = self.tracker(call_node)
        self.trackers.append(t)
        seconds = self.duration(dur)
        assert seconds is not None
        args: list[ast.expr] = [
            ast.Constant(t.key),
            ast.Constant(name),
            ast.Constant(seconds),
            ast.Constant(self.text(call_node)),
        ]
        return ast.Call(ast.Attribute(ast.Name("c", ast.Load()), "since_cmp", ast.Load()), args, [])


def _const_tuple(parts: tuple[str, ...]) -> ast.expr:
    return ast.Tuple([ast.Constant(p) for p in parts], ast.Load())


def _is_call(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _entry_trend(e: Entry | None) -> int | None:
    """``_Compiler.trend`` of a function or variable: 0 if time alone cannot change it."""
    if e is None or e.drifts:
        return None
    return e.over_time if e.timed else 0


def _together(a: int | None, b: int | None) -> int | None:
    """The trend of a sum (or an ``and``/``or``) of values moving as ``a`` and ``b``."""
    if a is None or b is None:
        return None
    if a == 0 or a == b:
        return b
    return a if b == 0 else None


def _boolean(node: ast.AST) -> bool:
    """Whether ``node`` is a truth (its ``trend`` is then its truth's)."""
    if isinstance(node, ast.Compare | ast.BoolOp):
        return True
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Not)
    e = _entry_of(node)
    return e is not None and e.returns == "bool"


def _loose(node: ast.AST) -> bool:
    """Whether ``node``'s value may be of any type (``traits.X``, ``properties.X``, a
    function returning anything)."""
    if isinstance(node, ast.Attribute):
        return True
    e = _entry_of(node)
    return e is not None and e.returns == "any"


def _may_raise(tree: ast.AST) -> bool:
    """Whether evaluating ``tree`` can raise (``ArithmeticError``, ``TypeError``): a
    division by anything but a non-zero literal, or a value of any type (``traits.X``,
    ``properties.X``) in arithmetic, a negation or an ordering."""

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Div) and not (
                isinstance(node.right, ast.Constant) and node.right.value
            ):
                return True
            if _loose(node.left) or _loose(node.right):
                return True
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if _loose(node.operand):
                return True
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, a, b in zip(node.ops, operands[:-1], operands[1:], strict=True):
                if isinstance(op, _ORDERING) and (_loose(a) or _loose(b)):
                    return True
    return False


def _guards(tree: ast.AST) -> dict[int, bool]:
    """The comparisons of ``tree``'s and/or/not structure that can raise (a missing or text
    trait ordered, arithmetic on one, a division by zero), by node id, each with the
    value it takes when it does: false where the rule reads it as it is, true under an
    odd number of ``not``. Such a comparison is unknown, and the rule holds only if it
    holds whatever the comparison's truth (Kleene's logic, unknown read as false at the
    end): ``traits.score > 3 or total_events >= 1`` holds for a user with events and no
    score, in either order; ``not (traits.score > 3)`` does not hold for them. A number
    read as a truth (``traits.a * 2 or ...``) is guarded the same way."""
    out: dict[int, bool] = {}

    def walk(node: ast.AST, positive: bool) -> None:
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                walk(v, positive)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            walk(node.operand, not positive)
        elif _may_raise(node):  # a comparison, or a number read as a truth
            out[id(node)] = not positive

    walk(tree, True)
    return out


def _constant_number(node: ast.AST) -> float | None:
    """A number written in the rule (``3``, ``-1``, ``0.5``), else None."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return sign * float(value)
    return None


def _entry_of(node: ast.AST) -> Entry | None:
    """The registry entry ``node`` reads: a variable's, or a called function's."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return REGISTRY.get(node.func.id)
    if isinstance(node, ast.Name):
        return REGISTRY.get(node.id)
    return None


def _vocabulary(what: str, known: tuple[str, ...], other: ast.AST, text: str) -> None:
    values = other.elts if isinstance(other, ast.List | ast.Tuple) else [other]
    for v in values:
        if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value not in known:
            raise RuleError(
                f"{what} is never {v.value!r}; known values: {', '.join(known)}: {text}"
            )


def _is_amount(node: ast.AST) -> bool:
    """Whether ``node`` is ``properties...X`` with X one of the e-commerce spec's amounts,
    which rules read as numbers, a plain decimal text such as "150" too
    (``tracking.field_value``; other text stays text)."""
    path = _path(node)
    return (
        path is not None
        and len(path) >= 2
        and path[0] == "properties"
        and path[-1] in tracking.AMOUNT_KEYS
    )


def _quoted_amount(a: ast.AST, b: ast.AST) -> bool:
    """An amount compared with a quoted number (``properties.total > '100'``): the field
    is then a number, or a text that is no number, and never equal or ordered as meant."""
    for x, y in ((a, b), (b, a)):
        if (
            _is_amount(x)
            and isinstance(y, ast.Constant)
            and isinstance(y.value, str)
            and amount(y.value) is not None
        ):
            return True
    return False


def _where_kind(node: ast.AST) -> str:
    """A ``where`` operand's kind: a constant's, ``text`` for the event's name, type,
    category and context fields, ``any`` for properties."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or node.value is None:
            return "any"  # (refused as constants by ``check``, which says so)
        return "text" if isinstance(node.value, str) else "number"
    path = _path(node)
    if path is not None and path[0] != "properties":
        return "text"
    return "any"


def _amount_hint(*nodes: ast.AST) -> str:
    """How to write the comparison when one side is an amount and the other a quoted
    number."""
    for node in nodes:
        path = _path(node)
        if path is not None and _is_amount(node):
            for other in nodes:
                if (
                    isinstance(other, ast.Constant)
                    and isinstance(other.value, str)
                    and amount(other.value) is not None  # a quoted number, not a word
                ):
                    return (
                        f" ({'.'.join(path)} is an amount, read as a number even when sent as"
                        f" text: write {other.value}, not '{other.value}')"
                    )
    return ""


class _WhereCheck:
    """A ``where`` condition: over the matched event's own fields, nothing else."""

    def __init__(self, outer: _Compiler, root: ast.AST) -> None:
        self.outer = outer
        self.root = root
        self.absent: set[int] = set()  # ``null`` constants compared with a field

    def fail(self, why: str) -> RuleError:
        return RuleError(f"{why} in the condition {self.outer.text(self.root)}")

    def check(self, node: ast.AST) -> None:
        if not isinstance(node, _WHERE_ALLOWED):
            raise self.fail(f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Constant) and node.value is None:
            if id(node) not in self.absent:
                raise self.fail(_NULL_USE_WHERE)
            return
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise self.fail(f"constant {node.value!r} is not allowed")
        if isinstance(node, ast.Name | ast.Attribute):
            path = _path(node)
            why = "not a field" if path is None else tracking.check_field(path)
            if why is not None:
                raise self.fail(why)
            if path is not None and path[0] == "properties":
                self.outer.properties.add(path[1:])
            return
        if isinstance(node, ast.List | ast.Tuple) and node is not getattr(self, "_list_ok", None):
            raise self.fail("a list can only follow 'in'")
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
                if isinstance(op, ast.In | ast.NotIn) and not isinstance(right, ast.List):
                    raise self.fail("'in' needs a list")
                others = right.elts if isinstance(right, ast.List) else [right]
                for a, b in ((left, right), (right, left)):
                    if (
                        isinstance(b, ast.Constant)
                        and b.value is None
                        and isinstance(op, ast.Eq | ast.NotEq)
                        and _path(a) is not None
                    ):
                        self.absent.add(id(b))
                for other in others:
                    kinds = {_where_kind(left), _where_kind(other)}
                    if kinds == {"text", "number"} or _quoted_amount(left, other):
                        why = (
                            "cannot order text against a number"
                            if isinstance(op, _ORDERING)
                            else "text is never equal to a number"
                        )
                        raise self.fail(why + _amount_hint(left, other))
                for a, b in ((left, right), (right, left)):
                    if _path(a) == ("context", "locale"):
                        for elt in b.elts if isinstance(b, ast.List) else [b]:
                            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                                self.outer.notes.extend(
                                    _locale_note("context.locale", elt.value,
                                                 self.outer.text(node))
                                )  # fmt: skip
                    if _path(a) == ("context", "device", "type"):
                        _vocabulary(
                            "context.device.type",
                            tuple(REGISTRY["device"].vocabulary),
                            b,
                            self.outer.text(node),
                        )
            for child in operands:
                if isinstance(child, ast.List):
                    for elt in child.elts:
                        if not isinstance(elt, ast.Constant):
                            raise self.fail("a list after 'in' holds constants")
                        self.check(elt)
                else:
                    self.check(child)
            return
        for sub in ast.iter_child_nodes(node):
            self.check(sub)

    def compile(self, node: ast.expr) -> Callable[[Any], bool]:
        self.check(node)
        tree = _WhereRewrite().visit(ast.parse(ast.unparse(node), mode="eval"))
        assert isinstance(tree, ast.Expression)
        body = tree.body
        lam = ast.Expression(
            ast.Lambda(ast.arguments([], [ast.arg("e")], None, [], [], None, []), body)
        )
        code = compile(ast.fix_missing_locations(lam), "<where>", "eval")
        fn: Callable[[Any], bool] = eval(code, {"__builtins__": {}, "_f": tracking.field_value})
        return fn


class _WhereRewrite(ast.NodeTransformer):
    def _field(self, node: ast.expr) -> ast.expr:
        path = _path(node)
        assert path is not None
        args: list[ast.expr] = [ast.Name("e", ast.Load()), _const_tuple(path)]
        return ast.Call(ast.Name("_f", ast.Load()), args, [])

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self._field(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        return self._field(node)

    def visit_List(self, node: ast.List) -> ast.expr:
        return ast.Tuple(node.elts, ast.Load())


def _multiline(text: str) -> tuple[str, ast.Expression] | None:
    """``text`` over several lines parsed inside one pair of brackets (where Python
    reads a newline as a space), if its own brackets balance; else None."""
    if "\n" not in text:
        return None
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
                if depth < 0:  # 'a) or (b' would balance inside the brackets added
                    return None
    except (tokenize.TokenError, SyntaxError):
        return None
    wrapped = "(" + text + "\n)"  # the newline ends a '# comment' before the bracket
    try:
        return wrapped, ast.parse(wrapped, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')
_BAD_DURATION = re.compile(r"\b(\d+(?:\.\d+)?)([A-Za-z]+)\b")
# A number and a unit, apart: ``24 h``, and as written in prose, ``72 hours``, ``3 days``.
_SPACED_DURATION = re.compile(
    r"\b(\d+(?:\.\d+)?)\s+(ms|msecs?|millis\w*|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?"
    r"|d|days?|w|wks?|weeks?)\b",
    re.IGNORECASE,
)
# Units as people write them -> the rule's (``_UNIT``), by their first letters.
_UNIT_SPELLINGS = (("ms", "ms"), ("mil", "ms"), ("s", "s"), ("mo", ""), ("m", "m"),
                   ("h", "h"), ("d", "d"), ("w", "w"))  # fmt: skip
_OPERATORS = (
    (re.compile(r"\b(?:AND|And)\b"), "write 'and' in lower case"),
    (re.compile(r"\b(?:OR|Or)\b"), "write 'or' in lower case"),
    (re.compile(r"\b(?:NOT|Not)\b"), "write 'not' in lower case"),
    (re.compile(r"&&?"), "write 'and' for &&"),
    (re.compile(r"\|\|?"), "write 'or' for ||"),
    (re.compile(r"!(?!=)"), "write 'not' for ! ('!=' is 'is not equal')"),
    (re.compile(r"(?<![=!<>])=(?!=)"), "compare with '==' ('=' is no comparison)"),
)


def _syntax_hints(source: str) -> list[str]:
    """What a rule that does not parse most likely meant: a duration in another unit or
    case (``24hrs``, ``1H``), or another language's operators (``AND``, ``&&``, ``=``);
    each hint once."""
    text = _QUOTED.sub("''", source)
    hints = []
    for m in _BAD_DURATION.finditer(text):
        number, unit = m.groups()
        if unit in _UNIT:
            continue
        low = unit.lower()
        fix = next((u for prefix, u in _UNIT_SPELLINGS if low.startswith(prefix)), "")
        hints.append(
            f"{m.group(0)!r} is no duration: a duration is a number and ms, s, m, h, d or w,"
            f" in lower case" + (f" (write {number}{fix})" if fix else " (e.g. 24h, 7d)")
        )
    for m in _SPACED_DURATION.finditer(text):
        number, low = m.group(1), m.group(2).lower()
        unit = next(u for prefix, u in _UNIT_SPELLINGS if low.startswith(prefix))
        hints.append(f"write a duration without a space: {number}{unit}")
    bare = re.sub(r"\bwithin\s*=", "", text)  # sequence(..., within=1h) is no comparison
    hints += [hint for pattern, hint in _OPERATORS if pattern.search(bare)]
    return list(dict.fromkeys(hints))  # a spelling used twice (24hrs in two calls): once


def compile_source(
    name: str, source: object, per: str | None, scope: str, limits: Limits | None = None
) -> Compiled:
    """Parse, bound, check and build ``source``; raise ``RuleError`` saying what is wrong.

    ``limits``: the per-user bounds the rule will run with (the defaults if None), which
    bound some values (``distinct`` counts at most ``max_distinct_values``)."""
    if not isinstance(source, str) or not source.strip():
        raise RuleError("a rule needs a non-empty expression")
    if len(source) > MAX_CHARS:
        raise RuleError(f"the rule is too long: {len(source)} characters, at most {MAX_CHARS}")
    text, durations = _preprocess(source)
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        # A rule written over several lines (a YAML `|` block): newlines are spaces.
        wrapped = _multiline(text)
        if wrapped is None:
            hints = "".join(f"; {h}" for h in _syntax_hints(source))
            raise RuleError(f"not a valid expression: {exc.msg} in {source!r}{hints}") from exc
        text, tree = wrapped
    except RecursionError as exc:  # Python's parser gives up before our depth bound
        raise RuleError(f"the rule nests too deeply: more than {MAX_DEPTH} levels") from exc
    except (MemoryError, ValueError) as exc:
        raise RuleError(f"not a valid expression: {type(exc).__name__} in {source!r}") from exc
    _bounded(tree)
    tree = _Literals().visit(tree)
    comp = _Compiler(text, durations, per, scope, limits)
    comp.check(tree.body)
    comp.guards = _guards(tree.body)

    sources: list[str] = []

    def build(explain: bool, prune: bool = False) -> Callable[..., Any]:
        comp.trackers.clear()
        comp.pruning = prune
        body = comp.rewrite(tree.body, explain)
        if prune:
            body = comp.pruned_top(tree.body, body)
        comp.pruning = False
        sources.append(ast.unparse(body))
        lam = ast.Expression(
            ast.Lambda(ast.arguments([], [ast.arg("c")], None, [], [], None, []), body)
        )
        code = compile(ast.fix_missing_locations(lam), f"<rule {name}>", "eval")
        fn: Callable[..., Any] = eval(code, {"__builtins__": {}})
        return fn

    fast = build(False)
    explain = build(True)
    # A rule that can raise (a division by a value, a trait ordered or used in arithmetic)
    # is false then, and whether it raises can change with time (``events(1d) /
    # sessions(1d)`` once the day is empty): a drop could lose that re-check, so none.
    pruned, pruned_source = fast, sources[0]
    if not _may_raise(tree.body):
        candidate = build(False, prune=True)
        if sources[-1] != sources[0]:  # else nothing to drop
            pruned, pruned_source = candidate, sources[-1]
    return Compiled(
        frozenset(comp.names),
        fast,
        explain,
        tuple(comp.trackers),
        frozenset(comp.traits),
        sources[0],
        frozenset(comp.properties),
        pruned,
        pruned_source,
        tuple(dict.fromkeys(comp.notes)),
        tuple(comp.segments),
        tuple(dict.fromkeys(comp.lapses)),
    )
