"""Replay recorded streams through the full dataflow into files.

``replay(inputs, out_dir, settings)`` is what ``audienceflow replay`` runs:
file in, file out, in-memory state. The same inputs and config give
byte-identical output files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import cluster_main, run_main
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from audienceflow.flows.dataflow import build_flow
from audienceflow.flows.input_files import STDIN, not_a_file, spooled_stdin
from audienceflow.flows.report import REPORT
from audienceflow.flows.sinks import ReplayFileSink
from audienceflow.flows.sources import JsonlSource, total_bytes
from audienceflow.flows.summary import render
from audienceflow.operators.records import Erasure, ProfileUpdate
from audienceflow.operators.settings import Settings


def models_factory(settings: Settings) -> Any:
    """The per-shard model factory, or None when models are disabled."""
    if not settings.models.enabled:
        return None
    from audienceflow.models.hook import build_models

    return build_models


def replay_flow(
    inputs: list[str],
    out_dir: str | Path,
    settings: Settings,
    progress: Any = None,
    redis_url: str | None = None,
    control: list[str] | None = None,
    suppressed: tuple[str, ...] = (),
    files: dict[str, str] | None = None,
) -> Dataflow:
    """The replay dataflow: JSONL in, files out (and profiles to Redis with ``redis_url``).

    ``control``: files of data subjects' requests, applied at their timestamps;
    ``suppressed``: identifiers whose events are all filtered (reason ``suppressed``);
    ``files``: the file read for an input named otherwise (``-``: standard input's copy).
    """
    sink = ReplayFileSink(out_dir)

    def attach(prefix: str, stream: Stream[Any]) -> None:
        op.output(f"{prefix}_files", stream, sink)
        if redis_url:
            from audienceflow.flows.redis_store import RedisProfileSink

            r = settings.redis
            profiles = op.filter(f"{prefix}_profiles", stream, _for_store)
            op.output(f"{prefix}_redis", profiles, RedisProfileSink(redis_url, r.key_prefix, r.ttl))

    source = JsonlSource(inputs, settings, progress=progress, control=control, files=files)
    return build_flow(
        source.settings,  # with the placement of shards (flows/placement.py)
        source,
        attach,
        replay=True,
        partitions=source.list_parts(),
        models_factory=models_factory(settings),
        suppressed=suppressed,
        controls=tuple(source.control),
    )


def replay(
    inputs: list[str],
    out_dir: str | Path,
    settings: Settings,
    workers: int = 1,
    console: Console | None = None,
    redis_url: str | None = None,
    control: list[str] | None = None,
    suppressed: tuple[str, ...] = (),
    processes: int = 1,
    process_started: float | None = None,
) -> dict[str, Any]:
    """Run a replay to completion and return the summary (also in ``out_dir/summary.json``).

    With ``redis_url`` each user's final profile is also written to Redis, as the
    worker writes live profiles; the server is checked before the replay starts.
    ``control`` and ``suppressed``: see ``replay_flow``. ``processes``: a cluster of that
    many local processes (``run_processes``), each with ``workers`` worker threads; the
    input files are read by the processes in turn (``flows/placement.py``). ``process_started``:
    the ``time.perf_counter()`` the process began at, for the console's start-up figure.
    An input ``-`` is standard input, copied to a file in ``out_dir`` for the run
    (``spooled_stdin``); its lines' positions are ``-:N``.
    """
    check_inputs(inputs, control)
    if redis_url:
        from audienceflow.flows.redis_store import ProfileStore

        store = ProfileStore(redis_url, settings.redis.key_prefix)
        try:
            store.check()
        finally:
            store.close()
    # The report of an earlier replay into this folder would describe outputs this one
    # replaces: it goes, and `audienceflow report` writes this run's.
    (Path(out_dir) / REPORT).unlink(missing_ok=True)
    summary = Path(out_dir) / "summary.json"
    earlier = _identity(summary)
    try:
        with spooled_stdin(inputs, out_dir) as files:
            return _replay(
                inputs, out_dir, settings, workers, console, redis_url, control, suppressed,
                processes, process_started, files,
            )  # fmt: skip
    except Exception:
        # The files' sink writes its summary as it closes, also when another output
        # (Redis) failed the run: that one would stand for a run that did not finish. An
        # earlier run's, left as it was (the run stopped before writing), stays.
        if _identity(summary) not in (None, earlier):
            with contextlib.suppress(OSError):
                summary.unlink()
        raise


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is (its inode and modification time), None if there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def check_inputs(inputs: list[str], control: list[str] | None = None) -> None:
    """Raise ``FileNotFoundError`` saying which input or control file cannot be read as
    one: before anything is made (the command line calls it before ``--out`` is)."""
    if STDIN in (control or []):
        raise FileNotFoundError(
            "control file '-': standard input can be read as an INPUT of events only; give "
            "the control file's path"
        )
    for p in [*inputs, *(control or [])]:
        if p != STDIN and not Path(p).is_file():
            raise FileNotFoundError(not_a_file(p))


def _replay(
    inputs: list[str],
    out_dir: str | Path,
    settings: Settings,
    workers: int,
    console: Console | None,
    redis_url: str | None,
    control: list[str] | None,
    suppressed: tuple[str, ...],
    processes: int,
    process_started: float | None,
    files: dict[str, str],
) -> dict[str, Any]:
    # A bar lives in this process; forked processes could not move it.
    show = console is not None and console.is_terminal and processes <= 1
    # The models' modules (River, and SciPy through it: ~0.4 s) load before the clock
    # starts: start-up, not replaying (the demo stream's rate read 40 % low with them).
    models_factory(settings)
    started = time.perf_counter()
    if show:
        assert console is not None
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            total = total_bytes([*inputs, *(control or [])], files)
            task = bar.add_task("replaying", total=total)
            flow = replay_flow(
                inputs, out_dir, settings, lambda n: bar.advance(task, n), redis_url,
                control, suppressed, files,
            )  # fmt: skip
            _run(flow, workers)
    else:
        flow = replay_flow(inputs, out_dir, settings, None, redis_url, control, suppressed, files)
        _run(flow, workers, processes)
    elapsed = time.perf_counter() - started
    summary: dict[str, Any] = orjson.loads((Path(out_dir) / "summary.json").read_bytes())
    if console is not None:
        whole = None if process_started is None else time.perf_counter() - process_started
        render(summary, console, str(out_dir), elapsed, whole)
    return summary


def _for_store(kv: tuple[str, Any]) -> bool:
    return type(kv[1]) is ProfileUpdate or type(kv[1]) is Erasure


def _run(flow: Dataflow, workers: int, processes: int = 1) -> None:
    if processes > 1:
        run_processes(
            lambda i, addresses: cluster_main(flow, addresses, i, worker_count_per_proc=workers),
            processes,
        )
    elif workers <= 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)


def free_addresses(n: int) -> list[str]:
    """``n`` ``127.0.0.1:port`` addresses on ports free now (the OS's choice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()


# After a process of a cluster fails, how long the others may take to end by themselves.
FAIL_GRACE_S = 5.0
# How often the caller looks for an ended process of its cluster (``_exited``).
REAP_EVERY_S = 0.02


def run_processes(
    target: Callable[[int, list[str]], None],
    processes: int,
    addresses: list[str] | None = None,
) -> None:
    """Run ``target(i, addresses)`` for i in 0..processes-1, each in its own process forked
    from this one, and wait for all of them; ``target`` runs process i of a Bytewax
    cluster (``cluster_main(flow, addresses, i)``).

    Forked, not spawned: a child starts with everything this process imported (build
    the dataflow first: that imports the engine, and River when models are on), so a
    cluster of N processes pays the imports (~1 s of CPU, mostly SciPy through River)
    once instead of N times, and every process is ready to read at once. A process
    that fails stops the others (a Bytewax cluster would wait for it forever), after
    ``FAIL_GRACE_S`` for them to end by themselves (``_wind_down``), and raises
    ``RuntimeError``. It waits for these processes only (``_exited``): a child of the
    caller's own, or a library's, keeps its exit status for its own waiter. Needs
    ``os.fork`` (POSIX).
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1; got {processes}")
    addresses = addresses or free_addresses(processes)
    sys.stdout.flush()
    sys.stderr.flush()
    children: dict[int, int] = {}
    try:
        for i in range(processes):
            pid = os.fork()
            if pid == 0:  # the child: run its part, never return into the caller
                # Stopped by the parent (``_stop``) as before: at once, without a traceback.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                code = 1
                from audienceflow.flows.sinks import FAILURES

                # One an earlier replay in the caller recorded is not this process's.
                FAILURES.clear()
                try:
                    target(i, addresses)
                    code = 0
                except BaseException as exc:
                    if FAILURES:  # its own words, not Bytewax's panic that ended it
                        print(f"process {i}: {FAILURES[-1]}", file=sys.stderr)
                    elif type(exc).__name__ == "PanicException":
                        # Bytewax's panic ('Send thread panic'): its traceback is the three
                        # frames of this call; what panicked, Rust printed above it.
                        print(f"process {i}: Bytewax panicked: {exc}", file=sys.stderr)
                    else:
                        traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children[pid] = i
        failed: list[str] = []
        while children and not failed:
            done = _exited(children)
            if not done:
                time.sleep(REAP_EVERY_S)
                continue
            failed = [why for why in (_failure(children.pop(p), s) for p, s in done) if why]
            if failed:
                failed += _wind_down(children)
        if failed:
            raise RuntimeError("replay cluster failed: " + "; ".join(failed))
    except BaseException:
        _stop(children)
        raise


def _wind_down(children: dict[int, int]) -> list[str]:
    """A process failed: the others get ``FAIL_GRACE_S`` to end by themselves (on Bytewax's
    panic they do, within a second), then are terminated; which of them failed too.

    The process whose own error stopped the cluster (Redis refusing its writes) is often
    not the first to exit: the others end on Bytewax's panic as it fails, sooner. It was
    terminated then, before it said why, and the run's only words were a panic traceback
    and 'process 1 exited with 1'."""
    failed: list[str] = []
    deadline = time.monotonic() + FAIL_GRACE_S
    while children and time.monotonic() < deadline:
        done = _exited(children)
        if not done:
            time.sleep(REAP_EVERY_S)
        for pid, status in done:
            why = _failure(children.pop(pid), status)
            if why:
                failed.append(why)
    _stop(children)
    return failed


def _exited(children: dict[int, int]) -> list[tuple[int, int | None]]:
    """Those of ``children`` (pid -> process index) that have ended, reaped, each with its
    wait status (None: something else in this process reaped it first).

    Each pid is waited for by name, never ``os.wait()`` or ``waitpid(-1)``: those reap any
    child of this process, one a library (or the caller) started too, whose own waiter
    then finds it gone and its exit status lost."""
    done: list[tuple[int, int | None]] = []
    for pid in children:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done.append((pid, None))
            continue
        if got:
            done.append((pid, status))
    return done


def _failure(i: int, status: int | None) -> str | None:
    """What went wrong with process ``i``, given its wait status; None if it exited 0."""
    if status is None:
        return f"process {i} was reaped by another wait in this process: its exit status is lost"
    code = os.waitstatus_to_exitcode(status)
    return f"process {i} exited with {code}" if code != 0 else None


def _stop(children: dict[int, int]) -> None:
    """Terminate the children still running (those this process forked) and reap them."""
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        children.pop(pid, None)


def env_flow() -> Dataflow:
    """A replay dataflow described by environment variables, for ``python -m bytewax.run``
    or ``bytewax.testing -p N`` (used by the benchmarks' scaling run).

    ``AUDIENCEFLOW_REPLAY_INPUTS`` (paths joined by ``:``), ``AUDIENCEFLOW_REPLAY_OUT``,
    optional ``AUDIENCEFLOW_CONFIG``.
    """
    import os

    inputs = os.environ["AUDIENCEFLOW_REPLAY_INPUTS"].split(":")
    settings = Settings.load(os.environ.get("AUDIENCEFLOW_CONFIG") or None)
    return replay_flow(inputs, os.environ["AUDIENCEFLOW_REPLAY_OUT"], settings)
