"""Tests that kill the mutants a hand mutation run of core logic left alive (issue 10).

Each test pins one mechanism at its exact boundary, on a stream small enough to be
worked out by hand, with no default condition masking it. The mutation each one kills
is named in its docstring. (Lateness ``<`` → ``<=`` is killed by
tests/test_routing.py::test_late_means_older_than_its_own_partitions_watermark_by_more_than_the_lateness.)
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import ingested

from audienceflow.operators.caps import DAY, FrequencyCaps
from audienceflow.operators.config import Located, load_located, merge
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import (
    Action,
    DeadLetter,
    Event,
    Filtered,
    ProfileUpdate,
    SegmentChange,
    Session,
)
from audienceflow.operators.routing import OUT, PartitionIngest
from audienceflow.operators.settings import Settings, build
from audienceflow.operators.state import UserState
from audienceflow.operators.validate import Taxonomy, Validator
from audienceflow.operators.watermarks import PartitionClock

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z


def settings(**sections: dict[str, Any]) -> Settings:
    return build(merge(load_located(None, {}), Located(sections)), {})


def ev(user: str, t: float, name: str = "Home", mid: str | None = None, **props: Any) -> Event:
    etype = "page" if name in ("Home", "Deals") else "track"
    cat = Taxonomy.default().category(etype, name)
    return Event(mid or f"{user}-{t}-{name}", user, None, etype, name, T0 + t, cat, props)


def make_ingest(cfg: Settings, live: bool = False) -> PartitionIngest:
    clock = PartitionClock(cfg.lateness, cfg.max_future, cfg.watermark_quorum, cfg.watermark_window)
    return PartitionIngest(
        "p",
        Validator(cfg.taxonomy, cfg.consent_path),
        Privacy(cfg.pii_fields, cfg.pii_mode, ""),
        1,
        cfg.tick,
        clock,
        live=live,
    )


def run(cfg: Settings, events: list[Event], batch: int = 1) -> list[Any]:
    """One partition in front of one shard; ``batch`` items per engine call."""
    ingest = make_ingest(cfg)
    keyed = ingest.feed_events(events) + ingest.end()
    out: list[Any] = [v for k, v in keyed if k == OUT]
    items = [v for k, v in keyed if k != OUT]
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    for i in range(0, len(items), batch):
        out += eng.on_items(items[i : i + batch])
    return out + eng.finish()


def actions(out: list[Any], name: str) -> list[tuple[str, float]]:
    return [(a.user_id, a.at - T0) for a in out if isinstance(a, Action) and a.action == name]


# --- 1. timer cancellation -------------------------------------------------------


def test_a_cancel_event_stops_a_timer_whose_rule_does_not_read_the_cart() -> None:
    """Kills: TimerTrigger.receive's cancel branch removed (no `when` to hide it)."""
    cfg = settings(
        triggers={
            "nudge": {
                "type": "timer",
                "start_on": ["Product Viewed"],
                "cancel_on": ["Product Added"],
                "after": "1h",
            }
        }
    )
    out = run(
        cfg,
        [
            ev("ann", 0, "Product Viewed", product_id="p1"),
            ev("carl", 0, "Product Viewed", product_id="p1"),
            ev("ann", 600, "Product Added", product_id="p1", price=5),  # cancels ann's
            ev("bob", 3 * 3600.0),
        ],
    )
    # carl was never cancelled: his nudge fires at 08:00 + 1h; ann gets none.
    assert actions(out, "nudge") == [("carl", 3600.0)]


# --- 2. an order at the same instant as an add ------------------------------------


@pytest.mark.parametrize("order_first", [False, True], ids=["add-then-order", "order-then-add"])
def test_an_order_at_the_same_instant_as_an_add_cancels_it_in_either_arrival_order(
    order_first: bool,
) -> None:
    """Kills: the cancel's `item.ts >= due - after` -> `>` (add arriving first), and the
    start's `item.ts > cancelled` -> `>=` (order arriving first).

    Simultaneous events of one user may arrive in either order (two partitions, two
    devices); the outcome must not depend on it: an order at the instant of the add
    closes that cart. ``paid`` is the same timer without the default `cart_items > 0`,
    which would hide a surviving timer once the order has emptied the cart. Dan's add,
    alone, is the control.
    """
    paid = {"type": "timer", "start_on": ["Product Added"], "cancel_on": ["Order Completed"]}
    cfg = settings(triggers={"paid": {**paid, "after": "15m"}})
    add = ev("ann", 0, "Product Added", product_id="p1", price=5)
    order = ev("ann", 0, "Order Completed", total=5)
    out = run(
        cfg,
        [
            *([order, add] if order_first else [add, order]),
            ev("dan", 0, "Product Added", product_id="p2", price=3),
            ev("bob", 3600.0),
        ],
    )
    assert actions(out, "cart_abandonment") == [("dan", 900.0)]
    assert actions(out, "paid") == [("dan", 900.0)]


# --- 3. cooldown edge ------------------------------------------------------------


def test_the_cooldown_ends_exactly_cooldown_after_the_last_delivered_action() -> None:
    """Kills: caps `at - max(same) < cool` → `<=` (and the cooldown removed)."""
    caps = FrequencyCaps({"default": 10}, 10, {"default": 3600.0})
    early, edge = UserState("a", T0), UserState("b", T0)
    assert caps.decide(early, "email", T0) is None
    assert caps.decide(early, "email", T0 + 3599.999) == "cooldown"
    assert caps.decide(edge, "email", T0) is None
    assert caps.decide(edge, "email", T0 + 3600.0) is None


# --- 4. 24 h cap window edge -----------------------------------------------------


def test_an_action_exactly_a_day_after_the_first_starts_a_new_cap_window() -> None:
    """Kills: caps `t > at - DAY` → `>=` (and a longer window)."""
    caps = FrequencyCaps({"default": 1}, 10, {"default": 0.0})
    early, edge = UserState("a", T0), UserState("b", T0)
    assert caps.decide(early, "email", T0) is None
    assert caps.decide(early, "email", T0 + DAY - 0.001) == "frequency_cap"
    assert caps.decide(edge, "email", T0) is None
    assert caps.decide(edge, "email", T0 + DAY) is None


# --- 5. dedup window -------------------------------------------------------------


def test_the_dedup_window_filters_a_reused_message_id_within_it_and_not_after() -> None:
    """Kills: `state.dedup_window` x60 (or x2): a message id reused 70 min after its
    first use (a later timestamp) is processed, within 30 min it is filtered.

    A true copy (same id and timestamp) can never outlive the window: it is late first
    (allowed_lateness 2m < dedup_window 1h), so ingest dead-letters it before dedup.
    """
    cfg = settings(time={"watermark_quorum": 1}, state={"dedup_window": "1h"})
    out = run(
        cfg,
        [
            ev("ann", 0, mid="a"),
            ev("carl", 0, mid="c"),
            ev("erin", 0, mid="e"),
            ev("dan", 1800.0),  # stream time ≈ 08:28: nothing forgotten yet
            ev("carl", 1800.0, mid="c"),  # 30 min on: a duplicate
            ev("bob", 4200.0),  # stream time ≈ 09:08: ids of 08:00 forgotten
            ev("ann", 4200.0, mid="a"),  # 70 min on: a new event
            ev("erin", 0, mid="e"),  # the copy itself: late, before dedup
        ],
    )
    assert [(f.reason, f.message_id) for f in out if isinstance(f, Filtered)] == [
        ("duplicate", "c")
    ]
    assert [d.reason for d in out if isinstance(d, DeadLetter)] == ["late_event"]
    events = {
        u: sum(s.events for s in out if isinstance(s, Session) and s.user_id == u)
        for u in ("ann", "carl", "erin")
    }
    assert events == {"ann": 2, "carl": 1, "erin": 1}


def test_the_dedup_verdict_depends_on_the_two_event_times_not_on_the_watermark_cadence() -> None:
    """Kills: judging a reuse by whether stream time has forgotten the first use (with
    a 1-day tick no watermark comes between them, so the first would still be
    remembered), and `abs(dt) <= window` → `<`: exactly the window apart is a copy,
    1 ms more is a new event."""
    cfg = settings(time={"watermark_quorum": 1, "tick": "1d"}, state={"dedup_window": "1h"})
    out = run(
        cfg,
        [
            ev("ann", 0, mid="a"),
            ev("bob", 0, mid="b"),
            ev("bob", 3600.0, mid="b"),  # exactly the window: a copy
            ev("carl", 3600.001, mid="b"),  # 1 ms more than the window from the first
            ev("ann", 4200.0, mid="a"),  # 70 min on: a new event
        ],
    )
    assert not [d for d in out if isinstance(d, DeadLetter)]
    assert [(f.reason, f.message_id) for f in out if isinstance(f, Filtered)] == [
        ("duplicate", "b")
    ]
    events = {
        u: sum(s.events for s in out if isinstance(s, Session) and s.user_id == u)
        for u in ("ann", "bob", "carl")
    }
    assert events == {"ann": 2, "bob": 1, "carl": 1}


# --- 6. lateness: tests/test_routing.py (see the module docstring) -----------------

# --- 7. max_future edge ----------------------------------------------------------


def test_max_future_is_judged_at_its_exact_edge_in_replay_and_live() -> None:
    """Kills: `max_future` x100 (a 1 h setting; 1 ms beyond it is future) and `>` → `>=`."""
    cfg = settings(time={"watermark_quorum": 1, "max_future": "1h"})

    def dead(events: list[Event], live: bool = False, now: float | None = None) -> list[str]:
        ing = make_ingest(cfg, live=live)
        keyed = ingested(ing.feed_events(events, now) + ([] if live else ing.end()))
        return [v.reason for k, v in keyed if k == OUT]

    # replay: against the partition's time (its first event here); an event beyond it
    # is held until the end shows no other event followed it there
    assert dead([ev("ann", 0), ev("ann", 3600.0, mid="x")]) == []
    assert dead([ev("ann", 0), ev("ann", 3600.001, mid="x")]) == ["future_event"]
    # live: against the wall clock given as `now`, whatever the partition's time
    now = T0 - 86400.0
    assert dead([ev("ann", -86400.0 + 3600.0)], live=True, now=now) == []
    assert dead([ev("ann", -86400.0 + 3600.001)], live=True, now=now) == ["future_event"]


# --- 8. eviction time ------------------------------------------------------------


def test_an_idle_user_is_evicted_exactly_history_window_after_its_last_event() -> None:
    """Kills: eviction at `history_window` x2 (or any other time than last + window)."""
    cfg = settings(state={"history_window": "2h"})
    evs = [ev("ann", t, "Video Content Completed", category="cooking") for t in (0, 1, 2)]
    out = run(cfg, [*evs, ev("bob", 5 * 3600.0)], batch=2)
    exits = [
        (c.segment, c.at - T0, c.reason)
        for c in out
        if isinstance(c, SegmentChange) and c.user_id == "ann" and c.change == "exit"
    ]
    # recent_engager (active_within(1h)) ends by its rule an hour after the last event;
    # the category segment holds until ann, idle since 08:00:02, is forgotten 2 h later.
    assert exits == [
        ("recent_engager", 2.0 + 3600.0, exits[0][2]),
        ("video_enthusiast:cooking", 2.0 + 7200.0, {"rule": "eviction", "idle_seconds": 7200.0}),
    ]


# --- 9. Kafka flush before the snapshot ------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_snapshot_returns_only_when_every_record_is_acknowledged(kafka_broker: str) -> None:
    """Kills: `self.kafka.flush()` removed from `_WorkerPartition.snapshot`, or put back
    into `write_batch` (which then waits for every batch's acknowledgements again).

    Bytewax snapshots an epoch once its sink partition's `snapshot()` has returned, so
    nothing may still wait in the producer's queue then: librdkafka counts a message
    there until its acknowledgement was served, which only a flush (or poll) does.
    """
    from servers import consume_all, create_topics

    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    topic = "mutants.changes"
    create_topics(kafka_broker, [topic], partitions=1)
    topics = Topics(topic, "mutants.actions", "mutants.sessions", "mutants.dead")
    kafka = KafkaOutput(kafka_broker, background=False)  # only a flush serves acks
    sink = _WorkerPartition(kafka, topics, None)
    try:
        changes = [
            SegmentChange(f"u{i}", "active_now", "enter", T0 + i, {"rule": "active_now"})
            for i in range(50)
        ]
        sink.write_batch(changes)
        assert len(kafka.producer) == 50  # the write did not wait for the broker
        assert sink.snapshot() is None
        assert len(kafka.producer) == 0  # nothing still waits for the broker
        assert kafka.failed == []
        assert len(consume_all(kafka_broker, topic, timeout=30.0)) == 50
    finally:
        sink.close()


def _counts() -> dict[str, float]:
    from audienceflow.flows import metrics

    counters = {
        "processed": metrics.PROCESSED,
        "dead": metrics.DEAD_LETTERED,
        "filtered": metrics.FILTERED,
        "control": metrics.CONTROL_DEAD_LETTERED,
    }
    return {name: metrics.total(c) for name, c in counters.items()}


def _accounted_batch() -> list[Any]:
    from audienceflow.flows.dataflow import BatchDone

    return [  # the values of a batch (a sink partition is given no keys)
        SegmentChange("u1", "active_now", "enter", T0, {"rule": "x"}),
        ProfileUpdate("u1", {"n": 1}),
        DeadLetter("not_json", "bad", "in:0:1", "{"),
        DeadLetter("not_json", "bad", "in:0:2", "{"),
        DeadLetter("bad_request", "bad", "control:0:1", "{}", "control"),
        Filtered("duplicate", "in:0:3", "m1"),
        BatchDone(None, None, 7),
    ]


ACCOUNTED = {"processed": 7, "dead": 2, "filtered": 1, "control": 1}


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_events_are_counted_processed_only_once_their_batch_is_stored(
    kafka_broker: str, redis_server: str
) -> None:
    """Kills: the accounting counters (`audienceflow_events_processed`, `_dead_lettered`,
    `_filtered`, `_control_dead_lettered`) moved as the batch is read, before its
    profiles reach Redis and its records are acknowledged by Kafka.

    A reader that waits for the counts (an operator's dashboard, the fault tests) must
    then find the profiles and records of every event they cover.
    """
    from servers import create_topics

    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.redis_store import ProfileStore
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    seen: dict[str, dict[str, float]] = {}

    class Store(ProfileStore):
        def write(self, updates: Any) -> int:
            seen["at_redis_write"] = _counts()
            return super().write(updates)

    topics = Topics("counted.changes", "counted.actions", "counted.sessions", "counted.dead")
    create_topics(kafka_broker, [topics.segment_changes, topics.dead_letters], partitions=1)
    # No background thread: the acknowledgements wait until the snapshot's flush serves them.
    kafka = KafkaOutput(kafka_broker, background=False)
    sink = _WorkerPartition(kafka, topics, Store(redis_server, "counted:"))
    try:
        before = _counts()
        sink.write_batch(_accounted_batch())
        assert seen == {"at_redis_write": before}
        assert _counts() == before  # written, not yet acknowledged: not counted
        sink.snapshot()
        after = _counts()
        assert {k: after[k] - before[k] for k in after} == ACCOUNTED
    finally:
        sink.close()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_batch_is_counted_once_stored_without_waiting_for_the_epoch(
    kafka_broker: str,
) -> None:
    """Kills: the producer's background thread that serves acknowledgements (without
    it a batch is counted, and its latency observed, only at the epoch's end: up to a
    snapshot interval late, and on a quiet input never before it)."""
    from servers import create_topics

    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    topics = Topics("bg.changes", "bg.actions", "bg.sessions", "bg.dead")
    create_topics(kafka_broker, [topics.segment_changes, topics.dead_letters], partitions=1)
    sink = _WorkerPartition(KafkaOutput(kafka_broker), topics, None)
    try:
        before = _counts()
        sink.write_batch(_accounted_batch())
        deadline = time.monotonic() + 30.0
        moved: dict[str, float] = {}
        while moved != ACCOUNTED and time.monotonic() < deadline:
            time.sleep(0.02)
            after = _counts()
            moved = {k: after[k] - before[k] for k in after}
        after = _counts()
        assert {k: after[k] - before[k] for k in after} == ACCOUNTED
    finally:
        sink.close()


class _Refused:
    def str(self) -> str:
        return "Broker: Message size too large"

    def topic(self) -> str:
        return "t"


@pytest.mark.timeout(30)
def test_batches_are_told_stored_in_the_order_they_were_sealed() -> None:
    """Kills: a batch counted while one sealed before it still waits for an
    acknowledgement (delivery reports of different partitions come in any order), a
    batch counted before all of its records are acknowledged, and a refused record's
    batch counted at all."""
    from audienceflow.flows.kafka_io import KafkaOutput, KafkaUnavailable
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    kafka = KafkaOutput("127.0.0.1:9", background=False)  # never connects: reports by hand
    told: list[int] = []
    try:
        first = kafka.open
        first.sent = 2  # as two sends count them
        kafka.seal(lambda: told.append(1))
        second = kafka.open
        second.sent = 1
        kafka.seal(lambda: told.append(2))
        kafka._delivered(second, None, None)
        assert told == []  # the second is stored, the first is not yet
        kafka._delivered(first, None, None)
        assert told == []  # one of its two records
        kafka._delivered(first, None, None)
        assert told == [1, 2]
        kafka.seal(lambda: told.append(3))  # nothing sent, nothing before it: at once
        assert told == [1, 2, 3]
        refused = kafka.open
        refused.sent = 1
        kafka.seal(lambda: told.append(4))
        kafka.seal(lambda: told.append(5))
        kafka._delivered(refused, _Refused(), _Refused())
        assert told == [1, 2, 3]  # never stored, nor anything after it
        # The worker stops at its next write (or its epoch's flush), the record named.
        sink = _WorkerPartition(kafka, Topics("c", "a", "s", "d"), None)
        with pytest.raises(
            KafkaUnavailable, match=r"refused 1 messages: \['t: Broker: Message size"
        ):
            sink.write_batch([])
    finally:
        kafka.closed.set()


@pytest.mark.timeout(30)
def test_a_sink_partition_is_one_per_name_and_connects_on_its_first_write() -> None:
    """Kills: a producer (and Redis client) made for every partition Bytewax builds: on
    resume it builds each one it holds a snapshot of, written to again or not, and a
    partition built for its first items again from its snapshot."""
    from audienceflow.flows.worker_sink import Topics, WorkerSink

    sink = WorkerSink("127.0.0.1:9", Topics("c", "a", "s", "d"), {}, None, workers=2)
    part = sink.build_part("out", "out-001", None)
    assert sink.build_part("out", "out-001", None) is part
    assert sink.build_part("out", "out-000", None) is not part
    assert part.part is None  # nothing written: no producer
    assert part.snapshot() is None
    part.close()


# --- 10. Redis TTL ---------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_each_profile_key_expires_after_the_configured_ttl(redis_server: str) -> None:
    """Kills: the `expire` on each profile key removed (in `_write`)."""
    import redis

    from audienceflow.flows.redis_store import ProfileStore

    store = ProfileStore(redis_server, "mutants:ttl:", ttl=4321)
    client = redis.Redis.from_url(redis_server)
    try:
        client.delete("mutants:ttl:u1", "mutants:ttl:u2")
        client.hset("mutants:ttl:u2", mapping={"old": "1"})  # a key with no TTL before
        store.write([ProfileUpdate("u1", {"n": 1}), ProfileUpdate("u2", {"n": 2})])
        started = time.monotonic()
        for key in ("mutants:ttl:u1", "mutants:ttl:u2"):
            ttl = client.ttl(key)
            assert 4321 - (time.monotonic() - started) - 1 <= ttl <= 4321, (key, ttl)
    finally:
        client.delete("mutants:ttl:u1", "mutants:ttl:u2")
        client.close()
        store.close()
