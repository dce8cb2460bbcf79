"""Skewed and hostile clocks cannot move time for everyone (replays of the bundled stream).

Each case plants events with bad clocks into the bundled stream and checks that the
valid events around them are all processed exactly as without them, that the skewed
ones are dead-lettered with a reason (or, within `time.max_future`, applied to their own
user only), and that nothing crashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from workers import stream_lines

from audienceflow.flows.replay import replay
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.slow


def _replay(tmp: Path, name: str, lines: list[bytes], **env: str) -> tuple[dict[str, Any], Path]:
    path = tmp / f"{name}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp / f"out-{name}"
    environ = {"AUDIENCEFLOW_MODELS__ENABLED": "false", **env}
    summary = replay([str(path)], out, Settings.load(environ=environ))
    assert summary["counts"]["reconciled"]
    return summary, out


def _sessions(out: Path) -> list[bytes]:
    return sorted((out / "sessions.jsonl").read_bytes().splitlines())


def _dead(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in (out / "dead_letters.jsonl").read_bytes().splitlines()]


def _event(user: str, ts: str, mid: str) -> bytes:
    return orjson.dumps(
        {"type": "page", "name": "Home", "userId": user, "messageId": mid, "timestamp": ts}
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    return _replay(tmp_path_factory.mktemp("clean"), "clean", stream_lines())


def test_an_event_a_year_ahead_first_is_future_and_the_rest_is_unchanged(
    tmp_path: Path, clean: tuple[dict[str, Any], Path]
) -> None:
    skewed = _event("skewed", "2027-03-02T08:00:00.000Z", "skew-1")
    summary, out = _replay(tmp_path, "year", [skewed, *stream_lines()])
    (dead,) = [d for d in _dead(out) if d["reason"] == "future_event"]
    assert dead["position"].endswith(":1")
    assert _sessions(out) == _sessions(clean[1])
    c, base = summary["counts"], clean[0]["counts"]
    assert c["processed"] == base["processed"]
    assert c["dead_lettered_by_reason"].get("late_event", 0) == 0


def _spread(n: int, days: int) -> list[bytes]:
    """The bundled stream with ``n`` events ``days`` ahead of their neighbours, spread out."""
    lines = stream_lines()
    out: list[bytes] = []
    every = len(lines) // (n + 1)
    planted = 0
    for i, line in enumerate(lines):
        out.append(line)
        if i % every == every - 1 and planted < n:
            try:
                ts = orjson.loads(line)["timestamp"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            from audienceflow.operators.records import iso
            from audienceflow.operators.validate import parse_timestamp

            ahead = iso(parse_timestamp(ts) + days * 86400.0)
            out.append(_event(f"skew{planted}", ahead, f"skew-{planted}"))
            planted += 1
    assert planted == n
    return out


def test_forty_events_six_days_ahead_apply_to_their_own_users_and_make_nobody_late(
    tmp_path: Path, clean: tuple[dict[str, Any], Path]
) -> None:
    summary, out = _replay(tmp_path, "six", _spread(40, 6))
    c = summary["counts"]
    assert c["dead_lettered_by_reason"] == clean[0]["counts"]["dead_lettered_by_reason"]
    assert c["processed"] == clean[0]["counts"]["processed"] + 40  # within max_future: applied
    mine = [s for s in _sessions(out) if not orjson.loads(s)["user_id"].startswith("skew")]
    assert mine == _sessions(clean[1])  # nobody else's sessions moved


def test_beyond_max_future_the_same_events_are_dead_lettered_as_future(
    tmp_path: Path, clean: tuple[dict[str, Any], Path]
) -> None:
    summary, out = _replay(tmp_path, "six-1d", _spread(40, 6), AUDIENCEFLOW_TIME__MAX_FUTURE="1d")
    future = [d for d in _dead(out) if d["reason"] == "future_event"]
    assert len(future) == 40 and all("skew" in d["raw"] for d in future)
    assert summary["counts"]["processed"] == clean[0]["counts"]["processed"]


def test_an_event_dated_9999_12_31_is_a_bad_timestamp_not_a_crash(
    tmp_path: Path, clean: tuple[dict[str, Any], Path]
) -> None:
    lines = stream_lines()
    lines.insert(100, _event("doom", "9999-12-31T23:59:59.000Z", "doom-1"))
    _, out = _replay(tmp_path, "doom", lines)
    (dead,) = [d for d in _dead(out) if "doom" in d["raw"]]
    assert dead["reason"] == "bad_timestamp" and "1970 to 9998" in dead["detail"]
    assert _sessions(out) == _sessions(clean[1])


def test_a_raw_call_from_a_phone_45_minutes_slow_is_corrected_not_late(tmp_path: Path) -> None:
    # Six users at 08:00:00-05 (time moves to 08:00:02 less 2 min lateness); then an
    # analytics-kotlin call as a collector receives it: the phone's clock 45 min slow
    # says 07:15:10 and sent 07:15:12; the collector received it at 08:00:12.3. As
    # Segment works it out, it was made at 08:00:12.3 - 2 s = 08:00:10.3: not late.
    others = [_event(f"u{i}", f"2026-03-02T08:00:0{i}.000Z", f"m{i}") for i in range(6)]
    phone = orjson.dumps(
        {"type": "screen", "name": "Home", "anonymousId": "slow-phone", "messageId": "p1",
         "timestamp": "2026-03-02T07:15:10.000Z", "sentAt": "2026-03-02T07:15:12.000Z",
         "receivedAt": "2026-03-02T08:00:12.300Z"}
    )  # fmt: skip
    summary, out = _replay(tmp_path, "slow", [*others, phone])
    assert summary["counts"]["dead_lettered"] == 0 and summary["counts"]["processed"] == 7
    (mine,) = [orjson.loads(s) for s in _sessions(out) if b"slow-phone" in s]
    assert mine["start"] == "2026-03-02T08:00:10.300Z"
