"""(review29) Code reading an event's time from its line agrees with validation on it."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from audienceflow.flows.live import retimed
from audienceflow.flows.report import _raw_time


def test_the_live_demo_retimes_a_line_by_its_derived_time() -> None:
    lines = [
        b'{"type":"page","userId":"u","timestamp":"2026-03-02T08:00:00Z"}',
        b'{"type":"page","userId":"u","originalTimestamp":"2026-03-02T08:00:09Z",'
        b'"sentAt":"2026-03-02T08:00:10Z","receivedAt":"2026-03-02T08:00:04Z"}',
    ]
    out = retimed(lines, datetime(2026, 11, 30, tzinfo=UTC))
    assert [offset for offset, _, _ in out] == [0.0, 3.0]
    assert orjson.loads(out[1][1])["timestamp"] == "2026-11-30T00:00:03.000Z"


def test_the_report_buckets_a_dead_letter_by_its_utc_hour_derived_or_given() -> None:
    assert _raw_time('{"timestamp":"2026-03-02T09:30:00+01:00"}') == "2026-03-02T08:00Z"
    assert _raw_time('{"receivedAt":"2026-03-02T09:30:00Z"}') == "2026-03-02T09:00Z"
    assert _raw_time('{"timestamp":"noon"}') is None
