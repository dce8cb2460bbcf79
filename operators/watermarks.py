"""Event time of one input partition (a Kafka partition, or a replayed file).

A partition's *base* is a robust "latest event time": it moves to an event time
only once ``quorum`` of the partition's last ``window`` accepted events are at or
after it, so a few isolated events from a skewed device clock cannot drag it
along (with ``quorum=1`` it is the plain maximum). The partition's watermark is
``base - lateness``: an event older than its own partition's watermark is late.

Replay and bounded reading judge the future against the base: an event more than
``max_future`` ahead of it is *held* (``hold``), not yet accepted. A gap in the
recording (a week without traffic) and a device with a skewed clock look the same
at first; what follows tells them apart. After a gap every event is held; a skewed
device's events come among others that are not. So once the events read since the
last accepted one are all held and come from ``quorum`` different users (or number
``window``), the base jumps to the earliest of them and they are accepted; at the
end of the partition, ``quorum`` such events suffice. An event still held when it
leaves the last ``window`` events, or at the end, is a future event. Live reading
judges the future against the wall clock only (injected as ``now``), so a stream
that was historical becomes live without any manual step, and stops the base at it.

>>> c = PartitionClock(lateness=60.0, max_future=86400.0, quorum=2, window=8)
>>> [c.observe(ts) for ts in (100.0, 200.0, 10_000_000.0, 300.0)]
[False, True, True, True]
>>> c.base, c.watermark()  # 300 and the outlier are at or after 300: the outlier alone is not
(300.0, 240.0)
>>> c.verdict(200.0), c.verdict(250.0), c.verdict(300.0 + 86401.0)
('late', None, 'future')

Two users a week later (``quorum=2``): a gap, so both are accepted and time moves on.

>>> c.hold(700_000.0, "ann", "e1"); c.settle()
([], [])
>>> c.hold(700_050.0, "bob", "e2"); c.settle(), c.base
((['e1', 'e2'], []), 700000.0)
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field
from typing import Any, Final

NEG_INF: Final = float("-inf")
# Timestamps outside these years are rejected at validation, so deadline arithmetic
# (an event time plus a day, a week...) can never leave the calendar.
MIN_TS: Final = 0.0  # 1970-01-01T00:00:00Z
MAX_TS: Final = 253370764799.0  # 9998-12-31T23:59:59Z


# The sort key of ``above``: its time (a C callable, where a def costs a call per comparison).
_ts = operator.itemgetter(0)


@dataclass(slots=True)
class PartitionClock:
    """The robust watermark of one input partition; pickles with the source's offset.

    A native class in the compiled build (``make fast``): it pickles as a call of its
    class with its fields (``__reduce__``), the same bytes in both builds, and reads a
    pickle of the plain class it was before (``__setstate__``) in either.
    """

    lateness: float
    max_future: float
    quorum: int = 4
    window: int = 32
    base: float = NEG_INF
    top: float = NEG_INF  # the latest accepted event time, isolated outliers included
    seq: int = 0
    # Accepted event times above ``base`` among the last ``window`` events: (ts, seq),
    # sorted by ts. Small: at most ``quorum - 1`` entries after each advance, plus
    # isolated outliers until they fall out of the window.
    above: list[tuple[float, int]] = field(default_factory=list)
    # Events more than ``max_future`` ahead of ``base`` (replay and bounded reading), in
    # arrival order: (seq, ts, user, item). Saved with the partition's offset.
    held: list[tuple[int, float, str, Any]] = field(default_factory=list)

    def __reduce__(self) -> tuple[type[PartitionClock], tuple[Any, ...]]:
        return PartitionClock, (
            self.lateness,
            self.max_future,
            self.quorum,
            self.window,
            self.base,
            self.top,
            self.seq,
            self.above,
            self.held,
        )

    def __setstate__(self, state: Any) -> None:
        """A clock pickled as a plain class, ``(None, {slot: value})``; one saved before
        ``held`` existed reads with nothing held."""
        slots = state[1] if isinstance(state, tuple) else state
        self.held = []
        for key, value in slots.items():
            setattr(self, key, value)

    def watermark(self) -> float:
        """Events older than this are late for this partition."""
        return self.base - self.lateness

    def verdict(self, ts: float, now: float | None = None) -> str | None:
        """``'late'``, ``'future'`` or ``None`` (acceptable) for an event at ``ts``.

        ``now`` (epoch seconds from the wall clock) is given when reading live: the
        future is then judged against it alone.
        """
        if ts < self.base - self.lateness:
            return "late"
        if now is not None:
            return "future" if ts > now + self.max_future else None
        if self.base > NEG_INF and ts > self.base + self.max_future:
            return "future"
        return None

    def observe(self, ts: float, now: float | None = None) -> bool:
        """Count an accepted event; return True when the base moved.

        ``now`` (live: the wall clock plus ``time.max_lead``) caps the base: a partition's
        time never runs ahead of it, so a device or tool whose clock is ahead, even in a burst of
        ``quorum`` events, cannot make the partition's other events late. Its events are
        accepted (up to ``max_future`` ahead) and wait, at the shard, for the time they name.
        """
        self.seq += 1
        if ts > self.top:
            self.top = ts
        if ts <= self.base:
            return False
        above = self.above
        if not above or ts >= above[-1][0]:
            above.append((ts, self.seq))  # in order, the usual case: where insort puts it
        else:
            bisect.insort(above, (ts, self.seq), key=_ts)
        quorum = self.quorum
        n = len(above)
        if n < quorum:
            return False
        oldest = self.seq - self.window
        for _, s in above:  # a loop, not any(): no generator per event
            if s <= oldest:
                above[:] = [e for e in above if e[1] > oldest]
                n = len(above)
                if n < quorum:
                    return False
                break
        base = above[n - quorum][0]
        # Sorted: everything before the new base is at or below it, and so are the
        # entries after it that tie with it (bisect_right, without a key call per step).
        i = n - quorum + 1
        if now is not None and base > now:  # capped: what is above it stays counted
            if now <= self.base:
                return False
            base, i = now, 0
        self.base = base
        while i < n and above[i][0] <= base:
            i += 1
        del above[:i]
        return True

    def hold(self, ts: float, user: str, item: Any) -> None:
        """Count an event more than ``max_future`` ahead of the base, and keep it until
        ``settle`` accepts or rejects it."""
        self.seq += 1
        self.held.append((self.seq, ts, user, item))

    def settle(self) -> tuple[list[Any], list[Any]]:
        """``(accepted, rejected)``: the held items accepted now, and those that left the
        last ``window`` events still held (future events), each in arrival order.

        The events read since the last accepted one, all held, show that the partition's
        time moved (a gap in the recording, not a skewed device) once they come from
        ``quorum`` (at least 2) different users, or number ``window``: then the base jumps
        to the earliest of them, and every held item within ``max_future`` of it is
        accepted; the rest stay held. Held events with accepted ones between them and
        now are skewed clocks among the partition's traffic: they wait to be rejected.
        """
        held = self.held
        rejected: list[Any] = []
        oldest = self.seq - self.window
        if held[0][0] <= oldest:
            rejected = [h[3] for h in held if h[0] <= oldest]
            held[:] = [h for h in held if h[0] > oldest]
        accepted: list[Any] = []
        quorum = max(self.quorum, 2)
        while held:  # again after a jump: the run may span a second gap
            run = self._run()
            if not run or (len(run) < self.window and len({h[2] for h in run}) < quorum):
                break
            accepted += self._jump(run)
        if held:  # the base moved on the partition's own events: what it now reaches
            limit = self.base + self.max_future
            if any(h[1] <= limit for h in held):
                accepted += self._reach(limit)
        return accepted, rejected

    def _run(self) -> list[tuple[int, float, str, Any]]:
        """The held events read since the last accepted one (the last events read)."""
        held = self.held
        seq = self.seq
        i = len(held)
        while i and held[i - 1][0] == seq:
            i -= 1
            seq -= 1
        return held[i:]

    def _jump(self, run: list[tuple[int, float, str, Any]]) -> list[Any]:
        """Move the base to the earliest of ``run``; accept what it brings within reach."""
        first = min(h[1] for h in run)
        if first > self.base:
            self.base = first
            self.above = [e for e in self.above if e[0] > first]
        return self._reach(self.base + self.max_future)

    def _reach(self, limit: float) -> list[Any]:
        """Accept the held items at or before ``limit``."""
        held = self.held
        accepted = [h for h in held if h[1] <= limit]
        held[:] = [h for h in held if h[1] > limit]
        for h in accepted:
            if h[1] > self.top:
                self.top = h[1]
        return [h[3] for h in accepted]

    def end(self) -> tuple[list[Any], list[Any]]:
        """The partition is complete: nothing later can come, so its time is its latest.

        Returns ``(accepted, rejected)`` of the held items. The partition's last events,
        if at least ``quorum`` (at least 2) of them were all held, are where its time went
        (the recording ends after a gap): accepted, with what comes within ``max_future``
        of them. Any other held item is accepted if within ``max_future`` of the latest
        accepted time, else it is a future event.
        """
        accepted: list[Any] = []
        while self.held:
            run = self._run()
            if len(run) < max(self.quorum, 2):
                break
            accepted += self._jump(run)
        if self.top > self.base:
            self.base = self.top
            self.above.clear()
        accepted += self._reach(self.base + self.max_future)
        rejected = [h[3] for h in self.held]
        self.held = []
        return accepted, rejected

    def establish(self, times: list[float]) -> None:
        """Set the first base from a partition's first events (before judging them)."""
        if not times:
            return
        ranked = sorted(times, reverse=True)
        self.base = ranked[min(self.quorum, len(ranked)) - 1]
