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
