"""The worker's parts without servers: its config, Redis encoding, dead-letter keys,
metrics flattening, arrival stamps through the dataflow, and stop-versus-end of input."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Stream
from bytewax.testing import TestingSink, TestingSource, run_main
from helpers import ev, keyed_items

from audienceflow.flows.dataflow import Arrival, BatchDone, build_flow
from audienceflow.flows.kafka_io import KafkaInput
from audienceflow.flows.metrics import model_numbers
from audienceflow.flows.redis_store import decode, encode
from audienceflow.flows.worker import StartupError, read_addresses
from audienceflow.flows.worker_config import WorkerOptions
from audienceflow.flows.worker_sink import dead_letter_key
from audienceflow.operators.clock import StreamClock
from audienceflow.operators.records import (
    DeadLetter,
    DueMark,
    SegmentChange,
    Session,
    ShardStats,
)
from audienceflow.operators.settings import Settings


def options(**env: str) -> WorkerOptions:
    return WorkerOptions.of(Settings.load(environ=env))


def test_worker_options_default_to_the_documented_values() -> None:
    o = options()
    assert (o.brokers, o.input_topic, o.tail, o.batch_size) == (
        "127.0.0.1:9092",
        "clickstream",
        True,
        1000,
    )
    assert o.topics.names() == [
        "audienceflow.segment-changes",
        "audienceflow.actions",
        "audienceflow.sessions",
        "audienceflow.dead-letters",
        "audienceflow.identities",
        "audienceflow.control-receipts",
    ]
    assert o.control_topic == "audienceflow.control"
    assert options(AUDIENCEFLOW_KAFKA__CONTROL_TOPIC="null").control_topic is None
    assert (o.redis_url, o.redis_prefix, o.redis_ttl) == (None, "af:profile:", 30 * 86400.0)
    assert (o.recovery_dir, o.snapshot_interval, o.recovery_partitions) == (None, 30.0, 8)
    assert (o.metrics_host, o.metrics_port) == ("127.0.0.1", None)


def test_profile_fields_are_json_values_in_redis_and_come_back_equal() -> None:
    fields = {
        "user_id": "u1",
        "segments": ["a", "b"],
        "cluster": 2,
        "intent_score": 0.25,
        "device": None,
        "video_completions": {"tech": 3},
    }
    stored = encode(fields)
    assert stored["user_id"] == b'"u1"' and stored["device"] == b"null"
    assert decode({k.encode(): v for k, v in stored.items()}) == fields


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ('{"userId": "u7", "type": "nope"}', b"u7"),
        ('{"anonymousId": "a9"}', b"a9"),
        ('{"userId": 5}', b"5"),  # a whole number is an id (validate)
        ('{"userId": true}', b"in:0:3"),
        ('{"userId": 5.5}', b"in:0:3"),
        ("not json", b"in:0:3"),
        ("m-123", b"in:0:3"),  # a late event's dead letter carries its message id
        # bytes that were not UTF-8, decoded with "replace": not the sender's id
        (b'{"userId": "u\xff7"}'.decode("utf-8", "replace"), b"in:0:3"),
        ('{"userId": "u\ufffd7", "anonymousId": "a9"}', b"a9"),
        # An id validation refused as one (wrong_field_type, oversize_field) keyed its
        # dead letter as is: a terminal's escape sequence, a NUL, a key of 20 KB.
        ('{"userId": "u\\u001b[2J\\n"}', b"in:0:3"),
        ('{"userId": "u\\u0000", "anonymousId": "a9"}', b"a9"),
        ('{"userId": "' + "x" * 20_000 + '"}', b"in:0:3"),
        ('{"userId": "' + "x" * 512 + '"}', b"x" * 512),
        ('{"userId": "\u202eu1"}', "\u202eu1".encode()),  # an id an event may have
    ],
)
def test_dead_letters_are_keyed_by_user_when_the_line_names_one(raw: str, key: bytes) -> None:
    assert dead_letter_key(DeadLetter("x", "detail", "in:0:3", raw)) == key


def test_model_reports_flatten_to_numbers() -> None:
    report = {
        "intent": {"roc_auc": 0.75, "model": "logistic"},
        "drift": {"fired": True},
        "_table": {"a": 1},
        "clustering": {"clusters": {"0": {"size": 3}}},
    }
    assert dict(model_numbers(report)) == {
        "intent.roc_auc": 0.75,
        "drift.fired": 1.0,
        "clustering.clusters.0.size": 3.0,
    }


def test_a_model_number_the_shard_no_longer_reports_leaves_the_metrics() -> None:
    # DBSTREAM's clusters come and go: a series per cluster id ever reported would grow
    # as long as the worker runs. Another shard's series stay.
    from audienceflow.flows import metrics
    from audienceflow.flows.worker_sink import _shard_gauges
    from audienceflow.operators.records import ShardStats

    def report(shard: str, clusters: dict[str, int]) -> None:
        sizes = {c: {"size": n} for c, n in clusters.items()}
        _shard_gauges(
            ShardStats(shard, 0, {}, {}, 0, {"models": {"clustering": {"clusters": sizes}}})
        )

    def series() -> dict[tuple[str, str], float]:
        (family,) = metrics.MODEL.collect()
        return {
            (s.labels["shard"], s.labels["metric"]): s.value
            for s in family.samples
            if s.labels["shard"].startswith("gauge-test-")
        }

    report("gauge-test-a", {"1": 3, "2": 4})
    report("gauge-test-b", {"1": 5})
    report("gauge-test-a", {"2": 6, "3": 1})
    assert series() == {
        ("gauge-test-a", "clustering.clusters.2.size"): 6.0,
        ("gauge-test-a", "clustering.clusters.3.size"): 1.0,
        ("gauge-test-b", "clustering.clusters.1.size"): 5.0,
    }


def test_addresses_come_from_the_option_or_a_file(tmp_path: Path) -> None:
    assert read_addresses("a:1; b:2", None) == ["a:1", "b:2"]
    hosts = tmp_path / "hosts"
    hosts.write_text("a:1\n\nb:2\n")
    assert read_addresses(None, str(hosts)) == ["a:1", "b:2"]
    assert read_addresses(None, None) is None
    with pytest.raises(StartupError, match="host:port"):
        read_addresses("a;b", None)


def test_a_restarted_clock_waits_for_every_partition_to_say_again_that_it_is_idle() -> None:
    wall = [1000.0]
    clock = StreamClock(lateness=0.0, idle_after=10.0)
    clock.expect(["a", "b"])
    clock.update("a", 500.0, True)
    clock.update("b", 400.0, True)
    assert clock.now(lambda: wall[0]) == 990.0  # all idle: the wall clock less idle_after
    fresh = StreamClock(lateness=0.0, idle_after=10.0)
    fresh.expect(["a", "b"])
    fresh.update("a", 500.0, True)
    fresh.update("b", 400.0, True)
    assert fresh.now(lambda: wall[0]) == 990.0  # the time a snapshot then holds
    fresh.restarted()  # resumed: a backlog may wait in either partition
    wall[0] = 2000.0
    assert fresh.now(lambda: wall[0]) == 990.0  # not the wall clock's 1990: never back either


LINES = [
    orjson.dumps(e)
    for e in (
        ev("ann", 0, "Home"),
        ev("bob", 1, "Product Added", product_id="p", price=3.0),
        ev("ann", 2, "Home"),
        ev("bob", 40, "Home"),
        ev("cid", 90, "Home"),
    )
] + [b"not json"]


def _run(
    items: list[Any], batch: int = 1000, environ: dict[str, str] | None = None, **kw: Any
) -> list[Any]:
    settings = Settings.load(
        environ={
            "AUDIENCEFLOW_STATE__SHARDS": "3",
            "AUDIENCEFLOW_MODELS__ENABLED": "false",
            **(environ or {}),
        }
    )
    out: list[Any] = []

    def attach(prefix: str, stream: Stream[Any]) -> None:
        op.output(prefix, stream, TestingSink(out))

    keyed = keyed_items(settings, items, batch=batch)
    flow = build_flow(
        settings, TestingSource(keyed, batch_size=3), attach, partitions=["in:0"], **kw
    )
    run_main(flow)
    return [rec for _, rec in out]


def test_arrival_stamps_change_no_output_and_account_for_every_event() -> None:
    items = [(f"in:0:{i}", line) for i, line in enumerate(LINES)]
    plain = _run(items, replay=True)
    stamped_items: list[Any] = []
    for i in range(0, len(items), 2):
        stamped_items += [Arrival(100.0 + i, 50.0 + i), *items[i : i + 2]]
    stamped = _run(stamped_items, replay=True, stamped=True)
    done = [r for r in stamped if type(r) is BatchDone]
    marks = (BatchDone, DueMark)  # markers for the live sink's latency metrics, not outputs
    assert sorted(map(repr, (r for r in stamped if type(r) not in marks))) == sorted(
        map(repr, plain)
    )
    assert any(type(r) is DueMark for r in stamped)
    assert sum(d.processed for d in done) == 5
    # events held back (the file's first ones wait for its first watermark) count when applied
    assert {d.arrival for d in done} - {None} <= {100.0, 102.0, 104.0}
    assert all(d.upstream == d.arrival - 50.0 for d in done if d.arrival is not None)


@pytest.mark.timeout(60)
def test_a_batch_is_reported_done_once_its_events_are_applied_not_when_it_arrives() -> None:
    # Batch A's events wait for stream time (1 minute of lateness); batch B's events, up
    # to 30 minutes later, move stream time past them. A's stamp must come with the
    # events' count and after their outputs, not at once with nothing applied: then the
    # sink's latency would be of outputs written with a later batch, not of A's own.
    settings = {
        "AUDIENCEFLOW_STATE__SHARDS": "1",  # BatchDone names no shard: one to read
        "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "1m",
        "AUDIENCEFLOW_TIME__WATERMARK_QUORUM": "1",  # each line moves the partition's time
    }
    a = [ev("ann", 0, "Home"), ev("bob", 0.5, "Home")]
    b = [ev("ann", 5, "Home"), ev("cid", 30, "Home")]
    items: list[Any] = [Arrival(100.0, 90.0)]
    items += [(f"in:0:{i}", orjson.dumps(e)) for i, e in enumerate(a)]
    items += [Arrival(200.0, 190.0)]
    items += [(f"in:0:{i}", orjson.dumps(e)) for i, e in enumerate(b, len(a))]
    out = _run(items, replay=True, stamped=True, batch=2, environ=settings)

    def first(pred: Any) -> int:
        return next(i for i, r in enumerate(out) if pred(r))

    def applied_by(i: int) -> int:
        return sum(r.processed for r in out[: i + 1] if type(r) is BatchDone)

    done_a = first(lambda r: type(r) is BatchDone and r.arrival == 100.0)
    assert out[done_a].upstream == 90.0
    assert applied_by(done_a) >= 2  # A's two events, applied once B's watermark came
    assert done_a > first(lambda r: type(r) is SegmentChange and r.user_id == "bob")
    # B's last event is held until the end of input: its stamp comes with it.
    done_b = first(lambda r: type(r) is BatchDone and r.arrival == 200.0)
    assert done_b > first(lambda r: type(r) is SegmentChange and r.user_id == "cid")
    assert applied_by(done_b) == 4


@pytest.mark.timeout(60)
def test_a_batch_of_only_a_late_event_is_done_after_its_dead_letter_not_before() -> None:
    """A late event's dead letter waits at its shard for stream time to reach the
    partition's watermark at its rejection (``records.Rejected``). A batch holding only
    such a line has no event to wait for, so its stamp was released at once: the latency
    of an output not yet written. Here partition in:1 holds stream time back until the
    end of its input, so the dead letter waits until then."""
    environ = {
        "AUDIENCEFLOW_STATE__SHARDS": "1",  # BatchDone names no shard: one to read
        "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "1m",
        "AUDIENCEFLOW_TIME__WATERMARK_QUORUM": "1",  # each line moves the partition's time
        "AUDIENCEFLOW_MODELS__ENABLED": "false",
    }
    settings = Settings.load(environ=environ)
    first = [ev("ann", 0, "Home"), ev("bob", 3600, "Home")]
    zero: list[Any] = [Arrival(100.0, 90.0)]
    zero += [(f"in:0:{i}", orjson.dumps(e)) for i, e in enumerate(first)]
    zero += [Arrival(200.0, 190.0), ("in:0:2", orjson.dumps(ev("ann", 1, "Home")))]  # late
    one = [("in:1:0", orjson.dumps(ev("cid", 0, "Home")))]
    keyed = keyed_items(settings, zero, batch=2) + keyed_items(settings, one, "in:1")
    out: list[Any] = []

    def attach(prefix: str, stream: Stream[Any]) -> None:
        op.output(prefix, stream, TestingSink(out))

    flow = build_flow(settings, TestingSource(keyed, batch_size=3), attach,
                      partitions=["in:0", "in:1"], replay=True, stamped=True)  # fmt: skip
    run_main(flow)
    records = [rec for _, rec in out]
    dead = next(i for i, r in enumerate(records) if type(r) is DeadLetter)
    assert records[dead].reason == "late_event"
    done = next(i for i, r in enumerate(records) if type(r) is BatchDone and r.arrival == 200.0)
    assert done > dead, records


def test_a_requested_stop_is_not_the_end_of_the_stream() -> None:
    items = [(f"in:0:{i}", line) for i, line in enumerate(LINES)]
    ended = _run(items, replay=True)
    stopped = _run(items, replay=True, stopping=lambda: True)
    assert any(type(r) is ShardStats for r in ended)
    assert not any(type(r) is ShardStats for r in stopped)  # finish() did not run
    open_at_stop = [r for r in ended if type(r) is Session and r.user_id == "cid"]
    assert open_at_stop and not [r for r in stopped if type(r) is Session and r.user_id == "cid"]


def test_the_progress_line_reports_rates_stream_time_lag_and_held_events() -> None:
    from audienceflow.flows.progress import line

    before = {"audienceflow_events_in_total": 100.0, "audienceflow_events_processed_total": 90.0}
    now = {
        "audienceflow_events_in_total": 1100.0,
        "audienceflow_events_processed_total": 1050.0,
        "audienceflow_dead_lettered_total": 20.0,
        "audienceflow_filtered_total": 30.0,
        "audienceflow_input_lag": 12.0,
        "audienceflow_buffered_events": 7.0,
        "stream_time": 1772438400.0,
        "spread": 35.0,
    }
    text = line(now, before, 10.0)
    assert text.startswith("progress: in 100/s out 101/s")  # (1100-100)/10, (1100-90)/10
    assert "stream time 2026-03-02T08:00:00.000Z" in text and "spread 35s" in text
    assert "lag 12 msgs" in text and "held 7" in text


def test_alignment_pauses_a_partition_running_ahead_of_the_slowest_active_one() -> None:
    from audienceflow.flows.partitions import Alignment

    a = Alignment(within=600.0)
    a.report("p0", 1000.0, False)
    a.report("p1", 1600.0, False)  # exactly `within` ahead: keeps reading
    assert not a.ahead("p1") and not a.ahead("p0")
    a.report("p1", 1600.5, False)  # beyond it: pauses until p0 catches up
    assert a.ahead("p1") and not a.ahead("p0")
    a.report("p0", 1000.0, True)  # p0 has nothing to read (or is idle): it holds no one back
    assert not a.ahead("p1")
    a.report("p2", float("-inf"), False)  # a partition without a time yet holds no one back
    assert not a.ahead("p1") and a.spread() == 0.0


@pytest.mark.parametrize("tail", [True, False])
@pytest.mark.parametrize("control", [False, True])
def test_a_partition_read_to_its_end_is_idle_only_at_its_end(tail: bool, control: bool) -> None:
    """Read live, a partition silent for ``idle_after`` turns idle (a control partition
    at once); read to its end, never before its end, however long its first fetch takes:
    else stream time could pass a request or an event it had not yet delivered. (The broker's
    address is closed: nothing is ever fetched.)"""
    source = KafkaInput(
        "127.0.0.1:9",
        "in",
        Settings.load(environ={"AUDIENCEFLOW_TIME__IDLE_AFTER": "1s"}),
        tail=tail,
        control_topic="in.control",
    )
    part = source.build_part("in", "in.control:0" if control else "0", None)
    try:
        assert part.ingest.idle is False
        part.last_delivery -= 0.9  # not yet idle_after ago
        first = part._quiet()
        assert part.ingest.idle is (tail and control)  # a live control partition: at once
        part.last_delivery -= 0.2  # now 1.1 s ago
        then = part._quiet()
        assert part.ingest.idle is tail
        # Turning idle, it says so to every shard, once.
        said = [(k, v.idle) for k, v in first + then]
        assert said == ([("shard-000", True)] if tail else [])
    finally:
        part.close()


def test_a_caught_up_partition_lagging_the_others_holds_them_back_until_it_is_idle() -> None:
    """Partition 0's producer stamps its events two hours behind the others': read live it
    is caught up, nothing to read most of the time. While it is not idle it still holds
    back partition 1 (alignment), whose events would otherwise wait at the shards, in
    memory, for two hours; once idle, it holds no one back. (Before, any empty read let
    the others run ahead, and the events held at the shards grew without bound.)"""
    source = KafkaInput(
        "127.0.0.1:9", "in", Settings.load(environ={"AUDIENCEFLOW_TIME__IDLE_AFTER": "1s"})
    )
    slow, fast = source.build_part("in", "0", None), source.build_part("in", "1", None)
    try:
        slow.ingest.clock.base, fast.ingest.clock.base = 1000.0, 1000.0 + 7200
        slow._report()
        fast._report()
        assert source.alignment.ahead("in:1")
        slow._quiet()  # an empty read, not yet idle_after since its last event
        assert not slow.ingest.idle and source.alignment.ahead("in:1")
        slow.last_delivery -= 1.1
        slow._quiet()
        assert slow.ingest.idle and not source.alignment.ahead("in:1")
    finally:
        slow.close()
        fast.close()


def _session(user: str, products: list[str]) -> Session:
    return Session(
        user, f"{user}:2026-03-02T08:00:00.000Z", 0.0, 60.0, len(products), 0, 0, {},
        60.0, 0.0, 0, products, [], False, 0.0, "inactivity", None,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_record_larger_than_a_kafka_message_is_dead_lettered_and_the_worker_goes_on(
    kafka_broker: str,
) -> None:
    """One user's session listing 40 product ids of 30 KB (each within a line's 32 KB) is
    a 1.2 MB record: the producer refused it (MSG_SIZE_TOO_LARGE), the worker stopped,
    and stopped again at every restart as the session closed again. Its dead letter,
    keyed and positioned by the record, goes out instead; the other records of the
    batch go out as they are."""
    import servers

    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.metrics import OUTPUTS_TOO_LARGE
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    topics = Topics("big.changes", "big.actions", "big.sessions", "big.dead")
    servers.create_topics(kafka_broker, [topics.sessions, topics.dead_letters], partitions=1)
    huge = _session("bot1", [f"{i:03d}" + "p" * 30_000 for i in range(40)])
    small = _session("u1", ["p1"])
    before = OUTPUTS_TOO_LARGE._value.get()
    sink = _WorkerPartition(KafkaOutput(kafka_broker), topics, None)
    try:
        sink.write_batch([huge, small])
        sink.snapshot()  # every record acknowledged: nothing refused
    finally:
        sink.close()
    assert OUTPUTS_TOO_LARGE._value.get() == before + 1
    (session,) = servers.consume_all(kafka_broker, topics.sessions, expected=1)
    assert session[0] == b"u1"
    (dead,) = servers.consume_all(kafka_broker, topics.dead_letters, expected=1)
    rec = orjson.loads(dead[1])
    assert dead[0] == b"bot1"
    assert (rec["reason"], rec["stage"]) == ("oversize_output", "output")
    assert rec["position"] == "big.sessions:bot1:2026-03-02T08:00:00.000Z"
    assert len(rec["raw"]) == 1024 and len(dead[1]) < 4096


@pytest.mark.timeout(30)
def test_an_oversize_records_dead_letter_is_positioned_by_the_records_own_id() -> None:
    """An exposure holds its ``decision_id`` and the ``action_id`` of its action: its
    dead letter was positioned by the action's id, which names another record."""
    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    sink = _WorkerPartition(
        KafkaOutput("127.0.0.1:9", background=False), Topics("c", "a", "s", "d"), None
    )
    records = {
        "x.exposures": {"action_id": "a" * 20, "decision_id": "d1", "user_id": "u1"},
        "x.actions": {"action_id": "a" * 20, "user_id": "u1"},
        "x.sessions": {"session_id": "u1:1", "user_id": "u1"},
    }
    own = {"x.exposures": "d1", "x.actions": "a" * 20, "x.sessions": "u1:1"}
    for topic, rec in records.items():
        _, _, value = sink._too_large(topic, b"u1", orjson.dumps(rec))
        assert orjson.loads(value)["position"] == f"{topic}:{own[topic]}"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_record_over_its_topics_own_limit_is_dead_lettered_before_the_broker_refuses_it(
    kafka_broker: str,
) -> None:
    """A topic's ``max.message.bytes`` below the producer's: the broker refused the
    record once sent, and the worker stopped, at every restart. The worker reads the
    topics' limits at start and replaces such a record before sending it. (tansu reports
    a topic's limit but does not enforce it: without the check the record goes through.)"""
    import servers
    from confluent_kafka.admin import AdminClient, NewTopic

    from audienceflow.flows.kafka_io import RECORD_FRAMING, KafkaOutput, topic_limits
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    topics = Topics("lim.changes", "lim.actions", "lim.sessions", "lim.dead")
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    created = admin.create_topics(
        [
            NewTopic(topics.sessions, 1, 1, config={"max.message.bytes": "20000"}),
            NewTopic(topics.dead_letters, 1, 1),
        ]
    )
    for future in created.values():
        future.result(10)
    limits = topic_limits(kafka_broker, {}, [topics.sessions, topics.dead_letters, "lim.none"])
    assert limits.get(topics.sessions) == 20000 and "lim.none" not in limits
    from audienceflow.operators.records import dumps

    def sized(user: str, size: int) -> Any:
        """A session of ``user`` whose record is ``size`` bytes (its key is 4)."""
        base = len(dumps(_session(user, ["p"]).to_json()))
        rec = _session(user, ["p" * (1 + size - base)])
        assert len(dumps(rec.to_json())) == size
        return rec

    # Over once the batch's framing is counted (record + key + 256 > 20000); under it.
    over = sized("bot1", 20000 - 4 - RECORD_FRAMING + 1)
    under = sized("bot2", 20000 - 4 - RECORD_FRAMING)
    sink = _WorkerPartition(KafkaOutput(kafka_broker, limits=limits), topics, None)
    try:
        sink.write_batch([over, under, _session("u1", ["p1"])])
        sink.snapshot()
    finally:
        sink.close()
    sessions = servers.consume_all(kafka_broker, topics.sessions, expected=2)
    assert [k for k, _, _ in sessions] == [b"bot2", b"u1"]
    (dead,) = servers.consume_all(kafka_broker, topics.dead_letters, expected=1)
    rec = orjson.loads(dead[1])
    assert (dead[0], rec["reason"]) == (b"bot1", "oversize_output")
    assert "its max.message.bytes, 20000 bytes" in rec["detail"]


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_record_over_its_topics_limit_that_fits_it_gzipped_is_sent_with_gzip(
    kafka_broker: str,
) -> None:
    """The broker checks a topic's ``max.message.bytes`` against the batch as sent,
    compressed: with ``compression.type: gzip`` a 30 KB session that gzips to a few
    hundred bytes fits a topic of 20,000 and was dead-lettered by its uncompressed size.
    Now it is sent when gzipped (with the framing) it fits, and dead-lettered when it
    does not; without compression it is dead-lettered as before. The boundary: a topic
    whose limit is exactly its gzipped size plus framing takes it, one a byte below not."""
    import zlib

    import servers
    from confluent_kafka.admin import AdminClient, NewTopic

    from audienceflow.flows.kafka_io import RECORD_FRAMING, KafkaOutput, topic_limits
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition
    from audienceflow.operators.records import dumps

    key, value = b"bot1", dumps(_session("bot1", ["p" * 30_000]).to_json())
    # gzip at zlib's default level (librdkafka's default), key and value together
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    fits = len(packer.compress(key + value) + packer.flush()) + RECORD_FRAMING
    assert len(value) > 20_000 > fits
    limit = {"gz.big": 20_000, "gz.at": fits, "gz.below": fits - 1, "gz.plain": 20_000}
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    created = admin.create_topics(
        [NewTopic(t, 1, 1, config={"max.message.bytes": str(n)}) for t, n in limit.items()]
        + [NewTopic("gz.dead", 1, 1)]
    )
    for future in created.values():
        future.result(10)
    compression: dict[str, str] = {}
    limits = topic_limits(kafka_broker, {}, [*limit, "gz.dead"], compression=compression)
    assert {t: limits.get(t) for t in limit} == limit
    topics = Topics("gz.changes", "gz.actions", "gz.sessions", "gz.dead")
    gzip = KafkaOutput(kafka_broker, {"compression.type": "gzip"}, limits=limits)
    plain = KafkaOutput(kafka_broker, limits=limits)
    for out, sent in ((gzip, ["gz.big", "gz.at", "gz.below"]), (plain, ["gz.plain"])):
        _WorkerPartition(out, topics, None)  # its dead letter replaces a record too large
        try:
            for topic in sent:
                out.send(topic, key, value)
            out.seal()
            out.flush()
        finally:
            out.close()
    for topic in ("gz.big", "gz.at"):
        ((k, v, _),) = servers.consume_all(kafka_broker, topic, expected=1)
        assert (k, v) == (key, value)
    dead = servers.consume_all(kafka_broker, "gz.dead", expected=2)
    positions = sorted(orjson.loads(v)["position"] for _, v, _ in dead)
    assert [p.split(":")[0] for p in positions] == ["gz.below", "gz.plain"]


@pytest.mark.timeout(30)
def test_the_worker_hands_the_topics_limits_to_each_producer_it_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limits read at start reach every sink partition's producer: dropped on the way
    (the flow, the sink, its partitions), the check in ``send`` never ran, and a record
    over its topic's limit stopped the worker again; no other test builds that chain."""
    import threading

    from audienceflow.flows import worker
    from audienceflow.flows.worker_sink import WorkerSink

    opts = options(
        AUDIENCEFLOW_KAFKA__BROKERS="127.0.0.1:9",
        AUDIENCEFLOW_KAFKA__ADD_CONFIG="{compression.type: gzip}",
    )
    asked: list[list[str]] = []

    def limits(
        brokers: str, extra: dict[str, Any], topics: list[str], compression: dict[str, str]
    ) -> dict[str, int]:
        asked.append(topics)
        compression[opts.topics.actions] = "lz4"  # recompressed: judged uncompressed
        return {opts.topics.sessions: 20_000, opts.topics.actions: 20_000}

    sinks: list[WorkerSink] = []
    monkeypatch.setattr(worker, "input_partitions", lambda *a, **k: ["clickstream:0"])
    monkeypatch.setattr(worker, "topic_limits", limits)
    monkeypatch.setattr(worker, "build_flow", lambda settings, source, attach, **kw: attach)
    monkeypatch.setattr(worker.op, "output", lambda name, stream, sink: sinks.append(sink))
    attach = worker.worker_flow(Settings.load(environ={}), opts, threading.Event())
    attach("shard", None)
    assert asked == [opts.topics.names()]
    (sink,) = sinks
    part = sink._partition("out-0")
    try:
        assert part.kafka.limits == {opts.topics.sessions: 20_000, opts.topics.actions: 20_000}
        assert part.kafka.codecs == {opts.topics.sessions: -1}  # the topics' codecs came too
    finally:
        part.close()


@pytest.mark.timeout(30)
def test_topic_limits_a_broker_does_not_answer_are_unknown_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No broker answers (gone since the topics were listed): the wait on the first
    topic's answer ended before librdkafka failed it, and its TimeoutError (no
    KafkaException) stopped the worker's start with a traceback; each further topic would
    have waited the whole timeout again. Now every topic is unknown, within one timeout."""
    from audienceflow.flows.kafka_io import topic_limits

    topics = [f"t{i}" for i in range(8)]
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="audienceflow.kafka"):
        assert topic_limits("127.0.0.1:9", {}, topics, timeout=1.0) == {}
    assert time.monotonic() - began < 4.0
    assert "does not report max.message.bytes of t0, t1" in caplog.text


@pytest.mark.timeout(30)
def test_a_record_whose_dead_letter_is_too_large_too_raises_and_is_not_replaced_forever() -> None:
    """Below a dead letter's size (librdkafka's least message.max.bytes is 1000), the
    replacement of a record too large is refused too: asked for again and again, it
    was replaced forever, the metric and the log counting without end. Once is enough:
    the worker stops, as it did before there was a replacement, saying why."""
    from audienceflow.flows.kafka_io import KafkaOutput, KafkaUnavailable
    from audienceflow.flows.metrics import OUTPUTS_TOO_LARGE
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    out = KafkaOutput("127.0.0.1:9", {"message.max.bytes": 1000}, background=False)
    _WorkerPartition(out, Topics("c", "a", "s", "d"), None)
    before = OUTPUTS_TOO_LARGE._value.get()
    with pytest.raises(KafkaUnavailable, match="for topic 'd'"):
        out.send("s", b"u1", orjson.dumps({"session_id": "u1:1", "products": ["p" * 3000]}))
    assert OUTPUTS_TOO_LARGE._value.get() == before + 1
    assert out.open.sent == 0  # nothing queued, nothing counted as sent
