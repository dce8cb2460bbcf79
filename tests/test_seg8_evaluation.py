"""A segment evaluation compiled whole (``segments.compile_evaluation``) does what
``Evaluator.evaluate`` did through its plan loop.

- one compiled function per plan holds the context reset, the steps and the re-check,
  specialised per plan (the pending re-check kept only where a skipped rule may own it);
- the plan is found by one dict read of ``changed`` and two comparisons (due: ``now >=
  user.segment_recheck``; a new user: ``user.total_events <= 1``), not a key tuple;
- a plain rule reads ``c.user`` as the local ``user`` and the open session once (``_s``);
- plans with the same steps and re-check share one compiled function.

Compared with the rule-by-rule reference (``test_fast_paths.reference_evaluate``) over
random rule sets, users, times, kinds of change and memberships (Hypothesis).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import pure_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_fast_paths import PLAN_RULES, T0, _copy, _rule, times, users
from test_fast_paths import CHANGED, reference_evaluate

from audienceflow.operators import segments
from audienceflow.operators.records import SegmentChange
from audienceflow.operators.segments import Evaluator, SegmentRule
from audienceflow.operators.state import INF, Limits, OpenSession, UserState

HALF_LIFE = 3600.0


def _prepare(user: UserState, rules: list[SegmentRule], now: float, inside: set[int]) -> None:
    user.affinity = {"shoes": (2.0, now - 60.0), "hats": (1.0, now - 7200.0)}
    user.video_completions = {"shoes": 3, "hats": 1}
    user.cart = {"p1": ("shoes", 10.0, 2)}
    user.traits = {"plan": "pro"} if 0 in inside else {}
    user.segments = {r.name: now - 1.0 for i, r in enumerate(rules) if i in inside}
    user.segments["s0:hats"] = now - 1.0


def _json(changes: list[SegmentChange]) -> list[dict[str, Any]]:
    return [c.to_json() for c in changes]


evaluations = st.lists(
    st.tuples(
        users(),
        times,
        # Hypothesis favours the first of a list: the kinds and values where the choice
        # of plan matters come first.
        st.sampled_from([*CHANGED[1:], None]),
        # The re-check: due (at or before now, the boundary included) or not.
        st.sampled_from([0.0, 900.0, -900.0, INF]),
        st.sampled_from([2, 1, 0]),  # total_events: a new user is at most 1
        times,  # the latest event (active_within)
        st.sets(st.integers(0, 5)),
        st.sampled_from([None, "", "shoes"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PLAN_RULES), min_size=1, max_size=6, unique=True), evaluations)
def test_a_compiled_evaluation_outputs_what_rule_by_rule_evaluation_does(
    sources: list[str], runs: list[tuple[Any, ...]]
) -> None:
    # One evaluator through every draw in turn: a compiled evaluation kept for one
    # (what changed, due, new user) must never answer for another.
    rules = [_rule(i, s) for i, s in enumerate(sources)]
    shared = Evaluator(rules)
    for user, now, changed, recheck, total, last, inside, focus in runs:
        _prepare(user, rules, now, inside)
        user.segment_recheck = now + recheck
        user.total_events, user.last_ts = total, min(last, now)
        twin = _copy(user)
        got = shared.evaluate(user, now, HALF_LIFE, focus, changed, Limits(), {})
        want = reference_evaluate(twin, rules, now, HALF_LIFE, focus, changed, Limits(), {})
        assert _json(got) == _json(want)
        assert (user.segments, user.segment_recheck) == (twin.segments, twin.segment_recheck)


def _two_rules() -> Evaluator:
    # At a re-check: ``timed`` only when it is due; both for a new user.
    return Evaluator(
        [
            SegmentRule.parse("timed", "active_within(1h)"),
            SegmentRule.parse("cart", "cart_items > 0"),
        ]
    )


def _user(total_events: int, recheck: float) -> UserState:
    user = UserState("u", first_seen=T0)
    user.total_events, user.last_ts, user.segment_recheck = total_events, T0, recheck
    user.cart = {"p1": ("shoes", 10.0, 1)}
    return user


@pytest.mark.parametrize(
    ("recheck", "total_events", "want"),
    [
        (T0, 2, ["timed"]),  # due at exactly the re-check time
        (T0 + 1.0, 2, []),  # not yet due
        (T0 + 1.0, 1, ["timed", "cart"]),  # a new user (at most one event): every plain rule
        (T0 + 1.0, 0, ["timed", "cart"]),
    ],
)
def test_the_slot_of_an_evaluation_is_due_at_the_recheck_and_new_up_to_one_event(
    recheck: float, total_events: int, want: list[str]
) -> None:
    user = _user(total_events, recheck)
    changes = _two_rules().evaluate(user, T0, HALF_LIFE, None, segments.AT_RECHECK)
    assert [c.segment for c in changes] == want


def test_plans_with_the_same_steps_and_recheck_share_one_compiled_evaluation() -> None:
    ev = _two_rules()
    # A re-check not due and a close not due (no close kind in either rule) both
    # evaluate nothing and may keep the pending re-check: one function.
    a = ev._kept(segments.AT_RECHECK, False, False)
    b = ev._kept(frozenset({"drift", "close"}), False, False)
    assert (a[0], a[1]) == (b[0], b[1]) == ((), True)
    assert a[2] is b[2]
    # A new user evaluates ``cart`` either way; due, also ``timed``: a different function.
    assert ev._kept(segments.AT_RECHECK, True, True)[2] is not a[2]


@pure_only
def test_an_evaluation_runs_its_compiled_function_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ev = _two_rules()
    ran: list[Any] = []
    for slots in ev._runs.values():
        slots[:] = [lambda *a: ran.append(a) or [] for _ in slots]
    monkeypatch.setattr(ev, "_slot", lambda *a: pytest.fail("slot filled again"))
    user = _user(2, T0)
    ev._runs[segments.AT_RECHECK] = [None, lambda *a: ran.append(("due", *a)) or [], None, None]
    assert ev.evaluate(user, T0, HALF_LIFE, None, segments.AT_RECHECK, Limits(), None) == []
    assert ev.evaluate(user, T0, HALF_LIFE) == []
    assert [r[0] for r in ran] == ["due", user]


def test_only_a_partial_plan_keeps_the_pending_recheck() -> None:
    # A skipped rule may own the pending re-check only in a partial plan: the compiled
    # evaluation of a full plan sets the re-check from what it evaluated alone.
    rule = SegmentRule.parse("timed", "active_within(1h)")
    steps = ((rule, rule.name, True, rule.fast),)
    for partial, want in ((True, T0 + 60.0), (False, T0 + 3600.0)):
        run = segments.compile_evaluation(steps, partial, Evaluator([rule])._ctx)
        user = _user(2, T0 + 60.0)
        run(user, T0, HALF_LIFE, None, Limits(), None)
        assert user.segment_recheck == want


class _CountingSession(UserState):
    """A user whose open session counts its reads."""

    reads = 0

    @property  # type: ignore[override]
    def session(self) -> OpenSession | None:
        self.reads += 1
        return self._open

    @session.setter
    def session(self, value: OpenSession | None) -> None:
        self._open = value


@pure_only
def test_the_open_session_is_read_once_per_evaluation() -> None:
    rules = [
        SegmentRule.parse("pages", "session_page_views > 5 or session_max_page_seconds > 600"),
        SegmentRule.parse("long", "session_seconds > 10m"),
    ]
    user = _CountingSession("u", first_seen=T0)
    user.session = OpenSession("u:1", start=T0 - 60.0, last=T0, page_views=6)
    user.total_events = 3
    user.reads = 0
    changes = Evaluator(rules).evaluate(user, T0, HALF_LIFE, None, frozenset({"event"}))
    # Once for both rules (each read it inline before: two reads), once more for the
    # entry's explanation, through the variable.
    assert [c.segment for c in changes] == ["pages"]
    assert user.reads == 1 + 1


def test_local_reads_rewrite_only_the_user_its_session_and_now() -> None:
    assert segments._local_reads(
        "(0 if (_s := c.user.session) is None else _s.page_views) > 5"
    ) == ("(0 if _s is None else _s.page_views) > 5", True)
    assert segments._local_reads("c.user.total_events > 3 and c.sessions(60.0) > 1") == (
        "user.total_events > 3 and c.sessions(60.0) > 1",
        False,
    )
    # ``c.now`` is the evaluation's local ``now``; the context's other fields stay reads.
    assert segments._local_reads("c.now > 0") == ("now > 0", False)
    assert segments._local_reads("c.next_change > c.half_life") == (
        "c.next_change > c.half_life",
        False,
    )
