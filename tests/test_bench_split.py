"""The scaling bench's split of a stream by user (bench/run.py ``split_stream``).

Every line must land in exactly one part, in the stream's order, and a device's
lines (its anonymousId, else its userId) in the same part, or the 1/2/4-worker
comparison would measure a different input per worker count.
"""

from __future__ import annotations

import importlib.util
import os
import zlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LINES = [
    b'{"anonymousId":"a2","userId":"u1","type":"track"}\n',
    b'{"anonymousId":"a2","type":"page"}\n',
    b'{"userId":"u1","type":"page"}\n',
    b"not json\n",
    b'{"anonymousId":"","userId":"u3","type":"page"}\n',
    b"[1, 2]\n",
    b'{"anonymousId":7,"userId":"u3","type":"page"}\n',
    b'{"anonymousId":7.5,"userId":"u3","type":"page"}\n',
    b'{"anonymousId":true,"userId":"u3","type":"page"}\n',
]


def _part(ident: bytes) -> int:
    return zlib.crc32(ident) % 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("key", "first"),
    [("anonymousId", b"a2"), ("userId", b"u1")],
)
def test_each_line_goes_to_the_part_of_its_identity_in_stream_order(
    tmp_path: Path, key: str, first: bytes
) -> None:
    # The two identities of line 1 fall in different parts: the key order decides.
    assert _part(b"a2") != _part(b"u1")
    # ... an empty, fractional or boolean anonymousId, if it counted, would move lines 5,
    # 8 and 9; and the whole number 7 counts as "7" (validate's id), which is elsewhere.
    assert _part(b"u3") not in (_part(b""), _part(b"7"), _part(b"7.5"), _part(b"True"))
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"".join(LINES))
    parts = _bench().split_stream(stream, 3, key, out_dir=tmp_path)
    expected: list[list[bytes]] = [[], [], []]
    idents = [
        first,  # both ids: the first of the key order
        b"a2",  # anonymousId only
        b"u1",  # userId only
        LINES[3],  # not JSON: the line itself
        b"u3",  # empty anonymousId does not count
        LINES[5],  # JSON but not an object: the line itself
        first if first == b"u1" else b"7",  # a whole number is an id: its decimal text
        b"u3",  # a fractional one does not count
        b"u3",  # nor a boolean
    ]
    for line, ident in zip(LINES, idents, strict=True):
        expected[_part(ident)].append(line)
    assert [p.read_bytes().splitlines(keepends=True) for p in parts] == expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0")])
def test_the_bench_measures_pure_python_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, given: str | None, expected: str
) -> None:
    # A ``make fast`` build left in the tree would otherwise run every "pure" section.
    if given is None:
        monkeypatch.delenv("AUDIENCEFLOW_PURE", raising=False)
    else:
        monkeypatch.setenv("AUDIENCEFLOW_PURE", given)
    _bench()
    assert os.environ.get("AUDIENCEFLOW_PURE") == expected
