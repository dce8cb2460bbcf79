"""Faults and trust boundaries against real servers: Redis restarted empty, SIGTERM while
Redis is away, a second signal, secrets in logs, and authenticated recovery snapshots."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
import servers
from workers import (
    CLI,
    STREAM,
    Worker,
    committed_input_offset,
    metric,
    poll,
    redis_profiles,
    stream_lines,
)
from workers import write_config as _write

from audienceflow.flows.dataflow import resumed
from audienceflow.flows.snapshots import KEY_ENV, SnapshotRefused, seal, unseal
from audienceflow.operators.engine import ShardState
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_codec import decode_shard, encode_shard

PASSWORD = "pw-Zq81-never-printed"


def _config(path: Path, prefix: str, brokers: str, redis_url: str, **extra: Any) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "state": {"shards": 4},
        # Stream time is the latest event read (no lateness, a one-event quorum, fine ticks),
        # so every line is applied as soon as it is read and the counts can be polled;
        # never idle, so the wall clock never closes the recorded sessions.
        "time": {
            "idle_after": "1h",
            "allowed_lateness": "0s",
            "watermark_quorum": 1,
            "tick": "1s",
        },
        "privacy": {"salt": "test-salt-not-secret"},
        "kafka": {
            "brokers": brokers,
            "input_topic": f"{prefix}.in",
            "topics": {
                "segment_changes": f"{prefix}.changes",
                "actions": f"{prefix}.actions",
                "sessions": f"{prefix}.sessions",
                "dead_letters": f"{prefix}.dead",
            },
            "tail": True,
            "partitions": 1,
            "batch_size": 100,
            "startup_timeout": "5s",
        },
        "redis": {"url": redis_url, "key_prefix": f"{prefix}:profile:"},
    }
    for key, value in extra.items():
        sections[key] = {**sections.get(key, {}), **value}
    return _write(path, **sections)


def _counted(port: int, n: int) -> bool:
    """The worker has read and accounted for ``n`` input lines."""
    done = sum(
        metric(port, name) or 0.0
        for name in (
            "audienceflow_events_processed_total",
            "audienceflow_dead_lettered_total",
            "audienceflow_filtered_total",
        )
    )
    return metric(port, "audienceflow_events_in_total") == n and done == n


@pytest.fixture
def valkey(tmp_path: Path) -> Any:
    server = servers.start_redis(tmp_path / "valkey", password=PASSWORD)
    holder = {"server": server}
    yield holder
    servers.stop(holder["server"])


def _start_worker(
    tmp_path: Path, kafka_broker: str, url: str, prefix: str, lines: list[bytes], **extra: Any
) -> tuple[Worker, int]:
    servers.create_topics(kafka_broker, [f"{prefix}.in"], partitions=1)
    servers.produce_lines(kafka_broker, f"{prefix}.in", lines)
    port = servers.free_port()
    cfg = _config(tmp_path / "w.yaml", prefix, kafka_broker, url, metrics={"port": port}, **extra)
    worker = Worker(cfg, tmp_path / "worker.log")
    poll(lambda: _counted(port, len(lines)), 60, "the worker accounting for the first lines")
    return worker, port


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_redis_restarted_empty_gets_every_profile_back(
    kafka_broker: str, valkey: dict[str, Any], tmp_path: Path
) -> None:
    lines = stream_lines()
    first, later = lines[:1500], lines[1500:1502]  # a nudge: stream time barely moves
    url = valkey["server"].address
    worker, port = _start_worker(tmp_path, kafka_broker, url, "empty", first)
    try:
        before = redis_profiles(url, "empty:profile:")
        assert len(before) > 100
        writes = metric(port, "audienceflow_profile_writes_total") or 0.0
        servers.stop(valkey["server"])  # down, and its data gone with it (no persistence)
        servers.produce_lines(kafka_broker, "empty.in", later)
        poll(
            lambda: "unreachable" in worker.log(),
            30,
            "the worker retrying its Redis writes",
            on_timeout=worker.log,
        )
        valkey["server"] = servers.start_redis(
            tmp_path / "valkey", port=int(url.rsplit(":", 1)[1].split("/")[0]), password=PASSWORD
        )
        poll(
            lambda: set(before) <= set(redis_profiles(url, "empty:profile:")),
            30,
            "every profile back in Redis",
        )
        after = redis_profiles(url, "empty:profile:")
        # Back by re-publication, not by fresh writes: the users written since are few,
        # and only they may differ from what Redis held before (but for the stream time
        # each profile is of: the shards write the current profile of each user).
        rewritten = (metric(port, "audienceflow_profile_writes_total") or 0.0) - writes
        assert rewritten < len(before) / 10
        moving = ("updated_at", "top_category")
        changed = [
            u
            for u in before
            if {k: v for k, v in after[u].items() if k not in moving}
            != {k: v for k, v in before[u].items() if k not in moving}
        ]
        assert len(changed) <= rewritten
        assert "lost its data" in worker.log()
        assert metric(port, "audienceflow_redis_republished_total") >= len(before)
        assert metric(port, "audienceflow_redis_errors_total") >= 1
    finally:
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
    assert PASSWORD not in worker.log()


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_sigterm_while_redis_is_down_exits_0_in_bounded_time_and_keeps_work_after_snapshot(
    kafka_broker: str, valkey: dict[str, Any], tmp_path: Path
) -> None:
    lines = stream_lines()
    url = valkey["server"].address
    recovery = {"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"}
    worker, _ = _start_worker(tmp_path, kafka_broker, url, "down", lines[:1000], recovery=recovery)
    poll(
        lambda: committed_input_offset(tmp_path / "recovery") == 1000,
        30,
        "a snapshot of the first lines",
    )
    servers.stop(valkey["server"])
    servers.produce_lines(kafka_broker, "down.in", lines[1000:1200])
    poll(
        lambda: "unreachable" in worker.log(),
        30,
        "the worker retrying its Redis writes",
        on_timeout=worker.log,
    )
    began = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.log()
    took = time.monotonic() - began
    log = worker.log()
    print(f"stopped {took:.2f}s after SIGTERM with Redis down")
    assert "stopped without a last snapshot" in log
    assert "recovery snapshots are not authenticated" in log
    # The batch that never reached Redis is after the last snapshot: a resume redoes it.
    assert committed_input_offset(tmp_path / "recovery") == 1000
    assert PASSWORD not in log
    assert "redis://:***@127.0.0.1" in log


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_second_signal_exits_130_at_once(
    kafka_broker: str, valkey: dict[str, Any], tmp_path: Path
) -> None:
    lines = stream_lines()
    server = valkey["server"]
    worker, port = _start_worker(tmp_path, kafka_broker, server.address, "twice", lines[:500])
    # A frozen Redis accepts connections and never answers: the sink waits in its write
    # (up to its 10 s socket timeout per attempt) without finishing the batch.
    server.process.send_signal(signal.SIGSTOP)
    try:
        servers.produce_lines(kafka_broker, "twice.in", lines[500:600])
        poll(
            lambda: metric(port, "audienceflow_events_in_total") == 600,
            30,
            "the worker reading the lines it cannot write to Redis",
        )
        worker.process.send_signal(signal.SIGTERM)
        poll(lambda: "SIGTERM received" in worker.log(), 10, "the first signal handled")
        assert worker.process.poll() is None, worker.log()  # still draining into Redis
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 130, worker.log()
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert "second SIGTERM: aborting" in worker.log()
    assert "Traceback" not in worker.log()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_startup_errors_never_print_the_redis_password(
    kafka_broker: str, valkey: dict[str, Any], tmp_path: Path
) -> None:
    url = valkey["server"].address
    wrong = url.replace(PASSWORD, PASSWORD + "-wrong")
    down = f"redis://:{PASSWORD}@127.0.0.1:{servers.free_port()}/0"
    for i, bad in enumerate((wrong, down)):
        cfg = _config(tmp_path / f"w{i}.yaml", f"secret{i}", kafka_broker, bad)
        done = subprocess.run([CLI, "run", "--config", str(cfg)], capture_output=True, timeout=60)
        text = (done.stdout + done.stderr).decode()
        assert done.returncode == 3, text
        assert "cannot reach Redis at redis://:***@127.0.0.1" in text
        assert PASSWORD not in text


def test_sealed_snapshot_round_trips_and_any_change_is_refused() -> None:
    key = b"k" * 32
    state = encode_shard(ShardState("shard-001", processed=3))
    blob = seal(state, key)
    assert unseal(blob, key) == state
    assert decode_shard(unseal(blob, key)) == ShardState("shard-001", processed=3)
    for i in (4, 20, len(blob) // 2, len(blob) - 1):  # the tag, and the envelope
        tampered = blob[:i] + bytes([blob[i] ^ 1]) + blob[i + 1 :]
        with pytest.raises(SnapshotRefused, match="fails its authentication"):
            unseal(tampered, key)
    with pytest.raises(SnapshotRefused, match="another key"):
        unseal(blob, b"x" * 32)


def test_a_snapshot_is_refused_under_another_shard_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    placed = replace(Settings.load(None), shards=4, partitioner="murmur2", placement="partition")
    fresh = resumed(None, placed)
    assert fresh.layout == "4 partition shards by murmur2"
    fresh.shard, fresh.processed = "shard-002", 7
    snap = seal(encode_shard(fresh))
    back = resumed(snap, placed)
    assert (back.shard, back.processed, back.layout) == ("shard-002", 7, fresh.layout)
    # Each part of the layout on its own: a user's shard would change with any of them.
    for other, named in (
        (replace(placed, shards=5), "5 partition shards by murmur2"),
        (replace(placed, partitioner="crc32"), "4 partition shards by crc32"),
        (replace(placed, placement="shared"), "4 shards by murmur2"),
    ):
        with pytest.raises(
            SnapshotRefused, match=f"written with {fresh.layout}, this run has {named}"
        ):
            resumed(snap, other)
    # A snapshot from before the layout was recorded resumes, and records it from then on.
    body = msgpack.unpackb(unseal(snap)[5:], raw=False)
    del body["layout"]
    old = seal(unseal(snap)[:5] + msgpack.packb(body, use_bin_type=True))
    again = resumed(old, replace(placed, shards=5))
    assert (again.processed, again.layout) == (7, "5 partition shards by murmur2")


def test_unauthenticated_snapshots_are_refused_once_a_key_is_set_and_vice_versa(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    plain = seal(b"a1")
    assert unseal(plain) == b"a1"  # no key: works, unauthenticated
    with pytest.raises(SnapshotRefused, match="not authenticated but"):
        unseal(plain, b"k" * 32)
    with pytest.raises(SnapshotRefused, match="not authenticated but"):
        unseal(pickle.dumps({"a": 1}), b"k" * 32)  # a bare pickle from before sealing
    with pytest.raises(SnapshotRefused, match="is not set"):
        unseal(seal(b"a1", b"k" * 32))
    monkeypatch.setenv(KEY_ENV, "k" * 32)
    assert unseal(seal(b"a1"), b"k" * 32) == b"a1"  # the key comes from the environment


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_worker_refuses_to_resume_from_a_snapshot_signed_with_another_key(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    lines = stream_lines()[:300]
    servers.create_topics(kafka_broker, ["sealed.in"], partitions=1)
    servers.produce_lines(kafka_broker, "sealed.in", lines)
    recovery = {"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"}
    cfg = _config(
        tmp_path / "w.yaml",
        "sealed",
        kafka_broker,
        redis_server,
        kafka={"tail": False},
        recovery=recovery,
    )

    def run(key: str | None) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
        if key is not None:
            env[KEY_ENV] = key
        return subprocess.run(
            [CLI, "run", "--config", str(cfg)], capture_output=True, timeout=90, env=env
        )

    signed = run("the-key-the-snapshots-are-written-with")
    assert signed.returncode == 0, signed.stderr.decode()
    assert b"not authenticated" not in signed.stderr
    for key, reason in (
        ("another-key", "fails its authentication"),
        (None, "is authenticated but $AUDIENCEFLOW_SNAPSHOT_KEY is not set"),
    ):
        refused = run(key)
        text = refused.stderr.decode()
        assert refused.returncode == 3, text
        assert "cannot start: " in text and reason in text, text
        assert "Traceback" not in text


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_worker_refuses_to_resume_under_another_shard_layout(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    servers.create_topics(kafka_broker, ["layout.in"], partitions=2)
    servers.produce_lines(kafka_broker, "layout.in", stream_lines()[:200])
    recovery = {"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"}

    def run(name: str, state: dict[str, Any]) -> subprocess.CompletedProcess[bytes]:
        cfg = _config(
            tmp_path / f"{name}.yaml",
            "layout",
            kafka_broker,
            redis_server,
            kafka={"tail": False, "partitions": 2},
            recovery=recovery,
            state=state,
        )
        env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
        return subprocess.run(
            [CLI, "run", "--config", str(cfg)], capture_output=True, timeout=90, env=env
        )

    first = run("first", {"shards": 4})
    assert first.returncode == 0, first.stderr.decode()
    for name, state, layout in (
        ("fewer", {"shards": 3}, "3 shards by crc32"),
        ("placed", {"shards": 1, "placement": "partition"}, "2 partition shards by murmur2"),
    ):
        refused = run(name, state)
        text = refused.stderr.decode()
        assert refused.returncode == 3, text
        assert "cannot start" in text, text
        assert f"written with 4 shards by crc32, this run has {layout}" in text, text
        assert "Traceback" not in text
    again = run("again", {"shards": 4})  # the layout it was written with still resumes
    assert again.returncode == 0, again.stderr.decode()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_replay_whose_redis_refuses_its_writes_says_why(
    valkey: dict[str, Any], tmp_path: Path
) -> None:
    """Redis refusing a write (here: out of memory) stops ``replay --redis`` with exit 3;
    the error said only Bytewax's '(src/outputs.rs:554:34): error writing output batch',
    not what Redis answered. The password of the URL stays masked."""
    import redis

    url = valkey["server"].address
    client = redis.Redis.from_url(url)
    client.config_set("maxmemory", "1")
    client.config_set("maxmemory-policy", "noeviction")
    client.close()
    done = subprocess.run(
        [CLI, "replay", str(STREAM), "--out", str(tmp_path / "out"), "--redis", url],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "AUDIENCEFLOW_PII_SALT": "faults"},
    )
    assert done.returncode == 3, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error Redis at redis://:***@127.0.0.1:"), last
    assert "refused" in last and "maxmemory" in last, last
    assert PASSWORD not in done.stderr
