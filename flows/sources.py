"""Recorded-stream input: JSONL files (plain or .gz), each file one input partition.

Each file is read in order by its own partition, which ingests its lines
(``operators.routing.PartitionIngest``: validate, filter, route, and keep the
file's own event time), so the items are already keyed: events to their
shard, watermarks to every shard, dead letters and filtered events to ``OUT``.
A replay of several files reads them side by side, aligned in event time
(``partitions.Alignment``); each file's lateness is judged against its own
watermark. After the last line of a file comes one ``SourceEnd`` with its
counts, so the run summary can reconcile what was read against what came out;
a damaged file (a truncated .gz) ends early with the error in its
``SourceEnd``, and what was read before it is processed.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from audienceflow.flows.input_files import LINE_CAP, LongLine, cut_short, open_input, pass_rest
from audienceflow.flows.partitions import Alignment, make_ingest
from audienceflow.flows.placement import place
from audienceflow.operators.routing import OUT, PartitionIngest
from audienceflow.operators.settings import Settings
from audienceflow.operators.watermarks import PartitionClock

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SourceEnd:
    """A file's own account of what it read (``error``: why it ended early)."""

    lines: int
    blank: int
    name: str = ""
    error: str | None = None
    control: bool = False  # a control file: its lines are requests, not events
    # placement: partition: events whose user's shard is another file's (None: shared)
    routed_away: int | None = None


class _Lines:
    """A file's lines, read a batch at a time: ``(position, line)`` of each non-blank one.

    ``lines`` counts every line read, blank ones included; ``blank`` the blank ones
    (only whitespace). A line loses its ``\\r\\n`` or ``\\n``; the first one its
    byte-order mark. Positions are ``name:line number``, ``name`` the input as given
    (``-`` for standard input, read from its copy at ``path``).
    """

    def __init__(self, name: str, path: str | None = None) -> None:
        self._prefix = f"{name}:"
        self._fh = open_input(name if path is None else path)
        # For .gz, progress in compressed bytes.
        self._raw: IO[bytes] = getattr(self._fh, "fileobj", self._fh)
        self.lines = 0
        self.blank = 0

    def skip(self, count: int) -> None:
        """Pass over ``count`` lines (fewer at the end of the file), counting them as read."""
        for _ in range(count):
            line = self._fh.readline(LINE_CAP)
            if not line:
                break
            if cut_short(line):
                pass_rest(self._fh.readline)
            self.lines += 1

    def _rest(self, first: bytes) -> tuple[int, bool]:
        """Read the rest of a line whose first ``LINE_CAP`` bytes were ``first``, a chunk
        at a time: its length (without its end of line), and whether it is blank.

        The end of line is what ``read`` strips from a shorter line (``rstrip(b"\\r\\n")``),
        though a chunk may end between its ``\\r`` and its ``\\n``: ``cr`` counts the
        ``\\r`` that end the bytes read so far."""
        size = len(first)
        blank = not first.strip()
        cr = len(first) - len(first.rstrip(b"\r"))
        readline = self._fh.readline
        while True:
            chunk = readline(LINE_CAP)
            if not chunk:
                return size - cr, blank
            if chunk[-1:] == b"\n":
                kept = chunk.rstrip(b"\r\n")
                if not kept:
                    size -= cr  # the line's last bytes were read as the chunk before
                return size + len(kept), blank and not kept.strip()
            size += len(chunk)
            blank = blank and not chunk.strip()
            ends = len(chunk) - len(chunk.rstrip(b"\r"))
            cr = cr + ends if ends == len(chunk) else ends

    def read(self, batch: int, out: list[tuple[str, bytes]]) -> bool:
        """Append non-blank lines to ``out`` until it holds ``batch``; False at the end.

        A damaged file raises (``_READ_ERRORS``) with ``lines`` counting what was read.
        """
        prefix = self._prefix
        lineno = self.lines
        blank = self.blank
        append = out.append
        readline = self._fh.readline
        try:
            while line := readline(LINE_CAP):
                lineno += 1
                if len(line) == LINE_CAP and line[-1:] != b"\n":  # ``cut_short``, inline
                    size, empty = self._rest(line)
                    if empty:
                        blank += 1
                        continue
                    long = LongLine(line[3:] if lineno == 1 and line.startswith(_BOM) else line)
                    long.whole = size - (len(line) - len(long))
                    append((f"{prefix}{lineno}", long))
                    if len(out) >= batch:
                        return True
                    continue
                stripped = line.rstrip(b"\r\n")
                if lineno == 1 and stripped.startswith(_BOM):
                    stripped = stripped[len(_BOM) :]
                if stripped.strip() and not (
                    # A byte-order mark alone (files joined, each with its own): blank,
                    # as on the first line and in a Kafka message.
                    stripped.startswith(_BOM) and not stripped[3:].strip()
                ):
                    append((f"{prefix}{lineno}", stripped))
                    if len(out) >= batch:
                        return True
                else:
                    blank += 1
            return False
        finally:
            self.lines = lineno
            self.blank = blank

    def tell(self) -> int:
        """Bytes of the file consumed so far."""
        return self._raw.tell()

    def close(self) -> None:
        self._fh.close()


def total_bytes(paths: list[str], files: dict[str, str] | None = None) -> int:
    """What a progress bar over ``paths`` counts to (``files``: see ``JsonlSource``)."""
    files = files or {}
    return sum(Path(files.get(p, p)).stat().st_size for p in paths)


# A damaged or truncated compressed file raises one of these while being read.
_READ_ERRORS = (EOFError, OSError, zlib.error, gzip.BadGzipFile)


class _Partition(StatefulSourcePartition[Any, tuple[int, PartitionClock]]):
    def __init__(
        self,
        name: str,
        ingest: PartitionIngest,
        skip: int,
        batch: int,
        progress: Callable[[int], None] | None,
        alignment: Alignment,
        path: str | None = None,
    ) -> None:
        self.name = name
        self.ingest = ingest
        self._reader = _Lines(name, path)
        self._batch = batch
        self._progress = progress
        self._alignment = alignment
        self._done = False
        self._pos = 0
        self._reader.skip(skip)

    @property
    def lines(self) -> int:
        return self._reader.lines

    @property
    def blank(self) -> int:
        return self._reader.blank

    def next_batch(self) -> list[Any]:
        if self._done:
            raise StopIteration
        if self._alignment.ahead(self.name):
            return []  # let the files behind this one catch up (deterministic: no timer)
        raws: list[tuple[str, bytes]] = []
        reader = self._reader
        ended, error = False, None
        try:
            ended = not reader.read(self._batch, raws)
        except _READ_ERRORS as exc:
            ended, error = True, f"{self.name}: unreadable after line {reader.lines}: {exc}"
        out = self.ingest.feed(raws)
        if ended:
            self._done = True
            out.extend(self.ingest.end())
            out.append((OUT, self._end(error)))  # after every line is routed
        clock = self.ingest.clock
        self._alignment.report(self.name, clock.base, self.ingest.idle)
        if self._progress is not None and error is None:
            pos = reader.tell()
            if pos != self._pos:
                self._progress(pos - self._pos if pos > self._pos else pos)
            self._pos = pos
        if ended:
            reader.close()
        return out

    def _end(self, error: str | None = None) -> SourceEnd:
        ing = self.ingest
        away = ing.routed_away if ing.home is not None else None
        return SourceEnd(self.lines - self.blank, self.blank, self.name, error, ing.control, away)

    def snapshot(self) -> tuple[int, PartitionClock]:
        return self.lines, self.ingest.clock


class JsonlSource(FixedPartitionedSource[Any, tuple[int, PartitionClock]]):
    """Replay recorded JSONL streams; each file is one partition (see module docstring).

    ``control`` files hold data subjects' requests (``operators/control.py``), read as
    partitions of their own, so each request applies at its timestamp in event time.
    ``files``: the file read for an input named otherwise (standard input's copy, for
    ``-``); the name stays the partition's and its lines' positions'.
    """

    def __init__(
        self,
        paths: list[str],
        settings: Settings,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        control: list[str] | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        self.files = dict(files or {})
        self.control = [c for c in dict.fromkeys(control or []) if c not in paths]
        self.paths = list(dict.fromkeys([*paths, *self.control]))
        self.events = [p for p in self.paths if p not in self.control]  # in shard order
        # With state.placement: partition, file i is shard i's partition (flows/placement.py).
        self.settings = place(settings, self.paths, self.events)
        self.batch_size = batch_size
        self.progress = progress
        self.alignment = Alignment(settings.align_within)

    def list_parts(self) -> list[str]:
        return self.paths

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, PartitionClock] | None
    ) -> _Partition:
        skip, clock = resume_state if resume_state is not None else (0, None)
        control = for_part in self.control
        home = None if control else self.events.index(for_part)
        ingest = make_ingest(self.settings, for_part, clock, live=False, control=control, home=home)
        path = self.files.get(for_part, for_part)
        return _Partition(
            for_part, ingest, skip, self.batch_size, self.progress, self.alignment, path
        )
