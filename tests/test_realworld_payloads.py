"""Events as Segment, RudderStack and Jitsu send or export them, replayed end to end.

The shapes follow the public specs (Segment's Spec: common fields, page, screen,
identify, alias, group, e-commerce v2, video; RudderStack's event spec; Jitsu's
Segment-compatible events); every value is made up here. The first test replays a
small mixed stream and checks that every valid line is processed, that carts, orders,
devices and locales are read as the specs define them, and that no personal value
planted in the lines reaches any output file. The later tests cover the fixes of
realworld-proposals.diff (each failed before them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.flows.replay import replay
from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators.normalize import normalize_device
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.scrub import scrub_text
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Taxonomy, Validator

SALT = {"AUDIENCEFLOW_PII_SALT": "x"}
UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 " + "FBAN/FBIOS;FBDV/iPhone14,5;FBSV/17.3.1;FBLC/en_US;" * 8
)
# Personal values planted in the stream: none may appear in any output file.
PLANTED = (
    "ann.lee@example.com",
    "ann.lee",
    "(415) 555-0199",
    "555-0199",
    "+44 7700 900123",
    "7700 900123",
    "203.0.113.42",
    "2001:db8:85a3::8a2e:370:7334",
    "198.51.100.23",
    "192.0.2.77",
    "chloe@example.fr",
    "Chloé",
    "Lee",
)
PRODUCTS = [
    {"product_id": "507f1f77", "sku": "45790-32", "category": "Running", "name": "Trail Shoe",
     "price": 89.0, "quantity": 1, "position": 1, "url": "https://shop.example.org/p/45790-32"},
    {"product_id": "505bd767", "sku": "46493-32", "category": "Running", "name": "Socks",
     "price": 9.5, "quantity": 2},
]  # fmt: skip


def segment_web(second: int, kind: str, **fields: Any) -> dict[str, Any]:
    """analytics.js (Segment's Spec, common fields): all four times, ms and ``Z``."""
    t = f"2026-03-02T08:{second // 60:02d}:{second % 60:02d}"
    return {
        "anonymousId": "8f5b1c4e-7a2d-4e3b-9c1f-2a6d8e0b4c71",
        "channel": "client",
        "context": {
            "library": {"name": "analytics.js", "version": "next-1.64.0"},
            "ip": "203.0.113.42",
            "locale": "en-US",
            "userAgent": UA,
            "page": {
                "path": "/shoes",
                "url": "https://shop.example.org/shoes?e=ann.lee@example.com",
            },
            "campaign": {"name": "spring", "source": "newsletter", "medium": "email"},
        },
        "integrations": {"All": True, "Mixpanel": False},
        "messageId": f"ajs-next-1772438400{second:04d}-0c9a1f3e",
        "originalTimestamp": f"{t}.000Z",
        "sentAt": f"{t}.400Z",
        "receivedAt": f"{t}.250Z",
        "timestamp": f"{t}.000Z",
        "type": kind,
        "version": 2,
        "_metadata": {"bundled": ["Segment.io"], "unbundled": []},
        **fields,
    }


def segment_mobile(second: int, os: str, kind: str, **fields: Any) -> dict[str, Any]:
    """analytics-swift / analytics-kotlin: ``context.device.type`` ios/android/tvos,
    ``context.traits`` on every call; a 7-digit fraction (iOS) or ``+00:00`` (Android)."""
    t = f"2026-03-02T08:{second // 60:02d}:{second % 60:02d}.1234567"
    return {
        "anonymousId": f"{os}-anon-5d2c",
        "context": {
            "device": {"type": os, "manufacturer": "Apple", "model": "iPhone14,5"},
            "ip": "2001:db8:85a3::8a2e:370:7334",
            "locale": {"ios": "en-GB", "android": "de-DE"}.get(os, "en-US"),
            "os": {"name": os, "version": "17.3.1"},
            "traits": {"email": "ann.lee@example.com", "phone": "+44 7700 900123"},
        },
        "messageId": f"{os}-{second:04d}-7d3e2b1a",
        "timestamp": t + ("Z" if os != "android" else "+00:00"),
        "type": kind,
        **fields,
    }


def rudderstack(second: int, kind: str, **fields: Any) -> dict[str, Any]:
    """The RudderStack JS SDK as sent: no ``timestamp`` (it is derived), ``channel``,
    ``request_ip`` and identify traits in ``context.traits``."""

    def t(s: int) -> str:
        return f"2026-03-02T08:{s // 60:02d}:{s % 60:02d}.000Z"

    return {
        "anonymousId": "b5ab2f0e-3e4f-4c4b-8f52-6c8e0f2b7a11",
        "channel": "web",
        "context": {
            "library": {"name": "RudderLabs JavaScript SDK", "version": "3.0.0"},
            "locale": "fr-FR",
            "traits": {"email": "chloe@example.fr", "name": "Chloé"},
        },
        "integrations": {"All": True},
        "messageId": f"4f0a7c1e-9b2d-4e5f-8a6b-{second:012d}",
        "originalTimestamp": t(second - 5),
        "sentAt": t(second - 4),
        "receivedAt": t(second),
        "request_ip": "198.51.100.23",
        "type": kind,
        "userId": "48213",
        **fields,
    }


def jitsu(second: int, kind: str, **fields: Any) -> dict[str, Any]:
    """Jitsu's Segment-compatible events: ``userId`` null when anonymous, ``requestIp``."""
    t = f"2026-03-02T08:{second // 60:02d}:{second % 60:02d}.000Z"
    return {
        "anonymousId": "jt-0e1d2c3b4a",
        "context": {"ip": "192.0.2.77", "library": {"name": "@jitsu/js", "version": "1.9.5"},
                    "locale": "pt-BR", "campaign": {"source": "instagram"}},
        "messageId": f"jitsu{second:06d}",
        "receivedAt": t,
        "requestIp": "192.0.2.77",
        "sentAt": t,
        "timestamp": t,
        "type": kind,
        "userId": None,
        **fields,
    }  # fmt: skip


def realworld_stream() -> list[dict[str, Any]]:
    """Eighteen calls in event-time order; all valid, one of them a ``group``."""
    ann = "4155550123"  # a numeric-looking userId: an id, not a phone number
    lines = [
        segment_web(0, "page", name="Shoes", properties={"category": "Running", "path": "/shoes"}),
        segment_mobile(10, "ios", "screen", name="Home", properties={}),
        segment_web(30, "track", event="Product Viewed", properties=PRODUCTS[0]),
        segment_mobile(40, "ios", "track", event="Product Added",
                       properties={"product_id": "p-778", "category": "Swim", "price": 24.99}),
        segment_web(60, "track", event="Product Added", properties=PRODUCTS[0]),
        segment_web(90, "identify", userId=ann,
                    traits={"email": "ann.lee@example.com", "phone": "(415) 555-0199",
                            "firstName": "Ann", "lastName": "Lee", "plan": "pro"}),
        segment_web(100, "alias", userId=ann, previousId="8f5b1c4e-7a2d-4e3b-9c1f-2a6d8e0b4c71"),
        segment_web(120, "track", userId=ann, event="Checkout Started",
                    properties={"order_id": "50314b8e", "value": 108.0, "products": PRODUCTS}),
        segment_mobile(130, "android", "track", event="Video Playback Started",
                       properties={"session_id": "vs-1", "content_asset_id": "a-1", "position": 0}),
        segment_web(150, "track", userId=ann, event="Order Completed",
                    properties={"order_id": "50314b8e", "subtotal": 105.5, "total": 108.0,
                                "revenue": "105.50", "shipping": 3, "tax": 2, "discount": 2.5,
                                "coupon": "spring", "currency": "USD", "products": PRODUCTS}),
        segment_web(160, "group", userId=ann, groupId="0e8c78ea",
                    traits={"name": "Initech", "employees": 329, "email": "ann.lee@example.com"}),
        rudderstack(170, "identify"),
        rudderstack(180, "page", name="Checkout", properties={"path": "/checkout"}),
        rudderstack(200, "track", event="Product Added",
                    properties={"product_id": "sku-123-4567", "category": "Kitchen",
                                "price": 12, "quantity": 3}),
        rudderstack(220, "track", event="Order Completed",
                    properties={"order_id": "R-1", "total": 36, "revenue": 30,
                                "products": [{"product_id": "sku-123-4567", "price": 12,
                                              "quantity": 3}]}),
        segment_mobile(230, "tvos", "screen", name="Player", properties={}),
        jitsu(240, "page", properties={"path": "/", "title": "Início"}),
        jitsu(250, "track", event="Signed Up", properties={"method": "google"}),
    ]  # fmt: skip
    return lines


@pytest.mark.timeout(120)
def test_realworld_payloads_are_processed_read_as_specified_and_leak_nothing(
    tmp_path: Path,
) -> None:
    lines = realworld_stream()
    src = tmp_path / "realworld.jsonl"
    src.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(None, SALT))

    counts = summary["counts"]
    assert counts["events_in"] == 18
    assert counts["processed"] == 18  # the group call too: it names its account
    assert counts["dead_lettered_by_reason"] == {}
    assert counts["filtered"] == 0 and counts["reconciled"] is True

    def records(name: str) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in (out / name).read_bytes().splitlines() if x]

    sessions = {s["user_id"]: s for s in records("sessions.jsonl")}
    # Order Completed: the order value is ``total`` (108.0), not the text ``revenue``.
    assert sessions["4155550123"]["order_value"] == 108.0
    assert sessions["4155550123"]["converted"] is True
    assert sessions["48213"]["order_value"] == 36.0
    profiles = {p["user_id"]: p for p in records("profiles.jsonl")}
    assert profiles["4155550123"]["cart_items"] == 0  # the order emptied the cart
    # analytics.js sends no device type: its user agent (an iPhone's in-app browser) says it.
    assert profiles["4155550123"]["device"] == "mobile"
    assert profiles["4155550123"]["locale"] == "en-US"
    assert (profiles["ios-anon-5d2c"]["device"], profiles["ios-anon-5d2c"]["locale"]) == (
        "mobile",
        "en-GB",
    )
    assert profiles["android-anon-5d2c"]["device"] == "mobile"
    assert profiles["tvos-anon-5d2c"]["device"] == "tv"
    assert profiles["48213"]["locale"] == "fr-FR"
    assert profiles["jt-0e1d2c3b4a"]["locale"] == "pt-BR"
    # The iOS user's add (no quantity: 1) is the abandoned cart, 15 min later.
    [action] = records("actions.jsonl")
    assert action["user_id"] == "ios-anon-5d2c"
    assert action["payload"]["products"] == [
        {"category": "Swim", "price": 24.99, "product_id": "p-778", "quantity": 1}
    ]
    assert action["at"] == "2026-03-02T08:15:40.123Z"  # 7-digit fraction read to the µs

    written = b"".join(p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()).decode()
    leaked = [v for v in PLANTED if v in written]
    assert leaked == []


@pytest.mark.timeout(30)
def test_device_types_segment_libraries_send_are_read() -> None:
    # analytics-swift: ios, tvos (Apple TV), macos (Catalyst), watchos; analytics-kotlin:
    # android; RudderStack's SDKs: iOS, Android, tvOS.
    got = {v: normalize_device(v) for v in ("ios", "tvos", "tvOS", "macos", "android", "iOS")}
    assert got == {
        "ios": "mobile",
        "tvos": "tv",
        "tvOS": "tv",
        "macos": "desktop",
        "android": "mobile",
        "iOS": "mobile",
    }


def _validate(line: dict[str, Any]) -> Event:
    ev = Validator(Taxonomy.default())(orjson.dumps(line), "s:1")
    assert isinstance(ev, Event), ev
    return ev


@pytest.mark.timeout(30)
def test_rudderstack_identify_traits_in_context_traits_reach_rules() -> None:
    line = {
        "type": "identify",
        "userId": "48213",
        "timestamp": "2026-03-02T08:00:00.000Z",
        "context": {"traits": {"plan": "gold", "email": "chloe@example.fr"}},
    }
    assert _validate(line).traits == {"plan": "gold", "email": "chloe@example.fr"}
    clock = Clock()
    r = run(
        [
            {**line, "timestamp": clock.now()},
            event("48213", clock.advance("1m"), "Home"),
        ],
        {"segments": {"gold": {"when": "traits.plan == 'gold'"}}},
        SALT,
    )
    assert r.entered("gold") == ["48213"]


@pytest.mark.timeout(30)
def test_a_screen_category_at_top_level_is_the_screen_category() -> None:
    clock = Clock()
    screen = event("u1", clock.now(), "Shoes", type="screen")
    screen["category"] = "Running"
    r = run([screen, event("u1", clock.advance("1m"), "Home")], None, SALT)
    [session] = r.sessions
    assert session["categories"] == ["Running"]
    assert r.profile("u1")["top_category"] == "Running"


@pytest.mark.timeout(60)
def test_video_completions_per_genre_from_segment_video_spec_events() -> None:
    clock = Clock()
    events = [
        event("v1", clock.advance("15m"), "Video Content Completed",
              session_id=f"vs-{k}", asset_id=f"a-{k}", genre="Comedy", program="Office Hours",
              total_length=840, position=840)
        for k in range(3)
    ]  # fmt: skip
    r = run(events, None, SALT)
    assert r.profile("v1")["video_completions"] == {"Comedy": 3}
    assert r.entered("video_enthusiast:Comedy") == ["v1"]


@pytest.mark.timeout(60)
def test_order_value_falls_back_to_revenue_and_an_unusable_one_is_counted() -> None:
    clock = Clock()
    r = run(
        [
            event("o1", clock.now(), "Order Completed", order_id="1", total=None, revenue=50.0),
            event("o2", clock.advance("1s"), "Order Completed", order_id="2", total="19.99"),
            event("o3", clock.advance("1s"), "Order Completed", order_id="3", total="19,99"),
            event("o4", clock.advance("1s"), "Order Completed", order_id="4", total=-1),
        ],
        None,
        SALT,
    )
    values = {s["user_id"]: s["order_value"] for s in r.sessions}
    # A plain decimal text is its number; a decimal comma is not guessed at.
    assert values == {"o1": 50.0, "o2": 19.99, "o3": 0.0, "o4": 0.0}
    assert r.summary["limits_hit"] == {
        "unusable:order_value": 1,
        "unusable:order_value_text": 1,
    }


@pytest.mark.timeout(30)
def test_percent_encoded_email_and_phone_in_a_url_are_masked() -> None:
    url = "https://shop.example.org/?email=ann.lee%2Bshop%40example.com&tel=%2B447700900123"
    assert "example.com" not in scrub_text(url)
    assert "447700900123" not in scrub_text(url)
    line = orjson.dumps(segment_web(0, "group", context={"page": {"url": url}}))  # no groupId
    dl = Validator(Taxonomy.default())(line, "s:1")
    assert isinstance(dl, DeadLetter) and dl.reason == "missing_group_id"
    raw = Privacy(("email", "phone", "ip"), salt="x")(dl)
    assert isinstance(raw, DeadLetter)
    assert "example.com" not in raw.raw and "447700900123" not in raw.raw


@pytest.mark.timeout(30)
def test_an_ipv4_mapped_ipv6_address_is_masked_whole() -> None:
    # What a dual-stack server (RudderStack's request_ip, Jitsu's requestIp) records.
    assert scrub_text("::ffff:198.51.100.23") == "<ip>"
    assert scrub_text("from ::FFFF:192.0.2.77 at noon") == "from <ip> at noon"


@pytest.mark.timeout(60)
def test_a_late_mobile_event_does_not_put_the_users_name_in_a_dead_letter() -> None:
    clock = Clock()
    # four users: a replayed partition's time moves with four users' events
    events = [event(f"n{i % 4 + 1}", clock.advance("1m"), "Home") for i in range(6)]
    late = event("n1", "2026-03-02T07:30:00.000Z", "Home")
    late["context"] = {
        "traits": {"name": "Bø Bérg", "firstName": "Bø", "address": {"street": "12 Quay St"}}
    }
    r = run([*events, late], None, SALT)
    [dead] = r.dead_letters
    assert dead["reason"] == "late_event"
    assert "Bérg" not in dead["raw"] and "Quay" not in dead["raw"]


@pytest.mark.timeout(30)
def test_identify_traits_carry_no_raw_email_or_phone_past_privacy() -> None:
    ev = _validate(
        segment_web(
            90,
            "identify",
            userId="u1",
            traits={"email": "ann.lee@example.com", "phone": "(415) 555-0199", "plan": "pro"},
        )
    )
    out = Privacy(("email", "phone", "ip"), salt="x")(ev)
    assert isinstance(out, Event) and out.traits is not None
    text = orjson.dumps(out.traits).decode()
    assert "ann.lee@example.com" not in text and "555-0199" not in text
    assert out.traits["plan"] == "pro"


@pytest.mark.timeout(30)
def test_a_category_the_sender_gave_wins_over_genre_and_top_level_category() -> None:
    # The boundaries of proposals 2 and 3: a genre or a category beside the name fills in
    # only a category that properties lack.
    video = event("u1", "2026-03-02T08:00:00.000Z", "Video Content Completed")
    video["properties"] = {"genre": "Comedy", "category": "Shows"}
    screen = event("u1", "2026-03-02T08:00:00.000Z", "Shoes", type="screen", category="Running")
    screen["category"] = "Sale"
    assert _validate(video).properties["category"] == "Shows"
    assert _validate(screen).properties["category"] == "Running"


@pytest.mark.timeout(30)
def test_an_android_locale_without_country_is_its_language() -> None:
    # analytics-kotlin: Locale.language + "-" + Locale.country, "en-" without a country.
    line = segment_mobile(0, "android", "screen", name="Home")
    line["context"]["locale"] = "en-"
    assert _validate(line).locale == "en"
    line["context"]["locale"] = "-"
    assert _validate(line).locale is None


@pytest.mark.timeout(60)
def test_a_whole_quantity_written_as_a_float_is_that_many() -> None:
    clock = Clock()
    r = run(
        [event("q1", clock.now(), "Product Added", product_id="p1", price=5.0, quantity=2.0)],
        None,
        SALT,
    )
    [action] = r.delivered("cart_abandonment")
    assert action["payload"]["items"] == 2 and action["payload"]["value"] == 10.0
    assert "unusable:quantity" not in r.summary["limits_hit"]


@pytest.mark.timeout(30)
def test_a_fractional_quantity_is_still_unusable() -> None:
    # The boundary of proposal 9: only a whole float is a count.
    clock = Clock()
    r = run([event("q2", clock.now(), "Product Added", product_id="p1", quantity=1.5)], None, SALT)
    assert r.summary["limits_hit"] == {"unusable:quantity": 1}


@pytest.mark.timeout(60)
def test_a_quantity_beyond_a_billion_is_unusable_and_stops_nothing() -> None:
    # One line of ``"quantity": 1e20`` used to stop the whole replay: the cart's item
    # count passed what orjson writes (64 bits). The bound's both sides: 10**9 is a
    # quantity, 10**9 + 1 is not (counted, read as 1), as a number and as text.
    clock = Clock()
    at = clock.now()
    lines = [
        event("q3", at, "Product Added", product_id="p1", price=5.0, quantity=10**9),
        event("q4", at, "Product Added", product_id="p1", price=5.0, quantity=10**9 + 1),
        event("q5", at, "Product Added", product_id="p1", price=5.0, quantity=1e20),
        event("q6", at, "Product Added", product_id="p1", quantity="99999999999999999999"),
    ]
    r = run(lines, None, SALT)
    assert r.summary["counts"]["reconciled"] and r.dead_letters == []
    items = {a["user_id"]: a["payload"]["items"] for a in r.delivered("cart_abandonment")}
    assert items == {"q3": 10**9, "q4": 1, "q5": 1, "q6": 1}
    assert r.summary["limits_hit"] == {"unusable:quantity": 2, "unusable:quantity_text": 1}


@pytest.mark.timeout(60)
def test_a_line_added_again_holds_at_most_a_billion() -> None:
    # Two adds each within the bound whose sum is not: the line holds the bound, and the
    # add that passed it is counted; 2 x 5e8 is exactly the bound and counts nothing.
    clock = Clock()
    lines = [
        event("q7", clock.now(), "Product Added", product_id="p1", quantity=5 * 10**8),
        event("q7", clock.advance("1s"), "Product Added", product_id="p1", quantity=5 * 10**8),
        event("q8", clock.now(), "Product Added", product_id="p1", quantity=9 * 10**8),
        event("q8", clock.advance("1s"), "Product Added", product_id="p1", quantity=9 * 10**8),
    ]
    r = run(lines, None, SALT)
    items = {a["user_id"]: a["payload"]["items"] for a in r.delivered("cart_abandonment")}
    assert items == {"q7": 10**9, "q8": 10**9}
    assert r.summary["limits_hit"] == {"unusable:quantity": 1}


@pytest.mark.timeout(60)
def test_a_line_in_both_halves_of_a_merged_profile_holds_at_most_a_billion() -> None:
    # A shopper's anonymous cart and their known one, both with 9e8 of p1, become one
    # profile at login: one line, at the bound, as two adds to it would be.
    clock = Clock()
    anon = event("x", clock.now(), "Product Added", product_id="p1", quantity=9 * 10**8)
    del anon["userId"]
    anon["anonymousId"] = "a9"
    known = event("q9", clock.advance("1s"), "Product Added", product_id="p1", quantity=9 * 10**8)
    login = event("q9", clock.advance("1s"), "Pricing")
    login["anonymousId"] = "a9"
    r = run([anon, known, login], None, SALT)
    [action] = r.delivered("cart_abandonment")
    assert action["payload"]["items"] == 10**9


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "placeholder",
    [
        *("undefined", "NULL", " ", " nil ", 0, "0", "-1", "\u200b", "\ufeff" * 40 + "\u2060 "),
        *("\u3164", "\u2800" * 3, " \u3164\u200b", "\u115f\u1160"),
    ],
)
def test_a_placeholder_message_id_is_no_id(placeholder: object) -> None:
    # A sender's bug (``String(undefined)``, a default of 0) gives every event the same
    # id: taken as one, each user's event after the first within the hour was dropped
    # as a duplicate. The line itself sent twice still is one (its id is derived from it).
    clock = Clock()
    at = clock.now()
    lines = [event(u, at, "Pricing", message_id="x") for u in ("m1", "m2", "m3")]
    for line in lines:
        line["messageId"] = placeholder
    r = run([*lines, lines[0]], None, SALT)
    assert r.summary["counts"]["processed"] == 3
    assert r.summary["counts"]["filtered_by_reason"] == {"duplicate": 1}


@pytest.mark.timeout(60)
def test_an_id_that_only_looks_like_a_placeholder_is_an_id() -> None:
    # The other side: "undefined-1" and "00" are ids, and their copies are duplicates.
    clock = Clock()
    lines = [
        event("m4", clock.advance("1s"), "Pricing", message_id=m) for m in ("undefined-1", "00")
    ]
    r = run(lines + lines, None, SALT)
    assert r.summary["counts"]["processed"] == 2
    assert r.summary["counts"]["filtered_by_reason"] == {"duplicate": 2}
    # Sent on other lines (another time): still the same ids, so still duplicates.
    later = [
        event("m4", clock.advance("1s"), "Pricing", message_id=m) for m in ("undefined-1", "00")
    ]
    r = run(lines + later, None, SALT)
    assert r.summary["counts"]["filtered_by_reason"] == {"duplicate": 2}


@pytest.mark.timeout(60)
def test_a_session_lists_its_first_products_and_categories_up_to_the_bounds() -> None:
    # A bot's day-long session of distinct products made one record of ~130 KB per 15k
    # products (past Kafka's 1 MB at ~100k). Bounds of 2: the first two of each are
    # listed, a third new one is counted once each time, one listed already costs nothing.
    clock = Clock()
    views = [("p1", "a"), ("p2", "b"), ("p1", "a"), ("p2", "b"), ("p3", "c"), ("p4", "c")]
    lines = [
        event("s1", clock.advance("1s"), "Product Viewed", product_id=p, category=c)
        for p, c in views
    ]
    cfg = {"state": {"max_session_products": 2, "max_categories_per_user": 2}}
    r = run(lines, cfg, SALT)
    [session] = r.sessions
    assert (session["products"], session["categories"]) == (["p1", "p2"], ["a", "b"])
    assert session["events"] == 6
    # "categories": the session's two, and the user's affinity giving way once to "c".
    assert r.summary["limits_hit"] == {"session_products": 2, "categories": 3}
    # At the bound exactly: nothing given way.
    r = run(lines[:4], cfg, SALT)
    assert r.summary["limits_hit"] == {}


@pytest.mark.timeout(60)
def test_two_open_sessions_merged_at_login_list_at_most_the_bound() -> None:
    # The anonymous and the known half each viewed two products; their sessions become one.
    clock = Clock()
    anon = [
        event("x", clock.advance("1s"), "Product Viewed", product_id=p, category=p)
        for p in ("p1", "p2")
    ]
    for line in anon:
        del line["userId"]
        line["anonymousId"] = "a7"
    known = [
        event("s2", clock.advance("1s"), "Product Viewed", product_id=p, category=p)
        for p in ("p3", "p4")
    ]
    login = event("s2", clock.advance("1s"), "Pricing")
    login["anonymousId"] = "a7"
    cfg = {"state": {"max_session_products": 3, "max_categories_per_user": 3}}
    r = run([*anon, *known, login], cfg, SALT)
    [session] = r.sessions
    assert len(session["products"]) == 3 and len(session["categories"]) == 3


@pytest.mark.timeout(60)
def test_a_user_id_sent_as_a_number_and_as_text_is_one_user(tmp_path: Path) -> None:
    """analytics-node accepts a number as ``userId`` and sends it as is."""
    from audienceflow.flows.placement import split_stream

    clock = Clock()
    lines = [event("42", clock.now(), "Pricing"), event("42", clock.advance("1m"), "Pricing")]
    lines[0]["userId"] = 42
    r = run(lines, None, SALT)
    assert r.dead_letters == []
    assert [p["user_id"] for p in r.profiles] == ["42"]
    # ``audienceflow split`` puts both lines in one partition, as a keyed producer would.
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    parts = split_stream(src, 8, tmp_path / "parts")
    assert sorted(len(p.read_bytes().splitlines()) for p in parts) == [0] * 7 + [2]


@pytest.mark.timeout(60)
def test_spec_names_in_another_case_fill_the_cart_and_fire_its_trigger() -> None:
    """RudderStack's own destination tests send ``product added``, ``order completed``."""
    clock = Clock()
    lines = [
        event("c1", clock.now(), "product added", product_id="p1", price=5.0),
        event("c2", clock.now(), "PRODUCT_ADDED", product_id="p1", price=5.0),
        event("c2", clock.advance("1m"), "order completed", total=5.0),
        event("c3", clock.advance("1h"), "Home"),  # moves time past the 15 min timer
    ]
    r = run(lines, None, SALT)
    assert [a["user_id"] for a in r.delivered("cart_abandonment")] == ["c1"]
    assert r.profile("c1")["cart_items"] == 1 and r.profile("c2")["cart_items"] == 0


@pytest.mark.timeout(60)
def test_a_session_history_given_way_to_its_count_is_counted_as_a_bound_hit() -> None:
    # A daily shopper's 100 sessions in 17 days: sessions(30d) and total('orders', 30d)
    # read the newest 64 kept and the open one, 65, and nothing said so (limits_hit {}).
    clock = Clock("2026-03-02T08:00:00Z")
    lines = [
        event("s3", clock.advance("4h"), "Order Completed", order_id=f"o{i}", total=10)
        for i in range(100)
    ]
    cfg = {"segments": {"seventy": {"when": "sessions(30d) >= 70"}}}
    r = run(lines, cfg, SALT)
    assert r.entered("seventy") == []
    assert "sessions(30d) was 65" in r.summary["rules"]["segments"]["seventy"]["why_none"]
    # 100 closed, 64 kept: 36 given way while younger than the 30 days kept by age; of
    # the 100 order ids the user remembers the newest 8 (state.max_recent_orders).
    assert r.summary["limits_hit"] == {"history_sessions": 36, "recent_orders": 92}
    # Given way by age, nothing is counted: sessions 5 days apart (within time.max_future),
    # kept 8 days, so at most 2 are kept at once; a bound of 2 gives none way, a bound
    # of 1 gives 4 (the first close keeps its one).
    spaced = [
        event("s4", clock.advance("5d"), "Order Completed", order_id=f"p{i}") for i in range(5)
    ]
    for most, hits in ((2, {}), (1, {"history_sessions": 4})):
        state = {"history_window": "8d", "history_max_sessions": most}
        assert run(spaced, {"state": state}, SALT).summary["limits_hit"] == hits
