"""The summary says who is in each segment as the data ends (``outputs.segment_members``).

A replay's end runs time past every deadline, so a window segment is left by everyone
after the last event: its enters and exits alone read as "nobody is in it". The members
are those of ``profiles.jsonl``, which is as of the last event.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers import ev, read_jsonl, write_stream
from rich.console import Console

from audienceflow.flows.replay import replay
from audienceflow.flows.summary import render
from audienceflow.operators.settings import Settings

CONFIG = """
segments:
  recent:
    when: active_within(1h)
  never:
    when: count('Nope', 1d) > 0
triggers: {}
models: {enabled: false}
"""


@pytest.mark.timeout(120)
def test_members_are_the_final_profiles_not_what_the_end_of_the_replay_left(
    tmp_path: Path,
) -> None:
    # a: one event, out of `recent` an hour later, before the data ends. b: in it at
    # the last event (120 min), out of it only in the replay's end (180 min).
    src = write_stream(tmp_path / "in.jsonl", [ev("a", 0), ev("b", 0), ev("b", 120)])
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(cfg, environ={}))
    o = summary["outputs"]
    assert o["segment_changes"]["recent"] == {"enter": 3, "exit": 3}
    assert o["segment_members"]["recent"] == 1
    assert "never" not in o["segment_members"]
    profiles = read_jsonl(out / "profiles.jsonl")
    for seg, n in o["segment_members"].items():  # (the defaults' segments too)
        assert n == sum(seg in p["segments"] for p in profiles), seg

    console = Console(file=io.StringIO(), width=120)
    render(summary, console, str(out), 1.0)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    row = next(line for line in text.splitlines() if "│ recent" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == ["recent", "3", "3", "1", ""]
    never = next(line for line in text.splitlines() if "│ never" in line)
    assert [c.strip() for c in never.split("│")[1:5]] == ["never", "0", "0", "0"]
    assert "members: the users in each segment in profiles.jsonl" in text


def test_a_summary_without_members_still_renders(tmp_path: Path) -> None:
    # `audienceflow report` and the console read summaries an older version wrote.
    summary = {
        "counts": {
            "events_in": 1,
            "processed": 1,
            "dead_lettered_by_reason": {},
            "filtered_by_reason": {},
            "reconciled": True,
        },
        "outputs": {
            "segment_changes": {"recent": {"enter": 1, "exit": 1}},
            "actions": {},
            "users": 1,
            "sessions": 1,
            "converted_sessions": 0,
        },
    }
    console = Console(file=io.StringIO(), width=120)
    render(summary, console, str(tmp_path), 1.0)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    row = next(line for line in text.splitlines() if "│ recent" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == ["recent", "1", "1", ""]
    assert "members:" not in text and "members ┃" not in text


@pytest.mark.timeout(120)
def test_members_count_each_final_profile_once_without_the_absorbed_and_the_deleted(
    tmp_path: Path,
) -> None:
    from helpers import at

    # a1 browses, then is u1 (a merge: a1's profile is absorbed); bob is deleted at 35;
    # at the last event (40) u1 (30) and carl (40) are active within the hour.
    def e(minutes: float, name: str = "Home", **ids: str) -> dict:
        out = {"type": "identify" if name == "identify" else "page", "timestamp": at(minutes)}
        out["messageId"] = f"{ids}-{minutes}-{name}"
        out.update(ids)
        if name != "identify":
            out["name"] = name
        return out

    stream = [
        e(0, anonymousId="a1"),
        e(5, "identify", userId="u1", anonymousId="a1"),
        e(7, userId="bob"),
        e(8, userId="carl"),
        e(30, anonymousId="a1"),
        e(31, userId="bob"),
        e(40, userId="carl"),
    ]
    src = write_stream(tmp_path / "in.jsonl", stream)
    ctl = write_stream(
        tmp_path / "control.jsonl",
        [{"type": "delete", "id": "bob", "requestId": "r1", "timestamp": at(35)}],
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(cfg, environ={}), control=[str(ctl)])
    o = summary["outputs"]
    assert o["profiles"] == 2
    assert o["segment_members"]["recent"] == 2
    assert sorted(p["user_id"] for p in read_jsonl(out / "profiles.jsonl")) == ["carl", "u1"]
