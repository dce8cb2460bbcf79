"""The one table of rule functions and variables: what each takes, returns and reads.

Each entry is declared next to its implementation in ``operators/rules.py`` (the
``function``/``variable`` decorators of ``Context``). The compiler, the segment
evaluator (which rules an event can affect, which per-category rules are cheap) and
the README table all read this one registry, and ``tests/test_rule_registry.py`` runs
one contract over every entry: incremental evaluation equals full evaluation on
random event streams, exits happen exactly when the value changes, state is bounded.

Argument kinds: ``duration`` (``24h``), ``metric`` (a quoted history metric),
``category`` (a quoted category, or ``category`` in a ``per: category`` rule),
``segment`` (a quoted segment name), ``events`` (a quoted event or page/screen name,
or a list of them), ``where`` (a condition on the event's own fields), ``field`` (an
event field such as ``properties.category``). A trailing ``?`` marks an optional
argument, a trailing ``*`` one or more.

Change kinds (what, at an event, can alter the value): ``event`` (any event),
``session_start``, ``affinity`` (an event with a category), ``video``, ``cart``,
``close`` (a session closing: its open-session values, history and order totals) and
``""`` (fixed during one evaluation, e.g. the category of a per-category rule). What a
close or time alone can change is read from ``changes_on``, ``timed`` and ``drifts``
(``segments.AT_CLOSE``, ``segments.AT_RECHECK``).
"""

from __future__ import annotations

from dataclasses import dataclass

RETURNS = frozenset({"number", "text", "bool", "any"})
CHANGE_KINDS = frozenset({"event", "session_start", "affinity", "video", "cart", "close", ""})
ARG_KINDS = frozenset({"duration", "metric", "category", "segment", "events", "where", "field"})

# Known values of categorical variables: a rule comparing one with anything else is a typo.
DEVICE_TYPES = ("mobile", "desktop", "tablet", "tv", "other")


@dataclass(frozen=True, slots=True)
class Entry:
    """One rule function (``args`` is a tuple) or variable (``args`` is ``None``)."""

    name: str
    args: tuple[str, ...] | None
    returns: str
    changes_on: str
    timed: bool  # its value also changes with event time alone; it reports when
    incremental: str  # how its value is kept up to date as events arrive
    example: str  # a rule using it, also the README's example
    category_local: bool = False  # per category, changes only through that category's events
    keywords: tuple[tuple[str, str], ...] = ()  # (keyword, kind), all required
    vocabulary: tuple[str, ...] = ()  # the values it can take, when it is categorical
    where: str = "any"  # "any" rule, or "event" (event triggers' `when` only)
    # Its value can change between events without reporting when (a decayed score, a
    # model's assignment, another segment's membership): re-read at every time-driven
    # evaluation (a session close, a segment re-check).
    drifts: bool = False
    # How a timed entry's value moves as event time passes with no event: -1, it never
    # rises (a windowed count, ``active_within``); None, not declared. A rule that is
    # false through such a value stays false until an event: its re-checks are dropped
    # (``rule_compile._Compiler.trend``).
    over_time: int | None = None
    # "seconds" for a time (``session_seconds``, ``since``), which a rule may compare with
    # a duration such as 10m; any other number is a count, amount or score, never a time.
    unit: str = ""
    # The values a number can take, (lowest, highest): each a number, or the name of a
    # per-user bound (a ``state.Limits`` field, e.g. ``"distinct_values"``) read from the
    # config. A comparison with a constant outside it can never hold: rejected at load
    # (``never_holds``). None: not declared.
    value_range: tuple[float | str, float | str] | None = None

    @property
    def is_function(self) -> bool:
        return self.args is not None


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add an entry; names are unique and declarations well-formed (checked at import)."""
    if entry.name in REGISTRY:
        raise ValueError(f"rule name {entry.name!r} registered twice")
    if entry.returns not in RETURNS or entry.changes_on not in CHANGE_KINDS:
        raise ValueError(f"rule name {entry.name!r}: bad return type or change kind")
    for kind in (*(entry.args or ()), *(k for _, k in entry.keywords)):
        if kind.rstrip("?*") not in ARG_KINDS:
            raise ValueError(f"rule name {entry.name!r}: unknown argument kind {kind!r}")
    REGISTRY[entry.name] = entry
    return entry


def functions() -> dict[str, Entry]:
    return {n: e for n, e in REGISTRY.items() if e.is_function}


def variables() -> dict[str, Entry]:
    return {n: e for n, e in REGISTRY.items() if not e.is_function}


def changes_on(names: frozenset[str]) -> frozenset[str]:
    """The kinds of event-time change that can alter a rule reading ``names``."""
    return frozenset(REGISTRY[n].changes_on for n in names if n in REGISTRY) - {""}


def time_kinds(names: frozenset[str]) -> frozenset[str]:
    """``time`` if a name reports when time alone changes it, ``drift`` if one can change
    unannounced: the kinds a segment re-check or a session close looks for
    (``segments.AT_RECHECK``, ``segments.AT_CLOSE``)."""
    found = [REGISTRY[n] for n in names if n in REGISTRY]
    return frozenset(
        [*(["time"] if any(e.timed for e in found) else []),
         *(["drift"] if any(e.drifts for e in found) else [])]
    )  # fmt: skip


def category_local(names: frozenset[str]) -> bool:
    return all(n in REGISTRY and REGISTRY[n].category_local for n in names)


def signature(e: Entry) -> str:
    """``count(events, duration, where?)`` or the variable's name."""
    if e.args is None:
        return f"{e.name}.NAME" if e.returns == "any" else e.name
    parts = [*e.args, *(f"{k}={kind}" for k, kind in e.keywords)]
    return f"{e.name}({', '.join(parts)})"


def value_range(e: Entry, limits: object) -> tuple[float, float] | None:
    """``e``'s declared range with bound names read from ``limits`` (a ``Limits``)."""
    if e.value_range is None:
        return None
    lo, hi = (float(getattr(limits, b)) if isinstance(b, str) else b for b in e.value_range)
    return lo, hi


def never_holds(op: str, bound: float, lo: float, hi: float) -> bool:
    """Whether ``value op bound`` is false for every value in ``[lo, hi]``.

    >>> never_holds("ge", 100, 0, 100), never_holds("gt", 100, 0, 100)
    (False, True)
    >>> never_holds("lt", 0, 0, 100), never_holds("le", 0, 0, 100), never_holds("eq", -1, 0, 1)
    (True, False, True)
    """
    if op == "gt":
        return hi <= bound
    if op == "ge":
        return hi < bound
    if op == "lt":
        return lo >= bound
    if op == "le":
        return lo > bound
    if op == "eq":
        return bound < lo or bound > hi
    return False


def markdown_table() -> str:
    """The README's table of every function and variable (kept in sync by a test)."""
    rows = ["| name | returns | changes on | example |", "|---|---|---|---|"]
    for e in sorted(REGISTRY.values(), key=lambda e: (not e.is_function, e.name)):
        change = e.changes_on or "—"
        if e.timed:
            change += " + time"
        rows.append(f"| `{signature(e)}` | {e.returns} | {change} | `{e.example}` |")
    return "\n".join(rows)
