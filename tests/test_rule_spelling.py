"""What a marketer writes from the README: JSON's literals, and the spellings that
never match or never parse, each answered at load with the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators.rules import Context, RuleError, compile_rule
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import UserState


def holds(source: str, **traits: Any) -> bool:
    user = UserState("ann", first_seen=0.0)
    user.traits = dict(traits)
    return compile_rule("x", source).holds(Context(user, 0.0, 86400.0))


# --- literals --------------------------------------------------------------------------


@pytest.mark.parametrize(("true", "false"), [("true", "false"), ("True", "False")])
def test_booleans_are_spelt_as_json_or_python_writes_them(true: str, false: str) -> None:
    assert holds(f"traits.vip == {true}", vip=True)
    assert not holds(f"traits.vip == {true}", vip=False)
    assert not holds(f"traits.vip == {true}")  # no trait: == is false
    assert holds(f"traits.vip != {false}", vip=True)
    assert holds(f"in_session == {false}")


def test_true_equals_a_trait_of_one_as_in_json_exports_of_a_flag() -> None:
    # README: booleans compare as numbers (a warehouse sync sends a flag as 1/0).
    assert holds("traits.vip == true", vip=1) and holds("traits.vip == false", vip=0)
    assert not holds("traits.vip == true", vip="true")


@pytest.mark.parametrize("spelt", ["null", "None"])
def test_null_asks_whether_a_trait_is_absent(spelt: str) -> None:
    assert holds(f"traits.plan == {spelt}")
    assert holds(f"traits.plan == {spelt}", plan=None)  # sent as null
    assert not holds(f"traits.plan == {spelt}", plan="pro")
    assert holds(f"traits.plan != {spelt} and traits.plan != 'pro'", plan="free")
    assert not holds(f"traits.plan != {spelt} and traits.plan != 'pro'")


def test_null_in_a_where_condition_asks_whether_the_field_is_absent() -> None:
    """Orders without a coupon are counted; ann's only order had one, bob's had none."""
    clock = Clock("2026-03-02T08:00:00Z")
    orders = [
        event("ann", clock.now(), "Order Completed", order_id="o1", total=5, coupon="SPRING"),
        event("bob", clock.advance("1m"), "Order Completed", order_id="o2", total=5),
    ]
    rule = "count('Order Completed', 30d, properties.coupon == null) >= 1"
    config = {"segments": {"full_price": {"when": rule}}}
    entered = [
        c["user_id"]
        for c in run(orders, config).segment_changes
        if c["segment"] == "full_price" and c["change"] == "enter"
    ]
    assert entered == ["bob"]


# --- comparisons that cannot be made ----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "missing", "text", "five"),
    [
        ("traits.score > 3 or total_events >= 1", True, True, True),
        ("total_events >= 1 or traits.score > 3", True, True, True),
        ("traits.score > 3 or total_events >= 9", False, False, True),
        ("traits.score > 3 and total_events >= 1", False, False, True),
        ("not (traits.score > 3)", False, False, False),
        ("not (traits.score > 3) or total_events >= 1", True, True, True),
        ("not (traits.score > 3 and total_events >= 9)", True, True, True),
        ("not (traits.score + 1 > 3 or total_events >= 9)", False, False, False),
        ("total_revenue / total_orders > 2 or total_events >= 1", True, True, True),
        # A number read as a truth that cannot be worked out is unknown too.
        ("traits.score - 1 or total_events >= 1", True, True, True),
        ("total_events >= 1 or traits.score - 5", True, True, True),
        ("traits.score - 5 or total_events >= 9", False, False, False),
        ("traits.score - 1 or total_events >= 9", False, False, True),
        ("not (traits.score - 1) or total_events >= 1", True, True, True),
        ("not (traits.score - 1)", False, False, False),
        ("not (traits.score - 5)", False, False, True),
        ("traits.score - 1 and total_events >= 1", False, False, True),
        ("total_events / total_orders or total_events >= 1", True, True, True),
        # Text in arithmetic is no number either: 'high' * 2 is not 'highhigh'.
        ("traits.score * 2 or total_events >= 9", False, False, True),
        ("traits.score * 2 and total_events >= 1", False, False, True),
        ("traits.score * 2 > 3 or total_events >= 9", False, False, True),
        ("traits.score + traits.score and total_events >= 1", False, False, True),
        ("-traits.score < 0 or total_events >= 9", False, False, True),
    ],
)
def test_a_comparison_that_cannot_be_made_leaves_the_rule_to_its_other_parts(
    source: str, missing: bool, text: bool, five: bool
) -> None:
    """README: a missing or text trait ordered (or in arithmetic), a division by zero, is
    unknown: the rule holds only if it holds whatever that comparison's truth. ann has 3
    events and no orders."""

    def check(**traits: Any) -> bool:
        user = UserState("ann", first_seen=0.0)
        user.total_events = 3
        user.traits = dict(traits)
        rule = compile_rule("x", source)
        fast = rule.holds(Context(user, 0.0, 86400.0))
        assert rule.explain(Context(user, 0.0, 86400.0))["holds"] == fast
        return fast

    assert (check(), check(score="high"), check(score=5)) == (missing, text, five)


def test_a_segment_on_a_trait_or_activity_is_entered_by_activity_alone() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    views = [event("u1", clock.now(), "Product Viewed", product_id="p1")]
    config = {"segments": {"either": {"when": "traits.score > 3 or total_events >= 1"}}}
    (change,) = [c for c in run(views, config).segment_changes if c["segment"] == "either"]
    assert change["change"] == "enter" and change["reason"]["values"]["total_events"] == 1


@pytest.mark.parametrize(
    "source",
    ["cart_items == null", "traits.plan > null", "null", "device != null", "not None"],
)
def test_null_anywhere_but_beside_a_trait_or_property_says_how_to_use_it(source: str) -> None:
    with pytest.raises(RuleError, match=r"only compared with == or != to traits\.NAME"):
        compile_rule("x", source)


# --- comparisons that load but never match as meant ------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("events(1h) > 1h", "events(1h) is a count of events, not a time"),
        ("total_orders > 1d", "total_orders is a count of orders, not a time"),
        ("1h <= sessions(7d)", "sessions(7d) is a count of sessions, not a time"),
        ("total('revenue', 30d) >= 1d", "is a number, not a time"),
        ("cart_value == 1h", "it means the number 3600"),
    ],
)
def test_a_count_compared_with_a_duration_is_rejected(source: str, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        compile_rule("x", source)


@pytest.mark.parametrize(
    "source",
    [
        "session_seconds > 10m",
        "session_engaged_seconds >= 5m",
        "session_max_page_seconds > 10m",
        "since('Product Added') > 1h",
        "total('engaged_seconds', 7d) > 1h",
        "traits.trial_length > 7d",  # a trait's unit is not known: it may be seconds
    ],
)
def test_a_time_compared_with_a_duration_loads(source: str) -> None:
    assert compile_rule("x", source).notes == ()


def test_a_locale_spelt_otherwise_than_ingest_writes_it_is_a_warning(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "segments:\n"
        "  brits:\n    when: \"locale == 'en_GB'\"\n"
        "  ok:\n    when: \"locale in ['en-GB', 'fr']\"\n"
        "  pages:\n    when: \"count('Page Viewed', 1d, context.locale in ['de_de', 'x!']) > 0\"\n"
    )
    assert Settings.load(cfg, environ={}).warnings == (
        f"{cfg}:3: segments.brits.when: locale is read normalised at ingest, so it is never "
        "'en_GB': write 'en-GB': locale == 'en_GB'",
        f"{cfg}:7: segments.pages.when: context.locale is read normalised at ingest, so it "
        "is never 'de_de': write 'de-DE': context.locale in ['de_de', 'x!']",
        f"{cfg}:7: segments.pages.when: context.locale is never 'x!': it is a BCP 47 "
        "language-Region tag such as 'en-GB' (or 'en'), or absent: context.locale in "
        "['de_de', 'x!']",
    )


# --- what a rule that does not parse most likely meant ---------------------------------


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ("events(24hrs) > 3", "'24hrs' is no duration: a duration is a number and ms, s, m, h,"
         " d or w, in lower case (write 24h)"),
        ("events(1H) > 3", "(write 1h)"),
        ("events(3mins) > 3", "(write 3m)"),
        ("events(24 h) > 3", "write a duration without a space: 24h"),
        ("since('Video Playback Started') > 72 hours", "write a duration without a space: 72h"),
        ("events(3 days) > 3", "write a duration without a space: 3d"),
        ("events(90 mins) > 3", "write a duration without a space: 90m"),
        ("events(2 weeks) > 3", "write a duration without a space: 2w"),
        ("events(24 Hours) > 3", "write a duration without a space: 24h"),
        ("events(500 millis) > 3", "write a duration without a space: 500ms"),
        ("sessions(1h) > 1 AND in_session", "write 'and' in lower case"),
        ("NOT in_session", "write 'not' in lower case"),
        ("in_session && cart_items > 0", "write 'and' for &&"),
        ("in_session || cart_items > 0", "write 'or' for ||"),
        ("cart_items = 1", "compare with '=='"),
        ("!in_session", "write 'not' for !"),
    ],
)  # fmt: skip
def test_a_rule_that_does_not_parse_says_what_was_likely_meant(source: str, hint: str) -> None:
    with pytest.raises(RuleError, match="not a valid expression") as exc:
        compile_rule("x", source)
    assert hint in str(exc.value)


def test_a_spelling_used_twice_is_hinted_once() -> None:
    with pytest.raises(RuleError) as exc:
        compile_rule("x", "events(24hrs) > 3 and sessions(24hrs) > 1 AND in_session")
    msg = str(exc.value)
    assert msg.count("'24hrs' is no duration") == 1, msg
    assert msg.count("write 'and' in lower case") == 1, msg


def test_a_parse_hint_reads_no_quoted_text_nor_a_within_keyword() -> None:
    with pytest.raises(RuleError) as exc:
        compile_rule("x", "sequence('A=B && C', 'D', within=1h) >")
    assert str(exc.value).endswith("'D', within=1h) >\"")  # no hint after the source


# --- the README's account of windows by session start, and of scroll depth -------------


def test_events_counts_sessions_by_their_start_and_count_slides_over_events() -> None:
    """README: views every 10 minutes from 08:00 to 10:00 are one session. events(1h)
    counts it while its start (08:00) is within the hour: >= 3 from 08:20 to 09:00; the
    count of the views themselves holds until an hour after the last (10:40)."""
    clock = Clock("2026-03-02T08:00:00Z")
    views = [event("u1", clock.now(), "Product Viewed", product_id="p1")]
    views += [
        event("u1", clock.advance("10m"), "Product Viewed", product_id="p1") for _ in range(12)
    ]
    config = {
        "segments": {
            "by_start": {"when": "events(1h) >= 3"},
            "sliding": {"when": "count(['Page Viewed', 'Product Viewed'], 1h) >= 3"},
        }
    }
    changes = [
        (c["segment"], c["change"], c["at"][11:16])
        for c in run(views, config).segment_changes
        if c["segment"] in config["segments"]
    ]
    assert changes == [
        ("by_start", "enter", "08:20"),
        ("sliding", "enter", "08:20"),
        ("by_start", "exit", "09:00"),
        ("sliding", "exit", "10:40"),
    ]


def test_scroll_depth_is_the_sessions_largest_numeric_percent_capped_at_100() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    scrolls = [
        event("u1", clock.now(), "Page Scrolled", percent=40),
        event("u1", clock.advance("1m"), "Page Scrolled", percent="90"),  # text: not read
        event("u1", clock.advance("1m"), "Scroll Depth Reached", depth=60.7),
    ]
    config = {"segments": {"deep": {"when": "session_scroll_depth >= 60"}}}
    result = run(scrolls, config)
    deep = [(c["change"], c["at"][11:16]) for c in result.segment_changes
            if c["segment"] == "deep"]  # fmt: skip
    assert deep[0] == ("enter", "08:02")
    (session,) = result.sessions
    assert session["max_scroll_depth"] == 60
    more = [*scrolls, event("u1", clock.advance("1m"), "Page Scrolled", percent=250)]
    (session,) = run(more, config).sessions
    assert session["max_scroll_depth"] == 100
