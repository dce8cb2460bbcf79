"""The events a partition accepted ahead of the wall clock (``operators/ahead.py``): copies at
the dedup window's edge, an id reused, the salt the digests are keyed with, a broken pack."""

from __future__ import annotations

import hashlib

import pytest

from audienceflow.operators.ahead import Waiting

WINDOW = 100.0


def _waiting(key: bytes = b"salt", per_user: int = 10, total: int = 10) -> Waiting:
    return Waiting(per_user=per_user, total=total, dedup_window=WINDOW, key=key)


@pytest.mark.timeout(30)
def test_a_copy_exactly_the_dedup_window_after_a_waiting_event_is_not_counted() -> None:
    # The shard drops a copy within the window either side, its edge included
    # (``abs(ts - first) <= dedup_window`` in the engine): the reader must not count it.
    w = _waiting()
    assert w.admit(1000.0, "ann", "m1") is None
    assert w.admit(1000.0 + WINDOW, "ann", "m1") is None
    assert w.admit(1000.0 - WINDOW, "ann", "m1") is None
    assert len(w) == 1 and w.count("ann") == 1
    assert w.admit(1000.0 + WINDOW + 1.0, "ann", "m1") is None  # a new use: counted
    assert len(w) == 2


@pytest.mark.timeout(30)
def test_a_reused_id_marks_copies_of_its_latest_use_whatever_order_it_came_in() -> None:
    # m1 waits at 1000 and, more than a window earlier, at 10: its copies are those of
    # 1000, the latest, whichever of the two came first, and after either is released.
    for order in ((1000.0, 10.0), (10.0, 1000.0)):
        w = _waiting()
        for ts in order:
            assert w.admit(ts, "ann", "m1") is None
        assert len(w) == 2
        assert w.admit(1050.0, "bob", "m1") is None and len(w) == 2  # a copy of 1000's
        w.release(10.0)  # the wall clock reaches the one at 10: 1000's still marks copies
        assert len(w) == 1
        assert w.admit(1050.0, "bob", "m1") is None and len(w) == 1
        w.release(1000.0)
        assert len(w) == 0 and w.count("ann") == 0


@pytest.mark.timeout(30)
def test_the_packed_events_are_keyed_with_the_salt() -> None:
    # Without the salt nothing in the pack can be checked against a list of ids: another
    # salt gives other digests, and no unkeyed hash of an id is in it.
    packs = []
    for key in (b"one", b"two"):
        w = _waiting(key)
        w.admit(1000.0, "ann@example.com", "msg-1")
        packs.append(w.pack())
    assert packs[0] != packs[1]
    for data in (b"u\0ann@example.com", b"m\0msg-1"):
        for k in (b"", hashlib.blake2b(b"audienceflow waiting ahead\0", digest_size=32).digest()):
            digest = hashlib.blake2b(data, key=k, digest_size=8).digest()
            assert digest not in packs[0] and digest[::-1] not in packs[0]  # either order


@pytest.mark.timeout(30)
def test_a_pack_whose_counts_disagree_with_its_events_is_refused() -> None:
    w = _waiting()
    for i, user in enumerate(("ann", "ann", "bob")):
        w.admit(1000.0 + i, user, f"m{i}")
    blob = bytearray(w.pack())
    # The header (9 bytes), two users' digests (16), then their counts (u32 each).
    first = int.from_bytes(blob[25:29], "little")
    blob[25:29] = (first - 1).to_bytes(4, "little")
    back = _waiting()
    with pytest.raises(ValueError, match="count 2 of 3"):
        back.unpack(bytes(blob))
    assert len(back) == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cut", [0, 1, 8])
def test_a_pack_cut_short_of_its_header_is_refused_as_a_format_error(cut: int) -> None:
    w = _waiting()
    w.admit(1000.0, "ann", "m0")
    with pytest.raises(ValueError, match="no header"):
        _waiting().unpack(w.pack()[:cut])
