"""The replay's file outputs: the line each record is written as, the file each kind of
record goes to, and the loop that writes a batch of records and counts them.

Records are serialized with sorted keys (``records.dumps``), so the same input and
config give byte-identical files. This is the per-record work of the replay's sink
(``flows/sinks.py`` opens the files and hands it each batch): stream logic without
Bytewax, compiled by ``make fast`` with the records and the tally it calls.
"""

from __future__ import annotations

from typing import IO, Any, Final

import orjson

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
)
from audienceflow.operators.tally import RunTally

# ``dumps`` and its newline in one call. Without OPT_NON_STR_KEYS, which makes orjson take
# its slower path for every dict: a record whose dict has a key that is not a str raises,
# and is written again with the option, so every line is what ``dumps`` gives.
_LINE: Final = (_OPTS & ~orjson.OPT_NON_STR_KEYS) | orjson.OPT_APPEND_NEWLINE
_LINE_ANY_KEYS: Final = _OPTS | orjson.OPT_APPEND_NEWLINE
_DUMPS: Final = orjson.dumps  # compiled, a constant: no lookup by name per record

# The file of each kind of record written line by line.
FILES: dict[type, str] = {
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


def dumps_line(obj: dict[str, Any]) -> bytes:
    """``dumps(obj) + b"\\n"``, the bytes of one line of an output file."""
    try:
        return _DUMPS(obj, option=_LINE)
    except orjson.JSONEncodeError:
        return orjson.dumps(obj, option=_LINE_ANY_KEYS)


def write_records(
    values: list[Any],
    files: dict[type, IO[bytes]],
    profiles: dict[str, dict[str, Any]],
    tally: RunTally,
) -> list[Any]:
    """Write ``values`` in order: each record of a kind in ``files`` as a line of its
    file, counted in ``tally``; a profile kept in ``profiles`` (the last one of a user
    wins; written at the end), an erased one dropped; filtered events and shard
    statistics counted. The others (the sources' own ends), in order, for the caller."""
    rest: list[Any] = []
    for rec in values:
        cls = type(rec)
        fh = files.get(cls)
        if fh is not None:
            fh.write(dumps_line(rec.to_json()))
            tally.record(rec)
        elif cls is ProfileUpdate:
            profiles[rec.user_id] = rec.fields
        elif cls is Erasure:  # merged into another profile, or deleted
            profiles.pop(rec.canonical, None)
        elif cls is Filtered:
            tally.add_filtered(rec)
        elif cls is ShardStats:
            tally.shards.append(rec)
        else:
            rest.append(rec)
    return rest
