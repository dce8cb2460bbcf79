"""A replayed file is read in batches exactly as it was read line by line.

``sources._Lines`` reads a batch in one loop (no generator, no ``tell`` per line);
it must give the positions, lines, blank-line counts and batch boundaries that the
per-line generator gave, on plain and gzipped files, after a resume's skip too.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.flows.sources import _BOM, LINE_CAP, LongLine, _Lines


def _reference_lines(name: str) -> Iterator[tuple[str, bytes | None]]:
    """The per-line reader as it was: ``(position, line or None when blank)``."""
    opener = gzip.open if name.endswith(".gz") else open
    with opener(name, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            stripped = line.rstrip(b"\r\n")
            if lineno == 1 and stripped.startswith(_BOM):
                stripped = stripped[len(_BOM) :]
            # A BOM alone on a later line (files joined) is blank too.
            alone = stripped.startswith(_BOM) and not stripped[len(_BOM) :].strip()
            yield f"{name}:{lineno}", (stripped if stripped.strip() and not alone else None)


def _reference_batches(name: str, batch: int, skip: int) -> list[tuple[list, int, int]]:
    """Each batch's lines, with the lines and blank lines counted after it."""
    it = _reference_lines(name)
    lines = blank = 0
    for _ in range(skip):
        if next(it, None) is None:
            break
        lines += 1
    out = []
    while True:
        raws: list[tuple[str, bytes]] = []
        ended = True
        for position, raw in it:
            lines += 1
            if raw is None:
                blank += 1
            else:
                raws.append((position, raw))
            if len(raws) >= batch:
                ended = False
                break
        out.append((raws, lines, blank))
        if ended:
            return out


def _batches(name: str, batch: int, skip: int) -> list[tuple[list, int, int]]:
    reader = _Lines(name)
    reader.skip(skip)
    out = []
    while True:
        raws: list[tuple[str, bytes]] = []
        more = reader.read(batch, raws)
        out.append((raws, reader.lines, reader.blank))
        if not more:
            reader.close()
            return out


PIECES = [b"", b" ", b"\t", b"\r", b"\x0b", b"{}", b'{"a":1}', b"x", _BOM, b"\xff", b"\xc3\xa9"]
LINES = st.lists(st.lists(st.sampled_from(PIECES), max_size=3).map(b"".join), max_size=12)


@settings(max_examples=300)
@given(LINES, st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.integers(1, 4))
@example([_BOM + b"{}", _BOM + b"{}", b"", b" "], b"\n", False, 1)  # a BOM goes from line 1 only
@example([b"a\rb", b"c"], b"\r\n", True, 2)  # a bare \r does not end a line
@example([b"{}", _BOM, _BOM + b" \t", _BOM + b"{}"], b"\n", True, 1)  # a BOM alone is blank
def test_batches_hold_the_lines_the_line_by_line_reader_gave(
    lines: list[bytes], end: bytes, final_newline: bool, batch: int
) -> None:
    data = end.join(lines) + (end if final_newline and lines else b"")
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp, "in.jsonl")
        plain.write_bytes(data)
        packed = Path(tmp, "in.jsonl.gz")
        packed.write_bytes(gzip.compress(data))
        for path in (str(plain), str(packed)):
            for skip in (0, 1, len(lines)):
                assert _batches(path, batch, skip) == _reference_batches(path, batch, skip)


def test_the_reader_reports_the_bytes_it_has_consumed(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"b":2}\n')  # 8 + 1 + 8 bytes
    reader = _Lines(str(path))
    raws: list[tuple[str, bytes]] = []
    assert reader.read(1, raws) and reader.tell() == 8
    assert raws == [(f"{path}:1", b'{"a":1}')]
    assert not reader.read(5, raws) and reader.tell() == 17
    assert (reader.lines, reader.blank) == (3, 1)
    reader.close()


def test_a_damaged_gz_raises_with_the_lines_read_before_it_counted(tmp_path: Path) -> None:
    """The lines read before the damage stay counted (and handed out), so the source's
    ``SourceEnd`` says after which line the file became unreadable."""
    from audienceflow.flows.sources import _READ_ERRORS

    whole = gzip.compress(b"".join(b'{"n":%d}\n' % i for i in range(20000)), mtime=0)
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    reader = _Lines(str(path))
    raws: list[tuple[str, bytes]] = []
    try:
        while reader.read(1000, raws):
            pass
    except _READ_ERRORS:
        pass
    else:
        raise AssertionError("a truncated .gz read to its end without an error")
    assert 0 < reader.lines == len(raws) < 20000
    assert raws[-1] == (f"{path}:{reader.lines}", b'{"n":%d}' % (reader.lines - 1))
    reader.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("gz", [False, True])
def test_a_line_longer_than_the_cap_is_read_as_its_first_bytes_knowing_its_length(
    tmp_path: Path, gz: bool
) -> None:
    """A line is never held whole past ``LINE_CAP`` (a 1 MB gzip of one 300 MB line took
    720 MB): its first ``LINE_CAP`` bytes stand for it, with its whole length; the lines
    after it are read as before. At the boundary: ``LINE_CAP - 1`` bytes and its newline
    are one ordinary line; ``LINE_CAP`` bytes and ``\\r\\n`` are a long one of that length."""
    cap = LINE_CAP
    lines = [
        b'{"a":1}',
        b"x" * (3 * cap + 5),
        b"y" * (cap - 1),
        b"z" * cap + b"\r",
        b" " * (2 * cap),  # blank, however long
        b'{"b":2}',
    ]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / ("in.jsonl.gz" if gz else "in.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    reader = _Lines(str(path))
    raws: list[tuple[str, bytes]] = []
    assert not reader.read(100, raws)
    reader.close()
    assert [p.rsplit(":", 1)[1] for p, _ in raws] == ["1", "2", "3", "4", "6"]
    got = {p.rsplit(":", 1)[1]: raw for p, raw in raws}
    assert type(got["2"]) is LongLine and got["2"] == b"x" * cap and got["2"].whole == 3 * cap + 5
    assert type(got["3"]) is bytes and got["3"] == lines[2]
    assert type(got["4"]) is LongLine and got["4"].whole == cap
    assert (got["1"], got["6"]) == (lines[0], lines[5])
    assert (reader.lines, reader.blank) == (6, 1)


@pytest.mark.timeout(120)
def test_a_replay_dead_letters_a_line_too_long_to_hold_with_its_whole_size(tmp_path: Path) -> None:
    import orjson

    from audienceflow.flows.replay import replay
    from audienceflow.operators.settings import Settings

    ok = b'{"type":"page","name":"Home","userId":"u1","timestamp":"2026-03-02T10:00:00Z"}'
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(ok + b"\n" + b"a" * (5 * LINE_CAP) + b"\n" + ok + b"\n"))
    summary = replay(
        [str(path)], tmp_path / "out", Settings.load(environ={"AUDIENCEFLOW_PII_SALT": "x"})
    )
    assert summary["counts"]["reconciled"] and summary["counts"]["events_in"] == 3
    (dead,) = [
        orjson.loads(x) for x in (tmp_path / "out" / "dead_letters.jsonl").read_bytes().splitlines()
    ]
    assert dead["reason"] == "oversize" and f"event is {5 * LINE_CAP} bytes" in dead["detail"]
    assert dead["position"].endswith(":2")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("line", "end"),
    [
        (b"c" * (LINE_CAP - 1), b"\r\n"),  # the cap falls between the \r and the \n
        (b"c" * (2 * LINE_CAP - 1), b"\r\n"),  # so does a later chunk's end
        (b"c" * (LINE_CAP - 2), b"\r\r\n"),  # two \r, stripped as a shorter line's are
        (b"c" * (LINE_CAP - 1), b"\r\r\n"),  # a chunk of \r alone
        (b"c" * (LINE_CAP + 3), b"\r"),  # at the end of the file, with no \n
    ],
)
def test_a_long_lines_length_leaves_out_its_end_of_line_wherever_a_chunk_ends(
    tmp_path: Path, line: bytes, end: bytes
) -> None:
    """The length is that of the line ``read`` would have kept, ``rstrip(b"\\r\\n")``:
    a ``\\r`` that ended a chunk was counted as part of the line, one byte too many in
    the oversize dead letter's detail."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a":1}\n' + line + end)
    reader = _Lines(str(path))
    raws: list[tuple[str, bytes]] = []
    assert not reader.read(100, raws)
    reader.close()
    (_, long) = raws
    assert type(long[1]) is LongLine and long[1].whole == len(line), (long[1].whole, len(line))


def test_a_long_line_led_by_a_byte_order_mark_past_the_first_keeps_its_whole_size() -> None:
    """Files joined, each with its mark: the validator cut the mark from a ``LongLine``,
    and the plain bytes left said the first megabyte's size, not the line's."""
    from audienceflow.operators.validate import Taxonomy, Validator

    long = LongLine(_BOM + b"a" * (LINE_CAP - 3))
    long.whole = 5 * LINE_CAP
    dead = Validator(Taxonomy.default())(long, "in.jsonl:7")
    assert dead.reason == "oversize"  # type: ignore[union-attr]
    assert f"event is {5 * LINE_CAP - 3} bytes" in dead.detail  # type: ignore[union-attr]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("skip", [0, 1, 2, 3, 4])
def test_a_restart_skips_a_long_line_as_one_line_as_read_counts_it(
    tmp_path: Path, skip: int
) -> None:
    """Recovery resumes by line count: ``skip`` must pass over a line over ``LINE_CAP``
    as one line, as ``read`` counted it, or every later position shifts."""
    lines = [b'{"a":1}', b"x" * (2 * LINE_CAP + 1), b"y" * (LINE_CAP - 1), b'{"b":2}']
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    whole = _batches(str(path), 100, 0)[0][0]
    resumed = _batches(str(path), 100, skip)[0][0]
    assert [p for p, _ in resumed] == [p for p, _ in whole][skip:]
    assert resumed == whole[skip:]


@pytest.mark.timeout(60)
def test_a_long_first_line_loses_its_byte_order_mark_and_its_size_too() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(_BOM + b"x" * (2 * LINE_CAP) + b"\n" + _BOM + b"y" * LINE_CAP + b"\n")
        reader = _Lines(str(path))
        raws: list[tuple[str, bytes]] = []
        assert not reader.read(100, raws)
        reader.close()
    (_, first), (_, second) = raws
    assert isinstance(first, LongLine) and isinstance(second, LongLine)
    assert first[:1] == b"x" and first.whole == 2 * LINE_CAP
    assert second.startswith(_BOM) and second.whole == LINE_CAP + 3  # the validator cuts it
