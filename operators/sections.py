"""Typed settings of the sections others read: models, kafka, redis, recovery, metrics.

They are built by the one reader at load (``Settings.load``), so ``check-config``
rejects a bad value here exactly as ``run`` or ``replay`` would. Defaults live
in ``flows/default_config.yaml`` only.

>>> from audienceflow.operators.settings import Settings
>>> s = Settings.load(environ={"AUDIENCEFLOW_KAFKA__BROKERS": "[a:1, b:2]"})
>>> s.kafka.brokers, s.redis.ttl, s.models.k
('a:1,b:2', 2592000.0, 4)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audienceflow.operators.config import Reader
from audienceflow.operators.reco_settings import RecoSettings, read_recommendations

# The user-vector features of the clustering model (models/vectors.py USER_LABELS; a test
# keeps the two equal), the names ``models.clustering.weights`` may weigh.
USER_FEATURES = (
    "sessions_7d",
    "sessions_30d",
    "recency_hours",
    "events_per_session",
    "engaged_minutes",
    "cart_adds",
    "conversion_rate",
    "video_completions",
    "open_cart",
)
# DBSTREAM's parameters, with defaults suited to standardised user vectors.
DBSTREAM_DEFAULTS = {
    "clustering_threshold": 2.5,
    "fading_factor": 0.01,
    "cleanup_interval": 10.0,
    "intersection_factor": 0.3,
    "minimum_weight": 2.0,
}
MODEL_KEYS = ("enabled", "epoch", "clustering", "intent", "drift", "evaluation", "recommendations")
_MODEL_PARTS = {
    "clustering": (
        "algorithm",
        "k",
        "seed",
        "halflife",
        "warmup",
        "categories",
        "dbstream",
        "weights",
    ),
    "intent": ("model", "seed", "learning_rate", "quick_view_gap", "max_channels"),
    "drift": ("detector", "delta", "threshold"),
    "evaluation": ("truth",),
}
TOPIC_KEYS = (
    "segment_changes",
    "actions",
    "sessions",
    "dead_letters",
    "drift",
    "exposures",
    "identities",
    "control_receipts",
)
KAFKA_KEYS = (
    "brokers",
    "input_topic",
    "control_topic",
    "topics",
    "tail",
    "batch_size",
    "startup_timeout",
    "partition_check",
    "partitions",
    "replication_factor",
    "add_config",
)
REDIS_KEYS = ("url", "key_prefix", "ttl")
RECOVERY_KEYS = ("dir", "snapshot_interval", "backup_interval", "partitions")
METRICS_KEYS = ("host", "port")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_BROKER = re.compile(r"^[^\s:,]+:\d{1,5}$")
_SECRET = re.compile(r"(://[^/@:]*:)[^/@]*@")  # the password of a URL, never shown
_HOST = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Hyper-parameters of the online models (``models:``)."""

    enabled: bool
    epoch: float
    algorithm: str
    k: int
    seed: int
    halflife: float
    warmup: int
    categories: tuple[str, ...]
    dbstream: dict[str, float]
    weights: dict[str, float]
    intent_model: str
    intent_seed: int
    learning_rate: float
    quick_view_gap: float
    max_channels: int
    detector: str
    delta: float
    threshold: float
    truth: str | None
    recommendations: RecoSettings = field(default_factory=RecoSettings)  # models/reco.py


@dataclass(frozen=True, slots=True)
class KafkaTopics:
    """Output topic names (``kafka.topics``); all but the first four are optional.

    ``identities``: identity merges and refused merges; ``control_receipts``: the
    receipts of data subjects' requests (None: not published, only counted).
    """

    segment_changes: str
    actions: str
    sessions: str
    dead_letters: str
    drift: str | None = None
    exposures: str | None = None
    identities: str | None = None
    control_receipts: str | None = None

    def names(self) -> list[str]:
        every = (
            self.segment_changes,
            self.actions,
            self.sessions,
            self.dead_letters,
            self.drift,
            self.exposures,
            self.identities,
            self.control_receipts,
        )
        return [t for t in every if t]


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """The worker's Kafka connection and topics (``kafka:``).

    ``control_topic``: data subjects' requests (``operators/control.py``), read beside
    the input topic; None reads none.
    """

    brokers: str
    input_topic: str
    topics: KafkaTopics
    tail: bool
    batch_size: int
    startup_timeout: float
    partitions: int
    replication_factor: int
    add_config: dict[str, Any]
    control_topic: str | None = None
    # How often a tailing worker asks the broker whether its topics gained partitions
    # (0: never); see ``flows/kafka_io.PartitionWatch``.
    partition_check: float = 30.0


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where live profiles go (``redis:``); ``url`` None writes none."""

    url: str | None
    key_prefix: str
    ttl: float


@dataclass(frozen=True, slots=True)
class RecoverySettings:
    """Bytewax recovery (``recovery:``); ``dir`` None turns it off."""

    dir: str | None
    snapshot_interval: float
    backup_interval: float
    partitions: int


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The Prometheus endpoint (``metrics:``); ``port`` None serves none."""

    host: str
    port: int | None


def read_models(r: Reader) -> ModelSettings:
    """The ``models:`` section, every key checked."""
    r.mapping("models", known=MODEL_KEYS)
    for part, keys in _MODEL_PARTS.items():
        r.mapping("models", part, known=keys)
    c = ("models", "clustering")
    db = r.mapping(*c, "dbstream", known=DBSTREAM_DEFAULTS, what="DBSTREAM parameter")
    for key in db:
        r.number(*c, "dbstream", key, positive=True)
    cats = r.strings(*c, "categories", what="category names")
    if len(cats) > 32:
        raise r.error((*c, "categories"), f"at most 32 categories; got {len(cats)} of them")
    known = (*USER_FEATURES, *(f"affinity_{cat}" for cat in cats))
    weights = r.mapping(*c, "weights", known=known, what="feature")
    for key in weights:
        r.number(*c, "weights", key, positive=True)
    i, d = ("models", "intent"), ("models", "drift")
    return ModelSettings(
        enabled=r.boolean("models", "enabled"),
        epoch=r.duration("models", "epoch", minimum=1.0),
        algorithm=r.choice(*c, "algorithm", allowed=("kmeans", "dbstream")),
        k=r.integer(*c, "k", minimum=2),
        seed=r.integer(*c, "seed"),
        halflife=r.number(*c, "halflife", positive=True, maximum=1.0),
        warmup=r.integer(*c, "warmup"),
        categories=tuple(dict.fromkeys(cats)),
        dbstream={**DBSTREAM_DEFAULTS, **{k: float(v) for k, v in sorted(db.items())}},
        weights={k: float(v) for k, v in sorted(weights.items())},
        intent_model=r.choice(*i, "model", allowed=("logistic", "tree")),
        intent_seed=r.integer(*i, "seed"),
        learning_rate=r.number(*i, "learning_rate", positive=True),
        quick_view_gap=r.duration(*i, "quick_view_gap"),
        max_channels=r.integer(*i, "max_channels"),
        detector=r.choice(*d, "detector", allowed=("adwin", "page_hinkley")),
        delta=r.number(*d, "delta", positive=True),
        threshold=r.number(*d, "threshold", positive=True),
        truth=_truth_file(r),
        recommendations=read_recommendations(r),
    )


def _truth_file(r: Reader) -> str | None:
    """``models.evaluation.truth``, found at load: a missing file is a config error before
    the run, not after it. A relative path is read from the working directory, else from
    beside the config file that names it (so a config works from any directory)."""
    path = r.string("models", "evaluation", "truth", optional=True)
    if path is None or Path(path).is_file():
        return path
    key = ("models", "evaluation", "truth")
    origin = next((r.loc.files[key[:n]] for n in (3, 2, 1) if key[:n] in r.loc.files), "")
    beside = Path(origin).parent / path if origin and not origin.startswith("$") else None
    if beside is not None and not Path(path).is_absolute() and beside.is_file():
        return str(beside)
    where = f" or beside {origin}" if beside is not None else ""
    raise r.error(key, f"no such file in the working directory{where}")


def read_kafka(r: Reader) -> KafkaSettings:
    """The ``kafka:`` section, every key checked."""
    r.mapping("kafka", known=KAFKA_KEYS)
    topics = r.mapping("kafka", "topics", known=TOPIC_KEYS, what="output topic")
    return KafkaSettings(
        brokers=_brokers(r),
        input_topic=_topic(r, "kafka", "input_topic"),
        topics=KafkaTopics(
            segment_changes=_topic(r, "kafka", "topics", "segment_changes"),
            actions=_topic(r, "kafka", "topics", "actions"),
            sessions=_topic(r, "kafka", "topics", "sessions"),
            dead_letters=_topic(r, "kafka", "topics", "dead_letters"),
            drift=_optional_topic(r, topics, "drift"),
            exposures=_optional_topic(r, topics, "exposures"),
            identities=_optional_topic(r, topics, "identities"),
            control_receipts=_optional_topic(r, topics, "control_receipts"),
        ),
        tail=r.boolean("kafka", "tail"),
        batch_size=r.integer("kafka", "batch_size", minimum=1),
        startup_timeout=r.duration("kafka", "startup_timeout", minimum=0.1),
        partitions=r.integer("kafka", "partitions", minimum=1),
        replication_factor=r.integer("kafka", "replication_factor", minimum=1),
        add_config=_add_config(r),
        control_topic=_control_topic(r),
        partition_check=_partition_check(r),
    )


def _partition_check(r: Reader) -> float:
    """0 (never), or between a second and a day: a metadata request per check."""
    every = r.duration("kafka", "partition_check", maximum=86400.0)
    if 0 < every < 1:
        raise r.error(("kafka", "partition_check"), "must be 0s (never) or at least 1s")
    return every


# Consumer settings the worker's reading relies on, which ``add_config`` may only repeat:
# ``read_uncommitted`` would process the records of aborted transactions as events, and
# ``auto.offset.reset: latest`` (or ``error``) would skip, or stop at, what is left of a
# partition after retention passed a resume offset. Each with the spellings librdkafka
# reads as that value (``smallest`` and ``beginning`` are its older names for earliest).
_FIXED: dict[str, tuple[tuple[str, ...], str]] = {
    "isolation.level": (
        ("read_committed",),
        "records of aborted transactions would be processed as events",
    ),
    "auto.offset.reset": (
        ("earliest", "smallest", "beginning"),
        "a resume offset gone by retention must re-read what is left, not skip it",
    ),
}


def _add_config(r: Reader) -> dict[str, Any]:
    """librdkafka settings, passed on as they are; the fetch wait is also read by the
    worker (a control partition waits at least 500 ms), so it must be a number of ms;
    the settings of ``_FIXED`` may only be given their one value."""
    extra = {str(k): v for k, v in r.mapping("kafka", "add_config").items()}
    for key, (values, why) in _FIXED.items():
        given = extra.get(key)
        if given is not None and str(given).strip().lower() not in values:
            raise r.error(
                ("kafka", "add_config", key), f"must be {values[0]} (the worker's own): {why}"
            )
    wait = extra.get("fetch.wait.max.ms")
    if wait is not None and not (
        (type(wait) is int and wait >= 0)
        or (type(wait) is str and wait.isascii() and wait.isdigit())
    ):
        raise r.error(
            ("kafka", "add_config", "fetch.wait.max.ms"),
            "must be a whole number of milliseconds >= 0, e.g. 10",
        )
    return extra


def _control_topic(r: Reader) -> str | None:
    if not r.get("kafka", "control_topic"):
        return None
    topic = _topic(r, "kafka", "control_topic")
    if topic == r.get("kafka", "input_topic"):
        raise r.error(("kafka", "control_topic"), "must differ from kafka.input_topic")
    return topic


def _optional_topic(r: Reader, topics: dict[str, Any], name: str) -> str | None:
    return _topic(r, "kafka", "topics", name) if topics.get(name) else None


def _brokers(r: Reader) -> str:
    val = r.get("kafka", "brokers")
    if isinstance(val, list) and all(isinstance(v, str) for v in val):
        val = ",".join(val)
    if not isinstance(val, str) or not all(_BROKER.match(b.strip()) for b in val.split(",")):
        raise r.error(
            ("kafka", "brokers"), "must be 'host:port', or a list or comma-separated string of them"
        )
    return ",".join(b.strip() for b in val.split(","))


def _topic(r: Reader, *path: str) -> str:
    val = r.get(*path)
    if not isinstance(val, str) or not _TOPIC.match(val) or val in (".", ".."):
        raise r.error(path, "must be a Kafka topic name (letters, digits, '.', '_', '-')")
    return val


def read_redis(r: Reader) -> RedisSettings:
    """The ``redis:`` section, every key checked."""
    r.mapping("redis", known=REDIS_KEYS)
    url = r.get("redis", "url")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise r.error(
            ("redis", "url"),
            "must be a redis://, rediss:// or unix:// URL, or null",
            _SECRET.sub(r"\1***@", url) if isinstance(url, str) else url,
        )
    key_prefix = r.text("redis", "key_prefix")
    if not key_prefix.endswith(":"):
        # The lookup keys and id sets live at the prefix without its ':' plus '~id:' /
        # '~ids:'. Without a final ':' those keys start with the prefix, so an event's user
        # id such as '~ids:u1' would name another user's set as its profile hash: Redis
        # refuses the write (WRONGTYPE) and the worker stops, again at every restart.
        raise r.error(
            ("redis", "key_prefix"),
            "must end with ':' (a profile key is the prefix and the user id, and the "
            "lookup keys beside it must not be one)",
        )
    return RedisSettings(
        url=url,
        key_prefix=key_prefix,
        # At most 100 years: Redis refuses an expiry past ~9e15 s (SET ... EX), and the
        # worker stopped at its first write, at every restart (``redis_store._retry``).
        ttl=r.duration("redis", "ttl", minimum=1.0, maximum=36500 * 86400.0),
    )


def read_recovery(r: Reader) -> RecoverySettings:
    """The ``recovery:`` section, every key checked."""
    r.mapping("recovery", known=RECOVERY_KEYS)
    return RecoverySettings(
        dir=r.string("recovery", "dir", optional=True),
        snapshot_interval=r.duration("recovery", "snapshot_interval", minimum=0.05),
        backup_interval=r.duration("recovery", "backup_interval"),
        partitions=r.integer("recovery", "partitions", minimum=1),
    )


def read_metrics(r: Reader) -> MetricsSettings:
    """The ``metrics:`` section, every key checked."""
    r.mapping("metrics", known=METRICS_KEYS)
    host = r.text("metrics", "host")
    if not _HOST.match(host):
        raise r.error(("metrics", "host"), "must be a host name or IP address to listen on")
    port = r.get("metrics", "port")
    if port is not None:
        port = r.integer("metrics", "port", minimum=1, maximum=65535)
    return MetricsSettings(host=host, port=port)
