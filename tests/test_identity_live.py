"""Identity and data subjects' requests on the live path: the control topic, the identity
and receipt topics, Redis lookup keys and erasures, and snapshots (issue 12).

The worker reads a control topic beside its input; a ``delete`` naming any identifier of a
person (here their anonymous id, linked to their userId by an ``identify``) must leave
nothing of them: no later output names them, Redis holds no profile or lookup key of
them, the next recovery snapshot holds none of their identifiers, and a receipt says
what was purged. A kill -9 between the request and its receipt must end the same way.
A ``suppress`` filters the person's later events before any state is made.

Topics have 4 partitions keyed by user (userId, else anonymousId, as a forwarder keys
them) and ``state.shards`` is 2, so requests really are broadcast to every shard
(one receipt per shard). The person's two ids are chosen on one shard: a link between
identifiers routed to different shards is not made (the test at the end shows that a
request still reaches both halves).
"""

from __future__ import annotations

import pickle
import signal
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import servers
from test_event_time_live import user_key
from test_worker import _final_count, config
from workers import Worker, metric, poll

from audienceflow.flows.kafka_io import KafkaOutput
from audienceflow.flows.redis_store import ProfileStore
from audienceflow.flows.snapshots import unseal
from audienceflow.flows.worker_sink import Topics, _WorkerPartition
from audienceflow.operators.records import Erasure, ProfileUpdate, Receipt, iso
from audienceflow.operators.settings import Settings

SHARDS = 2
PARTITIONS = 4
SNAPSHOT_S = 0.5  # recovery.snapshot_interval of the live workers
OUTPUTS = ("segment_changes", "actions", "sessions", "dead_letters", "identities", "receipts")


def shard(ident: str) -> int:
    return zlib.crc32(ident.encode()) % SHARDS  # operators.routing.shard_key


def on_shard(stem: str, wanted: int) -> str:
    """The first ``stem-N`` whose shard is ``wanted``."""
    return next(f"{stem}-{i}" for i in range(100) if shard(f"{stem}-{i}") == wanted)


def topics(prefix: str) -> dict[str, str]:
    return {
        "segment_changes": f"{prefix}.changes",
        "actions": f"{prefix}.actions",
        "sessions": f"{prefix}.sessions",
        "dead_letters": f"{prefix}.dead",
        "identities": f"{prefix}.identities",
        "control_receipts": f"{prefix}.receipts",
    }


def worker_config(
    path: Path, prefix: str, kafka: str, redis_url: str, tail: bool, **extra: dict[str, Any]
) -> Path:
    return config(
        path,
        prefix,
        kafka,
        redis_url,
        tail=tail,
        state={"shards": SHARDS},
        # Live: stream time trails the wall clock by idle_after + allowed_lateness once
        # every partition (the control topic's too) is idle.
        time={"idle_after": "1s", "allowed_lateness": "5s"},
        **extra,
        kafka={
            "topics": topics(prefix),
            "control_topic": f"{prefix}.control",
            "partitions": PARTITIONS,
            "batch_size": 100,
        },
    )


def event(kind: str, ts: float, mid: str, user: str | None = None, anon: str | None = None,
          name: str = "Home", **props: Any) -> bytes:  # fmt: skip
    obj: dict[str, Any] = {"type": kind, "messageId": mid, "timestamp": iso(ts)}
    if user is not None:
        obj["userId"] = user
    if anon is not None:
        obj["anonymousId"] = anon
    if kind == "track":
        obj["event"] = name
        obj["properties"] = props
    elif kind != "identify":
        obj["name"] = name
    return orjson.dumps(obj)


def request(kind: str, ident: str, request_id: str, ts: float) -> bytes:
    return orjson.dumps({"type": kind, "id": ident, "requestId": request_id, "timestamp": iso(ts)})


def produce(kafka: str, topic: str, lines: list[bytes]) -> None:
    servers.produce_lines(kafka, topic, lines, key_fn=user_key)


def person_events(user: str, anon: str, t0: float) -> list[bytes]:
    """Anonymous browsing and a cart, the login (identify) and a known page view: four
    events, one open session, one pending cart timer (15 min). Message ids do not
    contain the identifiers, so a search for those finds the identifiers only."""
    return [
        event("page", t0, "m1", anon=anon),
        event(
            "track",
            t0 + 5,
            "m2",
            anon=anon,
            name="Product Added",
            product_id="p1",
            price=10.0,
            quantity=1,
        ),
        event("identify", t0 + 10, "m3", user=user, anon=anon),
        event("page", t0 + 15, "m4", user=user),
    ]


def bystander_events(who: list[str], t0: float) -> list[bytes]:
    return [
        event("page", t0 + dt, f"b{i}-{dt}", user=u) for i, u in enumerate(who) for dt in (0, 20)
    ]


def naming(kafka: str, prefix: str, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every published record whose key or value contains one of ``ids``, by output."""
    names = {**topics(prefix), "receipts": f"{prefix}.receipts"}
    found: dict[str, list[dict[str, Any]]] = {}
    for out in OUTPUTS:
        recs = servers.consume_all(kafka, names[out])
        found[out] = [
            orjson.loads(v or b"")
            for k, v, _ in recs
            if any(i.encode() in (k or b"") + (v or b"") for i in ids)
        ]
    return found


def receipts(kafka: str, prefix: str, request_id: str) -> dict[str, list[bytes]]:
    """The request's receipts by receipt_id, every copy."""
    out: dict[str, list[bytes]] = {}
    for key, value, _ in servers.consume_all(kafka, f"{prefix}.receipts"):
        rec = orjson.loads(value or b"")
        if rec["request_id"] == request_id:
            assert key == request_id.encode()  # keyed by request id
            out.setdefault(rec["receipt_id"], []).append(value or b"")
    return out


def redis_keys_of(url: str, ids: list[str]) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return sorted(k for k in client.scan_iter(count=1000) if any(i.encode() in k for i in ids))
    finally:
        client.close()


def latest_snapshots(recovery: Path, step: str = "audienceflow.profiles") -> dict[str, bytes]:
    """Each shard's newest committed snapshot of the profiles step, unsealed and pickled
    again (the bytes a search for an identifier must not find it in)."""
    commits: list[int] = []
    snaps: dict[str, tuple[int, bytes]] = {}
    for part in sorted(recovery.glob("part-*.sqlite3")):
        db = sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5)
        try:
            commits.append(db.execute("SELECT max(commit_epoch) FROM commits").fetchone()[0] or 0)
            rows = db.execute(
                "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ?", (step,)
            ).fetchall()
        finally:
            db.close()
        for key, epoch, ser in rows:
            if ser is not None and epoch > snaps.get(key, (-1, b""))[0]:
                snaps[key] = (epoch, ser)
    safe = min(commits, default=0)
    out = {}
    for key, (epoch, ser) in snaps.items():
        if epoch <= safe:
            sealed = pickle.loads(ser)
            out[key] = sealed + pickle.dumps(unseal(sealed))
    return out


def holds(blob: bytes, ids: list[str]) -> list[str]:
    return [i for i in ids if i.encode() in blob]


# --- the profile store: lookup keys, erasures, and the receipt after them -------------


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_every_identifier_gets_a_lookup_key_and_an_erasure_removes_them_all(
    redis_server: str,
) -> None:
    store = ProfileStore(redis_server, "lk:profile:", ttl=4321)
    client = redis.Redis.from_url(redis_server)
    try:
        store.write([ProfileUpdate("u1", {"n": 1}, ("a1", "a2", "u1")),
                     ProfileUpdate("u2", {"n": 2}, ("u2",))])  # fmt: skip
        assert client.get("lk:profile~id:a1") == b"u1" and client.get("lk:profile~id:a2") == b"u1"
        assert client.get("lk:profile~id:u1") is None  # the canonical id is its own key
        assert 4310 <= client.ttl("lk:profile~id:a2") <= 4321  # the profile's TTL
        assert store.read("a2") == store.read("u1") == {"n": 1}
        assert store.read("u2") == {"n": 2} and store.read("a3") is None
        # In order: a write, the erasure of that profile, another profile's write.
        store.write(
            [
                ProfileUpdate("u1", {"n": 3}, ("a1", "a2", "u1")),
                Erasure("u1", ("a1", "a2")),
                ProfileUpdate("u3", {"n": 4}, ("a3", "u3")),
            ]
        )
        assert _keys(client, "lk:*", store) == [
            b"lk:profile:u2", b"lk:profile:u3", b"lk:profile~id:a3", b"lk:profile~ids:u3",
        ]  # fmt: skip
        assert store.read("a3") == {"n": 4}
    finally:
        client.close()
        store.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_deletions_erasures_run_the_script_once_when_the_first_covers_the_rest(
    redis_server: str,
) -> None:
    """A deletion of n identifiers sends one erasure per canonical id, each listing all
    n: the script ran n times over n ids (~10,000 GETs and DELs for 100). With no write
    between them, each after the first finds nothing left: it runs once, and the
    erasures are all counted. One not covered (an identifier the first did not list, or
    a write between) still runs, and removes what it names."""
    from audienceflow.flows import metrics

    store = ProfileStore(redis_server, "cv:profile:", ttl=4321)
    client = redis.Redis.from_url(redis_server)

    def evals() -> int:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_eval", {}).get("calls", 0))

    try:
        ids = tuple(f"a{i}" for i in range(50))
        store.write([ProfileUpdate("a0", {"n": 1}, ids[:3]),
                     ProfileUpdate("a7", {"n": 2}, ("a7", "a8")),
                     ProfileUpdate("z1", {"n": 3}, ("z1",))])  # fmt: skip
        before, counted = evals(), metrics.PROFILE_ERASURES._value.get()
        store.write([Erasure(c, ids) for c in ids])
        assert evals() - before == 1
        assert metrics.PROFILE_ERASURES._value.get() - counted == 50
        assert _keys(client, "cv:*", store) == [b"cv:profile:z1"]
        # Not covered: after a write; a canonical id the one before did not list; an
        # identifier it did not list. Covered: all listed, the one before an erasure.
        store.write([ProfileUpdate("b1", {"n": 4}, ("b1", "b2")),
                     ProfileUpdate("b3", {"n": 5}, ("b3",)),
                     ProfileUpdate("b6", {"n": 6}, ("b6",))])  # fmt: skip
        before = evals()
        store.write([
            Erasure("b1", ("b1", "b2")), ProfileUpdate("z2", {"n": 7}, ("z2",)),
            Erasure("b2", ("b1", "b2")),  # after a write: runs
            Erasure("b3", ("b1", "b2")),  # b3 not listed before: runs, removes b3
            Erasure("b1", ("b1",)),  # covered
            Erasure("b1", ("b1", "b6")),  # b6 not listed before: runs, removes b6
        ])  # fmt: skip
        assert evals() - before == 4
        assert _keys(client, "cv:*", store) == [b"cv:profile:z1", b"cv:profile:z2"]
    finally:
        client.close()
        store.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_an_erased_profile_is_not_republished_when_redis_lost_its_data(redis_server: str) -> None:
    store = ProfileStore(redis_server, "lost:profile:")
    client = redis.Redis.from_url(redis_server)
    try:
        store.write([ProfileUpdate("u1", {"n": 1}, ("a1", "u1")), ProfileUpdate("u2", {"n": 2})])
        store.write([Erasure("u1", ("a1",))])
        for key in client.scan_iter(match="lost:*"):  # Redis restarted empty, for this writer
            client.delete(key)
        client.delete(store.sentinel)
        store.write([ProfileUpdate("u3", {"n": 3})])  # notices, and re-publishes what it knows
        assert _keys(client, "lost:*", store) == [b"lost:profile:u2", b"lost:profile:u3"]
    finally:
        client.close()
        store.close()


def _keys(client: redis.Redis, pattern: str, store: ProfileStore) -> list[bytes]:
    """The keys matching ``pattern`` but the writers' sentinels (``~writer:<random hex>``:
    any writer's, as a hex id can hold "a1" or "a2" too)."""
    writers = f"{store.prefix.rstrip(':')}~writer:".encode()
    return sorted(k for k in client.scan_iter(match=pattern) if not k.startswith(writers))


def _engine_to(store: ProfileStore, **env: str) -> Any:
    """A one-shard engine with live profiles and identity (the defaults), whose profile
    writes and erasures go to ``store`` as the worker's sink sends them: ``feed(events,
    requests)`` applies Segment-spec event dicts, then ``(minutes, id)`` deletions. ``env``:
    settings (``AUDIENCEFLOW_...``)."""
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.records import ControlRequest
    from audienceflow.operators.validate import Taxonomy, Validator, parse_timestamp
    from tests.helpers import Feeder, at

    settings = Settings.load(environ=env)
    engine = ShardEngine(settings, ShardState("shard-000"), emit_profiles=True)
    feeder, validate = Feeder(settings), Validator(Taxonomy.default())

    def feed(events: list[dict[str, Any]], requests: list[tuple[float, str]] = ()) -> None:
        lines = [validate(orjson.dumps(x), f"in:{i}") for i, x in enumerate(events)]
        items = [*feeder.items(lines)] + [
            ControlRequest("delete", (ident,), f"r-{ident}", parse_timestamp(at(minutes)))
            for minutes, ident in requests
        ]
        out = engine.on_items(items)
        store.write(r for r in out if type(r) in (ProfileUpdate, Erasure))

    return feed


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_deletion_applied_again_without_the_state_leaves_no_lookup_key(
    redis_server: str,
) -> None:
    """u1 logs in on a1 and is deleted at 20; back at 30 on a new device a2: a new profile
    u1, with a lookup key for a2 (a deletion is not a suppression). A worker that lost the
    state (started without recovery state once input retention took those events, or
    resumed from a snapshot older than the request whose replay does not link a2 again)
    applies the request again: its erasure names u1 alone, as the shard knows nothing
    else of u1. It removed u1's profile and left ``~id:a2`` naming it, and a later
    deletion of u1 left it too, for ``redis.ttl``. Stream time moves 2 min (the lateness)
    behind the latest event, so a request and the events after it wait for a later one."""
    from tests.test_identity import CART, e

    client = redis.Redis.from_url(redis_server)
    first = ProfileStore(redis_server, "again:profile:")
    again = ProfileStore(redis_server, "again:profile:")
    try:
        feed = _engine_to(first)
        feed([e(0, "Home", anon="a1"), e(5, etype="identify", user="u1", anon="a1"),
              e(6, "Product Added", user="u1", anon="a1", **CART)])  # fmt: skip
        feed([], [(20, "u1")])  # held until stream time reaches it
        feed([e(30, etype="identify", user="u1", anon="a2"), e(40, "Home", user="bob")])
        # The first application removed a1's keys; u1's new profile has a2.
        assert client.get("again:profile~id:a2") == b"u1"
        assert [k for k in _keys(client, "again:*", first) if b"a1" in k] == []
        # The worker without the state: other users' events, and the request read again.
        feed_again = _engine_to(again)
        feed_again([e(100, "Home", user="carol")], [(20, "u1")])
        left = [k for k in _keys(client, "again:*", again) if b"u1" in k or b"a2" in k]
        assert left == [], left
        assert again.read("a2") is None
    finally:
        client.close()
        first.close()
        again.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize("named", ["u1", "a1"])
def test_a_deletion_after_the_user_was_evicted_leaves_nothing_in_redis(
    redis_server: str, named: str
) -> None:
    """Eviction (``history_window`` of stream time idle, 1 h here) forgets u1 and its
    links; its Redis keys live ``redis.ttl`` of wall-clock time from their last write,
    far longer in stream time when a worker catches up. A deletion then names only the
    request's id: naming u1 it left ``~id:a1``, naming a1 it left u1's profile, which
    the writer also re-published once Redis lost its data. Redis's lookup key and set
    say what belongs to u1."""
    from tests.test_identity import e

    client = redis.Redis.from_url(redis_server)
    prefix = f"evicted-{named}:profile:"
    store = ProfileStore(redis_server, prefix)
    try:
        feed = _engine_to(store, AUDIENCEFLOW_STATE__HISTORY_WINDOW="1h")
        feed([e(0, "Home", anon="a1"), e(5, etype="identify", user="u1", anon="a1"),
              e(100, "Home", user="bob")])  # fmt: skip
        assert store.read("a1") == store.read("u1") is not None
        feed([e(200, "Home", user="bob")])  # u1 evicted at 5 + 60 min idle
        assert store.read("a1") is not None  # Redis still has it
        feed([e(300, "Home", user="bob")], [(201, named)])
        assert [k for k in _keys(client, f"{prefix[:-1]}*", store) if b"bob" not in k] == []
        for key in client.scan_iter(match=f"{prefix[:-1]}*"):  # Redis restarted empty
            client.delete(key)
        client.delete(store.sentinel)
        feed([e(400, "Home", user="bob")])  # notices, re-publishes what it remembers
        assert store.read("a1") is None and store.read("u1") is None
        assert store.read("bob") is not None
    finally:
        client.close()
        store.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_deletion_removes_the_profile_key_of_every_identifier_it_names(
    redis_server: str,
) -> None:
    """A half merged in without state (evicted, its profile left in Redis) has no erasure
    of its own: its profile key stays, and the deletion of the person named it only as a
    lookup key. A merge's erasure names no identifier and leaves the profile it joins."""
    client = redis.Redis.from_url(redis_server)
    store = ProfileStore(redis_server, "half:profile:")
    try:
        store.write([ProfileUpdate("a1", {"n": 1}, ("a1",)), ProfileUpdate("u2", {"n": 2})])
        store.write([Erasure("a9", ()), ProfileUpdate("u1", {"n": 3}, ("a1", "u1"))])
        store.write([Erasure("u1", ("a1", "u1"))])
        assert _keys(client, "half:*", store) == [b"half:profile:u2"]
    finally:
        client.close()
        store.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_deletion_leaves_a_lookup_key_its_set_lists_but_that_names_another_profile(
    redis_server: str,
) -> None:
    """u1's set lists a1, and a1 was linked to u3 since (its lookup key names u3): the
    deletion of u1 removes u1 alone, not u3's way in."""
    client = redis.Redis.from_url(redis_server)
    store = ProfileStore(redis_server, "moved:profile:")
    try:
        store.write([ProfileUpdate("u1", {"n": 1}, ("u1", "a1"))])
        store.write([ProfileUpdate("u3", {"n": 3}, ("u3", "a1"))])
        store.write([Erasure("u1", ("u1",))])
        assert client.get("moved:profile~id:a1") == b"u3"
        assert store.read("a1") == store.read("u3") is not None
        assert store.read("u1") is None
    finally:
        client.close()
        store.close()


class _Watching(KafkaOutput):
    """The real producer, noting what Redis holds at the moment each receipt is produced."""

    def __init__(self, brokers: str, redis_url: str, watched: str) -> None:
        super().__init__(brokers)
        self.client = redis.Redis.from_url(redis_url)
        self.watched = watched
        self.seen: list[tuple[str, int]] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if topic.endswith(".receipts"):
            self.seen.append((topic, self.client.exists(self.watched)))
        super().send(topic, key, value)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_receipt_is_produced_only_after_redis_dropped_the_profile(
    kafka_broker: str, redis_server: str
) -> None:
    names = topics("order")
    servers.create_topics(kafka_broker, list(names.values()), partitions=1)
    kafka = _Watching(kafka_broker, redis_server, "order:profile:u1")
    store = ProfileStore(redis_server, "order:profile:")
    sink = _WorkerPartition(kafka, Topics(**names), store)
    receipt = Receipt("r1", "delete", "shard-000", "done", 0.0, [], {"users": 1}, 1, "0" * 32)
    try:
        sink.write_batch([ProfileUpdate("u1", {"n": 1}, ("a1", "u1"))])
        assert store.read("a1") == {"n": 1}
        sink.write_batch(
            [ProfileUpdate("u1", {"n": 2}, ("a1", "u1")), Erasure("u1", ("a1",)), receipt]
        )
        sink.snapshot()  # the epoch ends: its records are on the broker
        assert kafka.seen == [(names["control_receipts"], 0)]
        ((key, value, _),) = servers.consume_all(kafka_broker, names["control_receipts"])
        assert (
            key == b"r1"
            and orjson.loads(value or b"")["receipt_id"] == receipt.body()["receipt_id"]
        )
        assert store.read("a1") is None
    finally:
        kafka.client.close()
        sink.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_profile_command_finds_a_profile_by_any_identifier(
    redis_server: str, tmp_path: Path
) -> None:
    import subprocess

    from workers import CLI

    store = ProfileStore(redis_server, "cli:profile:")
    try:
        store.write([ProfileUpdate("u1", {"user_id": "u1", "n": 1}, ("anon-1", "u1"))])
    finally:
        store.close()
    cfg = config(tmp_path / "c.yaml", "cli", "127.0.0.1:9", redis_server)
    for ident in ("u1", "anon-1"):
        shown = subprocess.run([CLI, "profile", ident, "--config", str(cfg)], capture_output=True)
        assert shown.returncode == 0, shown.stderr
        assert orjson.loads(shown.stdout) == {"user_id": "u1", "n": 1}
    missing = subprocess.run([CLI, "profile", "anon-2", "--config", str(cfg)], capture_output=True)
    assert missing.returncode == 1 and b"cli:profile~id:anon-2" in missing.stderr


def test_the_control_topic_must_differ_from_the_input_topic() -> None:
    from audienceflow.operators.config import ConfigError

    with pytest.raises(ConfigError, match=r"kafka\.control_topic: must differ from"):
        Settings.load(environ={"AUDIENCEFLOW_KAFKA__CONTROL_TOPIC": "clickstream"})


# --- the worker: deletion, a crash before the receipt, suppression ----------------------


def _start_person(
    kafka_broker: str, redis_server: str, tmp_path: Path, prefix: str
) -> tuple[Worker, int, str, str, list[str]]:
    """A live worker (recovery on) that has read a person's anonymous and known events
    and bystanders on both shards, written their profiles and snapshotted them."""
    user = on_shard(f"{prefix}-u", 0)
    anon = on_shard(f"{prefix}-anon", shard(user))
    others = [on_shard(f"{prefix}-by", 0), on_shard(f"{prefix}-by", 1)]
    servers.create_topics(
        kafka_broker, [f"{prefix}.in", f"{prefix}.control"], partitions=PARTITIONS
    )
    t0 = time.time() - 120  # minutes old, as a device's queued events are
    produce(kafka_broker, f"{prefix}.in", person_events(user, anon, t0) + bystander_events(
        others, t0))  # fmt: skip
    port = servers.free_port()
    cfg = worker_config(
        tmp_path / "live.yaml", prefix, kafka_broker, redis_server, tail=True,
        metrics={"port": port},
        recovery={"dir": str(tmp_path / "recovery"), "snapshot_interval": f"{SNAPSHOT_S}s"},
    )  # fmt: skip
    worker = Worker(cfg, tmp_path / "live.log")
    client = redis.Redis.from_url(redis_server)
    try:
        poll(
            lambda: (
                client.get(f"{prefix}:profile~id:{anon}") == user.encode()
                and client.exists(f"{prefix}:profile:{others[0]}", f"{prefix}:profile:{others[1]}")
                == 2
            ),
            60,
            "the person's profile and lookup key, and the bystanders', in Redis",
            on_timeout=worker.log,
        )
    finally:
        client.close()
    # The search can find them: a snapshot of the person's shard names both ids.
    poll(
        lambda: any(
            len(holds(b, [user, anon])) == 2
            for b in latest_snapshots(tmp_path / "recovery").values()
        ),
        60,
        "a snapshot holding the person",
    )
    return worker, port, user, anon, others


def _assert_purged(found: dict[str, Any], redis_server: str, kafka_broker: str, prefix: str,
                   user: str, anon: str, at: float, tmp_path: Path) -> None:  # fmt: skip
    """Nothing of the person after ``at``: outputs, Redis, the latest snapshots."""
    late = {
        out: [r for r in recs if max(r.get("at", ""), r.get("end", "")) > iso(at)]
        for out, recs in found.items()
        if out != "receipts"
    }
    assert not any(late.values()), late
    assert redis_keys_of(redis_server, [user, anon]) == []
    snaps = latest_snapshots(tmp_path / "recovery")
    assert len(snaps) == SHARDS
    assert {k: holds(b, [user, anon]) for k, b in snaps.items()} == {k: [] for k in snaps}


def _assert_receipts(kafka_broker: str, prefix: str, request_id: str) -> dict[str, Any]:
    """One receipt per shard after de-duplication by receipt_id (copies are identical),
    one of them ``done``: the shard that held the person; returns that one."""
    by_id = receipts(kafka_broker, prefix, request_id)
    assert len(by_id) == SHARDS, by_id
    assert all(len(set(copies)) == 1 for copies in by_id.values())
    recs = [orjson.loads(copies[0]) for copies in by_id.values()]
    done = [r for r in recs if r["status"] == "done"]
    assert len(done) == 1 and [r["status"] for r in recs].count("not_found") == SHARDS - 1
    return done[0]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_delete_on_the_control_topic_leaves_nothing_of_the_person(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    prefix = "del"
    worker, _, user, anon, others = _start_person(kafka_broker, redis_server, tmp_path, prefix)
    try:
        merges = naming(kafka_broker, prefix, [user])["identities"]
        assert [(m["type"], m["canonical_id"], m["identifiers"]) for m in merges] == [
            ("merge", user, sorted([anon, user]))
        ]
        keys = [k for k, _, _ in servers.consume_all(kafka_broker, f"{prefix}.identities")]
        assert keys == [user.encode()]  # keyed by the canonical id
        asked = time.time()
        produce(kafka_broker, f"{prefix}.control", [request("delete", anon, "req-del", asked)])
        poll(
            lambda: len(receipts(kafka_broker, prefix, "req-del")) == SHARDS,
            60,
            "a receipt from each shard",
            on_timeout=worker.log,
        )
        # The receipt is published once Redis has dropped the profile and lookup keys.
        assert redis_keys_of(redis_server, [user, anon]) == []
        client = redis.Redis.from_url(redis_server)
        assert client.exists(*(f"{prefix}:profile:{o}" for o in others)) == 2
        client.close()
        worker.process.send_signal(signal.SIGTERM)  # drains, then takes a last snapshot
        assert worker.wait(60) == 0, worker.log()[-3000:]
    finally:
        worker.stop()
    done = _assert_receipts(kafka_broker, prefix, "req-del")
    # By hand: one profile, its open session and its cart timer, the 4 events' dedup
    # entries and its 2 linked identifiers; the anonymous id reached the userId.
    purged = done["purged"]
    assert (purged["users"], purged["open_sessions"], purged["timers"]) == (1, 1, 1)
    assert (purged["dedup_entries"], purged["links"]) == (4, 2)
    assert len(done["identifiers"]) == 2 and user not in str(done) and anon not in str(done)
    before = naming(kafka_broker, prefix, [user, anon])
    _assert_purged(before, redis_server, kafka_broker, prefix, user, anon, asked, tmp_path)

    # Resume bounded: the end of the input closes every session and fires every timer.
    # The person's (their session, the cart e-mail) must not come: they were purged.
    bounded = worker_config(
        tmp_path / "bounded.yaml", prefix, kafka_broker, redis_server, tail=False,
        recovery={"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"},
    )  # fmt: skip
    again = Worker(bounded, tmp_path / "again.log")
    assert again.wait(120) == 0, again.log()[-3000:]
    after = naming(kafka_broker, prefix, [user, anon])
    assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in before.items()}
    closed = naming(kafka_broker, prefix, others)["sessions"]
    assert sorted(s["user_id"] for s in closed) == sorted(others)  # the end was processed
    _assert_purged(after, redis_server, kafka_broker, prefix, user, anon, asked, tmp_path)
    # Nor anywhere in the recovery files (free pages and WAL included): the snapshots that
    # held the person were garbage-collected by Bytewax and their pages erased.
    for path in sorted((tmp_path / "recovery").iterdir()):
        assert holds(path.read_bytes(), [user, anon]) == [], path.name


def recovery_files_naming(recovery: Path, ids: list[str]) -> dict[str, list[str]]:
    """Each file of the recovery directory (partitions, their WAL and shared-memory index)
    whose raw bytes name one of ``ids``: free pages and superseded log frames included."""
    found = {}
    for path in sorted(recovery.iterdir()):
        try:
            named = holds(path.read_bytes(), ids)
        except FileNotFoundError:  # SQLite removed it between the listing and the read
            continue
        if named:
            found[path.name] = named
    return found


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_deleted_person_leaves_the_recovery_files_while_the_worker_runs(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    # Without the scrub the superseded snapshots stay in part-N.sqlite3-wal until SQLite
    # happens to overwrite them: with this little traffic, for as long as the worker runs.
    prefix = "delwal"
    worker, _, user, anon, _ = _start_person(kafka_broker, redis_server, tmp_path, prefix)
    recovery = tmp_path / "recovery"
    try:
        assert recovery_files_naming(recovery, [user, anon])  # the search can find them
        produce(
            kafka_broker, f"{prefix}.control", [request("delete", anon, "req-wal", time.time())]
        )
        poll(
            lambda: len(receipts(kafka_broker, prefix, "req-wal")) == SHARDS,
            60,
            "a receipt from each shard",
            on_timeout=worker.log,
        )
        # The next snapshot holds nothing of the person (backup_interval 0: Bytewax drops
        # the older ones at once), then the worker scrubs: a few snapshot intervals.
        poll(
            lambda: not recovery_files_naming(recovery, [user, anon]),
            10 * SNAPSHOT_S,
            "no recovery file naming the person",
            on_timeout=lambda: f"{recovery_files_naming(recovery, [user, anon])}\n{worker.log()}",
        )
        assert worker.process.poll() is None, worker.log()[-3000:]  # still running
        assert "not scrubbed" not in worker.log()
        assert len(latest_snapshots(recovery)) == SHARDS  # the bystanders' state is intact
    finally:
        worker.stop()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_kill_between_the_request_and_its_receipt_still_purges_with_one_receipt(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    prefix = "delkill"
    worker, port, user, anon, others = _start_person(kafka_broker, redis_server, tmp_path, prefix)
    try:
        asked = time.time() + 3  # held at the shards until stream time reaches it
        produce(kafka_broker, f"{prefix}.control", [request("delete", user, "req-kill", asked)])
        poll(
            lambda: metric(port, "audienceflow_control_in_total") == 1,
            30,
            "the request read",
            on_timeout=worker.log,
        )
        assert receipts(kafka_broker, prefix, "req-kill") == {}  # not yet applied
    finally:
        worker.process.send_signal(signal.SIGKILL)
        worker.wait()
    assert redis_keys_of(redis_server, [user, anon])  # the person was still there
    bounded = worker_config(
        tmp_path / "bounded.yaml", prefix, kafka_broker, redis_server, tail=False,
        recovery={"dir": str(tmp_path / "recovery"), "snapshot_interval": "0.5s"},
    )  # fmt: skip
    again = Worker(bounded, tmp_path / "again.log")
    assert again.wait(120) == 0, again.log()[-3000:]
    assert "resumes from the last snapshot" in again.log()
    done = _assert_receipts(kafka_broker, prefix, "req-kill")
    assert done["purged"]["users"] == 1 and done["at"] == iso(asked)
    closed = naming(kafka_broker, prefix, others)["sessions"]
    assert sorted(s["user_id"] for s in closed) == sorted(others)
    found = naming(kafka_broker, prefix, [user, anon])
    _assert_purged(found, redis_server, kafka_broker, prefix, user, anon, asked, tmp_path)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_suppressed_person_makes_no_state_until_unsuppressed(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    prefix = "sup"
    user, other = on_shard("sup-u", 0), on_shard("sup-by", 1)
    t = 1_772_438_400.0  # 2026-03-02T08:00:00Z
    servers.create_topics(kafka_broker, [f"{prefix}.in", f"{prefix}.control"], PARTITIONS)
    produce(kafka_broker, f"{prefix}.control", [
        request("suppress", user, "req-sup", t), request("unsuppress", user, "req-unsup", t + 600),
    ])  # fmt: skip
    produce(kafka_broker, f"{prefix}.in", [
        event("page", t + 60, "s1", user=user),
        event("track", t + 120, "s2", user=user, anon="sup-anon", name="Product Added",
              product_id="p1", price=5.0, quantity=1),
        event("page", t + 180, "s3", user=user),
        event("page", t + 660, "s4", user=user),  # after the unsuppress: processed
        *bystander_events([other], t + 30),
    ])  # fmt: skip
    cfg = worker_config(tmp_path / "w.yaml", prefix, kafka_broker, redis_server, tail=False)
    worker = Worker(cfg, tmp_path / "w.log")
    assert worker.wait(120) == 0, worker.log()[-3000:]
    log = worker.log()
    # By hand: 3 of the person's events filtered, 1 processed, and the bystander's 2.
    assert (_final_count(log, "filtered"), _final_count(log, "processed")) == (3, 3), log
    assert "control: requests in 2, dead-lettered 0, receipts 4" in log
    found = naming(kafka_broker, prefix, [user, "sup-anon"])
    ((session,),) = [found["sessions"]]
    assert (session["events"], session["start"]) == (1, iso(t + 660))  # nothing suppressed
    assert found["actions"] == [] and found["identities"] == []  # no cart, no link made
    store = ProfileStore(redis_server, f"{prefix}:profile:")
    try:
        profile = store.read(user)
        assert profile is not None and profile["events"] == 1
        assert store.read("sup-anon") is None
    finally:
        store.close()
    for rid in ("req-sup", "req-unsup"):
        by_id = receipts(kafka_broker, prefix, rid)
        assert len(by_id) == SHARDS
        assert {orjson.loads(c[0])["status"] for c in by_id.values()} == {"done"}


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_two_processes_read_each_control_partition_once(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    """Each control partition is read by one process of the cluster and its requests reach
    every shard once: one receipt per shard, never two (a second copy would carry the next
    ``seq`` of its shard, so it would not be a repeat)."""
    prefix = "pair-del"
    user = on_shard(f"{prefix}-u", 1)
    anon = on_shard(f"{prefix}-anon", shard(user))
    others = [on_shard(f"{prefix}-by", 0), on_shard(f"{prefix}-by", 1)]
    t0 = 1_772_438_400.0
    servers.create_topics(kafka_broker, [f"{prefix}.in", f"{prefix}.control"], PARTITIONS)
    produce(kafka_broker, f"{prefix}.in", person_events(user, anon, t0) + bystander_events(
        others, t0))  # fmt: skip
    produce(kafka_broker, f"{prefix}.control", [request("delete", user, "req-pair", t0 + 60)])
    cfg = worker_config(tmp_path / "w.yaml", prefix, kafka_broker, redis_server, tail=False)
    addresses = ";".join(f"127.0.0.1:{servers.free_port()}" for _ in range(2))
    pair = [
        Worker(cfg, tmp_path / f"w{i}.log", "--process-id", str(i), "--addresses", addresses)
        for i in range(2)
    ]
    for w in pair:
        assert w.wait(120) == 0, w.log()[-3000:]
    by_id = receipts(kafka_broker, prefix, "req-pair")
    assert sorted(len(copies) for copies in by_id.values()) == [1] * SHARDS
    done = _assert_receipts(kafka_broker, prefix, "req-pair")
    assert (done["purged"]["users"], done["purged"]["timers"], done["at"]) == (1, 1, iso(t0 + 60))
    found = naming(kafka_broker, prefix, [user, anon])
    late = [r for out, recs in found.items() if out != "receipts" for r in recs
            if max(r.get("at", ""), r.get("end", "")) > iso(t0 + 60)]  # fmt: skip
    assert late == [] and redis_keys_of(redis_server, [user, anon]) == []
    closed = naming(kafka_broker, prefix, others)["sessions"]
    assert sorted(s["user_id"] for s in closed) == sorted(others)


@pytest.mark.parametrize(
    ("kind", "named"),
    [("delete", "user"), ("delete", "anon"), ("delete_and_suppress", "user")],
)
def test_a_delete_reaches_an_anonymous_id_whose_events_went_to_another_shard(
    tmp_path: Path, kind: str, named: str
) -> None:
    """The two halves cannot merge across shards (README, Identity: Shards), but each
    shard remembers the link (records.LinkNotice), so a request naming either id reaches
    both halves."""
    from workers import write_config

    from audienceflow.flows.replay import replay

    user = on_shard("x-u", 0)
    anon = on_shard("x-anon", 1 - shard(user))
    t0 = 1_772_438_400.0
    stream = tmp_path / "in.jsonl"
    stream.write_bytes(b"\n".join(person_events(user, anon, t0)) + b"\n")
    control = tmp_path / "control.jsonl"
    control.write_bytes(request(kind, user if named == "user" else anon, "req-x", t0 + 60) + b"\n")
    if kind == "delete_and_suppress":  # the anonymous half comes back: filtered
        later_event = event("page", t0 + 120, "m9", anon=anon)
        stream.write_bytes(stream.read_bytes() + later_event + b"\n")
    cfg = write_config(tmp_path / "c.yaml", state={"shards": SHARDS})
    out = tmp_path / "out"
    summary = replay([str(stream)], out, Settings.load(cfg, environ={}), control=[str(control)])
    suppressed = summary["counts"]["filtered_by_reason"].get("suppressed", 0)
    assert suppressed == (1 if kind == "delete_and_suppress" else 0)
    profiles = (out / "profiles.jsonl").read_bytes()
    later = [
        rec
        for name in ("sessions", "segment_changes", "actions")
        for rec in map(orjson.loads, (out / f"{name}.jsonl").read_bytes().splitlines())
        if anon in str(rec) and max(rec.get("at", ""), rec.get("end", "")) > iso(t0 + 60)
    ]
    assert anon.encode() not in profiles and user.encode() not in profiles and later == []
    receipts = [orjson.loads(x) for x in (out / "control.jsonl").read_bytes().splitlines()]
    assert sorted(r["purged"]["users"] for r in receipts) == [1, 1]  # a half on each shard


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_profile_command_needs_the_salt_to_find_a_pseudonymised_id(
    redis_server: str, tmp_path: Path
) -> None:
    """An e-mail as id is looked up under its salted pseudonym: without the salt the
    command says so (exit 2) instead of answering "no profile" for one that exists."""
    import os
    import subprocess

    from workers import CLI

    from audienceflow.operators.privacy import Privacy

    salt = "drill-salt"
    email = "jane.doe@example.com"
    ident = Privacy(("email",), "hash", salt).pseudonym(email, "uid")
    assert ident.startswith("uid:")
    store = ProfileStore(redis_server, "pii:profile:")
    try:
        store.write([ProfileUpdate(ident, {"user_id": ident, "n": 1}, (ident,))])
    finally:
        store.close()
    cfg = config(tmp_path / "c.yaml", "pii", "127.0.0.1:9", redis_server, privacy={"salt": None})
    env = {k: v for k, v in os.environ.items() if k != "AUDIENCEFLOW_PII_SALT"}
    unsalted = subprocess.run(
        [CLI, "profile", email, "--config", str(cfg)], capture_output=True, env=env
    )
    assert unsalted.returncode == 2, unsalted.stderr
    assert b"$AUDIENCEFLOW_PII_SALT" in unsalted.stderr and b"no profile" not in unsalted.stderr
    salted = subprocess.run(
        [CLI, "profile", email, "--config", str(cfg)],
        capture_output=True,
        env={**env, "AUDIENCEFLOW_PII_SALT": salt},
    )
    assert salted.returncode == 0, salted.stderr
    assert orjson.loads(salted.stdout) == {"user_id": ident, "n": 1}
    # An id holding nothing personal needs no salt.
    plain = subprocess.run(
        [CLI, "profile", "u9", "--config", str(cfg)], capture_output=True, env=env
    )
    assert plain.returncode == 1 and b"no profile for 'u9'" in plain.stderr
