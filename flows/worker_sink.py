"""The worker's one sink: records to Kafka topics, live profiles to Redis, counts to metrics.

Per batch: every record is produced (sessions, segment changes, delivered
actions, dead letters, identity records, control receipts, and drift and
exposures if their topics are set), the latest profile of each user is written
to Redis in one pipeline, and the write returns without waiting for Kafka's
acknowledgements: the producer tells the sink once the batch's records (and those of
every batch before it) are acknowledged (served at the next batch, or by a background
thread when the input is quiet), and only then are the batch's events counted
(processed, dead-lettered, filtered) and its latency observed, so a reader waiting
for those counts finds what they cover. At the end of each epoch Bytewax asks the
sink partition for its snapshot, and the sink flushes there, so an epoch's outputs
are stored before its snapshot (at-least-once).

One sink partition per worker, and every item goes to the one on the worker that
made it (``flows/placement.LocalRoute``): no output crosses workers to be written.

A receipt says a deletion is done, so it is published only once the profile store
has done its part: the engine emits a deleted profile's ``Erasure`` before the
``Receipt``, and the sink applies the profile writes and erasures that precede a
receipt in the batch (one Redis round trip) before it produces the receipt.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from audienceflow.flows import metrics
from audienceflow.flows.dataflow import BatchDone, Republished, RepublishRequests
from audienceflow.flows.kafka_io import PRODUCER_LIMIT, KafkaOutput
from audienceflow.flows.placement import HeldShards, LocalRoute
from audienceflow.flows.redis_store import ProfileStore
from audienceflow.operators.money import merge_currencies, mixed_warning
from audienceflow.operators.records import (
    Action,
    DeadLetter,
    Drift,
    DueMark,
    Erasure,
    ExperimentUpdate,
    Exposure,
    Filtered,
    IdentityChange,
    ProfileUpdate,
    Receipt,
    SegmentChange,
    Session,
    ShardStats,
    dumps,
)
from audienceflow.operators.scrub import bounded_text, has_pii
from audienceflow.operators.sections import KafkaTopics
from audienceflow.operators.validate import CONTROL_CHARS, MAX_FIELD_CHARS, OVERSIZE_KEEP

log = logging.getLogger("audienceflow.worker")


# The output topic names (``kafka.topics``), as the typed config holds them.
Topics = KafkaTopics


def dead_letter_key(rec: DeadLetter) -> bytes:
    """The user id when the (scrubbed) line names one that is not personal, else the position.

    Ids that are e-mails, phone numbers or IPs are pseudonymised before they reach the
    engine (``uid:<hash>``), and masked in a dead letter's line, so the key is never one.
    An id that held bytes that are not UTF-8 shows U+FFFD in their place in the line
    (decoded with "replace"): not the sender's id, and many such ids would share one key,
    so the position keys it. So does an id no event may have (validate's
    ``wrong_field_type`` and ``oversize_field``: a control character, over 512 characters),
    which keyed its dead letter as is: a terminal's escape sequence, a key of 20 KB.
    """
    try:
        obj = orjson.loads(rec.raw)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        for field in ("userId", "anonymousId"):
            uid = obj.get(field)
            if type(uid) is int:  # a whole-number id is its decimal text (validate)
                uid = str(uid)
            if (
                isinstance(uid, str)
                and uid
                and len(uid) <= MAX_FIELD_CHARS
                and "<" not in uid
                and "\ufffd" not in uid
                and CONTROL_CHARS.search(uid) is None
                and not has_pii(uid)
            ):
                return uid.encode()
    return rec.position.encode()


DELETIONS = ("delete", "delete_and_suppress")  # the requests that purge state
# The id field of each kind of output record, for the position of its dead letter: the
# first the record holds. An exposure names its action (``action_id``) too, so its own id,
# ``decision_id``, comes before.
_RECORD_IDS = (
    "session_id",
    "decision_id",
    "action_id",
    "change_id",
    "identity_id",
    "receipt_id",
    "position",
)


class _WorkerPartition(StatefulSinkPartition[Any, None]):
    def __init__(
        self,
        kafka: KafkaOutput,
        topics: Topics,
        store: ProfileStore | None,
        deleted: Callable[[], None] | None = None,
        republish: RepublishRequests | None = None,
    ) -> None:
        self.kafka = kafka
        self.republish = republish  # told when a shard's re-published profiles are written
        kafka.too_large = self._too_large
        self.topics = topics
        self.store = store
        self.deleted = deleted  # told of each deletion's receipt (the recovery scrub)
        # Counted per output record: their children, looked up once (metrics.Children).
        self.segment_changes = metrics.Children(metrics.SEGMENT_CHANGES)
        self.actions = metrics.Children(metrics.ACTIONS)
        self.dead_lettered = metrics.Children(metrics.DEAD_LETTERED)
        self.filtered = metrics.Children(metrics.FILTERED)
        self.control_dead_lettered = metrics.Children(metrics.CONTROL_DEAD_LETTERED)
        self.exposures = metrics.Children(metrics.EXPOSURES)

    def write_batch(self, items: list[Any]) -> None:
        self.kafka.serve()  # the acknowledgements that came since the last batch
        self.kafka.raise_failed()  # a record refused before: the worker stops here
        send = self.kafka.send
        t = self.topics
        profiles: list[ProfileUpdate | Erasure] = []
        arrivals: list[float] = []
        upstream: list[float] = []
        due: list[float] = []
        processed = 0
        # The accounting counters (processed, dead-lettered, filtered) move only once the
        # batch is stored (module docstring): (counter children, reason) → count.
        accounted: dict[tuple[Any, str], int] = {}
        for rec in items:
            cls = type(rec)
            if cls is SegmentChange:
                send(t.segment_changes, rec.user_id.encode(), dumps(rec.to_json()))
                self.segment_changes(rec.segment.split(":")[0], rec.change).inc()
            elif cls is ProfileUpdate:
                profiles.append(rec)
            elif cls is BatchDone:
                if rec.arrival is not None:
                    arrivals.append(rec.arrival)
                if rec.upstream is not None:
                    upstream.append(rec.upstream)
                processed += rec.processed
            elif cls is Session:
                send(t.sessions, rec.user_id.encode(), dumps(rec.to_json()))
                metrics.SESSIONS.inc()
            elif cls is Action:
                if rec.status == "delivered":
                    send(t.actions, rec.user_id.encode(), dumps(rec.to_json()))
                status = (
                    rec.status
                    if rec.suppressed_reason is None
                    else (f"{rec.status}:{rec.suppressed_reason}")
                )
                self.actions(rec.action, status).inc()
            elif cls is DeadLetter:
                send(t.dead_letters, dead_letter_key(rec), dumps(rec.to_json()))
                # a control line is not an input event: it has its own counter
                kind = self.control_dead_lettered if rec.stage == "control" else self.dead_lettered
                key = (kind, rec.reason)
                accounted[key] = accounted.get(key, 0) + 1
            elif cls is Erasure:
                profiles.append(rec)
            elif cls is Receipt:
                if profiles and self.store is not None:  # the store's part is done first
                    metrics.PROFILE_WRITES.inc(self.store.write(profiles))
                    profiles = []
                if t.control_receipts:
                    send(t.control_receipts, rec.request_id.encode(), dumps(rec.to_json()))
                metrics.RECEIPTS.labels(rec.kind, rec.status).inc()
                if self.deleted is not None and rec.kind in DELETIONS:
                    self.deleted()
            elif cls is IdentityChange:
                if t.identities:
                    send(t.identities, rec.canonical.encode(), dumps(rec.to_json()))
                metrics.IDENTITY_CHANGES.labels(rec.kind, rec.reason).inc()
            elif cls is Filtered:
                key = (self.filtered, rec.reason)
                accounted[key] = accounted.get(key, 0) + 1
            elif cls is Drift:
                if t.drift:
                    send(t.drift, rec.shard.encode(), dumps(rec.to_json()))
                metrics.DRIFT.labels(rec.signal).inc()
                log.info("drift detected: %s", dumps(rec.to_json()).decode())
            elif cls is Republished:
                # Redis lost its data and the shard emitted what it holds: written in
                # order with the batch's other writes and erasures, counted apart.
                if self.store is not None:
                    if profiles:
                        metrics.PROFILE_WRITES.inc(self.store.write(profiles))
                        profiles = []
                    if rec.updates:
                        self.store.write(rec.updates)
                        metrics.REDIS_REPUBLISHED.inc(len(rec.updates))
                    if rec.last and self.republish is not None:
                        self.republish.finished(rec.shard, rec.request, rec.name, rec.origin)
            elif cls is ShardStats:
                _shard_gauges(rec)
            elif cls is DueMark:
                due.append(rec.at)
            elif cls is Exposure:
                if t.exposures:
                    send(t.exposures, rec.user_id.encode(), dumps(rec.to_json()))
                self.exposures(rec.experiment, rec.arm).inc()
            elif cls is ExperimentUpdate:
                _experiment_gauges(rec)
        if self.store is not None:  # with no profile, it may still look for its sentinel
            metrics.PROFILE_WRITES.inc(self.store.write(profiles))
        self.kafka.seal(partial(_stored, processed, accounted, arrivals, upstream, due))

    def _too_large(
        self, topic: str, key: bytes | None, value: bytes, limit: str = PRODUCER_LIMIT
    ) -> tuple[str, bytes | None, bytes]:
        """A record larger than a Kafka message the producer sends, or than its topic
        accepts (``limit`` says which; one user's session listing hundreds of 30 KB
        product ids, a cart action of such lines): its dead letter instead, keyed as the
        record was. Refused, it stopped the worker, and it came back at every restart.
        Its position names the topic and the record's id."""
        metrics.OUTPUTS_TOO_LARGE.inc()
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError:
            rec = None
        ident = next(
            (str(rec[k]) for k in _RECORD_IDS if isinstance(rec, dict) and k in rec),
            hashlib.blake2b(value, digest_size=10).hexdigest(),
        )
        log.warning(
            "a record of %d bytes for topic %s is larger than %s: its dead letter is "
            "published instead",
            len(value),
            topic,
            limit,
        )
        dead = DeadLetter(
            "oversize_output",
            f"step 'output': a record of {len(value)} bytes for topic '{topic}' is larger "
            f"than {limit}; its first 1 KB is kept",
            f"{topic}:{ident}",
            bounded_text(value, OVERSIZE_KEEP),
            stage="output",
        )
        return self.topics.dead_letters, key, dumps(dead.to_json())

    def snapshot(self) -> None:
        """The epoch ends: wait until every record written in it is acknowledged."""
        began = time.perf_counter()
        try:
            self.kafka.flush()
        finally:  # a flush that ends in an error waited too
            metrics.FLUSH_WAIT.observe(time.perf_counter() - began)
        return None

    def close(self) -> None:
        self.kafka.close()
        if self.store is not None:
            self.store.close()


def _stored(
    processed: int,
    accounted: dict[tuple[Any, str], int],
    arrivals: list[float],
    upstream: list[float],
    due: list[float],
) -> None:
    """A batch is stored: its accounting counters move, its latencies are observed."""
    if processed:
        metrics.PROCESSED.inc(processed)
    for (children, reason), n in accounted.items():
        children(reason).inc(n)
    if arrivals or upstream or due:
        now = time.time()
        for at in due:
            metrics.DUE_DELAY.observe(max(0.0, now - at))
        for at in arrivals:
            metrics.LATENCY.observe(max(0.0, now - at))
        for at in upstream:
            metrics.KAFKA_LATENCY.observe(max(0.0, now - at))


# The ``audienceflow_model`` numbers each shard reported last (per process).
_model_names: dict[str, set[str]] = {}
# The shards this process has logged amounts of several currencies summed for.
_mixed_told: set[str] = set()


def _shard_gauges(stats: ShardStats) -> None:
    metrics.USERS.labels(stats.shard).set(stats.users)
    metrics.BUFFERED.labels(stats.shard).set(float(stats.extra.get("buffered", 0)))
    stream_time = stats.extra.get("stream_time")
    if isinstance(stream_time, float) and stream_time > float("-inf"):
        metrics.STREAM_TIME.labels(stats.shard).set(stream_time)
    report = stats.extra.get("models")
    if isinstance(report, dict):
        numbers = dict(metrics.model_numbers(report))
        # A number the report no longer has goes (a DBSTREAM cluster merged away): a
        # series per cluster id ever seen would grow as long as the worker runs.
        for name in _model_names.get(stats.shard, set()) - numbers.keys():
            metrics.MODEL.remove(stats.shard, name)
        _model_names[stats.shard] = set(numbers)
        for name, value in numbers.items():
            metrics.MODEL.labels(stats.shard, name).set(value)
    currencies = stats.extra.get("currencies") or {}
    for code, (orders, carts) in currencies.items():
        metrics.AMOUNTS_BY_CURRENCY.labels(stats.shard, code, "orders").set(orders)
        metrics.AMOUNTS_BY_CURRENCY.labels(stats.shard, code, "cart_events").set(carts)
    if len(currencies) > 1 and stats.shard not in _mixed_told:
        _mixed_told.add(stats.shard)  # once a shard and process: its counts only grow
        log.warning("shard %s: %s", stats.shard, mixed_warning(merge_currencies([currencies])))
    for name, exp in (stats.extra.get("experiments") or {}).items():
        for arm, sums in zip(exp["arms"], exp["sums"], strict=True):
            metrics.EXPERIMENT.labels(stats.shard, name, arm, "exposed").set(sums["n"])
            metrics.EXPERIMENT.labels(stats.shard, name, arm, "converters").set(sums["conv"])


def _experiment_gauges(rec: ExperimentUpdate) -> None:
    g = metrics.EXPERIMENT
    for arm, cmp in rec.result["comparisons"].items():
        conv = cmp.get("conversion")
        if conv is not None:
            g.labels(rec.shard, rec.experiment, arm, "conversion_diff").set(conv["diff"])
            if conv["diff_ci"] is None:  # a bandit's: no interval under adaptive allocation
                continue
            lo, hi = conv["diff_ci"]
            g.labels(rec.shard, rec.experiment, arm, "conversion_diff_ci_low").set(lo)
            g.labels(rec.shard, rec.experiment, arm, "conversion_diff_ci_high").set(hi)


class WorkerSink(FixedPartitionedSink[Any, None]):
    """Kafka producer and Redis client per worker, built on the worker that uses them.

    ``workers``: of the whole cluster; ``sources``: the source's partitions (Bytewax's
    names), so that what each one dead-letters is written where it was read (a late or
    future event's dead letter is written by its shard's worker: ``records.Rejected``).
    """

    def __init__(
        self,
        brokers: str,
        topics: Topics,
        kafka_extra: dict[str, Any],
        redis: tuple[str, str, float, threading.Event] | None,
        deleted: Callable[[], None] | None = None,
        *,
        workers: int = 1,
        sources: list[str] | None = None,
        limits: dict[str, int] | None = None,
        compression: dict[str, str] | None = None,
        republish: RepublishRequests | None = None,
        held: HeldShards | None = None,
    ) -> None:
        self.brokers = brokers
        self.topics = topics
        self.kafka_extra = kafka_extra
        self.limits = limits or {}  # each topic's max.message.bytes (``topic_limits``)
        self.compression = compression or {}  # each topic's own compression.type
        self.redis = redis
        self.republish = republish  # told when Redis lost its data
        self.held = held  # this process's shards, which its writers' keys vouch for
        self.deleted = deleted
        self.route = LocalRoute(workers, sources or [])
        self.built: dict[str, _OnFirstWrite] = {}  # by partition (one per worker thread)

    def list_parts(self) -> list[str]:
        return self.route.parts

    def part_fn(self, item_key: str) -> int:
        return self.route(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _OnFirstWrite:
        # Bytewax builds a partition for its first items, and on resume also every one it
        # holds a snapshot of (written to again or not; one built for items is replaced
        # at the epoch's end): one object per name, its clients made on its first write.
        part = self.built.get(for_part)
        if part is None:
            part = self.built[for_part] = _OnFirstWrite(partial(self._partition, for_part))
        return part

    def _partition(self, name: str) -> _WorkerPartition:
        # Named after the partition: a restart finds the key its writer left (redis_store),
        # and reads the other partitions' when its own does not vouch for this process.
        store = (
            ProfileStore(
                *self.redis,
                resend=self.republish,
                name=name,
                held=self.held,
                writers=self.route.parts,
            )
            if self.redis is not None
            else None
        )
        kafka = KafkaOutput(
            self.brokers, self.kafka_extra, limits=self.limits, compression=self.compression
        )
        return _WorkerPartition(kafka, self.topics, store, self.deleted, self.republish)


class _OnFirstWrite(StatefulSinkPartition[Any, None]):
    """A worker's sink partition, its producer and Redis client made on its first write."""

    def __init__(self, make: Callable[[], _WorkerPartition]) -> None:
        self.make = make
        self.part: _WorkerPartition | None = None

    def write_batch(self, items: list[Any]) -> None:
        if self.part is None:
            self.part = self.make()
        self.part.write_batch(items)

    def snapshot(self) -> None:
        if self.part is not None:
            self.part.snapshot()

    def close(self) -> None:
        if self.part is not None:
            self.part.close()
            self.part = None
