"""Identity: identifiers linked into one profile, whatever the order they come in.

Expected values are worked out by hand on small streams (times in minutes after
2026-03-02T08:00Z; sessions close after 30 minutes of inactivity; the default
cart_abandonment timer fires 15 min after the last cart add).
"""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from audienceflow.flows.replay import replay
from audienceflow.operators.identity import (
    MAX_ANONYMOUS,
    IdentityGraph,
    IdentitySpec,
    is_blocked,
)
from audienceflow.operators.normalize import BLANK_PRINTABLE, blank
from audienceflow.operators.settings import Settings
from tests.helpers import at, read_jsonl, write_stream

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import generate  # noqa: E402


def e(
    minutes: float,
    name: str = "Home",
    user: str | None = None,
    anon: str | None = None,
    etype: str | None = None,
    **props: Any,
) -> dict[str, Any]:
    """A Segment-spec event with a ``userId`` and/or an ``anonymousId``."""
    if etype is None:
        etype = "page" if name in ("Home", "Product", "Cart") else "track"
    out: dict[str, Any] = {"type": etype, "timestamp": at(minutes)}
    out["messageId"] = f"{user}-{anon}-{minutes}-{name}"
    if user is not None:
        out["userId"] = user
    if anon is not None:
        out["anonymousId"] = anon
    if etype == "identify":
        out["traits"] = {}
    elif etype == "alias":
        out["previousId"] = props.pop("previous")
    else:
        out["event" if etype == "track" else "name"] = name
        out["properties"] = props
    return out


def run(tmp: Path, events: list[Any], config: str = "", **kw: Any) -> dict[str, Any]:
    src = write_stream(tmp / "in.jsonl", events)
    cfg = tmp / "config.yaml"
    cfg.write_text(config or "{}\n")
    out = tmp / "out"
    summary = replay([str(src)], out, Settings.load(cfg, environ={}), **kw)
    files = {
        name: read_jsonl(out / f"{name}.jsonl")
        for name in (
            "sessions",
            "segment_changes",
            "actions",
            "dead_letters",
            "profiles",
            "identities",
            "control",
        )
    }
    return {"summary": summary, **files}


# --- the graph ------------------------------------------------------------------------


def test_the_canonical_id_is_the_user_id_whichever_side_links_first() -> None:
    g = IdentityGraph(IdentitySpec())
    assert g.resolve(None, "a1", None, 0.0, "m0").canonical == "a1"
    r = g.resolve("u1", "a1", None, 1.0, "m1")
    assert (r.canonical, r.absorbed) == ("u1", ("a1",))
    assert r.change is not None and r.change.kind == "merge"
    assert (g.canonical("a1"), g.canonical("u1", "u")) == ("u1", "u1")
    # a second anonymous id joins the same profile; the canonical id stays
    r = g.resolve("u1", "a2", None, 2.0, "m2")
    assert (r.canonical, r.absorbed, g.members("u1")) == ("u1", ("a2",), ["a1", "a2", "u1"])


def test_two_anonymous_ids_linked_by_an_alias_are_named_by_the_smaller() -> None:
    g = IdentityGraph(IdentitySpec())
    r = g.resolve("b-anon", None, "a-anon", 0.0, "m1")
    # an alias's userId is a known id: the profile is named by it, not by the smaller id
    assert r.canonical == "b-anon"
    g2 = IdentityGraph(IdentitySpec())
    g2.resolve(None, "z9", None, 0.0, "m0")
    g2.resolve(None, "a1", None, 0.0, "m0")
    # no userId at all: two anonymous ids can only be linked through a known one, so the
    # smallest-anonymous rule shows on a profile whose userId is refused elsewhere
    assert g2.canonical("z9") == "z9" and g2.canonical("a1") == "a1"


def test_merging_two_known_user_ids_is_refused_and_the_event_stays_with_its_user_id() -> None:
    g = IdentityGraph(IdentitySpec())
    g.resolve("u1", "a1", None, 0.0, "m1")
    r = g.resolve("u2", "a1", None, 5.0, "m2")
    assert r.canonical == "u2"
    assert r.change is not None
    assert (r.change.kind, r.change.reason) == ("rejected_merge", "user_id_limit")
    assert r.change.previous == ["u1", "u2"]
    assert g.canonical("a1") == "u1"  # the first link stands
    # with max_user_ids 2 the same link is a merge
    g2 = IdentityGraph(IdentitySpec(max_user_ids=2))
    g2.resolve("u1", "a1", None, 0.0, "m1")
    assert g2.resolve("u2", "a1", None, 5.0, "m2").change.kind == "merge"  # type: ignore[union-attr]


def test_a_profile_holds_at_most_max_anonymous_ids_however_slowly_they_join() -> None:
    # One every two days, within the window's limit: without a total, a cookie-cycling sender grew
    # one profile as long as stream time went on, and each link walked all of its ids.
    g = IdentityGraph(IdentitySpec(anonymous_ids=5, anonymous_window=7 * 86400.0))
    step = 2 * 86400.0
    for i in range(MAX_ANONYMOUS):
        change = g.resolve("u", f"a{i}", None, i * step, f"m{i}").change
        assert change is not None and change.kind == "merge", i
    r = g.resolve("u", "one-more", None, MAX_ANONYMOUS * step, "m-last")
    assert r.change is not None and r.change.reason == "anonymous_id_limit"
    assert g.canonical("one-more") == "one-more"
    comp = g.component("u")
    assert comp is not None and len(comp.anonymous) == MAX_ANONYMOUS
    assert g.links() == MAX_ANONYMOUS + 1  # the user id and its anonymous ids, no more


def test_at_most_n_anonymous_ids_join_a_profile_within_the_window() -> None:
    spec = IdentitySpec(anonymous_ids=2, anonymous_window=100.0)
    g = IdentityGraph(spec)
    assert g.resolve("u", "a1", None, 0.0, "m1").change.kind == "merge"  # type: ignore[union-attr]
    assert g.resolve("u", "a2", None, 10.0, "m2").change.kind == "merge"  # type: ignore[union-attr]
    r = g.resolve("u", "a3", None, 99.5, "m3")  # a1 joined at 0, within (-0.5, 99.5]
    assert r.change is not None and r.change.reason == "anonymous_id_limit"
    assert g.canonical("a3") == "a3"
    # at 100 a1's joining (at 0) has left the window (0, 100]: a3 may join
    assert g.resolve("u", "a3", None, 100.0, "m4").change.kind == "merge"  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["anonymous", "null", "undefined", "0", "-1", "", "  ", "NULL"])
def test_blocked_values_never_link(value: str) -> None:
    g = IdentityGraph(IdentitySpec())
    r = g.resolve("u1", value, None, 0.0, "m1")
    assert (r.canonical, r.change) == ("u1", None)
    g.resolve("u2", value, None, 1.0, "m2")
    assert g.canonical("u1", "u") == "u1" and g.links() == 0
    with pytest.raises(ValueError):
        g.resolve(None, value, None, 2.0, "m3")


def _blocked_by_the_full_rule(spec: IdentitySpec, value: str) -> bool:
    """``is_blocked`` without its shortcuts: stripped, lower case, blank or listed."""
    v = value.strip().lower()
    return (
        not v
        or v in spec.blocked
        or blank(v)
        or any(re.fullmatch(p, value) for p in spec.blocked_patterns)
    )


def test_the_lower_case_of_a_character_shown_is_shown() -> None:
    # ``is_blocked``'s shortcut for short ids skips ``blank`` on the lower-cased id.
    shown = (chr(cp) for cp in range(sys.maxunicode + 1))
    assert [
        c for c in shown if c.isprintable() and c not in BLANK_PRINTABLE and blank(c.lower())
    ] == []


@pytest.mark.parametrize(
    "value",
    ["u1", "U19951", "NULL", "Null", "nil", "nIl", "-1", "0", "00", "anonymous", "ANONYMOUSX",
     "undefined", " null", "null ", "\u200bnull", "null\u200b", "\u3164", "\u0130", "\u0130nil",
     "\u212a", "a b", "\t0", "0\n", "\u00a0", "\u2800x", "x\u2800", "\u034f", "none"],
)  # fmt: skip
def test_is_blocked_agrees_with_the_full_rule(value: str) -> None:
    for spec in (
        IdentitySpec(),
        IdentitySpec(blocked=("null", "İx", "K")),
        IdentitySpec(blocked_patterns=("u[0-9]+",)),
    ):
        assert is_blocked(spec, value) is _blocked_by_the_full_rule(spec, value), (spec, value)


def test_a_blocked_pattern_never_links() -> None:
    g = IdentityGraph(IdentitySpec(blocked_patterns=("test-.*",)))
    assert g.resolve("u1", "test-123", None, 0.0, "m").change is None
    assert g.resolve("u1", "xtest-123", None, 0.0, "m").change is not None  # whole value only


def test_purge_forgets_every_identifier_of_the_profile() -> None:
    g = IdentityGraph(IdentitySpec())
    g.resolve("u1", "a1", None, 0.0, "m1")
    g.resolve("u1", "a2", None, 1.0, "m2")
    assert g.purge("u1") == ["a1", "a2", "u1"]
    assert g.links() == 0 and g.canonical("a1") == "a1"


# --- merging state through the whole flow -----------------------------------------------

CART = {"product_id": "p1", "category": "shoes", "price": 40.0, "quantity": 1}
TRACE = [
    e(0, "Home", anon="a1"),
    e(2, "Product Added", anon="a1", **CART),
    e(5, "Home", user="u1"),
    e(10, etype="identify", user="u1", anon="a1"),
    e(12, "Product", anon="a1"),
    e(15, "Home", user="u1"),
]
LATE_OK = "time:\n  allowed_lateness: 1d\n"


def _view(r: dict[str, Any]) -> Any:
    def strip(recs: list[dict[str, Any]], *drop: str) -> list[Any]:
        return sorted(sorted((k, repr(v)) for k, v in rec.items() if k not in drop) for rec in recs)

    return (
        strip(r["identities"]),
        strip(r["sessions"]),
        strip(r["actions"]),
        strip(r["segment_changes"]),
        r["profiles"],
    )


def test_the_trace_merges_both_halves_into_one_session_and_the_anonymous_cart(
    tmp_path: Path,
) -> None:
    r = run(tmp_path, TRACE, LATE_OK)
    (merge,) = r["identities"]
    assert merge["type"] == "merge" and merge["canonical_id"] == "u1"
    assert merge["identifiers"] == ["a1", "u1"] and merge["at"] == at(10)
    # a1's session (0, 2) and u1's (5) were both open at 10: one session 0..15
    (s,) = r["sessions"]
    assert (s["user_id"], s["start"], s["end"], s["events"]) == ("u1", at(0), at(15), 5)
    assert s["session_id"] == f"a1:{at(0)}"  # the earlier half's session goes on
    # the cart added anonymously is u1's: its abandonment fires for u1 at 2 + 15
    (act,) = [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert (act["user_id"], act["at"]) == ("u1", at(17))
    assert [p["user_id"] for p in r["profiles"]] == ["u1"]
    assert r["summary"]["identity"]["merges"] == 1


@pytest.mark.timeout(600)
def test_every_arrival_order_of_the_trace_gives_the_same_outputs(tmp_path: Path) -> None:
    first = None
    for i, perm in enumerate(itertools.permutations(TRACE)):
        d = tmp_path / str(i)
        d.mkdir()
        view = _view(run(d, list(perm), LATE_OK))
        if first is None:
            first = view
        assert view == first, f"order {i} differs"


def test_an_anonymous_event_after_the_identify_names_its_identifier(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            e(0, etype="identify", user="u1", anon="a1"),
            e(1, "Product Added", anon="a1", **CART),
            e(2, "Home", user="u1"),
            e(200, "Home", user="zz"),  # moves stream time past the timer
        ],
    )
    (act,) = [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert act["user_id"] == "u1"
    # the timer was started by a1's event but fired after u1's: named by the latest event
    assert act.get("identifier") is None
    enters = [c for c in r["segment_changes"] if c["user_id"] == "u1"]
    assert enters and all(c.get("identifier") in (None, "a1") for c in enters)


def test_a_refused_merge_is_an_identity_record_and_keeps_two_profiles(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            e(0, "Home", user="u1", anon="a1"),
            e(1, "Home", user="u2", anon="a1"),
            e(2, "Product", user="u2", anon="a1"),  # the same refusal is reported once
        ],
    )
    kinds = [(i["type"], i["reason"]) for i in r["identities"]]
    assert kinds == [("merge", "event"), ("rejected_merge", "user_id_limit")]
    assert sorted(p["user_id"] for p in r["profiles"]) == ["u1", "u2"]


def test_an_event_whose_only_identifier_is_blocked_is_filtered(tmp_path: Path) -> None:
    r = run(tmp_path, [e(0, "Home", anon="undefined"), e(1, "Home", user="null", anon="a1")])
    assert r["summary"]["counts"]["filtered_by_reason"]["blocked_identifier"] == 1
    assert r["summary"]["counts"]["reconciled"]
    assert [p["user_id"] for p in r["profiles"]] == ["a1"]
    assert r["identities"] == []


@pytest.mark.parametrize("shards", [1, 4])
def test_a_blocked_user_id_beside_an_anonymous_id_is_the_anonymous_ids_event(
    tmp_path: Path, shards: int
) -> None:
    # Sent as ``"userId": "null"`` (a tracking plan's bug) or -1, the userId names no
    # profile: such events went to the shard of "null", one shard for every sender of it,
    # and split each visitor's profile and session in two; with one shard their records
    # named "null" as the identifier that produced them.
    visitors = [f"a{i}" for i in range(8)]
    events = []
    for i, anon in enumerate(visitors):
        events += [e(i, "Home", anon=anon), e(i + 0.5, "Product", user="null", anon=anon)]
    r = run(tmp_path, events, f"state:\n  shards: {shards}\n")
    sessions = sorted((s["user_id"], s["events"], s.get("identifier")) for s in r["sessions"])
    assert sessions == [(anon, 2, None) for anon in visitors]
    assert sorted(p["user_id"] for p in r["profiles"]) == visitors
    assert r["summary"]["counts"]["reconciled"]


@pytest.mark.parametrize("shards", [1, 4])
def test_an_alias_linking_a_blocked_value_is_filtered_and_makes_no_profile(
    tmp_path: Path, shards: int
) -> None:
    # "null" is on shard 3 of 4 and a2 on shard 1: routed by its userId, the first alias
    # made an empty profile of a2 on the shard of "null", written over the real one; the
    # second made an empty profile of u5. Neither links anything.
    r = run(
        tmp_path,
        [
            e(0, "Home", anon="a2"),
            e(1, etype="alias", user="null", previous="a2"),
            e(2, "Home", anon="a2"),
            e(3, etype="alias", user="u5", previous="undefined"),
        ],
        f"state:\n  shards: {shards}\n",
    )
    counts = r["summary"]["counts"]
    assert (counts["processed"], counts["filtered_by_reason"]) == (2, {"blocked_identifier": 2})
    assert counts["reconciled"]
    assert [(p["user_id"], p["events"]) for p in r["profiles"]] == [("a2", 2)]
    assert [(s["user_id"], s["events"]) for s in r["sessions"]] == [("a2", 2)]
    assert r["identities"] == [] and r["dead_letters"] == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("invisible", ["\u200b", "\u200b" * 40, "\ufeff\u2060", "\u3164" * 12])
def test_an_id_of_invisible_characters_names_no_one(tmp_path: Path, invisible: str) -> None:
    # Zero-width spaces as the userId of two strangers' events made them one profile
    # named by it (an id of spaces was already blocked): now it names no one, so the
    # anonymous id keys the event, and an event with nothing else is filtered.
    r = run(
        tmp_path,
        [
            e(0, "Home", user=invisible, anon="a1"),
            e(1, "Home", user=invisible, anon="a2"),
            e(2, "Home", user=invisible),
        ],
    )
    counts = r["summary"]["counts"]
    assert (counts["processed"], counts["filtered_by_reason"]) == (2, {"blocked_identifier": 1})
    assert sorted(s["user_id"] for s in r["sessions"]) == ["a1", "a2"]


def test_an_alias_links_an_earlier_anonymous_profile_into_the_user(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            e(0, "Product Added", anon="a9", **CART),
            e(5, etype="alias", user="u9", previous="a9"),
            e(6, "Home", user="u9"),
        ],
    )
    (merge,) = r["identities"]
    assert (merge["reason"], merge["canonical_id"]) == ("alias", "u9")
    assert [p["user_id"] for p in r["profiles"]] == ["u9"]
    (s,) = r["sessions"]
    assert (s["user_id"], s["events"]) == ("u9", 2)  # the alias itself is not activity
    exits = [c for c in r["segment_changes"] if c["user_id"] == "a9" and c["change"] == "exit"]
    assert all(c["reason"] == {"rule": "identity_merge", "into": "u9"} for c in exits)


@pytest.mark.timeout(60)
def test_an_alias_of_a_user_id_to_itself_links_nothing(tmp_path: Path) -> None:
    # A sender calling alias(userId) after identify(userId) sends previousId == userId:
    # one identifier, not two. It was written as a merge of ["u7"] with itself and
    # counted as a merge of two linked identifiers.
    r = run(
        tmp_path,
        [
            e(0, "Home", user="u7"),
            e(1, etype="alias", user="u7", previous="u7"),
            e(2, "Home", user="u7"),
        ],
    )
    assert r["identities"] == []
    identity = r["summary"]["identity"]
    assert (identity["merges"], identity["linked_identifiers"]) == (0, 0)
    assert [(p["user_id"], p["events"]) for p in r["profiles"]] == [("u7", 2)]
    assert r["summary"]["counts"]["reconciled"]


@pytest.mark.timeout(60)
def test_an_alias_naming_one_identifier_as_all_three_links_nothing(tmp_path: Path) -> None:
    # userId == anonymousId is read as no userId (the anonymous id alone), so the
    # previousId, the same again, was that anonymous key a second time: a merge of
    # ["u7"] with itself, as ``previousId == userId`` was.
    r = run(
        tmp_path,
        [
            e(0, "Home", user="u7", anon="u7"),
            e(1, etype="alias", user="u7", anon="u7", previous="u7"),
            e(2, "Home", user="u7", anon="u7"),
        ],
    )
    assert r["identities"] == []
    identity = r["summary"]["identity"]
    assert (identity["merges"], identity["linked_identifiers"]) == (0, 0)
    assert [(p["user_id"], p["events"]) for p in r["profiles"]] == [("u7", 2)]


PLANS = """
segments:
  pro: {when: "traits.plan == 'pro'"}
  not_pro: {when: "not in_segment('pro')"}
  free: {when: "traits.plan != 'pro'"}
  viewer: {when: "count('Product Viewed', 1h) >= 1"}
triggers:
  welcome: {type: segment, segment: not_pro, on: enter}
  upgraded: {type: segment, segment: not_pro, on: exit}
"""


def _login(anon: str | None) -> list[dict[str, Any]]:
    """A product view at 0 by ``anon`` (by u3 when None), then u3's identify at 5 with
    plan 'pro' (the login that links ``anon``)."""
    identify = e(5, etype="identify", user="u3", anon=anon)
    identify["traits"] = {"plan": "pro"}
    return [e(0, "Product Viewed", user="u3" if anon is None else None, anon=anon), identify]


def _plan_changes(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return [
        (c["user_id"], c["segment"], c["change"], c["at"], c["reason"]["rule"])
        for c in r["segment_changes"]
        if c["segment"] in ("pro", "not_pro", "free", "viewer")
    ]


def test_a_login_whose_traits_end_a_membership_renames_no_segment_it_ends(
    tmp_path: Path,
) -> None:
    """a3 views at 0: no plan, so not_pro (not in_segment('pro')), free (plan != 'pro')
    and viewer. The identify at 5 renames a3 to u3 and sets plan 'pro'. README
    (Segments, Identity): a merge is evaluated with the event that links it, the absorbed
    id exits its segments, the canonical id enters what the merged state qualifies for,
    and no id exits and re-enters at one instant. So a3 exits all three; u3 enters
    viewer (still true) and pro, never not_pro nor free. The exit trigger of not_pro fires
    for u3 at 5, as it does when u3 is known throughout."""
    r = run(tmp_path, _login("a3"), PLANS)
    assert _plan_changes(r) == [
        ("a3", "not_pro", "enter", at(0), "not_pro"),
        ("a3", "free", "enter", at(0), "free"),
        ("a3", "viewer", "enter", at(0), "viewer"),
        ("a3", "free", "exit", at(5), "identity_merge"),
        ("a3", "not_pro", "exit", at(5), "identity_merge"),
        ("a3", "viewer", "exit", at(5), "identity_merge"),
        ("u3", "viewer", "enter", at(5), "identity_merge"),
        ("u3", "pro", "enter", at(5), "pro"),
        ("u3", "viewer", "exit", at(60), "viewer"),  # the view at 0 lapses
    ]
    acts = [(a["user_id"], a["trigger"]["name"], a["at"]) for a in r["actions"]]
    assert acts == [("a3", "welcome", at(0)), ("u3", "upgraded", at(5))]
    (tmp_path / "known").mkdir()
    known = run(tmp_path / "known", _login(None), PLANS)
    assert [(a["trigger"]["name"], a["at"]) for a in known["actions"]] == [
        (name, when) for _, name, when in acts
    ]


def test_a_login_that_ends_no_membership_renames_every_segment_as_before(
    tmp_path: Path,
) -> None:
    """The rename without a change of truth: a3 is a viewer at 0; the identify at 5 sets
    no trait the rules read, so a3 exits every segment (identity_merge) and u3 enters
    each of them (identity_merge, from a3) at 5; the event's evaluation changes none."""
    stream = _login("a3")
    stream[1]["traits"] = {"plan": None}
    r = run(tmp_path, stream, PLANS)
    assert _plan_changes(r) == [
        ("a3", "not_pro", "enter", at(0), "not_pro"),
        ("a3", "free", "enter", at(0), "free"),
        ("a3", "viewer", "enter", at(0), "viewer"),
        ("a3", "free", "exit", at(5), "identity_merge"),
        ("a3", "not_pro", "exit", at(5), "identity_merge"),
        ("a3", "viewer", "exit", at(5), "identity_merge"),
        ("u3", "free", "enter", at(5), "identity_merge"),
        ("u3", "not_pro", "enter", at(5), "identity_merge"),
        ("u3", "viewer", "enter", at(5), "identity_merge"),
        ("u3", "viewer", "exit", at(60), "viewer"),
    ]
    renamed = [c for c in r["segment_changes"] if c["user_id"] == "u3" and c["at"] == at(5)]
    assert all(c["reason"] == {"rule": "identity_merge", "from": "a3"} for c in renamed)
    assert [(a["user_id"], a["trigger"]["name"]) for a in r["actions"]] == [("a3", "welcome")]


# --- anonymous first, then identified == known throughout ------------------------------


def _known_throughout(lines: list[bytes], logins: dict[str, str]) -> list[bytes]:
    import orjson

    by_anon = {a: u for u, a in logins.items()}
    out = []
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        if isinstance(obj, dict) and obj.get("anonymousId") in by_anon and "userId" not in obj:
            obj["userId"] = by_anon[obj["anonymousId"]]
            out.append(orjson.dumps(obj))
        else:
            out.append(line)
    return out


def _mapped(r: dict[str, Any], to: dict[str, str]) -> dict[str, Any]:
    """Outputs with every identifier replaced by its canonical id, merge exits/enters netted."""

    def m(uid: str) -> str:
        return to.get(uid, uid)

    sessions = sorted(
        (
            m(s["user_id"]),
            s["start"],
            s["end"],
            s["events"],
            s["page_views"],
            s["products"],
            s["converted"],
            s["order_value"],
            s["intent_score"],
        )
        for s in r["sessions"]
    )
    actions = sorted(
        (m(a["user_id"]), a["action"], a["at"], a["status"], a["trigger"]["name"])
        for a in r["actions"]
    )
    members: dict[tuple[str, str], list[str]] = {}
    for c in r["segment_changes"]:
        if c["reason"].get("rule") == "identity_merge":
            continue
        members.setdefault((m(c["user_id"]), c["segment"]), []).append(c["at"] + c["change"])
    profiles = sorted(
        (m(p["user_id"]), sorted((k, repr(v)) for k, v in p.items() if k != "user_id"))
        for p in r["profiles"]
    )
    return {"sessions": sessions, "actions": actions, "profiles": profiles, "members": members}


@pytest.mark.timeout(600)
def test_users_anonymous_until_a_login_give_the_outputs_of_known_ids_throughout(
    tmp_path: Path,
) -> None:
    lines, truth = generate.generate(
        200, seed=11, days=3, invalid_rate=0.0, duplicate_rate=0.0, login_midway=0.5
    )
    logins = truth["logged_in_midway"]
    assert len(logins) >= 20
    cfg = ""  # defaults: models on
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    anon_first = run(tmp_path / "a", [x.decode() for x in lines], cfg)
    known = run(tmp_path / "b", [x.decode() for x in _known_throughout(lines, logins)], cfg)
    to = {}
    for rec in anon_first["identities"]:
        assert rec["type"] == "merge"
        for ident in rec["identifiers"]:
            to[ident] = rec["canonical_id"]
    assert {a: to[a] for a in logins.values() if a in to} == {
        a: u for u, a in logins.items() if a in to
    }
    assert len(to) >= 2 * 20
    a, b = _mapped(anon_first, to), _mapped(known, to)
    assert a["sessions"] == b["sessions"]
    assert a["actions"] == b["actions"]
    assert a["profiles"] == b["profiles"]
    assert a["members"] == b["members"]


def _shard(ident: str, shards: int) -> int:
    import zlib

    return zlib.crc32(ident.encode()) % shards


def test_with_two_shards_identifiers_of_different_shards_are_not_linked(tmp_path: Path) -> None:
    same = next(f"a{i}" for i in range(100) if _shard(f"a{i}", 2) == _shard("u1", 2))
    other = next(f"a{i}" for i in range(100) if _shard(f"a{i}", 2) != _shard("u2", 2))
    r = run(
        tmp_path,
        [
            e(0, "Home", anon=same),
            e(1, "Home", anon=other),
            e(2, etype="identify", user="u1", anon=same),
            e(3, etype="identify", user="u2", anon=other),
        ],
        "state:\n  shards: 2\n",
    )
    assert [(i["canonical_id"], i["identifiers"]) for i in r["identities"]] == [
        ("u1", sorted([same, "u1"]))
    ]
    assert r["summary"]["identity"]["links_to_other_shards"] == 1
    assert sorted(p["user_id"] for p in r["profiles"]) == sorted([other, "u1", "u2"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("later", ["anonymous", "known"])
def test_two_carts_merged_keep_the_timer_of_the_later_add_as_one_id_would(
    tmp_path: Path, later: str
) -> None:
    """Each cart add restarts the abandonment timer (15 min). u1 adds at 0 on one device
    and a1 at 5 on another (or the other way round); they log in at 10. Under one id the
    add at 5 restarts the timer, due at 20: the merge took the earlier deadline, 15."""
    first, second = ("u1", "a1") if later == "anonymous" else ("a1", "u1")

    def add(minutes: float, ident: str) -> dict[str, Any]:
        who = {"user": ident} if ident == "u1" else {"anon": ident}
        return e(minutes, "Product Added", **who, **{**CART, "product_id": f"p{minutes:g}"})

    merged = run(tmp_path, [add(0, first), add(5, second), e(10, etype="identify",
                 user="u1", anon="a1"), e(600, "Home", user="bob")])  # fmt: skip
    carts = [a for a in merged["actions"] if a["action"] == "cart_abandonment"]
    assert [(a["user_id"], a["at"][11:16]) for a in carts] == [("u1", "08:20")]


@pytest.mark.timeout(120)
def test_a_bound_a_merge_exceeds_is_counted_in_the_summary(tmp_path: Path) -> None:
    # Each half within a cart of one line; the merged profile would hold two.
    add = {"price": 1.0, "quantity": 1}
    r = run(
        tmp_path,
        [
            e(0, "Product Added", anon="a1", product_id="p1", **add),
            e(1, "Product Added", user="u1", product_id="p2", **add),
            e(2, etype="identify", user="u1", anon="a1"),
        ],
        "state:\n  max_cart_lines: 1\n",
    )
    assert r["summary"]["limits_hit"] == {"cart_lines": 1}


# --- an alias of one userId to another ---------------------------------------------------

BOB = [
    e(0, etype="identify", user="bob"),
    e(1, "Product Viewed", user="bob"),
    e(5, etype="alias", user="bob-new", previous="bob"),
    e(7, "Home", user="bob"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shards", [1, 2])  # bob and bob-new share shard 0 of 2
def test_an_alias_of_a_user_id_seen_before_to_another_is_refused_as_a_second_user_id(
    tmp_path: Path, shards: int
) -> None:
    """bob is seen as a userId (identify at 0, a view at 1), never with an anonymousId,
    so no link keeps it in the graph. The alias at 5 would put bob and bob-new in one
    profile: refused (max_user_ids 1), as a link of two userIds by any event is. bob's
    events (1 and 7) stay bob's; the alias has no activity, so bob-new holds none."""
    r = run(tmp_path, BOB, f"state:\n  shards: {shards}\n")
    (rej,) = r["identities"]
    assert (rej["type"], rej["reason"], rej["canonical_id"]) == (
        "rejected_merge",
        "user_id_limit",
        "bob-new",
    )
    assert rej["identifiers"] == rej["previous_canonical_ids"] == ["bob", "bob-new"]
    assert rej["at"] == at(5)
    assert [(p["user_id"], p["events"]) for p in r["profiles"]] == [("bob", 2), ("bob-new", 0)]
    assert [(s["user_id"], s["events"]) for s in r["sessions"]] == [("bob", 2)]
    assert r["summary"]["identity"]["merges"] == 0


@pytest.mark.timeout(120)
def test_every_arrival_order_of_a_user_id_alias_gives_the_same_refusal(tmp_path: Path) -> None:
    # Applied in event-time order, the alias at 5 always comes after bob's events at 0
    # and 1, so bob is a userId by then, whichever line arrives first.
    first = None
    for i, perm in enumerate(itertools.permutations(BOB)):
        d = tmp_path / str(i)
        d.mkdir()
        view = _view(run(d, list(perm), LATE_OK))
        if first is None:
            first = view
            assert [(x[0], x[-1]) for x in view[0][0] if x[0] in ("type", "reason")] == [
                ("reason", "'user_id_limit'"),
                ("type", "'rejected_merge'"),
            ]
        assert view == first, f"order {i} differs"


@pytest.mark.timeout(60)
def test_an_alias_of_a_user_id_gone_to_the_cold_tier_is_still_refused(tmp_path: Path) -> None:
    """bob's session closes at 31 (30 min after 1) and bob goes cold a minute later; zz's
    event at 60 moves stream time past that. The alias at 61 still finds bob a userId."""
    stream = [
        e(0, etype="identify", user="bob"),
        e(1, "Product Viewed", user="bob"),
        e(60, "Home", user="zz"),
        e(61, etype="alias", user="bob-new", previous="bob"),
    ]
    r = run(tmp_path, stream, "state:\n  cold_after: 1m\n")
    assert [(i["type"], i["reason"]) for i in r["identities"]] == [
        ("rejected_merge", "user_id_limit")
    ]
    assert [p["user_id"] for p in r["profiles"]] == ["bob", "bob-new", "zz"]


@pytest.mark.timeout(60)
def test_an_alias_before_its_previous_id_was_seen_links_it_as_that_profile(
    tmp_path: Path,
) -> None:
    """In event-time order the alias at 0 comes before anything says bob is a userId: it
    is linked as an identifier of unknown kind (an anonymous id), and bob's later events,
    with its userId, belong to the profile the alias joined, bob-new (3 events: 1, 3, 4;
    the identify and the alias are no activity)."""
    stream = [
        e(0, etype="alias", user="bob-new", previous="bob"),
        e(1, "Home", user="bob-new"),
        e(2, etype="identify", user="bob"),
        e(3, "Product Viewed", user="bob"),
        e(4, "Home", user="bob"),
    ]
    r = run(tmp_path, stream)
    assert [(i["type"], i["reason"], i["canonical_id"]) for i in r["identities"]] == [
        ("merge", "alias", "bob-new")
    ]
    assert [(p["user_id"], p["events"]) for p in r["profiles"]] == [("bob-new", 3)]
