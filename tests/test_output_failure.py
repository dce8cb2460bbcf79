"""A replay whose outputs cannot be written (a full disk, here ``/dev/full``, where every
write fails with ENOSPC) says so and stops: exit status 3, the folder and the system's
reason in one line, no summary.json (not even an earlier run's). Before, a write that
failed while its buffer filled made Bytewax unwind, the sink's close flushed again, that
failed too, and the process aborted (SIGABRT, 134) with no word of why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest
import redis
from workers import CLI, stream_lines

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")


def _stream(tmp_path: Path, copies: int) -> Path:
    """The bundled stream, ``copies`` times over with each copy's users and message ids
    renamed: ``copies`` times the outputs (2: segment changes over the sink's 1 MiB
    buffer, so the write fails while the run goes on, not at its end)."""
    lines = []
    for raw in stream_lines():  # the copies side by side: in the stream's time order
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            lines.append(raw)
            continue
        for k in range(copies):
            if isinstance(obj, dict):
                copy = dict(obj)
                for key in ("userId", "anonymousId", "previousId", "messageId"):
                    if isinstance(obj.get(key), str):
                        copy[key] = f"{obj[key]}~{k}"
                lines.append(orjson.dumps(copy))
            elif k == 0:
                lines.append(raw)
    path = tmp_path / f"stream-{copies}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _replay(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt", "RUST_BACKTRACE": "0"}
    argv = [CLI, "replay", str(src), "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def _full(out: Path, name: str) -> None:
    """``out`` with an earlier run's summary and the output ``name`` on a full disk."""
    out.mkdir()
    (out / "summary.json").write_text('{"counts": {"events_in": 1}}\n')
    (out / name).symlink_to("/dev/full")


def _failed(done: subprocess.CompletedProcess[str], out: Path) -> None:
    assert done.returncode == 3, (done.returncode, done.stderr[-3000:])
    assert "No space left on device" in done.stderr, done.stderr[-3000:]
    assert f"writing the outputs in {str(out)!r} failed" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not (out / "summary.json").exists()  # neither this run's nor the earlier one


@pytest.mark.timeout(180)
def test_a_write_that_fails_while_the_run_goes_on_stops_it_with_the_reason(
    tmp_path: Path,
) -> None:
    src = _stream(tmp_path, 2)
    out = tmp_path / "out"
    _full(out, "segment_changes.jsonl")
    done = _replay(src, out)
    _failed(done, out)
    # It stopped where it failed: the profiles, written at a whole run's end, are not.
    assert not (out / "profiles.jsonl").exists()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["sessions.jsonl", "profiles.jsonl"])
def test_a_write_that_fails_at_the_end_stops_it_with_the_reason(tmp_path: Path, name: str) -> None:
    """The last flush of a file (sessions) or the profiles, written at the end: the
    reason in the sink's words, not Bytewax's "error closing StatefulSinkPartition"."""
    src = _stream(tmp_path, 1)
    out = tmp_path / "out"
    _full(out, name)
    done = _replay(src, out)
    _failed(done, out)
    assert "StatefulSinkPartition" not in done.stderr, done.stderr[-3000:]


@pytest.mark.timeout(240)
def test_a_process_of_a_cluster_that_cannot_write_says_why(tmp_path: Path) -> None:
    src = _stream(tmp_path, 2)
    out = tmp_path / "out"
    _full(out, "segment_changes.jsonl")
    done = _replay(src, out, "--processes", "2")
    assert done.returncode == 3, (done.returncode, done.stderr[-3000:])
    assert "replay cluster failed" in done.stderr, done.stderr[-3000:]
    assert f": writing the outputs in {str(out)!r} failed: No space left on device" in (
        done.stderr
    ), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not (out / "summary.json").exists()


def _refused(
    src: Path, out: Path, redis_server: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``replay --redis`` against a server that refuses every write: out of memory."""
    client = redis.Redis.from_url(redis_server)
    try:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")  # below what it holds: every write refused
        return _replay(src, out, "--redis", redis_server, *extra)
    finally:
        client.config_set("maxmemory", "0")
        client.close()


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_profiles_redis_refuses_stop_the_replay_with_its_reason_and_no_summary(
    tmp_path: Path, redis_server: str
) -> None:
    """``replay --redis``: a server that refuses the writes (here: out of memory) is an
    output that cannot be written, said as one. Before, the reason was lost behind
    Bytewax's "error writing output batch", and the files' summary.json was written as
    for a whole run."""
    src = _stream(tmp_path, 1)
    out = tmp_path / "out"
    done = _refused(src, out, redis_server)
    assert done.returncode == 3, (done.returncode, done.stderr[-3000:])
    assert "refused" in done.stderr and "maxmemory" in done.stderr, done.stderr[-3000:]
    assert "error writing output batch" not in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not (out / "summary.json").exists()


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_process_of_a_cluster_whose_redis_refuses_says_why(
    tmp_path: Path, redis_server: str
) -> None:
    """``replay --redis --processes 2``: a process ends on Bytewax's panic, which does not
    carry Redis's answer; the run said only 'Send thread panic' and 'process 1 exited
    with 1'."""
    src = _stream(tmp_path, 1)
    out = tmp_path / "out"
    done = _refused(src, out, redis_server, "--processes", "2")
    assert done.returncode == 3, (done.returncode, done.stderr[-3000:])
    assert "replay cluster failed" in done.stderr, done.stderr[-3000:]
    assert ": Redis at redis://127.0.0.1:" in done.stderr, done.stderr[-3000:]
    assert "refused" in done.stderr and "maxmemory" in done.stderr, done.stderr[-3000:]
    assert not (out / "summary.json").exists()


@pytest.mark.timeout(60)
def test_a_replay_that_stops_before_writing_keeps_the_earlier_runs_summary(tmp_path: Path) -> None:
    """Standard input closed: the replay stops (exit 2) before it writes anything, so the
    earlier run's outputs are all still there, and so is its summary. It was removed as
    the replay started: whole outputs left without theirs."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "sessions.jsonl").write_text("")
    (out / "summary.json").write_text('{"counts": {"events_in": 1}}\n')
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" replay - --out "$1" <&-', CLI, str(out)],
        capture_output=True, text=True, env=env, timeout=50, check=False,
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "standard input is closed" in done.stderr, done.stderr[-3000:]
    assert (out / "summary.json").read_text() == '{"counts": {"events_in": 1}}\n'


@pytest.mark.timeout(120)
def test_replay_called_from_python_leaves_no_earlier_summary_when_it_fails(
    tmp_path: Path,
) -> None:
    """``replay()`` itself, not only the CLI, removes an earlier run's summary once it
    writes: a caller that catches the error finds none to mistake for this run's."""
    from audienceflow.flows.replay import replay
    from audienceflow.operators.settings import Settings

    src = _stream(tmp_path, 2)
    out = tmp_path / "out"
    _full(out, "segment_changes.jsonl")  # fails while the run goes on
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "test-salt"})
    with pytest.raises(RuntimeError):
        replay([str(src)], out, settings)
    assert not (out / "summary.json").exists()
