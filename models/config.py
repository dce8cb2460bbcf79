"""The ``models:`` section of the configuration, checked once into ``ModelSettings``.

Every rejected value names its key: ``models.clustering.k: must be a whole
number >= 2; got 1``.

>>> ModelSettings.parse({"clustering": {"k": 3}}).k
3
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audienceflow.models.vectors import USER_LABELS
from audienceflow.operators.config import ConfigError, parse_duration

_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"enabled", "clustering", "intent", "drift", "evaluation", "recommendations"}),
    "clustering": frozenset(
        {"algorithm", "k", "seed", "halflife", "warmup", "categories", "dbstream", "weights"}
    ),
    "intent": frozenset({"model", "seed", "learning_rate", "quick_view_gap", "max_channels"}),
    "drift": frozenset({"detector", "delta", "threshold"}),
    "evaluation": frozenset({"truth"}),
}
# DBSTREAM's parameters, with defaults suited to standardised user vectors.
DBSTREAM_DEFAULTS = {
    "clustering_threshold": 2.5,
    "fading_factor": 0.01,
    "cleanup_interval": 10.0,
    "intersection_factor": 0.3,
    "minimum_weight": 2.0,
}


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Hyper-parameters of the online models, as configured."""

    algorithm: str = "kmeans"
    k: int = 4
    seed: int = 42
    halflife: float = 0.1
    warmup: int = 50
    categories: tuple[str, ...] = ("deals",)
    dbstream: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    intent_model: str = "logistic"
    intent_seed: int = 42
    learning_rate: float = 0.01
    quick_view_gap: float = 60.0
    max_channels: int = 16
    detector: str = "adwin"
    delta: float = 0.002
    threshold: float = 50.0
    truth: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ModelSettings:
        """Check the raw ``models:`` mapping; raise ``ConfigError`` naming the bad key."""
        _known(raw, "")
        c, i, d, e = (_section(raw, s) for s in ("clustering", "intent", "drift", "evaluation"))
        algorithm = _choice(c, "clustering", "algorithm", ("kmeans", "dbstream"), "kmeans")
        db = c.get("dbstream") or {}
        if not isinstance(db, dict):
            raise _err("clustering.dbstream", f"must be a mapping; got {db!r}")
        _positive_numbers(db, "clustering.dbstream", set(DBSTREAM_DEFAULTS), "key", 0.0)
        cats = c.get("categories", ["deals"])
        if isinstance(cats, str):
            cats = [cats]
        if not isinstance(cats, list) or not all(isinstance(x, str) and x for x in cats):
            raise _err("clustering.categories", f"must be a list of category names; got {cats!r}")
        if len(cats) > 32:
            raise _err("clustering.categories", f"at most 32 categories; got {len(cats)}")
        weights = c.get("weights") or {}
        if not isinstance(weights, dict):
            raise _err("clustering.weights", f"must map feature names to weights; got {weights!r}")
        known = set(USER_LABELS) | {f"affinity_{cat}" for cat in cats}
        _positive_numbers(weights, "clustering.weights", known, "feature", 1.0)
        truth = e.get("truth")
        if truth is not None and not isinstance(truth, str):
            raise _err("evaluation.truth", f"must be a file path or null; got {truth!r}")
        try:
            gap = parse_duration(i.get("quick_view_gap", "60s"))
        except ValueError as exc:
            raise _err("intent.quick_view_gap", str(exc)) from None
        return cls(
            algorithm=algorithm,
            k=_int(c, "clustering", "k", 4, 2),
            seed=_int(c, "clustering", "seed", 42, 0),
            halflife=_number(
                c, "clustering.halflife", "halflife", 0.1, 0.0, positive=True, maximum=1.0
            ),
            warmup=_int(c, "clustering", "warmup", 50, 0),
            categories=tuple(dict.fromkeys(cats)),
            dbstream={**DBSTREAM_DEFAULTS, **{k: float(v) for k, v in sorted(db.items())}},
            weights={k: float(v) for k, v in sorted(weights.items())},
            intent_model=_choice(i, "intent", "model", ("logistic", "tree"), "logistic"),
            intent_seed=_int(i, "intent", "seed", 42, 0),
            learning_rate=_number(
                i, "intent.learning_rate", "learning_rate", 0.01, 0.0, positive=True
            ),
            quick_view_gap=gap,
            max_channels=_int(i, "intent", "max_channels", 16, 0),
            detector=_choice(d, "drift", "detector", ("adwin", "page_hinkley"), "adwin"),
            delta=_number(d, "drift.delta", "delta", 0.002, 0.0, positive=True),
            threshold=_number(d, "drift.threshold", "threshold", 50.0, 0.0, positive=True),
            truth=truth,
        )


def _err(key: str, reason: str) -> ConfigError:
    return ConfigError(f"models.{key}: {reason}")


def _known(section: dict[str, Any], name: str) -> None:
    for key in section:
        if key not in _KEYS[name]:
            where = f"{name}.{key}" if name else key
            raise _err(where, f"unknown key; known: {', '.join(sorted(_KEYS[name]))}")


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    val = raw.get(name) or {}
    if not isinstance(val, dict):
        raise _err(name, f"must be a mapping; got {val!r}")
    _known(val, name)
    return val


def _choice(
    sec: dict[str, Any], name: str, key: str, allowed: tuple[str, ...], default: str
) -> str:
    val = sec.get(key, default)
    if val not in allowed:
        raise _err(f"{name}.{key}", f"must be one of {', '.join(allowed)}; got {val!r}")
    return str(val)


def _int(sec: dict[str, Any], name: str, key: str, default: int, minimum: int) -> int:
    val = sec.get(key, default)
    if not isinstance(val, int) or isinstance(val, bool) or val < minimum:
        raise _err(f"{name}.{key}", f"must be a whole number >= {minimum}; got {val!r}")
    return val


def _positive_numbers(
    mapping: dict[str, Any], where: str, known: set[str], what: str, default: float
) -> None:
    """Every key of ``mapping`` is one of ``known`` and maps to a positive number."""
    for key in mapping:
        if key not in known:
            raise _err(f"{where}.{key}", f"unknown {what}; known: {', '.join(sorted(known))}")
        _number(mapping, f"{where}.{key}", key, default, 0.0, positive=True)


def _number(
    sec: dict[str, Any],
    where: str,
    key: str,
    default: float,
    minimum: float,
    positive: bool = False,
    maximum: float | None = None,
) -> float:
    val = sec.get(key, default)
    ok = isinstance(val, int | float) and not isinstance(val, bool)
    if ok and (val < minimum or (positive and val <= 0) or (maximum is not None and val > maximum)):
        ok = False
    if not ok:
        bound = "> 0" if positive else f">= {minimum:g}"
        if maximum is not None:
            bound += f" and <= {maximum:g}"
        raise _err(where, f"must be a number {bound}; got {val!r}")
    return float(val)
