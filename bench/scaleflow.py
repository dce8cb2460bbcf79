"""The replay flow of the scaling bench, with measurements.

``python bench/scaleflow.py N`` runs it as a cluster of N local processes forked from
one that has done the imports (``flows.replay.run_processes``, what ``audienceflow
replay --processes N`` does); ``python -m bytewax.testing scaleflow:flow() -p N``
spawns N interpreters that each import everything (the bench's ``launch="spawn"``).

It is ``flows.replay.env_flow()`` (inputs, output directory and config from the
environment) with two measurements added, so the bench can say where a
multi-process replay spends its time:

- the file sink's own time and record count (``sink.json`` in the output
  directory): every output record of every worker is written by the one sink
  partition; with ``AUDIENCEFLOW_SINK_PER_WORKER=1`` there is one sink partition
  per input file instead, on the worker reading it, each writing its own
  subdirectory ``sink-<i>/`` (as the live worker's sink is one per worker) and
  the shards of ``state.placement: partition`` write to the one beside them;
- each process's CPU seconds (``cpu-<pid>.json``), written at exit, with the wall
  and CPU time at which it was ready to read (its imports done, River's too), so the
  bench can tell start-up (its own section) from the steady state; a forked process
  is ready when forked, and its CPU counts from there (the launcher's imports are in
  the launcher's own CPU, ``launcher.json``).

Like ``audienceflow replay``, it tunes the garbage collector (``flows.tune_gc``).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from audienceflow.flows import replay as replay_module
from audienceflow.flows import tune_gc
from audienceflow.flows.placement import place
from audienceflow.flows.sinks import ReplayFileSink, _FilePartition
from audienceflow.operators.settings import Settings
from audienceflow.operators.tally import RunTally


class TimedFileSink(ReplayFileSink):
    """``ReplayFileSink`` whose partition reports the time spent writing and closing."""

    # Per worker: shard key -> index of its sink partition (that of its input file).
    local: dict[str, int] | None = None
    parts = 1

    def list_parts(self) -> list[str]:
        return [f"sink-{i:03d}" for i in range(self.parts)] if self.local else ["replay"]

    def part_fn(self, item_key: str) -> int:
        return self.local.get(item_key, 0) if self.local else 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> Any:
        if self.local:
            part: Any = _FilePartition(self.out / for_part, RunTally())
        else:
            part = super().build_part(step_id, for_part, resume_state)
        write, close = part.write_batch, part.close
        spent = {"seconds": 0.0, "records": 0, "batches": 0, "pid": os.getpid()}

        def timed_write(values: list[Any]) -> None:
            t = time.perf_counter()
            write(values)
            spent["seconds"] += time.perf_counter() - t
            spent["records"] += len(values)
            spent["batches"] += 1

        def timed_close() -> None:
            t = time.perf_counter()
            close()
            spent["seconds"] += time.perf_counter() - t
            (part.out / "sink.json").write_text(json.dumps(spent))

        part.write_batch = timed_write
        part.close = timed_close
        return part


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _report_cpu(out: Path, ready_wall: float, ready_cpu: float) -> None:
    (out / f"cpu-{os.getpid()}.json").write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "cpu_seconds": _cpu(),
                "ready_cpu_seconds": ready_cpu,
                "ready_at": ready_wall,
                "ended_at": time.time(),
            }
        )
    )


def _setup() -> Path:
    import audienceflow.models.hook  # noqa: F401 - River: part of start-up, not of the run

    out = Path(os.environ["AUDIENCEFLOW_REPLAY_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("AUDIENCEFLOW_SINK_PER_WORKER") == "1":
        inputs = os.environ["AUDIENCEFLOW_REPLAY_INPUTS"].split(":")
        config = os.environ.get("AUDIENCEFLOW_CONFIG") or None
        keys = place(Settings.load(config), inputs, inputs).shard_keys
        order = {name: i for i, name in enumerate(sorted(inputs))}
        # Sink partition i is on the worker reading the i-th file in sorted order.
        TimedFileSink.local = {k: order[inputs[i]] for i, k in enumerate(keys)}
        TimedFileSink.parts = len(inputs)
    replay_module.ReplayFileSink = TimedFileSink  # type: ignore[misc]
    return out


def flow() -> Dataflow:
    """The flow of one spawned process (``bytewax.testing -p N``)."""
    out = _setup()
    atexit.register(_report_cpu, out, time.time(), _cpu())
    tune_gc()  # as `audienceflow replay` does
    return replay_module.env_flow()


def main(processes: int) -> None:
    """A cluster of ``processes`` processes forked after the imports and the flow's build."""
    from bytewax.testing import cluster_main

    out = _setup()
    dataflow = replay_module.env_flow()
    tune_gc()  # as `audienceflow replay` does (before the fork: each child inherits it)
    started = _cpu()

    def part(i: int, addresses: list[str]) -> None:
        ready_wall, ready_cpu = time.time(), _cpu()
        cluster_main(dataflow, addresses, i)
        _report_cpu(out, ready_wall, ready_cpu)

    replay_module.run_processes(part, processes)
    (out / "launcher.json").write_text(json.dumps({"start_cpu_seconds": started}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
