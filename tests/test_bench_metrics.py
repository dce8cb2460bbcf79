"""The Kafka bench's reading of the worker's own latency histograms (bench/kafka.py).

The bench puts the p99 an operator would get from ``histogram_quantile`` over a phase
beside the subscriber's measured p99. The quantile must be Prometheus's (linear within
the bucket the rank falls in, over the observations between two scrapes only), and the
scrape must read a real exposition (a ``prometheus_client`` HTTP server on a free port).
"""

from __future__ import annotations

import importlib.util
import math
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server

ROOT = Path(__file__).resolve().parents[1]


def _kafka_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_kafka", ROOT / "bench" / "kafka.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_kafka", mod)
    spec.loader.exec_module(mod)
    return mod


INF = float("inf")


@pytest.mark.timeout(30)
def test_quantile_is_linear_within_its_bucket_over_the_phase_only() -> None:
    bench = _kafka_bench()
    before = {0.05: 100.0, 0.1: 100.0, 0.25: 100.0, INF: 100.0}  # warm-up: all fast
    # In the phase: 50 at or under 50 ms, 40 in (50, 100], 10 in (100, 250].
    after = {0.05: 150.0, 0.1: 190.0, 0.25: 200.0, INF: 200.0}
    q = bench.histogram_quantile
    # Rank 50 of 100 is the last of the first bucket: its upper bound.
    assert q(0.5, before, after) == pytest.approx(0.05)
    # Rank 70: 20 of the 40 in (0.05, 0.1]: halfway.
    assert q(0.7, before, after) == pytest.approx(0.075)
    # Rank 99: 9 of the 10 in (0.1, 0.25].
    assert q(0.99, before, after) == pytest.approx(0.1 + 0.15 * 0.9)
    # Without ``before``, the warm-up's 100 fast ones would move the rank into bucket 1.
    assert q(0.5, {}, after) < 0.05


@pytest.mark.timeout(30)
def test_quantile_in_the_inf_bucket_is_the_highest_bound_and_none_is_nan() -> None:
    bench = _kafka_bench()
    after = {0.1: 1.0, 1.0: 1.0, INF: 10.0}
    assert bench.histogram_quantile(0.99, {}, after) == 1.0
    assert math.isnan(bench.histogram_quantile(0.99, after, after))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(30)
def test_scrape_reads_a_served_histogram_and_the_phase_quantiles() -> None:
    bench = _kafka_bench()
    registry = CollectorRegistry()
    name = bench.WORKER_HISTOGRAMS["kafka_to_output"]
    hist = Histogram(name, "test", buckets=(0.05, 0.1, 0.25), registry=registry)
    other = Histogram(bench.WORKER_HISTOGRAMS["end_to_end"], "t", registry=registry)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        assert bench.scrape_buckets(port, "audienceflow_no_such_histogram") is None
        before = bench.scrape_buckets(port, name)
        assert before == {0.05: 0.0, 0.1: 0.0, 0.25: 0.0, INF: 0.0}
        for v in [0.01] * 50 + [0.08] * 49 + [0.2]:
            hist.observe(v)
        other.observe(0.3)
        after = bench.scrape_buckets(port, name)
        assert after == {0.05: 50.0, 0.1: 99.0, 0.25: 100.0, INF: 100.0}
        got = bench._metric_quantiles({"kafka_to_output": before}, {"kafka_to_output": after})[
            "kafka_to_output"
        ]
        assert got["batches"] == 100
        assert got["p50"] == pytest.approx(50.0)
        assert got["p99"] == pytest.approx(100.0)  # rank 99 is the last under 100 ms
        assert bench._metric_quantiles(None, {"kafka_to_output": after}) is None
    finally:
        server.shutdown()
        thread.join(5)
    assert bench.scrape_buckets(port, name) is None  # nothing listening
