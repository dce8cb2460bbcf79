"""Records the README documents, checked on small hand-written streams against their contracts.

Each case is a shape of input a new user's data has and the bundled stream has not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from audienceflow.flows.testing import event, run


def _identify(user_id: str, timestamp: str, anonymous_id: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {
        "type": "identify",
        "userId": user_id,
        "timestamp": timestamp,
        "messageId": f"{user_id}|{timestamp}|identify",
        "traits": {"plan": "pro"},
    }
    if anonymous_id is not None:
        out["anonymousId"] = anonymous_id
    return out


@pytest.mark.timeout(120)
def test_a_profile_with_only_an_identify_has_last_seen_at_the_identify() -> None:
    # The profile schema (README "Output contracts") requires last_seen as a time; a user
    # who only identified (no page, screen or track yet) was written with last_seen null.
    result = run(
        [
            _identify("u5", "2026-03-10T08:20:00Z"),
            event("u1", "2026-03-10T08:21:00Z", "Home"),
        ]
    )
    u5 = result.profile("u5")
    assert u5 is not None
    assert (u5["first_seen"], u5["last_seen"], u5["events"]) == (
        "2026-03-10T08:20:00.000Z",
        "2026-03-10T08:20:00.000Z",
        0,
    )
    assert result.contract_errors() == []


@pytest.mark.timeout(120)
def test_a_later_identify_does_not_move_last_seen_of_a_profile_with_activity() -> None:
    # last_seen stays the latest page, screen or track event; an identify one second
    # later is not activity.
    result = run(
        [
            event("u1", "2026-03-10T08:00:00Z", "Home"),
            _identify("u1", "2026-03-10T08:00:01Z"),
        ]
    )
    u1 = result.profile("u1")
    assert u1 is not None
    assert u1["last_seen"] == "2026-03-10T08:00:00.000Z"
    assert result.contract_errors() == []


@pytest.mark.timeout(120)
def test_an_event_exactly_the_timeout_after_the_last_starts_a_new_session() -> None:
    # README Sessions: an event exactly 30 min after the previous one starts a new session;
    # a session's end is its last event's time.
    result = run(
        [
            event("u1", "2026-03-10T09:00:00Z", "Home"),
            event("u1", "2026-03-10T09:29:59Z", "Home"),
            event("u1", "2026-03-10T09:59:59Z", "Home"),
        ]
    )
    assert [(s["start"], s["end"], s["events"], s["end_reason"]) for s in result.sessions] == [
        ("2026-03-10T09:00:00.000Z", "2026-03-10T09:29:59.000Z", 2, "inactivity"),
        ("2026-03-10T09:59:59.000Z", "2026-03-10T09:59:59.000Z", 1, "inactivity"),
    ]


@pytest.mark.timeout(60)
def test_a_decision_over_a_cap_and_inside_a_cooldown_says_frequency_cap() -> None:
    # README Triggers, actions and caps: the caps are checked before the cooldown.
    from audienceflow.operators.caps import FrequencyCaps
    from audienceflow.operators.state import UserState

    caps = FrequencyCaps({"default": 1}, 10, {"default": 3600.0})
    user = UserState("u1", first_seen=0.0)
    assert caps.decide(user, "email", 0.0) is None
    assert caps.decide(user, "email", 60.0) == "frequency_cap"
    looser = FrequencyCaps({"default": 2}, 10, {"default": 3600.0})
    other = UserState("u2", first_seen=0.0)
    assert looser.decide(other, "email", 0.0) is None
    assert looser.decide(other, "email", 60.0) == "cooldown"


_STICKY = {
    "experiments": {
        "timing": {
            "trigger": "cart_abandonment",
            "seed": "sticky",
            "arms": {"a": {"weight": 0.5}, "b": {"weight": 0.5}},
        }
    },
    "caps": {"cooldown": {"cart_abandonment": "0s"}, "per_action_per_day": {"default": 10}},
}


def _two_ids_in_different_arms() -> tuple[str, str, list[str]]:
    from audienceflow.operators.bucketing import bucket_ranges, choose, gb_hash

    ranges = bucket_ranges(2, 1.0, [0.5, 0.5])

    def arm(uid: str) -> int:
        n = gb_hash("sticky", uid, 2)
        assert n is not None
        return choose(n, ranges)

    anon = "anon-1"
    known = next(f"u{i}" for i in range(100) if arm(f"u{i}") != arm(anon))
    names = ["a", "b"]
    return anon, known, [names[arm(anon)], names[arm(known)]]


@pytest.mark.timeout(120)
def test_an_arm_is_sticky_across_a_merge_the_earlier_exposure_wins() -> None:
    # README Identity (and Experiments): after a merge the profile keeps the earlier
    # exposure per experiment, so its next decision is in the anonymous half's arm.
    anon, known, (anon_arm, known_arm) = _two_ids_in_different_arms()
    add = {"type": "track", "event": "Product Added", "properties": {"product_id": "p1"}}
    result = run(
        [
            {**add, "anonymousId": anon, "timestamp": "2026-03-10T07:50:00Z", "messageId": "1"},
            {**add, "userId": known, "timestamp": "2026-03-10T08:00:00Z", "messageId": "2"},
            _identify(known, "2026-03-10T09:00:00Z", anonymous_id=anon),
            {**add, "userId": known, "timestamp": "2026-03-10T09:10:00Z", "messageId": "3"},
        ],
        _STICKY,
    )
    arms = [(a["user_id"], a["at"], a["trigger"]["arm"]) for a in result.actions]
    assert arms == [
        (anon, "2026-03-10T08:05:00.000Z", anon_arm),
        (known, "2026-03-10T08:15:00.000Z", known_arm),
        (known, "2026-03-10T09:25:00.000Z", anon_arm),
    ]
    assert result.contract_errors() == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("kafka", "status", "message"),
    [
        ("  brokers: 127.0.0.1:1\n  startup_timeout: 1s\n", 3, "cannot start: cannot reach"),
        ("  brokers: 42\n", 2, "config error: "),
    ],
)
def test_with_log_format_json_the_worker_s_last_word_is_a_json_line_too(
    tmp_path: Path, kafka: str, status: int, message: str
) -> None:
    # README Running as a worker, Logs: `--log-format json` gives one JSON object per line
    # on stderr; a worker that cannot start (nothing listens on port 1) or is given a bad
    # setting says so in such a line, with the exit status the README names.
    cfg = tmp_path / "w.yaml"
    cfg.write_text("kafka:\n" + kafka)
    cli = Path(sys.executable).parent / "audienceflow"
    env = {**os.environ, "AUDIENCEFLOW_PII_SALT": "test-salt"}
    done = subprocess.run(
        [str(cli), "run", "--config", str(cfg), "--log-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
    )
    assert done.returncode == status, done.stderr
    lines = done.stderr.splitlines()
    records = [orjson.loads(line) for line in lines]  # every line parses
    last = records[-1]
    assert (last["level"], last["logger"]) == ("ERROR", "audienceflow.cli")
    assert last["message"].startswith(message), last


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"segments": {"s": {"when": "traits.Email == 'x'"}}}, "segments.s.when"),
        (
            {
                "triggers": {
                    "t": {"type": "event", "events": ["Signed Up"], "when": "traits.phone > 1"}
                }
            },
            "triggers.t.when",
        ),
        (
            {
                "experiments": {
                    "e": {
                        "trigger": "cart_abandonment",
                        "arms": {
                            "a": {"weight": 0.5},
                            "b": {"weight": 0.5, "when": "traits.ip == 'x'"},
                        },
                    }
                }
            },
            "experiments.e.arms.b.when",
        ),
    ],
)
def test_a_rule_reading_a_pii_named_trait_is_rejected_at_load(
    config: dict[str, object], where: str
) -> None:
    # README Privacy: PII-named traits never reach a rule, so such a rule could never hold;
    # like `device == 'mobil'` it is rejected at load, naming the key.
    from audienceflow.operators.config import ConfigError

    with pytest.raises(ConfigError, match=rf"{where}: .*privacy\.pii_fields"):
        run([], config)


@pytest.mark.timeout(60)
def test_a_rule_reading_a_trait_not_named_pii_loads() -> None:
    cfg = {"segments": {"s": {"when": "traits.emailed == 'x'"}}}  # only the exact name counts
    assert run([], cfg).summary["counts"]["events_in"] == 0
