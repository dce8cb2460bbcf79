"""Segment's ``group`` call: a user's account and its traits, read by rules as ``group.X``.

A group call naming its account (``groupId``) is a valid event, no activity (like an
identify: no session, no counted event); its traits are the account's, those a rule
reads kept as the latest group call's. One without a usable ``groupId`` is dead-lettered
``missing_group_id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.flows.testing import run
from audienceflow.operators import codec, features
from audienceflow.operators.config import ConfigError
from audienceflow.operators.merge import merge_users
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import GROUP_AT, GROUP_ID, Limits, UserState
from audienceflow.operators.validate import REASONS, Taxonomy, Validator

pytestmark = pytest.mark.timeout(60)

VALIDATE = Validator(Taxonomy.default())
T = "2026-03-02T08:{:02d}:00Z"
ENTERPRISE = {"segments": {"enterprise": {"when": "group.plan == 'enterprise'"}}}


def group_line(**fields: Any) -> bytes:
    """A group call of u1 at 08:00Z to account acme, ``fields`` overriding (None removes)."""
    obj: dict[str, Any] = {
        "type": "group",
        "userId": "u1",
        "groupId": "acme",
        "timestamp": T.format(0),
        "messageId": "g1",
        "traits": {"plan": "enterprise", "employees": 500},
    }
    obj.update(fields)
    return orjson.dumps({k: v for k, v in obj.items() if v is not None})


def group(user: str, minute: int, traits: dict[str, Any], **fields: Any) -> dict[str, Any]:
    call = {"type": "group", "userId": user, "groupId": "acme", "traits": traits,
            "timestamp": T.format(minute), "messageId": f"g-{user}-{minute}"}  # fmt: skip
    return {**call, **fields}


def page(user: str, minute: int) -> dict[str, Any]:
    return {"type": "page", "userId": user, "name": "Home", "timestamp": T.format(minute),
            "messageId": f"p-{user}-{minute}"}  # fmt: skip


def changes(result: Any, segment: str) -> list[tuple[str, str, str]]:
    return [
        (c["user_id"], c["change"], c["at"][11:16])
        for c in result.segment_changes
        if c["segment"] == segment
    ]


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("group_id", ["acme", 42, "0e8c78ea", " acme "])
def test_a_group_call_naming_its_account_is_a_valid_profile_event(group_id: Any) -> None:
    ev = VALIDATE(group_line(groupId=group_id), "s:1")
    assert isinstance(ev, Event), ev
    assert (ev.type, ev.category, ev.name) == ("group", "identity", "")
    # with its groupId as text, for the privacy step to replace by a digest
    assert ev.traits == {"plan": "enterprise", "employees": 500, GROUP_ID: str(group_id)}


def test_a_capitalised_group_type_is_a_group_call() -> None:
    ev = VALIDATE(group_line(type="Group"), "s:1")
    assert isinstance(ev, Event) and ev.type == "group"


def test_the_persons_cached_traits_in_the_context_are_not_the_accounts() -> None:
    line = group_line(traits=None, context={"traits": {"plan": "free", "email": "a@b.c"}})
    ev = VALIDATE(line, "s:1")
    assert isinstance(ev, Event) and ev.traits == {GROUP_ID: "acme"}  # the account only


@pytest.mark.parametrize(
    "group_id", [None, "", " ", "\u200b", "undefined", "NULL", " null ", "[object Object]"]
)
def test_a_group_call_without_a_usable_group_id_is_dead_lettered(group_id: Any) -> None:
    out = VALIDATE(group_line(groupId=group_id), "s:1")
    assert isinstance(out, DeadLetter) and out.reason == "missing_group_id"
    assert out.reason in REASONS
    assert "'groupId'" in out.detail


def test_a_missing_group_id_is_said_to_be_absent() -> None:
    out = VALIDATE(group_line(groupId=None), "s:1")
    assert isinstance(out, DeadLetter) and out.detail.endswith("got none")


@pytest.mark.parametrize(
    ("group_id", "reason"),
    [
        (1.5, "wrong_field_type"),
        (True, "wrong_field_type"),
        ({"id": "acme"}, "wrong_field_type"),
        (["acme"], "wrong_field_type"),
        ("g\x00", "wrong_field_type"),
        ("g" * 513, "oversize_field"),
    ],
)
def test_a_group_id_of_the_wrong_kind_gets_the_reason_an_id_would(
    group_id: Any, reason: str
) -> None:
    out = VALIDATE(group_line(groupId=group_id), "s:1")
    assert isinstance(out, DeadLetter) and out.reason == reason
    assert "'groupId'" in out.detail


def test_a_group_id_of_the_longest_length_is_read() -> None:
    assert isinstance(VALIDATE(group_line(groupId="g" * 512), "s:1"), Event)


def test_unsupported_type_is_no_longer_a_reason() -> None:
    assert "unsupported_type" not in REASONS and "missing_group_id" in REASONS


# --- rules on account traits -------------------------------------------------------------


def test_a_rule_on_an_account_trait_enters_and_exits_at_the_group_calls() -> None:
    events = [
        page("u1", 0),
        group("u1", 1, {"plan": "enterprise", "employees": 500}),
        page("u1", 2),  # changes no account trait
        group("u1", 3, {"plan": "free", "employees": 500}),
        group("u1", 4, {"plan": "enterprise"}),  # the same account: employees stay 500
        group("u1", 5, {"employees": 20}),  # and the plan stays enterprise
        group("u1", 6, {}),  # a call joining the user to it: nothing changes
        group("u1", 7, {"employees": 300}, groupId="initech"),  # another account: its own
    ]
    config = {
        "segments": {
            **ENTERPRISE["segments"],
            "large": {"when": "group.employees >= 100"},
        }
    }
    r = run(events, config)
    assert changes(r, "enterprise") == [
        ("u1", "enter", "08:01"),
        ("u1", "exit", "08:03"),
        ("u1", "enter", "08:04"),
        ("u1", "exit", "08:07"),  # initech sent no plan: none
    ]
    assert changes(r, "large") == [
        ("u1", "enter", "08:01"),
        ("u1", "exit", "08:05"),
        ("u1", "enter", "08:07"),
    ]
    [entered] = [c for c in r.segment_changes if c["segment"] == "large"][:1]
    assert entered["reason"]["values"] == {"group.employees": 500}


def test_a_rule_reading_only_an_account_trait_is_evaluated_at_a_group_call() -> None:
    # The user's only events are group calls: nothing else could evaluate the rule.
    r = run([group("u2", 0, {"plan": "free"}), group("u2", 7, {"plan": "enterprise"})], ENTERPRISE)
    assert changes(r, "enterprise") == [("u2", "enter", "08:07")]
    # No activity: no session, no counted event.
    assert r.sessions == []
    assert r.summary["counts"]["processed"] == 2


def test_a_group_call_opens_no_session_and_counts_no_event() -> None:
    r = run([page("u3", 0), group("u3", 10, {"plan": "enterprise"})], ENTERPRISE)
    [session] = r.sessions
    assert (session["events"], session["page_views"]) == (1, 1)
    assert session["end"][11:16] == "08:00"  # its last activity is the page, not the group


def test_an_identify_trait_never_reads_as_an_account_trait() -> None:
    # Keys no identify can produce: its trait literally named "group.plan" is no account's.
    traits = {"group.plan": "enterprise", "plan": "enterprise"}
    identify = {"type": "identify", "userId": "u4", "timestamp": T.format(0),
                "messageId": "i4", "traits": traits}  # fmt: skip
    r = run([identify, page("u4", 1)], ENTERPRISE)
    assert changes(r, "enterprise") == []


def test_a_group_call_without_a_group_id_changes_nothing() -> None:
    r = run([page("u5", 0), group("u5", 1, {"plan": "enterprise"}, groupId=None)], ENTERPRISE)
    assert changes(r, "enterprise") == []
    assert [d["reason"] for d in r.dead_letters] == ["missing_group_id"]


@pytest.mark.parametrize("group_id", ["guest", " GUEST ", "test-123"])
def test_a_group_id_of_a_configured_blocked_value_is_dead_lettered_as_missing(
    group_id: Any,
) -> None:
    # identity.blocked_values and blocked_patterns name no one: nor an account. Before, a
    # groupId "guest" was an account, and every sender of it shared its traits.
    config = {
        **ENTERPRISE,
        "identity": {"blocked_values": ["guest"], "blocked_patterns": ["test-[0-9]+"]},
    }
    r = run([page("u5", 0), group("u5", 1, {"plan": "enterprise"}, groupId=group_id)], config)
    assert changes(r, "enterprise") == []
    assert [d["reason"] for d in r.dead_letters] == ["missing_group_id"]
    assert "identity.blocked_values" in r.dead_letters[0]["detail"]


def test_a_blocked_group_id_names_no_account_with_identity_linking_off_too() -> None:
    # The README: "whether or not identity.enabled" (the groupId check never depended on it).
    config = {**ENTERPRISE, "identity": {"enabled": False, "blocked_values": ["guest"]}}
    r = run([page("u5", 0), group("u5", 1, {"plan": "enterprise"}, groupId="guest")], config)
    assert changes(r, "enterprise") == []
    assert [d["reason"] for d in r.dead_letters] == ["missing_group_id"]


def test_a_group_id_only_resembling_a_blocked_value_names_its_account() -> None:
    config = {**ENTERPRISE, "identity": {"blocked_values": ["guest"]}}
    r = run([page("u5", 0), group("u5", 1, {"plan": "enterprise"}, groupId="guests")], config)
    assert changes(r, "enterprise") == [("u5", "enter", "08:01")]
    assert r.dead_letters == []


def test_the_account_traits_of_a_merged_profile_follow_the_later_group_call() -> None:
    # The anonymous half's call (08:05) is later than the known half's (08:01).
    events = [
        group("u6", 1, {"plan": "enterprise"}),
        {**group("", 5, {"plan": "free"}), "userId": None, "anonymousId": "a6"},
        {"type": "identify", "userId": "u6", "anonymousId": "a6", "timestamp": T.format(9),
         "messageId": "i6"},
    ]  # fmt: skip
    events[1] = {k: v for k, v in events[1].items() if v is not None}
    r = run(events, ENTERPRISE)
    assert changes(r, "enterprise") == [("u6", "enter", "08:01"), ("u6", "exit", "08:09")]


def _half(uid: str, at: float | None, **traits: Any) -> UserState:
    u = UserState(uid, first_seen=0.0, last_seen=at or 0.0)
    if at is not None:
        ev = Event("m", uid, None, "group", "", at, "identity", {}, traits=traits)
        features.group(u, ev, frozenset({"plan", "seats"}), frozenset(), Limits())
    return u


@pytest.mark.parametrize(
    ("kept_at", "other_at", "plan"),
    [(10.0, 20.0, "free"), (20.0, 10.0, "enterprise"), (None, 10.0, "free"),
     (10.0, None, "enterprise")],
)  # fmt: skip
def test_a_merge_keeps_the_account_traits_of_the_later_call(
    kept_at: float | None, other_at: float | None, plan: str
) -> None:
    kept = _half("u1", kept_at, plan="enterprise", seats=5)
    other = _half("a1", other_at, plan="free")
    kept.traits = {**(kept.traits or {}), "tier": "gold"}  # an identify trait: kept either way
    merged = merge_users(kept, other, "u1", 10, 3600.0, Limits())
    assert merged.traits.get("group.plan") == plan
    assert ("group.seats" in merged.traits) == (plan == "enterprise")
    assert merged.traits[GROUP_AT] == max(a for a in (kept_at, other_at) if a is not None)
    assert merged.traits["tier"] == "gold"


def test_a_late_group_call_changes_nothing_and_a_call_replaces_the_one_before() -> None:
    u = _half("u1", 20.0, plan="enterprise", seats=5)
    late = Event("m", "u1", None, "group", "", 10.0, "identity", {}, traits={"plan": "free"})
    features.group(u, late, frozenset({"plan", "seats"}), frozenset(), Limits())
    assert u.traits == {GROUP_AT: 20.0, "group.plan": "enterprise", "group.seats": 5}
    late.ts, late.traits = 30.0, None
    features.group(u, late, frozenset({"plan", "seats"}), frozenset(), Limits())
    assert u.traits == {GROUP_AT: 30.0}


def test_account_traits_count_towards_max_traits() -> None:
    u = UserState("u1", first_seen=0.0, traits={"a": 1, "b": 2})
    ev = Event("m", "u1", None, "group", "", 1.0, "identity", {}, traits={"plan": "pro"})
    hits: dict[str, int] = {}
    features.group(u, ev, frozenset({"plan"}), frozenset(), Limits(traits=2), hits)
    assert u.traits == {"a": 1, "b": 2} and hits == {"traits": 1}


# --- privacy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trait", "listed"),
    [("email", "pii_fields"), ("phone", "pii_fields"), ("Address", "pii_group_traits"),
     ("avatar", "pii_group_traits")],
)  # fmt: skip
def test_a_rule_reading_a_personal_account_trait_is_rejected_at_load(
    trait: str, listed: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'segments:\n  s:\n    when: "group.{trait} != null"\n')
    with pytest.raises(ConfigError, match=rf"group\.{trait} is named in privacy\.{listed}"):
        Settings.load(cfg, environ={})


def test_a_rule_may_read_the_company_name_by_default() -> None:
    # Segment's reserved group trait `name` is a company's: before, `group.name` was
    # refused at load because `name` (a person's full name) is in privacy.pii_traits.
    config = {"segments": {"acme": {"when": "group.name == 'Acme Inc'"}}}
    r = run([page("u7", 0), group("u7", 1, {"name": "Acme Inc", "email": "ceo@acme.test"})],
            config)  # fmt: skip
    assert changes(r, "acme") == [("u7", "enter", "08:01")]
    (entry,) = [c for c in r.segment_changes if c["segment"] == "acme"]
    assert entry["reason"]["values"] == {"group.name": "Acme Inc"}
    assert "ceo@acme" not in orjson.dumps([r.segment_changes, r.profiles]).decode()


def test_the_person_and_account_pii_lists_are_apart(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    # Clearing the person list unlocks traits.address, not group.address ...
    cfg.write_text(
        "privacy: {pii_traits: []}\n"
        'segments:\n  s:\n    when: "traits.address != null and group.address != null"\n'
    )
    with pytest.raises(ConfigError, match=r"group\.address is named in privacy\.pii_group_"):
        Settings.load(cfg, environ={})
    # ... and clearing the account list, group.address and not traits.address.
    cfg.write_text(cfg.read_text().replace("pii_traits", "pii_group_traits"))
    with pytest.raises(ConfigError, match=r"traits\.address is named in privacy\.pii_traits"):
        Settings.load(cfg, environ={})
    # A company name listed as personal is refused as any other.
    cfg.write_text("privacy: {pii_group_traits: [name]}\nsegments: {s: {when: group.name}}\n")
    with pytest.raises(ConfigError, match=r"group\.name is named in privacy\.pii_group_traits"):
        Settings.load(cfg, environ={})
    defaults = Settings.load(None, environ={})
    assert defaults.pii_group_traits == ("email", "phone", "address", "avatar")
    assert "name" in defaults.pii_traits and "name" not in defaults.pii_group_traits


def test_the_engine_never_keeps_an_account_trait_of_pii_group_traits() -> None:
    # The load refuses a rule reading one; if one were read anyway (a snapshot's config),
    # the engine's own check is the account list's, not the person list's.
    import dataclasses

    from audienceflow.operators.engine import ShardEngine, ShardState

    settings = dataclasses.replace(
        Settings.load(None, environ={}), pii_traits=("plan",), pii_group_traits=("seats",)
    )
    engine = ShardEngine(settings, ShardState("shard-000"), partitions=["p"])
    assert "seats" in engine.group_pii and "plan" not in engine.group_pii
    assert "plan" in engine.pii and "seats" not in engine.pii


def test_only_account_traits_a_rule_reads_pass_the_privacy_step() -> None:
    privacy = Privacy(("email",), salt="s", traits=frozenset({"plan"}),
                      group_traits=frozenset({"employees"}))  # fmt: skip
    traits = {"plan": "x", "employees": 5, "email": "ceo@acme.test", "name": "Acme"}
    ev = Event("m", "u1", None, "group", "", 1.0, "identity", {}, traits=dict(traits))
    assert privacy(ev) is ev and ev.traits == {"employees": 5}
    ident = Event("m", "u1", None, "identify", "", 1.0, "identity", {}, traits=dict(traits))
    assert privacy(ident) is ident and ident.traits == {"plan": "x"}


def test_a_personal_account_trait_is_never_kept_even_if_carried() -> None:
    u = UserState("u1", first_seen=0.0)
    ev = Event("m", "u1", None, "group", "", 1.0, "identity", {},
               traits={"email": "ceo@acme.test", "plan": "pro"})  # fmt: skip
    features.group(u, ev, frozenset({"email", "plan"}), frozenset({"email"}), Limits())
    assert u.traits == {GROUP_AT: 1.0, "group.plan": "pro"}


def test_the_group_id_and_unread_account_traits_reach_no_output() -> None:
    call = group("u7", 1, {"plan": "enterprise", "name": "Initech Secret"},
                 groupId="acct-ceo@initech.test")  # fmt: skip
    r = run([page("u7", 0), call], ENTERPRISE)
    written = orjson.dumps([r.segment_changes, r.sessions, r.profiles, r.summary]).decode()
    assert "initech" not in written.lower()
    assert changes(r, "enterprise") == [("u7", "enter", "08:01")]


# --- snapshots ---------------------------------------------------------------------------


def test_a_user_with_account_traits_round_trips_through_the_snapshot_codec() -> None:
    u = _half("u1", 12.5, plan="enterprise", seats=5)
    u.traits["tier"] = "gold"
    back = codec.decode_user(codec.encode_user(u))
    assert back == u and back.traits[GROUP_AT] == 12.5
    # No new field: the account traits live in the traits map the codec already had.
    assert [f for f in codec.USER_FIELDS if "group" in f or "account" in f] == []


# --- what the tests above left open (each kills a mutant of the code they cover) ---------


def test_only_identify_and_group_calls_carry_traits() -> None:
    line = orjson.dumps({"type": "track", "userId": "u1", "event": "E", "messageId": "t1",
                         "timestamp": T.format(0), "traits": {"plan": "free"}})  # fmt: skip
    ev = VALIDATE(line, "s:1")
    assert isinstance(ev, Event) and ev.traits is None


def test_the_ingest_carries_on_only_the_account_traits_rules_read() -> None:
    # A group call waits in the engine (held) until stream time reaches it, and a snapshot
    # holds it there: the company's name or street no rule reads must not be carried.
    from audienceflow.flows.partitions import make_ingest

    env = {"AUDIENCEFLOW_SEGMENTS__BIG__WHEN": "group.employees >= 100"}
    ingest = make_ingest(Settings.load(None, environ=env), "p", None, live=False)
    traits = {"employees": 500, "name": "Initech", "street": "1 Rd", "plan": "pro"}
    ev = ingest.privacy(VALIDATE(group_line(traits=traits), "p:1"))
    assert isinstance(ev, Event) and ev.traits is not None
    account = ev.traits.pop(GROUP_ID)  # which account: a salted digest, never its id
    assert ev.traits == {"employees": 500}
    assert len(account) == 32 and "acme" not in account
    again = ingest.privacy(VALIDATE(group_line(traits=traits), "p:2"))
    other = ingest.privacy(VALIDATE(group_line(traits=traits, groupId="initech"), "p:3"))
    assert again.traits[GROUP_ID] == account != other.traits[GROUP_ID]  # type: ignore[union-attr]


def test_an_account_trait_is_read_at_the_top_level_only() -> None:
    with pytest.raises(ConfigError, match=r"group\.NAME"):
        Settings.load(None, environ={"AUDIENCEFLOW_SEGMENTS__X__WHEN": "group.address.city == 'x'"})


def test_no_account_is_kept_when_no_rule_reads_one() -> None:
    # Its time would take the one trait a user may keep (max_traits 1): the plan.
    identify = {"type": "identify", "userId": "u8", "timestamp": T.format(2), "messageId": "i8",
                "traits": {"plan": "pro"}}  # fmt: skip
    config = {"state": {"max_traits": 1}, "segments": {"pro": {"when": "traits.plan == 'pro'"}}}
    r = run([group("u8", 1, {"plan": "enterprise"}), identify], config)
    assert changes(r, "pro") == [("u8", "enter", "08:02")]
    assert r.summary["limits_hit"] == {}


def test_a_group_call_updates_device_and_last_seen_as_an_identify_does() -> None:
    first = group("u9", 2, {"plan": "free"})
    call = group("u9", 4, {"plan": "enterprise"}, context={"device": {"type": "mobile"}})
    config = {"segments": {"mobile": {"when": "device == 'mobile'"}}}
    r = run([first, call, page("zz", 5)], config)
    assert changes(r, "mobile") == [("u9", "enter", "08:04")]
    profile = r.profile("u9")
    assert profile is not None and profile["events"] == 0
    # A profile with no activity is last seen at its latest call (the contract has no null).
    assert (profile["first_seen"][11:16], profile["last_seen"][11:16]) == ("08:02", "08:04")


def test_a_group_call_at_the_time_of_the_kept_one_replaces_it_as_a_later_identify_would() -> None:
    u = _half("u1", 20.0, plan="enterprise")
    same = Event("m", "u1", None, "group", "", 20.0, "identity", {}, traits={"plan": "free"})
    features.group(u, same, frozenset({"plan"}), frozenset(), Limits())
    assert u.traits == {GROUP_AT: 20.0, "group.plan": "free"}


def test_a_newer_group_call_replaces_the_account_of_a_user_at_max_traits() -> None:
    u = _half("u1", 10.0, plan="enterprise")
    u.traits["tier"] = "gold"  # at the bound of 3: the account's time, its plan, the tier
    ev = Event("m", "u1", None, "group", "", 20.0, "identity", {}, traits={"plan": "free"})
    hits: dict[str, int] = {}
    features.group(u, ev, frozenset({"plan"}), frozenset(), Limits(traits=3), hits)
    assert u.traits == {GROUP_AT: 20.0, "group.plan": "free", "tier": "gold"} and hits == {}


def test_a_merge_takes_no_account_trait_of_the_half_whose_call_was_earlier() -> None:
    kept = _half("u1", 20.0, plan="enterprise")
    other = _half("a1", 10.0, seats=5)  # another account's: it left the plan out
    merged = merge_users(kept, other, "u1", 10, 3600.0, Limits())
    assert merged.traits == {GROUP_AT: 20.0, "group.plan": "enterprise"}
    # And the other way round: the later half's account, none of the earlier's traits.
    kept, other = _half("u1", 10.0, seats=5), _half("a1", 20.0, plan="enterprise")
    merged = merge_users(kept, other, "u1", 10, 3600.0, Limits())
    assert merged.traits == {GROUP_AT: 20.0, "group.plan": "enterprise"}


def test_a_merge_of_two_calls_at_one_time_keeps_the_kept_halfs_account() -> None:
    kept, other = _half("u1", 10.0, plan="enterprise"), _half("a1", 10.0, plan="free")
    merged = merge_users(kept, other, "u1", 10, 3600.0, Limits())
    assert merged.traits == {GROUP_AT: 10.0, "group.plan": "enterprise"}


@pytest.mark.parametrize("lapse", [True, False])
def test_a_group_call_at_a_close_reads_the_session_closed_whatever_lapses_then(
    lapse: bool,
) -> None:
    # As an identify (tests/test_rule_dependencies.py): a group call opens no session, so
    # at the instant the session closes it reads it closed, whether or not a rule's window
    # lapses then too.
    views = [
        {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": f"v{m}",
         "timestamp": T.format(m), "properties": {"product_id": "p1"}}
        for m in (0, 30)
    ]  # fmt: skip
    late = {"type": "page", "userId": "bob", "name": "Home", "messageId": "b",
            "timestamp": "2026-03-02T12:00:00Z"}  # fmt: skip
    call = group("u1", 0, {"plan": "pro"}, timestamp="2026-03-02T09:00:00Z")
    idle = {"when": "total_events > 1000"}  # the defaults' own windows lapse at 09:00 too
    config = {
        "sessions": {"timeout": "30m"},
        "segments": {
            "other": {
                "when": "count('Product Viewed', 1h) >= 2" if lapse else "total_events > 100"
            },
            "recent_engager": idle,
            "high_recency_frequency": idle,
            "frequent_visitor": idle,
            "pro_live": {"when": "in_session and group.plan == 'pro'"},
        },
        "triggers": {"welcome_pro": {"type": "segment", "segment": "pro_live"}},
    }
    r = run([*views, call, late], config)
    assert changes(r, "pro_live") == []
    assert r.delivered("welcome_pro") == []


@pytest.mark.parametrize(
    ("rule", "written"), [("group == 3", "group.NAME"), ("not traits", "traits.NAME")]
)
def test_a_bare_group_or_traits_says_to_read_a_field(rule: str, written: str) -> None:
    # It said "unknown name 'group' (did you mean 'group'?)".
    with pytest.raises(ConfigError, match=rf"is read by a field, {written}") as err:
        Settings.load(None, environ={"AUDIENCEFLOW_SEGMENTS__X__WHEN": rule})
    assert "did you mean" not in str(err.value)
