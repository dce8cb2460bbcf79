"""A shard's state as a versioned snapshot envelope: ``encode_shard``, ``decode_shard``.

Layout: ``AFSH`` + one format-version byte + a MessagePack map with
- ``users`` and ``cold``: user id -> that user's ``codec.encode_user`` bytes,
- every field of ``PLAIN`` as a plain value (tuples restored where the state has them);
  ``heap`` is every deadline as one heap and ``cooling`` every cold-tier entry as one
  heap, and ``REBUILT`` (the two queues' buckets, ``operators/deadlines.py``) is made
  again from them when read, so snapshots from before the buckets load, and builds
  without them read these,
- ``objects``: one pickle of the fields in ``PICKLED``: the River models and the
  structures that are not per-user (clock, held events, experiment sums, identity
  links, lagging users and what waits for them), whose classes are not compiled and
  pickle as they are; ``held`` is every held item as one heap (``held_run`` is empty
  when read, see ``held_entries``).

Users are most of a snapshot, so they no longer depend on how a class pickles: a
worker of another build (compiled or not) reads them. The envelope is authenticated
around it by ``flows/snapshots.py`` before anything here is read. A payload from
before the envelope (a pickle of ``ShardState``) is still read.

>>> from audienceflow.operators.engine import ShardState
>>> decode_shard(encode_shard(ShardState("shard-001"))) == ShardState("shard-001")
True
>>> decode_shard(b"AFSH\\x09")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: recovery snapshot format version 9 is not known to this build (it reads versions 1,...
"""

from __future__ import annotations

import dataclasses
import heapq
import io
import pickle
from collections.abc import Callable
from copy import copy
from typing import Any

import msgpack

from audienceflow.operators import records
from audienceflow.operators.codec import decode_user, encode_user
from audienceflow.operators.deadlines import cool_entries, cool_requeue, entries, requeue
from audienceflow.operators.engine import ShardState
from audienceflow.operators.records import Action, Event, SegmentChange, Session
from audienceflow.operators.state import OpenSession, RecoUser, UserState

MAGIC = b"AFSH"
# The envelope's version goes up with the user codec's (``USER_CODEC``: the newest user
# format an envelope of each version may hold), so a build that cannot decode the users
# refuses the snapshot at resume, before anything is read, rather than on the first cold
# user it revives mid-run. 2: users of codec version 5 (a history session's converted flag).
VERSION = 2
USER_CODEC: dict[int, int] = {1: 4, 2: 5}
PLAIN = (
    "shard",
    "heap",
    "seen",
    "processed",
    "filtered",
    "dead_lettered",
    "evicted",
    "held_seq",
    "last_event",
    "limits_hit",
    "diag",
    "suppressed",
    "suppressed_with",
    "receipts",
    "chain",
    "cooling",
    "cool_filed",
    "layout",
    "currencies",
)
# Fields of ``PLAIN`` added since version 1 was written: an older snapshot lacks them.
ADDED: dict[str, Any] = {"layout": "", "suppressed_with": {}, "currencies": {}}
PICKLED = ("clock", "models", "held", "lab", "ids", "lagging", "lag", "lag_held")
USERS = ("users", "cold")
# From ``heap``, ``cooling`` and ``held`` (see the module docstring).
REBUILT = ("far", "near", "mid", "near_min", "run", "cool_far", "cool_near", "cool_run", "held_run")


def encode_shard(state: ShardState) -> bytes:
    """The envelope of ``state`` (see the module docstring)."""
    body: dict[str, Any] = {name: getattr(state, name) for name in PLAIN}
    body["heap"] = entries(state)
    body["cooling"] = cool_entries(state)
    body["users"] = {uid: encode_user(u) for uid, u in state.users.items()}
    body["cold"] = state.cold
    objects = {name: getattr(state, name) for name in PICKLED}
    objects["held"] = held_entries(state)
    body["objects"] = pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)
    packed: bytes = msgpack.packb(body, use_bin_type=True, unicode_errors="surrogatepass")
    return MAGIC + bytes([VERSION]) + packed


def held_entries(state: ShardState) -> list[tuple[float, int, int, Any]]:
    """Every held item as one heap, the form ``held`` had before ``held_run`` (so builds
    before it read a snapshot of this one, and this one theirs)."""
    if not state.held_run:
        return state.held
    out = [*state.held, *state.held_run]
    heapq.heapify(out)
    return out


class _Slots:
    """A user, open session or recent items of a pickle from before the envelope: the
    slots its build pickled, kept as they come, made into this build's class by
    ``_revive``. Pickle cannot make them directly in the compiled build (``make fast``):
    a native class is made by its ``__init__``, with its arguments."""

    def __setstate__(self, state: Any) -> None:
        # (None, slots) for a slots class, as ``object.__getstate__`` gives it.
        self.__dict__.update(state[1] if isinstance(state, tuple) else state)


class _OldUser(_Slots):
    pass


class _OldSession(_Slots):
    pass


class _OldReco(_Slots):
    pass


_OLD = {"UserState": _OldUser, "OpenSession": _OldSession, "RecoUser": _OldReco}


# A blank of each record class whose ``__init__`` is written out (``records``): what a
# pickle from before ``__reduce__`` made without arguments and then filled through the
# record's ``__setstate__``. The compiled build's native class runs its (compiled)
# ``__init__`` when made, so it needs arguments; these are placeholders, all replaced.
_BLANKS: dict[str, Callable[[], Any]] = {
    "Event": lambda: Event("", "", None, "", "", 0.0, "", {}),
    "Session": lambda: Session(
        "", "", 0.0, 0.0, 0, 0, 0, {}, 0.0, 0.0, 0, [], [], False, 0.0, "", None
    ),
    "SegmentChange": lambda: SegmentChange("", "", "", 0.0, {}),
    "Action": lambda: Action("", "", "", 0.0, {}, {}, ""),
}


def _pickled(name: str) -> type:
    """The record class ``name`` as a pickle names it (``_Objects``). A pickle of this
    build calls it with the record's fields (its ``__reduce__``); one from before made it
    without arguments, then set its state (``__setstate__``): that gets the blank."""
    cls, blank = getattr(records, name), _BLANKS[name]

    class Pickled:
        def __new__(_cls, *args: Any, **kwargs: Any) -> Any:
            return cls(*args, **kwargs) if args or kwargs else blank()

    return Pickled


_PICKLED = {name: _pickled(name) for name in _BLANKS}


class _Objects(pickle.Unpickler):
    """Reads the envelope's ``objects`` (held events among them), old pickles included."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "audienceflow.operators.records" and name in _BLANKS:
            return _PICKLED[name]
        return super().find_class(module, name)


def load_objects(data: bytes) -> Any:
    """The envelope's pickled ``objects`` (or any pickle of held items), however old."""
    return _Objects(io.BytesIO(data)).load()


class _Unpickler(_Objects):
    def find_class(self, module: str, name: str) -> Any:
        if module == "audienceflow.operators.state" and name in _OLD:
            return _OLD[name]
        return super().find_class(module, name)


def _revive(old: _Slots, cls: Any, **given: Any) -> Any:
    """``cls`` with the fields ``old`` has (and ``given``), the defaults for fields added
    since its pickle was written."""
    have = {**vars(old), **given}
    return cls(**{f.name: have[f.name] for f in dataclasses.fields(cls) if f.name in have})


def _revive_user(old: Any) -> UserState:
    s = getattr(old, "session", None)
    session = None
    if s is not None:
        # A session pickled before ``orders`` counts one order if it converted, as
        # ``codec`` reads version 1.
        orders = {} if hasattr(s, "orders") else {"orders": 1 if s.converted else 0}
        session = _revive(s, OpenSession, **orders)
    model = dict(getattr(old, "model", {}))
    if isinstance(model.get("reco"), _OldReco):
        model["reco"] = _revive(model["reco"], RecoUser)
    user: UserState = _revive(old, UserState, session=session, model=model)
    return user


def decode_shard(data: bytes) -> ShardState:
    """The state ``encode_shard`` wrote; ``ValueError`` for an unknown format or version.

    Only for authenticated or trusted bytes: the envelope holds a pickle.
    """
    if data[:1] == b"\x80":  # a pickle of ShardState, written before the envelope
        state = _Unpickler(io.BytesIO(data)).load()
        if not isinstance(state, ShardState):
            raise ValueError(f"recovery snapshot holds a {type(state).__name__}, not a shard")
        fresh = ShardState(state.shard)
        for f in dataclasses.fields(ShardState):  # fields added since then: their defaults
            if not hasattr(state, f.name):
                setattr(state, f.name, getattr(fresh, f.name))
        state.users = {uid: _revive_user(u) for uid, u in state.users.items()}
        return state
    if data[:4] != MAGIC:
        raise ValueError("recovery snapshot is not an audienceflow shard snapshot")
    version = data[4] if len(data) > 4 else None
    if version not in USER_CODEC:
        raise ValueError(
            f"recovery snapshot format version {version} is not known to this build "
            f"(it reads versions {', '.join(map(str, USER_CODEC))}); resume with the build "
            "that wrote it, or start from an empty recovery directory"
        )
    body = msgpack.unpackb(data[5:], raw=False, unicode_errors="surrogatepass")
    state = ShardState(body["shard"])
    for name in PLAIN:
        setattr(state, name, body[name] if name in body or name not in ADDED else copy(ADDED[name]))
    requeue(state, [(due, uid) for due, uid in body["heap"]])
    cool_requeue(state, [(due, uid) for due, uid in body["cooling"]])
    state.seen = {k: (t, ident) for k, (t, ident) in body["seen"].items()}
    state.users = {uid: decode_user(b) for uid, b in body["users"].items()}
    state.cold = body["cold"]
    for name, value in load_objects(body["objects"]).items():
        setattr(state, name, value)
    return state
