"""``features._category`` decays an affinity inline (``decayed``, written out) and interns
a category only where it becomes a key: the same values, the same interned keys."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.operators import features
from audienceflow.operators.features import FeatureSpec, decayed
from audienceflow.operators.records import Event
from audienceflow.operators.state import UserState

# --- features._category: decayed inline, interned where it becomes a key ---------------


def _ev(name: str, ts: float, category: str, kind: str = "track") -> Event:
    return Event("m", "u", None, kind, name, ts, "c", {"category": category})


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.0, 1e6), st.floats(0.5, 10.0), st.sampled_from([-3600.0, -1e-3, 0.0, 1e-3, 86400.0])
)
def test_an_affinity_is_decayed_as_decayed_says(since: float, score: float, step: float) -> None:
    spec = FeatureSpec()
    user = UserState("u", first_seen=0.0)
    user.affinity["shoes"] = (score, since)
    ts = since + step
    features.update(user, _ev("Product Viewed", ts, "shoes"), spec)
    weight = spec.affinity_weights["Product Viewed"]
    assert user.affinity["shoes"] == (
        decayed(score, since, ts, spec.affinity_half_life) + weight,
        max(ts, since),
    )


def test_a_category_is_interned_where_it_becomes_a_key() -> None:
    spec = FeatureSpec(affinity_weights={})  # the video completion alone stores the category
    user = UserState("u", first_seen=0.0)
    fresh = "".join(["sho", "es-", "x9"])  # a new string object, as parsed JSON gives
    features.update(user, _ev("Video Content Completed", 1.0, fresh), spec)
    (key,) = user.video_completions
    assert key is sys.intern("shoes-x9")
    features.update(user, _ev("Home", 2.0, "".join(["sho", "es-", "x9"]), "page"), spec)
    (key,) = user.affinity
    assert key is sys.intern("shoes-x9")
    assert user.video_completions == {"shoes-x9": 1}
    features.update(user, _ev("Video Content Completed", 3.0, "".join(["sho", "es-x9"])), spec)
    assert user.video_completions == {"shoes-x9": 2}


def test_a_video_completion_past_the_category_limit_is_counted_not_kept() -> None:
    spec = FeatureSpec(affinity_weights={})
    user = UserState("u", first_seen=0.0)
    user.video_completions = {f"c{i}": 1 for i in range(spec.limits.categories)}
    hits: dict[str, int] = {}
    features.update(user, _ev("Video Content Completed", 1.0, "new"), spec, hits)
    assert "new" not in user.video_completions and hits == {"categories": 1}
    features.update(user, _ev("Video Content Completed", 1.0, "c0"), spec, hits)
    assert user.video_completions["c0"] == 2 and hits == {"categories": 1}
