"""A category becomes part of segment names and profiles only as readable, bounded text.

``video_enthusiast:<category>`` carries the category as sent. One holding a control or
invisible character, or longer than ``MAX_CATEGORY_CHARS`` (the bound of an id or event
name), names no category anywhere (affinity, video completions, per-category segments,
a session's ``categories``, a cart line, the recommender) and is counted as
``unusable:category``; one holding an e-mail was already dropped by privacy.
"""

from __future__ import annotations

import pytest

from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators import features
from audienceflow.operators.features import FeatureSpec
from audienceflow.operators.records import Event
from audienceflow.operators.state import MAX_CATEGORY_CHARS, UserState, usable_category

pytestmark = pytest.mark.timeout(120)

SALT = {"AUDIENCEFLOW_PII_SALT": "x"}
T0 = 1_772_438_400.0
LONGEST = "c" * MAX_CATEGORY_CHARS
UNUSABLE = ["bad\x00cat", "tab\there", "line\nbreak", "zero\u200bwidth", "x" * 600]
# Invisible however placed: a joiner that joins nothing, a direction override, a line
# separator, a non-character.
ALSO_UNUSABLE = ["\u200d", "end\u200c", "a\u202eb", "a\u2028b", "a\ufffeb"]
# Blank: spaces (a template's empty value padded), a no-break or ideographic space, a
# Hangul filler, which show nothing: no category, as an empty one.
BLANK = [" ", "   ", "\u00a0", "\u3000", "\u3164", " \u200b "]
# Readable, though ``str.isprintable`` says no: a no-break space (from HTML), Persian
# with its zero-width non-joiner ("home appliances"),
# an emoji sequence joined by ZWJ, an emoji newer than Python 3.11's Unicode tables.
READABLE = [
    "Mode\u00a0femme",
    "\u0644\u0648\u0627\u0632\u0645\u200c\u062e\u0627\u0646\u06af\u06cc",
    "\U0001f469\u200d\U0001f4bb Tech",
    "\U0001fa75 Gifts",
]


@pytest.mark.parametrize("cat", [*UNUSABLE, *ALSO_UNUSABLE, *BLANK])
def test_an_unreadable_or_overlong_category_is_not_usable(cat: str) -> None:
    assert not usable_category(cat)


@pytest.mark.parametrize("cat", ["Running", "Swim & Surf", "café", LONGEST, *READABLE])
def test_plain_categories_up_to_the_bound_are_usable(cat: str) -> None:
    assert usable_category(cat)


def test_an_unusable_category_gives_no_affinity_and_is_counted() -> None:
    user = UserState("u", first_seen=T0)
    hits: dict[str, int] = {}
    ev = Event("m1", "u", None, "track", "Product Viewed", T0, "other", {"category": "a\x00b"})
    assert features.update(user, ev, FeatureSpec(), hits) == ""
    assert user.affinity == {}
    assert hits == {"unusable:category": 1}


@pytest.mark.parametrize("cat", READABLE)
def test_an_event_with_a_readable_category_isprintable_refuses_gives_it_affinity(cat: str) -> None:
    """The event's path checks the common case inline (``features.update``): one that is
    not ``isprintable`` asks ``usable_category``, which keeps these."""
    user = UserState("u", first_seen=T0)
    hits: dict[str, int] = {}
    ev = Event("m1", "u", None, "track", "Product Viewed", T0, "other", {"category": cat})
    assert features.update(user, ev, FeatureSpec(), hits) == cat
    assert list(user.affinity) == [cat] and hits == {}


def test_an_order_line_with_an_unusable_category_is_skipped() -> None:
    user = UserState("u", first_seen=T0)
    hits: dict[str, int] = {}
    lines = [{"product_id": "p1", "category": "x" * 600}, {"product_id": "p2", "category": "Swim"}]
    ev = Event("m1", "u", None, "track", "Order Completed", T0, "other", {"products": lines})
    assert features.update(user, ev, FeatureSpec(), hits) == "Swim"
    assert list(user.affinity) == ["Swim"]
    assert hits == {"unusable:category": 1}


def test_no_segment_name_or_profile_carries_an_unusable_category() -> None:
    cfg = {"segments": {"viewed": {"per": "category", "when": "affinity(category) > 0"}}}
    clock = Clock()
    cats = [*UNUSABLE, "ann@example.com", LONGEST, "Running"]
    lines = [
        event("a1", clock.advance("1m"), "Product Viewed", product_id=f"p{i}", category=c)
        for i, c in enumerate(cats)
    ]
    r = run(lines, cfg, SALT)
    entered = sorted(
        c["segment"]
        for c in r.segment_changes
        if c["change"] == "enter" and c["segment"].startswith("viewed:")
    )
    assert entered == ["viewed:Running", "viewed:" + LONGEST]
    profile = r.profile("a1")
    assert profile is not None
    assert profile["top_category"] in ("Running", LONGEST)
    assert sorted(c for s in r.sessions for c in s["categories"]) == sorted(["Running", LONGEST])
    assert r.summary["limits_hit"] == {"unusable:category": len(UNUSABLE)}
    assert r.contract_errors() == []


def test_a_blank_category_is_no_category() -> None:
    # category: " " was the category " ": the profile's top_category, a session's
    # categories, a per-category segment "viewed: ".
    cfg = {"segments": {"viewed": {"per": "category", "when": "affinity(category) > 0"}}}
    clock = Clock()
    lines = [
        event("a1", clock.advance("1m"), "Product Viewed", product_id=f"p{i}", category=c)
        for i, c in enumerate(BLANK)
    ]
    lines.append(event("a1", clock.advance("1m"), "Product Added", product_id="p9", category=" "))
    r = run(lines, cfg, SALT)
    assert [c["segment"] for c in r.segment_changes if c["segment"].startswith("viewed")] == []
    profile = r.profile("a1")
    assert profile is not None and profile["top_category"] == ""
    assert [s["categories"] for s in r.sessions] == [[]]
    assert r.summary["limits_hit"] == {"unusable:category": len(BLANK) + 1}


def test_a_page_a_cart_line_and_the_recommender_name_no_unusable_category() -> None:
    from audienceflow.models.recommender import interaction
    from audienceflow.operators import sessions

    spec = sessions.SessionSpec(timeout=1800.0, max_length=3600.0, engaged_gap_cap=600.0)
    user = UserState("u", first_seen=T0)
    page = Event("m1", "u", None, "page", "Shoes", T0, "other", {"category": "a\x00b"})
    sessions.observe(user, page, spec)
    assert user.session is not None and list(user.session.categories) == []
    add = {"product_id": "p1", "category": "a\x00b", "price": 1.0, "quantity": 1}
    ev = Event("m2", "u", None, "track", "Product Added", T0 + 1, "other", add)
    features.update(user, ev, FeatureSpec(), {})
    assert [line[0] for line in user.cart.values()] == [""]
    assert interaction(ev, {"Product Added": "cart"})[2] == (("p1", ""),)
    lines = {"products": [{"product_id": "p2", "category": "x" * 600}]}
    order = Event("m3", "u", None, "track", "Order Completed", T0 + 2, "other", lines)
    assert interaction(order, {"Order Completed": "buy"})[2] == (("p2", ""),)
