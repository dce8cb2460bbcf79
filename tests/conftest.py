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


def _freeze_hypothesis_constants() -> None:
    """Give every property test the same pool of source constants in any run.

    Hypothesis also draws, now and then, string and number constants found in the
    local modules loaded so far (``providers._get_local_constants``, re-read whenever
    ``sys.modules`` grows). A run of one test file loads fewer modules than the full
    suite, so the same derandomized test drew different examples alone and in CI. The
    pool is built once here from every module of the package, in name order, and kept.
    """
    import importlib
    import pkgutil
    import warnings

    from hypothesis.errors import HypothesisSideeffectWarning

    for name in ("flows", "operators", "models"):
        package = importlib.import_module(f"audienceflow.{name}")
        modules = pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        for module in sorted(info.name for info in modules):
            if module.endswith("__mypyc"):
                # ``make fast``'s shared library, not a module of ours: with the suite's
                # pure engine the import guard refuses it, and no test could run.
                continue
            importlib.import_module(module)
    from hypothesis.internal.conjecture import providers

    if hasattr(providers, "_get_local_constants"):  # private: absent, nothing to freeze
        with warnings.catch_warnings():  # its on-disk cache of constants, read early on purpose
            warnings.simplefilter("ignore", HypothesisSideeffectWarning)
            frozen = providers._get_local_constants()
        providers._get_local_constants = lambda: frozen


_freeze_hypothesis_constants()

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
