"""Replays over several local processes forked once the engine is loaded
(``flows.replay.run_processes``, ``audienceflow replay --processes N``).

- The processes are forked from the caller, not spawned: each starts with what the
  caller had in memory (so the imports are paid once), and knows the whole cluster.
- A failing process stops the others (a Bytewax cluster would wait for it forever)
  and the caller gets an error naming it.
- A replay over 2 processes, each reading its own file with ``state.placement:
  partition``, gives the outputs of one process over the whole stream.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from audienceflow.flows.cli import main
from audienceflow.flows.replay import run_processes
from tests.helpers import at, read_jsonl, write_stream
from tests.test_placement import P0, P1, _events, _outputs


@pytest.mark.timeout(60)
def test_processes_are_forked_with_the_callers_memory_and_the_cluster_addresses(
    tmp_path: Path,
) -> None:
    # Made here, after every import: a spawned interpreter could not see it.
    token = {"made_in": os.getpid()}

    def part(i: int, addresses: list[str]) -> None:
        line = f"{token['made_in']} {os.getppid()} {os.getpid()} {' '.join(addresses)}"
        (tmp_path / f"p{i}").write_text(line)

    run_processes(part, 3)
    rows = [(tmp_path / f"p{i}").read_text().split() for i in range(3)]
    me = str(os.getpid())
    assert all(r[0] == me and r[1] == me for r in rows)  # the caller's object, its children
    assert len({r[2] for r in rows}) == 3 and me not in {r[2] for r in rows}
    addresses = rows[0][3:]
    assert len(addresses) == 3 and len(set(addresses)) == 3
    assert all(r[3:] == addresses for r in rows)
    assert all(a.startswith("127.0.0.1:") for a in addresses)


@pytest.mark.timeout(60)
def test_a_failing_process_stops_the_others_and_is_named(tmp_path: Path) -> None:
    never_written, _keep_open = os.pipe()

    def part(i: int, addresses: list[str]) -> None:
        if i == 1:
            raise ValueError("boom")
        (tmp_path / f"started-{i}").write_text(str(os.getpid()))
        os.read(never_written, 1)  # blocks as a worker waiting for a peer would

    with pytest.raises(RuntimeError, match="process 1 exited with 1"):
        run_processes(part, 2)
    pid = int((tmp_path / "started-0").read_text())
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: nothing of it is left running


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="processes must be >= 1"):
        run_processes(lambda i, a: None, 0)


@pytest.mark.timeout(120)
def test_a_replay_on_two_processes_gives_the_outputs_of_one(tmp_path: Path) -> None:
    a, b = _events(P0, 0), _events(P1, 5)
    f0 = write_stream(tmp_path / "f0.jsonl", a)
    f1 = write_stream(tmp_path / "f1.jsonl", b)
    whole = write_stream(tmp_path / "all.jsonl", sorted([*a, *b], key=lambda e: e["timestamp"]))
    common = "models:\n  enabled: false\nprivacy:\n  salt: test-salt\n"
    placed = tmp_path / "placed.yaml"
    placed.write_text(common + "state:\n  placement: partition\n")
    shared = tmp_path / "shared.yaml"
    shared.write_text(common)
    two = ["replay", str(f0), str(f1), "--config", str(placed), "--processes", "2"]
    assert main([*two, "--out", str(tmp_path / "two")]) == 0
    assert (
        main(["replay", str(whole), "--config", str(shared), "--out", str(tmp_path / "one")]) == 0
    )
    summary = orjson.loads((tmp_path / "two" / "summary.json").read_bytes())
    assert summary["counts"]["reconciled"] and summary["counts"]["processed"] == 16
    # 2 users of 4 events on each shard, each shard on the process reading its file.
    assert summary["placement"] == {
        "mode": "partition",
        "events_routed_away": 0,
        "processed_by_shard": {"shard-000": 8, "shard-001": 8},
    }
    assert _outputs(tmp_path / "two") == _outputs(tmp_path / "one")
    # Each user's visit is one session: Home, view, add, Home.
    assert sorted(s["user_id"] for s in read_jsonl(tmp_path / "two" / "sessions.jsonl")) == sorted(
        [*P0, *P1]
    )


@pytest.mark.timeout(120)
def test_receipts_of_a_replay_on_two_processes_verify_and_keep_their_ids(tmp_path: Path) -> None:
    # A receipt crossing from its shard's process to the one writing it was pickled
    # without where its request was read: its receipt_id was made again without it, so
    # it differed from one process's and no longer matched the chain that hashed it
    # ("receipt 1 does not start the chain").
    events = sorted([*_events(P0, 0), *_events(P1, 5)], key=lambda e: e["timestamp"])
    stream = write_stream(tmp_path / "s.jsonl", events)
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        f'{{"type":"delete","id":"{P0[0]}","requestId":"r1","timestamp":"{at(2.5)}"}}\n'
        f'{{"type":"suppress","id":"{P1[1]}","requestId":"r2","timestamp":"{at(16)}"}}\n'
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  enabled: false\nprivacy:\n  salt: test-salt\n")
    common = ["replay", str(stream), "--config", str(cfg), "--control", str(requests)]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--processes", "2", "--out", str(tmp_path / "two")]) == 0
    one = read_jsonl(tmp_path / "one" / "control.jsonl")
    two = read_jsonl(tmp_path / "two" / "control.jsonl")
    assert len(one) == 2 and [r["status"] for r in one] == ["done", "done"]
    assert sorted(two, key=lambda r: r["seq"]) == one
    assert main(["verify-receipts", str(tmp_path / "two" / "control.jsonl")]) == 0


STARTUP_PROBE = """
import sys
from audienceflow.flows.cli import main
code = main(["replay", sys.argv[1], "--out", sys.argv[2], "--config", sys.argv[3]])
heavy = ("river", "river.cluster")
print(code, *sorted(m for m in heavy if m in sys.modules))
"""


@pytest.mark.timeout(120)
def test_a_replay_without_models_does_not_load_river(tmp_path: Path) -> None:
    # River (~0.5 s of start-up beyond SciPy) is for the models only: a replay without
    # models does not load it. (operators/stats.py imports scipy.special's chdtrc only.)
    import subprocess
    import sys

    stream = write_stream(tmp_path / "s.jsonl", _events(P0, 0))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  enabled: false\nprivacy:\n  salt: test-salt\n")
    done = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, str(stream), str(tmp_path / "out"), str(cfg)],
        capture_output=True,
        text=True,
        check=True,
        timeout=100,
    )
    assert done.stdout.strip().splitlines()[-1] == "0"
    assert len(read_jsonl(tmp_path / "out" / "sessions.jsonl")) == 2


@pytest.mark.timeout(60)
def test_a_failing_process_says_its_own_error_not_an_earlier_runs_write_failure(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write failure recorded by an earlier replay in this Python process (a caller
    that ran one and caught its error) is no reason for this cluster's process to fail:
    the forked child printed that stale line instead of its own traceback."""
    from audienceflow.flows import sinks

    monkeypatch.setattr(sinks, "FAILURES", ["writing the outputs in 'old' failed: stale"])

    def part(i: int, addresses: list[str]) -> None:
        raise ValueError("this run's own failure")

    with pytest.raises(RuntimeError, match="process 0 exited with 1"):
        run_processes(part, 1)
    err = capfd.readouterr().err
    assert "this run's own failure" in err, err
    assert "stale" not in err, err


@pytest.mark.timeout(60)
def test_a_process_that_fails_after_another_still_says_why(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The process whose own error stops a cluster (Redis refusing its writes) is often
    not the first to exit: the others end on Bytewax's panic as it fails, sooner. It was
    terminated then, before it said why."""
    from audienceflow.flows import sinks

    def part(i: int, addresses: list[str]) -> None:
        if i == 1:
            raise RuntimeError("Send thread panic")  # at once, as Bytewax's panic
        time.sleep(0.5)  # still unwinding its own failure
        sinks.FAILURES.append("its own reason")
        raise RuntimeError("Bytewax's panic")

    with pytest.raises(RuntimeError, match="process 1 exited with 1; process 0 exited with 1"):
        run_processes(part, 2)
    err = capfd.readouterr().err
    assert "process 0: its own reason" in err, err


def _stray(exit_after: float, code: int) -> subprocess.Popen[bytes]:
    """A child of the test process that is none of the cluster's (as a library starts)."""
    script = f"import sys, time; time.sleep({exit_after}); sys.exit({code})"
    return subprocess.Popen([sys.executable, "-c", script])


@pytest.mark.timeout(60)
def test_a_child_the_caller_started_keeps_its_exit_status_through_a_run() -> None:
    """The cluster's wait took any child of the caller (``os.wait()``): a child a library
    had started, ending during the run, was reaped there and its own waiter read 0 for
    its exit status 7."""
    stray = _stray(0.1, 7)

    def part(i: int, addresses: list[str]) -> None:
        time.sleep(1.0)  # the stray ends meanwhile

    run_processes(part, 2)
    assert stray.wait(10) == 7


@pytest.mark.timeout(60)
def test_a_child_the_caller_started_keeps_its_exit_status_through_a_wind_down() -> None:
    """After a process fails, the others' grace (``_wind_down``) waited with
    ``waitpid(-1)``: a child of the caller ending then was reaped and its status lost."""
    stray = _stray(0.5, 7)

    def part(i: int, addresses: list[str]) -> None:
        if i == 1:
            raise ValueError("boom")
        time.sleep(2.0)  # in its grace while the stray ends

    with pytest.raises(RuntimeError, match=r"replay cluster failed: process 1 exited with 1$"):
        run_processes(part, 2)
    assert stray.wait(10) == 7
