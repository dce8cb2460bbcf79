"""``make live``: the whole live path on this machine, watched in the terminal.

Starts a Kafka-protocol broker (tansu) and Redis (valkey) from the ``live``
dependency group on free loopback ports, creates the topics, starts
``audienceflow run`` with a generated config in ``--out`` (metrics on a free
loopback port, recovery in ``OUT/recovery``), feeds the bundled stream re-timed
to now, and shows events/s in and out, input lag, segment enters/exits and
actions as they happen (from the worker's ``/metrics`` and by reading the output
topics with ``assign()``). Ctrl-C, or the end of ``--duration``, stops everything
it started: the worker gets SIGTERM and drains, then Redis and the broker stop. At the
end of ``--duration`` the feed stops first and the worker is given up to
``catch_up_wait`` to read what was fed; the closing lines say how many fed messages it had
not read when it stopped (from its own closing log line: its input stops at SIGTERM),
and where they wait (``held_back``).
SIGTERM (``kill``, a CI timeout) stops it the same way, and so does SIGINT when it was
started where SIGINT is ignored (a script's background job: the shell ignores SIGINT
there, and Python keeps it ignored).
The output topics are copied to ``OUT/<output>.jsonl`` as they are read, and the
final Redis profiles to ``OUT/profiles.jsonl``.

Re-timing: the first event is stamped now, and every later one keeps its
distance from the first (sessions and timers see the recorded gaps); events are
sent when the wall clock reaches ``start + distance / speed``. The default speed
60 sends an hour of recorded traffic per minute.

    python -m audienceflow.flows.live [--speed 60] [--duration 8s] [--out out/live]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from audienceflow.flows import local_servers as ls
from audienceflow.operators.config import parse_duration
from audienceflow.operators.records import owned
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import event_time

ROOT = Path(__file__).resolve().parents[1]
STREAM = ROOT / "examples" / "stream.jsonl.gz"
DEMO_CONFIG = ROOT / "examples" / "demo.yaml"
OUTPUTS = {
    "segment_changes": "live.segment-changes",
    "actions": "live.actions",
    "sessions": "live.sessions",
    "dead_letters": "live.dead-letters",
    "identities": "live.identities",
    "control_receipts": "live.control-receipts",
}
INPUT_TOPIC = "live.clickstream"
CONTROL_TOPIC = "live.control"  # data subjects' requests: produce to it while it runs
PARTITIONS = 4
_DRAIN_S = 60.0  # how long the worker may take to drain after SIGTERM before it is killed
# How long the worker may take, once the feed stops at the end of ``--duration``, to read
# what was fed before it gets SIGTERM (its input stops there: what it has not read by
# then is never processed in this run), on top of the waits of alignment (catch_up_wait).
CATCH_UP_S = 15.0
EVENTS_IN = "audienceflow_events_in_total"


@dataclass
class Seen:
    """What the view shows; written by the reader and scraper threads, read by the view."""

    fed: int = 0
    stored: int = 0  # fed messages the broker acknowledged
    out: Counter[str] = field(default_factory=Counter)
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=10))
    metrics: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    fed_until: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def retimed(lines: list[bytes], start: datetime) -> list[tuple[float, bytes, bytes | None]]:
    """``(offset_s, line, key)`` per line: event times shifted so the first is ``start``.

    A line's event time is the one validation gives it (``event_time``: its
    ``timestamp``, else Segment's derived time), written back as its ``timestamp``.
    Lines without one go out as they are (the worker dead-letters them), at the offset
    of the line before. The key is ``userId`` else ``anonymousId``.
    """
    first: datetime | None = None
    out: list[tuple[float, bytes, bytes | None]] = []
    offset = 0.0
    for line in lines:
        at = event_time(line)
        if at is None:
            out.append((offset, line, None))
            continue
        obj = orjson.loads(line.removeprefix(b"\xef\xbb\xbf"))
        ts = datetime.fromtimestamp(at, UTC)
        first = first or ts
        offset = max(offset, (ts - first).total_seconds())
        shifted = start + (ts - first)
        obj["timestamp"] = shifted.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        uid = obj.get("userId") or obj.get("anonymousId")
        key = str(uid).encode() if isinstance(uid, str | int) and uid != "" else None
        out.append((offset, owned(orjson.dumps(obj)), key))  # kept for the whole feed
    return out


def feed(
    bootstrap: str,
    schedule: list[tuple[float, bytes, bytes | None]],
    speed: float,
    seen: Seen,
    stop: threading.Event,
) -> None:
    """Produce each line when its re-timed moment comes, until done or stopped."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    began = time.monotonic()

    def stored(err: KafkaError | None, _msg: object) -> None:
        if err is None:
            with seen.lock:
                seen.stored += 1

    try:
        for offset, line, key in schedule:
            due = began + offset / speed
            while not stop.is_set() and time.monotonic() < due:
                producer.poll(min(0.1, max(0.0, due - time.monotonic())))
            if stop.is_set():
                return
            producer.produce(INPUT_TOPIC, line, key, on_delivery=stored)
            producer.poll(0)
            with seen.lock:
                seen.fed += 1
    finally:
        producer.flush(5)


def read_outputs(
    bootstrap: str, out: Path, seen: Seen, stop: threading.Event, done: threading.Event
) -> None:
    """Read every output topic from the start (``assign()``), copying records to files."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "audienceflow-live-view",  # required by the client, never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            "auto.offset.reset": "earliest",
        }
    )
    by_topic = {topic: name for name, topic in OUTPUTS.items()}
    # Offset 0, not OFFSET_BEGINNING: the local broker's ListOffsets(earliest) can skip
    # the first batch when several producers write (local_servers' docstring).
    consumer.assign([TopicPartition(t, p, 0) for t in by_topic for p in range(PARTITIONS)])
    files = {name: (out / f"{name}.jsonl").open("ab") for name in OUTPUTS}
    at_end: set[tuple[str, int]] = set()
    try:
        # After a stop, read on until every partition is at its end (the drain's outputs).
        while not (done.is_set() and len(at_end) == len(by_topic) * PARTITIONS):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
                continue
            at_end.discard((msg.topic(), msg.partition()))
            name = by_topic[msg.topic()]
            value = msg.value() or b""
            files[name].write(value + b"\n")
            _note(seen, name, value)
    finally:
        for fh in files.values():
            fh.close()
        consumer.close()


def _note(seen: Seen, name: str, value: bytes) -> None:
    try:
        rec = orjson.loads(value)
    except orjson.JSONDecodeError:
        return
    with seen.lock:
        seen.out[name] += 1
        if name == "segment_changes":
            seen.changes[(str(rec.get("segment")), str(rec.get("change")))] += 1
            seen.recent.append(
                f"{rec.get('ts', '')[11:19]} {rec.get('user_id')} "
                f"{rec.get('change')}s {rec.get('segment')}"
            )
        elif name == "actions":
            seen.actions[(str(rec.get("action")), str(rec.get("status")))] += 1
            seen.recent.append(
                f"{rec.get('ts', '')[11:19]} {rec.get('user_id')} → action {rec.get('action')}"
            )


def metrics_text(port: int) -> str | None:
    """The worker's ``/metrics`` page; None when unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def scrape(port: int) -> dict[str, float]:
    """The worker's counters we show, summed over labels; empty when unreachable."""
    text = metrics_text(port)
    if text is None:
        return {}
    wanted = (
        "audienceflow_events_in_total",
        "audienceflow_events_processed_total",
        "audienceflow_dead_lettered_total",
        "audienceflow_input_lag",
        "audienceflow_profile_writes_total",
    )
    found: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def view(seen: Seen, speed: float, elapsed: float) -> Group:
    with seen.lock:
        m, r = dict(seen.metrics), dict(seen.rates)
        head = Table.grid(padding=(0, 3))
        head.add_row(
            f"[b]{elapsed:5.0f}s[/b] at x{speed:g}",
            f"fed [b]{seen.fed}[/b] (event time {seen.fed_until})",
            f"in [b]{r.get('in', 0):.1f}[/b]/s",
            f"out [b]{r.get('out', 0):.1f}[/b]/s",
            f"lag [b]{m.get('audienceflow_input_lag', 0):.0f}[/b]",
        )
        head.add_row(
            f"read {m.get('audienceflow_events_in_total', 0):.0f}",
            f"processed {m.get('audienceflow_events_processed_total', 0):.0f}",
            f"dead letters {m.get('audienceflow_dead_lettered_total', 0):.0f}",
            f"sessions {seen.out['sessions']}",
            f"profiles written {m.get('audienceflow_profile_writes_total', 0):.0f}",
        )
        segs = Table("segment", "enters", "exits", title="segments", title_justify="left")
        for seg in sorted({s for s, _ in seen.changes})[:12]:
            segs.add_row(seg, str(seen.changes[(seg, "enter")]), str(seen.changes[(seg, "exit")]))
        acts = Table("action", "status", "count", title="actions", title_justify="left")
        for (action, status), n in sorted(seen.actions.items())[:8]:
            acts.add_row(action, status, str(n))
        feed_table = Table("as they happen", show_header=True, title_justify="left")
        for line in seen.recent:
            feed_table.add_row(line)
    row = Table.grid(padding=(0, 2))
    row.add_row(segs, acts, feed_table)
    return Group(head, row)


def plain_line(seen: Seen, elapsed: float) -> str:
    with seen.lock:
        m, r = seen.metrics, seen.rates
        return (
            f"{elapsed:5.1f}s fed={seen.fed} in/s={r.get('in', 0):.1f} out/s={r.get('out', 0):.1f} "
            f"read={m.get('audienceflow_events_in_total', 0):.0f} "
            f"lag={m.get('audienceflow_input_lag', 0):.0f} "
            f"changes={seen.out['segment_changes']} actions={seen.out['actions']} "
            f"sessions={seen.out['sessions']} dead_letters={seen.out['dead_letters']}"
        )


def worker_config(out: Path, brokers: str, redis_url: str, metrics_port: int) -> Path:
    """The demo config plus the worker's sections, written to ``OUT/config.yaml``."""
    base = yaml.safe_load(DEMO_CONFIG.read_text()) or {}
    truth = base.get("models", {}).get("evaluation", {}).get("truth")
    if truth and not Path(truth).is_absolute():
        base["models"]["evaluation"]["truth"] = str(ROOT / truth)
    sections = {
        "kafka": {
            "brokers": brokers,
            "input_topic": INPUT_TOPIC,
            "control_topic": CONTROL_TOPIC,
            "topics": OUTPUTS,
            "partitions": PARTITIONS,
            "batch_size": 500,
        },
        "redis": {"url": redis_url, "key_prefix": "live:profile:"},
        "recovery": {"dir": str(out / "recovery"), "snapshot_interval": "5s"},
        "metrics": {"port": metrics_port, "host": "127.0.0.1"},
        # The feed runs event time ahead of the wall clock (an hour a minute at speed 60):
        # partitions' time may follow it up to ``max_future``, where it would stop at the
        # wall by default (time.max_lead, see README "Time").
        "time": {**base.get("time", {}), "max_lead": "7d"},
    }
    path = out / "config.yaml"
    path.write_text(
        "# Written by `make live` (python -m audienceflow.flows.live): the demo config\n"
        "# plus the local broker, Redis, recovery and metrics of this run.\n"
        + yaml.safe_dump({**base, **sections}, sort_keys=False)
    )
    return path


def dump_profiles(redis_url: str, path: Path) -> int:
    import redis

    from audienceflow.flows.redis_store import decode

    client = redis.Redis.from_url(redis_url)
    n = 0
    try:
        with path.open("wb") as fh:
            for key in sorted(client.scan_iter(match="live:profile:*", count=1000)):
                fields = decode(client.hgetall(key))  # type: ignore[arg-type]
                fh.write(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS) + b"\n")
                n += 1
    finally:
        client.close()
    return n


def _stream_lines() -> list[bytes]:
    with gzip.open(STREAM, "rb") as fh:
        return [ln.rstrip(b"\r\n") for ln in fh if ln.strip()]


def catch_up_wait(idle_after: float, partitions: int = PARTITIONS) -> float:
    """How long the worker may take to read what was fed, once the feed has stopped.

    ``CATCH_UP_S``, plus ``time.idle_after`` per partition after the first: a partition
    more than ``time.align_within`` of event time ahead of the slowest one still active
    pauses until that one turns idle, ``idle_after`` after it last delivered (README,
    Balanced reading), and the next slowest, let go, reads its rest and holds the others
    back in turn. The feed runs event time ``--speed`` times faster than the wall clock,
    so at a high speed the partitions' last events lie hours apart: measured at
    ``--speed 100000``, 1 s, the last messages were read 10, 20 or 30 s after the feed
    stopped, one ``idle_after`` per partition let go.

    >>> catch_up_wait(10.0, 4)
    45.0
    """
    return CATCH_UP_S + max(0, partitions - 1) * idle_after


_LABELLED = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)


def held_back(text: str, topic: str, align_within: float, idle_after: float) -> str:
    """Where the fed messages the worker has not read wait, from its ``/metrics`` ``text``:
    each input partition's lag, and, when its partitions' event times are more than
    ``align_within`` apart, that alignment holds them (``catch_up_wait``). Empty when no
    partition shows a lag.

    >>> held_back('audienceflow_input_lag{topic="t",partition="3"} 6.0', "t", 600, 10)
    ' They wait on the broker, in partition 3 (6) by the last look at its metrics.'
    """
    lags: dict[int, int] = {}
    spread = 0.0
    for name, labels, value in _LABELLED.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("topic") != topic:
            continue
        if name == "audienceflow_input_lag" and float(value) > 0:
            lags[int(found["partition"])] = int(float(value))
        elif name == "audienceflow_watermark_spread_seconds":
            spread = float(value)
    if not lags:
        return ""
    where = ", ".join(f"{p} ({n})" for p, n in sorted(lags.items()))
    text = (
        f" They wait on the broker, in partition{'s' if len(lags) > 1 else ''} {where} "
        "by the last look at its metrics."
    )
    if spread > align_within:
        text += (
            f" Alignment held them back: the partitions it reads were {spread:.0f} s of "
            f"event time apart, and one more than time.align_within ({align_within:g} s) "
            "ahead of a slower one pauses until that one turns idle, time.idle_after "
            f"({idle_after:g} s) after it last delivered (README, Balanced reading); a "
            "lower --speed keeps the partitions' event times closer."
        )
    return text


def catch_up(
    seen: Seen,
    scrape_read: Callable[[], float | None],
    running: Callable[[], bool],
    wait: float,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait up to ``wait`` seconds (the feed has stopped) until the worker has read every
    message the broker stored; whether it has. ``scrape_read``: its count of messages
    read (``EVENTS_IN``), None when its metrics do not answer."""
    deadline = clock() + wait
    while True:
        read = scrape_read()
        with seen.lock:
            if read is not None:
                seen.metrics[EVENTS_IN] = read
            stored = seen.stored
        if read is not None and read >= stored:
            return True
        if clock() >= deadline or not running():
            return False
        pause(0.2)


_READ_AT_STOP = re.compile(r"(?:stopped|input finished): events in (\d+),")


def read_at_stop(log: str) -> int | None:
    """The messages the worker read, from its closing log line (the last in ``log``).

    >>> read_at_stop("x INFO audienceflow.worker: stopped: events in 1204, processed 1190")
    1204
    >>> read_at_stop("killed before it logged anything") is None
    True
    """
    found = _READ_AT_STOP.findall(log)
    return int(found[-1]) if found else None


def unread_report(
    fed: int, stored: int, read: int | None, last_seen: float | None, held: str = ""
) -> str:
    """What the closing lines say of the fed messages the worker did not read.

    ``read``: its own count at its stop (exact); else ``last_seen``, its metrics' count
    before the stop (it may have read more since: the remainder is at most that);
    ``held``: where they waited (``held_back``), said when some were not read.

    >>> unread_report(10, 10, 10, None)
    'the worker read all 10 fed messages before it stopped.'
    """
    count = read if read is not None else None if last_seen is None else int(last_seen)
    if count is None:
        text = f"not known how many of the {stored} fed messages the worker read (no count)"
    elif count >= stored:
        text = f"the worker read all {stored} fed messages before it stopped"
    else:
        upto, when = ("", "") if read is not None else ("up to ", " at the last look")
        text = (
            f"{upto}{stored - count} of the {stored} fed messages were not read by the worker "
            f"when it stopped (it had read {count}{when}): no outputs came of them"
        )
    if fed > stored:
        text += f"; {fed - stored} more were never stored by the broker"
    return text + "." + (held if count is None or count < stored else "")


class Stack:
    """The processes this run started, stopped in reverse order whatever happens."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.servers: list[ls.Server] = []
        self.worker: Any = None
        self.worker_log: Any = None

    def stop_worker(self) -> int | None:
        w = self.worker
        if w is None:
            return None
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)  # drain: flush outputs, last snapshot
            try:
                w.wait(_DRAIN_S)
            except Exception:
                self.console.print(f"worker did not stop in {_DRAIN_S:g}s: killing it")
                w.kill()
                w.wait()
        if self.worker_log is not None:
            self.worker_log.close()
        return int(w.returncode)

    def stop_all(self) -> None:
        self.stop_worker()
        for server in reversed(self.servers):
            ls.stop(server)


def run(args: argparse.Namespace, console: Console) -> int:
    import subprocess

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (out / f"{name}.jsonl").unlink(missing_ok=True)
    # A fresh broker has none of the offsets an old snapshot would resume at.
    shutil.rmtree(out / "recovery", ignore_errors=True)
    stack = Stack(console)
    stop = threading.Event()
    done = threading.Event()
    seen = Seen()
    threads: list[threading.Thread] = []
    interrupted = False
    code = 0
    log_from = 0
    held = ""
    try:
        kafka = ls.start_kafka(out / "servers")
        stack.servers.append(kafka)
        console.print(f"broker  tansu pid {kafka.process.pid} at {kafka.address}")
        redis_srv = ls.start_redis(out / "servers")
        stack.servers.append(redis_srv)
        console.print(f"redis   valkey pid {redis_srv.process.pid} at {redis_srv.address}")
        ls.create_topics(kafka.address, [INPUT_TOPIC, CONTROL_TOPIC, *OUTPUTS.values()], PARTITIONS)
        port = ls.free_port()
        cfg = worker_config(out, kafka.address, redis_srv.address, port)
        stack.worker_log = (out / "worker.log").open("ab")
        log_from = stack.worker_log.tell()  # this run's part of the log
        salt = os.environ.get("AUDIENCEFLOW_PII_SALT") or "make-live-local-salt"
        env = {**os.environ, "AUDIENCEFLOW_PII_SALT": salt}
        stack.worker = subprocess.Popen(
            [sys.executable, "-m", "audienceflow.flows.cli", "run", "--config", str(cfg)],
            stdout=stack.worker_log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches this process only; the worker gets SIGTERM
        )
        console.print(f"worker  pid {stack.worker.pid}, metrics http://127.0.0.1:{port}/metrics")
        deadline = time.monotonic() + 60
        while not scrape(port):
            if stack.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker did not start; its log {out / 'worker.log'} ends:\n"
                    + ls.log_tail(out / "worker.log")
                )
            time.sleep(0.1)
        # As the worker reads it (it started: the config is valid): its times bound the wait.
        settings = Settings.load(cfg, env)
        wait = catch_up_wait(settings.idle_after)
        start = datetime.now(UTC)
        schedule = retimed(_stream_lines(), start)
        threads = [
            threading.Thread(
                target=feed, args=(kafka.address, schedule, args.speed, seen, stop), daemon=True
            ),
            threading.Thread(
                target=read_outputs, args=(kafka.address, out, seen, stop, done), daemon=True
            ),
        ]
        for t in threads:
            t.start()
        interrupted = _watch(args, seen, port, stack, console, start)
        stop.set()  # the feed ends; the worker reads what it was fed, for a while
        threads[0].join(10)
        with seen.lock:
            behind = seen.stored - int(seen.metrics.get(EVENTS_IN, 0))
        if behind > 0:
            console.print(
                f"feed stopped: waiting up to {wait:g}s for the worker to read the "
                f"{behind} fed messages it has not read yet"
            )
        caught_up = catch_up(
            seen,
            lambda: scrape(port).get(EVENTS_IN),
            lambda: stack.worker.poll() is None,
            wait,
        )
        if behind > 0 and caught_up:
            console.print("the worker has read every fed message")
        elif not caught_up:
            text = metrics_text(port) or ""
            held = held_back(text, INPUT_TOPIC, settings.align_within, settings.idle_after)
    except KeyboardInterrupt:
        interrupted = True
    except (RuntimeError, FileNotFoundError) as exc:
        console.print(f"[red]make live failed[/red] {exc}", highlight=False)
        code = 1
    finally:
        stop.set()
        with _ignoring_sigint():
            rc = stack.stop_worker()
            read = read_at_stop(_log_since(out / "worker.log", log_from))
            done.set()
            for t in threads:
                t.join(30)
            profiles = 0
            if len(stack.servers) == 2:
                try:
                    profiles = dump_profiles(stack.servers[1].address, out / "profiles.jsonl")
                except Exception as exc:  # Redis gone: the files above are still there
                    console.print(f"profiles not saved: {exc}")
            stack.stop_all()
    if rc not in (None, 0):
        console.print(f"[red]worker exited {rc}[/red]; see {out / 'worker.log'}")
        code = code or 1
    console.print(
        f"{'interrupted' if interrupted else 'finished'}: stopped the worker"
        f"{f' (exit {rc})' if rc is not None else ''}, Redis and the broker."
    )
    if rc is not None:
        with seen.lock:
            fed, stored, last = seen.fed, seen.stored, seen.metrics.get(EVENTS_IN)
        console.print(unread_report(fed, stored, read, last, held), highlight=False, soft_wrap=True)
    console.print(f"outputs in {out}/: " + ", ".join(f"{n}.jsonl" for n in OUTPUTS), soft_wrap=True)
    console.print(
        f"  profiles.jsonl ({profiles} profiles), worker.log, config.yaml, recovery/, servers/"
    )
    return code


def _log_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


class _ignoring_sigint:
    """A second Ctrl-C or SIGTERM must not leave servers running: shutdown goes on."""

    def __enter__(self) -> None:
        self.old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc: object) -> None:
        for s, old in self.old.items():
            signal.signal(s, old)


def _watch(
    args: argparse.Namespace,
    seen: Seen,
    port: int,
    stack: Stack,
    console: Console,
    start: datetime,
) -> bool:
    """Refresh the view until the duration ends (False) or Ctrl-C (KeyboardInterrupt)."""
    began = time.monotonic()
    last: tuple[float, float, int] | None = None
    interactive = console.is_terminal and not args.plain

    def tick() -> float:
        nonlocal last
        now = time.monotonic()
        found = scrape(port)
        with seen.lock:
            total_out = sum(seen.out.values())
            if found:
                seen.metrics = found
            if last is not None and now > last[0]:
                dt = now - last[0]
                seen.rates = {
                    "in": (seen.metrics.get("audienceflow_events_in_total", 0) - last[1]) / dt,
                    "out": (total_out - last[2]) / dt,
                }
            last = (now, seen.metrics.get("audienceflow_events_in_total", 0), total_out)
        return now - began

    def over() -> bool:
        if stack.worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {stack.worker.returncode}")
        return args.duration is not None and time.monotonic() - began >= args.duration

    if interactive:
        with Live(view(seen, args.speed, 0), console=console, refresh_per_second=4) as live:
            while not over():
                live.update(view(seen, args.speed, tick()))
                time.sleep(0.5)
    else:
        while not over():
            console.print(plain_line(seen, tick()), highlight=False, soft_wrap=True)
            time.sleep(1.0)
    tick()
    console.print(plain_line(seen, time.monotonic() - began), highlight=False, soft_wrap=True)
    return False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m audienceflow.flows.live",
        description="Run broker, Redis and the worker locally, feed the bundled stream, watch.",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="recorded seconds per wall second (default 60: an hour of traffic a minute)",
    )
    p.add_argument(
        "--duration",
        type=parse_duration,
        help="stop feeding after this long, e.g. 8s or 2m, and stop once the worker has read"
        f" what was fed (at most {CATCH_UP_S:g}s + {PARTITIONS - 1} x time.idle_after later:"
        " alignment; default: until Ctrl-C)",
    )
    p.add_argument("--out", default="out/live", help="where outputs and logs go (out/live)")
    p.add_argument(
        "--plain", action="store_true", help="a status line per second instead of the live view"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.speed <= 0:
        raise SystemExit("--speed must be > 0")
    # Python's Ctrl-C handler (KeyboardInterrupt, whatever the signal) for both: a SIGINT
    # inherited as ignored would leave only SIGKILL, and SIGTERM's default (exit at once)
    # would leave the broker, Redis and worker running in their own sessions.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    return run(args, Console())


if __name__ == "__main__":
    sys.exit(main())
