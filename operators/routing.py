"""Ingest of one input partition: raw lines in, keyed items out.

Each input partition (a Kafka partition, or a replayed file) validates, filters
and routes its own lines and keeps its own event time (``PartitionClock``):

- an event older than its partition's watermark is dead-lettered as
  ``late_event``, one too far ahead as ``future_event`` (see ``watermarks``);
- every other event goes to its shard, ``crc32(user id) mod shards``;
- each time the partition's watermark crosses a ``tick``-sized step of event
  time, or the partition turns idle or active, a ``Watermark`` goes to every
  shard (after the events it covers), so every shard knows every partition's time;
- dead letters and filtered events are keyed ``OUT``.

In replay and bounded reading, a partition's first events wait until ``quorum``
of them have been read, so its first watermark comes from several events and a
skewed clock on the very first one is judged like any other.

>>> from audienceflow.operators.validate import Validator, Taxonomy
>>> from audienceflow.operators.privacy import Privacy
>>> from audienceflow.operators.watermarks import PartitionClock
>>> ing = PartitionIngest("f", Validator(Taxonomy.default()), Privacy(()), 1, 60.0,
...                       PartitionClock(lateness=0.0, max_future=3600.0, quorum=1))
>>> line = b'{"type":"page","userId":"u","timestamp":"2026-03-02T08:00:00Z"}'
>>> [(k, type(v).__name__) for k, v in ing.feed([("f:1", line)])]
[('shard-000', 'Event'), ('shard-000', 'Watermark')]
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import Any

from audienceflow.operators import control
from audienceflow.operators.ingest_guard import check_line
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import (
    ControlRequest,
    DeadLetter,
    Event,
    LinkNotice,
    Watermark,
    event_line,
    iso,
)
from audienceflow.operators.validate import Validator
from audienceflow.operators.watermarks import NEG_INF, PartitionClock

OUT = "_out"

Keyed = tuple[str, Any]


def shard_key(user_id: str, shards: int) -> str:
    """The shard of a user: stable across processes and runs (not ``hash()``)."""
    return f"shard-{zlib.crc32(user_id.encode()) % shards:03d}"


class PartitionIngest:
    """Validates, filters and routes one input partition's lines; keeps its event time.

    ``clock`` is the partition's state to snapshot (with the source's offset).
    ``live``: the future is judged against the wall clock passed to ``feed``.
    """

    def __init__(
        self,
        name: str,
        validator: Validator,
        privacy: Privacy,
        shards: int,
        tick: float,
        clock: PartitionClock,
        live: bool = False,
        control: bool = False,
    ) -> None:
        self.name = name
        self.validator = validator
        self.privacy = privacy
        self.keys = [f"shard-{i:03d}" for i in range(shards)]
        self.shards = shards
        self.tick = tick
        self.clock = clock
        self.live = live
        self.control = control  # its lines are data subjects' requests (operators/control.py)
        self.step = math.floor(clock.base / tick) if clock.base > NEG_INF else NEG_INF
        self.idle = False
        # Replay/bounded: a partition's first events wait for its first watermark.
        self.pending: list[tuple[Event, bytes | str]] | None = (
            [] if not live and not control and clock.base == NEG_INF else None
        )

    def feed(
        self, items: Iterable[tuple[str, bytes | str]], now: float | None = None
    ) -> list[Keyed]:
        """Ingest ``(position, raw line)`` items; ``now`` is the wall clock when live."""
        out: list[Keyed] = []
        for position, raw in items:
            if self.idle:
                self.idle = False
                self._broadcast(out)
            if self.control:
                self._request(raw, position, now if self.live else None, out)
                continue
            checked = check_line(self.validator, self.privacy, raw, position)
            if type(checked) is Event:
                self._event(checked, raw, now if self.live else None, out)
            else:
                out.append((OUT, checked))
        return out

    def feed_events(self, events: Iterable[Event], now: float | None = None) -> list[Keyed]:
        """Route already validated events (tests, and users testing their config)."""
        out: list[Keyed] = []
        for ev in events:
            if self.idle:
                self.idle = False
                self._broadcast(out)
            self._event(ev, event_line(ev), now if self.live else None, out)
        return out

    def set_idle(self, idle: bool = True) -> list[Keyed]:
        """The partition turned idle (nothing for a while, or at its end) or active."""
        out: list[Keyed] = []
        if idle:
            self._flush_pending(out)
        if idle != self.idle:
            self.idle = idle
            self._broadcast(out)
        return out

    def end(self) -> list[Keyed]:
        """The partition is complete (end of a file, or of a topic in bounded mode)."""
        out: list[Keyed] = []
        self._flush_pending(out)
        self.clock.end()
        self.idle = True
        self._broadcast(out)
        return out

    def watermark(self) -> Watermark:
        return Watermark(self.name, self.clock.watermark(), self.idle)

    # --- internals --------------------------------------------------------

    def _broadcast(self, out: list[Keyed]) -> None:
        mark = self.watermark()
        out.extend((k, mark) for k in self.keys)

    def _event(self, ev: Event, raw: bytes | str, now: float | None, out: list[Keyed]) -> None:
        pending = self.pending
        if pending is not None:
            pending.append((ev, raw))
            if len(pending) >= self.clock.quorum:
                self._flush_pending(out)
            return
        verdict = self.clock.verdict(ev.ts, now)
        if verdict is not None:
            out.append((OUT, self._dead(verdict, ev, raw, now)))
            return
        home = zlib.crc32(ev.user_id.encode()) % self.shards
        out.append((self.keys[home], ev))
        if self.shards > 1 and ev.known:
            # The other identifiers' shards learn of the link (see records.LinkNotice).
            for other in (ev.anonymous_id, ev.previous_id):
                if other is not None:
                    there = zlib.crc32(other.encode()) % self.shards
                    if there != home:
                        out.append((self.keys[there], LinkNotice(other, ev.user_id, ev.ts)))
        if self.clock.observe(ev.ts):
            step = math.floor(self.clock.base / self.tick)
            if step > self.step:
                self.step = step
                self._broadcast(out)

    def _request(
        self, raw: bytes | str, position: str, now: float | None, out: list[Keyed]
    ) -> None:
        """A control line: its request goes to every shard (any may hold the identifiers).

        A request is never late (it applies at once when stream time has passed it);
        one too far ahead is dead-lettered as ``future_event``, as an event would be.
        """
        req = control.parse(raw, position, self.privacy)
        if type(req) is not ControlRequest:
            out.append((OUT, req))
            return
        ref = now if now is not None else self.clock.base
        if req.ts - ref > self.clock.max_future and ref > NEG_INF:
            detail = (
                f"step 'control': request time {iso(req.ts)} is more than "
                f"{self.clock.max_future:g}s ahead of {iso(ref)}"
            )
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            dead = DeadLetter("future_event", detail, position, text, stage="control")
            out.append((OUT, self.privacy(dead)))
            return
        out.extend((k, req) for k in self.keys)
        if self.clock.observe(req.ts):
            step = math.floor(self.clock.base / self.tick)
            if step > self.step:
                self.step = step
                self._broadcast(out)

    def _flush_pending(self, out: list[Keyed]) -> None:
        pending = self.pending
        if pending is None:
            return
        self.pending = None
        self.clock.establish([ev.ts for ev, _ in pending])
        if self.clock.base > NEG_INF:
            self.step = math.floor(self.clock.base / self.tick)
        for ev, raw in pending:
            self._event(ev, raw, None, out)
        if self.clock.base > NEG_INF:
            self._broadcast(out)  # after the events it covers

    def _dead(self, verdict: str, ev: Event, raw: bytes | str, now: float | None) -> DeadLetter:
        c = self.clock
        if verdict == "late":
            reason = "late_event"
            detail = (
                f"event time {iso(ev.ts)} is before the watermark {iso(c.watermark())} of "
                f"input partition {self.name!r} (allowed lateness {c.lateness:g}s)"
            )
        else:
            reason = "future_event"
            ref = "the wall clock" if now is not None else f"input partition {self.name!r}'s time"
            at = now if now is not None else c.base
            detail = (
                f"event time {iso(ev.ts)} is more than {c.max_future:g}s ahead of {ref} {iso(at)}"
            )
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        dead = DeadLetter(reason, f"step 'ingest': {detail}", ev.position, text, stage="ingest")
        scrubbed = self.privacy(dead)
        assert isinstance(scrubbed, DeadLetter)
        return scrubbed
