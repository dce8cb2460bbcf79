"""The lazy containers of ``UserState`` (``state.NO_ITEMS``): None until first written,
then each user's own dict, and written to snapshots as the empty map they stand for.

Each writer below is a real write site of one container, applied to a fresh user.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from audienceflow.operators import codec, features
from audienceflow.operators.merge import merge_users
from audienceflow.operators.records import Event
from audienceflow.operators.rules import compile_rule
from audienceflow.operators.state import NO_ITEMS, Limits, UserState
from audienceflow.operators.triggers import TimerTrigger

pytestmark = pytest.mark.timeout(60)

LAZY = ("video_completions", "timers", "cancelled", "tracks", "traits")
TIMER = TimerTrigger("cart", "email", start_on=frozenset({"Product Added"}),
                     cancel_on=frozenset({"Order Completed"}), after=900.0)  # fmt: skip


def _ev(name: str, ts: float, etype: str = "track", **props: object) -> Event:
    return Event(f"m{ts}", "u", None, etype, name, ts, "other", dict(props))


def _video(u: UserState, tag: str) -> None:
    features.update(u, _ev("Video Content Completed", 10.0, category=tag), features.FeatureSpec())


def _timer(u: UserState, tag: str) -> None:
    TIMER.receive(u, _ev("Product Added", 10.0 + len(tag)))


def _cancel(u: UserState, tag: str) -> None:
    TIMER.receive(u, _ev("Order Completed", 10.0 + len(tag)))


def _count(u: UserState, tag: str) -> None:
    (t,) = compile_rule("x", "count(['A'], 10m) >= 1").trackers
    t.observe(u, _ev("A", 10.0 + len(tag)), Limits())


def _distinct(u: UserState, tag: str) -> None:
    (t,) = compile_rule("x", "distinct(properties.category, 10m) >= 2").trackers
    t.observe(u, _ev("A", 10.0, category=tag), Limits())


def _identify(u: UserState, tag: str) -> None:
    ev = Event("m", "u", None, "identify", "", 10.0, "identity", {}, traits={"plan": tag})
    features.identify(u, ev, frozenset({"plan"}), frozenset(), Limits())


def _group(u: UserState, tag: str) -> None:
    ev = Event("m", "u", None, "group", "", 10.0, "identity", {}, traits={"plan": tag})
    features.group(u, ev, frozenset({"plan"}), frozenset(), Limits())


WRITERS: list[tuple[str, Callable[[UserState, str], None]]] = [
    ("video_completions", _video),
    ("timers", _timer),
    ("cancelled", _cancel),
    ("tracks", _count),
    ("tracks", _distinct),
    ("traits", _identify),
    ("traits", _group),
]


def test_a_new_user_holds_none_of_the_lazy_containers() -> None:
    u = UserState("u", 0.0)
    assert [getattr(u, f) for f in LAZY] == [None] * len(LAZY)


@pytest.mark.parametrize(("field", "write"), WRITERS, ids=[w.__name__ for _, w in WRITERS])
def test_a_write_makes_the_users_own_container_and_keeps_what_was_written(
    field: str, write: Callable[[UserState, str], None]
) -> None:
    a, b = UserState("a", 0.0), UserState("b", 0.0)
    write(a, "shoes")
    mine = getattr(a, field)
    assert type(mine) is dict and mine, "the write is kept in a dict of the user's"
    assert getattr(b, field) is None, "another user's container is untouched"
    write(b, "hats")
    theirs = getattr(b, field)
    assert theirs is not mine, "two users never share a container"
    assert getattr(a, field) == mine and "hats" not in repr(mine)
    # Written twice, the user keeps the one container (a write never replaces it).
    write(a, "shoes")
    assert getattr(a, field) is mine


@pytest.mark.parametrize(("field", "write"), WRITERS, ids=[w.__name__ for _, w in WRITERS])
def test_a_lazy_container_written_then_decoded_is_the_users_own(
    field: str, write: Callable[[UserState, str], None]
) -> None:
    # Users revived from the same snapshot bytes (the cold tier) hold their own dicts.
    u = UserState("u", 0.0)
    data = codec.encode_user(u)
    a, b = codec.decode_user(data), codec.decode_user(data)
    assert getattr(a, field) is None
    write(a, "shoes")
    write(b, "shoes")
    assert getattr(a, field) is not getattr(b, field)


def test_an_unwritten_container_is_written_as_the_empty_map_of_the_format() -> None:
    lazy = UserState("u", 0.0)
    eager = UserState("u", 0.0)
    for f in LAZY:  # as a state from before lazy containers held them
        setattr(eager, f, {})
    assert codec.encode_user(lazy) == codec.encode_user(eager)
    back = codec.decode_user(codec.encode_user(eager))
    assert [getattr(back, f) for f in LAZY] == [None] * len(LAZY)


def test_no_items_is_read_only() -> None:
    # A stray write through ``user.X or NO_ITEMS`` raises rather than leak to every user.
    with pytest.raises(TypeError):
        NO_ITEMS["x"] = 1  # type: ignore[index]
    assert len(NO_ITEMS) == 0


def _filled(uid: str, tag: str) -> UserState:
    u = UserState(uid, 0.0)
    for _, write in WRITERS:
        if write is not _cancel:  # a cancel would end the timer: written on its own key
            write(u, tag)
    u.cancelled = {"other": 5.0 + len(tag)}
    return u


@pytest.mark.parametrize("halves", ["none+none", "none+full", "full+none", "full+full"])
def test_a_merge_keeps_each_container_of_its_own_and_none_when_empty(halves: str) -> None:
    # Each half either never written (None) or written by every writer; the merged
    # user's containers are its own dicts holding both halves', and None when both
    # halves' were.
    mine_full, theirs_full = (h == "full" for h in halves.split("+"))
    kept = _filled("a", "shoes") if mine_full else UserState("a", 0.0)
    other = _filled("b", "hats") if theirs_full else UserState("b", 0.0)
    before = {f: (getattr(kept, f), getattr(other, f)) for f in LAZY}
    expect = {f: {**(getattr(other, f) or {}), **(getattr(kept, f) or {})} for f in LAZY}
    merge_users(kept, other, "a", 10, 3600.0, Limits(), lambda half, name: None)
    for f in LAZY:
        got = getattr(kept, f)
        mine, theirs = before[f]
        if not (mine_full or theirs_full):
            assert got is None, f
            continue
        assert type(got) is dict and got.keys() == expect[f].keys(), f
        assert got is not theirs, f"{f}: the other half's dict is not taken over"
        if mine_full:
            assert got is mine, f"{f}: the kept half's dict is filled in place"
    if theirs_full and not mine_full:  # a later write reaches the merged user alone
        _video(kept, "more")
        assert "more" not in (other.video_completions or {})


@pytest.mark.parametrize("timers", [False, True], ids=["no_timers", "timers"])
def test_a_merge_ends_a_cart_the_other_half_ordered_after_with_or_without_timers(
    timers: bool,
) -> None:
    # ``merge._end_by`` returns early for a half without timers (None): the cart ended
    # by the other half's later order must be cleared before that, not skipped with it.
    kept, other = UserState("a", 0.0), UserState("b", 0.0)
    kept.cart = {"p1": ("shoes", 10.0, 1)}
    kept.cart_updated = 5.0
    if timers:
        _timer(kept, "x")
    other.last_order_ts = 7.0
    merge_users(kept, other, "a", 10, 3600.0, Limits(), lambda half, name: None)
    assert kept.cart == {}
