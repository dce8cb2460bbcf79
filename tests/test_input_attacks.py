"""Every offset of a partitioned input is accounted for by a live worker, whatever its
producers send: compressed batches of every codec, transactions, tombstones and blank
values, keys that are missing, binary or personal, huge headers that are not UTF-8, and
values that are JSON but no object.

Each input offset is read as an event (``audienceflow_events_in_total``), counted apart
as blank (``_blank_in_total``), or was not delivered by the broker
(``_input_skipped_offsets_total``: here a committed transaction's marker); each event
read is processed, dead-lettered or filtered; nothing personal reaches a dead letter, its
key or the log.
"""

from __future__ import annotations

import signal
import zlib
from pathlib import Path

import orjson
import pytest
import servers
from confluent_kafka import Producer
from test_worker import config, topics
from workers import Worker, metric, poll, stream_lines, user_key

pytestmark = pytest.mark.integration

PERSONAL = b"attacked.person@example.org"
PARTITIONS = 4


def _produce(broker: str, topic: str, conf: dict[str, object], records: list[tuple]) -> None:
    """``records``: (partition, key, value, headers); flushed, every one acknowledged."""
    producer = Producer({"bootstrap.servers": broker, "acks": "all", "linger.ms": 5, **conf})
    failed: list[object] = []
    for partition, key, value, headers in records:
        producer.produce(
            topic,
            value,
            key,
            partition=partition,
            headers=headers,
            on_delivery=lambda err, _m: err is not None and failed.append(err),
        )
    assert producer.flush(15) == 0 and not failed, failed


@pytest.mark.timeout(120)
def test_every_offset_of_a_hostile_partitioned_input_is_accounted_for(
    kafka_broker: str, tmp_path: Path
) -> None:
    topic = "attacks.in"
    servers.create_topics(kafka_broker, [topic], partitions=PARTITIONS)
    good = stream_lines()[:800]

    def part(line: bytes) -> int:
        return zlib.crc32(user_key(line) or b"") % PARTITIONS

    # Ordinary lines, a quarter through each codec.
    for i, codec in enumerate(("gzip", "lz4", "zstd", "snappy")):
        chunk = good[i * 200 : (i + 1) * 200]
        records = [(part(line), user_key(line), line, None) for line in chunk]
        _produce(kafka_broker, topic, {"compression.type": codec}, records)
    event = orjson.dumps(
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": "attacked-user",
            "timestamp": "2026-03-02T08:00:00Z",
            "messageId": "attack-1",
            "properties": {"email": PERSONAL.decode()},
        }
    )
    odd: list[tuple] = [
        (0, b"u1", None, None),  # a tombstone
        (0, b"u1", b"", None),  # blank values
        (0, None, b" \n", None),
        (1, None, event, None),  # no key, a binary key, a personal key
        (1, b"\xff\x00\xfe" * 40, event.replace(b"attack-1", b"attack-2"), None),
        (1, PERSONAL, event.replace(b"attack-1", b"attack-3"), None),
        # Headers of 200 KB that are not UTF-8, one without a value.
        (2, b"k", event.replace(b"attack-1", b"attack-4"), [("\xff", b"\xfe" * 200_000)]),
        (2, b"k", event.replace(b"attack-1", b"attack-5"), [("h", None)]),
        (3, b"k", b"[1,2,3]", None),  # JSON, but no object
        (3, b"k", b"42", None),
        (3, b"k", b"null", None),
        (3, b"k", PERSONAL, None),
    ]
    _produce(kafka_broker, topic, {}, odd)
    tx = Producer({"bootstrap.servers": kafka_broker, "transactional.id": "attacks"})
    tx.init_transactions(10)
    tx.begin_transaction()
    tx.produce(topic, event.replace(b"attack-1", b"attack-tx"), partition=2)
    tx.commit_transaction(10)  # a marker after it: an offset no consumer is given
    _produce(kafka_broker, topic, {}, [(2, b"k", event.replace(b"attack-1", b"attack-6"), None)])
    offsets = len(good) + len(odd) + 2 + 1  # the transaction's record and marker, the last
    blank = 3

    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        "attacks",
        kafka_broker,
        tail=True,
        metrics={"port": port},
        time={"idle_after": "2s"},
    )
    worker = Worker(cfg, tmp_path / "w.log")
    try:

        def total(name: str) -> float:
            return metric(port, f"audienceflow_{name}_total") or 0.0

        poll(
            lambda: (
                total("events_in") + total("blank_in") + total("input_skipped_offsets") == offsets
            ),
            60,
            "every input offset read, counted blank, or counted as skipped",
            on_timeout=worker.log,
        )
        assert total("blank_in") == blank
        assert total("input_skipped_offsets") == 1  # the marker
        accounted = ("events_processed", "dead_lettered", "filtered")
        poll(
            lambda: sum(total(n) for n in accounted) == total("events_in"),
            60,
            "every event read processed, dead-lettered or filtered",
            on_timeout=worker.log,
        )
        assert worker.process.poll() is None, worker.log()[-3000:]
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(60)
    dead = servers.consume_all(kafka_broker, topics("attacks")["dead_letters"], timeout=30)
    reasons = [orjson.loads(v)["reason"] for _, v, _ in dead]
    assert reasons.count("not_object") >= 3, reasons
    for key, value, _ in dead:
        assert PERSONAL not in (key or b"") + value
    assert PERSONAL.decode() not in worker.log()


@pytest.mark.timeout(120)
def test_a_record_larger_than_the_consumer_receives_is_dead_lettered_and_the_rest_read(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A record whose fetch response is over the consumer's ``receive.message.max.bytes``
    (here 2 MB, librdkafka's default is 100 MB; tansu stores records of any size) made
    librdkafka drop the connection and ask again, forever: every partition the worker
    thread reads stalled behind one record. The consumer is rebuilt with room for the
    response it was refused; the record is read and dead-lettered ``oversize`` (its
    position named, its payload not kept past the first KiB, nothing personal), and
    every other record of the 4 partitions is read and accounted for."""
    topic = "oversize.in"
    servers.create_topics(kafka_broker, [topic], partitions=PARTITIONS)
    good = stream_lines()[:400]

    def part(line: bytes) -> int:
        return zlib.crc32(user_key(line) or b"") % PARTITIONS

    huge = orjson.dumps(
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": "huge-user",
            "timestamp": "2026-03-02T08:00:00Z",
            "messageId": "huge-1",
            "properties": {"blob": "x" * 3_000_000, "email": PERSONAL.decode()},
        }
    )
    target = part(good[0])
    records = [(part(line), user_key(line), line, None) for line in good]
    records.insert(len(records) // 2, (target, b"huge-user", huge, None))
    _produce(kafka_broker, topic, {"message.max.bytes": 10_000_000}, records)

    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        "oversize",
        kafka_broker,
        tail=True,
        metrics={"port": port},
        time={"idle_after": "2s"},
        kafka={
            "add_config": {"receive.message.max.bytes": 2_000_000, "fetch.max.bytes": 1_000_000}
        },
    )
    worker = Worker(cfg, tmp_path / "w.log")
    try:

        def total(name: str) -> float:
            return metric(port, f"audienceflow_{name}_total") or 0.0

        poll(
            lambda: total("events_in") + total("input_skipped_offsets") == len(records),
            60,
            "every input offset read, the oversize record too",
            on_timeout=worker.log,
        )
        accounted = ("events_processed", "dead_lettered", "filtered")
        poll(
            lambda: sum(total(n) for n in accounted) == total("events_in"),
            60,
            "every event read processed, dead-lettered or filtered",
            on_timeout=worker.log,
        )
        assert total("input_skipped_offsets") == 0
        assert worker.process.poll() is None, worker.log()[-3000:]
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(60)
    dead = servers.consume_all(kafka_broker, topics("oversize")["dead_letters"], timeout=30)
    big = [orjson.loads(v) for _, v, _ in dead if orjson.loads(v)["reason"] == "oversize"]
    assert len(big) == 1, [orjson.loads(v)["reason"] for _, v, _ in dead]
    position = big[0]["position"]
    assert position.startswith(f"{topic}:{target}:"), position
    assert len(big[0]["raw"]) <= 2048
    for key, value, _ in dead:
        assert PERSONAL not in (key or b"") + value
    assert "over receive.message.max.bytes" in worker.log()
    assert PERSONAL.decode() not in worker.log()
