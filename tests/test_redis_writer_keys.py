"""The worker's writer keys: a failure of the thread that marks them.

A bug in the thread that marks a writer's key "done" (``flows/redis_store._finish``) stops
the worker at the writer's next batch, or at its close, with a log line.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
import servers

from audienceflow.flows.dataflow import RepublishRequests
from audienceflow.flows.redis_store import FinisherFailed, ProfileStore
from audienceflow.operators.records import ProfileUpdate

pytestmark = pytest.mark.integration


@pytest.fixture
def valkey(tmp_path: Path) -> Any:
    server = servers.start_redis(tmp_path / "valkey")
    yield server.address
    servers.stop(server)


def _update(uid: str) -> ProfileUpdate:
    return ProfileUpdate(uid, {"user_id": uid, "n": 1}, (uid,))


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


def test_a_finishers_bug_with_no_batch_after_it_stops_the_writer_at_its_close(
    valkey: str,
) -> None:
    store, client = _broken_finisher(valkey, "bugclose")
    try:
        with pytest.raises(FinisherFailed, match="TypeError"):
            store.close()
    finally:
        client.close()
