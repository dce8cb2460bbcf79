"""The events one input partition accepted ahead of the wall clock, waiting for their time.

Live, an event stamped ahead of the wall clock (plus ``time.max_lead``) is routed to its
shard, which holds it until stream time reaches it. Its partition's reader counts it
until the wall clock (plus the lead) reaches it: at most ``per_user`` of one user
(``time.max_ahead_per_user``) and ``total`` of the partition (``time.max_ahead_total``)
at once; one more is refused (``admit`` says which bound), and the reader dead-letters
it as a ``future_event``. A copy of a waiting event (its message id, within
``dedup_window`` of its time) is neither counted nor refused: its shard drops it as a
duplicate.

Users and message ids are kept as 8-byte digests keyed with the privacy salt (as the
partition clock keeps users in a replay): the saved state (``pack``) holds no id, nor
anything a list of ids can be checked against without the salt, and is ~16 bytes per
event (its time and message digest) plus 12 per user (digest and count), where the
(time, user, message id) entries it replaced were 60-95 bytes pickled. Two ids sharing a
digest (odds ~n²/2⁶⁵ for n ids) would count as one.

>>> w = Waiting(per_user=2, total=3, dedup_window=3600.0, key=b"k")
>>> [w.admit(t, "bot", f"m{t:g}") for t in (10.0, 11.0, 12.0)]
[None, None, 'user']
>>> w.admit(10.0, "bot", "m10")  # a copy of one waiting: not counted
>>> w.admit(13.0, "ann", "a1"), w.admit(14.0, "cy", "c1"), len(w)
(None, 'total', 3)
>>> w.release(10.0); len(w), w.admit(14.0, "cy", "c1")
(2, None)
>>> back = Waiting(per_user=2, total=3, dedup_window=3600.0, key=b"k")
>>> back.unpack(w.pack()); len(back), back.admit(15.0, "bot", "m15")
(3, 'total')
"""

from __future__ import annotations

import hashlib
import heapq
import operator
import struct
from array import array
from collections.abc import Iterable
from typing import Any, Final

# ``pack``'s header: format version, users, events. Then, little-endian: the users'
# digests (u64) and counts (u32); each user's events' times (f64), in the users' order;
# their message digests (u64), in the same order.
_HEAD: Final = struct.Struct("<BII")
_VERSION: Final = 1
NEG_INF: Final = float("-inf")
_USER: Final = operator.itemgetter(1)  # a waiting entry's user
_LITTLE: Final = array("d", [1.0]).tobytes() == struct.pack("<d", 1.0)


def _le(a: array[Any]) -> bytes:
    if not _LITTLE:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _from_le(code: str, data: bytes) -> array[Any]:
    a: array[Any] = array(code)
    a.frombytes(data)
    if not _LITTLE:
        a.byteswap()
    return a


class Waiting:
    """The waiting events of one input partition, counted per user and in total."""

    __slots__ = ("_counts", "_heap", "_ids", "_key", "_users", "dedup_window", "per_user", "total")

    def __init__(self, per_user: int, total: int, dedup_window: float, key: bytes) -> None:
        self.per_user = per_user
        self.total = total
        self.dedup_window = dedup_window
        self._key = hashlib.blake2b(b"audienceflow waiting ahead\0" + key, digest_size=32).digest()
        self._heap: list[tuple[float, int, int]] = []  # (time, user, message): a heap
        self._counts: dict[int, int] = {}  # user -> their events in ``_heap``
        self._ids: dict[int, float] = {}  # message -> time, of those in ``_heap``
        self._users: dict[str, int] = {}  # a bounded cache of user digests

    def __len__(self) -> int:
        return len(self._heap)

    def digest(self, text: str, kind: bytes = b"m") -> int:
        """``text`` as kept: a keyed 8-byte hash (``kind``: ``u`` a user, ``m`` a message)."""
        data = kind + b"\0" + text.encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(data, key=self._key, digest_size=8).digest(), "big")

    def _user(self, user: str) -> int:
        users = self._users
        who = users.get(user)
        if who is None:
            if len(users) >= 1 << 12:
                users.clear()  # a bounded cache: a miss only costs the hash again
            who = users[user] = self.digest(user, b"u")
        return who

    def count(self, user: str) -> int:
        """How many events of ``user`` wait."""
        return self._counts.get(self._user(user), 0)

    def admit(self, ts: float, user: str, message_id: str) -> str | None:
        """Count an event at ``ts`` that waits; None when counted, or a copy of one waiting
        (not counted). ``'user'`` or ``'total'``: the bound it would pass (not counted)."""
        mid = self.digest(message_id)
        first = self._ids.get(mid)
        if first is not None and abs(ts - first) <= self.dedup_window:
            return None
        who = self._user(user)
        counts = self._counts
        n = counts.get(who, 0)
        if n >= self.per_user:
            return "user"
        if len(self._heap) >= self.total:
            return "total"
        counts[who] = n + 1
        self._add(ts, who, mid)
        return None

    def _add(self, ts: float, who: int, mid: int) -> None:
        # An id used again (more than ``dedup_window`` apart) marks copies of its latest
        # use: the same whatever order the events came in, or a snapshot lists them.
        ids = self._ids
        if ts > ids.get(mid, NEG_INF):
            ids[mid] = ts
        heapq.heappush(self._heap, (ts, who, mid))

    def due(self, horizon: float) -> bool:
        """Whether ``horizon`` reaches the earliest waiting event."""
        return bool(self._heap) and self._heap[0][0] <= horizon

    def release(self, horizon: float) -> None:
        """Forget the waiting events ``horizon`` (the wall clock plus the lead) reached."""
        heap, counts, ids = self._heap, self._counts, self._ids
        while heap and heap[0][0] <= horizon:
            ts, who, mid = heapq.heappop(heap)
            if ids.get(mid) == ts:
                del ids[mid]
            left = counts[who] - 1
            if left:
                counts[who] = left
            else:
                del counts[who]

    def restore(self, entries: Iterable[tuple[float, str, str]]) -> None:
        """Count again the (time, user, message id) entries a snapshot from before ``pack``
        saved (whatever the bounds: they wait at their shards)."""
        for ts, user, message_id in entries:
            who = self._user(user)
            self._counts[who] = self._counts.get(who, 0) + 1
            self._add(ts, who, self.digest(message_id))

    def pack(self) -> bytes:
        """The waiting events, to save with the partition's offset (``unpack``)."""
        entries = sorted(self._heap, key=_USER)  # each user's together (in heap order)
        users = list(dict.fromkeys(map(_USER, entries)))  # in the order of ``entries``
        counts = self._counts
        return b"".join(
            (
                _HEAD.pack(_VERSION, len(users), len(entries)),
                _le(array("Q", users)),
                _le(array("I", [counts[w] for w in users])),
                _le(array("d", [e[0] for e in entries])),
                _le(array("Q", [e[2] for e in entries])),
            )
        )

    def unpack(self, blob: bytes) -> None:
        """Count again the events ``pack`` saved (whatever the bounds: they wait at their
        shards). A format this code does not know raises ``ValueError``."""
        if len(blob) < _HEAD.size:
            raise ValueError(f"the saved events waiting ahead are {len(blob)} bytes, no header")
        version, u, n = _HEAD.unpack_from(blob)
        if version != _VERSION or len(blob) != _HEAD.size + 12 * u + 16 * n:
            raise ValueError(
                f"the saved events waiting ahead are in format {version} of {len(blob)} "
                f"bytes; this code reads format {_VERSION}"
            )
        at = _HEAD.size
        users = _from_le("Q", blob[at : at + 8 * u])
        at += 8 * u
        counts = _from_le("I", blob[at : at + 4 * u])
        at += 4 * u
        times = _from_le("d", blob[at : at + 8 * n])
        at += 8 * n
        mids = _from_le("Q", blob[at : at + 8 * n])
        if sum(counts) != n:
            raise ValueError(f"the saved events waiting ahead count {sum(counts)} of {n}")
        i = 0
        for who, c in zip(users, counts, strict=True):
            self._counts[who] = self._counts.get(who, 0) + c
            for k in range(i, i + c):
                self._add(times[k], who, mids[k])
            i += c
