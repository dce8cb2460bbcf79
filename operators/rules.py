"""The rule language of segments and trigger conditions.

A rule is one expression over a user's state at an event time, e.g.
``sessions(24h) > 3`` or ``session_page_views > 5 or session_max_page_seconds > 600``.
It is parsed once at start-up into a small Python function; anything outside
the language (unknown names, attribute access, wrong argument kinds) is
rejected then, with the reason.

Durations are written ``30s``, ``15m``, ``24h``, ``7d``. Time-dependent
functions (``sessions``, ``total``, ``events``, ``active_within``) report the
next event time at which their value can change, so a segment is left exactly
when, say, the last hour lapses, not at the user's next event.

>>> r = compile_rule("vip", "total('orders', 30d) >= 2 and device == 'desktop'")
>>> sorted(r.names)
['device', 'total']
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audienceflow.operators import features
from audienceflow.operators.state import HISTORY_METRICS, INF, UserState

_DURATION = re.compile(
    r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|\b(\d+(?:\.\d+)?)(ms|s|m|h|d|w)\b"""
)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

# name -> (argument kinds); kinds: duration, metric, category, segment
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "sessions": ("duration",),
    "events": ("duration",),
    "total": ("metric", "duration"),
    "active_within": ("duration",),
    "affinity": ("category",),
    "video_completions": ("category",),
    "top_category": (),
    "in_segment": ("segment",),
}
VARIABLES = frozenset(
    {
        "session_events",
        "session_page_views",
        "session_screen_views",
        "session_seconds",
        "session_engaged_seconds",
        "session_max_page_seconds",
        "session_scroll_depth",
        "session_cart_adds",
        "session_product_views",
        "session_searches",
        "in_session",
        "total_events",
        "total_sessions",
        "total_orders",
        "total_revenue",
        "cart_items",
        "cart_value",
        "device",
        "locale",
        "channel",
        "intent_score",
        "cluster",
        "category",
    }
)
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
)


class RuleError(ValueError):
    """A rule expression was rejected."""


class Context:
    """What a rule sees: one user's state at one event time.

    ``next_change`` collects the earliest future time at which a
    time-dependent function's value would change.
    """

    __slots__ = ("_record", "category", "half_life", "next_change", "now", "segments", "user")

    def __init__(self, user: UserState, now: float, half_life: float) -> None:
        self.user = user
        self.now = now
        self.half_life = half_life
        self.next_change = INF
        self.category = ""
        self.segments: dict[str, float] = user.segments
        self._record: dict[str, Any] | None = None

    def _r(self, key: str, value: Any) -> Any:
        if self._record is not None:
            self._record[key] = round(value, 4) if isinstance(value, float) else value
        return value

    def _until(self, t: float) -> None:
        if self.now < t < self.next_change:
            self.next_change = t

    # functions
    def sessions(self, seconds: float) -> float:
        value, change = features.window(self.user, "sessions", seconds, self.now)
        self._until(change)
        return value

    def events(self, seconds: float) -> float:
        return self.total("events", seconds)

    def total(self, metric: str, seconds: float) -> float:
        value, change = features.window(self.user, metric, seconds, self.now)
        self._until(change)
        return value

    def active_within(self, seconds: float) -> bool:
        end = self.user.last_ts + seconds
        if self.now < end:
            self._until(end)
            return True
        return False

    def affinity(self, category: str) -> float:
        return features.affinity(self.user, category, self.now, self.half_life)

    def video_completions(self, category: str) -> int:
        return self.user.video_completions.get(category, 0)

    def top_category(self) -> str:
        return features.top_category(self.user, self.now, self.half_life)

    def in_segment(self, name: str) -> bool:
        return name in self.segments

    # variables
    def _s(self, attr: str) -> Any:
        s = self.user.session
        return 0 if s is None else getattr(s, attr)

    session_events = property(lambda self: self._s("events"))
    session_page_views = property(lambda self: self._s("page_views"))
    session_screen_views = property(lambda self: self._s("screen_views"))
    session_engaged_seconds = property(lambda self: self._s("engaged"))
    session_max_page_seconds = property(lambda self: self._s("max_page"))
    session_scroll_depth = property(lambda self: self._s("max_scroll"))
    session_cart_adds = property(lambda self: self._s("cart_adds"))
    session_product_views = property(lambda self: self._s("product_views"))
    session_searches = property(lambda self: self._s("searches"))
    in_session = property(lambda self: self.user.session is not None)
    total_events = property(lambda self: self.user.total_events)
    total_sessions = property(lambda self: self.user.total_sessions)
    total_orders = property(lambda self: self.user.total_orders)
    total_revenue = property(lambda self: self.user.total_revenue)
    cart_items = property(lambda self: sum(q for _, _, q in self.user.cart.values()))
    cart_value = property(lambda self: sum(p * q for _, p, q in self.user.cart.values()))
    device = property(lambda self: self.user.device or "")
    locale = property(lambda self: self.user.locale or "")
    channel = property(lambda self: self.user.channel or "")
    intent_score = property(lambda self: self.user.intent_score)
    cluster = property(lambda self: self.user.cluster)

    @property
    def session_seconds(self) -> float:
        s = self.user.session
        return 0.0 if s is None else s.last - s.start


@dataclass(frozen=True)
class Rule:
    """A compiled rule: ``holds(ctx)`` is its one way to be evaluated."""

    name: str
    source: str
    names: frozenset[str]
    _fast: Callable[[Context], Any]
    _explain: Callable[[Context], Any]

    def holds(self, ctx: Context) -> bool:
        try:
            return bool(self._fast(ctx))
        except ArithmeticError:  # e.g. total_revenue / total_orders with no orders yet
            return False

    def explain(self, ctx: Context) -> dict[str, Any]:
        """Evaluate again, recording the value of every function and variable used."""
        saved_next = ctx.next_change
        ctx._record = {}
        try:
            try:
                result = bool(self._explain(ctx))
            except ArithmeticError:
                result = False
            values = ctx._record
        finally:
            ctx._record = None
            ctx.next_change = saved_next
        return {"rule": self.name, "when": self.source, "holds": result, "values": values}


def _preprocess(source: str) -> tuple[str, dict[str, tuple[float, str]]]:
    durations: dict[str, tuple[float, str]] = {}

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1)
        name = f"__dur{len(durations)}"
        durations[name] = (float(m.group(2)) * _UNIT[m.group(3)], m.group(0))
        return name

    return _DURATION.sub(sub, source), durations


_PLACEHOLDER = re.compile(r"__dur\d+\b")


def _restore(text: str, durations: dict[str, tuple[float, str]]) -> str:
    """Put the durations as written back in place of their placeholders."""
    return _PLACEHOLDER.sub(lambda m: durations[m.group(0)][1], text)


_TEXT_NAMES = frozenset({"device", "locale", "channel", "category"})
_TEXT_FUNCTIONS = frozenset({"top_category"})
_ORDERING = (ast.Gt, ast.GtE, ast.Lt, ast.LtE)


def _kind(node: ast.AST, durations: dict[str, tuple[float, str]]) -> str:
    """``text``, ``number`` or ``any``: enough to reject text arithmetic and text < number."""
    if isinstance(node, ast.Constant):
        return "text" if isinstance(node.value, str) else "number"
    if isinstance(node, ast.Name):
        if node.id in durations:
            return "number"
        return "text" if node.id in _TEXT_NAMES else "number"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return "text" if node.func.id in _TEXT_FUNCTIONS else "number"
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        return "number"
    return "any"


class _Check(ast.NodeVisitor):
    def __init__(self, durations: dict[str, tuple[float, str]], per: str | None) -> None:
        self.durations = durations
        self.per = per
        self.names: set[str] = set()

    def _text(self, node: ast.AST) -> str:
        return _restore(ast.unparse(node), self.durations)

    def generic_visit(self, node: ast.AST) -> None:
        if not isinstance(node, _ALLOWED):
            raise RuleError(f"{type(node).__name__} is not allowed in a rule")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise RuleError(f"constant {node.value!r} is not allowed in a rule")
        super().generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        for side in (node.left, node.right):
            if _kind(side, self.durations) == "text":
                raise RuleError(f"arithmetic on text is not allowed: {self._text(node)}")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.USub) and _kind(node.operand, self.durations) == "text":
            raise RuleError(f"arithmetic on text is not allowed: {self._text(node)}")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            kinds = {_kind(left, self.durations), _kind(right, self.durations)}
            if isinstance(op, _ORDERING) and kinds == {"text", "number"}:
                raise RuleError(f"cannot order text against a number: {self._text(node)}")
            if isinstance(op, ast.In | ast.NotIn) and not isinstance(right, ast.List | ast.Tuple):
                raise RuleError(
                    f"'in' needs a list such as ['mobile', 'tablet']: {self._text(node)}"
                )
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.durations:
            return
        if node.id in FUNCTIONS:
            raise RuleError(f"'{node.id}' is a function: call it, e.g. {node.id}(...)")
        if node.id not in VARIABLES:
            raise RuleError(f"unknown name '{node.id}'; known: {', '.join(sorted(VARIABLES))}")
        if node.id == "category" and self.per != "category":
            raise RuleError("'category' can only be used in a rule with 'per: category'")
        self.names.add(node.id)

    def visit_Call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            fname = self._text(node.func)
            raise RuleError(f"unknown function '{fname}'; known: {', '.join(sorted(FUNCTIONS))}")
        kinds = FUNCTIONS[node.func.id]
        if node.keywords or len(node.args) != len(kinds):
            raise RuleError(f"{node.func.id}() takes {len(kinds)} argument(s): {', '.join(kinds)}")
        for arg, kind in zip(node.args, kinds, strict=True):
            self._check_arg(node.func.id, arg, kind)
        self.names.add(node.func.id)

    def _check_arg(self, fname: str, arg: ast.expr, kind: str) -> None:
        if kind == "duration":
            ok = isinstance(arg, ast.Name) and arg.id in self.durations
            if not ok:
                raise RuleError(f"{fname}() needs a duration such as 24h; got {self._text(arg)}")
        elif kind == "metric":
            ok = isinstance(arg, ast.Constant) and arg.value in HISTORY_METRICS
            if not ok:
                raise RuleError(
                    f"{fname}() needs a metric, one of {', '.join(sorted(HISTORY_METRICS))};"
                    f" got {self._text(arg)}"
                )
        elif kind == "category" and isinstance(arg, ast.Name) and arg.id == "category":
            self.visit_Name(arg)
        elif not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise RuleError(f"{fname}() needs a quoted name; got {self._text(arg)}")


class _Rewrite(ast.NodeTransformer):
    """Names become attributes of the context ``c``; durations become numbers."""

    def __init__(self, durations: dict[str, tuple[float, str]], src: str, explain: bool) -> None:
        self.durations = durations
        self.src = src
        self.explain = explain

    def _label(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.src, node) or ast.unparse(node)
        return _restore(text, self.durations)

    def _wrap(self, node: ast.expr, new: ast.expr) -> ast.expr:
        if not self.explain:
            return new
        attr = ast.Attribute(ast.Name("c", ast.Load()), "_r", ast.Load())
        return ast.Call(attr, [ast.Constant(self._label(node)), new], [])

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self.durations:
            return ast.Constant(self.durations[node.id][0])
        return self._wrap(node, ast.Attribute(ast.Name("c", ast.Load()), node.id, ast.Load()))

    def visit_Call(self, node: ast.Call) -> ast.expr:
        assert isinstance(node.func, ast.Name)
        args = [self.visit(a) for a in node.args]
        func = ast.Attribute(ast.Name("c", ast.Load()), node.func.id, ast.Load())
        return self._wrap(node, ast.Call(func, args, []))


def compile_rule(name: str, source: str, per: str | None = None) -> Rule:
    """Parse and check ``source``; raise ``RuleError`` saying what is wrong."""
    if not isinstance(source, str) or not source.strip():
        raise RuleError("a rule needs a non-empty expression")
    text, durations = _preprocess(source)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"not a valid expression: {exc.msg} in {source!r}") from exc
    check = _Check(durations, per)
    check.visit(tree)

    def build(explain: bool) -> Callable[[Context], Any]:
        body = _Rewrite(durations, text.strip(), explain).visit(
            ast.parse(text.strip(), mode="eval")
        )
        lam = ast.Expression(
            ast.Lambda(ast.arguments([], [ast.arg("c")], None, [], [], None, []), body.body)
        )
        code = compile(ast.fix_missing_locations(lam), f"<rule {name}>", "eval")
        fn: Callable[[Context], Any] = eval(code, {"__builtins__": {}})
        return fn

    return Rule(name, source, frozenset(check.names), build(False), build(True))
