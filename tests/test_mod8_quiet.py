"""``ShardModels.quiet_until``: a caller (the engine, per released item) may skip ``sync``
for any time below it, because ``sync`` would do nothing there; and it reaches up to the
end of the epoch that was built, so almost every release is skipped."""

from __future__ import annotations

import math
import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from audienceflow.models.hook import build_models
from audienceflow.operators.settings import Settings

T0 = 1_700_000_000.0


SETTINGS = Settings.load(environ={})


def _models(epoch: float) -> Any:
    m = build_models(SETTINGS, "shard-000")
    m.epoch = epoch
    return m


def test_quiet_until_starts_at_minus_infinity_and_is_not_pickled() -> None:
    m = _models(3600.0)
    assert m.quiet_until == -math.inf  # nothing synced yet: every call must reach sync
    m.sync(T0)
    assert m.quiet_until > T0
    assert "quiet_until" not in m.__getstate__()
    assert pickle.loads(pickle.dumps(m)).quiet_until == -math.inf


@settings(max_examples=60, deadline=None)
@given(
    epoch=st.sampled_from([60.0, 3600.0, 0.1, 7.0, 86400.0]),
    start=st.floats(min_value=1.0, max_value=4e9),
    frac=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_sync_below_quiet_until_does_nothing_and_quiet_until_reaches_the_epochs_end(
    epoch: float, start: float, frac: float
) -> None:
    m = _models(epoch)
    m.sync(start)
    built, versions, quiet = m.built, m.versions, m.quiet_until
    assert built is not None
    end = (built + 1) * epoch  # the first time of the next epoch: sync must learn there
    assert quiet < end
    assert quiet >= end * (1.0 - 2.0**-49)  # skips up to a hair before the epoch's end
    below = quiet - frac * (quiet - start) if quiet > start else start
    if below < quiet:
        assert m.sync(below) == [] and m.built == built and m.versions is versions
    assert m.quiet_until == quiet
    m.sync(math.nextafter(end, math.inf) if math.floor(end / epoch) <= built else end)
    assert m.built is not None and m.built > built
    assert m.quiet_until > quiet
