"""Shapes found replaying public Segment-spec payloads through the README's commands.

A corpus of about 2,500 distinct calls gathered from other projects' test data and from
Segment's documentation (see bench/public/README.md) was replayed with `audienceflow
replay`; these tests hold what it found. Every line here is written by hand in the shape
found; no value is copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.flows.replay import replay
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Taxonomy, Validator

SALT = {"AUDIENCEFLOW_PII_SALT": "x"}

# Segment's B2B SaaS spec ("Invite Sent") and live chat spec name these properties.
INVITE = {"invitee_email": "ola.nord@example.net", "invitee_first_name": "Ola",
          "invitee_last_name": "Nordmannsen", "invitee_role": "Owner"}  # fmt: skip
CHAT = {"agent_id": "a7", "agent_name": "Kari Brekkestad", "agent_username": "kbrekke",
        "conversation_id": "c9"}  # fmt: skip
PERSONAL = {"invitee_email", "invitee_first_name", "invitee_last_name", "agent_name",
            "agent_username"}  # fmt: skip
NAMES = ("Ola", "Nordmannsen", "Kari Brekkestad", "kbrekke", "ola.nord")


def call(second: int, **fields: Any) -> dict[str, Any]:
    line = {"type": "track", "userId": "u1", "messageId": f"m{second}",
            "timestamp": f"2026-03-02T08:00:{second:02d}.000Z"}  # fmt: skip
    line.update(fields)
    return line


def untimed(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k != "timestamp"}


@pytest.mark.timeout(30)
def test_an_invitee_and_a_chat_agent_named_by_segments_specs_are_hashed_before_state() -> None:
    settings = Settings.load(None, SALT)
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
    for props in (INVITE, CHAT):
        ev = Validator(Taxonomy.default())(
            orjson.dumps(call(0, event="x", properties=props)), "f:1"
        )
        assert isinstance(ev, Event)
        out = privacy(ev)
        assert isinstance(out, Event)
        hashed = {k for k, v in out.properties.items() if str(v).startswith("sha256:")}
        assert hashed == PERSONAL & props.keys()


@pytest.mark.timeout(120)
def test_no_invitee_or_chat_agent_name_reaches_a_dead_letter_or_any_output(tmp_path: Path) -> None:
    lines = [
        call(0, event="Invite Sent", properties=INVITE),
        call(1, event="Live Chat Conversation Started", properties=CHAT),
        # A sender's call with no time at all is a dead letter that keeps its properties.
        untimed(call(2, event="Invite Sent", properties=INVITE)),
        untimed(call(3, event="Live Chat Message Sent", properties=CHAT)),
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(None, SALT))
    counts = summary["counts"]
    assert (counts["processed"], counts["dead_lettered_by_reason"]) == (2, {"missing_timestamp": 2})
    dead = (out / "dead_letters.jsonl").read_text()
    assert "invitee_first_name" in dead and "agent_name" in dead
    written = "".join(p.read_text() for p in sorted(out.iterdir()))
    assert not [name for name in NAMES if name in written]


@pytest.mark.timeout(30)
def test_an_identify_with_an_empty_user_id_says_the_id_is_empty() -> None:
    # A server-side source's identify with "userId": "" and no anonymousId: the detail
    # said "it has 'userId': the spec's fields are 'userId' and 'anonymousId'".
    for given, said in (("", "'userId' is empty"), (None, "'userId' is null")):
        line = {"type": "identify", "userId": given, "messageId": "m1",
                "timestamp": "2026-03-02T08:00:00Z", "traits": {"plan": "pro"}}  # fmt: skip
        dead = Validator(Taxonomy.default())(orjson.dumps(line), "f:1")
        assert isinstance(dead, DeadLetter) and dead.reason == "no_identity"
        assert said in dead.detail and "the spec's fields" not in dead.detail


@pytest.mark.timeout(30)
def test_an_android_apps_dalvik_agent_is_a_phone_not_a_tablet() -> None:
    # An Android SDK's call without context.device.type sends Android's own http.agent;
    # having no "Mobi" (no browser's agent has it here), it was read as a tablet.
    agent = "Dalvik/2.1.0 (Linux; U; Android 9; SM-G960F Build/PPR1.180610.011)"
    line = call(0, event="Application Opened", context={"userAgent": agent})
    ev = Validator(Taxonomy.default())(orjson.dumps(line), "f:1")
    assert isinstance(ev, Event) and ev.device == "mobile"
    tv = "Dalvik/2.1.0 (Linux; U; Android 9; BRAVIA 4K GB Build/PTT1.190515.001.S52)"
    browser_tablet = "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 Safari/537.36"
    for agent, device in ((tv, "tv"), (browser_tablet, "tablet")):
        ev = Validator(Taxonomy.default())(
            orjson.dumps(call(0, event="x", context={"userAgent": agent})), "f:1"
        )
        assert isinstance(ev, Event) and ev.device == device


@pytest.mark.timeout(30)
def test_a_track_body_without_type_and_a_segment_delete_say_what_they_are() -> None:
    validate = Validator(Taxonomy.default())
    body = untimed(call(0, event="Order Completed"))  # as POSTed to /v1/track
    body.pop("type")
    delete = {"type": "delete", "userId": "u1", "messageId": "delete-1",
              "timestamp": "2026-03-02T08:00:00Z", "context": [], "integrations": []}  # fmt: skip
    track, gone = validate(orjson.dumps(body), "f:1"), validate(orjson.dumps(delete), "f:2")
    assert isinstance(track, DeadLetter) and track.reason == "unknown_type"
    assert '"type": "track"' in track.detail
    assert isinstance(gone, DeadLetter) and gone.reason == "unknown_type"
    assert "data subject's request" in gone.detail and "--control" in gone.detail


@pytest.mark.timeout(120)
def test_a_rudderstack_record_rows_fields_reach_no_dead_letter(tmp_path: Path) -> None:
    # RudderStack's record events carry a warehouse row: the person's name sat in the
    # unknown_type dead letter, as only email-shaped values were masked.
    record = {"type": "record", "action": "insert", "messageId": "r1", "channel": "sources",
              "fields": {"name": "Ola Nordmannsen", "age": 30, "email": "ola.nord@example.net"},
              "identifiers": {"userId": "u1"}, "timestamp": "2026-03-02T08:00:00Z"}  # fmt: skip
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps(record) + b"\n")
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(None, SALT))
    assert summary["counts"]["dead_lettered_by_reason"] == {"unknown_type": 1}
    dead = (out / "dead_letters.jsonl").read_text()
    assert "Nordmannsen" not in dead and '"identifiers' in dead
