"""The shortcuts of the engine's per-event path never change what it computes.

Each shortcut is checked against the plain computation it replaces:
- ``segments.Evaluator`` works out once per kind of evaluation which rules to evaluate
  (its ``plan``): equal to testing every rule's kinds at every evaluation, and the
  engine's outputs through it equal those through that per-rule loop;
- ``ShardModels.sync`` returns at once below a threshold inside the current epoch:
  never for a time that ends an epoch, even one below the epoch's end as a float;
- the engine's table of what an event changed equals the kinds worked out per event;
- built-in triggers skip only the items they ignore; any other trigger gets all.
(The intent score from the raw tuple is checked bit for bit against River in
``tests/test_models.py``; ``records.iso`` against ``datetime`` in ``tests/test_records.py``.)
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path
from typing import Any

import pytest
from helpers import pure_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rule_registry import T0, make_event, sample_times, streams
from test_segment_skips import RULES, rule_config, run

from audienceflow.models.hook import build_models
from audienceflow.operators import registry, segments
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, ProfileUpdate, SegmentChange, Watermark
from audienceflow.operators.rules import Context
from audienceflow.operators.segments import SegmentRule
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import INF, OpenSession, UserState
from audienceflow.operators.triggers import SegmentTrigger

# Every ``changed`` the engine passes: what events change, a re-check's, a close's.
EVENT_KINDS = ["event", "session_start", "affinity", "video", "cart"]
CHANGED = [
    None,
    segments.AT_RECHECK,
    segments.AT_CLOSE,
    frozenset({"event"}),
    *(frozenset({"event", k}) for k in EVENT_KINDS[1:]),
    frozenset({"event", "session_start", "affinity", "video", "cart"}),
]


def reference_plan(
    rules: list[SegmentRule], changed: frozenset[str] | None, due: bool, first: bool
) -> tuple[list[str], bool]:
    """Which rules an evaluation runs, and whether a skipped one may own the re-check,
    worked out rule by rule as every evaluation did before plans were kept."""
    if changed is None:
        return [r.name for r in rules], False
    deadline = "drift" in changed
    # Due: the re-check's evaluation (an event at its instant makes it): time and drift.
    kinds = changed | {"time", "drift"} if due else changed
    names, partial = [], False
    for rule in rules:
        if kinds.isdisjoint(rule.changes_on) and not (first and rule.per is None):
            if not deadline or "time" in rule.changes_on:
                partial = True
            continue
        names.append(rule.name)
    return names, partial


def reference_evaluate(
    user: UserState,
    rules: list[SegmentRule],
    now: float,
    half_life: float,
    focus: str | None,
    changed: frozenset[str] | None,
    limits: Any,
    hits: dict[str, int] | None,
) -> list[SegmentChange]:
    """``segments.evaluate_all`` as it was before ``Evaluator``: the kinds of every rule
    tested at every evaluation. A plain rule is evaluated with the function the
    ``Evaluator`` uses: pruned unless a rule drifts (``tests/test_recheck_pruning.py``
    checks the pruning itself)."""
    if not any("drift" in registry.time_kinds(r.rule.names) for r in rules):
        rules = [_pruned(r) if r.per is None and r.rule._pruned else r for r in rules]
    deadline = changed is not None and "drift" in changed
    if changed is not None and now >= user.segment_recheck:
        changed = changed | {"time", "drift"}
    first = user.total_events <= 1
    ctx = Context(user, now, half_life)
    changes: list[SegmentChange] = []
    partial = False
    for rule in rules:
        if (
            changed is not None
            and changed.isdisjoint(rule.changes_on)
            and not (first and rule.per is None)
        ):
            if not deadline or "time" in rule.changes_on:
                partial = True
            continue
        changes.extend(rule.evaluate(user, ctx, focus, limits, hits))
    recheck = ctx.next_change
    if partial and now < user.segment_recheck < recheck:
        recheck = user.segment_recheck
    user.segment_recheck = recheck if recheck > now else INF
    return changes


def _pruned(rule: SegmentRule) -> SegmentRule:
    """``rule`` evaluated through its pruned fast function."""
    # ``replace``, not ``copy.copy``: a copy sets the fields of a frozen dataclass one by
    # one, which the compiled build's native ``SegmentRule`` refuses.
    twin = dataclasses.replace(rule)
    object.__setattr__(twin, "fast", rule.rule._pruned)
    return twin


class RuleByRule:
    """Reference: evaluates through ``reference_evaluate`` (as ``Evaluator.evaluate``)."""

    def __init__(self, rules: list[SegmentRule]) -> None:
        self.rules = rules

    def evaluate(
        self,
        user: UserState,
        now: float,
        half_life: float,
        focus: str | None = None,
        changed: frozenset[str] | None = None,
        limits: Any = None,
        hits: dict[str, int] | None = None,
    ) -> list[SegmentChange]:
        return reference_evaluate(user, self.rules, now, half_life, focus, changed, limits, hits)


def _config(tmp: Path, rules: list[str]) -> Settings:
    return rule_config(tmp, rules)


# Every combination an evaluation can ask a plan for: (what changed, due, first).
COMBINATIONS = [
    (c, d, f) for c in range(len(CHANGED)) for d in (False, True) for f in (False, True)
]


@pytest.mark.timeout(600)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(RULES), min_size=1, max_size=6, unique=True),
    st.permutations(COMBINATIONS),
)
def test_a_kept_plan_is_the_rule_by_rule_choice_for_every_kind_of_evaluation(
    sources: list[str], calls: list[tuple[int, bool, bool]]
) -> None:
    # One evaluator asked every combination of (what changed, a re-check due, a new
    # user) in any order, twice: a plan kept for one must never answer for another.
    rules = [
        SegmentRule.parse(f"s{i}", src, "category" if "category" in src else None)
        for i, src in enumerate(sources)
    ]
    ev = segments.Evaluator(rules)
    for which, due, first in calls + calls:
        changed = CHANGED[which]
        steps, partial = ev.plan(changed, due, first)
        assert ([s[1] for s in steps], partial) == reference_plan(rules, changed, due, first)
        assert all(s[0] is r for s in steps for r in rules if r.name == s[1])


def test_a_plan_tells_a_due_recheck_and_a_new_user_apart() -> None:
    rules = [
        SegmentRule.parse("timed", "active_within(1h)"),
        SegmentRule.parse("cart", "cart_items > 0"),
    ]
    ev = segments.Evaluator(rules)
    # A re-check not yet due evaluates no timed rule; a due one does.
    assert [s[1] for s in ev.plan(segments.AT_RECHECK, False, False)[0]] == []
    assert [s[1] for s in ev.plan(segments.AT_RECHECK, True, False)[0]] == ["timed"]
    # A new user: every plain rule, whatever changed.
    assert [s[1] for s in ev.plan(frozenset({"event"}), False, True)[0]] == ["timed", "cart"]
    assert [s[1] for s in ev.plan(frozenset({"event"}), False, False)[0]] == ["timed"]


def test_a_skipped_timed_rule_keeps_the_recheck_it_owns() -> None:
    """Worked by hand: sessions at 0 and 1000 s hold ``sessions(2h) >= 2`` until the first
    lapses at 7200 s; an event at 2000 s (no new session) skips that rule and evaluates
    ``active_within(3h)`` (next change 12800 s): the re-check stays at 7200 s, where the
    segment is left."""
    rules = [
        SegmentRule.parse("two", "sessions(2h) >= 2"),
        SegmentRule.parse("act", "active_within(3h)"),
    ]
    ev = segments.Evaluator(rules)
    u = UserState("u", first_seen=0.0)
    u.history.append((0.0, 3, 3, 60.0, 0, 0.0, 0, False))
    u.session = OpenSession("u:1", start=1000.0, last=1000.0, events=1)
    u.total_events, u.last_ts = 4, 1000.0
    changes = ev.evaluate(u, 1000.0, 3600.0)
    assert sorted((c.segment, c.change) for c in changes) == [("act", "enter"), ("two", "enter")]
    assert u.segment_recheck == 7200.0
    u.total_events, u.last_ts, u.session.last = 5, 2000.0, 2000.0
    assert ev.evaluate(u, 2000.0, 3600.0, changed=frozenset({"event"})) == []
    assert u.segment_recheck == 7200.0
    (change,) = ev.evaluate(u, 7200.0, 3600.0, changed=segments.AT_RECHECK)
    assert (change.segment, change.change) == ("two", "exit")
    # The session at 1000 s lapses at 8200 s, but ``sessions(2h) >= 2``, false, cannot
    # hold again without a new session: no re-check for it (``rule_compile``'s trends),
    # only ``active_within(3h)``'s.
    assert u.segment_recheck == 12800.0


@pytest.mark.timeout(900)
@pure_only  # sets a stand-in evaluator, which a native ShardEngine refuses
def test_the_engine_through_kept_plans_outputs_what_rule_by_rule_evaluation_does(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    configs: dict[tuple[str, ...], Settings] = {}

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.sampled_from(RULES), min_size=1, max_size=5, unique=True), streams)
    def check(rules: list[str], spec: list[tuple[float, int, int]]) -> None:
        key = tuple(rules)
        if key not in configs:
            configs[key] = _config(tmp_path_factory.mktemp("rules"), list(key))
        cfg = configs[key]
        ts = T0
        events: list[Event] = []
        for i, (gap, kind, device) in enumerate(spec):
            ts += gap
            events.append(make_event(i, ts, kind, device))
        times = sorted({t for r in key for t in sample_times(events, r)})
        fast = run(ShardEngine(cfg, ShardState("shard-000"), partitions=["p"]), events, times)
        reference = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
        reference.evaluator = RuleByRule(cfg.segments)  # type: ignore[assignment]
        slow = run(reference, events, times)
        assert fast == slow

    check()


# --- the models' sync ----------------------------------------------------------------

# (epoch, k): k * epoch rounds up as a float, so a time below that float already
# divides to k: epoch k - 1 has ended there (found by search; see the test below).
UNEVEN = [(3.3, 36), (0.1, 78), (1 / 3, 36)]


def test_these_times_end_an_epoch_below_its_end_as_a_float() -> None:
    for epoch, k in UNEVEN:
        now = math.nextafter(k * epoch, -math.inf)
        assert now < k * epoch and math.floor(now / epoch) == k


@pytest.mark.parametrize(("epoch", "k"), UNEVEN)
def test_sync_learns_at_the_first_time_an_epoch_has_ended_even_below_its_float_end(
    epoch: float, k: int
) -> None:
    m = build_models(Settings.load(environ={}), "shard-000")
    m.epoch = epoch
    m.sync(0.0)
    m.sync((k - 1) * epoch + epoch / 2)  # well inside epoch k - 1
    assert m.built == k - 1
    m.sync(math.nextafter(k * epoch, -math.inf))  # a quiet threshold at k * epoch skips it
    assert m.built == k


@given(
    st.floats(0.01, 1e5, allow_nan=False),
    st.integers(0, 10**7),
    st.floats(-1e-6, 1e-6),
)
def test_sync_is_quiet_only_where_the_epoch_has_not_ended(
    epoch: float, built: int, offset: float
) -> None:
    m = build_models(Settings.load(environ={}), "shard-000")
    m.epoch = epoch
    m.built = built
    m.versions = {built - 1: m.versions.get(0), built: None}  # type: ignore[dict-item]
    quiet = m._quiet()
    assert quiet < (built + 1) * epoch
    now = quiet * (1 + offset)
    if now < quiet:
        assert math.floor(now / epoch) <= built
    now = math.nextafter(quiet, -math.inf)
    assert math.floor(now / epoch) <= built


def test_sync_quiet_threshold_is_a_cache_left_out_of_snapshots() -> None:
    m = build_models(Settings.load(environ={}), "shard-000")
    m.sync(T0)
    assert m.quiet_until > -math.inf
    assert "quiet_until" not in m.__getstate__()
    restored = pickle.loads(pickle.dumps(m))
    assert restored.quiet_until == -math.inf  # the exact path until it syncs
    restored.sync(T0 + 7200.0)
    assert restored.built == m.built + 2 and restored.quiet_until > m.quiet_until


# --- what an event changed ---------------------------------------------------------------


def _kinds_per_event(cfg: Settings, ev: Event, category: str, new_session: bool) -> set[str]:
    """What an event changed, worked out per event as before the table."""
    fs = cfg.features
    kinds = {"event"}
    if new_session:
        kinds.add("session_start")
    if category:
        kinds.add("affinity")
        if ev.name in fs.video_complete_events:
            kinds.add("video")
    names = fs.cart_add_events | fs.cart_remove_events | fs.order_events | fs.cart_refresh_events
    if ev.name in names:
        kinds.add("cart")
    return kinds


def test_the_table_of_what_an_event_changed_equals_working_it_out() -> None:
    cfg = Settings.load(environ={})
    engine = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    fs = cfg.features
    names = sorted(
        fs.video_complete_events | fs.cart_add_events | fs.cart_remove_events
        | fs.order_events | fs.cart_refresh_events | {"Page Viewed", "Signed Up"}
    )  # fmt: skip
    for _ in range(2):  # the second round from the table
        for name in names:
            for category in ("", "shoes"):
                for new in (False, True):
                    ev = Event("m", "u", None, "track", name, T0, "other", {})
                    got = engine._changed_by(ev, bool(category), new)
                    assert set(got) == _kinds_per_event(cfg, ev, category, new), (name, category)


# --- which triggers receive what -------------------------------------------------------------


class Recording(SegmentTrigger):
    """A trigger of another type (as an experiment's wrapper is): it must get everything."""

    def receive(self, user: UserState, item: Any) -> list[Any]:
        self.payload.setdefault("seen", []).append(type(item).__name__)
        return super().receive(user, item)


def test_only_builtin_triggers_skip_items_they_ignore() -> None:
    cfg = Settings.load(environ={})
    rec = Recording("rec", "rec", segment="recent_engager", payload={})
    cfg.triggers.append(rec)
    engine = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    assert rec in engine._on_event and rec in engine._on_change
    assert not any(type(t) is SegmentTrigger for t in engine._on_event)
    ev = Event("m1", "u1", None, "page", "Home", T0, "navigation", {})
    engine.on_items([ev])
    engine.finish()
    assert "Event" in rec.payload["seen"] and "SegmentChange" in rec.payload["seen"]


# --- users touched, for live profiles ----------------------------------------------------


def test_only_an_engine_that_emits_profiles_keeps_the_users_it_touched() -> None:
    cfg = Settings.load(environ={})
    events = [
        Event(f"m{i}", f"u{i % 3}", None, "page", "Home", T0 + i, "navigation", {})
        for i in range(6)
    ]
    quiet = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    quiet.on_items([*events, Watermark("p", T0 + 100)])
    assert quiet.state.processed == 6
    assert quiet._touched == {}  # it used to hold every user id ever seen, never read
    live = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"], emit_profiles=True)
    out = live.on_items([*events, Watermark("p", T0 + 100)])
    assert sorted(p.user_id for p in out if type(p) is ProfileUpdate) == ["u0", "u1", "u2"]
    assert live._touched == {}  # emitted and cleared ...
    more = Event("m9", "u1", None, "page", "Home", T0 + 9, "navigation", {})
    out = live.on_items([more, Watermark("p", T0 + 200)])
    assert [p.user_id for p in out if type(p) is ProfileUpdate] == ["u1"]  # ... and kept


# --- the next deadline, worked out inline ---------------------------------------------------


@pytest.mark.timeout(60)
def test_a_pending_timer_holds_eviction_back_until_it_has_fired(tmp_path: Path) -> None:
    """Worked by hand: idle users are forgotten 1 h after their last event, a cart timer
    fires 2 h after an add. A user who adds at T0 keeps their state until the timer
    fires at T0 + 2 h (one action), and is evicted at once after it."""
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        "time: {allowed_lateness: 0s}\n"
        "state: {history_window: 1h}\n"
        "triggers:\n  cart_abandonment: {after: 2h}\n"
    )
    cfg = Settings.load(cfg_path, environ={})
    engine = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    add = Event("m1", "u1", None, "track", "Product Added", T0, "conversion",
                {"product_id": "p1", "price": 5.0})  # fmt: skip
    out = engine.on_items([add, Watermark("p", T0 + 5400.0)])  # 1.5 h: past eviction
    assert "u1" in engine.state.users and engine.state.evicted == 0
    out += engine.on_items([Watermark("p", T0 + 7300.0)])
    actions = [r for r in out if type(r).__name__ == "Action"]
    assert [(a.action, a.at) for a in actions] == [("cart_abandonment", T0 + 7200.0)]
    assert "u1" not in engine.state.users and engine.state.evicted == 1
