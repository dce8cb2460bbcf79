"""Purchase intent: the probability that a session ends in an order, learned online.

Predictions are made on every event from ``vectors.intent_vector``; learning
happens once per session, at close, from the label ``converted`` and the
vector the session's recorded score came from. The score is recorded before
the label is learned (predict-then-learn), so the running ROC AUC and log
loss are progressive-validation metrics, never scores on seen data.

>>> m = IntentModel(seed=1)
>>> for i in range(200):
...     m.learn({"cart_adds": float(i % 2)}, bool(i % 2), m.predict({"cart_adds": float(i % 2)}))
>>> m.predict({"cart_adds": 1.0}) > 0.5 > m.predict({"cart_adds": 0.0})
True
"""

from __future__ import annotations

import math
from typing import Any

from river import linear_model, metrics, optim, preprocessing, tree
from river.utils.math import sigmoid

from audienceflow.models.vectors import DEVICES, intent_vector

_P = tuple[float, float, float]
# The features of every intent vector, before and after its three one-hot ones
# (``vectors.intent_vector``'s key order).
_HEAD = ("events", "product_views", "quick_views", "cart_adds", "searches", "mean_step_seconds")
_TAIL = (
    "sessions_before",
    "past_conversions",
    "previous_converted",
    "cart_left_open",
    "hours_since_visit",
    "first_visit",
)

# Scores are binned on the logit scale for the AUC: 0.05 logit wide, from -12 to 12.
_BIN_WIDTH = 0.05
_BIN_MAX = 480
# The base rate is learned faster than the weights, so early scores are calibrated
# (progressive log loss on generated streams: ~0.37 with 0.01, ~0.27 with 0.1).
INTERCEPT_LR = 0.1


def score_bin(p: float) -> int:
    """The AUC histogram bin of probability ``p`` (fine on the logit scale)."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    b = int((math.log(p / (1 - p)) + 12.0) / _BIN_WIDTH)
    return min(max(b, 0), _BIN_MAX)


def binned_auc(pos: dict[int, int], neg: dict[int, int]) -> float | None:
    """ROC AUC from score histograms of positives and negatives (ties count half).

    Histograms add up across shards, so the AUC of several replicas merges exactly.

    >>> binned_auc({10: 1}, {5: 1}), binned_auc({5: 1}, {5: 1})
    (1.0, 0.5)
    """
    n_pos, n_neg = sum(pos.values()), sum(neg.values())
    if not n_pos or not n_neg:
        return None
    below = 0  # negatives in lower bins
    area = 0.0
    for b in sorted(set(pos) | set(neg)):
        p, n = pos.get(b, 0), neg.get(b, 0)
        area += p * (below + n / 2)
        below += n
    return area / (n_pos * n_neg)


class IntentModel:
    """StandardScaler | LogisticRegression (or a Hoeffding adaptive tree) with its metrics."""

    def __init__(
        self,
        model: str = "logistic",
        seed: int = 42,
        learning_rate: float = 0.01,
        max_channels: int = 16,
    ) -> None:
        self.kind = model
        self.seed = seed
        self.learning_rate = learning_rate
        self.max_channels = max_channels
        self.model: Any
        self._scaler: Any = None
        self._linear: Any = None
        if model == "logistic":
            self._scaler = preprocessing.StandardScaler()
            self._linear = linear_model.LogisticRegression(
                optimizer=optim.SGD(learning_rate), intercept_lr=INTERCEPT_LR
            )
            self.model = self._scaler | self._linear
        elif model == "tree":
            self.model = tree.HoeffdingAdaptiveTreeClassifier(
                grace_period=50, leaf_prediction="mc", seed=seed
            )
        else:
            raise ValueError(f"unknown intent model {model!r}; known: logistic, tree")
        self.channels: dict[str, None] = {}
        self.log_loss: Any = metrics.LogLoss()  # type: ignore[no-untyped-call]
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.learned = 0
        self.positives = 0
        # Per-feature (mean, sd, weight) read from River, valid while ``learned`` is unchanged.
        self._params: dict[str, tuple[float, float, float]] | None = None
        self._params_learned = -1
        self._fixed: tuple[tuple[_P, ...], tuple[_P, ...]] | None = None  # see predict_raw

    def see_channel(self, channel: str | None) -> None:
        """Give a newly seen channel its own feature while the vocabulary has room."""
        if (
            channel is not None
            and channel not in self.channels
            and (len(self.channels) < self.max_channels)
        ):
            self.channels[channel] = None

    def predict(self, x: dict[str, float]) -> float:
        """Probability that the session ends in an order."""
        if self.learned == 0:
            return 0.5
        if self._linear is not None:
            return self._predict_linear(x)
        proba = self.model.predict_proba_one(x)
        return float(proba.get(True, 0.0))

    def _predict_linear(self, x: dict[str, float]) -> float:
        """River's StandardScaler.transform_one, LogisticRegression dot product and sigmoid,
        in River's order of operations, without building the scaled dict.

        This runs on every event. The per-feature mean, standard deviation and weight
        are read from River once per feature and kept until the model learns again
        (a prediction model is a frozen copy that never does). The sum runs over
        ``x`` in its order, as River's ``VectorDict.dot`` does, a missing weight
        counting as 0 (``tests/test_models.py`` checks equality bit for bit).
        """
        params = self._params
        if params is None or self._params_learned != self.learned:
            params = self._params = {}
            self._params_learned = self.learned
            self._fixed = None
        total = 0.0
        for name, xi in x.items():
            p = params.get(name)
            if p is None:
                p = params[name] = self._feature_params(name)
            mean, sd, weight = p
            total += weight * ((xi - mean) / sd if sd else 0.0)
        return float(sigmoid(total + self._linear.intercept))

    def predict_raw(self, raw: tuple[Any, ...], hist: tuple[float, ...]) -> float:
        """``predict(vectors.intent_vector(raw, hist, self.channels))``, without the dict.

        Per event. The same terms as ``_predict_linear`` in the same order (the vector's
        key order), features read from River in that order too: the parameters of the
        twelve features every vector has are kept as two tuples once all were read
        (``tests/test_models.py`` checks equality with River bit for bit).
        """
        if self.learned == 0:
            return 0.5
        if self._linear is None:
            return self.predict(intent_vector(raw, hist, self.channels))
        params = self._params
        if params is None or self._params_learned != self.learned:
            params = self._params = {}
            self._params_learned = self.learned
            self._fixed = None
        fixed = self._fixed
        if fixed is None:  # the first prediction of this model: the general way
            p = self._predict_linear(intent_vector(raw, hist, self.channels))
            self._fixed = (
                tuple(params[name] for name in _HEAD),
                tuple(params[name] for name in _TAIL),
            )
            return p
        (m0, s0, w0), (m1, s1, w1), (m2, s2, w2), (m3, s3, w3), (m4, s4, w4), (m5, s5, w5) = fixed[
            0
        ]
        events, views, quick, adds, searches, gap, step, device, channel = raw
        before, past, prev, cart, since = hist
        log1p = math.log1p
        # Unrolled (a loop over pairs cost as much as building the dict).
        total = 0.0
        total += w0 * ((log1p(events) - m0) / s0 if s0 else 0.0)
        total += w1 * ((log1p(views) - m1) / s1 if s1 else 0.0)
        total += w2 * ((float(quick) - m2) / s2 if s2 else 0.0)
        total += w3 * ((float(adds) - m3) / s3 if s3 else 0.0)
        total += w4 * ((float(searches) - m4) / s4 if s4 else 0.0)
        total += w5 * ((log1p(gap) - m5) / s5 if s5 else 0.0)
        for name in (
            "step=" + step,
            "device=" + (device if device in DEVICES else "other"),
            "channel=" + (channel if channel in self.channels else "other"),
        ):
            p3 = params.get(name)
            if p3 is None:
                p3 = params[name] = self._feature_params(name)
            mean, sd, weight = p3
            total += weight * ((1.0 - mean) / sd if sd else 0.0)
        (m0, s0, w0), (m1, s1, w1), (m2, s2, w2), (m3, s3, w3), (m4, s4, w4), (m5, s5, w5) = fixed[
            1
        ]
        total += w0 * ((log1p(before) - m0) / s0 if s0 else 0.0)
        total += w1 * ((log1p(past) - m1) / s1 if s1 else 0.0)
        total += w2 * ((prev - m2) / s2 if s2 else 0.0)
        total += w3 * ((cart - m3) / s3 if s3 else 0.0)
        total += w4 * ((since - m4) / s4 if s4 else 0.0)
        total += w5 * (((0.0 if before else 1.0) - m5) / s5 if s5 else 0.0)
        return float(sigmoid(total + self._linear.intercept))

    def _feature_params(self, name: str) -> tuple[float, float, float]:
        """(mean, standard deviation or 0, weight) of a feature: the one place River's
        internals are read. Reads the scaler's defaultdicts as ``transform_one`` does."""
        v = self._scaler.vars[name]
        if not v:
            return 0.0, 0.0, self._linear._weights.get(name, 0)
        sd = v**0.5
        return self._scaler.means[name], sd, self._linear._weights.get(name, 0)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_params"] = None  # a cache: rebuilt on demand, never pickled or copied
        state.pop("_fixed", None)  # so is this one (snapshots stay as they were)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_params", None)
        state.setdefault("_params_learned", -1)
        state["_fixed"] = None
        self.__dict__.update(state)

    def learn(self, x: dict[str, float], y: bool, recorded: float) -> None:
        """Score the recorded prediction against the label, then learn from ``x``."""
        self.log_loss.update(y, recorded)  # River clamps to [1e-15, 1 - 1e-15]
        hist = self.pos if y else self.neg
        b = score_bin(recorded)
        hist[b] = hist.get(b, 0) + 1
        self.positives += y
        self.learned += 1
        self.model.learn_one(x, y)

    def report(self) -> dict[str, Any]:
        auc = binned_auc(self.pos, self.neg)
        return {
            "model": self.kind,
            "sessions_learned": self.learned,
            "converted": self.positives,
            "roc_auc": None if auc is None else round(auc, 6),
            "log_loss": round(self.log_loss.get(), 6) if self.learned else None,
            # Mergeable state for ``hook.summarize``; dropped from the summary.
            "_pos": {str(k): v for k, v in sorted(self.pos.items())},
            "_neg": {str(k): v for k, v in sorted(self.neg.items())},
        }
