"""Ingest of one input partition: validate → privacy → its own event time → route."""

from __future__ import annotations

from typing import Any

import orjson

from audienceflow.operators.engine import shard_of
from audienceflow.operators.ingest_guard import check_line
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event, Filtered, Watermark
from audienceflow.operators.routing import OUT, PartitionIngest
from audienceflow.operators.validate import Taxonomy, Validator
from audienceflow.operators.watermarks import PartitionClock


class _Make:
    def __init__(self, shards: int, tick: float, quorum: int, lateness: float) -> None:
        self.ing = PartitionIngest(
            "f",
            Validator(Taxonomy.default()),
            Privacy(("email", "phone", "ip"), salt="s"),
            shards,
            tick,
            PartitionClock(lateness, 7 * 86400.0, quorum=quorum, window=32),
        )

    def __call__(self, item: tuple[str, bytes]) -> list[tuple[str, object]]:
        return self.ing.feed([item])


def make(shards: int = 3, tick: float = 60.0, quorum: int = 1, lateness: float = 0.0) -> _Make:
    return _Make(shards, tick, quorum, lateness)


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


def test_events_go_to_their_users_shard_and_watermarks_to_every_shard() -> None:
    out = make()(("f:1", line()))
    assert out[0] == (shard_of("u1", 3), out[0][1]) and type(out[0][1]) is Event
    marks = out[1:]
    assert sorted(k for k, _ in marks) == ["shard-000", "shard-001", "shard-002"]
    assert all(
        type(m) is Watermark and m.at == out[0][1].ts and m.partition == "f" for _, m in marks
    )


def test_a_watermark_is_sent_only_when_event_time_crosses_a_step() -> None:
    ing = make(tick=60.0)
    ing(("f:1", line(messageId="a", timestamp="2026-03-02T08:00:10Z")))
    same_step = ing(("f:2", line(messageId="b", timestamp="2026-03-02T08:00:50Z")))
    older = ing(("f:3", line(messageId="c", timestamp="2026-03-02T08:00:20Z")))
    next_step = ing(("f:4", line(messageId="d", timestamp="2026-03-02T08:01:00Z")))
    assert len(same_step) == 1 and len(older) == 1 and len(next_step) == 4


def test_a_batch_crossing_many_steps_sends_one_watermark_per_shard_after_all_its_events() -> None:
    """Kills broadcasting at every step crossed (one per tick of event time in a backlog)
    and broadcasting before the batch's last event."""
    ing = make(shards=2, tick=60.0).ing
    ing.feed([("f:0", line(messageId="z", timestamp="2026-03-02T07:59:00Z"))])
    batch = [
        ("f:1", line(messageId="a", timestamp="2026-03-02T08:00:10Z")),
        ("f:2", line(messageId="b", timestamp="2026-03-02T08:05:00Z")),
        ("f:3", line(messageId="c", userId="u2", timestamp="2026-03-02T09:30:00Z")),
    ]
    out = ing.feed(batch)
    kinds = [type(v).__name__ for _, v in out]
    assert kinds == ["Event", "Event", "Event", "Watermark", "Watermark"]
    assert sorted(k for k, v in out if type(v) is Watermark) == ["shard-000", "shard-001"]
    last = out[2][1]
    assert isinstance(last, Event)
    assert all(v.at == last.ts for _, v in out if type(v) is Watermark)
    # A batch within the same step sends none.
    quiet = ing.feed([("f:4", line(messageId="d", timestamp="2026-03-02T09:30:20Z"))])
    assert [type(v).__name__ for _, v in quiet] == ["Event"]


def test_link_notices_go_as_one_list_per_shard_per_batch_before_its_watermark() -> None:
    """Kills one item per notice (each would cross processes on its own) and a notice
    sent after the watermark that covers it (its shard would apply it late)."""
    from audienceflow.operators.records import LinkNotice
    from audienceflow.operators.routing import shard_index

    ing = make(shards=2, tick=60.0).ing
    ing.feed([("f:0", line(messageId="z", timestamp="2026-03-02T07:59:00Z"))])  # first mark
    # Anonymous ids on the other shard than u1's.
    home = shard_index("u1", 2)
    anons = [a for a in (f"a{i}" for i in range(20)) if shard_index(a, 2) != home][:2]
    batch = [
        ("f:1", line(messageId="m1", anonymousId=anons[0], timestamp="2026-03-02T08:00:10Z")),
        ("f:2", line(messageId="m2", anonymousId=anons[1], timestamp="2026-03-02T08:00:20Z")),
        ("f:3", line(messageId="m3", anonymousId=anons[0], timestamp="2026-03-02T08:03:00Z")),
    ]
    out = ing.feed(batch)
    lists = [(i, k, v) for i, (k, v) in enumerate(out) if type(v) is list]
    assert len(lists) == 1
    at, key, notices = lists[0]
    assert key == f"shard-{1 - home:03d}"
    assert all(type(n) is LinkNotice for n in notices)
    assert [(n.here, n.there) for n in notices] == [
        (anons[0], "u1"),
        (anons[1], "u1"),
        (anons[0], "u1"),
    ]
    assert [n.ts for n in notices] == sorted(n.ts for n in notices)
    first_mark = min(i for i, (_, v) in enumerate(out) if type(v) is Watermark)
    assert at < first_mark
    assert not any(type(v) is LinkNotice for _, v in out)


def test_late_means_older_than_its_own_partitions_watermark_by_more_than_the_lateness() -> None:
    ing = make(shards=1, lateness=120.0)
    ing(("f:1", line(messageId="a", timestamp="2026-03-02T08:10:00Z")))
    at_edge = ing(("f:2", line(messageId="b", timestamp="2026-03-02T08:08:00Z")))  # exactly 2 min
    late = ing(("f:3", line(messageId="c", timestamp="2026-03-02T08:07:59.999Z")))
    assert type(at_edge[0][1]) is Event
    ((key, dead),) = late
    assert key == OUT and isinstance(dead, DeadLetter) and dead.reason == "late_event"
    assert "input partition 'f'" in dead.detail


def test_first_events_are_judged_once_a_quorum_of_them_gives_the_partitions_time() -> None:
    ing = make(shards=1, quorum=3, lateness=0.0)
    skewed = ing(("f:1", line(messageId="a", timestamp="2027-03-02T08:00:00Z")))  # a year ahead
    assert skewed == []  # waits for the partition's first watermark
    ing(("f:2", line(messageId="b", timestamp="2026-03-02T08:00:00Z")))
    out = ing(("f:3", line(messageId="c", timestamp="2026-03-02T08:00:01Z")))
    reasons = [getattr(v, "reason", type(v).__name__) for _, v in out]
    assert reasons.count("Event") == 2 and "future_event" not in reasons  # held, not judged
    (wm,) = {v for _, v in out if type(v) is Watermark}
    assert wm.at == orjson.loads(b"1772438400")  # 2026-03-02T08:00:00Z: the skew is ignored
    # nothing followed it a year ahead: at the end it is a future event
    assert [v.reason for k, v in ing.ing.end() if k == OUT] == ["future_event"]  # type: ignore[attr-defined]


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


def test_an_idle_partition_stays_idle_until_it_accepts_an_event() -> None:
    """Bad, filtered and late lines are no activity: only an accepted event wakes an idle
    partition, and its 'active' watermark goes to every shard before the event itself."""
    ing = make(shards=2, lateness=60.0)
    ing(("f:1", line(messageId="a", timestamp="2026-03-02T08:10:00Z")))
    went_idle = ing.ing.set_idle(True)
    assert {k for k, _ in went_idle} == {"shard-000", "shard-001"}
    assert ing.ing.idle and ing.ing.accepted == 1
    for position, raw in (
        ("f:2", b"not json"),
        ("f:3", line(messageId="b", context={"consent": {"categoryPreferences": {}}})),
        ("f:4", line(messageId="c", timestamp="2026-03-02T08:08:59Z")),  # late by 1 s
    ):
        out = ing((position, raw))
        assert [k for k, _ in out] == [OUT], (position, out)
        assert ing.ing.idle
    assert ing.ing.accepted == 1
    woke = ing(("f:5", line(messageId="d", timestamp="2026-03-02T08:09:00Z")))  # at the edge
    kinds = [(k, type(v).__name__, getattr(v, "idle", None)) for k, v in woke]
    assert kinds[:2] == [("shard-000", "Watermark", False), ("shard-001", "Watermark", False)]
    assert kinds[2][1] == "Event" and not ing.ing.idle and ing.ing.accepted == 2


def test_an_event_is_late_below_the_watermark_and_future_past_the_limit_to_the_second() -> None:
    """Worked by hand: base 08:00:00, lateness 60 s, max_future 7 days (604800 s); the
    dead-lettered events leave the base where it is (the accepted ones before them do not
    move it either: none is later than 08:00:00)."""
    ing = make(lateness=60.0)
    ing(("f:1", line(messageId="base", timestamp="2026-03-02T08:00:00Z")))
    at_mark = ing(("f:2", line(messageId="m", timestamp="2026-03-02T07:59:00Z")))
    late = ing(("f:3", line(messageId="l", timestamp="2026-03-02T07:58:59.999Z")))
    future = ing(("f:4", line(messageId="g", timestamp="2026-03-09T08:00:00.001Z")))
    at_limit = ing(("f:5", line(messageId="f", timestamp="2026-03-09T08:00:00Z")))
    assert type(at_mark[0][1]) is Event and type(at_limit[0][1]) is Event
    assert late[0][0] == OUT and late[0][1].reason == "late_event"
    assert future == []  # 1 ms beyond the limit: held, not routed
    # At the limit: routed at once; with a quorum of 1 it moves the base, which brings
    # the held event within reach: routed after it.
    routed = [v for k, v in at_limit if k != OUT and type(v) is Event]
    assert [e.message_id for e in routed] == ["f", "g"]
    # 1 ms beyond, with nothing after it: a future event at the end
    ing = make(lateness=60.0)
    ing(("f:1", line(messageId="base", timestamp="2026-03-02T08:00:00Z")))
    assert ing(("f:2", line(messageId="g", timestamp="2026-03-09T08:00:00.001Z"))) == []
    (dead,) = [v for k, v in ing.ing.end() if k == OUT]
    assert isinstance(dead, DeadLetter) and dead.reason == "future_event"
    assert dead.position == "f:2" and "did not follow it there" in dead.detail


def test_link_notices_and_watermarks_cross_processes_pickled_as_a_call_of_their_class() -> None:
    import pickle
    import pickletools

    from audienceflow.operators.records import LinkNotice

    items = [LinkNotice("anon-1", "u1", 1772438400.5), Watermark("f", 1772438340.0, True)]
    for item in items:
        data = pickle.dumps([item], protocol=pickle.HIGHEST_PROTOCOL)
        assert pickle.loads(data) == [item]
        # dataclasses' generic __setstate__ (a BUILD per object) is the slow way.
        assert "BUILD" not in {op.name for op, _, _ in pickletools.genops(data)}


def test_a_step_that_raises_on_a_line_gives_the_guards_dead_letter_and_the_stream_goes_on() -> None:
    # feed runs check_line's steps inline; each failing step must still be named.
    class Broken(Privacy):
        def __call__(self, item: Any) -> Any:
            if isinstance(item, Event) and item.user_id == "boom":
                raise ValueError("broken on ann@example.com")
            return super().__call__(item)

    def validate(raw: bytes | str, position: str) -> Event | DeadLetter:
        if position == "f:1":
            raise RuntimeError("bug")
        return Validator(Taxonomy.default())(raw, position)

    privacy = Broken(("email",), salt="s")
    ing = PartitionIngest(
        "f", Validator(Taxonomy.default()), privacy, 1, 60.0, PartitionClock(0.0, 3600.0, 1)
    )
    ing.validator = validate  # type: ignore[assignment]
    items = [("f:1", line()), ("f:2", line(userId="boom")), ("f:3", line(messageId="m3"))]
    out = ing.feed(items)
    dead = [v for k, v in out if k == OUT]
    assert dead == [check_line(validate, privacy, raw, pos) for pos, raw in items[:2]]
    assert [d.detail for d in dead] == [
        "step 'validate': RuntimeError: bug",
        "step 'privacy': ValueError: broken on <email>",
    ]
    assert [v.message_id for k, v in out if isinstance(v, Event)] == ["m3"]
