"""Segment's Native Mobile Spec: the events analytics-swift and analytics-kotlin send
on their own (application lifecycle) and the campaign events of push and deep links are
taxonomy names, read and checked as the e-commerce and video names are."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from audienceflow.flows.cli import main
from audienceflow.operators.records import Event
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
