"""A live shard's periodic report (users, stream time, held events for the metrics and the
progress line) catches up after the input goes quiet, instead of freezing at the last
report taken before stream time jumped."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from audienceflow.flows import dataflow
from audienceflow.flows.dataflow import ShardLogic
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, ShardStats, Watermark
from audienceflow.operators.settings import Settings

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
DAY = 86_400.0
STATS_EVERY = 10.0


def _reports(out: list[Any]) -> list[ShardStats]:
    return [r for r in out if type(r) is ShardStats]


@pytest.mark.timeout(60)
def test_a_report_skipped_as_too_soon_is_sent_once_the_input_is_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mono = [1000.0]
    wall = [T0]
    monkeypatch.setattr(dataflow, "time", SimpleNamespace(monotonic=lambda: mono[0]))
    settings = Settings.load(environ={"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"})
    engine = ShardEngine(settings, ShardState("shard-000"), wall=lambda: wall[0], partitions=["p"])
    logic = ShardLogic(
        engine,
        replay=False,
        copy_snapshots=False,
        poll=5.0,
        settings=settings,
        models_factory=None,
        stamped=True,
        stats_every=STATS_EVERY,
    )
    page = Event("m-1", "ann", None, "page", "Home", T0, "navigation", {})

    out, _ = logic.on_batch([page, Watermark("p", T0 + 1.0)])
    assert [r.users for r in _reports(out)] == [1]  # the first report goes at once

    # 1 s later the partition turns idle and, 40 days of wall clock on, stream time
    # jumps: the session closes and ann is evicted, all too soon for another report.
    mono[0] += 1.0
    out, _ = logic.on_batch([Watermark("p", T0 + 1.0, idle=True)])
    wall[0] = T0 + 40 * DAY
    out, _ = logic.on_notify()
    assert not _reports(out)
    assert engine.next_due() is None  # nothing left to wake up for but the report

    wake = logic.notify_at()
    assert wake is not None, "the skipped report would wait for the next event"
    # At the report's due time (9 s on), not at once: a busy wake-up loop would pass else.
    assert 8.0 < (wake - datetime.now(UTC)).total_seconds() <= 9.0

    mono[0] += STATS_EVERY - 1.0 - 0.001  # just before the report is due: still owed
    out, _ = logic.on_notify()
    assert not _reports(out) and logic.notify_at() is not None

    mono[0] += 0.001
    out, _ = logic.on_notify()
    (report,) = _reports(out)
    assert report.users == 0
    assert report.extra["stream_time"] > T0 + 39 * DAY
    assert logic.notify_at() is None  # reported: no more wake-ups while quiet


class _NoConsumer:
    """Stands in for the shared consumer: a snapshot never reads."""

    def add(self, topic: str, partition: int, offset: int) -> None:
        pass


def _snapshot_time() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("audienceflow_last_snapshot_timestamp_seconds") or 0.0


@pytest.mark.timeout(60)
def test_every_input_snapshot_marks_the_snapshot_time_with_recovery_or_without() -> None:
    """Bytewax snapshots a shard only when its state changed, but every input partition at
    every epoch: on a quiet input only the latter shows that epochs still complete. It
    asks without recovery too: a mark left at 0 there fired the snapshot-age alert."""
    import threading

    from audienceflow.flows import metrics
    from audienceflow.flows.kafka_io import _InputPartition
    from audienceflow.flows.partitions import Alignment, make_ingest

    settings = Settings.load(environ={})

    def partition() -> _InputPartition:
        return _InputPartition(
            _NoConsumer(),  # type: ignore[arg-type]
            lambda: None,
            "clicks",
            0,
            0,
            100,
            threading.Event(),
            make_ingest(settings, "clicks:0", None, live=True),
            True,
            settings.idle_after,
            Alignment(settings.align_within),
        )

    metrics.SNAPSHOT_TIME.set(0)
    before = time.time()
    offset, _clock, topic = partition().snapshot()
    assert topic == "clicks"
    assert offset == 0
    assert before <= _snapshot_time() <= time.time()


@pytest.mark.timeout(60)
def test_a_stopped_shard_reports_what_it_still_holds_for_the_closing_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The closing line's ``held`` is read from the shards' reports: at a stop (SIGTERM)
    the shard reports at once, or the line showed the count of up to 10 s before (a
    drill logged held 5,621 where the snapshot held 5,147)."""
    mono = [1000.0]
    monkeypatch.setattr(dataflow, "time", SimpleNamespace(monotonic=lambda: mono[0]))
    settings = Settings.load(environ={"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "1m"})
    engine = ShardEngine(settings, ShardState("shard-000"), wall=lambda: T0, partitions=["p"])
    logic = ShardLogic(
        engine,
        replay=False,
        copy_snapshots=False,
        poll=5.0,
        settings=settings,
        models_factory=None,
        stopping=lambda: True,
        stamped=True,
        stats_every=STATS_EVERY,
    )
    pages = [
        Event(f"m-{i}", "ann", None, "page", "Home", T0 + i, "navigation", {}) for i in range(3)
    ]
    out, _ = logic.on_batch([pages[0], Watermark("p", T0 - 60.0)])
    assert [r.extra["buffered"] for r in _reports(out)] == [1]  # the first report goes at once

    mono[0] += 1.0  # too soon for the next periodic report
    out, _ = logic.on_batch(pages[1:])
    assert not _reports(out)

    out, _ = logic.on_eof()  # stopped: nothing applied, all three held for the snapshot
    assert [r.extra["buffered"] for r in _reports(out)] == [3]
