"""A delivery of watermarks alone (most of a live shard's: every partition sends its
watermark to every shard) takes a short path (``ShardEngine._marks``) while it makes
nothing due; it must never skip what the full pass would do: a deadline due at exactly
the new stream time fires, a watermark that lifts the slowest partition releases the
events held for it, and the outputs of any sequence equal those of the full pass."""

from __future__ import annotations

import functools
import random
from typing import Any

import pytest
from helpers import pure_only

from audienceflow.models.hook import build_models
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Session, Watermark
from audienceflow.operators.settings import Settings

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
TIMEOUT = 1800.0  # the default session timeout


@functools.cache
def _settings(cold: str = "0") -> Settings:
    return Settings.load(
        environ={
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s",
            "AUDIENCEFLOW_STATE__COLD_AFTER": cold,
        }
    )


def _engine(cold: str = "0") -> ShardEngine:
    return ShardEngine(_settings(cold), ShardState("shard-000"), partitions=["p", "q"])


def _page(n: int, uid: str, ts: float) -> Event:
    return Event(f"m-{n}", uid, None, "page", "Home", ts, "navigation", {})


def _closes(out: list[Any]) -> list[str]:
    return [o.user_id for o in out if type(o) is Session]


@pytest.mark.timeout(60)
def test_a_session_timeout_due_at_exactly_the_new_watermark_fires() -> None:
    eng = _engine()
    eng.on_items([_page(1, "ann", T0), Watermark("p", T0), Watermark("q", T0)])
    assert eng.state.processed == 1
    # p runs ahead to the timeout; q, the slowest, holds stream time at T0.
    assert _closes(eng.on_items([Watermark("p", T0 + TIMEOUT)])) == []
    # q one instant short of it: still open.
    assert _closes(eng.on_items([Watermark("q", T0 + TIMEOUT - 0.001)])) == []
    # q reaches it: stream time is the deadline itself, and the session closes.
    assert _closes(eng.on_items([Watermark("q", T0 + TIMEOUT)])) == ["ann"]


@pytest.mark.timeout(60)
def test_a_watermark_that_lifts_the_slowest_partition_releases_the_held_event() -> None:
    eng = _engine()
    eng.on_items([Watermark("p", T0), Watermark("q", T0)])
    # p's event at T0 + 10 waits for q, which has not passed it.
    eng.on_items([_page(1, "ann", T0 + 10.0), Watermark("p", T0 + 10.0)])
    assert (eng.state.processed, eng.buffered()) == (0, 1)
    eng.on_items([Watermark("p", T0 + 20.0)])  # not the slowest: nothing moves
    eng.on_items([Watermark("q", T0 + 9.0)])  # the slowest, short of the event
    assert (eng.state.processed, eng.buffered()) == (0, 1)
    eng.on_items([Watermark("q", T0 + 10.0)])  # at it: applied
    assert (eng.state.processed, eng.buffered()) == (1, 0)


@pytest.mark.timeout(60)
def test_two_watermarks_in_one_delivery_fire_a_deadline_between_them_in_order() -> None:
    """A deadline the first watermark reaches runs at its time, before the second moves
    stream time on (the full pass looks for due work after every item)."""
    short, full = _engine(), _engine()
    for eng in (short, full):
        eng.on_items([_page(1, "ann", T0), _page(2, "bob", T0 + 60.0)])
        eng.on_items([Watermark("p", T0 + 60.0), Watermark("q", T0 + 60.0)])
    marks = [Watermark("p", T0 + TIMEOUT + 30.0), Watermark("q", T0 + TIMEOUT + 30.0)]
    marks += [Watermark("p", T0 + 4000.0), Watermark("q", T0 + 4000.0)]
    out = short.on_items(marks)
    assert _closes(out) == ["ann", "bob"]
    assert out == full.on_items([[], *marks])  # a leading empty notice list: the full pass


def _run(steps: list[list[Any]], full: bool) -> list[Any]:
    eng = _engine("2h")  # the cooling tier on: its queue bounds the short path too
    out: list[Any] = []
    for batch in steps:
        # A leading empty list of link notices changes nothing but keeps ``on_items``
        # off the short path.
        out.extend(eng.on_items([[], *batch] if full else list(batch)))
        out.append(sorted(eng.state.cold))  # who went cold, and when: state, not outputs
    out.append(eng.finish())
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(20))
def test_watermark_only_deliveries_give_the_outputs_and_state_of_the_full_pass(seed: int) -> None:
    rng = random.Random(seed)
    marks = {"p": T0, "q": T0}
    steps: list[list[Any]] = []
    n = 0
    for _ in range(150):
        part = rng.choice("pq")
        batch: list[Any] = []
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 3)):
                n += 1
                ts = marks[part] + rng.choice([0.0, 1.0, 30.0, 600.0])
                batch.append(_page(n, rng.choice(["ann", "bob", "cy"]), ts))
        for _ in range(rng.randint(1, 2)):
            marks[part] += rng.choice([0.0, 0.5, 60.0, 900.0, TIMEOUT, 3600.0])
            batch.append(Watermark(part, marks[part]))
        steps.append(batch)
    assert _run(steps, full=False) == _run(steps, full=True)


@functools.cache
def _live_settings() -> Settings:
    return Settings.load(
        environ={
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s",
            "AUDIENCEFLOW_TIME__IDLE_AFTER": "60s",
            "AUDIENCEFLOW_STATE__COLD_AFTER": "0",
        }
    )


@pytest.mark.timeout(60)
def test_a_delivery_that_leaves_every_partition_idle_for_an_instant_keeps_stream_time() -> None:
    """Live, p turns idle and q, idle, is active again, in one delivery. The full pass,
    with nothing queued, reads the clock at the end only, when q is active: stream time
    is q's. The short path must not read it in between, when both are idle, and take
    stream time to the wall-clock fallback (hours ahead): q's next event is then behind
    it, and its user lags."""
    wall = T0 + 10_000.0

    def run(full: bool) -> tuple[Any, ...]:
        eng = ShardEngine(
            _live_settings(), ShardState("shard-000"), wall=lambda: wall, partitions=["p", "q"]
        )
        lead: list[Any] = [[]] if full else []
        out = eng.on_items([*lead, Watermark("p", T0), Watermark("q", T0, idle=True)])
        out += eng.on_items([*lead, Watermark("p", T0 + 1.0, idle=True), Watermark("q", T0 + 2.0)])
        time = eng.state.clock.time
        out += eng.on_items([_page(1, "ann", T0 + 5.0), Watermark("q", T0 + 5.0)])
        return time, sorted(eng.state.lagging), eng.state.processed, out

    short, full = run(False), run(True)
    assert short[:3] == (T0 + 2.0, [], 1)
    assert short == full


@pytest.mark.timeout(60)
def test_a_watermark_that_lifts_a_lagging_partition_runs_its_users_parked_deadlines() -> None:
    """q rejoins from idleness behind stream time: ann's events lag, and her session's
    close waits (parked in ``lag``, not the deadline queue) for q's own time. q's next
    watermark alone passes it: the session closes at that delivery, as in the full pass,
    though no deadline queue the short path reads holds it."""

    def run(full: bool) -> list[Any]:
        eng = ShardEngine(
            _live_settings(), ShardState("shard-000"), wall=lambda: T0, partitions=["p", "q"]
        )
        lead: list[Any] = [[]] if full else []
        outs = [eng.on_items([*lead, Watermark("p", T0), Watermark("q", T0)])]
        outs.append(eng.on_items([*lead, Watermark("q", T0, idle=True)]))
        outs.append(eng.on_items([*lead, Watermark("p", T0 + 5000.0)]))
        outs.append(eng.on_items([_page(1, "ann", T0 + 10.0), Watermark("q", T0 + 10.0)]))
        assert (sorted(eng.state.lagging), len(eng.state.lag)) == (["ann"], 1)
        outs.append(eng.on_items([*lead, Watermark("q", T0 + 1900.0)]))
        assert _closes(outs[-1]) == ["ann"]
        outs.append(eng.finish())
        return outs

    assert run(False) == run(True)


@functools.cache
def _epoch_settings() -> Settings:
    return Settings.load(
        environ={
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s",
            "AUDIENCEFLOW_TIME__IDLE_AFTER": "60s",
            "AUDIENCEFLOW_STATE__COLD_AFTER": "0",
            "AUDIENCEFLOW_MODELS__EPOCH": "10m",
        }
    )


@pytest.mark.timeout(120)
def test_a_watermark_past_the_models_epoch_learns_it_as_the_full_pass_does() -> None:
    """ann's session closes at 08:30; the models learn it once stream time passes the end
    of its 10-minute epoch (08:40). A watermark-only delivery to 08:41.40, with no deadline
    or held event before it, must still let them (``quiet_until`` bounds the short path)."""

    def run(full: bool) -> tuple[Any, ...]:
        settings = _epoch_settings()
        models = build_models(settings, "shard-000")
        eng = ShardEngine(
            settings,
            ShardState("shard-000", models=models),
            models=models,
            partitions=["p", "q"],
        )
        lead: list[Any] = [[]] if full else []
        out = eng.on_items([_page(1, "ann", T0), Watermark("p", T0), Watermark("q", T0)])
        out += eng.on_items([*lead, Watermark("p", T0 + 1900.0), Watermark("q", T0 + 1900.0)])
        assert (_closes(out), len(models.queue)) == (["ann"], 1)
        out += eng.on_items([*lead, Watermark("p", T0 + 2500.0), Watermark("q", T0 + 2500.0)])
        learned = (models.built, len(models.queue))
        out += eng.finish()
        return learned, out

    short, full = run(False), run(True)
    assert short[0][1] == 0  # learned
    assert short == full


@pytest.mark.timeout(120)
def test_the_wall_clock_fallback_at_the_end_of_a_delivery_bounds_the_short_path() -> None:
    """Live, no user yet, every partition turning idle: stream time follows the wall
    clock (hours ahead) at the end of the delivery, past the models' epoch, and the full
    pass syncs them there; the short path, which reads the wall clock only at the end
    (nothing is queued), must hand the delivery to it."""
    wall = T0 + 10_000.0

    def run(full: bool) -> tuple[Any, ...]:
        settings = _epoch_settings()
        models = build_models(settings, "shard-000")
        eng = ShardEngine(
            settings,
            ShardState("shard-000", models=models),
            wall=lambda: wall,
            models=models,
            partitions=["p", "q"],
        )
        lead: list[Any] = [[]] if full else []
        out = eng.on_items([*lead, Watermark("p", T0), Watermark("q", T0)])
        first = models.built
        out += eng.on_items([*lead, Watermark("p", T0, idle=True), Watermark("q", T0, idle=True)])
        return first, models.built, eng.state.clock.time, out

    short, full = run(False), run(True)
    assert short[1] > short[0]
    assert short == full


@functools.cache
def _live_cold_settings() -> Settings:
    return Settings.load(
        environ={
            "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "0s",
            "AUDIENCEFLOW_TIME__IDLE_AFTER": "60s",
            "AUDIENCEFLOW_STATE__COLD_AFTER": "2h",
        }
    )


class _FullPass(ShardEngine):
    """No short path. Live, a leading empty notice list is no neutral way to keep off it:
    the full pass reads the wall clock after it when something is queued, and with every
    partition idle that moves stream time before the delivery's first watermark."""

    def _marks(self, items: list[Any]) -> int:
        return 0


def _run_live(steps: list[tuple[float, list[Any], bool]], full: bool) -> list[Any]:
    now = [T0]
    eng = (_FullPass if full else ShardEngine)(
        _live_cold_settings(), ShardState("shard-000"), wall=lambda: now[0], partitions=["p", "q"]
    )
    out: list[Any] = []
    for wall, batch, as_tuple in steps:
        now[0] = wall
        items: Any = tuple(batch) if as_tuple else list(batch)
        out.extend(eng.on_items(items))
        st = eng.state
        out.append((sorted(st.cold), sorted(st.lagging), st.clock.time, st.processed))
    out.append(eng.finish())
    return out


def _live_steps(seed: int) -> list[tuple[float, list[Any], bool]]:
    """Live deliveries (wall time, items, as a tuple): partitions turn idle and rejoin
    (behind stream time: their users lag), watermarks lead a delivery's events or follow
    them, some deliveries are tuples."""
    rng = random.Random(seed)
    marks = {"p": T0, "q": T0}
    wall = T0
    steps: list[tuple[float, list[Any], bool]] = []
    n = 0
    for _ in range(150):
        part = rng.choice("pq")
        evs: list[Any] = []
        wms: list[Any] = []
        for _ in range(rng.randint(1, 2)):
            marks[part] += rng.choice([0.0, 0.5, 60.0, 900.0, TIMEOUT, 3600.0])
            wms.append(Watermark(part, marks[part], rng.random() < 0.2))
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 3)):
                n += 1
                ts = marks[part] + rng.choice([0.0, 1.0, 30.0, 600.0])
                evs.append(_page(n, rng.choice(["ann", "bob", "cy"]), ts))
        batch = [*wms, *evs] if rng.random() < 0.5 else [*evs, *wms]
        wall = max(wall, max(marks.values()) + rng.choice([0.0, 30.0, 200.0, 5000.0]))
        steps.append((wall, batch, rng.random() < 0.2))
    return steps


@pure_only  # subclasses ShardEngine, a native class in the compiled build
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(20))
def test_live_deliveries_with_idle_partitions_and_leading_watermarks_match_the_full_pass(
    seed: int,
) -> None:
    """Outputs and state after every live delivery (``_live_steps``) equal the full pass's."""
    steps = _live_steps(seed)
    assert _run_live(steps, full=False) == _run_live(steps, full=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(20))
def test_live_deliveries_as_lists_give_what_the_same_deliveries_as_tuples_give(
    seed: int,
) -> None:
    """As the test above, in either build (``make fast`` too, which cannot subclass the
    engine): only a list is read for a short path (``on_items``), so the same deliveries
    each made a tuple take the full pass through the public interface alone."""
    steps = _live_steps(seed)
    tuples = [(wall, batch, True) for wall, batch, _ in steps]
    assert _run_live(steps, full=False) == _run_live(tuples, full=False)
