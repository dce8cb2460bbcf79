"""``identity._joined_since`` counts the anonymous ids joined after a cutoff (a loop, not
a generator per link): the limit's window boundary stays where it was."""

from __future__ import annotations

import math

from audienceflow.operators.identity import IdentityGraph, IdentitySpec, _joined_since
from audienceflow.operators.state import INF

# --- identity._joined_since ------------------------------------------------------------


def test_joined_since_counts_only_ids_joined_after_the_cutoff() -> None:
    anonymous = [(10.0, "a"), (20.0, "b"), (20.0, "c"), (math.nextafter(20.0, INF), "d")]
    assert _joined_since(anonymous, 20.0) == 1
    assert _joined_since(anonymous, math.nextafter(20.0, -INF)) == 3
    assert _joined_since(anonymous, 9.0) == 4
    assert _joined_since([], 0.0) == 0


def test_an_anonymous_id_joined_exactly_a_window_ago_no_longer_counts() -> None:
    spec = IdentitySpec(anonymous_ids=1, anonymous_window=100.0)
    g = IdentityGraph(spec)
    g.resolve("u1", "a1", None, 0.0, "m1")
    assert g.resolve("u1", "a2", None, 100.0, "m2").change.kind == "merge"  # a1 left it
    h = IdentityGraph(spec)
    h.resolve("u1", "a1", None, 0.0, "m1")
    refused = h.resolve("u1", "a2", None, math.nextafter(100.0, -INF), "m2").change
    assert refused.kind == "rejected_merge" and refused.reason == "anonymous_id_limit"
