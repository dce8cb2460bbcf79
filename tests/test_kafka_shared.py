"""One consumer per worker thread and topic (``flows.kafka_io._SharedConsumer``).

A worker's partitions of a topic share one consumer, so one fetch request per broker
covers them all. What must hold: each partition still gets every one of its messages
once, in offset order, from wherever it starts; a partition nobody takes from stops
being fetched once its buffer is full, and then resumes exactly where its buffer
ended; each worker thread and each topic has its own consumer, closed with its last
partition.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
import servers
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, KafkaError, Producer
from helpers import ev

from audienceflow.flows.kafka_io import (
    PARK_AFTER_BATCHES,
    KafkaInput,
    _cost,
    _SharedConsumer,
    consumer_config,
)
from audienceflow.operators.config import Located, load_located, merge
from audienceflow.operators.records import Event
from audienceflow.operators.settings import Settings, build

pytestmark = pytest.mark.timeout(120)

PER_PARTITION = 40


def settings(**sections: dict[str, Any]) -> Settings:
    return build(merge(load_located(None, {}), Located(sections)), {})


def _produce(broker: str, topic: str, per_partition: dict[int, list[bytes]]) -> None:
    """Each list to its partition, in order (acks=all, flushed)."""
    producer = Producer({"bootstrap.servers": broker, "acks": "all", "linger.ms": 5})
    for partition, values in per_partition.items():
        for value in values:
            producer.produce(topic, value, partition=partition)
    assert producer.flush(10) == 0


def _values(partition: int, n: int = PER_PARTITION) -> list[bytes]:
    return [f"{partition}:{i}".encode() for i in range(n)]


def _read_to_end(shared: _SharedConsumer, partition: int, n: int) -> list[bytes]:
    """``take`` until the partition's end-of-partition event; its messages' values."""
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"partition {partition}: {len(got)} read, no end"
        msgs = shared.take(partition, n)
        assert len(msgs) <= n
        for msg in msgs:
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err.str()
                return got
            assert msg.partition() == partition
            got.append(msg.value())
        if not msgs:
            time.sleep(0.005)


@pytest.mark.integration
def test_each_partition_gets_its_messages_once_in_order_from_its_start(
    kafka_broker: str,
) -> None:
    topic = "shared-order"
    servers.create_topics(kafka_broker, [topic], partitions=4)
    _produce(kafka_broker, topic, {p: _values(p) for p in range(4)})
    config = consumer_config(kafka_broker, {"fetch.wait.max.ms": 10}, tail=False, control=False)
    shared = _SharedConsumer(config, cap=PARK_AFTER_BATCHES * 3)
    starts = {0: OFFSET_BEGINNING, 1: 0, 2: 7, 3: PER_PARTITION - 1}  # as resumed
    for p, offset in starts.items():
        shared.add(topic, p, offset)
    try:
        # Round-robin, as Bytewax calls one worker's partitions, 3 at a time.
        got: dict[int, list[bytes]] = {p: [] for p in starts}
        ended: set[int] = set()
        deadline = time.monotonic() + 30
        while len(ended) < 4:
            assert time.monotonic() < deadline, {p: len(v) for p, v in got.items()}
            for p in set(starts) - ended:
                for msg in shared.take(p, 3):
                    if msg.error() is not None:
                        assert msg.error().code() == KafkaError._PARTITION_EOF
                        ended.add(p)
                    else:
                        got[p].append(msg.value())
        for p, offset in starts.items():
            assert got[p] == _values(p)[max(offset, 0) :], p
    finally:
        assert shared.remove(0) is False
        for p in (1, 2):
            assert shared.remove(p) is False
        assert shared.remove(3) is True  # the last one closes the consumer


@pytest.mark.integration
def test_a_partition_nobody_takes_from_is_parked_at_its_cap_and_resumes_where_it_stopped(
    kafka_broker: str,
) -> None:
    """Partition 0 is not taken from while the other three are read to their ends (as
    alignment holds a partition that runs ahead): what the others' polls bring for it
    stops at exactly ``cap`` messages, and the consumer stops fetching it. Then it is
    read, and gets every message once and in order, to its end."""
    topic = "shared-park"
    servers.create_topics(kafka_broker, [topic], partitions=4)
    _produce(kafka_broker, topic, {p: _values(p) for p in range(4)})
    config = consumer_config(kafka_broker, {"fetch.wait.max.ms": 10}, tail=False, control=False)
    n = 2  # and 40 messages a partition: well over its cap
    shared = _SharedConsumer(config, cap=PARK_AFTER_BATCHES * n)
    assert shared.cap == 8
    for p in range(4):
        shared.add(topic, p, OFFSET_BEGINNING)
    try:
        for p in (1, 2, 3):
            assert _read_to_end(shared, p, n) == _values(p)
        # Partition 0's first fetch may come after the others are read (its start offset
        # is looked up on its own): the others' polls go on until it has arrived, and
        # then some, as a worker's idle partitions keep polling.
        deadline = time.monotonic() + 30
        while not shared.feeds[0].parked:
            assert time.monotonic() < deadline, len(shared.feeds[0].buffer)
            assert shared.take(1, n) == []
            time.sleep(0.005)
        for _ in range(50):
            assert shared.take(1, n) == []
            time.sleep(0.005)
        # The others' polls brought partition 0 its cap, not one more, and parked it.
        assert len(shared.feeds[0].buffer) == shared.cap
        assert shared.feeds[0].parked
        assert shared.parks >= 1  # and 2, 3 while 1 was read alone
        assert _read_to_end(shared, 0, n) == _values(0)
        assert not shared.feeds[0].parked
    finally:
        for p in range(4):
            shared.remove(p)


class _Msg:
    """A message, or (``end``) the end-of-partition event, as confluent-kafka gives them."""

    def __init__(
        self,
        partition: int,
        offset: int,
        end: bool = False,
        size: int = 1,
        value: bytes = b"",
        key: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> None:
        self._partition, self._offset = partition, offset
        self._key, self._headers = key, headers
        self._error = KafkaError(KafkaError._PARTITION_EOF) if end else None
        # An error's value is its text, as librdkafka gives it (seen with tansu).
        eof = f"Fetch from broker 1 reached end of partition at offset {offset}".encode()
        self._value = eof if end else value or b"v" * size

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_NOT_AVAILABLE, 0

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self._headers

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error


class _Polls:
    """A stand-in consumer whose polls return what the test lists: to show what a
    late message (fetched before its partition was unassigned) does."""

    def __init__(self, polls: list[list[_Msg]]) -> None:
        self.polls = polls
        self.assigned: list[tuple[int, int]] = []

    def consume(self, n: int, timeout: float) -> list[_Msg]:
        return self.polls.pop(0) if self.polls else []

    def incremental_assign(self, tps: list[Any]) -> None:
        self.assigned += [(tp.partition, tp.offset) for tp in tps]

    def incremental_unassign(self, tps: list[Any]) -> None:
        self.assigned += [(tp.partition, -100) for tp in tps]


def _fake(polls: list[list[_Msg]], cap: int, partitions: tuple[int, ...]) -> _SharedConsumer:
    shared = _SharedConsumer.__new__(_SharedConsumer)
    shared.consumer, shared.cap, shared.feeds, shared.parks = _Polls(polls), cap, {}, 0  # type: ignore[assignment]
    for p in partitions:
        shared.add("t", p, 0)
    return shared


def _offsets(msgs: list[Any]) -> list[int | str]:
    return ["end" if m.error() is not None else m.offset() for m in msgs]


def test_the_end_of_a_parked_partition_waits_for_its_messages() -> None:
    """An end-of-partition event in the poll that parked the partition is dropped with
    the messages after the cap: its end comes again once it is assigned again (librdkafka
    reports the end of each new fetch). Kept, it would end the partition before message 2."""
    shared = _fake(
        [[_Msg(5, 0), _Msg(5, 1), _Msg(5, 2), _Msg(5, 3, end=True)],
         [_Msg(5, 2), _Msg(5, 3, end=True)]],
        2,
        (5,),
    )  # fmt: skip
    assert _offsets(shared.take(5, 1)) == [0]
    assert shared.feeds[5].parked
    assert _offsets(shared.take(5, 1)) == [1]
    assert not shared.feeds[5].parked  # assigned again, at 2
    assert _offsets(shared.take(5, 5)) == [2, "end"]


def test_a_parked_partition_is_assigned_again_with_half_its_cap_still_to_take() -> None:
    """So the fetch starts again while it still has messages to hand: were it assigned
    only once empty, its next take would come back empty and look like nothing to read."""
    shared = _fake([[_Msg(5, i) for i in range(4)]], 4, (5,))
    fake = shared.consumer
    assert _offsets(shared.take(5, 1)) == [0]
    assert shared.feeds[5].parked  # 3 left
    assert _offsets(shared.take(5, 1)) == [1]
    assert shared.feeds[5].parked  # 2 left: half the cap
    assert _offsets(shared.take(5, 1)) == [2]
    assert not shared.feeds[5].parked  # 1 left
    assert fake.assigned[-1] == (5, 4)  # type: ignore[attr-defined]


def test_a_parked_partition_removed_is_not_unassigned_twice() -> None:
    shared = _fake([[_Msg(5, 0), _Msg(5, 1)]], 2, (5, 6))
    shared.take(5, 1)
    fake = shared.consumer
    assert shared.feeds[5].parked and fake.assigned[-1] == (5, -100)  # type: ignore[attr-defined]
    before = len(fake.assigned)  # type: ignore[attr-defined]
    assert shared.remove(5) is False  # partition 6 still reads
    assert len(fake.assigned) == before  # type: ignore[attr-defined]
    assert shared.remove(6) is True
    assert fake.assigned[-1] == (6, -100)  # type: ignore[attr-defined]


def test_an_empty_take_polls_again_while_full_polls_bring_it_nothing() -> None:
    """A take is empty only when the consumer has nothing more for it just now: a full
    poll of other partitions' messages is followed by another, up to one per partition
    (so an empty take means 'nothing to read', and alignment can rely on it)."""
    other = [[_Msg(6, 2 * i), _Msg(6, 2 * i + 1)] for i in range(3)]
    # Partition 5's message behind one full poll for 6: found by the second poll.
    shared = _fake([other[0], [_Msg(5, 0)]], 100, (5, 6))
    assert _offsets(shared.take(5, 2)) == [0]
    # Behind two full polls, with two partitions: not found (a poll per partition at most).
    shared = _fake([other[0], other[1], [_Msg(5, 0)]], 100, (5, 6))
    assert shared.take(5, 2) == []
    assert _offsets(shared.take(5, 2)) == [0]
    # A short poll means the consumer has nothing more queued: no second poll.
    shared = _fake([[_Msg(6, 0)], [_Msg(5, 0)]], 100, (5, 6))
    assert shared.take(5, 2) == []
    assert len(shared.feeds[6].buffer) == 1


def test_a_parked_partition_drops_what_comes_for_it_and_reassigned_skips_what_it_has() -> None:
    """What a poll brings for a parked partition is dropped (it is fetched again from
    where its buffer ends), and a message older than that point is never appended."""
    shared = _SharedConsumer.__new__(_SharedConsumer)
    fake = _Polls(
        [
            [_Msg(5, 10), _Msg(5, 11)],  # the cap (2) reached: parked
            [_Msg(5, 12)],  # a fetch still under way when it was parked: dropped
            [_Msg(5, 11), _Msg(5, 12)],  # 11 again: older than next (12)
        ]
    )
    shared.consumer, shared.cap, shared.feeds, shared.parks = fake, 2, {}, 0
    shared.add("t", 5, 10)
    assert [m.offset() for m in shared.take(5, 1)] == [10]
    assert shared.feeds[5].parked and fake.assigned == [(5, 10), (5, -100)]
    shared._poll(1)
    assert [m.offset() for m in shared.feeds[5].buffer] == [11]
    # Taking its last buffered message (fewer than n left) assigns it again at 12.
    assert [m.offset() for m in shared.take(5, 1)] == [11]
    assert not shared.feeds[5].parked and fake.assigned[-1] == (5, 12)
    assert [m.offset() for m in shared.take(5, 5)] == [12]
    assert shared.parks == 1  # once, with the first poll


@pytest.mark.integration
def test_a_worker_thread_shares_one_consumer_per_topic_and_closes_it_with_its_last_part(
    kafka_broker: str,
) -> None:
    topic, control = "shared-threads", "shared-threads.control"
    servers.create_topics(kafka_broker, [topic], partitions=4)
    servers.create_topics(kafka_broker, [control], partitions=1)
    lines = {p: [orjson.dumps(ev(f"u{p}", m, mid=f"{p}-{m}")) for m in range(5)] for p in range(4)}
    _produce(kafka_broker, topic, lines)
    source = KafkaInput(
        kafka_broker,
        topic,
        settings(time={"allowed_lateness": "1h"}),
        tail=False,
        batch_size=3,
        extra={"fetch.wait.max.ms": 10},
        control_topic=control,
    )
    assert source.list_parts() == ["0", "1", "2", "3", f"{control}:0"]
    here = [source.build_part("in", str(p), None) for p in (0, 1)]
    here.append(source.build_part("in", f"{control}:0", None))
    there: list[Any] = []
    thread = threading.Thread(
        target=lambda: there.extend(source.build_part("in", str(p), None) for p in (2, 3))
    )
    thread.start()
    thread.join(10)
    me, other = threading.get_ident(), thread.ident
    assert set(source.consumers) == {(me, topic), (me, control), (other, topic)}
    assert here[0].shared is here[1].shared is source.consumers[(me, topic)]
    assert here[2].shared is source.consumers[(me, control)]
    assert there[0].shared is there[1].shared is not here[0].shared
    # Every partition reads its own events, to its end (each on its own thread's
    # consumer; the test calls them from one thread, which these two never share).
    events: dict[str, list[str]] = {}
    for part in [*here, *there]:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, part.name
            try:
                batch = part.next_batch()
            except StopIteration:
                break
            events.setdefault(part.name, []).extend(
                v.message_id for _, v in batch if type(v) is Event
            )
            time.sleep(0.002)
    for p in range(4):
        assert events[f"{topic}:{p}"] == [f"{p}-{m}" for m in range(5)]
    assert events.get(f"{control}:0", []) == []
    # An ended partition let go of its consumer; the last one closed it.
    assert set(source.consumers) == set()
    for part in [*here, *there]:
        part.close()  # again, at the dataflow's end: nothing happens
    assert source.consumers == {}


class _Reset(_Polls):
    """A consumer after Kafka's answer to a fetch past the partition's end
    (``OFFSET_OUT_OF_RANGE``) and librdkafka's reset to the earliest offset."""

    def __init__(self, polls: list[list[_Msg]], high: int) -> None:
        super().__init__(polls)
        self.high = high

    def get_watermark_offsets(self, tp: Any, cached: bool = False) -> tuple[int, int]:
        return 0, self.high


def test_a_partition_shorter_than_the_resume_offset_is_reported_not_skipped() -> None:
    """Resumed at 40, the partition now holds 10 (the topic was created again): the reset
    delivers 0..9, which the take drops as read before; the end before the next offset
    says why nothing comes. A partition at or past its resume offset says nothing."""
    shared = _SharedConsumer.__new__(_SharedConsumer)
    shared.consumer = _Reset([[_Msg(5, i) for i in range(10)]], high=10)  # type: ignore[assignment]
    shared.cap, shared.feeds, shared.parks = 100, {}, 0
    shared.add("t", 5, 40)
    assert shared.end_before_next(5) == 10
    assert shared.take(5, 100) == []
    assert shared.end_before_next(5) == 10
    shared.consumer.high = 40  # type: ignore[attr-defined]
    assert shared.end_before_next(5) is None
    fresh = _SharedConsumer.__new__(_SharedConsumer)
    fresh.consumer = _Reset([], high=0)  # type: ignore[assignment]
    fresh.cap, fresh.feeds, fresh.parks = 100, {}, 0
    fresh.add("t", 5, OFFSET_BEGINNING)  # read from the start: no offset to be behind
    assert fresh.end_before_next(5) is None


def test_tombstones_and_blank_values_are_counted_apart_not_dead_lettered(
    kafka_broker: str,
) -> None:
    """A message without a value (a tombstone: what a compacted topic deletes a key with)
    and a blank value (a byte-order mark alone too) carry no event: counted apart, as a
    replay counts blank lines, not dead-lettered as ``not_json``; the offset still moves
    past them, even in a batch of nothing else."""
    from prometheus_client import REGISTRY

    from audienceflow.flows import metrics
    from audienceflow.operators.records import DeadLetter

    def count(kind: str) -> float:
        return REGISTRY.get_sample_value("audienceflow_blank_in_total", {"kind": kind}) or 0.0

    topic = "blank-values"
    servers.create_topics(kafka_broker, [topic], partitions=4)
    producer = Producer({"bootstrap.servers": kafka_broker, "acks": "all", "linger.ms": 5})
    sent: dict[int, int] = {}
    for p in range(4):

        def line(m: int, p: int = p) -> bytes:
            return orjson.dumps(ev(f"u{p}", m, mid=f"{p}-{m}"))

        # A byte-order mark alone (or before blanks) is blank too, as a replay reads one.
        bom = b"\xef\xbb\xbf" + b" \n" * (p % 2)
        values: list[bytes | None] = [line(0), None, b" \t ", line(1), b"", bom, line(2)]
        if p == 3:
            values = [line(0), line(1), line(2), None, None, b"\n"]  # blanks at its end
        for value in values:
            producer.produce(topic, value, partition=p)
        sent[p] = len(values)
    assert producer.flush(10) == 0
    metrics.initialise(drift_signals=(), redis=False)
    before = {k: count(k) for k in metrics.BLANK_KINDS}
    source = KafkaInput(
        kafka_broker, topic, settings(), tail=False, batch_size=2,
        extra={"fetch.wait.max.ms": 10},
    )  # fmt: skip
    for p in range(4):
        part = source.build_part("in", str(p), None)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, p
            try:
                got += [v for _, v in part.next_batch()]
            except StopIteration:
                break
            time.sleep(0.002)
        assert [v.message_id for v in got if type(v) is Event] == [f"{p}-{m}" for m in range(3)]
        assert not [v for v in got if type(v) is DeadLetter], p
        assert part.snapshot()[0] == sent[p]  # past every message, blanks included
        part.close()
    assert count("tombstone") - before["tombstone"] == 5
    assert count("blank") - before["blank"] == 10


def _read_part(part: Any) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline
        try:
            got += [v for _, v in part.next_batch()]
        except StopIteration:
            return got
        time.sleep(0.002)


def test_offsets_the_broker_does_not_deliver_are_counted_and_a_gap_after_a_resume_is_told(
    kafka_broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A committed transaction's marker takes an offset no consumer is given, as do
    aborted records, compacted ones and those retention removed: librdkafka reads on
    from the next offset it has. Every such offset is counted, and a gap between a
    resume offset and the first message read after it (a stopped worker's offset that
    retention removed: ``auto.offset.reset: earliest`` reads on from the partition's
    new start) is told in the log, naming the offsets; before, both went without a sign."""
    import logging

    from prometheus_client import REGISTRY

    from audienceflow.flows.partitions import new_clock

    def skipped() -> float:
        labels = {"topic": topic, "partition": "0"}
        return REGISTRY.get_sample_value("audienceflow_input_skipped_offsets_total", labels) or 0.0

    topic = "skipped-offsets"
    servers.create_topics(kafka_broker, [topic], partitions=1)
    line = [orjson.dumps(ev("u1", m, mid=f"m{m}")) for m in range(3)]
    plain = Producer({"bootstrap.servers": kafka_broker, "acks": "all"})
    plain.produce(topic, line[0], partition=0)  # offset 0
    assert plain.flush(10) == 0
    tx = Producer({"bootstrap.servers": kafka_broker, "transactional.id": "skipped-offsets"})
    tx.init_transactions(10)
    tx.begin_transaction()
    tx.produce(topic, line[1], partition=0)  # offset 1; its commit marker is offset 2
    tx.commit_transaction(10)
    plain.produce(topic, line[2], partition=0)  # offset 3
    assert plain.flush(10) == 0
    conf = settings()
    extra = {"fetch.wait.max.ms": 10}

    before = skipped()
    source = KafkaInput(kafka_broker, topic, conf, tail=False, batch_size=2, extra=extra)
    part = source.build_part("in", "0", None)
    got = _read_part(part)
    assert [v.message_id for v in got if type(v) is Event] == ["m0", "m1", "m2"]
    assert part.snapshot()[0] == 4
    part.close()
    assert skipped() - before == 1  # the marker

    # Resumed at the marker's offset: the broker's first message is the next one. The
    # partition starts at 0 (as listed at start-up), so nothing was removed by retention:
    # told as information, not as a warning at every restart after a transaction.
    caplog.set_level(logging.INFO, logger="audienceflow.kafka")
    source = KafkaInput(kafka_broker, topic, conf, tail=False, batch_size=2, extra=extra)
    source.list_parts()
    assert source.ends[f"{topic}:0"][0] == 0
    part = source.build_part("in", "0", (2, new_clock(conf), topic))
    got = _read_part(part)
    assert [v.message_id for v in got if type(v) is Event] == ["m2"]
    part.close()
    assert skipped() - before == 2
    told = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(told) == 1, told
    assert "resumed at offset 2" in told[0].getMessage()
    assert "first message is at 3" in told[0].getMessage()
    assert told[0].levelno == logging.INFO, told[0].getMessage()


def test_a_take_stops_once_its_values_reach_the_byte_budget() -> None:
    """At least one message, then none past the one that reaches the budget; the rest
    come, in order, with the next takes. Small messages fill a take by count."""
    shared = _fake([[_Msg(0, i, size=400) for i in range(10)]], cap=100, partitions=(0,))
    shared.budget = 1000
    assert _offsets(shared.take(0, 100)) == [0, 1, 2]
    assert _offsets(shared.take(0, 100)) == [3, 4, 5]
    small = _fake([[_Msg(0, i, size=10) for i in range(10)]], cap=100, partitions=(0,))
    small.budget = 1000
    assert _offsets(small.take(0, 4)) == [0, 1, 2, 3]


def test_a_take_counts_each_messages_key_and_headers_against_the_byte_budget() -> None:
    """A record's cost is its key, value and headers: 10-byte values under 600 bytes of
    headers (or a 600-byte key) fill the budget as 610-byte values do, and a buffer of
    them is parked by those bytes. Counting values alone, a batch of records with huge
    headers passed the budget by its whole count, and its buffer was never parked."""
    heavy = [("h", b"x" * 599)]
    polls = [
        [_Msg(0, i, size=10, headers=heavy) for i in range(3)]
        + [_Msg(0, 3 + i, size=10, key=b"k" * 600) for i in range(4)]
        + [_Msg(0, 7, size=10)]
    ]
    shared = _fake(polls, cap=100, partitions=(0,))
    shared.budget = 1000  # parked at 4,000 bytes: after offset 6 (7 x 610 bytes)
    feed = shared.feeds[0]
    assert _offsets(shared.take(0, 100)) == [0, 1]
    assert feed.parked and feed.size == 5 * 610 and feed.next == 7
    assert _offsets(shared.take(0, 100)) == [2, 3]
    assert _offsets(shared.take(0, 100)) == [4, 5]
    assert _offsets(shared.take(0, 100)) == [6] and feed.size == 0
    # A header's name counts in UTF-8 (a lone surrogate, as confluent-kafka decodes
    # bytes that are not UTF-8, as its 3 bytes), a header without a value as its name.
    odd = _fake([[_Msg(0, 0, size=10, headers=[("\udcff", None), ("é", b"ab")])]], 100, (0,))
    assert odd.feeds[0].size == 0 and _offsets(odd.take(0, 10)) == [0]
    assert _cost(_Msg(0, 0, size=10, key=b"kk", headers=[("\udcff", None), ("é", b"ab")])) == 19


def test_a_partition_of_the_longest_lines_is_read_in_batches_of_a_bounded_size(
    kafka_broker: str,
) -> None:
    """A batch is ingested in one call, and the worker thread reads its other partitions
    only between calls: a batch of 1,000 lines of the longest an event may be took 8 s
    (hashing 1,500 e-mail addresses each), 8 s in which the worker's other partitions
    waited. A batch ends once its values reach ``BATCH_BYTES``; a partition of ordinary
    lines on the same consumer still reads ``batch_size`` at a time."""
    from audienceflow.flows import kafka_io

    budget = getattr(kafka_io, "BATCH_BYTES", 1 << 20)
    topic = "long-lines"
    servers.create_topics(kafka_broker, [topic], partitions=2)
    long = [orjson.dumps(ev(f"h{i}", i, mid=f"h{i}", blob="x" * 30_000)) for i in range(80)]
    short = [orjson.dumps(ev(f"s{i}", i, mid=f"s{i}")) for i in range(80)]
    assert all(30_000 < len(line) < 32 * 1024 for line in long)
    _produce(kafka_broker, topic, {0: long, 1: short})
    source = KafkaInput(
        kafka_broker, topic, settings(), tail=False, batch_size=1000,
        extra={"fetch.wait.max.ms": 10},
    )  # fmt: skip
    for p, lines in ((0, long), (1, short)):
        part = source.build_part("in", str(p), None)
        sizes: list[int] = []
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, (p, sizes)
            try:
                batch = [v for _, v in part.next_batch() if type(v) is Event]
            except StopIteration:
                break
            if batch:
                sizes.append(len(batch))
        assert sum(sizes) == len(lines), (p, sizes)
        if p == 0:
            most = budget // len(long[0]) + 1
            assert max(sizes) <= most, sizes
        else:
            assert max(sizes) > 40, sizes  # not cut by bytes: as many as were fetched
        part.close()


def test_a_partition_nobody_takes_from_is_parked_by_the_bytes_it_holds_too() -> None:
    """Parked at ``PARK_AFTER_BATCHES`` batches' worth of bytes, not only of messages:
    by count alone a partition held back by alignment kept up to 4,000 messages, 4 GB of
    messages of a MB (Kafka's default limit). Assigned again once half is taken."""
    polls = [[_Msg(5, 0, size=10)] + [_Msg(6, i, size=1000) for i in range(6)]]
    shared = _fake(polls, cap=100, partitions=(5, 6))
    shared.budget = 1000  # parked at 4,000 bytes
    fake = shared.consumer
    assert _offsets(shared.take(5, 10)) == [0]
    feed = shared.feeds[6]
    assert feed.parked and fake.assigned[-1] == (6, -100)  # type: ignore[attr-defined]
    assert _offsets(list(feed.buffer)) == [0, 1, 2, 3] and feed.size == 4000
    assert _offsets(shared.take(6, 10)) == [0]  # a budget's worth
    assert feed.parked  # 3,000 bytes left
    assert _offsets(shared.take(6, 10)) == [1]
    assert feed.parked and feed.size == 2000  # half of the room is not fewer than half
    assert _offsets(shared.take(6, 10)) == [2]
    assert not feed.parked and fake.assigned[-1] == (6, 4)  # type: ignore[attr-defined]


def test_a_resume_at_offset_0_tells_its_gap_and_a_later_gap_is_counted_not_told(
    kafka_broker: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offset 0 is a resume offset like any other: resumed there with the broker's first
    message at 5 (retention removed 0-4), the 5 offsets are counted and told. A gap in a
    later batch (offset 7) is counted, not told: the warning is of a resume's gap only.
    (A stand-in consumer: tansu keeps every record, and delivers aborted ones too.)"""
    import logging

    from prometheus_client import REGISTRY

    from audienceflow.flows.partitions import new_clock

    topic = "resumed-at-0"

    def skipped() -> float:
        labels = {"topic": topic, "partition": "0"}
        return REGISTRY.get_sample_value("audienceflow_input_skipped_offsets_total", labels) or 0.0

    servers.create_topics(kafka_broker, [topic], partitions=1)
    conf = settings()
    source = KafkaInput(kafka_broker, topic, conf, tail=False, batch_size=1, extra={})
    line = {m: orjson.dumps(ev("u1", m, mid=f"m{m}")) for m in (5, 6, 8)}
    polls = [[_Msg(0, m, value=line[m])] for m in (5, 6, 8)] + [[_Msg(0, 9, end=True)]]
    fake = _fake(polls, cap=100, partitions=())
    fake.consumer.close = lambda: None  # type: ignore[attr-defined]
    fake.consumer.get_watermark_offsets = lambda tp, cached: (0, 10)  # type: ignore[attr-defined]

    def consumer(topic: str, control: bool) -> tuple[Any, tuple[int, str]]:
        key = (threading.get_ident(), topic)
        source.consumers[key] = fake
        return fake, key

    monkeypatch.setattr(source, "_consumer", consumer)
    caplog.set_level(logging.WARNING, logger="audienceflow.kafka")
    before = skipped()
    source.ends[f"{topic}:0"] = (5, 10)  # as listed at start-up: retention removed 0-4
    part = source.build_part("in", "0", (0, new_clock(conf), topic))
    got = _read_part(part)
    assert [v.message_id for v in got if type(v) is Event] == ["m5", "m6", "m8"]
    assert part.snapshot()[0] == 9
    part.close()
    assert skipped() - before == 6  # 0-4, and 7
    told = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(told) == 1, told
    assert "resumed at offset 0" in told[0] and "first message is at 5" in told[0]
    assert "the partition starts at 5" in told[0]


@pytest.mark.parametrize(
    ("start", "listed", "level"),
    [(0, 0, "INFO"), (4, 4, "INFO"), (0, 1, "WARNING"), (0, -1, "WARNING")],
)
def test_a_resume_gap_is_a_warning_only_where_the_resume_offset_lies_before_the_start(
    kafka_broker: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    start: int,
    listed: int,
    level: str,
) -> None:
    """Resumed at ``start``, the broker's first message at 5. A resume offset at the first
    offset listed at start-up (the boundary itself) lost nothing to retention: the gap is
    of records no consumer is given (an aborted transaction's, its markers), information.
    One before it (or where the start is not known, -1) may have lost records: a warning."""
    import logging

    from audienceflow.flows.partitions import new_clock

    topic = f"resume-gap-{start}-{listed + 1}"
    servers.create_topics(kafka_broker, [topic], partitions=1)
    conf = settings()
    source = KafkaInput(kafka_broker, topic, conf, tail=False, batch_size=1, extra={})
    line = {m: orjson.dumps(ev("u1", m, mid=f"m{m}")) for m in (5, 6)}
    polls = [[_Msg(0, m, value=line[m])] for m in (5, 6)] + [[_Msg(0, 7, end=True)]]
    fake = _fake(polls, cap=100, partitions=())
    fake.consumer.close = lambda: None  # type: ignore[attr-defined]
    fake.consumer.get_watermark_offsets = lambda tp, cached: (0, 7)  # type: ignore[attr-defined]

    def consumer(topic: str, control: bool) -> tuple[Any, tuple[int, str]]:
        key = (threading.get_ident(), topic)
        source.consumers[key] = fake
        return fake, key

    monkeypatch.setattr(source, "_consumer", consumer)
    caplog.set_level(logging.INFO, logger="audienceflow.kafka")
    source.ends[f"{topic}:0"] = (listed, 7)  # as listed at start-up
    part = source.build_part("in", "0", (start, new_clock(conf), topic))
    got = _read_part(part)
    assert [v.message_id for v in got if type(v) is Event] == ["m5", "m6"]
    part.close()
    told = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(told) == 1, [r.getMessage() for r in told]
    assert f"resumed at offset {start}" in told[0].getMessage()
    assert told[0].levelname == level, told[0].getMessage()


def test_a_consumer_replaced_for_a_refused_response_keeps_each_partitions_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Told that a fetch response was over ``receive.message.max.bytes``, the shared
    consumer is replaced by one with a quarter more room, and the old one closed. The new
    one is assigned each partition at its next offset (re-reading from where it started
    fetched all again), but not a parked one: it is assigned when its buffer drains, as
    before (assigned now too, it was assigned twice). A refusal the limit already covers
    (the old consumer's, told as it closes) replaces nothing, and the limit stops at
    librdkafka's most."""
    from audienceflow.flows import kafka_io

    made: list[Any] = []

    class Stand(_Polls):
        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__([])
            self.config, self.closed, self.errors = dict(config), False, []
            made.append(self)

        def consume(self, n: int, timeout: float) -> list[_Msg]:
            for err in self.errors:  # librdkafka serves its error callback in a poll
                self.config["error_cb"](err)
            self.errors = []
            return super().consume(n, timeout)

        def close(self) -> None:
            self.closed = True

    def refused(size: int, limit: int) -> KafkaError:
        text = f"Invalid response size {size} (0..{limit}): increase receive.message.max.bytes"
        return KafkaError(KafkaError._BAD_MSG, text)

    monkeypatch.setattr(kafka_io, "Consumer", Stand)
    told: list[KafkaError] = []
    shared = _SharedConsumer({"receive.message.max.bytes": 1000, "error_cb": told.append}, 2)
    for p, offset in ((0, 0), (1, 0), (2, 7)):
        shared.add("t", p, offset)
    first = made[0]
    first.polls = [[_Msg(0, 0), _Msg(0, 1), _Msg(0, 2), _Msg(1, 0)]]  # 0 parked after 1
    first.errors = [refused(5000, 1000), refused(3000, 1000)]  # room for the larger
    assert _offsets(shared.take(0, 1)) == [0]
    assert len(told) == 2  # the configured callback still hears of them
    assert first.closed and len(made) == 2 and shared.consumer is made[1]
    second = made[1]
    assert second.config["receive.message.max.bytes"] == 6250
    assert second.assigned == [(1, 1), (2, 7)]  # 0 is parked
    assert shared.feeds[0].parked
    assert _offsets(shared.take(0, 1)) == [1]
    assert second.assigned[-1] == (0, 2) and not shared.feeds[0].parked
    assert _offsets(shared.take(1, 5)) == [0]
    # The old consumer's refusal, told late: within the new limit, nothing is replaced.
    second.errors = [refused(5000, 1000)]
    shared.take(2, 5)
    assert len(made) == 2 and not second.closed
    second.errors = [refused(2_000_000_000, 6250)]
    shared.take(2, 5)
    assert len(made) == 3 and second.closed
    assert made[2].config["receive.message.max.bytes"] == kafka_io.RECEIVE_MAX


def test_an_error_in_a_partitions_buffer_leaves_its_byte_count_true() -> None:
    """An error's value is its text (librdkafka's): counted out of the buffer's bytes at
    a take, it must have been counted in at the poll, or each error (an end of partition,
    a retried fetch error) left the count lower, until a partition that should be parked
    by bytes no longer was."""
    shared = _fake([[_Msg(0, 0, size=10), _Msg(0, 1, end=True)]], cap=100, partitions=(0,))
    assert _offsets(shared.take(0, 10)) == [0, "end"]
    assert shared.feeds[0].size == 0


def test_a_batch_cut_by_bytes_is_not_taken_for_a_caught_up_partition(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live, a batch that empties a partition ends with its watermark (``_caught_up``);
    a batch shorter than ``batch_size`` because its bytes reached the budget leaves
    messages in the buffer: no watermark for it, only for the batch that empties it."""
    from audienceflow.operators.records import Watermark

    topic = "cut-by-bytes"
    servers.create_topics(kafka_broker, [topic], partitions=1)
    conf = settings()
    source = KafkaInput(kafka_broker, topic, conf, tail=True, batch_size=1000, extra={})
    lines = [orjson.dumps(ev(f"u{i}", 0, mid=f"m{i}")) for i in range(6)]
    fake = _fake([[_Msg(0, i, value=line) for i, line in enumerate(lines)]], 100, ())
    fake.budget = 2 * len(lines[0]) - 1  # two messages a take
    fake.consumer.close = lambda: None  # type: ignore[attr-defined]
    fake.consumer.get_watermark_offsets = lambda tp, cached: (0, 6)  # type: ignore[attr-defined]

    def consumer(topic: str, control: bool) -> tuple[Any, tuple[int, str]]:
        key = (threading.get_ident(), topic)
        source.consumers[key] = fake
        return fake, key

    monkeypatch.setattr(source, "_consumer", consumer)
    part = source.build_part("in", "0", None)
    batches = [part.next_batch() for _ in range(3)]
    part.close()
    events = [[v.message_id for _, v in b if type(v) is Event] for b in batches]
    assert events == [["m0", "m1"], ["m2", "m3"], ["m4", "m5"]]
    marks = [sum(type(v) is Watermark for _, v in b) for b in batches]
    # The first batch gives stream time its base and sends nothing; the second crosses a
    # tick step, whose watermark the ingest sends whether or not the partition is caught
    # up. The third empties the buffer: caught up, it ends with the partition's watermark
    # (taken for caught up already at the second, the partition had marked that time
    # then, and the third sent none).
    assert marks[0] == 0 and marks[2] > 0, (marks, batches)
    assert type(batches[2][-2][1]) is Watermark


@pytest.mark.parametrize("control", [False, True])
def test_every_consumer_reads_committed_records_and_a_lost_resume_offset_from_the_start(
    control: bool,
) -> None:
    # The worker's own (kafka.add_config may only repeat them, checked at load). Aborted
    # records are not observable on tansu, which delivers them whatever the setting.
    config = consumer_config("127.0.0.1:1", {"fetch.wait.max.ms": 10}, True, control)
    assert config["isolation.level"] == "read_committed"
    assert config["auto.offset.reset"] == "earliest"


def test_partitions_of_one_consumer_that_found_nothing_are_asked_again_together(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One fetch response brings every partition of a consumer its messages, and the
    first partition asked polls it for all. Were each to wait ``_IDLE`` from its own empty
    read, the one asked first would be due alone (Bytewax asks a partition only once its
    ``next_awake`` has passed) and read its batch an activation before the others: the
    others, their messages already buffered, would wait for the shards to process it."""
    from datetime import UTC, datetime, timedelta

    from audienceflow.flows import kafka_io

    topic = "wake-together"
    servers.create_topics(kafka_broker, [topic], partitions=2)
    source = KafkaInput(kafka_broker, topic, settings(), tail=True, batch_size=1000, extra={})
    lines = [orjson.dumps(ev(f"u{i}", 0, mid=f"m{i}")) for i in range(2)]
    # Two polls with nothing (one per partition), then one response for both.
    response = [_Msg(0, 0, value=lines[0]), _Msg(1, 0, value=lines[1])]
    fake = _fake([[], [], response], 100, ())
    fake.consumer.close = lambda: None  # type: ignore[attr-defined]
    fake.consumer.get_watermark_offsets = lambda tp, cached: (0, 1)  # type: ignore[attr-defined]

    def consumer(topic: str, control: bool) -> tuple[Any, tuple[int, str]]:
        key = (threading.get_ident(), topic)
        source.consumers[key] = fake
        return fake, key

    class Clock:  # the wall clock the partitions read, moved by the test
        at = datetime(2026, 1, 1, tzinfo=UTC)

        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return cls.at

    monkeypatch.setattr(source, "_consumer", consumer)
    monkeypatch.setattr(kafka_io, "datetime", Clock)
    parts = [source.build_part("in", str(p), None) for p in (0, 1)]
    assert parts[0].next_batch() == []
    Clock.at += timedelta(microseconds=300)  # the second is asked a moment later
    assert parts[1].next_batch() == []
    wake = parts[0].next_awake()
    assert wake is not None and wake > Clock.at
    assert parts[1].next_awake() == wake
    # Bytewax's next activation, at the first wake-up: every partition due is asked in
    # turn; the first polls the response, and the second reads its share in the same one.
    Clock.at = wake
    due = [p for p in parts if p.next_awake() <= Clock.at]
    batches = [p.next_batch() for p in due]
    for p in parts:
        p.close()
    assert [[v.message_id for _, v in b if type(v) is Event] for b in batches] == [["m0"], ["m1"]]


def test_a_live_control_partition_that_found_nothing_waits_longer_than_an_input_one(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests are rare: a control partition read live looks again ``CONTROL_IDLE`` after
    an empty read, not every ``_IDLE`` as the input does (200 idle activations a second)."""
    from datetime import UTC, datetime

    from audienceflow.flows import kafka_io

    topic, control = "idle-control", "idle-control.control"
    servers.create_topics(kafka_broker, [topic], partitions=1)
    servers.create_topics(kafka_broker, [control], partitions=1)

    class Clock:  # the wall clock the partitions read, held still by the test
        at = datetime(2026, 1, 1, tzinfo=UTC)

        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return cls.at

    monkeypatch.setattr(kafka_io, "datetime", Clock)
    source = KafkaInput(kafka_broker, topic, settings(), tail=True, extra={}, control_topic=control)
    source.list_parts()
    part = source.build_part("in", "0", None)
    ctl = source.build_part("in", f"{control}:0", None)
    try:
        assert [v for _, v in part.next_batch() if type(v) is Event] == []
        assert [v for _, v in ctl.next_batch() if type(v) is Event] == []
        assert part.next_awake() == Clock.at + kafka_io._IDLE
        assert ctl.next_awake() == Clock.at + kafka_io.CONTROL_IDLE
        assert kafka_io.CONTROL_IDLE >= 10 * kafka_io._IDLE
    finally:
        part.close()
        ctl.close()
    if source.watch is not None:
        source.stop.set()
