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
move into the heap. The heap then holds the deadlines of the current hour and one
marker per later hour with any.

``MARK`` is the empty string: no user has it as id (an event has a non-empty user or
anonymous id, or it is dead-lettered at validation).

>>> from audienceflow.operators.shard_state import NEAR_NONE, ShardState
>>> st = ShardState("shard-000")
>>> for due, uid in [(7300.0, "b"), (10.0, "a"), (7300.0, "a"), (3700.0, "c")]:
...     push(st, due, uid)
>>> order = []
>>> while st.heap:
...     due, uid = heapq.heappop(st.heap)
...     if uid == MARK:
...         pop_marker(st, due)
...     else:
...         order.append((due, uid))
>>> order
[(10.0, 'a'), (3700.0, 'c'), (7300.0, 'a'), (7300.0, 'b')]
"""

from __future__ import annotations

import heapq
from collections.abc import Collection

from audienceflow.operators.shard_state import NEAR_NONE, ShardState

BUCKET = 3600  # seconds of event time per far bucket (an integer: bucket starts are exact)
MARK = ""
__all__ = [
    "BUCKET",
    "MARK",
    "NEAR_NONE",
    "bucket_of",
    "entries",
    "pop_marker",
    "purge",
    "push",
    "requeue",
]


def bucket_of(due: float) -> int:
    """The far bucket of a deadline: its hour (floor division is exact, so
    ``bucket_of(due) * BUCKET <= due``)."""
    return int(due // BUCKET)


def push(state: ShardState, due: float, uid: str) -> None:
    """File deadline ``due`` of user ``uid``."""
    k = int(due // BUCKET)
    if k <= state.near:
        heapq.heappush(state.heap, (due, uid))
        return
    far = state.far
    bucket = far.get(k)
    if bucket is None:
        far[k] = ([due], [uid])
        heapq.heappush(state.heap, (float(k * BUCKET), MARK))
    else:
        bucket[0].append(due)
        bucket[1].append(uid)


def pop_marker(state: ShardState, at: float) -> None:
    """The marker of the bucket starting at ``at`` was popped: its entries join the heap
    (every entry still in the heap before them is earlier), and later ones of that
    bucket go straight to the heap."""
    k = int(at // BUCKET)
    if k > state.near:
        state.near = k
    bucket = state.far.pop(k, None)
    if not bucket:
        return
    heap = state.heap
    if len(bucket[0]) * 8 > len(heap):
        heap.extend(zip(*bucket, strict=True))
        heapq.heapify(heap)
    else:
        for e in zip(*bucket, strict=True):
            heapq.heappush(heap, e)


def entries(state: ShardState) -> list[tuple[float, str]]:
    """Every deadline filed, as one heap (``heapq`` order), without markers: the form a
    snapshot holds (it is what the shard's one heap held before the far buckets, so
    snapshots read alike both ways)."""
    out = [e for e in state.heap if e[1] != MARK]
    for bucket in state.far.values():
        out.extend(zip(*bucket, strict=True))
    heapq.heapify(out)
    return out


def requeue(state: ShardState, filed: list[tuple[float, str]]) -> None:
    """Set the queue of ``state`` to the deadlines ``filed`` (a snapshot's heap): the
    earliest one's hour in the heap, later hours in buckets."""
    state.heap, state.far = [], {}
    state.near = bucket_of(min(filed)[0]) if filed else NEAR_NONE
    for due, uid in filed:
        push(state, due, uid)


def purge(state: ShardState, gone: Collection[str]) -> int:
    """A deletion: drop every deadline of the ids ``gone``; how many there were.

    The heap is changed in place (``ShardEngine._advance`` holds it while it runs a
    control request).
    """
    heap = [e for e in state.heap if e[1] not in gone]
    removed = len(state.heap) - len(heap)
    if removed:
        heapq.heapify(heap)
        state.heap[:] = heap
    for dues, uids in state.far.values():
        kept = [i for i, uid in enumerate(uids) if uid not in gone]
        if len(kept) < len(uids):
            removed += len(uids) - len(kept)
            dues[:] = [dues[i] for i in kept]
            uids[:] = [uids[i] for i in kept]
    return removed
