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
def test_quantile_in_the_inf_bucket_is_the_highest_bound_and_what_cannot_be_read_is_nan() -> None:
    bench = _kafka_bench()
    after = {0.1: 1.0, 1.0: 1.0, INF: 10.0}
    q = bench.histogram_quantile
    assert q(0.99, {}, after) == 1.0
    assert math.isnan(q(0.99, after, after))  # nothing observed between the scrapes
    assert math.isnan(q(0.5, {0.1: 2.0, 1.0: 2.0, INF: 2.0}, after))  # a count went down
    assert math.isnan(q(0.5, {0.1: 0.0, INF: 0.0}, after))  # other bounds before
    assert math.isnan(q(0.5, {}, {0.1: 1.0, 1.0: 2.0}))  # no +Inf bucket


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(30)
def test_scrape_reads_served_histograms_and_the_phase_quantiles_only() -> None:
    bench = _kafka_bench()
    registry = CollectorRegistry()
    names = list(bench.WORKER_HISTOGRAMS.values())
    hist = Histogram(names[0], "test", buckets=(0.05, 0.1, 0.25), registry=registry)
    other = Histogram(names[1], "t", buckets=(0.05, 0.1, 0.25), registry=registry)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        assert bench.scrape_histograms(port, [names[0], "audienceflow_no_such"]) is None
        for v in [0.2] * 300:  # before the phase (a warm-up): slow, all of them
            hist.observe(v)
        before = bench.scrape_histograms(port, names)
        assert before[names[0]] == {0.05: 0.0, 0.1: 0.0, 0.25: 300.0, INF: 300.0}
        for v in [0.01] * 50 + [0.08] * 49 + [0.2]:
            hist.observe(v)
        other.observe(0.3)
        after = bench.scrape_histograms(port, names)
        assert after[names[0]] == {0.05: 50.0, 0.1: 99.0, 0.25: 400.0, INF: 400.0}
        keys = list(bench.WORKER_HISTOGRAMS)
        got = bench._metric_quantiles(
            {k: before[n] for k, n in zip(keys, names, strict=True)},
            {k: after[n] for k, n in zip(keys, names, strict=True)},
        )
        assert got[keys[0]]["batches"] == 100  # the phase's, not the warm-up's 300
        assert got[keys[0]]["p50"] == pytest.approx(50.0)
        assert got[keys[0]]["p99"] == pytest.approx(100.0)  # rank 99 is the last under 100 ms
        assert got[keys[1]] == {"p50": 250.0, "p99": 250.0, "batches": 1}  # the +Inf one
        assert bench._metric_quantiles(None, {keys[0]: after[names[0]]}) is None
        # A histogram with nothing observed in the phase: no figure, not NaN in the JSON.
        assert (
            bench._metric_quantiles({keys[0]: after[names[0]]}, {keys[0]: after[names[0]]}) is None
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert bench.scrape_histograms(port, names) is None  # nothing listening


@pytest.mark.timeout(30)
def test_the_outputs_of_the_last_events_sent_are_reported_apart_from_the_steady_ones() -> None:
    """Once the producer stops, the events of the window's last lateness + tick wait for
    their partition to turn idle (``time.idle_after``): reported as ``end_of_input_ms``,
    not in the steady percentiles, which they made the whole tail of. An event at exactly
    the cut is still a steady one; the window's bounds still hold."""
    from datetime import UTC, datetime

    import orjson

    bench = _kafka_bench()
    start, end, held = 1_000.0, 1_010.0, 0.04
    kinds = {"t.segments": "segment_changes", "t.sessions": "sessions"}

    def out(at: float, latency: float, topic: str = "t.segments") -> tuple:
        iso = datetime.fromtimestamp(at, UTC).isoformat()
        value = orjson.dumps({"at": iso})
        return (topic, at + latency, int((at + latency) * 1000), value)

    records = [
        out(1_005.0, 0.050),  # steady
        out(end - held, 0.060),  # at the cut: steady
        out(end - 0.02, 2.05),  # held back by the end of input
        out(end, 2.03),  # the window's last instant: held
        out(end + 0.001, 9.0),  # after the window: neither
        out(start - 0.001, 9.0),  # before it: neither
        out(1_005.0, 9.0, "t.sessions"),  # timer-driven: neither
    ]
    got = bench.latencies(records, kinds, start, end, held_s=held)
    assert got["latency_ms"]["n"] == 2
    assert got["latency_ms"]["max"] == pytest.approx(60.0, abs=0.5)
    assert got["end_of_input_ms"]["n"] == 2
    assert got["end_of_input_ms"]["max"] == pytest.approx(2050.0, abs=0.5)
    assert got["end_of_input_ms"]["held_s"] == held
    # Without the split (the default), the held ones are the steady tail.
    whole = bench.latencies(records, kinds, start, end)
    assert whole["latency_ms"]["n"] == 4
    assert whole["latency_ms"]["max"] == pytest.approx(2050.0, abs=0.5)
