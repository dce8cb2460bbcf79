"""`make live`: broker, Redis and worker started, the stream fed, shown, and everything stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from workers import poll

from audienceflow.flows.live import (
    CATCH_UP_S,
    Seen,
    catch_up,
    catch_up_wait,
    held_back,
    read_at_stop,
    retimed,
    unread_report,
)

LIVE = [sys.executable, "-m", "audienceflow.flows.live", "--plain", "--speed", "3600"]


def test_retiming_keeps_the_recorded_gaps_from_now_and_keys_by_user() -> None:
    lines = [
        b'{"timestamp": "2026-03-02T08:00:00.000Z", "anonymousId": "a1", "type": "page"}',
        b'{"timestamp": "2026-03-02T08:10:00.500Z", "anonymousId": "a1", "userId": "u1"}',
        b"not json",
        b'{"timestamp": "2026-03-02T08:05:00Z", "userId": "u2"}',  # out of order: sent at once
    ]
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    out = retimed(lines, start)
    assert [offset for offset, _, _ in out] == [0.0, 600.5, 600.5, 600.5]
    assert [key for _, _, key in out] == [b"a1", b"u1", None, b"u2"]
    stamps = [orjson.loads(line)["timestamp"] for _, line, _ in out if line != b"not json"]
    assert stamps == [
        "2026-11-30T12:00:00.000Z",
        "2026-11-30T12:10:00.500Z",
        "2026-11-30T12:05:00.000Z",
    ]
    assert out[2][1] == b"not json"


class _Clock:
    """A clock for ``catch_up`` that moves only when it pauses (no real waiting)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def test_after_the_feed_the_worker_is_waited_for_until_it_has_read_every_stored_message() -> None:
    seen, clock = Seen(stored=10), _Clock()
    counts = iter([3.0, None, 6.0, 10.0, 99.0])  # None: its metrics did not answer once
    assert catch_up(seen, lambda: next(counts), lambda: True, 15.0, clock, clock.pause)
    assert seen.metrics["audienceflow_events_in_total"] == 10.0
    assert clock.now < 15.0  # it stopped waiting once the worker had read all


def test_the_wait_for_the_worker_is_bounded_and_ends_when_it_exits() -> None:
    seen, clock = Seen(stored=10), _Clock()
    assert not catch_up(seen, lambda: 4.0, lambda: True, 15.0, clock, clock.pause)
    assert 15.0 <= clock.now < 15.5
    clock = _Clock()
    assert not catch_up(seen, lambda: None, lambda: False, 15.0, clock, clock.pause)
    assert clock.now == 0.0  # a worker that exited is not waited for


def test_the_wait_after_the_feed_covers_partitions_let_go_one_idle_after_apart() -> None:
    # Measured at --speed 100000 for 1 s (idle_after 10 s, align_within 10 min): the
    # partitions' last events hours apart, three partitions paused behind the slowest were
    # let go one by one, each once the one before it turned idle.
    seen, clock = Seen(stored=1009), _Clock()
    steps = [(0.0, 994.0), (10.1, 999.0), (20.2, 1003.0), (30.3, 1009.0)]

    def read() -> float:
        return [n for at, n in steps if at <= clock.now][-1]

    assert catch_up_wait(10.0) == CATCH_UP_S + 3 * 10.0
    assert catch_up(seen, read, lambda: True, catch_up_wait(10.0), clock, clock.pause)
    assert 30.3 <= clock.now < 31.0
    clock = _Clock()  # the former flat 15 s stopped the worker with 10 of them unread
    assert not catch_up(seen, read, lambda: True, CATCH_UP_S, clock, clock.pause)


# The worker's /metrics at the end of a short wait, as measured (trimmed).
HELD_METRICS = """\
audienceflow_input_lag{partition="0",topic="live.clickstream"} 0.0
audienceflow_input_lag{partition="1",topic="live.clickstream"} 4.0
audienceflow_input_lag{partition="3",topic="live.clickstream"} 6.0
audienceflow_input_lag{partition="0",topic="live.control"} 2.0
audienceflow_watermark_spread_seconds{topic="live.clickstream"} 4966.0
audienceflow_watermark_spread_seconds{topic="live.control"} 9999.0
"""


def test_the_closing_lines_say_where_unread_messages_wait_and_that_alignment_held_them() -> None:
    held = held_back(HELD_METRICS, "live.clickstream", 600.0, 10.0)
    assert held.startswith(
        " They wait on the broker, in partitions 1 (4), 3 (6) by the last look at its metrics."
        " Alignment held them back: the partitions it reads were 4966 s of event time apart,"
        " and one more than time.align_within (600 s) ahead of a slower one pauses until that"
        " one turns idle, time.idle_after (10 s) after it last delivered"
    ), held
    assert unread_report(1009, 1009, 999, None, held) == (
        "10 of the 1009 fed messages were not read by the worker when it stopped "
        "(it had read 999): no outputs came of them." + held
    )
    # Partitions within align_within of each other: where they wait, no alignment.
    close = HELD_METRICS.replace("4966.0", "120.0")
    assert held_back(close, "live.clickstream", 600.0, 10.0) == (
        " They wait on the broker, in partitions 1 (4), 3 (6) by the last look at its metrics."
    )
    assert held_back("", "live.clickstream", 600.0, 10.0) == ""
    assert unread_report(10, 10, 10, None, held) == (
        "the worker read all 10 fed messages before it stopped."
    )


def test_the_closing_lines_count_the_fed_messages_the_worker_did_not_read() -> None:
    log = "a INFO w: stopped: events in 90, processed 80\nb INFO w: stopped: events in 97, x"
    assert read_at_stop(log) == 97  # the last run's closing line
    assert unread_report(100, 100, 97, 95.0) == (
        "3 of the 100 fed messages were not read by the worker when it stopped "
        "(it had read 97): no outputs came of them."
    )
    # Killed before its closing line: the metrics' last count, which it may have passed.
    assert unread_report(102, 100, None, 95.0).startswith(
        "up to 5 of the 100 fed messages were not read by the worker when it stopped "
        "(it had read 95 at the last look)"
    )
    assert unread_report(102, 100, None, 95.0).endswith("; 2 more were never stored by the broker.")
    assert unread_report(100, 100, 100, None) == (
        "the worker read all 100 fed messages before it stopped."
    )


def _pids(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"\bpid (\d+)", text)]


def _alive(pid: int) -> bool:
    """True unless the process is gone (a zombie not yet reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _counts(text: str) -> dict[str, int]:
    last = [ln for ln in text.splitlines() if " read=" in ln][-1]
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([\d.]+)", last)}


def _assert_outputs(out: Path) -> None:
    for name in ("segment_changes", "sessions", "dead_letters"):
        lines = (out / f"{name}.jsonl").read_bytes().splitlines()
        assert lines, f"no {name} copied from the topics"
        orjson.loads(lines[0])
    assert (out / "profiles.jsonl").read_bytes().splitlines()
    assert "SIGTERM received" in (out / "worker.log").read_text()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_live_runs_for_a_duration_shows_traffic_and_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "live"
    done = subprocess.run(
        [*LIVE, "--duration", "8s", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=100,
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    pids = _pids(text)
    assert len(pids) == 3, text  # broker, Redis, worker
    assert not [p for p in pids if _alive(p)], text
    shown = _counts(text)
    assert shown["read"] > 0 and shown["fed"] >= shown["read"], text
    assert shown["changes"] > 0 and shown["sessions"] > 0, text
    assert f"outputs in {out}/" in text.replace("\n", "")
    _assert_outputs(out)
    # The closing lines say how many fed messages the worker had read, by its own count.
    (read,) = re.findall(r"stopped: events in (\d+),", (out / "worker.log").read_text())
    told = re.search(r"the worker read all (\d+) fed|of the (\d+) fed messages", text)
    assert told is not None, text
    if told[1] is None:
        assert f"(it had read {read}):" in text, text


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sent", "inherited"),
    [
        (signal.SIGINT, signal.SIG_DFL),
        (signal.SIGINT, signal.SIG_IGN),  # as a shell leaves a script's background job
        (signal.SIGTERM, signal.SIG_DFL),  # `kill %1`, a CI timeout
    ],
    ids=["ctrl-c", "ctrl-c-inherited-ignored", "sigterm"],
)
def test_ctrl_c_stops_the_worker_gracefully_then_redis_and_the_broker(
    tmp_path: Path, sent: signal.Signals, inherited: Any
) -> None:
    """Also when `make live` was started with SIGINT ignored (a script's `&` job, or CI
    running the suite in the background): Python keeps an inherited SIG_IGN, so
    without its own handler Ctrl-C would do nothing. SIGTERM stops it the same way:
    Python's default would end it at once and leave its servers running."""
    out = tmp_path / "live"
    log = tmp_path / "live.out"
    pids: list[int] = []
    leaked: list[int] = []
    # The child inherits the disposition set here (no preexec_fn: pytest has threads).
    before = signal.signal(signal.SIGINT, inherited)
    try:
        with log.open("wb") as fh:
            proc = subprocess.Popen([*LIVE, "--out", str(out)], stdout=fh, stderr=subprocess.STDOUT)
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        poll(
            lambda: (
                " read=" in log.read_text()
                and _counts(log.read_text())["changes"] > 0
                and _counts(log.read_text())["sessions"] > 0
            ),
            60,
            "the view showing segment changes and sessions",
        )
        pids = _pids(log.read_text())
        proc.send_signal(sent)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pids = pids or _pids(log.read_text())
        leaked = [p for p in pids if _alive(p)]
        for pid in leaked:  # a failed stop must not leave its servers to the next tests
            os.kill(pid, signal.SIGKILL)
    text = log.read_text()
    assert "interrupted: stopped the worker (exit 0)" in text
    assert len(pids) == 3 and not leaked, text
    _assert_outputs(out)
    assert os.path.isdir(out / "recovery")


@pytest.mark.timeout(60)
def test_redis_starts_in_a_folder_named_relative_to_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make live` names its servers' folder `out/live/servers`: Redis runs in that
    folder and read `--dir out/live/servers` from there, a folder inside itself, and
    refused to start (`make live` failed on a fresh clone)."""
    import redis

    from audienceflow.flows import local_servers

    monkeypatch.chdir(tmp_path)
    server = local_servers.start_redis(Path("out") / "live" / "servers")
    try:
        assert redis.Redis.from_url(server.address).ping()
    finally:
        local_servers.stop(server)
