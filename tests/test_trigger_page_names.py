"""Triggers hear page and screen views as rules count them: by the view's own name and
by ``'Page Viewed'`` / ``'Screen Viewed'`` (README "Rule functions and variables").

``count('Page Viewed', 1h)`` counted every page view while an event trigger on
``[Page Viewed]`` never fired on one and ``check-config`` asked "did you mean 'Cart
Viewed'?"; ``check-config --sample`` meanwhile said such a trigger would fire.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators.settings import Settings

CONFIG = {
    "models": {"enabled": False},
    "segments": {"viewer": {"when": "count('Page Viewed', 1h) >= 1"}},
    "triggers": {
        "cart_abandonment": None,
        "high_engagement_content": None,
        "on_page": {"type": "event", "events": ["Page Viewed"]},
        "on_screen": {"type": "event", "events": ["Screen Viewed"]},
        "on_pricing": {"type": "event", "events": ["Pricing"]},
        "page_timer": {
            "type": "timer",
            "start_on": ["Page Viewed"],
            "cancel_on": ["Screen Viewed"],
            "after": "10m",
        },
    },
    "caps": {"per_action_per_day": {"default": 10}, "per_user_per_day": 100},
}


def _actions(result: object) -> list[tuple[str, str, str]]:
    return sorted((a["user_id"], a["action"], a["at"][11:19]) for a in result.actions)  # type: ignore[attr-defined]


def test_event_and_timer_triggers_hear_page_and_screen_views_by_their_generic_names() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    t0 = clock.now()
    events = [
        event("u1", t0, "Pricing", type="page"),
        event("u2", t0, "Home", type="screen"),
        event("u3", t0, "Pricing", type="track"),  # a track event so named: no page view
        event("u4", t0, "Home", type="page"),
        event("u4", clock.advance("5m"), "Home", type="screen"),  # cancels u4's timer
    ]
    result = run(events, CONFIG)
    assert result.entered("viewer") == ["u1", "u4"]
    assert _actions(result) == [
        ("u1", "on_page", "08:00:00"),
        ("u1", "on_pricing", "08:00:00"),
        ("u1", "page_timer", "08:10:00"),
        ("u2", "on_screen", "08:00:00"),
        ("u3", "on_pricing", "08:00:00"),
        ("u4", "on_page", "08:00:00"),
        ("u4", "on_screen", "08:05:00"),
    ]


def test_check_config_does_not_call_page_viewed_a_typo(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    settings = Settings.load(path, environ={})
    about = [w for w in settings.warnings if "Page Viewed" in w or "Screen Viewed" in w]
    assert about == []
