"""One contract over every registered rule function and variable.

For each registry entry, its example rule runs as a segment over random event
streams; at every event and at every instant where a window of the rule can lapse
(and just after), the segment's membership kept incrementally by the engine (only
the rules an event can affect are evaluated, exits come from reported change
times) must equal a full evaluation of the rule from scratch at that instant. Then
per-user state stays within its configured bounds on a long stream.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audienceflow.operators import registry
from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, Watermark
from audienceflow.operators.rules import Context, compile_rule
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import UserState

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
ENTRIES = sorted(registry.REGISTRY.values(), key=lambda e: e.name)
SEGMENT_ENTRIES = [e for e in ENTRIES if e.where == "any"]
# Besides each entry's README example, probes with thresholds random streams reach often.
PROBES = {
    "count": [
        "count('Page Viewed', 1h, name == 'Pricing') >= 1",
        "count(['Product Viewed', 'Product Added'], 2h, properties.category == 'shoes') >= 2",
    ],
    "since": [
        "since('Product Added') > 1h",
        "since('Product Added') <= 1h",
        "30m <= since('Pricing')",
        "since('Page Viewed') < 30m",
    ],
    "sequence": [
        "sequence('Product Viewed', 'Product Added', within=1h)",
        "not sequence('Pricing', ['Product Viewed', 'Screen Viewed'], 'Order Completed',"
        " within=2h)",
    ],
    "distinct": ["distinct(properties.category, 2h) >= 2", "distinct(name, 1h) >= 2"],
    "sessions": ["sessions(2h) >= 2"],
    "events": ["events(1h) >= 2"],
    "total": ["total('cart_adds', 2h) >= 1", "total('orders', 1h) >= 1"],
    "active_within": ["active_within(30m)"],
    "affinity": ["affinity(category) > 1"],
    "video_completions": ["video_completions(category) >= 1"],
    "top_category": ["top_category() == 'shoes'"],
    "in_segment": ["in_segment('recent_engager') and events(1h) >= 2"],
    "session_events": ["session_events >= 2"],
    "session_page_views": ["session_page_views >= 1"],
    "session_screen_views": ["session_screen_views >= 1"],
    "session_seconds": ["session_seconds > 10m"],
    "session_engaged_seconds": ["session_engaged_seconds > 10m"],
    "session_max_page_seconds": ["session_max_page_seconds > 60"],
    "session_cart_adds": ["session_cart_adds >= 1"],
    "session_product_views": ["session_product_views >= 2"],
    "in_session": ["in_session"],
    "total_events": ["total_events >= 3"],
    "total_sessions": ["total_sessions >= 2"],
    "total_orders": ["total_orders >= 1"],
    "total_revenue": ["total_revenue > 0"],
    "cart_items": ["cart_items > 0", "cart_items >= 2"],
    "cart_value": ["cart_value >= 10"],
    "device": ["device == 'mobile'"],
    "channel": ["channel == ''"],
    "locale": ["locale == ''"],
    "intent_score": ["intent_score >= 0"],
    "cluster": ["cluster == -1"],
    "category": ["category == 'shoes' and affinity(category) > 0"],
    "traits": ["traits.plan == 'pro'"],
    "group": ["group.plan == 'enterprise'", "group.employees >= 100"],
}
CASES = [
    (e, probe) for e in SEGMENT_ENTRIES for probe in sorted({e.example, *PROBES.get(e.name, [])})
]

KINDS: list[tuple[str, str, dict[str, Any]]] = [
    ("page", "Pricing", {}),
    ("page", "Home", {"category": "shoes"}),
    ("screen", "Feed", {}),
    ("track", "Product Viewed", {"category": "shoes", "product_id": "p1"}),
    ("track", "Product Viewed", {"category": "bags", "product_id": "p2"}),
    ("track", "Product Added", {"category": "shoes", "product_id": "p1", "price": 10.0}),
    ("track", "Product Added", {"price": 5.0}),
    ("track", "Product Removed", {}),
    ("track", "Order Completed", {"total": 15.0}),
    # Segment's order: its categories only in products[] (two, one, or none usable).
    (
        "track",
        "Order Completed",
        {
            "total": 20.0,
            "products": [
                {"product_id": "p1", "category": "shoes"},
                {"product_id": "p2", "category": "bags"},
            ],
        },
    ),
    ("track", "Order Completed", {"products": [{"product_id": "p4", "category": "garden"}]}),
    ("track", "Order Completed", {"products": [{"product_id": "p5", "category": ""}, "p6"]}),
    ("track", "Video Content Completed", {"category": "cooking"}),
    ("track", "Signed Up", {"plan": "pro"}),
    ("track", "Cart Viewed", {"products": [{"product_id": "p3", "price": 2.0}]}),
    ("identify", "", {"plan": "pro"}),
    ("identify", "", {"plan": "free"}),
    ("group", "", {"plan": "enterprise", "employees": 500}),
    ("group", "", {"plan": "free"}),
]
GAPS = [0.0, 1.0, 60.0, 300.0, 600.0, 1200.0, 1799.0, 1800.0, 3599.0, 3600.0, 3601.0, 86400.0]
DEVICES = ["mobile", "desktop", None]


def make_event(i: int, ts: float, kind: int, device: int) -> Event:
    etype, name, props = KINDS[kind]
    identify = etype == "identify" or etype == "group"  # a profile update, no activity
    return Event(
        f"m{i}",
        "ann",
        None,
        etype,
        name,
        ts,
        "identity" if identify else "other",
        {} if identify else dict(props),
        device=DEVICES[device],
        traits=dict(props) if identify else None,
    )


streams = st.lists(
    st.tuples(st.sampled_from(GAPS), st.integers(0, len(KINDS) - 1), st.integers(0, 2)),
    min_size=1,
    max_size=10,
)


def probe_config(tmp: Path, source: str, extra: str = "") -> Settings:
    per = "    per: category\n" if "(category)" in source or "category ==" in source else ""
    when = source.replace("'", "''")
    cfg = tmp / "probe.yaml"
    cfg.write_text(
        "time: {allowed_lateness: 0s}\n"
        f"state: {{max_window_events: 1000{extra}}}\n"
        f"segments:\n  probe:\n{per}    when: '{when}'\n"
    )
    return Settings.load(cfg, environ={})


def durations(source: str) -> list[float]:
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
    found = re.findall(r"\b(\d+(?:\.\d+)?)(ms|s|m|h|d|w)\b", source)
    return [float(n) * unit[u] for n, u in found] + [1800.0, 86400.0]


def sample_times(events: list[Event], source: str) -> list[float]:
    """Every event time, and each instant a window or session deadline can lapse."""
    times = set()
    for ev in events:
        times.add(ev.ts)
        for d in durations(source):
            for t in (ev.ts + d, math.nextafter(ev.ts + d, math.inf), ev.ts + d - 0.5):
                times.add(t)
    last = max(ev.ts for ev in events)
    return sorted(t for t in times if t <= last + 2 * 86400.0)


def full_truth(engine: ShardEngine, user: UserState, at: float) -> dict[str, bool]:
    """The probe rule evaluated from scratch for every segment name it could hold."""
    (rule,) = [r for r in engine.cfg.segments if r.name == "probe"]
    ctx = Context(user, at, engine.cfg.features.affinity_half_life)
    out = {}
    for seg in rule.members(user):
        if rule.per is not None:
            ctx.category = seg[len("probe:") :]
        out[seg] = rule.rule.holds(ctx)
    return out


def stream_events(spec: list[tuple[float, int, int]]) -> list[Event]:
    """ann's events of a drawn ``streams`` value, each its gap after the one before."""
    ts = T0
    events = []
    for i, (gap, kind, device) in enumerate(spec):
        ts += gap
        events.append(make_event(i, ts, kind, device))
    return events


def step(engine: ShardEngine, pending: list[Event], t: float) -> None:
    """Feed ``engine`` the ``pending`` events up to ``t`` (taking them), then a
    watermark that ends instant ``t`` (``past``)."""
    batch: list[Event | Watermark] = []
    while pending and pending[0].ts <= t:
        batch.append(pending.pop(0))
    engine.on_items([*batch, Watermark("p", past(t))])


def past(t: float) -> float:
    """A watermark that ends instant ``t``: an event at the watermark is not late, so a
    segment re-check at ``t`` waits for the instant's events until one passes it."""
    return math.nextafter(t, math.inf)


def test_every_entry_is_declared_completely_and_its_example_compiles() -> None:
    assert {"count", "since", "sequence", "distinct", "traits", "group", "properties"} <= set(
        registry.REGISTRY
    )
    for e in ENTRIES:
        assert e.returns in registry.RETURNS and e.changes_on in registry.CHANGE_KINDS
        assert e.incremental and e.example
        per = "category" if "(category)" in e.example else None
        scope = "event" if e.where == "event" else "any"
        rule = compile_rule("x", e.example, per, scope)
        assert e.name in rule.names, e.name


def test_the_readme_table_is_the_registry() -> None:
    assert registry.markdown_table() in (ROOT / "README.md").read_text()


def test_every_entry_has_a_contract_case() -> None:
    assert {e.name for e, _ in CASES} == {e.name for e in SEGMENT_ENTRIES}
    for e, probe in CASES:
        per = "category" if "(category)" in probe or "category ==" in probe else None
        assert e.name in compile_rule("x", probe, per).names, probe


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("entry", "probe"), CASES, ids=lambda c: getattr(c, "name", str(c)))
def test_incremental_membership_equals_full_evaluation_at_every_instant(
    entry: registry.Entry, probe: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = probe_config(tmp_path_factory.mktemp(entry.name), probe)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(streams)
    def check(spec: list[tuple[float, int, int]]) -> None:
        events = stream_events(spec)
        engine = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
        pending = list(events)
        for t in sample_times(events, probe):
            step(engine, pending, t)
            user = engine.state.users.get("ann")
            if user is None:
                continue
            for seg, holds in full_truth(engine, user, t).items():
                inside = seg in user.segments
                assert inside == holds, (seg, t - T0, probe)

    check()


# --- bounded state ----------------------------------------------------------------------


def long_stream(n: int) -> list[Event]:
    """One user, many categories, products and values: enough to hit every bound."""
    out = []
    for i in range(n):
        kind = i % 6
        ts = T0 + i * 30.0
        cat = f"cat{i % 97}"
        if kind == 0:
            props = {"category": cat, "product_id": f"p{i}"}
            out.append(Event(f"m{i}", "ann", None, "track", "Product Viewed", ts, "other", props))
        elif kind == 1:
            props = {"category": cat, "product_id": f"p{i}", "price": 1.0}
            out.append(Event(f"m{i}", "ann", None, "track", "Product Added", ts, "other", props))
        elif kind == 2:
            props = {"category": cat}
            out.append(
                Event(f"m{i}", "ann", None, "track", "Video Content Completed", ts, "o", props)
            )
        elif kind == 3:
            out.append(Event(f"m{i}", "ann", None, "page", "Pricing", ts, "navigation", {}))
        elif kind == 4:
            traits = {f"t{i % 13}": "x", "plan": "pro"}
            etype = "group" if i % 12 == 10 else "identify"  # an account's traits too
            out.append(Event(f"m{i}", "ann", None, etype, "", ts, "identity", {}, traits=traits))
        else:
            out.append(Event(f"m{i}", "ann", None, "track", "Signed Up", ts, "other", {}))
    return out


BOUNDED = (
    ", max_categories_per_user: 5, max_distinct_values: 4, max_cart_lines: 3, max_traits: 2,"
    " max_segments_per_category_rule: 2"
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("entry", SEGMENT_ENTRIES, ids=lambda e: e.name)
def test_state_per_user_stays_within_its_bounds(
    entry: registry.Entry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = probe_config(tmp_path_factory.mktemp(entry.name), entry.example, BOUNDED)
    lim = cfg.features.limits
    assert (lim.categories, lim.distinct_values, lim.cart_lines, lim.traits) == (5, 4, 3, 2)
    engine = ShardEngine(cfg, ShardState("shard-000"), partitions=["p"])
    events = long_stream(3000)
    engine.on_items([*events, Watermark("p", events[-1].ts)])
    user = engine.state.users["ann"]
    assert len(user.affinity) <= 5 and len(user.video_completions or ()) <= 5
    assert len(user.cart) <= 3
    assert len(user.history) <= cfg.sessions.history_max
    assert len(user.traits or ()) <= 2
    for key, track in (user.tracks or {}).items():
        cap = 4 if key.startswith("distinct:") else 1000
        assert len(track) <= cap, key
    assert len([s for s in user.segments if s.startswith("probe:")]) <= 2
    # Its declared range (``Entry.value_range``, read at load to reject rules that can
    # never hold) holds of every value it took, at the bounds configured here.
    span = registry.value_range(entry, lim)
    if span is not None:
        (rule,) = [r for r in cfg.segments if r.name == "probe"]
        ctx = Context(user, events[-1].ts, cfg.features.affinity_half_life)
        for seg in rule.members(user):
            if rule.per is not None:
                ctx.category = seg[len("probe:") :]
            for label, value in rule.rule.explain(ctx)["values"].items():
                if label == entry.name or label.startswith(entry.name + "("):
                    assert span[0] <= value <= span[1], (label, value, span)
