"""A web call's device type, read from the browser: analytics.js sends no
``context.device.type``, only ``context.userAgent`` and (Chromium) ``userAgentData``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators import normalize
from audienceflow.operators.normalize import MAX_AGENT_CACHED, device_from_agent
from audienceflow.operators.records import Event
from audienceflow.operators.validate import Taxonomy, Validator

pytestmark = pytest.mark.timeout(60)

VALIDATE = Validator(Taxonomy.default())
# User agents in the shapes browsers and devices send (versions and models made up).
AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36": "desktop",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Safari/605.1.15": "desktop",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0": "desktop",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36": "desktop",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1": "mobile",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36": "mobile",
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0": "mobile",
    "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1": "tablet",
    "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36": "tablet",
    "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Silk/131.3.1 like Chrome/131.0.0.0 Safari/537.36": "tablet",
    "Mozilla/5.0 (SMART-TV; LINUX; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/5.0 Chrome/94.0.4606.31 TV Safari/537.36": "tv",
    "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/108.0.0.0 Safari/537.36": "tv",
    "Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7633) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/128.0.0.0 Safari/537.36": "tv",
    # An Android TV names itself in its model (NVIDIA's SHIELD): not a tablet's agent.
    "Mozilla/5.0 (Linux; Android 11; SHIELD Android TV Build/RQ1A.210105.003) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36": "tv",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/131.0.0.0 Safari/537.36 Edge/44.18363.8131": "other",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "other",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36": "other",
    "curl/8.5.0": "other",
}


def call(**context: Any) -> bytes:
    return orjson.dumps(
        {"type": "page", "name": "Home", "anonymousId": "a1", "messageId": "m1",
         "timestamp": "2026-03-02T08:00:00Z", "context": context}
    )  # fmt: skip


def device(**context: Any) -> str | None:
    ev = VALIDATE(call(**context), "in:1")
    assert isinstance(ev, Event)
    return ev.device


@pytest.mark.parametrize(("agent", "expected"), list(AGENTS.items()))
def test_a_user_agent_gives_the_device_type(agent: str, expected: str) -> None:
    assert device_from_agent(agent) == expected
    assert device(userAgent=agent) == expected


def test_the_sent_device_type_wins_over_the_user_agent() -> None:
    iphone = next(a for a, t in AGENTS.items() if t == "mobile")
    assert device(userAgent=iphone, device={"type": "ios"}) == "mobile"
    assert device(userAgent=iphone, device={"type": "desktop"}) == "desktop"


def test_client_hints_saying_mobile_win_over_the_user_agent() -> None:
    desktop = next(a for a, t in AGENTS.items() if t == "desktop")
    hints = {"brands": [{"brand": "Chromium", "version": "131"}], "platform": "Android"}
    assert device(userAgent=desktop, userAgentData={**hints, "mobile": True}) == "mobile"
    assert device(userAgent=desktop, userAgentData={**hints, "mobile": False}) == "desktop"
    assert device(userAgentData={**hints, "mobile": False}) is None
    assert device(userAgentData={**hints, "mobile": "yes"}) is None  # only a true boolean


@pytest.mark.parametrize("agent", [None, "", 42, ["iPhone"]])
def test_no_usable_agent_leaves_the_device_unknown(agent: Any) -> None:
    assert device(userAgent=agent) is None
    assert device() is None


def test_a_long_agent_is_read_but_not_kept() -> None:
    normalize.AGENTS.clear()
    edge = "iPhone " + "x" * (MAX_AGENT_CACHED - 7)
    assert device(userAgent=edge) == "mobile" and edge in normalize.AGENTS
    longer = edge + "x"
    assert device(userAgent=longer) == "mobile" and longer not in normalize.AGENTS


def test_a_web_users_device_segment_is_entered_end_to_end() -> None:
    """A rule on ``device`` holds for web users, whose calls carry only a user agent."""
    iphone = next(a for a, t in AGENTS.items() if t == "mobile")
    cfg = {"segments": {"on_phone": {"when": "device == 'mobile'"}}}
    clock = Clock()
    line = event("w1", clock.now(), "Home", context={"userAgent": iphone})
    r = run([line], cfg, {"AUDIENCEFLOW_PII_SALT": "x"})
    assert r.entered("on_phone") == ["w1"]
    assert r.profile("w1")["device"] == "mobile"
