"""The worker's readiness signal: ``/ready`` on the metrics port.

``/metrics`` answers from the end of the start-up checks, while a process of a cluster
still waits for the others and long after its dataflow has stopped: a readiness probe
on it says nothing. ``/ready`` answers 503 and the reason until the dataflow runs.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import servers
from workers import Worker, poll, write_config


def _get(port: int, path: str) -> tuple[int, str] | None:
    """(status, body) of ``path``, None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_ready_is_503_until_every_process_of_the_cluster_has_joined_then_200(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    servers.create_topics(kafka_broker, ["ready.in"], partitions=2)
    addresses = f"127.0.0.1:{servers.free_port()};127.0.0.1:{servers.free_port()}"
    ports = [servers.free_port(), servers.free_port()]
    configs = [
        write_config(
            tmp_path / f"w{i}.yaml",
            kafka={
                "brokers": kafka_broker,
                "input_topic": "ready.in",
                "control_topic": "ready.control",
                "topics": {k: f"ready.{k}" for k in ("segment_changes", "actions", "sessions")}
                | {"dead_letters": "ready.dead", "identities": None, "control_receipts": None},
                "partitions": 2,
            },
            state={"shards": 2},
            metrics={"port": ports[i]},
        )
        for i in range(2)
    ]

    def start(i: int) -> Worker:
        args = ("--process-id", str(i), "--addresses", addresses)
        return Worker(configs[i], tmp_path / f"worker{i}.log", *args)

    first = start(0)
    second: Worker | None = None
    try:
        up = poll(lambda: _get(ports[0], "/metrics"), 60, "process 0's /metrics", first.log)
        assert up[0] == 200 and "audienceflow_events_in_total" in up[1]
        # Its peer is not started: the dataflow cannot run, and /ready says so.
        status, body = _get(ports[0], "/ready") or (0, "")
        assert (status, body.split(":")[0]) == (503, "starting"), (status, body)

        second = start(1)
        for i, worker in ((0, first), (1, second)):
            poll(
                lambda i=i: _get(ports[i], "/ready") == (200, "ready\n"),  # type: ignore[misc]
                90,
                f"process {i}'s /ready",
                worker.log,
            )
    finally:
        for worker in (first, second):
            if worker is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        codes = [w.wait(60) for w in (first, second) if w is not None]
    assert codes == [0, 0]
