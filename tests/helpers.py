"""Small builders for hand-written test streams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.operators import native

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

# A test that watches the pure engine's internals: it patches a module's function or an
# instance's method, or subclasses an engine class, which compiled code calls directly or
# refuses (a native class). It runs in the suite's pure build and is skipped when the
# suite runs compiled (AUDIENCEFLOW_PURE=0); what compiled code outputs is compared with
# the pure code's in tests/test_native.py.
pure_only = pytest.mark.skipif(
    native.verdict() == "compiled", reason="watches the pure engine's internals"
)


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


def keyed_items(
    settings: Any, raw: list[Any], partition: str = "in:0", batch: int = 1000
) -> list[tuple[str, Any]]:
    """What one input partition's source yields for ``raw`` (``(position, line)`` items and
    ``Arrival`` stamps, each stamping the items after it), end of input included; lines
    are ingested in batches of ``batch`` (a file source's default), as a source reads them."""
    from audienceflow.flows.dataflow import Arrival
    from audienceflow.flows.partitions import make_ingest
    from audienceflow.operators.routing import OUT

    ingest = make_ingest(settings, partition, None, live=False)
    out: list[tuple[str, Any]] = []
    chunk: list[Any] = []
    stamp = None

    def flush() -> None:
        keyed = ingest.feed(chunk)
        out.extend(keyed)
        if stamp is not None:
            out.extend((k, stamp) for k in sorted({k for k, _ in keyed if k != OUT}))
        chunk.clear()

    for item in raw:
        if isinstance(item, Arrival):
            flush()
            stamp = item
        else:
            chunk.append(item)
            if len(chunk) >= batch:
                flush()
    flush()
    out.extend(ingest.end())
    return out


class Feeder:
    """One input partition in front of an engine: events → the items the shard receives.

    ``quorum`` 1: the partition's time is its latest event (what hand-worked tests expect).
    """

    def __init__(
        self, settings: Any, partition: str = "p", quorum: int = 1, clock: Any = None
    ) -> None:
        from audienceflow.operators.privacy import Privacy
        from audienceflow.operators.routing import PartitionIngest
        from audienceflow.operators.validate import Validator
        from audienceflow.operators.watermarks import PartitionClock

        if clock is None:  # else a resumed partition's (what a source snapshots)
            clock = PartitionClock(settings.lateness, settings.max_future, quorum, 32)
        self.ingest = PartitionIngest(
            partition,
            Validator(settings.taxonomy, settings.consent_path),
            Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt),
            settings.shards,
            settings.tick,
            clock,
        )
        self.dead: list[Any] = []

    def items(self, events: list[Any]) -> list[Any]:
        from audienceflow.operators.routing import OUT

        keyed = self.ingest.feed_events(events)
        self.dead += [v for k, v in keyed if k == OUT]
        return [v for k, v in keyed if k != OUT]

    def end(self) -> list[Any]:
        return [v for _, v in self.ingest.end()]


def ingested(keyed: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """An ingest's output with each event's dead letter where a shard would put it out:
    keyed ``OUT`` (ingest sends a late or future event's dead letter to its user's shard,
    which filters it instead if the person is suppressed: ``records.Rejected``)."""
    from audienceflow.operators.records import Rejected
    from audienceflow.operators.routing import OUT

    return [(OUT, v.dead) if type(v) is Rejected else (k, v) for k, v in keyed]


def phone_left(text: str) -> None:
    """``text`` stays as written: the phone pattern itself finds nothing (the guards
    before it bound some shapes too), the scrubber changes nothing, no PII is seen."""
    from audienceflow.operators import scrub

    assert scrub.PHONE.search(text) is None
    assert scrub.scrub_text(text) == text
    assert not scrub.has_pii(text)


def phone_masked(text: str, out: str) -> None:
    """``text`` scrubs to ``out``, the pre-check lets it through, and ``out`` holds no PII."""
    from audienceflow.operators import scrub

    assert scrub.scrub_text(text) == out
    assert scrub.has_pii(text) and scrub.may_have_pii(text)
    assert not scrub.has_pii(out)
