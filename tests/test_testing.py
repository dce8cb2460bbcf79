"""audienceflow.flows.testing: a user's own config tested through the real dataflow.

The first test is the README's example, as a user would write it for their own segment;
its expected values are worked out by hand from the four events.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import orjson
import pytest

from audienceflow.flows import testing
from audienceflow.flows.testing import Clock, event, run
from audienceflow.operators.config import ConfigError

# --- the README example --------------------------------------------------------------

BIG_CART = {"segments": {"big_cart": {"when": "cart_value >= 100"}}}


def test_big_cart_is_entered_at_100_and_left_when_the_order_empties_the_cart() -> None:
    clock = Clock("2026-03-02T08:00:00Z")
    events = [
        event("u1", clock.now(), "Product Added", product_id="p1", price=60.0, quantity=1),
        event("u2", clock.now(), "Product Added", product_id="p3", price=99.99, quantity=1),
        event("u1", clock.advance("1m"), "Product Added", product_id="p2", price=40.0, quantity=1),
        event("u1", clock.advance("1m"), "Order Completed", revenue=100.0),
    ]
    result = run(events, BIG_CART)

    assert result.entered("big_cart") == ["u1"]  # 60 + 40 = 100 >= 100; u2's 99.99 is not
    assert result.exited("big_cart") == ["u1"]
    enter, leave = (c for c in result.segment_changes if c["segment"] == "big_cart")
    assert (enter["at"], leave["at"]) == ("2026-03-02T08:01:00.000Z", "2026-03-02T08:02:00.000Z")
    # u2's cart stays open: the default cart-abandonment timer fires 15 minutes later.
    assert [(a["user_id"], a["at"]) for a in result.delivered("cart_abandonment")] == [
        ("u2", "2026-03-02T08:15:00.000Z")
    ]
    assert result.summary["counts"]["reconciled"]
    assert result.contract_errors() == []


# --- the helper itself -----------------------------------------------------------------


def test_bad_lines_come_back_as_dead_letters_and_are_counted() -> None:
    clock = Clock()
    result = run(["{not json", event("u1", clock.now(), "Home"), b'{"type":"page"}'], None)
    assert sorted(d["reason"] for d in result.dead_letters) == ["no_identity", "not_json"]
    counts = result.summary["counts"]
    assert (counts["events_in"], counts["processed"], counts["dead_lettered"]) == (3, 1, 2)
    assert [s["user_id"] for s in result.sessions] == ["u1"]
    assert result.profile("u1")["events"] == 1
    assert result.profile("nobody") is None


def test_config_can_be_a_yaml_file_and_events_a_jsonl_file(tmp_path: Path) -> None:
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("segments:\n  any_view:\n    when: session_page_views >= 2\n")
    clock = Clock()
    stream = tmp_path / "events.jsonl"
    stream.write_bytes(
        b"\n".join(
            orjson.dumps(event("u9", t, "Product"))
            for t in (clock.now(), clock.advance(30), clock.advance(30))
        )
    )
    result = run(stream, cfg)
    assert result.entered("any_view") == ["u9"]
    enter = next(c for c in result.segment_changes if c["segment"] == "any_view")
    assert enter["at"] == "2026-03-02T08:00:30.000Z"  # the second view, not the first


def test_a_bad_config_fails_before_any_event_is_read() -> None:
    with pytest.raises(ConfigError, match="ordrs"):
        run([], {"segments": {"x": {"when": "ordrs > 1"}}})


def test_the_shell_environment_does_not_leak_into_a_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIENCEFLOW_SESSIONS__TIMEOUT", "1m")
    clock = Clock()
    events = [event("u1", clock.now()), event("u1", clock.advance("5m"))]
    assert len(run(events).sessions) == 1  # 30 min default timeout, not the shell's 1m
    assert len(run(events, environ={"AUDIENCEFLOW_SESSIONS__TIMEOUT": "1m"}).sessions) == 2


def test_clock_moves_forward_only_and_needs_a_zone() -> None:
    clock = Clock("2026-03-02T08:00:00+01:00")
    assert clock.now() == "2026-03-02T07:00:00.000Z"
    assert clock.advance("90s") == "2026-03-02T07:01:30.000Z"
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="UTC offset"):
        Clock("2026-03-02T08:00:00")


def test_module_docstring_example_runs() -> None:
    assert doctest.testmod(testing).failed == 0
