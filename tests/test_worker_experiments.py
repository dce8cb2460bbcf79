"""The worker publishes exposures as a replay writes them, and keeps experiment state over kill -9.

Real Kafka and Redis servers (fixtures). The replay of the bundled stream with
the same engine settings is the reference: the worker's `exposures` topic must
hold the same records (as a multiset: topics interleave users differently).
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import servers
from workers import (
    STREAM,
    Worker,
    committed_input_offset,
    metric,
    poll,
    stream_lines,
    write_config,
)

from audienceflow.flows.replay import replay
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.integration

EXPERIMENTS = {
    "global_control": {"share": 0.1, "seed": "gc-worker"},
    "cart_timing": {
        "trigger": "cart_abandonment",
        "seed": "worker-cart-timing",
        "arms": {
            "after_15m": {"weight": 0.45},
            "after_1h": {"weight": 0.45, "after": "1h"},
            "holdout": {"weight": 0.1, "holdout": True},
        },
    },
}


def config(path: Path, prefix: str, brokers: str, tail: bool = False, **extra: Any) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "state": {"shards": 8},
        "time": {"idle_after": "1h"},  # live runs stay on stream time, as a replay
        "kafka": {
            "brokers": brokers,
            "input_topic": f"{prefix}.in",
            "topics": {
                "segment_changes": f"{prefix}.changes",
                "actions": f"{prefix}.actions",
                "sessions": f"{prefix}.sessions",
                "dead_letters": f"{prefix}.dead",
                "exposures": f"{prefix}.exposures",
            },
            "tail": tail,
            "partitions": 1,
            "startup_timeout": "5s",
        },
        "experiments": EXPERIMENTS,
    }
    for key, value in extra.items():
        sections[key] = {**sections.get(key, {}), **value}
    return write_config(path, **sections)


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    tmp = tmp_path_factory.mktemp("replay-exp")
    cfg = config(tmp / "replay.yaml", "replay", "127.0.0.1:9")
    replay([str(STREAM)], tmp / "out", Settings.load(cfg, environ={}))
    lines = (tmp / "out" / "exposures.jsonl").read_bytes().splitlines()
    assert len(lines) > 50
    return lines


def exposures(bootstrap: str, prefix: str) -> list[bytes]:
    recs = servers.consume_all(bootstrap, f"{prefix}.exposures", timeout=20.0)
    for key, value, _ in recs:
        assert key == orjson.loads(value or b"")["user_id"].encode()
    return [v for _, v, _ in recs if v is not None]


@pytest.mark.timeout(240)
def test_worker_publishes_the_exposures_a_replay_writes(
    kafka_broker: str, tmp_path: Path, expected: list[bytes]
) -> None:
    servers.create_topics(kafka_broker, ["xw.in"], partitions=1)
    servers.produce_lines(kafka_broker, "xw.in", stream_lines())
    worker = Worker(config(tmp_path / "w.yaml", "xw", kafka_broker), tmp_path / "w.log")
    assert worker.wait() == 0, worker.log()
    assert Counter(exposures(kafka_broker, "xw")) == Counter(expected)


def _at_least(value: float | None, minimum: float) -> float | None:
    return value if value is not None and value >= minimum else None


@pytest.mark.timeout(300)
def test_experiment_state_survives_kill_9_without_a_second_first_exposure(
    kafka_broker: str, tmp_path: Path, expected: list[bytes]
) -> None:
    lines = stream_lines()
    servers.create_topics(kafka_broker, ["xk.in"], partitions=1)
    servers.produce_lines(kafka_broker, "xk.in", lines[:1000])
    port = servers.free_port()
    recovery = {"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"}
    live = config(
        tmp_path / "live.yaml",
        "xk",
        kafka_broker,
        tail=True,
        kafka={"batch_size": 100},
        metrics={"port": port},
        recovery=recovery,
    )
    worker = Worker(live, tmp_path / "live.log")
    try:
        poll(
            lambda: committed_input_offset(tmp_path / "recovery") == 1000,
            60,
            "a committed snapshot of the first 1000 lines",
        )
        servers.produce_lines(kafka_broker, "xk.in", lines[1000:3000])
        poll(
            lambda: _at_least(metric(port, "audienceflow_events_in_total"), 1500),
            60,
            "the worker reading the next lines",
        )
        # live: exposures counted, and each arm's reading as gauges
        assert (metric(port, "audienceflow_exposures_total") or 0) > 0
        poll(
            lambda: _at_least(metric(port, "audienceflow_experiment"), 1),
            30,
            "experiment gauges from the shards' periodic stats",
        )
    finally:
        worker.process.send_signal(signal.SIGKILL)
        worker.wait()
    servers.produce_lines(kafka_broker, "xk.in", lines[3000:])
    bounded = config(tmp_path / "bounded.yaml", "xk", kafka_broker, recovery=recovery)
    again = Worker(bounded, tmp_path / "again.log")
    assert again.wait() == 0, again.log()

    got = exposures(kafka_broker, "xk")
    by_decision: dict[str, set[bytes]] = {}
    for value in got:
        by_decision.setdefault(orjson.loads(value)["decision_id"], set()).add(value)
    # At-least-once may repeat a decision, always with the same bytes ...
    assert all(len(copies) == 1 for copies in by_decision.values())
    deduped = [next(iter(c)) for c in by_decision.values()]
    # ... and, once repeats are dropped, nothing differs from the uninterrupted replay:
    # no user was exposed "first" twice, none lost its arm.
    assert Counter(deduped) == Counter(expected)
    firsts = Counter(
        (r["experiment"], r["user_id"]) for r in map(orjson.loads, deduped) if r["first"]
    )
    assert firsts and max(firsts.values()) == 1
