"""``audienceflow sort``: a recorded stream in event-time order, for a replay.

A replay applies each file's events against the file's own watermark (see README,
Time), as a live worker would: a file written in another order (by user, by
upload batch) dead-letters most of its events as ``late_event``. This writes the
lines of one or more JSONL files (plain or .gz) into one file ordered by the
event time a replay gives each line (``operators.validate.event_time``); lines of
equal time keep their order of reading, and lines without a valid time come
first (validation dead-letters them wherever they are). Blank lines are dropped.

Memory stays bounded: lines are sorted in runs of ``run_bytes`` kept in memory,
spilled to temporary files beside the output, then merged.
"""

from __future__ import annotations

import gzip
import heapq
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from audienceflow.operators.validate import event_time

_HEAD = struct.Struct("<dQI")  # time, order of reading, length of the line
_NO_TIME = float("-inf")
RUN_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Sorted:
    """What ``sort_stream`` wrote: lines (of which without a valid time), blank lines dropped,
    sorted runs, and lines that came after a later one in the input."""

    lines: int
    untimed: int
    blank: int
    runs: int
    out_of_order: int  # lines earlier than a line read before them


def _open_read(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _open_write(path: Path) -> IO[bytes]:
    return gzip.open(path, "wb") if path.suffix == ".gz" else path.open("wb")


def _spill(run: list[tuple[float, int, bytes]], folder: Path, k: int) -> Path:
    path = folder / f"run-{k}.bin"
    with path.open("wb") as fh:
        for ts, seq, line in run:
            fh.write(_HEAD.pack(ts, seq, len(line)))
            fh.write(line)
    return path


def _read_run(path: Path) -> Iterator[tuple[float, int, bytes]]:
    with path.open("rb") as fh:
        while head := fh.read(_HEAD.size):
            ts, seq, n = _HEAD.unpack(head)
            yield ts, seq, fh.read(n)


def sort_stream(inputs: list[Path], out: Path, run_bytes: int = RUN_BYTES) -> Sorted:
    """Write the lines of ``inputs`` (read in the order given) to ``out`` in event-time order."""
    if out.resolve() in {p.resolve() for p in inputs}:
        raise ValueError(f"the output {str(out)!r} is also an input; write to another file")
    out.parent.mkdir(parents=True, exist_ok=True)
    run: list[tuple[float, int, bytes]] = []
    size = lines = untimed = blank = out_of_order = 0
    latest = _NO_TIME
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".sort-") as tmp:
        spilled: list[Path] = []
        for path in inputs:
            with _open_read(path) as fh:
                for raw in fh:
                    line = raw.rstrip(b"\r\n")
                    if not line.strip():
                        blank += 1
                        continue
                    ts = event_time(line)
                    if ts is None:
                        ts = _NO_TIME
                        untimed += 1
                    elif ts < latest:
                        out_of_order += 1
                    else:
                        latest = ts
                    run.append((ts, lines, line))
                    lines += 1
                    size += len(line) + 64
                    if size >= run_bytes:
                        run.sort()
                        spilled.append(_spill(run, Path(tmp), len(spilled)))
                        run, size = [], 0
        run.sort()
        sources: list[Iterator[tuple[float, int, bytes]]] = [_read_run(p) for p in spilled]
        if run:
            sources.append(iter(run))
        with _open_write(out) as dst:
            for _, _, line in heapq.merge(*sources):
                dst.write(line)
                dst.write(b"\n")
    return Sorted(lines, untimed, blank, len(spilled) + (1 if run else 0), out_of_order)
