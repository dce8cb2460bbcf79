"""The cold tier: idle users are held as bytes and come back on anything that needs them,
and nothing that comes out can tell."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import pytest

from audienceflow.flows.replay import replay
from audienceflow.models.hook import build_models
from audienceflow.operators import deadlines
from audienceflow.operators import engine as engine_module
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import ControlRequest, Event, Watermark
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings
from audienceflow.operators.shard_codec import encode_shard
from tests.helpers import keyed_items, pure_only

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
MIN = 60.0


def _settings(cold_after: str, **env: str) -> Settings:
    return Settings.load(
        environ={
            "AUDIENCEFLOW_STATE__COLD_AFTER": cold_after,
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s",  # stream time = the watermark
            **env,
        }
    )


def _engine(cold_after: str, **env: str) -> ShardEngine:
    return ShardEngine(_settings(cold_after, **env), ShardState("shard-000"), partitions=["p"])


def _page(uid: str, minute: float, anon: str | None = None, kind: str = "page") -> Event:
    name = "Home" if kind == "page" else ""
    return Event(f"m-{uid}-{minute}", uid, anon, kind, name, T0 + minute * MIN, "navigation", {})


def _at(minute: float) -> Watermark:
    return Watermark("p", T0 + minute * MIN)


def _run(engine: ShardEngine, steps: list[Any]) -> list[str]:
    out: list[Any] = []
    for step in steps:
        out.extend(engine.on_items(step if isinstance(step, list) else [step]))
    return [repr(r) for r in out + engine.finish()]


def test_an_idle_user_goes_cold_exactly_cold_after_its_last_activity_and_comes_back() -> None:
    eng = _engine("1h")
    st = eng.state
    eng.on_items([_page("ann", 0), _at(0)])
    # 08:30 the session closes (30 min timeout); ann was last active at 08:00.
    eng.on_items([_at(59.99)])
    assert "ann" in st.users and not st.cold  # closed, but not idle for 1h yet
    eng.on_items([_at(60)])
    assert "ann" in st.cold and "ann" not in st.users
    assert eng.stats().users == 1  # still a tracked user
    eng.on_items([_page("ann", 70), _at(70)])
    assert "ann" in st.users and not st.cold
    assert st.users["ann"].total_sessions == 2 and st.users["ann"].session is not None


def test_activity_after_the_user_was_filed_to_go_cold_puts_it_off() -> None:
    eng = _engine("1h")
    st = eng.state
    eng.on_items([_page("ann", 0), _at(0)])
    eng.on_items([_at(40)])  # the session closed at 08:30: filed to go cold at 09:00
    eng.on_items([_page("ann", 45, kind="identify"), _at(45)])  # activity without a session
    assert st.users["ann"].session is None
    eng.on_items([_at(104.99)])
    assert "ann" in st.users  # not at 09:00: idle for 1 h only from 08:45
    eng.on_items([_at(105)])
    assert "ann" in st.cold


def test_a_user_with_an_open_session_or_a_timer_never_goes_cold() -> None:
    # A session lasts while events keep coming; a cart add starts the abandonment timer.
    eng = _engine("1m")
    st = eng.state
    steps: list[Any] = []
    for minute in range(0, 100, 20):
        steps += [_page("ann", minute), _at(minute + 10)]
    add = Event("m-add", "bob", None, "track", "Product Added", T0, "engagement",
                {"product_id": "p1", "price": 3.0, "category": "deals"})  # fmt: skip
    eng.on_items([add, _at(0)])
    assert st.users["bob"].timers
    for step in steps:
        eng.on_items(step if isinstance(step, list) else [step])
        assert "ann" in st.users
    assert "bob" in st.cold  # its timer fired and its session closed: idle since
    assert not st.users["ann"].timers and st.users["ann"].session is not None


def test_a_cold_user_is_revived_by_its_deadline_and_evicted_as_if_warm() -> None:
    # Three sessions (08:00, 08:40, 09:20): ann is in high_recency_frequency until evicted
    # 3 h after her last activity, at 12:20; she is cold from 10:20.
    visits = [[_page("ann", m), _at(m)] for m in (0, 40, 80)]
    script = [*visits, _at(200), _at(300)]
    warm = _run(_engine("0", AUDIENCEFLOW_STATE__HISTORY_WINDOW="3h"), script)
    eng = _engine("1h", AUDIENCEFLOW_STATE__HISTORY_WINDOW="3h")
    for step in script[:4]:
        eng.on_items(step if isinstance(step, list) else [step])
    assert "ann" in eng.state.cold
    eng.on_items([script[4]])
    assert eng.state.evicted == 1 and not eng.state.cold and not eng.state.users
    eng = _engine("1h", AUDIENCEFLOW_STATE__HISTORY_WINDOW="3h")
    assert _run(eng, script) == warm
    assert any("'rule': 'eviction'" in r for r in warm)


def test_deleting_a_cold_user_purges_it_and_receipts_as_if_warm() -> None:
    delete = ControlRequest("delete", ("ann",), "req-1", T0 + 120 * MIN)
    script = [[_page("ann", 0), _page("bob", 0), _at(0)], _at(100), [delete, _at(130)]]
    warm = _run(_engine("0"), script)
    eng = _engine("1h")
    eng.on_items(script[0])
    eng.on_items([script[1]])
    assert set(eng.state.cold) == {"ann", "bob"}
    eng.on_items(script[2])
    assert "ann" not in eng.state.cold and "ann" not in eng.state.users
    assert "bob" in eng.state.cold
    receipts = [r for r in warm if r.startswith("Receipt(")]
    assert len(receipts) == 1 and "'users': 1" in receipts[0] and "'done'" in receipts[0]
    assert _run(_engine("1h"), script) == warm


def test_a_cold_anonymous_profile_is_revived_and_merged_when_its_user_logs_in() -> None:
    login = _page("ann", 120, anon="a1", kind="identify")
    script = [[_page("a1", 0, anon="a1"), _at(0)], _at(100), [login, _at(120)], _at(300)]
    warm = _run(_engine("0"), script)
    eng = _engine("1h")
    eng.on_items(script[0])
    eng.on_items([script[1]])
    assert "a1" in eng.state.cold
    assert _run(_engine("1h"), script) == warm
    assert any("IdentityChange(" in r for r in warm)
    assert "Erasure(canonical='a1', identifiers=())" in warm  # the anonymous id merged away
    profile = next(r for r in warm if r.startswith("ProfileUpdate(user_id='ann'"))
    assert "'sessions': 1, 'events': 1" in profile  # a1's session (the identify is no event)


def _bundled(cold_after: str) -> tuple[Settings, list[Any]]:
    settings = Settings.load(
        ROOT / "examples" / "demo.yaml", environ={"AUDIENCEFLOW_STATE__COLD_AFTER": cold_after}
    )
    lines = gzip.decompress((ROOT / "examples" / "stream.jsonl.gz").read_bytes()).splitlines()
    keyed = keyed_items(settings, [(str(i), raw) for i, raw in enumerate(lines)])
    return settings, [v for k, v in keyed if k != OUT]


@pytest.mark.timeout(180)
def test_many_users_of_the_bundled_stream_go_cold_and_come_back_and_no_record_differs() -> None:
    runs = {}
    for cold_after in ("0", "10m"):
        settings, items = _bundled(cold_after)
        models = build_models(settings, "shard-000")
        eng = ShardEngine(settings, ShardState("shard-000", models=models), models=models,
                          partitions=["in:0"], emit_profiles=True)  # fmt: skip
        out: list[Any] = []
        most_cold = revived = 0
        cold: dict[str, bytes] = {}
        for i in range(0, len(items), 100):
            out.extend(eng.on_items(items[i : i + 100]))
            # Through the state alone (a compiled ShardEngine cannot be subclassed): a
            # user cold before the batch came back in it if it is warm after it, or cold
            # again as newly encoded bytes (no deletions in this stream).
            now_cold = eng.state.cold
            revived += sum(now_cold.get(uid) is not data for uid, data in cold.items())
            cold = dict(now_cold)
            most_cold = max(most_cold, len(cold))
        out.extend(eng.finish())
        runs[cold_after] = [repr(r) for r in out]
        if cold_after != "0":
            users = len(eng.state.users)
            assert most_cold > users / 2, (most_cold, users)  # most were cold at some point
            assert revived > 100  # and many came back before the end
    assert len(runs["0"]) > 4000
    assert runs["10m"] == runs["0"]


@pytest.mark.timeout(300)
def test_the_bundled_replay_writes_the_same_bytes_with_the_cold_tier_on_and_off(
    tmp_path: Path,
) -> None:
    # As ``make demo`` runs it: with the data subjects' requests (a deletion among them).
    stream = str(ROOT / "examples" / "stream.jsonl.gz")
    control = [str(ROOT / "examples" / "requests.jsonl")]
    files = {}
    for cold_after in ("0", "5m"):
        settings = Settings.load(
            ROOT / "examples" / "demo.yaml",
            environ={"AUDIENCEFLOW_STATE__COLD_AFTER": cold_after},
        )
        out = tmp_path / cold_after
        replay([stream], out, settings, control=control)
        files[cold_after] = {f.name: f.read_bytes() for f in sorted(out.iterdir())}
    assert files["5m"].keys() == files["0"].keys()
    for name, data in files["0"].items():
        assert files["5m"][name] == data, name
    assert len(files["0"]["profiles.jsonl"].splitlines()) > 250
    assert b'"status":"done"' in files["0"]["control.jsonl"]


def test_a_restart_with_the_tier_off_brings_every_cold_user_back_and_with_it_on_files_all() -> None:
    eng = _engine("1h")
    eng.on_items([_page("ann", 0), _page("bob", 50), _at(0), _at(100)])
    assert set(eng.state.cold) == {"ann"} and set(eng.state.users) == {"bob"}
    back = ShardEngine(_settings("0"), eng.state, partitions=["p"])
    assert set(back.state.users) == {"ann", "bob"} and not back.state.cold
    back.state.cooling.clear()
    back.state.cool_far.clear()
    back.state.cool_filed.clear()  # as a snapshot of a build without the tier has it
    on = ShardEngine(_settings("1h"), back.state, partitions=["p"])
    on.on_items([_at(150)])
    assert set(on.state.cold) == {"ann", "bob"}


@pytest.mark.parametrize("minute", [40, 100])  # filed to go cold (warm), and cold
def test_a_deleted_user_leaves_no_trace_in_the_snapshot_warm_or_cold(minute: int) -> None:
    eng = _engine("1h")
    eng.on_items([_page("a1", 0, anon="a1"), _page("zed", 0), _at(0)])
    eng.on_items([_page("ann", 20, anon="a1", kind="identify"), _at(20)])  # a1 merges into ann
    eng.on_items([_at(minute)])
    assert ("ann" in eng.state.cold) == (minute == 100)
    eng.on_items([ControlRequest("delete", ("ann",), "req-1", T0 + minute * MIN), _at(minute)])
    blob = encode_shard(eng.state)
    assert b"zed" in blob  # the other user is there
    assert b"ann" not in blob and b"a1" not in blob


def _filed(state: ShardState, uid: str) -> list[tuple[float, str]]:
    """The entries of ``uid`` in the cooling queue (stale ones too)."""
    return [e for e in deadlines.cool_entries(state) if e[1] == uid]


def test_a_revival_for_an_event_files_no_entry_to_go_cold() -> None:
    # ann is cold from 09:00; her event at 09:10 revives her and opens a session: she is
    # filed to go cold only when that session has closed (09:40), never at the revival.
    eng = _engine("1h")
    st = eng.state
    eng.on_items([_page("ann", 0), _at(0)])
    # Just past 09:00: her re-check at 09:00 (recent_engager lapses) waits for the
    # events of that instant, and would revive her before her event, not for it.
    eng.on_items([Watermark("p", math.nextafter(T0 + 60 * MIN, math.inf))])
    assert "ann" in st.cold and _filed(st, "ann") == []
    # The queue, not a patched cool_push: compiled engine code calls it directly.
    eng.on_items([_page("ann", 70), _at(70)])
    assert "ann" in st.users and _filed(st, "ann") == [] and "ann" not in st.cool_filed
    eng.on_items([_at(100)])  # the session closed at 09:40: idle from 09:10
    assert _filed(st, "ann") == [(T0 + 130 * MIN, "ann")] and "ann" in st.users
    eng.on_items([_at(130)])
    assert "ann" in st.cold


@pure_only  # patches cool_push, which compiled engine code calls directly
def test_a_revival_for_an_event_pushes_no_entry_even_one_its_batch_drops(monkeypatch: Any) -> None:
    # The queue between batches (the test above, both builds) cannot show an entry filed
    # at the revival itself: due already (she was idle ``cold_after``), it is popped and
    # dropped by the same batch's ``_cool``, as she is in a session by then. Every push is.
    eng = _engine("1h")
    eng.on_items([_page("ann", 0), _at(0)])
    eng.on_items([Watermark("p", math.nextafter(T0 + 60 * MIN, math.inf))])
    assert "ann" in eng.state.cold
    pushed: list[tuple[float, str]] = []
    real = engine_module.cool_push
    monkeypatch.setattr(
        engine_module,
        "cool_push",
        lambda s, due, uid: (pushed.append((due, uid)), real(s, due, uid)),
    )
    eng.on_items([_page("ann", 70), _at(70)])
    assert "ann" in eng.state.users and pushed == []
    eng.on_items([_at(100)])
    assert pushed == [(T0 + 130 * MIN, "ann")]


def test_a_user_revived_and_left_idle_goes_cold_again_at_the_next_batch() -> None:
    eng = _engine("1h")
    st = eng.state
    eng.on_items([_page("ann", 0), _at(0)])
    eng.on_items([_at(60)])
    assert "ann" in st.cold
    assert eng._user("ann") is not None  # revived to be read, nothing changed
    assert "ann" in st.users and "ann" not in st.cold
    eng.on_items([])
    assert "ann" in st.cold and "ann" not in st.users and "ann" not in st.cool_filed
