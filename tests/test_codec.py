"""The per-user state codec: every field round-trips exactly, and a new field cannot slip by."""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audienceflow.operators import codec
from audienceflow.operators.experiments import LEGACY_LAYOUT
from audienceflow.operators.lab import Exposed
from audienceflow.operators.state import OpenSession, RecoUser, UserState

text = st.text(max_size=12)
floats = st.floats(allow_nan=False)  # NaN != NaN: checked bit for bit separately
opt_float = st.none() | floats
opt_text = st.none() | text
ints = st.integers(-(2**63), 2**63 - 1)
keys = st.dictionaries(text, st.none(), max_size=4)

SESSION = {
    "session_id": text,
    "start": floats,
    "last": floats,
    "events": ints,
    "page_views": ints,
    "screen_views": ints,
    "by_category": st.dictionaries(text, ints, max_size=4),
    "engaged": floats,
    "max_page": floats,
    "page_start": opt_float,
    "max_scroll": ints,
    "products": keys,
    "categories": keys,
    "converted": st.booleans(),
    "order_value": floats,
    "cart_adds": ints,
    "product_views": ints,
    "searches": ints,
    "last_step": text,
    "funnel_reached": st.booleans(),
    "intent_before_funnel": opt_float,
    "device": opt_text,
    "channel": opt_text,
    "orders": ints,
    "order_ids": st.dictionaries(text, floats, max_size=4),
}
EXPOSED = {
    "arm": ints,
    "first_at": floats,
    "pre": floats,
    "propensity": floats,
    "converted": st.booleans(),
    "revenue": floats,
    "order_ids": st.lists(text, max_size=4),
    "layout": st.integers(-1, 2**32 - 1),
}
RECO = {
    "recent": st.dictionaries(
        text, st.lists(st.tuples(text, floats, text, st.booleans()), max_size=3), max_size=2
    ),
    "bought": keys,
    "seen": ints,
}
scalar = st.none() | st.booleans() | ints | floats | text
model = st.fixed_dictionaries(
    {},
    optional={
        "sid": text,
        "h": st.tuples(floats, floats, floats, floats, floats),
        "pv": floats,
        "qv": ints,
        "step": text,
        "x": st.tuples(ints, ints, ints, ints, ints, floats, text, opt_text, opt_text),
        "p": floats,
        "cart": ints,
        "reco": st.builds(RecoUser, **RECO),
    },
)
rec_item = st.fixed_dictionaries(
    {"product_id": text, "category": text, "score": floats, "reason": text, "because": text}
)
recs = st.dictionaries(text, st.lists(rec_item, max_size=3), max_size=2)
# One rule window structure of each kind (operators/tracking.py).
track = (
    st.lists(floats, max_size=4)
    | st.lists(st.tuples(floats, ints), max_size=4)
    | st.dictionaries(text, floats, max_size=4)
)
USER = {
    "user_id": text,
    "first_seen": floats,
    "last_ts": floats,
    "session": st.none() | st.builds(OpenSession, **SESSION),
    "session_seq": ints,
    "history": st.lists(
        st.tuples(floats, ints, ints, floats, ints, floats, ints, st.booleans()), max_size=3
    ),
    "total_events": ints,
    "total_sessions": ints,
    "total_orders": ints,
    "total_revenue": floats,
    "last_session_converted": st.booleans(),
    "affinity": st.dictionaries(text, st.tuples(floats, floats), max_size=4),
    "video_completions": st.dictionaries(text, ints, max_size=3),
    "cart": st.dictionaries(text, st.tuples(text, floats, ints), max_size=3),
    "cart_updated": floats,
    "last_order_ts": floats,
    "segments": st.dictionaries(text, floats, max_size=4),
    "segment_recheck": floats,
    "timers": st.dictionaries(text, floats, max_size=3),
    "cancelled": st.dictionaries(text, floats, max_size=3),
    "delivered": st.lists(st.tuples(floats, text), max_size=3),
    "device": opt_text,
    "locale": opt_text,
    "channel": opt_text,
    "intent_score": floats,
    "cluster": ints,
    "scheduled": floats,
    "model": model,
    "last_seen": floats,
    "via": text,
    "recommendations": st.none() | recs,
    "experiments": st.none() | st.dictionaries(text, st.builds(Exposed, **EXPOSED), max_size=2),
    "tracks": st.dictionaries(text, track, max_size=3),
    "traits": st.dictionaries(text, st.booleans() | floats | text, max_size=3),
    "anon_lines": ints,
    "known": st.booleans(),
    "orders_seen": st.binary(max_size=48),
}
users = st.builds(UserState, **USER)


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@pytest.mark.parametrize(
    ("cls", "codec_fields", "strategies"),
    [
        (UserState, codec.USER_FIELDS, USER),
        (OpenSession, codec.SESSION_FIELDS, SESSION),
        (Exposed, codec.EXPOSED_FIELDS, EXPOSED),
        (RecoUser, codec.RECO_FIELDS, RECO),
    ],
)
def test_the_codec_and_its_test_know_every_field_of_the_state(
    cls: type, codec_fields: tuple[str, ...], strategies: dict[str, Any]
) -> None:
    # A field added to the state without teaching the codec (and this test's generator)
    # would silently come back as its default after a snapshot or a cold spell.
    assert _names(cls) == codec_fields
    assert tuple(strategies) == codec_fields


def test_the_encoding_has_one_value_per_field_after_the_version() -> None:
    t = msgpack.unpackb(codec.encode_user(UserState("u", 0.0)))
    assert t[0] == codec.VERSION
    assert len(t) == 1 + len(codec.USER_FIELDS)


@given(users)
def test_random_user_states_round_trip_equal(user: UserState) -> None:
    back = codec.decode_user(codec.encode_user(user))
    assert back == user
    # Equality does not see int/float, bool/int or tuple/list differences inside dicts:
    # compare the types too (the rules and the models read them).
    assert _typed(back) == _typed(user)


def _typed(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return (
            type(v).__name__,
            [(f.name, _typed(getattr(v, f.name))) for f in dataclasses.fields(v)],
        )
    if isinstance(v, dict):
        return ("dict", [(k, _typed(x)) for k, x in v.items()])  # insertion order counts
    if isinstance(v, list | tuple):
        return (type(v).__name__, [_typed(x) for x in v])
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    return (type(v).__name__, v)


def test_floats_come_back_bit_for_bit() -> None:
    nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    u = UserState("u", -0.0, last_ts=-math.inf, segment_recheck=math.inf, intent_score=nan)
    u.segments["s"] = 5e-324
    back = codec.decode_user(codec.encode_user(u))
    for name in ("first_seen", "last_ts", "segment_recheck", "intent_score"):
        assert struct.pack("<d", getattr(back, name)) == struct.pack("<d", getattr(u, name))
    assert struct.pack("<d", back.segments["s"]) == struct.pack("<d", 5e-324)


def test_a_lone_surrogate_in_a_text_survives() -> None:
    u = UserState("u\ud800", 0.0, via="\udfff")
    assert codec.decode_user(codec.encode_user(u)) == u


def test_a_model_value_the_codec_does_not_know_is_refused_by_name() -> None:
    u = UserState("u1", 0.0, model={"new": [1, 2]})
    with pytest.raises(TypeError, match="model key 'new' of user 'u1' holds a list"):
        codec.encode_user(u)


def test_a_version_1_open_session_reads_as_one_order_if_converted() -> None:
    # Version 1 had no order count in an open session (23 values): a snapshot written
    # by it resumes with the one order per converted session it counted then.
    for converted, orders in ((True, 1), (False, 0)):
        u = UserState("u", 0.0, session=OpenSession("u:s", 0.0, 0.0, converted=converted))
        t = msgpack.unpackb(codec.encode_user(u))
        t[0], t[4] = 1, t[4][:23]
        back = codec.decode_user(msgpack.packb(t))
        assert back.session is not None and back.session.orders == orders
        assert back.session.order_ids == {}


def test_an_exposure_round_trips_with_the_order_ids_its_goal_counted() -> None:
    ex = Exposed(1, 10.0, 2.0, 0.5, True, 30.0, ["o1", "42"], 123456)
    back = codec.decode_user(codec.encode_user(UserState("u", 0.0, experiments={"e": ex})))
    assert back.experiments == {"e": ex}
    assert type(back.experiments["e"].order_ids) is list


def test_a_version_2_exposure_reads_with_no_order_ids_remembered() -> None:
    # Version 2 wrote an exposure as 6 values: it resumes counting every order id afresh,
    # under the arms its snapshot's sums were of.
    ex = Exposed(1, 10.0, 2.0, 0.5, True, 30.0, ["o1"], 7)
    t = msgpack.unpackb(codec.encode_user(UserState("u", 0.0, experiments={"e": ex})))
    t[0], t[32]["e"] = 2, t[32]["e"][:6]
    back = codec.decode_user(msgpack.packb(t))
    assert back.experiments == {"e": Exposed(1, 10.0, 2.0, 0.5, True, 30.0, [], LEGACY_LAYOUT)}


@pytest.mark.timeout(30)
def test_a_version_3_user_reads_as_never_seen_by_a_user_id() -> None:
    # Version 3 ended at ``anon_lines``: a snapshot or cold tier written by it loads, its
    # users not known as userIds (an alias naming one links it as before, see identity).
    t = msgpack.unpackb(codec.encode_user(UserState("u", 0.0, anon_lines=2, known=True)))
    assert t[36] is True
    t = [3, *t[1:36]]
    back = codec.decode_user(msgpack.packb(t))
    assert (back.anon_lines, back.known) == (2, False)


@pytest.mark.timeout(30)
def test_a_version_4_user_reads_as_remembering_no_earlier_order() -> None:
    # Version 4 ended at ``known``: a snapshot or cold tier written by it loads, its users
    # knowing their open session's order ids only (an order of an earlier session sent
    # again counts, as it did then).
    u = UserState("u", 0.0, known=True, orders_seen=bytes(range(16)))
    t = msgpack.unpackb(codec.encode_user(u))
    assert t[-1] == bytes(range(16))
    back = codec.decode_user(msgpack.packb([4, *t[1:-1]]))
    assert (back.known, back.orders_seen) == (True, b"")
    assert codec.decode_user(codec.encode_user(u)).orders_seen == bytes(range(16))


def test_an_unknown_format_version_is_a_clear_error() -> None:
    t = msgpack.unpackb(codec.encode_user(UserState("u", 0.0)))
    t[0] = codec.VERSION + 1
    with pytest.raises(ValueError, match=f"version {codec.VERSION + 1} is not known"):
        codec.decode_user(msgpack.packb(t))
