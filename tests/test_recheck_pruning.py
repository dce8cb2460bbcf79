"""A rule asks to be re-checked only when time alone can change its truth.

Timed functions report when their value will change (``Context.next_change``) and the
engine re-evaluates the user then. A false ``sessions(7d) >= 3`` cannot become true
without a new session, so what ``active_within(24h)`` reports beside it in an ``and``
cannot change the rule: the compiled rule drops it (``rule_compile``: each value's
``trend`` over time, ``Context._drop``). With the default rules this removed nine in
ten re-checks that changed nothing, each of which woke a user idle for a day out of the
cold tier.

- the trends: what each kind of expression does as time passes with no event;
- the re-checks asked for: dropped where the truth cannot change, kept where it can;
- an engine with the pruned rules outputs exactly what one without outputs, record for
  record, over random rule sets (``and``, ``or``, ``not``) and event streams, and it
  re-checks less;
- a rule set with a drifting value (re-read at every re-check) is not pruned.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from helpers import pure_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rule_registry import T0, make_event, sample_times, streams
from test_segment_skips import RULES, run

from audienceflow.operators import registry, segments
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.rule_compile import _Compiler, _preprocess
from audienceflow.operators.rules import compile_rule
from audienceflow.operators.segments import Evaluator, SegmentRule
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import INF, OpenSession, UserState

HOUR = 3600.0


def trend(source: str) -> int | None:
    text, durations = _preprocess(source)
    comp = _Compiler(text, durations, None, "any")
    return comp.trend(ast.parse(text, mode="eval").body)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("session_events > 3", 0),  # changes only with an event
        ("traits.plan == 'pro'", 0),
        ("sessions(1d)", -1),
        ("sessions(1d) > 3", -1),
        ("sessions(1d) >= 3", -1),
        ("3 < sessions(1d)", -1),
        ("sessions(1d) < 3", 1),
        ("sessions(1d) <= 3", 1),
        ("active_within(1h)", -1),
        ("not active_within(1h)", 1),
        ("active_within(1h) and sessions(7d) >= 3", -1),
        ("active_within(1h) or events(1h) > 2", -1),
        ("active_within(1h) and not active_within(2h)", None),  # one falls, one rises
        ("sessions(1d) + events(1h) > 4", -1),
        ("sessions(1d) - events(1h) > 4", None),
        ("sessions(1d) * 2 > 4", -1),
        ("sessions(1d) * -2 > 4", None),  # -2 is a negation, not a literal: not folded
        ("-1 * sessions(1d) > 4", None),
        ("sessions(1d) / 2 > 4", -1),
        ("0.5 * sessions(1d) > 4", -1),
        ("2 / sessions(1d) > 4", None),
        ("sessions(1d) == 2", None),
        ("1 < sessions(1d) < 3", None),
        ("since('Product Added') > 1h", None),
        ("count('Page Viewed', 1h) >= 2", None),  # not declared
        ("affinity('shoes') > 1", None),  # drifts
        ("in_session and session_events > 2", 0),
        ("(active_within(1h) or 2) > 1", None),  # an operand's value, not a truth
        ("(sessions(20h) >= 1 or 2) + 0 > 1.5", None),
    ],
)
def test_the_trend_of_a_value_as_time_passes_without_events(
    source: str, expected: int | None
) -> None:
    assert trend(source) == expected


@pytest.mark.timeout(60)
def test_every_declared_trend_is_of_a_timed_entry_that_never_rises() -> None:
    declared = {e.name for e in registry.REGISTRY.values() if e.over_time is not None}
    assert declared == {"sessions", "events", "active_within"}
    for name in declared:
        assert registry.REGISTRY[name].timed and registry.REGISTRY[name].over_time == -1


def _user(sessions: list[float], last: float) -> UserState:
    u = UserState("u", first_seen=0.0)
    for start in sessions:
        u.history.append((start, 3, 3, 60.0, 0, 0.0, 0, False))
    u.last_ts = last
    u.total_events = 10
    return u


def _recheck(source: str, user: UserState, now: float, prune: bool) -> float:
    ev = Evaluator([SegmentRule.parse("s", source)], prune=prune)
    ev.evaluate(user, now, HOUR)
    return user.segment_recheck


@pytest.mark.timeout(60)
def test_a_false_and_through_a_count_that_only_falls_asks_for_no_recheck() -> None:
    rule = "active_within(24h) and sessions(7d) >= 3"
    now = 10 * HOUR
    # One session: the rule is false until a new one starts, whatever time does.
    assert _recheck(rule, _user([0.0], now), now, prune=False) == now + 24 * HOUR
    assert _recheck(rule, _user([0.0], now), now, prune=True) == INF
    # Three sessions: true, and time makes it false when the user has been away a day.
    three = [0.0, HOUR, 2 * HOUR]
    assert _recheck(rule, _user(three, now), now, prune=True) == now + 24 * HOUR
    assert _recheck(rule, _user(three, now), now, prune=False) == now + 24 * HOUR


@pytest.mark.timeout(60)
def test_a_false_count_comparison_alone_asks_for_no_recheck_and_a_true_one_does() -> None:
    rule = "sessions(24h) > 1"
    now = 10 * HOUR
    assert _recheck(rule, _user([0.0], now), now, prune=False) == 24 * HOUR
    assert _recheck(rule, _user([0.0], now), now, prune=True) == INF
    assert _recheck(rule, _user([0.0, HOUR], now), now, prune=True) == 24 * HOUR
    # A rising truth: true stays true, false can turn true (when the session leaves).
    rising = "sessions(24h) < 2"
    assert _recheck(rising, _user([0.0], now), now, prune=True) == INF
    assert _recheck(rising, _user([0.0, HOUR], now), now, prune=True) == 24 * HOUR


@pytest.mark.timeout(60)
def test_a_true_or_operand_that_never_falls_drops_what_the_or_reported() -> None:
    rule = "sessions(24h) < 2 or active_within(1h)"
    now = 10 * HOUR
    # sessions(24h) < 2 holds (one session) and cannot stop holding as time passes.
    # Unpruned, the session leaving the day is reported, though the rule holds after it.
    assert _recheck(rule, _user([9 * HOUR], now), now, prune=False) == 33 * HOUR
    assert _recheck(rule, _user([9 * HOUR], now), now, prune=True) == INF
    # Two sessions: only active_within can end the rule: its lapse is kept.
    user = _user([8 * HOUR, 9 * HOUR], now)
    assert _recheck(rule, user, now, prune=True) == now + HOUR


@pytest.mark.timeout(60)
def test_an_operand_of_unknown_trend_keeps_every_recheck() -> None:
    rule = "count('Page Viewed', 1h) >= 1 and sessions(7d) >= 3"
    compiled = compile_rule("x", rule)
    assert "_drop" in compiled.pruned_source  # the sessions comparison can drop
    rule = "since('Product Added') > 1h and count('Page Viewed', 1h) >= 1"
    compiled = compile_rule("x", rule)
    assert compiled.pruned_source == compiled.fast_source  # nothing known to drop
    # A true operand that falls: the ``or`` may change when it lapses (not dropped).
    compiled = compile_rule("x", "active_within(1h) or since('Product Added') > 1h")
    assert compiled.pruned_source == compiled.fast_source


@pytest.mark.timeout(60)
def test_a_rule_set_reading_a_drifting_value_is_not_pruned() -> None:
    plain = [SegmentRule.parse("a", "active_within(24h) and sessions(7d) >= 3")]
    assert Evaluator(plain).prune
    drifting = [*plain, SegmentRule.parse("b", "affinity('shoes') > 1")]
    assert not Evaluator(drifting).prune
    reader = [*plain, SegmentRule.parse("c", "in_segment('a')")]
    assert not Evaluator(reader).prune


def _drifts(source: str) -> bool:
    per = "category" if "(category)" in source or "category ==" in source else None
    return "drift" in registry.time_kinds(compile_rule("x", source, per).names)


STEADY = [r for r in RULES if not _drifts(r)]


class Counting(ShardEngine):
    """Counts the segment re-checks it runs."""

    rechecks = 0

    def _segments(self, user: Any, at: float, out: list[Any], cands: list[Any],
                  focus: str | None = None, changed: frozenset[str] | None = None,
                  decide: bool = True) -> None:  # fmt: skip
        if changed is segments.AT_RECHECK:
            self.rechecks += 1
        super()._segments(user, at, out, cands, focus, changed, decide)


def _config(tmp: Path, rules: list[str]) -> Settings:
    lines = ["time: {allowed_lateness: 0s}", "state: {max_window_events: 1000}", "segments:"]
    for i, source in enumerate(rules):
        lines.append(f"  s{i}:")
        if "(category)" in source or "category ==" in source:
            lines.append("    per: category")
        lines.append("    when: '" + source.replace("'", "''") + "'")
    path = tmp / "rules.yaml"
    path.write_text("\n".join(lines) + "\n")
    return Settings.load(path, environ={})


def _outputs_match(cfg: Settings, spec: list[Any], key: tuple[str, ...]) -> tuple[int, int]:
    """Run ``spec`` through an engine with pruned rules and one without; the outputs
    must be equal. Their numbers of re-checks."""
    ts = T0
    events = []
    for i, (gap, kind, device) in enumerate(spec):
        ts += gap
        events.append(make_event(i, ts, kind, device))
    times = sorted({t for r in key for t in sample_times(events, r)})
    pruned = Counting(cfg, ShardState("shard-000"), partitions=["p"])
    assert pruned.evaluator.prune
    everything = Counting(cfg, ShardState("shard-000"), partitions=["p"])
    everything.evaluator = Evaluator(cfg.segments, prune=False)
    assert run(pruned, events, times) == run(everything, events, times)
    return pruned.rechecks, everything.rechecks


# Where a wrong trend would drop a re-check the truth needs: each operand first and last,
# true and false, in ``and``, ``or`` and under ``not``. Windows other than the session
# timeout (30m), whose close re-evaluates every timed rule and would hide a lost re-check.
TRICKY = [
    "active_within(45m) or sessions(2h) >= 2",
    "sessions(2h) >= 2 or active_within(45m)",
    "active_within(45m) and sessions(2h) >= 2",
    "sessions(2h) >= 2 and active_within(45m)",
    "not active_within(45m) or events(1h) >= 2",
    "events(1h) >= 2 and not active_within(45m)",
    "not (sessions(2h) >= 2 and active_within(45m))",
    "not (active_within(45m) or events(1h) >= 2)",
    "sessions(2h) < 2 or active_within(45m)",
    "2 <= sessions(2h) and 1 < events(1h) + sessions(2h)",
    "active_within(45m) and since('Product Added') > 1h",
    "active_within(2h) or sessions(3h) >= 2",
    "count('Page Viewed', 1h) >= 1 or sessions(2h) >= 2",
    # An account's trait (a group call's, which is no activity) beside a lapsing window.
    "group.employees >= 100 and active_within(45m)",
    "not active_within(45m) or group.plan == 'enterprise'",
    "group.plan == 'free' or sessions(2h) >= 2",
]


@pure_only  # counts through a ShardEngine subclass
@pytest.mark.timeout(600)
@pytest.mark.parametrize("rule", TRICKY)
def test_pruned_rechecks_of_each_shape_never_change_the_outputs(
    rule: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = _config(tmp_path_factory.mktemp("rules"), [rule])

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(streams)
    def check(spec: list[Any]) -> None:
        _outputs_match(cfg, spec, (rule,))

    check()


@pure_only  # counts through a ShardEngine subclass
@pytest.mark.timeout(900)
def test_pruned_rechecks_never_change_the_outputs(tmp_path_factory: pytest.TempPathFactory) -> None:
    configs: dict[tuple[str, ...], Settings] = {}
    totals = {"pruned": 0, "all": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(st.sampled_from(STEADY), min_size=1, max_size=3, unique=True),
        st.lists(
            st.tuples(
                st.sampled_from(STEADY),
                st.sampled_from([" and ", " or "]),
                st.sampled_from(STEADY),
                st.booleans(),
            ),
            max_size=3,
        ),
        streams,
    )
    def check(rules: list[str], pairs: list[tuple[str, str, str, bool]], spec: list[Any]) -> None:
        combined = [
            f"{'not ' if negate else ''}(({a}){op}({b}))"
            for a, op, b, negate in pairs
            if a != b and not ("category" in a and "category" in b)
        ]
        key = tuple(rules + combined)
        if key not in configs:
            configs[key] = _config(tmp_path_factory.mktemp("rules"), list(key))
        pruned, everything = _outputs_match(configs[key], spec, key)
        totals["pruned"] += pruned
        totals["all"] += everything

    check()
    # The mechanism under test did drop re-checks (none dropped: nothing was tested).
    assert totals["pruned"] < totals["all"]


@pytest.mark.timeout(60)
def test_an_open_session_alone_is_counted_as_the_history_is() -> None:
    """The inline ``sessions`` (no closed session) drops as the called one does."""
    rule = "active_within(24h) and sessions(7d) >= 2"
    now = 10 * HOUR
    user = _user([], now)
    user.session = OpenSession("u:1", start=9 * HOUR, last=now, events=1)
    assert _recheck(rule, user, now, prune=False) == now + 24 * HOUR
    user = _user([], now)
    user.session = OpenSession("u:1", start=9 * HOUR, last=now, events=1)
    assert _recheck(rule, user, now, prune=True) == INF


# Found by an adversarial review: a rule that can raise (false then) may start raising as
# time passes, and an ``and``/``or`` used as a number moves as its operands' values. Three
# page views on mobile, then one two days later; windows other than the defaults' rules'.
REVIEWED = [
    "events(1d) / sessions(1d) > 5 or device == 'mobile'",
    "(not active_within(45m) and traits.score > 1) or device == 'mobile'",
    "not ((active_within(45m) or traits.score > 1) and device == 'desktop')",
    "(active_within(45m) or 2) > 1",
    "(sessions(20h) >= 1 or 2) + 0 > 1.5",
]


@pure_only  # counts through a ShardEngine subclass
@pytest.mark.timeout(120)
@pytest.mark.parametrize("rule", REVIEWED)
def test_a_rule_that_can_raise_or_uses_a_truth_as_a_number_keeps_its_rechecks(
    rule: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = _config(tmp_path_factory.mktemp("rules"), [rule])
    spec = [(0.0, 0, 0), (60.0, 0, 0), (60.0, 0, 0), (2 * 86400.0, 0, 0)]
    _outputs_match(cfg, spec, (rule,))
