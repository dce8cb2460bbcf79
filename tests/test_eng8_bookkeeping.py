"""``ShardEngine._run_due``, called for a popped deadline (``evict``), files the user
under the next deadline it has just worked out (``_refile``) instead of ``_advance``
calling ``_schedule`` to work it out again: the same deadline, the same cold filing.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from helpers import pure_only
from hypothesis import given, settings
from hypothesis import strategies as st
from test_deadline_fast_paths import T0, _cold_settings, _Recording, due_users, grid

from audienceflow.operators import deadlines
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.state import INF, OpenSession, UserState

# --- _run_due files the next deadline it worked out ------------------------------------


class _NoRefile(_Recording):
    """``_advance`` as it was: ``_run_due`` files nothing, ``_schedule`` is called after."""

    def _refile(self, user: UserState, due: float) -> None:
        pass


def _filing(cls: type[_Recording], finishing: bool) -> _Recording:
    eng = cls(_cold_settings("1h"), ShardState("shard-000"), partitions=["p"])
    eng.timers = []
    eng.fired = []
    eng._finishing = finishing
    return eng


def _filed(eng: ShardEngine) -> tuple[list[tuple[float, str]], dict[str, float]]:
    return deadlines.entries(eng.state), dict(eng.state.cool_filed)


@settings(max_examples=400, deadline=None)
@given(
    due_users(),
    grid,
    st.booleans(),
    st.sampled_from([INF, T0 - 7200.0, T0 + 7200.0]),
    st.booleans(),
)
@pure_only  # subclasses ShardEngine, a native class compiled
def test_a_popped_deadline_files_the_user_as_schedule_did(
    user: UserState, until: float, finishing: bool, scheduled: float, near: bool
) -> None:
    fast, plain = _filing(_Recording, finishing), _filing(_NoRefile, finishing)
    if near:  # every deadline drawn is in a minute reached: it goes to the heap itself
        for eng in (fast, plain):
            eng.state.near_min = deadlines.bucket_of(T0 + 40 * 86400.0, deadlines.MINUTE)
    a, b = copy.deepcopy(user), copy.deepcopy(user)
    a.scheduled = b.scheduled = scheduled
    fast._run_due(a, until, [])
    plain._run_due(b, until, [])
    assert fast.fired == plain.fired
    if not plain.fired or plain.fired[-1][0] != "evict":  # an evicted user is filed nowhere
        plain._schedule(b)
    assert a.scheduled == b.scheduled
    assert _filed(fast) == _filed(plain)


def test_a_closed_session_files_its_user_for_eviction_and_cooling() -> None:
    eng = ShardEngine(_cold_settings("1h"), ShardState("shard-000"), partitions=["p"])
    user = eng.state.users["u"] = UserState("u", first_seen=T0, last_ts=T0)
    user.session = OpenSession("u:s", start=T0, last=T0)
    close = T0 + eng.cfg.sessions.timeout
    eng._schedule(user)
    assert user.scheduled == close and "u" not in eng.state.cool_filed  # busy: not cooling
    out: list[Any] = []
    eng._advance(close, out)
    assert [type(r).__name__ for r in out if type(r).__name__ == "Session"] == ["Session"]
    # A re-check (filed just after its instant), or the eviction (at its instant, with a
    # re-check there): filed by _run_due.
    recheck, evict = user.segment_recheck, T0 + eng.cfg.sessions.history_window
    due = math.nextafter(recheck, INF) if recheck < evict else evict
    assert user.scheduled == due
    assert deadlines.entries(eng.state) == [(due, "u")]
    assert eng.state.cool_filed["u"] == T0 + 3600.0  # idle now: filed to go cold


def test_a_deadline_that_moved_later_is_filed_again_at_its_new_time() -> None:
    eng = ShardEngine(_cold_settings("1h"), ShardState("shard-000"), partitions=["p"])
    user = eng.state.users["u"] = UserState("u", first_seen=T0, last_ts=T0)
    user.session = OpenSession("u:s", start=T0, last=T0)
    eng._schedule(user)
    user.session.last = T0 + 60.0  # a later event extended the session
    out: list[Any] = []
    eng._advance(T0 + eng.cfg.sessions.timeout, out)
    assert out == []  # nothing was due: the deadline is filed again, later
    assert user.scheduled == T0 + 60.0 + eng.cfg.sessions.timeout
    assert deadlines.entries(eng.state) == [(user.scheduled, "u")]
    eng._advance(user.scheduled - 1e-3, out)
    assert out == []
    eng._advance(user.scheduled, out)
    assert [r.end_reason for r in out if type(r).__name__ == "Session"] == ["inactivity"]
