"""bench/placement.py against a real multi-process Bytewax cluster.

The scaling bench explains its numbers by which worker reads each input file and
which worker holds each shard; if a Bytewax upgrade changed either rule, this
fails instead of the explanation silently going wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import placement  # noqa: E402

PARTS = ["zz-a", "aa-c", "mm-b", "bb-d", "cc-e"]  # not in sorted order
KEYS = [f"shard-{i:03d}" for i in range(16)] + ["u1", "anon-2", "é"]

PROBE = """
import os
import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

OUT = os.environ["PROBE_OUT"]
PARTS = os.environ["PROBE_PARTS"].split(",")
KEYS = os.environ["PROBE_KEYS"].split(",")


def log(line):
    with open(os.path.join(OUT, f"log-{os.getpid()}"), "a") as fh:
        fh.write(line + "\\n")


class Part(StatefulSourcePartition):
    def __init__(self, name):
        self.name = name
        self.done = False
        log(f"part {name}")

    def next_batch(self):
        if self.done:
            raise StopIteration
        self.done = True
        return [(k, self.name) for k in KEYS] if self.name == PARTS[0] else []

    def snapshot(self):
        return None


class Source(FixedPartitionedSource):
    def list_parts(self):
        return PARTS

    def build_part(self, step_id, for_part, resume_state):
        return Part(for_part)


class Sink(StatelessSinkPartition):
    def write_batch(self, items):
        pass


class Workers(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        log(f"worker {worker_index}")
        return Sink()


def first(state, value):
    return True, value


def seen(key_value):
    log(f"key {key_value[0]}")
    return key_value


flow = Dataflow("placement_probe")
keyed = op.input("in", flow, Source())
once = op.stateful_map("once", keyed, first)
op.output("out", op.map("log", once, seen), Workers())
"""


def _run(tmp_path: Path, workers: int) -> dict[str, dict[str, int]]:
    (tmp_path / "placement_probe.py").write_text(PROBE)
    out = tmp_path / f"out-{workers}"
    out.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PROBE_OUT": str(out),
        "PROBE_PARTS": ",".join(PARTS),
        "PROBE_KEYS": ",".join(KEYS),
    }
    subprocess.run(
        [sys.executable, "-m", "bytewax.testing", "placement_probe:flow", "-p", str(workers)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    parts: dict[str, int] = {}
    keys: dict[str, int] = {}
    for log in out.glob("log-*"):
        lines = log.read_text(encoding="utf-8").splitlines()
        (index,) = [int(x.split()[1]) for x in lines if x.startswith("worker ")]
        for x in lines:
            kind, _, name = x.partition(" ")
            if kind == "part":
                parts[name] = index
            elif kind == "key":
                keys[name] = index
    return {"parts": parts, "keys": keys}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [2, 3])
def test_partitions_and_keys_land_where_placement_says(tmp_path: Path, workers: int) -> None:
    got = _run(tmp_path, workers)
    assert got["parts"] == placement.partition_workers(PARTS, workers)
    assert got["keys"] == {k: placement.key_worker(k, workers) for k in KEYS}
    # Not a constant: the keys are spread over more than one worker.
    assert len(set(got["keys"].values())) > 1


def test_a_pinned_key_lives_with_the_partition_of_its_index() -> None:
    for i in range(16):
        key = placement.pinned_key(f"shard-{i:03d}", i)
        assert key.startswith(f"shard-{i:03d}")
        for workers in (1, 2, 4, 8, 16):
            assert placement.key_worker(key, workers) == i % workers
    # The plain names do not: shard-000..003 share one worker of two.
    assert len({placement.key_worker(f"shard-{i:03d}", 2) for i in range(4)}) == 1
