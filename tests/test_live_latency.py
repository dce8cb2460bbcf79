"""What keeps the tailing worker's latency down: the collector's pauses and per-record costs.

Speed is never asserted (shared machine): these tests check the mechanisms themselves.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import servers

from audienceflow.flows import metrics, tune_gc
from audienceflow.flows.kafka_io import KafkaOutput
from audienceflow.flows.worker import FULL_GROWTH, YOUNG_LIVE, _LatencyGC, latency_gc
from audienceflow.flows.worker_sink import Topics, _WorkerPartition
from audienceflow.operators.records import Filtered, SegmentChange


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
    lookups.clear()
    sink = _WorkerPartition(KafkaOutput(kafka_broker), topics, None)
    try:
        for batch in range(2):
            sink.write_batch(
                [
                    ("shard-000", SegmentChange(f"u{batch}{i}", "vip:gold", "enter", 1.0, {}))
                    for i in range(3)
                ]
                + [("_out", Filtered("duplicate", f"t:0:{batch}"))]
            )
    finally:
        sink.close()
    assert sorted(lookups) == [("duplicate",), ("vip", "enter")]  # once each, not per record
    assert metrics.SEGMENT_CHANGES.labels("vip", "enter")._value.get() == before + 6
    assert metrics.FILTERED.labels("duplicate")._value.get() == filtered + 2
    assert len(servers.consume_all(kafka_broker, topics.segment_changes, expected=6)) == 6
