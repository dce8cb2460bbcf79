"""Hostile inputs whose work is bounded: counted in steps or calls, never timed."""

from __future__ import annotations

from typing import Any

import orjson

from audienceflow.operators import control
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.privacy import Privacy
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
