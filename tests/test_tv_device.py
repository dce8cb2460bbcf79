"""A TV app's device type: Segment's mobile libraries name the platform, not the form.

analytics-kotlin sends ``context.device.type`` ``android`` on a phone, an Android TV and
a Fire TV alike, with ``Build.MODEL`` as ``device.model`` and Android's own HTTP agent
(``http.agent``) as ``context.userAgent``; analytics-ios sends ``ios`` on an Apple TV with
its hardware identifier as the model. The TV shows in the model and in the agent.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators.normalize import device_from_agent
from audienceflow.operators.records import Event
from audienceflow.operators.validate import Taxonomy, Validator

pytestmark = pytest.mark.timeout(60)

VALIDATE = Validator(Taxonomy.default())


def kotlin_context(model: str, device_type: str = "android", agent: bool = True) -> dict[str, Any]:
    """``context`` as analytics-kotlin's AndroidContextPlugin fills it (values made up)."""
    ctx: dict[str, Any] = {
        "app": {"name": "Stream", "version": "3.1.0", "namespace": "org.example.stream"},
        "device": {"id": "d-1", "manufacturer": "Amazon", "model": model, "name": "sheldon",
                   "type": device_type},
        "os": {"name": "Android", "version": "9"},
        "screen": {"density": 2.0, "height": 1080, "width": 1920},
        "library": {"name": "analytics-kotlin", "version": "1.16.0"},
        "locale": "en-US", "timezone": "America/New_York",
    }  # fmt: skip
    if agent:
        ctx["userAgent"] = f"Dalvik/2.1.0 (Linux; U; Android 9; {model} Build/PS7633)"
    return ctx


def device(ctx: dict[str, Any]) -> str | None:
    line = {"type": "screen", "name": "Home", "userId": "u1", "messageId": "m1",
            "timestamp": "2026-03-02T08:00:00Z", "context": ctx}  # fmt: skip
    ev = VALIDATE(orjson.dumps(line), "in:1")
    assert isinstance(ev, Event)
    return ev.device


# Fire TV models from Amazon's list (sticks, a Cube, a Fire TV Edition set), Android TVs
# that name themselves so, then phones and a Fire tablet (``KF...``).
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("AFTMM", "tv"),
        ("AFTN", "tv"),
        ("AFTKA", "tv"),
        ("AFTR", "tv"),
        ("AFTEU011", "tv"),
        ("SHIELD Android TV", "tv"),
        ("BRAVIA 4K GB", "tv"),
        ("Pixel 8", "mobile"),
        ("SM-S918B", "mobile"),
        ("KFTRWI", "mobile"),
    ],
)
def test_an_android_apps_device_type_reads_a_tv_from_the_model_or_the_agent(
    model: str, expected: str
) -> None:
    assert device(kotlin_context(model)) == expected
    assert device(kotlin_context(model, agent=False)) == expected  # the model alone
    ctx = kotlin_context(model)
    del ctx["device"]["model"]
    assert device(ctx) == expected  # the agent alone


def test_a_fire_tv_by_its_agent_alone_when_the_call_names_no_device_type() -> None:
    # Fire TV models the agent tokens did not list (AFTN, AFTKA): any ``AFT...`` model.
    for model in ("AFTN", "AFTKA", "AFTMM"):
        agent = f"Mozilla/5.0 (Linux; Android 9; {model} Build/PS7633; wv) AppleWebKit/537.36"
        assert device_from_agent(agent) == "tv"
        assert device({"userAgent": agent}) == "tv"
    assert device({"device": {"model": "AFTN"}}) == "tv"  # a model without a type
    assert device_from_agent("Mozilla/5.0 (Linux; Android 10; aftermath) Mobile") == "mobile"


def test_an_apple_tv_on_analytics_ios_is_a_tv() -> None:
    # analytics-ios sends "ios" on tvOS; analytics-swift sends "tvos" there.
    apple_tv = {"device": {"type": "ios", "model": "AppleTV11,1"}, "os": {"name": "tvOS"}}
    assert device(apple_tv) == "tv"
    assert device({"device": {"type": "tvos", "model": "AppleTV11,1"}}) == "tv"
    assert device({"device": {"type": "ios", "model": "iPhone15,3"}}) == "mobile"


def test_a_model_alone_is_read_on_a_call_without_os_or_agent() -> None:
    # The model is read though the call names no os and sends no agent (a server-side
    # sender forwarding the app's device): the model is what makes the call worth reading.
    assert device({"device": {"type": "android", "model": "AFTMM"}}) == "tv"
    assert device({"device": {"type": "ios", "model": "AppleTV11,1"}}) == "tv"
    assert device({"device": {"type": "ios", "model": "iPad13,4"}}) == "tablet"
    assert device({"device": {"type": "android", "model": "Pixel 8"}}) == "mobile"


def test_an_apple_tvs_agent_is_a_tv() -> None:
    # AVFoundation's agent on tvOS names the device "Apple TV"; an app's may name tvOS only.
    core_media = "AppleCoreMedia/1.0.0.21J354 (Apple TV; U; CPU OS 17_0 like Mac OS X; en_us)"
    assert device_from_agent(core_media) == "tv"
    assert device_from_agent("Stream/3.1 (tvOS 17.0; Apple)") == "tv"
    assert device({"device": {"type": "ios"}, "userAgent": "Stream/3.1 (tvOS 17.0; Apple)"}) == "tv"


def test_a_device_type_that_is_a_form_is_kept_whatever_the_model() -> None:
    # Only a platform's name (android, ios) is read further; "mobile" was chosen by the sender.
    assert device(kotlin_context("AFTMM", device_type="mobile")) == "mobile"
    assert device(kotlin_context("AFTMM", device_type="tablet")) == "tablet"
    assert device(kotlin_context("AFTMM", device_type="Android")) == "tv"
    # ... though the iPad rule reads any type that reads as a phone (README says so)
    assert device({"device": {"type": "mobile", "model": "iPad13,4"}}) == "tablet"


def test_a_tv_segment_is_entered_by_a_fire_tv_apps_user_end_to_end() -> None:
    cfg = {"segments": {"on_tv": {"when": "device == 'tv'"}}}
    clock = Clock()
    lines = [
        event("fire", clock.now(), "Home", context=kotlin_context("AFTMM")),
        event("phone", clock.now(), "Home", context=kotlin_context("Pixel 8")),
    ]
    r = run(lines, cfg, {"AUDIENCEFLOW_PII_SALT": "x"})
    assert r.entered("on_tv") == ["fire"]
    assert r.profile("fire")["device"] == "tv"
    assert r.profile("phone")["device"] == "mobile"
