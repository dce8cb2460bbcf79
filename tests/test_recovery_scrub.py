"""The recovery scrub on a real partition: after it, neither the partition file (free
pages included) nor its write-ahead log holds a superseded snapshot's bytes.

The partition is made by Bytewax (``init_db_dir``) and written as Bytewax writes it: a
connection in WAL mode, without secure deletion, that stays open, a newer snapshot of
the shard, then the older one deleted (its garbage collection). Bytewax's own
connection cannot be used here: it links its own SQLite, which must not share a
process with Python's (the worker scrubs from a child process for that reason).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from audienceflow.flows import recovery_scrub
from audienceflow.flows.recovery_scrub import RecoveryScrubber, scrub

PERSON = b"person-4711"
INSERT = "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)"


def state(n: int, person: bool) -> bytes:
    """A shard's snapshot of ``n`` users (overflow pages, as real ones need), with or
    without the person."""
    users = b"".join(b"user-%06d:%s;" % (i, b"x" * 40) for i in range(n))
    return users + (PERSON if person else b"") + users


def written(tmp_path: Path) -> tuple[Path, sqlite3.Connection]:
    init_db_dir(tmp_path, 1)
    part = tmp_path / "part-0.sqlite3"
    db = sqlite3.connect(part, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # Bytewax's SQLite is built without SECURE_DELETE, Debian's (Python's here) with it:
    # deleted rows keep their bytes only as Bytewax writes them.
    db.execute("PRAGMA secure_delete=OFF")
    db.execute(INSERT, ("audienceflow.profiles", "shard-000", 1, state(400, person=True)))
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # as SQLite's auto-checkpoint would
    db.execute(INSERT, ("audienceflow.profiles", "shard-000", 2, state(400, person=False)))
    db.execute("DELETE FROM snaps WHERE snap_epoch < 2")
    return part, db


def naming(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if PERSON in p.read_bytes())


def test_a_scrub_leaves_no_byte_of_a_superseded_snapshot_in_the_partition_or_its_log(
    tmp_path: Path,
) -> None:
    part, db = written(tmp_path)
    try:
        assert "part-0.sqlite3" in naming(tmp_path)  # the old snapshot, in free pages
        assert scrub(part) is True
        assert naming(tmp_path) == []
        assert (tmp_path / "part-0.sqlite3-wal").stat().st_size == 0
        # The writer's connection (Bytewax's) goes on, and the newest snapshot is intact.
        db.execute(INSERT, ("audienceflow.profiles", "shard-000", 3, b"next"))
        rows = db.execute("SELECT snap_epoch, ser_change FROM snaps ORDER BY 1").fetchall()
        assert rows == [(2, state(400, person=False)), (3, b"next")]
    finally:
        db.close()


def test_a_partition_over_the_vacuum_bound_has_only_its_log_emptied(tmp_path: Path) -> None:
    part, db = written(tmp_path)
    try:
        assert scrub(part, vacuum_max=0) is False
        assert (tmp_path / "part-0.sqlite3-wal").stat().st_size == 0
        assert naming(tmp_path) == ["part-0.sqlite3"]  # in its free pages, until the exit
    finally:
        db.close()


class _Commits(RecoveryScrubber):
    """The scrubber over one stand-in partition whose commit epoch the test sets."""

    def __init__(self, backup_interval: float, now: list[float]) -> None:
        super().__init__(Path("recovery"), 1.0, backup_interval, clock=lambda: now[0])
        self.commit = 0

    def parts(self) -> list[Path]:
        return [Path("recovery/part-0.sqlite3")]

    def _commit(self, part: Path) -> int | None:
        return self.commit


@pytest.mark.parametrize("backup_s, first", [(0.0, 11), (2.5, 14)])
def test_scrubs_come_from_the_commit_that_drops_the_old_snapshots_for_a_few_more(
    monkeypatch: pytest.MonkeyPatch, backup_s: float, first: int
) -> None:
    scrubbed: list[int] = []
    now = [100.0]
    scrubber = _Commits(backup_s, now)
    monkeypatch.setattr(recovery_scrub, "scrub", lambda part: scrubbed.append(scrubber.commit))
    scrubber.commit = 10  # the commit when the receipt is heard of
    scrubber.deleted()
    for commit in range(10, first + 8):
        scrubber.commit = commit
        scrubber.step()
        scrubber.step()  # once per commit
        if commit == first + 3:
            now[0] += 3.0 + backup_s  # the snapshot intervals after the receipt have passed
    # By hand: backup 2.5 s of 1 s snapshots is 3 epochs; scrubs at 4 commits, from the
    # first after the receipt's commit plus those, and one more once the time has passed.
    assert scrubbed == list(range(first, first + 5))
