"""The worker against real servers: Kafka in and out, Redis profiles, recovery, scale-out.

Expected outputs are those of a replay of the same lines with the same config: a
bounded worker run (`kafka.tail: false`) treats the topic as a recorded stream,
so it must publish the same records (as multisets: topics interleave users
differently than a file), and Redis must hold the replay's final profiles.

The online models are on, as by default: the engine's output depends only on the
sequence of items, not on how they were batched, so Kafka batches (whatever the
consumer returns) give what file batches give, models included. The input topics
have one partition: the order of the file.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import servers
from confluent_kafka.admin import AdminClient
from helpers import ev
from tcp_proxy import TcpProxy, listen_port
from workers import (
    STREAM,
    Worker,
    committed_input_offset,
    comparable,
    kafka_outputs,
    line_number,
    metric,
    poll,
    redis_profiles,
    replay_outputs,
    replay_profiles,
    stream_lines,
    user_key,
    values,
    write_config,
)

from audienceflow.flows import kafka_io
from audienceflow.flows import worker as worker_module
from audienceflow.flows.replay import replay
from audienceflow.operators import native
from audienceflow.operators.records import SCHEMA_VERSION
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.integration

SHARDS = 8  # Bytewax places keys by hash: 8 shards split 4/4 over 2 workers, 4 would not


def topics(prefix: str) -> dict[str, str]:
    return {
        "segment_changes": f"{prefix}.changes",
        "actions": f"{prefix}.actions",
        "sessions": f"{prefix}.sessions",
        "dead_letters": f"{prefix}.dead",
    }


def config(
    path: Path,
    prefix: str,
    brokers: str,
    redis_url: str | None = None,
    tail: bool = False,
    **extra: dict[str, Any],
) -> Path:
    """A worker config with its own topics and Redis key prefix."""
    sections: dict[str, dict[str, Any]] = {
        "state": {"shards": SHARDS},
        "time": {"idle_after": "1h"},  # live runs stay on stream time, as a replay
        "kafka": {
            "brokers": brokers,
            "input_topic": f"{prefix}.in",
            "topics": topics(prefix),
            "tail": tail,
            "partitions": 1,
            "startup_timeout": "5s",
        },
        "redis": {"url": redis_url, "key_prefix": f"{prefix}:profile:"},
        "privacy": {"salt": "test-salt-not-a-secret"},  # run refuses to hash without one
    }
    for key, value in extra.items():
        sections[key] = {**sections.get(key, {}), **value}
    return write_config(path, **sections)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Path:
    """The replay of the bundled stream with the workers' engine settings; profiles in Redis too."""
    tmp = tmp_path_factory.mktemp("replay")
    cfg = config(tmp / "replay.yaml", "replay", "127.0.0.1:9")
    out = tmp / "out"
    summary = replay([str(STREAM)], out, Settings.load(cfg, environ={}), redis_url=redis_server)
    assert summary["counts"]["reconciled"]
    return out


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    servers.create_topics(bootstrap, [topic], partitions=1)  # one partition: the file's order
    servers.produce_lines(bootstrap, topic, lines)


def assert_same_outputs(found: dict[str, list[bytes]], out: Path) -> None:
    expected = comparable(replay_outputs(out))
    got = comparable(found)
    for name in expected:
        extra = Counter(got[name]) - Counter(expected[name])
        missing = Counter(expected[name]) - Counter(got[name])
        assert not extra and not missing, (
            f"{name}: {sum(extra.values())} unexpected, e.g. {list(extra.items())[:2]}; "
            f"{sum(missing.values())} missing, e.g. {list(missing)[:2]}"
        )


def test_bounded_worker_publishes_what_a_replay_writes(
    kafka_broker: str, redis_server: str, tmp_path: Path, replayed: Path
) -> None:
    lines = stream_lines()
    produce(kafka_broker, "e2e.in", lines)
    cfg = config(tmp_path / "w.yaml", "e2e", kafka_broker, redis_server)
    worker = Worker(cfg, tmp_path / "worker.log")
    assert worker.wait() == 0, worker.log()

    log = worker.log()
    for topic in topics("e2e").values():
        assert f"created missing topic {topic!r}" in log
    records = kafka_outputs(kafka_broker, topics("e2e"))
    assert_same_outputs({k: values(v) for k, v in records.items()}, replayed)
    for name, recs in records.items():
        for key, value, headers in recs:
            assert headers == [
                ("content-type", b"application/json"),
                ("schema-version", str(SCHEMA_VERSION).encode()),
            ]
            rec = orjson.loads(value or b"")
            if name == "dead_letters":
                assert key in (rec["position"].encode(), *_identities(rec["raw"]))
            else:
                assert key == rec["user_id"].encode()
    summary = orjson.loads((replayed / "summary.json").read_bytes())["counts"]
    assert (
        f"input finished: events in {summary['events_in']}, processed {summary['processed']}, "
        f"dead-lettered {summary['dead_lettered']}, filtered {summary['filtered']}, held 0, "
        "resumed holding 0 (this process)"  # the input finished: nothing is still held
    ) in log

    profiles = redis_profiles(redis_server, "e2e:profile:")
    assert profiles == replay_profiles(replayed)
    assert profiles == redis_profiles(redis_server, "replay:profile:")  # replay --redis


def _identities(raw: str) -> list[bytes]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(obj, dict):
        return []
    return [str(obj[k]).encode() for k in ("userId", "anonymousId") if obj.get(k)]


def test_profile_command_prints_the_live_profile(
    redis_server: str, tmp_path: Path, replayed: Path
) -> None:
    import subprocess

    from workers import CLI

    cfg = config(tmp_path / "w.yaml", "replay", "127.0.0.1:9", redis_server)
    user = sorted(replay_profiles(replayed))[0]
    shown = subprocess.run(
        [CLI, "profile", user, "--config", str(cfg)], capture_output=True, check=True
    )
    assert orjson.loads(shown.stdout) == replay_profiles(replayed)[user]
    missing = subprocess.run([CLI, "profile", "nobody", "--config", str(cfg)], capture_output=True)
    assert missing.returncode == 1
    assert b"no profile for 'nobody'" in missing.stderr


def test_two_processes_publish_the_same_outputs_as_one(
    kafka_broker: str, redis_server: str, tmp_path: Path, replayed: Path
) -> None:
    produce(kafka_broker, "pair.in", stream_lines())
    cfg = config(tmp_path / "w.yaml", "pair", kafka_broker, redis_server)
    pair = two_processes(cfg, tmp_path)

    records = kafka_outputs(kafka_broker, topics("pair"))
    assert_same_outputs({k: values(v) for k, v in records.items()}, replayed)
    assert redis_profiles(redis_server, "pair:profile:") == replay_profiles(replayed)
    processed = [_final_count(w.log(), "processed") for w in pair]
    assert all(n > 0 for n in processed), processed  # the keyed state really is split
    summary = orjson.loads((replayed / "summary.json").read_bytes())["counts"]
    assert sum(processed) == summary["processed"]


def test_two_processes_placed_by_partition_keep_each_partitions_events_where_it_is_read(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A 4-partition topic keyed by user id (the Java client's partitioner), two processes
    with ``state.placement: partition``: the outputs of a replay of the same stream split
    as the producer split it, and each process processed exactly the events of the
    partitions it reads (partitions "0" and "2" on process 0: Bytewax's sorted order)."""

    from audienceflow.flows.placement import split_stream

    lines = stream_lines()
    servers.create_topics(kafka_broker, ["placed.in"], partitions=4)
    servers.produce_lines(
        kafka_broker, "placed.in", lines, key_fn=user_key, partitioner="murmur2_random"
    )
    placed = {"placement": "partition", "partitioner": "murmur2", "shards": 1}
    cfg = config(tmp_path / "w.yaml", "placed", kafka_broker, state=placed)
    src = tmp_path / "stream.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    parts = split_stream(src, 4, tmp_path / "parts")
    summary = replay([str(p) for p in parts], tmp_path / "out", Settings.load(cfg, environ={}))
    by_shard = summary["placement"]["processed_by_shard"]
    assert summary["placement"]["events_routed_away"] == 0
    pair = two_processes(cfg, tmp_path)
    records = kafka_outputs(kafka_broker, topics("placed"))
    found = {k: values(v) for k, v in records.items()}
    expected = replay_outputs(tmp_path / "out")
    for name in ("sessions", "segment_changes", "actions"):
        assert Counter(found[name]) == Counter(expected[name]), name
    assert len(found["dead_letters"]) == len(expected["dead_letters"])
    processed = [_final_count(w.log(), "processed") for w in pair]
    assert processed == [
        by_shard["shard-000"] + by_shard["shard-002"],
        by_shard["shard-001"] + by_shard["shard-003"],
    ]
    assert all(n > 0 for n in processed)


def two_processes(cfg: Path, tmp_path: Path) -> list[Worker]:
    """Two worker processes of one cluster on ``cfg``, run to their end (exit 0)."""
    ports = [servers.free_port(), servers.free_port()]
    addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
    pair = [
        Worker(cfg, tmp_path / f"worker-{i}.log", "--process-id", str(i), "--addresses", addresses)
        for i in range(2)
    ]
    for w in pair:
        assert w.wait() == 0, w.log()
    return pair


def _at_least(value: float | None, minimum: float) -> float | None:
    return value if value is not None and value >= minimum else None


def _final_count(log: str, what: str) -> int:
    line = next(ln for ln in log.splitlines() if "input finished:" in ln or "stopped:" in ln)
    return int(line.split(f"{what} ")[1].split(",")[0].split(" ")[0])


@pytest.mark.parametrize("workers", [(1, 1), (2, 1)], ids=["same", "two-then-one"])
def test_worker_killed_mid_stream_resumes_at_least_once(
    kafka_broker: str,
    redis_server: str,
    tmp_path: Path,
    replayed: Path,
    record_property: Any,
    workers: tuple[int, int],
) -> None:
    """``two-then-one``: resumed with fewer worker threads than it ran with (every
    shard, and every sink partition written to, is snapshotted on a worker that is gone)."""
    prefix = f"crash{workers[0]}{workers[1]}"
    lines = stream_lines()
    produce(kafka_broker, f"{prefix}.in", lines[:1000])
    port = servers.free_port()
    recovery = {"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"}
    live = config(
        tmp_path / "live.yaml",
        prefix,
        kafka_broker,
        redis_server,
        tail=True,
        kafka={"batch_size": 100},
        metrics={"port": port},
        recovery=recovery,
    )
    worker = Worker(live, tmp_path / "live.log", "--workers", str(workers[0]))
    try:
        poll(
            lambda: committed_input_offset(tmp_path / "recovery") == 1000,
            60,
            "a committed snapshot of the first 1000 lines",
        )
        servers.produce_lines(kafka_broker, f"{prefix}.in", lines[1000:3000])
        read = poll(
            lambda: _at_least(metric(port, "audienceflow_events_in_total"), 1500),
            60,
            "the worker reading the next lines",
        )  # then killed mid-batch, mid-epoch
    finally:
        worker.process.send_signal(signal.SIGKILL)
        worker.wait()
    snapshot = committed_input_offset(tmp_path / "recovery") or 0
    servers.produce_lines(kafka_broker, f"{prefix}.in", lines[3000:])
    bounded = config(
        tmp_path / "bounded.yaml", prefix, kafka_broker, redis_server, recovery=recovery
    )
    again = Worker(bounded, tmp_path / "again.log", "--workers", str(workers[1]))
    assert again.wait() == 0, again.log()
    resumed_at = int(again.log().split("snapshot at offset ")[1].split()[0])
    assert 1000 <= snapshot == resumed_at <= 3000
    # The resumed run's counts add up: the events the snapshot held count as processed
    # (or dead-lettered, filtered) without being read again.
    counts = {
        what: _final_count(again.log(), what)
        for what in (
            "events in",
            "processed",
            "dead-lettered",
            "filtered",
            "held",
            "resumed holding",
        )
    }
    assert counts["resumed holding"] > 0, counts  # the case happened
    assert counts["events in"] == len(lines) - resumed_at, counts
    assert counts["events in"] + counts["resumed holding"] == (
        counts["processed"] + counts["dead-lettered"] + counts["filtered"] + counts["held"]
    ), counts

    records = {k: values(v) for k, v in kafka_outputs(kafka_broker, topics(prefix)).items()}
    ids = {
        "segment_changes": "change_id",
        "actions": "action_id",
        "sessions": "session_id",
        "dead_letters": "position",
    }
    duplicates = 0
    deduped: dict[str, list[bytes]] = {}
    for name, recs in records.items():
        by_id: dict[str, set[bytes]] = {}
        for value in recs:
            by_id.setdefault(orjson.loads(value)[ids[name]], set()).add(value)
        assert all(len(copies) == 1 for copies in by_id.values()), f"{name}: same id, other bytes"
        counts = Counter(orjson.loads(v)[ids[name]] for v in recs)
        duplicates += sum(n - 1 for n in counts.values())
        deduped[name] = [next(iter(copies)) for copies in by_id.values()]
        if name == "dead_letters":  # only input read after the resumed snapshot is redone
            assert all(line_number(i) > resumed_at for i, n in counts.items() if n > 1)
    assert_same_outputs(deduped, replayed)
    assert redis_profiles(redis_server, f"{prefix}:profile:") == replay_profiles(replayed)
    record_property("recovery_duplicates", duplicates)
    record_property("recovery_resumed_at_offset", resumed_at)
    print(
        f"kill -9 after {read:.0f} events read: resumed at offset {resumed_at}, "
        f"{duplicates} duplicate records"
    )


def test_broker_outage_and_sigterm_lose_nothing_and_repeat_nothing(
    tmp_path: Path, redis_server: str, replayed: Path
) -> None:
    proxy_port = listen_port()
    proxy = TcpProxy(proxy_port)
    broker = servers.start_kafka(tmp_path / "kafka", advertised_port=proxy_port)
    try:
        proxy.target = int(broker.address.rsplit(":", 1)[1])
        brokers = f"127.0.0.1:{proxy_port}"
        _outage_then_sigterm(brokers, redis_server, tmp_path, proxy, replayed)
    finally:
        servers.stop(broker)
        proxy.close()


def _outage_then_sigterm(
    brokers: str, redis_url: str, tmp_path: Path, proxy: TcpProxy, replayed: Path
) -> None:
    lines = stream_lines()
    half = len(lines) // 2
    produce(brokers, "cut.in", lines[:half])
    port = servers.free_port()
    recovery = {"dir": str(tmp_path / "recovery"), "snapshot_interval": "1h"}  # only the last
    live = config(
        tmp_path / "live.yaml",
        "cut",
        brokers,
        redis_url,
        tail=True,
        kafka={"batch_size": 50, "add_config": {"reconnect.backoff.max.ms": 200}},
        metrics={"port": port},
        recovery=recovery,
    )
    worker = Worker(live, tmp_path / "live.log")
    try:
        poll(
            lambda: metric(port, "audienceflow_events_in_total") == half,
            60,
            "the worker reading the first half",
        )
        proxy.cut()
        # The consumer notices, or the producer if the cut caught outputs unacknowledged
        # (the sink may then wait in its flush, and the consumer is not polled meanwhile).
        poll(
            lambda: f"at {brokers}: 1/1 brokers are down" in worker.log(),
            30,
            "the worker noticing the broker is gone",
        )
        proxy.restore()
        servers.produce_lines(brokers, "cut.in", lines[half:])
        poll(
            lambda: metric(port, "audienceflow_events_in_total") == len(lines),
            60,
            "the worker reading the second half after the outage",
        )
        poll(lambda: metric(port, "audienceflow_events_processed_total"), 10, "processed")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
    finally:
        worker.stop()
    assert "SIGTERM received" in worker.log()

    bounded = config(tmp_path / "bounded.yaml", "cut", brokers, redis_url, recovery=recovery)
    again = Worker(bounded, tmp_path / "again.log")
    assert again.wait() == 0, again.log()
    assert f"snapshot at offset {len(lines)}" in again.log()  # the SIGTERM snapshot
    # What the stopped worker said it held is what the restart resumed holding.
    held = _final_count(worker.log(), "held")
    assert held > 0 and _final_count(again.log(), "resumed holding") == held
    records = kafka_outputs(brokers, topics("cut"))
    assert_same_outputs({k: values(v) for k, v in records.items()}, replayed)  # no duplicate
    assert redis_profiles(redis_url, "cut:profile:") == replay_profiles(replayed)


def test_cart_timer_fires_live_when_input_goes_quiet(kafka_broker: str, tmp_path: Path) -> None:
    added = ev("quiet-ann", 0, "Product Added", product_id="p1", price=10.0, quantity=1)
    produce(kafka_broker, "timer.in", [orjson.dumps(added)])
    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        "timer",
        kafka_broker,
        tail=True,
        metrics={"port": port},
        time={"allowed_lateness": "0s", "idle_after": "1s"},
        triggers={"cart_abandonment": {"after": "2s"}},
        recovery={"snapshot_interval": "1s"},  # the epoch: the sink flushes at its end
    )
    worker = Worker(cfg, tmp_path / "worker.log")
    try:
        ((key, value, _),) = servers.consume_all(
            kafka_broker, "timer.actions", expected=1, timeout=60
        )
        action = orjson.loads(value or b"")
        assert (key, action["action"], action["status"]) == (
            b"quiet-ann",
            "cart_abandonment",
            "delivered",
        )
        assert action["at"] == "2026-03-02T08:00:02.000Z"  # event time + 2 s, by the wall clock
        assert action["payload"]["items"] == 1
        assert metric(port, "audienceflow_actions_total") == 1
        # The event's batch is observed once its event is applied (stream time passes it,
        # here as the wall clock moves) and that output is acknowledged: maybe in the
        # same write as the action, its acknowledgement served just after.
        poll(
            lambda: metric(port, "audienceflow_end_to_end_latency_seconds_count"),
            15,
            "the event's batch in the latency histogram",
        )
        poll(lambda: metric(port, "audienceflow_output_flush_seconds_count"), 15, "a flush")
        # The start-up line says which build of the engine runs (``make fast`` or not).
        # (the test shares the worker's environment and tree, so it knows which one)
        assert f"; engine: {worker_module.BUILDS[native.verdict()]}\n" in worker.log()
        poll(lambda: metric(port, "audienceflow_model"), 15, "model numbers in the metrics")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
    finally:
        worker.stop()


def test_the_closing_line_of_a_stop_counts_an_event_held_since_the_last_report(
    kafka_broker: str, tmp_path: Path
) -> None:
    """An event stamped an hour ahead (within time.max_future) waits in its shard for
    stream time. Stopped before the shard's next periodic report (every 10 s), the
    closing line said 'held 0' from the report before it came: 'events in 5, processed
    4, dead-lettered 0, filtered 0, held 0', one event unaccounted for."""
    now = datetime.now(UTC)

    def line(user: str, at: datetime) -> bytes:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return orjson.dumps({**ev(user, 0), "timestamp": stamp, "messageId": f"m-{user}"})

    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        "held",
        kafka_broker,
        tail=True,
        metrics={"port": port},
        time={"allowed_lateness": "0s", "idle_after": "1h"},
    )
    servers.create_topics(kafka_broker, ["held.in"], partitions=1)
    worker = Worker(cfg, tmp_path / "worker.log")
    try:
        servers.produce_lines(
            kafka_broker, "held.in", [line(f"u{i}", now - timedelta(seconds=5)) for i in range(4)]
        )
        poll(
            lambda: metric(port, "audienceflow_events_processed_total") == 4,
            60,
            "the worker applying the first four events",
            worker.log,
        )
        servers.produce_lines(kafka_broker, "held.in", [line("ahead", now + timedelta(hours=1))])
        poll(lambda: metric(port, "audienceflow_events_in_total") == 5, 30, "the fifth event")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
    finally:
        worker.stop()
    assert (
        "stopped: events in 5, processed 4, dead-lettered 0, filtered 0, held 1, "
        "resumed holding 0 (this process)"
    ) in worker.log()


def test_unreachable_broker_is_a_startup_error_naming_it(tmp_path: Path) -> None:
    brokers = f"127.0.0.1:{servers.free_port()}"
    cfg = config(tmp_path / "w.yaml", "down", brokers, kafka={"startup_timeout": "1s"})
    worker = Worker(cfg, tmp_path / "worker.log")
    assert worker.wait(30) == 3
    assert f"cannot reach the Kafka broker at {brokers} (kafka.brokers)" in worker.log()


def test_unreachable_redis_is_a_startup_error_naming_it(kafka_broker: str, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{servers.free_port()}/0"
    cfg = config(tmp_path / "w.yaml", "noredis", kafka_broker, url)
    worker = Worker(cfg, tmp_path / "worker.log")
    assert worker.wait(30) == 3
    assert f"cannot reach Redis at {url} (redis.url)" in worker.log()


@pytest.mark.timeout(60)
def test_a_missing_input_topic_is_a_config_error_naming_it_and_is_not_created(
    kafka_broker: str, tmp_path: Path
) -> None:
    cfg = config(tmp_path / "w.yaml", "typo", kafka_broker)  # nobody created typo.in
    worker = Worker(cfg, tmp_path / "worker.log")
    assert worker.wait(45) == 2, worker.log()
    log = worker.log()
    assert f"topic 'typo.in' does not exist on the broker at {kafka_broker}" in log
    assert "Traceback" not in log
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    assert "typo.in" not in admin.list_topics(timeout=10).topics


@pytest.mark.timeout(90)
def test_a_renamed_input_topic_is_refused_at_start_not_read_at_the_old_topics_offsets(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Input positions are stored by partition number: without the topic in the snapshot,
    the new topic was read from the old one's offset 40, so a bounded run over an empty
    (or shorter) new topic never reached its end, and a longer one lost its first 40."""
    produce(kafka_broker, "was.in", stream_lines()[:40])
    produce(kafka_broker, "now.in", [])
    recovery = {"dir": str(tmp_path / "recovery")}
    first = Worker(
        config(tmp_path / "a.yaml", "was", kafka_broker, recovery=recovery), tmp_path / "a.log"
    )
    assert first.wait(45) == 0, first.log()
    renamed = config(
        tmp_path / "b.yaml", "was", kafka_broker, recovery=recovery, kafka={"input_topic": "now.in"}
    )
    again = Worker(renamed, tmp_path / "b.log")
    assert again.wait(30) == 3, again.log()
    assert (
        "input partition 0 was snapshotted reading topic 'was.in' (next offset 40), and "
        "kafka.input_topic is now 'now.in'"
    ) in again.log()


@pytest.mark.timeout(90)
def test_a_renamed_control_topic_is_refused_at_start_naming_both_topics(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Control partitions are snapshotted as ``topic:N``: with another control topic
    Bytewax stopped with a bare traceback (``Key StateKey(...) is not in this worker's
    routing map``) and exit 1; it is now a start-up error naming both, exit 3."""
    produce(kafka_broker, "ctlwas.in", stream_lines()[:10])
    recovery = {"dir": str(tmp_path / "recovery")}
    first = Worker(
        config(
            tmp_path / "a.yaml",
            "ctlwas",
            kafka_broker,
            recovery=recovery,
            kafka={"control_topic": "ctlwas.control"},
        ),
        tmp_path / "a.log",
    )
    assert first.wait(45) == 0, first.log()
    renamed = config(
        tmp_path / "b.yaml",
        "ctlwas",
        kafka_broker,
        recovery=recovery,
        kafka={"control_topic": "ctlnow.control"},
    )
    again = Worker(renamed, tmp_path / "b.log")
    assert again.wait(30) == 3, again.log()
    assert (
        "control partition 0 was snapshotted reading topic 'ctlwas.control', and "
        "kafka.control_topic is now 'ctlnow.control'"
    ) in again.log()


@pytest.mark.timeout(90)
def test_a_topic_created_again_shorter_than_the_snapshots_offset_stops_the_worker_naming_it(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Deleted and created again with 10 messages, the topic ends before offset 40 where
    the snapshot resumes: tansu answers such fetches with nothing (no end of partition),
    so the bounded run never ended; it now stops with exit 3 and says why."""
    produce(kafka_broker, "again.in", stream_lines()[:40])
    recovery = {"dir": str(tmp_path / "recovery")}
    cfg = config(tmp_path / "w.yaml", "again", kafka_broker, recovery=recovery)
    first = Worker(cfg, tmp_path / "a.log")
    assert first.wait(45) == 0, first.log()
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.delete_topics(["again.in"], operation_timeout=10)["again.in"].result(10)
    poll(lambda: "again.in" not in admin.list_topics(timeout=10).topics, 10, "the topic deleted")
    produce(kafka_broker, "again.in", stream_lines()[40:50])
    again = Worker(cfg, tmp_path / "b.log")
    assert again.wait(30) == 3, again.log()
    log = again.log()
    assert (
        "input again.in:0 ends at offset 10, before offset 40 where this worker reads next" in log
    )
    assert "Traceback" not in log


@pytest.mark.timeout(60)
def test_sigterm_ends_a_cluster_process_still_waiting_for_the_others(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Waiting for its peers, the process sits in Bytewax's Rust code, where Python never
    ran the SIGTERM handler: it ignored SIGTERM and SIGINT until killed."""
    produce(kafka_broker, "alone.in", [])
    addresses = f"127.0.0.1:{servers.free_port()};127.0.0.1:{servers.free_port()}"
    cfg = config(tmp_path / "w.yaml", "alone", kafka_broker)
    worker = Worker(cfg, tmp_path / "w.log", "--process-id", "0", "--addresses", addresses)
    try:
        poll(lambda: "process 0 of 2" in worker.log(), 30, "the process waiting for its peer")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.log()
        assert "SIGTERM received before the dataflow started" in worker.log()
    finally:
        worker.stop()


@pytest.mark.timeout(60)
def test_a_property_librdkafka_does_not_know_is_a_config_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    """The Java client's name for the fetch wait, a realistic slip: refused when the
    first client is built, before any broker is asked (none listens here)."""
    brokers = f"127.0.0.1:{servers.free_port()}"
    cfg = config(
        tmp_path / "w.yaml", "prop", brokers, kafka={"add_config": {"fetch.max.wait.ms": 10}}
    )
    worker = Worker(cfg, tmp_path / "worker.log")
    assert worker.wait(45) == 2, worker.log()
    log = worker.log()
    assert 'kafka.add_config: No such configuration property: "fetch.max.wait.ms"' in log
    assert "Traceback" not in log


@pytest.mark.timeout(60)
def test_librdkafka_lines_of_every_client_go_through_the_workers_log(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A consumer property in ``kafka.add_config`` reaches every client, and librdkafka
    warns of it in each producer and admin client. The admin client listing the input's
    partitions printed its raw line (``%4|...|CONFWARN|...``) on stderr, past the
    worker's rate-limited, redacted log."""
    produce(kafka_broker, "rawlog.in", stream_lines()[:20])
    cfg = config(
        tmp_path / "w.yaml", "rawlog", kafka_broker, kafka={"add_config": {"fetch.wait.max.ms": 50}}
    )
    worker = Worker(cfg, tmp_path / "worker.log")
    assert worker.wait(45) == 0, worker.log()
    log = worker.log()
    assert "events in 20" in log, log
    raw = [line for line in log.splitlines() if re.match(r"%\d\|", line)]
    assert raw == [], log


def _resumed(log: str, n: int) -> dict[int, int] | None:
    """The offsets input partitions 0..n-1 resumed at, by the worker's log; None until all."""
    found = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(
            r"input grew\.in:(\d+) resumes from the last snapshot at offset (\d+)", log
        )
    }
    return found if all(p in found for p in range(n)) else None


# A worker started when its input topic had one partition fewer (``partition_check``): the
# listing it started with, without the topic's last partition, as if that one were added
# after. (tansu refuses CreatePartitions, KIP-195, and deleting the topic under a running
# worker crashes librdkafka's metadata cache: confluentinc/librdkafka#5093.)
_STARTED_BEFORE = """
import sys
from audienceflow.flows import cli, kafka_io, worker

listed = kafka_io.input_partitions


def fewer(brokers, topic, extra, control_topic=None):
    names = listed(brokers, topic, extra, control_topic)
    last = max(n for n in names if n.startswith(topic + ":"))
    return [n for n in names if n != last]


kafka_io.input_partitions = worker.input_partitions = fewer
sys.exit(cli.main(["run", "--config", sys.argv[1]]))
"""


@pytest.mark.timeout(150)
def test_a_partition_added_to_the_input_topic_stops_the_worker_and_a_restart_reads_it(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A tailing worker reads the partitions it listed at start: the events producers key
    to a partition added later waited there unread, without a sign. The watch sees the
    topic's count above the one listed and the worker exits 3 naming the partition;
    started again, it resumes the others from its snapshots and reads the added one from
    its beginning."""
    servers.create_topics(kafka_broker, ["grew.in"], partitions=4)
    # Keyed lines only: librdkafka's default partitioner puts one at crc32(key) mod 4 (a
    # line without a key at random). These are in partition 3, which the first worker
    # does not read.
    lines = [ln for ln in stream_lines()[:400] if user_key(ln)]
    servers.produce_lines(kafka_broker, "grew.in", lines, key_fn=user_key)
    held = Counter(zlib.crc32(user_key(ln) or b"") % 4 for ln in lines)
    assert held[3] > 50
    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        "grew",
        kafka_broker,
        tail=True,
        # Checked after a few snapshots of the 3 partitions read (every 1 s): the restart
        # resumes those at their ends, and reads the 4th from its beginning.
        kafka={"partition_check": "4s"},
        metrics={"port": port},
        recovery={"dir": str(tmp_path / "recovery"), "snapshot_interval": "1s"},
    )
    script = tmp_path / "started_before.py"
    script.write_text(_STARTED_BEFORE)
    log_path = tmp_path / "a.log"
    with log_path.open("ab") as log_file:
        first = subprocess.Popen(
            [sys.executable, str(script), str(cfg)], stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            assert first.wait(60) == 3, log_path.read_text()
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    log = log_path.read_text()
    assert "stopped: topic 'grew.in'" in log, log[-2000:]
    assert (
        "topic 'grew.in' has 4 partitions, and this worker was started with 3: it does not "
        "read partition(s) 3, whose events would wait unread"
    ) in log, log[-2000:]
    assert "Traceback" not in log
    again = Worker(cfg, tmp_path / "b.log")
    try:
        resumed = poll(lambda: _resumed(again.log(), 3), 30, "the 3 partitions resumed")
        # The added partition whole, and what the others held after their snapshots (none,
        # unless the first worker read some after its last one: at-least-once).
        expected = held[3] + sum(held[p] - resumed[p] for p in range(3))
        poll(
            lambda: metric(port, "audienceflow_events_in_total") == expected,
            60,
            f"the added partition's lines read ({expected})",
            again.log,
        )
        time.sleep(5)  # no more, past a check (4 s) of the partitions it now reads
        assert metric(port, "audienceflow_events_in_total") == expected
        assert "input grew.in:3 resumes" not in again.log()
        assert again.process.poll() is None and "stopped:" not in again.log(), again.log()
        again.process.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0, again.log()
    finally:
        again.stop()


@pytest.mark.timeout(60)
def test_the_partition_watch_names_growth_of_either_topic_and_nothing_else(
    kafka_broker: str,
) -> None:
    """Against the broker's metadata: the counts a worker was built for, equal or larger
    (nothing), one fewer on the control topic (named), a topic gone (nothing: never
    asked for by name, so never created again by the asking)."""
    servers.create_topics(kafka_broker, ["watch.in"], partitions=4)
    servers.create_topics(kafka_broker, ["watch.ctl"], partitions=2)
    admin = AdminClient({"bootstrap.servers": kafka_broker})

    def watch(counts: dict[str, int]) -> kafka_io.PartitionWatch:
        return kafka_io.PartitionWatch(kafka_broker, {}, counts, 1.0, threading.Event())

    assert watch({"watch.in": 4, "watch.ctl": 2}).check(admin) is None
    assert watch({"watch.in": 5}).check(admin) is None  # fewer now: not growth
    grew = watch({"watch.in": 4, "watch.ctl": 1})
    assert grew.check(admin) == grew.grew
    assert grew.grew is not None and grew.grew.startswith(
        "topic 'watch.ctl' has 2 partitions, and this worker was started with 1: it does "
        "not read partition(s) 1,"
    )
    assert watch({"watch.gone": 1}).check(admin) is None
    assert "watch.gone" not in admin.list_topics(timeout=10).topics
