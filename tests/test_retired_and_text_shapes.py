"""Shapes old and exported clickstreams carry, read as their senders meant them.

Segment's retired e-commerce v1 names and properties, amounts sent as text (warehouse
exports write NUMERIC columns as strings), BigQuery's text timestamps, and consent sent
as text. Expected values are worked out by hand from the lines below.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from audienceflow.flows.testing import run
from audienceflow.operators.experiments import Goal
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.tracking import field_value
from audienceflow.operators.validate import FOLDS_KEPT, V1_NAMES, Taxonomy, Validator

SALT = {"AUDIENCEFLOW_PII_SALT": "x"}


def line(second: int, user: str, event: str, **fields: Any) -> dict[str, Any]:
    out = {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": f"m-{user}-{second}",
        "timestamp": f"2026-03-02T08:{second // 60:02d}:{second % 60:02d}Z",
    }
    out.update(fields)
    return out


def validate(obj: dict[str, Any], validator: Validator | None = None) -> Event | DeadLetter:
    return (validator or Validator(Taxonomy.default()))(orjson.dumps(obj), "f:1")


# --- Segment's e-commerce v1 ----------------------------------------------------------


@pytest.mark.timeout(60)
def test_v1_ecommerce_names_and_ids_fill_the_cart_and_the_order_as_v2_ones_do() -> None:
    # Segment's v1 spec: "Viewed Product", "Added Product", "Removed Product" with the
    # product's "id", "Completed Order" with "orderId" and "products[].id".
    lines = [
        line(0, "u1", "Viewed Product Category", properties={"category": "Games"}),
        line(10, "u1", "Viewed Product", properties={"id": "p1", "category": "Games"}),
        line(20, "u1", "Added Product", properties={"id": "p1", "price": 19.0, "quantity": 1}),
        line(30, "u1", "Added Product", properties={"id": "p2", "price": 3.0, "quantity": 2}),
        line(40, "u1", "Removed Product", properties={"id": "p2"}),
        line(50, "u1", "Started Order", properties={"products": [{"id": "p1", "price": 19.0}]}),
        line(60, "u1", "Completed Order", properties={"orderId": "o1", "revenue": 25.0}),
        # The same order sent again (a reloaded confirmation page): counted once by orderId.
        line(70, "u1", "completed_order", properties={"orderId": "o1", "revenue": 25.0}),
        line(80, "u2", "Added Product", properties={"id": "p9", "price": 5.0, "quantity": 2}),
    ]
    result = run(lines, environ=SALT)
    assert result.summary["counts"]["processed"] == 9
    [s1] = [s for s in result.sessions if s["user_id"] == "u1"]
    assert s1["products"] == ["p1", "p2"]
    assert (s1["converted"], s1["order_value"]) == (True, 25.0)
    # Product List Viewed is navigation; the product views, adds and removes engagement.
    assert s1["events_by_category"] == {"navigation": 1, "engagement": 4, "conversion": 3}
    assert result.profile("u1")["cart_items"] == 0  # type: ignore[index]
    u2 = result.profile("u2")
    assert u2 is not None and (u2["cart_items"], u2["cart_value"]) == (2, 10.0)
    assert "limits_hit" not in result.summary or not result.summary["limits_hit"]


@pytest.mark.timeout(30)
def test_a_v1_name_is_read_as_its_v2_name_and_a_taxonomy_naming_it_keeps_it() -> None:
    ev = validate(line(0, "u1", "Added Product", properties={"id": 7, "products": [{"id": 8}]}))
    assert isinstance(ev, Event) and (ev.name, ev.category) == ("Product Added", "engagement")
    assert ev.properties["product_id"] == 7 and ev.properties["products"][0]["product_id"] == 8
    # A v2 event's own "id" is not a product id; a v1 event's v2 product_id wins over "id".
    v2 = validate(line(0, "u1", "Product Added", properties={"id": "row-1"}))
    assert isinstance(v2, Event) and "product_id" not in v2.properties
    both = validate(line(0, "u1", "Added Product", properties={"id": "a", "product_id": "b"}))
    assert isinstance(both, Event) and both.properties["product_id"] == "b"
    custom = Taxonomy({**Taxonomy.default().by_name, "Completed Order": "legacy"})
    kept = validate(line(0, "u1", "Completed Order"), Validator(custom))
    assert isinstance(kept, Event) and (kept.name, kept.category) == ("Completed Order", "legacy")


# Every event name of Segment's e-commerce v2 spec ("Spec: V2 Ecommerce Events").
SEGMENT_ECOMMERCE_V2 = (
    "Products Searched",
    "Product List Viewed",
    "Product List Filtered",
    "Promotion Viewed",
    "Promotion Clicked",
    "Product Clicked",
    "Product Viewed",
    "Product Added",
    "Product Removed",
    "Cart Viewed",
    "Checkout Started",
    "Checkout Step Viewed",
    "Checkout Step Completed",
    "Payment Info Entered",
    "Order Updated",
    "Order Completed",
    "Order Refunded",
    "Order Cancelled",
    "Coupon Entered",
    "Coupon Applied",
    "Coupon Denied",
    "Coupon Removed",
    "Product Added to Wishlist",
    "Product Removed from Wishlist",
    "Wishlist Product Added to Cart",
    "Product Shared",
    "Cart Shared",
    "Product Reviewed",
)


@pytest.mark.timeout(30)
def test_the_default_taxonomy_holds_segments_ecommerce_v2_names_so_every_v1_name_folds() -> None:
    # The README: "Segment's e-commerce and video names are the default taxonomy", and
    # "Refunded Order", "Cancelled Order", "Updated Order", "Viewed Checkout Step",
    # "Viewed Promotion" and "Clicked Promotion" are read as their v2 events. They were
    # not: their v2 names were missing, so they (and "order_refunded") stayed as sent.
    known = Taxonomy.default().by_name
    assert [n for n in SEGMENT_ECOMMERCE_V2 if n not in known] == []
    assert {old: validate(line(0, "u1", old)).name for old in V1_NAMES} == V1_NAMES  # type: ignore[union-attr]
    refund = validate(line(0, "u1", "order_refunded"))
    assert isinstance(refund, Event) and (refund.name, refund.category) == (
        "Order Refunded",
        "post_purchase",
    )
    # After an order, none of them is a step towards one (the funnel, the event mix).
    after = ["Updated Order", "Refunded Order", "Cancelled Order"]
    assert {validate(line(0, "u1", n)).category for n in after} == {"post_purchase"}  # type: ignore[union-attr]


@pytest.mark.timeout(60)
def test_a_trigger_on_order_refunded_hears_the_v1_refunded_order() -> None:
    config = {"triggers": {"refund_survey": {"type": "event", "events": ["Order Refunded"]}}}
    lines = [
        line(0, "u1", "Refunded Order", properties={"orderId": "o1", "total": 10.0}),
        line(1, "u2", "order_refunded", properties={"order_id": "o2", "total": 10.0}),
    ]
    result = run(lines, config, environ=SALT)
    assert sorted(a["user_id"] for a in result.delivered("refund_survey")) == ["u1", "u2"]


@pytest.mark.timeout(60)
def test_the_v1_names_a_validator_remembers_are_forgotten_with_its_folds() -> None:
    validate_ = Validator(Taxonomy.default())

    def product_id(event: str, n: int) -> object:
        ev = validate(line(n % 60, "u1", event, properties={"id": "p"}), validate_)
        assert isinstance(ev, Event)
        return ev.properties.get("product_id")

    assert product_id("addedProduct", 0) == "p" and product_id("productAdded", 1) is None
    assert validate_._v1_sent == {"addedProduct"}
    for n in range(FOLDS_KEPT):
        product_id(f"custom{n}", n)
    assert len(validate_._folds) <= FOLDS_KEPT and validate_._v1_sent == set()
    assert product_id("addedProduct", 0) == "p"


# --- amounts sent as text -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_amounts_and_quantities_sent_as_plain_decimal_text_are_read_as_numbers() -> None:
    lines = [
        line(
            0,
            "u1",
            "Product Added",
            properties={"product_id": "a", "price": "49.90", "quantity": "2"},
        ),
        line(10, "u1", "Product Added", properties={"product_id": "b", "price": "1.5e1"}),
        line(20, "u1", "Order Completed", properties={"total": "120"}),
        line(30, "u1", "Order Completed", properties={"revenue": "0.50"}),
        line(40, "u2", "Product Added", properties={"product_id": "c", "price": "49.90"}),
    ]
    result = run(lines, environ=SALT)
    assert result.contract_errors() == []
    [s1] = [s for s in result.sessions if s["user_id"] == "u1"]
    assert s1["order_value"] == 120.5
    assert result.profile("u2")["cart_value"] == 49.9  # type: ignore[index]
    assert not result.summary.get("limits_hit")


@pytest.mark.timeout(60)
def test_an_amount_text_that_is_not_a_plain_decimal_is_unusable_and_counted_apart() -> None:
    bad = ["49,90", "$49.90", "NaN", "1e999", "", " 5", "-3", "1e16"]
    lines = [
        line(n, "u1", "Product Added", properties={"product_id": f"p{n}", "price": v})
        for n, v in enumerate(bad)
    ]
    lines += [
        line(20, "u1", "Order Completed", properties={"total": "12,50"}),
        line(21, "u1", "Order Completed", properties={"revenue": -1}),
        line(22, "u1", "Product Added", properties={"product_id": "q", "quantity": "2.5"}),
    ]
    result = run(lines, environ=SALT)
    [session] = result.sessions
    assert session["order_value"] == 0.0
    assert result.summary["limits_hit"] == {
        "unusable:order_value": 1,
        "unusable:order_value_text": 1,
        "unusable:price_text": len(bad),
        "unusable:quantity_text": 1,
    }


@pytest.mark.timeout(30)
def test_a_rule_and_an_experiment_goal_read_an_amount_text_as_its_number() -> None:
    ev = validate(line(0, "u1", "Order Completed", properties={"total": "120", "note": "7"}))
    assert isinstance(ev, Event)
    assert field_value(ev, ("properties", "total")) == 120.0
    assert field_value(ev, ("properties", "note")) == "7"  # not an amount: as sent
    assert Goal().value_of(ev) == 120.0


# --- BigQuery's text timestamps -------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "ts"),
    [
        ("2026-03-02 08:00:00 UTC", 1772438400.0),  # bq extract, the BigQuery console
        ("2026-03-02 08:00:00.123456 UTC", 1772438400.123456),
        ("2026-03-02 08:00:00+00", 1772438400.0),  # a short offset
        ("2026-03-02 09:00:00+01", 1772438400.0),
    ],
)
def test_bigquerys_text_timestamps_are_read_as_their_instant(text: str, ts: float) -> None:
    ev = validate(line(0, "u1", "x", timestamp=text))
    assert isinstance(ev, Event) and ev.ts == ts
    # A warehouse row without "timestamp": its received_at column, as BigQuery wrote it.
    row = line(0, "u1", "x", receivedAt=text)
    del row["timestamp"]
    derived = validate(row)
    assert isinstance(derived, Event) and derived.ts == ts


@pytest.mark.timeout(30)
def test_a_zone_named_other_than_utc_is_a_bad_timestamp_that_says_so() -> None:
    dead = validate(line(0, "u1", "x", timestamp="2026-03-02 08:00:00 PST"))
    assert isinstance(dead, DeadLetter) and dead.reason == "bad_timestamp"
    assert "names the zone 'PST'" in dead.detail and "only UTC is read" in dead.detail


# --- consent sent as text -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_consent_in_words_fails_closed_and_every_line_is_accounted_for() -> None:
    def consent(n: int, value: Any) -> dict[str, Any]:
        prefs = {"personalization": value}
        return line(
            n, f"u{n}", "Product Viewed", context={"consent": {"categoryPreferences": prefs}}
        )

    withheld = ["denied", "false", "no", 0, "0", "", {"x": 1}, "ann.lee@example.com", False]
    granted = ["granted", "TRUE", " yes ", 1, True, None]
    lines = [consent(n, v) for n, v in enumerate(withheld + granted)]
    lines.append(line(40, "u40", "Product Viewed"))  # no consent object: allowed, as before
    result = run(lines, environ=SALT)
    counts = result.summary["counts"]
    assert counts["reconciled"] and counts["events_in"] == len(lines)
    assert counts["processed"] == len(granted) + 1
    assert counts["filtered_by_reason"] == {"consent_withheld": len(withheld)}
    details = counts["filtered_details"]["consent_withheld"]
    rule = " at privacy.consent_path; only true, 1, 'true', '1', 'granted' or 'yes' grants consent"
    assert details == {
        "false" + rule: 1,
        "the text 'denied'" + rule: 1,
        "the text 'false'" + rule: 1,
        "the text 'no'" + rule: 1,
        "the text '0'" + rule: 1,
        "the text ''" + rule: 1,
        "the number 0" + rule: 1,
        "an object" + rule: 1,
        "a text that is not a consent word" + rule: 1,
    }
    assert {p["user_id"] for p in result.profiles} == {f"u{n}" for n in range(9, 15)} | {"u40"}
