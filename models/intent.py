"""Purchase intent: the probability that a session converts (ends in an order unless
``sessions.conversion_events`` says otherwise), learned online.

Predictions are made on every event from ``vectors.intent_vector``; learning
happens once per session, at close, from the label ``converted`` and the
vector the session's recorded score came from. The score is recorded before
the label is learned (predict-then-learn), so the running ROC AUC and log
loss are progressive-validation metrics, never scores on seen data.

The logistic model standardises the vector's numeric features and reads its one-hot
ones (step, device, channel) as they are: a standard scaler fed only the one-hot
features present in a vector learns a mean of 1 and a variance of 0 for each, scales
every one to 0, and the regression could never learn a weight for it.

>>> m = IntentModel(seed=1)
>>> for i in range(200):
...     m.learn({"cart_adds": float(i % 2)}, bool(i % 2), m.predict({"cart_adds": float(i % 2)}))
>>> m.predict({"cart_adds": 1.0}) > 0.5 > m.predict({"cart_adds": 0.0})
True
"""

from __future__ import annotations

import math
from typing import Any, Final

from river import compose, linear_model, metrics, optim, preprocessing, tree
from river.utils.math import sigmoid
from river.utils.vectordict import VectorDict

from audienceflow.models.scaling import learn_scale
from audienceflow.models.vectors import intent_parts, intent_vector, one_hot_names
from audienceflow.operators import native

_P = tuple[float, float, float]
_T3 = tuple[float, float, float]
# (feature parameters before and after the one-hots, kept one-hot terms, kept history
# terms, intercept, kept sums of the count terms): see ``IntentModel.predict_raw``
_Fast = tuple[
    tuple[_P, ...], tuple[_P, ...], dict[Any, _T3], dict[Any, Any], float, dict[Any, float]
]
# Kept terms of one model version (``predict_raw``): beyond this many, start again.
_KEPT_MAX: Final = 4096
# The features of every intent vector, before and after its three one-hot ones
# (``vectors.intent_vector``'s key order).
_HEAD: Final = (
    "events",
    "product_views",
    "quick_views",
    "cart_adds",
    "searches",
    "mean_step_seconds",
)
_TAIL: Final = (
    "sessions_before",
    "past_conversions",
    "previous_converted",
    "cart_left_open",
    "hours_since_visit",
    "first_visit",
)

# The numeric features (standardised); every other feature of a vector is a one-hot.
NUMERIC = _HEAD + _TAIL
_NUMERIC: Final = frozenset(NUMERIC)


def _named(params: dict[str, _P], names: tuple[str, ...]) -> tuple[_P, ...]:
    """``params`` of ``names``, in order. A function of its own: a comprehension in
    ``IntentModel.predict_raw`` made ``params`` a cell, created at each prediction."""
    return tuple(params[name] for name in names)


def numeric_part(x: dict[str, float]) -> dict[str, float]:
    """The numeric features of ``x``, in its order (the scaler's input)."""
    return {k: v for k, v in x.items() if k in _NUMERIC}


def one_hot_part(x: dict[str, float]) -> dict[str, float]:
    """The other features of ``x`` (one-hots), in its order, as they are."""
    return {k: v for k, v in x.items() if k not in _NUMERIC}


def _logistic(scaler: Any, linear: Any) -> tuple[Any, Any, Any]:
    """River's pipeline: numeric features standardised, the others (one-hots) as they
    are, then the regression; with the scaler and regression inside it (composing
    copies them). The union puts the scaled features first, then the rest, each in the
    vector's order (``TransformerUnion.transform_one``): ``vectors.intent_vector``'s
    order. ``FuncTransformer`` rather than ``Discard``: a set of names would pickle in
    an order that changes with the hash seed."""
    union = compose.TransformerUnion(
        compose.FuncTransformer(one_hot_part), compose.FuncTransformer(numeric_part) | scaler
    )
    model = union | linear
    union, linear = model.steps.values()
    scaler = list(list(union.transformers.values())[1].steps.values())[1]
    return model, scaler, linear


# Scores are binned on the logit scale for the AUC: 0.05 logit wide, from -12 to 12.
_BIN_WIDTH: Final = 0.05
_BIN_MAX: Final = 480
# The base rate is learned faster than the weights, so early scores are calibrated
# (progressive log loss on generated streams: ~0.37 with 0.01, ~0.27 with 0.1).
INTERCEPT_LR: Final = 0.1


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


# Its attributes in the order ``__init__`` sets them: a plain class's ``__dict__``, the state
# it pickles (``native.attrs_state``), the same from the compiled build's native class.
_INTENT_ATTRS = (
    "kind",
    "seed",
    "learning_rate",
    "max_channels",
    "_scaler",
    "_linear",
    "model",
    "channels",
    "log_loss",
    "pos",
    "neg",
    "learned",
    "positives",
    "_params",
    "_params_learned",
    "_fast",
    "_fast_learned",
)


class IntentModel:
    """(numeric features | StandardScaler) + one-hots | LogisticRegression (or a Hoeffding
    adaptive tree), with its metrics."""

    def __new__(cls, *args: Any, **kwargs: Any) -> IntentModel:
        # What pickle and ``copy`` make before ``__setstate__``: mypyc's own ``__new__``
        # of a native class (compiled build) would run ``__init__``, without arguments.
        return super().__new__(cls)

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
            self.model, self._scaler, self._linear = _logistic(
                preprocessing.StandardScaler(),
                linear_model.LogisticRegression(
                    optimizer=optim.SGD(learning_rate), intercept_lr=INTERCEPT_LR
                ),
            )
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
        # See predict_raw: the history and one-hot terms and intercept of the model as it
        # was when it had learned ``_fast_learned`` sessions.
        self._fast: _Fast | None = None
        self._fast_learned = -1

    def see_channel(self, channel: str | None) -> None:
        """Give a newly seen channel its own feature while the vocabulary has room."""
        if (
            channel is not None
            and channel not in self.channels
            and (len(self.channels) < self.max_channels)
        ):
            self.channels[channel] = None
            self._fast = None  # its one-hot terms read the vocabulary

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
        (a prediction model is a frozen copy that never does). The sum runs as River's
        ``VectorDict.dot`` runs over the pipeline's transformed vector: the numeric
        features in ``x``'s order, then the others (a one-hot's parameters are mean 0,
        deviation 1: its value as it is), a missing weight counting as 0
        (``tests/test_models.py`` checks equality bit for bit).
        """
        params = self._params
        if params is None or self._params_learned != self.learned:
            params = self._params = {}
            self._params_learned = self.learned
        total = 0.0
        # River's order: the scaled numerics, then the others (the union's).
        for name, xi in [*numeric_part(x).items(), *one_hot_part(x).items()]:
            try:
                mean, sd, weight = params[name]
            except KeyError:
                mean, sd, weight = params[name] = self._feature_params(name)
            total += weight * ((xi - mean) / sd if sd else 0.0)
        return float(sigmoid(total + self._linear.intercept))

    def predict_raw(self, raw: tuple[Any, ...], hist: tuple[float, ...]) -> float:
        """``predict(vectors.intent_vector(raw, hist, self.channels))``, without the dict.

        Per event. The same terms as ``_predict_linear`` in the same order (the vector's
        key order), features read from River in that order too. Once every feature of a
        first vector was read, the terms that do not change while the model learns
        nothing are kept: those of the three one-hot features per (step, device,
        channel) and those of the history per history tuple (a session's history is the
        same at each of its events); each is the float ``_predict_linear`` adds, and
        the sum runs in the same order (``tests/test_models.py`` and
        ``tests/test_model_fast_paths.py`` check equality with River bit for bit).
        Equal keys give equal terms, but for ``0.0 == -0.0``: a zero's sign cannot
        change a sum that goes on to a sigmoid, so neither can a kept term.
        """
        if self.learned == 0:
            return 0.5
        fast = self._fast
        if fast is None or self._fast_learned != self.learned:
            if self._linear is None:
                return self.predict(intent_vector(raw, hist, self.channels))
            # The first prediction of this model: the general way, reading every feature.
            p = self._predict_linear(intent_vector(raw, hist, self.channels))
            params = self._params
            assert params is not None
            self._fast = (
                _named(params, _HEAD),
                _named(params, _TAIL),
                {},
                {},
                float(self._linear.intercept),
                {},
            )
            self._fast_learned = self.learned
            return p
        counts = raw[:5]  # (events, views, quick, adds, searches)
        total = fast[5].get(counts)
        if total is None:
            total = self._count_terms(counts)
        key = raw[6:]  # (step, device, channel)
        hots = fast[2].get(key)
        if hots is None:
            hots = self._hot_terms(*key)
        tail = fast[3].get(hist)
        if tail is None:
            tail = self._tail_terms(hist)
        m5, s5, w5 = fast[0][5]
        total += w5 * ((math.log1p(raw[5]) - m5) / s5 if s5 else 0.0)
        t0, t1, t2, t3, t4, t5 = tail
        total += t0
        total += t1
        total += t2
        total += t3
        total += t4
        total += t5
        h0, h1, h2 = hots
        total += h0
        total += h1
        total += h2
        # River's ``sigmoid(total + intercept)`` (utils/math.py), inlined.
        z = total + fast[4]
        if z < -30:
            return 0.0
        if z > 30:
            return 1.0
        return 1 / (1 + math.exp(-z))

    def _count_terms(self, counts: tuple[Any, ...]) -> float:
        """The sum of the first five terms (the session's counts), from 0.0 in order."""
        assert self._fast is not None
        (m0, s0, w0), (m1, s1, w1), (m2, s2, w2), (m3, s3, w3), (m4, s4, w4), _ = self._fast[0]
        events, views, quick, adds, searches = counts
        log1p = math.log1p
        total = 0.0
        total += w0 * ((log1p(events) - m0) / s0 if s0 else 0.0)
        total += w1 * ((log1p(views) - m1) / s1 if s1 else 0.0)
        total += w2 * ((float(quick) - m2) / s2 if s2 else 0.0)
        total += w3 * ((float(adds) - m3) / s3 if s3 else 0.0)
        total += w4 * ((float(searches) - m4) / s4 if s4 else 0.0)
        kept = self._fast[5]
        if len(kept) >= _KEPT_MAX:
            kept.clear()
        kept[counts] = total
        return total

    def _hot_terms(self, step: str, device: str | None, channel: str | None) -> _T3:
        """The terms of the three one-hot features of (step, device, channel), read as
        ``_predict_linear`` reads them (a feature first met is read from River then)."""
        assert self._params is not None and self._fast is not None
        params = self._params
        terms = []
        for name in one_hot_names(step, device, channel, self.channels):
            p3 = params.get(name)
            if p3 is None:
                p3 = params[name] = self._feature_params(name)
            mean, sd, weight = p3
            terms.append(weight * ((1.0 - mean) / sd if sd else 0.0))
        kept = self._fast[2]
        if len(kept) >= _KEPT_MAX:
            kept.clear()
        out = kept[(step, device, channel)] = (terms[0], terms[1], terms[2])
        return out

    def _tail_terms(self, hist: tuple[float, ...]) -> tuple[float, ...]:
        """The terms of the history features (``_TAIL``) of ``hist``."""
        assert self._fast is not None
        (m0, s0, w0), (m1, s1, w1), (m2, s2, w2), (m3, s3, w3), (m4, s4, w4), (m5, s5, w5) = (
            self._fast[1]
        )
        before, past, prev, cart, since = hist
        log1p = math.log1p
        out = (
            w0 * ((log1p(before) - m0) / s0 if s0 else 0.0),
            w1 * ((log1p(past) - m1) / s1 if s1 else 0.0),
            w2 * ((prev - m2) / s2 if s2 else 0.0),
            w3 * ((cart - m3) / s3 if s3 else 0.0),
            w4 * ((since - m4) / s4 if s4 else 0.0),
            w5 * (((0.0 if before else 1.0) - m5) / s5 if s5 else 0.0),
        )
        kept = self._fast[3]
        if len(kept) >= _KEPT_MAX:
            kept.clear()
        kept[hist] = out
        return out

    def _feature_params(self, name: str) -> tuple[float, float, float]:
        """(mean, standard deviation or 0, weight) of a feature: the one place River's
        internals are read. Reads the scaler's defaultdicts as ``transform_one`` does;
        a one-hot, which the scaler never sees, reads as mean 0 and deviation 1."""
        if name not in _NUMERIC:
            return 0.0, 1.0, self._linear._weights.get(name, 0)
        v = self._scaler.vars[name]
        if not v:
            return 0.0, 0.0, self._linear._weights.get(name, 0)
        sd = v**0.5
        return self._scaler.means[name], sd, self._linear._weights.get(name, 0)

    def copy_parts(self) -> list[Any]:
        """The large containers of this model, for ``copies.seed_memo`` (a version's copy)."""
        parts: list[Any] = [self.channels, self.pos, self.neg]
        if self._scaler is not None:
            parts += [self._scaler.counts, self._scaler.means, self._scaler.vars]
        return parts

    def __getstate__(self) -> dict[str, Any]:
        state = native.attrs_state(self, _INTENT_ATTRS)
        state["_params"] = None  # a cache: rebuilt on demand, never pickled or copied
        state.pop("_fast", None)  # so are these (snapshots stay as they were)
        state.pop("_fast_learned", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("_scaler") is not None and isinstance(
            next(iter(state["model"].steps.values())), preprocessing.StandardScaler
        ):
            _standardise_numeric_only(state)  # pickled before one-hots bypassed the scaler
        state.setdefault("_params", None)
        state.setdefault("_params_learned", -1)
        state["_fast"] = None
        state["_fast_learned"] = -1
        native.set_attrs(self, state)

    def learn(self, x: dict[str, float], y: bool, recorded: float) -> None:
        """Score the recorded prediction against the label, then learn from ``x``."""
        self._score(y, recorded)
        if self._linear is None:
            self.model.learn_one(x, y)
            return
        self._learn_linear(numeric_part(x), one_hot_part(x), y)

    def learn_raw(
        self, raw: tuple[Any, ...], hist: tuple[float, ...], y: bool, recorded: float
    ) -> None:
        """``learn(vectors.intent_vector(raw, hist, self.channels), y, recorded)``, the
        vector made in the two parts the pipeline takes apart (per closed session)."""
        if self._linear is None:
            self.learn(intent_vector(raw, hist, self.channels), y, recorded)
            return
        self._score(y, recorded)
        numeric, hots = intent_parts(raw, hist, self.channels)
        self._learn_linear(numeric, hots, y)

    def _score(self, y: bool, recorded: float) -> None:
        self.log_loss.update(y, recorded)  # River clamps to [1e-15, 1 - 1e-15]
        hist = self.pos if y else self.neg
        b = score_bin(recorded)
        hist[b] = hist.get(b, 0) + 1
        self.positives += y
        self.learned += 1

    def _learn_linear(self, numeric: dict[str, float], hots: dict[str, float], y: bool) -> None:
        """The pipeline's ``learn_one``: the scaler learns the numeric features, the
        regression learns them scaled followed by the one-hots as they are (the union's
        order). Its first call builds the plans, kept in its state (snapshots)."""
        if self.model._plan is None:
            _build_plans(self.model)
        z = learn_scale(self._scaler, numeric)
        z.update(hots)
        lin = self._linear
        if _plain_sgd_log(lin):
            sgd_log_step(lin, z, y)
        else:
            lin.learn_one(z, y)

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


def _plain_sgd_log(lin: Any) -> bool:
    """Whether ``lin`` is the regression ``sgd_log_step`` steps as River does: the log
    loss, plain SGD, constant learning rates, no L1 or L2 penalty (how the intent model
    builds it); any other goes through River's own ``learn_one``."""
    return (
        type(lin.loss) is optim.losses.Log
        and type(lin.optimizer) is optim.SGD
        and type(lin.optimizer.lr) is optim.schedulers.Constant
        and type(lin.intercept_lr) is optim.schedulers.Constant
        and lin.l1 == 0
        and not lin.l2
    )


def sgd_log_step(lin: Any, x: dict[str, float], y: bool) -> None:
    """``lin.learn_one(x, y)`` for a regression ``_plain_sgd_log`` accepts: River's
    ``GLM.learn_one`` with its calls inlined, the same operations on the same values in
    the same order, and River's own weight vector doing the vector arithmetic (the
    masked ``VectorDict`` of learn mode, its ``dot``, ``from_scaled`` and
    ``isub_scaled``), so weights, intercept and iteration count come out bit for bit
    as River leaves them (``tests/test_model_fast_paths.py``). Per closed session:
    River's method and property calls around that arithmetic cost more than it."""
    saved = lin._weights
    weights: Any = VectorDict(saved, lin.initializer, x)  # ``_enter_learn_mode(x)``
    lin._weights = weights
    try:
        opt = lin.optimizer
        # ``_raw_dot_one``, then ``Log.gradient`` (y as -1 or 1, an int, as River has it)
        y_pred = weights.dot(x) + lin.intercept
        loss = lin.loss
        if y == 0:
            sign = -1
            weight = loss.weight_neg
        else:
            sign = int(y)
            weight = loss.weight_pos
        z = y_pred * sign
        if z > 18.0:
            g = weight * math.exp(-z) * -sign
        elif z < -18.0:
            g = weight * -sign
        else:
            g = weight * -sign / (math.exp(z) + 1.0)
        g *= 1.0  # the sample weight ``w``
        clip = lin.clip_gradient
        g = float(max(min(g, clip), -clip))  # ``utils.math.clamp``
        gradient = VectorDict.from_scaled(x, g)
        # ``_fit``: the intercept first, then ``optimizer.step`` (SGD on a VectorDict)
        lin.intercept -= lin.intercept_lr.learning_rate * g
        weights.isub_scaled(gradient, opt.lr.learning_rate)
        opt.n_iterations += 1
    finally:
        lin._weights = saved  # ``_exit_learn_mode``


def _build_plans(model: Any) -> None:
    """Build the plans River's ``learn_one`` builds on its first call, as it would."""
    model._build_plan()
    union = next(iter(model.steps.values()))
    for sub in union.transformers.values():
        if isinstance(sub, compose.Pipeline) and sub._plan is None:
            sub._build_plan()


def _standardise_numeric_only(state: dict[str, Any]) -> None:
    """A model pickled before one-hots bypassed the scaler (``StandardScaler |
    LogisticRegression``): the same scaler, without its one-hot entries (mean 1,
    variance 0: they scaled every one-hot to 0), in the current pipeline. The
    regression's one-hot weights stay as they are (0: it never saw a non-zero one)."""
    scaler = state["_scaler"]
    for table in (scaler.counts, scaler.means, scaler.vars):
        for name in [k for k in table if k not in _NUMERIC]:
            del table[name]
    state["model"], state["_scaler"], state["_linear"] = _logistic(scaler, state["_linear"])
