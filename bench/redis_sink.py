"""The live profile writer (``flows/redis_store.ProfileStore``) against a real valkey.

The engine runs the first ``--lines`` lines of the bench stream with live profiles on
(one profile per user touched in each batch of 1,000 events, as a worker's shard emits
them); the writer then writes each batch's profiles in one pipeline, as the worker's
sink does. Prints one JSON line: CPU microseconds of this process per profile written
(best of ``--repeats``, each on a fresh writer and database), and the bytes the writer
holds per profile it remembers for re-publishing (``tracemalloc``, one more pass).

    python bench/redis_sink.py bench/work/stream-20000-11.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from stages import new_ingest

from audienceflow.flows.local_servers import start_redis, stop
from audienceflow.flows.redis_store import ProfileStore
from audienceflow.models.hook import build_models
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import ProfileUpdate
from audienceflow.operators.settings import Settings


def profile_batches(stream: Path, lines: int) -> list[list[ProfileUpdate]]:
    settings = Settings.load(None)
    raws = stream.read_bytes().splitlines()[:lines]
    ingest = new_ingest(settings)
    keyed = []
    for j in range(0, len(raws), 1000):  # as a source reads them: watermarks between
        keyed += ingest.feed([(str(i), raw) for i, raw in enumerate(raws[j : j + 1000], j)])
    keyed += ingest.end()
    items = [v for k, v in keyed if k != "_out"]
    models = build_models(settings, "shard-000")
    engine = ShardEngine(
        settings,
        ShardState("shard-000", models=models),
        models=models,
        partitions=["in"],
        emit_profiles=True,
    )
    batches = []
    for i in range(0, len(items), 1000):
        batch = [r for r in engine.on_items(items[i : i + 1000]) if type(r) is ProfileUpdate]
        if batch:
            batches.append(batch)
    return batches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("stream", type=Path)
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    batches = profile_batches(args.stream, args.lines)
    n = sum(len(b) for b in batches)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            client = redis.Redis.from_url(server.address)
            best = float("inf")
            for _ in range(args.repeats):
                client.flushall()
                store = ProfileStore(server.address, "bench:profile:")
                started = time.process_time()
                for batch in batches:
                    store.write(batch)
                best = min(best, time.process_time() - started)
                store.close()
            client.flushall()
            store = ProfileStore(server.address, "bench:profile:")
            store.write(batches[0])  # the connection and its buffers, before measuring
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for batch in batches[1:]:
                store.write(batch)
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            remembered = len(store.written) - len(
                {u.user_id for u in batches[0]}
            )  # those of the first batch were before the measure
            store.close()
            client.close()
        finally:
            stop(server)
    print(
        json.dumps(
            {
                "lines": args.lines,
                "profiles_written": n,
                "batches": len(batches),
                "cpu_us_per_profile": round(best / n * 1e6, 1),
                "bytes_per_remembered_profile": round(held / max(remembered, 1)),
                "remembered": len(store.written),
            }
        )
    )


if __name__ == "__main__":
    main()
