"""The skip lists of time-driven evaluations never change what is output.

At a segment re-check only the rules reading values that time changes are evaluated
(``segments.AT_RECHECK``), at a session close only those a close can change
(``segments.AT_CLOSE``). Over random sets of rules drawn from every registry entry
and random event streams of one user, with stream time advanced to every instant a
window or session can lapse, the engine's outputs must equal, record for record and in
order, those of an engine that evaluates every rule at every re-check and close.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import pure_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rule_registry import PROBES, T0, make_event, sample_times, streams

from audienceflow.operators import segments
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Watermark
from audienceflow.operators.settings import Settings

RULES = sorted({p for probes in PROBES.values() for p in probes})
# Every registry entry's probes, each with random other rules.
# Each rule set gets a rule reading the first one's segment, which a re-check can change.
IN_SEGMENT = "in_segment('s0')"


class SkipLists(ShardEngine):
    """Time-driven evaluations through the skip lists (what the engine passes them as)."""

    _deadline = False
    _closing = False

    def _run_due(self, user: Any, until: float, out: list[Any], evict: bool = True) -> None:
        self._deadline = True  # in here, an evaluation is a close's or a re-check's
        try:
            super()._run_due(user, until, out, evict)
        finally:
            self._deadline = False

    def _closed(self, user: Any, session: Any, out: list[Any]) -> None:
        self._closing = True
        super()._closed(user, session, out)

    def _segments(
        self,
        user: Any,
        at: float,
        out: list[Any],
        cands: list[Any],
        focus: str | None = None,
        changed: frozenset[str] | None = None,
        decide: bool = True,
    ) -> None:
        closing, self._closing = self._closing, False
        if changed is None and self._deadline:
            changed = segments.AT_CLOSE if closing else segments.AT_RECHECK
        super()._segments(user, at, out, cands, focus, changed, decide)


class Everything(ShardEngine):
    """Reference: every rule at every re-check and close (events still skip as usual)."""

    def _segments(
        self,
        user: Any,
        at: float,
        out: list[Any],
        cands: list[Any],
        focus: str | None = None,
        changed: frozenset[str] | None = None,
        decide: bool = True,
    ) -> None:
        if changed is segments.AT_CLOSE or changed is segments.AT_RECHECK:
            changed = None
        super()._segments(user, at, out, cands, focus, changed, decide)


def rule_config(tmp: Path, rules: list[str]) -> Settings:
    lines = [
        "time: {allowed_lateness: 0s}",
        "state: {max_window_events: 1000}",
        # Affinities decay within the streams' spans, so unannounced exits happen.
        "features: {affinity_half_life: 20m}",
        "segments:",
    ]
    per_category = ["(category)" in r or "category ==" in r for r in rules]
    # A per-category s0 is held as 's0:<category>': the reader names one the streams use.
    reader = "in_segment('s0:shoes')" if per_category[0] else IN_SEGMENT
    for i, source in enumerate([*rules, reader]):
        lines.append(f"  s{i}:")
        if i < len(rules) and per_category[i]:
            lines.append("    per: category")
        when = source.replace("'", "''")
        lines.append(f"    when: '{when}'")
    path = tmp / "rules.yaml"
    path.write_text("\n".join(lines) + "\n")
    return Settings.load(path, environ={})


def run(engine: ShardEngine, events: list[Event], times: list[float]) -> list[Any]:
    out: list[Any] = []
    pending = list(events)
    for t in times:
        batch: list[Event | Watermark] = []
        while pending and pending[0].ts <= t:
            batch.append(pending.pop(0))
        out.extend(engine.on_items([*batch, Watermark("p", t)]))
    out.extend(engine.finish())
    return out


@pure_only
@pytest.mark.timeout(900)
@pytest.mark.parametrize("entry", sorted(PROBES), ids=str)
def test_skip_lists_at_recheck_and_close_never_change_the_outputs(
    entry: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    configs: dict[tuple[str, ...], Settings] = {}

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.sampled_from(PROBES[entry]),
        st.lists(st.sampled_from(RULES), max_size=3, unique=True),
        st.lists(st.tuples(st.sampled_from(RULES), st.sampled_from([" and ", " or "]))),
        streams,
    )
    def check(
        probe: str,
        others: list[str],
        pairs: list[tuple[str, str]],
        spec: list[tuple[float, int, int]],
    ) -> None:
        rules = [probe, *(r for r in others if r != probe)]
        # Some rules combine two of different kinds (a per-category one stays per category).
        combined = [f"({a}){op}({b})" for (a, op), b in zip(pairs, rules, strict=False) if a != b]
        key = tuple(rules + combined)
        if key not in configs:
            configs[key] = rule_config(tmp_path_factory.mktemp("rules"), list(key))
        cfg = configs[key]
        ts = T0
        events = []
        for i, (gap, kind, device) in enumerate(spec):
            ts += gap
            events.append(make_event(i, ts, kind, device))
        times = sorted({t for r in key for t in sample_times(events, r)})
        fast = run(SkipLists(cfg, ShardState("shard-000"), partitions=["p"]), events, times)
        full = run(Everything(cfg, ShardState("shard-000"), partitions=["p"]), events, times)
        assert fast == full

    check()


def test_a_recheck_skips_rules_time_cannot_change_and_a_close_those_it_cannot() -> None:
    def kinds(source: str, per: str | None = None) -> frozenset[str]:
        return segments.SegmentRule.parse("x", source, per).changes_on

    assert kinds("cart_items > 0").isdisjoint(segments.AT_RECHECK | segments.AT_CLOSE)
    assert kinds("video_completions(category) >= 1", "category").isdisjoint(
        segments.AT_RECHECK | segments.AT_CLOSE
    )
    assert kinds("session_events >= 2").isdisjoint(segments.AT_RECHECK)
    assert not kinds("session_events >= 2").isdisjoint(segments.AT_CLOSE)
    assert not kinds("total_orders >= 1").isdisjoint(segments.AT_CLOSE)
    for drifting in ("affinity('shoes') > 1", "top_category() == 'a'", "cluster == 1"):
        assert not kinds(drifting).isdisjoint(segments.AT_RECHECK), drifting
        assert not kinds(drifting).isdisjoint(segments.AT_CLOSE), drifting
    assert "time" in kinds("events(1h) >= 2") and "time" not in segments.AT_RECHECK
