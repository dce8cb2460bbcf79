"""An order's categories come from its ``products[]`` (Segment's ``Order Completed``).

Segment's e-commerce spec names an order's categories only in its product lines. An
event with an affinity weight and no ``properties.category`` takes the distinct
categories of its first ``PRODUCTS_READ`` lines, each with the event's whole weight;
the segment evaluation is told the event changed affinity, and per-category rules are
evaluated for every category the order named, not only the first.
"""

from __future__ import annotations

from typing import Any

import pytest

from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators import features
from audienceflow.operators.features import PRODUCTS_READ, FeatureSpec
from audienceflow.operators.records import Event
from audienceflow.operators.state import UserState

pytestmark = pytest.mark.timeout(120)

SALT = {"AUDIENCEFLOW_PII_SALT": "x"}
T0 = 1_772_438_400.0
SPEC = FeatureSpec()


def _order(name: str = "Order Completed", **props: Any) -> Event:
    return Event("m1", "u", None, "track", name, T0, "other", props)


def _lines(*cats: object) -> list[dict[str, Any]]:
    return [{"product_id": f"p{i}", "category": c, "price": 10.0} for i, c in enumerate(cats)]


def test_an_order_gives_affinity_to_the_categories_of_its_products() -> None:
    clock = Clock()
    order = event(
        "a1",
        clock.now(),
        "Order Completed",
        order_id="o1",
        total=20.0,
        products=[{"product_id": "p1", "category": "Running", "price": 20.0, "quantity": 1}],
    )
    r = run([order], None, SALT)
    assert r.profile("a1")["top_category"] == "Running"


def test_each_distinct_category_of_an_order_gets_the_whole_weight_once() -> None:
    user = UserState("u", first_seen=T0)
    focus = features.update(user, _order(products=_lines("Running", "Swim", "Running")), SPEC)
    weight = SPEC.affinity_weights["Order Completed"]
    assert user.affinity == {"Running": (weight, T0), "Swim": (weight, T0)}
    assert focus is None  # several: per-category rules look at all of them


def test_one_category_is_the_focus_and_none_is_empty() -> None:
    user = UserState("u", first_seen=T0)
    assert features.update(user, _order(products=_lines("Running", "Running")), SPEC) == "Running"
    assert features.update(user, _order(products=_lines("", 7, None)), SPEC) == ""
    assert list(user.affinity) == ["Running"]


def test_the_category_the_sender_gave_wins_over_the_products() -> None:
    user = UserState("u", first_seen=T0)
    ev = _order(category="Sale", products=_lines("Running", "Swim"))
    assert features.update(user, ev, SPEC) == "Sale"
    assert list(user.affinity) == ["Sale"]


def test_an_event_without_an_affinity_weight_takes_no_category_from_its_products() -> None:
    user = UserState("u", first_seen=T0)
    for name in ("Checkout Started", "Cart Viewed"):
        assert features.update(user, _order(name, products=_lines("Running")), SPEC) == ""
    assert user.affinity == {}
    assert len(user.cart) == 1  # the cart refresh still read the line


def test_only_the_first_lines_are_read() -> None:
    cats = ["a"] * (PRODUCTS_READ - 1) + ["last-read", "not-read"]
    user = UserState("u", first_seen=T0)
    features.update(user, _order(products=_lines(*cats)), SPEC)
    assert set(user.affinity) == {"a", "last-read"}


@pytest.mark.parametrize(
    "products",
    [None, "Running", {"category": "Running"}, ["Running", 3, None], [{"category": ["Running"]}]],
)
def test_unusable_product_lists_give_no_category(products: object) -> None:
    user = UserState("u", first_seen=T0)
    assert features.update(user, _order(products=products, total=1.0), SPEC) == ""
    assert user.affinity == {}


def test_an_order_enters_per_category_segments_for_every_category_at_once() -> None:
    """The order is not the user's first event (which evaluates every plain rule anyway)."""
    cfg = {
        "segments": {
            "bought_in": {"per": "category", "when": "affinity(category) >= 5"},
            "swimmer": {"when": "affinity('Swim') >= 5"},
        }
    }
    clock = Clock()
    lines = [
        event("a1", clock.now(), "Pricing"),
        event("a1", clock.advance("1m"), "Order Completed", order_id="o1", total=30.0,
              products=_lines("Running", "Swim")),
    ]  # fmt: skip
    ordered = lines[1]["timestamp"]
    r = run(lines, cfg, SALT)
    got = {(c["segment"], c["change"], c["at"]) for c in r.segment_changes}
    assert {
        ("bought_in:Running", "enter", ordered),
        ("bought_in:Swim", "enter", ordered),
        ("swimmer", "enter", ordered),
    } <= got


def test_a_category_enters_when_the_same_evaluation_frees_its_slot() -> None:
    """``max_segments_per_category_rule``: a slot an exit frees is free for an enter of
    the same evaluation, whatever the categories' order. Here a purchase in ``b`` at the
    categories bound evicted ``d`` (held): ``b`` (sorted before ``d``) enters and ``d``
    exits. Counting ``d``'s slot as taken refused ``b``, and a later event of another
    category would not evaluate ``b`` again (category-local rules look at the event's
    category and the held ones)."""
    from audienceflow.operators.rules import Context
    from audienceflow.operators.segments import SegmentRule
    from audienceflow.operators.state import Limits

    rule = SegmentRule.parse("bought_in", "affinity(category) >= 4.5", per="category")
    for bound, entered in ((2, True), (1, False)):
        user = UserState("u", first_seen=T0)
        user.affinity = {"a": (10.0, T0), "b": (5.0, T0)}  # "d" evicted by "b"
        user.segments = {"bought_in:a": T0 - 60.0, "bought_in:d": T0 - 60.0}
        hits: dict[str, int] = {}
        limits = Limits(category_segments=bound)
        found = rule.evaluate(user, Context(user, T0, 86400.0), "b", limits, hits)
        got = sorted((c.segment, c.change) for c in found)
        want = [("bought_in:b", "enter")] if entered else []
        assert got == sorted([*want, ("bought_in:d", "exit")]), bound
        assert ("bought_in:b" in user.segments) is entered
        assert hits == ({} if entered else {"category_segments": 1}), bound


def test_an_event_that_evicts_a_category_has_every_category_as_its_focus() -> None:
    """At ``max_categories_per_user`` a new category evicts the weakest: that category's
    affinity changed too (to 0), so the evaluation looks at every category (``None``),
    not only the event's; a rule such as ``video_completions(category) >= 1 and
    affinity(category) < 4`` holds for it now."""
    from dataclasses import replace

    from audienceflow.operators.state import Limits

    for bound, focus in ((1, None), (2, "new")):
        spec = replace(SPEC, limits=Limits(categories=bound))
        user = UserState("u", first_seen=T0)
        user.affinity = {"old": (1.0, T0 - 60.0)}
        view = Event("m2", "u", None, "track", "Product Viewed", T0, "other", {"category": "new"})
        assert features.update(user, view, spec) == focus, bound
        assert ("old" in user.affinity) is (focus is not None), bound
        user = UserState("u", first_seen=T0)
        user.affinity = {"old": (1.0, T0 - 60.0)}
        assert features.update(user, _order(products=_lines("new")), spec) == focus, bound
