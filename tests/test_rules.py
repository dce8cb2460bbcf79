"""The rule language: what compiles, what is rejected and why, and time semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Feeder

from audienceflow.operators.config import ConfigError
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, SegmentChange, iso
from audienceflow.operators.rules import Context, RuleError, compile_rule
from audienceflow.operators.segments import SegmentRule, evaluate_all
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import INF, OpenSession, UserState

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
H = 3600.0
DAY = 86400.0
HALF_LIFE = 7 * DAY


def user_with_history(
    *starts: float, open_start: float | None = None, last_ts: float = -INF
) -> UserState:
    u = UserState("ann", first_seen=0.0, last_ts=last_ts)
    for s in starts:
        u.history.append((s, 2, 1, 60.0, 0, 0.0, 0, False))
    if open_start is not None:
        u.session = OpenSession("ann:9", start=open_start, last=open_start, events=1)
    return u


# --- compile errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("visits > 3", "unknown name 'visits'"),
        ("sessions(24h) > 3 and is_vip", "unknown name 'is_vip'"),
        ("clicks(24h) > 3", "unknown function 'clicks'"),
        ("__import__('os')", "unknown function '__import__'"),
        ("device.upper() == 'X'", "unknown function 'device.upper'"),
        ("device.__class__ == 1", "Attribute is not allowed"),
        ("sessions > 3", "'sessions' is a function"),
        ("sessions(3) > 1", "sessions() needs a duration such as 24h; got 3"),
        ("sessions('24h') > 1", "sessions() needs a duration such as 24h; got '24h'"),
        ("sessions(device) > 1", "sessions() needs a duration"),
        ("total('clicks', 7d) > 1", "total() needs a metric, one of"),
        ("total('revenu', 7d) > 1", "; 'revenu' is not one (did you mean 'revenue'?)"),
        ("total(orders, 7d) > 1", "; orders is not one (quote it: 'orders')"),
        ("affinity(3) > 1", "affinity() needs a quoted name; got 3"),
        ("in_segment(frequent_visitor)", "in_segment() needs a quoted name"),
        ("sessions() > 1", "sessions() takes 1 argument(s): duration"),
        ("sessions(1h, 2h) > 1", "sessions() takes 1 argument(s)"),
        ("sessions(window=1h) > 1", "sessions() takes 1 argument(s)"),
        ("top_category('x') == 'y'", "top_category() takes 0 argument(s)"),
        ("device == None", "null (absent) is only compared with == or != to traits.NAME"),
        ("[d for d in device]", "ListComp is not allowed"),
        ("device[0] == 'd'", "Subscript is not allowed"),
        ("(lambda: 1)()", "unknown function"),
        ("sessions(24h) >", "not a valid expression"),
    ],
)
def test_a_rule_outside_the_language_is_rejected_saying_why(source: str, message: str) -> None:
    with pytest.raises(RuleError) as exc:
        compile_rule("seg", source)
    assert message in str(exc.value)


@pytest.mark.parametrize("source", ["", "   ", None])
def test_an_empty_rule_is_rejected(source: str) -> None:
    with pytest.raises(RuleError, match="non-empty expression"):
        compile_rule("seg", source)


@pytest.mark.parametrize("when", ["", "5", "[a]"])
def test_a_when_that_is_no_text_is_a_config_error_naming_its_key(when: str, tmp_path: Path) -> None:
    # YAML reads an empty ``when:`` as None, ``5`` as a number: the compiled build's rule
    # compiler, typed ``str``, raised a bare TypeError where pure Python said which key.
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(f"segments:\n  vip:\n    when: {when}\n")
    with pytest.raises(ConfigError, match=r"rules.yaml:3: segments.vip.when: a rule needs a"):
        Settings.load(cfg, environ={})


def test_category_is_rejected_outside_a_per_category_rule() -> None:
    with pytest.raises(RuleError, match="'category' can only be used in a rule with 'per: cat"):
        compile_rule("seg", "video_completions(category) >= 3")
    with pytest.raises(RuleError, match="per: category"):
        compile_rule("seg", "category == 'shoes'")


def test_category_is_accepted_in_a_per_category_rule() -> None:
    r = compile_rule("seg", "video_completions(category) >= 3", per="category")
    assert r.names == frozenset({"video_completions", "category"})


@pytest.mark.parametrize("source", ["affinity(24h) > 1", "video_completions(1h) >= 3"])
def test_a_duration_where_a_category_is_expected_is_rejected(source: str) -> None:
    with pytest.raises(RuleError, match="needs a quoted name"):
        compile_rule("seg", source)


def test_a_misplaced_duration_is_named_as_written_in_the_error() -> None:
    with pytest.raises(RuleError) as exc:
        compile_rule("seg", "in_segment(24h)")
    assert "got 24h" in str(exc.value)


def test_names_lists_the_functions_and_variables_used() -> None:
    r = compile_rule("vip", "total('orders', 30d) >= 2 and device == 'desktop' or in_session")
    assert r.names == frozenset({"total", "device", "in_session"})


def test_a_duration_inside_a_quoted_string_stays_text() -> None:
    r = compile_rule("seg", "in_segment('last 24h') or locale == '7d'")
    u = UserState("ann", 0.0, locale="7d")
    assert r.holds(Context(u, T0, HALF_LIFE)) is True
    u.locale = "24h"
    assert r.holds(Context(u, T0, HALF_LIFE)) is False
    u.segments["last 24h"] = T0
    assert r.holds(Context(u, T0, HALF_LIFE)) is True


def test_durations_in_all_units_become_seconds() -> None:
    r = compile_rule(
        "seg", "session_seconds >= 1.5h and session_seconds < 1d + 500ms + 30s + 2m + 1w"
    )
    u = UserState("ann", 0.0)
    u.session = OpenSession("ann:1", start=0.0, last=1.5 * H)
    assert r.holds(Context(u, 1.5 * H, HALF_LIFE))
    u.session.last = 1.5 * H - 1
    assert not r.holds(Context(u, 1.5 * H, HALF_LIFE))


# --- time semantics ----------------------------------------------------------------------


def test_active_within_holds_until_last_event_plus_the_window_and_says_when_it_lapses() -> None:
    r = compile_rule("recent", "active_within(1h)")
    u = UserState("ann", 0.0, last_ts=T0)
    ctx = Context(u, T0 + 100, HALF_LIFE)
    assert r.holds(ctx) is True
    assert ctx.next_change == T0 + 3600
    ctx = Context(u, T0 + 3599.5, HALF_LIFE)
    assert r.holds(ctx) is True and ctx.next_change == T0 + 3600
    ctx = Context(u, T0 + 3600, HALF_LIFE)
    assert r.holds(ctx) is False
    assert ctx.next_change == INF


def test_sessions_counts_starts_inside_the_window_and_reports_when_the_oldest_leaves() -> None:
    now = T0 + 2 * DAY
    # starts: 25 h ago (out), exactly 24 h ago (out: the window is open at its old end),
    # 22 h ago, 1 h ago, and the open session started 10 s ago.
    u = user_with_history(now - 25 * H, now - 24 * H, now - 22 * H, now - H, open_start=now - 10)
    r = compile_rule("freq", "sessions(24h) > 2")
    ctx = Context(u, now, HALF_LIFE)
    assert ctx.sessions(DAY) == 3
    assert ctx.next_change == now - 22 * H + DAY  # = now + 2 h
    assert r.holds(Context(u, now, HALF_LIFE))
    later = now + 2 * H
    ctx = Context(u, later, HALF_LIFE)
    assert ctx.sessions(DAY) == 2
    assert ctx.next_change == now - H + DAY
    assert not r.holds(ctx)


def test_a_session_starting_after_now_is_not_counted_yet() -> None:
    u = user_with_history(T0 - H, T0 + 10)
    ctx = Context(u, T0, HALF_LIFE)
    assert ctx.sessions(DAY) == 1
    assert ctx.next_change == T0 - H + DAY


def test_total_sums_a_metric_over_sessions_in_the_window() -> None:
    u = user_with_history(T0 - 2 * DAY, T0 - H)
    u.history[1] = (T0 - H, 5, 3, 120.0, 1, 42.5, 2, True)
    u.history[0] = (T0 - 2 * DAY, 7, 7, 10.0, 1, 100.0, 1, True)
    ctx = Context(u, T0, HALF_LIFE)
    assert ctx.total("revenue", DAY) == 42.5
    assert ctx.events(DAY) == 5
    assert ctx.total("orders", 7 * DAY) == 2
    assert ctx.next_change == T0 - H + DAY


def test_evaluate_all_sets_the_recheck_to_the_earliest_change_of_any_rule() -> None:
    rules = [
        SegmentRule.parse("recent", "active_within(1h)"),
        SegmentRule.parse("freq", "sessions(24h) >= 1"),
    ]
    # recent lapses at T0 + 50 min (last event 10 min ago), freq at T0 + 1 h (session 23 h ago)
    u = user_with_history(T0 - 23 * H, last_ts=T0 - 10 * 60)
    changes = evaluate_all(u, rules, T0, HALF_LIFE)
    assert [(c.segment, c.change, c.at) for c in changes] == [
        ("recent", "enter", T0),
        ("freq", "enter", T0),
    ]
    assert u.segment_recheck == T0 + 50 * 60


def test_evaluate_all_picks_the_lapse_of_sessions_when_it_comes_first() -> None:
    rules = [
        SegmentRule.parse("recent", "active_within(1h)"),
        SegmentRule.parse("freq", "sessions(24h) >= 1"),
    ]
    # recent lapses at T0 + 50 min, freq at T0 + 30 min
    u = user_with_history(T0 - 23.5 * H, last_ts=T0 - 10 * 60)
    evaluate_all(u, rules, T0, HALF_LIFE)
    assert u.segment_recheck == T0 + 30 * 60


def test_without_time_dependent_values_there_is_no_recheck() -> None:
    u = UserState("ann", 0.0)
    evaluate_all(u, [SegmentRule.parse("big", "total_events > 3")], T0, HALF_LIFE)
    assert u.segment_recheck == INF


# --- explain -------------------------------------------------------------------------------


def test_explain_records_values_under_the_original_text() -> None:
    r = compile_rule("freq", "sessions(24h) > 1 and active_within(1h) and session_page_views >= 0")
    u = user_with_history(T0 - H, open_start=T0 - 60, last_ts=T0 - 60)
    ctx = Context(u, T0, HALF_LIFE)
    ctx.next_change = 123.0
    out = r.explain(ctx)
    assert out == {
        "rule": "freq",
        "when": "sessions(24h) > 1 and active_within(1h) and session_page_views >= 0",
        "holds": True,
        "values": {"sessions(24h)": 2.0, "active_within(1h)": True, "session_page_views": 0},
    }
    assert ctx.next_change == 123.0  # explaining does not disturb the recheck time


def test_explain_keeps_the_duration_text_as_written() -> None:
    r = compile_rule("x", "total('revenue', 7d) >= 0 and events(1.5h) >= 0")
    out = r.explain(Context(UserState("ann", 0.0), T0, HALF_LIFE))
    assert set(out["values"]) == {"total('revenue', 7d)", "events(1.5h)"}


def test_explain_records_only_what_was_evaluated() -> None:
    r = compile_rule("x", "in_session or total_events > 3")
    u = UserState("ann", 0.0)
    u.session = OpenSession("ann:1", start=T0, last=T0)
    assert r.explain(Context(u, T0, HALF_LIFE))["values"] == {"in_session": True}


def test_explain_labels_are_right_with_more_than_ten_durations() -> None:
    src = " + ".join(f"sessions({i}h)" for i in range(1, 12)) + " >= 0"
    out = compile_rule("x", src).explain(Context(UserState("ann", 0.0), T0, HALF_LIFE))
    assert set(out["values"]) == {f"sessions({i}h)" for i in range(1, 12)}


# --- time semantics end to end, worked out by hand ------------------------------------------


def page(mid: str, user: str, ts: float) -> Event:
    return Event(mid, user, None, "page", "Home", ts, "navigation", {}, position=mid)


def changes_of(out: list[object], segment: str, user: str = "ann") -> list[tuple[str, str]]:
    return [
        (c.change, iso(c.at))
        for c in out
        if isinstance(c, SegmentChange) and c.segment == segment and c.user_id == user
    ]


def test_recent_engager_is_left_exactly_one_hour_after_the_last_event() -> None:
    cfg = Settings.load(environ={})
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    out = eng.on_items(
        Feeder(cfg).items(
            [page("m1", "ann", T0), page("m2", "ann", T0 + 600), page("m3", "bob", T0 + 3 * H)]
        )
    )  # bob moves stream time past 09:10
    assert changes_of(out, "recent_engager") == [
        ("enter", "2026-03-02T08:00:00.000Z"),
        ("exit", "2026-03-02T09:10:00.000Z"),
    ]
    (_, exit_) = [
        c
        for c in out
        if isinstance(c, SegmentChange) and c.user_id == "ann" and c.segment == "recent_engager"
    ]
    assert exit_.reason["values"] == {"active_within(1h)": False}


def test_frequent_visitor_enters_on_the_fourth_session_and_exits_when_the_first_lapses() -> None:
    # sessions(24h) > 3; one event every hour → four sessions at 08, 09, 10, 11 h.
    cfg = Settings.load(environ={})
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    feeder = Feeder(cfg)
    out = eng.on_items(feeder.items([page(f"m{i}", "ann", T0 + i * H) for i in range(4)]))
    out += eng.on_items(feeder.end())
    out += eng.finish()
    assert changes_of(out, "frequent_visitor") == [
        ("enter", "2026-03-02T11:00:00.000Z"),
        ("exit", "2026-03-03T08:00:00.000Z"),
    ]
    (enter, _) = [
        c for c in out if isinstance(c, SegmentChange) and c.segment == "frequent_visitor"
    ]
    assert enter.reason["values"] == {"sessions(24h)": 4.0}


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("rule", "offset", "holds"),
    [
        ("traits.tz_offset in [-5, -8]", -5, True),
        ("traits.tz_offset in [-5, -8]", 5, False),
        ("traits.tz_offset in [+5, 1.5]", 5, True),
        ("traits.tz_offset not in [-5.5, -8]", -5.5, False),
        ("traits.tz_offset == -5", -5, True),
    ],
)
def test_a_signed_number_is_a_number_in_a_list_and_compares_as_one(
    rule: str, offset: float, holds: bool
) -> None:
    # Python parses "-5" as an operator on 5: a list of them was refused as holding
    # something other than quoted texts or numbers.
    r = compile_rule("tz", rule)
    u = UserState("ann", 0.0)
    u.traits = {"tz_offset": offset}
    assert r.holds(Context(u, T0, HALF_LIFE)) is holds
