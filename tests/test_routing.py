"""Ingest: the fused validate → privacy → route step."""

from __future__ import annotations

import orjson

from audienceflow.operators.engine import shard_of
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event, Filtered, Tick
from audienceflow.operators.routing import OUT, Ingest, Router
from audienceflow.operators.validate import Taxonomy, Validator


def make(shards: int = 3, tick: float = 60.0) -> Ingest:
    return Ingest(
        Validator(Taxonomy.default()),
        Privacy(("email", "phone", "ip"), salt="s"),
        Router(shards, tick),
    )


def line(**over: object) -> bytes:
    obj = {
        "type": "track",
        "event": "Product Viewed",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2026-03-02T08:00:00Z",
        "properties": {},
    }
    obj.update(over)
    return orjson.dumps(obj)


def test_events_go_to_their_users_shard_and_ticks_to_every_shard() -> None:
    out = make()(("f:1", line()))
    assert out[0] == (shard_of("u1", 3), out[0][1]) and type(out[0][1]) is Event
    ticks = out[1:]
    assert sorted(k for k, _ in ticks) == ["shard-000", "shard-001", "shard-002"]
    assert all(type(t) is Tick and t.max_event_ts == out[0][1].ts for _, t in ticks)


def test_a_tick_is_sent_only_when_event_time_crosses_a_step() -> None:
    ing = make(tick=60.0)
    ing(("f:1", line(messageId="a", timestamp="2026-03-02T08:00:10Z")))
    same_step = ing(("f:2", line(messageId="b", timestamp="2026-03-02T08:00:50Z")))
    older = ing(("f:3", line(messageId="c", timestamp="2026-03-02T07:59:00Z")))
    next_step = ing(("f:4", line(messageId="d", timestamp="2026-03-02T08:01:00Z")))
    assert len(same_step) == 1 and len(older) == 1 and len(next_step) == 4


def test_pii_is_hashed_at_any_depth_and_in_any_case() -> None:
    props = {"EMAIL": "a@b.c", "order": {"items": [{"Phone": "+1 555 0100"}]}}
    ((_, ev),) = make(shards=1)(("f:1", line(properties=props)))[:1]
    assert ev.properties["EMAIL"].startswith("sha256:")
    assert ev.properties["order"]["items"][0]["Phone"].startswith("sha256:")
    assert "a@b.c" not in repr(ev.properties)


def test_a_unicode_escaped_pii_key_is_still_found() -> None:
    raw = line().replace(b'"properties":{}', b'"properties":{"\\u0065mail":"a@b.c"}')
    ((_, ev),) = make(shards=1)(("f:1", raw))[:1]
    assert ev.properties["email"].startswith("sha256:")


def test_dead_letters_filtered_events_and_other_records_are_keyed_out() -> None:
    ing = make()
    assert [k for k, _ in ing(("f:1", b"nope"))] == [OUT]
    withheld = line(context={"consent": {"categoryPreferences": {"personalization": False}}})
    ((key, rec),) = ing(("f:2", withheld))
    assert key == OUT and type(rec) is Filtered and rec.reason == "consent_withheld"
    ((key, rec),) = ing(("f:3", b'{"email":"x@y.z","type":"bogus"}'))
    assert type(rec) is DeadLetter and "x@y.z" not in rec.raw
    marker = object()
    assert ing(marker) == [(OUT, marker)]
