"""The engine's per-event bookkeeping shortcuts keep the order of what it does.

``ShardEngine.on_items`` looks for due work after each item; in a replay it skips the
look after an event held for later than stream time (nothing can have become due), but
only once a look has run in the batch: what was due before it is not known to be done.
"""

from __future__ import annotations

import heapq
from typing import Any

from helpers import pure_only
from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators import deadlines
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Watermark
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_state import NEAR_NONE
from audienceflow.operators.state import UserState

T0 = 1_700_000_000.0


def _page(i: int, uid: str, ts: float) -> Event:
    return Event(f"m{i}", uid, None, "page", "Home", ts, "other", {})


class _Order(ShardEngine):
    """Records, in order, which user's deadlines ran and which user's events applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.done: list[tuple[str, str]] = []

    def _run_due(self, user: UserState, until: float, out: list[Any], evict: bool = True) -> None:
        self.done.append(("due", user.user_id))
        super()._run_due(user, until, out, evict)

    def _apply(self, user: UserState, ev: Event, out: list[Any]) -> None:
        self.done.append(("event", user.user_id))
        super()._apply(user, ev, out)


@pure_only  # subclasses ShardEngine, a native class compiled
def test_a_deadline_due_as_a_batch_starts_runs_before_an_event_at_stream_time() -> None:
    cfg = Settings.load(environ={"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"})
    eng = _Order(cfg, ShardState("shard-000"), partitions=["p"])
    eng.on_items([_page(0, "ann", T0), Watermark("p", T0)])
    assert eng.done == [("event", "ann")]
    # Stream time passes ann's session close without a look for due work (as a shard
    # restored with a clock ahead of its queue would be).
    now = T0 + 4000.0
    eng.state.clock.update("p", now, False)
    eng.done.clear()
    # bob's event is held (later than stream time), cat's applies at once.
    eng.on_items([_page(1, "bob", now + 10.0), _page(2, "cat", now)])
    assert ("due", "ann") in eng.done
    assert eng.done.index(("due", "ann")) < eng.done.index(("event", "cat"))


def _push_as_it_was(state: ShardState, due: float, uid: str) -> None:
    """``deadlines.push`` before ``push_later``: ``_push`` into the minute or hour buckets."""
    if int(due // deadlines.MINUTE) <= state.near_min:
        heapq.heappush(state.heap, (due, uid))
    elif int(due // deadlines.BUCKET) <= state.near:
        deadlines._push(state.heap, state.mid, state.near_min, deadlines.MINUTE, due, uid)
    else:
        deadlines._push(state.heap, state.far, state.near, deadlines.BUCKET, due, uid)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4 * 3600 * 4), st.sampled_from(["a", "b", "c", "d"])),
        max_size=40,
    ),
    st.integers(-2, 2),
)
def test_a_deadline_filed_later_goes_where_push_puts_it(
    filed: list[tuple[int, str]], reached_hour: int
) -> None:
    """``push_later`` (the engine's call when a deadline's minute is not reached) files
    as ``push`` did before it; popped, the queue gives one heap's order."""
    st_push, st_later = ShardState("a"), ShardState("b")
    hour = int(T0 // deadlines.BUCKET) + reached_hour  # reached: T0's hour, or one near it
    for state in (st_push, st_later):
        state.near = NEAR_NONE if reached_hour < 0 else hour
        state.near_min = NEAR_NONE if reached_hour < 0 else hour * 60 + 30
    for q, uid in filed:
        due = T0 + q / 4
        _push_as_it_was(st_push, due, uid)
        m = int(due // deadlines.MINUTE)
        if m <= st_later.near_min:
            deadlines.push(st_later, due, uid)
        else:
            deadlines.push_later(st_later, due, uid, m)
    assert st_later.heap == st_push.heap
    assert st_later.mid == st_push.mid and st_later.far == st_push.far
    order = []
    while st_later.heap or st_later.run:
        due, uid = deadlines.pop(st_later.heap, st_later.run)
        if uid == deadlines.MARK:
            deadlines.pop_marker(st_later, due)
        else:
            order.append((due, uid))
    assert order == sorted((T0 + q / 4, uid) for q, uid in filed)
