"""How a recorded stream's file is opened: by what it holds, not by its name."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

_GZIP_MAGIC = b"\x1f\x8b"


def open_input(path: str | Path) -> IO[bytes]:
    """A recorded stream's bytes: decompressed when the file is gzip (its first two
    bytes say so, whatever its name: a download saved without ``.gz`` was read as
    hundreds of undecodable lines), else as they are."""
    path = Path(path)
    with path.open("rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else path.open("rb")
