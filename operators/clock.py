"""The one notion of "now" for session close, segment exits and trigger timers.

Stream time is the latest event time seen less the allowed lateness. In replay
that is all there is, so a replay is a pure function of its input. Live, when
the input goes quiet for ``quiet_after`` seconds of wall-clock time, stream
time keeps advancing with the wall clock, so a cart-abandonment timer still
fires for the last user of the night. The wall clock is injected, never read
inside an operator.

>>> c = StreamClock(lateness=60.0)
>>> c.observe(1000.0); c.observe(900.0)
>>> c.now()
940.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

NEG_INF = float("-inf")


@dataclass(slots=True)
class StreamClock:
    """Stream time with an optional wall-clock fallback (``wall`` returns epoch seconds)."""

    lateness: float = 0.0
    quiet_after: float | None = None
    max_seen: float = NEG_INF
    _wall_at_max: float = NEG_INF
    _forced: float = NEG_INF

    def observe(self, ts: float, wall: Callable[[], float] | None = None) -> None:
        """Note an event time (from an event or a broadcast tick)."""
        if ts > self.max_seen:
            self.max_seen = ts
            if wall is not None:
                self._wall_at_max = wall()

    def cutoff(self) -> float:
        """Events older than this are late. Event-derived only: a quiet spell that let
        the wall clock move stream time on does not turn the backlog into late events."""
        return max(self.max_seen - self.lateness, self._forced)

    def now(self, wall: Callable[[], float] | None = None) -> float:
        """Current stream time; with ``wall`` and ``quiet_after``, the quiet-input fallback."""
        t = self.max_seen - self.lateness
        if wall is not None and self.quiet_after is not None and self._wall_at_max > NEG_INF:
            idle = wall() - self._wall_at_max
            if idle > self.quiet_after:
                t = max(t, self.max_seen + idle - self.quiet_after - self.lateness)
        return max(t, self._forced)

    def restarted(self, wall: Callable[[], float]) -> None:
        """Resumed from a snapshot: the time the worker was down is not quiet input
        (its backlog is still to come), so the quiet timer starts again now."""
        if self._wall_at_max > NEG_INF:
            self._wall_at_max = wall()

    def finish(self) -> None:
        """End of a recorded stream: time passes every pending deadline."""
        self._forced = float("inf")
