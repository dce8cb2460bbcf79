"""River's ``StandardScaler`` learning a vector and scaling it, in one pass (``learn_scale``).

Both models learn a session's vector and then scale it (intent: the pipeline's
``learn_one``; clustering: ``assign``). River does that in two passes over the
vector, each reading its three dicts again; ``learn_scale`` does River's arithmetic
once per feature, reading and writing the scaler's ``counts``, ``means`` and ``vars``
in River's order, so the scaler is left as River leaves it, insertion order included
(``tests/test_model_fast_paths.py`` checks both bit for bit against River).

>>> from river import preprocessing
>>> a, b = preprocessing.StandardScaler(), preprocessing.StandardScaler()
>>> for x in ({"u": 1.0}, {"u": 3.0, "v": 2.0}):
...     z = learn_scale(a, x)
...     b.learn_one(x)
...     assert z == b.transform_one(x) and a.vars == b.vars and a.means == b.means
>>> z
{'u': 1.0, 'v': 0.0}
"""

from __future__ import annotations

from typing import Any


def learn_scale(scaler: Any, x: dict[str, float]) -> dict[str, float]:
    """``scaler.learn_one(x)`` then ``scaler.transform_one(x)``, River's floats."""
    if scaler.window_size is not None or not scaler.with_std:  # not ours: River's own
        scaler.learn_one(x)
        return dict(scaler.transform_one(x))
    counts = scaler.counts
    means = scaler.means
    vars_ = scaler.vars
    z = {}
    # The new counts, written into ``counts`` at the end in one ``dict.update``: River's
    # ``counts`` is a ``Counter``, which defines ``__delitem__`` in Python, so each
    # ``counts[i] = n`` goes through the slot that looks ``__setitem__`` up by name
    # (~3x a dict's store). The same values, new keys in the same order (``x``'s).
    seen: dict[str, int] = {}
    # Typed ``float`` and ``int``: compiled (``make fast``), the arithmetic runs on C
    # doubles, not through Python's number protocol. The same floats: an int value is
    # converted to float before it meets a float, as Python's mixed arithmetic does.
    for i, v in x.items():
        xi: float = v
        n: int = counts[i] + 1  # a Counter: 0 for a new feature, not inserted by reading
        seen[i] = n
        old: float = means[i]  # a new feature's 0.0 is inserted here, as River's read does
        mean = old + (xi - old) / n
        means[i] = mean
        var: float = vars_[i]
        var = var + ((xi - old) * (xi - mean) - var) / n
        vars_[i] = var
        z[i] = (xi - mean) / var**0.5 if var else 0.0
    dict.update(counts, seen)
    return z
