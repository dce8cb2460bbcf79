"""Segment's Native Mobile Spec: the events analytics-swift and analytics-kotlin send
on their own (application lifecycle) and the campaign events of push and deep links are
taxonomy names, read and checked as the e-commerce and video names are."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from audienceflow.flows.cli import main
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import DeadLetter, Event
from audienceflow.operators.validate import Taxonomy, Validator

VALIDATE = Validator(Taxonomy.default())

LIFECYCLE = [
    "Application Installed",
    "Application Opened",
    "Application Backgrounded",
    "Application Foregrounded",
    "Application Updated",
    "Application Uninstalled",
    "Application Crashed",
]
CAMPAIGN = [
    "Install Attributed",
    "Push Notification Received",
    "Push Notification Tapped",
    "Push Notification Bounced",
    "Deep Link Clicked",
    "Deep Link Opened",
]


def track(name: str) -> Event:
    raw = orjson.dumps(
        {
            "type": "track",
            "event": name,
            "anonymousId": "a1",
            "timestamp": "2026-03-02T08:00:00Z",
            "messageId": "m1",
            "properties": {"from_background": False, "version": "2.4.0", "build": "240"},
        }
    )
    out = VALIDATE(raw, "in.jsonl:1")
    assert isinstance(out, Event), out
    return out


@pytest.mark.parametrize("name", LIFECYCLE)
def test_an_application_lifecycle_event_is_in_the_lifecycle_category(name: str) -> None:
    assert track(name).category == "lifecycle"


@pytest.mark.parametrize("name", CAMPAIGN)
def test_a_push_deep_link_or_install_attribution_event_is_in_the_campaign_category(
    name: str,
) -> None:
    assert track(name).category == "campaign"


def test_a_mobile_event_name_spelt_another_way_is_read_as_the_specs_name() -> None:
    assert track("application_opened").name == "Application Opened"
    assert track("pushNotificationTapped").name == "Push Notification Tapped"


def test_check_config_does_not_warn_of_the_mobile_specs_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before, each was "not in the taxonomy; add it under taxonomy: if it is real",
    # though Segment's mobile libraries send them unasked.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "segments:\n  opens:\n    when: count('Application Opened', 7d) >= 3\n"
        "triggers:\n  winback:\n    type: timer\n    start_on: [Application Backgrounded]\n"
        "    cancel_on: [Application Opened]\n    after: 3d\n"
        "  push_buyer:\n    type: event\n    events: [Order Completed]\n"
        "    when: since('Push Notification Tapped') < 24h\n"
    )
    assert main(["check-config", str(cfg)]) == 0
    out = capsys.readouterr()
    assert "not in the taxonomy" not in out.err
    assert out.out.endswith(", 0 warnings)\n")


# --- a dead letter keeps no destination's per-device ids -----------------------------

# Segment's place for a destination's own options on a call: the AppsFlyer device id
# (Segment's AppsFlyer docs: "Send the AppsFlyer Device ID with each event at
# integrations.AppsFlyer.appsFlyerId ... unique to each device"), Google Analytics'
# client id (a cookie's). As personal as ``context.device.id``, which is redacted.
MOBILE_CALL = {
    "type": "track",
    "event": "Membership Upgraded",
    "userId": "97234974",
    "messageId": "x1",
    "timestamp": "not a time",
    "context": {"device": {"type": "ios", "advertisingId": "159358"}},
    "integrations": {
        "All": True,
        "Mixpanel": False,
        "AppsFlyer": {"appsFlyerId": "1415211453000-6513894"},
        "Google Analytics": {"clientId": "1033501218.1368477899"},
    },
}


def test_a_parsed_dead_letter_keeps_no_destinations_options_but_keeps_their_switches() -> None:
    for line in (MOBILE_CALL, {"batch": [MOBILE_CALL]}, [MOBILE_CALL]):
        d = VALIDATE(orjson.dumps(line), "f:1")
        assert isinstance(d, DeadLetter)
        out = Privacy(("email",))(d)
        assert isinstance(out, DeadLetter)
        for secret in ("1415211453000-6513894", "1033501218.1368477899", "159358"):
            assert secret not in out.raw, out.raw
        calls = orjson.loads(out.raw)
        call = calls[0] if isinstance(calls, list) else calls.get("batch", [calls])[0]
        assert call["integrations"] == {
            "All": True,
            "Mixpanel": False,
            "AppsFlyer": "<redacted>",
            "Google Analytics": "<redacted>",
        }


def test_a_dead_letter_cut_short_is_kept_only_up_to_a_destinations_options() -> None:
    raw = '{"type":"track","userId":"u1","integrations":{"All":true,"AppsFlyer":{"appsFlyerId":"14'
    assert Privacy(("email",)).scrub_raw(raw) == '{"type":"track","userId":"u1",'
    # Switches alone hold no id: such a line is kept as it is.
    raw = '{"type":"track","userId":"u1","integrations":{"All":true,"Mixpanel":false},"ev'
    assert Privacy(("email",)).scrub_raw(raw) == raw


def test_every_kind_of_destination_option_is_redacted_parsed_or_cut_short() -> None:
    # An option that is a list or a bare string is an option too (only true/false are
    # switches): redacted in a parsed line, and a line cut short ends before it.
    call = {
        **MOBILE_CALL,
        "integrations": {"All": True, "Braze": ["dev-7781"], "Adjust": "adid-42"},
    }
    d = VALIDATE(orjson.dumps(call), "f:1")
    assert isinstance(d, DeadLetter)
    out = Privacy(("email",))(d)
    assert isinstance(out, DeadLetter)
    assert orjson.loads(out.raw)["integrations"] == {
        "All": True,
        "Braze": "<redacted>",
        "Adjust": "<redacted>",
    }
    cut = '{"type":"track","userId":"u1",'
    for options in (
        '{"All":true,"Braze":["dev-7781"',
        '{"All":true,"Adjust":"adid-42"',
        "{'Adjust': 'adid-42'",
    ):
        raw = cut + '"integrations":' + options
        assert Privacy(("email",)).scrub_raw(raw) == cut, raw
