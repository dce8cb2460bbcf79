"""Session fixtures: real servers for tests marked `integration` (server logic in servers.py)."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

# The suite tests the pure engine even where `make fast` built the compiled one (it
# subclasses and pickles engine classes, which compiled classes do not allow);
# tests/test_native.py compares the two. AUDIENCEFLOW_PURE=0 runs it compiled.
os.environ.setdefault("AUDIENCEFLOW_PURE", "1")

import pytest
import servers
from hypothesis import settings

# Derandomized everywhere (CI and local runs alike): a property test that fails
# fails on every run, and CI never flakes on a newly drawn example. No per-example
# deadline: Hypothesis's default (200 ms) is a timed assertion, and on a shared 2-core
# machine a slow example is load, not a defect (pytest-timeout bounds every test).
settings.register_profile("derandomized", derandomize=True, print_blob=True, deadline=None)
settings.load_profile("derandomized")

# Lets tests `import generate`, the seeded stream generator.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap string "127.0.0.1:PORT" of an in-memory tansu broker; mark users `integration`."""
    server = servers.start_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield server.address
    finally:
        servers.stop(server)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL "redis://127.0.0.1:PORT/0" of a non-persistent Redis; mark users `integration`."""
    server = servers.start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server.address
    finally:
        servers.stop(server)
