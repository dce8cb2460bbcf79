"""Live profiles in Redis: one hash per user, written a batch at a time.

Key ``{redis.key_prefix}{user_id}`` (default ``af:profile:u1``); one field per
profile entry (``operators.features.profile``), each value one JSON value
(strings quoted), plus ``updated_at``; the key expires ``redis.ttl`` after its
last write, so inactive users disappear. A batch is one pipelined round trip
with at most one write per user (the latest). While Redis is unreachable the
write is retried with back-off: the dataflow waits rather than lose a profile.

>>> encode({"user_id": "u1", "segments": ["a"], "cart_items": 2})
{'user_id': b'"u1"', 'segments': b'["a"]', 'cart_items': b'2'}
>>> decode({b"segments": b'["a"]', b"device": b'"mobile"'})
{'device': 'mobile', 'segments': ['a']}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from audienceflow.flows import metrics
from audienceflow.operators.records import ProfileUpdate

log = logging.getLogger("audienceflow.redis")

_RETRY_MAX_S = 5.0


class RedisUnavailable(RuntimeError):
    """Redis could not be reached at start-up."""


def encode(fields: dict[str, Any]) -> dict[str, bytes]:
    """Profile fields as Redis hash values: each one JSON value."""
    return {k: orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for k, v in fields.items()}


def decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """A Redis hash back to profile fields, keys sorted."""
    return {k.decode(): orjson.loads(v) for k, v in sorted(raw.items())}


class ProfileStore:
    """The profile hashes of one Redis database."""

    def __init__(self, url: str, prefix: str, ttl: float = 30 * 86400) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)

    def check(self) -> None:
        """Raise ``RedisUnavailable`` naming the URL unless the server answers PING."""
        try:
            self.client.ping()
        except redis.exceptions.RedisError as exc:
            raise RedisUnavailable(f"cannot reach Redis at {self.url} (redis.url): {exc}") from exc

    def key(self, user_id: str) -> str:
        return f"{self.prefix}{user_id}"

    def write(self, profiles: Iterable[ProfileUpdate]) -> int:
        """Write the latest profile of each user in one pipeline; return how many."""
        latest = {p.user_id: p.fields for p in profiles}
        if not latest:
            return 0
        wait = 0.1
        while True:
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    for uid, fields in latest.items():
                        key = self.key(uid)
                        pipe.hset(key, mapping=encode(fields))  # type: ignore[arg-type]
                        pipe.expire(key, self.ttl)
                    pipe.execute()
                return len(latest)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning(
                    "Redis at %s unreachable (%s); retrying %d profile writes in %.1fs",
                    self.url,
                    exc,
                    len(latest),
                    wait,
                )
                time.sleep(wait)
                wait = min(wait * 2, _RETRY_MAX_S)

    def read(self, user_id: str) -> dict[str, Any] | None:
        """A user's live profile, or None when Redis holds none (never seen, or expired)."""
        raw = self.client.hgetall(self.key(user_id))
        return decode(raw) if raw else None  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()


class _ProfilePartition(StatelessSinkPartition[Any]):
    def __init__(self, store: ProfileStore) -> None:
        self.store = store

    def write_batch(self, items: list[Any]) -> None:
        n = self.store.write(rec for _, rec in items if type(rec) is ProfileUpdate)
        metrics.PROFILE_WRITES.inc(n)

    def close(self) -> None:
        self.store.close()


class RedisProfileSink(DynamicSink[Any]):
    """Writes the ``ProfileUpdate`` records of a ``(key, record)`` stream; one client per worker."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl = ttl

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProfilePartition:
        return _ProfilePartition(ProfileStore(self.url, self.prefix, self.ttl))
