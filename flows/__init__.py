"""audienceflow.flows: dataflow wiring, sources and sinks, and the command line."""

import gc
import time
from typing import Any

# When this process began, near enough: the command line imports this package first,
# before River, SciPy and Bytewax (the replay's "including start-up" is measured from it).
STARTED = time.perf_counter()

YOUNG_MIN = 100_000  # the youngest generation's threshold, at least


def tune_gc() -> None:
    """Collect garbage less often: the engine keeps millions of small long-lived objects
    (per-user state), and CPython's default thresholds rescan them all too often
    (measured: +26% engine throughput at 100k tracked users).

    The youngest generation may then grow to as many objects as the collector tracks
    (``_young_as_tracked``): a user's state lives as long as the user is active, so
    with more active users a fixed threshold catches more of them still young, and
    scanning them is what made throughput fall with the number of users (measured at
    300k users: 29 collections, 8 us per event; none with a threshold above them)."""
    gc.collect()
    gc.freeze()  # what exists at start-up (modules, config) is never scanned again
    gc.set_threshold(YOUNG_MIN, 50, 100)
    if _young_as_tracked not in gc.callbacks:
        gc.callbacks.append(_young_as_tracked)


def _young_as_tracked(phase: str, info: dict[str, Any]) -> None:
    """After a collection: the next one comes when the objects allocated and not freed
    since reach the number tracked now (so garbage in reference cycles can at most
    double the tracked objects before it is freed)."""
    if phase == "stop":
        _, t1, t2 = gc.get_threshold()
        gc.set_threshold(max(YOUNG_MIN, len(gc.get_objects())), t1, t2)
