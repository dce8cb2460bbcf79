"""The real-server fixtures work: Kafka round trips with keys and headers, Redis pipelines."""

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import servers
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

pytestmark = pytest.mark.integration


def _port_is_closed(address: str) -> bool:
    host, port = address.removeprefix("redis://").split("/")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("start", [servers.start_kafka, servers.start_redis])
def test_server_becomes_ready_within_deadline_and_stops(
    start: Callable[[Path], servers.Server],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    server = start(tmp_path)
    try:
        assert server.process.poll() is None
        record_property(f"{server.name}_startup_s", round(server.startup_s, 3))
        print(f"{server.name} ready in {server.startup_s:.3f}s")
        assert server.startup_s < 10
    finally:
        servers.stop(server)
    assert server.process.returncode is not None
    assert _port_is_closed(server.address)


def test_hundred_messages_round_trip_through_three_partitions(kafka_broker: str) -> None:
    topic = "fixtures.round-trip"
    servers.create_topics(kafka_broker, [topic], partitions=3)
    lines = [f'{{"seq": {i}, "user": "u{i % 7}"}}'.encode() for i in range(100)]

    def key(line: bytes) -> bytes:
        return line.split(b'"user": "')[1].split(b'"')[0]

    def headers(line: bytes) -> servers.Headers:
        return [("source", b"test"), ("seq", line.split(b": ")[1].split(b",")[0])]

    servers.produce_lines(kafka_broker, topic, lines, key_fn=key, headers_fn=headers)
    records = servers.consume_all(kafka_broker, topic, expected=100)

    assert sorted(value for _, value, _ in records) == sorted(lines)
    for k, value, hdrs in records:
        assert value is not None
        assert k == key(value)
        assert hdrs == headers(value)
    # One key lives on one partition, so its messages come back in produce order.
    for user in {key(line) for line in lines}:
        seqs = [int(dict(h)["seq"]) for k, _, h in records if k == user]
        assert seqs == sorted(seqs) == [i for i in range(100) if f"u{i % 7}".encode() == user]


def test_consume_all_of_an_empty_topic_returns_nothing(kafka_broker: str) -> None:
    servers.create_topics(kafka_broker, ["fixtures.empty"], partitions=3)
    assert servers.consume_all(kafka_broker, "fixtures.empty", timeout=5) == []


def test_consume_all_times_out_when_fewer_messages_than_expected(kafka_broker: str) -> None:
    servers.create_topics(kafka_broker, ["fixtures.short"])
    servers.produce_lines(kafka_broker, "fixtures.short", [b"a", b"b"])
    with pytest.raises(TimeoutError, match="read 2 records"):
        servers.consume_all(kafka_broker, "fixtures.short", expected=3, timeout=1)


def _concurrent_first_batches(bootstrap: str, topic: str, producers: list[Producer]) -> int:
    """Every producer writes one ~50 KB batch to partition 0 of `topic` at the same time."""
    servers.create_topics(bootstrap, [topic], partitions=1)
    for p in producers:
        p.list_topics(topic, timeout=5)  # metadata first: the batches then leave together
    start = threading.Barrier(len(producers))
    unsent: list[int] = []
    failed: list[str] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    def write(p: Producer) -> None:
        start.wait()
        for _ in range(50):
            p.produce(topic, b"x" * 1000, None, on_delivery=delivered)
        unsent.append(p.flush(30))

    threads = [threading.Thread(target=write, args=(p,)) for p in producers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert unsent == [0] * len(producers), unsent  # every batch answered ...
    assert failed == [], failed[:3]  # ... and acknowledged, so all 200 records are stored
    return 50 * len(producers)


@pytest.mark.timeout(120)
def test_consume_all_reads_the_first_batch_when_tansus_earliest_offset_skips_it(
    kafka_broker: str,
) -> None:
    """Tansu answers ListOffsets(earliest) with the batch it stored first, so when producers
    race on one partition (a cluster's processes writing an output topic) it can name a
    later offset than 0; a reader starting at OFFSET_BEGINNING then misses the first
    batch. The race is provoked until the broker shows it, then `consume_all` must read
    every record."""
    producers = [Producer({"bootstrap.servers": kafka_broker, "linger.ms": 20}) for _ in range(4)]
    probe = Consumer({"bootstrap.servers": kafka_broker, "group.id": "audienceflow-tests-probe"})
    deadline = time.monotonic() + 60
    try:
        for trial in range(1_000):
            topic = f"fixtures.earliest{trial}"
            written = _concurrent_first_batches(kafka_broker, topic, producers)
            low, _ = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
            if low > 0 or time.monotonic() > deadline:
                break
    finally:
        probe.close()
        producers.clear()  # their clients go before the broker does
    if low == 0:
        pytest.skip(f"tansu named offset 0 as earliest in all {trial + 1} races: quirk gone?")
    # `expected`: the reader must not settle for a partition end it met early (a reader
    # starting at the named earliest offset times out here; one at offset 0 does not).
    assert len(servers.consume_all(kafka_broker, topic, expected=written, timeout=20)) == written


def test_redis_pipeline_hset_hgetall_expire_ttl(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    try:
        with client.pipeline() as pipe:
            pipe.hset("user:u1", mapping={"segment": "browser", "score": "0.25"})
            pipe.expire("user:u1", 3600)
            pipe.hgetall("user:u1")
            pipe.ttl("user:u1")
            created, expire_set, fields, ttl = pipe.execute()
        assert created == 2
        assert expire_set in (1, True)
        assert fields == {b"segment": b"browser", b"score": b"0.25"}
        assert 3590 < ttl <= 3600
    finally:
        client.close()
