"""Where the time goes: each pipeline stage timed on the same events, outside Bytewax.

Ingest (parse, validate, privacy, route) and output serialization are timed
directly; the engine is timed as a whole, then its time is split by module
using a cProfile of a second pass (profiling inflates absolute times, not the
shares much).
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from audienceflow.flows import tune_gc
from audienceflow.models.hook import build_models
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.identity import is_blocked
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import Event
from audienceflow.operators.routing import PartitionIngest
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Validator
from audienceflow.operators.watermarks import PartitionClock

GROUPS = {
    "sessions.py": "sessions",
    "features.py": "features",
    "segments.py": "segments (rules)",
    "rules.py": "segments (rules)",
    "triggers.py": "triggers + caps",
    "caps.py": "triggers + caps",
    "engine.py": "engine bookkeeping (timers, dedup, routing of records)",
    "clock.py": "engine bookkeeping (timers, dedup, routing of records)",
}


def new_engine(settings: Settings) -> ShardEngine:
    """A one-shard engine with the configured models, as the replay flow builds it."""
    models = build_models(settings, "shard-000") if settings.models.enabled else None
    return ShardEngine(
        settings, ShardState("shard-000", models=models), models=models, partitions=["in"]
    )


def new_ingest(settings: Settings) -> PartitionIngest:
    """The one input partition's ingest, as the replay's source builds it."""
    clock = PartitionClock(
        settings.lateness,
        settings.max_future,
        settings.watermark_quorum,
        settings.watermark_window,
    )
    return PartitionIngest(
        "in",
        Validator(
            settings.taxonomy, settings.consent_path, blocked=partial(is_blocked, settings.identity)
        ),
        Privacy(settings.pii_fields, settings.pii_mode, "bench-salt"),
        settings.shards,
        settings.tick,
        clock,
        blocked=partial(is_blocked, settings.identity) if settings.identity.enabled else None,
    )


def _feed(engine: ShardEngine, items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(items), 1000):
        out.extend(engine.on_items(items[i : i + 1000]))
    out.extend(engine.finish())
    return out


def breakdown(stream: Path) -> dict[str, Any]:
    tune_gc()  # as the CLI does
    settings = Settings.load(None)
    lines = stream.read_bytes().splitlines()
    n = len(lines)
    batches = [
        [(str(i), raw) for i, raw in enumerate(lines[j : j + 1000], j)] for j in range(0, n, 1000)
    ]
    gc.freeze()  # the harness holds every line: the dataflow streams them, nothing scans them
    ingest = new_ingest(settings)
    keyed: list[Any] = []
    t = time.perf_counter()
    for batch in batches:  # as the replay's source reads them
        keyed += ingest.feed(batch)
    keyed += ingest.end()
    t_ingest = time.perf_counter() - t
    items = [v for k, v in keyed if k != "_out"]
    del keyed, batches
    gc.freeze()  # the same for the engine's input, held here in one list
    t = time.perf_counter()
    outputs = _feed(new_engine(settings), items)
    t_engine = time.perf_counter() - t
    t = time.perf_counter()
    for rec in outputs:
        to_json = getattr(rec, "to_json", None)
        if to_json is not None:
            orjson.dumps(to_json(), option=orjson.OPT_SORT_KEYS)
    t_out = time.perf_counter() - t

    prof = cProfile.Profile()
    prof.enable()
    _feed(new_engine(settings), items)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by_group: dict[str, float] = {}
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.items():
        name = Path(filename).name
        # Code compiled at run time: rules' functions (``<rule name>``) and the kept
        # evaluation plans (``<segments plan>``) are the segments' own work.
        group = "segments (rules)" if filename.startswith(("<rule ", "<segments")) else None
        group = group or GROUPS.get(name)
        if group is None:
            group = "models" if "/models/" in filename or "river" in filename else "other"
        by_group[group] = by_group.get(group, 0.0) + tottime
        total += tottime
    rows = [
        {"stage": "ingest: parse, validate, privacy, route", "us_per_event": t_ingest / n * 1e6}
    ]
    for group, secs in sorted(by_group.items(), key=lambda kv: -kv[1]):
        rows.append(
            {"stage": f"engine: {group}", "us_per_event": t_engine * secs / total / n * 1e6}
        )
    rows.append({"stage": "output serialization", "us_per_event": t_out / n * 1e6})
    whole = sum(r["us_per_event"] for r in rows)
    for r in rows:
        r["share"] = r["us_per_event"] / whole
        r["us_per_event"] = round(r["us_per_event"], 3)
    return {
        "events": n,
        "engine_events": sum(1 for v in items if type(v) is Event),
        "stages": rows,
        "us_per_event_total": round(whole, 2),
    }
