"""End-to-end replays of small streams whose expected outputs are worked out by hand.

Default config: 30 min session timeout, 2 min allowed lateness, cart abandonment
after 15 min, recent_engager = active within 1 h.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ev, read_jsonl, write_stream

from audienceflow.flows.replay import replay
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.slow


def run(tmp_path: Path, events: list, config: str | None = None) -> dict:
    src = write_stream(tmp_path / "in.jsonl", events)
    cfg = None
    if config is not None:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config)
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(cfg, environ={}))
    files = {
        name: read_jsonl(out / f"{name}.jsonl")
        for name in ("sessions", "segment_changes", "actions", "dead_letters", "profiles")
    }
    return {"summary": summary, **files}


def test_cart_abandonment_restarts_on_add_and_fires_once_with_the_cart(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            ev("ann", 0, "Product Added", product_id="p1", category="shoes", price=50, quantity=1),
            ev("ann", 10, "Product Added", product_id="p2", category="bags", price=20, quantity=2),
            ev("bob", 60, "Home"),  # moves stream time far past ann's deadline
        ],
    )
    actions = [a for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert len(actions) == 1
    a = actions[0]
    # restarted by the second add at 08:10 → due 08:25, not 08:15
    assert a["at"] == "2026-03-02T08:25:00.000Z"
    assert a["user_id"] == "ann" and a["status"] == "delivered"
    assert a["payload"]["items"] == 3
    assert a["payload"]["value"] == 90.0
    assert [p["product_id"] for p in a["payload"]["products"]] == ["p1", "p2"]


def test_abandonment_timer_is_cancelled_by_order(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            ev("ann", 0, "Product Added", product_id="p1", price=5),
            ev("ann", 5, "Order Completed", order_id="o1", total=5),
            ev("bob", 90, "Home"),
        ],
    )
    assert [a for a in r["actions"] if a["action"] == "cart_abandonment"] == []
    (s,) = [s for s in r["sessions"] if s["user_id"] == "ann"]
    assert s["converted"] is True and s["order_value"] == 5


def test_no_second_abandonment_until_a_new_add(tmp_path: Path) -> None:
    cfg = "caps:\n  cooldown: {cart_abandonment: 0s}\n"
    r = run(
        tmp_path,
        [
            ev("ann", 0, "Product Added", product_id="p1", price=5),
            ev("ann", 40, "Home"),  # after the timer fired at 08:15: no new timer
            ev("ann", 300, "Product Added", product_id="p2", price=5),  # 13:00 → fires 13:15
        ],
        cfg,
    )
    ats = [a["at"] for a in r["actions"] if a["action"] == "cart_abandonment"]
    assert ats == ["2026-03-02T08:15:00.000Z", "2026-03-02T13:15:00.000Z"]


def test_sessions_split_on_inactivity_and_carry_their_counts(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            ev("ann", 0, "Home", category="deals"),
            ev("ann", 2, "Page Scrolled", percent=75),
            ev("ann", 12, "Deals", category="deals"),  # 10 min on Home
            ev("ann", 13, "Product Viewed", product_id="p9", category="deals"),
            ev("ann", 43, "Home"),  # exactly 30 min later: new session
        ],
    )
    s1, s2 = sorted(r["sessions"], key=lambda s: s["start"])
    assert (s1["start"], s1["end"]) == ("2026-03-02T08:00:00.000Z", "2026-03-02T08:13:00.000Z")
    assert s1["events"] == 4 and s1["page_views"] == 2
    assert s1["max_scroll_depth"] == 75
    assert s1["max_page_seconds"] == 720.0  # Home 08:00 → Deals 08:12
    assert s1["engaged_seconds"] == 780.0
    assert s1["products"] == ["p9"] and s1["categories"] == ["deals"]
    assert s1["events_by_category"] == {"engagement": 1, "navigation": 3}
    assert s1["converted"] is False and s1["end_reason"] == "inactivity"
    assert (s2["start"], s2["events"]) == ("2026-03-02T08:43:00.000Z", 1)
    assert s1["session_id"] != s2["session_id"]


def test_recent_engager_exit_fires_by_event_time_for_a_quiet_user(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            ev("ann", 0, "Home"),
            ev("bob", 0, "Home"),
            ev("bob", 100, "Home"),  # stream time passes 09:00 while ann is quiet
        ],
    )
    ann = [
        (c["segment"], c["change"], c["at"]) for c in r["segment_changes"] if c["user_id"] == "ann"
    ]
    assert ann == [
        ("recent_engager", "enter", "2026-03-02T08:00:00.000Z"),
        ("recent_engager", "exit", "2026-03-02T09:00:00.000Z"),
    ]
    exit_ = [c for c in r["segment_changes"] if c["user_id"] == "ann" and c["change"] == "exit"]
    assert exit_[0]["reason"]["values"] == {"active_within(1h)": False}


def test_frequent_visitor_enters_on_fourth_session_and_exits_when_window_lapses(
    tmp_path: Path,
) -> None:
    # sessions start at 08:00, 09:00, 10:00, 11:00 → 4 in 24 h at 11:00 ("more than 3")
    events = [ev("ann", m, "Home") for m in (0, 60, 120, 180)]
    r = run(tmp_path, events)
    fv = [
        (c["change"], c["at"]) for c in r["segment_changes"] if c["segment"] == "frequent_visitor"
    ]
    # the 08:00 session leaves the 24 h window at 08:00 next day → 3 left
    assert fv == [("enter", "2026-03-02T11:00:00.000Z"), ("exit", "2026-03-03T08:00:00.000Z")]


def test_high_engagement_enters_and_triggers_content_action(tmp_path: Path) -> None:
    events = [ev("ann", m, "Home") for m in range(6)]  # 6th page view at 08:05
    r = run(tmp_path, events)
    he = [(c["change"], c["at"]) for c in r["segment_changes"] if c["segment"] == "high_engagement"]
    # leaves when the session closes (08:05 + 30 min)
    assert he == [("enter", "2026-03-02T08:05:00.000Z"), ("exit", "2026-03-02T08:35:00.000Z")]
    (a,) = [a for a in r["actions"] if a["action"] == "high_engagement_content"]
    assert a["at"] == "2026-03-02T08:05:00.000Z" and a["status"] == "delivered"
    assert a["payload"] == {"module": "high_engagement_content", "segment": "high_engagement"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("screens", "enters"), [(6, True), (5, False)])
def test_a_mobile_apps_screens_count_as_its_pages_for_high_engagement(
    tmp_path: Path, screens: int, enters: bool
) -> None:
    # An app sends screen calls, never page calls: its users could not be engaged
    # under the default rule, whose page count reads pages only.
    events = [ev("ann", m, "Home", "screen") for m in range(screens)]
    r = run(tmp_path, events)
    he = [(c["change"], c["at"]) for c in r["segment_changes"] if c["segment"] == "high_engagement"]
    expected = [("enter", "2026-03-02T08:05:00.000Z"), ("exit", "2026-03-02T08:35:00.000Z")]
    assert he == (expected if enters else [])


def test_frequency_cap_suppresses_with_reason(tmp_path: Path) -> None:
    cfg = "caps:\n  per_action_per_day: {high_engagement_content: 1}\n"
    # two separate sessions each with 6 page views → two entries, one cap of 1/day
    events = [ev("ann", m, "Home") for m in range(6)] + [
        ev("ann", 120 + m, "Home") for m in range(6)
    ]
    r = run(tmp_path, events, cfg)
    acts = [(a["at"], a["status"], a.get("suppressed_reason")) for a in r["actions"]]
    assert acts == [
        ("2026-03-02T08:05:00.000Z", "delivered", None),
        ("2026-03-02T10:05:00.000Z", "suppressed", "frequency_cap"),
    ]
    assert len({a["action_id"] for a in r["actions"]}) == 2


def test_video_enthusiast_is_per_category(tmp_path: Path) -> None:
    events = [ev("ann", m, "Video Content Completed", category="cooking") for m in (0, 5, 10)]
    events.append(ev("ann", 15, "Video Content Completed", category="tech"))
    r = run(tmp_path, events)
    enters = [
        c["segment"]
        for c in r["segment_changes"]
        if c["change"] == "enter" and c["segment"].startswith("video")
    ]
    assert enters == ["video_enthusiast:cooking"]
    (p,) = r["profiles"]
    assert p["video_completions"] == {"cooking": 3, "tech": 1}


def test_contextual_condition_limits_trigger_to_device(tmp_path: Path) -> None:
    cfg = (
        "triggers:\n  mobile_offer:\n    type: event\n    events: [Product Viewed]\n"
        "    when: device == 'mobile'\n"
    )
    a = ev("ann", 0, "Product Viewed", product_id="p1")
    a["context"] = {"device": {"type": "mobile"}}
    b = ev("bob", 0, "Product Viewed", product_id="p1")
    b["context"] = {"device": {"type": "desktop"}}
    r = run(tmp_path, [a, b], cfg)
    offers = [x["user_id"] for x in r["actions"] if x["action"] == "mobile_offer"]
    assert offers == ["ann"]


def test_late_event_is_dead_lettered_and_accounted(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            ev("ann", 0, "Home"),
            # four events at or after 09:00 move the file's time to 09:00 (watermark_quorum 4)
            *(ev(u, 60, "Home") for u in ("bob", "cid", "dan", "eve")),
            ev("ann", 10, "Home"),  # 50 min behind its file's time; lateness is 2 min
        ],
    )
    (d,) = r["dead_letters"]
    assert d["reason"] == "late_event" and d["position"].endswith(":6")
    c = r["summary"]["counts"]
    assert (c["events_in"], c["processed"], c["dead_lettered"]) == (6, 5, 1)
    assert c["reconciled"] is True


def test_out_of_order_within_lateness_joins_the_session(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            ev("ann", 1, "Home"),
            ev("ann", 0, "Deals"),  # one minute behind: within the 2 min lateness
        ],
    )
    (s,) = r["sessions"]
    assert (s["start"], s["end"], s["events"]) == (
        "2026-03-02T08:00:00.000Z",
        "2026-03-02T08:01:00.000Z",
        2,
    )


def test_duplicates_and_bad_lines_are_counted_never_lost(tmp_path: Path) -> None:
    e = ev("ann", 0, "Home", mid="same")
    r = run(tmp_path, [e, e, "{broken", '{"type":"track","event":"X","timestamp":"x"}'])
    c = r["summary"]["counts"]
    assert c["events_in"] == 4
    assert c["processed"] == 1
    assert c["filtered_by_reason"] == {"duplicate": 1}
    assert c["dead_lettered_by_reason"] == {"no_identity": 1, "not_json": 1}
    assert c["reconciled"] is True


def test_replay_is_byte_identical(tmp_path: Path) -> None:
    events = [
        ev(u, m, n, product_id="p1", category="deals", price=3)
        for u, m, n in [
            ("ann", 0, "Product Added"),
            ("bob", 1, "Home"),
            ("cy", 2, "Product Viewed"),
            ("ann", 3, "Home"),
            ("bob", 40, "Home"),
            ("cy", 70, "Order Completed"),
        ]
    ]
    src = write_stream(tmp_path / "in.jsonl", events)
    outs = []
    for name in ("a", "b"):
        replay([str(src)], tmp_path / name, Settings.load(environ={}))
        outs.append({f.name: f.read_bytes() for f in sorted((tmp_path / name).iterdir())})
    assert outs[0] == outs[1]
    assert outs[0]["actions.jsonl"]  # something was produced


def test_idle_users_are_evicted_after_the_history_window(tmp_path: Path) -> None:
    cfg = "state:\n  history_window: 2h\n"
    r = run(
        tmp_path,
        [
            ev("ann", 0, "Home"),
            ev("bob", 0, "Home"),
            # 13:00: both idle since 08:00, nothing pending → both evicted at 10:00, in
            # event time, whether or not bob's next event had already arrived then
            ev("bob", 300, "Home"),
        ],
        cfg,
    )
    out = r["summary"]["outputs"]
    assert out["evicted_users"] == 2
    assert [p["user_id"] for p in r["profiles"]] == ["bob"]  # bob again, from 13:00
    assert [s["user_id"] for s in r["sessions"]].count("bob") == 2
    # ann's outputs before eviction are all there
    assert [s["user_id"] for s in r["sessions"]].count("ann") == 1


def test_two_workers_give_the_same_records_as_one(tmp_path: Path) -> None:
    settings = Settings.load(environ={"AUDIENCEFLOW_STATE__SHARDS": "2"})
    stream = str(Path(__file__).resolve().parent.parent / "examples" / "stream.jsonl.gz")
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        replay([stream], out, settings, workers=workers)
        runs[workers] = {
            f.name: sorted(f.read_bytes().splitlines())
            for f in out.iterdir()
            if f.suffix == ".jsonl"
        }
    assert runs[1] == runs[2]
    assert len(runs[1]["segment_changes.jsonl"]) > 1000
