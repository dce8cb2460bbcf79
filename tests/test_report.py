"""The HTML report: its embedded data agree with summary.json, it needs nothing from the
network, and it survives extra fields and missing optional files. (The browser check is
`make report-check`, outside the suite.)
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import read_jsonl
from hypothesis import given
from hypothesis import strategies as st
from workers import STREAM, write_config

from audienceflow.flows.cli import main
from audienceflow.flows.replay import replay
from audienceflow.flows.report import (
    build,
    embedded_data,
    progressive_auc,
    rank_auc,
    write_report,
)
from audienceflow.operators.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    cfg = write_config(
        tmp / "c.yaml",
        models={"drift": {"detector": "page_hinkley", "threshold": 2},
                "evaluation": {"truth": str(ROOT / "examples" / "stream.truth.json")}},
    )  # fmt: skip
    replay([str(STREAM)], tmp / "out", Settings.load(cfg, environ={}))
    return tmp / "out"


def summary_of(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((out / "summary.json").read_bytes())
    return loaded


def test_the_reports_data_match_the_summary(replayed: Path) -> None:
    page = write_report(replayed).read_text()
    data = embedded_data(page)
    s = summary_of(replayed)
    c, o, t = s["counts"], s["outputs"], data["totals"]
    assert (t["events_in"], t["processed"]) == (c["events_in"], c["processed"])
    # Counted from the records, not copied from the summary:
    assert t["dead_lettered_by_reason"] == c["dead_lettered_by_reason"]
    assert sum(t["dead_lettered_by_reason"].values()) == c["dead_lettered"]
    assert (t["sessions"], t["converted_sessions"]) == (o["sessions"], o["converted_sessions"])
    assert t["segment_changes"] == o["segment_changes"]
    assert t["actions"] == o["actions"]
    assert t["profiles"] == o["profiles"]
    assert t["drift"] == len(s["models"]["drift"]) > 0
    outcome = data["figures"][0]["data"][0]
    assert sum(outcome["x"]) == c["events_in"]  # processed + every dead/filtered reason
    # The KPI tiles show the summary's own numbers.
    for n in (c["events_in"], c["processed"], o["users"], o["sessions"]):
        assert f"<b>{n}</b>" in page


def test_every_chart_has_data_and_the_expected_charts_are_there(replayed: Path) -> None:
    data = build(replayed)
    titles = [f["title"] for f in data["figures"]]
    parts = ("by outcome", "Events per hour", "Segment sizes", "Actions per hour",
             "Cart funnel", "progressive ROC AUC", "calibration", "score distribution",
             "clusters: members", "centroid", "Drift detections", "Session length")  # fmt: skip
    for part in parts:
        assert any(part in title for title in titles), (part, titles)
    for fig in data["figures"]:
        points = sum(len(tr.get("x") or tr.get("y") or []) for tr in fig["data"])
        assert points > 0, fig["title"]
    drift = next(f for f in data["figures"] if f["title"].startswith("Drift"))
    assert sum(len(tr["x"]) for tr in drift["data"][1:]) == data["totals"]["drift"]
    assert data["notes"] == []


def test_the_report_is_self_contained(replayed: Path) -> None:
    page = write_report(replayed, replayed / "r.html").read_text()
    assert not re.search(r"<script[^>]+src=", page)
    assert "<link" not in page
    assert "Plotly" in page and len(page) > 1_000_000  # the bundle itself is inlined
    assert write_report(replayed, replayed / "r2.html").read_text() == page  # deterministic


def test_extra_fields_and_missing_optional_files_are_tolerated(
    replayed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "partial"
    out.mkdir()
    shutil.copy(replayed / "summary.json", out)
    for name in ("sessions.jsonl", "segment_changes.jsonl"):
        rows = [
            dict(r, canonical_id="x", something_new={"a": 1}) for r in read_jsonl(replayed / name)
        ]
        (out / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    data = build(out)
    assert sorted(data["notes"]) == [
        f"{n} not found: its charts are left out"
        for n in ("actions.jsonl", "dead_letters.jsonl", "drift.jsonl", "profiles.jsonl")
    ]
    assert not any(f["title"].startswith("Actions per hour") for f in data["figures"])
    assert data["totals"]["sessions"] == summary_of(replayed)["outputs"]["sessions"]
    assert "actions.jsonl not found" in write_report(out).read_text()


def test_report_command_writes_the_file_and_names_a_missing_summary(
    replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(replayed), "--output", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").stat().st_size > 0
    assert main(["report", str(tmp_path)]) == 2
    assert "summary.json not found" in capsys.readouterr().err


def test_a_replay_into_a_folder_removes_the_report_of_the_run_before(tmp_path: Path) -> None:
    # An earlier report beside the new outputs would show the old run's figures.
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the previous run's charts")
    (out / "notes.txt").write_text("the user's own file")
    src = tmp_path / "one.jsonl"
    with gzip.open(STREAM, "rb") as fh:
        src.write_bytes(fh.readline())
    replay([str(src)], out, Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "s"}))
    assert not (out / "report.html").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert (out / "summary.json").exists()


@pytest.mark.parametrize(
    ("pairs", "auc"),
    [
        ([(0.4, True), (0.1, False), (0.8, True), (0.35, False)], 1.0),  # every positive above
        ([(0.1, True), (0.4, False), (0.35, True), (0.8, False)], 0.0),
        ([(0.5, True), (0.2, False), (0.7, False)], 0.5),  # above one of two negatives
        ([(0.5, True), (0.5, False)], 0.5),  # a tie counts half
        ([(0.5, True), (0.6, True)], None),  # one outcome only
    ],
)
def test_rank_auc_on_hand_worked_cases(pairs: list[tuple[float, bool]], auc: float | None) -> None:
    assert rank_auc(pairs) == auc


def test_the_readme_demo_figures_are_what_the_demo_gives(tmp_path: Path) -> None:
    import readme_figures

    settings = Settings.load(ROOT / "examples" / "demo.yaml", environ={})
    requests = [str(ROOT / "examples" / "requests.jsonl")]  # as `make demo` runs it
    summary = replay([str(STREAM)], tmp_path / "demo", settings, control=requests)
    readme = (ROOT / "README.md").read_text()
    assert readme_figures.current(readme) == readme_figures.block(summary), (
        "README demo figures are stale: run `make readme-figures`"
    )


def test_experiments_and_recommendations_are_charted_from_the_summary(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        models={"recommendations": {"enabled": True}},
        experiments={
            "cart_timing": {
                "trigger": "cart_abandonment",
                "seed": "demo-cart-timing",
                "arms": {"a": {"weight": 0.5}, "b": {"weight": 0.5, "after": "1h"}},
            }
        },
    )
    replay([str(STREAM)], tmp_path / "out", Settings.load(cfg, environ={}))
    s = summary_of(tmp_path / "out")
    data = build(tmp_path / "out")
    (exp,) = [f for f in data["figures"] if f["title"].startswith("Experiment cart_timing")]
    arms = s["experiments"]["cart_timing"]["arms"]
    assert exp["data"][0]["x"] == list(arms)
    assert exp["data"][0]["y"] == [arms[a]["conversion_rate"] for a in arms]
    (reco,) = [f for f in data["figures"] if f["title"].startswith("Recommendations")]
    model = next(tr for tr in reco["data"] if tr["name"] == "model")
    products = s["models"]["recommendations"]["products"]["hit_rate_at_10"]["model"]
    assert products in model["y"]


@pytest.mark.timeout(30)
def test_an_experiment_chart_puts_the_control_first_and_names_it() -> None:
    # summary.json holds the arms by name: a control named "control" sorted after
    # "after_2h", under a title reading "lift vs the first arm".
    from audienceflow.flows.report import _experiment_figures

    def arm(rate: float) -> dict[str, Any]:
        return {"exposed": 100, "converters": int(rate * 100), "conversion_rate": rate}

    def lift(value: float) -> dict[str, Any]:
        return {"conversion": {"lift": value, "lift_ci": [value - 0.1, value + 0.1]}}

    exp = {
        "alpha": 0.05,
        "control": "control",
        "arms": {"after_2h": arm(0.25), "after_30m": arm(0.3), "control": arm(0.2)},
        "comparisons": {"after_2h": lift(0.25), "after_30m": lift(0.5)},
    }
    (fig,) = _experiment_figures({"cart_delay": exp})
    bars, points = fig["data"]
    assert bars["x"] == points["x"] == ["control", "after_2h", "after_30m"]
    assert bars["y"] == [0.2, 0.25, 0.3]
    assert points["y"] == [None, 0.25, 0.5]
    assert "lift vs the control arm control " in fig["title"]


def test_the_cart_funnel_title_counts_converted_sessions_that_skipped_its_steps() -> None:
    from audienceflow.flows.report import _session_figures

    def session(products: list[str], conversion: int, converted: bool) -> dict[str, Any]:
        by_category = {"conversion": conversion} if conversion else {}
        return {"duration_seconds": 60.0, "engaged_seconds": 60.0, "products": products,
                "events_by_category": by_category, "converted": converted}  # fmt: skip

    sessions = [
        session(["p1"], 2, True),  # viewed p1, added, ordered: every stage
        session([], 1, True),  # an order alone (a purchase-only export): only "sessions"
        session([], 1, True),
        session(["p2"], 0, False),  # viewed, nothing more
    ]
    funnel = _session_figures(sessions, [])[0]
    assert funnel["data"][0]["x"] == [4, 2, 1, 1]
    # The third stage is the taxonomy's conversion events: a cart add is engagement, so
    # the label named "cart" over a count without the carts (an outside pass found it).
    assert funnel["data"][0]["y"][2] == "took a conversion step (checkout, payment, order)"
    # A session's products are its views, clicks and cart adds: a session that only added
    # one (an add from a list page) is in the second stage too, so "viewed" alone misled.
    assert funnel["data"][0]["y"][1] == "viewed, clicked or added a product"
    # The last stage is ``converted``: with sessions.conversion_events naming a sign-up,
    # it counts sign-ups, which "ordered" misnamed.
    assert funnel["data"][0]["y"][3] == "converted"
    assert funnel["title"] == (
        "Cart funnel, per session (0 cart-abandonment actions decided; 2 converted sessions"
        " with no product view, click or add are not in it)"
    )
    funnel = _session_figures(sessions[:1] + sessions[3:], [])[0]
    assert funnel["title"] == "Cart funnel, per session (0 cart-abandonment actions decided)"


def test_the_cart_funnel_counts_a_slower_arms_decision_once() -> None:
    """A slower experiment arm writes a placeholder at the soonest arm's instant (status
    suppressed, reason deferred) and its own action later: one decision, not two (a new
    user's report counted both)."""
    from audienceflow.flows.report import _session_figures

    actions = [
        {"action": "cart_abandonment", "status": "delivered"},  # the soonest arm's
        {"action": "cart_abandonment", "status": "suppressed", "suppressed_reason": "deferred"},
        {"action": "cart_abandonment", "status": "delivered"},  # the slower arm's, later
        {"action": "cart_abandonment", "status": "suppressed", "suppressed_reason": "cap"},
        {"action": "welcome", "status": "delivered"},
    ]
    funnel = _session_figures([], actions)[0]
    assert funnel["title"] == "Cart funnel, per session (3 cart-abandonment actions decided)"


def test_a_name_holding_a_comment_and_a_script_tag_leaves_the_charts_script_to_run(
    tmp_path: Path,
) -> None:
    # HTML parsing: inside a script element "<!--" then "<script" makes the next
    # "</script>" not end it, so the charts' own script became part of the JSON and never
    # ran. A segment name in the config is any printable text.
    out = tmp_path / "out"
    out.mkdir()
    name = "x<!--<script>"
    (out / "summary.json").write_bytes(orjson.dumps({"counts": {}, "outputs": {}}))
    change = {"segment": name, "change": "enter", "at": "2024-01-01T00:00:00.000Z"}
    (out / "segment_changes.jsonl").write_bytes(orjson.dumps(change) + b"\n")
    page = write_report(out).read_text()
    start = page.index('id="report-data">') + len('id="report-data">')
    block = page[start : page.index("</script>", start)]
    assert "<" not in block  # no comment, no tag, no end tag can open in it
    assert embedded_data(page)["totals"]["segment_changes"] == {name: {"enter": 1, "exit": 0}}


@given(
    st.lists(
        st.tuples(st.sampled_from([0.1, 0.25, 0.5, 0.75]) | st.floats(0, 1), st.booleans()),
        max_size=40,
    )
)
def test_the_progressive_auc_is_rank_auc_of_every_prefix(pairs: list[tuple[float, bool]]) -> None:
    assert progressive_auc(pairs) == [rank_auc(pairs[: i + 1]) for i in range(len(pairs))]


def test_the_auc_line_sorts_the_sessions_once_not_once_a_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rank_auc of all sessions so far at each day's end sorted every prefix: days times
    # sessions (100k sessions over 90 days: 5.9 s of a report; 0.8 s in one pass).
    import builtins

    from audienceflow.flows import report

    sorted_items = [0]

    def counting(items: Any, **kw: Any) -> list[Any]:
        out = builtins.sorted(items, **kw)
        sorted_items[0] += len(out)
        return out

    monkeypatch.setattr(report, "sorted", counting, raising=False)
    days, per_day = 60, 50
    intent = [
        ((i * 7919 % 1000) / 1000, i % 3 == 0, f"2026-{1 + d // 28:02d}-{1 + d % 28:02d}T10:00Z")
        for d in range(days)
        for i in range(d * per_day, (d + 1) * per_day)
    ]
    figs = report._intent_figures(intent)
    assert len(figs[0]["data"][0]["x"]) == days  # one AUC a day
    assert sorted_items[0] <= 3 * len(intent)
