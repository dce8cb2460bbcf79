"""The worker's writer keys: which shards a "done" vouches for, and a finisher's own failure.

A writer key says "done" for the shard layout and the shards of the process that set it
(``flows/redis_store._covers``). A writer whose own key does not vouch for the shards its
process holds now (a new worker thread, a layout changed) skips the re-publication only
when the keys together vouch for every one of them; and a bug in the thread that marks
the key (``_finish``) stops the worker at its next batch, or at its close, with a log line.
The process's shards are those the placement model names, or none vouches: a shard of
another process's found in it (built there, or its last chunk written there) un-vouches
its writers' keys for good (``RepublishRequests.misplaced``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import servers
from prometheus_client import REGISTRY
from test_cold import T0, _engine, _page
from test_redis_flushed import _Shards
from workers import poll

from audienceflow.flows.dataflow import Republished, RepublishRequests, ShardLogic
from audienceflow.flows.placement import HeldShards, held_shards
from audienceflow.flows.redis_store import COVERED, FinisherFailed, ProfileStore
from audienceflow.operators.records import ProfileUpdate, Watermark
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.integration

LAYOUT = "0123456789abcdef"
ALL = HeldShards(LAYOUT, 0b1111)  # a process holding all four shards of the layout
WRITERS = ("out-0", "out-1", "out-2")  # the cluster's sink partitions


@pytest.fixture
def valkey(tmp_path: Path) -> Any:
    server = servers.start_redis(tmp_path / "valkey")
    yield server.address
    servers.stop(server)


def _update(uid: str) -> ProfileUpdate:
    return ProfileUpdate(uid, {"user_id": uid, "n": 1}, (uid,))


def _store(url: str, prefix: str, resend: Any, name: str, held: HeldShards) -> ProfileStore:
    return ProfileStore(url, f"{prefix}:profile:", resend=resend, name=name, held=held,
                        writers=WRITERS)  # fmt: skip


def test_held_shards_name_the_layout_and_the_processs_shards() -> None:
    # Two processes of one worker thread each over four shards: each holds its own, and
    # both name the same layout; another number of shards is another layout.
    four = replace(Settings.load(environ={}), shards=4)
    first, second = held_shards(four, 2, range(0, 1)), held_shards(four, 2, range(1, 2))
    assert first.layout == second.layout
    assert first.mask | second.mask == 0b1111 and first.mask & second.mask == 0
    assert held_shards(four, 1, range(1)) == HeldShards(first.layout, 0b1111)
    assert held_shards(replace(four, shards=8), 1, range(1)).layout != first.layout


def test_a_new_worker_threads_writer_skips_the_re_send_its_processs_old_key_vouches_for(
    valkey: str,
) -> None:
    # One worker thread wrote every profile and marked its key; restarted with two, the
    # process holds the same shards: the new thread's writer (no key yet) must not have
    # them all written again, and marks its own key "done" with no batch after its first.
    client = redis.Redis.from_url(valkey)
    before = RepublishRequests(3600, shards=1)
    shard, _ = before.join()
    old = _store(valkey, "grow", before, "out-0", ALL)
    after = RepublishRequests(3600, shards=2)
    a, b = _store(valkey, "grow", after, "out-0", ALL), _store(valkey, "grow", after, "out-1", ALL)
    try:
        old.write([_update("u1")])  # a first start: its shards asked
        before.finished(shard, 1)
        poll(lambda: client.get("grow:profile~writer:out-0") == b"done %s f" % LAYOUT.encode(),
             10, "the first run's key done")  # fmt: skip
        old.close()
        after.join()
        after.join()
        a.write([_update("u1")])
        b.write([_update("u2")])
        assert after.count == 0  # nothing asked of the shards
        assert b.owed in (COVERED, None)
        poll(lambda: client.get("grow:profile~writer:out-1") == b"done %s f" % LAYOUT.encode(),
             10, "the new writer's key done")  # fmt: skip
        assert after.count == 0
    finally:
        for store in (old, a, b):
            store.close()
        client.close()


@pytest.mark.parametrize(
    ("keys", "covered"),
    [
        # Two processes of two shards each became one: both keys vouch, together, for all.
        ({"out-1": b"done %s 5" % LAYOUT.encode(), "out-2": b"done %s a" % LAYOUT.encode()}, True),
        # Its own key vouches for two of them; the other process stopped re-sending.
        ({"out-0": b"done %s 5" % LAYOUT.encode(), "out-1": b"resending"}, False),
        # Half of them, however many keys say so.
        ({"out-1": b"done %s 5" % LAYOUT.encode(), "out-2": b"done %s 1" % LAYOUT.encode()}, False),
        # All of them, under another shard layout (other users on those shards).
        ({"out-0": b"done fedcba9876543210 f"}, False),
        # A release that named no shards: it vouches for none.
        ({"out-0": b"done", "out-1": b"done"}, False),
        # A value no writer sets (a negative mask would read as every shard).
        ({"out-0": b"done %s -1" % LAYOUT.encode()}, False),
        # No key at all: a first start, or Redis emptied while the worker was down.
        ({}, False),
    ],
)
def test_a_writer_skips_the_re_send_only_when_the_keys_vouch_for_every_shard_it_holds(
    valkey: str, keys: dict[str, bytes], covered: bool
) -> None:
    client = redis.Redis.from_url(valkey)
    for name, value in keys.items():
        client.set(f"vouch:profile~writer:{name}", value, ex=3600)
    shards = _Shards()
    store = _store(valkey, "vouch", shards, "out-0", ALL)
    key = "vouch:profile~writer:out-0"
    try:
        store.write([_update("u1")])
        assert shards.count == (0 if covered else 1)
        # Not yet "done" for these shards: marked over what it held, or "resending".
        assert client.get(key) == keys.get("out-0", b"resending")
        shards.finish()
        store.write([_update("u2")])
        assert client.get(key) == b"done %s f" % LAYOUT.encode()
        assert shards.count == (0 if covered else 1)
        for name, value in keys.items():  # the others' keys as they were
            if name != "out-0":
                assert client.get(f"vouch:profile~writer:{name}") == value
    finally:
        store.close()
        client.close()


def test_a_writer_whose_keys_vouched_asks_the_shards_when_redis_is_emptied_before_its_mark(
    valkey: str,
) -> None:
    # The keys vouched when the writer read them; Redis is emptied before its key is
    # marked: what they vouched for is gone, and the shards must write it all again.
    client = redis.Redis.from_url(valkey)
    client.set("late:profile~writer:out-1", b"done %s f" % LAYOUT.encode(), ex=3600)
    shards = _Shards()
    store = _store(valkey, "late", shards, "out-0", ALL)
    key = "late:profile~writer:out-0"
    try:
        store.write([_update("u1")])
        assert (shards.count, store.owed, client.get(key)) == (0, COVERED, b"resending")
        client.flushall()
        store.write([_update("u2")])
        assert (shards.count, store.owed, client.get(key)) == (1, 1, b"resending")
        shards.finish()
        store.write([_update("u3")])
        assert client.get(key) == b"done %s f" % LAYOUT.encode()
    finally:
        store.close()
        client.close()


def test_redis_emptied_between_a_vouched_look_and_the_mark_is_an_alarm(
    valkey: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The new writer's key was missing at its look (as at a first start), but the loss
    # its mark finds happened under the running worker: a WARNING, not a first start's INFO.
    caplog.set_level(logging.INFO, logger="audienceflow")
    client = redis.Redis.from_url(valkey)
    client.set("alarm:profile~writer:out-1", b"done %s f" % LAYOUT.encode(), ex=3600)
    store = _store(valkey, "alarm", _Shards(), "out-0", ALL)
    try:
        store.write([_update("u1")])
        caplog.clear()
        client.flushall()
        store.write([_update("u2")])
        said = [(r.levelno, r.getMessage().split(" (")[0]) for r in caplog.records]
        assert said == [(logging.WARNING, f"Redis at {store.where} lost its data")]
    finally:
        store.close()
        client.close()


class _OneByOne:
    """A writer's pipeline (no MULTI) run one command at a time on a real server, with
    ``between`` called after its first read of the writer keys (MGET): what another client
    may do between two commands of a pipeline that is not a transaction (an 840-key MGET
    alone is ~27 KB, more than Redis reads at once)."""

    def __init__(self, client: redis.Redis, between: Any) -> None:
        self.client, self.between = client, between
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __enter__(self) -> _OneByOne:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def execute(self) -> list[Any]:
        replies = []
        for name, args, kwargs in self.calls:
            replies.append(getattr(self.client, name)(*args, **kwargs))
            if name == "mget":
                self.between()
        return replies


def test_a_writer_whose_keys_vouched_asks_the_shards_when_redis_is_emptied_right_after_its_read(
    valkey: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis is emptied by another client between the writer keys' read and the rest of
    # the round trip. The writer set its own key "resending" before that read, so the
    # loss takes it and the mark (XX) finds it gone; read before, the key set after the
    # loss would be marked "done" over an empty Redis on the others' word.
    client = redis.Redis.from_url(valkey)
    client.set("mid:profile~writer:out-1", b"done %s f" % LAYOUT.encode(), ex=3600)
    shards = _Shards()
    store = _store(valkey, "mid", shards, "out-0", ALL)
    flushed: list[bool] = []

    def flush_once() -> None:
        if not flushed:
            flushed.append(client.flushall())

    monkeypatch.setattr(
        store.client, "pipeline", lambda transaction=True: _OneByOne(client, flush_once)
    )
    key = "mid:profile~writer:out-0"
    try:
        store.write([_update("u1")])
        assert flushed == [True] and shards.count == 0  # the keys vouched when read
        store.write([_update("u2")])  # the mark finds the key gone
        assert (shards.count, client.get(key)) == (1, b"resending")
        shards.finish()
        store.write([_update("u3")])
        assert client.get(key) == b"done %s f" % LAYOUT.encode()
    finally:
        store.close()
        client.close()


class _Broken:
    """The shards of a process (``RepublishRequests``) whose wake-up of the finisher fails
    on a bug, with a message quoting a profile's identifier."""

    def __init__(self, requests: RepublishRequests) -> None:
        self.requests = requests
        self.woken = threading.Event()

    def request(self) -> int:
        return self.requests.request()

    def resent(self, request: int) -> bool:
        return self.requests.resent(request)

    @property
    def misplaced(self) -> bool:
        return self.requests.misplaced

    def wait(self, request: int, timeout: float) -> bool:
        self.woken.set()
        raise TypeError("cannot compare 'ann@example.com' with 1")


def _broken_finisher(valkey: str, prefix: str) -> tuple[ProfileStore, redis.Redis]:
    """A writer whose first start asked its shards, and whose finisher then failed."""
    requests = RepublishRequests(3600, shards=1)
    requests.join()
    store = ProfileStore(valkey, f"{prefix}:profile:", resend=_Broken(requests), name="out-0")
    store.write([_update("u1")])  # a first start: the shards asked, the finisher started
    finisher = store.finisher
    assert finisher is not None
    finisher.join(10)
    assert not finisher.is_alive()
    return store, redis.Redis.from_url(valkey)


def test_a_finishers_bug_stops_the_writer_at_its_next_batch_and_is_logged_without_data(
    valkey: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="audienceflow")
    store, client = _broken_finisher(valkey, "bug")
    try:
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        said = errors[0].getMessage()
        assert "TypeError" in said and "bug:profile~writer:out-0" in said
        assert "ann@example.com" not in caplog.text and not errors[0].exc_info
        with pytest.raises(FinisherFailed, match="TypeError") as failed:
            store.write([_update("u2")])
        assert "ann@example.com" not in str(failed.value)
        assert client.get("bug:profile~writer:out-0") == b"resending"  # never marked
        store.close()  # said once: the close that follows the failed batch says nothing
    finally:
        store.close()
        client.close()


class _FailsOnCue(_Broken):
    """``_Broken``, whose wake-up of the finisher fails only once ``cue`` is set."""

    def __init__(self, requests: RepublishRequests) -> None:
        super().__init__(requests)
        self.cue = threading.Event()

    def wait(self, request: int, timeout: float) -> bool:
        if not self.cue.wait(timeout):
            return False
        return super().wait(request, timeout)


class _ReadThenFailed(ProfileStore):
    """A writer whose finisher fails (``cue``) just after the sink's thread read
    ``failed`` at a batch: the interleaving a thread switch allows there."""

    cue: Any = None

    @property
    def failed(self) -> str | None:
        value: str | None = self.__dict__.get("_failed")
        cue, self.cue = self.cue, None
        if cue is not None:
            cue()
        return value

    @failed.setter
    def failed(self, value: str | None) -> None:
        self.__dict__["_failed"] = value


def test_a_finishers_bug_said_while_a_batch_looks_stops_the_writer_at_the_next(
    valkey: str,
) -> None:
    # The finisher fails between the batch's look at what it said and that look's reset:
    # the batch goes on (the bug came after its look), and the next one stops the worker.
    requests = RepublishRequests(3600, shards=1)
    requests.join()
    shards = _FailsOnCue(requests)
    store = _ReadThenFailed(valkey, "cue:profile:", resend=shards, name="out-0")
    client = redis.Redis.from_url(valkey)
    try:
        store.write([_update("u1")])  # a first start: the shards asked, the finisher waits
        finisher = store.finisher
        assert finisher is not None

        def fail() -> None:
            shards.cue.set()
            finisher.join(10)
            assert not finisher.is_alive()

        store.cue = fail
        store.write([_update("u2")])
        with pytest.raises(FinisherFailed, match="TypeError"):
            store.write([_update("u3")])
        assert client.get("cue:profile~writer:out-0") == b"resending"  # never marked
    finally:
        store.close()
        client.close()


def test_a_finishers_bug_with_no_batch_after_it_stops_the_writer_at_its_close(
    valkey: str,
) -> None:
    store, client = _broken_finisher(valkey, "bugclose")
    try:
        with pytest.raises(FinisherFailed, match="TypeError"):
            store.close()
    finally:
        client.close()


# --- the placement model checked at run time ------------------------------------------

MODEL = frozenset({"shard-000", "shard-001"})  # the shards the model puts on this process


def _misplaced_count() -> float:
    return REGISTRY.get_sample_value("audienceflow_shards_misplaced_total") or 0.0


def test_a_process_is_not_resent_until_every_shard_the_model_names_was_seen_here() -> None:
    # Two shards built, as the model says, but one has had no watermark yet: it may be a
    # shard of another process's (Bytewax placed them otherwise), and the model's
    # shard-001 elsewhere, not re-sent by anyone. Counted by tokens, both were done.
    requests = RepublishRequests(3600, names=MODEL)
    a, _ = requests.join()
    b, _ = requests.join()
    requests.place(a, "shard-000")
    n = requests.request()
    requests.finished(a, n, "shard-000")
    requests.finished(b, n)
    assert not requests.resent(n) and not requests.resent(0)
    requests.place(b, "shard-001")  # its key, read off a watermark: the model's
    assert requests.resent(n) and not requests.misplaced


def test_a_shard_the_model_puts_on_another_process_keeps_this_one_from_being_resent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="audienceflow")
    before = _misplaced_count()
    requests = RepublishRequests(3600, names=MODEL)
    tokens = [requests.join()[0] for _ in range(3)]
    for token, name in zip(tokens, ["shard-000", "shard-001", "shard-002"], strict=True):
        requests.place(token, name)
    n = requests.request()
    for token, name in zip(tokens, ["shard-000", "shard-001", "shard-002"], strict=True):
        requests.finished(token, n, name)
    # Every shard of the model re-sent, yet a third came here: the model is wrong.
    assert requests.misplaced and not requests.resent(n) and not requests.resent(0)
    requests.place(tokens[2], "shard-002")  # told again: said once
    assert _misplaced_count() == before + 1
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and said[0].startswith("shard-002 was built in this process")


@pytest.mark.parametrize("named", [True, False], ids=["named", "before_its_watermark"])
def test_a_last_chunk_of_another_processs_shard_is_not_counted_as_one_of_this_ones(
    named: bool,
) -> None:
    # Its token and request are another process's numbers: counted, the token of this
    # process's shard-001 (same number) would read done. Told by its name, or, a shard
    # that had no watermark yet, by its process.
    requests, other = RepublishRequests(3600, names=MODEL), RepublishRequests(3600)
    a, _ = requests.join()
    b, _ = requests.join()
    requests.place(a, "shard-000")
    requests.place(b, "shard-001")
    n = requests.request()
    requests.finished(a, n, "shard-000", requests.origin)
    requests.finished(b, n, "shard-002" if named else "", other.origin)
    assert requests.misplaced and not requests.resent(n)


def test_a_shard_tells_its_name_from_a_watermarks_key_and_writes_it_on_its_chunks() -> None:
    eng = _engine("1h", AUDIENCEFLOW_STATE__SHARDS="2")
    requests = RepublishRequests(3600, names=frozenset({"shard-001"}))
    logic = ShardLogic(eng, False, False, 1.0, eng.cfg, None, republish=requests)
    requests.request()
    out, _ = logic.on_batch([_page("ann", 0)])  # no watermark yet: not placed
    assert [r.name for r in out if type(r) is Republished] == [""]
    assert requests.placed == {} and not requests.misplaced
    requests.request()
    out, _ = logic.on_batch([Watermark("p", T0, shard="shard-000")])
    assert [(r.name, r.origin) for r in out if type(r) is Republished] == [
        ("shard-000", requests.origin)
    ]
    assert requests.placed == {logic.republish_token: "shard-000"} and requests.misplaced


def test_a_writer_whose_process_holds_a_shard_of_another_unvouches_and_has_all_re_sent(
    valkey: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Its key vouched ("done" for both shards of the model) and nothing was owed; then a
    # shard the model puts elsewhere shows up in the process: the key's mask may name a
    # shard this process never wrote. It reads "resending", the shards write all they
    # hold, and it is never marked "done" while the placement is wrong.
    caplog.set_level(logging.INFO, logger="audienceflow")
    client = redis.Redis.from_url(valkey)
    both = HeldShards(LAYOUT, 0b11)
    vouching = b"done %s 3" % LAYOUT.encode()
    client.set("stray:profile~writer:out-0", vouching, ex=3600)
    requests = RepublishRequests(3600, names=MODEL)
    a, b = requests.join()[0], requests.join()[0]
    requests.place(a, "shard-000")
    requests.place(b, "shard-001")
    store = _store(valkey, "stray", requests, "out-0", both)
    key = "stray:profile~writer:out-0"
    try:
        store.write([_update("u1")])
        assert (requests.count, client.get(key)) == (0, vouching)
        c = requests.join()[0]
        requests.place(c, "shard-002")
        caplog.clear()
        store.write([_update("u2")])
        assert (requests.count, client.get(key)) == (1, b"resending")
        for token, name in ((a, "shard-000"), (b, "shard-001"), (c, "shard-002")):
            requests.finished(token, 1, name)
        store.write([_update("u3")])  # every shard here wrote all it holds, to no avail
        assert not requests.resent(1)
        store.write([_update("u4")])
        assert (requests.count, client.get(key)) == (1, b"resending")
        said = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert [lvl for lvl, _ in said] == [logging.WARNING]
        assert "placement model" in said[0][1] and "u2" not in caplog.text
    finally:
        store.close()
        client.close()


def test_a_writer_covered_by_the_others_keys_has_all_re_sent_once_a_shard_is_misplaced(
    valkey: str,
) -> None:
    # Its own key missing, another's vouches for both shards: it owes no re-send, and
    # awaits its process's shards to mark its key. A shard the model puts elsewhere
    # comes first: the others' word is for shards this process may not hold.
    client = redis.Redis.from_url(valkey)
    client.set("cover:profile~writer:out-1", b"done %s 3" % LAYOUT.encode(), ex=3600)
    requests = RepublishRequests(3600, names=MODEL)
    a, c = requests.join()[0], requests.join()[0]
    requests.place(a, "shard-000")
    store = _store(valkey, "cover", requests, "out-0", HeldShards(LAYOUT, 0b11))
    key = "cover:profile~writer:out-0"
    try:
        store.write([_update("u1")])
        assert (requests.count, store.owed, client.get(key)) == (0, COVERED, b"resending")
        requests.place(c, "shard-002")
        store.write([_update("u2")])
        assert (requests.count, client.get(key)) == (1, b"resending")
    finally:
        store.close()
        client.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("named", [True, False], ids=["named", "before_its_watermark"])
def test_the_sink_names_the_shard_of_a_last_chunk_so_another_processs_is_found(
    kafka_broker: str, valkey: str, named: bool
) -> None:
    from audienceflow.flows.kafka_io import KafkaOutput
    from audienceflow.flows.worker_sink import Topics, _WorkerPartition

    requests = RepublishRequests(3600, names=frozenset({"shard-000"}))
    token, _ = requests.join()
    requests.place(token, "shard-000")
    n = requests.request()
    store = _store(valkey, "sinkname", requests, "out-0", HeldShards(LAYOUT, 0b1))
    topics = Topics("sn.changes", "sn.actions", "sn.sessions", "sn.dead")
    sink = _WorkerPartition(KafkaOutput(kafka_broker, background=False), topics, store,
                            republish=requests)  # fmt: skip
    try:
        # Another process's shard-003, whose token is this one's number: not this one's.
        name, origin = ("shard-003", "") if named else ("", RepublishRequests(3600).origin)
        sink.write_batch([Republished([_update("u1")], n, token, True, name, origin)])
        assert requests.misplaced and not requests.resent(n)
    finally:
        sink.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("local", [range(0, 2), range(2, 4)], ids=["first", "second"])
def test_the_worker_gives_its_process_the_model_names_of_the_shards_it_holds(
    monkeypatch: pytest.MonkeyPatch, local: range
) -> None:
    # The unit tests above build ``RepublishRequests`` by hand: dropped on the way from
    # the worker (no names), every shard of a process counted by number again and the
    # check never ran; with the names of every shard, no process of a cluster could
    # ever mark "done". A process of two worker threads of four, eight shards.
    import threading

    from audienceflow.flows import worker
    from audienceflow.flows.placement import key_worker
    from audienceflow.flows.worker_config import WorkerOptions
    from audienceflow.operators.routing import shard_name

    env = {"AUDIENCEFLOW_STATE__SHARDS": "8", "AUDIENCEFLOW_KAFKA__BROKERS": "127.0.0.1:9",
           "AUDIENCEFLOW_REDIS__URL": "redis://127.0.0.1:9/0"}  # fmt: skip
    settings = Settings.load(environ=env)
    built: dict[str, Any] = {}
    monkeypatch.setattr(worker, "input_partitions", lambda *a, **k: ["clickstream:0"])
    monkeypatch.setattr(worker, "topic_limits", lambda *a, **k: {})
    monkeypatch.setattr(worker, "build_flow", lambda *a, **kw: built.update(kw))
    worker.worker_flow(
        settings, WorkerOptions.of(settings), threading.Event(), workers=4, local=local
    )
    requests = built["republish"]
    model = {shard_name(i) for i in range(8) if key_worker(shard_name(i), 4) in local}
    assert 0 < len(model) < 8  # this process holds some shards, not all
    assert requests.names == model and requests.shards == len(model)


def test_one_misplaced_shard_counts_where_it_is_built_and_where_its_profiles_go() -> None:
    # shard-000 is process A's by the model, built in B: B finds it built, and A, whose
    # writer the model routes its profiles to, finds its last chunk. Two findings of one
    # shard (the alert's value, deploy/prometheus/alerts.yml), each process un-vouched.
    before = _misplaced_count()
    a = RepublishRequests(3600, names=frozenset({"shard-000"}))
    b = RepublishRequests(3600, names=frozenset({"shard-001"}))
    token, _ = b.join()
    b.place(token, "shard-000")
    n = b.request()
    a.finished(token, n, "shard-000", b.origin)
    assert a.misplaced and b.misplaced and _misplaced_count() == before + 2
