"""Hostile inputs whose work is bounded: counted in steps or calls, never timed."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from audienceflow.operators import control, scrub
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings
from tests.helpers import Feeder, at

# The decoding before it was done by ``str.replace``: one Python call per escape.
_PERCENT = re.compile(r"%(?:40|2[bBeEfF056]|3[aAdDfF]|2[89])")


def _decoded_by_regex(text: str) -> str:
    for _ in range(scrub._PERCENT_LEVELS):
        decoded = _PERCENT.sub(lambda m: scrub._PERCENT_CHARS[m.group(0)[1:].lower()], text)
        if decoded == text or "%25" not in text:
            return decoded
        text = decoded
    return text


def python_calls(fn: Callable[..., Any], *args: Any) -> int:
    """How many Python-level function calls ``fn(*args)`` makes, itself included (not C's)."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return calls


PERCENT_TEXT = st.lists(
    st.sampled_from(["%", "2", "5", "4", "0", "B", "b", "e", "E", "3", "a", "A", "F", "8", "x"]),
    max_size=16,
).map("".join)


@settings(max_examples=1000)
@given(PERCENT_TEXT)
@example("%2540")
@example("%252540%252B")
@example("%%4040")
@example("%2%40")
def test_percent_decoding_by_replacement_is_the_regex_decoding(text: str) -> None:
    assert scrub._percent_decoded(text) == _decoded_by_regex(text)


def test_percent_decoding_makes_no_python_call_per_escape() -> None:
    # 32 KB of ``%40`` or ``%2540`` took 4-7 ms in a lambda per escape: 70-110 normal lines.
    for text in ("%40" * 10_000, "%2540a" * 5_000, "%2B%3a%28" * 3_000):
        assert python_calls(scrub._percent_decoded, text) == 1
    assert scrub.has_pii("%2540".join(["ann", "example.com"]))


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
