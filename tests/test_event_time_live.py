"""The live worker gives the replay's answer on partitioned input (issue: event time per
input partition, across restarts, backlogs and skewed clocks).

The bundled stream is produced into topics of 1, 4 and 16 partitions keyed by user, as a
Segment or RudderStack forwarder does, and read back by one worker or two processes with
`kafka.tail: false`. Whatever the partitioning, the outputs must equal a replay of the
file as multisets, with the same ids, and Redis must hold the replay's profiles: lateness
is judged per partition, stream time is the minimum over partitions, and the shared
models read and train in event-time epochs, so the interleaving of partitions changes
nothing. Dead letters are compared without their position (`topic:partition:offset`
against `file:line`).
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest
import servers
from test_worker import config
from workers import (
    STREAM,
    Worker,
    committed_input_offset,
    kafka_outputs,
    metric,
    poll,
    redis_profiles,
    replay_profiles,
    stream_lines,
    user_key,
    values,
)

from audienceflow.flows.replay import replay
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.integration

NAMES = ("segment_changes", "actions", "sessions", "dead_letters")


def produce_keyed(bootstrap: str, topic: str, lines: list[bytes], partitions: int) -> None:
    servers.create_topics(bootstrap, [topic], partitions=partitions)
    servers.produce_lines(bootstrap, topic, lines, key_fn=user_key)


def _without_position(rec: bytes) -> bytes:
    obj = orjson.loads(rec)
    obj.pop("position", None)
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def comparable(found: dict[str, list[bytes]]) -> dict[str, Counter[bytes]]:
    out = {name: Counter(found[name]) for name in NAMES}
    out["dead_letters"] = Counter(_without_position(d) for d in found["dead_letters"])
    return out


def replay_files(out: Path) -> dict[str, list[bytes]]:
    found = {name: (out / f"{name}.jsonl").read_bytes().splitlines() for name in NAMES}
    found["actions"] = [a for a in found["actions"] if orjson.loads(a)["status"] == "delivered"]
    return found


def assert_equal_outputs(got: dict[str, list[bytes]], expected: dict[str, list[bytes]]) -> None:
    a, b = comparable(got), comparable(expected)
    for name in NAMES:
        extra, missing = a[name] - b[name], b[name] - a[name]
        assert not extra and not missing, (
            f"{name}: {sum(extra.values())} unexpected, e.g. {list(extra)[:1]}; "
            f"{sum(missing.values())} missing, e.g. {list(missing)[:1]}"
        )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Path:
    tmp = tmp_path_factory.mktemp("replay-partitions")
    cfg = config(tmp / "replay.yaml", "rp", "127.0.0.1:9")
    out = tmp / "out"
    summary = replay([str(STREAM)], out, Settings.load(cfg, environ={}), redis_url=redis_server)
    assert summary["counts"]["reconciled"]
    assert summary["counts"]["dead_lettered_by_reason"].get("late_event", 0) == 0
    return out


def run_bounded(
    kafka_broker: str,
    redis_server: str,
    tmp_path: Path,
    prefix: str,
    partitions: int,
    processes: int,
    lines: list[bytes],
) -> dict[str, list[bytes]]:
    produce_keyed(kafka_broker, f"{prefix}.in", lines, partitions)
    cfg = config(tmp_path / "w.yaml", prefix, kafka_broker, redis_server)
    if processes == 1:
        worker = Worker(cfg, tmp_path / "w.log")
        assert worker.wait(180) == 0, worker.log()[-3000:]
    else:
        ports = [servers.free_port() for _ in range(processes)]
        addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
        procs = [
            Worker(cfg, tmp_path / f"w{i}.log", "--process-id", str(i), "--addresses", addresses)
            for i in range(processes)
        ]
        for w in procs:
            assert w.wait(180) == 0, w.log()[-3000:]
    from test_worker import topics

    found = kafka_outputs(kafka_broker, topics(prefix))
    return {name: values(found[name]) for name in NAMES}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("partitions", "processes"), [(1, 1), (4, 1), (16, 1), (4, 2), (16, 2)])
def test_partitioned_topics_give_the_replays_outputs_and_profiles(
    kafka_broker: str,
    redis_server: str,
    tmp_path: Path,
    replayed: Path,
    partitions: int,
    processes: int,
) -> None:
    prefix = f"parts{partitions}x{processes}"
    got = run_bounded(
        kafka_broker, redis_server, tmp_path, prefix, partitions, processes, stream_lines()
    )
    assert_equal_outputs(got, replay_files(replayed))
    assert redis_profiles(redis_server, f"{prefix}:profile:") == replay_profiles(replayed)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("partitions", "processes"), [(4, 1), (16, 2)])
def test_a_large_generated_stream_on_partitioned_topics_equals_its_replay(
    kafka_broker: str, redis_server: str, tmp_path: Path, partitions: int, processes: int
) -> None:
    import generate

    lines, truth = generate.generate(users=6000, seed=21, invalid_rate=0.002)
    assert len(lines) >= 100_000 and len(truth["archetypes"]) >= 5000
    path = tmp_path / "big.jsonl"
    generate.write(path, lines)
    cfg = config(tmp_path / "replay.yaml", "bigreplay", "127.0.0.1:9")
    out = tmp_path / "replay"
    summary = replay([str(path)], out, Settings.load(cfg, environ={}))
    assert summary["counts"]["reconciled"]
    prefix = f"big{partitions}x{processes}"
    got = run_bounded(kafka_broker, redis_server, tmp_path, prefix, partitions, processes, lines)
    assert_equal_outputs(got, replay_files(out))


def _dedup(found: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """At-least-once outputs without their repeats (a repeat is the same bytes)."""
    return {name: list(dict.fromkeys(recs)) for name, recs in found.items()}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("how", "cut"), [("sigterm", 1200), ("kill", 2000), ("kill", 3500)])
def test_a_restart_in_a_multi_partition_backlog_loses_and_changes_nothing(
    kafka_broker: str, redis_server: str, tmp_path: Path, replayed: Path, how: str, cut: int
) -> None:
    """The first ``cut`` lines read live, then a stop (SIGTERM, or kill -9 after a snapshot);
    while the worker is down the rest of the stream arrives (its event times run on: minutes
    and days of simulated time); a restart reads the backlog of 4 partitions to the end.
    De-duplicated outputs and the Redis profiles equal the replay's."""
    lines = stream_lines()
    prefix = f"restart-{how}-{cut}"
    first, rest = lines[:cut], lines[cut:]
    produce_keyed(kafka_broker, f"{prefix}.in", first, 4)
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
        # Read all of the first part: live, a partition at its end holds the others back
        # (alignment) until it is idle, and idle_after is 1h here (stream time only).
        time={"align_within": "30d"},
    )
    worker = Worker(live, tmp_path / "live.log")
    try:
        poll(
            lambda: metric(port, "audienceflow_events_in_total") == len(first),
            90,
            "the worker reading the first part",
            on_timeout=worker.log,
        )
        poll(
            lambda: (committed_input_offset(tmp_path / "recovery") or 0) > 0,
            60,
            "a snapshot",
        )
        if how == "sigterm":
            worker.process.send_signal(signal.SIGTERM)
            assert worker.wait(60) == 0, worker.log()[-3000:]
        else:
            worker.process.kill()
            worker.wait(30)
    finally:
        worker.stop()
    servers.produce_lines(kafka_broker, f"{prefix}.in", rest, key_fn=user_key)  # the backlog
    bounded = config(
        tmp_path / "bounded.yaml",
        prefix,
        kafka_broker,
        redis_server,
        tail=False,
        kafka={"batch_size": 100},
        recovery=recovery,
    )
    again = Worker(bounded, tmp_path / "again.log")
    assert again.wait(180) == 0, again.log()[-3000:]
    assert "resumes from the last snapshot" in again.log()
    from test_worker import topics

    found = kafka_outputs(kafka_broker, topics(prefix))
    got = _dedup({name: values(found[name]) for name in NAMES})
    assert_equal_outputs(got, replay_files(replayed))
    assert redis_profiles(redis_server, f"{prefix}:profile:") == replay_profiles(replayed)


@pytest.mark.timeout(180)
def test_a_historical_stream_followed_by_live_events_processes_the_live_events(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    """The bundled (March 2026) stream, then events stamped now: the live ones are judged
    against the wall clock and the partition's time jumps once a quorum confirms it; none
    of them is late or future, with no manual step."""
    import time as _time

    from helpers import ev

    lines = stream_lines()
    prefix = "histlive"
    produce_keyed(kafka_broker, f"{prefix}.in", lines, 4)
    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        prefix,
        kafka_broker,
        redis_server,
        tail=True,
        metrics={"port": port},
        time={"idle_after": "2s"},
    )
    worker = Worker(cfg, tmp_path / "w.log", "--progress", "1")
    try:
        poll(
            lambda: metric(port, "audienceflow_events_in_total") == len(lines),
            90,
            "the historical stream read",
            on_timeout=worker.log,
        )
        now = _time.time()
        live = []
        for i in range(40):
            e = ev(f"live{i % 8}", 0, "Home", mid=f"live-{i}")
            # Minutes old, as a device's queued events are: once every partition is idle,
            # stream time follows the wall clock less idle_after and the allowed lateness
            # (2 min), and events are applied when stream time reaches them.
            e["timestamp"] = _iso(now - 600 + i)
            live.append(orjson.dumps(e))
        servers.produce_lines(kafka_broker, f"{prefix}.in", live, key_fn=user_key)
        total = len(lines) + len(live)
        poll(
            lambda: _accounted(port) == total,
            60,
            "every line accounted for",
            on_timeout=worker.log,
        )
        late_or_future = sum(
            metric(port, f'audienceflow_dead_lettered_total{{reason="{r}"}}') or 0.0
            for r in ("late_event", "future_event")
        )
        assert late_or_future == 0
        profiles = redis_profiles(redis_server, f"{prefix}:profile:")
        assert all(f"live{i}" in profiles for i in range(8))
        progress = [ln for ln in worker.log().splitlines() if "progress: in " in ln]
        assert progress and "stream time 2026-" in progress[-1]  # the operator's view
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(60)


def _iso(ts: float) -> str:
    from audienceflow.operators.records import iso

    return iso(ts)


def _accounted(port: int) -> float:
    return sum(
        metric(port, name) or 0.0
        for name in (
            "audienceflow_events_processed_total",
            "audienceflow_dead_lettered_total",
            "audienceflow_filtered_total",
        )
    )


@pytest.mark.timeout(150)
def test_a_partition_that_only_carries_bad_lines_does_not_hold_stream_time_back(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    """One partition of four receives nothing but lines that are dead-lettered, without
    pause. It has no event time to offer, so it must go idle ``idle_after`` after its last
    accepted line, as a silent partition does; before, every bad line counted as activity
    and the other partitions' events waited forever."""
    import time as _time

    from confluent_kafka import Producer
    from helpers import ev

    prefix = "badpart"
    servers.create_topics(kafka_broker, [f"{prefix}.in"], partitions=4)
    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        prefix,
        kafka_broker,
        redis_server,
        tail=True,
        metrics={"port": port},
        time={"idle_after": "2s"},
    )
    worker = Worker(cfg, tmp_path / "w.log")
    producer = Producer({"bootstrap.servers": kafka_broker, "linger.ms": 0})
    try:
        now = _time.time()
        good = 12
        for i in range(good):
            e = ev(f"bp{i}", 0, "Home", mid=f"bp-{i}")
            e["timestamp"] = _iso(now - 600 + i)  # applied once stream time follows the clock
            producer.produce(f"{prefix}.in", orjson.dumps(e), partition=i % 3)
        producer.flush(10)
        bad = 0
        deadline = _time.monotonic() + 60
        while metric(port, "audienceflow_events_processed_total") != good:
            assert _time.monotonic() < deadline, worker.log()[-3000:]
            producer.produce(f"{prefix}.in", b"not json at all", partition=3)
            producer.flush(10)
            bad += 1
            _time.sleep(0.2)  # a steady trickle, far more often than idle_after
        assert bad > 2 / 0.2  # the bad lines kept coming past idle_after
        poll(
            lambda: (metric(port, "audienceflow_dead_lettered_total") or 0) >= bad - 5,
            30,
            "the bad lines dead-lettered",
            on_timeout=worker.log,
        )
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(60)


@pytest.mark.timeout(150)
def test_clocks_ahead_on_one_partition_or_the_control_topic_move_nobodys_time(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    """A phone an hour ahead sends a burst of ``watermark_quorum`` (4) events on one of 4
    partitions, and a privacy tool stamps 4 requests 2 h ahead (local time written with a
    ``Z``). Before, the burst moved its partition's time an hour on, so the next event of
    every other user there was dead-lettered as late; and at the next lull (every
    partition idle) stream time took the furthest partition's mark, 2 h ahead, so every
    cart-abandonment timer (15 min) fired at once and every session closed. Live, a
    partition's time now stops at the wall clock, and with every partition idle stream
    time follows the wall clock alone."""
    import time as _time

    from confluent_kafka import Producer
    from test_live_partition_time import _live_config

    prefix = "ahead"
    servers.create_topics(kafka_broker, [f"{prefix}.control"], partitions=1)
    cfg, port, _ = _live_config(
        kafka_broker,
        redis_server,
        tmp_path,
        prefix,
        models={"enabled": False},
        time={"idle_after": "2s", "allowed_lateness": "2s", "tick": "200ms"},
        kafka={"partitions": 4, "control_topic": f"{prefix}.control"},
    )
    worker = Worker(cfg, tmp_path / "w.log")
    producer = Producer({"bootstrap.servers": kafka_broker, "linger.ms": 0})
    # Up before the events are stamped: a partition's time stops at the wall clock when
    # read, so a start slower than the lateness (2 s, a loaded machine) would itself make
    # the events stamped before it late (one run of the suite while other work shared
    # the 2 cores: 2 dead letters).
    poll(lambda: metric(port, "audienceflow_events_in_total") is not None, 60, "start")

    def page(user: str, ts: float, mid: str) -> bytes:
        return orjson.dumps(
            {
                "type": "page",
                "name": "Home",
                "userId": user,
                "messageId": mid,
                "timestamp": _iso(ts),
            }
        )

    try:
        now = _time.time()
        shoppers = [f"shopper{i}" for i in range(8)]
        for i, u in enumerate(shoppers):  # each opens a session with a cart: a 15 min timer
            cart = {
                "type": "track",
                "event": "Product Added",
                "userId": u,
                "messageId": f"cart-{i}",
                "timestamp": _iso(now - 1),
                "properties": {"product_id": f"p{i}", "price": 10.0, "quantity": 1},
            }
            producer.produce(f"{prefix}.in", orjson.dumps(cart), partition=i % 4)
        for k in range(4):  # one device, an hour ahead, on partition 0
            producer.produce(f"{prefix}.in", page("phone", now + 3600 + k, f"ph-{k}"), partition=0)
        for i, u in enumerate(shoppers):  # the shoppers' next events, stamped now
            producer.produce(f"{prefix}.in", page(u, now, f"next-{i}"), partition=i % 4)
        for k in range(4):
            req = {"type": "delete", "id": f"nobody{k}", "requestId": f"r{k}",
                   "timestamp": _iso(now + 7200)}  # fmt: skip
            producer.produce(f"{prefix}.control", orjson.dumps(req), partition=0)
        producer.flush(10)
        shopper_events = 2 * len(shoppers)
        poll(
            lambda: (
                (metric(port, "audienceflow_events_processed_total") or 0)
                + (metric(port, "audienceflow_dead_lettered_total") or 0)
                >= shopper_events
            ),
            60,
            "the shoppers' events accounted for",
            on_timeout=worker.log,
        )
        # Past idle_after: every partition (the control topic's too) is idle, and the
        # wall-clock fallback, not the furthest mark, drives stream time.
        _time.sleep(6)
        assert metric(port, "audienceflow_dead_lettered_total") in (None, 0.0), worker.log()[-3000:]
        assert metric(port, "audienceflow_events_processed_total") == shopper_events
        assert metric(port, "audienceflow_actions_total") in (None, 0.0)  # due in 15 min
        assert metric(port, "audienceflow_sessions_total") in (None, 0.0)  # 30 min timeout
        assert metric(port, "audienceflow_control_receipts_total") in (None, 0.0)  # due in 2 h
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(60)
