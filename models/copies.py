"""Deep copies of the models, made faster and the same (``seed_memo``).

An epoch's version of the models is a ``copy.deepcopy``, and most of that time goes
into walking the entries of a few large containers: score histograms, scalers'
statistics, cluster centres, a random generator's 625-word state. A ``dict``,
``Counter`` or ``defaultdict(float or int)`` whose keys and values are all atomic
(``str``, ``int``, ``float``, ``bool``, ``None``) deep-copies to a new container of
its class with the same entries in the same order, holding the very same key and
value objects (``deepcopy`` returns an atomic object itself); a ``random.Random``
deep-copies to a generator in the same state. ``seed_memo`` makes those copies
directly and hands them to ``deepcopy`` in its memo, which then uses them where it
meets the originals: the copy is the one ``deepcopy`` alone makes, so it pickles to
the same bytes (``tests/test_model_fast_paths.py`` checks both).

>>> import collections, copy
>>> d = {"hist": {1: 2, 3: 4}, "n": collections.Counter(a=1)}
>>> memo = seed_memo([d["hist"], d["n"]])
>>> c = copy.deepcopy(d, memo)
>>> c == d, c["hist"] is memo[id(d["hist"])], c["hist"] is d["hist"]
(True, True, False)
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterable
from typing import Any

_ATOMIC = frozenset({str, int, float, bool, type(None)})


def seed_memo(objects: Iterable[Any]) -> dict[int, Any]:
    """A ``deepcopy`` memo holding the copy of each of ``objects`` that ``deepcopy``
    would make, for those it can make directly (others are left to ``deepcopy``)."""
    memo: dict[int, Any] = {}
    for obj in objects:
        made = _copy(obj)
        if made is not None:
            memo[id(obj)] = made
    return memo


def _copy(obj: Any) -> Any:
    kind = type(obj)
    if kind is random.Random:
        # deepcopy: ``Random()`` (seeded from the system), then ``__setstate__``
        made = random.Random(0)
        made.setstate(obj.getstate())
        return made
    if kind is dict:
        if not _atomic(obj):
            return None
        return dict(obj)
    if kind is collections.Counter:  # deepcopy: ``Counter(dict(obj))`` (its __reduce__)
        if not _atomic(obj):
            return None
        return collections.Counter(dict(obj))
    if kind is collections.defaultdict:
        # deepcopy: ``defaultdict(factory)`` then each entry in order; a factory of
        # another kind (River's KMeans draws from its generator) is left to it
        factory = obj.default_factory
        if (factory is not float and factory is not int) or not _atomic(obj):
            return None
        return collections.defaultdict(factory, obj)
    return None


def _atomic(d: dict[Any, Any]) -> bool:
    return set(map(type, d)) <= _ATOMIC and set(map(type, d.values())) <= _ATOMIC
