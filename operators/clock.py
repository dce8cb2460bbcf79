"""Stream time at a shard: the one notion of "now" for session close, segment exits
and trigger timers.

Every input partition broadcasts its watermark (``records.Watermark``); a shard's
stream time is the **minimum over the partitions that are not idle**, and never
moves back. An idle partition (at its end, or silent for ``time.idle_after``)
stops holding time back and rejoins when it delivers again. Live, when every
partition is idle, stream time follows the wall clock (trailing it by
``idle_after + lateness``), so the last user of the night still gets their
timer; the wall clock is injected, never read inside an operator.

A replay's control files (data subjects' requests) are partitions too: while one is
active its mark holds stream time back like any other, so each request applies at its
time among the events; but the engine names them (``controls``), and their marks never
take stream time, nor ``latest``, past the events' latest mark. A request dated after
the last event waits for the end of the input instead of ageing every profile there.

>>> c = StreamClock(lateness=60.0)
>>> c.expect(["a", "b"])
>>> c.update("a", 1000.0, False); c.now()
-inf
>>> c.update("b", 900.0, False); c.now()
900.0
>>> c.update("b", 900.0, True); c.now()
1000.0
>>> ctl = frozenset({"requests"})  # a replay's control file, ahead of the events
>>> c.update("requests", 5000.0, True, ctl); c.now(), c.latest(ctl)
(1000.0, 1060.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from audienceflow.operators import native

NEG_INF: Final = float("-inf")
INF: Final = float("inf")


@dataclass(slots=True)
class StreamClock:
    """The partitions' watermarks as this shard last heard them, and the time they allow."""

    lateness: float = 0.0
    idle_after: float | None = None  # live only: the wall-clock fallback when all are idle
    marks: dict[str, float] = field(default_factory=dict)
    idle: dict[str, bool] = field(default_factory=dict)
    time: float = NEG_INF
    _forced: float = NEG_INF

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # A plain slots class's state, from the compiled build's native class too.
        return native.slots_state(self)

    def __setstate__(self, state: Any) -> None:
        native.set_slots(self, state)

    def expect(self, partitions: Iterable[str]) -> None:
        """Partitions that exist: until they report, they hold stream time at -inf."""
        for p in partitions:
            if p not in self.marks:
                self.marks[p] = NEG_INF
                self.idle[p] = False

    def update(
        self, partition: str, at: float, idle: bool, controls: frozenset[str] = frozenset()
    ) -> None:
        """A partition's watermark (and whether it is idle) arrived.

        ``controls``: the partitions that carry control requests, not events (a replay's
        control files; the engine passes none live): stream time never passes the latest
        mark of the others, so a request dated after the last event (or a year ahead by
        mistake) cannot age every profile to its time; it waits for the end of the input.
        """
        marks, idles = self.marks, self.idle
        old = marks.get(partition, NEG_INF)
        marks[partition] = at if at > old else old  # ``max(old, at)``
        idles[partition] = idle
        # The slowest active partition's mark (a loop: called for every watermark of
        # every shard, where a list and ``min`` cost a third more).
        t = INF
        active = False
        for p, m in marks.items():
            if not idles[p]:
                active = True
                if m < t:
                    t = m
        if active:
            pass  # ``t`` is theirs
        elif marks and self.idle_after is None:
            # Every partition idle (replay, bounded read): nothing below their marks can
            # still come. Live, ``now`` moves it by the wall clock instead: a partition
            # whose marks ran ahead of the wall (a request stamped hours ahead, read
            # before ``observe`` capped bases at the wall) must not take every shard's
            # time there, firing every timer early; stream time never moves back.
            t = max(self.marks.values())
        else:
            t = NEG_INF
        if controls and t > NEG_INF:
            # Only when every event partition is idle (at its end) can a control
            # partition's mark be above them all: the events' time is the cap.
            events = [m for p, m in self.marks.items() if p not in controls]
            if events:
                cap = max(events)
                if t > cap:
                    t = cap
        if t > self.time:
            self.time = t

    def floor(self) -> float:
        """The slowest active partition's watermark (INF when none is active, or at the
        end): unlike ``time`` it moves back when a partition rejoins behind it."""
        if self._forced == INF:
            return INF
        active = [m for p, m in self.marks.items() if not self.idle[p]]
        return min(active) if active else INF

    def all_idle(self) -> bool:
        return bool(self.idle) and all(self.idle.values())

    def latest(self, controls: frozenset[str] = frozenset()) -> float:
        """The most advanced partition's watermark plus the lateness: "the last event time"
        (of the partitions not in ``controls``, when there are any: see ``update``)."""
        marks = self.marks
        if controls and any(p not in controls for p in marks):
            best = max((m for p, m in marks.items() if p not in controls), default=NEG_INF)
        else:
            best = max(marks.values(), default=NEG_INF)
        return best + self.lateness if best > NEG_INF else NEG_INF

    def now(self, wall: Callable[[], float] | None = None) -> float:
        """Stream time; live (``wall`` and ``idle_after``), the wall-clock fallback too."""
        t = self.time
        if wall is not None and self.idle_after is not None and self.all_idle():
            t = max(t, wall() - self.idle_after - self.lateness)
            self.time = t
        forced = self._forced  # ``max(t, self._forced)``: called twice per event
        return forced if forced > t else t

    def restarted(self) -> None:
        """Resumed from a snapshot: every partition must say again that it is idle (its
        backlog is still to come), so none is taken as idle until it does."""
        for p in self.idle:
            self.idle[p] = False

    def finish(self) -> None:
        """End of a recorded stream: time passes every pending deadline."""
        self._forced = INF
