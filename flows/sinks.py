"""File outputs of a replay, and the run summary that reconciles the counts.

All records go to one sink partition so a replay writes each file in one
deterministic order. Records are serialized with sorted keys, so the same
input and config give byte-identical files. The per-record work (the line, the
file, the count) is ``operators/outputs.py``'s; this module is its Bytewax sink.

Each record is one ``write`` of its line, newline included, into a 1 MiB buffer
(the default 8 KiB one made a system call every ~25 records).

A write that fails (a full disk, a quota, a file system gone read-only) stops the run
with ``OutputWriteError``, which names the folder and the system's reason; no summary
is written, as the outputs are not whole. The files are then closed without flushing
again: a second failure while Bytewax unwinds the first aborted the process (SIGABRT),
with no word of why.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from audienceflow.flows.sources import SourceEnd
from audienceflow.operators.outputs import FILES, dumps_line, write_records
from audienceflow.operators.records import dumps
from audienceflow.operators.tally import RunTally

_BUFFER = 1 << 20


class OutputWriteError(RuntimeError):
    """An output file of a replay could not be written; the run stopped."""


# What this process's sink said when it failed: a process of a cluster (``replay
# --processes``) ends on Bytewax's own panic, which does not carry it.
FAILURES: list[str] = []


class _FilePartition(StatefulSinkPartition[Any, None]):
    def __init__(self, out: Path, tally: RunTally) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.tally = tally
        # An earlier run's summary goes as its outputs are replaced: one is there only
        # for this run's whole outputs, or beside the earlier run's, which a replay that
        # stopped before writing (standard input closed) leaves as they were.
        (out / "summary.json").unlink(missing_ok=True)
        self.files = {
            cls: (out / name).open("wb", buffering=_BUFFER) for cls, name in FILES.items()
        }
        self.profiles: dict[str, dict[str, Any]] = {}
        self.failed = False

    def write_batch(self, values: list[Any]) -> None:
        # The per-record work is ``operators/outputs.py``'s; what it leaves is the
        # sources' own ends.
        try:
            rest = write_records(values, self.files, self.profiles, self.tally)
        except OSError as exc:
            raise self._failure(exc) from exc
        for rec in rest:
            if type(rec) is SourceEnd:
                self.tally.add_source(rec)

    def snapshot(self) -> None:
        return None

    def _failure(self, exc: OSError) -> OutputWriteError:
        self.failed = True
        why = exc.strerror or str(exc) or type(exc).__name__
        failure = OutputWriteError(
            f"writing the outputs in {str(self.out)!r} failed: {why}; the replay stopped and "
            "its outputs are not whole (no summary.json)"
        )
        FAILURES.append(str(failure))
        return failure

    def _close_quietly(self) -> None:
        """Close the files, whatever their flush says: what is buffered cannot be written."""
        for fh in self.files.values():
            with contextlib.suppress(OSError):
                fh.close()

    def close(self) -> None:
        if self.failed:  # unwinding a failed write
            self._close_quietly()
            return
        try:
            for fh in self.files.values():
                fh.close()  # flushes what is buffered: where a full disk shows, mostly
            with (self.out / "profiles.jsonl").open("wb") as fh:
                for uid in sorted(self.profiles):
                    fh.write(dumps_line(self.profiles[uid]))
            self.tally.add_profiles(self.profiles)
            summary = self.tally.summary()
            (self.out / "summary.json").write_bytes(dumps(summary) + b"\n")
        except OSError as exc:
            failure = self._failure(exc)
            self._close_quietly()
            with contextlib.suppress(OSError):
                (self.out / "summary.json").unlink(missing_ok=True)  # a part of one
            raise failure from exc


class ReplayFileSink(FixedPartitionedSink[Any, None]):
    """Writes sessions, segment changes, actions, dead letters, profiles and the summary."""

    def __init__(self, out: str | Path, tally: RunTally | None = None) -> None:
        self.out = Path(out)
        self.tally = tally if tally is not None else RunTally()

    def list_parts(self) -> list[str]:
        return ["replay"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FilePartition:
        return _FilePartition(self.out, self.tally)
