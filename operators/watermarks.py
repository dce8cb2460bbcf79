"""Event time of one input partition (a Kafka partition, or a replayed file).

A partition's *base* is a robust "latest event time": it moves to an event time
only once ``quorum`` of the partition's last ``window`` accepted events are at or
after it, so a few isolated events from a skewed device clock cannot drag it
along (with ``quorum=1`` it is the plain maximum). The partition's watermark is
``base - lateness``: an event older than its own partition's watermark is late.

Replay and bounded reading judge the future against the base: more than
``max_future`` ahead of it is a future event. Live reading judges it against the
wall clock only (injected as ``now``), so a stream that was historical becomes
live without any manual step.

>>> c = PartitionClock(lateness=60.0, max_future=86400.0, quorum=2, window=8)
>>> [c.observe(ts) for ts in (100.0, 200.0, 10_000_000.0, 300.0)]
[False, True, True, True]
>>> c.base, c.watermark()  # 300 and the outlier are at or after 300: the outlier alone is not
(300.0, 240.0)
>>> c.verdict(200.0), c.verdict(250.0), c.verdict(300.0 + 86401.0)
('late', None, 'future')
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field

NEG_INF = float("-inf")
# Timestamps outside these years are rejected at validation, so deadline arithmetic
# (an event time plus a day, a week...) can never leave the calendar.
MIN_TS = 0.0  # 1970-01-01T00:00:00Z
MAX_TS = 253370764799.0  # 9998-12-31T23:59:59Z


# The sort key of ``above``: its time (a C callable, where a def costs a call per comparison).
_ts = operator.itemgetter(0)


@dataclass(slots=True)
class PartitionClock:
    """The robust watermark of one input partition; pickles with the source's offset."""

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

    def observe(self, ts: float) -> bool:
        """Count an accepted event; return True when the base moved."""
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
        self.base = base = above[n - quorum][0]
        # Sorted: everything before the new base is at or below it, and so are the
        # entries after it that tie with it (bisect_right, without a key call per step).
        i = n - quorum + 1
        while i < n and above[i][0] <= base:
            i += 1
        del above[:i]
        return True

    def end(self) -> None:
        """The partition is complete: nothing later can come, so its time is its latest."""
        if self.top > self.base:
            self.base = self.top
            self.above.clear()

    def establish(self, times: list[float]) -> None:
        """Set the first base from a partition's first events (before judging them)."""
        if not times:
            return
        ranked = sorted(times, reverse=True)
        self.base = ranked[min(self.quorum, len(ranked)) - 1]
