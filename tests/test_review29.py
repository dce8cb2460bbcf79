"""Review of stop 29: ``audienceflow sort`` and Segment's derived time, at their edges.

Each test here pins a mechanism the tests of the stop left free to break (a mutant of
it passed them): the tie-break by reading order, the run boundary, the line ending,
the byte-order mark, the calendar bounds of a derived time, the replay's hint, and
what an error or an interrupt leaves behind.
"""

from __future__ import annotations

import gzip
import heapq
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.flows import timesort
from audienceflow.flows.cli import main
from audienceflow.flows.timesort import LINE_OVERHEAD, SortError, sort_stream
from audienceflow.operators.records import Event
from audienceflow.operators.validate import MAX_EVENT_BYTES, Taxonomy, Validator, event_time

ROOT = Path(__file__).resolve().parent.parent
STREAM = ROOT / "examples" / "stream.jsonl.gz"
DEMO = ROOT / "examples" / "demo.yaml"
T = "2026-03-02T08:00:0{}Z"


def _line(ts: str | None, mid: str, **extra: object) -> bytes:
    obj: dict[str, object] = {"type": "page", "userId": "u1", "name": "Home", "messageId": mid}
    if ts is not None:
        obj["timestamp"] = ts
    return orjson.dumps({**obj, **extra})


def _write(path: Path, lines: list[bytes], end: bytes = b"\n") -> Path:
    path.write_bytes(b"".join(x + end for x in lines))
    return path


def _ids(path: Path) -> list[str]:
    return [orjson.loads(x)["messageId"] for x in path.read_bytes().splitlines()]


def _no_temp_left(folder: Path) -> bool:
    return not list(folder.glob(".sort-*"))


# --- order ------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("run_bytes", [1, 10**9])
def test_equal_times_keep_reading_order_even_against_byte_order(
    tmp_path: Path, run_bytes: int
) -> None:
    # The bytes of these lines sort z, y, x backwards; reading order must win (an
    # identify then a track of one millisecond must not swap), in one run or many.
    lines = [_line(T.format(1), m) for m in ("z", "y", "x")] + [_line(T.format(0), "w")]
    src = _write(tmp_path / "in.jsonl", lines)
    sort_stream([src], tmp_path / "out.jsonl", run_bytes=run_bytes)
    assert _ids(tmp_path / "out.jsonl") == ["w", "z", "y", "x"]


@pytest.mark.timeout(60)
def test_a_run_is_spilled_when_its_counted_size_reaches_run_bytes(tmp_path: Path) -> None:
    lines = [_line(T.format(i), str(i)) for i in range(4)]
    assert len({len(x) for x in lines}) == 1
    cost = len(lines[0]) + LINE_OVERHEAD
    src = _write(tmp_path / "in.jsonl", lines)
    # at exactly one line's cost, every line is a run; one byte more, every two lines
    assert sort_stream([src], tmp_path / "a.jsonl", run_bytes=cost).runs == 4
    assert sort_stream([src], tmp_path / "b.jsonl", run_bytes=cost + 1).runs == 2
    assert sort_stream([src], tmp_path / "c.jsonl", run_bytes=2 * cost + 1).runs == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("n", "calls"), [(3, [3]), (4, [3, 2]), (7, [3, 3, 3])])
def test_at_most_max_fan_in_runs_are_open_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, calls: list[int]
) -> None:
    # run_bytes=1: every line is a run of its own, spilled to a file
    lines = [_line(T.format(i % 3), str(i)) for i in range(n)]
    src = _write(tmp_path / "in.jsonl", lines)
    sort_stream([src], tmp_path / "one.jsonl")
    monkeypatch.setattr(timesort, "MAX_FAN_IN", 3)
    real = heapq.merge
    seen: list[int] = []
    files: list[int] = []  # spilled runs on disk at each merge: merged ones are removed

    def counting(*runs: Iterator[Any]) -> Iterator[Any]:
        seen.append(len(runs))
        files.append(len(list(tmp_path.glob(".sort-*/run-*"))))
        return real(*runs)

    monkeypatch.setattr(timesort.heapq, "merge", counting)
    assert sort_stream([src], tmp_path / "many.jsonl", run_bytes=1).runs == n
    assert seen == calls
    assert files[-1] == calls[-1]
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert _no_temp_left(tmp_path)


@pytest.mark.timeout(120)
def test_memory_stays_near_the_run_size_with_short_lines(tmp_path: Path) -> None:
    # Short lines are where a per-line cost counted too low shows: with 64 bytes a line
    # (as first written) the traced peak was 1.6x the run size.
    lines = [_line(T.format(i % 10), str(i)) for i in range(40_000)]
    src = _write(tmp_path / "in.jsonl", lines)
    run_bytes = 2_000_000
    tracemalloc.start()
    try:
        done = sort_stream([src], tmp_path / "out.jsonl", run_bytes=run_bytes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert done.runs > 2
    assert peak < 1.3 * run_bytes, peak / run_bytes


# --- odd lines --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_crlf_lines_come_out_with_lf_and_a_lone_cr_is_a_blank_line(tmp_path: Path) -> None:
    lines = [_line(T.format(2), "b"), b"", _line(T.format(1), "a")]
    src = _write(tmp_path / "in.jsonl", lines, end=b"\r\n")
    with src.open("ab") as fh:
        fh.write(b"\r\n\r\n")  # a line that is only "\r"
    done = sort_stream([src], tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == lines[2] + b"\n" + lines[0] + b"\n"
    assert (done.lines, done.blank) == (2, 3)


@pytest.mark.timeout(60)
def test_a_line_with_a_byte_order_mark_is_placed_at_its_time_not_first(tmp_path: Path) -> None:
    # The replay strips the mark (validate), so the line has its time there; placed
    # first instead, it would set the partition's time and make earlier lines late.
    bom = b"\xef\xbb\xbf" + _line(T.format(5), "bom")
    src = _write(tmp_path / "in.jsonl", [_line(T.format(1), "a"), bom, _line(T.format(9), "c")])
    done = sort_stream([src], tmp_path / "out.jsonl")
    assert done.untimed == 0
    got = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert got[1] == bom


def _sized(n: int, ts: str, mid: str, bom: bool = False) -> bytes:
    """A valid line of exactly ``n`` bytes (a byte-order mark not counted)."""
    short = _line(ts, mid, pad="")
    line = _line(ts, mid, pad="x" * (n - len(short)))
    assert len(line) == n
    return b"\xef\xbb\xbf" + line if bom else line


@pytest.mark.timeout(60)
def test_an_oversize_line_is_written_first_unparsed_and_a_line_at_the_limit_in_time(
    tmp_path: Path,
) -> None:
    at = _sized(MAX_EVENT_BYTES, T.format(5), "at")
    at_bom = _sized(MAX_EVENT_BYTES, T.format(6), "at-bom", bom=True)
    over = _sized(MAX_EVENT_BYTES + 1, T.format(7), "over")
    first = _line(T.format(1), "first")
    # the validator agrees: at the limit an event, one byte over a dead letter
    assert _agree(at) == 1772438405.0 and _agree(at_bom) == 1772438406.0
    assert _agree(over) == "oversize"
    src = _write(tmp_path / "in.jsonl", [first, at, at_bom, over])
    done = sort_stream([src], tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes().splitlines() == [over, first, at, at_bom]
    assert done.untimed == 1


@pytest.mark.timeout(60)
def test_a_gz_output_is_written_at_gzip_level_6(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.jsonl", [_line(T.format(1), "a")])
    sort_stream([src], tmp_path / "out.jsonl.gz")
    # RFC 1952: XFL (byte 8) is 2 at the slowest level (9), 0 at the levels between
    assert (tmp_path / "out.jsonl.gz").read_bytes()[8] == 0


def _agree(raw: bytes) -> float | str:
    """The validator's time of a line (or its dead letter's reason), checked against sort's."""
    checked = Validator(Taxonomy.default())(raw, "f:1")
    if type(checked) is Event:
        assert event_time(raw) == checked.ts, raw
        return checked.ts
    return checked.reason


def test_sort_and_replay_give_every_valid_line_the_same_time() -> None:
    derived = {"originalTimestamp": T.format(4), "sentAt": T.format(9), "receivedAt": T.format(2)}
    cases = [
        b"\xef\xbb\xbf" + _line(T.format(0), "m"),
        _line(None, "m", **derived),
        _line(None, "m", timestamp=None, receivedAt=T.format(3)),
        _line("2026-03-02T09:00:00.123456+01:00", "m"),
        _line("1970-01-01T00:00:00Z", "m"),
        _line("9998-12-31T23:59:59Z", "m"),
    ]
    assert [_agree(x) for x in cases] == [
        1772438400.0,
        1772438400.0 + 2 - (9 - 4),
        1772438403.0,
        1772438400.123456,
        0.0,
        253370764799.0,
    ]


def test_a_derived_time_past_the_last_day_of_9998_is_a_bad_timestamp() -> None:
    end = "9998-12-31T23:59:5{}Z"
    over = _line(None, "m", originalTimestamp=end.format(9), sentAt=end.format(8),
                 receivedAt=end.format(9))  # fmt: skip
    assert _agree(over) == "bad_timestamp"
    assert event_time(over) is None
    at = _line(None, "m", originalTimestamp=end.format(8), sentAt=end.format(8),
               receivedAt=end.format(9))  # fmt: skip
    assert _agree(at) == 253370764799.0


# --- errors and interrupts --------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_truncated_gz_is_an_error_naming_it_and_the_old_output_stays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = gzip.compress(b"".join(_line(T.format(i % 10), str(i)) + b"\n" for i in range(3000)))
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"previous\n")
    with pytest.raises(SortError, match=r"in\.jsonl\.gz' is unreadable after line \d+"):
        sort_stream([src], out)
    assert out.read_bytes() == b"previous\n" and _no_temp_left(tmp_path)
    assert main(["sort", str(src), "--out", str(out)]) == 2
    assert "unreadable" in capsys.readouterr().err
    assert out.read_bytes() == b"previous\n"


@pytest.mark.timeout(60)
def test_an_output_that_is_a_directory_is_refused_before_reading(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.jsonl", [_line(T.format(1), "a")])
    (tmp_path / "d").mkdir()
    with pytest.raises(SortError, match="is a directory"):
        sort_stream([src], tmp_path / "d")
    assert main(["sort", str(src), "--out", str(tmp_path / "d")]) == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_an_interrupted_merge_leaves_the_previous_output_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    src = _write(tmp_path / "in.jsonl", [_line(T.format(i % 10), str(i)) for i in range(500)])
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"previous\n")
    real = heapq.merge
    opened: list[Iterator[Any]] = []

    def interrupted(*runs: Iterator[Any]) -> Iterator[Any]:
        opened.extend(runs)
        for i, item in enumerate(real(*runs)):
            if i == 250:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(timesort.heapq, "merge", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sort_stream([src], out, run_bytes=5_000)
    assert out.read_bytes() == b"previous\n"
    assert _no_temp_left(tmp_path)
    assert len(opened) > 2
    monkeypatch.setattr(timesort.heapq, "merge", real)
    sort_stream([src], out, run_bytes=5_000)
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(out, "rb") as fh:
        assert len(fh.read().splitlines()) == 500


# --- the replay's hint ------------------------------------------------------------


@pytest.mark.timeout(180)
def test_replay_prints_the_sort_hint_only_for_a_stream_out_of_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the demo config names its truth file from the repository
    with gzip.open(STREAM, "rb") as fh:
        lines = fh.read().splitlines()[:600]
    backwards = _write(tmp_path / "backwards.jsonl", lines[::-1])
    ordered = _write(tmp_path / "ordered.jsonl", lines)
    main(["replay", str(backwards), "--config", str(DEMO), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert "hint" in err and f"audienceflow sort {backwards}" in err.replace("\n", "")
    main(["replay", str(ordered), "--config", str(DEMO), "--out", str(tmp_path / "o")])
    assert "audienceflow sort" not in capsys.readouterr().err


# --- a stray early event, sorted first ----------------------------------------------


@pytest.mark.timeout(180)
def test_one_event_from_a_reset_clock_does_not_poison_a_sorted_replay(tmp_path: Path) -> None:
    from audienceflow.flows.replay import replay
    from audienceflow.operators.settings import Settings

    with gzip.open(STREAM, "rb") as fh:
        lines = fh.read().splitlines()[:600]
    reset = _line("1970-01-01T00:00:05Z", "reset")
    src = _write(tmp_path / "in.jsonl", [*lines[:300], reset, *lines[300:]])
    sort_stream([src], tmp_path / "sorted.jsonl")
    settings = Settings.load(DEMO, environ={})
    summary = replay([str(tmp_path / "sorted.jsonl")], tmp_path / "out", settings)
    by_reason = summary["counts"]["dead_lettered_by_reason"]
    # Sorted first, the stray event sets the partition's first time; the events a week
    # and more after it are held until they show a gap (94709e8), then all accepted.
    assert by_reason.get("future_event", 0) == 0
    assert by_reason.get("late_event", 0) == 0
    assert summary["counts"]["reconciled"]
