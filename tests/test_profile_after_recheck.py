"""A segment left by time alone (a re-check, no event of the user) rewrites the live profile.

The worker writes a user's Redis profile when the engine marks the user touched. An
event, a session close or a merge did; a re-check's exit did not, so a user who went
quiet kept ``recent_engager`` in Redis (until the next event, or the key's TTL) after
the ``exit`` record was published.
"""

from __future__ import annotations

from audienceflow.operators.engine import ShardEngine, ShardState
from audienceflow.operators.records import Event, ProfileUpdate, SegmentChange, Watermark
from audienceflow.operators.settings import Settings

T0 = 1_772_000_000.0


def test_a_recheck_exit_writes_the_profile_without_the_segment() -> None:
    engine = ShardEngine(Settings.load(environ={}), ShardState("shard-000"), partitions=["p"],
                         emit_profiles=True)  # fmt: skip
    page = Event("m1", "u0", None, "page", "Home", T0, "navigation", {})
    out = engine.on_items([page, Watermark("p", T0 + 300)])
    assert [p.fields["segments"] for p in out if type(p) is ProfileUpdate] == [["recent_engager"]]
    out = engine.on_items([Watermark("p", T0 + 2400)])  # the session closes at 30 min
    assert [p.fields["segments"] for p in out if type(p) is ProfileUpdate] == [["recent_engager"]]
    out = engine.on_items([Watermark("p", T0 + 7200)])  # active_within(1h) lapses at 1 h
    exits = [(c.segment, c.change) for c in out if type(c) is SegmentChange]
    assert exits == [("recent_engager", "exit")]
    assert [p.fields["segments"] for p in out if type(p) is ProfileUpdate] == [[]]


def test_events_applied_and_evicted_by_one_jump_of_stream_time_are_written_first() -> None:
    """Live, a quiet input lets stream time follow the wall clock: at the end of a
    backfill older than ``history_window`` one jump applies the events still held and
    evicts their users. Their profile was then never written with those events (the
    session record had them, Redis did not)."""
    engine = ShardEngine(Settings.load(environ={}), ShardState("shard-000"), partitions=["p"],
                         emit_profiles=True)  # fmt: skip
    first = Event("m1", "u0", None, "page", "Home", T0, "navigation", {})
    out = engine.on_items([first, Watermark("p", T0 + 300)])
    assert [p.fields["events"] for p in out if type(p) is ProfileUpdate] == [1]
    held = Event("m2", "u0", None, "page", "Home", T0 + 600, "navigation", {})
    out = engine.on_items([held, Watermark("p", T0 + 310)])  # ahead of stream time: held
    assert not [p for p in out if type(p) is ProfileUpdate]
    out = engine.on_items([Watermark("p", T0 + 40 * 86400)])  # past the 30 d eviction
    assert "u0" not in engine.state.users
    assert [p.fields["events"] for p in out if type(p) is ProfileUpdate] == [2]
