"""Hostile inputs whose work is bounded: counted in steps or calls, never timed."""

from __future__ import annotations

import tracemalloc
from collections import deque
from typing import Any

import orjson
import pytest

from audienceflow.operators import control
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import ControlRequest, Erasure, Receipt
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings
from tests.helpers import Feeder, at

# --- suppression of a large profile ----------------------------------------------------


def _line(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def _suppressed_profile(anonymous: int) -> tuple[ShardEngine, Privacy]:
    """An engine whose profile ``u`` links ``anonymous`` anonymous ids (one every two
    days, within the weekly limit), then ``delete_and_suppress`` of ``u``."""
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "cost-test"})
    feeder = Feeder(settings)
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    lines = [
        (f"p:{i}", _line(type="identify", messageId=f"m{i}", userId="u", anonymousId=f"a{i}",
                         timestamp=at(i * 2 * 24 * 60)))
        for i in range(anonymous)
    ]  # fmt: skip
    items = [v for k, v in feeder.ingest.feed(lines) if k != OUT]
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
    request = _line(type="delete_and_suppress", id="u", requestId="r1",
                    timestamp=at((anonymous - 1) * 2 * 24 * 60 - 60))  # fmt: skip
    engine.on_items([*items, control.parse(request, "c:1", privacy)])
    return engine, privacy


def test_a_suppression_keeps_links_linear_in_its_identifiers_and_an_unsuppress_of_any_lifts_all(
) -> None:  # fmt: skip
    # Every pair was kept (n² entries): 50 ms and a million entries for 1,000 identifiers.
    engine, privacy = _suppressed_profile(40)
    st = engine.state
    n = len(st.suppressed)
    assert n >= 40  # u and its anonymous ids (the last joins after the request)
    assert sum(len(v) for v in st.suppressed_with.values()) == 2 * (n - 1)
    # The deletion forgot the links: an unsuppress naming one anonymous id reaches the
    # others only through what the suppression kept. Each id in turn, on a fresh engine.
    for ident in ("a0", "a17", "u"):
        engine, privacy = _suppressed_profile(40)
        request = _line(type="unsuppress", id=ident, requestId="r2",
                        timestamp=at(39 * 2 * 24 * 60 - 30))  # fmt: skip
        engine.on_items([control.parse(request, "c:2", privacy)])
        assert engine.state.suppressed == {}, ident
        assert engine.state.suppressed_with == {}, ident


# --- a deletion beside a large dedup table ---------------------------------------------


@pytest.mark.timeout(60)
def test_a_deletion_removes_its_dedup_entries_in_place_without_copying_the_table() -> None:
    """The dedup table holds every message id of the window, of every user: a deletion
    built two copies of it (130 ms per request at 200k entries, so a batch of erasure
    requests held the shard for minutes). Its own entries go, in place; the receipt
    counts them as before."""
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "cost-test"})
    feeder = Feeder(settings)
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    lines = [
        (f"p:{i}", _line(type="page", name="Home", messageId=f"m{i}", userId=f"u{i % 50}",
                         timestamp=at(i / 100)))
        for i in range(2000)
    ]  # fmt: skip
    engine.on_items([v for k, v in feeder.ingest.feed(lines) if k != OUT])
    st = engine.state
    table = st.seen
    assert len(table) == 2000
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
    before = dict(table)
    # Stamped before the stream time: applied at once, at the stream time.
    request = _line(type="delete", id="u7", requestId="r1", timestamp=at(5))
    out = engine.on_items([control.parse(request, "c:1", privacy)])
    (receipt,) = [r for r in out if type(r).__name__ == "Receipt"]
    theirs = [k for k, v in before.items() if v[1] == "u7" and v[0] <= receipt.at]
    assert receipt.purged["dedup_entries"] == len(theirs) > 30  # all within the hour
    assert st.seen is table  # not a copy
    assert len(table) == 2000 - len(theirs)
    assert not [k for k, v in table.items() if v[1] == "u7" and v[0] <= receipt.at]


class _Walks(dict):  # type: ignore[type-arg]
    """A dedup table that counts the walks over it."""

    walks = 0

    def items(self) -> Any:
        type(self).walks += 1
        return super().items()


@pytest.mark.timeout(60)
def test_a_batch_of_deletions_walks_the_dedup_table_once_not_once_per_request() -> None:
    """Each deletion walked the whole dedup table (every message id of the window, of
    every user) to find its person's: ~60 ns an entry, 0.2 s a request at an hour of
    1k events/s, so a batch of 1,000 erasure requests held every shard for minutes. The
    first builds an index by identifier; the later ones read their own entries from it.
    What each removes and counts is what the walk found: entries stamped after the
    request (held for stream time) stay."""
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "cost-test"})
    feeder = Feeder(settings)
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    lines = [
        (f"p:{i}", _line(type="page", name="Home", messageId=f"m{i}", userId=f"u{i % 50}",
                         timestamp=at(i / 100)))
        for i in range(2000)
    ]  # fmt: skip
    engine.on_items([v for k, v in feeder.ingest.feed(lines) if k != OUT])
    st = engine.state
    st.seen = _Walks(st.seen)
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
    found = []
    for n, user in enumerate(["u7", "u8", "u9", "u7"]):
        before = dict(st.seen)
        request = _line(type="delete", id=user, requestId=f"r{n}", timestamp=at(5))
        out = engine.on_items([control.parse(request, f"c:{n}", privacy)])
        (receipt,) = [r for r in out if type(r).__name__ == "Receipt"]
        theirs = {k for k, v in before.items() if v[1] == user and v[0] <= receipt.at}
        assert receipt.purged["dedup_entries"] == len(theirs)
        assert dict(st.seen) == {k: v for k, v in before.items() if k not in theirs}
        found.append(receipt.purged["dedup_entries"])
    assert found[0] > 30 and found[3] == 0
    assert [v for v in st.seen.values() if v[1] == "u7"]  # stamped after the request
    assert _Walks.walks == 1


@pytest.mark.timeout(60)
def test_the_dedup_index_of_deletions_is_dropped_once_mostly_forgotten_ids() -> None:
    """Kept as ids arrive, the index would list every id ever sent after the first
    deletion; it is dropped once it lists more than twice the table (built again at the
    next deletion)."""
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "cost-test"})
    feeder = Feeder(settings)
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)

    def feed(start: int, n: int) -> None:
        lines = [
            (f"p:{i}", _line(type="page", name="Home", messageId=f"m{i}", userId=f"u{i % 50}",
                             timestamp=at(i / 10)))
            for i in range(start, start + n)
        ]  # fmt: skip
        engine.on_items([v for k, v in feeder.ingest.feed(lines) if k != OUT])

    feed(0, 1000)
    request = _line(type="delete", id="u7", requestId="r1", timestamp=at(5))
    engine.on_items([control.parse(request, "c:1", privacy)])
    assert engine._seen_by is not None
    sizes = []
    for start in range(1000, 30_000, 1000):  # 50 h of 1 event / 6 s: the window holds 600
        feed(start, 1000)
        sizes.append(engine._seen_by_size if engine._seen_by is not None else 0)
    assert len(engine.state.seen) < 1000
    assert max(sizes) <= 2 * 1000 + 1024 + 1000


@pytest.mark.timeout(60)
def test_the_dedup_index_finds_what_the_walk_found_as_ids_arrive_after_it_is_built() -> None:
    """After the first deletion builds the index, it is kept as ids arrive: a later
    deletion finds the person's ids sent since, and those stamped after an earlier
    request; a message id sent again by another user (after the window) is that user's,
    not its first sender's. Each deletion removes and counts what a walk of the whole
    table found; the index lists exactly ``_seen_by_size`` ids."""
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "cost-test"})
    feeder = Feeder(settings)
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
    st = engine.state
    window = settings.dedup_window

    def feed(lines: list[tuple[str, float, str]]) -> None:
        raw = [
            (f"p:{mid}-{t}", _line(type="page", name="Home", messageId=mid, userId=user,
                                   timestamp=at(t)))
            for mid, t, user in lines
        ]  # fmt: skip
        engine.on_items([v for k, v in feeder.ingest.feed(raw) if k != OUT])

    def delete(user: str, minutes: float, n: int) -> set[str]:
        before = dict(st.seen)
        request = _line(type="delete", id=user, requestId=f"r{n}", timestamp=at(minutes))
        out = engine.on_items([control.parse(request, f"c:{n}", privacy)])
        (receipt,) = [r for r in out if type(r).__name__ == "Receipt"]
        theirs = {k for k, v in before.items() if v[1] == user and v[0] <= receipt.at}
        counted = sum(1 for k in theirs if before[k][0] >= receipt.at - window)
        assert receipt.purged["dedup_entries"] == counted, (user, minutes)
        assert not theirs & set(st.seen), (user, minutes)
        kept = {k: v for k, v in before.items() if k not in theirs and v[0] >= receipt.at - window}
        assert {k: st.seen[k] for k in kept} == kept, (user, minutes)  # the others' stay
        assert engine._seen_by is not None
        assert engine._seen_by_size == sum(len(v) for v in engine._seen_by.values())
        return theirs

    feed([(f"m{i}", i / 100, f"u{i % 10}") for i in range(1000)])  # 0 to 10 min
    first = delete("u7", 5, 1)  # builds the index; u7's ids after its time stay
    assert len(first) > 30 and "m997" not in first
    feed([(f"m{i}", i / 100, f"u{i % 10}") for i in range(1000, 2000)])  # 10 to 20 min
    # u7's ids stamped after the first request, and those sent since it.
    assert {"m997", "m1007"} <= delete("u7", 15, 2)
    feed([("m3", 62.0, "u7"), ("n1", 70.0, "u3")])  # u3's m3 of 0 min: u7's, a new use
    assert st.seen["m3"] == (st.seen["m3"][0], "u7")
    delete("u3", 63, 3)
    assert "m3" in st.seen  # u7's now, not u3's
    delete("u7", 64, 4)
    assert "m3" not in st.seen


# --- a batch of erasure requests held for stream time ----------------------------------


class _Walked(deque):  # type: ignore[type-arg]
    """A queue of held items that counts the walks over it."""

    walks = 0

    def __iter__(self) -> Any:
        type(self).walks += 1
        return super().__iter__()


def _held_erasures(requests: int, ids: int) -> tuple[ShardEngine, list[Any]]:
    """An engine holding ``requests`` deletions of ``ids`` identifiers each (no profile
    of them anywhere), dated ahead of stream time as a control file's may be; and the
    items that take stream time past them, applying them all in one call."""
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "cost-test"})
    feeder = Feeder(settings)
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    engine.state.held_run = _Walked()
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)

    def events(start: float) -> list[Any]:
        lines = [
            (f"p:{start}-{i}", _line(type="page", name="Home", messageId=f"m{start}-{i}",
                                     userId=f"u{i}", timestamp=at(start + i / 100)))
            for i in range(10)
        ]  # fmt: skip
        return [v for k, v in feeder.ingest.feed(lines) if k != OUT]

    engine.on_items(events(0))
    engine.on_items([
        control.parse(_line(type="delete", ids=[f"x{j}-{k}" for k in range(ids)],
                            requestId=f"r{j}", timestamp=at(30)), f"c:{j}", privacy)
        for j in range(requests)
    ])  # fmt: skip
    st = engine.state
    assert sum(type(e[3]) is ControlRequest for e in (*st.held, *st.held_run)) == requests
    return engine, events(60)


@pytest.mark.timeout(60)
def test_a_batch_of_held_deletions_shares_each_requests_identifiers_among_its_erasures() -> None:
    """A deletion of n identifiers that names n profiles (here none is known, but each is
    this shard's to erase from the profile store) gives n erasures, each listing the n
    identifiers: a copy each was n² references a request, and a batch of requests held
    for stream time comes out of one call, so 20,000 requests of 100 ids replayed from a
    control file held 2 GB of them at once (~860 B an id, beside ~250 B an id of state
    for a suppression). One tuple per request: what each erasure says is unchanged."""
    requests, ids = 40, 100
    engine, later = _held_erasures(requests, ids)
    tracemalloc.start()
    try:
        out = engine.on_items(later)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    erasures = [r for r in out if type(r) is Erasure]
    receipts = [r for r in out if type(r) is Receipt]
    assert len(receipts) == requests and len(erasures) == requests * ids
    for r in erasures:
        assert r.canonical in r.identifiers and len(r.identifiers) == ids
    # Each id: its erasure (~60 B) and its hash in the receipt (~90 B); a copy of the
    # request's identifiers per erasure was ~860 B more.
    assert kept < 400 * requests * ids, kept / (requests * ids)


@pytest.mark.timeout(60)
def test_a_batch_of_held_deletions_does_not_walk_the_held_queue_once_per_request() -> None:
    """Each deletion looked through every held item for rejected events of its person
    (``_release_rejected``), though the held items were the batch's other requests: 20,000
    requests of a control file took 200 million checks. The walk is for a held rejected
    event only; with none held, none is made, and the requests apply as before."""
    requests = 200
    engine, later = _held_erasures(requests, 2)
    _Walked.walks = 0
    out = engine.on_items(later)
    assert [r.seq for r in out if type(r) is Receipt] == list(range(1, requests + 1))
    assert _Walked.walks < requests / 10, _Walked.walks
