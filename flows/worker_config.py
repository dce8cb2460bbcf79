"""The worker's view of the ``kafka``, ``redis``, ``recovery`` and ``metrics`` settings.

Every value is typed and checked once by ``Settings.load`` (``settings.kafka``,
``settings.redis``, ...); ``WorkerOptions.of(settings)`` only lays them out as
the worker reads them and checks nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audienceflow.flows.worker_sink import Topics
from audienceflow.operators.settings import Settings


@dataclass(frozen=True)
class WorkerOptions:
    """What the worker needs of ``settings.kafka`` / ``.redis`` / ``.recovery`` / ``.metrics``."""

    brokers: str
    input_topic: str
    topics: Topics
    tail: bool
    batch_size: int
    startup_timeout: float
    partitions: int
    replication: int
    redis_prefix: str
    redis_ttl: float
    snapshot_interval: float
    backup_interval: float
    recovery_partitions: int
    metrics_host: str
    kafka_extra: dict[str, Any] = field(default_factory=dict)
    redis_url: str | None = None
    recovery_dir: Path | None = None
    metrics_port: int | None = None
    control_topic: str | None = None  # data subjects' requests; None reads none
    partition_check: float = 0.0  # s between checks for partitions added to the topics; 0 none

    @classmethod
    def of(cls, settings: Settings) -> WorkerOptions:
        k, r, rec, m = settings.kafka, settings.redis, settings.recovery, settings.metrics
        return cls(
            brokers=k.brokers,
            input_topic=k.input_topic,
            control_topic=k.control_topic,
            topics=k.topics,
            tail=k.tail,
            batch_size=k.batch_size,
            startup_timeout=k.startup_timeout,
            partition_check=k.partition_check,
            partitions=k.partitions,
            replication=k.replication_factor,
            kafka_extra=dict(k.add_config),
            redis_url=r.url,
            redis_prefix=r.key_prefix,
            redis_ttl=r.ttl,
            recovery_dir=Path(rec.dir) if rec.dir else None,
            snapshot_interval=rec.snapshot_interval,
            backup_interval=rec.backup_interval,
            recovery_partitions=rec.partitions,
            metrics_host=m.host,
            metrics_port=m.port,
        )
