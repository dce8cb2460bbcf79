"""Event-time correctness of the shard engine under out-of-order arrival, batching,
quiet input, skewed clocks and eviction (each case worked out by hand)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import ingested

from audienceflow.operators.config import Located, load_located, merge
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import (
    Action,
    ControlRequest,
    DeadLetter,
    Event,
    LinkNotice,
    Receipt,
    SegmentChange,
    Session,
    Watermark,
    iso,
)
from audienceflow.operators.routing import OUT, PartitionIngest
from audienceflow.operators.settings import Settings, build
from audienceflow.operators.validate import Taxonomy, Validator
from audienceflow.operators.watermarks import PartitionClock

T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
ROOT = Path(__file__).resolve().parent.parent


def settings(**sections: dict[str, Any]) -> Settings:
    over = Located(sections)
    return build(merge(load_located(None, {}), over), {})


def ev(user: str, t: float, name: str = "Home", mid: str | None = None, **props: Any) -> Event:
    etype = "page" if name in ("Home", "Deals") else "track"
    cat = Taxonomy.default().category(etype, name)
    return Event(mid or f"{user}-{t}-{name}", user, None, etype, name, T0 + t, cat, props)


def make_ingest(cfg: Settings, name: str = "p", live: bool = False) -> PartitionIngest:
    """One input partition's ingest, as a source builds it."""
    clock = PartitionClock(cfg.lateness, cfg.max_future, cfg.watermark_quorum, cfg.watermark_window)
    return PartitionIngest(
        name,
        Validator(cfg.taxonomy, cfg.consent_path),
        Privacy(cfg.pii_fields, cfg.pii_mode, ""),
        1,
        cfg.tick,
        clock,
        live=live,
    )


def items_of(cfg: Settings, events: list[Event]) -> list[Any]:
    """What one input partition sends the shard for ``events``, end of input included."""
    ingest = make_ingest(cfg)
    keyed = ingest.feed_events(events) + ingest.end()
    return [v for k, v in keyed if k != OUT] + [v for k, v in keyed if k == OUT]


def run(
    cfg: Settings, events: list[Event], batch: int = 1000, models: Any = None, wall: Any = None
) -> list[Any]:
    eng = ShardEngine(
        cfg, ShardState("shard-000", models=models), wall=wall, models=models, partitions=["p"]
    )
    items = items_of(cfg, events)
    dead = [i for i in items if isinstance(i, DeadLetter)]
    items = [i for i in items if not isinstance(i, DeadLetter)]
    out: list[Any] = list(dead)
    for i in range(0, len(items), batch):
        out += eng.on_items(items[i : i + batch])
    out += eng.finish()
    return out


def test_an_older_order_arriving_after_a_later_event_still_prevents_the_abandonment() -> None:
    cfg = settings()
    out = run(
        cfg,
        [
            ev("ann", 0, "Product Added", product_id="p1", price=5),
            ev("ann", 1000, "Home"),  # past the 08:15 deadline, but within lateness of…
            ev("ann", 890, "Order Completed", total=5),  # …this order, which arrives last
        ],
    )
    assert [a for a in out if isinstance(a, Action)] == []
    assert not [d for d in out if isinstance(d, DeadLetter)]


def test_an_older_cancel_does_not_cancel_a_newer_start() -> None:
    cfg = settings()
    out = run(
        cfg,
        [
            ev("ann", 600, "Product Added", product_id="p1", price=5),
            ev("ann", 500, "Order Completed", total=5),  # older than the add: cart still open
            ev("bob", 3000, "Home"),
        ],
    )
    (a,) = [a for a in out if isinstance(a, Action) and a.action == "cart_abandonment"]
    assert a.at == T0 + 1500


def test_out_of_order_within_lateness_gives_the_sessions_of_sorted_order() -> None:
    cfg = settings(time={"allowed_lateness": "1h"})
    arrival = [ev("u1", 0), ev("u1", 500), ev("u1", 2400), ev("u1", 2290)]
    out = run(cfg, arrival)
    sessions = sorted(
        (s.start - T0, s.last_or_end if False else s.end - T0, s.events)
        for s in out
        if isinstance(s, Session)
    )
    # sorted: 0, 500, 2290 (gap 1790 < 1800), 2400 → one session
    assert sessions == [(0.0, 2400.0, 4)]


def test_output_does_not_depend_on_how_the_stream_is_batched() -> None:
    from audienceflow.models.hook import build_models

    cfg = settings()
    ingest = make_ingest(cfg, "s")
    with gzip.open(ROOT / "examples" / "stream.jsonl.gz") as fh:
        lines = fh.read().splitlines()
    keyed = ingest.feed([(f"s:{i}", raw) for i, raw in enumerate(lines)]) + ingest.end()
    items = [v for k, v in keyed if k != OUT]
    outputs = []
    for batch in (len(items), 7, 100):
        models = build_models(cfg, "shard-000")
        eng = ShardEngine(
            cfg, ShardState("shard-000", models=models), models=models, partitions=["s"]
        )
        recs = []
        for i in range(0, len(items), batch):
            recs += eng.on_items(items[i : i + batch])
        recs += eng.finish()
        outputs.append([orjson.dumps(r.to_json()) for r in recs if hasattr(r, "to_json")])
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0]) > 1000


def test_a_quiet_spell_in_live_mode_does_not_turn_the_backlog_late() -> None:
    cfg = settings(time={"idle_after": "1s", "allowed_lateness": "0s", "watermark_quorum": 1})
    clock = {"now": T0}
    wall = lambda: clock["now"]  # noqa: E731
    ingest = make_ingest(cfg, live=True)
    eng = ShardEngine(cfg, ShardState("shard-000"), wall=wall, partitions=["p"])
    first = ingest.feed_events([ev("ann", 0, "Product Added", product_id="p1", price=3)], T0)
    out = eng.on_items([v for _, v in first])
    clock["now"] += 300.0  # five quiet minutes of wall time: the partition turns idle
    out += eng.on_items([v for _, v in ingest.set_idle(True)])
    out += eng.on_time()
    backlog = ingest.feed_events([ev("bob", t) for t in (1, 2, 3)], clock["now"])  # in order
    assert not [v for k, v in ingested(backlog) if k == OUT]
    out += eng.on_items([v for _, v in backlog])
    assert not [d for d in out if isinstance(d, DeadLetter)]


def test_the_wall_clock_fires_a_timer_when_every_partition_is_idle() -> None:
    cfg = settings(time={"idle_after": "1s", "watermark_quorum": 1})
    clock = {"now": T0 + 1.0}
    ingest = make_ingest(cfg, live=True)
    eng = ShardEngine(cfg, ShardState("shard-000"), wall=lambda: clock["now"], partitions=["p"])
    first = ingest.feed_events([ev("ann", 0, "Product Added", product_id="p1", price=3)], T0)
    out = eng.on_items([v for _, v in first])
    clock["now"] += 1200  # the partition is still active: stream time waits for it
    assert not [a for a in out + eng.on_time() if isinstance(a, Action)]
    out = eng.on_items([v for _, v in ingest.set_idle(True)])
    # idle: stream time follows the wall clock (less idle_after and lateness) past 08:15
    (a,) = [a for a in out + eng.on_time() if isinstance(a, Action)]
    assert a.action == "cart_abandonment" and a.at == T0 + 900


def test_a_burst_behind_stream_time_lets_its_order_cancel_the_cart_timer() -> None:
    """Live, stream time follows the wall clock (every partition idle) to 09:00; then a
    partition delivers a cart at 08:00 and its order at 08:00:02. Neither is late for the
    partition, and the timer the cart armed (08:15, long past stream time) waits for the
    partition's own watermark, which the order reaches first: no reminder, as in a
    replay, whether both come in one batch or the order in the next one."""
    cfg = settings(time={"idle_after": "1s", "watermark_quorum": 1})
    burst = [
        ev("ann", 0, "Product Added", product_id="p1", price=3),
        ev("ann", 2, "Order Completed", total=3),
    ]
    wall = T0 + 3600.0
    for batches in ([burst], [burst[:1], burst[1:]]):
        ingest = make_ingest(cfg, live=True)
        eng = ShardEngine(cfg, ShardState("shard-000"), wall=lambda: wall, partitions=["p"])
        out = eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
        assert eng.state.clock.now(lambda: wall) > T0 + 900
        for batch in batches:
            keyed = ingest.feed_events(batch, wall)
            assert not [v for k, v in ingested(keyed) if k == OUT]  # not late for its partition
            out += eng.on_items([v for _, v in keyed]) + eng.on_time()
        out += eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
        assert eng.state.processed == 2
        assert [a for a in out if isinstance(a, Action)] == []
        (session,) = [s for s in out if isinstance(s, Session)]  # closed once p is idle
        assert (session.start, session.end, session.events) == (T0, T0 + 2, 2)


def _lagging_cart(cfg: Settings, wall: float) -> tuple[PartitionIngest, ShardEngine, list[Any]]:
    """Partition p idle, stream time at the wall clock (09:00 less idle_after and
    lateness); then p delivers ann's 08:00 cart, alone in its batch."""
    ingest = make_ingest(cfg, live=True)
    eng = ShardEngine(cfg, ShardState("shard-000"), wall=lambda: wall, partitions=["p"])
    out = eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
    cart = [ev("ann", 0, "Product Added", product_id="p1", price=3)]
    out += eng.on_items([v for _, v in ingest.feed_events(cart, wall)]) + eng.on_time()
    return ingest, eng, out


def test_a_timer_armed_behind_stream_time_fires_once_its_partition_passes_it() -> None:
    """The cart and its 08:15 reminder wait for partition p (above) while p is active and
    its watermark (latest event less 2 min lateness) is before them; bob's 08:16:40 page
    moves it to 08:14:40, still before; his 08:18:20 one to 08:16:20: the reminder goes,
    stamped 08:15, as a replay stamps it. Turning idle instead releases it too."""
    cfg = settings(time={"idle_after": "1s", "watermark_quorum": 1})
    wall = T0 + 3600.0
    for release in ("watermark", "idle"):
        ingest, eng, out = _lagging_cart(cfg, wall)
        # The cart itself waits for p's watermark (08:00 less 2 min), and the worker
        # keeps polling for it.
        assert eng.next_due() == T0 and eng.buffered() == 1
        keyed = ingest.feed_events([ev("bob", 1000)], wall)
        out += eng.on_items([v for _, v in keyed]) + eng.on_time()
        assert [a for a in out if isinstance(a, Action)] == []
        if release == "watermark":
            keyed = ingest.feed_events([ev("bob", 1100)], wall)
        else:
            keyed = ingest.set_idle(True)
        out += eng.on_items([v for _, v in keyed]) + eng.on_time()
        (action,) = [a for a in out if isinstance(a, Action)]
        assert (action.action, action.user_id, action.at) == ("cart_abandonment", "ann", T0 + 900)
        out += eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
        assert not eng.state.lag and not eng.state.lagging  # p idle: nobody waits for it
        assert {s.user_id for s in out if isinstance(s, Session)} == {"ann", "bob"}


def test_a_restart_keeps_the_deadlines_waiting_for_a_partition_behind_stream_time() -> None:
    """The cart's reminder is waiting for partition p (above) when the shard is
    snapshotted and restored: the order in p's next batch still cancels it, and once p
    is idle ann's session closes (its deadline was kept, not lost with the snapshot)."""
    from audienceflow.operators.shard_codec import decode_shard, encode_shard

    cfg = settings(time={"idle_after": "1s", "watermark_quorum": 1})
    wall = T0 + 3600.0
    ingest, eng, out = _lagging_cart(cfg, wall)
    state = decode_shard(encode_shard(eng.state))
    state.clock.restarted()
    eng = ShardEngine(cfg, state, wall=lambda: wall, partitions=["p"])
    keyed = ingest.feed_events([ev("ann", 2, "Order Completed", total=3)], wall)
    out += eng.on_items([v for _, v in keyed]) + eng.on_time()
    out += eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
    assert [a for a in out if isinstance(a, Action)] == []
    (session,) = [s for s in out if isinstance(s, Session)]
    assert (session.start, session.end, session.events) == (T0, T0 + 2, 2)


def test_a_burst_behind_stream_time_does_not_let_a_later_event_overtake_a_held_one() -> None:
    """Partition r rejoins from idleness with bob's 08:00:10 page (behind stream time,
    08:16:30, so due work waits for the end of the batch); in the same batch r's and p's
    watermarks move stream time to 08:25, past ann's held 08:16:35 cart, and ann's 08:25
    order arrives, at stream time. The cart is applied before the order, as without bob:
    applied at once, the order overtook the held cart (a session starting at the order,
    the segment entered at 08:25, not 08:16:35)."""
    cfg = settings()
    runs = []
    for bob in ([], [ev("bob", 10)]):
        eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p", "r"])
        first = [Watermark("p", T0 + 990), Watermark("r", T0, True)]
        out = eng.on_items([*first, ev("ann", 995, "Product Added", product_id="p1", price=3)])
        assert eng.state.held_run  # the cart waits for stream time
        rest = [Watermark("r", T0 + 1500), Watermark("p", T0 + 3000)]
        out += eng.on_items([*bob, *rest, ev("ann", 1500, "Order Completed", total=3)])
        out += eng.on_items([Watermark("r", T0 + 5000)]) + eng.finish()
        runs.append([o for o in out if getattr(o, "user_id", None) == "ann"])
    (session,) = [s for s in runs[0] if isinstance(s, Session)]
    assert session.start == T0 + 995 and session.engaged_seconds == 505.0
    assert runs[1] == runs[0]


def test_held_link_notices_and_requests_are_no_buffered_events() -> None:
    # ``audienceflow_buffered_events`` is what the events read still wait for: a worker
    # with several shards counted identity link notices too, more "held" than events read.
    cfg = settings(time={"idle_after": "1s", "watermark_quorum": 1})
    wall = T0 + 3600.0
    ingest = make_ingest(cfg, live=True)
    eng = ShardEngine(cfg, ShardState("shard-000"), wall=lambda: wall, partitions=["p"])
    eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
    keyed = ingest.feed_events([ev("ann", 0, "Home")], wall)
    notice = LinkNotice("a-ann", "ann", T0 + 7200)  # stamped ahead: waits for its time
    forget = ControlRequest("delete", ("bob",), "r1", T0 + 10, "c:1")
    eng.on_items([*(v for _, v in keyed), notice, forget]) + eng.on_time()
    st = eng.state
    assert len(st.held) + len(st.held_run) + len(st.lag_held) == 3
    assert eng.buffered() == 1


def test_a_forget_request_after_a_burst_behind_stream_time_removes_its_events() -> None:
    """A deletion after a burst behind stream time comes after the burst's events, so
    nothing of the user is left (applied before them, the cart was applied after it).
    The cart waits for partition p's own time, and so does the 08:00:10 deletion (while
    a partition lags, its events may still come before it); once p is idle, the cart,
    then the deletion, as in a replay: the cart's 08:15 timer never fires, and the
    receipt counts it and its deadline."""
    cfg = settings(time={"idle_after": "1s", "watermark_quorum": 1})
    wall = T0 + 3600.0
    ingest = make_ingest(cfg, live=True)
    eng = ShardEngine(cfg, ShardState("shard-000"), wall=lambda: wall, partitions=["p"])
    eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
    keyed = ingest.feed_events([ev("ann", 0, "Product Added", product_id="p1", price=3)], wall)
    forget = ControlRequest("delete", ("ann",), "r1", T0 + 10, "c:1")
    out = eng.on_items([*(v for _, v in keyed), forget]) + eng.on_time()
    # p's watermark: 07:58. The cart waits, and so does the deletion, which is no event.
    st = eng.state
    held = len(st.held) + len(st.held_run) + len(st.lag_held)
    assert st.processed == 0 and eng.buffered() == 1 and held == 2
    out += eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
    assert "ann" not in eng.state.users and eng.state.processed == 1
    (receipt,) = [r for r in out if isinstance(r, Receipt)]
    assert receipt.status == "done" and receipt.purged["users"] == 1
    assert (receipt.purged["timers"], receipt.purged["deadlines"]) == (1, 1)
    assert receipt.at == T0 + 10
    assert [a.at for a in out if isinstance(a, Action)] == []
    assert not eng.state.lag and not eng.state.lagging


def test_a_deletion_applied_while_its_user_lags_counts_the_deadline_still_waiting() -> None:
    """As above, but the cart is applied first, its 08:15 timer waiting for p (bob's
    08:02:01 page moves p's watermark past the cart only); the 08:00:10 deletion comes
    next, and p's watermark passes it (bob's 08:03 page) while the timer still waits:
    the receipt counts that waiting deadline (a replay's would), and it never fires."""
    cfg = settings(time={"idle_after": "1s", "watermark_quorum": 1})
    wall = T0 + 3600.0
    ingest = make_ingest(cfg, live=True)
    eng = ShardEngine(cfg, ShardState("shard-000"), wall=lambda: wall, partitions=["p"])
    eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
    cart = ev("ann", 0, "Product Added", product_id="p1", price=3)
    keyed = ingest.feed_events([cart, ev("bob", 121)], wall)
    out = eng.on_items([v for _, v in keyed]) + eng.on_time()
    assert eng.state.lag == [(T0 + 900, "ann")]
    forget = ControlRequest("delete", ("ann",), "r1", T0 + 10, "c:1")
    out += eng.on_items([forget]) + eng.on_time()
    keyed = ingest.feed_events([ev("bob", 180)], wall)
    out += eng.on_items([v for _, v in keyed]) + eng.on_time()
    (receipt,) = [r for r in out if isinstance(r, Receipt)]
    assert (receipt.purged["timers"], receipt.purged["deadlines"]) == (1, 1)
    out += eng.on_items([v for _, v in ingest.set_idle(True)]) + eng.on_time()
    assert [a for a in out if isinstance(a, Action)] == [] and not eng.state.lag


def test_a_far_future_timestamp_is_dead_lettered_and_does_not_stop_the_stream() -> None:
    cfg = settings()
    future = ev("mallory", 40 * 365 * 86400.0, "Home")
    out = run(cfg, [ev("ann", 0), future] + [ev("bob", t) for t in range(10, 200, 10)])
    dead = [d for d in out if isinstance(d, DeadLetter)]
    assert [d.reason for d in dead] == ["future_event"]
    assert sum(s.events for s in out if isinstance(s, Session)) == 20


def test_two_actions_at_the_same_instant_have_distinct_ids() -> None:
    cfg = settings(triggers={"video_fan": {"type": "segment", "segment": "video_enthusiast:*"}})
    evs = [
        ev("ann", t, "Video Content Completed", mid=f"c{t}", category="cooking") for t in (0, 1, 2)
    ]
    evs += [ev("ann", t, "Video Content Completed", mid=f"t{t}", category="tech") for t in (0, 1)]
    evs.append(ev("ann", 2, "Video Content Completed", mid="t2x", category="tech"))
    actions = [a for a in run(cfg, evs) if isinstance(a, Action) and a.action == "video_fan"]
    assert len(actions) == 2 and len({a.action_id for a in actions}) == 2


def test_eviction_exits_segments_and_a_returning_user_gets_fresh_session_ids() -> None:
    cfg = settings(state={"history_window": "2h"})
    evs = [ev("ann", t, "Video Content Completed", category="cooking") for t in (0, 1, 2)]
    evs += [ev("bob", 5 * 3600.0), ev("ann", 10 * 3600.0), ev("bob", 20 * 3600.0)]
    out = run(cfg, evs, batch=2)
    ann = [
        c
        for c in out
        if isinstance(c, SegmentChange)
        and c.user_id == "ann"
        and c.segment == "video_enthusiast:cooking"
    ]
    assert [(c.change, c.reason.get("rule")) for c in ann] == [
        ("enter", "video_enthusiast"),
        ("exit", "eviction"),
    ]
    ids = [s.session_id for s in out if isinstance(s, Session) and s.user_id == "ann"]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_a_rule_dividing_by_zero_is_false_not_a_crash() -> None:
    cfg = settings(segments={"big_spender": {"when": "total_revenue / total_orders > 50"}})
    out = run(cfg, [ev("ann", 0), ev("ann", 10)])
    assert not [c for c in out if isinstance(c, SegmentChange) and c.segment == "big_spender"]


def test_a_deeply_nested_line_is_dead_lettered_not_fatal() -> None:
    cfg = settings()
    ingest = make_ingest(cfg, "f")
    deep = '{"x":' * 900 + '{"email":"a@b.c"}' + "}" * 900  # deeper than Python recursion
    raw = (
        '{"type":"track","event":"X","userId":"u","messageId":"m",'
        f'"timestamp":"2026-03-02T08:00:00Z","properties":{deep}}}'
    ).encode()
    ((key, rec),) = ingest.feed([("f:1", raw)])
    assert key == OUT and isinstance(rec, DeadLetter) and "a@b.c" not in rec.raw


@pytest.mark.parametrize("bad", ["device > 3", "device * 3 == ''", "device in 'mobile'"])
def test_a_text_rule_that_would_crash_is_rejected_at_load(bad: str, tmp_path: Path) -> None:
    from audienceflow.operators.config import ConfigError

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'segments:\n  x:\n    when: "{bad}"\n')
    with pytest.raises(ConfigError, match=r"c.yaml:3: segments.x.when"):
        Settings.load(cfg, environ={})


def test_in_segment_of_an_unknown_segment_is_rejected_at_load(tmp_path: Path) -> None:
    from audienceflow.operators.config import ConfigError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("segments:\n  x:\n    when: in_segment('frequnt_visitor')\n")
    with pytest.raises(ConfigError, match="names no segment"):
        Settings.load(cfg, environ={})


def test_another_device_of_a_lagging_profile_does_not_run_its_parked_reminder() -> None:
    """Identity on. Partition q is at 08:50 (stream time, p idle) when u1 identifies on
    devices a1 and a2. Then p rejoins behind with a1's 08:00 cart (applied once p's
    watermark passes it; its 08:15 reminder waits for p, u1 lags); a2's 08:50 page comes
    on q, at stream time; p's next fetch brings a1's 08:00:02 order. A replay applies the
    order 2 s after the cart: no reminder. The page is for u1's profile though not for
    a lagging id: applied at once, it ran the profile's parked reminder before the order."""
    cfg = settings(identity={"enabled": True})

    def at(mid: str, uid: str, anon: str, t: float, name: str, **props: Any) -> Event:
        etype = {"Home": "page", "identify": "identify"}.get(name, "track")
        if etype == "identify":
            return Event(mid, uid, anon, etype, name, T0 + t, "identity", {}, traits={})
        cat = Taxonomy.default().category(etype, name)
        return Event(mid, uid, anon, etype, name, T0 + t, cat, props)

    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p", "q"])
    out = eng.on_items([Watermark("p", T0 - 100, True), Watermark("q", T0 + 3000)])
    ident = [at("i1", "u1", "a1", 3000, "identify"), at("i2", "u1", "a2", 3000, "identify")]
    out += eng.on_items(ident)
    cart = at("c", "a1", "a1", 0, "Product Added", product_id="p1", price=3)
    out += eng.on_items([Watermark("p", T0 - 100), cart, Watermark("p", T0 + 1)])
    assert eng.state.lag == [(T0 + 900, "u1")]  # the reminder waits for p
    out += eng.on_items([at("pg", "a2", "a2", 3000, "Home"), Watermark("q", T0 + 3000)])
    assert eng.buffered() == 1  # the page waits with its profile
    order = at("o", "a1", "a1", 2, "Order Completed", total=3)
    out += eng.on_items([order, Watermark("p", T0 + 2)])
    out += eng.on_items([Watermark("p", T0 + 2, True)]) + eng.finish()
    assert [a for a in out if isinstance(a, Action)] == []
    assert eng.state.processed == 5 and eng.buffered() == 0


def test_a_deletion_parked_for_a_lagging_partition_counts_the_same_ids_however_batched() -> None:
    """p is at 10:00 when r rejoins with bob's 08:00 and 08:00:01 pages and a deletion of
    bob at 08:00:01: they wait for r's watermark (08:00:01 at the end). The receipt counts
    bob's 2 message ids (within the dedup window of 08:00:01), whether r's watermark came
    in the same call or in a later one, after ids older than stream time less the window
    were forgotten: the receipt, and the hash chain over receipts, are the same."""
    cfg = settings()
    items = [
        Watermark("r", T0, True),
        Watermark("p", T0 + 7200),
        Watermark("r", T0),
        ev("bob", 0, mid="m0"),
        ev("bob", 1, mid="m1"),
        ControlRequest("delete", ("bob",), "r1", T0 + 1),
        Watermark("r", T0 + 1),
    ]
    receipts = []
    for cut in (1, len(items)):
        eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["p", "r"])
        out: list[Any] = []
        for i in range(0, len(items), cut):
            out += eng.on_items(items[i : i + cut])
        (receipt,) = [r for r in out + eng.finish() if isinstance(r, Receipt)]
        assert receipt.purged["dedup_entries"] == 2 and receipt.at == T0 + 1
        receipts.append(receipt.to_json())
    assert receipts[0] == receipts[1]


# --- clocks ahead of the wall, live ---------------------------------------------


@pytest.mark.timeout(30)
def test_live_a_partitions_time_stops_at_the_wall_clock() -> None:
    """A burst of ``quorum`` events from a clock ahead: with ``now`` (live) the base stops
    at ``now`` exactly, and moves again with ``now``; without it (replay) it moves on."""
    live = PartitionClock(lateness=2.0, max_future=7 * 86400.0, quorum=4, window=32)
    replayed = PartitionClock(lateness=2.0, max_future=7 * 86400.0, quorum=4, window=32)
    now = T0
    for i in range(8):  # ordinary traffic, a little behind the wall
        live.observe(now - 8 + i, now)
        replayed.observe(now - 8 + i)
    assert live.base == replayed.base == now - 4
    for k in range(4):
        live.observe(now + 3600 + k, now)
        replayed.observe(now + 3600 + k)
    assert replayed.base == now + 3600
    assert live.base == now  # not an hour on; and not short of the wall either
    assert live.verdict(now - 1.0) is None  # the partition's other users are not late
    assert not live.observe(now - 0.5, now)  # below the base: nothing moves
    assert live.observe(now + 1, now + 10)  # the wall moved: the base follows it...
    assert live.base == now + 10
    # ...and the burst's events, still counted above it, carry it once the wall passes them
    assert live.observe(now + 3600.5, now + 7200) and live.base == now + 3600.5


@pytest.mark.timeout(30)
def test_live_with_every_partition_idle_stream_time_follows_the_wall_not_the_furthest_mark() -> (
    None
):
    """A mark ahead of the wall (a partition restored from a snapshot taken before bases
    stopped at the wall) must not take stream time there when every partition is idle."""
    from audienceflow.operators.clock import StreamClock

    wall = T0
    live = StreamClock(lateness=2.0, idle_after=10.0)
    live.expect(["p0", "p1"])
    live.update("p0", wall - 30, False)
    live.update("p1", wall + 7200, False)
    assert live.now(lambda: wall) == wall - 30  # the slowest active partition
    live.update("p1", wall + 7200, True)  # the one ahead goes quiet first, then the other
    live.update("p0", wall - 30, True)
    assert live.now(lambda: wall) == wall - 12.0  # wall - idle_after - lateness
    replay = StreamClock(lateness=2.0)  # no wall: the marks are all there is
    replay.expect(["p0", "p1"])
    replay.update("p0", wall - 30, True)
    replay.update("p1", wall + 7200, True)
    assert replay.now() == wall + 7200


def _page(user: str, ts: float, mid: str) -> tuple[str, bytes]:
    """A page view as a live source reads it: ``(position, line)``."""
    return mid, orjson.dumps(
        {"type": "page", "name": "Home", "userId": user, "timestamp": iso(ts), "messageId": mid}
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lead", [0.0, 60.0])
def test_live_a_burst_from_a_phone_an_hour_ahead_makes_no_one_else_late(lead: float) -> None:
    """The partition as a Kafka source builds it (``make_ingest``, live): 50 users, then 4
    events of one phone an hour ahead. The phone is one user of the quorum of 4: the
    partition's time stays where its users are (it stopped at the wall clock plus
    ``time.max_lead`` when events alone were counted), and the 50 users' next events
    are all routed."""
    from audienceflow.flows.partitions import make_ingest

    s = settings(time={"max_lead": f"{lead:g}s"})
    assert s.max_lead == lead
    ing = make_ingest(s, "in:0", None, live=True)
    now = T0

    ing.feed([_page(f"u{i % 50}", now - 20 + i * 0.1, f"a{i}") for i in range(200)], now)
    ing.feed([_page("phone", now + 3600 + k, f"p{k}") for k in range(4)], now)
    assert ing.clock.base == pytest.approx(now - 20 + 197 * 0.1, abs=1e-3)  # u47..u49, phone
    out = ing.feed(
        [_page(f"u{i % 50}", now + lead - 119 + i * 0.1, f"b{i}") for i in range(200)], now
    )
    assert not [v for _, v in ingested(out) if isinstance(v, DeadLetter)]
    assert sum(isinstance(v, Event) for _, v in out) == 200


@pytest.mark.timeout(30)
@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("users", [40, 4])
def test_live_a_backlog_keeps_its_events_when_a_phone_ahead_bursts_in_it(
    users: int, restart: bool
) -> None:
    """A worker reads a 10-minute backlog (a restart after a pause) of 40 users, or of 4,
    an event every 2 s; among it, 4 events of a phone an hour ahead. Counted as events,
    they moved the partition's time to the wall clock at once, and every later event of
    the backlog was late (140 of 302). The phone is one user: time stays with the
    backlog's users, and nothing is late; also where the worker restarts from a snapshot
    taken right after the burst (its entries keep which were the same user)."""
    from audienceflow.flows.partitions import make_ingest

    ing = make_ingest(settings(), "in:0", None, live=True)
    now = T0

    lines = []
    for i in range(298):
        lines.append(_page(f"u{i % users}", now - 600 + 2 * i, f"a{i}"))
        if i == 99:
            lines += [_page("phone", now + 3600 + k, f"p{k}") for k in range(4)]
    out = []
    for n, item in enumerate(lines):  # as polled: one at a time
        out += ing.feed([item], now)
        if restart and n == 103:  # the worker restarts from a snapshot after the burst
            clock = pickle.loads(pickle.dumps(ing.clock))
            ing = make_ingest(settings(), "in:0", clock, live=True)
    assert not [v for _, v in ingested(out) if isinstance(v, DeadLetter)]
    assert sum(isinstance(v, Event) for _, v in out) == 302
    assert now - 600 < ing.clock.base < now - 2
    # Its snapshot keeps no user (nor a hash of one): which entries were the same user,
    # numbered 1, 2, ...
    args = ing.clock.__reduce__()[1]
    assert len(args) == 9 and {e[2] for e in args[7]} <= set(range(1, 33))


@pytest.mark.timeout(30)
def test_live_a_restored_partition_of_three_users_keeps_time_with_its_events() -> None:
    """Three users, an event every 3 s, and a restart from a snapshot: fewer users than
    the quorum, so the partition's time moves on its events, before the restart and
    after. (A restored clock that counted its saved users beside the same users' new
    hashes waited for a fourth, some 95 s behind, for the window's 32 events.)"""
    from audienceflow.flows.partitions import make_ingest

    ing = make_ingest(settings(), "in:0", None, live=True)
    now = T0 + 3 * 400

    lags = []
    for n in range(400):
        if n == 200:  # the worker restarts
            clock = pickle.loads(pickle.dumps(ing.clock))
            ing = make_ingest(settings(), "in:0", clock, live=True)
        ing.feed([_page(f"u{n % 3}", T0 + 3 * n, f"m{n}")], now)
        lags.append(T0 + 3 * n - ing.clock.base)
    assert max(lags[100:200]) <= 9.0 and max(lags[200:]) <= 9.0, max(lags[200:])


@pytest.mark.timeout(60)
def test_ids_of_a_partition_ahead_of_stream_time_do_not_keep_expired_ids() -> None:
    """Two files read side by side, one four months ahead: its first batch reaches the
    shard first, and its ids sat at the front of the dedup map, which expires from the
    front in arrival order, so no id behind them was ever forgotten (memory grew with
    everything read; outputs were the same). Now the map holds about the window's worth
    of ids of the partition stream time follows."""
    cfg = settings()
    window = cfg.dedup_window
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["a", "b"])
    later = T0 + 120 * 86400.0
    far = [ev(f"b{i}", 120 * 86400.0 + i) for i in range(300)]
    eng.on_items([*far, Watermark("b", later + 300)])
    sizes = []
    for k in range(40):  # 40 batches of 300 events a second apart: 3.3 hours
        start = k * 300
        batch = [ev(f"u{i % 50}", start + i, mid=f"a-{start + i}") for i in range(300)]
        eng.on_items([*batch, Watermark("a", T0 + start + 299 - 1.0)])
        sizes.append(len(eng.state.seen))
    # The window's ids of "a" (an hour: 3,600) and b's 300, give or take a batch.
    assert max(sizes[-10:]) <= window + 300 + 600, sizes[-10:]
    assert all(mid in eng.state.seen for mid in (e.message_id for e in far))  # not expired
