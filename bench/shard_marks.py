"""Micro-benchmark: what a shard delivery that carries only watermarks costs.

Live, a caught-up Kafka batch sends its partition's watermark to every shard: with 4
partitions placed one shard each, 3 of the 4 deliveries of a batch carry no event. This
drives four ``ShardLogic`` (as the worker builds them: stamped, periodic stats, a wall
clock) with a recorded stream cut into four partitions of one shard each, as batches of
``--batch`` events, and reports the shard calls per input batch and the CPU time per call
of each kind (``on_batch`` and the ``notify_at`` Bytewax asks after it).

``--marks-only N`` instead loads the shards with the stream, then times N watermark-only
deliveries alone (for ``valgrind --tool=cachegrind --cache-sim=no``: run with N and with
0, and divide the difference of instructions by N).

    .venv/bin/python bench/shard_marks.py /tmp/s20k.jsonl --lines 5000
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from audienceflow.flows.dataflow import Arrival, ShardLogic
from audienceflow.flows.partitions import make_ingest
from audienceflow.flows.replay import models_factory
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Watermark
from audienceflow.operators.routing import shard_name
from audienceflow.operators.settings import Settings

PARTS = 4
LATENESS = 0.1


def _settings() -> Settings:
    return Settings.load(
        environ={
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "100ms",
            "AUDIENCEFLOW_TIME__TICK": "100ms",
            "AUDIENCEFLOW_STATE__SHARDS": str(PARTS),
            "AUDIENCEFLOW_PII_SALT": "x",
        }
    )


def _partitions(path: str, lines: int, settings: Settings, rate: float) -> list[list[Event]]:
    """The stream's events by shard: partition i holds shard i's users (placement:
    partition), re-timed to come ``rate`` a second in their order, as live."""
    ingest = make_ingest(settings, "all", None, live=False)
    with open(path, "rb") as f:
        raws = [(f"all:{i}", line) for i, line in zip(range(lines), f, strict=False)]
    by_key: dict[str, list[Event]] = {shard_name(i): [] for i in range(PARTS)}
    for key, item in [*ingest.feed(raws), *ingest.end()]:
        if type(item) is Event and key in by_key:
            by_key[key].append(item)
    evs = sorted((ev for evs in by_key.values() for ev in evs), key=lambda ev: ev.ts)
    t0 = evs[0].ts if evs else 0.0
    for i, ev in enumerate(evs):
        ev.ts = t0 + i / rate
    return [by_key[shard_name(i)] for i in range(PARTS)]


def _shards(settings: Settings, wall: list[float]) -> list[ShardLogic]:
    names = [f"p{i}" for i in range(PARTS)]
    shards = []
    for i in range(PARTS):
        engine = ShardEngine(
            settings,
            ShardState(shard_name(i)),
            wall=lambda: wall[0],
            partitions=names,
            mark_due=True,
        )
        logic = ShardLogic(
            engine,
            replay=False,
            copy_snapshots=False,
            poll=5.0,
            settings=settings,
            models_factory=models_factory(settings),
            stamped=True,
            stats_every=10.0,
        )
        shards.append(logic)
    return shards


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stream")
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--marks-only", type=int, default=None)
    ap.add_argument("--rate", type=float, default=10_000.0, help="events/s of event time")
    args = ap.parse_args()
    settings = _settings()
    parts = _partitions(args.stream, args.lines, settings, args.rate)
    wall = [0.0]
    shards = _shards(settings, wall)
    top = [float("-inf")] * PARTS
    pos = [0] * PARTS
    calls = {"events": 0, "marks": 0}
    cpu = {"events": 0, "marks": 0}
    batches = 0
    clock = time.process_time_ns
    marks_only = args.marks_only is not None
    while any(pos[p] < len(parts[p]) for p in range(PARTS)):
        for p in range(PARTS):
            chunk = parts[p][pos[p] : pos[p] + args.batch]
            if not chunk:
                continue
            pos[p] += len(chunk)
            batches += 1
            top[p] = max(top[p], max(ev.ts for ev in chunk))
            wall[0] = max(wall[0], top[p] + 0.03)
            mark = top[p] - LATENESS
            for s, logic in enumerate(shards):
                kind = "events" if s == p else "marks"
                values: list[Any] = [Watermark(f"p{p}", mark, False, shard_name(s))]
                if s == p:
                    values = [*chunk, *values, Arrival(wall[0])]
                before = logic.engine.state.processed
                t0 = clock()
                logic.on_batch(values)
                logic.notify_at()
                spent = clock() - t0
                if s != p and logic.engine.state.processed == before:
                    kind = "marks, nothing applied"
                    if kind not in cpu:
                        cpu[kind] = calls[kind] = 0
                cpu[kind] += spent
                calls[kind] += 1
    if marks_only:
        # Watermark-only deliveries to shard 0 from partition 1, its watermark moving on
        # by 25 ms each (above the others' at the end: the shard's time moves only when
        # the slowest partition's does).
        logic = shards[0]
        mark = top[1] - LATENESS
        t0 = clock()
        for _ in range(args.marks_only):
            mark += 0.025
            wall[0] = mark + LATENESS + 0.03
            logic.on_batch([Watermark("p1", mark, False, shard_name(0))])
            logic.notify_at()
        spent = clock() - t0
        n = max(args.marks_only, 1)
        print(f"marks-only: {args.marks_only} calls, {spent / n / 1000:.1f} us/call")
        return
    print(f"input batches: {batches}, shard calls: {sum(calls.values())} "
          f"({sum(calls.values()) / batches:.2f}/batch), "
          f"watermark-only: {sum(calls.values()) - calls['events']}")  # fmt: skip
    for kind in cpu:
        n = max(calls[kind], 1)
        print(f"  {kind:22s}: {calls[kind]:6d} calls, {cpu[kind] / n / 1000:7.1f} us/call")


if __name__ == "__main__":
    main()
