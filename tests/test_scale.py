"""What keeps the engine's cost per event flat in the number of tracked users.

Speed is never asserted here (shared machine): these tests pin the mechanisms the
1M-user figure of ``bench/memory.py`` depends on.
"""

from __future__ import annotations

import copy
import gc
import gzip
import heapq
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from audienceflow.flows import YOUNG_MIN, _young_as_tracked, tune_gc
from audienceflow.flows.partitions import make_ingest
from audienceflow.models.hook import build_models
from audienceflow.operators import deadlines, shard_codec
from audienceflow.operators.bounds import bounded_value
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Watermark
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_state import NEAR_NONE
from audienceflow.operators.state import INF

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z


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


# --- the deadline queue: a heap of the current hour, hour buckets for later ones -----

B = float(deadlines.BUCKET)
M = float(deadlines.MINUTE)
# Times around three hour boundaries (ties, a boundary itself, just either side of it),
# and around minute boundaries within an hour.
_TIMES = [
    b * B + d
    for b in (100, 101, 103)
    for d in (-0.5, -1e-6, 0.0, 1e-6, 1.0, M - 1e-6, M, M + 1.0, 1800.0)
]
_UIDS = ["a", "b", "c", "u1", "u10"]
_OPS = hs.one_of(
    hs.tuples(hs.just("push"), hs.sampled_from(_TIMES), hs.sampled_from(_UIDS)),
    hs.tuples(hs.just("pop"), hs.sampled_from(_TIMES)),
    hs.tuples(hs.just("purge"), hs.sets(hs.sampled_from(_UIDS), max_size=2)),
    hs.tuples(hs.just("snapshot")),
)


def _first(heap: list[tuple[float, str]], run: Any) -> float:
    return min(heap[0][0] if heap else INF, run[0][0] if run else INF)


def _pop_until(state: ShardState, now: float) -> list[tuple[float, str]]:
    """Pop what is due at or before ``now``, as ``ShardEngine._advance`` does."""
    out = []
    while (state.heap or state.run) and _first(state.heap, state.run) <= now:
        due, uid = deadlines.pop(state.heap, state.run)
        if uid == deadlines.MARK:
            deadlines.pop_marker(state, due)
        else:
            out.append((due, uid))
    return out


@given(hs.lists(_OPS, max_size=60))
def test_the_deadline_queue_pops_in_the_order_of_one_heap_of_all(ops: list[Any]) -> None:
    state, ref = ShardState("shard-000"), []
    reached: float | None = None  # the latest time popped
    for op in ops:
        if op[0] == "push":
            deadlines.push(state, op[1], op[2])
            heapq.heappush(ref, (op[1], op[2]))
            if reached is not None and deadlines.bucket_of(op[1], deadlines.MINUTE) <= (
                deadlines.bucket_of(reached, deadlines.MINUTE)
            ):
                assert (op[1], op[2]) in state.heap  # a minute reached: no bucket again
        elif op[0] == "pop":
            expected = []
            while ref and ref[0][0] <= op[1]:
                expected.append(heapq.heappop(ref))
            assert _pop_until(state, op[1]) == expected
            if expected:
                reached = max(reached or -INF, expected[-1][0])
        elif op[0] == "purge":
            kept = [e for e in ref if e[1] not in op[1]]
            assert deadlines.purge(state, op[1]) == len(ref) - len(kept)
            ref = kept
            heapq.heapify(ref)
        else:  # a snapshot: one heap of all, the buckets rebuilt from it
            filed = deadlines.entries(state)
            assert sorted(filed) == sorted(ref) and all(uid for _, uid in filed)
            state = ShardState("shard-000")
            deadlines.requeue(state, filed)  # the earliest deadline's hour is reached
            reached = min(filed)[0] if filed else None
        for k, bucket in state.far.items():  # every bucket is after the hours reached ...
            assert k > state.near and all(deadlines.bucket_of(d) == k for d in bucket[0])
            assert len(bucket[0]) == len(bucket[1])
            assert (k * B, deadlines.MARK) in state.heap  # ... and has its marker
        for k, bucket in state.mid.items():  # every minute bucket is after the minutes
            # reached, in an hour reached, and has its marker
            assert k > state.near_min and all(deadlines.bucket_of(d, 60) == k for d in bucket[0])
            assert deadlines.bucket_of(k * M) <= state.near
            assert len(bucket[0]) == len(bucket[1])
            assert (k * M, deadlines.MARK) in state.heap
        assert all(deadlines.bucket_of(d, 60) <= state.near_min for d, u in state.heap if u)
        # The run: the latest minute reached, sorted, no marker.
        assert all(deadlines.bucket_of(d, 60) == state.near_min and u for d, u in state.run)
        assert list(state.run) == sorted(state.run)
    assert _pop_until(state, INF) == [heapq.heappop(ref) for _ in range(len(ref))]


# The cold tier's queue: minute buckets (times around minute boundaries, ties).
_COOL_TIMES = [m * 60.0 + d for m in (5000, 5001, 5003, 5060) for d in (-1e-6, 0.0, 1e-6, 30.0)]
_COOL_OPS = hs.one_of(
    hs.tuples(hs.just("push"), hs.sampled_from(_COOL_TIMES), hs.sampled_from(_UIDS)),
    hs.tuples(hs.just("pop"), hs.sampled_from(_COOL_TIMES)),
    hs.tuples(hs.just("purge"), hs.sets(hs.sampled_from(_UIDS), max_size=2)),
    hs.tuples(hs.just("snapshot")),
)


def _cool_until(state: ShardState, now: float) -> list[tuple[float, str]]:
    """Pop what may go cold at or before ``now``, as ``ShardEngine._cool`` does."""
    out = []
    while (state.cooling or state.cool_run) and _first(state.cooling, state.cool_run) <= now:
        due, uid = deadlines.pop(state.cooling, state.cool_run)
        if uid == deadlines.MARK:
            deadlines.cool_pop_marker(state, due)
        else:
            out.append((due, uid))
    return out


@given(hs.lists(_COOL_OPS, max_size=60))
def test_the_cooling_queue_pops_in_the_order_of_one_heap_of_all(ops: list[Any]) -> None:
    state, ref = ShardState("shard-000"), []
    for op in ops:
        if op[0] == "push":
            deadlines.cool_push(state, op[1], op[2])
            heapq.heappush(ref, (op[1], op[2]))
        elif op[0] == "pop":
            expected = []
            while ref and ref[0][0] <= op[1]:
                expected.append(heapq.heappop(ref))
            assert _cool_until(state, op[1]) == expected
        elif op[0] == "purge":
            kept = [e for e in ref if e[1] not in op[1]]
            assert deadlines.cool_purge(state, op[1]) == len(ref) - len(kept)
            ref = kept
            heapq.heapify(ref)
        else:  # a snapshot: one heap of all (as builds before the buckets wrote it)
            filed = deadlines.cool_entries(state)
            assert sorted(filed) == sorted(ref) and all(uid for _, uid in filed)
            state = ShardState("shard-000")
            deadlines.cool_requeue(state, filed)
        for k, bucket in state.cool_far.items():  # later minutes only, each with its marker
            assert k > state.cool_near
            assert all(deadlines.bucket_of(d, deadlines.COOL_BUCKET) == k for d in bucket[0])
            assert (k * float(deadlines.COOL_BUCKET), deadlines.MARK) in state.cooling
        assert all(
            deadlines.bucket_of(d, deadlines.COOL_BUCKET) <= state.cool_near
            for d, uid in state.cooling
            if uid
        )
        assert all(
            deadlines.bucket_of(d, deadlines.COOL_BUCKET) == state.cool_near and u
            for d, u in state.cool_run
        )
        assert list(state.cool_run) == sorted(state.cool_run)
    assert _cool_until(state, INF) == [heapq.heappop(ref) for _ in range(len(ref))]


def test_a_bucket_start_is_never_after_a_deadline_in_it() -> None:
    for due in (0.0, 3599.999999, 3600.0, 1_772_438_400.0, 1_772_438_399.9999998, 1e15 + 0.5):
        assert deadlines.bucket_of(due) * deadlines.BUCKET <= due
        assert due < (deadlines.bucket_of(due) + 1) * deadlines.BUCKET


def _page(uid: str, minute: float) -> Event:
    return Event(f"m-{uid}-{minute}", uid, None, "page", "Home", T0 + minute * 60.0,
                 "navigation", {})  # fmt: skip


def test_far_deadlines_wait_in_buckets_not_in_the_heap() -> None:
    # 300 users, one event each a minute apart: once their sessions closed and their
    # segments were re-checked, each is due only to be evicted 30 days after its event
    # (``sessions.history_window``).
    settings = Settings.load(None, environ={"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"})
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    for i in range(300):
        engine.on_items([_page(f"u{i:03d}", i), Watermark("p", T0 + i * 60.0)])
    # Every session closed, every segment re-check (a day after the event) done.
    engine.on_items([Watermark("p", T0 + 2000 * 60.0)])
    st = engine.state
    filed = deadlines.entries(st)
    assert len(filed) >= 300 and min(filed)[0] >= T0 + 30 * 86400
    assert len(st.heap) <= 6  # one marker per hour of evictions (300 minutes: 5-6 hours)
    assert all(uid == deadlines.MARK for _, uid in st.heap)


@pytest.mark.timeout(120)
def test_a_snapshot_with_every_deadline_in_the_heap_runs_on_alike() -> None:
    """A snapshot written before the buckets had all deadlines in its heap: read by this
    build, the engine runs on to the same outputs as the one that never stopped."""
    settings = Settings.load(None, environ={"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"})
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    for i in range(0, 200, 2):
        engine.on_items([_page(f"u{i % 7}", i), Watermark("p", T0 + i * 60.0)])
    old = copy.deepcopy(engine.state)
    old.heap, old.far, old.near = deadlines.entries(old), {}, NEAR_NONE  # as a build before
    old.run.clear()
    assert any(uid != deadlines.MARK for _, uid in old.heap)
    back = shard_codec.decode_shard(shard_codec.encode_shard(old))
    again = ShardEngine(settings, back, partitions=["p"])
    a, b = [
        eng.on_items([_page("u1", 700), Watermark("p", T0 + 700 * 60.0)]) + eng.finish()
        for eng in (engine, again)
    ]
    kinds = {type(r).__name__ for r in a}
    assert {"Session", "SegmentChange", "ProfileUpdate"} <= kinds, kinds
    assert [repr(r) for r in a] == [repr(r) for r in b]


# --- the collector: the youngest generation grows with the objects tracked ----------


def test_after_a_collection_the_young_generation_may_grow_to_the_objects_tracked() -> None:
    old, callbacks = gc.get_threshold(), list(gc.callbacks)
    stop = {"generation": 0, "collected": 0, "uncollectable": 0}
    gc.callbacks[:] = []  # called by hand here (another test's CLI run may have installed it)
    try:
        gc.set_threshold(YOUNG_MIN, 7, 9)
        keep = [[i] for i in range(2 * YOUNG_MIN)]  # tracked objects, as users' state is
        _young_as_tracked("start", stop)
        assert gc.get_threshold() == (YOUNG_MIN, 7, 9)  # only after a collection
        _young_as_tracked("stop", stop)
        grown = gc.get_threshold()[0]
        assert grown >= len(keep) and gc.get_threshold()[1:] == (7, 9)
        del keep
        _young_as_tracked("stop", stop)
        shrunk = gc.get_threshold()[0]
        assert shrunk >= YOUNG_MIN and shrunk <= grown - YOUNG_MIN  # follows them back down
    finally:
        gc.callbacks[:] = callbacks
        gc.set_threshold(*old)


def test_tune_gc_installs_the_growing_threshold_once() -> None:
    old, callbacks = gc.get_threshold(), list(gc.callbacks)
    try:
        tune_gc()
        tune_gc()
        assert gc.callbacks.count(_young_as_tracked) == 1
        assert gc.get_threshold()[0] >= YOUNG_MIN
    finally:
        gc.callbacks[:] = callbacks
        gc.unfreeze()
        gc.set_threshold(*old)


def test_the_deadlines_of_a_minute_reached_are_popped_from_a_sorted_run_not_the_heap() -> None:
    state = ShardState("shard-000")
    deadlines.requeue(state, [(100 * M + 1.0, "a")])  # minute 100 reached
    dues = [101 * M + (i * 7) % 60 for i in range(50)] + [101 * M - 1e-6, 102 * M]
    for i, due in enumerate(dues):
        deadlines.push(state, due, f"u{i}")
    assert _pop_until(state, 100 * M + 1.0) == [(100 * M + 1.0, "a")]
    # Minute 101 reached (its marker popped): its 50 entries in the run, none in the heap;
    # the one just before it (minute 100) was already in the heap.
    assert _pop_until(state, 101 * M - 1e-6) == [(101 * M - 1e-6, "u50")]
    assert _pop_until(state, 101 * M) == [(101 * M, "u0")]
    assert len(state.run) == 49 and state.near_min == 101
    assert all(uid == deadlines.MARK for _, uid in state.heap)
    deadlines.push(state, 101 * M + 0.5, "late")  # filed in a minute reached: the heap
    assert (101 * M + 0.5, "late") in state.heap
    popped = _pop_until(state, INF)
    assert popped == sorted(popped) and len(popped) == 51 and not state.run


# --- held items: a queue of those that came in order, a heap of the others ---------

_HELD = hs.lists(
    hs.tuples(hs.sampled_from(["event", "request"]), hs.sampled_from([0.0, 1.0, 1.0, 2.0, 5.0])),
    max_size=40,
)


def _holding_engine() -> ShardEngine:
    """An engine whose stream time has not started: everything that arrives is held."""
    return ShardEngine(Settings.load(None), ShardState("shard-000"), partitions=["p"])


@given(_HELD)
def test_held_items_are_released_in_the_order_of_one_heap_of_all(arrivals: list[Any]) -> None:
    from audienceflow.operators.records import ControlRequest

    engine = _holding_engine()
    released: list[tuple[float, int, str]] = []
    engine._arrive = lambda ev, out: released.append((ev.ts, 1, ev.message_id))  # type: ignore[method-assign]
    engine._control = lambda req, at, out: released.append((req.ts, 0, req.request_id))  # type: ignore[method-assign]
    expected = []
    for seq, (kind, t) in enumerate(arrivals, 1):
        if kind == "event":
            engine._event(
                Event(f"m{seq}", "u1", None, "page", "Home", T0 + t, "navigation", {}), []
            )
            expected.append((T0 + t, 1, seq, f"m{seq}"))
        else:
            engine._request(ControlRequest("suppress", ("x",), f"r{seq}", T0 + t), [])
            expected.append((T0 + t, 0, seq, f"r{seq}"))
    # Every item is held; the events among them are what ``buffered`` counts.
    assert len(engine.state.held) + len(engine.state.held_run) == len(arrivals)
    assert engine.buffered() == sum(kind == "event" for kind, _ in arrivals)
    # A snapshot holds them as one heap, as builds before the queue wrote ``held``.
    heap = [e[:3] for e in shard_codec.held_entries(engine.state)]
    assert sorted(heap) == sorted(e[:3] for e in expected)
    assert all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap)))
    engine._advance(INF, [])
    assert released == [(t, k, name) for t, k, _, name in sorted(expected)]
    assert engine.buffered() == 0


def test_events_in_time_order_are_held_in_the_queue_not_the_heap() -> None:
    engine = _holding_engine()
    for i, t in enumerate([0.0, 1.0, 1.0, 2.0]):  # a tie with the one before: still in order
        engine._event(Event(f"m{i}", "u1", None, "page", "Home", T0 + t, "navigation", {}), [])
    assert len(engine.state.held_run) == 4 and not engine.state.held
    engine._event(Event("late", "u1", None, "page", "Home", T0 + 1.5, "navigation", {}), [])
    assert len(engine.state.held_run) == 4 and len(engine.state.held) == 1


def test_a_request_at_the_time_of_a_held_event_applies_before_it() -> None:
    """A control request sorts before events of its time: arriving after a held event of
    that time, it is not in time order with it, so it goes to the heap and still goes
    first (the suppression filters the event)."""
    from audienceflow.operators.records import ControlRequest, Filtered

    engine = _holding_engine()
    engine._event(Event("m1", "u1", None, "page", "Home", T0 + 1.0, "navigation", {}), [])
    engine._request(ControlRequest("suppress", ("u1",), "r1", T0 + 1.0), [])
    assert len(engine.state.held_run) == 1 and len(engine.state.held) == 1
    out: list[Any] = []
    engine._advance(INF, out)
    assert [type(r).__name__ for r in out][:2] == ["Receipt", "Filtered"]
    assert isinstance(out[1], Filtered) and out[1].reason == "suppressed"
