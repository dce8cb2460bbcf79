"""Size and depth bounds on decoded JSON values, so no value can make a step recurse or grow.

``records.event_line`` uses ``bounded_value`` so that a 300-level object cannot raise
"Recursion limit reached" in ``orjson.dumps`` while its dead letter is built.

>>> deep: dict = {}
>>> cur = deep
>>> for _ in range(300):
...     cur["a"] = {}
...     cur = cur["a"]
>>> exceeds_depth(deep, 16), exceeds_depth({"a": [1, {"b": 2}]}, 3)
(True, False)
>>> exceeds_values({"a": [1, {"b": 2}]}, 5), exceeds_values({"a": [1, {"b": 2}]}, 4)
(False, True)
>>> values_bound(b'{"a":[1,{"b":2}]}'), values_bound(b"[" + b"1," * 5000 + b"1]")
(9, 5002)
>>> str(bounded_value(deep, 2, 100))
"{'a': {'a': '<truncated: deeper than 2 levels>'}}"
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Final

MAX_DEPTH: Final = 16  # containers inside properties, counting properties itself
MAX_NODES = 4096  # values copied into one dead-letter line
# Values (containers and scalars, not keys) in one line. A line's work is per value
# (each is walked by validation, privacy and, dead-lettered, by the scrubber), and 32 KB
# of ``[[[[]]]],`` holds over 14,000: 500 times a normal line's cost. Segment's largest
# legitimate calls (an order of 200 ``products[]`` of 10 fields) hold about 2,200.
MAX_VALUES: Final = 4096


# The types of JSON's scalars as orjson decodes them: a container whose children are all
# of these has no container inside, which ``set(map(type, ...))`` tells in C. (A list of
# 50 products of 11 fields each was walked child by child in Python: 550 generator steps.)
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_CONTAINERS: Final = (dict, list)  # a constant: ``dict | list`` builds a union each time


def _containers(children: Any) -> list[Any]:
    """The dicts and lists among ``children``, in order."""
    if set(map(type, children)) <= _SCALARS:
        return []
    return [c for c in children if isinstance(c, _CONTAINERS)]


def exceeds_depth(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels in ``value`` (iterative, no recursion)."""
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 1  # of the containers in ``level``
    while level:
        if depth > limit:
            return True
        # The children of the whole level at once: the values of 50 products are one C
        # pass, and a level of scalars only ends the walk.
        level = _containers(
            list(chain.from_iterable([c.values() if isinstance(c, dict) else c for c in level]))
        )
        depth += 1
    return False


def values_bound(raw: bytes | str) -> int:
    """An upper bound on the values in the JSON text ``raw``.

    A text of n bytes (or characters) holds at most (n + 1) // 2 values: a scalar takes
    one at least, a container two (its brackets) and one per child after the first (a
    comma), so v values take 2v - 1 at least (keys and blanks only add). A text longer
    than twice ``MAX_VALUES``, rare, is counted in C: each value is the top one, the
    first of a container, or follows a comma; brackets and commas inside strings only
    raise that bound.
    """
    half = (len(raw) + 1) // 2
    if half <= MAX_VALUES:  # nearly every line: not scanned at all
        return half
    if isinstance(raw, bytes):
        return 1 + raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    return 1 + raw.count(",") + raw.count("[") + raw.count("{")


def exceeds_values(value: Any, limit: int) -> bool:
    """Whether ``value`` holds more than ``limit`` values (itself included); stops there."""
    left = limit - 1
    stack: list[Any] = [value] if isinstance(value, dict | list) else []
    while stack:
        cur = stack.pop()
        children: Any = cur.values() if isinstance(cur, dict) else cur
        left -= len(children)
        if left < 0:
            return True
        stack += _containers(children)
    return left < 0


def bounded_value(value: Any, depth: int = MAX_DEPTH, budget: int = MAX_NODES) -> Any:
    """A copy of ``value`` cut below ``depth`` levels and after ``budget`` values."""
    return _copy(value, 0, depth, budget, [budget])


def _copy(v: Any, level: int, depth: int, budget: int, left: list[int]) -> Any:
    # A module function, not a closure: a recursive closure is a reference cycle (the
    # function holds the cell that holds it), garbage only the collector frees, and this
    # runs once per ingested event (measured: most of the young generation's garbage).
    left[0] -= 1
    if not isinstance(v, dict | list):
        return v
    if level >= depth:
        return f"<truncated: deeper than {depth} levels>"
    if isinstance(v, dict):
        out: dict[Any, Any] = {}
        for k, x in v.items():
            if left[0] <= 0:
                out["<truncated>"] = f"more than {budget} values"
                break
            out[k] = _copy(x, level + 1, depth, budget, left)
        return out
    items: list[Any] = []
    for x in v:
        if left[0] <= 0:
            items.append(f"<truncated: more than {budget} values>")
            break
        items.append(_copy(x, level + 1, depth, budget, left))
    return items
