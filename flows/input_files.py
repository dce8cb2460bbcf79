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
