"""A shard's deadline queue: a heap of what is due soon, hour buckets for what is due later.

Deadlines are ``(due, user id)`` pairs and leave the queue in exactly the order of one
``heapq`` of all of them (due, then user id). Most of them are far off (a user's
eviction, ``sessions.history_window`` after its last activity), so one heap of all
would hold about two entries per tracked user and every push and pop would walk its
depth through memory the processor's caches no longer hold. Here an entry due in an
hour bucket not reached yet is appended to that bucket (``ShardState.far``: its times and
its user ids, two lists, so no tuple per entry for the collector to scan) and the heap
holds one marker for the bucket, ``(bucket start, MARK)``, which sorts before every
entry of the bucket; when the marker is popped (``pop_marker``) the bucket's entries
move into the heap. The hours reached are split the same way once more, into minutes
(``ShardState.mid``, ``near_min``): the entries of an hour whose marker is popped go to
their minutes' buckets, each with its marker, and only a minute reached puts its
entries in the heap. The heap then holds the deadlines of the current minute and one
marker per later minute and per later hour with any (at 1M users: a few thousand
entries, not the ~54k of an hour). A minute reached is sorted once into ``ShardState.run``,
a queue popped from its front (``pop``: the earlier of its front and the heap's top), so
its entries pay no heap push and no walk down the heap's depth when popped; the heap
keeps the markers and what is filed in a minute already reached.

``MARK`` is the empty string: no user has it as id (an event has a non-empty user or
anonymous id, or it is dead-lettered at validation).

>>> from audienceflow.operators.shard_state import NEAR_NONE, ShardState
>>> st = ShardState("shard-000")
>>> for due, uid in [(7300.0, "b"), (10.0, "a"), (7300.0, "a"), (3700.0, "c")]:
...     push(st, due, uid)
>>> order = []
>>> while st.heap or st.run:
...     due, uid = pop(st.heap, st.run)
...     if uid == MARK:
...         pop_marker(st, due)
...     else:
...         order.append((due, uid))
>>> order
[(10.0, 'a'), (3700.0, 'c'), (7300.0, 'a'), (7300.0, 'b')]
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection
from typing import Final

from audienceflow.operators.shard_state import NEAR_NONE, ShardState

BUCKET: Final = 3600  # seconds of event time per far bucket (an integer: bucket starts are exact)
MINUTE: Final = 60  # seconds per bucket of an hour reached (``BUCKET`` is a multiple of it)
# The cold tier's queue (``ShardState.cooling``: when each warm user may go cold) is kept
# the same way in buckets of a minute: its entries are due within ``state.cold_after``
# (an hour by default), so an hour's buckets would leave all of them in the heap.
COOL_BUCKET: Final = 60
MARK: Final = ""
__all__ = [
    "BUCKET",
    "COOL_BUCKET",
    "MARK",
    "MINUTE",
    "NEAR_NONE",
    "bucket_of",
    "cool_entries",
    "cool_pop_marker",
    "cool_purge",
    "cool_push",
    "cool_requeue",
    "entries",
    "pop",
    "pop_marker",
    "purge",
    "push",
    "push_later",
    "requeue",
]

Far = dict[int, tuple[list[float], list[str]]]
Run = deque[tuple[float, str]]


def bucket_of(due: float, width: int = BUCKET) -> int:
    """The far bucket of a deadline: its hour (floor division is exact, so
    ``bucket_of(due) * BUCKET <= due``)."""
    return int(due // width)


def push(state: ShardState, due: float, uid: str) -> None:
    """File deadline ``due`` of user ``uid``: in the heap if its minute is reached, else
    in its minute's bucket if its hour is, else in its hour's bucket."""
    m = int(due // MINUTE)
    if m <= state.near_min:
        heapq.heappush(state.heap, (due, uid))
    else:
        push_later(state, due, uid, m)


def push_later(state: ShardState, due: float, uid: str, m: int) -> None:
    """``push`` of a deadline whose minute ``m`` (``int(due // MINUTE)``) is not reached
    (the engine tests that, the common case, inline): ``_push`` of the bucket it goes
    to, inline, with the minute the caller worked out."""
    h = int(due // BUCKET)
    if h <= state.near:
        buckets, k, width = state.mid, m, MINUTE
    else:
        buckets, k, width = state.far, h, BUCKET
    bucket = buckets.get(k)
    if bucket is None:
        buckets[k] = ([due], [uid])
        heapq.heappush(state.heap, (float(k * width), MARK))
    else:
        bucket[0].append(due)
        bucket[1].append(uid)


def pop_marker(state: ShardState, at: float) -> None:
    """A marker at ``at`` was popped (every entry before it is out of the queue): the
    hour starting at ``at``, if any, is reached, its entries go to their minutes'
    buckets; the minute starting at ``at`` is reached, its entries, sorted, are the run
    (``state.run``), and later ones of that minute go straight to the heap."""
    h = int(at // BUCKET)
    if h > state.near:
        state.near = h
        bucket = state.far.pop(h, None)
        if bucket:
            heap, mid, near_min = state.heap, state.mid, state.near_min
            for due, uid in zip(*bucket, strict=True):
                _push(heap, mid, near_min, MINUTE, due, uid)
    m = int(at // MINUTE)
    if m > state.near_min:
        state.near_min = m
    _spill(state.run, state.mid.pop(m, None))


def entries(state: ShardState) -> list[tuple[float, str]]:
    """Every deadline filed, as one heap (``heapq`` order), without markers: the form a
    snapshot holds (it is what the shard's one heap held before the far buckets, so
    snapshots read alike both ways)."""
    out = _entries(state.heap, state.run, state.far)
    for bucket in state.mid.values():
        out.extend(zip(*bucket, strict=True))
    heapq.heapify(out)
    return out


def requeue(state: ShardState, filed: list[tuple[float, str]]) -> None:
    """Set the queue of ``state`` to the deadlines ``filed`` (a snapshot's heap): the
    earliest one's minute in the heap, later ones in buckets."""
    state.heap, state.far, state.mid, state.run = [], {}, {}, deque()
    first = min(filed)[0] if filed else None
    state.near = NEAR_NONE if first is None else bucket_of(first)
    state.near_min = NEAR_NONE if first is None else bucket_of(first, MINUTE)
    for due, uid in filed:
        push(state, due, uid)


def purge(state: ShardState, gone: Collection[str], found: set[str] | None = None) -> int:
    """A deletion: drop every deadline of the ids ``gone``; how many entries there were
    (``found``, if given, gets the ids that had one: how many entries a user has, live
    and stale, depends on when the engine looked, so a receipt counts users).

    The heap is changed in place (``ShardEngine._advance`` holds it while it runs a
    control request).
    """
    return _purge(state.heap, state.run, state.far, gone, found) + _purge(
        [], deque(), state.mid, gone, found
    )


# --- the cold tier's queue: ``ShardState.cooling``, ``cool_far``, ``cool_near`` -----


def cool_push(state: ShardState, due: float, uid: str) -> None:
    """File that user ``uid`` may go cold at ``due``."""
    _push(state.cooling, state.cool_far, state.cool_near, COOL_BUCKET, due, uid)


def cool_pop_marker(state: ShardState, at: float) -> None:
    """As ``pop_marker``, for the cooling queue."""
    k = int(at // COOL_BUCKET)
    if k > state.cool_near:
        state.cool_near = k
    _spill(state.cool_run, state.cool_far.pop(k, None))


def cool_entries(state: ShardState) -> list[tuple[float, str]]:
    """The cooling queue as one heap without markers (a snapshot's ``cooling``, as
    builds before its buckets wrote and read it)."""
    return _entries(state.cooling, state.cool_run, state.cool_far)


def cool_requeue(state: ShardState, filed: list[tuple[float, str]]) -> None:
    """Set the cooling queue to ``filed`` (a snapshot's ``cooling``)."""
    state.cooling, state.cool_far, state.cool_run = [], {}, deque()
    state.cool_near = bucket_of(min(filed)[0], COOL_BUCKET) if filed else NEAR_NONE
    for due, uid in filed:
        cool_push(state, due, uid)


def cool_purge(state: ShardState, gone: Collection[str]) -> int:
    """A deletion: drop the cooling entries of the ids ``gone``; how many there were."""
    return _purge(state.cooling, state.cool_run, state.cool_far, gone)


# --- one queue: a heap, buckets of ``width`` seconds, the latest bucket reached -------


def _push(heap: list[tuple[float, str]], far: Far, near: int, width: int, due: float,
          uid: str) -> None:  # fmt: skip
    k = int(due // width)
    if k <= near:
        heapq.heappush(heap, (due, uid))
        return
    bucket = far.get(k)
    if bucket is None:
        far[k] = ([due], [uid])
        heapq.heappush(heap, (float(k * width), MARK))
    else:
        bucket[0].append(due)
        bucket[1].append(uid)


def pop(heap: list[tuple[float, str]], run: Run) -> tuple[float, str]:
    """Take the earliest entry (or marker) of a queue: its run's front or its heap's top
    (``ShardEngine._advance`` and ``_cool`` do this inline)."""
    if run and (not heap or run[0] < heap[0]):
        return run.popleft()
    return heapq.heappop(heap)


def _spill(run: Run, bucket: tuple[list[float], list[str]] | None) -> None:
    """A bucket whose marker was popped: its entries, sorted, make the run (empty then:
    its entries were of an earlier bucket, so before the marker)."""
    if not bucket:
        return
    if run:  # not reached when popped in order; kept correct all the same
        bucket = ([*(e[0] for e in run), *bucket[0]], [*(e[1] for e in run), *bucket[1]])
        run.clear()
    run.extend(sorted(zip(*bucket, strict=True)))


def _entries(heap: list[tuple[float, str]], run: Run, far: Far) -> list[tuple[float, str]]:
    out = [e for e in heap if e[1] != MARK]
    out.extend(run)
    for bucket in far.values():
        out.extend(zip(*bucket, strict=True))
    heapq.heapify(out)
    return out


def _purge(
    heap: list[tuple[float, str]],
    run: Run,
    far: Far,
    gone: Collection[str],
    found: set[str] | None = None,
) -> int:
    kept_heap = [e for e in heap if e[1] not in gone]
    removed = len(heap) - len(kept_heap)
    if removed:
        if found is not None:
            found.update(e[1] for e in heap if e[1] in gone)
        heapq.heapify(kept_heap)
        heap[:] = kept_heap
    kept_run = [e for e in run if e[1] not in gone]
    if len(kept_run) < len(run):  # in place, as the heap: the engine may hold both
        if found is not None:
            found.update(e[1] for e in run if e[1] in gone)
        removed += len(run) - len(kept_run)
        run.clear()
        run.extend(kept_run)
    for dues, uids in far.values():
        kept = [i for i, uid in enumerate(uids) if uid not in gone]
        if len(kept) < len(uids):
            if found is not None:
                found.update(uid for uid in uids if uid in gone)
            removed += len(uids) - len(kept)
            dues[:] = [dues[i] for i in kept]
            uids[:] = [uids[i] for i in kept]
    return removed
