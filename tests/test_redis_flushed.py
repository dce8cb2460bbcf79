"""Redis emptied under a running worker: the shards write back every profile they hold.

The worker's sink finds its sentinel key gone and the shards of its process emit the
current profile of each user they hold; not only the profiles the sink wrote since the
worker started (a worker resumed from a snapshot had written none of them)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import servers
from confluent_kafka import Producer
from test_cold import MIN, T0, _at, _engine, _page
from test_identity_live import event, latest_snapshots, produce, receipts, request, topics
from test_worker import config
from workers import Worker, metric, poll, redis_profiles

from audienceflow.flows import dataflow, redis_store
from audienceflow.flows.dataflow import Republished, RepublishRequests, ShardLogic
from audienceflow.flows.placement import key_worker
from audienceflow.flows.redis_store import ProfileStore
from audienceflow.operators.records import ControlRequest, ProfileUpdate
from audienceflow.operators.routing import shard_name

PARTITIONS = 4
SHARDS = 4
USERS = 40
# Read at every write; the re-published profile is of the stream time of the re-publication.
MOVING = ("updated_at", "top_category")


@pytest.fixture
def valkey(tmp_path: Path) -> Any:
    server = servers.start_redis(tmp_path / "valkey")
    yield server.address
    servers.stop(server)


def _config(tmp_path: Path, prefix: str, kafka: str, url: str, port: int) -> Path:
    return config(
        tmp_path / "w.yaml",
        prefix,
        kafka,
        url,
        tail=True,
        state={"shards": SHARDS},
        time={"idle_after": "1s", "allowed_lateness": "5s"},
        metrics={"port": port},
        recovery={"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"},
        kafka={
            "topics": topics(prefix),
            "control_topic": f"{prefix}.control",
            "partitions": PARTITIONS,
            "batch_size": 100,
        },
    )


def _keys(url: str, prefix: str) -> set[str]:
    return set(redis_profiles(url, f"{prefix}:profile:"))


def _snapshotted(recovery: Path, users: list[str]) -> bool:
    snaps = latest_snapshots(recovery).values()
    return all(any(u.encode() in b for b in snaps) for u in users)


def _done(value: Any) -> bool:
    """A worker's writer key says "done" (for the shards of its process: ``done <layout>
    <shards>``, ``flows/redis_store._done``)."""
    return isinstance(value, bytes) and value.startswith(b"done ")


def _steady(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in profile.items() if k not in MOVING}


# --- the engine and its adapter -----------------------------------------------------


@pytest.mark.timeout(30)
def test_held_profiles_are_every_warm_and_cold_user_but_a_deleted_one() -> None:
    eng = _engine("1h", AUDIENCEFLOW_STATE__HISTORY_WINDOW="1d")
    eng.on_items([_page("ann", 0), _page("bob", 1), _page("cid", 2), _at(2)])
    eng.on_items([_page("bob", 100), _at(100)])  # ann and cid went cold at 09:00
    assert set(eng.state.cold) == {"ann", "cid"} and set(eng.state.users) == {"bob"}
    eng.on_items([ControlRequest("delete", ("cid",), "r1", T0 + 101 * MIN), _at(101)])
    held = list(eng.held_profiles())
    assert sorted(p.user_id for p in held) == ["ann", "bob"]
    assert set(eng.state.cold) == {"ann"}  # read, not revived
    ann = next(p for p in held if p.user_id == "ann")
    # By hand: one page event at 08:00, one session (closed at 08:30); of 09:41.
    assert (ann.fields["events"], ann.fields["sessions"]) == (1, 1)
    assert ann.fields["updated_at"] == "2026-03-02T09:41:00.000Z"
    # ``within``: ann's last event is 101 min old, bob's 1 min.
    assert [p.user_id for p in eng.held_profiles(within=60 * MIN)] == ["bob"]


@pytest.mark.timeout(30)
def test_a_user_deleted_between_chunks_is_not_re_emitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dataflow, "REPUBLISH_CHUNK", 2)
    eng = _engine("1h")
    users = ["u1", "u2", "u3", "u4", "u5"]
    eng.on_items([*(_page(u, 0) for u in users), _at(0)])
    requests = RepublishRequests(within=30 * 86400)
    logic = ShardLogic(eng, False, False, 1.0, eng.cfg, None, republish=requests)
    out, _ = logic.on_notify()
    assert not [r for r in out if type(r) is Republished]  # nothing asked yet
    requests.request()
    assert logic.notify_at() is not None  # wakes at once for the request
    first, _ = logic.on_notify()
    (chunk,) = [r for r in first if type(r) is Republished]
    assert [p.user_id for p in chunk.updates] == ["u1", "u2"]
    rest: list[ProfileUpdate] = []
    later, _ = logic.on_batch([ControlRequest("delete", ("u3",), "r1", T0), _at(1)])
    rest += [p for r in later if type(r) is Republished for p in r.updates]
    while logic.reemit is not None:
        more, _ = logic.on_notify()
        rest += [p for r in more if type(r) is Republished for p in r.updates]
    assert [p.user_id for p in rest] == ["u4", "u5"]


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("nudge", [False, True], ids=["quiet", "another_users_event"])
def test_a_flushed_redis_gets_every_held_profile_back_from_a_resumed_worker(
    kafka_broker: str, valkey: str, tmp_path: Path, nudge: bool
) -> None:
    # Quiet, the sink looks for its sentinel by itself; with an event of another user, its
    # write finds the loss (and the sink remembered only that user's profile).
    prefix = f"flushed{int(nudge)}"
    users = [f"{prefix}-u{i:02d}" for i in range(USERS)]
    gone = users[0]
    # A first run writes every profile and stops with a last snapshot.
    cfg, port = _first_start(kafka_broker, valkey, tmp_path, prefix, users, "2")

    # Resumed from it: this process has written none of those profiles (a deletion only).
    worker = Worker(cfg, tmp_path / "worker.log", "--workers", "2")
    try:
        poll(lambda: metric(port, "audienceflow_events_in_total") is not None, 60, "up", worker.log)
        produce(kafka_broker, f"{prefix}.control", [request("delete", gone, "r-gone", time.time())])
        poll(lambda: len(receipts(kafka_broker, prefix, "r-gone")) == SHARDS, 60, "receipts")
        before = redis_profiles(valkey, f"{prefix}:profile:")
        assert set(before) == set(users) - {gone}
        writes = metric(port, "audienceflow_profile_writes_total")

        client = redis.Redis.from_url(valkey)
        try:
            client.flushall()
        finally:
            client.close()
        # None of the users has an event: the shards write back every profile they hold.
        new = f"{prefix}-new"
        if nudge:
            produce(kafka_broker, f"{prefix}.in", [event("page", time.time() - 10, "n", user=new)])
        poll(
            lambda: _keys(valkey, prefix) == set(before) | ({new} if nudge else set()),
            60,
            "every profile back after FLUSHALL",
            worker.log,
        )
        after = redis_profiles(valkey, f"{prefix}:profile:")
        after.pop(new, None)
        assert {u: _steady(p) for u, p in after.items()} == {
            u: _steady(p) for u, p in before.items()
        }
        written = (metric(port, "audienceflow_profile_writes_total") or 0) - (writes or 0)
        assert written == 0 if not nudge else 1 <= written <= 2  # the new user's only
        assert (metric(port, "audienceflow_redis_republished_total") or 0) >= len(before)
        assert "lost its data" in worker.log()
        assert gone not in _keys(valkey, prefix)  # the deleted user is not written back
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        worker.stop()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_each_process_of_a_cluster_writes_back_what_its_shards_hold(
    kafka_broker: str, valkey: str, tmp_path: Path
) -> None:
    prefix = "flushedpair"
    users = [f"{prefix}-u{i:02d}" for i in range(USERS)]
    servers.create_topics(kafka_broker, [f"{prefix}.in", f"{prefix}.control"], PARTITIONS)
    t0 = time.time() - 120
    lines = [event("page", t0, f"m{i}", user=u) for i, u in enumerate(users)]
    produce(kafka_broker, f"{prefix}.in", lines)
    cfg = config(
        tmp_path / "w.yaml",
        prefix,
        kafka_broker,
        valkey,
        tail=True,
        state={"shards": SHARDS},
        time={"idle_after": "1s", "allowed_lateness": "5s"},
        kafka={
            "topics": topics(prefix),
            "control_topic": f"{prefix}.control",  # not the default, on the shared broker
            "partitions": PARTITIONS,
            "batch_size": 100,
        },
    )
    addresses = ";".join(f"127.0.0.1:{servers.free_port()}" for _ in range(2))
    pair = [
        Worker(
            cfg,
            tmp_path / f"w{i}.log",
            "--process-id",
            str(i),
            "--addresses",
            addresses,
            "--workers",
            "2",
        )
        for i in range(2)
    ]
    try:
        poll(lambda: _keys(valkey, prefix) == set(users), 60, "every profile", pair[0].log)
        before = redis_profiles(valkey, f"{prefix}:profile:")
        client = redis.Redis.from_url(valkey)
        try:
            client.flushall()
        finally:
            client.close()
        poll(lambda: _keys(valkey, prefix) == set(users), 60, "every profile back", pair[1].log)
        after = redis_profiles(valkey, f"{prefix}:profile:")
        assert {u: _steady(p) for u, p in after.items()} == {
            u: _steady(p) for u, p in before.items()
        }
        assert all("lost its data" in w.log() for w in pair)  # each process found it
        # Each process counts its own shards (2 workers of 4 each): its writers wait for
        # those, and mark Redis complete again once they wrote all.
        client = redis.Redis.from_url(valkey)
        try:
            marks = f"{prefix}:profile~writer:*"
            poll(
                lambda: (
                    len(client.keys(marks)) >= 2
                    and all(_done(client.get(k)) for k in client.keys(marks))
                ),
                30,
                "the writers' keys marked done",
                pair[0].log,
            )
        finally:
            client.close()
        # Bytewax put each shard where the placement model says: no process found one of
        # the other's (``RepublishRequests.misplaced``), which no key would vouch past.
        assert not any("placement model" in w.log() for w in pair)
        for w in pair:
            w.process.send_signal(signal.SIGTERM)
        for w in pair:
            assert w.wait(60) == 0, w.log()[-3000:]
    finally:
        for w in pair:
            w.stop()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_resumed_worker_that_wrote_nothing_yet_finds_redis_emptied(
    kafka_broker: str, valkey: str, tmp_path: Path
) -> None:
    # Resumed, and no event nor request since: its writers have written nothing, yet Redis
    # emptied now must still get every profile back (the shards hold them all).
    prefix = "flushedidle"
    users = [f"{prefix}-u{i:02d}" for i in range(USERS)]
    cfg, port = _first_start(kafka_broker, valkey, tmp_path, prefix, users, "2")

    client = redis.Redis.from_url(valkey)
    sentinels = client.keys(f"{prefix}:profile~writer:*")  # the first run's writers'
    assert sentinels and all(_done(client.get(k)) for k in sentinels)
    left = {k: client.pttl(k) for k in sentinels}
    worker = Worker(cfg, tmp_path / "worker.log", "--workers", "2")
    try:
        before = redis_profiles(valkey, f"{prefix}:profile:")
        # Up, its shards reporting (their reports reach the sinks): the writers are live.
        poll(lambda: metric(port, "audienceflow_users") == len(users), 60, "up", worker.log)
        poll(  # the writers' first round trips read their keys (and renewed them)
            lambda: all(client.pttl(k) > t for k, t in left.items()),
            30,
            "the quiet writers' keys read again",
            worker.log,
        )
        client.flushall()
        poll(
            lambda: _keys(valkey, prefix) == set(users),
            60,
            "every profile back after FLUSHALL",
            worker.log,
        )
        after = redis_profiles(valkey, f"{prefix}:profile:")
        assert {u: _steady(p) for u, p in after.items()} == {
            u: _steady(p) for u, p in before.items()
        }
        assert (metric(port, "audienceflow_profile_writes_total") or 0) == 0
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        client.close()
        worker.stop()


@pytest.mark.timeout(30)
def test_a_request_is_resent_once_every_shard_of_the_process_wrote_its_last_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dataflow, "REPUBLISH_CHUNK", 2)
    requests = RepublishRequests(within=30 * 86400)
    full, empty = _engine("1h"), _engine("1h")
    full.on_items([*(_page(u, 0) for u in ["u1", "u2", "u3"]), _at(0)])
    a = ShardLogic(full, False, False, 1.0, full.cfg, None, republish=requests)
    b = ShardLogic(empty, False, False, 1.0, empty.cfg, None, republish=requests)
    assert requests.resent(0)
    n = requests.request()
    assert not requests.resent(n)
    first = [r for r in a.on_notify()[0] if type(r) is Republished]
    assert [(len(r.updates), r.last) for r in first] == [(2, False)]
    (none,) = [r for r in b.on_notify()[0] if type(r) is Republished]
    assert (none.updates, none.request, none.last) == ([], n, True)  # holds nothing: done
    requests.finished(none.shard, none.request)  # as the sink does once it is written
    (rest,) = [r for r in a.on_notify()[0] if type(r) is Republished]
    assert (len(rest.updates), rest.last) == (1, True)
    # Emitted is not written: only the sink's word counts. A shard built meanwhile (its
    # state resumed late) takes part in the request under way.
    late = ShardLogic(full, False, False, 1.0, full.cfg, None, republish=requests)
    requests.finished(rest.shard, rest.request)
    assert not requests.resent(n)
    (again,) = [r for r in late.on_notify()[0] if type(r) is Republished]
    assert again.request == n
    assert [(len(r.updates), r.last) for r in late.on_notify()[0] if type(r) is Republished] == [
        (1, True)
    ]
    requests.finished(late.republish_token, n)
    assert requests.resent(n)
    requests.finished(late.republish_token, n - 1)  # an older request's word comes late
    assert requests.resent(n)
    # Built even after the request was done, a shard takes part (it may hold resumed
    # users Redis lost): one new holds none, and costs an empty last chunk.
    fresh = ShardLogic(_engine("1h"), False, False, 1.0, full.cfg, None, republish=requests)
    assert not requests.resent(n)
    (empty,) = [r for r in fresh.on_notify()[0] if type(r) is Republished]
    assert (empty.updates, empty.request, empty.last) == ([], n, True)
    assert not [r for r in fresh.on_notify()[0] if type(r) is Republished]  # only once


@pytest.mark.timeout(30)
def test_a_shard_built_after_its_process_was_asked_takes_part_however_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process of two shards, on two worker threads: one thread's writer asks before the
    # other thread has built its shard (a large snapshot decoding), and its own shard
    # writes all it holds at once. The late shard holds recovered users: until it has
    # written them, the process is not done, and then it writes them.
    monkeypatch.setattr(dataflow, "REPUBLISH_CHUNK", 2)
    requests = RepublishRequests(within=30 * 86400, shards=2)
    early, held = _engine("1h"), _engine("1h")
    held.on_items([*(_page(u, 0) for u in ["u1", "u2", "u3"]), _at(0)])
    a = ShardLogic(early, False, False, 1.0, early.cfg, None, republish=requests)
    n = requests.request()
    (none,) = [r for r in a.on_notify()[0] if type(r) is Republished]
    requests.finished(none.shard, none.request)
    assert not requests.resent(n)  # a shard of the process is not built yet
    late = ShardLogic(held, False, False, 1.0, held.cfg, None, republish=requests)
    assert not requests.resent(n)
    chunks = [r for r in late.on_notify()[0] + late.on_notify()[0] if type(r) is Republished]
    assert [(p.user_id, r.request) for r in chunks for p in r.updates] == [
        ("u1", n), ("u2", n), ("u3", n)
    ]  # fmt: skip
    requests.finished(late.republish_token, chunks[-1].request)
    assert chunks[-1].last and requests.resent(n)


@pytest.mark.timeout(30)
def test_a_shard_re_emits_only_the_users_the_stores_ttl_still_holds() -> None:
    eng = _engine("1h", AUDIENCEFLOW_STATE__HISTORY_WINDOW="1d")
    eng.on_items([_page("ann", 0), _page("bob", 100), _at(101)])
    # Redis keeps a profile 60 min after its write: ann's (08:00) is gone by 09:41.
    requests = RepublishRequests(within=60 * MIN)
    logic = ShardLogic(eng, False, False, 1.0, eng.cfg, None, republish=requests)
    requests.request()
    out, _ = logic.on_notify()
    assert [p.user_id for r in out if type(r) is Republished for p in r.updates] == ["bob"]


@pytest.mark.timeout(30)
def test_a_quiet_shard_looks_for_a_request_every_second_and_answers_at_once() -> None:
    eng = _engine("1h")
    eng.on_items([_page("ann", 0), _at(0)])  # a session open: a deadline ``poll`` away
    requests = RepublishRequests(within=30 * 86400)
    logic = ShardLogic(eng, False, False, 30.0, eng.cfg, None, republish=requests)
    logic.on_notify()
    at = logic.notify_at()
    assert at is not None
    assert at - datetime.now(UTC) <= timedelta(seconds=dataflow.REPUBLISH_POLL_S)
    requests.request()
    at = logic.notify_at()
    assert at is not None and at <= datetime.now(UTC)
    empty = ShardLogic(_engine("1h"), False, False, 30.0, eng.cfg, None, republish=requests)
    at = empty.notify_at()  # nothing due at all: still wakes to look
    assert at is not None
    assert at - datetime.now(UTC) <= timedelta(seconds=dataflow.REPUBLISH_POLL_S)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_re_sent_profile_and_a_new_write_of_it_reach_redis_in_order(
    kafka_broker: str, valkey: str
) -> None:
    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    order = f"order{uuid.uuid4().hex[:8]}"  # topics of its own on the shared broker
    topics = Topics(f"{order}.changes", f"{order}.actions", f"{order}.sessions", f"{order}.dead")
    servers.create_topics(kafka_broker, [topics.segment_changes, topics.dead_letters], 1)
    requests = RepublishRequests(30 * 86400)
    shard, _ = requests.join()
    n = requests.request()
    store = ProfileStore(valkey, "order:profile:", resend=requests)
    output = KafkaOutput(kafka_broker, background=False)
    sink = _WorkerPartition(output, topics, store, republish=requests)

    def update(uid: str, events: int) -> ProfileUpdate:
        return ProfileUpdate(uid, {"user_id": uid, "events": events}, (uid,))

    try:
        # One shard's activations, in order: each later record is the newer profile.
        sink.write_batch([update("u1", 1), Republished([update("u1", 2)])])
        assert not requests.resent(n)
        last = Republished([update("u2", 1)], n, shard, last=True)
        sink.write_batch([last, update("u2", 2)])
        assert requests.resent(n)  # the shard's last chunk is written
        profiles = redis_profiles(valkey, "order:profile:")
        assert {u: p["events"] for u, p in profiles.items()} == {"u1": 2, "u2": 2}
        assert not store.written  # the shards hold every profile: the worker's keeps none
    finally:
        sink.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_shards_last_chunk_counts_only_once_redis_has_it(kafka_broker: str) -> None:
    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.redis_store import RedisAbandoned
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    lost = f"lastchunk{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{lost}.changes", f"{lost}.actions", f"{lost}.sessions", f"{lost}.dead")
    requests = RepublishRequests(30 * 86400)
    shard, _ = requests.join()
    n = requests.request()
    stop = threading.Event()
    stop.set()  # stopping while Redis is away: the write is given up, not retried
    url = f"redis://127.0.0.1:{servers.free_port()}"  # nothing listens there
    store = ProfileStore(url, "last:profile:", stop=stop, resend=requests, name="out-0")
    sink = _WorkerPartition(KafkaOutput(kafka_broker, background=False), topics, store,
                            republish=requests)  # fmt: skip
    try:
        last = Republished([ProfileUpdate("u1", {"n": 1})], n, shard, last=True)
        with pytest.raises(RedisAbandoned):
            sink.write_batch([last])
        # Not written: the process is not done, so no writer may mark Redis "done".
        assert not requests.resent(n)
    finally:
        sink.close()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_worker_re_publishes_no_user_older_than_its_redis_ttl(
    kafka_broker: str, valkey: str, tmp_path: Path
) -> None:
    # Written just now (so still in Redis when it is emptied), but of events two hours old
    # under a one-hour TTL: a live worker would have seen them expire, so they stay out.
    prefix = "flushedttl"
    old = [f"{prefix}-old{i:02d}" for i in range(20)]
    new = [f"{prefix}-new{i:02d}" for i in range(20)]
    servers.create_topics(kafka_broker, [f"{prefix}.in"], 1)
    now = time.time()
    produce(
        kafka_broker,
        f"{prefix}.in",
        [event("page", now - 7200 + i, f"o{i}", user=u) for i, u in enumerate(old)]
        + [event("page", now - 60 + i, f"n{i}", user=u) for i, u in enumerate(new)],
    )
    port = servers.free_port()
    cfg = config(
        tmp_path / "w.yaml",
        prefix,
        kafka_broker,
        valkey,
        tail=True,
        state={"shards": SHARDS},
        time={"idle_after": "1s", "allowed_lateness": "5s"},
        metrics={"port": port},
        redis={"ttl": "1h"},
        kafka={
            "topics": topics(prefix),
            "control_topic": f"{prefix}.control",  # not the default, on the shared broker
            "partitions": 1,
            "batch_size": 100,
        },
    )
    worker = Worker(cfg, tmp_path / "worker.log", "--workers", "2")
    client = redis.Redis.from_url(valkey)
    try:
        poll(lambda: _keys(valkey, prefix) == {*old, *new}, 60, "every profile", worker.log)
        client.flushall()
        # Every shard holds new users: once they are all back, each shard's chunk is in.
        poll(lambda: _keys(valkey, prefix) >= set(new), 60, "the recent ones back", worker.log)
        assert _keys(valkey, prefix) == set(new)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        client.close()
        worker.stop()


# --- Redis emptied while the worker was down, or a stop during the re-publication ---


class _Shards:
    """A process's shards as a worker's store sees them (``RepublishRequests``): each
    request is written in full once ``finish()`` says so. They never wake the store's
    finisher (``wait``): each round trip is the test's own, in the order it writes them
    (``test_a_writer_marks_redis_done_with_no_batch_once_its_shards_wrote_everything``
    has the finisher)."""

    misplaced = False  # the placement model holds

    def __init__(self) -> None:
        self.count = 0
        self.finished = 0
        self.never = threading.Event()

    def request(self) -> int:
        self.count += 1
        return self.count

    def resent(self, request: int) -> bool:
        return self.finished >= request

    def wait(self, request: int, timeout: float) -> bool:
        self.never.wait(timeout)
        return False

    def finish(self) -> None:
        self.finished = self.count


def _first_start(
    kafka: str, valkey: str, tmp_path: Path, prefix: str, users: list[str], workers: str
) -> tuple[Path, int]:
    """A 4-partition input with two events of each user; a first run (``workers`` worker
    threads) writes every profile and stops (SIGTERM) with a last snapshot of every user.
    The worker's config and metrics port."""
    servers.create_topics(kafka, [f"{prefix}.in", f"{prefix}.control"], PARTITIONS)
    t0 = time.time() - 120
    produce(
        kafka,
        f"{prefix}.in",
        [event("page", t0 + k, f"m{i}-{k}", user=u) for i, u in enumerate(users) for k in (0, 1)],
    )
    port = servers.free_port()
    cfg = _config(tmp_path, prefix, kafka, valkey, port)
    first = Worker(cfg, tmp_path / "first.log", "--workers", workers)
    try:
        poll(lambda: _keys(valkey, prefix) == set(users), 60, "every profile", first.log)
        poll(lambda: _snapshotted(tmp_path / "recovery", users), 60, "a snapshot of every user")
        first.process.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0, first.log()[-3000:]
    finally:
        first.stop()
    return cfg, port


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_writer_marks_redis_done_only_once_its_process_has_written_everything_again(
    valkey: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(valkey)
    shards = _Shards()
    store = ProfileStore(valkey, "mark:profile:", resend=shards, name="out-0")
    key = "mark:profile~writer:out-0"

    def said() -> list[tuple[int, str]]:  # what the writer logged since the last call
        records = [(r.levelno, r.getMessage()) for r in caplog.records]
        caplog.clear()
        return [(level, text.split(" (")[0]) for level, text in records if "Redis at" in text]

    caplog.set_level(logging.INFO, logger="audienceflow")
    try:
        store.write([ProfileUpdate("u1", {"n": 1})])  # a first start: nothing says "done"
        assert (shards.count, client.get(key)) == (1, b"resending")
        # No alarm for a first start, which looks like Redis emptied while it was down.
        assert said() == [(logging.INFO, f"Redis at {store.where} has no {key}")]
        store.write([ProfileUpdate("u2", {"n": 2})])  # still re-sending
        assert (shards.count, client.get(key)) == (1, b"resending")
        # Stopped now: its successor (same partition, same key) asks again.
        again = ProfileStore(valkey, "mark:profile:", resend=shards, name="out-0")
        again.write([])
        assert (shards.count, client.get(key)) == (2, b"resending")
        assert said() == [(logging.WARNING, f"Redis at {store.where} lost its data")]
        shards.finish()
        again.write([])  # done: marked at once, without waiting for the quiet check
        assert client.get(key) == b"done"
        client.flushall()  # emptied during a re-send, then at its very end: asks again
        said()
        again.write([ProfileUpdate("u3", {"n": 3})])
        assert (shards.count, client.get(key)) == (3, b"resending")
        # Emptied under a running writer: an alarm, though the key is missing as at first.
        assert said() == [(logging.WARNING, f"Redis at {store.where} lost its data")]
        # Emptied again before the shards finished: what they wrote so far is gone too.
        client.flushall()
        again.write([ProfileUpdate("u3", {"n": 3})])
        assert (shards.count, client.get(key)) == (4, b"resending")
        assert said() == [(logging.WARNING, f"Redis at {store.where} lost its data")]
        client.flushall()
        shards.finish()
        again.write([ProfileUpdate("u4", {"n": 4})])
        assert (shards.count, client.get(key)) == (5, b"resending")
        shards.finish()
        again.write([ProfileUpdate("u5", {"n": 5})])
        assert client.get(key) == b"done"
        later = ProfileStore(valkey, "mark:profile:", resend=shards, name="out-0")
        later.write([ProfileUpdate("u6", {"n": 6})])  # a restart on a complete Redis
        assert (shards.count, client.get(key)) == (5, b"done")
        later.close()
        again.close()
    finally:
        store.close()
        client.close()


def _lose_replies(monkeypatch: pytest.MonkeyPatch, store: ProfileStore, times: int) -> None:
    """The next ``times`` round trips of ``store`` run on the server, and their replies are
    lost (a timeout reading them): the store's retry sends them again."""
    real = store.client.pipeline
    left = [times]

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        execute = pipe.execute

        def lossy(*a: Any, **k: Any) -> Any:
            replies = execute(*a, **k)
            if left[0] > 0:
                left[0] -= 1
                raise redis.exceptions.TimeoutError("Timeout reading from socket")
            return replies

        pipe.execute = lossy
        return pipe

    monkeypatch.setattr(store.client, "pipeline", pipeline)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_writer_whose_reply_was_lost_does_not_take_its_own_mark_for_a_complete_redis(
    valkey: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(valkey)
    shards = _Shards()
    store = ProfileStore(valkey, "lost:profile:", resend=shards, name="out-0")
    key = "lost:profile~writer:out-0"
    try:
        store.write([ProfileUpdate("u1", {"n": 1})])  # a first start: re-sending
        assert (shards.count, client.get(key)) == (1, b"resending")
        # Emptied while the shards re-send; the round trip that sees it (and sets the key
        # to "resending" again) loses its reply, and its retry reads "resending".
        client.flushall()
        _lose_replies(monkeypatch, store, 1)
        store.write([ProfileUpdate("u2", {"n": 2})])
        assert (shards.count, client.get(key)) == (2, b"resending")
        # Emptied just as the shards finished: the round trip that would mark "done" finds
        # the key missing and sets "resending"; its reply lost, the retry must not mark it.
        shards.finish()
        client.flushall()
        _lose_replies(monkeypatch, store, 1)
        store.write([ProfileUpdate("u3", {"n": 3})])
        assert (shards.count, client.get(key)) == (3, b"resending")
        shards.finish()
        store.write([ProfileUpdate("u4", {"n": 4})])
        assert client.get(key) == b"done"
    finally:
        store.close()
        client.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_writer_marks_redis_done_with_no_batch_once_its_shards_wrote_everything(
    valkey: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process of two shards, whose last chunks another thread's writer writes: this
    # writer gets no batch after the one that asked, and still marks its key "done".
    monkeypatch.setattr(redis_store, "CHECK_EVERY_S", 0.1)  # a failed round trip's pause
    # Longer than any poll below: the shards' last chunks wake the finisher, not a timeout.
    monkeypatch.setattr(redis_store, "FINISH_WAIT_S", 30.0)
    client = redis.Redis.from_url(valkey)
    requests = RepublishRequests(30 * 86400, shards=2)
    a, _ = requests.join()
    store = ProfileStore(valkey, "quiet:profile:", resend=requests, name="out-0")
    key = "quiet:profile~writer:out-0"
    try:
        store.write([ProfileUpdate("u1", {"n": 1})])  # a first start: the shards asked
        assert (requests.count, client.get(key)) == (1, b"resending")
        requests.finished(a, 1)
        assert not requests.wait(1, 0.2)  # a shard still to be built: not done
        assert client.get(key) == b"resending"
        b, _ = requests.join()
        requests.finished(b, 1)
        poll(lambda: client.get(key) == b"done", 10, "the key marked done")
        assert store.owed is None
        # Emptied again, then just as the shards finish; the finisher's round trip (which
        # finds the key missing and sets "resending") loses its reply: its next one must
        # not take that "resending" for its own mark, and asks again.
        client.flushall()
        store.write([ProfileUpdate("u2", {"n": 2})])
        assert (requests.count, client.get(key)) == (2, b"resending")
        client.flushall()
        _lose_replies(monkeypatch, store, 1)
        requests.finished(a, 2)
        requests.finished(b, 2)
        poll(lambda: requests.count == 3, 10, "asked again")
        assert (store.owed, client.get(key)) == (3, b"resending")
        requests.finished(a, 3)
        requests.finished(b, 3)
        poll(lambda: client.get(key) == b"done", 10, "the key marked done")
        store.close()
        assert not store.finisher or not store.finisher.is_alive()
    finally:
        store.close()
        client.close()


class _Raced(ProfileStore):
    """A writer whose finisher (``_finish``) marks its key "done", clearing ``owed``, just
    after the sink's thread reads ``owed`` once ``race`` is set: the finisher runs between
    any two of the sink thread's lines, the only lock being the one round trips take."""

    race = False

    @property  # type: ignore[override]
    def owed(self) -> int | None:
        value: int | None = self.__dict__["_owed"]
        if self.race:
            self.race = False
            self._trip([])  # the finisher's round trip, as it would run it now
        return value

    @owed.setter
    def owed(self, value: int | None) -> None:
        self.__dict__["_owed"] = value


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_quiet_batch_goes_on_when_the_finisher_marks_done_while_it_looks(
    valkey: str,
) -> None:
    # The sink thread's quiet batch (``_check``) reads ``owed``, and the finisher thread
    # marks "done" and clears it before the batch reads it again: the batch must neither
    # fail (an AssertionError used to stop the worker) nor undo the mark.
    client = redis.Redis.from_url(valkey)
    shards = _Shards()
    store = _Raced(valkey, "raced:profile:", resend=shards, name="out-0")
    key = "raced:profile~writer:out-0"
    try:
        store.write([ProfileUpdate("u1", {"n": 1})])  # a first start: the shards asked
        assert (shards.count, client.get(key)) == (1, b"resending")
        shards.finish()
        store.race = True
        assert store.write([]) == 0
        assert (store.owed, client.get(key), shards.count) == (None, b"done", 1)
    finally:
        store.close()
        client.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_finisher_marks_nothing_between_a_round_trip_finding_redis_emptied_and_its_request(
    valkey: str,
) -> None:
    # The sink's round trip finds the key missing (Redis emptied) and sets "resending";
    # just then the shards finish the request before it, which wakes the finisher. Were
    # it to mark "done" before the sink's thread asks again, Redis would read complete
    # with what it lost never written back.
    client = redis.Redis.from_url(valkey)
    requests = RepublishRequests(30 * 86400, shards=1)
    shard, _ = requests.join()
    woken = threading.Event()

    class Store(ProfileStore):
        def _lost(self) -> None:
            if woken.is_set():
                woken.clear()
                requests.finished(shard, requests.count)
                # Time for a finisher not held back to mark "done": it must wait.
                poll_until = time.monotonic() + 2
                while time.monotonic() < poll_until and client.get(key) != b"done":
                    time.sleep(0.05)
            super()._lost()

    store = Store(valkey, "held:profile:", resend=requests, name="out-0")
    key = "held:profile~writer:out-0"
    try:
        store.write([ProfileUpdate("u1", {"n": 1})])  # a first start: the shards asked
        assert (requests.count, client.get(key)) == (1, b"resending")
        client.flushall()
        woken.set()
        store.write([ProfileUpdate("u2", {"n": 2})])
        assert (requests.count, store.owed) == (2, 2)
        assert client.get(key) == b"resending"  # the finisher waits for request 2
        requests.finished(shard, 2)
        poll(lambda: client.get(key) == b"done", 10, "the key marked done")
    finally:
        store.close()
        client.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_finisher_waits_between_round_trips_while_redis_is_unreachable(
    valkey: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shards finish while Redis is unreachable: the finisher tries to mark "done" once
    # every CHECK_EVERY_S, not in a loop, and marks it once Redis is back.
    monkeypatch.setattr(redis_store, "CHECK_EVERY_S", 0.5)
    client = redis.Redis.from_url(valkey)
    requests = RepublishRequests(30 * 86400, shards=1)
    shard, _ = requests.join()
    store = ProfileStore(valkey, "down:profile:", resend=requests, name="out-0")
    key = "down:profile~writer:out-0"
    tries = [0]
    real = store.client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)

        def unreachable(*a: Any, **k: Any) -> Any:
            tries[0] += 1
            raise redis.exceptions.ConnectionError("Connection refused")

        pipe.execute = unreachable
        return pipe

    try:
        store.write([ProfileUpdate("u1", {"n": 1})])  # a first start: the shards asked
        monkeypatch.setattr(store.client, "pipeline", pipeline)
        requests.finished(shard, 1)
        poll(lambda: tries[0] >= 1, 10, "the finisher's first try")
        time.sleep(1.2)  # a window to count the tries in
        assert 2 <= tries[0] <= 4
        monkeypatch.setattr(store.client, "pipeline", real)
        # Its replies lost, it cannot tell its own "resending" from one set over a missing
        # key: it asks again, and marks "done" once the shards finish that request.
        poll(lambda: requests.count == 2, 10, "asked again")
        requests.finished(shard, 2)
        poll(lambda: client.get(key) == b"done", 10, "the key marked done")
    finally:
        store.close()
        client.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_closing_a_writer_owing_a_re_publication_stops_its_finisher(valkey: str) -> None:
    requests = RepublishRequests(3600, shards=1)
    requests.join()  # a shard that never finishes
    store = ProfileStore(valkey, "close:profile:", resend=requests, name="out-0")
    store.write([ProfileUpdate("u1", {"n": 1})])  # a first start: the shards asked
    finisher = store.finisher
    assert finisher is not None and finisher.is_alive()
    started = time.monotonic()
    store.close()
    assert not finisher.is_alive()
    assert time.monotonic() - started < redis_store.FINISH_WAIT_S + 2


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_process_owing_a_re_publication_exits_without_closing_its_store(valkey: str) -> None:
    # The finisher is a daemon thread: a worker that dies without closing its writer
    # (the shards never finishing) still exits.
    script = (
        "import sys\n"
        "from audienceflow.flows.dataflow import RepublishRequests\n"
        "from audienceflow.flows.redis_store import ProfileStore\n"
        "from audienceflow.operators.records import ProfileUpdate\n"
        "requests = RepublishRequests(3600, shards=1)\n"
        "requests.join()\n"
        "store = ProfileStore(sys.argv[1], 'exit:profile:', resend=requests, name='out-0')\n"
        "store.write([ProfileUpdate('u1', {'n': 1})])\n"
        "assert store.finisher is not None and store.finisher.is_alive()\n"
    )
    done = subprocess.run([sys.executable, "-c", script, valkey], timeout=20, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_worker_resumed_on_a_redis_emptied_while_it_was_down_writes_every_profile_back(
    kafka_broker: str, valkey: str, tmp_path: Path
) -> None:
    prefix = f"downflush{uuid.uuid4().hex[:8]}"  # topics of its own on the shared broker
    users = [f"{prefix}-u{i:02d}" for i in range(USERS)]
    cfg, _ = _first_start(kafka_broker, valkey, tmp_path, prefix, users, "2")
    before = redis_profiles(valkey, f"{prefix}:profile:")
    client = redis.Redis.from_url(valkey)
    worker = None
    try:
        client.flushall()  # Redis restarted empty while the worker was down
        worker = Worker(cfg, tmp_path / "worker.log", "--workers", "2")
        # No event comes: the shards' recovered users are written back all the same.
        poll(lambda: _keys(valkey, prefix) == set(users), 60, "every profile back", worker.log)
        after = redis_profiles(valkey, f"{prefix}:profile:")
        assert {u: _steady(p) for u, p in after.items()} == {
            u: _steady(p) for u, p in before.items()
        }
        marks = f"{prefix}:profile~writer:*"
        poll(
            lambda: all(_done(client.get(k)) for k in client.keys(marks)),
            30,
            "the writers' keys marked done",
            worker.log,
        )
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        client.close()
        if worker is not None:
            worker.stop()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_worker_killed_during_a_re_publication_finishes_it_when_restarted(
    kafka_broker: str, valkey: str, tmp_path: Path
) -> None:
    prefix = f"killflush{uuid.uuid4().hex[:8]}"
    users = [f"{prefix}-u{i:02d}" for i in range(USERS)]
    # One worker thread: one writer, whose key alone says whether its process is done.
    cfg, port = _first_start(kafka_broker, valkey, tmp_path, prefix, users, "1")
    marks = f"{prefix}:profile~writer:*"
    client = redis.Redis.from_url(valkey)
    worker = Worker(cfg, tmp_path / "worker.log", "--workers", "1")
    try:
        poll(lambda: metric(port, "audienceflow_users") == len(users), 60, "up", worker.log)
        # Redis emptied under it; writes held (CLIENT PAUSE) from the instant the writer
        # noticed, so the re-publication is caught under way: some profiles or none back.
        for _attempt in range(5):
            client.flushall()
            poll(lambda: bool(client.keys(marks)), 30, "a writer noticing", worker.log)
            client.client_pause(60_000, all=False)  # writes wait, reads go on
            if _keys(valkey, prefix) != set(users):
                break
            client.client_unpause()  # all written already: try again
        else:
            pytest.fail("the re-publication was never caught under way")
        worker.process.kill()  # SIGKILL
        worker.wait(30)
        client.client_unpause()
        assert _keys(valkey, prefix) != set(users)
        worker = Worker(cfg, tmp_path / "again.log", "--workers", "1")
        # No event comes: the restarted process writes everything again.
        poll(lambda: _keys(valkey, prefix) == set(users), 60, "every profile back", worker.log)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        client.client_unpause()
        client.close()
        worker.stop()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_writer_that_gets_no_batch_after_its_first_still_marks_redis_done(
    kafka_broker: str, valkey: str, tmp_path: Path
) -> None:
    # Two worker threads, and every shard on the second: the first thread's writer writes
    # only what its own input partitions dead-letter. One bad line is its one batch; its
    # first round trip finds no key (a first start) and asks the shards, which then write
    # what they hold through the other thread's writer. No batch comes to it after that:
    # its key said "resending" until a restart re-sent every profile, with a warning.
    prefix = f"onebatch{uuid.uuid4().hex[:8]}"
    assert all(key_worker(shard_name(i), 2) == 1 for i in range(SHARDS))
    users = [f"{prefix}-u{i:02d}" for i in range(USERS)]
    servers.create_topics(kafka_broker, [f"{prefix}.in"], PARTITIONS)
    t0 = time.time() - 60
    produce(kafka_broker, f"{prefix}.in", [event("page", t0 + i, f"m{i}", user=u)
                                           for i, u in enumerate(users)])  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka_broker})
    producer.produce(f"{prefix}.in", b"not json", partition=0)  # read by the first thread
    assert producer.flush(10) == 0
    cfg = _config(tmp_path, prefix, kafka_broker, valkey, servers.free_port())
    first, other = f"{prefix}:profile~writer:out-000", f"{prefix}:profile~writer:out-001"
    worker = Worker(cfg, tmp_path / "worker.log", "--workers", "2")
    client = redis.Redis.from_url(valkey)
    try:
        poll(lambda: _keys(valkey, prefix) == set(users), 60, "every profile", worker.log)
        poll(lambda: _done(client.get(other)), 30, "the shards' writer done", worker.log)
        dead = servers.consume_all(kafka_broker, f"{prefix}.dead", expected=1)
        assert len(dead) == 1  # the first thread's writer wrote its one batch
        poll(lambda: _done(client.get(first)), 30, "the first writer done", worker.log)
        assert "lost its data" not in worker.log()  # a first start: no alarm
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        client.close()
        worker.stop()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_worker_restarted_with_more_threads_writes_nothing_again(
    kafka_broker: str, valkey: str, tmp_path: Path
) -> None:
    # One worker thread, then two: the process holds the same shards, and the first run's
    # key vouches for them all. The new thread's writer (its key missing) used to have
    # every profile written again at each such restart.
    prefix = f"morethreads{uuid.uuid4().hex[:8]}"
    assert all(key_worker(shard_name(i), 2) == 1 for i in range(SHARDS))  # the new one's
    users = [f"{prefix}-u{i:02d}" for i in range(USERS)]
    cfg, port = _first_start(kafka_broker, valkey, tmp_path, prefix, users, "1")
    first, other = f"{prefix}:profile~writer:out-000", f"{prefix}:profile~writer:out-001"
    client = redis.Redis.from_url(valkey)
    worker = Worker(cfg, tmp_path / "worker.log", "--workers", "2")
    try:
        assert _done(client.get(first)) and client.get(other) is None
        poll(lambda: metric(port, "audienceflow_users") == len(users), 60, "up", worker.log)
        poll(lambda: _done(client.get(other)), 30, "the new writer's key done", worker.log)
        assert client.get(other) == client.get(first)  # the same shards, the same layout
        assert (metric(port, "audienceflow_redis_republished_total") or 0) == 0
        assert "vouch for every shard" in worker.log()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        client.close()
        worker.stop()
