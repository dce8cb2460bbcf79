"""Scoring clusters against a known labelling: adjusted Rand index and purity.

Used when ``models.evaluation.truth`` names a file of planted labels (the
generator's truth JSON, or a plain ``{user_id: label}`` mapping).

>>> contingency_scores({"0": {"a": 5}, "1": {"b": 5}})
{'users': 10, 'adjusted_rand_index': 1.0, 'purity': 1.0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from audienceflow.operators.config import ConfigError


def load_truth(path: str) -> dict[str, str]:
    """``{user_id: label}`` from a truth file (``archetypes`` inside it, if present)."""
    try:
        data: Any = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"models.evaluation.truth: cannot read {path!r}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("archetypes"), dict):
        data = data["archetypes"]
    if not isinstance(data, dict):
        raise ConfigError(f"models.evaluation.truth: {path!r} must map user ids to labels")
    return {str(k): str(v) for k, v in data.items()}


def _pairs(n: int) -> float:
    return n * (n - 1) / 2


def contingency_scores(table: dict[str, dict[str, int]]) -> dict[str, Any]:
    """ARI and purity of a cluster x label count table (rows: clusters)."""
    n = sum(sum(row.values()) for row in table.values())
    if n == 0:
        return {"users": 0, "adjusted_rand_index": None, "purity": None}
    cols: dict[str, int] = {}
    index = 0.0
    for row in table.values():
        for label, c in row.items():
            cols[label] = cols.get(label, 0) + c
            index += _pairs(c)
    rows = sum(_pairs(sum(row.values())) for row in table.values())
    colsum = sum(_pairs(c) for c in cols.values())
    expected = rows * colsum / _pairs(n) if n > 1 else 0.0
    top = (rows + colsum) / 2
    ari = 1.0 if top == expected else (index - expected) / (top - expected)
    purity = sum(max(row.values()) for row in table.values() if row) / n
    return {"users": n, "adjusted_rand_index": round(ari, 6), "purity": round(purity, 6)}
