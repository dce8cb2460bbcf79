"""What keeps the tailing worker's latency down: the collector's pauses and per-record costs.

Speed is never asserted (shared machine): these tests check the mechanisms themselves.
"""

from __future__ import annotations

import gc
import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import servers
from helpers import at, ev

from audienceflow.flows import metrics, tune_gc
from audienceflow.flows.dataflow import Arrival
from audienceflow.flows.kafka_io import KafkaInput, KafkaOutput
from audienceflow.flows.partitions import make_ingest
from audienceflow.flows.worker import FULL_GROWTH, YOUNG_LIVE, _LatencyGC, latency_gc
from audienceflow.flows.worker_sink import Topics, _WorkerPartition
from audienceflow.models.hook import build_models
from audienceflow.operators.config import Located, load_located, merge
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Filtered, SegmentChange, Watermark
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings, build

ROOT = Path(__file__).resolve().parent.parent


def settings(**sections: dict[str, Any]) -> Settings:
    return build(merge(load_located(None, {}), Located(sections)), {})


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """Whatever a test does to the collector, the next test gets it back as it was."""
    callbacks, threshold = list(gc.callbacks), gc.get_threshold()
    try:
        yield
    finally:
        gc.callbacks[:] = callbacks
        gc.set_threshold(*threshold)
        gc.unfreeze()
        gc.collect()


def _policy() -> _LatencyGC:
    found = [c for c in gc.callbacks if isinstance(c, _LatencyGC)]
    assert len(found) == 1
    return found[0]


@pytest.mark.usefixtures("restore_gc")
def test_the_live_policy_replaces_the_replay_one_with_a_small_young_generation() -> None:
    tune_gc()
    latency_gc()
    latency_gc()  # installing twice leaves one policy
    assert gc.get_threshold()[0] == YOUNG_LIVE
    _policy()
    # The replay's callback (the young generation as big as the heap) is gone.
    assert not [c for c in gc.callbacks if getattr(c, "__name__", "") == "_young_as_tracked"]


@pytest.mark.usefixtures("restore_gc")
def test_survivors_are_set_aside_and_young_cycles_still_collected() -> None:
    latency_gc()
    before = gc.get_freeze_count()
    kept = [[i] for i in range(3 * YOUNG_LIVE)]  # live objects: survive, are set aside
    assert gc.get_freeze_count() >= before + 2 * YOUNG_LIVE
    assert gc.get_count()[0] < YOUNG_LIVE  # nothing piles up in the young generation
    gone = 0
    for _ in range(3 * YOUNG_LIVE):  # cycles that die young: collected, not set aside
        cycle: list[Any] = []
        cycle.append(cycle)
    gc.unfreeze()  # what was set aside holds none of them
    gone = gc.collect()
    assert gone < YOUNG_LIVE  # at most the cycles made since the last young collection
    del kept


@pytest.mark.usefixtures("restore_gc")
def test_after_the_heap_grows_enough_a_full_collection_scans_what_was_set_aside() -> None:
    latency_gc()
    policy = _policy()
    base = policy.base
    cycles: list[Any] = []
    for _ in range(200):  # set aside while alive, then made garbage: only a full collection
        c: list[Any] = []  # finds them
        c.append(c)
        cycles.append(c)
    gc.collect(0)
    assert gc.get_freeze_count() >= 200
    del cycles, c
    kept = []
    while policy.full == 0 and len(kept) < 20 * FULL_GROWTH * base:
        kept.append([len(kept)])
    assert policy.full == 1  # handed back after growing FULL_GROWTH-fold, then scanned
    assert gc.get_freeze_count() >= FULL_GROWTH * base - YOUNG_LIVE  # and set aside again
    assert policy.base >= FULL_GROWTH * base
    gc.unfreeze()
    assert gc.collect() < 200  # the set-aside cycles were freed by that full collection
    del kept


@pytest.mark.usefixtures("restore_gc")
def test_set_aside_objects_that_died_since_do_not_count_as_growth() -> None:
    latency_gc()
    policy = _policy()
    for _ in range(FULL_GROWTH * policy.base // YOUNG_LIVE + 5):
        batch = [[i] for i in range(2 * YOUNG_LIVE)]  # survive a collection, then go
        del batch
    # Their survivors added up to more than FULL_GROWTH times the heap, which did not grow.
    assert policy.full == 0
    assert not policy.handed_back


def test_children_are_looked_up_once_per_label_values() -> None:
    calls: list[tuple[str, ...]] = []

    class Metric:
        def labels(self, *values: str) -> tuple[str, ...]:
            calls.append(values)
            return values

    children = metrics.Children(Metric())
    assert [children("a", "enter"), children("a", "enter"), children("b", "exit")] == [
        ("a", "enter"),
        ("a", "enter"),
        ("b", "exit"),
    ]
    assert calls == [("a", "enter"), ("b", "exit")]


@pytest.mark.integration
def test_the_sink_counts_records_without_a_label_lookup_each(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = Topics(
        segment_changes="lat.segment-changes",
        actions="lat.actions",
        sessions="lat.sessions",
        dead_letters="lat.dead-letters",
    )
    servers.create_topics(kafka_broker, topics.names())
    lookups: list[tuple[str, ...]] = []
    for metric in (metrics.SEGMENT_CHANGES, metrics.FILTERED):
        real = metric.labels

        def counted(*values: str, real: Any = real) -> Any:
            lookups.append(values)
            return real(*values)

        monkeypatch.setattr(metric, "labels", counted)
    before = metrics.SEGMENT_CHANGES.labels("vip", "enter")._value.get()
    filtered = metrics.FILTERED.labels("duplicate")._value.get()
    flushes, _ = _histogram(metrics.FLUSH_WAIT)
    lookups.clear()
    sink = _WorkerPartition(KafkaOutput(kafka_broker), topics, None)
    try:
        for batch in range(2):
            sink.write_batch(
                [SegmentChange(f"u{batch}{i}", "vip:gold", "enter", 1.0, {}) for i in range(3)]
                + [Filtered("duplicate", f"t:0:{batch}")]
            )
            sink.snapshot()  # the epoch ends: its records are acknowledged
    finally:
        sink.close()
    assert sorted(lookups) == [("duplicate",), ("vip", "enter")]  # once each, not per record
    assert metrics.SEGMENT_CHANGES.labels("vip", "enter")._value.get() == before + 6
    assert metrics.FILTERED.labels("duplicate")._value.get() == filtered + 2
    assert len(servers.consume_all(kafka_broker, topics.segment_changes, expected=6)) == 6
    # Each epoch's wait for the broker's acknowledgements is observed once.
    flushes_after, _ = _histogram(metrics.FLUSH_WAIT)
    assert flushes_after == flushes + 2


def _histogram(hist: Any) -> tuple[float, float]:
    """A histogram's (count, sum) as Prometheus reads them."""
    samples = {s.name: s.value for m in hist.collect() for s in m.samples}
    return samples[hist._name + "_count"], samples[hist._name + "_sum"]


# --- a caught-up partition's watermark ---------------------------------------------------


def _batches(part: Any, want: int, timeout: float = 20.0) -> list[list[Any]]:
    """``next_batch`` until ``want`` events came (non-empty batches only)."""
    got: list[list[Any]] = []
    seen, deadline = 0, time.monotonic() + timeout
    while seen < want:
        assert time.monotonic() < deadline, f"{seen} of {want} events read"
        batch = part.next_batch()
        if batch:
            got.append(batch)
            seen += sum(1 for _, v in batch if type(v) is Event)
        else:
            time.sleep(0.01)
    return got


def _marks(batch: list[Any]) -> list[float]:
    return [v.at for _, v in batch if type(v) is Watermark]


@pytest.mark.integration
@pytest.mark.parametrize("shards", [1, 3])
def test_a_caught_up_batch_ends_with_its_watermark_a_full_one_only_at_a_tick_step(
    kafka_broker: str, shards: int
) -> None:
    # A tick of an hour: after the first event, no batch crosses a step of event time.
    cfg = settings(
        time={"tick": "1h", "allowed_lateness": "10s", "watermark_quorum": 1},
        state={"shards": shards},
    )
    topic = f"caught-up-{shards}"
    servers.create_topics(kafka_broker, [topic])
    # Five events a minute apart, read in batches of at most 2 lines.
    lines = [orjson.dumps(ev("u", m)) for m in range(5)]
    servers.produce_lines(kafka_broker, topic, lines)
    source = KafkaInput(kafka_broker, topic, cfg, batch_size=2, extra={"fetch.wait.max.ms": 10})
    part = source.build_part("in", "0", None)
    try:
        batches = _batches(part, 5)
        # Producer batching decides where the reads split; a read of 2 lines is full.
        marks = [_marks(b) for b in batches]
        for i, (batch, mark) in enumerate(zip(batches, marks, strict=True)):
            events = [v for _, v in batch if type(v) is Event]
            if i > 0 and len(events) == 2:  # full: a backlog, where only tick steps send one
                assert mark == []
            else:  # the first read moves the time from nothing (a step), or the read
                assert mark == [events[-1].ts - 10.0] * shards  # emptied the partition
        # Whatever the split, the last read emptied the partition: the shards know the
        # time of the last event (with a tick of an hour they would not).
        assert marks[-1] == [_ts(at(4)) - 10.0] * shards
        assert [k for k, v in batches[-1] if type(v) is Watermark] == sorted(
            {f"shard-{i:03d}" for i in range(shards)}
        )
    finally:
        part.close()


@pytest.mark.integration
def test_a_batch_is_stamped_only_at_the_shards_its_events_reach(kafka_broker: str) -> None:
    """The end-to-end latency is measured at the shards a batch's events went to. A
    caught-up batch also sends the partition's watermark to every shard; a stamp at a
    shard that got only the watermark had nothing to wait for and was answered at once,
    so with placement by partition (one shard per batch) 7 of 8 observations read ~0."""
    cfg = settings(
        time={"tick": "1h", "allowed_lateness": "10s", "watermark_quorum": 1},
        state={"shards": 3},
    )
    topic = "stamped-shards"
    servers.create_topics(kafka_broker, [topic])
    servers.produce_lines(kafka_broker, topic, [orjson.dumps(ev("u", m)) for m in range(5)])
    source = KafkaInput(kafka_broker, topic, cfg, batch_size=2, extra={"fetch.wait.max.ms": 10})
    part = source.build_part("in", "0", None)
    try:
        batches = _batches(part, 5)
        for batch in batches:
            reached = {k for k, v in batch if type(v) is Event}
            assert {k for k, v in batch if type(v) is Arrival} == reached
        watermarked = {k for b in batches for k, v in b if type(v) is Watermark}
        assert len(watermarked) == 3  # the case happened: every shard had a watermark
    finally:
        part.close()


def _ts(iso_text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso_text).timestamp()


def test_more_watermarks_change_no_output() -> None:
    """What a caught-up partition adds (its watermark after a batch that crossed no tick
    step) only lets stream time move sooner: the outputs are the same, in the same order."""
    cfg = settings(time={"tick": "6h"})
    with gzip.open(ROOT / "examples" / "stream.jsonl.gz") as fh:
        lines = fh.read().splitlines()
    outputs = []
    for extra in (False, True):
        ingest = make_ingest(cfg, "s", None, live=False)
        items: list[Any] = []
        for i in range(0, len(lines), 20):
            out = ingest.feed([(f"s:{j}", raw) for j, raw in enumerate(lines[i : i + 20], i)])
            if extra and not (out and type(out[-1][1]) is Watermark) and ingest.pending is None:
                out.append(("shard-000", ingest.watermark()))
            items += [v for k, v in out if k != OUT]
        items += [v for k, v in ingest.end() if k != OUT]
        models = build_models(cfg, "shard-000")
        engine = ShardEngine(
            cfg, ShardState("shard-000", models=models), models=models, partitions=["s"]
        )
        recs: list[Any] = []
        for i in range(0, len(items), 100):
            recs += engine.on_items(items[i : i + 100])
        recs += engine.finish()
        outputs.append(([orjson.dumps(r.to_json()) for r in recs if hasattr(r, "to_json")], items))
    (plain, few), (more, many) = outputs
    added = sum(type(v) is Watermark for v in many) - sum(type(v) is Watermark for v in few)
    assert added > 100  # the case the test is about happened, often
    assert plain == more
    assert len(plain) > 1000


@pytest.mark.parametrize(
    ("configured", "control_wait"),
    [(None, 500), (10, 500), ("10", 500), (499, 500), (500, 500), (900, 900)],
)
def test_a_control_partition_waits_at_least_half_a_second_for_a_fetch(
    configured: int | str | None, control_wait: int
) -> None:
    """An input partition's consumer keeps the configured fetch wait (a short one for
    latency); a control partition's waits at least ``CONTROL_FETCH_WAIT_MS``: it is mostly
    empty, and a broker answers a fetch of an empty partition after the whole wait, so a
    short one would cost a request per wait for each control partition."""
    from audienceflow.flows.kafka_io import CONTROL_FETCH_WAIT_MS, consumer_config

    assert CONTROL_FETCH_WAIT_MS == 500
    extra = {} if configured is None else {"fetch.wait.max.ms": configured}
    for tail in (True, False):
        inp = consumer_config("127.0.0.1:9", extra, tail, control=False)
        ctl = consumer_config("127.0.0.1:9", extra, tail, control=True)
        assert inp["fetch.wait.max.ms"] == (100 if configured is None else configured)
        assert ctl["fetch.wait.max.ms"] == control_wait
        # Nothing else differs (the error callback is a new object per consumer).
        same = {k for k in inp if k not in ("fetch.wait.max.ms", "error_cb")}
        assert same == {k for k in ctl if k not in ("fetch.wait.max.ms", "error_cb")}
        assert all(inp[k] == ctl[k] for k in same)
