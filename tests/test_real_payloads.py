"""A corpus of calls in the shapes real senders emit, each line's outcome checked by hand.

The shapes are those of analytics.js / analytics-next, analytics-swift, RudderStack's
Android SDK, Segment's server libraries (Python, Node, Go, Ruby) and rows converted by
hand from a warehouse export (Segment's Spec: common fields, identify, track, page,
screen, group, alias, e-commerce v2, B2B SaaS). Every value is made up here. Each line
says what must become of it: processed, dead-lettered with a reason, or filtered.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from audienceflow.flows.replay import replay
from audienceflow.flows.testing import run
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import FOLDS_KEPT, Taxonomy, Validator

SALT = {"AUDIENCEFLOW_PII_SALT": "x"}
ANN_WEB, ANN_PHONE, MAX_DROID = "a7c1e2f0-0b1c-4d2e-9f3a-aaaaaaaaaaaa", "IOS-5D2C-ANON", "rs-3c3c"
# Personal values planted in the corpus: none may reach any output file.
PLANTED = (
    "ann.lee@example.com",
    "Ann Lee",
    "+1 415 555 0199",
    "203.0.113.9",
    "198.51.100.7",
    "Max",
    "Muster",
    "+49 151 23456789",
    "Initech",
    "Zedediah",
    "Quillfeather",
    "zquill",
    "Ann's iPhone",
    "6F1A-DEVICE",
)
MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/121.0 Safari/537.36"
)
P1 = {
    "product_id": "507f1f77",
    "sku": "G-32",
    "category": "Games",
    "name": "Monopoly",
    "brand": "Hasbro",
    "price": 18.99,
    "quantity": 1,
    "coupon": "MAYDEALS",
    "position": 3,
    "url": "https://shop.example.org/p/g-32",
    "image_url": "https://shop.example.org/g-32.jpg",
}
P2 = {"product_id": "505bd767", "sku": "F-32", "category": "Games", "name": "Uno", "price": 3.0,
      "quantity": 2}  # fmt: skip


def at(second: int, frac: str = ".123", off: str = "Z") -> str:
    return f"2026-03-02T08:{second // 60:02d}:{second % 60:02d}{frac}{off}"


def web(kind: str, second: int, **fields: Any) -> dict[str, Any]:
    """analytics-next: all four times, the page, the user agent and its client hints."""
    line = {"type": kind, "anonymousId": ANN_WEB, "messageId": f"ajs-next-{second}",
            "timestamp": at(second), "originalTimestamp": at(second), "sentAt": at(second, ".130"),
            "receivedAt": at(second, ".401"), "channel": "client", "version": 2,
            "writeKey": "wk_1", "projectId": "p1", "_metadata": {"bundled": ["Segment.io"]},
            "integrations": {"All": True, "Amplitude": {"session_id": 1772438400}},
            "context": {"library": {"name": "analytics.js", "version": "npm:next-1.64.0"},
                        "page": {"path": "/", "url": "https://shop.example.org/?email=ann.lee%40example.com",
                                 "referrer": "https://www.google.com/", "title": "Shop"},
                        "userAgent": MAC, "userAgentData": {"mobile": False, "platform": "macOS"},
                        "locale": "en-US", "campaign": {"source": "google", "medium": "cpc"},
                        "ip": "203.0.113.9", "timezone": "Europe/London"}}  # fmt: skip
    line.update(fields)
    return line


def swift(
    kind: str, second: int, anon: str, model: str, os_name: str, **fields: Any
) -> dict[str, Any]:
    """analytics-swift: no ``timestamp``, client times in local time with microseconds,
    ``context.device.type`` ``ios`` on an iPhone and an iPad alike."""
    local = at(second, ".123456", "+01:00").replace("T08:", "T09:")
    sent = at(second + 1, ".5", "+01:00").replace("T08:", "T09:")
    line = {"type": kind, "anonymousId": anon, "messageId": f"{anon}-{second}",
            "originalTimestamp": local, "sentAt": sent, "receivedAt": at(second + 1, ".7"),
            "context": {"app": {"name": "Shop", "version": "4.2.0", "build": "421"},
                        "device": {"id": "6F1A-DEVICE", "manufacturer": "Apple", "model": model,
                                   "name": "Ann's iPhone", "type": "ios"},
                        "os": {"name": os_name, "version": "17.3.1"},
                        "screen": {"width": 430, "height": 932}, "network": {"wifi": True},
                        "library": {"name": "analytics-swift", "version": "1.5.3"},
                        "locale": "en-GB", "traits": {"anonymousId": anon}},
            "integrations": {}}  # fmt: skip
    line.update(fields)
    return line


def rudder(kind: str, second: int, **fields: Any) -> dict[str, Any]:
    """RudderStack's Android SDK: ``rudderId``, ``request_ip``, cached traits in
    ``context.traits`` on every call, ``+00:00`` offsets."""
    line = {"type": kind, "anonymousId": MAX_DROID, "messageId": f"rs-{second}",
            "rudderId": "8f2e-rudder", "channel": "android-sdk", "request_ip": "198.51.100.7",
            "originalTimestamp": at(second, ".456"), "sentAt": at(second + 2, ".001"),
            "receivedAt": at(second + 2, ".3", "+00:00"), "timestamp": at(second, ".755", "+00:00"),
            "context": {"device": {"id": "a1b2c3", "manufacturer": "Google", "model": "Pixel 8",
                                   "name": "shiba", "type": "Android"},
                        "os": {"name": "Android", "version": "14"}, "locale": "de-DE",
                        "library": {"name": "com.rudderstack.android.sdk.core"},
                        "traits": {"anonymousId": MAX_DROID, "email": "max@example.de",
                                   "firstName": "Max", "lastName": "Muster",
                                   "phone": "+49 151 23456789"}}}  # fmt: skip
    line.update(fields)
    return line


def server(kind: str, second: int, user: str | int, **fields: Any) -> dict[str, Any]:
    """analytics-python and friends: ``userId`` only, microseconds and ``+00:00``."""
    line = {"type": kind, "userId": user, "messageId": f"srv-{second}",
            "timestamp": at(second, ".654321", "+00:00"), "sentAt": at(second, ".9", "+00:00"),
            "context": {"library": {"name": "analytics-python", "version": "2.3.2"}},
            "integrations": {}}  # fmt: skip
    line.update(fields)
    return line


SIGNED_UP = {"type": "organic", "first_name": "Zedediah", "last_name": "Quillfeather",
             "email": "zq@example.org", "phone": "+1 415 555 0199",
             "username": "zquill"}  # fmt: skip


def corpus() -> list[tuple[dict[str, Any], str]]:
    """Each line and its outcome: ``processed``, ``dead:<reason>`` or ``filtered:<reason>``."""
    ok = "processed"
    order = {
        "order_id": "50314b8e",
        "total": 27.5,
        "subtotal": 22.5,
        "revenue": 25.0,
        "shipping": 3,
        "tax": 2,
        "discount": 2.5,
        "currency": "USD",
        "products": [P1],
    }
    return [
        # Ann browses anonymously on the web, fills a cart, logs in and orders.
        (web("page", 0, name="Home", properties={"path": "/", "title": "Home"}), ok),
        (web("page", 20, name="Running", category="Shoes", properties={"path": "/c/run"}), ok),
        (
            web(
                "track",
                40,
                event="Product List Viewed",
                properties={"list_id": "l1", "products": [P1, P2]},
            ),
            ok,
        ),
        (
            web(
                "track",
                60,
                event="Product Viewed",
                properties={**P1, "currency": "USD", "value": 18.99},
            ),
            ok,
        ),
        # analytics-next retrying the same call: the same messageId, a later sentAt.
        (
            web(
                "track",
                60,
                event="Product Viewed",
                properties={**P1, "currency": "USD", "value": 18.99},
                sentAt=at(70),
            ),
            "filtered:duplicate",
        ),
        (web("track", 80, event="Product Added", properties={**P1, "cart_id": "c1"}), ok),
        (web("track", 100, event="Product Added", properties=P2), ok),
        (web("track", 120, event="Product Removed", properties={"product_id": "505bd767"}), ok),
        (
            web(
                "identify",
                140,
                userId="user-ann",
                traits={
                    "email": "ann.lee@example.com",
                    "name": "Ann Lee",
                    "phone": "+1 415 555 0199",
                    "address": {"city": "Leeds"},
                },
            ),
            ok,
        ),
        (
            web(
                "track", 160, userId="user-ann", event="Cart Viewed", properties={"products": [P1]}
            ),
            ok,
        ),
        (
            web(
                "track",
                180,
                userId="user-ann",
                event="Checkout Started",
                properties={**order, "value": 30},
            ),
            ok,
        ),
        (web("track", 200, userId="user-ann", event="Order Completed", properties=order), ok),
        # Then on her iPhone (analytics-swift), anonymously, then logged in.
        (swift("screen", 300, ANN_PHONE, "iPhone15,3", "iOS", name="Home"), ok),
        (swift("screen", 310, ANN_PHONE, "iPhone15,3", "iOS", name="Detail", category="Games"), ok),
        (
            swift(
                "track",
                320,
                ANN_PHONE,
                "iPhone15,3",
                "iOS",
                event="Product Added",
                properties={"product_id": 12345, "price": 9.99},
            ),
            ok,
        ),
        (swift("identify", 330, ANN_PHONE, "iPhone15,3", "iOS", userId="user-ann"), ok),
        (
            swift(
                "track",
                340,
                ANN_PHONE,
                "iPhone15,3",
                "iOS",
                userId="user-ann",
                event="Product Removed",
                properties={"product_id": "12345"},
            ),
            ok,
        ),
        # Two iPads on analytics-swift: one says so in its model, one in its system name.
        (swift("screen", 350, "IPAD-1", "iPad13,4", "iPadOS", name="Home"), ok),
        (swift("screen", 355, "IPAD-2", "arm64", "iPadOS", name="Home"), ok),
        # Max on RudderStack's Android SDK: screens, a non-ASCII name, a snake_case spec name.
        (rudder("screen", 360, name="MainActivity", properties={"automatic": True}), ok),
        (rudder("screen", 370, event="ProductScreen", properties={"category": "Bücher"}), ok),
        (
            rudder(
                "track",
                380,
                event="Produkt angesehen",
                properties={"tags": ["a"], "meta": {"x": None}},
            ),
            ok,
        ),
        (
            rudder(
                "track",
                390,
                event="product_added",
                properties={
                    "product_id": "bk-1",
                    "price": 12.5,
                    "quantity": 2,
                    "category": "Bücher",
                },
            ),
            ok,
        ),
        (rudder("identify", 400, userId="user-max"), ok),  # traits only in context.traits
        (rudder("alias", 410, userId="user-max", previousId=MAX_DROID), ok),
        (
            rudder(
                "track",
                420,
                userId="user-max",
                event="Order Completed",
                properties={"revenue": 25, "currency": "EUR", "products": [{"product_id": "bk-1"}]},
            ),
            ok,
        ),
        # Server libraries: a numeric userId, Signed Up as the B2B SaaS spec gives it.
        (server("identify", 430, 987654, traits={"plan": "pro", "age": 33, "vip": True}), ok),
        (server("track", 440, "987654", event="Signed Up", properties=SIGNED_UP), ok),
        # analytics-go: nanoseconds and the local offset; analytics-ruby: +0000.
        (
            server(
                "page",
                450,
                "987654",
                name="Pricing",
                timestamp=at(450, ".123456789", "+01:00").replace("T08:", "T09:"),
            ),
            ok,
        ),
        (
            server("track", 460, "987654", event="Plan Chosen", timestamp=at(460, ".123", "+0000")),
            ok,
        ),
        # RFC 3339 lets "t" and "z" be lower case.
        (
            server(
                "track",
                470,
                "987654",
                event="Plan Chosen",
                timestamp=at(470, "", "z").replace("T", "t"),
            ),
            ok,
        ),
        # Warehouse-like rows: time derived as Segment does, or the receipt time alone.
        (
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": "wh-1",
                "messageId": "wh-1a",
                "originalTimestamp": at(480),
                "sentAt": at(485),
                "receivedAt": at(483),
            },
            ok,
        ),
        ({"type": "page", "anonymousId": "wh-1", "messageId": "wh-1b", "receivedAt": at(490)}, ok),
        # A group call naming its account (its traits are read only by a rule on them).
        (server("group", 500, "987654", groupId="org-1", traits={"name": "Initech"}), ok),
        # Shapes dead-lettered on purpose, each with its reason.
        (server("group", 502, "987654", traits={"name": "Initech"}), "dead:missing_group_id"),
        ({"batch": [server("track", 505, "987654", event="x")]}, "dead:unknown_type"),
        (
            {
                "type": "track",
                "user_id": "u-wh",
                "anonymous_id": "a-wh",
                "event": "Order Completed",
                "timestamp": at(510),
            },
            "dead:no_identity",
        ),
        (
            server("track", 515, "987654", event="x", timestamp=1772438400123),
            "dead:wrong_field_type",
        ),
        (
            server("track", 520, "987654", event="x", timestamp="2026-03-02T08:08:40"),
            "dead:bad_timestamp",
        ),
        # Filtered: consent withheld, a blocked id.
        (
            server(
                "track",
                540,
                "987654",
                event="x",
                context={"consent": {"categoryPreferences": {"personalization": False}}},
            ),
            "filtered:consent_withheld",
        ),
        (
            {"type": "track", "anonymousId": "undefined", "event": "x", "timestamp": at(550)},
            "filtered:blocked_identifier",
        ),
        # A Signed Up that comes ten minutes late: its dead letter keeps its line, without names.
        (
            server(
                "track",
                20,
                "user-zed",
                event="Signed Up",
                properties=SIGNED_UP,
                messageId="srv-late",
            ),
            "dead:late_event",
        ),
    ]


def _replay(tmp_path: Path, name: str, data: bytes) -> tuple[dict[str, Any], Path]:
    src = tmp_path / name
    src.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    out = tmp_path / f"out-{name}"
    return replay([str(src)], out, Settings.load(None, SALT)), out


def _records(out: Path, name: str) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in (out / name).read_bytes().splitlines() if x]


@pytest.mark.timeout(120)
def test_each_real_world_shape_has_its_outcome_and_no_personal_value_is_written(
    tmp_path: Path,
) -> None:
    lines = corpus()
    data = b"".join(orjson.dumps(line) + b"\n" for line, _ in lines)
    summary, out = _replay(tmp_path, "real.jsonl", data)

    counts = summary["counts"]
    want_dead = {n: w[5:] for n, (_, w) in enumerate(lines, 1) if w.startswith("dead:")}
    got_dead = {
        int(d["position"].rsplit(":", 1)[1]): d["reason"]
        for d in _records(out, "dead_letters.jsonl")
    }
    assert got_dead == want_dead
    filtered = [w[9:] for _, w in lines if w.startswith("filtered:")]
    assert counts["filtered_by_reason"] == {r: filtered.count(r) for r in filtered}
    assert counts["processed"] == sum(w == "processed" for _, w in lines)
    assert counts["reconciled"] is True
    [warehouse] = [d for d in _records(out, "dead_letters.jsonl") if d["reason"] == "no_identity"]
    assert "'user_id', 'anonymous_id'" in warehouse["detail"]

    merges = {(r["canonical_id"], r["type"]) for r in _records(out, "identities.jsonl")}
    assert merges == {("user-ann", "merge"), ("user-max", "merge")}
    sessions = {s["user_id"]: s for s in _records(out, "sessions.jsonl")}
    assert sessions["user-ann"]["order_value"] == 27.5  # total, not revenue
    assert sessions["user-max"]["order_value"] == 25.0  # revenue, without a total
    profiles = {p["user_id"]: p for p in _records(out, "profiles.jsonl")}
    assert profiles["user-ann"]["cart_items"] == 0  # the order emptied it; 12345 was removed
    assert profiles["user-ann"]["device"] == "mobile"  # the iPhone, last
    assert profiles["IPAD-1"]["device"] == profiles["IPAD-2"]["device"] == "tablet"
    assert profiles["user-max"]["top_category"] == "Bücher"

    written = "".join(p.read_text() for p in sorted(out.iterdir()) if p.is_file())
    assert [v for v in PLANTED if v in written] == []


@pytest.mark.timeout(180)
def test_gzip_crlf_bom_blank_lines_and_no_final_newline_change_no_record(tmp_path: Path) -> None:
    raw = [orjson.dumps(line) for line, _ in corpus()]
    _, plain = _replay(tmp_path, "plain.jsonl", b"".join(x + b"\n" for x in raw))
    # Windows tools: a byte-order mark, CRLF, a blank line every fifth, no newline at the end.
    body = b"\r\n".join(x + (b"\r\n  " if n % 5 == 0 else b"") for n, x in enumerate(raw))
    summary, messy = _replay(tmp_path, "messy.jsonl.gz", b"\xef\xbb\xbf" + body)
    assert summary["counts"]["blank_lines"] == len(range(0, len(raw), 5))
    for name in ("sessions", "segment_changes", "identities", "actions", "profiles"):
        assert (messy / f"{name}.jsonl").read_bytes() == (plain / f"{name}.jsonl").read_bytes()


@pytest.mark.timeout(180)
def test_a_file_is_gzip_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    # A download saved without ".gz" was read as hundreds of undecodable lines, and a
    # plain file named ".gz" could not be read at all. The replay, sort, split and
    # check-config's sample all open a file by its first two bytes.
    from audienceflow.flows.placement import split_stream
    from audienceflow.flows.sample import event_names
    from audienceflow.flows.timesort import sort_stream

    data = b"".join(orjson.dumps(line) + b"\n" for line, _ in corpus())
    _, plain = _replay(tmp_path, "plain.jsonl", data)
    unnamed = tmp_path / "download"
    unnamed.write_bytes(gzip.compress(data, mtime=0))
    misnamed = tmp_path / "plain-after-all.jsonl.gz"
    misnamed.write_bytes(data)
    for src in (unnamed, misnamed):
        out = tmp_path / f"out-{src.name}"
        summary = replay([str(src)], out, Settings.load(None, SALT))
        assert summary["counts"]["events_in"] == len(data.splitlines())
        for name in ("sessions", "segment_changes", "actions", "profiles"):
            assert (out / f"{name}.jsonl").read_bytes() == (plain / f"{name}.jsonl").read_bytes()
        dead = [d["reason"] for d in _records(out, "dead_letters.jsonl")]  # named by file
        assert dead == [d["reason"] for d in _records(plain, "dead_letters.jsonl")]
        assert sort_stream([src], tmp_path / "s.jsonl").lines == len(data.splitlines())
        parts = split_stream(src, 2, tmp_path / f"parts-{src.name}")
        assert sum(len(p.read_bytes().splitlines()) for p in parts) == len(data.splitlines())
        assert event_names(str(src)) == event_names(str(tmp_path / "plain.jsonl"))


def _validate(line: dict[str, Any]) -> Event | DeadLetter:
    return Validator(Taxonomy.default())(orjson.dumps(line), "f:1")


@pytest.mark.timeout(30)
def test_an_ipad_on_segments_ios_libraries_is_a_tablet_and_an_iphone_a_phone() -> None:
    # analytics-swift sends device.type "ios" on both; the model or the system name tells.
    ipad = _validate(swift("screen", 0, "a1", "iPad13,4", "iOS", name="Home"))
    ipados = _validate(swift("screen", 0, "a1", "arm64", "iPadOS", name="Home"))
    iphone = _validate(swift("screen", 0, "a1", "iPhone15,3", "iOS", name="Home"))
    assert isinstance(ipad, Event) and isinstance(ipados, Event) and isinstance(iphone, Event)
    assert (ipad.device, ipados.device, iphone.device) == ("tablet", "tablet", "mobile")


@pytest.mark.timeout(30)
def test_rfc3339_lower_case_t_and_z_are_read_as_upper_case() -> None:
    lower = _validate(server("track", 0, "u1", event="x", timestamp="2026-03-02t08:00:00.5z"))
    assert isinstance(lower, Event) and lower.ts == 1772438400.5
    bad = _validate(server("track", 0, "u1", event="x", timestamp="today"))
    assert isinstance(bad, DeadLetter) and bad.reason == "bad_timestamp"


@pytest.mark.timeout(30)
def test_signed_up_names_of_the_b2b_saas_spec_are_hashed_before_any_state() -> None:
    settings = Settings.load(None, SALT)
    ev = _validate(server("track", 0, "u1", event="Signed Up", properties=SIGNED_UP))
    assert isinstance(ev, Event)
    out = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)(ev)
    assert isinstance(out, Event)
    props = out.properties
    assert props["type"] == "organic"
    for key in ("first_name", "last_name", "username", "email", "phone"):
        assert str(props[key]).startswith("sha256:"), key


@pytest.mark.timeout(30)
def test_a_row_with_snake_case_ids_says_which_fields_the_spec_names() -> None:
    dead = _validate({"type": "track", "userID": "u1", "event": "x", "timestamp": at(0)})
    assert isinstance(dead, DeadLetter) and dead.reason == "no_identity"
    assert "'userID'" in dead.detail and "'userId'" in dead.detail


@pytest.mark.timeout(60)
def test_an_empty_category_or_product_id_names_nothing_in_a_session() -> None:
    # Templates send a missing value as "" (category: product.category || ""); the cart and
    # the affinities already read "" as no category and true as no product id.
    lines = [
        server("page", 0, "u1", name="Home", category=""),
        server(
            "track", 10, "u1", event="Product Viewed", properties={"product_id": "", "category": ""}
        ),
        server("track", 20, "u1", event="Product Viewed", properties={"product_id": True}),
        server(
            "track",
            30,
            "u1",
            event="Product Viewed",
            properties={"product_id": 7, "category": "Toys"},
        ),
    ]
    result = run(lines, environ=SALT)
    [session] = result.sessions
    assert (session["categories"], session["products"]) == (["Toys"], ["7"])
    assert result.summary["counts"]["processed"] == 4


@pytest.mark.timeout(60)
def test_an_amount_below_zero_or_beyond_any_real_order_is_unusable() -> None:
    # JSON allows 1e308: two such orders summed to infinity, written as null where the
    # session and profile contracts say number; a negative total or price broke their
    # minimum of 0. The valid order and the valid line are kept.
    lines = [
        server("track", 0, "u1", event="Order Completed", properties={"total": 1e308}),
        server("track", 10, "u1", event="Order Completed", properties={"revenue": 1e308}),
        server("track", 15, "u1", event="Order Completed", properties={"total": -3}),
        server("track", 20, "u1", event="Product Added", properties={"price": 1e308}),
        server(
            "track", 25, "u1", event="Product Added", properties={"product_id": "p", "price": -5}
        ),
        server("track", 30, "u1", event="Order Completed", properties={"total": 12.5}),
        server("track", 40, "u1", event="Product Added", properties={"price": 2.5, "quantity": 2}),
    ]
    result = run(lines, environ=SALT)
    assert result.contract_errors() == []
    [session] = result.sessions
    assert session["order_value"] == 12.5
    assert result.profile("u1")["cart_value"] == 5.0  # type: ignore[index]
    assert result.summary["limits_hit"] == {"unusable:order_value": 3, "unusable:price": 2}


@pytest.mark.timeout(60)
def test_camel_case_hyphenated_and_padded_spec_names_fill_the_cart_and_order() -> None:
    # JavaScript codebases write productAdded, some templates order-completed or a name
    # with a trailing space: each is Segment's name, as the cart and the order read it.
    lines = [
        server("track", 0, "u1", event="productAdded", properties={"product_id": "p", "price": 4}),
        server(
            "track", 10, "u1", event="product-added", properties={"product_id": "q", "price": 1}
        ),
        server("track", 20, "u1", event="Order Completed ", properties={"total": 5}),
        server("track", 30, "u1", event="CartViewed"),
    ]
    result = run(lines, environ=SALT)
    [session] = result.sessions
    assert (session["order_value"], session["products"]) == (5.0, ["p", "q"])
    assert session["events_by_category"] == {"conversion": 1, "engagement": 3}
    assert result.delivered("cart_abandonment") == []  # the order emptied the cart


@pytest.mark.timeout(60)
def test_a_name_with_a_run_of_spaces_or_underscores_is_the_spec_name() -> None:
    # A template joining words with two spaces (or "__") made an order no order: the buyer
    # got the cart-abandonment e-mail.
    for order in ("Order  Completed", "order__completed", " order - completed"):
        lines = [
            server("track", 0, "u1", event="Product  Added", properties={"product_id": "p"}),
            server("track", 20, "u1", event=order, properties={"total": 5}),
        ]
        result = run(lines, environ=SALT)
        [session] = result.sessions
        assert session["order_value"] == 5.0 and session["products"] == ["p"]
        assert result.delivered("cart_abandonment") == []


@pytest.mark.timeout(30)
def test_a_validator_keeps_what_it_made_of_a_name_and_forgets_it_past_its_bound() -> None:
    # The folding of a name the taxonomy lacks is kept (a regex per camelCase custom event
    # otherwise); a sender of endless new names clears it rather than grows it.
    validate = Validator(Taxonomy.default())

    def name(event: str, n: int) -> str:
        ev = validate(orjson.dumps(server("track", n, "u1", event=event)), f"f:{n}")
        assert isinstance(ev, Event)
        return ev.name

    assert [name("productAdded", 0), name("productAdded", 1)] == ["Product Added"] * 2
    assert [name("videoStarted", 2), name("videoStarted", 3)] == ["videoStarted"] * 2
    assert validate._folds == {"productAdded": "Product Added", "videoStarted": ""}
    for n in range(FOLDS_KEPT):
        name(f"custom{n}", n % 60)
    assert len(validate._folds) <= FOLDS_KEPT
    assert "productAdded" not in validate._folds  # cleared once full
    assert name("productAdded", 0) == "Product Added"


@pytest.mark.timeout(60)
def test_the_sample_reader_counts_a_line_over_a_megabyte_without_reading_it(tmp_path: Path) -> None:
    """``check-config --sample``: a line over ``LINE_CAP`` is counted and passed over in
    chunks (never held whole); the lines around it are read."""
    from audienceflow.flows.input_files import LINE_CAP
    from audienceflow.flows.sample import event_names

    named = b'{"type":"track","event":"%s","userId":"u1"}'
    long = b'{"type":"track","event":"Hidden","userId":"u1","pad":"' + b"x" * (2 * LINE_CAP) + b'"}'
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b"\n".join([named % b"A", long, named % b"B"]) + b"\n"))
    assert event_names(str(src)) == ({"A", "B"}, 3)


@pytest.mark.timeout(60)
def test_the_sample_reader_keeps_the_line_after_one_a_byte_under_the_cap(tmp_path: Path) -> None:
    from audienceflow.flows.input_files import LINE_CAP
    from audienceflow.flows.sample import event_names

    named = b'{"type":"track","event":"%s","userId":"u1"}'
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join([b"u" * (LINE_CAP - 1), named % b"A", named % b"B"]) + b"\n")
    assert event_names(str(src)) == ({"A", "B"}, 3)


@pytest.mark.timeout(60)
def test_the_sample_reader_reads_lines_as_the_replay_does_bom_and_oversize(
    tmp_path: Path,
) -> None:
    # A byte-order mark is read past (the replay does, on any line), and a line over
    # the replay's 32 KB limit names no event: it is an `oversize` dead letter there.
    from audienceflow.flows.sample import event_names
    from audienceflow.operators.validate import MAX_EVENT_BYTES

    def line(name: str, size: int) -> bytes:
        head = b'{"type":"track","event":"%s","userId":"u1","pad":"' % name.encode()
        return head + b"x" * (size - len(head) - 2) + b'"}'

    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b"\n".join(
            [
                b"\xef\xbb\xbf" + line("First", 200),
                line("AtLimit", MAX_EVENT_BYTES),
                line("Over", MAX_EVENT_BYTES + 1),
            ]
        )
        + b"\r\n"
    )
    assert event_names(str(src)) == ({"First", "AtLimit"}, 3)
