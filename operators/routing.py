"""Ingest: one raw line in, keyed items out — validated, privacy-filtered, routed.

Events are keyed by shard; a ``Tick`` carrying the latest event time goes to
every shard each time event time crosses a ``tick``-sized step (after the event
that moved it), so stream time reaches shards, and users, that are quiet.
Dead letters, filtered events and anything else that is already an output are
keyed ``OUT``. Fusing the three per-line steps into one keeps per-event engine
overhead to one hop.
"""

from __future__ import annotations

import zlib
from typing import Any

from audienceflow.operators.ingest_guard import IngestGuard
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import Event, Tick
from audienceflow.operators.validate import Validator

OUT = "_out"


class Router:
    """Keys events by shard and broadcasts stream-time ticks to every shard."""

    def __init__(self, shards: int, tick: float, max_future: float = float("inf")) -> None:
        self.keys = [f"shard-{i:03d}" for i in range(shards)]
        self.shards = shards
        self.tick = tick
        self.max_future = max_future
        self.max_ts = float("-inf")
        self.step = float("-inf")

    def __call__(self, ev: Event) -> list[tuple[str, Any]]:
        key = self.keys[zlib.crc32(ev.user_id.encode()) % self.shards]  # == engine.shard_of
        out: list[tuple[str, Any]] = [(key, ev)]
        # A timestamp implausibly far ahead (a skewed device clock) must not move stream
        # time for everyone; the shard dead-letters it as a future_event.
        if ev.ts > self.max_ts and (
            self.max_ts == float("-inf") or ev.ts <= self.max_ts + self.max_future
        ):
            self.max_ts = ev.ts
            step = ev.ts // self.tick
            if step > self.step:
                self.step = step
                tick = Tick(ev.ts)
                out.extend((k, tick) for k in self.keys)
        return out


class Ingest:
    """``(position, raw)`` → keyed items; anything that is not a raw line passes as output."""

    def __init__(self, validator: Validator, privacy: Privacy, router: Router) -> None:
        self.validator = validator
        self.privacy = privacy
        self.router = router
        self.guard = IngestGuard(validator, privacy)

    def __call__(self, item: Any) -> list[tuple[str, Any]]:
        if type(item) is not tuple:
            return [(OUT, item)]
        position, raw = item
        checked = self.guard(raw, position)
        if type(checked) is Event:
            return self.router(checked)
        return [(OUT, checked)]
