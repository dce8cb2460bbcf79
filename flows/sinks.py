"""File outputs of a replay, and the run summary that reconciles the counts.

All records go to one sink partition so a replay writes each file in one
deterministic order. Records are serialized with sorted keys, so the same
input and config give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from audienceflow.flows.sources import SourceEnd
from audienceflow.flows.summary import RunTally
from audienceflow.operators.records import (
    Action,
    DeadLetter,
    Drift,
    Erasure,
    ExperimentUpdate,
    Exposure,
    Filtered,
    IdentityChange,
    ProfileUpdate,
    Receipt,
    SegmentChange,
    Session,
    ShardStats,
    dumps,
)

FILES = {
    Session: "sessions.jsonl",
    SegmentChange: "segment_changes.jsonl",
    Action: "actions.jsonl",
    DeadLetter: "dead_letters.jsonl",
    Drift: "drift.jsonl",
    Exposure: "exposures.jsonl",
    ExperimentUpdate: "experiments.jsonl",
    IdentityChange: "identities.jsonl",
    Receipt: "control.jsonl",
}


class _FilePartition(StatefulSinkPartition[Any, None]):
    def __init__(self, out: Path, tally: RunTally) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.tally = tally
        self.files = {cls: (out / name).open("wb") for cls, name in FILES.items()}
        self.profiles: dict[str, dict[str, Any]] = {}

    def write_batch(self, values: list[Any]) -> None:
        tally = self.tally
        for rec in values:
            cls = type(rec)
            fh = self.files.get(cls)
            if fh is not None:
                fh.write(dumps(rec.to_json()))
                fh.write(b"\n")
                tally.record(rec)
            elif cls is ProfileUpdate:
                self.profiles[rec.user_id] = rec.fields
            elif cls is Erasure:  # merged into another profile, or deleted
                self.profiles.pop(rec.canonical, None)
            elif cls is Filtered:
                tally.filtered[rec.reason] = tally.filtered.get(rec.reason, 0) + 1
            elif cls is ShardStats:
                tally.shards.append(rec)
            elif cls is SourceEnd:
                tally.add_source(rec)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        with (self.out / "profiles.jsonl").open("wb") as fh:
            for uid in sorted(self.profiles):
                fh.write(dumps(self.profiles[uid]) + b"\n")
        self.tally.profiles = len(self.profiles)
        summary = self.tally.summary()
        (self.out / "summary.json").write_bytes(dumps(summary) + b"\n")


class ReplayFileSink(FixedPartitionedSink[Any, None]):
    """Writes sessions, segment changes, actions, dead letters, profiles and the summary."""

    def __init__(self, out: str | Path, tally: RunTally | None = None) -> None:
        self.out = Path(out)
        self.tally = tally if tally is not None else RunTally()

    def list_parts(self) -> list[str]:
        return ["replay"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FilePartition:
        return _FilePartition(self.out, self.tally)
