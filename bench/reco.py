"""Cost per event with an item and memory per item of the recommender, in-process.

    .venv/bin/python bench/reco.py [--items 100000] [--users 50000] [--events 400000]
                                   [--gc engine|default]

Feeds synthetic item views/adds/orders (users browse within latent groups of items,
Zipf popularity) straight to ``Recommender.on_event`` and reports µs per event
(time.perf_counter over the whole run; evaluation on and off; learning each event at once,
and as the engine does, in model epochs read through frozen versions), and the pickled size
and traced allocation of the model per item. ``make bench`` runs it (its ``reco`` section).
The collector is tuned as the engine's CLI tunes it (``tune_gc``) unless ``--gc default``
asks for Python's default thresholds (the collector's share of the cost is the difference).
"""

from __future__ import annotations

import argparse
import gc
import math
import pickle
import random
import time
import tracemalloc
from bisect import bisect
from itertools import accumulate
from typing import Any

from audienceflow.flows import tune_gc
from audienceflow.models.reco import Evaluator, ItemModel
from audienceflow.models.recommender import Recommender
from audienceflow.operators.reco_settings import RecoSettings
from audienceflow.operators.records import Event
from audienceflow.operators.state import UserState


def stream(items: int, users: int, events: int, seed: int = 1) -> list[tuple[int, Event]]:
    rng = random.Random(seed)
    groups = max(1, items // 50)
    cum = list(accumulate(1.0 / (r + 1) ** 0.8 for r in range(items // groups)))
    out = []
    for i in range(events):
        u = rng.randrange(users)
        g = u % groups if rng.random() < 0.8 else rng.randrange(groups)
        item = f"p{g * (items // groups) + bisect(cum, rng.random() * cum[-1]) % (items // groups)}"
        r = rng.random()
        name = "Product Viewed" if r < 0.75 else "Product Added" if r < 0.95 else "Order Completed"
        props = {"products": [{"product_id": item}]} if r >= 0.95 else {"product_id": item}
        props["category"] = f"c{g % 40}"
        out.append((u, Event(f"m{i}", f"u{u}", None, "track", name, float(i), "", props)))
    return out


def run(
    evs: list[tuple[int, Event]], users: int, cfg: RecoSettings
) -> tuple[Recommender, float, float]:
    """The recommender after ``evs``, and µs per event: wall (perf_counter) and CPU."""
    rec = Recommender(cfg, frozenset({"Product Added"}))
    states = [UserState(f"u{u}", first_seen=0.0) for u in range(users)]
    t, c = time.perf_counter(), time.process_time()
    for u, e in evs:
        rec.on_event(states[u], e)
        rec.learn_until(math.inf)  # no model epochs here: learn each event at once
    n = len(evs)
    return rec, (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6


def run_epochs(
    evs: list[tuple[int, Event]], users: int, cfg: RecoSettings, epoch: float = 3600.0
) -> tuple[Recommender, float, float]:
    """``run`` as the engine reads the recommender: every event ranks with the frozen
    version of its model epoch (``epoch`` seconds of event time; the stream's events are
    a second apart), and what the epoch queued is learned at its end."""
    rec = Recommender(cfg, frozenset({"Product Added"}))
    states = [UserState(f"u{u}", first_seen=0.0) for u in range(users)]
    t, c = time.perf_counter(), time.process_time()
    built = 0
    version = rec.freeze()
    for u, e in evs:
        now = int(e.ts // epoch)
        if now > built:
            rec.learn_until(now * epoch)
            version, built = rec.freeze(), now
        rec.on_event(states[u], e, version)
    n = len(evs)
    return rec, (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6


def parts(evs: list[tuple[int, Event]], users: int) -> dict[str, float]:
    """Where the time goes: learn, the refresh at cart adds, evaluation (µs per event)."""
    spent = dict.fromkeys(("learn", "refresh", "evaluate"), 0.0)
    model_learn, refresh, score = ItemModel.learn, Recommender.refresh, Evaluator.score

    def timed(name: str, fn: Any) -> Any:
        def call(*a: Any) -> Any:
            t = time.perf_counter()
            out = fn(*a)
            spent[name] += time.perf_counter() - t
            return out

        return call

    ItemModel.learn = timed("learn", model_learn)  # type: ignore[method-assign]
    Recommender.refresh = timed("refresh", refresh)  # type: ignore[method-assign]
    rank = ItemModel.rank_items
    ItemModel.rank_items = timed("evaluate", rank)  # type: ignore[method-assign]
    pop = ItemModel.popular_items
    ItemModel.popular_items = timed("evaluate", pop)  # type: ignore[method-assign]
    rnd = Evaluator.random_ranking
    Evaluator.random_ranking = timed("evaluate", rnd)  # type: ignore[method-assign]
    Evaluator.score = timed("evaluate", score)  # type: ignore[method-assign]
    try:
        run(evs, users, RecoSettings())
    finally:
        ItemModel.learn, Recommender.refresh, Evaluator.score = model_learn, refresh, score
        ItemModel.rank_items, ItemModel.popular_items = rank, pop
        Evaluator.random_ranking = rnd
    return {k: v / len(evs) * 1e6 for k, v in spent.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--gc", choices=("engine", "default"), default="engine")
    a = ap.parse_args()
    if a.gc == "engine":
        tune_gc()  # as the CLI does
    evs = stream(a.items, a.users, a.events)
    if a.gc == "engine":
        gc.freeze()  # the harness holds every event: the engine streams them, nothing scans them
    print(f"collector: {a.gc}")
    for label, cfg in (
        ("learn + refresh on cart adds, no evaluation", RecoSettings(evaluate=False)),
        ("learn + refresh + progressive evaluation", RecoSettings()),
    ):
        rec, us, cpu = run(evs, a.users, cfg)
        print(
            f"{label}: {us:.1f} us per event with an item, {cpu:.1f} us CPU ({len(evs):,} events)"
        )
    split = ", ".join(f"{k} {v:.1f}" for k, v in parts(evs, a.users).items())
    print(f"of which (timed apart, us per event): {split}")
    _, us, cpu = run_epochs(evs, a.users, RecoSettings())
    print(
        f"as the engine reads it (1 h model epochs), with evaluation: {us:.1f} us per event "
        f"with an item, {cpu:.1f} us CPU"
    )
    t = time.perf_counter()
    rec.freeze()
    print(f"one model epoch's copy of the item models (freeze): {time.perf_counter() - t:.2f} s")
    m = rec.models["products"]
    size = len(pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL))
    print(f"items {len(m.items):,}, with neighbours {sum(1 for i in m.items.values() if i.top):,}")
    print(f"pickled model: {size / 1e6:.1f} MB, {size / len(m.items):.0f} bytes per item")
    tracemalloc.start()
    copy = pickle.loads(pickle.dumps(m))
    cur, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"in memory (tracemalloc of an unpickled copy): {cur / len(copy.items):.0f} bytes per item"
    )
    ev = rec.report()["products"]["evaluation"]
    print("hit rate@10", ev["hit_rate_at_10"], "events scored", ev["events_scored"])


if __name__ == "__main__":
    main()
