"""Ingest of one input partition: validate → privacy → its own event time → route."""

from __future__ import annotations

import copy
import pickle
from functools import partial
from typing import Any

import orjson
import pytest
from helpers import ingested, pure_only

from audienceflow.operators.engine import shard_of
from audienceflow.operators.identity import IdentitySpec, is_blocked
from audienceflow.operators.ingest_guard import check_line
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event, Filtered, Watermark, iso
from audienceflow.operators.routing import OUT, PartitionIngest
from audienceflow.operators.validate import Taxonomy, Validator
from audienceflow.operators.watermarks import HORIZON_WINDOWS, PartitionClock


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
        return ingested(self.ing.feed([item]))


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
    ahead = "2027-03-02T08:00:00Z"  # a year ahead
    skewed = ing(("f:1", line(messageId="a", userId="ua", timestamp=ahead)))
    assert skewed == []  # waits for the partition's first watermark
    ing(("f:2", line(messageId="b", userId="ub", timestamp="2026-03-02T08:00:00Z")))
    out = ing(("f:3", line(messageId="c", userId="uc", timestamp="2026-03-02T08:00:01Z")))
    reasons = [getattr(v, "reason", type(v).__name__) for _, v in out]
    assert reasons.count("Event") == 2 and "future_event" not in reasons  # held, not judged
    (wm,) = {v for _, v in out if type(v) is Watermark}
    assert wm.at == orjson.loads(b"1772438400")  # 2026-03-02T08:00:00Z: the skew is ignored
    # nothing followed it a year ahead: at the end it is a future event
    assert [v.reason for k, v in ingested(ing.ing.end()) if k == OUT] == ["future_event"]  # type: ignore[attr-defined]


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


def test_an_alias_linking_a_blocked_value_is_filtered_at_ingest_and_routed_nowhere() -> None:
    # Routed by its userId "null", such an alias went to one shard for every sender of it,
    # which made a profile of the previousId there.
    ing = PartitionIngest(
        "f",
        Validator(Taxonomy.default()),
        Privacy((), salt="s"),
        4,
        60.0,
        PartitionClock(0.0, 7 * 86400.0, quorum=1),
        blocked=partial(is_blocked, IdentitySpec()),
    )

    def alias(mid: str, user: str, previous: str) -> tuple[str, bytes]:
        obj = {"type": "alias", "userId": user, "previousId": previous, "messageId": mid}
        return (f"f:{mid}", orjson.dumps({**obj, "timestamp": "2026-03-02T08:00:00Z"}))

    out = ingested(ing.feed([alias("m1", "null", "a2"), alias("m2", " Undefined", "a2")]))
    out += ingested(ing.feed([alias("m3", "u5", "-1"), alias("m4", "u5", "a2")]))
    filtered = [(k, r.reason, r.message_id, r.detail) for k, r in out if type(r) is Filtered]
    why = (
        "is a blocked value (identity.blocked_values, identity.blocked_patterns), which never links"
    )
    assert filtered == [
        (OUT, "blocked_identifier", "m1", f"step 'ingest': an alias's userId {why}"),
        (OUT, "blocked_identifier", "m2", f"step 'ingest': an alias's userId {why}"),
        (OUT, "blocked_identifier", "m3", f"step 'ingest': an alias's previousId {why}"),
    ]
    routed = [(k, r.message_id) for k, r in out if type(r) is Event]
    assert routed == [(shard_of("u5", 4), "m4")]  # an ordinary alias goes to its userId's
    assert ing.accepted == 1


def test_a_user_id_not_blocked_is_asked_once_and_a_blocked_one_every_time() -> None:
    # A user's next events are routed without asking ``blocked`` again (``_unblocked``);
    # a blocked id ("null") is never remembered: each of its events is its anonymous id's.
    asked: list[str | None] = []

    def blocked(value: str | None) -> bool:
        asked.append(value)
        return is_blocked(IdentitySpec(), value)

    ing = PartitionIngest(
        "f",
        Validator(Taxonomy.default()),
        Privacy((), salt="s"),
        4,
        60.0,
        PartitionClock(0.0, 7 * 86400.0, quorum=1),
        blocked=blocked,
    )

    def page(mid: str, user: str, anon: str) -> tuple[str, bytes]:
        obj = {"type": "page", "userId": user, "anonymousId": anon, "messageId": mid}
        return (f"f:{mid}", orjson.dumps({**obj, "timestamp": "2026-03-02T08:00:00Z"}))

    lines = [page("m1", "u1", "a1"), page("m2", "null", "a2"), page("m3", "u1", "a1")]
    out = ingested(ing.feed([*lines, page("m4", "null", "a2"), page("m5", "u1", "a3")]))
    routed = [(k, r.user_id, r.message_id) for k, r in out if type(r) is Event]
    assert routed == [
        (shard_of("u1", 4), "u1", "m1"),
        (shard_of("a2", 4), "a2", "m2"),
        (shard_of("u1", 4), "u1", "m3"),
        (shard_of("a2", 4), "a2", "m4"),
        (shard_of("u1", 4), "u1", "m5"),
    ]
    assert asked == ["u1", "null", "a2", "null", "a2"]
    assert ing._unblocked == {"u1"}


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
    (dead,) = [v for k, v in ingested(ing.ing.end()) if k == OUT]
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


@pure_only  # subclasses Privacy and sets a stand-in validator: native classes refuse both
def test_a_step_that_raises_on_a_line_gives_the_guards_dead_letter_and_the_stream_goes_on() -> None:
    # feed runs check_line's steps inline; each failing step must still be named. The
    # guard's own dead letters are checked in both builds by the next test.
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


class _BrokenOnBoom:
    """A privacy step that raises on the events of user ``boom`` and is otherwise the real
    one (a wrapper, not a subclass: in the compiled build ``Privacy`` is a native class)."""

    def __init__(self, privacy: Privacy) -> None:
        self.privacy = privacy

    def __call__(self, item: Any) -> Any:
        if isinstance(item, Event) and item.user_id == "boom":
            raise ValueError("broken on ann@example.com")
        return self.privacy(item)


def test_the_guard_names_the_step_that_raised_and_scrubs_its_message_in_either_build() -> None:
    # As the test above, through check_line alone (which takes any callable): it runs
    # compiled too (``make fast``), where its exception path is compiled code.
    def validate(raw: bytes | str, position: str) -> Event | DeadLetter:
        if position == "f:1":
            raise RuntimeError("bug on ann@example.com")
        return Validator(Taxonomy.default())(raw, position)

    privacy = _BrokenOnBoom(Privacy(("email",), salt="s"))
    raws = [line(email="x", note="ann@example.com"), line(userId="boom"), line(messageId="m3")]
    out = [check_line(validate, privacy, raw, f"f:{i}") for i, raw in enumerate(raws, 1)]
    dead = [d for d in out if isinstance(d, DeadLetter)]
    assert [(d.reason, d.stage, d.position) for d in dead] == [
        ("unprocessable", "ingest", "f:1"),
        ("unprocessable", "ingest", "f:2"),
    ]
    assert [d.detail for d in dead] == [
        "step 'validate': RuntimeError: bug on <email>",
        "step 'privacy': ValueError: broken on <email>",
    ]
    assert all("ann@" not in d.raw for d in dead)
    assert '"email":"sha256:' in dead[0].raw  # the dead letter went through privacy too
    assert isinstance(out[2], Event) and out[2].message_id == "m3"


def _at(minute: int) -> str:
    return f"2026-03-02T{8 + minute // 60:02d}:{minute % 60:02d}:00Z"


def _reasons(out: list[tuple[str, object]]) -> list[str]:
    return [getattr(v, "reason", type(v).__name__) for _, v in out if type(v) is not Watermark]


HORIZON = 1024  # 32 * window: the README's figure


@pytest.mark.timeout(60)
@pytest.mark.parametrize("burst", [4, 33, HORIZON - 1, HORIZON])
def test_a_burst_from_one_device_ahead_moves_a_replayed_partitions_time_only_if_alone(
    burst: int,
) -> None:
    """A burst from one phone an hour ahead, among other users' events, counts as one user
    of the four of the quorum: the partition's time stays where its users are, and nobody
    else's next events are late, for bursts of the quorum, of more than the window, and of
    one short of the horizon (a phone's offline queue). A burst of a whole horizon is all
    the partition has had lately: its time follows it, and the users' next events are
    late. Counted as events, 4 moved it an hour on."""
    ing = make(shards=1, quorum=4, lateness=120.0)
    n = 0

    def feed(user: str, minute: int) -> list[str]:
        nonlocal n
        n += 1
        return _reasons(
            ing((f"f:{n}", line(messageId=f"m{n}", userId=user, timestamp=_at(minute))))
        )

    t0 = 1772438400.0  # 08:00
    for i in range(6):
        feed(f"u{i}", i)
    assert ing.ing.clock.base == t0 + 2 * 60  # u2..u5
    for _ in range(burst):
        assert feed("phone", 65) == ["Event"]  # accepted: within max_future
    if burst == HORIZON:
        assert ing.ing.clock.base == t0 + 65 * 60
        assert feed("u6", 6) == ["late_event"]
        return
    if burst == HORIZON - 1:
        # Its last 1,024 events hold two users, u5 and the phone: each a vote, and the
        # base is the earlier, u5's (the phone's time would have made u5's next late).
        assert ing.ing.clock.base == t0 + 5 * 60
    else:
        assert ing.ing.clock.base == t0 + 3 * 60  # u3..u5 and the phone: one user of four
    for i in range(6, 12):
        assert feed(f"u{i}", i) == ["Event"]  # not late_event
    assert ing.ing.clock.base == t0 + 9 * 60  # u9..u11 and the phone


def test_the_horizon_is_the_readmes() -> None:
    assert HORIZON == 32 * HORIZON_WINDOWS


@pytest.mark.timeout(60)
def test_users_sending_runs_of_events_each_vote_once_and_time_keeps_up() -> None:
    """Each user's events in a run of 20 (a mobile library's batch, a partition keyed by
    user): more than half the window each, so no window of 32 events holds four users.
    Each user is one vote, the latest time of theirs: the base follows the fourth latest
    user's run, and nobody is late."""
    ing = make(shards=1, quorum=4, lateness=120.0)
    t0 = 1772438400.0
    out: list[tuple[str, object]] = []
    for u in range(30):
        for k in range(20):
            ts = iso(t0 + (u * 20 + k) * 10.0)
            item = (f"f:{u}-{k}", line(messageId=f"m{u}-{k}", userId=f"u{u}", timestamp=ts))
            out += ing(item)
        if u >= 3:  # users u-3..u: the fourth latest vote is u-3's last event
            assert ing.ing.clock.base == t0 + ((u - 3) * 20 + 19) * 10.0
    assert _reasons(out) == ["Event"] * 600


@pytest.mark.timeout(60)
@pytest.mark.parametrize("burst", [4, 32, 40])
def test_a_burst_from_one_device_ahead_at_the_very_start_does_not_set_the_first_base(
    burst: int,
) -> None:
    ing = make(shards=1, quorum=4, lateness=120.0)
    out: list[tuple[str, object]] = []
    for n in range(burst):  # a phone an hour ahead, first in the file
        ahead = line(messageId=f"p{n}", userId="phone", timestamp=_at(60 + n % 5))
        out += ing((f"f:p{n}", ahead))
    for n in range(20):
        out += ing((f"f:{n}", line(messageId=f"m{n}", userId=f"u{n}", timestamp=_at(n))))
    assert _reasons(out) == ["Event"] * (burst + 20)  # nobody late
    assert ing.ing.clock.base == 1772438400.0 + 17 * 60  # u17..u19 and the phone


def test_a_held_events_user_is_not_heard_until_one_of_its_events_is_accepted() -> None:
    """A device more than ``max_future`` ahead is not one of the partition's users: counted,
    it would keep a partition of few users waiting for its events in the window."""
    ing = make(shards=1, quorum=2, lateness=0.0)
    for n, user in enumerate(["a", "b", "c"]):
        ing((f"f:{n}", line(messageId=f"m{n}", userId=user, timestamp=_at(n))))
    held = line(messageId="p", userId="phone", timestamp="2026-04-02T08:00:00Z")  # a month on
    assert _reasons(ing(("f:9", held))) == []
    assert ing.ing.clock.held and ing.ing._who("phone") not in ing.ing.clock.voices


def test_a_first_event_a_month_behind_loses_none_of_the_events_around_it() -> None:
    """A reset clock among a partition's first events (after some of them) sets its first
    base, as the earliest; it is judged first, and the others, all held, show the gap
    together and are accepted. Judged in arrival order, it broke their run and they were
    dead-lettered as future events."""
    ing = make(shards=1, quorum=4, lateness=120.0)
    out: list[tuple[str, object]] = []
    for n, (user, ts) in enumerate(
        [("a", _at(1)), ("b", _at(2)), ("c", "2026-01-30T08:00:00Z"), ("d", _at(3)),
         ("e", _at(4)), ("f", _at(5))]
    ):  # fmt: skip
        out += ing((f"f:{n}", line(messageId=f"m{n}", userId=user, timestamp=ts)))
    assert _reasons(out) == ["Event"] * 6
    assert ing.ing.clock.base == 1772438400.0 + 60  # 08:01: the gap shown, time moved on


def test_two_devices_days_ahead_among_the_first_users_do_not_make_the_others_late() -> None:
    """The first base anchors on the lower median of the users' latest times: of four
    users, two eight days ahead cannot put it past the other two."""
    ing = make(shards=1, quorum=4, lateness=120.0)
    out: list[tuple[str, object]] = []
    for n, (user, ts) in enumerate(
        [("a", _at(0)), ("b", _at(1)), ("c", "2026-03-10T08:00:00Z"), ("d", "2026-03-10T08:01:00Z")]
    ):
        out += ing((f"f:{n}", line(messageId=f"m{n}", userId=user, timestamp=ts)))
    assert "late_event" not in _reasons(out)
    assert sorted(v.message_id for _, v in out if type(v) is Event) == ["m0", "m1"]


def test_first_events_saved_waiting_are_routed_by_a_live_ingest_that_restores_them() -> None:
    ing = make(shards=1, quorum=3, lateness=60.0)
    now = 1772438400.0 + 10 * 60
    for n in range(2):
        ing((f"f:{n}", line(messageId=f"m{n}", userId="ann", timestamp=_at(n))))
    saved = pickle.loads(pickle.dumps(ing.ing.clock))
    live = PartitionIngest(
        "f", Validator(Taxonomy.default()), Privacy(("email",), salt="s"), 1, 60.0, saved,
        live=True,
    )  # fmt: skip
    out = live.feed([("f:2", line(messageId="m2", userId="bob", timestamp=_at(9)))], now)
    assert [v.message_id for _, v in out if type(v) is Event] == ["m0", "m1", "m2"]
    assert live.clock.first == [] and b"ann" not in pickle.dumps(live.clock)


def test_a_replayed_partitions_clock_keeps_no_user_id_only_a_hash_keyed_with_the_salt() -> None:
    def clock(salt: str) -> PartitionClock:
        ing = PartitionIngest(
            "f", Validator(Taxonomy.default()), Privacy((), salt=salt), 1, 60.0,
            PartitionClock(0.0, 7 * 86400.0, quorum=2, window=32),
        )  # fmt: skip
        for i, user in enumerate(["ann-7f3a", "bob-91c2", "ann-7f3a"]):
            ing.feed([(f"f:{i}", line(messageId=f"m{i}", userId=user, timestamp=_at(i)))])
        return ing.clock

    one, other = clock("s"), clock("t")
    assert len(one.voices) == 2 and one.since == 0
    saved = pickle.dumps(one)
    assert b"ann-7f3a" not in saved and b"bob-91c2" not in saved
    assert pickle.loads(saved) == one
    assert one.voices.keys() != other.voices.keys()  # no key without the salt


def test_a_partitions_first_events_waiting_for_its_first_watermark_are_saved_with_it() -> None:
    """A snapshot taken while a partition's first events wait (fewer than ``quorum`` users
    so far) holds them: the restarted ingest, which reads on after them, routes them."""
    ing = make(shards=1, quorum=3, lateness=0.0)
    for n in range(5):  # one user so far
        assert ing((f"f:{n}", line(messageId=f"m{n}", userId="ann", timestamp=_at(n)))) == []
    saved = pickle.loads(pickle.dumps(ing.ing.clock))
    assert [e.message_id for e in saved.first] == [f"m{n}" for n in range(5)]
    again = make(shards=1, quorum=3, lateness=0.0)
    again.ing = PartitionIngest(
        "f", Validator(Taxonomy.default()), Privacy(("email",), salt="s"), 1, 60.0, saved
    )
    out: list[tuple[str, object]] = []
    for n, user in enumerate(["bob", "cy"], start=5):
        out += again((f"f:{n}", line(messageId=f"m{n}", userId=user, timestamp=_at(n))))
    routed = [v.message_id for _, v in out if type(v) is Event]
    assert routed == [f"m{n}" for n in range(7)]
    assert again.ing.clock.first == []
    assert again.ing.clock.base == 1772438400.0 + 4 * 60  # the votes of ann (08:04), bob, cy


def test_a_clock_that_counted_no_users_pickles_as_before_they_were_counted() -> None:
    """Control partitions count requests only, and live ones keep no user in a snapshot:
    what the code before users were counted wrote, so it reads it too."""
    c = PartitionClock(60.0, 3600.0, quorum=2, window=8)
    for ts in (100.0, 200.0, 10_000_000.0, 300.0):
        c.observe(ts, now=5e6)
    fn, args = c.__reduce__()
    assert fn is PartitionClock and len(args) == 9 and args[7] == [(10_000_000.0, 3)]
    assert pickle.loads(pickle.dumps(c)) == c


def test_a_clock_saved_before_votes_were_kept_waits_to_hear_each_user_again() -> None:
    """A snapshot from before each user's latest time was kept (``recent``) names the
    partition's few users but not their times: the base waits until each has been heard
    from again, then moves to the earliest of their times."""
    c = PartitionClock(60.0, 86400.0, quorum=4, window=4)  # horizon 128
    for t in range(130):
        c.observe(float(t), who=1 + t % 2)
    fn, args = c.__reduce__()
    assert args[-1] == {1: 128.0, 2: 129.0}
    old = fn(*copy.deepcopy(args[:-1]))  # what the code before wrote
    assert old.recent == {} and old.voices == c.voices
    assert c.base == old.base == 126.0  # the events' rule: 4 of the last 4 at or after it
    for clock in (c, old):
        clock.observe(131.0, who=1)
    assert (c.base, old.base) == (127.0, 126.0)  # the old one has not heard 2 again
    for clock in (c, old):
        clock.observe(132.0, who=2)
    assert c.base == old.base == 128.0  # both heard: it moves as the other


def test_a_partition_read_bounded_then_live_keeps_no_vote_and_no_users_hash() -> None:
    """A partition read bounded (users counted by a keyed hash, votes kept) and then, after
    a restart, live: its clock drops the votes, so its snapshot takes the short form,
    whose entries name which were the same user (1, 2, ...), never a hash of one."""
    from audienceflow.flows.partitions import make_ingest
    from audienceflow.operators.settings import Settings

    settings = Settings.load(None)
    bounded = make_ingest(settings, "in:0", None, live=False)
    for n in range(40):
        bounded.feed([(f"f:{n}", line(messageId=f"m{n}", userId=f"u{n % 5}", timestamp=_at(n)))])
    assert bounded.clock.voices
    clock = pickle.loads(pickle.dumps(bounded.clock))
    live = make_ingest(settings, "in:0", clock, live=True)
    for n in range(40, 50):
        at = _at(n)
        live.feed([(f"f:{n}", line(messageId=f"m{n}", userId=f"u{n % 5}", timestamp=at))], 2e9)
    args = live.clock.__reduce__()[1]
    assert len(args) == 9 and {e[2] for e in args[7]} <= set(range(1, 33)) | {None}


def test_a_partitions_first_watermark_waits_for_the_quorum_in_users() -> None:
    ing = make(shards=1, quorum=3, lateness=0.0)
    for n in range(3):  # one device, a day ahead: no first watermark yet
        ahead = line(messageId=f"p{n}", userId="phone", timestamp="2026-03-03T08:00:00Z")
        assert ing((f"f:{n}", ahead)) == []
    out: list[tuple[str, object]] = []
    for n in range(3):
        out += ing((f"f:{3 + n}", line(messageId=f"m{n}", userId=f"u{n}", timestamp=_at(n))))
    assert "late_event" not in _reasons(out) and _reasons(out).count("Event") == 6
    assert ing.ing.clock.base == 1772438460.0  # 08:01: u1, u2 and the phone


T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z


def _live(max_ahead: int, lead: float = 0.0, total: int = 10_000) -> PartitionIngest:
    return PartitionIngest(
        "f", Validator(Taxonomy.default()), Privacy((), salt="s"), 1, 60.0,
        PartitionClock(0.0, 7 * 86400.0, quorum=1, window=32), live=True, lead=lead,
        max_ahead=max_ahead, max_ahead_total=total,
    )  # fmt: skip


def _fed(ing: PartitionIngest, user: str, at: float, now: float, n: int = 0) -> str:
    """What became of one event of ``user`` at ``at`` read at wall clock ``now``: routed
    (``Event``) or the reason of its dead letter."""
    raw = line(messageId=f"{user}-{at}-{n}", userId=user, timestamp=iso(at))
    (got,) = [v for _, v in ingested(ing.feed([(f"f:{n}", raw)], now)) if type(v) is not Watermark]
    return getattr(got, "reason", type(got).__name__)


@pytest.mark.timeout(60)
def test_a_users_events_ahead_of_the_wall_clock_wait_at_most_max_ahead_at_a_time() -> None:
    """Live, events stamped ahead of the wall clock (within ``max_future``) wait at the
    shard for their time; one device or bot sending them without end grew the shard's
    held events, state and snapshots without limit. ``time.max_ahead_per_user`` of one
    user's may wait at a time; the next is a ``future_event``, others' are not touched,
    and one the wall clock has reached no longer counts."""
    ing = _live(max_ahead=3)
    day = 86400.0
    assert [_fed(ing, "bot", T0 + day + i, T0, i) for i in range(3)] == ["Event"] * 3
    assert _fed(ing, "bot", T0 + day + 3, T0, 3) == "future_event"
    dead = [v for _, v in ingested(ing.feed([("f:9", line(
        messageId="x", userId="bot", timestamp=iso(T0 + day + 4)))], T0))]  # fmt: skip
    assert isinstance(dead[0], DeadLetter)
    assert "3 events of its user ahead of it already wait" in dead[0].detail
    assert "time.max_ahead_per_user" in dead[0].detail and "bot" not in dead[0].detail
    assert _fed(ing, "ann", T0 + day, T0, 10) == "Event"  # per user
    assert _fed(ing, "bot", T0, T0, 11) == "Event"  # not ahead: never counted
    # The wall clock reaches the first of bot's three (exactly): one more may wait.
    later = T0 + day
    assert _fed(ing, "bot", later + 3600, later, 12) == "Event"
    assert _fed(ing, "bot", later + 3601, later, 13) == "future_event"


@pytest.mark.timeout(60)
def test_events_within_max_lead_of_the_wall_clock_are_not_counted_as_ahead() -> None:
    """With ``time.max_lead`` the partition's time may run that far ahead of the wall
    clock: events within it do not wait for the wall clock, and are not counted."""
    ing = _live(max_ahead=1, lead=3600.0)
    assert [_fed(ing, "bot", T0 + 60 * i, T0, i) for i in range(5)] == ["Event"] * 5
    assert _fed(ing, "bot", T0 + 3601, T0, 5) == "Event"
    assert _fed(ing, "bot", T0 + 3602, T0, 6) == "future_event"
    (dead,) = [v for _, v in ingested(ing.feed([("f:7", line(
        messageId="x", userId="bot", timestamp=iso(T0 + 3603)))], T0))]  # fmt: skip
    # The wall clock was 08:00: the time it names is the wall clock plus the lead.
    assert f"ahead of the wall clock plus time.max_lead (3600s), {iso(T0 + 3600)}" in dead.detail


@pytest.mark.timeout(60)
def test_the_configured_max_ahead_per_user_reaches_each_partitions_reader(tmp_path: Any) -> None:
    from audienceflow.flows.partitions import make_ingest
    from audienceflow.operators.settings import Settings

    cfg = tmp_path / "c.yaml"
    cfg.write_text("time:\n  max_ahead_per_user: 2\nstate:\n  dedup_window: 2h\n")
    settings = Settings.load(cfg)
    assert settings.max_ahead_per_user == 2
    ing = make_ingest(settings, "in:0", None, live=True)
    assert ing.dedup_window == 7200.0  # a copy within it is its shard's duplicate
    day = 86400.0
    assert [_fed(ing, "bot", T0 + day + i, T0, i) for i in range(3)] == [
        "Event", "Event", "future_event",
    ]  # fmt: skip


@pytest.mark.timeout(60)
def test_a_users_waiting_events_are_released_when_the_wall_clock_plus_max_lead_reaches_them(
) -> None:  # fmt: skip
    """With ``time.max_lead`` an event counts until the wall clock plus the lead reaches
    it (the partition's time may run that far ahead: it no longer waits); a user none of
    whose events wait is forgotten (the count does not keep every user ever ahead)."""
    ing = _live(max_ahead=1, lead=3600.0)
    hour = 3600.0
    assert _fed(ing, "bot", T0 + 2 * hour, T0, 0) == "Event"
    assert _fed(ing, "ann", T0 + 2 * hour, T0, 1) == "Event"
    assert _fed(ing, "bot", T0 + 3 * hour, T0, 2) == "future_event"
    # An hour later the wall clock plus the lead reaches both: neither waits.
    assert _fed(ing, "bot", T0 + 3 * hour, T0 + hour, 3) == "Event"
    assert len(ing.waiting) == 1 and ing.waiting._counts == {ing.waiting.digest("bot", b"u"): 1}


@pytest.mark.timeout(60)
def test_an_event_past_max_future_is_not_counted_as_waiting() -> None:
    """An event more than ``max_future`` ahead is dead-lettered as before; it never
    waits, so it takes none of its user's ``max_ahead_per_user``."""
    ing = _live(max_ahead=1)
    day = 86400.0
    assert _fed(ing, "bot", T0 + 8 * day, T0, 0) == "future_event"
    assert _fed(ing, "bot", T0 + day, T0, 1) == "Event"


@pytest.mark.timeout(60)
def test_max_ahead_per_user_is_at_least_one(tmp_path: Any) -> None:
    from audienceflow.operators.config import ConfigError
    from audienceflow.operators.settings import Settings

    cfg = tmp_path / "c.yaml"
    cfg.write_text("time:\n  max_ahead_per_user: 0\n")
    with pytest.raises(ConfigError, match="max_ahead_per_user"):
        Settings.load(cfg)


@pytest.mark.timeout(60)
def test_waiting_events_the_wall_clock_passed_are_forgotten_without_another_ahead() -> None:
    """Released only when another event ahead came, a burst of many users' events ahead
    stayed listed after the wall clock passed them, for as long as none came."""
    ing = _live(max_ahead=1)
    assert [_fed(ing, f"u{i}", T0 + 60, T0, i) for i in range(50)] == ["Event"] * 50
    assert len(ing.waiting) == 50
    assert _fed(ing, "ann", T0 + 120, T0 + 120, 50) == "Event"  # not ahead
    assert len(ing.waiting) == 0 and ing.waiting._counts == {}


@pytest.mark.timeout(60)
def test_a_copy_of_a_waiting_event_is_not_counted_as_another() -> None:
    """A producer retrying a batch sends its events again: within ``state.dedup_window``
    of a waiting one, a copy never waits (its shard drops it as a duplicate), so it takes
    no place of its user's; counted, a device resending events ahead had its own later
    ones refused, and a copy past the bound was a ``future_event``, not a duplicate."""
    ing = _live(max_ahead=2)
    day = 86400.0

    def fed(mid: str, at: float) -> str:
        raw = line(messageId=mid, userId="bot", timestamp=iso(at))
        (got,) = [v for _, v in ingested(ing.feed([("f:1", raw)], T0)) if type(v) is not Watermark]
        return getattr(got, "reason", type(got).__name__)

    assert [fed("m1", T0 + day), fed("m1", T0 + day), fed("m1", T0 + day + 60)] == ["Event"] * 3
    assert fed("m2", T0 + day + 1) == "Event"
    assert fed("m2", T0 + day + 1) == "Event"  # at the bound: still a copy, for its shard
    assert fed("m3", T0 + day + 2) == "future_event"
    # The same id two hours on is another event (a new use of the id): counted.
    ing = _live(max_ahead=1)
    assert [fed("m1", T0 + day), fed("m1", T0 + day + 7200)] == ["Event", "future_event"]
    # Released, its id no longer marks a copy.
    ing.feed([], T0 + day + 1)
    assert ing.waiting._ids == {}


@pytest.mark.timeout(60)
def test_the_events_waiting_ahead_resume_their_count_after_a_restart() -> None:
    """The Kafka source saves ``waiting_ahead`` with the offset; a reader resumed from it
    (``resume_ahead``) goes on counting them, and lets go of those the wall clock has
    reached since."""
    ing = _live(max_ahead=2)
    day = 86400.0
    assert [_fed(ing, "bot", T0 + day + i, T0, i) for i in range(2)] == ["Event"] * 2
    saved = ing.waiting_ahead()
    assert isinstance(saved, bytes)
    resumed = _live(max_ahead=2)
    resumed.resume_ahead(saved)
    assert _fed(resumed, "bot", T0 + day + 2, T0, 2) == "future_event"
    assert _fed(resumed, "ann", T0 + day + 2, T0, 3) == "Event"
    # A copy of a waiting one is not counted (its shard drops it), after a restart too.
    raw = line(messageId=f"bot-{T0 + day}-0", userId="bot", timestamp=iso(T0 + day))
    assert [type(v) for _, v in ingested(resumed.feed([("f:4", raw)], T0))] == [Event]
    later = T0 + day  # the wall clock reaches the first of them
    assert _fed(resumed, "bot", later + 10, later, 5) == "Event"
    assert _fed(resumed, "bot", later + 11, later, 6) == "future_event"
    assert _live(max_ahead=2).waiting_ahead() is None


@pytest.mark.timeout(60)
def test_the_events_waiting_ahead_of_one_partition_are_bounded_in_total() -> None:
    """``time.max_ahead_per_user`` bounds one user's events waiting ahead of the wall clock,
    not how many users have some: as many users (or a bot under as many ids) each under
    it grew the shards' held events and the reader's snapshot without limit. At
    ``time.max_ahead_total`` waiting events of a partition, the next one ahead is a
    ``future_event`` saying so; every event fed is routed or dead-lettered, a copy of a
    waiting one is still its shard's duplicate, and a place freed by the wall clock
    is taken again."""
    ing = _live(max_ahead=2, total=3)
    day = 86400.0
    got = [_fed(ing, f"u{i}", T0 + day + i, T0, i) for i in range(3)]
    raw = line(messageId="late-comer", userId="u9", timestamp=iso(T0 + day + 9))
    out = [v for _, v in ingested(ing.feed([("f:3", raw)], T0)) if type(v) is not Watermark]
    assert got == ["Event"] * 3 and [type(v) for v in out] == [DeadLetter]
    (dead,) = out
    assert dead.reason == "future_event"
    assert "3 events of input partition 'f' ahead of it already wait" in dead.detail
    assert "time.max_ahead_total" in dead.detail and "u9" not in dead.detail
    assert _fed(ing, "u0", T0 + day, T0, 0) == "Event"  # a copy of u0's: not refused
    assert _fed(ing, "u1", T0, T0, 4) == "Event"  # not ahead: never counted
    assert len(ing.waiting) == 3
    # The wall clock reaches u0's: one place is free again, for anyone.
    assert _fed(ing, "u9", T0 + day + 9, T0 + day, 5) == "Event"
    assert _fed(ing, "u8", T0 + day + 9, T0 + day, 6) == "future_event"


@pytest.mark.timeout(60)
def test_the_configured_max_ahead_total_reaches_each_partitions_reader(tmp_path: Any) -> None:
    from audienceflow.flows.partitions import make_ingest
    from audienceflow.operators.config import ConfigError
    from audienceflow.operators.settings import Settings

    assert Settings.load(None).max_ahead_total == 10_000
    cfg = tmp_path / "c.yaml"
    cfg.write_text("time:\n  max_ahead_total: 2\n")
    ing = make_ingest(Settings.load(cfg), "in:0", None, live=True)
    day = 86400.0
    assert [_fed(ing, f"u{i}", T0 + day, T0, i) for i in range(3)] == [
        "Event", "Event", "future_event",
    ]  # fmt: skip
    cfg.write_text("time:\n  max_ahead_total: 0\n")
    with pytest.raises(ConfigError, match="max_ahead_total"):
        Settings.load(cfg)


def _snapshot(ing: PartitionIngest) -> bytes:
    """The Kafka source's snapshot of a partition reading ``ing``, pickled as Bytewax does."""
    from audienceflow.flows.kafka_io import _InputPartition

    part = _InputPartition.__new__(_InputPartition)
    part.ingest, part.offset = ing, 7
    part.tp = type("TopicPartition", (), {"topic": "in"})()
    return pickle.dumps(_InputPartition.snapshot(part))


@pytest.mark.timeout(60)
def test_the_partition_snapshot_keeps_waiting_events_in_under_30_bytes_and_no_ids() -> None:
    """The reader saves the events it counts with its offset at every epoch. As (time,
    user id, message id) entries they took 60-95 bytes each pickled (100,000 from as many
    users: 9.4 MB); packed (keyed 8-byte digests, times as doubles) 28 from as many users,
    16 from one. No user or message id is in it."""
    n = 2000
    ing = _live(max_ahead=n, total=n)
    day = 86400.0
    mids = [f"{i:08d}-6f1c-4e1b-9d2a-3c4b5a6d7e8f" for i in range(n)]
    users = [f"user-{i:08d}-2f4e" for i in range(n)]
    lines = [
        (f"f:{i}", line(messageId=mids[i], userId=users[i], timestamp=iso(T0 + day + i)))
        for i in range(n)
    ]
    assert all(type(v) is not DeadLetter for _, v in ingested(ing.feed(lines, T0)))
    empty = len(_snapshot(_live(max_ahead=1)))
    many = len(_snapshot(ing)) - empty
    assert many <= 28 * n + 1000  # and the clock's entries of its last events
    blob = _snapshot(ing)
    assert not any(
        u.encode() in blob or m.encode() in blob for u, m in zip(users, mids, strict=True)
    )
    one = _live(max_ahead=n, total=n)
    lines = [(f"f:{i}", line(messageId=mids[i], userId="bot", timestamp=iso(T0 + day + i)))
             for i in range(n)]  # fmt: skip
    one.feed(lines, T0)
    assert len(_snapshot(one)) - empty <= 16 * n + 1000


@pytest.mark.timeout(60)
def test_a_snapshot_of_waiting_events_reads_in_this_code_and_the_code_before() -> None:
    """The packed events go fifth, after an empty list where the code of e4f8b68 saved
    its (time, user id, message id) list: that code (``offset, clock, *read``; its list
    ``read[1]``) reads the new snapshot as one with none waiting, and this code reads the
    list that code saved, counting exactly as it did."""
    ing = _live(max_ahead=2)
    day = 86400.0
    assert [_fed(ing, "bot", T0 + day + i, T0, i) for i in range(2)] == ["Event"] * 2
    offset, _clock, *read = pickle.loads(_snapshot(ing))
    assert offset == 7 and read[0] == "in" and read[1] == [] and isinstance(read[2], bytes)
    old = [(T0 + day + i, "bot", f"bot-{T0 + day + i}-{i}") for i in range(2)]
    for saved in (read[2], old):
        resumed = _live(max_ahead=2)
        resumed.resume_ahead(saved)
        assert _fed(resumed, "bot", T0 + day + 2, T0, 2) == "future_event"
        assert _fed(resumed, "bot", T0 + day, T0, 0) == "Event"  # a copy
        assert _fed(resumed, "ann", T0 + day + 2, T0, 3) == "Event"
        assert pickle.loads(_snapshot(resumed))[4] == resumed.waiting.pack()
    with pytest.raises(ValueError, match="format 9"):
        _live(max_ahead=2).resume_ahead(b"\x09" + read[2][1:])
