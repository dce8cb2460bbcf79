"""Small builders for hand-written test streams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    """ISO time ``minutes`` after 2026-03-02T08:00Z."""
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ev(
    user: str,
    minutes: float,
    name: str = "Home",
    etype: str | None = None,
    mid: str | None = None,
    **props: Any,
) -> dict[str, Any]:
    """A Segment-spec event; page events unless the name looks like a track event."""
    if etype is None:
        etype = "page" if name in ("Home", "Deals", "Product", "Category", "Cart") else "track"
    out: dict[str, Any] = {
        "type": etype,
        "userId": user,
        "timestamp": at(minutes),
        "messageId": mid or f"{user}-{minutes}-{name}",
        "properties": props,
    }
    out["event" if etype == "track" else "name"] = name
    return out


def write_stream(path: Path, events: list[dict[str, Any] | str]) -> Path:
    with path.open("wb") as fh:
        for e in events:
            fh.write(e.encode() if isinstance(e, str) else orjson.dumps(e))
            fh.write(b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
