"""``audienceflow sort``: a recorded stream in event-time order, for a replay.

A replay applies each file's events against the file's own watermark (see README,
Time), as a live worker would: a file written in another order (by user, by
upload batch) dead-letters most of its events as ``late_event``. This writes the
lines of one or more JSONL files (plain or .gz) into one file ordered by the
event time a replay gives each line (``operators.validate.event_time``); lines of
equal time keep their order of reading, and lines without a valid time come
first (validation dead-letters them wherever they are; an oversize line counts as
one, unparsed). Blank lines are dropped.

Memory stays bounded: lines are sorted in runs of ``run_bytes`` kept in memory
(each line counted with what Python holds for it, not only its bytes), spilled to
temporary files beside the output, then merged. The output appears only when it is
complete: it is written beside itself and renamed, so an error or Ctrl-C leaves the
previous file (if any) as it was and no temporary file behind. An input that cannot be
read to its end (a truncated .gz) is a ``SortError`` naming it: a sort that silently
dropped the rest of a file would hand the replay a stream that only looks complete.

An output ``-`` is standard output, and an output that is no regular file (``/dev/stdout``,
a named pipe) or names an open file (``/dev/stdout``, ``/dev/fd/3``, whatever file the
shell opened) is written as it is merged: for ``sort ... --out - | audienceflow replay -``.
A rename over such a path replaced it with a file (as root, ``/dev/stdout`` itself), and
the reader got nothing. Runs then spill to the system's temporary folder (``$TMPDIR``).
"""

from __future__ import annotations

import errno
import gzip
import heapq
import os
import re
import stat
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from audienceflow.flows.input_files import LINE_CAP, cut_short, open_input, pass_rest
from audienceflow.operators.validate import MAX_EVENT_BYTES, event_time

_HEAD = struct.Struct("<dQI")  # time, order of reading, length of the line
_NO_TIME = float("-inf")
_BOM = b"\xef\xbb\xbf"
# Output .gz: level 6 (gzip's own default) writes the 100k-line bench stream in 3.5 s
# against 5.0 s at Python's default 9, for a file 9 % larger.
GZIP_LEVEL = 6
RUN_BYTES = 256 * 1024 * 1024
# What a line held in a run costs beyond its bytes: the bytes object's header (33), its
# (time, seq, line) tuple (64), the time (24), the seq (28) and the list's slot (8).
LINE_OVERHEAD = 160
# Spilled runs merged at once, each an open file: more are first merged into bigger
# runs, so a sort of any size stays far below the open-file limit (often 1024).
MAX_FAN_IN = 64
# A damaged or truncated input raises one of these while being read (as in a replay).
_READ_ERRORS = (EOFError, OSError, zlib.error)


class SortError(ValueError):
    """An input could not be read, or the output not written; names which and why."""


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
    return open_input(path)


def _open_write(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "wb", compresslevel=GZIP_LEVEL)
    return path.open("wb")


def _time(line: bytes) -> float | None:
    """``event_time``, but None without parsing for a line validation rejects as oversize
    (its byte-order mark not counted, as there): a hostile multi-GB line is not parsed."""
    size = len(line) - 3 if line.startswith(_BOM) else len(line)
    return event_time(line) if size <= MAX_EVENT_BYTES else None


def _spill(run: list[tuple[float, int, bytes]], folder: Path, k: int) -> Path:
    path = folder / f"run-{k}.bin"
    try:
        with path.open("wb") as fh:
            for ts, seq, line in run:
                fh.write(_HEAD.pack(ts, seq, len(line)))
                fh.write(line)
    except OSError as exc:  # not the input's fault: say whose
        raise SortError(f"cannot spill a sorted run to {str(folder)!r}: {exc}") from exc
    return path


def read_lines(path: Path) -> Iterator[bytes]:
    """The lines of one input without their ``\\r\\n`` or ``\\n`` (nor the first line's
    byte-order mark); a read error is a ``SortError`` naming the input and the last line
    read."""
    lineno = 0
    try:
        with _open_read(path) as fh:
            readline = fh.readline
            while raw := readline(LINE_CAP):
                lineno += 1
                if cut_short(raw):
                    # A line over a megabyte, an oversize event whatever it holds: its
                    # first megabyte is written, the rest read and dropped, never held
                    # (a small gzip of one huge line took memory as large as the line).
                    pass_rest(readline)
                if lineno == 1 and raw.startswith(_BOM):  # as a replay reads it: sorted
                    raw = raw[len(_BOM) :]  # to another place, it would break the line
                yield raw.rstrip(b"\r\n")
    except _READ_ERRORS as exc:
        raise SortError(
            f"input {str(path)!r} is unreadable after line {lineno}: {exc}; nothing was written"
        ) from exc


def _read_run(path: Path) -> Iterator[tuple[float, int, bytes]]:
    with path.open("rb") as fh:
        while head := fh.read(_HEAD.size):
            ts, seq, n = _HEAD.unpack(head)
            yield ts, seq, fh.read(n)


def _fan_in(spilled: list[Path], folder: Path) -> list[Path]:
    """Merge the oldest ``MAX_FAN_IN`` runs into one until at most that many are left
    (with the run kept in memory, the final merge opens ``MAX_FAN_IN`` files)."""
    spilled = list(spilled)
    k = len(spilled)
    while len(spilled) > MAX_FAN_IN:
        group, spilled = spilled[:MAX_FAN_IN], spilled[MAX_FAN_IN:]
        merged = folder / f"run-{k}.bin"
        k += 1
        try:
            with merged.open("wb") as fh:
                for ts, seq, line in heapq.merge(*(_read_run(p) for p in group)):
                    fh.write(_HEAD.pack(ts, seq, len(line)))
                    fh.write(line)
        except OSError as exc:
            raise SortError(f"cannot merge sorted runs in {str(folder)!r}: {exc}") from exc
        for p in group:
            p.unlink()
        spilled.append(merged)
    return spilled


# A path naming a file a process holds open: /dev/stdout, /dev/fd/3, /proc/self/fd/1.
_OPEN_FILE = re.compile(r"/dev/(?:stdout|stderr|fd/\d+)|/proc/[^/]+/fd/\d+")


def streamed(out: Path) -> bool:
    """Whether ``out`` is written as it is merged, not renamed into place: ``-`` (standard
    output), a path that exists and is no regular file (a device, a named pipe), or one
    naming an open file (``/dev/stdout``, also when the shell opened a regular file:
    ``>> all.jsonl`` is written into after what it holds, not replaced)."""
    if str(out) == "-" or _names_open_file(out):
        return True
    try:
        mode = out.stat().st_mode  # through a symlink: /dev/stdout is one
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _names_open_file(out: Path) -> bool:
    """Whether ``out`` is, or links to, a name of an open file (``_OPEN_FILE``). Its link
    reads as one to a file (``/proc/self/fd/1`` -> ``/tmp/all.jsonl``), which was then
    replaced: what a ``>>`` redirect had kept in it was lost."""
    path = os.path.abspath(out)
    for _ in range(40):  # the kernel's own limit on links followed
        if _OPEN_FILE.fullmatch(path):
            return True
        if not os.path.islink(path):
            return False
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    return False


def _loops(out: Path) -> bool:
    """Whether ``out`` is a loop of symbolic links (``resolve`` raised a RuntimeError)."""
    try:
        out.resolve()
    except RuntimeError:  # Python 3.11's pathlib; an OSError (ELOOP) from 3.13
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def sort_stream(inputs: list[Path], out: Path, run_bytes: int = RUN_BYTES) -> Sorted:
    """Write the lines of ``inputs`` (read in the order given) to ``out`` in event-time order."""
    stream = streamed(out)
    if not stream and _loops(out):
        raise SortError(f"the output {str(out)!r} is a loop of symbolic links; name a file")
    if not stream and out.resolve() in {p.resolve() for p in inputs}:
        raise ValueError(f"the output {str(out)!r} is also an input; write to another file")
    if out.is_dir():
        raise SortError(f"the output {str(out)!r} is a directory; name a file")
    if not stream and out.is_symlink():
        out = out.resolve()  # the file it names is replaced, the link kept
    try:
        if stream:
            tmp_dir = tempfile.TemporaryDirectory(prefix=".audienceflow-sort-")
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir = tempfile.TemporaryDirectory(dir=out.parent, prefix=".sort-")
    except OSError as exc:
        raise SortError(f"cannot write beside the output {str(out)!r}: {exc}") from exc
    with tmp_dir as tmp:
        runs, counts = _sorted_runs(inputs, Path(tmp), run_bytes)
        partial = Path(tmp) / ("out" + "".join(out.suffixes[-1:]))
        try:
            if stream:
                if str(out) == "-":
                    _merge_into(runs, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                else:
                    # Appended: through /dev/stdout, where the shell's redirect left it
                    # (``>>``: after what the file held); a pipe or a device the same.
                    with out.open("ab") as dst:
                        _merge_into(runs, dst)
            else:
                with _open_write(partial) as dst:
                    _merge_into(runs, dst)
                os.replace(partial, out)  # complete, or not there at all
        except BrokenPipeError:
            raise  # the reader went away: the caller's to say (or not)
        except OSError as exc:
            raise SortError(f"cannot write the output {str(out)!r}: {exc}") from exc
        finally:
            for r in runs:  # close the spilled runs' files before their folder goes
                close = getattr(r, "close", None)
                if close is not None:
                    close()
    return counts


def _merge_into(runs: list[Iterator[tuple[float, int, bytes]]], dst: IO[bytes]) -> None:
    for _, _, line in heapq.merge(*runs):
        dst.write(line)
        dst.write(b"\n")


def _sorted_runs(
    inputs: list[Path], tmp: Path, run_bytes: int
) -> tuple[list[Iterator[tuple[float, int, bytes]]], Sorted]:
    """Read every input into sorted runs: spilled ones to ``tmp``, the last in memory."""
    run: list[tuple[float, int, bytes]] = []
    size = lines = untimed = blank = out_of_order = 0
    latest = _NO_TIME
    spilled: list[Path] = []
    for path in inputs:
        for line in read_lines(path):
            if not line.strip():
                blank += 1
                continue
            ts = _time(line)
            if ts is None:
                ts = _NO_TIME
                untimed += 1
            elif ts < latest:
                out_of_order += 1
            else:
                latest = ts
            run.append((ts, lines, line))
            lines += 1
            size += len(line) + LINE_OVERHEAD
            if size >= run_bytes:
                run.sort()
                spilled.append(_spill(run, tmp, len(spilled)))
                run, size = [], 0
    run.sort()
    runs = len(spilled) + (1 if run else 0)
    spilled = _fan_in(spilled, tmp)
    sources: list[Iterator[tuple[float, int, bytes]]] = [_read_run(p) for p in spilled]
    if run:
        sources.append(iter(run))
    return sources, Sorted(lines, untimed, blank, runs, out_of_order)
