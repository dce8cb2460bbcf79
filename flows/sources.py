"""Recorded-stream input: JSONL files (plain or .gz) read in order as one partition.

One partition keeps a replay's order, and so its output, deterministic. Each
item is ``(position, raw_line)`` with position ``FILE:LINE``; after the last
line comes one ``SourceEnd`` with the counts, so the run summary can reconcile
what was read against what came out.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition


@dataclass(frozen=True, slots=True)
class SourceEnd:
    """The source's own account of what it read."""

    lines: int
    blank: int


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _lines(paths: list[str]) -> Iterator[tuple[str, bytes | None, int]]:
    """Yield ``(position, line or None when blank, bytes of the file consumed so far)``."""
    for name in paths:
        with _open(Path(name)) as fh:
            raw = getattr(fh, "fileobj", fh)  # for .gz, progress in compressed bytes
            for lineno, line in enumerate(fh, 1):
                stripped = line.rstrip(b"\r\n")
                yield f"{name}:{lineno}", (stripped if stripped.strip() else None), raw.tell()


def total_bytes(paths: list[str]) -> int:
    """What a progress bar over ``paths`` counts to."""
    return sum(Path(p).stat().st_size for p in paths)


class _Partition(StatefulSourcePartition[Any, int]):
    def __init__(
        self, paths: list[str], skip: int, batch: int, progress: Callable[[int], None] | None
    ) -> None:
        self._it = _lines(paths)
        self._batch = batch
        self._progress = progress
        self._done = False
        self.lines = self.blank = self._pos = 0
        for _ in range(skip):
            if next(self._it, None) is None:
                break
            self.lines += 1

    def next_batch(self) -> list[Any]:
        if self._done:
            raise StopIteration
        out: list[Any] = []
        pos = self._pos
        for position, raw, pos in self._it:  # noqa: B007 - pos is read after the loop
            self.lines += 1
            if raw is None:
                self.blank += 1
            else:
                out.append((position, raw))
            if len(out) >= self._batch:
                break
        else:
            self._done = True
            out.append(SourceEnd(self.lines - self.blank, self.blank))
        if self._progress is not None and pos != self._pos:
            self._progress(pos - self._pos if pos > self._pos else pos)
        self._pos = pos
        return out

    def snapshot(self) -> int:
        return self.lines


class JsonlSource(FixedPartitionedSource[Any, int]):
    """Replay recorded JSONL streams in the given order."""

    def __init__(
        self,
        paths: list[str],
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.paths = paths
        self.batch_size = batch_size
        self.progress = progress

    def list_parts(self) -> list[str]:
        return ["recorded"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        return _Partition(self.paths, resume_state or 0, self.batch_size, self.progress)
