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
>>> str(bounded_value(deep, 2, 100))
"{'a': {'a': '<truncated: deeper than 2 levels>'}}"
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 16  # containers inside properties, counting properties itself
MAX_NODES = 4096  # values copied into one dead-letter line


def exceeds_depth(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels in ``value`` (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        cur, depth = stack.pop()
        if isinstance(cur, dict):
            children: Any = cur.values()
        elif isinstance(cur, list):
            children = cur
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


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
