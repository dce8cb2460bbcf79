"""``identity._joined_since`` counts the anonymous ids joined after a cutoff (a loop, not
a generator per link): the limit's window boundary stays where it was."""

from __future__ import annotations

import contextlib
import copy
import math

from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- settled: an event with one identifier, ``blocked`` and ``_find`` inline -----------


def _settled_plain(graph: IdentityGraph, user_id: str | None, anon: str | None) -> str | None:
    """``settled``'s one-identifier case as it was: ``blocked`` and ``_find`` called."""
    ident = user_id if user_id is not None else anon
    assert ident is not None
    if graph.blocked(ident):
        return None
    root = graph._find(("u:" if user_id is not None else "a:") + ident)
    return ident if root is None else graph.comps[root].canonical


IDENTS = (
    ["u1", "a1", "null", "user-000000001", "anon-000000001", "anon-000000002",
     "anon-000000003", " anon-00000001", "anon-00000001\t", "undefined", "blocked-0000001",
     "null          ", "   undefined"]
)  # fmt: skip
LONG = st.sampled_from(IDENTS)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(LONG, LONG), min_size=0, max_size=20),
    st.sampled_from([(), ("blocked-.*",)]),
)
def test_settled_of_one_identifier_answers_as_blocked_and_find_do(
    links: list[tuple[str, str]], patterns: tuple[str, ...]
) -> None:
    # Limits that refuse nothing, so profiles grow and ids point to roots through others.
    spec = IdentitySpec(max_user_ids=20, anonymous_ids=20, blocked_patterns=patterns)
    graph = IdentityGraph(spec)
    for i, (user_id, anon) in enumerate(links):
        with contextlib.suppress(ValueError):  # a blocked value: nothing linked
            graph.resolve(user_id, anon, None, float(i), f"m{i}")
    for ident in IDENTS:
        for user_id, anon in ((ident, None), (None, ident)):
            probe = copy.deepcopy(graph)
            assert probe.settled(user_id, anon, None) == _settled_plain(graph, user_id, anon)
