"""Redis emptied under a running worker: the shards write back every profile they hold."""

from __future__ import annotations

import pytest
from test_cold import MIN, T0, _at, _engine, _page

from audienceflow.operators.records import ControlRequest


@pytest.mark.timeout(30)
def test_held_profiles_are_every_warm_and_cold_user_but_a_deleted_one() -> None:
    eng = _engine("1h", AUDIENCEFLOW_STATE__HISTORY_WINDOW="1d")
    eng.on_items([_page("ann", 0), _page("bob", 1), _page("cid", 2), _at(2)])
    eng.on_items([_page("bob", 100), _at(100)])  # ann and cid went cold at 09:00
    assert set(eng.state.cold) == {"ann", "cid"} and set(eng.state.users) == {"bob"}
    eng.on_items([ControlRequest("delete", ("cid",), "r1", T0 + 101 * MIN), _at(101)])
    held = list(eng.held_profiles())
    assert sorted(p.user_id for p in held) == ["ann", "bob"]
    assert set(eng.state.cold) == {"ann"}  # read, not revived
    ann = next(p for p in held if p.user_id == "ann")
    # By hand: one page event at 08:00, one session (closed at 08:30); of 09:41.
    assert (ann.fields["events"], ann.fields["sessions"]) == (1, 1)
    assert ann.fields["updated_at"] == "2026-03-02T09:41:00.000Z"
    # ``within``: ann's last event is 101 min old, bob's 1 min.
    assert [p.user_id for p in eng.held_profiles(within=60 * MIN)] == ["bob"]
