"""A gap in a recording is not a skewed clock (replay and bounded reading).

An event more than ``time.max_future`` ahead of its partition's time is held, not
dead-lettered at once: after a gap in the recording every event is that far ahead,
while a skewed device's events come among others that are not. Held events are
accepted once the events since the last accepted one are all held and come from
``watermark_quorum`` users (or fill the window); they are future events when they
leave the window still held, or at the end. Before this, a replay dead-lettered
everything after the first gap longer than ``max_future``.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import orjson
import pytest
from helpers import ingested

from audienceflow.flows.replay import replay
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event, iso
from audienceflow.operators.routing import OUT, PartitionIngest
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Taxonomy, Validator, parse_timestamp
from audienceflow.operators.watermarks import PartitionClock

DAY = 86400.0
T0 = 1772438400.0  # 2026-03-02T08:00:00Z
QUORUM, WINDOW, FUTURE = 4, 32, 7 * DAY
ROOT = Path(__file__).resolve().parent.parent


def ev(user: str, t: float, n: int) -> Event:
    return Event(f"m{n}", user, None, "page", "Home", T0 + t, "navigation", {})


def ingest(quorum: int = QUORUM) -> PartitionIngest:
    return PartitionIngest(
        "p",
        Validator(Taxonomy.default()),
        Privacy(("email",), salt="s"),
        1,
        60.0,
        PartitionClock(120.0, FUTURE, quorum=quorum, window=WINDOW),
    )


def run(events: list[Event], end: bool = True) -> tuple[list[str], dict[str, str]]:
    """Feed ``events`` one by one: the ids routed, in order, and the dead letters' reasons."""
    ing = ingest()
    out = []
    for e in events:
        out += ingested(ing.feed_events([e]))
    if end:
        out += ingested(ing.end())
    routed = [v.message_id for k, v in out if k != OUT and type(v) is Event]
    dead = {v.raw and orjson.loads(v.raw)["messageId"]: v.reason for k, v in out if k == OUT}
    return routed, dead


def traffic(start: float, count: int, users: int, first: int, step: float = 60.0) -> list[Event]:
    return [ev(f"u{i % users}", start + i * step, first + i) for i in range(count)]


@pytest.mark.timeout(30)
def test_after_a_gap_longer_than_max_future_every_event_is_accepted() -> None:
    before = traffic(0, 40, users=8, first=0)
    after = traffic(30 * DAY, 40, users=8, first=100)
    routed, dead = run(before + after)
    assert dead == {}
    assert sorted(routed) == sorted(e.message_id for e in before + after)


@pytest.mark.timeout(30)
def test_the_gap_is_believed_at_the_quorumth_user_not_before() -> None:
    before = traffic(0, 40, users=8, first=0)
    ing = ingest()
    for e in before:
        ing.feed_events([e])
    # three users a month later: held (fewer than the quorum of users)
    for i in range(QUORUM - 1):
        out = ing.feed_events([ev(f"later{i}", 30 * DAY + i, 200 + i)])
        assert [v for _, v in out if type(v) is Event] == []
    # the same user again: still held (users, not events, make the quorum)
    assert not [
        v for _, v in ing.feed_events([ev("later0", 30 * DAY + 9, 209)]) if type(v) is Event
    ]
    # the fourth user: all accepted, and the partition's time is the earliest of them
    out = ing.feed_events([ev("later9", 30 * DAY + 10, 210)])
    assert sorted(v.message_id for _, v in out if type(v) is Event) == [
        "m200", "m201", "m202", "m209", "m210",
    ]  # fmt: skip
    assert ing.clock.base == T0 + 30 * DAY
    # and it never moves back: the accepted times from before the gap are behind it
    for i, e in enumerate(traffic(30 * DAY + 60, 10, users=8, first=300)):
        ing.feed_events([e])
        assert ing.clock.base >= T0 + 30 * DAY, i


@pytest.mark.timeout(30)
def test_skewed_clocks_of_many_users_among_everyone_elses_events_are_future() -> None:
    """A release with a wrong year on several phones: held events from more than a
    quorum of users, but with accepted events between them: not a gap."""
    events = []
    for i in range(200):
        events.append(ev(f"u{i % 9}", i * 30.0, i))
        if 50 <= i < 58 and i % 2 == 0:  # four phones within the window, a year ahead
            events.append(ev(f"phone{i}", 365 * DAY + i, 1000 + i))
    routed, dead = run(events)
    assert dead == {f"m{1000 + i}": "future_event" for i in range(50, 58, 2)}
    assert sorted(routed) == sorted(f"m{i}" for i in range(200))


@pytest.mark.timeout(30)
def test_a_skewed_device_among_others_is_future_and_makes_nobody_late() -> None:
    events = []
    for i in range(200):
        events.append(ev(f"u{i % 9}", i * 30.0, i))
        if 50 <= i < 60:  # one phone a year ahead, ten events among everyone else's
            events.append(ev("skewed", 365 * DAY + i, 1000 + i))
    routed, dead = run(events)
    assert dead == {f"m{1000 + i}": "future_event" for i in range(50, 60)}
    assert sorted(routed) == sorted(f"m{i}" for i in range(200))


@pytest.mark.timeout(30)
def test_a_skewed_burst_with_nobody_else_in_between_is_still_one_user() -> None:
    events = traffic(0, 40, users=8, first=0)
    events += [ev("skewed", 365 * DAY + i, 500 + i) for i in range(WINDOW - 1)]  # one device
    events += traffic(40 * 60.0, 40, users=8, first=600)  # everyone else goes on
    routed, dead = run(events)
    assert set(dead.values()) == {"future_event"} and len(dead) == WINDOW - 1
    assert all(m.startswith("m5") or m.startswith("m6") for m in dead)  # the burst only
    assert len(routed) == 80


@pytest.mark.timeout(30)
def test_one_users_recording_moves_on_after_a_full_window_of_held_events() -> None:
    # One user's first events wait for a horizon's worth (1,024) before their first
    # watermark: until then they could be a burst from one device among others to come.
    before = traffic(0, 1024, users=1, first=0, step=30.0)
    after = traffic(30 * DAY, WINDOW, users=1, first=2000)
    ing = ingest()
    for e in before[:-1]:
        assert not [v for _, v in ing.feed_events([e]) if type(v) is Event]
    routed = [v.message_id for _, v in ing.feed_events([before[-1]]) if type(v) is Event]
    assert routed == [e.message_id for e in before]  # all at once, at the last of them
    for e in after[:-1]:
        assert not [v for _, v in ing.feed_events([e]) if type(v) is Event]  # one user
    out = ing.feed_events([after[-1]])  # the window's worth: the recording moved on
    assert len([v for _, v in out if type(v) is Event]) == WINDOW


@pytest.mark.timeout(60)
@pytest.mark.parametrize("users", [1, 3])
def test_a_sparse_partition_of_few_users_loses_nothing_of_its_first_weeks(users: int) -> None:
    """Its first 1,024 events span six weeks, with fewer users than the quorum: they wait
    for its first base, which is the earliest of them; none is late or in the future."""
    events = traffic(0, 1100, users=users, first=0, step=3600.0)
    routed, dead = run(events)
    assert dead == {} and len(routed) == 1100


@pytest.mark.timeout(30)
def test_a_held_event_is_rejected_when_it_leaves_the_window_not_before() -> None:
    ing = ingest()
    for e in traffic(0, 10, users=8, first=0):
        ing.feed_events([e])
    assert ing.feed_events([ev("skewed", 365 * DAY, 99)]) == []
    later = traffic(600.0, WINDOW, users=8, first=100)
    for e in later[:-1]:
        assert [v for k, v in ingested(ing.feed_events([e])) if k == OUT] == []  # in the window
    out = ingested(ing.feed_events([later[-1]]))  # the window-th event after it
    ((_, dead),) = [(k, v) for k, v in out if k == OUT]
    assert isinstance(dead, DeadLetter) and dead.reason == "future_event"
    assert "did not follow it there" in dead.detail


@pytest.mark.timeout(30)
def test_at_the_end_a_quorum_of_trailing_held_events_is_where_time_went() -> None:
    before = traffic(0, 40, users=8, first=0)
    for n in (QUORUM - 1, QUORUM):  # from one user: the end makes no difference of users
        tail = [ev("last", 30 * DAY + i, 300 + i) for i in range(n)]
        routed, dead = run(before + tail)
        if n < QUORUM:
            assert set(dead.values()) == {"future_event"} and len(dead) == n
        else:
            assert dead == {} and len(routed) == 40 + n


@pytest.mark.timeout(30)
def test_at_the_end_held_events_each_within_max_future_of_the_last_accepted_are_accepted() -> None:
    # One user's events 5 days apart (max_future is 7): the base, 4 votes behind the
    # latest, held the last two; the end accepted the first (within 7 days of the latest
    # accepted time) but not the second, though it is within 7 days of that one: a
    # recording denser than max_future lost its last event (one every 3 days lost it too).
    for step, count in ((5 * DAY, 4), (5 * DAY, 7), (3 * DAY, 6)):
        events = [ev("u1", i * step, i) for i in range(count)]
        routed, dead = run(events)
        assert dead == {} and len(routed) == count, (step, count)
    # Beyond max_future of the last accepted event it is still a future event.
    events = [ev("u1", i * DAY, i) for i in range(3)] + [ev("u1", 12 * DAY, 9)]
    routed, dead = run(events)
    assert dead == {"m9": "future_event"} and len(routed) == 3


@pytest.mark.timeout(30)
def test_two_gaps_in_one_run_of_held_events_are_both_followed() -> None:
    events = traffic(0, 20, users=8, first=0)
    events += traffic(20 * DAY, 6, users=3, first=100)  # three users: not yet believed
    events += traffic(40 * DAY, 6, users=3, first=200, step=1.0)
    routed, dead = run(events)
    assert dead == {} and len(routed) == 32


@pytest.mark.timeout(30)
def test_held_events_survive_a_snapshot_and_an_old_snapshot_loads() -> None:
    ing = ingest()
    for e in traffic(0, 10, users=8, first=0):
        ing.feed_events([e])
    for i in range(2):
        ing.feed_events([ev(f"later{i}", 30 * DAY + i, 200 + i)])
    saved = pickle.loads(pickle.dumps(ing.clock))
    assert [h[3].message_id for h in saved.held] == ["m200", "m201"]
    resumed = PartitionIngest(
        "p", Validator(Taxonomy.default()), Privacy(("email",), salt="s"), 1, 60.0, saved
    )
    out = []
    for i in range(2, 4):
        out += resumed.feed_events([ev(f"later{i}", 30 * DAY + i, 200 + i)])
    assert sorted(v.message_id for _, v in out if type(v) is Event) == [
        "m200", "m201", "m202", "m203",
    ]  # fmt: skip
    old = PartitionClock.__new__(PartitionClock)
    state = {k: getattr(saved, k) for k in PartitionClock.__slots__ if k != "held"}
    old.__setstate__((None, state))
    assert old.held == [] and old.base == saved.base


@pytest.mark.timeout(240)
def test_the_bundled_stream_with_a_month_cut_into_it_replays_every_event(tmp_path: Path) -> None:
    with gzip.open(ROOT / "examples" / "stream.jsonl.gz", "rb") as fh:
        lines = fh.read().splitlines()
    half = len(lines) // 2
    shifted = []
    for i, raw in enumerate(lines):
        if i >= half:
            try:
                obj = orjson.loads(raw)
                ts = parse_timestamp(obj["timestamp"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                shifted.append(raw)  # a planted bad line stays as it is
                continue
            obj["timestamp"] = iso(ts + 30 * DAY)
            raw = orjson.dumps(obj)
        shifted.append(raw)
    env = {"AUDIENCEFLOW_MODELS__ENABLED": "false"}
    runs = {}
    for name, body in (("whole", lines), ("cut", shifted)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"\n".join(body) + b"\n")
        runs[name] = replay([str(path)], tmp_path / name, Settings.load(environ=env))
    whole, cut = runs["whole"]["counts"], runs["cut"]["counts"]
    assert cut["reconciled"]
    # the same events processed, dead-lettered and filtered, for the same reasons
    for key in ("processed", "dead_lettered_by_reason", "filtered_by_reason"):
        assert cut[key] == whole[key], key
    assert "future_event" not in cut["dead_lettered_by_reason"]


@pytest.mark.timeout(60)
def test_three_users_in_runs_longer_than_the_window_keep_time_moving_and_lose_nothing() -> None:
    """Three users, each visit a run of 40 to 80 events 5 to 30 s apart, over three weeks,
    lines shuffled by up to 30 s (a recording of a small tenant). Counted among the
    window's 32 events, the three were never together, so the partition's time moved
    only when a week's worth of events was held, in jumps of ``max_future``, and lines
    shuffled across a jump were future events (an outside pass lost 4 of 36,847). Each
    user now votes: time moves at each new run, and every event is accepted."""
    import random

    r = random.Random(7)
    t, n, events = 0.0, 0, []
    while t < 21 * DAY:
        user = f"u{r.randrange(3)}"
        for _ in range(r.randint(40, 80)):
            t += r.uniform(5.0, 30.0)
            events.append(ev(user, t + r.uniform(-30.0, 30.0), n))
            n += 1
        t += r.uniform(60.0, 3600.0)  # between visits
    ing = ingest()
    out, behind = [], []
    for e in events:
        out += ingested(ing.feed_events([e]))
        behind.append(e.ts - ing.clock.base)
    out += ingested(ing.end())
    dead = [v.reason for k, v in out if k == OUT]
    assert dead == [] and sum(1 for k, v in out if type(v) is Event) == len(events)
    # Time kept up: within a few visits of the latest event, never near a week behind.
    assert max(behind[2000:]) < DAY, max(behind[2000:])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("glitch", [False, True])
def test_a_user_who_sends_one_event_ahead_then_a_late_batch_still_holds_time_back(
    glitch: bool,
) -> None:
    """Two users, so each one's vote counts: ann on the web, an event every 10 s; bob's
    phone uploads every 5 minutes what it recorded since (an event every 30 s). Once,
    bob's phone sends one event a day ahead. A vote that were the latest of bob's times
    would stay a day ahead, and ann alone would move the partition's time past bob's
    next batches: in a review's run of this, 585 of 8,001 events were late. Bob's vote is
    the time of his latest event, so his next batch holds time back again; only the
    batch in flight when the glitch came, which ann's events had already passed, is
    late."""
    events: list[Event] = []
    t, batch, glitched, in_flight = 0.0, [], False, set()
    for k in range(6000):
        t += 10.0
        events.append(ev("ann", t, len(events)))
        if k % 3 == 0:
            batch.append(t)
        if k % 30 == 29:
            sent = [ev("bob", x, len(events) + i) for i, x in enumerate(batch)]
            if glitched and not in_flight:
                in_flight = {e.message_id for e in sent}
            events += sent
            batch = []
        if glitch and k == 2500:
            glitched = True
            events.append(ev("bob", t + DAY, len(events)))
    routed, dead = run(events)
    assert set(dead.values()) <= {"late_event"}
    assert len(routed) + len(dead) == len(events)
    # Without the glitch nothing is late; with it, only part of the batch in flight.
    assert set(dead) <= in_flight and (len(dead) > 0) is glitch
