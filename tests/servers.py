"""Real servers for integration tests: a Kafka-protocol broker (tansu) and Redis (valkey).

Starting and stopping them lives in ``audienceflow.flows.local_servers`` (``make live``
uses it too); this module adds the test-side Kafka helpers. They read topics with
`assign()`, never a consumer group: a group join takes ~20 s on tansu.

Tansu quirks (``flows/local_servers.py`` has them in full): ListOffsets(latest), which
`get_watermark_offsets` uses, undercounts after a batched produce, so `consume_all`
stops on partition EOF (derived from fetch responses), not on a queried end offset;
ListOffsets(earliest) can name a later batch than offset 0 when producers race on a
partition, so `consume_all` starts at offset 0 (`auto.offset.reset: earliest` if a
broker truncated the log). Read a topic several producers write only once they stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from audienceflow.flows.local_servers import (  # noqa: F401 (re-exported for the tests)
    Server,
    create_topics,
    free_port,
    kafka_ready,
    log_tail,
    redis_binary,
    redis_ready,
    start_kafka,
    start_redis,
    stop,
    tansu_binary,
)

Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, bytes | None, Headers]

_POLL_S = 0.05


def produce_lines(
    bootstrap: str,
    topic: str,
    lines: Sequence[bytes],
    key_fn: Callable[[bytes], bytes | None] | None = None,
    headers_fn: Callable[[bytes], Headers] | None = None,
    timeout: float = 10.0,
    partitioner: str | None = None,
) -> None:
    """Produce one message per line, flush, and raise unless every one was acknowledged.

    ``partitioner``: librdkafka's for keyed messages (``murmur2_random``: the Java
    client's); its default otherwise (``consistent_random``)."""
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    if partitioner is not None:
        conf["partitioner"] = partitioner
    producer = Producer(conf)
    failures: list[str] = []
    acked = 0

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        nonlocal acked
        if err is None:
            acked += 1
        else:
            failures.append(str(err))

    for line in lines:
        key = key_fn(line) if key_fn else None
        headers = headers_fn(line) if headers_fn else None
        producer.produce(topic, value=line, key=key, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
    unsent = producer.flush(timeout)
    if unsent or failures or acked != len(lines):
        raise RuntimeError(
            f"producing to {topic!r}: {acked}/{len(lines)} acknowledged, {unsent} unsent "
            f"after {timeout}s, errors {failures[:3]}"
        )


def consume_all(
    bootstrap: str, topic: str, expected: int | None = None, timeout: float = 10.0
) -> list[Record]:
    """Read `topic` from the beginning as (key, value, headers); order holds within a partition.

    Stops when every partition has reached its end and, if `expected` is given, at
    least that many records were read (so a producer still writing is waited for).
    Raises TimeoutError at the deadline.
    """
    deadline = time.monotonic() + timeout
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "audienceflow-tests-reader",  # required by the client, never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        partitions = _wait_for_partitions(consumer, topic, deadline)
        # Offset 0, not OFFSET_BEGINNING: tansu's ListOffsets(earliest) (module docstring).
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[Record] = []
        at_end: set[int] = set()
        while len(at_end) < len(partitions) or len(records) < (expected or 0):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"consuming {topic!r}: read {len(records)} records (expected {expected}), "
                    f"{len(at_end)}/{len(partitions)} partitions at end after {timeout}s"
                )
            msg = consumer.poll(min(0.2, remaining))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                at_end.add(msg.partition())
                continue
            at_end.discard(msg.partition())
            records.append((msg.key(), msg.value(), list(msg.headers() or [])))
        return records
    finally:
        consumer.close()


def _wait_for_partitions(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    while True:
        meta = consumer.list_topics(topic, timeout=max(0.1, deadline - time.monotonic()))
        found = meta.topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {topic!r} does not exist on {meta.orig_broker_name}")
        time.sleep(_POLL_S)
