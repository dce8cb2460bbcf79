"""The replay's last console line: how long it took, start-up included, and of it replaying."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from audienceflow.flows.replay import replay
from audienceflow.operators.settings import Settings

LINE = (
    b'{"type":"track","event":"Product Viewed","userId":"u1","messageId":"m1",'
    b'"timestamp":"2026-03-02T08:00:00Z","properties":{"product_id":"p1"}}\n'
)


def _last_line(tmp_path: Path, process_started: float | None) -> str:
    src = tmp_path / "in.jsonl"
    src.write_bytes(LINE)
    buf = io.StringIO()
    console = Console(file=buf, width=400, color_system=None)
    settings = Settings.load(None, environ={"AUDIENCEFLOW_PII_SALT": "x"})
    replay([str(src)], tmp_path / "out", settings, console=console,
           process_started=process_started)  # fmt: skip
    return buf.getvalue().strip().splitlines()[-1]


@pytest.mark.timeout(120)
def test_the_whole_time_counts_from_when_the_process_began(tmp_path: Path) -> None:
    # The figure said "including start-up" but began after the imports (~2 s of a 2.5 s
    # run): it is now counted from the process's start, the replay's share beside it.
    line = _last_line(tmp_path, time.perf_counter() - 100.0)
    found = re.search(r" in ([\d.]+)s including start-up, ([\d.]+)s of it replaying", line)
    assert found is not None, line
    whole, replaying = float(found.group(1)), float(found.group(2))
    assert whole >= 100.0 and replaying < whole - 99.0


@pytest.mark.timeout(120)
def test_without_a_start_time_only_the_replay_is_timed(tmp_path: Path) -> None:
    line = _last_line(tmp_path, None)
    assert "start-up" not in line and re.search(r" in [\d.]+s replaying \(", line), line


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("ev", "says"),
    [
        # A stream of other users than the truth file's (demo.yaml on one's own data).
        ({"users": 0, "adjusted_rand_index": None, "purity": None}, "index n/a, purity n/a"),
        # Clusters no better than chance: an index of 0.000, which printed as nan.
        ({"users": 40, "adjusted_rand_index": 0.0, "purity": 0.5}, "index 0.000, purity 0.500"),
    ],
)
def test_the_cluster_evaluation_line_says_n_a_for_no_score_and_0_for_zero(
    ev: dict[str, object], says: str
) -> None:
    from audienceflow.flows.summary import _render_models

    buf = io.StringIO()
    console = Console(file=buf, width=400, color_system=None)
    _render_models({"evaluation": {"truth": "t.json", **ev}}, console)
    line = buf.getvalue().strip().splitlines()[-1]
    assert line.startswith("Clusters vs planted archetypes (t.json, ") and says in line
    assert "nan" not in line


def _ev(user: str, name: str, minute: int, **props: object) -> bytes:
    at = f"2026-03-02T{8 + minute // 60:02d}:{minute % 60:02d}:00Z"
    return orjson.dumps(
        {"type": "track", "event": name, "userId": user, "messageId": f"{user}-{minute}",
         "timestamp": at, "properties": props}
    ) + b"\n"  # fmt: skip


@pytest.mark.timeout(120)
def test_markup_in_an_events_product_id_is_printed_as_text_and_the_summary_is_kept(
    tmp_path: Path,
) -> None:
    # The summary's example recommendations print the events' product ids and categories:
    # read as Rich markup, "[/]" in one raised at the end of the replay, whose summary.json
    # was then removed as that of a run that failed.
    src = tmp_path / "in.jsonl"
    item = {"product_id": "[/]p1", "category": "[bold]shoes"}
    src.write_bytes(
        _ev("u1", "Product Viewed", 0, **item)  # popular in the model epoch (1 h) before
        + _ev("u2", "Product Added", 120, product_id="p2")  # recommended at this cart's timer
        + _ev("u3", "Product Viewed", 160, product_id="p3")
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models: {recommendations: {enabled: true}}\n"
        "triggers: {cart_abandonment: {attach: [cart, recommendations], n: 3}}\n"
    )
    buf = io.StringIO()
    console = Console(file=buf, width=400, color_system=None)
    settings = Settings.load(cfg, environ={"AUDIENCEFLOW_PII_SALT": "x"})
    out = tmp_path / "o[/b]"
    replay([str(src)], out, settings, console=console)
    text = buf.getvalue()
    assert "  [/]p1  [bold]shoes  score " in text, text
    assert "category was '[bold]shoes'" in text  # a rule's why-none quotes values too
    assert f"Outputs in {out}" in text
    assert (out / "summary.json").is_file()
