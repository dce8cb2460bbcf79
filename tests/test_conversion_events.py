"""``sessions.conversion_events``: what makes a session converted, for a stream whose
conversion is no order (a SaaS sign-up or subscription).

A converted session is the intent model's positive label and ``sessions.jsonl``'s
``converted``; an order counts its value in the profile whether or not it converts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ev, read_jsonl, write_stream

from audienceflow.flows.replay import replay
from audienceflow.flows.sample import unseen_conversion_events
from audienceflow.operators.config import ConfigError
from audienceflow.operators.merge import merge_users
from audienceflow.operators.records import Event
from audienceflow.operators.sessions import FUNNEL_EVENTS, SessionSpec, observe
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import Limits, UserState

pytestmark = pytest.mark.timeout(120)

SAAS = """
sessions:
  conversion_events: [Subscription Started]
models: {enabled: false}
"""


def _run(tmp_path: Path, events: list, config: str) -> tuple[dict, dict]:
    src = write_stream(tmp_path / "in.jsonl", events)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config)
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(cfg, environ={}))
    return summary, {
        s["session_id"].split(":", 1)[0]: s for s in read_jsonl(out / "sessions.jsonl")
    }


def test_a_configured_event_converts_a_session_and_an_order_still_counts_its_value(
    tmp_path: Path,
) -> None:
    events = [
        ev("a", 0, "Home"),
        ev("a", 1, "Subscription Started", plan="team"),
        ev("b", 0, "Home"),
        ev("b", 1, "Order Completed", order_id="o1", revenue=30),
        ev("c", 0, "Home"),
        ev("c", 1, "Trial Started"),
    ]
    summary, sessions = _run(tmp_path, events, SAAS)
    by_user = {s["user_id"]: s for s in sessions.values()}
    converted = sorted(s["converted"] for s in by_user.values())
    assert converted == [False, False, True]
    assert summary["outputs"]["converted_sessions"] == 1
    values = sorted(s["order_value"] for s in by_user.values())
    assert values == [0.0, 0.0, 30.0]  # the order is no conversion, and keeps its value
    profiles = read_jsonl(tmp_path / "out" / "profiles.jsonl")
    assert sorted((p["orders"], p["revenue"]) for p in profiles) == [(0, 0.0), (0, 0.0), (1, 30.0)]


def test_the_default_converts_on_orders_only(tmp_path: Path) -> None:
    events = [ev("a", 0, "Subscription Started"), ev("b", 0, "Order Completed", order_id="o")]
    summary, _ = _run(tmp_path, events, "models: {enabled: false}\n")
    assert summary["outputs"]["converted_sessions"] == 1


def test_conversion_events_are_funnel_events_so_a_conversion_never_scores_itself() -> None:
    spec = Settings.load(None, environ={}).sessions
    assert spec.conversion_events == frozenset({"Order Completed"})
    assert spec.funnel_events == FUNNEL_EVENTS
    user = UserState("u", 0.0)
    saas = SessionSpec(
        timeout=1800.0,
        max_length=86400.0,
        engaged_gap_cap=600.0,
        conversion_events=frozenset({"Subscription Started"}),
        funnel_events=FUNNEL_EVENTS | {"Subscription Started"},
    )

    def event(name: str, ts: float) -> Event:
        return Event(f"m{ts}", "u", None, "track", name, ts, "other", {})

    observe(user, event("Home", 0.0), saas)
    assert user.session is not None and not user.session.funnel_reached
    observe(user, event("Subscription Started", 10.0), saas)
    assert user.session.funnel_reached and user.session.converted


def test_the_config_refuses_an_empty_or_misspelt_list(tmp_path: Path) -> None:
    for body, says in (
        ("sessions: {conversion_events: []}\n", "at least one event"),
        ("sessions: {conversion_events: [1]}\n", "list of event names"),
        ("sessions: {conversion_event: [Signed Up]}\n", "conversion_events"),
    ):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(body)
        with pytest.raises(ConfigError, match=says):
            Settings.load(cfg, environ={})
    cfg.write_text("sessions: {conversion_events: Signed Up}\n")  # one name: a list of one
    assert Settings.load(cfg, environ={}).sessions.conversion_events == {"Signed Up"}


def test_check_config_sample_says_when_nothing_in_it_converts(tmp_path: Path) -> None:
    settings = Settings.load(None, environ={})
    assert unseen_conversion_events(settings, {"Order Completed", "Home"}, "s", 2) == []
    (warning,) = unseen_conversion_events(settings, {"Subscription Started"}, "s", 9)
    assert "none of 'Order Completed' occurs in s (9 lines)" in warning


def _closed(user: UserState, start: float, converted: bool, orders: int) -> None:
    user.history.append((start, 3, 1, 60.0, orders, 0.0, 0, converted))
    user.last_session_converted = converted


@pytest.mark.parametrize("later", ["kept", "other"])
def test_a_merge_keeps_whether_the_later_half_s_last_session_converted(later: str) -> None:
    # A sign-up session converts without an order: the history's order count cannot say.
    kept, other = UserState("u", 0.0), UserState("a", 0.0)
    _closed(kept, 100.0 if later == "kept" else 50.0, converted=later == "kept", orders=0)
    _closed(other, 100.0 if later == "other" else 50.0, converted=later == "other", orders=0)
    merged = merge_users(kept, other, "u", 10, 86400.0, Limits())
    assert merged.last_session_converted is True
    assert [h[0] for h in merged.history] == [50.0, 100.0]


def test_a_merge_with_no_later_session_of_the_other_half_keeps_its_own() -> None:
    kept, other = UserState("u", 0.0), UserState("a", 0.0)
    _closed(kept, 100.0, converted=True, orders=0)
    merged = merge_users(kept, other, "u", 10, 86400.0, Limits())
    assert merged.last_session_converted is True


def test_a_conversion_event_the_taxonomy_does_not_know_is_a_warning(tmp_path: Path) -> None:
    # A typo would never convert a session, silently: warned as a trigger's event is.
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sessions: {conversion_events: [Subscripton Started, Order Completed]}\n")
    (warning,) = Settings.load(cfg, environ={}).warnings
    assert "sessions.conversion_events: event 'Subscripton Started' is not in the" in warning
    assert "did you mean 'Subscription Started'?" in warning
    cfg.write_text("sessions: {conversion_events: [Subscription Started]}\n")
    assert Settings.load(cfg, environ={}).warnings == ()


def test_the_configured_conversion_events_are_the_loaded_specs_funnel_events(
    tmp_path: Path,
) -> None:
    # Through the config, not a hand-made spec: a conversion that were no funnel event
    # would move the session's recorded score past it, a score that knows the label.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SAAS)
    spec = Settings.load(cfg, environ={}).sessions
    assert spec.funnel_events == FUNNEL_EVENTS | {"Subscription Started"}
    user = UserState("u", 0.0)
    observe(user, Event("m0", "u", None, "track", "Home", 0.0, "other", {}), spec)
    assert user.session is not None and not user.session.funnel_reached
    observe(user, Event("m1", "u", None, "track", "Subscription Started", 9.0, "other", {}), spec)
    assert user.session.funnel_reached and user.session.converted


def test_an_order_that_does_not_convert_stays_in_the_profile_after_its_session_closes(
    tmp_path: Path,
) -> None:
    events = [
        ev("b", 0, "Order Completed", order_id="o1", revenue=30),
        ev("b", 120, "Home"),  # a second session: the first closed (timeout 30m) before it
    ]
    _, sessions = _run(tmp_path, events, SAAS)
    assert [s["converted"] for s in sessions.values()] == [False]  # keyed by user: the last
    profiles = read_jsonl(tmp_path / "out" / "profiles.jsonl")
    assert [(p["orders"], p["revenue"]) for p in profiles] == [(1, 30.0)]


def test_a_merge_into_a_half_with_no_closed_session_takes_the_other_half_s() -> None:
    kept, other = UserState("u", 0.0), UserState("a", 0.0)
    _closed(other, 100.0, converted=True, orders=0)
    merged = merge_users(kept, other, "u", 10, 86400.0, Limits())
    assert merged.last_session_converted is True


def test_check_config_sample_is_quiet_when_one_of_several_conversion_events_occurs(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sessions: {conversion_events: [Signed Up, Subscription Started]}\n")
    settings = Settings.load(cfg, environ={})
    assert unseen_conversion_events(settings, {"Signed Up"}, "s", 2) == []
    (warning,) = unseen_conversion_events(settings, {"Home"}, "s", 2)
    assert "none of 'Signed Up', 'Subscription Started' occurs" in warning


@pytest.mark.parametrize(
    ("goal", "expected"),
    [
        ("", {"Subscription Started"}),  # no goal: the conversion events
        ("    goal: {window: 3d}\n", {"Subscription Started"}),  # a goal without events
        ("    goal: {events: [Order Completed]}\n", {"Order Completed"}),  # its own
    ],
)
def test_an_experiment_goal_without_events_counts_the_conversion_events(
    tmp_path: Path, goal: str, expected: set[str]
) -> None:
    experiment = (
        "experiments:\n"
        "  e:\n"
        "    trigger: cart_abandonment\n"
        "    arms: {quick: {weight: 0.5}, slow: {weight: 0.5, after: 20m}}\n" + goal
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sessions: {conversion_events: [Subscription Started]}\n" + experiment)
    (exp,) = Settings.load(cfg, environ={}).experiments.items
    assert exp.goal.events == expected
    cfg.write_text(experiment)  # with the default conversion events: orders
    (exp,) = Settings.load(cfg, environ={}).experiments.items
    assert exp.goal.events == ({"Order Completed"} if "events" not in goal else expected)


def test_the_clustering_conversion_rate_is_the_share_of_converted_sessions(
    tmp_path: Path,
) -> None:
    # A SaaS stream converts on a sign-up: before, the clustering's conversion_rate was the
    # share of sessions with an order, 1/3 here, and 0 for a stream with no orders at all.
    from audienceflow.models.vectors import user_vector
    from audienceflow.operators.sessions import close

    cfg = tmp_path / "c.yaml"
    cfg.write_text("sessions: {conversion_events: [Signed Up]}\n")
    spec = Settings.load(cfg, environ={}).sessions
    user = UserState("u", 0.0)
    hour = 3600.0
    for i, name in enumerate(["Signed Up", "Signed Up", "Order Completed"]):
        observe(user, Event(f"m{i}", "u", None, "track", name, i * hour, "other", {}), spec)
    close(user, 2 * hour + spec.timeout, "inactivity", spec)
    assert [h[4] for h in user.history] == [0, 0, 1]  # the orders: the third session's
    assert user_vector(user, 3 * hour, ())["conversion_rate"] == 2 / 3


def test_a_snapshot_s_history_from_before_reads_a_session_with_an_order_as_converted() -> None:
    # Version 4 of the user codec kept no converted flag per history session: an order is
    # what conversion_rate counted then, and what the default conversion_events says.
    import msgpack

    from audienceflow.operators import codec

    user = UserState("u", 0.0)
    user.history = [(0.0, 3, 1, 60.0, 1, 9.5, 0, True), (9.0, 2, 2, 0.0, 0, 0.0, 1, False)]
    t = list(msgpack.unpackb(codec.encode_user(user), use_list=False))
    t[0], t[6] = 4, [h[:7] for h in t[6]]
    back = codec.decode_user(msgpack.packb(t))
    assert back.history == user.history
    assert [type(h[7]) for h in back.history] == [bool, bool]
