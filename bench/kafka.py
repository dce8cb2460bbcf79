"""The Kafka path: produce → output-topic latency at a fixed offered load, and throughput.

Against a local tansu broker (and valkey, for the run with Redis writes) started as
in the tests, one tailing ``audienceflow run`` worker reads an input topic and
publishes to four output topics (one partition each). The worker runs the default
config (models on, ``kafka.batch_size`` 1000, no recovery), so its input consumer
waits up to ``fetch.wait.max.ms`` 100 per fetch, which tansu may use up even when
data is there. Two runs: Kafka only, ramping 5k, 10k, 20k, 40k events/s; then with
live profiles written to Redis at 5k and 20k events/s.

- **Each rate on fresh topics**: every rate of a ramp has its own input and output
  topics and its own worker (warmed up first); the ramp stops at the first rate not
  kept up. tansu (memory storage) costs more per fetch the more a topic holds: measured
  on the 2-core box, tight settings, 20k events/s, its CPU was 0.57-0.58 of a core on
  fresh topics (p99 76-94 ms in six of nine runs) and 0.99 on the topics that had
  just taken the 5k and 10k phases, where the worker then fell behind (p50 2.8 s); fresh
  topics on the same broker right after brought it back to 0.57. A Kafka broker's cost
  per fetch does not grow with a topic's retained data (segment files and an offset
  index), so carrying a ramp's earlier phases over measured the test broker, not the
  worker. ``ramp --same-topics`` runs a ramp the old way.

- **Offered load**: a separate producer process sends the bench stream (the
  seeded ``examples/generate.py`` lines) in order at a fixed rate, each line
  re-stamped just before ``produce()`` with the wall clock as its event
  ``timestamp`` (ms precision). Users and message ids get a suffix per pass over
  the file, so repeated passes are new users, not duplicates. Because event time
  *is* produce time, the stream's days are compressed into seconds: users run
  many events into one session; sessions never close during a run, so the
  per-event work is lighter than in a replay (no session records, nor the work
  done at a session's close) and the rates are not comparable with replay's.
- **Latency**: an event-driven output carries the event time of the event that
  caused it (a segment change's or an action's ``at``; a dead letter's raw
  line). So ``receipt - at`` is the time from the producer handing that event to
  Kafka to an independent subscriber (plain confluent-kafka, ``assign()``, no
  group, ``fetch.wait.max.ms`` 5) receiving the output: broker in, worker (fetch,
  batch, engine, models, produce, flush), broker out, and the subscriber's own
  fetch. ``worker_create`` uses the output message's CreateTime instead (set when
  the worker produced it): without the output acknowledgement and our fetch.
  Timer-driven outputs are excluded: sessions (closed 30 min of event time after
  the last event) and timer actions (cart abandonment, 15 min) are delayed by
  design, and their event time is a deadline, not an input's produce time. Only
  outputs whose ``at`` falls inside the load window are counted, and those of the
  window's last lateness + tick apart (``end_of_input_ms``): no later event lets them
  through once the producer stops, so they wait for their partition to turn idle
  (``time.idle_after``), which is the end of traffic, not steady traffic. ``worker_metric_ms``
  is the workers' own view over the load window: ``histogram_quantile`` of their two
  latency histograms, per input batch (``WORKER_HISTOGRAMS``), so a run shows how far an
  operator's alert on them reads from the subscriber's figure.
- **Keeping up**: the lag is what the producer has sent minus what the worker has
  read (its ``audienceflow_events_in_total``), sampled every 0.5 s. A rate is
  kept up when, as the producer stops, the worker is less than 0.5 s of input
  behind (over a 12 s window: it read at least ~96% of the offered rate, and no
  more than 0.5 s of lag stands). The ramp stops at the first rate not kept up;
  the backlog it leaves is then drained with the producer idle (a rough drain rate:
  a second or two of reading between scrapes). Latencies at a rate not kept up grow
  with the backlog.
- **Drain**: ``backlog_drain_per_s`` comes from ``drain``: 400k lines in a fresh
  topic before the worker starts (stamped as if sent at 20k events/s up to then),
  timed between its reading 10 % and 95 % of them.
  ``cpu_cores`` is each process's CPU time over the window (1.0 = one core).

Everything runs on one machine: producer, worker, broker, subscriber (and Redis)
share its cores, so the numbers are those of a crowded 2-core box.

The cluster ramp (``tight_two_processes``) is the live deployment the README sizes: a
cluster of two worker processes (``--process-id``, ``--addresses``) reading a
4-partition input topic keyed by user (the producer's default partitioner, so
``state.partitioner: crc32``) with ``state.placement: partition``, each with its own
metrics port; the lag sums both processes' counters. Each input partition has its
own consumer, so with 4 partitions the broker answers four times the fetches. Every
run has its own control topic of one partition (``NAME.control``), so runs on one
broker do not share one made by whichever started first. ``tight_four_partitions`` runs
one worker process on the same 4-partition layout just before it, so the cluster's rows
compare with one process at equal partitions (``tight`` reads one partition).

``python bench/kafka.py produce BROKERS TOPIC STREAM LIMIT`` is the producer
child: it reads ``RATE SECONDS`` lines on stdin and reports progress on stdout.
``python bench/kafka.py ramp --timing tight --rates 20000 --cli A --cli B --repeat 3``
runs only some settings and rates, alternating workers of other checkouts (paired
A/B runs on one broker); ``--processes 2`` (and ``--partitions N``) runs a cluster;
see ``ramp_main``.

The cluster's latency is mostly the broker's. ``python bench/kafka.py broker`` runs the
producer child with no worker, the topic read by plain consumers split as the cluster's
processes split it. On tansu (memory storage), two consumers of one 4-partition topic
with the ``tight`` fetch wait (10 ms; tansu holds every fetch that long, data or not)
overload it: measured on the 2-core box at 5k events/s, receipt - CreateTime p99 380-450
ms with two readers against 65-95 ms with one, and 55-75 ms for two at a 50 ms wait.
The worker reads what the broker has, so ``tight_two_processes`` carries that tail
before any worker code runs (a worker-side timeline showed the same split: event to the
partition's read p99 ~1 s, the wait for the other partitions' watermarks p99 ~200 ms,
the worker's own processing, exchange and flush p99 ~165 ms). A Kafka broker answers a
fetch as soon as ``fetch.min.bytes`` are there, so the fetch wait is neither a latency
floor nor a request rate there.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from audienceflow.operators.config import parse_duration

ROOT = Path(__file__).resolve().parent.parent
TS, TAG = b"#TS#", b"#TAG#"
LAG_OK_S = 0.5  # kept up: less than this much offered input unread when the producer stops
DRAIN_MAX_S = 20.0
DRAIN_EVENTS = 400_000  # the backlog ``drain`` measures: ~9 s of reading at 37k events/s
DRAIN_STAMP_RATE = 20_000  # events/s its stamps are spread at (a sustainable rate's)
REPORT_EVERY_S = 0.5
OUTPUTS = ("segment_changes", "actions", "sessions", "dead_letters")

Template = tuple[bytes, bytes | None]  # (line with #TS#/#TAG# markers, key with #TAG#)


# --- the producer child ------------------------------------------------------


def templates(stream: Path, limit: int) -> list[Template]:
    """The first ``limit`` lines, with markers for the new timestamp and the pass suffix."""
    out: list[Template] = []
    with stream.open("rb") as fh:
        for line in fh:
            if len(out) >= limit:
                break
            out.append(_template(line.rstrip(b"\n")))
    return out


def _template(line: bytes) -> Template:
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line, None  # an invalid line stays as it is
    if not isinstance(ev, dict):
        return line, None
    for field in ("userId", "anonymousId", "messageId"):
        if isinstance(ev.get(field), str):
            ev[field] += TAG.decode()
    if _aware(ev.get("timestamp")):  # a planted bad timestamp stays bad
        ev["timestamp"] = TS.decode()
    uid = ev.get("userId") or ev.get("anonymousId")
    return orjson.dumps(ev), uid.encode() if isinstance(uid, str) else None


def _aware(ts: Any) -> bool:
    try:
        return isinstance(ts, str) and datetime.fromisoformat(ts).tzinfo is not None
    except ValueError:
        return False


class Stamp:
    """The wall clock as an ISO-8601 UTC timestamp with milliseconds, formatted once per ms."""

    def __init__(self) -> None:
        self.ms = -1
        self.text = b""

    def __call__(self) -> bytes:
        ms = int(time.time() * 1000)
        if ms != self.ms:
            dt = datetime.fromtimestamp(ms / 1000, UTC)
            self.ms, self.text = ms, (dt.isoformat(timespec="milliseconds")[:-6] + "Z").encode()
        return self.text


def produce_main(brokers: str, topic: str, stream: Path, limit: int) -> None:
    """Producer child: for each ``RATE SECONDS`` line on stdin, offer that load."""
    lines = templates(stream, limit)
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "acks": "all"})
    acked = [0]

    def delivered(err: Any, _msg: Any) -> None:
        acked[0] += err is None

    stamp, cursor = Stamp(), 0
    print(json.dumps({"ready": len(lines)}), flush=True)
    for command in sys.stdin:
        rate, seconds = float(command.split()[0]), float(command.split()[1])
        start = time.time()
        sent, report, first = 0, start + REPORT_EVERY_S, acked[0]
        while (now := time.time()) < start + seconds:
            due = int(rate * (now - start)) + 1
            while sent < due:
                tmpl, key = lines[cursor % len(lines)]
                tag = b"~%d" % (cursor // len(lines)) if cursor >= len(lines) else b""
                value = tmpl.replace(TAG, tag).replace(TS, stamp())
                try:
                    producer.produce(
                        topic, value, key and key.replace(TAG, tag), on_delivery=delivered
                    )
                except BufferError:
                    producer.poll(0.01)
                    continue
                sent += 1
                cursor += 1
            producer.poll(0)
            if now >= report:
                print(json.dumps({"sent": sent}), flush=True)
                report += REPORT_EVERY_S
            time.sleep(0.0005)
        end = time.time()
        producer.flush(30)
        done = {"done": True, "start": start, "end": end, "sent": sent, "acked": acked[0] - first}
        print(json.dumps(done), flush=True)


# --- the measurement ---------------------------------------------------------

Output = tuple[str, float, int, bytes]  # (topic, receipt wall time, CreateTime ms, value)


class Subscriber(threading.Thread):
    """Reads the output topics from the beginning, as an independent downstream consumer."""

    def __init__(self, brokers: str, topics: list[str]) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": "audienceflow-bench",  # required by the client, never joined
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "auto.offset.reset": "earliest",
            }
        )
        # Offset 0, not OFFSET_BEGINNING: tansu's ListOffsets(earliest) can skip the
        # first batch when several producers write (flows/local_servers.py).
        self.consumer.assign([TopicPartition(t, 0, 0) for t in topics])
        self.records: list[Output] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            msg = self.consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                got = time.time()
                self.records.append(
                    (msg.topic() or "", got, msg.timestamp()[1], msg.value() or b"")
                )
        self.consumer.close()

    def settle(self, quiet_s: float = 1.0, timeout: float = 20.0) -> None:
        """Wait until nothing new has arrived for ``quiet_s``."""
        seen, deadline = -1, time.monotonic() + timeout
        while len(self.records) != seen and time.monotonic() < deadline:
            seen = len(self.records)
            time.sleep(quiet_s)


class ProducerChild:
    """The producer process; a thread queues its stdout lines, so every wait has a deadline."""

    def __init__(self, brokers: str, topic: str, stream: Path, limit: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "produce", brokers, topic, str(stream), str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, out: IO[str]) -> None:
        for line in out:
            self.lines.put(json.loads(line))
        self.lines.put({"exited": self.process.wait()})

    def next(self, timeout: float) -> dict[str, Any]:
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"producer silent for {timeout}s") from None
        if "exited" in msg:
            raise RuntimeError(f"producer exited with {msg['exited']}")
        return msg

    def offer(self, rate: int, seconds: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{rate} {seconds}\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in ms (nearest rank), and the count."""
    if not seconds:
        return {}
    s = sorted(seconds)
    out = {f"p{q}": round(s[min(len(s) - 1, len(s) * q // 100)] * 1000, 1) for q in (50, 95, 99)}
    return {**out, "max": round(s[-1] * 1000, 1), "n": len(s)}


# The worker's own latency histograms, read beside the subscriber's figure: what an
# operator's ``histogram_quantile(0.99, ...)`` over the phase would say. Per input batch,
# not per output: ``kafka_to_output`` runs from the Kafka timestamp of a batch's first
# message (its oldest) to the acknowledgement of the outputs of its last event, so it
# reads above the subscriber's per-output figure by up to the time a batch spans (the
# fetch wait), less the subscriber's own fetch.
WORKER_HISTOGRAMS = {
    "kafka_to_output": "audienceflow_kafka_to_output_latency_seconds",
    "end_to_end": "audienceflow_end_to_end_latency_seconds",
}


def scrape_histograms(port: int, names: list[str]) -> dict[str, dict[float, float]] | None:
    """Cumulative bucket counts (upper bound → count) of each histogram of ``names`` on a
    worker's /metrics, in one scrape; None if it is unreachable, unreadable or lacks one.

    Tried 3 times, 3 s each, as ``tests/workers.metric``: a worker busy with a batch
    answers late on a loaded machine."""
    import http.client
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    for attempt in range(3):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
                families = list(text_string_to_metric_families(resp.read().decode()))
            break
        except (OSError, http.client.HTTPException, ValueError) as exc:
            refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
            if refused or attempt == 2:
                return None
            time.sleep(0.2)
    found = {
        f.name: {float(x.labels["le"]): x.value for x in f.samples if x.name == f.name + "_bucket"}
        for f in families
        if f.name in names
    }
    return found if len(found) == len(names) else None


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Prometheus's ``histogram_quantile`` over the observations between two scrapes:
    linear within the bucket the rank falls in; the highest finite bound if it falls in
    the ``+Inf`` one. NaN with none, without a ``+Inf`` bucket, or when the two scrapes
    do not belong together (other bounds, or a count that went down: a restart)."""
    bounds = sorted(after)
    if not bounds or bounds[-1] != float("inf") or (before and set(before) != set(after)):
        return float("nan")
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if any(c < 0 for c in counts):
        return float("nan")
    total = counts[-1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cum in zip(bounds, counts, strict=True):
        if cum >= rank:
            if bound == float("inf"):
                return lower
            return (
                lower + (bound - lower) * (rank - below) / (cum - below) if cum > below else lower
            )
        lower, below = bound, cum
    return lower


def event_time(kind: str, rec: dict[str, Any]) -> float | None:
    """The event time of the input behind an event-driven output; None if timer-driven."""
    if kind == "sessions":
        return None
    if kind == "actions" and rec["trigger"].get("type") == "timer":
        return None
    at = rec.get("at")
    if kind == "dead_letters":
        try:
            at = orjson.loads(rec["raw"])["timestamp"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return None
    try:
        return datetime.fromisoformat(at).timestamp()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def latencies(
    records: list[Output],
    kinds: dict[str, str],
    start: float,
    end: float,
    held_s: float = 0.0,
) -> dict[str, Any]:
    """Latency of the outputs caused by events sent in [start, end], two ways.

    The outputs of events sent in the last ``held_s`` of the window (the allowed lateness
    and a tick) are reported apart, as ``end_of_input_ms``: nothing is sent after them, so
    no later event moves stream time past them and they wait until their partition turns
    idle (``time.idle_after``), by design. Among the steady ones they made the whole tail:
    measured, tight settings, 20k events/s, every output over 0.5 s (54 in six phases, all
    ~2.05 s) came from an event sent within 20.2 ms of the window's end, and they were up to
    1 % of a phase's outputs, enough to move its p99 from ~90 ms to 157 ms or to 2 s.
    """
    receipt, created, held = [], [], []
    lo, hi = int(start * 1000) / 1000, end  # stamps are wall-clock ms, truncated
    cut = hi - held_s
    for topic, got, create_ms, value in records:
        at = event_time(kinds[topic], orjson.loads(value))
        if at is None or not lo <= at <= hi:
            continue
        if at > cut:
            held.append(got - at)
            continue
        receipt.append(got - at)
        created.append(create_ms / 1000 - at)
    return {
        "outputs_per_s": round(len(receipt) / (end - start)),
        "latency_ms": percentiles(receipt),
        "worker_create_latency_ms": percentiles(created),
        "end_of_input_ms": {"held_s": held_s, **percentiles(held)},
    }


# The on-site time settings the bench runs with (a watermark goes out at most once per
# batch, so a small tick costs nothing in a backlog).
# allowed lateness, tick, and how long the worker's consumer lets a fetch wait to fill
# (tansu holds a fetch that long even with data).
ON_SITE = {"lateness": "100ms", "tick": "100ms", "fetch_wait_ms": 100}
# The latency floor: for an input in order within each partition (here: stamped at send).
TIGHT = {"lateness": "20ms", "tick": "20ms", "fetch_wait_ms": 10}


_USED: dict[str, int] = {}


class WorkerRun:
    """One tailing worker (or a cluster of them) between its own topics, its producer child
    and a subscriber."""

    def __init__(
        self,
        servers: Any,
        workers: Any,
        kafka: Any,
        redis: Any,
        work: Path,
        timing: dict[str, Any] = ON_SITE,
        kafka_extra: dict[str, Any] | None = None,
        processes: int = 1,
        partitions: int | None = None,
        before_start: Any = None,
    ) -> None:
        """``before_start(input_topic)``: called once the topics exist, before any worker
        starts (the drain measurement fills the input topic there)."""
        self.workers = workers
        brokers, redis_url = kafka.address, redis and redis.address
        name = ("redis" if redis else "kafka") + ("" if timing is ON_SITE else "-tight")
        name += f"-x{processes}" if processes > 1 else ""
        name += f"-p{partitions}" if partitions else ""
        _USED[name] = used = _USED.get(name, -1) + 1  # fresh topics for each run on a broker
        self.name = name = name + (f"-{used}" if used else "")
        work.mkdir(parents=True, exist_ok=True)
        self.input = f"{name}.in"
        self.topics = {k: f"{name}.{k}" for k in OUTPUTS}
        # One process: one input partition. A cluster: 2 partitions per process, keyed by
        # user (the producer child's default partitioner, crc32) and placed by partition,
        # as the README's sizing advice sets a live deployment up.
        if partitions is None:
            partitions = 1 if processes == 1 else 2 * processes
        control = f"{name}.control"
        servers.create_topics(brokers, [self.input], partitions=partitions)
        servers.create_topics(brokers, [*self.topics.values(), control])
        self.ports = [servers.free_port() for _ in range(processes)]
        placed = partitions > 1
        state = {"placement": "partition", "partitioner": "crc32"} if placed else {}
        cfgs = [
            workers.write_config(
                work / f"{name}-{i}.yaml",
                kafka={"brokers": brokers, "input_topic": self.input, "topics": self.topics,
                       "control_topic": control, "tail": True, "partitions": partitions,
                       "add_config": {"fetch.wait.max.ms": timing["fetch_wait_ms"]},
                       **(kafka_extra or {})},
                redis={"url": redis_url, "key_prefix": f"{name}:profile:"},
                metrics={"port": port},  # per process: the one thing the configs differ in
                privacy={"salt": "bench-salt-not-a-secret"},  # run refuses to hash without one
                # On-site settings (README, Time): an event waits for stream time, i.e. the
                # allowed lateness plus up to a tick; the 2 min default is for batchy sources.
                time={"allowed_lateness": timing["lateness"], "tick": timing["tick"],
                      "idle_after": "2s"},
                **({"state": state} if state else {}),
            )
            for i, port in enumerate(self.ports)
        ]  # fmt: skip
        if before_start is not None:
            before_start(self.input)
        self.sub = Subscriber(brokers, list(self.topics.values()))
        self.sub.start()
        cluster: list[str] = []
        if processes > 1:
            addresses = ";".join(f"127.0.0.1:{servers.free_port()}" for _ in range(processes))
            cluster = ["--addresses", addresses]
        self.procs = []
        for i, cfg in enumerate(cfgs):  # last: nothing after them can fail
            log = work / f"{name}-worker{f'-{i}' if processes > 1 else ''}.log"
            log.unlink(missing_ok=True)
            args = ["--process-id", str(i), *cluster] if cluster else []
            self.procs.append(workers.Worker(cfg, log, *args))
        self.pids = {
            ("worker" if processes == 1 else f"worker-{i}"): w.process.pid
            for i, w in enumerate(self.procs)
        }
        self.pids["broker"] = kafka.process.pid
        if redis:
            self.pids["redis"] = redis.process.pid
        self.sent = 0.0  # everything produced to the input topic so far

    def read(self) -> float:
        """Messages the workers have read (their metric, summed); raises if one has exited."""
        for w in self.procs:
            if w.process.poll() is not None:
                raise RuntimeError(f"worker exited; log:\n{w.log()[-3000:]}")
        metric = self.workers.metric
        return sum(float(metric(p, "audienceflow_events_in_total") or 0.0) for p in self.ports)

    def engine(self) -> str | None:
        """The engine build the (first) worker's start-up line names."""
        found = re.search(r"; engine: (.+)$", self.procs[0].log(), re.MULTILINE)
        return found.group(1) if found else None

    def flush_waited(self) -> float | None:
        """Seconds the workers' sinks have waited for Kafka's acknowledgements (summed);
        None when a worker does not expose it (an older checkout, a failed scrape)."""
        metric = self.workers.metric
        found = [metric(p, "audienceflow_output_flush_seconds_sum") for p in self.ports]
        return None if any(v is None for v in found) else sum(float(v or 0.0) for v in found)

    def buckets(self) -> dict[str, dict[float, float]] | None:
        """``WORKER_HISTOGRAMS``' cumulative buckets summed over the workers (None when a
        worker does not expose them, an older checkout or a failed scrape, or when the
        workers' bounds differ)."""
        names = list(WORKER_HISTOGRAMS.values())
        out: dict[str, dict[float, float]] = {key: {} for key in WORKER_HISTOGRAMS}
        for port in self.ports:
            found = scrape_histograms(port, names)
            if found is None:
                return None
            for key, name in WORKER_HISTOGRAMS.items():
                summed = out[key]
                if summed and set(summed) != set(found[name]):
                    return None
                for bound, n in found[name].items():
                    summed[bound] = summed.get(bound, 0.0) + n
        return out

    def warm_up(self, servers: Any, brokers: str, stream: Path) -> None:
        """Ready: it has read 200 events and the subscriber has seen an output."""
        stamp = Stamp()
        warm = [t.replace(TAG, b"~warm").replace(TS, stamp()) for t, _ in templates(stream, 200)]
        servers.produce_lines(brokers, self.input, warm)
        self.sent += len(warm)
        self.workers.poll(lambda: self.read() >= self.sent, 90, "the worker reading warm-up")
        self.workers.poll(lambda: self.sub.records, 30, "the first output at the subscriber")

    def phase(self, producer: ProducerChild, rate: int, seconds: float) -> dict[str, Any]:
        """Offer ``rate`` events/s for ``seconds``; lag, drain and CPU (the latency comes later)."""
        pids = {**self.pids, "producer": producer.process.pid}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        read0 = self.read()
        hist0 = self.buckets()  # and again when the producer says done
        waited0 = self.flush_waited()  # read again when the producer says done (after its
        # final flush), so like ``cpu_cores`` the share slightly overstates the window's
        producer.offer(rate, seconds)
        lag_max = 0.0
        while "done" not in (msg := producer.next(seconds + 30)):
            lag_max = max(lag_max, msg["sent"] - (self.read() - read0))
        read = self.read() - read0
        # The load window's batches: those observed between the producer's start and its
        # end. The batches in flight then are left out (nothing sets them apart), and so
        # are the last ones, whose events wait for the partition to turn idle once the
        # input stops (``time.idle_after``): a wait of steady traffic's end, not of it.
        hist1 = self.buckets()
        waited1 = self.flush_waited()
        waited = None if waited0 is None or waited1 is None else waited1 - waited0
        backlog = msg["sent"] - read
        self.sent += msg["sent"]
        # The drain from here: the scrapes above took a busy worker's time, in which it
        # read on, so the backlog at ``began`` is read again (not ``backlog``).
        began = time.monotonic()
        left = self.sent - self.read()
        try:
            self.workers.poll(lambda: self.read() >= self.sent, DRAIN_MAX_S, "drain")
            drain_s: float | None = time.monotonic() - began
        except TimeoutError:
            drain_s = None
        window = msg["end"] - msg["start"]
        kept_up = backlog < LAG_OK_S * rate
        return {
            "offered_per_s": rate,
            "sent_per_s": round(msg["sent"] / window),
            "acked": msg["acked"],
            "worker_read_per_s": round(read / window),
            "lag_max": round(max(lag_max, backlog)),
            "lag_at_end": round(backlog),
            "kept_up": kept_up,
            "drain_s": None if drain_s is None else round(drain_s, 2),
            # Rough: a backlog of seconds, sampled every scrape; ``drain`` measures it.
            "backlog_drain_per_s": round(left / drain_s) if drain_s and not kept_up else None,
            "cpu_cores": {
                k: round((cpu_seconds(p) - cpu0[k]) / window, 2) for k, p in pids.items()
            },
            # The share of a worker's time its sink sat waiting for the broker's acks.
            "flush_wait_share": (
                None if waited is None else round(waited / window / len(self.ports), 2)
            ),
            "window": [msg["start"], msg["end"]],
            "worker_metric_ms": _metric_quantiles(hist0, hist1),
        }

    def stop(self) -> None:
        for w in self.procs:
            w.process.terminate()
        for w in self.procs:
            try:
                w.process.wait(10)
            except subprocess.TimeoutExpired:
                w.stop()
        self.sub.done.set()
        self.sub.join(5)

    def outputs(self) -> dict[str, int]:
        kinds = {v: k for k, v in self.topics.items()}
        return {k: sum(1 for r in self.sub.records if kinds[r[0]] == k) for k in OUTPUTS}


def _metric_quantiles(
    before: dict[str, dict[float, float]] | None, after: dict[str, dict[float, float]] | None
) -> dict[str, dict[str, float]] | None:
    """p50/p99 (ms) and the count of the workers' histograms over a phase (shards' batches:
    a batch that reached several shards counts once for each); None when a scrape is
    missing (a worker not reached) or the two do not belong together."""
    if before is None or after is None:
        return None
    out: dict[str, dict[str, float]] = {}
    for key, hist in after.items():
        prev = before.get(key, {})
        p50, p99 = (histogram_quantile(q, prev, hist) for q in (0.50, 0.99))
        if math.isnan(p50) or math.isnan(p99):
            return None
        n = hist[float("inf")] - prev.get(float("inf"), 0.0)
        out[key] = {"p50": round(p50 * 1000, 1), "p99": round(p99 * 1000, 1), "batches": int(n)}
    return out


def ramp(
    servers: Any,
    workers: Any,
    kafka: Any,
    redis: Any,
    stream: Path,
    rates: tuple[int, ...],
    seconds: float,
    work: Path,
    timing: dict[str, Any] = ON_SITE,
    kafka_extra: dict[str, Any] | None = None,
    processes: int = 1,
    partitions: int | None = None,
    fresh: bool = True,
) -> dict[str, Any]:
    """One load phase per rate (ascending) until a rate is not kept up, each on its own
    topics with its own worker (or cluster of ``processes``): ``fresh``. With ``fresh``
    False, one worker and one set of topics take every phase in turn, as the bench did
    before (tansu's cost per fetch grows with what a topic holds; module docstring)."""
    phases: list[dict[str, Any]] = []
    outputs = dict.fromkeys(OUTPUTS, 0)
    held_s = parse_duration(timing["lateness"]) + parse_duration(timing["tick"])
    for group in [(r,) for r in rates] if fresh else [rates]:
        run = WorkerRun(
            servers, workers, kafka, redis, work, timing, kafka_extra, processes, partitions
        )
        producer: ProducerChild | None = None
        mine: list[dict[str, Any]] = []
        try:
            producer = ProducerChild(kafka.address, run.input, stream, int(sum(group) * seconds))
            run.warm_up(servers, kafka.address, stream)
            producer.next(60)  # its lines are ready
            for rate in group:
                mine.append(run.phase(producer, rate, seconds))
                if not mine[-1]["kept_up"]:
                    break
            run.sub.settle()
        finally:
            if producer is not None:
                producer.stop()
            run.stop()
        kinds = {v: k for k, v in run.topics.items()}
        for ph in mine:
            ph.update(latencies(run.sub.records, kinds, *ph.pop("window"), held_s=held_s))
            ph["engine"] = run.engine()
        for k, n in run.outputs().items():
            outputs[k] += n
        phases += mine
        if not mine or not mine[-1]["kept_up"]:
            break
    return {"processes": processes, "fresh_topics_per_rate": fresh, "phases": phases,
            "outputs": outputs}  # fmt: skip


def drain(
    servers: Any, workers: Any, kafka: Any, stream: Path, work: Path, events: int = DRAIN_EVENTS
) -> dict[str, Any]:
    """A backlog's drain rate: ``events`` lines in the input topic before the worker starts
    (stamped as the producer child stamps them, users new per pass over the file); the
    rate and the worker's CPU between its reading 10 % and 95 % of them, which leaves out
    its start-up and the tail's scrape. The ramp's ``backlog_drain_per_s`` is what a
    failed rate left, a backlog of a second or two read between scrapes of a busy worker,
    and moved by 15 % between runs of the same code."""
    # Stamped as if sent at ``DRAIN_STAMP_RATE`` up to now (a backlog left by an outage
    # spans the time it was sent in), so the lateness hold sees traffic's spread.
    first_ms = int(time.time() * 1000) - events * 1000 // DRAIN_STAMP_RATE
    lines: list[bytes] = []
    for rep in range(events // max(1, len(tmpl := templates(stream, events))) + 1):
        tag = f"~d{rep}".encode()
        for t, _ in tmpl:
            ms = first_ms + len(lines) * 1000 // DRAIN_STAMP_RATE
            dt = datetime.fromtimestamp(ms / 1000, UTC)
            ts = (dt.isoformat(timespec="milliseconds")[:-6] + "Z").encode()
            lines.append(t.replace(TAG, tag).replace(TS, ts))
            if len(lines) >= events:
                break

    def fill(topic: str) -> None:
        servers.produce_lines(kafka.address, topic, lines, timeout=300)

    run = WorkerRun(servers, workers, kafka, None, work, before_start=fill)
    try:
        low, high = 0.10 * events, 0.95 * events
        workers.poll(lambda: run.read() >= low, 120, f"the worker reading {low:.0f} events")
        t0, c0, r0 = time.monotonic(), cpu_seconds(run.procs[0].process.pid), run.read()
        workers.poll(lambda: run.read() >= high, 300, f"the worker reading {high:.0f} events")
        t1, c1, r1 = time.monotonic(), cpu_seconds(run.procs[0].process.pid), run.read()
    finally:
        run.stop()
    return {
        "events": events,
        "measured_events": round(r1 - r0),
        "seconds": round(t1 - t0, 2),
        "events_per_s": round((r1 - r0) / (t1 - t0)),
        "worker_cpu_cores": round((c1 - c0) / (t1 - t0), 2),
    }


def run(
    stream: Path,
    work: Path,
    rates: tuple[int, ...] = (5_000, 10_000, 20_000, 40_000),
    redis_rates: tuple[int, ...] = (5_000, 20_000),
    seconds: float = 12.0,
    tight_rates: tuple[int, ...] = (5_000, 10_000, 20_000),
    cluster_rates: tuple[int, ...] = (5_000, 10_000, 20_000),
) -> dict[str, Any]:
    """The ramp through Kafka only, then the fixed loads with Redis profile writes too
    (``ON_SITE`` time settings); then the Kafka-only ramp with the ``TIGHT`` ones, with
    one worker (on one partition, then on four) and with a cluster of two processes on a
    4-partition input topic."""
    sys.path.insert(0, str(ROOT / "tests"))
    import servers
    import workers

    work.mkdir(parents=True, exist_ok=True)
    kafka = servers.start_kafka(work / "tansu")
    redis = None
    try:
        res: dict[str, Any] = {
            "seconds_per_rate": seconds,
            "lag_ok_s": LAG_OK_S,
            "timing": ON_SITE,
            "tight_timing": TIGHT,
        }
        res["kafka_only"] = ramp(servers, workers, kafka, None, stream, rates, seconds, work)
        try:
            res["drain"] = drain(servers, workers, kafka, stream, work / "drain")
        except Exception as exc:  # a failed drain leaves the ramps' figures
            res["drain"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        if tight_rates:
            res["tight"] = ramp(
                servers, workers, kafka, None, stream, tight_rates, seconds, work / "tight", TIGHT
            )
        if cluster_rates:
            # One process on the cluster's 4-partition topic first: the cluster's rows
            # then compare with a single worker reading as many partitions (the broker's
            # cost grows with the partitions read; ``tight`` reads one).
            res["tight_four_partitions"] = ramp(
                servers, workers, kafka, None, stream, cluster_rates, seconds,
                work / "tight-p4", TIGHT, partitions=4,
            )  # fmt: skip
            res["tight_two_processes"] = ramp(
                servers, workers, kafka, None, stream, cluster_rates, seconds,
                work / "tight-x2", TIGHT, processes=2,
            )  # fmt: skip
        redis = servers.start_redis(work / "valkey")
        res["with_redis"] = ramp(servers, workers, kafka, redis, stream, redis_rates, seconds, work)
    finally:
        servers.stop(kafka)
        if redis is not None:
            servers.stop(redis)
    phases = res["kafka_only"]["phases"]
    res["sustainable_per_s"] = max((p["offered_per_s"] for p in phases if p["kept_up"]), default=0)
    res["backlog_drain_per_s"] = res["drain"].get("events_per_s")
    return res


def compiled_against_pure(
    stream: Path,
    work: Path,
    rates: tuple[int, ...] = (10_000, 20_000),
    repeats: int = 2,
    seconds: float = 12.0,
) -> dict[str, Any]:
    """The ``TIGHT`` ramp with a worker running the compiled build (``make fast``, which
    must be current) and one running pure Python, alternately, ``repeats`` times each, on
    one broker (each rate on fresh topics); which build each ran is read from its log."""
    sys.path.insert(0, str(ROOT / "tests"))
    import servers
    import workers

    work.mkdir(parents=True, exist_ok=True)
    kafka = servers.start_kafka(work / "tansu")
    saved = os.environ.get("AUDIENCEFLOW_PURE")
    res: dict[str, Any] = {"timing": TIGHT, "seconds_per_rate": seconds, "runs": []}
    try:
        for i in range(repeats):
            for build in ("compiled", "pure"):
                os.environ["AUDIENCEFLOW_PURE"] = "1" if build == "pure" else "0"
                r = ramp(servers, workers, kafka, None, stream, rates, seconds,
                         work / f"{build}-{i}", TIGHT)  # fmt: skip
                res["runs"].append({"build": build, "phases": r["phases"]})
    finally:
        if saved is None:
            os.environ.pop("AUDIENCEFLOW_PURE", None)
        else:
            os.environ["AUDIENCEFLOW_PURE"] = saved
        servers.stop(kafka)
    return res


def ramp_main(argv: list[str]) -> None:
    """``python bench/kafka.py ramp ...``: some settings and rates only, for paired runs
    (e.g. a build of another checkout against this one); prints one JSON line per ramp."""
    import argparse

    p = argparse.ArgumentParser(prog="bench/kafka.py ramp")
    p.add_argument("--stream", type=Path, default=ROOT / "bench" / "work" / "stream-20000-11.jsonl")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "kafka-ramp")
    p.add_argument(
        "--timing",
        action="append",
        help='on_site, tight, or a JSON object: {"lateness": "30ms", "tick": "20ms", '
        '"fetch_wait_ms": 20}',
    )
    p.add_argument("--rates", default="5000,10000,20000")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--cli", action="append", help="worker executables to alternate (A/B)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--kafka", default="{}", help="JSON merged into the worker's kafka section")
    p.add_argument(
        "--processes", type=int, default=1, help="a cluster of N worker processes, 2N partitions"
    )
    p.add_argument("--partitions", type=int, help="input partitions (default: 2 per process)")
    p.add_argument(
        "--same-topics",
        action="store_true",
        help="one worker and one set of topics for every rate (default: fresh ones per rate)",
    )
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import servers
    import workers

    rates = tuple(int(r) for r in args.rates.split(","))
    clis = args.cli or [workers.CLI]
    extra = json.loads(args.kafka)
    kafka = servers.start_kafka(args.work / "tansu")
    try:
        for i in range(args.repeat):
            for timing_name in args.timing or ["tight"]:
                timing = {"on_site": ON_SITE, "tight": TIGHT}.get(timing_name)
                if timing is None:
                    timing = json.loads(timing_name)
                for cli in clis:
                    workers.CLI = cli
                    res = ramp(servers, workers, kafka, None, args.stream, rates, args.seconds,
                               args.work / f"{i}-{timing_name}", timing, extra,
                               args.processes, args.partitions,
                               fresh=not args.same_topics)  # fmt: skip
                    for ph in res["phases"]:
                        print(json.dumps({"run": i, "timing": timing_name, "cli": cli,
                                          **{k: ph[k] for k in ("offered_per_s", "kept_up",
                                             "latency_ms", "worker_create_latency_ms",
                                             "cpu_cores", "backlog_drain_per_s",
                                             "flush_wait_share", "engine",
                                             "worker_metric_ms", "end_of_input_ms")}}),
                              flush=True)  # fmt: skip
    finally:
        servers.stop(kafka)


def read_main(brokers: str, topic: str, parts: str, wait_ms: int, seconds: float) -> None:
    """Reader child of ``broker``: a plain consumer of ``parts`` (comma-separated), as a
    worker process's input consumer reads them; prints receipt - CreateTime percentiles."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "audienceflow-bench",  # required by the client, never joined
            "enable.auto.commit": False,
            "fetch.wait.max.ms": wait_ms,
        }
    )
    consumer.assign([TopicPartition(topic, int(p), 0) for p in parts.split(",")])
    print(json.dumps({"ready": True}), flush=True)
    delays: list[float] = []
    end = time.time() + seconds
    while time.time() < end:
        for msg in consumer.consume(1000, 0.005):
            if msg.error() is None:
                delays.append(time.time() - msg.timestamp()[1] / 1000)
    consumer.close()
    print(json.dumps({"partitions": parts, "latency_ms": percentiles(delays)}), flush=True)


def broker_main(argv: list[str]) -> None:
    """``python bench/kafka.py broker ...``: the broker's own share, with no worker.

    The producer child offers the load to a topic of ``--partitions`` partitions, read by
    ``--readers`` plain consumers in processes of their own, reader i taking partitions
    i, i + readers, ... (as the processes of a cluster split them) with the worker's
    ``fetch.wait.max.ms``. Their receipt - CreateTime is the floor under any worker's
    latency on that layout; prints one JSON line per reader and run.
    """
    import argparse

    p = argparse.ArgumentParser(prog="bench/kafka.py broker")
    p.add_argument("--stream", type=Path, default=ROOT / "bench" / "work" / "stream-20000-11.jsonl")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "kafka-broker")
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--readers", type=int, action="append", help="reader processes (repeatable)")
    p.add_argument("--fetch-wait-ms", type=int, action="append", help="repeatable")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import servers

    kafka = servers.start_kafka(args.work / "tansu")
    try:
        n = 0
        for i in range(args.repeat):
            for wait in args.fetch_wait_ms or [TIGHT["fetch_wait_ms"]]:
                for readers in args.readers or [1, 2]:
                    n += 1
                    topic = f"floor-{n}"
                    servers.create_topics(kafka.address, [topic], partitions=args.partitions)
                    _floor(kafka.address, topic, args, readers, wait, i)
    finally:
        servers.stop(kafka)


def _floor(brokers: str, topic: str, args: Any, readers: int, wait: int, run: int) -> None:
    """One run of ``broker_main``: offer the load, collect each reader's line."""
    producer = ProducerChild(brokers, topic, args.stream, int(args.rate * args.seconds))
    procs = []
    try:
        producer.next(60)
        for r in range(readers):
            parts = ",".join(str(q) for q in range(r, args.partitions, readers))
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "read",
                        brokers,
                        topic,
                        parts,
                        str(wait),
                        str(args.seconds + 3),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()  # ready
        producer.offer(args.rate, args.seconds)
        while "done" not in producer.next(args.seconds + 30):
            pass
        for proc in procs:
            out, _ = proc.communicate(timeout=args.seconds + 30)
            line = json.loads(out.strip().splitlines()[-1])
            head = {"run": run, "readers": readers, "fetch_wait_ms": wait}
            print(json.dumps({**head, "partitions_total": args.partitions, **line}), flush=True)
    finally:
        producer.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["produce"]:
    produce_main(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
elif __name__ == "__main__" and sys.argv[1:2] == ["ramp"]:
    ramp_main(sys.argv[2:])
elif __name__ == "__main__" and sys.argv[1:2] == ["read"]:
    read_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
elif __name__ == "__main__" and sys.argv[1:2] == ["broker"]:
    broker_main(sys.argv[2:])
