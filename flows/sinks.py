"""File outputs of a replay, and the run summary that reconciles the counts.

All records go to one sink partition so a replay writes each file in one
deterministic order. Records are serialized with sorted keys, so the same
input and config give byte-identical files.

Each record is one ``write`` of its line, newline included, into a 1 MiB buffer
(the default 8 KiB one made a system call every ~25 records).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from audienceflow.flows.sources import SourceEnd
from audienceflow.flows.summary import RunTally
from audienceflow.operators.records import _DUMPS_OPTS as _OPTS
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

# ``dumps`` and its newline in one call. Without OPT_NON_STR_KEYS, which makes orjson take
# its slower path for every dict: a record whose dict has a key that is not a str raises,
# and is written again with the option, so every line is what ``dumps`` gives.
_LINE = (_OPTS & ~orjson.OPT_NON_STR_KEYS) | orjson.OPT_APPEND_NEWLINE
_LINE_ANY_KEYS = _OPTS | orjson.OPT_APPEND_NEWLINE
_BUFFER = 1 << 20


def dumps_line(obj: dict[str, Any]) -> bytes:
    """``dumps(obj) + b"\\n"``, the bytes of one line of an output file."""
    try:
        return orjson.dumps(obj, option=_LINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(obj, option=_LINE_ANY_KEYS)


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
        self.files = {
            cls: (out / name).open("wb", buffering=_BUFFER) for cls, name in FILES.items()
        }
        self.profiles: dict[str, dict[str, Any]] = {}

    def write_batch(self, values: list[Any]) -> None:
        tally = self.tally
        files = self.files
        for rec in values:
            cls = type(rec)
            fh = files.get(cls)
            if fh is not None:
                fh.write(dumps_line(rec.to_json()))
                tally.record(rec)
            elif cls is ProfileUpdate:
                self.profiles[rec.user_id] = rec.fields
            elif cls is Erasure:  # merged into another profile, or deleted
                self.profiles.pop(rec.canonical, None)
            elif cls is Filtered:
                tally.add_filtered(rec)
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
                fh.write(dumps_line(self.profiles[uid]))
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
