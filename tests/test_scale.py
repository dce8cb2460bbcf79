"""What keeps the engine's cost per event flat in the number of tracked users.

Speed is never asserted here (shared machine): these tests pin the mechanisms the
1M-user figure of ``bench/memory.py`` depends on.
"""

from __future__ import annotations

import gc
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from audienceflow.flows.partitions import make_ingest
from audienceflow.models.hook import build_models
from audienceflow.operators.bounds import bounded_value
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def _collector_off() -> Iterator[None]:
    """Automatic collection off, so ``gc.collect()`` afterwards counts all cyclic garbage."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_bounded_value_leaves_no_cyclic_garbage() -> None:
    # A recursive closure (function -> cell -> function) would be 7 objects per call that
    # only a collection frees; at a million users each collection is slow (cache misses).
    value = {"a": [1, {"b": [2, 3]}], "c": "x"}
    with _collector_off():
        for _ in range(100):
            assert bounded_value(value) == value
        assert gc.collect() == 0


@pytest.mark.timeout(120)
def test_ingest_and_engine_make_no_cyclic_garbage_per_event() -> None:
    """Every event's garbage is freed by reference counting: the collector then runs only
    as often as state grows, not as often as events arrive (the default config, models on,
    the cold tier on, over the first 3000 lines of the example stream)."""
    settings = Settings.load(None)
    assert settings.models.enabled and settings.cold_after is not None
    with gzip.open(ROOT / "examples" / "stream.jsonl.gz") as fh:
        lines = [fh.readline() for _ in range(3000)]
    models = build_models(settings, "shard-000")
    engine = ShardEngine(settings, ShardState("shard-000", models=models), models=models,
                         partitions=["in"])  # fmt: skip
    ingest = make_ingest(settings, "in", None, live=False)
    engine.on_items([])  # first use: lazily built caches are not per-event garbage
    with _collector_off():
        out = []
        for i in range(0, len(lines), 500):
            keyed = ingest.feed([(str(j), raw) for j, raw in enumerate(lines[i : i + 500], i)])
            out += engine.on_items([v for k, v in keyed if k != OUT])
        assert out  # sessions closed, segments changed: the whole path ran
        assert gc.collect() == 0
