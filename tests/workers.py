"""Running `audienceflow run` as a subprocess in tests, and reading what it wrote.

Outputs are read back as an independent subscriber would: a plain confluent-kafka
consumer per topic (`servers.consume_all`), and Redis hashes by key prefix.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis
import servers
import yaml

ROOT = Path(__file__).resolve().parents[1]
STREAM = ROOT / "examples" / "stream.jsonl.gz"
CLI = str(Path(sys.executable).parent / "audienceflow")
OUTPUTS = ("segment_changes", "actions", "sessions", "dead_letters")

T = TypeVar("T")


def stream_lines() -> list[bytes]:
    """The bundled stream's non-blank lines, in order (what a replay reads)."""
    with gzip.open(STREAM, "rb") as fh:
        return [ln.rstrip(b"\r\n") for ln in fh if ln.strip()]


def poll(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call `check` until it returns something truthy; raise TimeoutError at the deadline
    (with ``on_timeout()``, e.g. a log tail, in the message)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()[-3000:]}" if on_timeout is not None else ""
            raise TimeoutError(f"{what}: not after {timeout}s{extra}")
        time.sleep(0.05)


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    """A worker config; a test salt unless the test sets privacy itself (run needs one)."""
    sections.setdefault("privacy", {"salt": "test-salt-not-secret"})
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


class Worker:
    """One `audienceflow run` process; its stderr (the log) goes to a file."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [CLI, "run", "--config", str(config), *args], stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"worker still running after {timeout}s; log:\n{self.log()[-3000:]}"
            ) from None
        finally:
            self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


def metric(port: int, name: str, attempts: int = 3) -> float | None:
    """A sample's value from the worker's /metrics (summed over labels), None if unreachable.

    Tried ``attempts`` times, 3 s each: a worker busy with a batch answers late on a
    loaded machine, and a single slow scrape must not read as a missing metric. A refused
    connection (nothing listening yet) is None at once, so loops that wait for a worker
    to start keep their pace.

    Only the sample asked for is scraped (Prometheus' ``name[]`` filter): the whole
    text (~20 KB, every shard's and partition's series) cost the worker 5-7 ms of CPU
    per scrape, which the Kafka bench, scraping twice a second, counted as the worker's.
    """
    sample = urllib.parse.quote(name.split("{", 1)[0])
    for attempt in range(attempts):
        try:
            url = f"http://127.0.0.1:{port}/metrics?name[]={sample}"
            with urllib.request.urlopen(url, timeout=3) as resp:
                text = resp.read().decode()
            break
        except OSError as exc:
            refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
            if refused or attempt == attempts - 1:
                return None
            time.sleep(0.2)
    found = None
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            found = (found or 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def kafka_outputs(
    bootstrap: str, topics: dict[str, str], timeout: float = 20.0
) -> dict[str, list[servers.Record]]:
    return {name: servers.consume_all(bootstrap, topics[name], timeout=timeout) for name in OUTPUTS}


def values(records: list[servers.Record]) -> list[bytes]:
    return [v for _, v, _ in records if v is not None]


def replay_outputs(out: Path) -> dict[str, list[bytes]]:
    """A replay's files as the worker would publish them: delivered actions only."""
    found = {name: (out / f"{name}.jsonl").read_bytes().splitlines() for name in OUTPUTS}
    found["actions"] = [a for a in found["actions"] if orjson.loads(a)["status"] == "delivered"]
    return found


def line_number(position: str) -> int:
    """`stream.jsonl.gz:17` → 17; `topic:0:16` (offset 16 of a one-partition topic) → 17."""
    parts = position.split(":")
    return int(parts[-1]) + (1 if len(parts) == 3 else 0)


def same_position_scheme(dead_letter: bytes) -> bytes:
    """A dead letter with its position as the input line number, for replay/worker comparison."""
    rec = orjson.loads(dead_letter)
    rec["position"] = line_number(rec["position"])
    return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)


def comparable(found: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """Sorted, dead-letter positions as line numbers: equal inputs give equal values."""
    out = {name: sorted(found[name]) for name in OUTPUTS}
    out["dead_letters"] = sorted(same_position_scheme(d) for d in found["dead_letters"])
    return out


def redis_profiles(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    from audienceflow.flows.redis_store import decode

    client = redis.Redis.from_url(url)
    try:
        return {
            key.decode()[len(prefix) :]: decode(client.hgetall(key))
            for key in client.scan_iter(match=f"{prefix}*", count=1000)
        }
    finally:
        client.close()


def replay_profiles(out: Path) -> dict[str, dict[str, Any]]:
    rows = [orjson.loads(ln) for ln in (out / "profiles.jsonl").read_bytes().splitlines()]
    return {row["user_id"]: row for row in rows}


def committed_input_offset(recovery_dir: Path, step: str = "audienceflow.input") -> int | None:
    """The input offset of the newest snapshot every recovery partition has committed, if any.

    Reads Bytewax 0.21's partition schema (tables `commits`, `snaps`): a snapshot of
    epoch E is durable once every partition has committed epoch E.
    """
    import pickle
    import sqlite3

    commits: list[int] = []
    snaps: list[tuple[int, bytes | None]] = []
    for part in sorted(recovery_dir.glob("part-*.sqlite3")):
        db = sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1)
        try:
            commits.append(db.execute("SELECT max(commit_epoch) FROM commits").fetchone()[0] or 0)
            # Input partitions are keyed by their number; control partitions by topic:number.
            snaps += [
                (epoch, ser)
                for key, epoch, ser in db.execute(
                    "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ?",
                    (step,),
                ).fetchall()
                if ":" not in key
            ]
        except sqlite3.Error:
            return None
        finally:
            db.close()
    if not commits:
        return None
    safe = [(epoch, ser) for epoch, ser in snaps if epoch <= min(commits) and ser is not None]
    if not safe:
        return None
    offset = pickle.loads(max(safe)[1])[0]  # (next offset, its clock, its topic)
    return int(offset)


def user_key(line: bytes) -> bytes | None:
    """The partitioning key a forwarder uses: userId, else anonymousId (None: unparseable)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    uid = obj.get("userId") or obj.get("anonymousId")
    return uid.encode() if isinstance(uid, str) and uid else None
