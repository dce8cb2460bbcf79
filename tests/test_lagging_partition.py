"""Live, a partition that rejoins from idleness behind stream time: its users get the
records a replay of its events gives, however its events are split into fetches.

Partition q carries traffic stamped hours after partition p's events, so stream time
is far past them when p delivers them (none is late for p's own watermark). A replay
reads p's events alone. Each user's sessions, segment changes, actions and dead letters
must be the same: what an event armed waits for p's time, and so do p's later events,
which may still cancel it (an order after a cart) or come before it (an order that
arrives after a later page, within the allowed lateness).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from test_engine_time import T0, ev, make_ingest, run, settings

from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Action, DeadLetter, Event, SegmentChange, Session
from audienceflow.operators.routing import OUT

CFG = settings(time={"idle_after": "1s", "watermark_quorum": 1})
USERS = ("ann", "bob")
KINDS: list[tuple[str, dict[str, Any]]] = [
    ("Home", {}),
    ("Product Added", {"product_id": "p1", "price": 12}),
    ("Order Completed", {"total": 12}),
]
WALL = T0 + 40_000.0  # q's traffic: hours after every event of p
STEPS = (0.0, 1.0, 30.0, 200.0, 700.0, 1000.0, 2000.0)


@st.composite
def bursts(draw: st.DrawFn) -> list[Event]:
    """p's events in arrival order: time order, some swapped within the lateness (2 min)."""
    events: list[Event] = []
    t = 0.0
    for i in range(draw(st.integers(1, 10))):
        t += draw(st.sampled_from(STEPS))
        name, props = draw(st.sampled_from(KINDS))
        events.append(ev(draw(st.sampled_from(USERS)), t, name, mid=f"m{i}", **props))
    for i in range(len(events) - 1):
        if events[i + 1].ts - events[i].ts <= 100 and draw(st.booleans()):
            events[i], events[i + 1] = events[i + 1], events[i]
    return events


def _theirs(out: list[Any]) -> list[bytes]:
    """The records of p's users (and the dead letters), in a canonical order."""
    kept = [
        r
        for r in out
        if isinstance(r, DeadLetter)
        or (isinstance(r, Session | SegmentChange | Action) and r.user_id in USERS)
    ]
    return sorted(orjson.dumps(r.to_json()) for r in kept)


class Live:
    """One shard reading partitions p and q live, at wall time ``WALL``."""

    def __init__(self) -> None:
        self.p, self.q = make_ingest(CFG, "p", live=True), make_ingest(CFG, "q", live=True)
        self.eng = ShardEngine(
            CFG, ShardState("shard-000"), wall=lambda: WALL, partitions=["p", "q"]
        )
        self.out: list[Any] = []

    def deliver(self, keyed: list[tuple[str, Any]]) -> None:
        """A fetch's items, then the wall clock's turn, as the live worker does."""
        self.out.extend(v for k, v in keyed if k == OUT)
        self.out.extend(self.eng.on_items([v for k, v in keyed if k != OUT]))
        self.out.extend(self.eng.on_time())

    def end(self) -> list[Any]:
        """p and q idle, then the end of input: every output."""
        self.deliver(self.p.set_idle(True))
        self.deliver(self.q.set_idle(True))
        self.out.extend(self.eng.finish())
        return self.out


def live(events: list[Event], cuts: list[int]) -> list[Any]:
    """q's traffic first, p idle; then p's events in fetches cut at ``cuts``; then p and
    q idle, and the end of input."""
    shard = Live()
    shard.deliver(shard.p.set_idle(True))
    shard.deliver(shard.q.feed_events([ev("zed", WALL - T0 - 5)], WALL))
    assert shard.eng.state.clock.now() > max(e.ts for e in events) + 3600
    bounds = [0, *sorted(set(cuts)), len(events)]
    for a, b in pairwise(bounds):
        if a < b:
            shard.deliver(shard.p.feed_events(events[a:b], WALL))
    return shard.end()


@given(bursts(), st.data())
def test_a_burst_behind_stream_time_gives_the_records_of_a_replay(
    events: list[Event], data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=len(events)))
    assert _theirs(live(events, cuts)) == _theirs(run(CFG, events))


def test_an_order_arriving_after_a_later_page_in_the_next_fetch_prevents_the_reminder() -> None:
    """By hand: ann's 08:00 cart, her 08:16:40 page, then (next fetch) her 08:14:50
    order: within the 2 min lateness of the page. A replay applies the order before the
    page (event time), so the 08:15 reminder never goes; live too, though the page was
    applied in an earlier fetch than the order."""
    events = [
        ev("ann", 0, "Product Added", mid="m0", product_id="p1", price=12),
        ev("ann", 1000, "Home", mid="m1"),
        ev("ann", 890, "Order Completed", mid="m2", total=12),
    ]
    for out in (run(CFG, events), live(events, [1, 2])):
        assert [a for a in out if isinstance(a, Action)] == []
        assert not [d for d in out if isinstance(d, DeadLetter)]


def test_a_session_reopened_by_a_partition_that_rejoined_behind_has_an_id_of_its_own() -> None:
    """ann's 08:00 page, then p idle: stream time (q's) closes her session. p rejoins
    with another page of hers at 08:00, so late that a session closed since then: it
    opens a second session, which a replay does not have (README "Time"). Its id is its
    own: a consumer that de-duplicates sessions on ``session_id`` would drop it."""
    shard = Live()
    p, q = shard.p, shard.q
    shard.deliver(q.set_idle(True))
    shard.deliver(p.feed_events([ev("ann", 0, "Home", mid="m0")], WALL))
    shard.deliver(p.set_idle(True))
    shard.deliver(q.feed_events([ev("zed", WALL - T0 - 5)], WALL))
    pages = [ev("ann", 0, "Home", mid="m1"), ev("ann", 1, "Home", mid="m2")]
    shard.deliver(p.feed_events(pages, WALL))
    ids = [s.session_id for s in shard.end() if isinstance(s, Session) and s.user_id == "ann"]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert ids[0] == f"ann:{ids[0].split(':', 1)[1]}"  # the first keeps the plain form
