"""The worker's own settings (``kafka``, ``redis``, ``recovery``, ``metrics``), checked once.

``Settings`` keeps these sections as given; ``WorkerOptions.parse`` types and
checks them, naming the key and the reason of any rejected value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audienceflow.flows.worker_sink import Topics
from audienceflow.operators.config import ConfigError, parse_duration
from audienceflow.operators.settings import Settings

TOPIC_KEYS = ("segment_changes", "actions", "sessions", "dead_letters")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class WorkerOptions:
    """Typed ``kafka`` / ``redis`` / ``recovery`` / ``metrics`` sections."""

    brokers: str
    input_topic: str
    topics: Topics
    tail: bool = True
    batch_size: int = 1000
    startup_timeout: float = 10.0
    partitions: int = 4
    replication: int = 1
    kafka_extra: dict[str, Any] = field(default_factory=dict)
    redis_url: str | None = None
    redis_prefix: str = "af:profile:"
    redis_ttl: float = 30 * 86400.0
    recovery_dir: Path | None = None
    snapshot_interval: float = 30.0
    backup_interval: float = 0.0
    recovery_partitions: int = 8
    metrics_port: int | None = None

    @classmethod
    def parse(cls, settings: Settings, source: str = "config") -> WorkerOptions:
        c = _Check(source)
        k, r, rec, m = settings.kafka, settings.redis, settings.recovery, settings.metrics
        topics = k.get("topics") or {}
        if not isinstance(topics, dict):
            raise c.error(
                "kafka.topics",
                "must map segment_changes, actions, sessions, "
                "dead_letters (and optionally drift) to topic names",
                topics,
            )
        return cls(
            brokers=c.brokers(k.get("brokers")),
            input_topic=c.name("kafka.input_topic", k.get("input_topic")),
            topics=Topics(
                **{key: c.name(f"kafka.topics.{key}", topics.get(key)) for key in TOPIC_KEYS},
                drift=c.name("kafka.topics.drift", topics["drift"])
                if topics.get("drift")
                else None,
                exposures=c.name("kafka.topics.exposures", topics["exposures"])
                if topics.get("exposures")
                else None,
            ),
            tail=c.boolean("kafka.tail", k.get("tail", True)),
            batch_size=c.integer("kafka.batch_size", k.get("batch_size", 1000), 1),
            startup_timeout=c.duration(
                "kafka.startup_timeout", k.get("startup_timeout", "10s"), 0.1
            ),
            partitions=c.integer("kafka.partitions", k.get("partitions", 4), 1),
            replication=c.integer("kafka.replication_factor", k.get("replication_factor", 1), 1),
            kafka_extra=c.mapping("kafka.add_config", k.get("add_config")),
            redis_url=c.url(r.get("url")),
            redis_prefix=str(r.get("key_prefix") or "af:profile:"),
            redis_ttl=c.duration("redis.ttl", r.get("ttl", "30d"), 1.0),
            recovery_dir=Path(str(rec["dir"])) if rec.get("dir") else None,
            snapshot_interval=c.duration(
                "recovery.snapshot_interval", rec.get("snapshot_interval", "30s"), 0.05
            ),
            backup_interval=c.duration(
                "recovery.backup_interval", rec.get("backup_interval", "0s"), 0.0
            ),
            recovery_partitions=c.integer("recovery.partitions", rec.get("partitions", 8), 1),
            metrics_port=c.port(m.get("port")),
        )


class _Check:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, reason: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {reason}; got {value!r}")

    def brokers(self, value: Any) -> str:
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str) or not all(":" in b for b in value.split(",")):
            raise self.error(
                "kafka.brokers", "must be 'host:port', comma-separated for several", value
            )
        return value

    def name(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not _TOPIC.match(value):
            raise self.error(
                key, "must be a Kafka topic name (letters, digits, '.', '_', '-')", value
            )
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false", value)
        return value

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(key, f"must be a whole number >= {minimum}", value)
        return value

    def duration(self, key: str, value: Any, minimum: float) -> float:
        try:
            secs = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc), value) from None
        if secs < minimum:
            raise self.error(key, f"must be at least {minimum:g}s", value)
        return secs

    def mapping(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "must be a mapping of librdkafka properties", value)
        return {str(k): v for k, v in value.items()}

    def url(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
            raise self.error("redis.url", "must be a redis://, rediss:// or unix:// URL", value)
        return value

    def port(self, value: Any) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise self.error("metrics.port", "must be a TCP port (1-65535) or null", value)
        return value
