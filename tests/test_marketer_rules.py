"""The marketer examples of the README (examples/marketer.yaml), replayed end to end.

Every expected value is worked out by hand from the stream below (times are minutes
after 2026-03-02T08:00Z); the default config's segments and triggers also run and
are filtered out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import at, ev, read_jsonl, write_stream

from audienceflow.flows.replay import replay
from audienceflow.operators import diagnostics
from audienceflow.operators.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "marketer.yaml"


def identify(user: str, minutes: float, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "timestamp": at(minutes),
        "messageId": f"{user}-{minutes}-identify",
        "traits": traits,
    }


def stream() -> list[dict[str, Any]]:
    """The events below, in time order (the file is read in that order)."""
    return sorted(_EVENTS, key=lambda e: str(e["timestamp"]))


_EVENTS: list[dict[str, Any]] = [
    # ann: the pricing page at 08:00, 09:00 and 18:00 → third view at 18:00 enters;
    # the first leaves the 24 h window at 08:00 the next day → exit then.
    ev("ann", 0, "Pricing", etype="page"),
    ev("ann", 60, "Pricing", etype="page"),
    ev("ann", 300, "Home", etype="page"),  # another page: not counted
    ev("ann", 600, "Pricing", etype="page"),
    # bob: only two pricing views → never enters.
    ev("bob", 0, "Pricing", etype="page"),
    ev("bob", 5, "Pricing", etype="page"),
    # cat: traits.plan 'pro' at 08:05 (enter), 'plus' at 08:20 (exit); the e-mail
    # trait is PII and must reach no output. Signs up for pro at 08:30 → offer.
    identify("cat", 5, plan="pro", email="cat@example.com"),
    identify("cat", 20, plan="plus"),
    ev("cat", 30, "Signed Up", plan="pro"),
    # dan signs up for the free plan: the offer's `when` is false.
    ev("dan", 30, "Signed Up", plan="free"),
    # eve: views at 08:00 and 08:10 → timer due 09:10; both views in (07:10, 09:10].
    ev("eve", 0, "Product Viewed", product_id="p1"),
    ev("eve", 10, "Product Viewed", product_id="p2"),
    # fay: views, then adds at 08:30 → browse timer cancelled.
    ev("fay", 0, "Product Viewed", product_id="p1"),
    ev("fay", 10, "Product Viewed", product_id="p2"),
    ev("fay", 30, "Product Added", product_id="p2", price=10),
    # gus: one view → fires at 09:00 with count 1: `when` false.
    ev("gus", 0, "Product Viewed", product_id="p1"),
    # hal: a view at 08:00 → fires 09:00 with count 1 (false); a view at 09:40 → due
    # 10:40, and the window (08:40, 10:40] holds only that one (false again).
    ev("hal", 0, "Product Viewed", product_id="p1"),
    ev("hal", 100, "Product Viewed", product_id="p1"),
    # zed moves stream time past every deadline above.
    ev("zed", 3 * 24 * 60, "Home", etype="page"),
]


def run(tmp_path: Path, config: Path) -> dict[str, Any]:
    src = write_stream(tmp_path / "in.jsonl", stream())  # type: ignore[arg-type]
    out = tmp_path / "out"
    summary = replay([str(src)], out, Settings.load(config, environ={}))
    files = {
        name: read_jsonl(out / f"{name}.jsonl")
        for name in ("segment_changes", "actions", "profiles", "sessions")
    }
    return {"summary": summary, "out": out, **files}


def changes(r: dict[str, Any], segment: str) -> list[tuple[str, str, str]]:
    return [
        (c["user_id"], c["change"], c["at"])
        for c in r["segment_changes"]
        if c["segment"] == segment
    ]


def actions(r: dict[str, Any], name: str) -> list[tuple[str, str, str]]:
    return [(a["user_id"], a["at"], a["status"]) for a in r["actions"] if a["action"] == name]


@pytest.mark.timeout(120)
def test_the_three_marketer_examples_give_the_hand_derived_outputs(tmp_path: Path) -> None:
    r = run(tmp_path, EXAMPLE)
    assert changes(r, "pricing_hunter") == [
        ("ann", "enter", "2026-03-02T18:00:00.000Z"),
        ("ann", "exit", "2026-03-03T08:00:00.000Z"),
    ]
    (enter, _) = [c for c in r["segment_changes"] if c["segment"] == "pricing_hunter"]
    assert enter["reason"]["values"] == {"count('Page Viewed', 24h, name == 'Pricing')": 3}
    assert changes(r, "pro_plan") == [
        ("cat", "enter", "2026-03-02T08:05:00.000Z"),
        ("cat", "exit", "2026-03-02T08:20:00.000Z"),
    ]
    assert actions(r, "pro_signup_offer") == [("cat", "2026-03-02T08:30:00.000Z", "delivered")]
    (offer,) = [a for a in r["actions"] if a["action"] == "pro_signup_offer"]
    assert offer["trigger"]["condition"] == {"properties.plan": "pro"}
    assert actions(r, "browse_abandonment") == [("eve", "2026-03-02T09:10:00.000Z", "delivered")]
    (browse,) = [a for a in r["actions"] if a["action"] == "browse_abandonment"]
    assert browse["trigger"]["condition"] == {"count('Product Viewed', 2h)": 2}

    rules = r["summary"]["rules"]["triggers"]
    # browse timer due for eve, gus and twice for hal (fay's was cancelled); false but eve's
    assert rules["browse_abandonment"]["due"] == 4
    assert rules["browse_abandonment"]["when_false"] == 3
    assert rules["pro_signup_offer"]["due"] == 2
    assert rules["pro_signup_offer"]["decisions"] == 1


@pytest.mark.timeout(120)
def test_a_pii_trait_reaches_no_output(tmp_path: Path) -> None:
    r = run(tmp_path, EXAMPLE)
    for f in r["out"].iterdir():
        assert b"cat@example.com" not in f.read_bytes(), f.name


@pytest.mark.timeout(120)
def test_the_summary_says_why_a_trigger_and_a_segment_never_fired(tmp_path: Path) -> None:
    cfg = tmp_path / "naive.yaml"
    cfg.write_text(
        "segments:\n"
        "  checkout_peeker:\n"
        "    when: count('Page Viewed', 1h, name == 'Checkout') >= 1\n"
        "triggers:\n"
        "  naive_browse:\n"
        "    type: timer\n"
        "    start_on: [Product Viewed]\n"
        "    cancel_on: [Product Added]\n"
        "    after: 1h\n"
        "    when: session_product_views >= 2\n"
    )
    r = run(tmp_path, cfg)
    rules = r["summary"]["rules"]
    # Sessions close 30 min after the last view, before any 1 h timer fires: eve (09:10),
    # gus (09:00), hal (09:00, 10:40) all see session_product_views 0.
    assert rules["triggers"]["naive_browse"]["why_none"] == (
        "`when` false at all 4 timer firings: session_product_views was 0"
    )
    # 9 users (ann, bob, cat, dan, eve, fay, gus, hal, zed), none saw a Checkout page.
    assert rules["segments"]["checkout_peeker"]["why_none"] == (
        "`when` never held; at the end of the stream, over 9 users:"
        " count('Page Viewed', 1h, name == 'Checkout') was 0"
    )
    # video_enthusiast (default config) is `per: category`: no event named a category,
    # so it was evaluated for no category of any of the 9 users.
    assert rules["segments"]["video_enthusiast"]["why_none"] == (
        "`when` never held; at the end of the stream, none of the 9 users had a"
        " category to evaluate it for (`per: category`)"
    )
    # A configured trigger with decisions has no explanation; all are listed.
    assert rules["triggers"]["cart_abandonment"]["why_none"] == ""
    assert set(rules["segments"]) >= {"checkout_peeker", "frequent_visitor", "video_enthusiast"}


def test_a_per_category_segment_without_categories_says_so_not_an_empty_list() -> None:
    d = {"enters": 0, "evaluated_users": 3, "per": "category", "values": {}}
    assert diagnostics.explain_segment(d) == (
        "`when` never held; at the end of the stream, none of the 3 users had a"
        " category to evaluate it for (`per: category`)"
    )
    d = {**d, "values": {"video_completions(category)": [0, 2]}}
    assert diagnostics.explain_segment(d) == (
        "`when` never held; at the end of the stream, over 3 users:"
        " video_completions(category) ranged 0 to 2"
    )


def test_the_readme_shows_the_example_config_as_it_is_tested() -> None:
    readme = (ROOT / "README.md").read_text()
    body = EXAMPLE.read_text().split("\n", 1)[1]  # without the file's own comment line
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert body in blocks
