"""Live, once every partition is idle, stream time follows the wall clock (``idle_after``
+ lateness behind it): a shard holding events (the last ones before a lull, within the
lateness of the last) or a timer wakes when that clock reaches them, not at its next
``poll`` (half of ``idle_after``, 5 s by default), and never in a busy loop."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from helpers import pure_only

from audienceflow.flows.dataflow import ShardLogic
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Watermark
from audienceflow.operators.settings import Settings

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
POLL = 5.0
LATENESS = 0.1
IDLE_AFTER = 10.0


def _shard(wall: list[float]) -> tuple[ShardEngine, ShardLogic]:
    settings = Settings.load(
        environ={
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "100ms",
            "AUDIENCEFLOW_TIME__IDLE_AFTER": "10s",
        }
    )
    assert settings.idle_after == IDLE_AFTER
    engine = ShardEngine(settings, ShardState("shard-000"), wall=lambda: wall[0], partitions=["p"])
    logic = ShardLogic(
        engine, replay=False, copy_snapshots=False, poll=POLL, settings=settings,
        models_factory=None,
    )  # fmt: skip
    return engine, logic


def _wait(logic: ShardLogic) -> float:
    wake = logic.notify_at()
    assert wake is not None
    return (wake - datetime.now(UTC)).total_seconds()


def _page(n: int, ts: float) -> Event:
    return Event(f"m-{n}", f"user-{n}", None, "page", "Home", ts, "navigation", {})


@pytest.mark.timeout(60)
def test_the_last_events_before_a_lull_wait_idle_after_plus_lateness_not_a_poll_more() -> None:
    wall = [T0 + 1.03]  # delivered 30 ms after it was sent
    engine, logic = _shard(wall)
    # The last event, at T0 + 1.0: the partition's watermark is 100 ms behind it, so it
    # is held; nothing later comes to let it through.
    logic.on_batch([_page(1, T0 + 1.0), Watermark("p", T0 + 1.0 - LATENESS)])
    assert engine.buffered() == 1
    # Active partition: its watermarks move stream time; the wake-up is the poll.
    assert engine.wall_due() is None
    assert POLL - 0.5 < _wait(logic) <= POLL

    # idle_after later the partition turns idle: the fallback stands 70 ms short of it.
    wall[0] += IDLE_AFTER
    logic.on_batch([Watermark("p", T0 + 1.0 - LATENESS, idle=True)])
    assert engine.buffered() == 1
    assert engine.wall_due() == pytest.approx(T0 + 1.0 + IDLE_AFTER + LATENESS)
    assert 0.05 < _wait(logic) < 0.09  # 70 ms (+1 ms margin), not the 5 s poll

    wall[0] = T0 + 1.0 + IDLE_AFTER + LATENESS - 0.002  # just before: still held
    logic.on_notify()
    assert engine.buffered() == 1
    assert 0.0 < _wait(logic) < 0.01

    wall[0] = T0 + 1.0 + IDLE_AFTER + LATENESS + 0.001  # reached: released
    logic.on_notify()
    assert engine.buffered() == 0


@pytest.mark.timeout(60)
def test_an_item_that_came_due_while_the_shard_worked_wakes_it_at_once() -> None:
    """Two last events 30 ms apart: the first is applied at one reading of the wall, and
    the work took 30 ms, so the second came due meanwhile. It must not wait a poll; and
    once stream time has reached it, it is not held, so nothing spins."""
    wall = [T0 + 1.03]
    engine, logic = _shard(wall)
    logic.on_batch([_page(1, T0 + 0.95), _page(2, T0 + 0.98), Watermark("p", T0 + 0.88)])
    wall[0] += IDLE_AFTER
    logic.on_batch([Watermark("p", T0 + 0.88, idle=True)])
    first = T0 + 0.95 + IDLE_AFTER + LATENESS
    wall[0] = first + 0.001
    logic.on_notify()
    assert engine.buffered() == 1
    wall[0] = first + 0.031  # the second's wall time (+ 1 ms) has passed
    assert 0.0 < _wait(logic) <= 0.01  # at once (the margin), not the 5 s poll
    logic.on_notify()
    assert engine.buffered() == 0
    assert POLL - 0.5 < _wait(logic) <= POLL  # what is left (sessions' close) is far off


@pure_only  # sets engine.wall_due, a method of a native class compiled (the wake-up is flows code)
@pytest.mark.timeout(60)
def test_a_time_passed_with_the_item_still_held_waits_a_poll_not_a_busy_loop() -> None:
    wall = [T0 + 1.03]
    engine, logic = _shard(wall)
    logic.on_batch([_page(1, T0 + 1.0), Watermark("p", T0 + 1.0 - LATENESS, idle=True)])
    assert engine.buffered() == 1
    # Stream time has reached the item, yet it is held (the state a lagging user's
    # events are in): waking at once again would spin, so the wake-up is the poll.
    engine.wall_due = lambda: wall[0] - 1.0  # type: ignore[method-assign]
    engine.state.clock.time = T0 + 2.0
    assert POLL - 0.5 < _wait(logic) <= POLL
    engine.state.clock.time = T0 + 0.5  # not reached: it came due while working, at once
    assert 0.0 < _wait(logic) <= 0.01


@pytest.mark.timeout(60)
def test_without_anything_pending_a_quiet_shard_sleeps() -> None:
    wall = [T0 + 1.03]
    engine, logic = _shard(wall)
    logic.on_batch([Watermark("p", T0, idle=True)])
    assert engine.next_due() is None and engine.wall_due() is None
    assert logic.notify_at() is None
