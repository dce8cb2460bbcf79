"""A worker started before any traffic: its shards have seen no event yet.

Bytewax does not tell a stateful step its key, and a shard learnt its name from its
first event only: a data subject's request applied before any event gave one receipt
per shard all named shard "" with the same ``receipt_id``, so a consumer
de-duplicating on it (as the README says to) kept one receipt of several shards.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import servers
from workers import Worker, poll, write_config


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_request_before_any_event_gets_a_receipt_named_after_each_shard(
    kafka_broker: str, tmp_path: Path
) -> None:
    prefix = "quietstart"
    servers.create_topics(kafka_broker, [f"{prefix}.in"], partitions=1)  # never written
    cfg = write_config(
        tmp_path / "w.yaml",
        kafka={
            "brokers": kafka_broker,
            "input_topic": f"{prefix}.in",
            "control_topic": f"{prefix}.control",
            "topics": {k: f"{prefix}.{k}" for k in ("segment_changes", "actions", "sessions")}
            | {
                "dead_letters": f"{prefix}.dead",
                "identities": None,
                "control_receipts": f"{prefix}.receipts",
            },
            "partitions": 1,
        },
        state={"shards": 2},
        time={"idle_after": "1s", "allowed_lateness": "1s"},
    )
    worker = Worker(cfg, tmp_path / "worker.log")
    try:
        # An hour old: stream time (the wall clock, all partitions idle) has passed it.
        stamp = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
        request = {"type": "delete", "id": "u1", "requestId": "r-quiet", "timestamp": stamp}
        servers.produce_lines(kafka_broker, f"{prefix}.control", [orjson.dumps(request)])
        receipts = poll(
            lambda: _receipts(kafka_broker, f"{prefix}.receipts"),
            90,
            "two receipts",
            worker.log,
        )
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert sorted(r["shard"] for r in receipts) == ["shard-000", "shard-001"]
    assert len({r["receipt_id"] for r in receipts}) == 2
    assert {r["status"] for r in receipts} == {"not_found"}


def _receipts(bootstrap: str, topic: str) -> list[dict[str, object]] | None:
    try:
        found = servers.consume_all(bootstrap, topic, timeout=2)
    except TimeoutError:  # not created yet, or a partition not at its end
        return None
    rows = [orjson.loads(v) for _, v, _ in found if v is not None]
    return rows if len(rows) >= 2 else None
