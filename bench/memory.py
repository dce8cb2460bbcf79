"""Memory per tracked user: feed N users' events straight into one shard engine.

Each user has two sessions two hours apart (two events, then one), in event-time
order across users over a day, so the state holds a closed session in history,
open sessions, timers, segments and the dedup window, as a live worker would.
Prints one JSON line: engine events per second (of wall and of CPU time), peak RSS,
RSS growth per user, snapshot bytes per user, and how many of the users are in the
cold tier (``state.cold_after``) at the end.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from collections.abc import Iterator

from audienceflow.operators.records import Event
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_codec import encode_shard

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
CATS = ("deals", "electronics", "home", "fashion", "beauty", "sports")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


PLAN = ((0.0, "page", "Home"), (60.0, "track", "Product Added"), (7200.0, "page", "Deals"))


def events(users: int) -> Iterator[Event]:
    """Three events per user (``PLAN``), in global event-time order: the three passes over
    the users merged by time (ties: the earlier pass first), one event made at a time, so
    making them costs the same per event at every size."""
    import heapq

    yield from heapq.merge(*(_pass(users, i) for i in range(len(PLAN))), key=lambda e: e.ts)


def _pass(users: int, index: int) -> Iterator[Event]:
    """Every user's event number ``index`` of ``PLAN``, by user (so by time)."""
    spread = 86400.0 / users
    offset, etype, name = PLAN[index]
    for u in range(users):
        ts = T0 + u * spread + offset
        cat = CATS[u % len(CATS)]
        props = {"category": cat, "product_id": f"p{u % 997}", "price": 9.5}
        yield Event(
            f"m{u}-{offset:.0f}",
            f"u{u:07d}",
            None,
            etype,
            name,
            ts,
            "navigation" if etype == "page" else "engagement",
            props,
            "mobile",
            "en-US",
            "google",
        )


def main() -> None:
    users = int(sys.argv[1])
    from stages import new_engine, new_ingest

    from audienceflow.flows import tune_gc

    tune_gc()  # as the CLI does

    settings = Settings.load(None)
    engine = new_engine(settings)
    ingest = new_ingest(settings)  # events reach the shard with their partition's watermarks
    gc.collect()
    before = _rss_mb()
    # Only the engine's work is timed (routing and the shard), not making the events;
    # its CPU time too (on a shared machine the wall time also counts the others' work).
    seconds = cpu = 0.0
    batch: list[Event] = []
    n = 0
    for ev in events(users):
        batch.append(ev)
        n += 1
        if len(batch) == 1000:
            t, c = time.perf_counter(), time.process_time()
            engine.on_items([v for _, v in ingest.feed_events(batch)])
            seconds += time.perf_counter() - t
            cpu += time.process_time() - c
            batch = []
    t, c = time.perf_counter(), time.process_time()
    engine.on_items([v for _, v in ingest.feed_events(batch)])
    seconds += time.perf_counter() - t
    cpu += time.process_time() - c
    gc.collect()
    after = _rss_mb()
    snap = len(encode_shard(engine.state))  # the recovery snapshot's payload
    cold = len(engine.state.cold)
    tracked = len(engine.state.users) + cold
    print(
        json.dumps(
            {
                "users": users,
                "tracked_users": tracked,
                "cold_users": cold,
                "events": n,
                "seconds": round(seconds, 2),
                "engine_events_per_s": round(n / seconds),
                "engine_cpu_events_per_s": round(n / cpu),
                "max_rss_mb": round(_peak_rss_mb(), 1),
                "rss_bytes_per_user": round((after - before) * 2**20 / tracked),
                "state_bytes_per_user": round(snap / tracked),
            }
        )
    )


if __name__ == "__main__":
    main()
