"""The engine's per-event and per-deadline shortcuts do what they replace.

- ``ShardEngine._schedule`` offers a user to the cold tier (``_file_cool``) only when it
  is idle (no open session, no timer, not finishing): the others were refused by
  ``_file_cool`` itself, at the cost of a call per event;
- ``ShardEngine._event`` holds an event itself instead of calling ``_hold``, comparing
  times alone: an event at the time of the run's last item goes after it;
- ``ShardEngine._run_due`` works out a user's next deadline by comparisons instead of
  ``min``, ``max`` and ``_evict_at``: the same deadline, the same choice on a tie.

Each is compared with the plain computation, and each has a test that fails when the
shortcut is taken out or its boundary moved.
"""

from __future__ import annotations

import copy
import functools
import heapq
import math
from typing import Any

import pytest
from helpers import pure_only
from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators import segments, sessions
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import ControlRequest, Event, Watermark
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import INF, OpenSession, UserState

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z


def _engine(cold_after: str = "1h") -> ShardEngine:
    return ShardEngine(_cold_settings(cold_after), ShardState("shard-000"), partitions=["p"])


@functools.cache
def _cold_settings(cold_after: str) -> Settings:
    return Settings.load(
        environ={
            "AUDIENCEFLOW_STATE__COLD_AFTER": cold_after,
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s",  # stream time = the watermark
        }
    )


def _page(mid: str, uid: str, ts: float) -> Event:
    return Event(mid, uid, None, "page", "Home", ts, "navigation", {})


# --- _schedule: only an idle user is offered to the cold tier ------------------------


def _users() -> dict[str, UserState]:
    busy = UserState("busy", first_seen=T0, last_ts=T0)
    busy.session = OpenSession("busy:s", start=T0, last=T0)
    timed = UserState("timed", first_seen=T0, last_ts=T0)
    timed.timers = {"abandoned_cart": T0 + 900.0}
    both = UserState("both", first_seen=T0, last_ts=T0)
    both.session = OpenSession("both:s", start=T0, last=T0)
    both.timers = {"abandoned_cart": T0 + 900.0}
    idle = UserState("idle", first_seen=T0, last_ts=T0)
    return {u.user_id: u for u in (busy, timed, both, idle)}


@pure_only  # sets an engine method (_file_cool), read-only on a native class
def test_scheduling_offers_only_an_idle_user_to_the_cold_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eng = _engine("1h")
    offered: list[str] = []
    real = eng._file_cool
    monkeypatch.setattr(eng, "_file_cool", lambda u: (offered.append(u.user_id), real(u)))
    for user in _users().values():
        eng._schedule(user)
    assert offered == ["idle"]
    assert eng.state.cool_filed == {"idle": T0 + 3600.0}
    eng._schedule(_users()["idle"])  # filed already: not offered again
    assert offered == ["idle"]


def test_scheduling_files_for_the_cold_tier_what_file_cool_alone_would() -> None:
    # The plain computation: ``_file_cool`` asked for every user.
    for finishing in (False, True):
        for cold_after in ("1h", "0s"):
            fast, plain = _engine(cold_after), _engine(cold_after)
            fast._finishing = plain._finishing = finishing
            for name, user in _users().items():
                fast._schedule(user)
                if plain.cold_after is not None:
                    plain._file_cool(_users()[name])
            assert fast.state.cool_filed == plain.state.cool_filed
            assert fast.state.cooling == plain.state.cooling


@pure_only  # sets an engine method (_file_cool), read-only on a native class
def test_no_user_is_offered_to_the_cold_tier_when_it_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eng = _engine("0s")
    monkeypatch.setattr(eng, "_file_cool", lambda u: pytest.fail("offered"))
    eng._schedule(_users()["idle"])


# --- _event: an event held without ``_hold`` -----------------------------------------


@pure_only  # sets an engine method (_arrive), read-only on a native class
def test_an_event_at_the_time_of_the_runs_last_item_joins_the_run_an_earlier_one_the_heap() -> None:
    eng = _engine()
    st = eng.state
    eng.on_items([Watermark("p", T0)])
    eng.on_items(
        [_page("a", "ann", T0 + 10), _page("b", "bob", T0 + 10), _page("c", "cat", T0 + 9)]
    )
    assert [e[3].message_id for e in st.held_run] == ["a", "b"]
    assert [e[3].message_id for e in st.held] == ["c"]
    applied: list[str] = []
    real = eng._arrive
    eng._arrive = lambda ev, out: (applied.append(ev.message_id), real(ev, out))  # type: ignore[method-assign]
    eng.on_items([Watermark("p", T0 + 10)])
    assert applied == ["c", "a", "b"]


items = st.lists(st.tuples(st.sampled_from(["event", "control"]), st.integers(1, 6)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(items)
def test_events_are_held_where_hold_would_put_them(steps: list[tuple[str, int]]) -> None:
    eng = _engine()
    eng.on_items([Watermark("p", T0)])
    plain = ShardState("shard-000")
    for i, (kind, k) in enumerate(steps):
        ts = T0 + k
        if kind == "event":
            ev = _page(f"m{i}", f"u{i}", ts)
            eng.on_items([ev])
            plain.held_seq += 1
            entry: tuple[float, int, int, Any] = (ts, 1, plain.held_seq, ev)
        else:
            req = ControlRequest("suppress", (f"x{i}",), f"r{i}", ts)
            eng.on_items([req])
            plain.held_seq += 1
            entry = (ts, 0, plain.held_seq, req)
        # ``_hold``, as it was called for every event:
        if not plain.held_run or plain.held_run[-1] < entry:
            plain.held_run.append(entry)
        else:
            heapq.heappush(plain.held, entry)
    assert list(eng.state.held_run) == list(plain.held_run)
    assert eng.state.held == plain.held


# --- _run_due: the next deadline by comparisons ---------------------------------------


class _Recording(ShardEngine):
    """Records what ``_run_due`` fires, and takes the fired deadline away (as the real
    consequences do) so the loop moves on."""

    fired: list[tuple[str, float]]

    def _closed(self, user: UserState, session: Any, out: list[Any]) -> None:
        pass  # recorded by the ``_segments`` call after it, which is told the time

    def _segments(
        self,
        user: UserState,
        at: float,
        out: list[Any],
        cands: list[Any],
        focus: str | None = None,
        changed: frozenset[str] | None = None,
        decide: bool = True,
    ) -> None:
        if changed is segments.AT_CLOSE:
            self.fired.append(("close", at))
        elif changed is segments.AT_RECHECK:
            self.fired.append(("recheck", at))
            user.segment_recheck = INF

    def _decide(self, user: UserState, cands: list[Any], out: list[Any]) -> None:
        first = min(user.timers, key=lambda k: (user.timers[k], k))
        self.fired.append(("timer", user.timers.pop(first)))

    def _drop_unowned(self, user: UserState, due: float) -> None:
        pass  # the recorded timers stand in for triggers' own: none is left over

    def _evict(self, user: UserState, at: float, out: list[Any]) -> None:
        self.fired.append(("evict", at))


class _Plain(_Recording):
    """``_run_due`` as it was: ``min`` of the four deadlines, ``_evict_at`` called."""

    def _evict_at(self, user: UserState) -> float:
        if self._finishing or user.session is not None or user.timers:
            return INF
        return max(user.last_ts, user.last_seen, user.first_seen) + self.cfg.sessions.history_window

    def _run_due(self, user: UserState, until: float, out: list[Any], evict: bool = True) -> None:
        spec = self.cfg.sessions
        for _ in range(10_000):
            s = user.session
            close_at = INF if s is None else min(s.last + spec.timeout, s.start + spec.max_length)
            timers = user.timers
            timer_at = min(timers.values()) if timers else INF
            evict_at = self._evict_at(user) if evict and not timers else INF
            # A re-check comes after the events of its instant, unless an eviction is due
            # then: it fires first, and the re-check with it (just before it).
            recheck = user.segment_recheck
            after = math.nextafter(recheck, INF)
            due = min(close_at, timer_at, after, evict_at)
            if due > until or due == INF:
                return
            if due == close_at:
                assert s is not None
                reason = "inactivity" if due == s.last + spec.timeout else "max_length"
                self._closed(user, sessions.close(user, due, reason, spec), out)
                self._segments(user, due, out, [], changed=segments.AT_CLOSE)
            elif due == timer_at:
                self._decide(user, [], out)
            elif due in (after, recheck):  # at an eviction, the re-check goes first
                self._segments(user, recheck, out, [], changed=segments.AT_RECHECK)
            else:
                self._evict(user, due, out)
                return
        raise RuntimeError("no convergence")


@functools.cache
def _settings() -> Settings:
    return Settings.load(environ={"AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s"})


def _recording(cls: type[_Recording], finishing: bool) -> _Recording:
    eng = cls(_settings(), ShardState("shard-000"), partitions=["p"])
    eng.timers = []  # the timer branch is recorded by ``_decide``
    eng.fired = []
    eng._finishing = finishing
    return eng


# Times on a grid of the session timeout (30 min), so deadlines tie often.
grid = st.integers(-4, 4).map(lambda k: T0 + k * 1800.0)
maybe = st.one_of(st.just(INF), grid)


@st.composite
def due_users(draw: st.DrawFn) -> UserState:
    user = UserState("u", first_seen=draw(grid) - 86400.0 * draw(st.sampled_from([0, 30, 31])))
    user.last_ts = draw(st.one_of(st.just(-INF), grid.map(lambda t: t - 30 * 86400.0)))
    user.last_seen = draw(st.one_of(st.just(-INF), grid.map(lambda t: t - 30 * 86400.0)))
    if draw(st.booleans()):
        start = draw(grid)
        length = draw(st.sampled_from([0.0, 1800.0, 86400.0 - 1800.0, 86400.0]))
        user.session = OpenSession("u:s", start=start - length, last=start)
    user.timers = {f"t{i}": draw(grid) for i in range(draw(st.integers(0, 2)))}
    user.segment_recheck = draw(maybe)
    return user


@pure_only  # subclasses ShardEngine, a native class compiled
@settings(max_examples=400, deadline=None)
@given(due_users(), grid, st.booleans(), st.booleans())
def test_run_due_fires_what_the_min_of_the_deadlines_fired(
    user: UserState, until: float, evict: bool, finishing: bool
) -> None:
    fast, plain = _recording(_Recording, finishing), _recording(_Plain, finishing)
    fast._run_due(copy.deepcopy(user), until, [], evict)
    plain._run_due(copy.deepcopy(user), until, [], evict)
    assert fast.fired == plain.fired


@pure_only  # subclasses ShardEngine, a native class compiled
@pytest.mark.parametrize("kind", ["close", "max_length", "timer", "recheck", "evict"])
def test_run_due_fires_a_deadline_at_its_time_not_a_float_before(kind: str) -> None:
    spec = _settings().sessions
    user = UserState("u", first_seen=T0, last_ts=T0)
    if kind == "close":
        user.session = OpenSession("u:s", start=T0, last=T0)
        due = T0 + spec.timeout
    elif kind == "max_length":
        user.session = OpenSession("u:s", start=T0 - spec.max_length + 60.0, last=T0)
        due = T0 + 60.0
    elif kind == "timer":
        user.timers = {"t": T0 + 60.0}
        due = T0 + 60.0
    elif kind == "recheck":
        user.segment_recheck = T0 + 60.0
        due = T0 + 60.0
    else:
        due = T0 + spec.history_window
    name = "close" if kind == "max_length" else kind
    # A re-check is filed just after its instant, after the events of it, at its time.
    when = math.nextafter(due, INF) if kind == "recheck" else due
    before = math.nextafter(when, -INF)
    eng = _recording(_Recording, False)
    eng._run_due(copy.deepcopy(user), before, [])
    assert eng.fired == []
    eng._run_due(copy.deepcopy(user), when, [])
    assert eng.fired[:1] == [(name, due)]
    eng.fired = []
    eng._run_due(copy.deepcopy(user), before, [], evict=False)  # an event's catch-up
    assert eng.fired == []
    eng._run_due(copy.deepcopy(user), when, [], evict=False)
    assert eng.fired[:1] == ([] if kind == "evict" else [(name, due)])
