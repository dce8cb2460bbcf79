"""Shapes found in the test fixtures of real senders and ingestion servers, replayed.

A pass over the payloads that RudderStack's rudder-transformer and rudder-server,
Segment's analytics-next and Jitsu keep as test data (2,254 distinct calls) found the
cases below; tests/test_realworld_payloads.py covers what the published specs say.
Each line keeps only the *shape* of what was found; every value is made up here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from audienceflow.flows.testing import Clock, run
from audienceflow.operators.normalize import normalize_device
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.validate import MAX_EVENT_BYTES, Taxonomy, Validator

PII = ("email", "phone", "ip")


def _validate(line: dict[str, Any]) -> Event | DeadLetter:
    return Validator(Taxonomy.default())(orjson.dumps(line), "f:1")


def _rudder_ios(device_type: str) -> dict[str, Any]:
    """RudderStack's iOS SDK: ``context.device.type`` is UIDevice's ``systemName``."""
    return {
        "anonymousId": "b7c1e0d2-5a4f-4f0e-9d1c-3e2a1b0c9d8e",
        "channel": "mobile",
        "context": {
            "device": {"id": "0f9e8d7c-6b5a-4c3d-2e1f-0a9b8c7d6e5f", "manufacturer": "Apple",
                       "model": "iPad13,16", "name": "iPad", "type": device_type},
            "locale": "en-GB",
            "os": {"name": device_type, "version": "17.4"},
        },
        "event": "Product Viewed",
        "messageId": "9a8b7c6d-0001",
        "originalTimestamp": "2026-03-02T08:00:00.000Z",
        "properties": {"product_id": "p-1", "category": "Tablets"},
        "sentAt": "2026-03-02T08:00:01.000Z",
        "type": "track",
    }  # fmt: skip


@pytest.mark.timeout(30)
def test_an_ipad_that_reports_ipados_is_a_tablet() -> None:
    # rudder-sdk-ios sends systemName: "iPadOS" on an iPad since iPadOS 15 ("iOS" on an
    # iPhone). Before the fix it was read as an unknown device: "other".
    ev = _validate(_rudder_ios("iPadOS"))
    assert isinstance(ev, Event)
    assert ev.device == "tablet"
    assert normalize_device("ipados") == "tablet"
    # An iPhone says "iOS" (the fixture's iPad model is an iPad's: a tablet, whatever it says).
    iphone = _rudder_ios("iOS")
    iphone["context"]["device"]["model"] = "iPhone15,3"
    assert _validate(iphone).device == "mobile"  # type: ignore[union-attr]


def _oversize_android_line() -> tuple[dict[str, Any], str]:
    """RudderStack's Android SDK: the cached identify traits ride in ``context.traits``
    on every call, and the device id beside the device type; the products make it big."""
    line = {
        "anonymousId": "7d3e2b1a-anon",
        "channel": "mobile",
        "context": {
            "app": {"build": "3", "name": "Shop", "namespace": "org.example.shop"},
            "device": {"id": "a1b2c3d4e5f60718", "type": "Android", "model": "Pixel 7"},
            "locale": "en-IN",
            "traits": {"firstName": "Zoltan", "lastName": "Quibbleworth",
                       "address": {"street": "12 Larkspur Row", "city": "Nowhereville"},
                       "phone": "98450 12345"},
        },
        "event": "Order Completed",
        "messageId": "5e6f7a8b-0002",
        "originalTimestamp": "2026-03-02T08:00:00.000Z",
        "properties": {"order_id": "o-9", "total": 12.5,
                       "products": [{"product_id": f"p-{i}", "price": 1.5} for i in range(2000)]},
        "type": "track",
    }  # fmt: skip
    return line, "Zoltan Quibbleworth Larkspur Nowhereville 98450 a1b2c3d4e5f60718"


@pytest.mark.timeout(30)
def test_an_oversize_mobile_line_keeps_no_traits_or_device_id_in_its_dead_letter() -> None:
    # Oversize lines are not parsed, so the structural redaction of parsed dead letters
    # never saw their context.traits: the first 1 KB kept the person's name and address.
    line, personal = _oversize_android_line()
    raw = orjson.dumps(line)
    assert len(raw) > MAX_EVENT_BYTES
    d = Validator(Taxonomy.default())(raw, "f:2")
    assert isinstance(d, DeadLetter) and d.reason == "oversize"
    out = Privacy(PII, salt="x")(d)
    assert isinstance(out, DeadLetter)
    text = out.raw + out.detail
    assert [w for w in personal.split() if w in text] == []
    # The prefix ends right before the first key that describes the person (here the
    # device, which holds its id): what comes before it is kept, to the character.
    cut = raw.index(b'"device"')
    assert out.raw == raw[:cut].decode()


@pytest.mark.timeout(30)
def test_an_oversize_line_without_personal_keys_keeps_its_whole_prefix() -> None:
    line = {"type": "track", "event": "Big", "userId": "u1", "timestamp": "2026-03-02T08:00:00Z",
            "properties": {"blob": "x" * MAX_EVENT_BYTES}}  # fmt: skip
    d = _validate(line)
    assert isinstance(d, DeadLetter) and d.reason == "oversize"
    assert d.raw == orjson.dumps(line)[:1024].decode()


@pytest.mark.timeout(30)
def test_a_line_cut_short_keeps_no_traits_in_its_dead_letter() -> None:
    # A line cut short (a partial write, a log rotated mid-line) is not JSON, so it is
    # never parsed and the structural redaction cannot reach its context.traits: its
    # dead letter kept the person's name and address whole.
    line, personal = _oversize_android_line()
    line["properties"]["products"] = line["properties"]["products"][:2]
    raw = orjson.dumps(line)[:-40]
    d = Validator(Taxonomy.default())(raw, "f:3")
    assert isinstance(d, DeadLetter) and d.reason == "not_json"
    out = Privacy(PII, salt="x")(d)
    assert isinstance(out, DeadLetter)
    assert [w for w in personal.split() if w in out.raw + out.detail] == []
    assert out.raw == raw[: raw.index(b'"device"')].decode()  # kept to the character


@pytest.mark.timeout(30)
@pytest.mark.parametrize("key", ["traits", "location", "geo", "device"])
def test_an_unparsed_line_ends_before_each_personal_key(key: str) -> None:
    raw = b'{"type":"identify","userId":"u1","context":{"' + key.encode() + b'" :{"a":"Zed Quill"'
    out = Privacy(PII, salt="x")(Validator(Taxonomy.default())(raw, "f:4"))
    assert isinstance(out, DeadLetter) and out.reason == "not_json"
    assert out.raw == '{"type":"identify","userId":"u1","context":{'


@pytest.mark.timeout(30)
def test_a_line_not_in_utf8_keeps_no_traits_in_its_dead_letter() -> None:
    # Cut short too: decoded with replacement it still does not parse.
    raw = b'{"type":"identify","userId":"u\xff1","traits":{"name":"Zed Quill"'
    out = Privacy(PII, salt="x")(Validator(Taxonomy.default())(raw, "f:5"))
    assert isinstance(out, DeadLetter) and out.reason == "bad_encoding"
    assert out.raw == '{"type":"identify","userId":"u\ufffd1",'


@pytest.mark.timeout(30)
def test_an_unparsed_line_without_personal_keys_is_kept_whole() -> None:
    raw = b'{"type":"track","userId":"u1","event":"Product Viewed","properties":{"sku":"a"'
    out = Privacy(PII, salt="x")(Validator(Taxonomy.default())(raw, "f:6"))
    assert isinstance(out, DeadLetter) and out.reason == "not_json"
    assert out.raw == raw.decode()


@pytest.mark.timeout(120)
def test_a_replay_writes_no_traits_of_a_line_cut_short() -> None:
    line, personal = _oversize_android_line()
    line["properties"]["products"] = []
    cut = orjson.dumps(line)[:-20]
    result = run([cut], None, environ={"AUDIENCEFLOW_PII_SALT": "x"})
    assert result.summary["counts"]["dead_lettered_by_reason"] == {"not_json": 1}
    written = orjson.dumps(result.dead_letters).decode()
    assert "not_json" in written
    assert [w for w in personal.split() if w in written] == []


@pytest.mark.timeout(30)
def test_an_alias_without_user_id_says_the_user_id_is_missing() -> None:
    # rudder-transformer's fixtures hold aliases with anonymousId and previousId only;
    # the dead letter named the (present) previousId, not the missing userId.
    d = _validate({"type": "alias", "anonymousId": "a-77", "previousId": "old-77",
                   "originalTimestamp": "2026-03-02T08:00:00.000Z"})  # fmt: skip
    assert isinstance(d, DeadLetter) and d.reason == "bad_alias"
    assert "no 'userId'" in d.detail
    d = _validate({"type": "alias", "userId": "u-77", "previousId": "",
                   "originalTimestamp": "2026-03-02T08:00:00.000Z"})  # fmt: skip
    assert isinstance(d, DeadLetter) and d.reason == "bad_alias"
    assert "previousId ''" in d.detail and "no 'userId'" not in d.detail


def _rudder_android_screen(**fields: Any) -> dict[str, Any]:
    """RudderStack's Android and iOS SDKs: a screen's name is its ``event`` and its
    ``properties.name`` (ScreenPropertyBuilder); there is no top-level ``name``."""
    return {
        "anonymousId": "3c2b1a09-anon",
        "channel": "mobile",
        "context": {"device": {"type": "Android"}, "locale": "en-US"},
        "messageId": "1f2e3d4c-0003",
        "originalTimestamp": "2026-03-02T08:00:00.000Z",
        "sentAt": "2026-03-02T08:00:01.000Z",
        "type": "screen",
        **fields,
    }


@pytest.mark.timeout(30)
def test_a_rudderstack_screen_is_named_by_its_properties_name_else_its_event() -> None:
    # Before the fix its name was "": count('Checkout', 24h) and name == 'Checkout' never held.
    both = _validate(_rudder_android_screen(event="Checkout", properties={"name": "Checkout"}))
    assert isinstance(both, Event) and both.name == "Checkout"
    event_only = _validate(_rudder_android_screen(event="Cart"))
    assert isinstance(event_only, Event) and event_only.name == "Cart"
    # A page too (Jitsu, RudderStack's JS SDK called without a name but with properties).
    page = _validate({**_rudder_android_screen(properties={"name": "Pricing"}), "type": "page"})
    assert isinstance(page, Event) and page.name == "Pricing"
    # The order: the top-level name, else properties.name, else event.
    top = _validate(_rudder_android_screen(name="Home", event="Cart", properties={"name": "Shop"}))
    assert isinstance(top, Event) and top.name == "Home"
    prop = _validate(_rudder_android_screen(event="Cart", properties={"name": "Shop"}))
    assert isinstance(prop, Event) and prop.name == "Shop"
    # A fallback that is not a usable name is passed over, never a dead letter.
    odd = _validate(_rudder_android_screen(event="Ca\x00rt", properties={"name": 7}))
    assert isinstance(odd, Event) and odd.name == ""
    # A track's event stays its name; an identify is not named from its properties.
    ident = _validate({**_rudder_android_screen(properties={"name": "x"}), "type": "identify"})
    assert isinstance(ident, Event) and ident.name == ""


@pytest.mark.timeout(120)
def test_a_segment_on_a_screen_name_counts_rudderstack_screens_end_to_end() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    screens = []
    for i in range(2):
        t = clock.now()
        screens.append(
            _rudder_android_screen(event="Checkout", properties={"name": "Checkout"},
                                   messageId=f"m-{i}", originalTimestamp=t, sentAt=t)
        )  # fmt: skip
        clock.advance("1m")
    result = run(screens, {"segments": {"checkout_twice": {"when": "count('Checkout', 24h) >= 2"}}},
                 environ={"AUDIENCEFLOW_PII_SALT": "x"})  # fmt: skip
    assert result.summary["counts"]["processed"] == 2
    assert result.entered("checkout_twice") == ["3c2b1a09-anon"]
