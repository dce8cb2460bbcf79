"""The command line a new user meets: plain help with examples, --version, and the
worker's log options (--log-level, --log-format json, no credentials in a line)."""

from __future__ import annotations

import gzip
import io
import logging
import os
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import pytest
import servers
from workers import CLI, Worker, stream_lines, write_config

from audienceflow.flows import logs
from audienceflow.flows.cli import _parser, dead_letter_hint, few_late_hint, format_hint, main

COMMANDS = ("replay", "check-config", "run", "profile", "schemas", "report")


def help_text(*argv: str) -> str:
    done = subprocess.run([CLI, *argv, "--help"], capture_output=True, text=True, check=True)
    return done.stdout


def test_version_comes_from_the_package_metadata() -> None:
    done = subprocess.run([CLI, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"audienceflow {version('audienceflow')}"


def test_help_has_no_markup_and_an_example_for_every_command() -> None:
    top = help_text()
    assert "``" not in top and ":func:" not in top
    for command in COMMANDS:
        assert f"audienceflow {command}" in top.split("examples:", 1)[1], command
        text = help_text(command)
        assert "``" not in text, command
        example = text.split("example:", 1)[1]
        assert f"audienceflow {command}" in example, command


def test_log_options_are_checked_by_the_parser() -> None:
    args = _parser().parse_args(["run", "--log-level", "debug", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("DEBUG", "json")
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--log-format", "xml"])


def test_json_log_lines_parse_and_mask_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.configure("WARNING", "json")
        log = logging.getLogger("audienceflow.test")
        log.info("not shown below WARNING")
        log.warning("cannot reach %s", "redis://user:s3cret@10.0.0.5:6379/0")
        try:
            raise RuntimeError("boom at redis://:s3cret@h:1")
        except RuntimeError:
            log.exception("failed")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [orjson.loads(x) for x in stream.getvalue().splitlines() if x.startswith("{")]
    assert [x["message"] for x in lines] == [
        "cannot reach redis://user:***@10.0.0.5:6379/0",
        "failed",
    ]
    assert lines[0]["level"] == "WARNING" and lines[0]["ts"].endswith("Z")
    assert "RuntimeError" in lines[1]["exc"]
    assert "s3cret" not in stream.getvalue()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_worker_logs_json_lines_with_log_format_json(kafka_broker: str, tmp_path: Path) -> None:
    servers.create_topics(kafka_broker, ["cli.in"], partitions=1)
    servers.produce_lines(kafka_broker, "cli.in", stream_lines()[:200])
    cfg = write_config(
        tmp_path / "w.yaml",
        time={"idle_after": "1h"},
        kafka={"brokers": kafka_broker, "input_topic": "cli.in", "tail": False, "partitions": 1,
               "startup_timeout": "5s",
               "topics": {"segment_changes": "cli.c", "actions": "cli.a", "sessions": "cli.s",
                          "dead_letters": "cli.d"}},
    )  # fmt: skip
    worker = Worker(cfg, tmp_path / "worker.log", "--log-format", "json")
    assert worker.wait(90) == 0, worker.log()
    records = [orjson.loads(x) for x in worker.log().splitlines() if x.startswith('{"')]
    assert records, worker.log()
    assert all(set(r) >= {"ts", "level", "logger", "message"} for r in records)
    assert any(r["message"].startswith("input finished") for r in records), records


DEMO = Path(__file__).parent.parent / "examples"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("columns", "whole"), [(None, True), ("80", False)])
def test_a_summary_written_to_a_pipe_is_laid_out_wide_unless_columns_says_otherwise(
    tmp_path: Path, columns: str | None, whole: bool
) -> None:
    # `make demo > log` or a CI log: rich would lay the experiments table out for 80
    # columns and cut its headers ("conver…"); a pipe now gets 120, $COLUMNS still wins.
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["AUDIENCEFLOW_PII_SALT"] = "test-salt"
    if columns is not None:
        env["COLUMNS"] = columns
    done = subprocess.run(
        [
            CLI,
            "replay",
            str(DEMO / "stream.jsonl.gz"),
            "--config",
            str(DEMO / "demo.yaml"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    headers = "conversion lift" in done.stdout and "rev/user diff" in done.stdout
    assert headers is whole, done.stdout


def test_the_format_hint_boundary() -> None:
    counts = {"events_in": 1000, "dead_lettered_by_reason": {"not_json": 500}}
    assert format_hint(counts) is None
    counts["dead_lettered_by_reason"]["not_json"] = 501
    assert (format_hint(counts) or "").startswith("501 of 1,000 lines were not_json")
    assert format_hint({"events_in": 0, "dead_lettered_by_reason": {}}) is None


@pytest.mark.timeout(120)
def test_a_csv_export_replayed_as_it_is_gets_a_hint_and_loses_nothing(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text(
        "event_time,event_type,product_id,user_id\n"
        "2019-10-01 00:00:00 UTC,view,44600062,541312140\n"
        "2019-10-01 00:00:01 UTC,cart,3900821,554748717\n"
    )
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    done = subprocess.run(
        [CLI, "replay", str(csv), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "3 of 3 lines were not_json: a replay reads JSON Lines" in done.stderr, done.stderr
    dead = (tmp_path / "out" / "dead_letters.jsonl").read_text().splitlines()
    assert len(dead) == 3


@pytest.mark.parametrize("argv", [["run", "--workers", "0"], ["replay", "x", "--workers", "-1"],
                                  ["replay", "x", "--processes", "0"]])  # fmt: skip
def test_zero_workers_is_refused_by_the_parser(argv: list[str]) -> None:
    """`run --workers 0` read nothing and reported `input finished: events in 0`, exit 0."""
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2


@pytest.mark.timeout(120)
def test_a_replay_whose_lines_are_all_dead_lettered_says_why(tmp_path: Path) -> None:
    # A warehouse export writes its times without a zone: every line is a bad_timestamp,
    # and before this hint the replay said only "dead-lettered: bad_timestamp 3", exit 0.
    src = tmp_path / "export.jsonl"
    src.write_text(
        "".join(
            f'{{"type":"track","event":"Product Viewed","userId":"u{i}",'
            f'"timestamp":"2026-03-02 10:00:0{i}.000","messageId":"m{i}"}}\n'
            for i in range(3)
        )
    )
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    done = subprocess.run(
        [CLI, "replay", str(src), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stderr.split())
    assert "3 of 3 lines were bad_timestamp" in text, done.stderr
    assert "it has no UTC offset or Z" in text, done.stderr


@pytest.mark.timeout(30)
def test_the_dead_letter_hint_boundary(tmp_path: Path) -> None:
    counts = {"events_in": 1000, "dead_lettered_by_reason": {"no_identity": 500, "late_event": 400}}
    assert dead_letter_hint(counts, tmp_path / "none.jsonl") is None
    counts["dead_lettered_by_reason"]["no_identity"] = 501
    assert dead_letter_hint(counts, tmp_path / "none.jsonl") == (
        "501 of 1,000 lines were no_identity (see none.jsonl)."
    )
    # late_event and not_json have hints of their own
    late = {"events_in": 10, "dead_lettered_by_reason": {"late_event": 9, "not_json": 1}}
    assert dead_letter_hint(late, tmp_path / "none.jsonl") is None
    assert dead_letter_hint({"events_in": 0, "dead_lettered_by_reason": {}}, tmp_path) is None


@pytest.mark.timeout(120)
def test_an_out_directory_that_cannot_be_written_is_a_start_error(tmp_path: Path) -> None:
    """An existing file given as ``--out`` made a traceback at the end of the replay (exit
    1, which says counts did not reconcile); a path that cannot be made, a Rust panic
    (exit 3, unreadable input). Both are now refused before reading: exit 2, one line."""
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"type":"page","name":"Home","userId":"u1","timestamp":"2026-03-02T10:00:00Z"}\n'
    )
    (tmp_path / "file").write_text("")
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        done = subprocess.run(
            [CLI, "replay", str(src), "--out", str(out)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "is not a directory this process can write" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = subprocess.run(
        [CLI, "replay", str(src), "--out", str(tmp_path / "new" / "out")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # a directory not there yet is made


def _replay_cli(
    tmp_path: Path, args: list[str], out: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    argv = [CLI, "replay", *args, "--out", str(tmp_path / out)]
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done


def _stdin_stream() -> bytes:
    """400 lines of the bundled stream, one not JSON and one an hour late (its dead
    letter's detail names the input), so the source's name appears in the outputs."""
    lines = stream_lines()[:400]
    late = orjson.loads(lines[300])
    late["timestamp"] = "2026-03-02T07:00:00Z"
    late["messageId"] = "late-1"
    lines[300:300] = [b"not json", orjson.dumps(late)]
    return b"\n".join(lines) + b"\n"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("gz", [False, True])
def test_a_replay_of_stdin_named_dash_equals_the_replay_of_the_same_file(
    tmp_path: Path, gz: bool
) -> None:
    # `zcat stream.jsonl.gz | audienceflow replay - --out DIR` was refused ("input '-'
    # does not exist"). The same bytes by path give the same files; only the input's
    # name differs, where it appears: "-" for standard input.
    data = _stdin_stream()
    if gz:
        data = gzip.compress(data)  # a .gz piped as it is (`cat x.gz |`): read by its bytes
    src = tmp_path / ("stream.jsonl.gz" if gz else "stream.jsonl")
    src.write_bytes(data)
    _replay_cli(tmp_path, ["-"], "piped", stdin=data)
    _replay_cli(tmp_path, [str(src)], "named")
    piped = {p.name: p.read_bytes() for p in (tmp_path / "piped").iterdir()}
    named = {p.name: p.read_bytes() for p in (tmp_path / "named").iterdir()}
    assert sorted(piped) == sorted(named)  # the copy of standard input is gone
    dead = named["dead_letters.jsonl"]
    assert dead.count(str(src).encode()) >= 3  # two positions, one late detail
    named["dead_letters.jsonl"] = dead.replace(str(src).encode(), b"-")
    assert piped == named
    reasons = [orjson.loads(x)["reason"] for x in piped["dead_letters.jsonl"].splitlines()]
    assert {"not_json", "late_event"} <= set(reasons)
    assert b'"position":"-:301"' in piped["dead_letters.jsonl"]


@pytest.mark.timeout(180)
def test_stdin_is_read_whole_by_a_replay_of_two_processes(tmp_path: Path) -> None:
    # The forked processes see the copy of standard input the parent made; one reads it.
    data = _stdin_stream()
    _replay_cli(tmp_path, ["-", "--processes", "2"], "piped", stdin=data)
    summary = orjson.loads((tmp_path / "piped" / "summary.json").read_bytes())
    assert summary["counts"]["events_in"] == 402
    assert summary["counts"]["reconciled"] is True
    assert not [p for p in (tmp_path / "piped").iterdir() if p.name.startswith(".")]


@pytest.mark.timeout(60)
def test_stdin_as_a_control_file_is_refused_saying_so(tmp_path: Path) -> None:
    src = tmp_path / "stream.jsonl"
    src.write_bytes(_stdin_stream())
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    done = subprocess.run(
        [CLI, "replay", str(src), "--control", "-", "--out", str(tmp_path / "out")],
        input=b"", capture_output=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "standard input can be read as an INPUT of events only" in done.stderr.decode()


@pytest.mark.timeout(120)
def test_a_replay_with_a_few_late_events_names_the_key_that_sets_lateness(
    tmp_path: Path,
) -> None:
    # 1 late line of 402 is under the share that gets the sort hint: the table counted it,
    # and nothing said which setting decides what is late.
    src = tmp_path / "stream.jsonl"
    src.write_bytes(_stdin_stream())
    done = _replay_cli(tmp_path, [str(src)], "out")
    text = " ".join(done.stderr.decode().split())
    assert (
        "1 of 402 lines were late_event: older than their input's watermark, which trails "
        "its latest events by time.allowed_lateness (120s)." in text
    ), text
    assert "audienceflow sort" not in text


@pytest.mark.timeout(30)
def test_the_few_late_events_line_is_only_for_some_and_not_many() -> None:
    counts = {"events_in": 1000, "dead_lettered_by_reason": {"no_identity": 3}}
    assert few_late_hint(counts, 120.0) is None
    counts["dead_lettered_by_reason"]["late_event"] = 50
    assert (few_late_hint(counts, 120.0) or "").startswith("50 of 1,000 lines were late_event")
    counts["dead_lettered_by_reason"]["late_event"] = 51  # the sort hint's, not this line's
    assert few_late_hint(counts, 120.0) is None


def _stopped_replay(tmp_path: Path, stdin: Any, args: list[str], ready: Any) -> tuple[int, str]:
    """A replay of standard input sent SIGTERM once ``ready(out)`` says so: its status,
    its stderr."""
    import signal
    import time

    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [CLI, "replay", "-", "--out", str(out), *args],
        stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ready(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr.decode()


@pytest.mark.timeout(120)
def test_sigterm_while_stdin_is_copied_removes_the_copy_and_says_so(tmp_path: Path) -> None:
    """SIGTERM killed the replay where it stood: the copy of standard input (the raw,
    unscrubbed events) stayed in the output folder."""
    with subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE) as feeder:  # never ends
        code, stderr = _stopped_replay(
            tmp_path, feeder.stdout, [], lambda out: any(out.glob(".stdin-*/stdin"))
        )
        feeder.kill()
    assert code == 143, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert not list((tmp_path / "out").glob(".stdin-*"))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_during_the_replay_stops_it_and_its_processes(
    tmp_path: Path, processes: int
) -> None:
    """With ``--processes 2`` the parent died and its processes ran on to the end,
    writing a whole set of outputs after the caller was told the run failed."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(stream_lines() * 20) + b"\n")
    with src.open("rb") as stdin:
        code, stderr = _stopped_replay(
            tmp_path, stdin, ["--processes", str(processes)],
            lambda out: (out / "sessions.jsonl").exists(),
        )  # fmt: skip
    assert code == 143, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    out = tmp_path / "out"
    assert not list(out.glob(".stdin-*")) and not (out / "summary.json").exists()
    done = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True, check=False)
    assert done.stdout == "", done.stdout  # no process of the cluster left running


@pytest.mark.timeout(60)
def test_a_closed_stdin_or_an_empty_out_is_a_start_error(tmp_path: Path) -> None:
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    closed = subprocess.run(
        [CLI, "replay", "-", "--out", str(tmp_path / "o")],
        stdin=None, close_fds=True, capture_output=True, text=True, env=env, check=False,
        preexec_fn=lambda: os.close(0),
    )  # fmt: skip
    assert closed.returncode == 2 and "standard input is closed" in closed.stderr, closed.stderr
    empty = subprocess.run(
        [CLI, "replay", "-", "--out", ""], input=b"", capture_output=True, env=env,
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert empty.returncode == 2 and b"--out is empty" in empty.stderr, empty.stderr
    assert not list(tmp_path.glob("*.jsonl"))  # nothing written into the current directory


def test_a_failed_replay_whose_error_names_a_keyboard_interrupt_is_not_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The error's text quotes paths (``--out``, the inputs): a folder named after the
    exception made a failed run read as stopped by Ctrl-C, its error hidden, exit 130."""
    import signal

    from audienceflow.flows import replay as replay_module

    out = tmp_path / "KeyboardInterrupt"
    out.mkdir()
    (out / "summary.json").write_text("{}")

    def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"input '-': standard input could not be copied into {out}")

    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    monkeypatch.setattr(replay_module, "replay", failing)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["replay", "-", "--out", str(out)]) == 3
    assert signal.getsignal(signal.SIGTERM) is before  # the replay's handler goes with it
    err = capsys.readouterr().err
    assert "could not be copied" in err and "stopped" not in err, err
    assert (out / "summary.json").exists()  # another run's: left to be overwritten


@pytest.mark.timeout(30)
def test_a_signal_after_the_replay_finished_keeps_its_whole_summary(tmp_path: Path) -> None:
    """A SIGTERM while a finished replay prints its summary removed the summary.json of
    a complete run; one mid-run (no input read to its end: events_in null) removes it."""
    from rich.console import Console

    from audienceflow.flows.cli import _interrupted

    summary = tmp_path / "summary.json"
    err = Console(file=io.StringIO(), width=200)
    summary.write_bytes(orjson.dumps({"counts": {"events_in": 12, "reconciled": True}}))
    assert _interrupted(err, [15], str(tmp_path)) == 143 and summary.exists()
    summary.write_bytes(orjson.dumps({"counts": {"events_in": None, "reconciled": False}}))
    assert _interrupted(err, [15], str(tmp_path)) == 143 and not summary.exists()
    text = err.file.getvalue()  # type: ignore[attr-defined]
    assert "after the replay had finished" in text and "the outputs are incomplete" in text


@pytest.mark.timeout(60)
def test_a_directory_given_as_an_input_is_named_as_one_with_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``replay DIR`` said the folder "does not exist or is not a file"."""
    monkeypatch.setenv("AUDIENCEFLOW_PII_SALT", "test-salt")
    folder = tmp_path / "events"
    folder.mkdir()
    assert main(["replay", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"'{folder}' is a directory, not a file" in err
    assert not (tmp_path / "o").exists()  # refused before --out is made: no empty folder
    assert f"e.g. {folder}/*.jsonl (it holds no .jsonl or .jsonl.gz file)" in err
    for name in ("b.jsonl.gz", "a.jsonl", "notes.txt"):
        (folder / name).write_text("")
    assert main(["replay", f"{folder}/", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"e.g. {folder}/*.jsonl {folder}/*.jsonl.gz (it holds a.jsonl, b.jsonl.gz)" in err
    assert main(["sort", str(folder), "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "is a directory, not a file" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_a_directorys_input_files_are_named_in_order_and_counted_past_five(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audienceflow.flows.input_files import not_a_file

    folder = tmp_path / "events"
    folder.mkdir()
    for i in range(7):
        (folder / f"part-{6 - i}.jsonl").write_text("")
    (folder / "archive.jsonl").mkdir()  # a folder so named is no input file
    msg = not_a_file(folder)
    assert f"e.g. {folder}/*.jsonl (it holds part-0.jsonl, part-1.jsonl, part-2.jsonl" in msg
    assert "part-4.jsonl and 2 more)" in msg and "archive" not in msg
    assert main(["split", str(folder), "--parts", "2", "--out", str(tmp_path / "p")]) == 2
    assert "is a directory, not a file" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_a_failed_runs_unexpected_error_names_its_type_and_step() -> None:
    """A bug or a library's error inside a step was said as its text alone: a KeyError
    as "error 'u1'", with neither the type nor the step Bytewax named. Our own errors
    (worded for the user) stay as they are."""
    import bytewax.operators as op
    from bytewax.connectors.stdio import StdOutSink
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource, run_main

    from audienceflow.flows.cli import _reason
    from audienceflow.flows.sinks import OutputWriteError

    def run(error: Exception) -> str:
        def fail(x: int) -> int:
            raise error

        flow = Dataflow("t")
        op.output("out", op.map("boom", op.input("in", flow, TestingSource([1])), fail),
                  StdOutSink())  # fmt: skip
        with pytest.raises(RuntimeError) as caught:
            run_main(flow)
        return _reason(caught.value)

    said = run(KeyError("u1"))
    assert said.startswith("KeyError: 'u1' (") and '"t.boom.' in said, said
    assert "src/" not in said, said
    mine = "writing the outputs in 'out' failed: No space left on device"
    assert run(OutputWriteError(mine)) == mine
