"""The long-running worker: the shared dataflow between Kafka topics, Redis and recovery.

``run(settings, options, ...)`` is what ``audienceflow run`` does:

1. checks the broker (and Redis, if ``redis.url`` is set), that the input topic
   exists, and creates the missing control and output topics: an unreachable server
   is an error naming it, a missing input topic a config error naming it, before
   anything runs;
2. prepares the recovery directory (creates its partitions when empty, for a
   single process) and serves Prometheus metrics;
3. runs the dataflow as one process of a cluster (``--process-id``, ``--addresses``)
   with ``--workers`` threads, until the input ends (``kafka.tail: false``) or a
   SIGTERM/SIGINT: the first stops reading, lets the dataflow drain, flushes the
   outputs and takes a last snapshot; a second aborts at once.

With ``kafka.tail: false`` the topic is processed like a recorded stream
(stream time only; its end closes sessions and fires timers), so the outputs
equal a replay of the same lines. Tailing, stream time falls back on the wall
clock when every input partition is idle (``time.idle_after``).
"""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import sqlite3
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka import KafkaException

from audienceflow.flows import metrics
from audienceflow.flows.dataflow import RepublishRequests, build_flow
from audienceflow.flows.kafka_io import (
    InputBehindPosition,
    KafkaInput,
    check_broker,
    ensure_topics,
    error_text,
    input_partitions,
    missing_input,
    part_names,
    topic_limits,
)
from audienceflow.flows.placement import held_names, held_shards, place
from audienceflow.flows.recovery_scrub import ScrubProcess
from audienceflow.flows.redact import redact
from audienceflow.flows.redis_store import ProfileStore, RedisAbandoned
from audienceflow.flows.replay import models_factory
from audienceflow.flows.snapshots import KEY_ENV, SnapshotRefused, configured_key
from audienceflow.flows.worker_config import WorkerOptions
from audienceflow.flows.worker_sink import WorkerSink
from audienceflow.models.hook import SIGNALS
from audienceflow.operators import native
from audienceflow.operators.config import ConfigError
from audienceflow.operators.settings import Settings

log = logging.getLogger("audienceflow.worker")

# How the start-up line names the engine's build (``operators.native.verdict``).
BUILDS = {
    "absent": "pure Python",
    "pure": "pure Python (AUDIENCEFLOW_PURE set)",
    "compiled": "compiled (make fast)",
    "stale": "pure Python (the compiled build is stale: see the warning above)",
}
STATS_EVERY_S = 10.0  # how often each shard reports users and model numbers to the metrics


# Live collector (``latency_gc``): a young collection every this many net allocations,
# and a full one once the objects set aside have grown this many times since the last.
YOUNG_LIVE = 20_000
FULL_GROWTH = 4


class _LatencyGC:
    """A garbage-collector policy for the tailing worker: short pauses, not few of them.

    ``tune_gc`` (the replay's) lets the youngest generation grow to as many objects as
    are tracked, so one collection scans the whole of a growing heap: measured in the
    live bench, a pause of 30 to 120 ms every few seconds with nothing to collect, which a
    20k events/s stream waits out (the pause, then the backlog it leaves). Here a young
    collection comes every ``YOUNG_LIVE`` allocations (a few ms) and its survivors are
    set aside (``gc.freeze``): per-user state is long-lived and holds no reference
    cycles, so scanning it again would find nothing; refcounting still frees it when it
    goes. What a set-aside object could leak is a reference cycle it joins later: once
    the set-aside objects have grown ``FULL_GROWTH``-fold, they are handed back to the
    collector and the next full collection scans them once (one long pause per
    ``FULL_GROWTH``-fold growth of the heap; CPython's own rule is every 25 %).
    """

    def __init__(self) -> None:
        # ``gc.get_freeze_count()`` walks the whole list it counts: called once per
        # collection it would cost what the policy saves. The survivors are counted
        # instead (they are the only objects outside the set-aside ones).
        self.frozen = gc.get_freeze_count()
        self.base = max(self.frozen, YOUNG_LIVE)
        self.handed_back = False  # until the next full collection has scanned them
        self.full = 0  # full collections of the handed-back objects (for tests)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop":
            return
        if self.handed_back:
            if info.get("generation") != 2:
                return  # young collections go on; the old objects wait in the oldest
            self.handed_back = False
            self.full += 1
            gc.freeze()
            self.frozen = self.base = max(gc.get_freeze_count(), YOUNG_LIVE)  # once per full
            return
        survivors = len(gc.get_objects(min(info.get("generation", 0) + 1, 2)))
        self.frozen += survivors  # an upper bound: refcounting frees set-aside objects too
        if self.frozen >= FULL_GROWTH * self.base:
            self.frozen = gc.get_freeze_count()  # the true count, when the bound says so
            if self.frozen >= FULL_GROWTH * self.base:
                gc.unfreeze()  # into the oldest generation
                self.handed_back = True
                return
        gc.freeze()


def latency_gc() -> _LatencyGC:
    """Install ``_LatencyGC`` in place of the replay's ``tune_gc`` policy."""
    from audienceflow.flows import _young_as_tracked

    gc.callbacks[:] = [
        c for c in gc.callbacks if c is not _young_as_tracked and not isinstance(c, _LatencyGC)
    ]
    gc.collect()
    gc.freeze()
    policy = _LatencyGC()
    gc.callbacks.append(policy)
    gc.set_threshold(YOUNG_LIVE, 10, 10)
    return policy


class StartupError(RuntimeError):
    """Something the worker needs is unreachable or unusable; the message says what and where."""


class InputChanged(StartupError):
    """A running worker stopped: its topics gained partitions it does not read (exit 3)."""


class PeerLost(RuntimeError):
    """Another process of the cluster went away (killed, crashed): this one cannot go on."""


def worker_flow(
    settings: Settings,
    opts: WorkerOptions,
    stop: threading.Event,
    started: threading.Event | None = None,
    scrubber: ScrubProcess | None = None,
    workers: int = 1,
    sources: list[KafkaInput] | None = None,
    local: range | None = None,
) -> Dataflow:
    """The shared dataflow with the Kafka source and the worker sink; ``started`` is set
    once the dataflow runs (the cluster connected); ``scrubber`` hears of each deletion;
    ``workers``: in the whole cluster, ``local`` those of this process (all by default);
    ``sources`` gets the Kafka source (its partition watch tells why the dataflow stopped)."""
    names = input_partitions(opts.brokers, opts.input_topic, opts.kafka_extra, opts.control_topic)
    parts = part_names(names, opts.input_topic)
    # state.placement: partition: Kafka partition p is shard p (flows/placement.py).
    settings = place(settings, parts, [p for p in parts if ":" not in p])
    source = KafkaInput(
        opts.brokers,
        opts.input_topic,
        settings,
        tail=opts.tail,
        batch_size=opts.batch_size,
        extra=opts.kafka_extra,
        stop=stop,
        control_topic=opts.control_topic,
        started=started,
        partition_check=opts.partition_check,
        listed=names,
    )
    if sources is not None:
        sources.append(source)
    # The store sees the stop flag: stopping while Redis is away must not retry forever.
    redis = (opts.redis_url, opts.redis_prefix, opts.redis_ttl, stop) if opts.redis_url else None
    # A store that finds Redis emptied has this process's shards write what they hold.
    # So many shards of this process (``local``: its workers) all write before it is done.
    # Its writers' keys say "done" for these shards, under this shard layout (redis_store).
    held = held_shards(settings, workers, local if local is not None else range(workers))
    shards = held.mask.bit_count()
    republish = (
        RepublishRequests(opts.redis_ttl, shards, names=held_names(settings, held))
        if redis is not None
        else None
    )
    deleted = scrubber.deleted if scrubber is not None else None
    # The topics' own size limits: a record over one is dead-lettered before it is sent,
    # not refused by the broker (which stopped the worker at every restart).
    # With the topics' compression.type: the broker checks a compressed batch's size.
    compression: dict[str, str] = {}
    limits = topic_limits(
        opts.brokers, opts.kafka_extra, opts.topics.names(), compression=compression
    )
    sink = WorkerSink(
        opts.brokers,
        opts.topics,
        opts.kafka_extra,
        redis,
        deleted,
        workers=workers,
        sources=parts,
        limits=limits,
        compression=compression,
        republish=republish,
        held=held,
    )

    def attach(prefix: str, stream: Stream[Any]) -> None:
        op.output(f"{prefix}_kafka_redis", stream, sink)

    return build_flow(
        settings,
        source,
        attach,
        replay=not opts.tail,
        partitions=names,
        models_factory=models_factory(settings),
        emit_profiles=redis is not None,
        copy_snapshots=opts.recovery_dir is not None,
        stopping=stop.is_set,
        stamped=True,
        stats_every=STATS_EVERY_S,
        republish=republish,
        # The control topic's partitions (``part_names`` keeps their ``topic:partition``).
        controls=tuple(n for n, p in zip(names, parts, strict=True) if ":" in p),
    )


def preflight(opts: WorkerOptions) -> None:
    """Reach the broker and Redis, then check the input topic and create missing output
    and control topics; raise ``StartupError`` (a server), ``ConfigError`` (the input
    topic is missing). Servers first: an unreachable one is named whatever else is wrong."""
    try:
        admin = check_broker(opts.brokers, opts.kafka_extra, opts.startup_timeout)
    except RuntimeError as exc:
        raise StartupError(str(exc)) from None
    if opts.redis_url:
        store = ProfileStore(opts.redis_url, opts.redis_prefix, opts.redis_ttl)
        try:
            store.check()
        except RuntimeError as exc:
            raise StartupError(str(exc)) from None
        finally:
            store.close()
    try:
        if missing_input(admin, opts.input_topic, opts.startup_timeout):
            raise ConfigError(
                f"kafka.input_topic: topic {opts.input_topic!r} does not exist on the broker "
                f"at {opts.brokers}; the worker reads it and does not create it: correct the "
                "name, or create the topic (with the partition count the producers key by)"
            )
        wanted = [*filter(None, [opts.control_topic]), *opts.topics.names()]
        created = ensure_topics(admin, opts.brokers, wanted, opts.partitions, opts.replication)
    except KafkaException as exc:  # the broker went away between the checks
        raise StartupError(f"Kafka at {opts.brokers}: {error_text(exc)}") from None
    except RuntimeError as exc:
        raise StartupError(str(exc)) from None
    for topic in created:
        log.info(
            "created missing topic %r on %s (%d partitions, replication %d)",
            topic,
            opts.brokers,
            opts.partitions,
            opts.replication,
        )


def prepare_recovery(opts: WorkerOptions, single_process: bool) -> RecoveryConfig | None:
    """The recovery config; a single process initialises an empty directory."""
    if opts.recovery_dir is None:
        return None
    d = opts.recovery_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"recovery.dir {str(d)!r} cannot be created: {exc.strerror}") from None
    if not any(d.glob("part-*.sqlite3")):
        if single_process:
            init_db_dir(d, opts.recovery_partitions)
            log.info("created %d recovery partitions in %s", opts.recovery_partitions, d)
        else:
            # In a cluster the partitions are spread over the processes' directories
            # (deploy/README.md); creating a full set here would duplicate them.
            log.warning(
                "recovery dir %s holds no partitions: the other processes must hold "
                "them all (create them with `python -m bytewax.recovery DIR N`)",
                d,
            )
    return RecoveryConfig(str(d), timedelta(seconds=opts.backup_interval))


def compact_recovery(d: Path) -> None:
    """Rewrite each recovery partition without its free space (SQLite ``VACUUM``).

    Bytewax deletes superseded snapshots, but SQLite keeps their bytes in free and
    unallocated page space until something overwrites them: a person deleted by a
    request would stay readable in the file. Run once the dataflow has ended.
    """
    for part in sorted(d.glob("part-*.sqlite3")):
        try:
            db = sqlite3.connect(part, timeout=5)
            try:
                db.execute("VACUUM")
            finally:
                db.close()
        except sqlite3.Error as exc:  # e.g. still open in another process of the cluster
            log.warning("recovery partition %s not compacted: %s", part.name, exc)


def install_signals(stop: threading.Event, started: threading.Event) -> None:
    """First SIGTERM/SIGINT: drain and stop (before the dataflow has ``started``: exit 0
    at once, nothing was read); second: exit 130 at once.

    A thread of its own handles them, woken through ``signal.set_wakeup_fd`` (which
    the C-level handler writes to, whichever thread the signal lands on): Python runs a
    handler only on the main thread, between bytecodes, and the main thread can stay in
    Bytewax's Rust code for good (a process of a cluster waiting for the others to
    connect), where a SIGTERM was never handled and only a SIGKILL ended the process.
    An exception raised in a handler would surface inside Bytewax (a traceback and
    exit 1, or a lost signal); the abort is ``os._exit`` instead: nothing after the
    last snapshot is kept, which is what resuming from it expects.
    """

    def leave(code: int) -> None:
        for stream in (sys.stderr, sys.stdout):
            stream.flush()
        os._exit(code)

    def handle(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second %s: aborting; state resumes from the last snapshot", name)
            leave(130)
        stop.set()
        if not started.is_set():
            log.info("%s received before the dataflow started (nothing read yet): exiting", name)
            leave(0)
        log.info("%s received: stopping input, flushing outputs, taking a last snapshot", name)

    read, write = os.pipe()
    os.set_blocking(write, False)  # as set_wakeup_fd requires

    def wait() -> None:
        while True:
            for signum in os.read(read, 64):
                if signum in (signal.SIGTERM, signal.SIGINT):
                    handle(signum)

    threading.Thread(target=wait, name="audienceflow-signals", daemon=True).start()
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _noted)  # a Python handler: the C one writes the wakeup fd


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler of SIGTERM/SIGINT: the wakeup fd's thread acts on them."""


def run(
    settings: Settings,
    opts: WorkerOptions,
    *,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    workers: int = 1,
    progress_every: float = 30.0,
) -> None:
    """Run this process of the worker cluster until the input ends or it is stopped.

    ``progress_every`` (seconds; 0: never): how often a progress line is logged.
    """
    stop, started = threading.Event(), threading.Event()
    install_signals(stop, started)  # first: a signal during the checks exits at once
    processes = len(addresses) if addresses else 1
    if addresses and (process_id is None or not 0 <= process_id < processes):
        raise StartupError(
            f"--process-id must be 0..{processes - 1} for {processes} addresses; got {process_id}"
        )
    total = processes * workers
    if settings.placement == "shared" and settings.shards < total:
        log.warning(
            "state.shards is %d but the cluster has %d workers: %d of them will hold "
            "no keyed state; set state.shards >= %d",
            settings.shards,
            total,
            total - settings.shards,
            total,
        )
    preflight(opts)
    if opts.tail:
        latency_gc()
    recovery = prepare_recovery(opts, single_process=processes == 1)
    if recovery is not None and configured_key() is None:
        log.warning(
            "recovery snapshots are not authenticated: anyone who can write %s can run code "
            "in this worker on resume; set $%s to a secret (32+ random bytes) to sign them",
            opts.recovery_dir,
            KEY_ENV,
        )
    metrics.initialise(
        drift_signals=SIGNALS if settings.models.enabled else (),
        redis=opts.redis_url is not None,
    )
    if opts.metrics_port is not None:
        host = metrics_host(settings, opts)
        try:
            metrics.serve(opts.metrics_port, host, ready=lambda: not_ready(stop, started))
        except OSError as exc:
            raise StartupError(
                f"metrics {host}:{opts.metrics_port}: cannot listen: {exc.strerror}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", host, opts.metrics_port)
    if progress_every > 0:
        from audienceflow.flows.progress import Progress

        Progress(progress_every, stop).start()
    scrubber = None
    if recovery is not None and opts.recovery_dir is not None:
        scrubber = ScrubProcess(opts.recovery_dir, opts.snapshot_interval, opts.backup_interval)
    sources: list[KafkaInput] = []
    # This process's workers, as Bytewax numbers them: process p's are p * workers onwards.
    first = (process_id or 0) * workers if addresses else 0
    flow = worker_flow(
        settings,
        opts,
        stop,
        started,
        scrubber,
        workers=total,
        sources=sources,
        local=range(first, first + workers),
    )
    log.info(
        "process %d of %d, %d worker(s): %s → %s; %s%s; engine: %s",
        process_id or 0,
        processes,
        workers,
        opts.input_topic + (f" (control: {opts.control_topic})" if opts.control_topic else ""),
        ", ".join(opts.topics.names()),
        "tailing" if opts.tail else "until the end of the topic",
        f"; recovery in {opts.recovery_dir} every {opts.snapshot_interval:g}s" if recovery else "",
        BUILDS[native.verdict()],
    )
    if scrubber is not None:
        scrubber.start()
    try:
        cli_main(
            flow,
            workers_per_process=workers,
            process_id=process_id if addresses else None,
            addresses=addresses or None,
            epoch_interval=timedelta(seconds=opts.snapshot_interval),
            recovery_config=recovery,
        )
    except BaseException as exc:
        # This process's watch saw partitions it does not read: its input stopped, and in
        # a cluster its own network threads panic next (read as a lost peer below).
        watch = sources[0].watch if sources else None
        if watch is not None and watch.grew is not None:
            raise InputChanged(redact(watch.grew)) from None
        # A peer's death reaches the others as a panic of timely's network threads
        # ("Send thread panic", "Recv thread panic": they panic only when a connection
        # fails), a BaseException that would print as a bare traceback.
        lost = any(f"{t} thread panic" in str(exc) for t in ("Send", "Recv"))
        if processes > 1 and lost and not isinstance(exc, Exception):
            raise PeerLost(
                f"process {process_id} lost its connection to another process of the "
                f"cluster ({exc}): one stopped or died; start every process again, each "
                "resumes from the last snapshot the cluster completed"
            ) from None
        if not isinstance(exc, Exception):
            raise
        refused = _in_chain(exc, SnapshotRefused) or control_topic_moved(exc, opts.control_topic)
        if refused:
            raise StartupError(f"recovery dir {opts.recovery_dir}: {refused}") from None
        behind = _in_chain(exc, InputBehindPosition)
        if behind:
            raise StartupError(behind) from None
        abandoned = _in_chain(exc, RedisAbandoned)
        if not (stop.is_set() and abandoned):
            raise
        log.warning("stopped without a last snapshot: %s", abandoned)
    finally:
        if scrubber is not None:
            scrubber.close()  # before the compaction, which needs the partitions alone
    if opts.recovery_dir is not None:
        compact_recovery(opts.recovery_dir)
    how = "stopped" if stop.is_set() else "input finished"
    # Held: read, not yet applied (waiting for stream time to pass them); kept in the last
    # snapshot, applied after a restart, where they count as processed without being read
    # again (resumed holding). Without both the counts did not add up.
    held = sum(s.value for m in metrics.BUFFERED.collect() for s in m.samples)
    log.info(
        "%s: events in %d, processed %d, dead-lettered %d, filtered %d, held %d, "
        "resumed holding %d (this process)",
        how,
        metrics.total(metrics.EVENTS_IN),
        metrics.total(metrics.PROCESSED),
        metrics.total(metrics.DEAD_LETTERED),
        metrics.total(metrics.FILTERED),
        held,
        metrics.total(metrics.RESUMED_HELD),
    )
    if opts.control_topic:
        log.info(
            "control: requests in %d, dead-lettered %d, receipts %d; identity records %d "
            "(this process)",
            metrics.total(metrics.CONTROL_IN),
            metrics.total(metrics.CONTROL_DEAD_LETTERED),
            metrics.total(metrics.RECEIPTS),
            metrics.total(metrics.IDENTITY_CHANGES),
        )


def not_ready(stop: threading.Event, started: threading.Event) -> str | None:
    """Why this process is not ready (``/ready`` answers 503 with it), None once running."""
    if stop.is_set():
        return "stopping: draining, flushing outputs and taking a last snapshot"
    if not started.is_set():
        return (
            "starting: the dataflow is not running yet (waiting for the other processes "
            "of the cluster, or resuming from the recovery snapshot)"
        )
    return None


def metrics_host(settings: Settings, opts: WorkerOptions) -> str:
    """``metrics.host``: the address /metrics binds to; loopback unless configured."""
    return settings.metrics.host or "127.0.0.1"


_UNROUTED = re.compile(r"Key StateKey\(\"(.+):(\d+)\"\) is not in this worker's routing map")


def control_topic_moved(exc: BaseException | None, control_topic: str | None) -> str | None:
    """Why resuming failed, when the snapshot holds another control topic's partitions.

    Control partitions are keyed ``topic:N`` (input ones by number alone): Bytewax stops
    with ``Key StateKey("old:2") is not in this worker's routing map`` on a key the
    input no longer lists, a bare traceback and exit 1 where a renamed input topic is
    a named error and exit 3.
    """
    seen = 0
    while exc is not None and seen < 20:
        found = _UNROUTED.search(str(exc))
        if found and found.group(1) != control_topic:
            now = repr(control_topic) if control_topic else "null (none)"
            return (
                f"control partition {found.group(2)} was snapshotted reading topic "
                f"{found.group(1)!r}, and kafka.control_topic is now {now}: its offsets "
                "do not apply to another topic; set it back, or start with an empty "
                "recovery.dir"
            )
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _in_chain(exc: BaseException | None, cls: type[Exception]) -> str | None:
    """The message of a ``cls`` error in the chain Bytewax wrapped around it, if any."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, cls):
            return redact(str(exc))
        if f"{cls.__name__}: " in str(exc):
            text = str(exc).split(f"{cls.__name__}: ", 1)[1]
            return redact(text.strip().splitlines()[0])
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def read_addresses(addresses: str | None, addresses_file: str | None) -> list[str] | None:
    """``"h1:p;h2:p"`` or a file with one ``host:port`` per line; None for one process."""
    if addresses_file:
        try:
            text = Path(addresses_file).read_text()
        except OSError as exc:
            raise StartupError(f"--addresses-file {addresses_file!r}: {exc.strerror}") from None
        found = [ln.strip() for ln in text.splitlines() if ln.strip()]
    elif addresses:
        found = [a.strip() for a in addresses.split(";") if a.strip()]
    else:
        return None
    bad = [a for a in found if ":" not in a]
    if bad or not found:
        raise StartupError(f"addresses must be 'host:port' separated by ';'; got {bad or found}")
    return found
