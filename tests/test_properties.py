"""Invariants of the shard engine, checked with hypothesis on small generated streams.

Config: 30 min session timeout (default), 1 h maximum session length (so it is reached by
small streams), 60 s allowed lateness.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
from helpers import pure_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audienceflow.flows.partitions import make_ingest
from audienceflow.operators.engine import ShardEngine, ShardState, shard_of
from audienceflow.operators.privacy import Privacy
from audienceflow.operators.records import (
    Action,
    DeadLetter,
    Event,
    Filtered,
    SegmentChange,
    Session,
    ShardStats,
    Watermark,
    iso,
)
from audienceflow.operators.routing import OUT
from audienceflow.operators.settings import Settings
from audienceflow.operators.validate import Taxonomy, Validator

ENV = {
    "AUDIENCEFLOW_TIME__ALLOWED_LATENESS": "60s",
    "AUDIENCEFLOW_SESSIONS__MAX_LENGTH": "1h",
    "AUDIENCEFLOW_TIME__WATERMARK_QUORUM": "1",  # the partition's time is its latest event
}
CFG = Settings.load(environ=ENV)
TIMEOUT = 1800.0
MAX_LENGTH = 3600.0
LATENESS = 60.0
T0 = 1_772_438_400.0  # 2026-03-02T08:00:00Z
TAXONOMY = Taxonomy.default()

# Segments reading every kind of fact (orders, cart, affinity, sessions, other segments), so
# the shortcut of evaluating at an event only the rules it can affect is checked on all.
WIDE = Settings.load(
    environ={
        **ENV,
        **{
            f"AUDIENCEFLOW_SEGMENTS__{name.upper()}": value
            for name, value in {
                "buyer": "{when: 'total_orders >= 1 or total_revenue > 5'}",
                "carted": "{when: 'cart_items > 0 and cart_value >= 10'}",
                "fan": "{per: category, when: 'affinity(category) > 1.2'}",
                "shoe_lover": "{when: \"top_category() == 'shoes'\"}",
                "browsing": "{when: 'in_session and session_page_views >= 2'}",
                "busy": "{when: 'sessions(2h) >= 2 or events(1h) >= 3'}",
                "loyal": "{when: \"in_segment('buyer') and total_sessions > 2\"}",
            }.items()
        },
    }
)

# (type, name, properties): enough variety to move features, segments and the cart timer.
KINDS = [
    ("page", "Home", {"category": "shoes"}),
    ("page", "Home", {"category": "cooking"}),
    ("track", "Product Viewed", {"product_id": "p1", "category": "shoes"}),
    ("track", "Video Content Completed", {"category": "cooking"}),
    ("track", "Product Added", {"product_id": "p2", "category": "shoes", "price": 10}),
    ("track", "Order Completed", {"total": 10}),
    ("identify", "", {}),
]
# Gaps in seconds: mostly inside a session, some exactly at or around the timeout,
# some long enough to end sessions, let segments lapse or reach the maximum length.
GAPS = st.one_of(
    st.integers(0, 900),
    st.sampled_from([0, 1200, 1799, 1799, 1800, 1801, 3599, 3600, 3601]),
    st.integers(0, 30_000),
)
PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_config_is_what_the_properties_assume() -> None:
    assert CFG.sessions.timeout == TIMEOUT
    assert CFG.sessions.max_length == MAX_LENGTH
    assert CFG.lateness == LATENESS


@dataclass(frozen=True)
class Gen:
    """A generated event before it becomes an ``Event``."""

    user: str
    ts: float
    kind: int
    mid: str

    def event(self) -> Event:
        etype, name, props = KINDS[self.kind]
        return Event(
            self.mid,
            self.user,
            None,
            etype,
            name,
            self.ts,
            TAXONOMY.category(etype, name),
            dict(props),
            position=self.mid,
        )


@st.composite
def streams(draw: st.DrawFn, max_users: int = 3, max_events: int = 12) -> list[Gen]:
    """A few users' events, sorted in time per user, interleaved across users in time order
    give or take a jitter, sometimes far beyond the allowed lateness (so some arrive late)."""
    n_users = draw(st.integers(1, max_users))
    per_user: dict[str, list[Gen]] = {}
    for u in range(n_users):
        user = f"u{u}"
        ts = T0 + draw(st.integers(0, 3600))
        evs = []
        for i in range(draw(st.integers(1, max_events))):
            if i:
                ts += draw(GAPS)
            # Repeating the previous kind makes runs (3 videos, many pages) likely.
            if i == 0 or draw(st.booleans()):
                kind = draw(st.integers(0, len(KINDS) - 1))
            else:
                kind = evs[-1].kind
            evs.append(Gen(user, float(ts), kind, f"{user}-{i}"))
        per_user[user] = evs
    everything = [g for evs in per_user.values() for g in evs]
    jitter = draw(
        st.lists(
            st.integers(0, int(2 * LATENESS)) | st.sampled_from([600, 5000]),
            min_size=len(everything),
            max_size=len(everything),
        )
    )
    slots = sorted(range(len(everything)), key=lambda i: (everything[i].ts + jitter[i], i))
    # Give each user's arrival slots to that user's events in time order.
    queues = {u: list(evs) for u, evs in per_user.items()}
    return [queues[everything[i].user].pop(0) for i in slots]


def batches(draw: st.DrawFn, n: int) -> list[int]:
    """Cut points splitting ``n`` items into arrival batches."""
    cuts = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=4, unique=True))
    return sorted(c for c in cuts if c < n)


def run(stream: list[Event], cuts: list[int] | None = None, cfg: Settings = CFG) -> list[Any]:
    """One input partition's ingest, then the shard, fed in batches cut at ``cuts``."""
    ingest = make_ingest(cfg, "in", None, live=False)
    keyed = ingest.feed_events(stream) + ingest.end()
    out: list[Any] = [v for k, v in keyed if k == OUT]
    items = [v for k, v in keyed if k != OUT]
    eng = ShardEngine(cfg, ShardState("shard-000"), partitions=["in"])
    bounds = [0, *(c for c in (cuts or []) if c < len(items)), len(items)]
    for a, b in pairwise(bounds):
        out += eng.on_items(items[a:b])
    out += eng.finish()
    return out


def model_accepted(stream: list[Gen]) -> list[Gen]:
    """Events the engine must process: not behind the latest accepted time less lateness."""
    max_seen = float("-inf")
    accepted = []
    for g in stream:
        if g.ts < max_seen - LATENESS:
            continue
        max_seen = max(max_seen, g.ts)
        accepted.append(g)
    return accepted


def model_sessions(ts: list[float]) -> list[tuple[float, float, int]]:
    """(start, end, events) per session of sorted timestamps: a new session starts at a gap
    of at least the timeout or once the session has lasted the maximum length."""
    out: list[list[float]] = []
    for t in ts:
        if out and t - out[-1][1] < TIMEOUT and t - out[-1][0] < MAX_LENGTH:
            out[-1][1] = t
            out[-1][2] += 1
        else:
            out.append([t, t, 1])
    return [(s, e, int(n)) for s, e, n in out]


@PROPS
@given(streams(), st.data())
def test_every_processed_event_lands_in_exactly_one_session_as_the_model_cuts_them(
    gens: list[Gen],
    data: st.DataObject,
) -> None:
    cuts = batches(data.draw, len(gens))
    out = run([g.event() for g in gens], cuts)
    accepted = model_accepted(gens)
    # a late event's dead letter carries the event as a JSON line
    late = {orjson.loads(d.raw)["messageId"] for d in out if isinstance(d, DeadLetter)}
    assert all(d.reason == "late_event" for d in out if isinstance(d, DeadLetter))
    assert late == {g.mid for g in gens} - {g.mid for g in accepted}

    (stats,) = [o for o in out if isinstance(o, ShardStats)]
    assert stats.processed == len(accepted)
    sessions = [o for o in out if isinstance(o, Session)]
    non_identify = [g for g in accepted if KINDS[g.kind][0] != "identify"]
    assert sum(s.events for s in sessions) == len(non_identify)

    by_user: dict[str, list[Session]] = defaultdict(list)
    for s in sessions:
        by_user[s.user_id].append(s)
    for user in {g.user for g in gens}:
        mine = sorted(by_user[user], key=lambda s: s.start)
        for prev, nxt in pairwise(mine):
            assert nxt.start >= prev.end
        assert len({s.session_id for s in mine}) == len(mine)
        expected = model_sessions([g.ts for g in non_identify if g.user == user])
        assert [(s.start, s.end, s.events) for s in mine] == expected
        for s in mine:
            assert s.end - s.start < MAX_LENGTH
            assert s.end_reason in ("inactivity", "max_length")


# --- accounting ---------------------------------------------------------------------------

BAD_LINES = [
    b"{not json",
    b"[1, 2]",
    b'{"type":"alias","userId":"u0","timestamp":"2026-03-02T08:00:00Z"}',
    b'{"type":"page","timestamp":"2026-03-02T08:00:00Z"}',
    b'{"type":"page","userId":"u0","timestamp":"2026-03-02T08:00:00"}',
    b'{"type":"track","userId":"u0","timestamp":"2026-03-02T08:00:00Z"}',
]


def raw_line(g: Gen, consent: bool = True, ts: float | None = None) -> bytes:
    etype, name, props = KINDS[g.kind]
    obj: dict[str, Any] = {
        "type": etype,
        "userId": g.user,
        "messageId": g.mid,
        "timestamp": iso(g.ts if ts is None else ts),
        "properties": {**props, "email": f"{g.user}@example.com"},
    }
    obj["event" if etype == "track" else "name"] = name
    if not consent:
        obj["context"] = {"consent": {"categoryPreferences": {"personalization": False}}}
    return orjson.dumps(obj)


@st.composite
def dirty_streams(draw: st.DrawFn) -> list[bytes]:
    """Valid lines mixed with exact and same-id duplicates, very late events, consent
    withheld and invalid lines."""
    lines: list[bytes] = []
    for g in draw(streams()):
        what = draw(st.sampled_from(["ok"] * 6 + ["dup", "dup_other", "late", "consent", "bad"]))
        if what == "consent":
            lines.append(raw_line(g, consent=False))
        elif what == "late":
            lines.append(raw_line(g, ts=g.ts - 4 * 3600))
        elif what == "bad":
            lines.append(draw(st.sampled_from(BAD_LINES)))
        else:
            lines.append(raw_line(g))
        if what == "dup":
            lines.append(lines[-1])
        elif what == "dup_other":
            # same messageId, another event of the same user later on
            lines.append(raw_line(Gen(g.user, g.ts + 30, (g.kind + 1) % len(KINDS), g.mid)))
    return lines


def run_sharded(lines: list[bytes], shards: int) -> list[Any]:
    """Validator, privacy, then events to their shard and stream-time ticks to every shard."""
    validate = Validator(CFG.taxonomy, CFG.consent_path)
    privacy = Privacy(CFG.pii_fields, CFG.pii_mode, "salt")
    engines = {
        f"shard-{i:03d}": ShardEngine(CFG, ShardState(f"shard-{i:03d}"), partitions=["in"])
        for i in range(shards)
    }
    out: list[Any] = []
    max_ts = float("-inf")
    for n, raw in enumerate(lines):
        item = privacy(validate(raw, f"in.jsonl:{n + 1}"))
        if not isinstance(item, Event):
            out.append(item)
            continue
        if item.ts < max_ts - CFG.lateness:  # what a one-partition ingest dead-letters
            out.append(DeadLetter("late_event", "", item.position, ""))
            continue
        out += engines[shard_of(item.user_id, shards)].on_items([item])
        if item.ts > max_ts:
            max_ts = item.ts
            for eng in engines.values():
                out += eng.on_items([Watermark("in", max_ts - CFG.lateness)])
    for eng in engines.values():
        out += eng.on_items([Watermark("in", max_ts, idle=True)])
        out += eng.finish()
    return out


@PROPS
@given(dirty_streams(), st.integers(1, 3))
def test_every_line_is_processed_dead_lettered_or_filtered_exactly_once(
    lines: list[bytes],
    shards: int,
) -> None:
    out = run_sharded(lines, shards)
    stats = [o for o in out if isinstance(o, ShardStats)]
    assert len(stats) == shards
    processed = sum(s.processed for s in stats)
    dead = [o for o in out if isinstance(o, DeadLetter)]
    filtered = [o for o in out if isinstance(o, Filtered)]
    assert len(lines) == processed + len(dead) + len(filtered)
    # The shards' own counters agree with the records they emitted.
    engine_dead = [d for d in dead if d.stage != "validate"]
    engine_filtered = [f for f in filtered if f.reason != "consent_withheld"]
    assert sum(n for s in stats for n in s.dead_lettered.values()) == len(engine_dead)
    assert sum(n for s in stats for n in s.filtered.values()) == len(engine_filtered)
    # Each line is accounted once: positions of dead letters and filtered records are unique.
    positions = [d.position for d in dead] + [f.position for f in filtered]
    assert len(positions) == len(set(positions))
    # No email reaches any output.
    for o in out:
        if hasattr(o, "to_json"):
            assert b"@example.com" not in orjson.dumps(o.to_json())


# --- determinism --------------------------------------------------------------------------


def as_comparable(out: list[Any]) -> list[Any]:
    return [(type(o).__name__, o.to_json() if hasattr(o, "to_json") else o) for o in out]


@PROPS
@given(streams())
def test_the_same_events_through_two_fresh_engines_give_equal_outputs(gens: list[Gen]) -> None:
    a = run([g.event() for g in gens])
    b = run([g.event() for g in gens])
    assert as_comparable(a) == as_comparable(b)
    assert a == b


def record_key(o: Any) -> bytes:
    return orjson.dumps([type(o).__name__, o.to_json()], option=orjson.OPT_SORT_KEYS)


@PROPS
@given(streams(), st.data())
def test_batching_the_input_does_not_change_what_is_output(
    gens: list[Gen], data: st.DataObject
) -> None:
    cuts = batches(data.draw, len(gens))
    one = run([g.event() for g in gens])
    many = run([g.event() for g in gens], cuts)
    keep = (Session, SegmentChange, DeadLetter)
    assert sorted(record_key(o) for o in one if isinstance(o, keep)) == sorted(
        record_key(o) for o in many if isinstance(o, keep)
    )


_SUBPROCESS = """
import sys, orjson
sys.path.insert(0, {tests!r})
import test_properties as t
from hypothesis import strategies as st
import random
rng = random.Random(7)
stream = []
for u in range(4):
    ts = t.T0 + rng.randrange(3600)
    for i in range(15):
        ts += rng.choice([0, 60, 300, 1800, 3600, 9000])
        stream.append(t.Gen(f"user-{{u}}", float(ts), rng.randrange(len(t.KINDS)), f"{{u}}-{{i}}"))
stream.sort(key=lambda g: (g.ts, g.mid))
out = t.run([g.event() for g in stream])
sys.stdout.buffer.write(b"\\n".join(orjson.dumps(o.to_json(), option=orjson.OPT_SORT_KEYS)
                                    for o in out if hasattr(o, "to_json")))
"""


def test_outputs_do_not_depend_on_the_string_hash_seed() -> None:
    code = _SUBPROCESS.format(tests=os.path.dirname(__file__))
    results = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, check=True, timeout=60
        )
        results.append(proc.stdout)
    assert results[0] == results[1]
    assert results[0].count(b'"session_id"') > 4


# --- segments -----------------------------------------------------------------------------


@PROPS
@given(streams(max_events=15), st.data(), st.booleans())
def test_segment_changes_alternate_enter_exit_starting_with_enter_in_time_order(
    gens: list[Gen],
    data: st.DataObject,
    wide: bool,
) -> None:
    out = run([g.event() for g in gens], batches(data.draw, len(gens)), WIDE if wide else CFG)
    by_user: dict[str, list[SegmentChange]] = defaultdict(list)
    for o in out:
        if isinstance(o, SegmentChange):
            by_user[o.user_id].append(o)
    for changes in by_user.values():
        ats = [c.at for c in changes]
        assert ats == sorted(ats)
        per_segment: dict[str, list[str]] = defaultdict(list)
        for c in changes:
            per_segment[c.segment].append(c.change)
        for seq in per_segment.values():
            assert seq == ["enter", "exit"] * (len(seq) // 2) + ["enter"] * (len(seq) % 2)


def test_the_wide_config_has_the_extra_segments() -> None:
    assert {"buyer", "carted", "fan", "shoe_lover", "browsing", "busy", "loyal"} <= {
        s.name for s in WIDE.segments
    }


class FullEvaluation(ShardEngine):
    """Reference engine: every segment rule for every category at every evaluation."""

    def _segments(
        self,
        user: Any,
        at: float,
        out: list[Any],
        cands: list[Any],
        *_: Any,
        decide: bool = True,
        **__: Any,
    ) -> None:
        super()._segments(user, at, out, cands, decide=decide)


@pure_only  # its reference subclasses ShardEngine, a native class compiled
@PROPS
@given(streams(max_events=15), st.sampled_from([CFG, WIDE]))
def test_segment_changes_equal_those_of_evaluating_every_rule_at_every_event(
    gens: list[Gen],
    cfg: Settings,
) -> None:
    eng = ShardEngine(cfg, ShardState("shard-000"))
    fast = eng.on_items([g.event() for g in gens]) + eng.finish()
    ref = FullEvaluation(cfg, ShardState("shard-000"))
    slow = ref.on_items([g.event() for g in gens]) + ref.finish()
    # At finish() each user's remaining deadlines fire together, so the interleaving of
    # users may differ; what is output, and each user's own order, may not.
    keep = (Session, SegmentChange, Action, DeadLetter)
    assert sorted(record_key(o) for o in fast if isinstance(o, keep)) == sorted(
        record_key(o) for o in slow if isinstance(o, keep)
    )
    mine = (Session, SegmentChange, Action)
    for user in {g.user for g in gens}:
        assert [record_key(o) for o in fast if isinstance(o, mine) and o.user_id == user] == [
            record_key(o) for o in slow if isinstance(o, mine) and o.user_id == user
        ]
