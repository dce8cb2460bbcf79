"""The replay flow of the scaling bench, with measurements: ``scaleflow:flow()``.

It is ``flows.replay.env_flow()`` (inputs, output directory and config from the
environment) with two measurements added, so the bench can say where a
multi-process replay spends its time:

- the file sink's own time and record count (``sink.json`` in the output
  directory): every output record of every worker is written by the one sink
  partition;
- each process's CPU seconds (``cpu-<pid>.json``), written at exit.

Like ``audienceflow replay``, it tunes the garbage collector (``flows.tune_gc``).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from audienceflow.flows import replay as replay_module
from audienceflow.flows import tune_gc
from audienceflow.flows.sinks import ReplayFileSink


class TimedFileSink(ReplayFileSink):
    """``ReplayFileSink`` whose partition reports the time spent writing and closing."""

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> Any:
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
            (self.out / "sink.json").write_text(json.dumps(spent))

        part.write_batch = timed_write
        part.close = timed_close
        return part


def _report_cpu(out: Path) -> None:
    t = os.times()
    (out / f"cpu-{os.getpid()}.json").write_text(
        json.dumps({"pid": os.getpid(), "cpu_seconds": t.user + t.system})
    )


def flow() -> Dataflow:
    out = Path(os.environ["AUDIENCEFLOW_REPLAY_OUT"])
    out.mkdir(parents=True, exist_ok=True)
    atexit.register(_report_cpu, out)
    replay_module.ReplayFileSink = TimedFileSink  # type: ignore[misc]
    tune_gc()  # as `audienceflow replay` does
    return replay_module.env_flow()
