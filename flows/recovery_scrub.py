"""Scrubbing a running worker's recovery partitions once a deletion is snapshotted.

Bytewax writes each snapshot to a recovery partition (SQLite, write-ahead log) and
deletes the superseded ones, but their bytes stay in the partition's log
(``part-N.sqlite3-wal``) until SQLite happens to overwrite those frames, and in the
file's free pages: a person erased by a request would stay readable on disk for as
long as the worker runs. After a deletion's receipt, a child process of the worker
waits until the snapshot that purged the person has been committed and the older ones
collected (``recovery.snapshot_interval``, ``recovery.backup_interval``), then, from a
connection of its own, rewrites each partition without its free space (``VACUUM``) and
empties the log into it (``wal_checkpoint(TRUNCATE)``).

The scrub runs in a child process (``python -m audienceflow.flows.recovery_scrub
DIR ...``), never in the worker's own: Bytewax links its own copy of SQLite
(3.44, in its extension) and Python's ``sqlite3`` another, and POSIX locks are per
process, so two copies in one process do not exclude each other, and closing one's
file drops the other's locks (sqlite.org/howtocorrupt.html, 2.2): measured, a
checkpoint from a thread of the worker stalled its dataflow for good. The worker
tells the child of each deletion on its stdin; the child's warnings come back on its
stdout and the worker logs them.

Bytewax's connection waits ``BYTEWAX_BUSY_S`` for a lock and then panics (the worker
fails): a scrub holds the write lock for one ``VACUUM`` of one partition, so it waits
for Bytewax's writes at most ``SCRUB_BUSY_S`` and gives up (a warning naming the
partition, and another try at the next commit) rather than hold Bytewax up.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("audienceflow.worker")

BYTEWAX_BUSY_S = 5.0  # Bytewax 0.21.1 opens its partitions with busy_timeout 5000 (ms)
SCRUB_BUSY_S = 1.0  # how long a scrub waits for Bytewax's writes before trying later
# A VACUUM holds Bytewax's writes up for its whole run: measured ~14 ms per MB of
# partition on a 2-core machine, so 64 MB keeps it near 1 s, well inside BYTEWAX_BUSY_S.
# A larger partition gets the checkpoint alone (its free pages wait for the compaction
# at exit) and a warning.
VACUUM_MAX = 64 << 20
COMMITS_AFTER = 3  # scrub at each of this many commits after the first, at least
INTERVALS_AFTER = 3.0  # and for this many snapshot intervals after the receipt


def commit_epoch(part: Path) -> int | None:
    """The newest epoch the partition records as committed (None: none yet)."""
    db = sqlite3.connect(part, timeout=SCRUB_BUSY_S, isolation_level=None)
    try:
        row = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
    finally:
        db.close()
    return None if row is None or row[0] is None else int(row[0])


def scrub(part: Path, vacuum_max: int = VACUUM_MAX) -> bool:
    """Empty ``part``'s write-ahead log into it; first rewrite it without free pages
    (``VACUUM``) if it is at most ``vacuum_max`` bytes. True if it was rewritten.

    Raises ``sqlite3.Error`` (e.g. Bytewax held the lock longer than ``SCRUB_BUSY_S``),
    or ``RuntimeError`` when the log could not be emptied (a reader kept it).
    """
    vacuum = part.stat().st_size <= vacuum_max
    db = sqlite3.connect(part, timeout=SCRUB_BUSY_S, isolation_level=None)
    try:
        if vacuum:
            db.execute("VACUUM")
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        db.close()
    if busy:
        raise RuntimeError("its write-ahead log is in use")
    return vacuum


class RecoveryScrubber:
    """After each deletion's receipt (``deleted()``), scrub every partition in ``directory``
    at each commit from the one that collected the person's last snapshot, for
    ``COMMITS_AFTER`` commits and ``INTERVALS_AFTER`` snapshot intervals at least.

    Commit epochs tell when: the receipt comes in the epoch ``e`` whose snapshot purges
    the person, and Bytewax drops the older snapshots at commit ``e + B`` (``B``: the
    backup interval in epochs). The commit ``C`` read after the receipt is usually
    ``e - 1`` (``e`` or later if the child woke late: then the first scrub is after the
    drop anyway), so the scrubs come at commits ``C + B + 1`` to ``C + B + 1 +
    COMMITS_AFTER``, and at every commit for ``INTERVALS_AFTER`` snapshot intervals
    beyond the backup interval: commits lagging more than that behind the epoch being
    processed (a cluster behind a slow process) could close the window too early.
    """

    def __init__(
        self,
        directory: Path,
        snapshot_interval: float,
        backup_interval: float,
        warn: Callable[[str], None] = log.warning,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.warn = warn
        self.clock = clock
        self.snapshot_interval = snapshot_interval
        self.backup_interval = backup_interval
        self.backup_epochs = math.ceil(backup_interval / snapshot_interval)
        self._asked: list[float] = []  # monotonic times of receipts not yet seen by the thread
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        # The open window: scrub at each commit in [first, last], and until ``until``.
        self._first: int | None = None
        self._last = -1
        self._until = 0.0
        self._scrubbed = -1  # the commit epoch of the last complete scrub
        self.scrubs = 0  # complete scrubs of every partition (for tests and the log)
        self._too_large: set[str] = set()  # partitions warned of (once each)

    def deleted(self) -> None:
        """A deletion was applied (its receipt is being written). No I/O: the caller is the
        dataflow's thread."""
        with self._lock:
            self._asked.append(self.clock())
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audienceflow-scrub", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (after the scrub it may be doing)."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.snapshot_interval / 2)
            self._wake.clear()
            if self._closing.is_set():
                return
            try:
                self.step()
            except Exception as exc:  # never the worker's end: the next step tries again
                self.warn(f"recovery scrub failed: {exc}")

    def parts(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.sqlite3"))

    def step(self) -> None:
        """Open a window for new receipts; scrub if a new commit falls in the open one."""
        with self._lock:
            asked, self._asked = self._asked, []
        if not asked and self._first is None:
            return
        parts = self.parts()
        commit = max((c for p in parts if (c := self._commit(p)) is not None), default=-1)
        for at in asked:
            first = commit + self.backup_epochs + 1
            self._first = first if self._first is None else min(self._first, first)
            self._last = max(self._last, first + COMMITS_AFTER)
            self._until = max(
                self._until, at + self.backup_interval + INTERVALS_AFTER * self.snapshot_interval
            )
        if self._first is None or commit < self._first or commit <= self._scrubbed:
            return
        failed = 0
        for part in parts:
            try:
                if not scrub(part) and part.name not in self._too_large:
                    self._too_large.add(part.name)
                    self.warn(
                        f"recovery partition {part.name} is over {VACUUM_MAX >> 20} MB: "
                        "after a deletion its log is emptied, but its free pages are "
                        "rewritten only when the worker exits"
                    )
            except (sqlite3.Error, RuntimeError) as exc:
                failed += 1
                self.warn(f"recovery partition {part.name} not scrubbed (tried again): {exc}")
        if failed:
            return
        self._scrubbed = commit
        self.scrubs += 1
        if commit >= self._last and self.clock() >= self._until:
            self._first = None  # the window is closed: nothing left to scrub

    def _commit(self, part: Path) -> int | None:
        try:
            return commit_epoch(part)
        except sqlite3.Error as exc:
            self.warn(f"recovery partition {part.name}: commit epoch not read: {exc}")
            return None


class ScrubProcess:
    """The worker's side: a child process running ``RecoveryScrubber`` on ``directory``
    (module docstring); ``deleted()`` tells it of a deletion, from any thread, without
    I/O on the caller's."""

    def __init__(self, directory: Path, snapshot_interval: float, backup_interval: float) -> None:
        self.args = [str(directory), repr(snapshot_interval), repr(backup_interval)]
        self._wake = threading.Event()
        self._closing = False
        self._child: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "audienceflow.flows.recovery_scrub", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for target, name in ((self._tell, "scrub-tell"), (self._hear, "scrub-hear")):
            thread = threading.Thread(target=target, name=f"audienceflow-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def deleted(self) -> None:
        self._wake.set()

    def close(self, timeout: float = 30.0) -> None:
        """Let the child finish the scrub it may be doing, and end it."""
        self._closing = True
        self._wake.set()
        child = self._child
        if child is None:
            return
        for thread in self._threads:
            thread.join(timeout)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("recovery scrub process did not end: killed")
            child.kill()
            child.wait()

    def _tell(self) -> None:
        assert self._child is not None and self._child.stdin is not None
        stdin = self._child.stdin
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closing:
                    break
                stdin.write(b"deleted\n")
                stdin.flush()
        except OSError as exc:  # the child died: its stdout says why, or nothing does
            log.warning("recovery scrub process gone (%s): deletions are not scrubbed", exc)
        finally:
            with contextlib.suppress(OSError):
                stdin.close()  # the child's end of input: it stops

    def _hear(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        for line in self._child.stdout:
            log.warning("%s", line.decode(errors="replace").rstrip())


def main(argv: list[str]) -> None:
    """The child: ``DIR SNAPSHOT_S BACKUP_S``; one line ``deleted`` on stdin per deletion,
    a warning per line on stdout; ends at the end of its stdin."""
    directory, snapshot_s, backup_s = Path(argv[0]), float(argv[1]), float(argv[2])

    def warn(text: str) -> None:
        sys.stdout.write(text.replace("\n", " ") + "\n")
        sys.stdout.flush()

    scrubber = RecoveryScrubber(directory, snapshot_s, backup_s, warn)
    scrubber.start()
    for _ in sys.stdin.buffer:
        scrubber.deleted()
    scrubber.close()


if __name__ == "__main__":
    main(sys.argv[1:])
