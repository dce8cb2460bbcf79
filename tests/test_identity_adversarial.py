"""Identity merges and deletions, attacked by a second test writer.

Each stream is small enough to work out by hand (times in minutes after
2026-03-02T08:00Z; sessions close after 30 minutes of inactivity; the default
cart_abandonment timer fires 15 minutes after the last cart add, cancelled by an order).
The promise under test (README, Identity): a merge makes the two states one "as if
their events had come under one id"; a deletion leaves nothing of the person in state.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import Feeder, at
from tests.test_identity import CART, e, run

pytestmark = pytest.mark.timeout(120)

# An order of one line, for the known half (another device, logged in).
ORDER = {
    "order_id": "o1",
    "total": 40.0,
    "products": [{"product_id": "p9", "price": 40.0, "quantity": 1}],
}


def as_known(stream: list[dict[str, Any]], user: str, anon: str) -> list[dict[str, Any]]:
    """The same stream with ``user`` on every event of ``anon`` (what the merge mimics)."""
    return [dict(x, userId=user) if x.get("anonymousId") == anon else x for x in stream]


def profile(r: dict[str, Any], user: str) -> dict[str, Any]:
    (p,) = [p for p in r["profiles"] if p["user_id"] == user]
    return p


def test_two_open_sessions_merged_into_one_count_as_one_session(tmp_path: Path) -> None:
    """a1 opens a session at 0, u1 (another device) one at 2, the identify at 5 joins
    them: one session (0..2, two page views) and a profile that says 1 session, not 2."""
    stream = [
        e(0, "Home", anon="a1"),
        e(2, "Home", user="u1"),
        e(5, etype="identify", user="u1", anon="a1"),
        e(100, "Home", user="zz"),  # moves stream time past u1's session close at 32
    ]
    r = run(tmp_path, stream)
    mine = [s for s in r["sessions"] if s["user_id"] == "u1"]
    assert [(s["start"], s["end"], s["page_views"]) for s in mine] == [(at(0), at(2), 2)]
    p = profile(r, "u1")
    assert (p["sessions"], p["events"]) == (1, 2)


def test_an_order_by_the_known_half_ends_the_anonymous_cart_and_its_timer(
    tmp_path: Path,
) -> None:
    """a1 adds p1 at 0 (e-mail due at 15); u1 orders at 5 on another device; the
    identify comes at 10. Under one id the order at 5 empties the cart and cancels the
    timer: no cart e-mail, an empty cart, one order."""
    stream = [
        e(0, "Product Added", anon="a1", **CART),
        e(5, "Order Completed", user="u1", **ORDER),
        e(10, etype="identify", user="u1", anon="a1"),
        e(200, "Home", user="zz"),
    ]
    for s in (stream, as_known(stream, "u1", "a1")):
        r = run(tmp_path, s)
        assert [a for a in r["actions"] if a["action"] == "cart_abandonment"] == []
        p = profile(r, "u1")
        assert (p["cart_items"], p["orders"], p["revenue"]) == (0, 1, 40.0)


def test_a_cart_add_after_the_other_halfs_order_still_sends_the_email(tmp_path: Path) -> None:
    """The same, but a1 adds at 6, after u1's order at 5: the cart and its timer stand,
    and the e-mail goes to u1 at 6 + 15 = 21 with p1 in it."""
    stream = [
        e(5, "Order Completed", user="u1", **ORDER),
        e(6, "Product Added", anon="a1", **CART),
        e(10, etype="identify", user="u1", anon="a1"),
        e(200, "Home", user="zz"),
    ]
    r = run(tmp_path, stream)
    (act,) = [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert (act["user_id"], act["at"]) == ("u1", at(21))
    assert [x["product_id"] for x in act["payload"]["products"]] == ["p1"]


def test_what_either_half_bought_is_not_recommended_after_the_merge(tmp_path: Path) -> None:
    """Three shoppers buy p1 two hours before (a model epoch that is learned by 0), so
    p1 is the popular item of category c. u1 buys p1 at 0; a1 views p2 at 2; the
    identify at 5 makes them one. The recommender leaves out what the user bought or
    recently saw: p1 and p2 are all it knows, so the merged profile gets none."""

    def order(minutes: float, user: str) -> dict[str, Any]:
        line = {"product_id": "p1", "category": "c", "price": 10.0, "quantity": 1}
        return e(minutes, "Order Completed", user=user, order_id=f"o-{user}", total=10.0,
                 products=[line])  # fmt: skip

    stream = [
        *(order(-120, f"b{i}") for i in range(3)),
        e(-119, "Product Viewed", user="b9", product_id="p2", category="c"),
        order(0, "u1"),
        e(2, "Product Viewed", anon="a1", product_id="p2", category="c"),
        e(5, etype="identify", user="u1", anon="a1"),
        e(200, "Home", user="zz"),
    ]
    cfg = "models:\n  recommendations:\n    enabled: true\n    n: 3\n"
    for s in (stream, as_known(stream, "u1", "a1")):
        r = run(tmp_path, s, cfg)
        assert profile(r, "u1")["recommendations"] == {"products": []}


@pytest.mark.parametrize("victim", ["user-3333", "user-1111"])
def test_a_deletion_leaves_no_refused_link_naming_the_person_in_state(victim: str) -> None:
    """A shared device: anon-2222 logs in as user-1111, then as user-3333 (refused:
    one userId per profile), who also has anon-4444. Each profile remembers the link it
    refused, naming the other person's identifier. Deleting either person must leave
    none of their identifiers in the shard state (README: the next snapshot holds
    nothing of it)."""
    from audienceflow.operators.engine import ShardEngine, ShardState
    from audienceflow.operators.records import ControlRequest
    from audienceflow.operators.settings import Settings
    from audienceflow.operators.validate import Taxonomy, Validator, parse_timestamp

    settings = Settings.load(environ={})
    validate = Validator(Taxonomy.default())
    lines = [
        e(0, "Home", user="user-1111", anon="anon-2222"),
        e(1, "Home", user="user-3333", anon="anon-4444"),
        e(2, "Home", user="user-3333", anon="anon-2222"),  # refused: user_id_limit
        e(10, "Home", user="bob"),  # moves stream time past the three above
        e(40, "Home", user="bob"),
    ]
    # message ids that name no identifier (the dedup window keeps other people's)
    lines = [dict(x, messageId=f"m{i}") for i, x in enumerate(lines)]
    events = [validate(orjson.dumps(x), f"in:{i}") for i, x in enumerate(lines)]
    state = ShardState("shard-000")
    engine = ShardEngine(settings, state, emit_profiles=True)
    feed = Feeder(settings)
    out = engine.on_items(feed.items(events[:4]))
    assert [c.kind for c in out if type(c).__name__ == "IdentityChange"] == [
        "merge",
        "merge",
        "rejected_merge",
    ]
    people = {"user-1111": ("user-1111", "anon-2222"), "user-3333": ("user-3333", "anon-4444")}
    theirs = people[victim]
    assert all(i.encode() in pickle.dumps(state) for i in theirs)  # the test can see them
    request = ControlRequest("delete", (victim,), "r1", parse_timestamp(at(20)))
    out = engine.on_items([request, *feed.items(events[4:])])
    (receipt,) = [r for r in out if type(r).__name__ == "Receipt"]
    assert receipt.status == "done"
    blob = pickle.dumps(state)
    assert [i for i in theirs if i.encode() in blob] == []


def test_a_deletion_drops_the_queued_interactions_whatever_the_dedup_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """u1 views p1 at 0 and p2 at 1: two interactions queued for the recommender, learned
    at the end of their model epoch (1 h). u1 is deleted at 20, before that. With a dedup
    window (5 min) shorter than the epoch, the dedup entries that named the two events
    are gone by 20; the queued interactions must go all the same (README: a deletion
    purges what the models queued of it): the receipt counts 2 and the model learns
    nothing, so it knows no item at the end (no one else viewed any)."""
    import functools

    from audienceflow.flows import replay as replay_module
    from audienceflow.flows.sources import JsonlSource

    # one line per batch: stream time (and the dedup window's expiry) moves between lines
    monkeypatch.setattr(replay_module, "JsonlSource", functools.partial(JsonlSource, batch_size=1))
    stream = [
        e(0, "Product Viewed", user="u1", product_id="p1", category="c"),
        e(1, "Product Viewed", user="u1", product_id="p2", category="c"),
        *(e(10 + k, "Home", user=f"f{k}") for k in range(6)),  # stream time past 6
        *(e(30 + k, "Home", user=f"g{k}") for k in range(4)),  # and past the request
        e(200, "Home", user="zz"),
    ]
    ctl = tmp_path / "control.jsonl"
    ctl.write_bytes(
        orjson.dumps({"type": "delete", "id": "u1", "requestId": "r1", "timestamp": at(20)}) + b"\n"
    )
    cfg = "state:\n  dedup_window: 5m\nmodels:\n  recommendations:\n    enabled: true\n"
    r = run(tmp_path, stream, cfg, control=[str(ctl)])
    (receipt,) = r["control"]
    assert (receipt["purged"]["users"], receipt["purged"]["model_queue"]) == (1, 2)
    learned = r["summary"]["models"]["recommendations"]["products"]
    assert (learned["interactions"], learned["items"]) == (0, 0)


def test_a_profile_without_a_cluster_takes_the_absorbed_halfs_at_the_merge(
    tmp_path: Path,
) -> None:
    """Twelve shoppers' sessions (five hours before) seed the clusters (warmup 3). a1's
    session closes at 31 and puts it in a cluster; u1 comes at 50 (its session still
    open, no cluster yet); the identify at 51 merges a1 into u1. README: the canonical
    profile takes the absorbed one's cluster when it had none, so at 51 a1 leaves it and
    u1 enters it (reason identity_merge), and u1 never leaves it afterwards."""
    stream = [
        *(e(-300 + m, "Home", user=f"b{m}") for m in range(12)),
        e(0, "Home", anon="a1"),
        e(1, "Product Viewed", anon="a1", category="deals"),
        e(50, "Home", user="u1"),
        e(51, etype="identify", user="u1", anon="a1"),
        e(300, "Home", user="zz"),
    ]
    r = run(tmp_path, stream, "models:\n  clustering:\n    warmup: 3\n")
    changes = [
        (c["user_id"], c["segment"], c["change"], c["at"], c["reason"]["rule"])
        for c in r["segment_changes"]
        if c["segment"].startswith("cluster:") and c["user_id"] in ("a1", "u1")
    ]
    assert changes[0][:4] == ("a1", changes[0][1], "enter", at(31))
    seg = changes[0][1]
    assert changes[1:] == [
        ("a1", seg, "exit", at(51), "identity_merge"),
        ("u1", seg, "enter", at(51), "identity_merge"),
    ]
    p = profile(r, "u1")
    assert (f"cluster:{p['cluster']}", p["segments"]) == (seg, [seg])


def test_a_suppressed_list_matches_identifiers_so_an_unlisted_anonymous_id_stays(
    tmp_path: Path,
) -> None:
    """README (--suppressed): the list matches identifiers, not people. u1 is listed,
    a1 (the device u1 logs in on at 5) is not: the identify and the event carrying both
    are filtered (2), so the link is never made, and a1's events at 0, 1 and 7 make a1's
    own profile, one session of 3 events, and its cart e-mail at 1 + 15 = 16."""
    stream = [
        e(0, "Home", anon="a1"),
        e(1, "Product Added", anon="a1", product_id="p1", category="c", price=3.0),
        e(5, etype="identify", user="u1", anon="a1"),
        e(6, "Home", user="u1", anon="a1"),
        e(7, "Home", anon="a1"),
        e(100, "Home", user="bob"),
    ]
    r = run(tmp_path, stream, suppressed=("u1",))
    assert r["summary"]["counts"]["filtered_by_reason"] == {"suppressed": 2}
    assert r["summary"]["counts"]["reconciled"]
    assert [p["user_id"] for p in r["profiles"]] == ["a1", "bob"]
    assert [(s["user_id"], s["events"]) for s in r["sessions"]] == [("a1", 3), ("bob", 1)]
    assert [(a["user_id"], a["at"]) for a in r["actions"]] == [("a1", at(16))]
    assert r["identities"] == []


def test_a_refused_link_is_reported_once_even_after_the_profile_grows() -> None:
    """u1 logs in on a1 (merge); u2 on a1 is refused (one userId per profile) and
    reported; u1 then logs in on a5 (merge: the profile grows). README: each refused link
    is reported once per profile, so u2 on a1 again is not reported a second time."""
    from audienceflow.operators.identity import IdentityGraph, IdentitySpec

    g = IdentityGraph(IdentitySpec())
    kinds = []
    for i, (user, anon) in enumerate([("u1", "a1"), ("u2", "a1"), ("u1", "a5"), ("u2", "a1")]):
        change = g.resolve(user, anon, None, float(i), f"m{i}").change
        kinds.append(None if change is None else change.kind)
    assert kinds == ["merge", "rejected_merge", "merge", None]
    assert g.members("u1") == ["a1", "a5", "u1"] and g.members("u2") == ["u2"]


def test_a_link_to_another_shard_is_counted_once_however_many_events_carry_it(
    tmp_path: Path,
) -> None:
    """Two shards; u1's anonymous id is on the other shard. The identify and two later
    events all carry (u1, a): one link left out, so the summary says 1, not 3."""
    from audienceflow.operators.routing import shard_index

    home = shard_index("u1", 2, "murmur2")
    anon = next(f"a{i}" for i in range(100) if shard_index(f"a{i}", 2, "murmur2") != home)
    stream = [
        e(0, "Home", anon=anon),
        e(5, etype="identify", user="u1", anon=anon),
        e(6, "Home", user="u1", anon=anon),
        e(7, "Home", user="u1", anon=anon),
    ]
    r = run(tmp_path, stream, "state:\n  shards: 2\n")
    assert r["identities"] == []
    assert r["summary"]["identity"]["links_to_other_shards"] == 1
    assert sorted(p["user_id"] for p in r["profiles"]) == sorted([anon, "u1"])


@pytest.mark.timeout(60)
def test_a_user_id_an_alias_absorbed_stays_with_the_profile_it_joined(tmp_path: Path) -> None:
    """a1 and new1 browse (sessions open at 0 and 1); the alias at 5 says old1 is now
    new1. Nothing had said old1 is a userId by then: it is linked as an identifier of
    unknown kind, into new1's profile. old1's events at 6 (with a1: a merge of a1's
    state) and 8 belong to that profile: one profile, new1, with 4 events in 1 session, and
    profiles.jsonl holds canonical profiles only (README), so no profile named old1."""
    stream = [
        e(0, "Home", anon="a1"),
        e(1, "Home", user="new1"),
        e(5, etype="alias", user="new1", previous="old1"),
        e(6, "Home", user="old1", anon="a1"),
        e(8, "Home", user="old1"),
        e(100, "Home", user="bob"),
    ]
    r = run(tmp_path, stream)
    assert [(i["type"], i["canonical_id"]) for i in r["identities"]] == [
        ("merge", "new1"),
        ("merge", "new1"),
    ]
    assert [(p["user_id"], p["events"], p["sessions"]) for p in r["profiles"]] == [
        ("bob", 1, 1),
        ("new1", 4, 1),
    ]
    assert [(s["user_id"], s["start"], s["end"]) for s in r["sessions"]] == [
        ("new1", at(0), at(8)),
        ("bob", at(100), at(100)),
    ]


@pytest.mark.timeout(60)
def test_an_alias_of_a_user_id_that_browsed_before_it_is_a_second_user_id(
    tmp_path: Path,
) -> None:
    """old1 browses as a userId at 0, so the alias at 5 would put two userIds in one
    profile: refused (README: A second userId), and old1's event at 8 stays old1's."""
    stream = [
        e(0, "Home", user="old1"),
        e(1, "Home", user="new1"),
        e(5, etype="alias", user="new1", previous="old1"),
        e(8, "Home", user="old1"),
    ]
    r = run(tmp_path, stream)
    assert [(i["type"], i["reason"]) for i in r["identities"]] == [
        ("rejected_merge", "user_id_limit")
    ]
    assert [(p["user_id"], p["events"]) for p in r["profiles"]] == [("new1", 1), ("old1", 2)]


def test_an_unsuppress_lifts_every_identifier_its_suppression_covered(tmp_path: Path) -> None:
    """u1 logs in on a1 at 1. delete_and_suppress u1 at 20 suppresses both identifiers and
    forgets the link; unsuppress u1 at 50 must lift both ("until unsuppress"), though
    nothing links a1 to u1 any more: only the event at 30 is filtered, and u1's events at
    60 (with a1) and 61 (a1 alone) make a new profile u1 of 2 events."""
    stream = [
        e(0, "Home", anon="a1"),
        e(1, etype="identify", user="u1", anon="a1"),
        e(2, "Home", user="u1", anon="a1"),
        e(30, "Home", user="u1", anon="a1"),
        e(60, "Home", user="u1", anon="a1"),
        e(61, "Home", anon="a1"),
        e(200, "Home", user="bob"),
    ]
    ctl = tmp_path / "control.jsonl"
    requests = [("delete_and_suppress", 20, "r1"), ("unsuppress", 50, "r2")]
    ctl.write_bytes(
        b"".join(
            orjson.dumps({"type": k, "id": "u1", "requestId": rid, "timestamp": at(m)}) + b"\n"
            for k, m, rid in requests
        )
    )
    r = run(tmp_path, stream, control=[str(ctl)])
    assert r["summary"]["counts"]["filtered_by_reason"] == {"suppressed": 1}
    assert r["summary"]["control"]["suppressed_identifiers"] == 0
    assert [(c["type"], c["status"]) for c in r["control"]] == [
        ("delete_and_suppress", "done"),
        ("unsuppress", "done"),
    ]
    assert [(p["user_id"], p["events"], p["first_seen"]) for p in r["profiles"]] == [
        ("bob", 1, at(200)),
        ("u1", 2, at(60)),
    ]


def test_an_unsuppress_of_a_linked_profile_lifts_both_its_identifiers(tmp_path: Path) -> None:
    """u1 logs in on a1 at 1; suppress u1 at 20 covers u1 and a1; unsuppress u1 at 50
    lifts both: the event at 30 is filtered, those at 60 (u1 with a1) and 61 (a1 alone)
    apply to u1: 4 events (0, 2, 60, 61; an identify is not counted). (Unsuppress
    stopped at the first identifier it found, so a1 stayed suppressed and both later
    events were filtered.)"""
    stream = [
        e(0, "Home", anon="a1"),
        e(1, etype="identify", user="u1", anon="a1"),
        e(2, "Home", user="u1", anon="a1"),
        e(30, "Home", user="u1", anon="a1"),
        e(60, "Home", user="u1", anon="a1"),
        e(61, "Home", anon="a1"),
        e(200, "Home", user="bob"),
    ]
    ctl = tmp_path / "control.jsonl"
    ctl.write_bytes(
        b"".join(
            orjson.dumps({"type": k, "id": "u1", "requestId": k, "timestamp": at(m)}) + b"\n"
            for k, m in (("suppress", 20), ("unsuppress", 50))
        )
    )
    r = run(tmp_path, stream, control=[str(ctl)])
    assert r["summary"]["counts"]["filtered_by_reason"] == {"suppressed": 1}
    assert r["summary"]["control"]["suppressed_identifiers"] == 0
    assert [(p["user_id"], p["events"]) for p in r["profiles"]] == [("bob", 1), ("u1", 4)]
