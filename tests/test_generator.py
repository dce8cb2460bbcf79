"""The seeded stream generator: determinism, Segment-spec shape, and truth that matches the lines.

Lines are checked with the standard ``json`` module and a classifier written here, so the
generator's own code is not what judges it.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import generate
from hypothesis import given, settings
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TYPES = {"track", "page", "screen", "identify"}


def classify(line: bytes) -> str | None:
    """The kind of fault in a line, or None for a valid event."""
    if len(line) > 32 * 1024:
        return "oversize"
    try:
        ev = json.loads(line)
    except ValueError:
        return "not_json"
    if not isinstance(ev, dict):
        return "not_object"
    if ev.get("type") == "group" and "groupId" not in ev:
        return "missing_group_id"
    if ev.get("type") not in TYPES:
        return "unknown_type"
    if "userId" not in ev and "anonymousId" not in ev:
        return "no_identity"
    if not isinstance(ev.get("userId", ""), str) or not isinstance(ev.get("properties", {}), dict):
        return "wrong_field_type"
    if "timestamp" not in ev:
        return "missing_timestamp"
    try:
        ts = datetime.fromisoformat(ev["timestamp"])
    except ValueError:
        return "bad_timestamp"
    return "naive_timestamp" if ts.tzinfo is None else None


def valid_events(lines: list[bytes]) -> list[dict[str, Any]]:
    """Valid events in arrival order, first copy of each messageId only."""
    seen: set[str] = set()
    out = []
    for line in lines:
        if classify(line) is None:
            ev = json.loads(line)
            if ev["messageId"] not in seen:
                seen.add(ev["messageId"])
                out.append(ev)
    return out


def key(ev: dict[str, Any]) -> str:
    return ev.get("userId") or ev["anonymousId"]


def test_same_arguments_give_byte_identical_output(tmp_path: Path) -> None:
    a_lines, a_truth = generate.generate(40, seed=3)
    b_lines, b_truth = generate.generate(40, seed=3)
    assert a_lines == b_lines
    assert a_truth == b_truth
    generate.write(tmp_path / "a.jsonl.gz", a_lines)
    generate.write(tmp_path / "b.jsonl.gz", b_lines)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.jsonl.gz").read_bytes()).splitlines() == a_lines
    assert generate.generate(40, seed=4)[0] != a_lines


def test_valid_lines_are_segment_spec_events() -> None:
    lines, _ = generate.generate(60, seed=11, invalid_rate=0, duplicate_rate=0)
    assert all(classify(line) is None for line in lines)
    events = [json.loads(line) for line in lines]
    assert len({e["messageId"] for e in events}) == len(events)
    for e in events:
        assert e["type"] in TYPES
        assert isinstance(e["anonymousId"], str) and e["anonymousId"].startswith("anon-")
        assert e["timestamp"][-1] == "Z" or e["timestamp"][-6] in "+-"
        assert len(e["timestamp"].split(".")[1]) in (4, 9)  # 3 digits of ms, then Z or +hh:mm
        ctx = e["context"]
        assert ctx["device"]["type"] in {"mobile", "desktop", "tablet"}
        assert isinstance(ctx["consent"]["categoryPreferences"]["personalization"], bool)
        assert ctx["campaign"]["source"] in {"google", "newsletter", "direct", "facebook"}
        if e["type"] == "identify":
            assert set(e["traits"]) == {"email", "phone", "name", "plan"}
        else:
            assert isinstance(e["event" if e["type"] == "track" else "name"], str)
            assert isinstance(e["properties"], dict)
    by_name = {e["event"]: e["properties"] for e in events if e["type"] == "track"}
    assert set(by_name["Product Added"]) == {"product_id", "name", "category", "price", "quantity"}
    assert set(by_name["Order Completed"]) == {"order_id", "total", "revenue", "products"}
    assert set(by_name["Video Content Completed"]) >= {"content_asset_id", "category", "position"}
    assert by_name["Page Scrolled"]["percent"] in (25, 50, 75, 100)


def test_planted_invalid_lines_are_present_and_counted() -> None:
    lines, truth = generate.generate(80, seed=5, invalid_rate=0.05)
    found = Counter(kind for kind in map(classify, lines) if kind is not None)
    assert found == Counter(truth["invalid"])
    assert set(found) == set(generate.INVALID_KINDS)
    assert sum(found.values()) == truth["invalid_total"] > 0
    assert generate.generate(80, seed=5, invalid_rate=0)[1]["invalid_total"] == 0


def test_truth_covers_every_user_and_counts_what_is_in_the_lines() -> None:
    lines, truth = generate.generate(120, seed=9)
    events = valid_events(lines)
    assert len(truth["archetypes"]) == truth["users"] == 120
    assert {key(e) for e in events} == set(truth["archetypes"])
    assert set(truth["archetypes"].values()) == {
        "deal_seeker",
        "browser",
        "loyal_customer",
        "video_fan",
    }
    assert len(events) == truth["valid_events"]
    tracks = Counter(e["event"] for e in events if e["type"] == "track")
    assert tracks == Counter(truth["events_by_name"])
    assert tracks["Order Completed"] == truth["orders"]
    withheld = {
        key(e)
        for e in events
        if not e["context"]["consent"]["categoryPreferences"]["personalization"]
    }
    assert withheld == set(truth["consent_withheld_users"])
    assert truth["lines"] == len(lines)
    assert len(lines) == truth["valid_events"] + truth["duplicates"] + truth["invalid_total"]


def test_duplicates_and_late_events_stay_within_two_minutes() -> None:
    rates = {"invalid_rate": 0, "duplicate_rate": 0.03, "out_of_order_rate": 0.03}
    lines, truth = generate.generate(150, seed=2, **rates)
    first: dict[str, int] = {}
    dups = late = 0
    newest = float("-inf")
    for i, line in enumerate(lines):
        ev = json.loads(line)
        ts = datetime.fromisoformat(ev["timestamp"]).timestamp()
        if ev["messageId"] in first:
            assert line == lines[first[ev["messageId"]]]
            dups += 1
        else:
            first[ev["messageId"]] = i
            late += ts < newest
        assert ts >= newest - 110  # inside the default 2 min allowed lateness
        newest = max(newest, ts)
    assert dups == truth["duplicates"] > 0
    assert late == truth["out_of_order"] > 0


@settings(max_examples=15, deadline=None)
@given(users=st.integers(0, 15), seed=st.integers(0, 2**32))
def test_every_line_is_accounted_for(users: int, seed: int) -> None:
    lines, truth = generate.generate(users, seed, invalid_rate=0.1, duplicate_rate=0.05)
    assert lines == generate.generate(users, seed, invalid_rate=0.1, duplicate_rate=0.05)[0]
    assert len(lines) == truth["valid_events"] + truth["duplicates"] + truth["invalid_total"]
    assert len(valid_events(lines)) == truth["valid_events"]


def test_bundled_stream_is_what_the_generator_makes() -> None:
    lines, truth = generate.generate(300, seed=7)
    bundled = gzip.decompress((EXAMPLES / "stream.jsonl.gz").read_bytes()).splitlines()
    assert bundled == lines
    assert json.loads((EXAMPLES / "stream.truth.json").read_text()) == json.loads(json.dumps(truth))


def test_planted_faults_are_the_validators_dead_letter_reasons() -> None:
    from audienceflow.operators.records import DeadLetter
    from audienceflow.operators.validate import Taxonomy, Validator

    lines, truth = generate.generate(100, seed=13, invalid_rate=0.05)
    validate = Validator(Taxonomy.default())
    results = [validate(line, f"gen:{i}") for i, line in enumerate(lines)]
    dead = Counter(r.reason for r in results if isinstance(r, DeadLetter))
    assert dead == Counter(truth["invalid_by_reason"])
    assert len(results) - dead.total() == truth["valid_events"] + truth["duplicates"]
