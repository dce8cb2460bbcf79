"""Prometheus metrics of a worker process, served on ``metrics.port``.

One registry per process (prometheus-client's global one, which also holds
Bytewax's Kafka gauges); every worker thread of the process counts into it.
Counters are per process: sum them over processes in Prometheus.

Counts follow the replay summary: ``events_in`` (messages read from the input
topic) + ``events_resumed_held`` (held in the snapshot this process resumed from)
= ``processed`` + ``dead_lettered`` + ``filtered`` once the worker has caught up
(an event a shard holds back in event-time order counts when applied).
Latency is measured per batch, to the moment its outputs were
acknowledged by Kafka and Redis: from its arrival at the ingest step (read
from Kafka), and from the Kafka timestamp of its first message (the producer's
clock with CreateTime topics: includes time waiting in Kafka, and any backlog).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)

from audienceflow.operators.records import CONTROL_TYPES, RECEIPT_STATUSES
from audienceflow.operators.validate import REASONS

disable_created_metrics()  # no *_created series: they double the output for nothing


class Children:
    """A labelled metric's children, looked up once per label values.

    ``metric.labels(...)`` checks and converts its values and takes a lock on every
    call (~1.3 µs); the sink counts every output record, so it keeps the children it
    has used. The label values of the metrics it is used for are bounded by the config
    (segments, actions, reasons), and so is this cache.
    """

    __slots__ = ("cache", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.cache.get(values)
        if child is None:
            child = self.cache[values] = self.metric.labels(*values)
        return child


EVENTS_IN = Counter("audienceflow_events_in", "Messages read from the input topic")
BLANK_IN = Counter(
    "audienceflow_blank_in",
    "Input messages without an event, counted apart as a replay counts blank lines: "
    "tombstones (no value) and blank values",
    ["kind"],
)
PROCESSED = Counter("audienceflow_events_processed", "Events applied to a user profile")
DEAD_LETTERED = Counter("audienceflow_dead_lettered", "Input lines dead-lettered", ["reason"])
FILTERED = Counter("audienceflow_filtered", "Valid events not processed", ["reason"])
SESSIONS = Counter("audienceflow_sessions", "Closed sessions written")
SEGMENT_CHANGES = Counter(
    "audienceflow_segment_changes",
    "Segment entries and exits written",
    ["segment", "change"],  # segment without its ':<category>' / ':<id>' suffix
)
ACTIONS = Counter("audienceflow_actions", "Trigger decisions", ["action", "status"])
DRIFT = Counter("audienceflow_drift", "Drift detections", ["signal"])
PROFILE_WRITES = Counter("audienceflow_profile_writes", "Profiles written to Redis")
REDIS_ERRORS = Counter(
    "audienceflow_redis_errors",
    "Failed Redis round trips (each retry counts), by error class",
    ["error"],
)
REDIS_REPUBLISHED = Counter(
    "audienceflow_redis_republished",
    "Profiles written again after Redis was found to have lost them (restarted empty)",
)
SHARDS_MISPLACED = Counter(
    "audienceflow_shards_misplaced",
    "Shards found in this process that the placement model puts on another (built here, "
    "or their profiles written here): its Redis writer keys stop vouching for its shards",
)
ROUTED_AWAY = Counter(
    "audienceflow_events_routed_away",
    "placement: partition: events read on one partition whose user's shard is another's "
    "(the producer keys by another id or partitioner): correct, but they cross workers",
    ["topic", "partition"],
)
CONTROL_IN = Counter("audienceflow_control_in", "Requests read from the control topic")
CONTROL_DEAD_LETTERED = Counter(
    "audienceflow_control_dead_lettered", "Control lines dead-lettered", ["reason"]
)
RECEIPTS = Counter(
    "audienceflow_control_receipts",
    "Receipts of data subjects' requests (one per request and shard)",
    ["type", "status"],
)
IDENTITY_CHANGES = Counter(
    "audienceflow_identity_changes",
    "Identity records written: merges, and refused merges by reason",
    ["type", "reason"],
)
OUTPUTS_TOO_LARGE = Counter(
    "audienceflow_outputs_too_large",
    "Output records larger than a Kafka message the producer sends: each published as a "
    "dead letter (reason oversize_output) holding its first 1 KB",
)
PROFILE_ERASURES = Counter(
    "audienceflow_profile_erasures", "Profiles deleted from Redis (merged away or erased)"
)
SNAPSHOT_TIME = Gauge(
    "audienceflow_last_snapshot_timestamp_seconds",
    "Wall time (epoch seconds) this process last took a recovery snapshot (input or shard); "
    "without recovery, last completed an epoch",
)
# Finer from 50 ms to 1 s, where a live worker's latency lies and an alert's threshold
# sits: ``histogram_quantile`` interpolates on a straight line within a bucket, so with no
# bound between 0.1 and 0.25 any p99 in there read as where the line put it.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5,
            0.75, 1.0, 2.5, 5.0, 10.0, 30.0)  # fmt: skip
LATENCY = Histogram(
    "audienceflow_end_to_end_latency_seconds",
    "Per input batch: from its arrival at the ingest step to the acknowledgement of the "
    "outputs of its last event (applied once stream time passes it): its slowest event's",
    buckets=_BUCKETS,
)
KAFKA_LATENCY = Histogram(
    "audienceflow_kafka_to_output_latency_seconds",
    "Per input batch: from the Kafka timestamp of its first message to the acknowledgement "
    "of the outputs of its last event: an upper bound of each of its events' latency",
    buckets=_BUCKETS,
)
FLUSH_WAIT = Histogram(
    "audienceflow_output_flush_seconds",
    "Per epoch (snapshot interval) and worker: how long the worker waited at its end for Kafka "
    "to acknowledge the epoch's records (its dataflow processes nothing meanwhile)",
    buckets=_BUCKETS,
)
SKIPPED_OFFSETS = Counter(
    "audienceflow_input_skipped_offsets",
    "Offsets of an input partition the broker did not deliver between two it did, or "
    "after a resume offset: transaction markers, aborted transactions' records, records "
    "compacted away, or removed by retention before they were read",
    ["topic", "partition"],
)
INPUT_LAG = Gauge(
    "audienceflow_input_lag", "Messages on the broker not yet read", ["topic", "partition"]
)
WATERMARK = Gauge(
    "audienceflow_watermark_seconds",
    "An input partition's watermark: no later event of it is older (epoch seconds)",
    ["topic", "partition"],
)
WATERMARK_SPREAD = Gauge(
    "audienceflow_watermark_spread_seconds",
    "Event time between the most and least advanced active input partitions of this process",
    ["topic"],
)
BUFFERED = Gauge(
    "audienceflow_buffered_events",
    "Events a shard holds back until stream time passes them (event-time order)",
    ["shard"],
)
RESUMED_HELD = Counter(
    "audienceflow_events_resumed_held",
    "Events read before the snapshot this process resumed from and held in it: they count "
    "as processed, dead-lettered or filtered when applied, never as read again",
)
STREAM_TIME = Gauge(
    "audienceflow_stream_time_seconds", "A shard's stream time (epoch seconds)", ["shard"]
)
DUE_DELAY = Histogram(
    "audienceflow_deadline_publish_delay_seconds",
    "From the event time a deadline was due (session close, segment exit, timer action) "
    "to its outputs being acknowledged (wall clock)",
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
)
USERS = Gauge("audienceflow_users", "Users held in state", ["shard"])
AMOUNTS_BY_CURRENCY = Gauge(
    "audienceflow_amounts_by_currency",
    "With money.currency unset: a shard's orders and cart events (kind) whose amounts were "
    "summed as sent, by the currency they name (ISO codes, at most 16 a shard, the rest "
    "'other'). Two currencies or more: its sums mix them; set money.currency and money.rates",
    ["shard", "currency", "kind"],
)
MODEL = Gauge(
    "audienceflow_model", "Numbers the shard's model replica reports", ["shard", "metric"]
)

EXPOSURES = Counter(
    "audienceflow_exposures", "Decisions of experimented triggers", ["experiment", "arm"]
)
EXPERIMENT = Gauge(
    "audienceflow_experiment",
    "A shard's latest material experiment reading: per arm exposed, converters, "
    "conversion_diff and its ci_low/ci_high against control (a bandit's: no ci, and its "
    "conversion_diff is biased by the adaptive allocation)",
    ["shard", "experiment", "arm", "metric"],
)


# Label values known before any event: the series alerts take rate()/increase() of.
CONTROL_DEAD_LETTER_REASONS = ("bad_control", "future_event")
INPUT_DEAD_LETTER_REASONS = (*REASONS, "late_event", "future_event", "unprocessable")
FILTER_REASONS = ("duplicate", "consent_withheld", "suppressed")
BLANK_KINDS = ("tombstone", "blank")
REDIS_ERROR_CLASSES = ("ConnectionError", "TimeoutError")  # the ones retried


def initialise(*, drift_signals: Iterable[str], redis: bool) -> None:
    """Expose the known label values of the counters alerts watch, at 0, from the start.

    A labelled series otherwise appears at its first increment already at 1, and
    Prometheus' ``rate()``/``increase()`` see no increase in a series' first sample:
    the first rejected deletion request (a critical alert) or the first drift of a
    process would never fire.
    """
    for reason in INPUT_DEAD_LETTER_REASONS:
        DEAD_LETTERED.labels(reason)
    for reason in CONTROL_DEAD_LETTER_REASONS:
        CONTROL_DEAD_LETTERED.labels(reason)
    for reason in FILTER_REASONS:
        FILTERED.labels(reason)
    # An auditor's dashboard reads erasures done per period: increase() of a series born
    # at its first receipt would miss that receipt.
    for kind in CONTROL_TYPES:
        for status in RECEIPT_STATUSES:
            RECEIPTS.labels(kind, status)
    for kind in BLANK_KINDS:
        BLANK_IN.labels(kind)
    for signal in drift_signals:
        DRIFT.labels(signal)
    if redis:
        for error in REDIS_ERROR_CLASSES:
            REDIS_ERRORS.labels(error)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold the process at exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape on stderr."""


def serve(
    port: int, host: str = "127.0.0.1", ready: Callable[[], str | None] | None = None
) -> None:
    """Serve ``/metrics`` and ``/ready`` on ``host`` (loopback unless told), on a thread.

    ``/ready`` answers 200 ``ready`` while ``ready()`` returns None, else 503 and the
    reason it returns (a readiness probe); every other path is the Prometheus text.
    Raises OSError if it cannot listen.
    """
    scrape = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/ready":
            return list(scrape(environ, start_response))
        reason = ready() if ready is not None else None
        body = f"{reason or 'ready'}\n".encode()
        status = "200 OK" if reason is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server = type("_MetricsServer", (_Server,), {"address_family": family})
    httpd = make_server(host, port, app, server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, name="audienceflow-metrics", daemon=True).start()


def model_numbers(report: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Flatten a model report to ``("intent.roc_auc", 0.75)`` pairs (numbers only)."""
    for key, value in report.items():
        if key.startswith("_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, int | float):  # bools too
            yield name, float(value)
        elif isinstance(value, dict):
            yield from model_numbers(value, name + ".")


def total(counter: Counter) -> float:
    """A counter's value summed over all its label values (for the closing log line)."""
    found = 0.0
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                found += sample.value
    return found
