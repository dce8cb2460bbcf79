"""The replay's file sink writes each record as ``records.dumps`` gives it, one per line.

``outputs.dumps_line`` serializes without orjson's non-str-key option (its slower path)
and retries with it when a dict has another key: every line must still be exactly
``dumps(obj) + b"\\n"``, whatever the keys and values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.flows.sinks import _FilePartition
from audienceflow.operators.outputs import FILES, dumps_line
from audienceflow.operators.records import DeadLetter, SegmentChange, dumps
from audienceflow.operators.tally import RunTally

KEYS = st.text(max_size=8) | st.integers(-3, 3) | st.floats(allow_nan=False) | st.booleans()
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
@example({"b": 1, "a": {"d": [1.5, None], "c": "x"}})  # str keys: the fast option
@example({"b": {2: "two", 1: "one"}})  # a nested int key: retried with the option
@example({"é": 1, "e": 2, "\U0001f600": 3, "Z": 4})  # sorted by code point, as dumps does
def test_a_line_is_the_record_dumps_gives_and_a_newline(obj: dict[Any, Any]) -> None:
    assert dumps_line(obj) == dumps(obj) + b"\n"


def test_the_file_sink_writes_each_record_on_its_own_line(tmp_path: Path) -> None:
    change = SegmentChange("u1", "vip", "enter", 1772438400.0, {"rule": "vip"})
    dead = DeadLetter("not_json", "step 'validate': line is not JSON", "f:2", "{oops")
    part = _FilePartition(tmp_path, RunTally())
    part.write_batch([change, dead, change])
    part.close()
    assert (tmp_path / FILES[SegmentChange]).read_bytes() == 2 * (dumps(change.to_json()) + b"\n")
    assert (tmp_path / FILES[DeadLetter]).read_bytes() == dumps(dead.to_json()) + b"\n"
    assert (tmp_path / FILES[SegmentChange]).read_text().count("\n") == 2
