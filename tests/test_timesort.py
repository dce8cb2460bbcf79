"""``audienceflow sort``: a stream written in another order, put in event-time order.

The main check is end to end: the bundled stream shuffled line by line dead-letters
nearly everything as late; sorted again, it replays to exactly the records the
original gives (every output but the dead letters' positions, which name lines).
"""

from __future__ import annotations

import gzip
import os
import random
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from audienceflow.flows.cli import LATE_HINT_SHARE, late_hint, main
from audienceflow.flows.replay import replay
from audienceflow.flows.timesort import sort_stream
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import event_time

ROOT = Path(__file__).resolve().parent.parent
STREAM = ROOT / "examples" / "stream.jsonl.gz"
SAME = ("sessions", "segment_changes", "actions", "profiles", "identities", "experiments")


def _line(ts: str | None, uid: str = "u1", **extra: object) -> bytes:
    obj: dict[str, object] = {"type": "page", "userId": uid, "name": "Home", **extra}
    if ts is not None:
        obj["timestamp"] = ts
    return orjson.dumps(obj)


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(x + b"\n" for x in lines))
    return path


def _times(path: Path) -> list[float | None]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return [event_time(x.rstrip(b"\n")) for x in fh]


@pytest.mark.timeout(60)
def test_lines_come_out_in_time_order_equal_times_in_reading_order(tmp_path: Path) -> None:
    lines = [
        _line("2026-03-02T08:00:03Z", messageId="c"),
        _line("2026-03-02T08:00:01Z", messageId="a1"),
        _line("2026-03-02T08:00:01Z", messageId="a2"),
        b"not json",
        _line("2026-03-02T08:00:02Z", messageId="b"),
        _line("2026-03-02T08:00:01Z", messageId="a3"),
        b"   ",
        _line(None, messageId="d", receivedAt="2026-03-02T08:00:00Z"),  # Segment's derived time
    ]
    src = _write(tmp_path / "in.jsonl", lines)
    done = sort_stream([src], tmp_path / "out.jsonl")
    got = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert got == [lines[3], lines[7], lines[1], lines[2], lines[5], lines[4], lines[0]]
    assert (done.lines, done.untimed, done.blank) == (7, 1, 1)
    assert done.out_of_order == 5  # a1, a2, b, a3 and d: each earlier than c, read before
    # lines of one time, in order: none out of order
    same = _write(tmp_path / "same.jsonl", [lines[1], lines[2], lines[0]])
    assert sort_stream([same], tmp_path / "same-out.jsonl").out_of_order == 0


@pytest.mark.timeout(60)
def test_a_line_over_a_megabyte_is_written_cut_to_its_first_megabyte(tmp_path: Path) -> None:
    """Never held whole (a small gzip of one huge line took memory as large as the line):
    an oversize event either way, it is written as its first ``LINE_CAP`` bytes. A line
    of exactly ``LINE_CAP`` bytes is written whole."""
    from audienceflow.flows.input_files import LINE_CAP

    ok = _line("2026-03-02T08:00:01Z")
    long, exact = b"x" * (3 * LINE_CAP + 7), b"y" * LINE_CAP
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b"\n".join([ok, long, exact, ok]) + b"\n"))
    done = sort_stream([src], tmp_path / "out.jsonl")
    got = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert sorted(got) == sorted([ok, long[:LINE_CAP], exact, ok])
    assert (done.lines, done.untimed) == (4, 2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("run_bytes", [1, 300, 10**9])
def test_runs_spilled_to_disk_merge_to_the_same_file(tmp_path: Path, run_bytes: int) -> None:
    rng = random.Random(7)
    lines = [
        _line(f"2026-03-02T08:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z", messageId=str(i))
        for i in range(400)
    ]
    src = _write(tmp_path / "in.jsonl", lines)
    one = sort_stream([src], tmp_path / "one.jsonl", run_bytes=10**9)
    many = sort_stream([src], tmp_path / "many.jsonl", run_bytes=run_bytes)
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert one.runs == 1 and many.runs == (400 if run_bytes == 1 else many.runs)
    assert run_bytes == 10**9 or many.runs > 1
    times = _times(tmp_path / "many.jsonl")
    assert times == sorted(times)  # type: ignore[type-var]
    assert not list(tmp_path.glob(".sort-*"))  # the spilled runs are removed


@pytest.mark.timeout(60)
def test_an_inputs_byte_order_mark_is_dropped_not_sorted_into_the_file(tmp_path: Path) -> None:
    # Sorted after a line of the other input, the mark would be inside the file, where a
    # JSONL reader fails on its line; a mark on a later line is that line's own content.
    late, early = _line("2026-03-02T08:00:02Z", messageId="a"), _line("2026-03-02T08:00:01Z")
    a = _write(tmp_path / "a.jsonl", [b"\xef\xbb\xbf" + late, b"\xef\xbb\xbf" + late])
    b = _write(tmp_path / "b.jsonl", [early])
    sort_stream([a, b], tmp_path / "out.jsonl")
    got = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert got == [early, late, b"\xef\xbb\xbf" + late]


@pytest.mark.timeout(60)
def test_several_inputs_plain_and_gz_make_one_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [_line("2026-03-02T08:00:02Z", messageId="a")])
    b = tmp_path / "b.jsonl.gz"
    with gzip.open(b, "wb") as fh:
        fh.write(_line("2026-03-02T08:00:01Z", messageId="b") + b"\n")
    assert main(["sort", str(a), str(b), "--out", str(tmp_path / "s.jsonl.gz")]) == 0
    with gzip.open(tmp_path / "s.jsonl.gz", "rb") as fh:
        assert [orjson.loads(x)["messageId"] for x in fh] == ["b", "a"]


@pytest.mark.timeout(60)
def test_the_command_refuses_to_overwrite_an_input_or_read_a_missing_one(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.jsonl", [_line("2026-03-02T08:00:02Z")])
    before = src.read_bytes()
    assert main(["sort", str(src), "--out", str(src)]) == 2
    assert src.read_bytes() == before
    assert main(["sort", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.timeout(240)
def test_a_shuffled_stream_sorted_replays_to_the_original_records(tmp_path: Path) -> None:
    with gzip.open(STREAM, "rb") as fh:
        lines = fh.read().splitlines()
    random.Random(3).shuffle(lines)
    shuffled = _write(tmp_path / "shuffled.jsonl", lines)
    sorted_ = tmp_path / "sorted.jsonl"
    assert sort_stream([shuffled], sorted_, run_bytes=200_000).runs > 1
    settings = Settings.load(ROOT / "examples" / "demo.yaml", environ={})
    runs = {
        "original": replay([str(STREAM)], tmp_path / "original", settings),
        "shuffled": replay([str(shuffled)], tmp_path / "shuffled-out", settings),
        "sorted": replay([str(sorted_)], tmp_path / "sorted-out", settings),
    }
    late = {k: s["counts"]["dead_lettered_by_reason"].get("late_event", 0) for k, s in runs.items()}
    n = runs["original"]["counts"]["events_in"]
    assert late["shuffled"] > n / 2  # the mechanism under test is needed
    assert late["sorted"] == late["original"] == 0
    assert late_hint(runs["shuffled"]["counts"], ["x"]) is not None
    assert late_hint(runs["sorted"]["counts"], ["x"]) is None
    for key in ("processed", "filtered_by_reason", "dead_lettered_by_reason"):
        assert runs["sorted"]["counts"][key] == runs["original"]["counts"][key], key
    for name in SAME:
        orig = sorted((tmp_path / "original" / f"{name}.jsonl").read_bytes().splitlines())
        got = sorted((tmp_path / "sorted-out" / f"{name}.jsonl").read_bytes().splitlines())
        assert got == orig, name
    assert orig, "the last output compared is not empty"


def test_the_late_hint_boundary() -> None:
    total = 1000
    at = int(LATE_HINT_SHARE * total)
    counts = {"events_in": total, "dead_lettered_by_reason": {"late_event": at}}
    assert late_hint(counts, ["a.jsonl"]) is None
    counts["dead_lettered_by_reason"] = {"late_event": at + 1}
    hint = late_hint(counts, ["a.jsonl"])
    assert hint is not None and "audienceflow sort a.jsonl --out" in hint
    assert late_hint({"events_in": 0, "dead_lettered_by_reason": {}}, []) is None


@pytest.mark.timeout(60)
def test_a_line_one_byte_under_the_cap_is_whole_and_the_next_line_is_kept(
    tmp_path: Path,
) -> None:
    """``LINE_CAP - 1`` bytes and a newline fill a chunk that ends its line: passing over
    "the rest" of it would drop the next line."""
    from audienceflow.flows.input_files import LINE_CAP

    ok, under = _line("2026-03-02T08:00:01Z"), b"u" * (LINE_CAP - 1)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join([under, ok, under, ok]) + b"\n")
    sort_stream([src], tmp_path / "out.jsonl")
    assert sorted((tmp_path / "out.jsonl").read_bytes().splitlines()) == sorted(
        [under, ok, under, ok]
    )


def _shuffled(tmp_path: Path) -> tuple[Path, bytes]:
    """A small stream out of order, and what ``sort`` writes of it to a file."""
    times = [f"2026-03-02T08:00:{s:02d}Z" for s in (5, 1, 4, 2, 3)]
    src = _write(tmp_path / "in.jsonl", [_line(t, uid=f"u{i}") for i, t in enumerate(times)])
    sort_stream([src], tmp_path / "ref.jsonl")
    return src, (tmp_path / "ref.jsonl").read_bytes()


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    cli = str(Path(sys.executable).parent / "audienceflow")
    return subprocess.run([cli, *argv], capture_output=True, cwd=cwd, timeout=60, check=False)


@pytest.mark.timeout(90)
def test_an_output_dash_is_standard_output_and_its_line_goes_to_stderr(tmp_path: Path) -> None:
    """``sort ... --out - | audienceflow replay -``: the lines on stdout, nothing else
    there, and no file named ``-`` (it was written as one)."""
    src, ref = _shuffled(tmp_path)
    done = _cli("sort", str(src), "--out", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ref
    assert b"5 lines in event-time order in -" in done.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.timeout(90)
def test_a_reader_that_stops_early_ends_the_sort_quietly(tmp_path: Path) -> None:
    """``sort ... --out - | head``: exit 141 (as a shell's SIGPIPE), no traceback."""
    src = _write(
        tmp_path / "in.jsonl",
        [
            _line(f"2026-03-02T08:{m:02d}:{s:02d}Z", uid=f"u{s}")
            for m in range(60)
            for s in range(60)
        ],
    )
    cli = str(Path(sys.executable).parent / "audienceflow")
    proc = subprocess.Popen(
        [cli, "sort", str(src), "--out", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(100)
    proc.stdout.close()  # the reader goes: the sort's next write fails with EPIPE
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err
    assert b"Traceback" not in err and b"Exception" not in err, err


@pytest.mark.timeout(60)
def test_a_named_pipe_is_written_into_not_replaced(tmp_path: Path) -> None:
    src, ref = _shuffled(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    sort_stream([src], fifo)
    reader.join(timeout=30)
    assert got == [ref]
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the pipe


@pytest.mark.timeout(60)
def test_a_symlinked_output_keeps_its_link_and_replaces_the_file_it_names(tmp_path: Path) -> None:
    src, ref = _shuffled(tmp_path)
    target = tmp_path / "data" / "sorted.jsonl"
    target.parent.mkdir()
    target.write_bytes(b"old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    sort_stream([src], link)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_bytes() == ref


@pytest.mark.timeout(90)
def test_dev_stdout_appended_to_a_file_keeps_what_the_file_held(tmp_path: Path) -> None:
    """``sort ... --out /dev/stdout >> all.jsonl``: /dev/stdout names the open file (a
    regular one here), which is written into, after what it held. It was read as a
    symlink to a file, which was replaced: the lines already in ``all.jsonl`` were lost,
    and the counts went to the file the shell had open, now deleted."""
    src, ref = _shuffled(tmp_path)
    kept = tmp_path / "all.jsonl"
    kept.write_bytes(b'{"earlier":1}\n')
    cli = str(Path(sys.executable).parent / "audienceflow")
    with kept.open("ab") as fh:
        done = subprocess.run(
            [cli, "sort", str(src), "--out", "/dev/stdout"],
            stdout=fh, stderr=subprocess.PIPE, cwd=tmp_path, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert kept.read_bytes() == b'{"earlier":1}\n' + ref
    assert b"5 lines in event-time order in /dev/stdout" in done.stderr


@pytest.mark.timeout(60)
def test_an_output_that_is_a_symlink_loop_is_an_error_naming_it(tmp_path: Path) -> None:
    """Not a traceback (pathlib's "Symlink loop" RuntimeError): exit 2 and one line."""
    src, _ = _shuffled(tmp_path)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop.name)
    done = _cli("sort", str(src), "--out", str(loop), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert b"Traceback" not in done.stderr, done.stderr
    assert b"loop.jsonl" in done.stderr and b"symbolic links" in done.stderr, done.stderr


@pytest.mark.timeout(90)
def test_a_sort_stopped_by_sigterm_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """A pipeline stopped by its supervisor (SIGTERM, as ``timeout`` or Kubernetes send):
    the runs of raw events spilled to ``$TMPDIR`` (with ``--out -``) or beside the output
    go, as on Ctrl-C; exit 143 and one line, no traceback. SIGTERM used to end the sort
    where it stood, leaving them."""
    src = _write(
        tmp_path / "in.jsonl",
        [
            _line(f"2026-03-02T08:{m:02d}:{s:02d}Z", uid=f"u{s}")
            for m in range(60)
            for s in range(60)
        ],
    )
    spill = tmp_path / "tmp"
    spill.mkdir()
    cli = str(Path(sys.executable).parent / "audienceflow")
    proc = subprocess.Popen(
        [cli, "sort", str(src), "--out", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(spill)},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    # Nothing reads its output: once its folder is there it waits on the full pipe.
    deadline = time.monotonic() + 60
    while not list(spill.glob(".audienceflow-sort-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    assert list(spill.glob(".audienceflow-sort-*"))
    proc.terminate()
    code = proc.wait(timeout=60)  # its output unread: no wait on the full pipe as it exits
    proc.stdout.close()
    err = proc.stderr.read()
    assert code == 143, err
    assert b"Traceback" not in err and b"stopped" in err, err
    assert list(spill.iterdir()) == []
