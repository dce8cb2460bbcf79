"""Stored recommendation lists ranked when first read (``PendingRecs``), not at each refresh.

Every test compares with the eager recommender: the same stream, every refresh ranked at
once (a view that owes nothing: ``owed = None``). A pending list must read what it would
have read then, whoever reads it (a trigger, the profile, the codec, a pickle, a merge),
and be ranked before its view, dropped from the two kept exact, changes under it.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import generate
import orjson
import pytest
from helpers import Feeder
from test_models import engine_events, feed, new_engine
from test_reco import RECO_ON, item_event

from audienceflow.models.reco import ItemModel
from audienceflow.models.recommender import Recommender
from audienceflow.operators.codec import decode_user, encode_user
from audienceflow.operators.features import profile
from audienceflow.operators.merge import merge_users
from audienceflow.operators.reco_settings import RecoSettings
from audienceflow.operators.records import Event
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import Limits, PendingRecs, UserState, recommendations_of

pytestmark = pytest.mark.timeout(240)

CONFIG = (
    "models:\n  epoch: 1m\n  recommendations:\n    enabled: true\n"
    "triggers:\n  cart_abandonment:\n    attach: [cart, recommendations]\n    n: 3\n"
)


@contextmanager
def eager() -> Iterator[None]:
    """Views that owe nothing: every refresh ranks at once, as before lists were pending."""
    mp = pytest.MonkeyPatch()
    view = ItemModel.view

    def eager_view(self: ItemModel) -> ItemModel:
        v = view(self)
        v.owed = None
        return v

    mp.setattr(ItemModel, "view", eager_view)
    try:
        yield
    finally:
        mp.undo()


def _replay(settings: Settings, events: list[Event]) -> tuple[list[Any], dict[str, Any]]:
    engine = new_engine(settings)
    # One batch: the users a batch touched are encoded at its end (ranking their lists)
    out = feed(engine, events, batch=len(events) * 4)
    lists = {uid: recommendations_of(u) for uid, u in sorted(engine.state.users.items())}
    return out, lists


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A stream across many one-minute model epochs, replayed lazily and eagerly."""
    cfg = tmp_path_factory.mktemp("lazy") / "c.yaml"
    cfg.write_text(CONFIG)
    settings = Settings.load(cfg, environ={})
    lines, _ = generate.generate(users=150, seed=4, item_groups=6)
    events = engine_events(lines, settings)
    settled: list[int] = []
    mp = pytest.MonkeyPatch()
    settle = ItemModel._settle

    def counting(self: ItemModel) -> None:  # lists still owed when their view retired
        settled.append(sum(p.view is v for v in self.retired or () for p in v.owed or ()))
        settle(self)

    mp.setattr(ItemModel, "_settle", counting)
    try:
        lazy = _replay(settings, events)
    finally:
        mp.undo()
    with eager():
        want = _replay(settings, events)
    return {"lazy": lazy, "eager": want, "settled": sum(settled)}


def test_lists_owed_by_a_retiring_view_are_ranked_before_the_model_changes_under_it(
    runs: dict[str, Any],
) -> None:
    assert runs["settled"] > 0  # the stream does leave lists pending past their view
    assert runs["lazy"][1] == runs["eager"][1]
    assert not [
        d
        for lists in runs["lazy"][1].values()
        for d in (lists or {}).values()
        if type(d) is not list
    ]


def test_a_trigger_attaches_the_list_a_pending_refresh_stored(runs: dict[str, Any]) -> None:
    def attached(out: list[Any]) -> list[Any]:
        return [
            (r.user_id, r.at, orjson.dumps(r.payload.get("recommendations")))
            for r in out
            if type(r).__name__ == "Action" and "recommendations" in r.payload
        ]

    got, want = attached(runs["lazy"][0]), attached(runs["eager"][0])
    assert any(p != b"[]" for _, _, p in want)  # lists were attached
    assert got == want


# --- one user, one frozen view -------------------------------------------------------


def _view_and_user() -> tuple[Recommender, dict[str, ItemModel], UserState]:
    """A view that learned p1~p2 (co-viewed) and p3, and a user who viewed p1."""
    rec = Recommender(RecoSettings(), frozenset())
    for i, (u, pid) in enumerate([("a", "p1"), ("a", "p2"), ("b", "p1"), ("b", "p2"), ("c", "p3")]):
        other = UserState(u, first_seen=0.0)
        rec.on_event(other, item_event(u, "Product Viewed", float(i), product_id=pid, category="c"))
    rec.learn_until(math.inf)
    views = rec.freeze()
    user = UserState("u", first_seen=9.0)
    rec.on_event(user, item_event("u", "Product Viewed", 9.0, product_id="p1", category="c"), views)
    return rec, views, user


def _pending(rec: Recommender, views: dict[str, ItemModel], user: UserState) -> list[Any]:
    """Store a pending products list for ``user``; the list an eager refresh stores."""
    want = rec.recommend(user, rec.cfg.n, 10.0, "products", views)
    rec.refresh(user, 10.0, ("products",), views)
    assert isinstance((user.recommendations or {})["products"], PendingRecs)
    return want


def test_the_profile_reads_a_pending_list_ranked() -> None:
    rec, views, user = _view_and_user()
    want = _pending(rec, views, user)
    assert want and want[0]["product_id"] == "p2"
    assert profile(user, 10.0, 86400.0)["recommendations"] == {"products": want}


def test_the_codec_writes_a_pending_list_ranked_in_the_format_of_a_ranked_one() -> None:
    rec, views, user = _view_and_user()
    want = _pending(rec, views, user)
    ranked = decode_user(encode_user(user))  # (the encoding ranks the user's list in place)
    assert ranked.recommendations == {"products": want}
    eager_user = decode_user(encode_user(user))
    eager_user.recommendations = {"products": want}
    assert encode_user(eager_user) == encode_user(ranked)


def test_a_pickled_user_holds_lists_never_a_pending_one() -> None:
    rec, views, user = _view_and_user()
    want = _pending(rec, views, user)
    data = pickle.dumps(user)
    assert b"PendingRecs" not in data and b"ItemModel" not in data
    assert pickle.loads(data).recommendations == {"products": want}


def test_a_merge_takes_the_other_halfs_pending_list_ranked() -> None:
    rec, views, other = _view_and_user()
    want = _pending(rec, views, other)
    kept = UserState("k", first_seen=0.0)
    merged = merge_users(kept, other, "k", 10, 86400.0, Limits())
    assert merged.recommendations == {"products": want}
    assert type(merged.recommendations["products"]) is list


def test_a_merge_keeping_its_own_lists_drops_the_other_halfs_pending_one() -> None:
    rec, views, other = _view_and_user()
    _pending(rec, views, other)
    pending = (other.recommendations or {})["products"]
    kept = UserState("k", first_seen=0.0)
    kept.recommendations = {"products": []}
    merge_users(kept, other, "k", 10, 86400.0, Limits())
    assert isinstance(pending, PendingRecs) and pending.view is None and pending.args == ()


def test_a_refresh_replacing_a_pending_list_drops_it_unranked() -> None:
    rec, views, user = _view_and_user()
    _pending(rec, views, user)
    first = (user.recommendations or {})["products"]
    rec.refresh(user, 11.0, ("products",), views)
    assert isinstance(first, PendingRecs) and first.view is None and first.result is None


def test_a_deleted_users_pending_lists_are_dropped_from_their_view() -> None:
    from helpers import at
    from test_identity import CART, e

    from audienceflow.models.hook import build_models
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.records import ControlRequest
    from audienceflow.operators.validate import Taxonomy, Validator, parse_timestamp

    settings = Settings.load(environ=RECO_ON)
    validate = Validator(Taxonomy.default())
    lines = [
        e(0, "Product Viewed", user="bob", product_id="p7", category="c"),
        e(1, "Product Viewed", user="amy", product_id="p7", category="c"),
        e(70, "Product Added", user="user-7781", **CART),
        e(71, "Home", user="bob"),
        e(72, "Home", user="bob"),  # stream time past the cart add: it is applied
        e(73, "Home", user="bob"),
        e(100, "Home", user="amy"),  # stream time passes the request
    ]
    events = [validate(orjson.dumps(x), f"in:{i}") for i, x in enumerate(lines)]
    state = ShardState("shard-000")
    state.models = build_models(settings, "shard-000")
    engine = ShardEngine(settings, state, models=state.models)
    feeder = Feeder(settings)
    engine.on_items(feeder.items(events[:-1]))
    reco = state.models.reco
    assert reco is not None

    def owed_for(uid: str) -> list[PendingRecs]:
        return [
            p
            for m in reco.models.values()
            for v in [*m.views, *(m.retired or ())]
            for p in v.owed or ()
            if p.view is not None and uid in p.args
        ]

    assert owed_for("user-7781") and owed_for("bob")  # the test sees them when they are there
    request = ControlRequest("delete", ("user-7781",), "r1", parse_timestamp(at(74)))
    engine.on_items([request, *feeder.items(events[-1:])])
    assert "user-7781" not in state.users
    assert not owed_for("user-7781") and owed_for("bob")


@pytest.mark.parametrize("path", [Path("examples/demo.yaml")])
def test_the_demo_config_leaves_lists_pending(path: Path) -> None:
    """The mechanism is on where it is meant to pay: the demo's recommender views owe."""
    settings = Settings.load(Path(__file__).parent.parent / path, environ={})
    lines, _ = generate.generate(users=20, seed=4, item_groups=3)
    engine = new_engine(settings)
    feed(engine, engine_events(lines, settings))
    reco = engine.state.models.reco if engine.state.models is not None else None
    assert reco is not None
    assert any(m.views and m.views[-1].owed is not None for m in reco.models.values())


def test_a_views_owed_lists_stay_bounded_by_what_it_still_owes() -> None:
    """A view current for an epoch sees every refresh of its users, nearly all replaced:
    its ``owed`` lets go of those (``compact_owed``), and keeps every list still owed."""
    from audienceflow.models.reco import _OWED_MIN

    rec, views, user = _view_and_user()
    others = [UserState(f"o{i}", first_seen=9.0) for i in range(3)]
    for i in range(3 * _OWED_MIN):
        rec.refresh(user, 10.0 + i, ("products",), views)
        if i < len(others):  # lists still owed, stored early, never replaced
            rec.refresh(others[i], 10.0, ("products",), views)
    owed = views["products"].owed
    assert owed is not None and len(owed) <= 2 * _OWED_MIN
    stored = [(u.recommendations or {})["products"] for u in (user, *others)]
    assert all(isinstance(p, PendingRecs) and p.view is views["products"] for p in stored)
    assert all(any(p is q for q in owed) for p in stored)  # nothing still owed let go
