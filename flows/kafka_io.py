"""Kafka in and out for the worker.

In: ``KafkaInput`` reads the input topic, one Bytewax partition per Kafka
partition (``assign()``, no consumer group: offsets live in Bytewax recovery
snapshots). Items are ``(position, raw)`` with position ``topic:partition:offset``,
as the ingest step expects, each batch headed by an ``Arrival`` stamp. With
``tail=False`` a partition ends at the end of what the topic holds.

The partitions a worker reads of one topic share one consumer (``_SharedConsumer``):
one fetch request per broker covers all of them, where a consumer per partition
would send one each (a broker holds each fetch of a quiet partition for the whole
``fetch.wait.max.ms``, so these add up to a core of broker CPU on four partitions).
Each partition takes its messages from its own buffer; one that is not taken from (it
runs ahead, see ``Alignment``) is unassigned once its buffer holds a few batches, and
assigned again from the offset after its last buffered message when half are taken.

The control topic (``kafka.control_topic``: data subjects' requests) is read by the
same source, one more Bytewax partition per Kafka partition (named
``topic:partition``, the input's are named by their number). Each is read by one
worker of the cluster, like an input partition; its ingest
(``PartitionIngest(control=True)``) sends each request to every shard, and Bytewax
routes each shard's copy to the worker that owns the shard. A control partition has
its own event time. Read to its end (``kafka.tail: false``) it holds stream time back
like any partition, so requests apply at their times exactly as in a replay; read live,
it is idle whenever it has nothing to read, so it never stalls stream time (a request
whose time has passed applies at once).

Out: ``KafkaOutput`` produces each record, orjson with sorted keys, to its
topic, keyed by user id, with ``content-type`` and ``schema-version`` headers.
The sink does not wait for a batch's acknowledgements: they are served as the worker
goes on (at its next batch, or by a background thread when the input is quiet), and
the sink is told of each batch once it is stored (in order); the sink flushes at the
end of each epoch, so an epoch's outputs are on the broker before its snapshot is
taken (at-least-once). Nothing is dropped: messages never time out in the producer
(``message.timeout.ms: 0``), and while the broker is away the flush waits (and, once
the producer's queue is full, every send), and the dataflow with it.

This module is modelled on ``bytewax.connectors.kafka``; it differs where the
worker needs it to: positions and arrival stamps, consumer errors never move
the resume offset (Bytewax's partition takes the offset of an error event,
which can be -1001), no statistics callback (Bytewax's raises on a topic
missing from the statistics, e.g. while a broker restarts), a stop flag for a
graceful SIGTERM, delivery reports checked, and one consumer for a worker's
partitions of a topic where Bytewax has one per partition.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

from audienceflow.flows import metrics
from audienceflow.flows.dataflow import Arrival
from audienceflow.flows.partitions import Alignment, make_ingest
from audienceflow.flows.snapshots import SnapshotRefused
from audienceflow.operators.config import ConfigError
from audienceflow.operators.records import SCHEMA_VERSION, Event, Rejected, Watermark, iso
from audienceflow.operators.routing import PartitionIngest, is_out, out_key
from audienceflow.operators.settings import Settings
from audienceflow.operators.watermarks import PartitionClock

log = logging.getLogger("audienceflow.kafka")

# An input partition's recovery state: its next offset, its event time, and the topic
# they belong to (partitions are keyed by number: a renamed input topic would otherwise
# resume at the old topic's offsets); then, live, while any wait, the events it accepted
# ahead of the wall clock (``PartitionIngest.waiting_ahead``), which their shards hold:
# the counts ``time.max_ahead_per_user`` and ``time.max_ahead_total`` bound go on from
# them. They are packed (``operators/ahead.py``: keyed digests, ~16 bytes an event) fifth,
# after an empty list where the code of e4f8b68 (2026-12-06) saved them as (time, user
# id, message id) entries (60-95 bytes an event pickled): that code reads the newer
# snapshot as one with none waiting, and this code reads its list. Code from before
# reads the first three and ignores the rest; a snapshot from before resumes with none
# counted.
Ahead = list[tuple[float, str, str]]  # (event time, user, message id), as e4f8b68 saves
Resume = (
    tuple[int, PartitionClock, str]
    | tuple[int, PartitionClock, str, Ahead]
    | tuple[int, PartitionClock, str, Ahead, bytes]
)

HEADERS = [("content-type", b"application/json"), ("schema-version", str(SCHEMA_VERSION).encode())]
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, which some producers write first
_IDLE = timedelta(milliseconds=5)  # how long an idle partition waits before polling again
# How long a control partition read live waits after finding nothing: requests are rare
# and need no millisecond latency (nor does its consumer fetch more often than every
# ``CONTROL_FETCH_WAIT_MS`` on an empty topic), and polled every ``_IDLE`` it cost the
# worker a Bytewax activation and a read of an empty buffer 200 times a second.
CONTROL_IDLE = timedelta(milliseconds=100)
# The control topic's consumer lets a fetch wait at least this long (librdkafka's
# default): requests are rare and need no millisecond latency, and a broker answers
# every fetch of empty partitions after its wait, so a short wait set for the input
# (``kafka.add_config``) would make the control topic cost a request per wait.
CONTROL_FETCH_WAIT_MS = 500
# The values a partition's batch holds, in bytes, at most (plus its last message): a
# batch is ingested in one call, and Bytewax's worker thread reads its other partitions
# only between calls. 1,000 lines of the longest an event may be (32 KiB, 1,500 e-mail
# addresses to hash) took 8 s, during which the worker's other partitions were not read;
# a MiB of them takes about a third of a second. Lines of a few hundred bytes fill the
# batch by count (``kafka.batch_size``) long before.
BATCH_BYTES = 1 << 20
# A partition whose buffer in a shared consumer holds this many batches is not being
# taken from; it stops being fetched until it has taken them (_SharedConsumer).
PARK_AFTER_BATCHES = 4
# How often the input-lag gauge of a partition paused by alignment is set (Bytewax asks
# it for a batch every ``_IDLE``); a partition read sets it at every batch.
LAG_EVERY_S = 0.5
# How long listing the partitions waits for their offsets (``end_offsets``): the broker
# has just answered for their metadata.
END_OFFSETS_TIMEOUT_S = 5.0
_LOG_EVERY_S = 10.0
# librdkafka's bounds of ``receive.message.max.bytes`` (its default, and the most it
# takes: a response's size is a 32-bit signed length, so any the broker sends fits).
RECEIVE_DEFAULT = 100_000_000
RECEIVE_MAX = 2_147_483_647
# How librdkafka tells of a fetch response over ``receive.message.max.bytes`` (a
# ``_BAD_MSG`` error: it drops the connection and sends the same fetch again, forever).
_TOO_LARGE = re.compile(r"Invalid response size (\d+) \(0\.\.(\d+)\)")


class _Repeats(logging.Filter):
    """Let one of a run of identical librdkafka lines through every ``_LOG_EVERY_S``
    (it logs each failed reconnect, many per second while a broker is away)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.getMessage()
        now = time.monotonic()
        if now - self.last.get(key, -_LOG_EVERY_S) < _LOG_EVERY_S:
            return False
        if len(self.last) > 1000:
            self.last.clear()
        self.last[key] = now
        return True


_RDKAFKA_LOG = logging.getLogger("audienceflow.rdkafka")  # librdkafka's own log lines
_RDKAFKA_LOG.addFilter(_Repeats())


class KafkaUnavailable(RuntimeError):
    """The broker could not be reached, or refused what start-up needs."""


class InputBehindPosition(RuntimeError):
    """An input partition ends before the offset the worker reads next: the topic was
    deleted and created again, or the broker lost its data, since that offset was read."""


class InputGrew(RuntimeError):
    """A topic the worker reads gained partitions after it started: it does not read them."""


class PartitionWatch:
    """Asks the broker every ``every`` seconds whether the topics a tailing worker reads
    gained partitions since it listed them (``kafka.partition_check``).

    A worker reads the partitions it listed at start (Bytewax's partitions are fixed for
    a run), so the events a producer writes to a partition added later would wait
    unread, and the users keyed there would go missing without a sign. Once one is seen
    the watch keeps ``grew``, which names them; every input partition of the process
    then raises ``InputGrew`` at its next batch and the worker exits 3 saying so. A
    restart lists them and reads them from their beginning (with ``state.placement:
    partition`` a new count of input partitions is another layout, which a restart
    refuses). ``counts`` are those the dataflow was built for (``worker_flow``'s
    listing). A broker that does not answer is asked again at the next check.
    """

    def __init__(
        self,
        brokers: str,
        extra: dict[str, Any],
        counts: dict[str, int],
        every: float,
        stop: threading.Event,
    ) -> None:
        self.brokers = brokers
        self.extra = extra
        self.counts = counts  # topic -> the partitions listed at start
        self.every = every
        self.stop = stop
        self.grew: str | None = None
        self.thread = threading.Thread(
            target=self._run, name="audienceflow-partitions", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        admin = AdminClient(
            {
                **client_config(self.brokers, self.extra),
                # Through the worker's log, rate-limited and redacted, as its consumers'.
                "logger": _RDKAFKA_LOG,
                "error_cb": _ErrorLog("partition watch", self.brokers),
            }
        )
        while self.grew is None and not self.stop.wait(self.every):
            self.check(admin)

    def check(self, admin: AdminClient) -> str | None:
        """Compare each topic's partitions now with those listed; ``grew`` if more."""
        try:
            # All topics' metadata: asking for one by name lets a broker with
            # ``auto.create.topics.enable`` create a topic deleted under the worker.
            topics = admin.list_topics(timeout=10).topics
        except KafkaException:
            return None  # the broker is away: asked again at the next check
        for topic, listed in self.counts.items():
            meta = topics.get(topic)
            if meta is None or meta.error is not None or len(meta.partitions) <= listed:
                continue
            added = sorted(p for p in meta.partitions if p >= listed)
            self.grew = (
                f"topic {topic!r} has {len(meta.partitions)} partitions, and this worker was "
                f"started with {listed}: it does not read partition(s) "
                f"{', '.join(map(str, added))}, whose events would wait unread; restart every "
                "process to read them from their beginning (with state.placement: partition "
                "a new input partition count needs fresh state: README, Sizing a deployment)"
            )
            log.error("%s", self.grew)
            return self.grew
        return None


class _ErrorLog:
    """librdkafka error callback: log each kind of error at most every ``_LOG_EVERY_S``."""

    def __init__(self, role: str, brokers: str) -> None:
        self.role = role
        self.brokers = brokers
        self.last: dict[int, float] = {}

    def __call__(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("Kafka %s at %s: fatal error: %s", self.role, self.brokers, err.str())
            return
        now = time.monotonic()
        if now - self.last.get(err.code(), -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self.last[err.code()] = now
            log.warning("Kafka %s at %s: %s (retrying)", self.role, self.brokers, err.str())


def client_config(brokers: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"bootstrap.servers": brokers, **extra}


def consumer_config(
    brokers: str, extra: dict[str, Any], tail: bool, control: bool
) -> dict[str, Any]:
    """The settings of a worker thread's consumer of the input (or, ``control``, the
    control) topic."""
    config = {
        "group.id": "audienceflow-worker",  # required by the client; never joined
        "enable.auto.commit": False,
        "enable.partition.eof": not tail,
        "auto.offset.reset": "earliest",  # a resume offset gone by retention: re-read, not skip
        "isolation.level": "read_committed",  # aborted transactions' records are no events
        "fetch.wait.max.ms": 100,  # some brokers (tansu) hold a fetch this long even with data
        "error_cb": _ErrorLog("consumer", brokers),
        "logger": _RDKAFKA_LOG,
        **client_config(brokers, extra),
    }
    if control:
        config["fetch.wait.max.ms"] = max(int(config["fetch.wait.max.ms"]), CONTROL_FETCH_WAIT_MS)
    return config


def check_broker(brokers: str, extra: dict[str, Any], timeout: float = 10.0) -> AdminClient:
    """An admin client, once the broker has answered; else ``KafkaUnavailable`` naming it
    (``ConfigError`` for a setting of ``kafka.add_config`` librdkafka refuses)."""
    # Quiet: librdkafka would print a line per failed connection; the error says it once.
    try:
        admin = AdminClient(
            {**client_config(brokers, extra), "log_level": 0, "error_cb": lambda err: None}
        )
    except KafkaException as exc:  # a property librdkafka does not know, or a bad value
        raise ConfigError(f"kafka.add_config: {error_text(exc)}") from None
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"cannot reach the Kafka broker at {brokers} (kafka.brokers) within {timeout:g}s: "
            f"{error_text(exc)}"
        ) from None
    return admin


def error_text(exc: KafkaException) -> str:
    """What librdkafka says of ``exc``: its ``KafkaError``'s text, else the exception's."""
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


def missing_input(admin: AdminClient, topic: str, timeout: float = 10.0) -> bool:
    """Whether the broker lacks ``topic``, which the worker reads and never creates.

    A consumer does not create what it reads (librdkafka's and, since Kafka 2.3, the Java
    client's ``allow.auto.create.topics``; Kafka Streams stops on a missing source topic):
    a missing input is most often a mistyped or renamed ``kafka.input_topic``, and a
    topic created for it would be read forever empty, with the broker's default
    partition count, where the producers' keys expect another.
    """
    # All topics' metadata: asking for this one by name lets a broker with
    # ``auto.create.topics.enable`` (Kafka's default) create it in answer.
    return topic not in admin.list_topics(timeout=timeout).topics


def ensure_topics(
    admin: AdminClient,
    brokers: str,
    topics: list[str],
    partitions: int,
    replication: int,
    timeout: float = 10.0,
) -> list[str]:
    """Create the topics the broker does not have; return the ones created."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in dict.fromkeys(topics) if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, partitions, replication) for t in missing], operation_timeout=timeout
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout)
            created.append(topic)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process of the cluster created it first
            raise KafkaUnavailable(
                f"topic {topic!r} is missing on {brokers} and creating it "
                f"({partitions} partitions, replication {replication}) was refused: "
                f"{error_text(exc)}"
            ) from None
    return created


def _cost(msg: Any) -> int:
    """The bytes a message costs to hold and ingest: its value, key and headers (a
    record of 200 KB of headers and a short value weighs 200 KB). An error's value is
    its text."""
    value = msg.value()
    size = 0 if value is None else len(value)
    key = msg.key()
    if key is not None:
        size += len(key)
    headers = msg.headers()
    if headers:
        for name, data in headers:
            size += len(name.encode("utf-8", "surrogatepass")) + (0 if data is None else len(data))
    return size


class _Feed:
    """One partition's share of a ``_SharedConsumer``: what was read for it and not
    yet taken, and the offset its next message must have."""

    __slots__ = ("buffer", "costs", "next", "parked", "size", "tp")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.buffer: deque[Any] = deque()
        self.costs: deque[int] = deque()  # each buffered message's ``_cost``, in step
        self.size = 0  # bytes of the messages in ``buffer`` (``_cost``)
        self.next = tp.offset  # a logical offset (OFFSET_BEGINNING) until a message came
        self.parked = False  # unassigned while its buffer is full


class _SharedConsumer:
    """One consumer for the partitions of one topic that one worker thread reads.

    ``take`` hands a partition its messages in offset order, at most ``n`` at a time, and
    no more once they reach ``budget`` bytes (``BATCH_BYTES``; a message's key and
    headers count with its value, ``_cost``);
    when its buffer is empty it polls the consumer (again, while full polls bring it
    nothing: an empty take says the partition has nothing to read), and what a poll
    brings for the other partitions waits in their buffers. A partition whose buffer
    reaches ``cap`` messages or ``PARK_AFTER_BATCHES`` times ``budget`` bytes (it is not
    being taken from: alignment holds it back, or Bytewax has not called it yet) is
    unassigned, so the consumer stops fetching it and other partitions' reads do not
    pile up behind it; it is assigned again at ``_Feed.next`` once fewer than half of
    either are left (a batch or more still to take while the fetch starts again).
    Messages are appended only at or after ``_Feed.next`` and only
    while assigned, so a fetch still under way when it was unassigned cannot deliver one
    twice or out of order.
    A fetch response larger than ``receive.message.max.bytes`` (a record larger than it
    on any partition read) is refused by librdkafka, which drops the connection and asks
    again, forever: every partition of the consumer stalled. Told of it (its error names
    the response's size), the consumer is replaced by one whose limit fits the response,
    assigned at each partition's ``_Feed.next``; the record is then read, and ingest
    dead-letters it (``oversize``) as any line over the event limit.
    Not thread-safe: Bytewax calls a partition only on the worker thread that built it,
    and each worker thread has its own (``KafkaInput._consumer``).
    """

    budget = BATCH_BYTES  # bytes a take hands out at most (one message more)
    idle = _IDLE  # how long its partitions with nothing to read wait (``idle_until``)
    grow_to = 0  # the size of a fetch response librdkafka refused, once told (``_error``)
    wake: datetime | None = None  # when its partitions with nothing to read poll again

    def idle_until(self) -> datetime:
        """When a partition that found nothing to read is asked again: ``idle`` after
        the first of its partitions found nothing, the same instant for every one that
        finds nothing until then.

        One fetch response brings all of them their messages, and whichever is asked
        first polls it. Each waiting ``_IDLE`` from its own empty read, the first was due
        a few microseconds before the others, alone in its activation of the input: it
        polled the response and read its batch, and the others read theirs only at the
        next activation, after the shards had processed the first batch (which waits
        there for the others' watermarks). Waking together, they read one response in
        one activation: each shard is handed the batches once, not twice.
        """
        now = datetime.now(UTC)
        wake = self.wake
        if wake is None or wake <= now:
            self.wake = wake = now + self.idle
        return wake

    @property
    def room(self) -> int:
        """The bytes of messages (``_cost``) a partition's buffer holds before it is parked."""
        return PARK_AFTER_BATCHES * self.budget

    def __init__(self, config: dict[str, Any], cap: int, budget: int = BATCH_BYTES) -> None:
        self.told: Callable[[KafkaError], None] | None = config.get("error_cb")
        self.config = {**config, "error_cb": self._error}
        self.consumer = Consumer(self.config)
        self.cap = cap
        self.budget = budget
        self.feeds: dict[int, _Feed] = {}
        self.parks = 0  # times a partition was unassigned for a full buffer

    def add(self, topic: str, partition: int, offset: int) -> None:
        tp = TopicPartition(topic, partition, offset)
        self.consumer.incremental_assign([tp])
        self.feeds[partition] = _Feed(tp)

    def take(self, partition: int, n: int) -> list[Any]:
        feed = self.feeds[partition]
        buffer = feed.buffer
        if not buffer:
            for _ in self.feeds:  # at most a poll per partition
                if self._poll(n) < n or buffer:
                    break
        out = []
        size = 0
        budget = self.budget
        pop, add, cost = buffer.popleft, out.append, feed.costs.popleft
        for _ in range(min(n, len(buffer))):
            add(pop())
            size += cost()
            if size >= budget:
                break  # the rest waits for the next batch: a batch's cost is bounded
        feed.size -= size
        if feed.parked and len(buffer) < self.cap // 2 and feed.size < self.room // 2:
            tp = feed.tp
            self.consumer.incremental_assign([TopicPartition(tp.topic, tp.partition, feed.next)])
            feed.parked = False
        return out

    def end_before_next(self, partition: int) -> int | None:
        """The partition's end offset if it lies before the next offset to read, else None.

        The end is the high watermark of the last fetch response (not ListOffsets, which
        tansu undercounts). A broker asked for an offset past a partition's end answers
        ``OFFSET_OUT_OF_RANGE``, and librdkafka resets to the earliest offset
        (``auto.offset.reset``), whose messages ``_poll`` then drops as already read; tansu
        answers nothing at all, so the end is never reported: either way nothing of the
        partition would be read until it grew past that offset again.
        """
        feed = self.feeds[partition]
        if feed.next < 0 or feed.buffer or feed.parked:
            return None
        try:
            _, high = self.consumer.get_watermark_offsets(feed.tp, cached=True)
        except KafkaException:
            return None
        return high if 0 <= high < feed.next else None

    def _poll(self, n: int) -> int:
        """One poll of up to ``n`` messages, each to its partition's buffer; how many."""
        feeds = self.feeds
        msgs = self.consumer.consume(n, 0)
        for msg in msgs:
            feed = feeds.get(msg.partition())  # type: ignore[arg-type]
            if msg.error() is not None:
                if feed is None:  # an error of the client, not of a partition
                    if msg.error().fatal():
                        raise KafkaException(msg.error())
                    log.warning("Kafka input: %s (retrying)", msg.error().str())
                elif not feed.parked:  # end of partition, or an error of it: in order
                    feed.buffer.append(msg)
                    cost = _cost(msg)  # its text, which ``take`` counts out again
                    feed.costs.append(cost)
                    feed.size += cost
                continue
            if feed is None or feed.parked:
                continue  # read again from feed.next when assigned again
            offset = msg.offset()
            if feed.next >= 0 and offset < feed.next:
                continue  # fetched before it was unassigned, and appended already
            feed.buffer.append(msg)
            feed.next = offset + 1
            cost = _cost(msg)
            feed.costs.append(cost)
            feed.size += cost
            # By bytes too: 4,000 messages of a MB (Kafka's default limit) were 4 GB.
            if len(feed.buffer) >= self.cap or feed.size >= self.room:
                feed.parked = True
                self.parks += 1
                self.consumer.incremental_unassign([feed.tp])
        if self.grow_to:
            self._grow()
        return len(msgs)

    def _error(self, err: KafkaError) -> None:
        """librdkafka's error callback (served in ``consume``): a response too large to
        receive is noted for ``_grow``; every error goes on to the configured callback."""
        if err.code() == KafkaError._BAD_MSG:
            found = _TOO_LARGE.search(err.str())
            if found is not None:
                self.grow_to = max(self.grow_to, int(found.group(1)))
        if self.told is not None:
            self.told(err)

    def _grow(self) -> None:
        """Replace the consumer by one that receives a response of ``grow_to`` bytes,
        reading each partition from its next offset (a parked one stays unassigned)."""
        size, self.grow_to = self.grow_to, 0
        limit = int(self.config.get("receive.message.max.bytes", RECEIVE_DEFAULT))
        if size <= limit:
            return
        # A quarter more: a broker that sends all it holds past the offset asked (tansu
        # does) may have more by the next fetch.
        grown = min(RECEIVE_MAX, size + size // 4)
        feeds = [f for f in self.feeds.values() if not f.parked]
        log.warning(
            "Kafka input %s: a fetch response of %d bytes is over receive.message.max.bytes "
            "(%d): a record that large is on partition(s) %s (it is dead-lettered as "
            "oversize once read); this consumer now receives up to %d bytes",
            next(iter(self.feeds.values())).tp.topic if self.feeds else "?",
            size,
            limit,
            ", ".join(str(f.tp.partition) for f in feeds) or "-",
            grown,
        )
        self.config["receive.message.max.bytes"] = grown
        old, self.consumer = self.consumer, Consumer(self.config)
        if feeds:
            self.consumer.incremental_assign(
                [TopicPartition(f.tp.topic, f.tp.partition, f.next) for f in feeds]
            )
        old.close()

    def remove(self, partition: int) -> bool:
        """Stop reading ``partition``; True when none is left (``close`` it then)."""
        feed = self.feeds.pop(partition, None)
        if feed is not None and not feed.parked:  # a parked one is unassigned already
            try:
                self.consumer.incremental_unassign([feed.tp])
            except KafkaException as exc:
                log.warning("Kafka input %s: unassigning it: %s", feed.tp.partition, exc)
        return not self.feeds

    def close(self) -> None:
        self.consumer.close()


class _InputPartition(StatefulSourcePartition[Any, Resume]):
    """One Kafka partition: reads, ingests (validate, filter, its own event time) and routes."""

    def __init__(
        self,
        shared: _SharedConsumer,
        release: Callable[[], None],
        topic: str,
        partition: int,
        offset: int,
        batch_size: int,
        stop: threading.Event,
        ingest: PartitionIngest,
        tail: bool,
        idle_after: float,
        alignment: Alignment,
        watch: PartitionWatch | None = None,
        ends: tuple[int, int] | None = None,
    ) -> None:
        """``ends``: the partition's earliest and end offsets when it was listed
        (``end_offsets``), if known."""
        shared.add(topic, partition, offset)
        self.shared = shared
        self.release = release  # stops reading this partition (closes the last one's consumer)
        self.partition = partition
        self.tp = TopicPartition(topic, partition)
        self.offset = offset  # the next offset to read: the resume point
        self.prefix = f"{topic}:{partition}:"
        self.name = f"{topic}:{partition}"
        self.batch_size = batch_size
        self.stop = stop
        self.ingest = ingest
        self.tail = tail
        self.idle_after = idle_after
        self.alignment = alignment
        self.watch = watch
        self.eof = False
        self.awake: Any = None
        self.last_delivery = time.monotonic()  # of the last line accepted (not dead-lettered)
        self.accepted = ingest.accepted
        self.lag = metrics.INPUT_LAG.labels(topic, str(partition))
        # The partition's first offset when it was listed: a resume offset before it was
        # removed by retention while the worker was stopped (``_skipped``).
        self.earliest = ends[0] if ends is not None and ends[0] >= 0 else None
        if ends is not None:  # the backlog from the start, not 0 until the first batch
            low, high = ends
            start = offset if offset >= 0 else low
            self.lag.set(max(0, high - start))
        self.lag_due = 0.0  # monotonic time before which a paused ``_lag`` sets nothing
        self.watermark = metrics.WATERMARK.labels(topic, str(partition))
        self.spread: Any = None  # the topic's spread gauge, once reported (``_report``)
        if ingest.clock.base > float("-inf"):  # resumed: its time, before it delivers again
            self.watermark.set(ingest.clock.watermark())
        self.lines_in = metrics.CONTROL_IN if ingest.control else metrics.EVENTS_IN
        self.routed_away = metrics.ROUTED_AWAY.labels(topic, str(partition))
        self.skipped = metrics.SKIPPED_OFFSETS.labels(topic, str(partition))
        self.resumed = offset >= 0  # its first batch's gap is told (``_skipped``)
        self.away_seen = ingest.routed_away
        # Live: a batch that empties the partition ends with its watermark (_caught_up).
        self.marks_caught_up = tail and not ingest.control
        self.marked = float("-inf")  # the last watermark this partition sent

    def next_batch(self) -> list[Any]:
        if self.eof or self.stop.is_set():
            raise StopIteration
        if self.watch is not None and self.watch.grew is not None:
            raise InputGrew(self.watch.grew)
        if self.alignment.ahead(self.name):
            self.awake = datetime.now(UTC) + _IDLE  # let the partitions behind catch up
            self._lag(LAG_EVERY_S)  # what piles up meanwhile (the consumer still fetches it)
            return []
        msgs = self.shared.take(self.partition, self.batch_size)
        if not msgs:
            end = self.shared.end_before_next(self.partition)
            if end is not None:
                raise InputBehindPosition(
                    f"input {self.name} ends at offset {end}, before offset {self.offset} "
                    "where this worker reads next: the topic was deleted and created "
                    "again, the broker lost its data, or kafka.input_topic named another "
                    "topic when the snapshot was taken; the worker's state is of what it "
                    "read before: restore the topic, or start with an empty recovery.dir"
                )
            self.awake = self.shared.idle_until()
            return self._quiet()
        self.awake = None
        kind, ms = msgs[0].timestamp()
        arrival = Arrival(time.time(), ms / 1000 if kind != TIMESTAMP_NOT_AVAILABLE else None)
        prefix = self.prefix
        offset = self.offset
        raws: list[tuple[str, bytes]] = []
        at_end = False
        read = 0
        first = -1
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end = True  # tail=False: end after this batch
                elif err.fatal():
                    raise KafkaException(err)
                else:
                    log.warning("Kafka input %s: %s (retrying)", prefix[:-1], err.str())
                continue
            offset = msg.offset() or 0  # never None on a message without error
            if not read:
                first = offset
            read += 1
            value = msg.value()
            if (
                not value
                or value.isspace()
                or (value.startswith(_BOM) and (len(value) == 3 or value[3:].isspace()))
            ):
                # No event: a tombstone (a message without a value, which a compacted
                # topic deletes a key with) or a blank value (a byte-order mark alone, as
                # a replay reads a file's first line, too). Counted apart, as a replay
                # counts blank lines; neither an event read nor a dead letter.
                metrics.BLANK_IN.labels("tombstone" if value is None else "blank").inc()
                continue
            raws.append((f"{prefix}{offset}", value))
        out: list[Any] = []
        if read:
            start = self.offset if self.offset >= 0 else first
            if offset + 1 - start > read:
                self._skipped(start, first, offset + 1 - start - read)
            self.offset = offset + 1
            self.resumed = False
        if raws:
            self.lines_in.inc(len(raws))
            out = self.ingest.feed(raws, time.time() if self.tail else None)
            if self.ingest.routed_away != self.away_seen:
                self.routed_away.inc(self.ingest.routed_away - self.away_seen)
                self.away_seen = self.ingest.routed_away
            # A batch cut by bytes (``BATCH_BYTES``) leaves messages in its buffer.
            if (
                self.marks_caught_up
                and len(msgs) < self.batch_size
                and not self.shared.feeds[self.partition].buffer
            ):
                self._caught_up(out)
            # The shards its events (or late lines' dead letters) went to: one sent only
            # the partition's watermark has nothing of the batch to wait for, and a stamp
            # there read as a latency of ~0 (7 of 8 observations, placed by partition).
            # ``is_out`` on the few keys, not on every event.
            keys = {k for k, v in out if type(v) is Event or type(v) is Rejected}
            out.extend((k, arrival) for k in sorted(keys) if not is_out(k))
            self._lag()
        if at_end:
            self.eof = True
            out.extend(self.ingest.end())
            self.close()  # nothing more to fetch for it
        elif self.ingest.accepted == self.accepted:
            # Only lines it dead-lettered or filtered (or none): as quiet as an empty
            # poll, so a producer of bad lines cannot hold stream time back for all.
            out.extend(self._quiet())
            return out
        self.accepted = self.ingest.accepted
        self.last_delivery = time.monotonic()
        self._report()
        return out

    def _skipped(self, start: int, first: int, n: int) -> None:
        """Count ``n`` offsets from ``start`` on that the broker did not deliver. A gap
        before the first message read after a resume is told too: where a stopped
        worker's resume offset was removed by retention, librdkafka reads on from the
        partition's new start (``auto.offset.reset: earliest``), and what lay between
        is lost to the worker without another sign. A warning only then, or when the
        partition's start is not known: a resume offset at or past the start the broker
        listed at start-up lost nothing, and the gap is of records no consumer is
        given (a committed transaction's marker, most often: every restart after a
        transaction ended a partition's input would warn)."""
        self.skipped.inc(n)
        if not self.resumed or first <= start:
            return
        low = self.earliest
        if low is not None and start >= low:
            log.info(
                "input %s resumed at offset %d, and the broker's first message is at %d: "
                "%d offset(s) not delivered (transaction markers, aborted or compacted "
                "records; the partition starts at %d, so none was removed by retention); "
                "counted in audienceflow_input_skipped_offsets_total",
                self.name,
                start,
                first,
                first - start,
                low,
            )
            return
        log.warning(
            "input %s resumed at offset %d, and the broker's first message is at %d: "
            "%d offset(s) not delivered (%s); counted in "
            "audienceflow_input_skipped_offsets_total",
            self.name,
            start,
            first,
            first - start,
            f"removed by retention while the worker was stopped: the partition starts at {low}"
            if low is not None
            else "removed by retention while the worker was stopped, compacted away, or "
            "transaction markers and aborted records",
        )

    def _caught_up(self, out: list[Any]) -> None:
        """A batch that emptied the partition ends with its watermark, tick step or not.

        ``time.tick`` bounds the watermarks of a backlog (one per batch at most, and only
        when a step is crossed); once caught up, a batch is all there is to read, and an
        event waits at the shards until a watermark passes it: the tick step would add
        up to a tick to its latency. So every caught-up batch that moved the
        partition's time says so (one item per shard per batch; the batches of a live
        partition come at the pace of its fetches). Watermarks only let stream time move
        sooner: what the shards output at each stream time is the same.
        """
        last = out[-1][1] if out else None
        if type(last) is Watermark and last.partition == self.ingest.name:
            self.marked = last.at  # the batch crossed a tick step: it sent one already
            return
        ingest = self.ingest
        at = ingest.clock.watermark()
        if at > self.marked and ingest.pending is None:
            self.marked = at
            mark = ingest.watermark()
            out.extend((k, mark) for k in ingest.keys)

    def _quiet(self) -> list[Any]:
        """Nothing to read: read live, after ``idle_after`` of silence the partition is
        idle; read to its end (``tail=False``), only at its end, as in a replay.

        Until it is idle it goes on holding back the partitions of this process that
        run ahead of it (alignment): a producer that lags hours behind the others keeps
        its partition caught up, with nothing to read most of the time, and the events
        the others would read meanwhile could only wait at the shards, in memory, for
        its time to reach theirs; paused, they wait in Kafka. A
        control partition read live is idle at once: a request is never late (one whose
        time stream time has passed applies at once), so waiting for more would only
        stall every shard's time after each request, and from start-up on. A bounded
        read has no such wait: its end is near, and a partition turned idle before it
        (a slow first fetch, a paused process) would let stream time pass what it has
        not yet delivered, and a request or an event would apply out of its order."""
        self.alignment.report(self.name, self.ingest.clock.base, self.ingest.idle)
        if self.ingest.idle or not self.tail:
            return []
        at_once = self.ingest.control and self.tail
        if not at_once and time.monotonic() - self.last_delivery < self.idle_after:
            return []
        out = self.ingest.set_idle(True)
        self._report()
        return out

    def _report(self) -> None:
        clock = self.ingest.clock
        self.alignment.report(self.name, clock.base, self.ingest.idle)
        if clock.base > float("-inf"):
            self.watermark.set(clock.watermark())
        if not self.ingest.control:  # the spread is the input partitions' (``Alignment``)
            if self.spread is None:  # looked up once, not at every batch
                self.spread = metrics.WATERMARK_SPREAD.labels(self.tp.topic)
            self.spread.set(self.alignment.spread())

    def _lag(self, every: float = 0.0) -> None:
        """The messages on the broker this partition has not read: the end offset of the
        last fetch response (no request of its own) less the next offset to read. Set at
        every batch taken, and at most ``every`` seconds apart while alignment pauses it;
        a partition parked for a full buffer is not fetched, so its figure is the one of
        its last fetch until it is read again (README, Balanced reading)."""
        if every:
            now = time.monotonic()
            if now < self.lag_due:
                return
            self.lag_due = now + every
        try:
            _, high = self.shared.consumer.get_watermark_offsets(self.tp, cached=True)
        except KafkaException:
            return
        if high >= 0:
            self.lag.set(max(0, high - self.offset))

    def next_awake(self) -> Any:
        return self.awake

    def snapshot(self) -> Resume:
        # Bytewax snapshots every input partition at every epoch, but a shard only when
        # its state changed: on a quiet input the shards' mark alone would stand still
        # while epochs go on completing, and the snapshot-age alert would fire. It asks
        # without recovery too: the mark then says the epochs complete (left at 0, it
        # fired the alert forever).
        metrics.SNAPSHOT_TIME.set_to_current_time()
        packed = self.ingest.waiting_ahead()
        if packed is not None:
            return self.offset, self.ingest.clock, self.tp.topic, [], packed
        return self.offset, self.ingest.clock, self.tp.topic

    def close(self) -> None:
        release, self.release = self.release, _nothing
        release()


def _nothing() -> None:
    pass


def input_partitions(
    brokers: str, topic: str, extra: dict[str, Any], control_topic: str | None = None
) -> list[str]:
    """The input topic's partitions as ``topic:partition`` names, in order, then the
    control topic's (every one of them holds stream time back until it reports)."""
    admin = AdminClient(
        {
            **client_config(brokers, extra),
            # Through the worker's log, as every other client of it: librdkafka's own
            # lines (a consumer property in ``kafka.add_config`` is a CONFWARN here).
            "logger": _RDKAFKA_LOG,
            "error_cb": _ErrorLog("admin", brokers),
        }
    )
    names = []
    for t, what in ((topic, "input"), (control_topic, "control")):
        if t is None:
            continue
        meta = admin.list_topics(t, timeout=30).topics.get(t)
        if meta is None or meta.error is not None or not meta.partitions:
            reason = meta.error.str() if meta is not None and meta.error else "no partitions"
            raise KafkaUnavailable(f"{what} topic {t!r} on {brokers}: {reason}")
        names += [f"{t}:{p}" for p in sorted(meta.partitions)]
    return names


def part_names(names: list[str], topic: str) -> list[str]:
    """Bytewax's names of the partitions ``input_partitions`` lists: the input topic's
    keep their historical key (the number), so snapshots resume; control ones are
    ``topic:partition``."""
    return [n.rsplit(":", 1)[1] if n.startswith(f"{topic}:") else n for n in names]


def end_offsets(
    brokers: str, extra: dict[str, Any], names: list[str], timeout: float = END_OFFSETS_TIMEOUT_S
) -> dict[str, tuple[int, int]]:
    """Each ``topic:partition`` of ``names``: its earliest and end offsets, asked of the
    broker in one request each (ListOffsets); those it does not answer within ``timeout``
    are left out (a partition's first fetch tells its end then).

    A partition's lag gauge starts from them: set from fetch responses only, it read 0
    until the partition's first batch, after a restart too, however much waited.
    """
    tps = [TopicPartition(t, int(p)) for t, p in (n.rsplit(":", 1) for n in names)]
    if not tps:
        return {}
    admin = AdminClient(
        {**client_config(brokers, extra), "logger": _RDKAFKA_LOG, "error_cb": lambda err: None}
    )
    deadline = time.monotonic() + timeout
    found: dict[str, list[int]] = {}
    try:
        asked = [
            admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout)
            for spec in (OffsetSpec.earliest(), OffsetSpec.latest())
        ]
        for futures in asked:
            for tp, future in futures.items():
                info = future.result(max(0.0, deadline - time.monotonic()))
                found.setdefault(f"{tp.topic}:{tp.partition}", []).append(info.offset)
    except (KafkaException, TimeoutError, ValueError) as exc:
        reason = error_text(exc) if isinstance(exc, KafkaException) else str(exc) or "timed out"
        log.info("input lag: the partitions' end offsets are not known yet: %s", reason)
    return {name: (ends[0], ends[1]) for name, ends in found.items() if len(ends) == 2}


class KafkaInput(FixedPartitionedSource[Any, Resume]):
    """The input topic (and the control topic), one partition per Kafka partition; see
    the module docstring."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        settings: Settings,
        *,
        tail: bool = True,
        batch_size: int = 1000,
        extra: dict[str, Any] | None = None,
        stop: threading.Event | None = None,
        control_topic: str | None = None,
        started: threading.Event | None = None,
        partition_check: float = 0.0,
        listed: list[str] | None = None,
    ) -> None:
        self.brokers = brokers
        # Set when Bytewax first lists the partitions: on each worker, once the
        # cluster's processes have connected and the dataflow runs.
        self.started = started or threading.Event()
        self.topic = topic
        self.control_topic = control_topic
        self.settings = settings
        self.tail = tail
        self.batch_size = batch_size
        self.extra = dict(extra or {})
        self.stop = stop or threading.Event()
        self.alignment = Alignment(settings.align_within)
        # One consumer per (worker thread, topic): see _SharedConsumer.
        self.consumers: dict[tuple[int, str], _SharedConsumer] = {}
        self.lock = threading.Lock()
        # Tailing: one watch per process for partitions added to the topics (``list_parts``),
        # against ``listed`` (``topic:partition`` names the dataflow was built for; else
        # the first listing of ``list_parts``).
        self.partition_check = partition_check if tail else 0.0
        self.listed = listed
        self.watch: PartitionWatch | None = None
        self.ends: dict[str, tuple[int, int]] = {}  # of the last listing (``end_offsets``)

    def _consumer(self, topic: str, control: bool) -> tuple[_SharedConsumer, tuple[int, str]]:
        key = (threading.get_ident(), topic)
        with self.lock:
            shared = self.consumers.get(key)
            if shared is None:
                config = consumer_config(self.brokers, self.extra, self.tail, control)
                shared = _SharedConsumer(config, cap=PARK_AFTER_BATCHES * self.batch_size)
                if control and self.tail:
                    shared.idle = CONTROL_IDLE
                self.consumers[key] = shared
        return shared, key

    def _release(self, key: tuple[int, str], partition: int) -> Callable[[], None]:
        def release() -> None:
            with self.lock:
                shared = self.consumers[key]
                last = shared.remove(partition)
                if last:
                    del self.consumers[key]
            if last:  # outside the lock: other threads' closes need not wait for it
                shared.close()

        return release

    def list_parts(self) -> list[str]:
        self.started.set()
        names = input_partitions(self.brokers, self.topic, self.extra, self.control_topic)
        ends = end_offsets(self.brokers, self.extra, names)
        with self.lock:  # each worker thread of the process lists them
            self.ends.update(ends)
            if self.watch is None and self.partition_check > 0:
                counts: dict[str, int] = {}
                for name in self.listed if self.listed is not None else names:
                    topic = name.rsplit(":", 1)[0]
                    counts[topic] = counts.get(topic, 0) + 1
                self.watch = PartitionWatch(
                    self.brokers, self.extra, counts, self.partition_check, self.stop
                )
                self.watch.start()
        return part_names(names, self.topic)

    def build_part(
        self, step_id: str, for_part: str, resume_state: Resume | None
    ) -> _InputPartition:
        control = ":" in for_part
        topic, partition = for_part.rsplit(":", 1) if control else (self.topic, for_part)
        name = f"{topic}:{partition}"
        ahead: Ahead | bytes = []
        if resume_state is None:
            offset, clock = OFFSET_BEGINNING, None
        else:
            offset, clock, *read = resume_state  # no topic in snapshots of before 2026-12
            if len(read) > 2:
                ahead = read[2]  # packed (``Resume``)
            elif len(read) > 1:
                ahead = read[1]
            if read and read[0] != topic:
                raise SnapshotRefused(
                    f"input partition {partition} was snapshotted reading topic {read[0]!r} "
                    f"(next offset {offset}), and kafka.input_topic is now {topic!r}: its "
                    "offsets and event time do not apply to another topic; set the topic "
                    "back, or start with an empty recovery.dir"
                )
            log.info(
                "input %s resumes from the last snapshot at offset %d (event time %s)",
                name,
                offset,
                "not yet known" if clock.base == float("-inf") else iso(clock.base),
            )
        home = None if control else int(partition)  # placement: partition's shard
        ingest = make_ingest(
            self.settings, name, clock, self.tail, control, home, out=out_key(for_part)
        )
        if ahead and self.tail:  # read to its end now, nothing is judged ahead
            ingest.resume_ahead(ahead)
        shared, key = self._consumer(topic, control)
        return _InputPartition(
            shared,
            self._release(key, int(partition)),
            topic,
            int(partition),
            offset,
            self.batch_size,
            self.stop,
            ingest,
            self.tail,
            self.settings.idle_after,
            self.alignment,
            self.watch,
            self.ends.get(name),
        )


QUEUE_KBYTES = 64 * 1024  # 64 MiB per worker; ``kafka.add_config`` may set another
IDLE_SERVE = 0.05  # s: acknowledgements wait at most about this long on a quiet worker


class _Batch:
    """Records sent as one batch: counted by the sender, acknowledged by delivery reports."""

    __slots__ = ("acked", "failed", "report", "sent", "stored")

    def __init__(self, report: Callable[[_Batch, KafkaError | None, Any], None]) -> None:
        # Each record's delivery report (dropped once the batch is stored: a cycle).
        self.report: Callable[[KafkaError | None, Any], None] | None = partial(report, self)
        self.sent = 0  # written by the sending thread only
        self.acked = 0  # written under KafkaOutput.lock only
        self.failed = False
        self.stored: Callable[[], None] | None = None


# What a record batch holding one record adds to its key and value, at most: the batch
# header (61 bytes), the record's length, attributes, deltas and lengths (varints, 41
# bytes at most) and ``HEADERS``; rounded up. A topic's ``max.message.bytes`` bounds the batch.
RECORD_FRAMING = 256
PRODUCER_LIMIT = "a Kafka message the producer sends (message.max.bytes)"


def _refuse_too_large(
    topic: str, key: bytes | None, value: bytes, limit: str = PRODUCER_LIMIT
) -> tuple[str, bytes | None, bytes]:
    raise KafkaUnavailable(
        f"a record of {len(value)} bytes for topic {topic!r} is larger than {limit}"
    )


def topic_limits(
    brokers: str,
    extra: dict[str, Any],
    topics: list[str],
    timeout: float = 10.0,
    compression: dict[str, str] | None = None,
) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` as the broker reports it (the topic's own, or the
    broker's default); a topic it does not report (an old broker, an ACL) is left out,
    with a warning: a record over its limit is refused by the broker, which stops the
    worker, as before this check. ``compression``, if given, is filled with each topic's
    ``compression.type`` from the same answer (``output_codecs``)."""
    admin = AdminClient(
        {**client_config(brokers, extra), "log_level": 0, "error_cb": lambda err: None}
    )
    wanted = list(dict.fromkeys(topics))
    out: dict[str, int] = {}
    try:
        futures = admin.describe_configs(
            [ConfigResource("topic", t) for t in wanted], request_timeout=timeout
        )
    except (KafkaException, ValueError) as exc:
        log.warning("the output topics' max.message.bytes are not known: %s", error_text(exc))
        return out
    # One deadline for all: the futures answer one request, and a broker that does not
    # answer (gone since the topics were listed, or slow) leaves each unanswered, with a
    # TimeoutError (no KafkaException) when the wait ends before librdkafka's own timer.
    deadline = time.monotonic() + timeout
    for res, future in futures.items():
        try:
            entries = future.result(max(0.0, deadline - time.monotonic()))
        except (KafkaException, TimeoutError):
            continue  # named in the warning below
        entry = entries.get("max.message.bytes")
        value = getattr(entry, "value", None)
        if isinstance(value, str) and value.isdigit():
            out[res.name] = int(value)
        codec = getattr(entries.get("compression.type"), "value", None)
        if compression is not None and isinstance(codec, str):
            compression[res.name] = codec
    unknown = [t for t in wanted if t not in out]
    if unknown:
        log.warning(
            "the broker does not report max.message.bytes of %s: a record over a topic's "
            "limit is refused there, which stops the worker (keep the producer's "
            "message.max.bytes at or below it)",
            ", ".join(unknown),
        )
    return out


# The codecs whose compressed size the worker computes itself (``compressed_size``):
# gzip through zlib, as librdkafka compresses it. snappy, lz4 and zstd would need a
# library the worker does not otherwise use; a record compressed with one is judged by
# its uncompressed size (``output_codecs``).
COMPUTED_CODECS = ("gzip",)


def output_codecs(
    extra: dict[str, Any], limits: dict[str, int], compression: dict[str, str]
) -> dict[str, int]:
    """For each limited topic whose records the broker checks compressed, the gzip level
    to measure them with: the producer's ``compression.type`` (``kafka.add_config``) is
    gzip and the topic's own ``compression.type`` is ``producer`` (Kafka's default) or
    gzip. The broker checks the batch as sent, and again as stored when the topic
    recompresses it: with another topic codec (``uncompressed`` too) the record is
    judged by its uncompressed size, as without compression.

    >>> output_codecs({"compression.type": "gzip"}, {"a": 1, "b": 1}, {"b": "lz4"})
    {'a': -1}
    >>> output_codecs({"compression.codec": "gzip", "compression.level": 9}, {"a": 1}, {})
    {'a': 9}
    >>> output_codecs({"compression.type": "zstd"}, {"a": 1}, {}), output_codecs({}, {"a": 1}, {})
    ({}, {})
    """
    codec = str(extra.get("compression.type", extra.get("compression.codec", "none"))).lower()
    if codec not in COMPUTED_CODECS:
        return {}
    # librdkafka's -1 is the codec's default: zlib's own -1 (level 6).
    level = int(extra.get("compression.level", -1))
    return {
        topic: level
        for topic in limits
        if compression.get(topic, "producer").lower() in ("producer", codec)
    }


def compressed_size(data: bytes, level: int) -> int:
    """The size of ``data`` gzipped at ``level`` (-1: zlib's default), header and trailer
    included, as librdkafka gzips a record batch (deflate, window 15, gzip wrapper).

    >>> compressed_size(b"p" * 30_000, -1) < 200
    True
    """
    packer = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return len(packer.compress(data)) + len(packer.flush())


def limited_config(extra: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    """``extra`` with the producer's ``batch.size`` no larger than the smallest topic
    limit: the broker bounds a record batch by its topic's ``max.message.bytes``, and
    librdkafka batches up to 1,000,000 bytes, so many small records to a topic of a
    smaller limit were refused together. (A single record is checked by ``send``.)

    >>> limited_config({}, {"a": 100_000, "b": 2_000_000})
    {'batch.size': 100000}
    >>> limited_config({"batch.size": 50_000}, {"a": 100_000}), limited_config({}, {})
    ({'batch.size': 50000}, {})
    """
    if not limits:
        return dict(extra)
    least = min(limits.values())
    current = int(extra.get("batch.size", 1_000_000))
    return {**extra, "batch.size": max(1, min(current, least))}


class KafkaOutput:
    """One producer: records to topics, waiting out broker outages, never dropping one.

    Records go in batches: ``send`` each, then ``seal(stored)``; ``stored()`` runs once
    every record of that batch and of every batch sealed before it is acknowledged, in
    the order they were sealed. The caller goes on with the next batch and serves the
    acknowledgements that came meanwhile (``serve``, at each batch); a background thread
    serves them when it has not for ``IDLE_SERVE`` (a quiet input); ``flush`` waits for
    all of them (the sink's epoch snapshot). ``background=False`` leaves the serving to
    ``serve`` and ``flush`` (tests use it to hold acknowledgements back).
    """

    def __init__(
        self,
        brokers: str,
        extra: dict[str, Any] | None = None,
        background: bool = True,
        limits: dict[str, int] | None = None,
        compression: dict[str, str] | None = None,
    ) -> None:
        self.brokers = brokers
        # Each topic's ``max.message.bytes`` (``topic_limits``): a record over it is
        # replaced as one over the producer's limit is (``too_large``), since the broker
        # would refuse it after it is sent, and the worker would stop at every restart.
        self.limits = dict(limits or {})
        # The topics whose records the broker checks gzipped, by gzip level
        # (``output_codecs``; ``compression``: each topic's own compression.type).
        self.codecs = output_codecs(extra or {}, self.limits, compression or {})
        self.failed: list[str] = []
        self.lock = threading.Lock()  # the delivery reports of two threads (poll, flush)
        self.open = _Batch(self._delivered)  # the batch being sent
        self.sealed: deque[_Batch] = deque()  # sealed, not yet stored, oldest first
        self.producer = Producer(
            {
                "acks": "all",
                "enable.idempotence": True,  # a retry after a lost ack is not written twice
                "linger.ms": 5,
                "message.timeout.ms": 0,  # retry until delivered: the flush waits for the broker
                # Records sent and not yet acknowledged, at most (then a send waits): the
                # sink does not wait for each batch, so this bounds what a slow broker
                # leaves in memory (librdkafka's own default is 1 GiB).
                "queue.buffering.max.kbytes": QUEUE_KBYTES,
                "error_cb": _ErrorLog("producer", brokers),
                "logger": _RDKAFKA_LOG,
                **client_config(brokers, limited_config(extra or {}, self.limits)),
            }
        )
        self.served = time.monotonic()  # when the worker last served acknowledgements
        # What to send instead of a record larger than the producer sends (its
        # ``message.max.bytes``) or than its topic accepts: ``(topic, key, value, limit)
        # -> (topic, key, value)``, ``limit`` naming which. Without it such a record
        # raises, and the worker stops.
        self.too_large: Callable[[str, bytes | None, bytes, str], tuple[str, bytes | None, bytes]]
        self.too_large = _refuse_too_large
        self.closed = threading.Event()
        self.poller: threading.Thread | None = None
        if background:
            self.poller = threading.Thread(target=self._serve, name="kafka-acks", daemon=True)
            self.poller.start()

    def serve(self) -> None:
        """Serve the acknowledgements that came (the sink calls it at each batch: under
        load they are served on the worker's thread, not handed between threads)."""
        self.served = time.monotonic()
        self.producer.poll(0)

    def _serve(self) -> None:
        # Only when the worker has not served them for a while (a quiet input): served
        # here under load, each report takes the interpreter lock from the worker's
        # thread (a worker serving them all here used 0.86 of a core at 20k events/s on
        # the tight ramp where it used 0.82 waiting at each batch).
        while not self.closed.wait(IDLE_SERVE):
            if self.sealed and time.monotonic() - self.served >= IDLE_SERVE:
                try:
                    self.producer.poll(0)
                except Exception:  # a report's handling failed: say so, and go on serving
                    log.exception(
                        "Kafka output at %s: handling a delivery report failed", self.brokers
                    )

    def _delivered(self, batch: _Batch, err: KafkaError | None, msg: Any) -> None:
        with self.lock:
            if err is not None:
                self.failed.append(f"{msg.topic()}: {err.str()}")
                batch.failed = True  # never stored: the next write or flush raises
            batch.acked += 1
            self._drain()

    def _drain(self) -> None:
        """Under ``lock``: the sealed batches now stored, oldest first, are told so."""
        sealed = self.sealed
        while sealed and sealed[0].acked == sealed[0].sent and not sealed[0].failed:
            batch = sealed.popleft()
            batch.report = None  # no cycle left for the collector
            if batch.stored is not None:
                batch.stored()

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        batch = self.open
        began = warned = 0.0
        too_large = self.too_large
        limits = self.limits
        while True:
            if limits:
                limit = limits.get(topic)
                if (
                    limit is not None
                    and len(value) + len(key or b"") + RECORD_FRAMING > limit
                    and not self._fits_compressed(topic, key, value, limit)
                ):
                    # The broker would refuse it once sent: replaced now, as below.
                    why = f"topic {topic!r} accepts (its max.message.bytes, {limit} bytes)"
                    topic, key, value = too_large(topic, key, value, why)
                    too_large = _refuse_too_large
                    continue
            # Counted before it can be acknowledged: a report never finds more acked than sent.
            batch.sent += 1
            try:
                self.producer.produce(topic, value, key, headers=HEADERS, on_delivery=batch.report)
                break
            except KafkaException as exc:
                batch.sent -= 1
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise
                # Refused before it is queued, by the client's own size limit: the
                # same record would be refused again after every restart. Its
                # replacement is asked for once: one refused too (a message.max.bytes
                # below a dead letter's 1 to 2 KB) raises, not replaced again forever.
                topic, key, value = too_large(topic, key, value, PRODUCER_LIMIT)
                too_large = _refuse_too_large
            except BufferError:  # the queue of unacknowledged records is full: wait
                batch.sent -= 1
                began = began or time.perf_counter()
                self.producer.poll(0.1)
                waited = time.perf_counter() - began
                if waited >= warned + 5.0:
                    warned = waited
                    self._waiting(len(self.producer), waited)
            except BaseException:
                batch.sent -= 1
                raise
        if began:  # time the worker waited on the broker, as at an epoch's flush
            metrics.FLUSH_WAIT.observe(time.perf_counter() - began)

    def _fits_compressed(self, topic: str, key: bytes | None, value: bytes, limit: int) -> bool:
        """Whether a record over ``limit`` uncompressed fits it as the broker checks it,
        compressed (only for a topic in ``codecs``): a batch of one record, since
        librdkafka starts a new batch for a record over ``batch.size`` (at most the
        limit), its key and value gzipped together, plus the framing."""
        level = self.codecs.get(topic)
        if level is None:
            return False
        return compressed_size((key or b"") + value, level) + RECORD_FRAMING <= limit

    def seal(self, stored: Callable[[], None] | None = None) -> None:
        """End the batch being sent; ``stored()`` once it (and all before it) is stored."""
        batch, self.open = self.open, _Batch(self._delivered)
        batch.stored = stored
        with self.lock:
            self.sealed.append(batch)
            self._drain()

    def _waiting(self, left: int, waited: float) -> None:
        log.warning(
            "waiting for Kafka at %s: %d messages not yet acknowledged after %.0fs",
            self.brokers,
            left,
            waited,
        )

    def raise_failed(self) -> None:
        """Raise if the broker refused any record (it is not stored, and never will be)."""
        if self.failed:
            with self.lock:
                failed, self.failed = self.failed, []
            raise KafkaUnavailable(
                f"Kafka at {self.brokers} refused {len(failed)} messages: {failed[:3]}"
            )

    def flush(self) -> None:
        """Block until every message is acknowledged; raise if any was refused."""
        waited = 0.0
        while (left := self.producer.flush(5.0)) > 0:
            waited += 5.0
            self._waiting(left, waited)
        self.raise_failed()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.closed.set()
            if self.poller is not None:
                self.poller.join()
