"""What the engine outputs does not depend on how its items are batched: not even the order.

The same items handed to an engine in one batch (or batches of any size) and one at a
time (the end of each ``on_items`` runs all that is due) give equal outputs, record for
record and in order: watermarks at an event's time (the events after it at that time
are applied at once, after the deadlines due before them), just before it, and deletion
requests, across session timeouts, cart timers and segment re-checks. It guards the
hub's looks for due work between items (``ShardEngine.on_items``): skipping the look
after a watermark makes it fail (tried).
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_rule_registry import DEVICES, KINDS, T0

from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import ControlRequest, Event, Watermark
from audienceflow.operators.settings import Settings

USERS = ["ann", "bob", "cat"]
# Gaps around the session timeout (30 min), the cart timer and a re-check (1 h, 24 h).
GAPS = [0.0, 1.0, 60.0, 900.0, 1799.0, 1800.0, 2400.0, 3600.0, 7200.0, 86400.0]


@functools.cache
def _settings() -> Settings:
    return Settings.load(environ={"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"})


def _engine() -> ShardEngine:
    return ShardEngine(_settings(), ShardState("shard-000"), partitions=["p"])


def _event(i: int, uid: str, ts: float, kind: int, device: int) -> Event:
    etype, name, props = KINDS[kind]
    return Event(
        f"m{i}",
        uid,
        None,
        etype,
        name,
        ts,
        "identity" if etype == "identify" else "other",
        {} if etype == "identify" else dict(props),
        device=DEVICES[device],
        traits=dict(props) if etype == "identify" else None,
    )


# One step: (gap, user, kind of event, device, what follows it: 0 nothing, 1 a watermark
# at the event's time (the next events at that time are applied at once), 2 a watermark
# just before it, 3 a deletion request of the user at the event's time).
steps = st.lists(
    st.tuples(
        st.sampled_from(GAPS),
        st.integers(0, len(USERS) - 1),
        st.integers(0, len(KINDS) - 1),
        st.integers(0, len(DEVICES) - 1),
        st.sampled_from([0, 0, 0, 1, 1, 2, 3]),
    ),
    min_size=1,
    max_size=40,
)


def _items(plan: list[tuple[float, int, int, int, int]]) -> list[Any]:
    items: list[Any] = []
    ts = T0
    for i, (gap, u, kind, device, then) in enumerate(plan):
        ts += gap
        items.append(_event(i, USERS[u], ts, kind, device))
        if then == 1:
            items.append(Watermark("p", ts))
        elif then == 2:
            items.append(Watermark("p", ts - 1.0))
        elif then == 3:
            items.append(ControlRequest("delete", (USERS[u],), f"r{i}", ts))
    items.append(Watermark("p", ts))
    return items


def _records(out: list[Any]) -> list[Any]:
    return [(type(o).__name__, o.to_json() if hasattr(o, "to_json") else o) for o in out]


@settings(max_examples=150, deadline=None)
@given(steps, st.data())
def test_a_batch_gives_what_its_items_one_at_a_time_give(
    plan: list[tuple[float, int, int, int, int]], data: st.DataObject
) -> None:
    items = _items(plan)
    plain = _engine()
    want: list[Any] = []
    for item in items:
        want += plain.on_items([item])
    want += plain.finish()
    fast = _engine()
    got: list[Any] = []
    cut = data.draw(st.integers(1, len(items)), label="batch size")
    for i in range(0, len(items), cut):
        got += fast.on_items(items[i : i + cut])
    got += fast.finish()
    assert _records(got) == _records(want)
