"""The per-event functions make no closure cells.

In CPython 3.11 a comprehension or generator expression that reads a function's locals
makes them cells: each is created at every call, whether the comprehension runs or not,
and every read of it is a ``LOAD_DEREF``. The functions below run per event (or per
session, action or link) on a replay; their rare comprehensions live in small module
functions or became loops. A pure-Python check: the compiled build (``make fast``) has
no code objects, and mypyc inlines comprehensions anyway.
"""

from __future__ import annotations

from typing import Any

import pytest

from audienceflow.models import clustering, intent, reco, vectors
from audienceflow.operators import engine, identity, privacy, segments, watermarks
from audienceflow.operators.caps import FrequencyCaps

HOT: list[Any] = [
    intent.IntentModel.predict_raw,
    vectors.user_vector,
    clustering._planned,
    FrequencyCaps.decide,
    segments.SegmentRule.members,
    segments.SegmentRule.evaluate,
    engine.ShardEngine._merge,
    engine.ShardEngine._drop_unowned,
    identity._refused,
    privacy.Privacy._scrub_value,
    # recommendations on: per recommendation list
    reco.ItemModel._rank_all,
    reco.ItemModel._rank_kept,
    reco._payloads,
    # ingest, per accepted line (68fc16d)
    privacy.Privacy.__call__,
    watermarks.PartitionClock.observe,
]


def _name(fn: Any) -> str:
    """The test id of ``fn``: a compiled method (``make fast``) may have no qualified name,
    and the collection of the whole file must not stop on it."""
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", type(fn).__name__)


@pytest.mark.parametrize("fn", HOT, ids=_name)
def test_a_hot_function_makes_no_cells(fn: Any) -> None:
    code = getattr(fn, "__code__", None)
    if code is None:
        pytest.skip("compiled: no code object")
    assert code.co_cellvars == ()
