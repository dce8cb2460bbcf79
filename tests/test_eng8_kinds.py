"""``ShardEngine._kinds`` is keyed by a small int (``_kind_key``), which ``_apply`` builds
inline: every combination of facts has its own key, and the inline key is the same
(``test_an_event_is_told_what_it_changed_as_worked_out_per_event`` counts each key
worked out once)."""

from __future__ import annotations

import itertools

from audienceflow.operators.engine import _kind_key


def test_every_combination_of_facts_has_its_own_key() -> None:
    keys = {
        _kind_key(new, cat, cat and video, cart)
        for new, cat, video, cart in itertools.product((False, True), repeat=4)
    }
    assert keys == set(range(16)) - {2, 3, 10, 11}  # a video completion has a category
    assert _kind_key(True, False, False, False) == 8
    assert _kind_key(False, True, True, True) == 7
