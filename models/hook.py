"""The online models of one shard, plugged into the engine (``ModelHook``).

One ``ShardModels`` per shard holds a behaviour clusterer, an intent model and
drift detectors, learned from that shard's users only; it lives in the
shard's state, so Bytewax recovery snapshots and restores it with the users.
Per event it only predicts (``user.intent_score``); it learns from closed sessions.

**Model epochs.** The models are shared by all users of a shard, so the order in
which one user's session close and another user's event reach them would change
the scores, and that order depends on how input partitions interleave. So the
models are read and trained in event time: event time is cut into epochs of
``models.epoch`` (1 h); an event (or session close) in epoch ``e`` reads the
version trained on every session closed before epoch ``e - 1`` began, and the
sessions closed in an epoch are learned, in order of close time, once stream
time has passed the epoch's end. Every prediction is then a function of the
events alone: a replay, a worker on any number of partitions and processes, and
a worker restarted anywhere give the same scores. The price is a lag of one to
two epochs before a closed session teaches the models.

>>> from audienceflow.operators.settings import Settings
>>> m = build_models(Settings.load(environ={}), "shard-000")
>>> m.report()["intent"]["sessions_learned"]
0
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Final

from audienceflow.models import vectors
from audienceflow.models.clustering import BehaviorClusters
from audienceflow.models.config import ModelSettings
from audienceflow.models.copies import seed_memo
from audienceflow.models.drift import DriftWatch
from audienceflow.models.evaluation import contingency_scores, load_truth
from audienceflow.models.intent import IntentModel, binned_auc
from audienceflow.models.recommender import build_recommender
from audienceflow.models.recommender import summarize as summarize_reco
from audienceflow.operators import native
from audienceflow.operators.decimals import round_places
from audienceflow.operators.records import Drift, Event, SegmentChange, Session
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import UserState

SIGNALS = ("intent_error", "event_mix")
_STEPS: Final = vectors.STEPS
CONVERSION: Final = "conversion"  # the taxonomy category whose share of a session is the event mix


@dataclass(slots=True)
class _Lesson:
    """A closed session, queued until its epoch is over, then learned."""

    at: float  # close time (event time)
    session_id: str
    raw: tuple[Any, ...] | None  # intent features of the recorded score (None: no score)
    history: tuple[float, ...] | None
    converted: bool
    recorded: float
    channel: str | None
    mix: float
    user_vector: dict[str, float]

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # A plain slots class's state, from the compiled build's native class too.
        return native.slots_state(self)

    def __setstate__(self, state: Any) -> None:
        native.set_slots(self, state)


@dataclass(slots=True)
class _Version:
    """A frozen copy of the models that events of one epoch read."""

    intent: IntentModel
    clusters: BehaviorClusters
    reco: Any = None  # the recommender's item models (models/recommender.py), when on

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # A plain slots class's state, from the compiled build's native class too.
        return native.slots_state(self)

    def __setstate__(self, state: Any) -> None:
        native.set_slots(self, state)


@dataclass(slots=True, frozen=True)
class _Read:
    """The version read by every time in ``[low, high)`` while ``versions`` is current."""

    low: float
    high: float
    versions: dict[int, _Version]
    version: _Version


def _read_range(
    e: int, epoch: float, versions: dict[int, _Version], version: _Version
) -> _Read | None:
    """Times that surely divide by ``epoch`` to epoch ``e`` (``math.floor(t / epoch)``):
    ``[e * epoch, (e + 1) * epoch)`` shrunk by a relative 2**-50 at both ends, so that
    neither the products nor the division's rounding can move a time inside it to
    another epoch (as ``ShardModels._quiet``). None for epochs at or below 0."""
    low = e * epoch
    if not low > 0.0:
        return None
    return _Read(low * (1.0 + 2.0**-50), (e + 1) * epoch * (1.0 - 2.0**-50), versions, version)


def build_models(settings: Settings, shard: str) -> ShardModels:
    """The model replica of ``shard`` (``settings.models`` was checked at load)."""
    return ShardModels(settings.models, settings, shard)


# Its attributes in the order ``__init__`` sets them: a plain class's ``__dict__``, the state
# it pickles (``native.attrs_state``) less the caches, the same from the compiled build's
# native class.
_ATTRS = (
    "cfg",
    "shard",
    "timeout",
    "max_length",
    "product_events",
    "half_life",
    "clusters",
    "intent",
    "drift",
    "sizes",
    "assigned",
    "epoch",
    "queue",
    "built",
    "versions",
    "reco",
    "quiet_until",
    "_read",
)
_STATE = _ATTRS[:-2]  # not the caches (``quiet_until``, ``_read``)


class ShardModels:
    """Clustering, intent and drift for one shard's users."""

    def __new__(cls, *args: Any, **kwargs: Any) -> ShardModels:
        # What pickle and ``copy`` make before ``__setstate__``: mypyc's own ``__new__``
        # of a native class (compiled build) would run ``__init__``, without arguments.
        return super().__new__(cls)

    def __init__(self, cfg: ModelSettings, settings: Settings, shard: str) -> None:
        self.cfg = cfg
        self.shard = shard
        spec = settings.sessions
        self.timeout = spec.timeout
        self.max_length = spec.max_length
        self.product_events = spec.product_events
        self.half_life = settings.features.affinity_half_life
        self.clusters = BehaviorClusters(
            cfg.algorithm, cfg.k, cfg.seed, cfg.halflife, cfg.dbstream, cfg.weights, cfg.warmup
        )
        self.intent = IntentModel(
            cfg.intent_model, cfg.intent_seed, cfg.learning_rate, cfg.max_channels
        )
        self.drift = DriftWatch(SIGNALS, cfg.detector, cfg.delta, cfg.threshold)
        self.sizes: dict[int, int] = {}
        # user -> cluster, kept only to score clusters against a configured ground truth
        self.assigned: dict[str, int] = {}
        self.epoch = cfg.epoch
        self.queue: list[_Lesson] = []
        # Every session closed before epoch ``built`` has been learned; versions[j] is
        # the frozen model trained on sessions closed before epoch j began.
        self.built: int | None = None
        self.versions: dict[int, _Version] = {}
        # recommendations (models/recommender.py); None when disabled
        self.reco = build_recommender(settings)
        # ``sync(now)`` for any ``now`` below this does nothing (``_quiet``): a caller may
        # skip the call. A cache, never pickled.
        self.quiet_until = -math.inf
        self._read: _Read | None = None  # a cache (``_version``), never pickled

    def __getstate__(self) -> dict[str, Any]:
        return native.attrs_state(self, _STATE)  # not the caches: snapshots stay as they were

    def __setstate__(self, state: dict[str, Any]) -> None:
        native.set_attrs(self, state)
        self.quiet_until = -math.inf
        self._read = None

    def _quiet(self) -> float:
        """A time below which ``sync`` has nothing to do: stream time is still in epoch
        ``built``. Kept a relative 2**-50 short of ``(built + 1) * epoch``, so every time
        below it divides by ``epoch`` to less than ``built + 1`` whatever the rounding
        (times from there on take the exact path)."""
        if self.built is None:
            return -math.inf
        end = (self.built + 1) * self.epoch
        return end * (1.0 - 2.0**-50) if end > 0 else -math.inf

    # --- epochs ---------------------------------------------------------------

    def _epoch(self, t: float) -> int:
        return math.floor(t / self.epoch)

    def _version(self, t: float) -> _Version:
        """The frozen models that something happening at event time ``t`` reads.

        Per event. The version found for an epoch is kept with a range of times that
        surely fall in that epoch (``_read``) while ``versions`` is the same dict (every
        change of ``versions`` but the first insertion into an empty one assigns a new
        dict): a time in that range reads it without dividing by ``epoch``.
        """
        read = self._read
        if read is not None and read.low <= t < read.high and read.versions is self.versions:
            return read.version
        e = self._epoch(t)
        found = self.versions.get(e - 1)
        if found is not None:
            self._read = _read_range(e, self.epoch, self.versions, found)
            return found
        want = e - 1
        if not self.versions:  # nothing has passed yet: the untrained models
            self.versions[want] = self._freeze()
            return self.versions[want]
        keys = sorted(self.versions)
        # Outside the kept range only for an input partition rejoining from idleness
        # behind stream time: the nearest version is the best there is.
        return self.versions[keys[0] if want < keys[0] else keys[-1]]

    def _freeze(self) -> _Version:
        """A deep copy of the models, their large parts copied directly (``copies``)."""
        reco = self.reco.freeze() if self.reco is not None else None
        intent = copy.deepcopy(self.intent, seed_memo(self.intent.copy_parts()))
        clusters = copy.deepcopy(self.clusters, seed_memo(self.clusters.copy_parts()))
        return _Version(intent, clusters, reco)

    def sync(self, now: float) -> list[SegmentChange | Drift]:
        """Stream time reached ``now``: learn the sessions of every epoch that has ended."""
        if now < self.quiet_until or now == -math.inf:  # called per event: mostly a no-op
            return []
        target = self._epoch(now)
        if self.built is None:
            self.built = target
            frozen = self._freeze()
            self.versions = {target - 1: frozen, target: frozen}
            self.quiet_until = self._quiet()
            return []
        out: list[SegmentChange | Drift] = []
        while self.built < target:
            end = (self.built + 1) * self.epoch
            due = [x for x in self.queue if x.at < end]
            reco_due = self.reco is not None and self.reco.pending(end)
            if not due and not reco_due:
                # Nothing to learn up to ``target``: the versions in between are equal.
                if not any(x.at < target * self.epoch for x in self.queue) and not (
                    self.reco is not None and self.reco.pending(target * self.epoch)
                ):
                    latest = self.versions[self.built]
                    self.built = target
                    self.versions = {target - 1: latest, target: latest}
                    break
            else:
                self.queue = [x for x in self.queue if x.at >= end]
                for lesson in sorted(due, key=_lesson_order):
                    out.extend(self._learn(lesson))
            if reco_due and self.reco is not None:  # recommendations: the epoch's interactions
                self.reco.learn_until(end)
            self.built += 1
            frozen = self._freeze() if due or reco_due else self.versions[self.built - 1]
            self.versions = {self.built - 1: self.versions[self.built - 1], self.built: frozen}
        self.quiet_until = self._quiet()
        return out

    def flush(self) -> list[SegmentChange | Drift]:
        """End of a recorded stream: learn every queued session now."""
        out: list[SegmentChange | Drift] = []
        for lesson in sorted(self.queue, key=_lesson_order):
            out.extend(self._learn(lesson))
        self.queue = []
        if self.reco is not None:
            self.reco.learn_until(math.inf)
        return out

    def _learn(self, x: _Lesson) -> list[SegmentChange | Drift]:
        out: list[SegmentChange | Drift] = []
        if x.raw is not None and x.history is not None:
            self.intent.see_channel(x.channel)
            self.intent.learn_raw(x.raw, x.history, x.converted, x.recorded)
            if self.drift.update("intent_error", abs(float(x.converted) - x.recorded)):
                out.append(self._drift("intent_error", x.at))
        if self.drift.update("event_mix", x.mix):
            out.append(self._drift("event_mix", x.at))
        self.clusters.assign(x.user_vector)
        return out

    # --- per event: predict only -------------------------------------------

    def on_event(self, user: UserState, ev: Event) -> None:
        """Score the open session after ``ev`` was applied to it."""
        if self.reco is not None:  # recommendations: evaluate and queue, reading the version
            self.reco.on_event(user, ev, self._version(ev.ts).reco)
        s = user.session
        if s is None:
            return
        m = user.model
        if m.get("sid") != s.session_id:
            for key in ("h", "pv", "qv", "step", "x", "p"):
                m.pop(key, None)
            m["sid"] = s.session_id
            m["h"] = vectors.open_history(user, s)
        name, ts = ev.name, ev.ts
        if name in self.product_events:
            last = m.get("pv")
            if last is not None and abs(ts - last) <= self.cfg.quick_view_gap:
                m["qv"] = m.get("qv", 0) + 1
            m["pv"] = ts
        read = self._read  # ``_version``'s kept range, read here first (per event)
        if read is not None and read.low <= ts < read.high and read.versions is self.versions:
            model = read.version.intent
        else:
            model = self._version(ts).intent
        if s.funnel_reached and s.intent_before_funnel is None:
            # ``ev`` is the first funnel event: the score held before it is the session's.
            if "x" not in m:  # the session opened with it: score the history alone
                m["x"] = (0, 0, 0, 0, 0, 0.0, "", s.device, s.channel)
                m["p"] = model.predict_raw(m["x"], m["h"])
            s.intent_before_funnel = m["p"]
        # ``vectors.step_of(ev)`` and ``vectors.intent_raw(s, m)``, inlined (per event)
        step = name if name in _STEPS else ev.type
        m["step"] = step
        n = s.events
        raw = (
            n,
            s.product_views,
            m.get("qv", 0),
            s.cart_adds,
            s.searches,
            (s.last - s.start) / (n - 1) if n > 1 else 0.0,
            step,
            s.device,
            s.channel,
        )
        p = model.predict_raw(raw, m["h"])
        user.intent_score = p
        if not s.funnel_reached:
            m["x"] = raw
            m["p"] = p

    def recommend(
        self, user: UserState, n: int, at: float, domain: str = "products"
    ) -> list[dict[str, Any]]:
        """The top ``n`` items of ``domain`` for ``user`` at event time ``at`` ([] when off)."""
        if self.reco is None:
            return []
        return self.reco.recommend(user, n, at, domain, self._version(at).reco)

    # --- per session: learn -------------------------------------------------

    def on_session(self, user: UserState, session: Session) -> list[SegmentChange | Drift]:
        """Record the session's pre-funnel score, queue it for learning, re-cluster the user."""
        at = self.closed_at(session)
        out: list[SegmentChange | Drift] = []
        m = user.model
        raw = history = None
        recorded = 0.5
        if m.get("sid") == session.session_id and "x" in m:
            recorded = float(m["p"])
            session.intent_score = recorded
            raw, history = m["x"], m["h"]
        for key in ("sid", "h", "pv", "qv", "step", "x", "p"):
            m.pop(key, None)
        m["cart"] = 1 if user.cart else 0
        if self.reco is not None:  # recommendations: refresh the user's stored top items
            self.reco.on_session(user, at, self._version(at).reco)
        mix = session.by_category.get(CONVERSION, 0) / session.events if session.events else 0.0
        x = vectors.user_vector(user, at, self.cfg.categories, self.half_life)
        self.queue.append(
            _Lesson(
                at,
                session.session_id,
                raw,
                history,
                session.converted,
                recorded,
                raw[-1] if raw is not None else None,  # the session's acquisition channel
                mix,
                x,
            )
        )
        cid = self._version(at).clusters.nearest(x)
        if cid >= 0 and cid != user.cluster:
            out.extend(self._move(user, cid, at, x))
        return out

    def reassign(self, user: UserState, at: float) -> list[SegmentChange | Drift]:
        """Checkpoint: move ``user`` to the cluster nearest now, without learning.

        Users assigned early keep the cluster of an immature model until their
        next session; an engine checkpoint (e.g. at end of input) can call this.
        """
        if not user.history:
            return []
        x = vectors.user_vector(user, at, self.cfg.categories, self.half_life)
        cid = self.clusters.nearest(x)
        if cid < 0 or cid == user.cluster:
            return []
        return self._move(user, cid, at, x)

    def erase(self, user_ids: set[str], message_ids: set[str]) -> int:
        """A deletion: drop what is queued of these users, not yet learned (their closed
        sessions, their interactions), and the recommender's rankings kept for them; how
        many (queued). What an epoch already learned is an aggregate of many users and
        stays."""
        prefixes = tuple(f"{u}:" for u in user_ids)  # session ids start with the user id
        keep = [x for x in self.queue if not x.session_id.startswith(prefixes)]
        dropped = len(self.queue) - len(keep)
        self.queue = keep
        for uid in user_ids:
            self.assigned.pop(uid, None)
        if self.reco is not None:
            dropped += self.reco.erase(message_ids, user_ids)
        return dropped

    def rename(self, old: str, new: str) -> None:
        """A merge: the profile ``new`` takes the cluster the user ``old`` was in (the
        cluster keeps its size: one member under another id)."""
        cid = self.assigned.pop(old, None)
        if cid is not None:
            self.assigned[new] = cid

    def forget(self, user: UserState, at: float) -> list[SegmentChange | Drift]:
        """Eviction: take ``user`` out of their cluster (an ``exit`` change at ``at``)."""
        old = user.cluster
        self.assigned.pop(user.user_id, None)
        if old < 0:
            return []
        user.cluster = -1
        user.segments.pop(f"cluster:{old}", None)
        self.sizes[old] = self.sizes.get(old, 1) - 1
        reason = {"rule": "model:clustering", "cluster": old, "now": None, "values": {}}
        return [SegmentChange(user.user_id, f"cluster:{old}", "exit", at, reason)]

    def closed_at(self, session: Session) -> float:
        """The event time the engine closed ``session`` at (its deadline)."""
        if session.end_reason == "max_length":
            return float(session.start + self.max_length)
        return float(session.end + self.timeout)

    def _move(
        self, user: UserState, cid: int, at: float, x: dict[str, float]
    ) -> list[SegmentChange | Drift]:
        values = rounded(x)
        out: list[SegmentChange | Drift] = []
        old = user.cluster
        if old >= 0:
            user.segments.pop(f"cluster:{old}", None)
            self.sizes[old] = self.sizes.get(old, 1) - 1
            out.append(
                SegmentChange(
                    user.user_id,
                    f"cluster:{old}",
                    "exit",
                    at,
                    {"rule": "model:clustering", "cluster": old, "now": cid, "values": values},
                )
            )
        user.cluster = cid
        if self.cfg.truth is not None:
            self.assigned[user.user_id] = cid
        user.segments[f"cluster:{cid}"] = at
        self.sizes[cid] = self.sizes.get(cid, 0) + 1
        out.append(
            SegmentChange(
                user.user_id,
                f"cluster:{cid}",
                "enter",
                at,
                {
                    "rule": "model:clustering",
                    "cluster": cid,
                    "was": old if old >= 0 else None,
                    "values": values,
                },
            )
        )
        return out

    def _drift(self, signal: str, at: float) -> Drift:
        est = self.drift.estimate(signal)
        return Drift(
            self.cfg.detector,
            signal,
            self.shard,
            at,
            {
                "sessions": self.drift.seen[signal],
                "estimate": None if est is None else round(est, 6),
            },
        )

    # --- reporting ------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """This replica's numbers: intent metrics, clusters, drift counts (JSON-ready)."""
        out: dict[str, Any] = {
            "intent": self.intent.report(),
            "clustering": {
                "algorithm": self.cfg.algorithm,
                "k": self.cfg.k,
                "sessions_learned": self.clusters.learned,
                "clusters": self.clusters.describe(self.sizes),
            },
            "drift": self.drift.report(),
        }
        if self.reco is not None:
            out["recommendations"] = self.reco.report()
        if self.cfg.truth is not None:
            truth = load_truth(self.cfg.truth)
            table: dict[str, dict[str, int]] = {}
            for uid, cid in sorted(self.assigned.items()):
                label = truth.get(uid)
                if label is not None:
                    row = table.setdefault(str(cid), {})
                    row[label] = row.get(label, 0) + 1
            out["evaluation"] = {
                "truth": self.cfg.truth,
                **contingency_scores(table),
                "_table": table,
            }
        return out


# ``rounded``'s memory: user vectors repeat most values (90 % on a generated stream).
# Never holds a zero (0.0 and -0.0 are equal keys but print apart) nor nan.
_ROUNDED: Final[dict[float, float]] = {}
_ROUNDED_MAX: Final = 1 << 16


def rounded(x: dict[str, Any]) -> dict[str, Any]:
    """``{k: round(v, 4)}`` (a user vector as a cluster change reports it), each value's
    rounding remembered: equal floats round alike, but for the two zeros (equal, printed
    apart: each rounds to itself) and nan (unequal to itself, rounded each time), as is
    anything not a float. Most of a user vector's values are zeros.

    >>> rounded({"a": 0.123456, "b": -0.0, "c": 0.123456})
    {'a': 0.1235, 'b': -0.0, 'c': 0.1235}
    """
    # ``Any``, not ``float``: compiled (``make fast``), a value typed float is converted
    # to one, and an int must round to an int here as ``round`` does.
    memo = _ROUNDED
    out = {}
    for k, v in x.items():
        r = memo.get(v)
        if r is None or type(v) is not float:
            if v == 0.0 and type(v) is float:  # round(±0.0, 4) is that zero, sign kept
                out[k] = v
                continue
            r = round_places(v, 4)
            if type(v) is float and v == v:
                if len(memo) >= _ROUNDED_MAX:
                    memo.clear()
                memo[v] = r
        out[k] = r
    return out


def _lesson_order(x: _Lesson) -> tuple[float, str]:
    return (x.at, x.session_id)


def summarize(per_shard: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Combine the replicas' reports for ``summary.json``.

    The intent AUC is computed from the summed score histograms (exact across
    shards), log loss is the sessions-weighted mean, drift counts add up. With
    one shard its clusters are listed directly; with several, every shard's own
    report is under ``shards`` (cluster ids are per replica).
    """
    shards = sorted(per_shard)
    reports = [per_shard[s] for s in shards]
    pos: dict[int, int] = {}
    neg: dict[int, int] = {}
    learned = converted = 0
    loss = 0.0
    detected: dict[str, int] = {}
    for r in reports:
        it = r["intent"]
        for src, dst in ((it["_pos"], pos), (it["_neg"], neg)):
            for b, n in src.items():
                dst[int(b)] = dst.get(int(b), 0) + n
        learned += it["sessions_learned"]
        converted += it["converted"]
        loss += (it["log_loss"] or 0.0) * it["sessions_learned"]
        for sig, n in r["drift"]["detected"].items():
            detected[sig] = detected.get(sig, 0) + n
    auc = binned_auc(pos, neg)
    out: dict[str, Any] = {
        "replicas": len(shards),
        "intent": {
            "model": reports[0]["intent"]["model"] if reports else None,
            "sessions_learned": learned,
            "converted": converted,
            "roc_auc": None if auc is None else round(auc, 6),
            "log_loss": round(loss / learned, 6) if learned else None,
        },
        "drift_detected": detected,
    }
    reco = [r["recommendations"] for r in reports if "recommendations" in r]
    if reco:
        out["recommendations"] = summarize_reco(reco)
    if len(shards) == 1:
        out["clustering"] = reports[0]["clustering"]
    else:
        out["shards"] = {s: _public(r) for s, r in zip(shards, reports, strict=True)}
    merged: dict[str, dict[str, int]] = {}
    truth = None
    for s, r in zip(shards, reports, strict=True):
        ev = r.get("evaluation")
        if ev is not None:
            truth = ev["truth"]
            for cid, row in ev["_table"].items():
                merged[cid if len(shards) == 1 else f"{s}/{cid}"] = row
    if truth is not None:
        out["evaluation"] = {"truth": truth, **contingency_scores(merged), "table": merged}
    return out


def _public(report: Any) -> Any:
    """A report without its mergeable internals (keys starting with ``_``)."""
    if isinstance(report, dict):
        return {k: _public(v) for k, v in report.items() if not k.startswith("_")}
    return report
