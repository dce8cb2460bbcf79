"""Test your config like code: events in, the real dataflow, records out.

``run(events, config)`` writes the events to a temporary JSONL file, replays them
through the same dataflow ``audienceflow replay`` runs (``flows.replay.replay``) with
the given config, and returns every output as Python dicts plus the summary. Nothing
in a replay reads the wall clock: "now" is stream time, the latest event time seen,
so the event timestamps are the clock. ``Clock`` hands out those timestamps, so a
test says "15 minutes later" instead of writing ISO strings.

>>> clock = Clock("2026-03-02T08:00:00Z")
>>> events = [event("u1", clock.now(), "Product Added", product_id="p1", price=10.0)]
>>> result = run(events, {"segments": {"cart_holder": {"when": "cart_items > 0"}}})
>>> result.entered("cart_holder")
['u1']
>>> [a["action"] for a in result.actions]
['cart_abandonment']
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

from audienceflow.flows.contracts import FILES, errors
from audienceflow.operators.config import parse_duration
from audienceflow.operators.settings import Settings

__all__ = ["Clock", "Result", "event", "run"]

PAGE_NAMES = frozenset({"Home", "Deals", "Product", "Category", "Cart", "Search"})


@dataclass
class Result:
    """The outputs of one run, as the replay wrote them (one dict per record)."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    segment_changes: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def entered(self, segment: str) -> list[str]:
        """User ids that entered ``segment``, in output order (repeats kept)."""
        return [
            c["user_id"]
            for c in self.segment_changes
            if c["segment"] == segment and c["change"] == "enter"
        ]

    def exited(self, segment: str) -> list[str]:
        """User ids that left ``segment``, in output order (repeats kept)."""
        return [
            c["user_id"]
            for c in self.segment_changes
            if c["segment"] == segment and c["change"] == "exit"
        ]

    def delivered(self, action: str | None = None) -> list[dict[str, Any]]:
        """Delivered actions, of one trigger or all."""
        return [
            a
            for a in self.actions
            if a["status"] == "delivered" and (action is None or a["action"] == action)
        ]

    def profile(self, user_id: str) -> dict[str, Any] | None:
        """The final profile of ``user_id``, or None."""
        return next((p for p in self.profiles if p["user_id"] == user_id), None)

    def contract_errors(self) -> list[str]:
        """Every record that breaks its output schema (``audienceflow schemas``): empty when
        all conform."""
        out = []
        for fname, schema in FILES.items():
            recs = [self.summary] if fname == "summary.json" else getattr(self, fname[:-6])
            for i, rec in enumerate(recs):
                out += [f"{fname}[{i}] {e}" for e in errors(schema, rec)]
        return out


class Clock:
    """A fake clock for building event timestamps: ``now()``, ``advance("15m")``."""

    def __init__(self, start: str | datetime = "2026-03-02T08:00:00Z") -> None:
        self._t = _as_datetime(start)

    def now(self) -> str:
        """The current fake time as ISO-8601 UTC with milliseconds and ``Z``."""
        return self._t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def advance(self, by: str | float) -> str:
        """Move forward by a duration (``"90s"``, ``"15m"``, or seconds) and return ``now()``."""
        seconds = parse_duration(by) if isinstance(by, str) else float(by)
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {by!r}")
        self._t += timedelta(seconds=seconds)
        return self.now()


def event(
    user_id: str,
    timestamp: str,
    name: str = "Home",
    type: str | None = None,
    message_id: str | None = None,
    context: Mapping[str, Any] | None = None,
    **properties: Any,
) -> dict[str, Any]:
    """A Segment-spec event: a ``page`` for page-like names, else a ``track`` event."""
    kind = type or ("page" if name in PAGE_NAMES else "track")
    out: dict[str, Any] = {
        "type": kind,
        "userId": user_id,
        "timestamp": timestamp,
        "messageId": message_id or f"{user_id}|{timestamp}|{name}",
        "properties": properties,
    }
    if kind in ("track", "page", "screen"):
        out["event" if kind == "track" else "name"] = name
    if context is not None:
        out["context"] = dict(context)
    return out


def run(
    events: Iterable[Mapping[str, Any] | str | bytes] | str | Path,
    config: Mapping[str, Any] | str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Result:
    """Replay ``events`` through the real dataflow with ``config``; return every output.

    ``events``: event dicts, raw lines (``str``/``bytes``, also invalid ones, to test
    dead letters), or the path of a JSONL file (plain or ``.gz``). ``config``: a YAML
    file's path, a mapping with the same structure, or None for the defaults.
    ``environ`` stands in for the process environment (``AUDIENCEFLOW_*`` overrides,
    the PII salt); the default is an empty one, so a test does not depend on the shell.
    """
    with tempfile.TemporaryDirectory(prefix="audienceflow-test-") as tmp:
        root = Path(tmp)
        if isinstance(events, str | Path):
            source = Path(events)
        else:
            source = root / "events.jsonl"
            with source.open("wb") as fh:
                for e in events:
                    fh.write(_line(e) + b"\n")
        cfg_path: Path | None
        if config is None or isinstance(config, str | Path):
            cfg_path = None if config is None else Path(config)
        else:
            cfg_path = root / "config.yaml"
            cfg_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        settings = Settings.load(cfg_path, dict(environ or {}))
        from audienceflow.flows.replay import replay

        out = root / "out"
        summary = replay([str(source)], out, settings)
        return _read(out, summary)


def _line(e: Mapping[str, Any] | str | bytes) -> bytes:
    if isinstance(e, bytes):
        return e
    if isinstance(e, str):
        return e.encode()
    return orjson.dumps(dict(e))


def _read(out: Path, summary: dict[str, Any]) -> Result:
    res = Result(summary=summary)
    for fname in FILES:
        if fname.endswith(".jsonl") and (out / fname).exists():
            recs = [orjson.loads(x) for x in (out / fname).read_bytes().splitlines() if x]
            setattr(res, fname[:-6], recs)
    return res


def _as_datetime(t: str | datetime) -> datetime:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"Clock needs a timezone-aware start; got {t!r}")
        return t.astimezone(UTC)
    parsed = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"Clock needs a start with a UTC offset or Z; got {t!r}")
    return parsed.astimezone(UTC)
