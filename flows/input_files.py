"""How a recorded stream's file is opened: by what it holds, not by its name."""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

_GZIP_MAGIC = b"\x1f\x8b"
# An input named ``-`` is standard input, as Unix tools read it; its lines' positions
# are ``-:N``.
STDIN: Final = "-"


# A line longer than this is an oversize event whatever it holds (the limit is 32 KB,
# ``validate.MAX_EVENT_BYTES``): its first bytes are kept, the rest is read and counted,
# never held. Reading it whole made a 1 MB gzip of one 300 MB line take 720 MB of memory.
LINE_CAP = 1 << 20


class LongLine(bytes):
    """The first ``LINE_CAP`` bytes of a longer line; ``whole``: the line's length in
    bytes (without its end of line), which the validator's ``oversize`` detail gives."""

    whole: int


def cut_short(line: bytes) -> bool:
    """Whether ``line``, read by ``readline(LINE_CAP)``, is only the first ``LINE_CAP``
    bytes of a longer line (``pass_rest`` reads the rest)."""
    return len(line) == LINE_CAP and line[-1:] != b"\n"


def pass_rest(readline: Callable[[int], bytes]) -> None:
    """Read and drop the rest of a line ``cut_short`` said was cut, a chunk at a time."""
    while (more := readline(LINE_CAP)) and more[-1:] != b"\n":
        pass


def open_input(path: str | Path) -> IO[bytes]:
    """A recorded stream's bytes: decompressed when the file is gzip (its first two
    bytes say so, whatever its name: a download saved without ``.gz`` was read as
    hundreds of undecodable lines), else as they are."""
    path = Path(path)
    with path.open("rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else path.open("rb")


# Names a recorded stream's file is usually given: a directory's such files are named
# when the directory itself is given as an input.
_INPUT_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
_LOOKED_AT = 10_000  # a directory's entries read for that, at most
_NAMED = 5


def not_a_file(path: str | Path, what: str = "input") -> str:
    """Why ``path`` cannot be read as an input: a directory is said to be one, with the
    pattern its input-like files match (``DIR/*.jsonl``, which the shell expands) and the
    first of them; anything else does not exist or is not a file.

    >>> not_a_file("/no/such/file.jsonl")
    "input '/no/such/file.jsonl' does not exist or is not a file"
    """
    text = str(path)
    p = Path(path)
    if not p.is_dir():
        return f"{what} {text!r} does not exist or is not a file"
    held: list[str] = []
    try:
        for entry, _ in zip(p.iterdir(), range(_LOOKED_AT), strict=False):
            if entry.name.endswith(_INPUT_SUFFIXES) and entry.is_file():
                held.append(entry.name)
    except OSError:
        pass
    held.sort()
    base = text.rstrip("/") or "/"
    suffixes = sorted({next(x for x in _INPUT_SUFFIXES if n.endswith(x)) for n in held})
    patterns = " ".join(f"{base}/*{x}" for x in suffixes or (".jsonl",))
    if held:
        more = f" and {len(held) - _NAMED} more" if len(held) > _NAMED else ""
        holds = f"it holds {', '.join(held[:_NAMED])}{more}"
    else:
        holds = "it holds no .jsonl or .jsonl.gz file"
    return (
        f"{what} {text!r} is a directory, not a file: give the files in it, e.g. {patterns}"
        f" ({holds})"
    )


@contextmanager
def spooled_stdin(inputs: list[str], work_dir: str | Path) -> Iterator[dict[str, str]]:
    """``{"-": file}`` when ``inputs`` name standard input, else ``{}``: its bytes copied
    as they come (gzip stays gzip: ``open_input`` tells by the bytes) into a file in a
    hidden folder of ``work_dir``, removed on leaving.

    A file, not memory: an input is opened twice (its first bytes say whether it is
    gzip), its size counted for the progress bar, and read by whichever process of a
    ``--processes N`` cluster owns it, none of which a pipe allows.
    """
    if STDIN not in inputs:
        yield {}
        return
    if sys.stdin is None:
        raise FileNotFoundError("input '-': standard input is closed")
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=".stdin-") as tmp:
        spool = Path(tmp) / "stdin"
        try:
            with spool.open("wb") as fh:
                shutil.copyfileobj(sys.stdin.buffer, fh, 1 << 20)
        except OSError as exc:  # a full disk: said in a line, the copy removed
            raise RuntimeError(
                f"input '-': standard input could not be copied into {work_dir} "
                f"({exc.strerror or type(exc).__name__})"
            ) from None
        yield {STDIN: str(spool)}
