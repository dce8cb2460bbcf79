"""What the Redis writer remembers of each profile it wrote, to re-publish them all if
Redis comes back empty: a compact copy, not orjson's output (which holds on to orjson's
4 KB working buffer whatever its length: 18 hash values kept a profile at ~75 KB, so a
writer's 100,000 remembered profiles took ~7 GB), and written back exactly as it was."""

from __future__ import annotations

import tracemalloc

import pytest
import redis

from audienceflow.flows.redis_store import REMEMBER_MAX, ProfileStore
from audienceflow.operators.records import Erasure, ProfileUpdate

FIELDS = {
    "segments": ["recent_engager", "cart_abandoner"],
    "cluster": 3,
    "intent_score": 0.061781,
    "last_seen": "2026-03-02T17:04:07.863Z",
    "first_seen": "2026-03-02T17:04:07.863Z",
    "sessions": 1,
    "events": 12,
    "orders": 0,
    "revenue": 0.0,
    "top_category": "Café & Bücher",
    "video_completions": {"b": 2, "a": 1},
    "cart_items": 2,
    "cart_value": 1e-07,
    "device": "tablet",
    "locale": "en-GB",
    "recommendations": {"items": [["sku-1", 0.5]]},
    "updated_at": "2026-03-02T17:06:07.954Z",
}


def _profile(i: int) -> ProfileUpdate:
    return ProfileUpdate(f"u{i}", {"user_id": f"u{i}", **FIELDS, "events": i}, (f"u{i}", f"a{i}"))


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_remembered_profile_takes_its_size_not_orjsons_buffer(redis_server: str) -> None:
    n = 400
    store = ProfileStore(redis_server, "kept:profile:")
    profiles = [_profile(i) for i in range(n)]
    try:
        store.write(profiles[:10])  # the client's connection and buffers, before measuring
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(10, n, 50):
                store.write(profiles[i : i + 50])
            per_profile = (tracemalloc.get_traced_memory()[0] - before) / (n - 10)
        finally:
            tracemalloc.stop()
        assert len(store.written) == n <= REMEMBER_MAX
        # ~1 KB here (the entry, its tuple and these profiles' ~430-byte JSON texts; the
        # bench's profiles take 631 B); one orjson output
        # kept is 4 KB alone, and a profile held as its 18 hash values 75 KB.
        assert per_profile < 2_500, per_profile
    finally:
        store.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_remembered_profile_is_written_back_byte_for_byte(redis_server: str) -> None:
    store = ProfileStore(redis_server, "back:profile:")
    client = redis.Redis.from_url(redis_server)
    try:
        store.write([_profile(1), _profile(2)])
        before = {k: client.hgetall(k) for k in client.scan_iter(match="back:profile:*")}
        lookups = {k: client.get(k) for k in client.scan_iter(match="back:profile~id:*")}
        assert len(before) == 2 and len(lookups) == 2
        for key in [*before, *lookups, store.sentinel]:  # Redis came back empty
            client.delete(key)
        store.write([])  # nothing to write: no round trip, nothing noticed yet
        assert not client.exists(*before)
        store.write([ProfileUpdate("u3", {"user_id": "u3"})])  # notices; re-publishes
        assert {k: client.hgetall(k) for k in before} == before
        assert {k: client.get(k) for k in lookups} == lookups
    finally:
        client.close()
        store.close()


@pytest.mark.timeout(30)
def test_owned_bytes_are_the_same_bytes_at_their_own_size() -> None:
    import orjson

    from audienceflow.operators.records import owned

    values = [{"i": i, "at": "2026-03-02T17:04:07.863Z"} for i in range(200)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [owned(orjson.dumps(v)) for v in values]
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(values)
    finally:
        tracemalloc.stop()
    assert kept == [orjson.dumps(v) for v in values]
    assert type(kept[0]) is bytes
    assert per_value < 200, per_value  # ~85: the object and its 40 bytes; orjson's 4 KB


@pytest.mark.timeout(30)
def test_redis_py_reads_with_hiredis() -> None:
    """redis-py falls back to its pure-Python parser, silently, when hiredis does not load
    or is a version it cannot use; the writer's figures (README) are with hiredis."""
    import redis.utils

    assert redis.utils.HIREDIS_AVAILABLE


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_batch_forgets_what_its_deletions_reach_but_not_what_it_writes_after_them(
    redis_server: str,
) -> None:
    """One scan of the remembered profiles per batch: x, written before the deletion
    naming a1, is forgotten (not written back once Redis lost its data); u9, deleted and
    written again later in the batch (a new profile, as a deletion is no suppression),
    is remembered."""
    store = ProfileStore(redis_server, "batch:profile:")
    client = redis.Redis.from_url(redis_server)
    try:
        store.write(
            [
                ProfileUpdate("x", {"n": 1}, ("x", "a1")),
                ProfileUpdate("keep", {"n": 3}, ("keep", "a7")),
                Erasure("u9", ("u9", "a1")),
                ProfileUpdate("u9", {"n": 2}, ("u9", "a5")),
            ]
        )
        assert set(store.written) == {"keep", "u9"}
        client.flushdb()  # Redis came back empty
        store.write([ProfileUpdate("bob", {"n": 4})])  # notices; re-publishes
        assert store.read("x") is None and store.read("a1") is None
        assert store.read("a5") == store.read("u9") is not None
        assert store.read("keep") is not None
    finally:
        client.close()
        store.close()
