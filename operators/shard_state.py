"""What a shard must snapshot, in one dataclass: ``ShardState``.

A snapshot written before the versioned envelope is a pickle of it (by this module's
name, or by ``engine.ShardState``, which names it too). In the compiled build
(``make fast``) it is a native class, which pickle makes without running its
``__init__`` (mypyc leaves a dataclass's generated ``__init__`` to ``tp_init``) and whose
``__getstate__`` and ``__setstate__`` (a dict of its fields, as a plain class pickles)
are these; ``shard_codec`` gives the fields added since their defaults.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Final

from audienceflow.operators.clock import StreamClock
from audienceflow.operators.identity import IdentityGraph
from audienceflow.operators.state import UserState

NEAR_NONE: Final = -(1 << 62)  # ``ShardState.near`` before any far bucket was reached


@dataclass
class ShardState:
    """Everything a shard must snapshot (see ``shard_codec``; no compiled rules in here)."""

    shard: str
    users: dict[str, UserState] = field(default_factory=dict)
    # Deadlines (due, user id): those of hours reached and one marker per later hour in
    # ``heap``, the later ones by hour in ``far``; ``near``: the latest hour reached
    # (see ``operators/deadlines.py``; a snapshot holds them all as one heap).
    heap: list[tuple[float, str]] = field(default_factory=list)
    far: dict[int, tuple[list[float], list[str]]] = field(default_factory=dict)
    near: int = NEAR_NONE
    # The hours reached, by minute: ``mid`` the minutes not reached yet, ``near_min``
    # the latest minute reached (only it and earlier ones are in ``heap``).
    mid: dict[int, tuple[list[float], list[str]]] = field(default_factory=dict)
    near_min: int = NEAR_NONE
    # The entries of the latest minute reached, sorted once when it is reached and popped
    # from the front (no heap walk each); ``heap`` keeps the markers and the entries
    # filed after their minute was reached.
    run: deque[tuple[float, str]] = field(default_factory=deque)
    clock: StreamClock = field(default_factory=StreamClock)
    seen: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (time, identifier)
    processed: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    evicted: int = 0
    models: Any = None
    # Events and control requests held back until stream time passes them:
    # (event time, _CONTROL or _EVENT, arrival seq, the item).
    held: list[tuple[float, int, int, Any]] = field(default_factory=list)
    # Those that came in order (each after every one before it): a queue popped from its
    # front, no heap walk per item; ``held`` is the heap of the others. A snapshot holds
    # both as one heap in ``held`` (see ``shard_codec``).
    held_run: deque[tuple[float, int, int, Any]] = field(default_factory=deque)
    held_seq: int = 0
    # Live, a partition rejoining from idleness behind stream time (``ShardEngine._lagging``):
    # the users its events were for, whose deadlines and events wait for the slowest
    # active partition's watermark (``StreamClock.floor``), parked meanwhile in ``lag``
    # (a heap of (due, user id)) and ``lag_held`` (a heap of held entries, as ``held``).
    lagging: set[str] = field(default_factory=set)
    lag: list[tuple[float, str]] = field(default_factory=list)
    lag_held: list[tuple[float, int, int, Any]] = field(default_factory=list)
    last_event: float = float("-inf")  # the latest event time applied in this shard
    lab: Any = None  # lab.LabState: the shard's experiment sums, when experiments are configured
    # Per-user bounds hit and event meanings that could not be used, by name (rules work).
    limits_hit: dict[str, int] = field(default_factory=dict)
    # With money.currency unset: the orders and cart events whose amounts were summed, by
    # the currency they name (``money.count_currency``: code -> [orders, cart events]).
    currencies: dict[str, list[int]] = field(default_factory=dict)
    # Why segments and triggers did (not) fire: see operators/diagnostics.py (rules work).
    diag: dict[str, Any] = field(default_factory=dict)
    ids: IdentityGraph | None = None  # linked identifiers (identity work)
    suppressed: dict[str, float] = field(default_factory=dict)  # hashed identifier -> since
    # hashed identifier -> others one request suppressed with it: the request's first
    # lists the rest, each of the rest lists the first (an unsuppress naming any one lifts
    # them all, though a deletion may have forgotten the links between them)
    suppressed_with: dict[str, list[str]] = field(default_factory=dict)
    receipts: int = 0  # control receipts written, and the hash chain over them
    chain: str = ""
    # The cold tier: users idle for ``state.cold_after``, as their codec bytes (id -> bytes),
    # and the queue of when each warm user may go cold, with the entry each has filed
    # there: kept as the deadlines are, in minute buckets (``deadlines.cool_push``):
    # ``cooling`` is the heap, ``cool_far`` the later minutes, ``cool_near`` the latest
    # minute reached (a snapshot holds them as one heap in ``cooling``).
    cold: dict[str, bytes] = field(default_factory=dict)
    cooling: list[tuple[float, str]] = field(default_factory=list)
    cool_far: dict[int, tuple[list[float], list[str]]] = field(default_factory=dict)
    cool_near: int = NEAR_NONE
    cool_run: deque[tuple[float, str]] = field(default_factory=deque)  # as ``run``
    cool_filed: dict[str, float] = field(default_factory=dict)
    # ``routing.layout`` of the run that wrote this state ("" before it was recorded): a
    # resume under another layout is refused (flows/dataflow.py).
    layout: str = ""

    def __getstate__(self) -> dict[str, Any]:
        # What a plain class pickles (its ``__dict__``), in the compiled build too.
        return {f.name: getattr(self, f.name) for f in fields(self) if hasattr(self, f.name)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # The fields of a pickle of this class, as its build had them: one since removed
        # is dropped, one added since is left to ``shard_codec.decode_shard``.
        known = {f.name for f in fields(self)}
        for name, value in state.items():
            if name in known:
                setattr(self, name, value)
