"""The online models of one shard, plugged into the engine (``ModelHook``).

One ``ShardModels`` per shard holds a behaviour clusterer, an intent model and
drift detectors, learned from that shard's users only; it lives in the
shard's state, so Bytewax recovery snapshots and restores it with the users.
Per event it only predicts (``user.intent_score``); it learns at session close.

>>> from audienceflow.operators.settings import Settings
>>> m = build_models(Settings.load(environ={}), "shard-000")
>>> m.report()["intent"]["sessions_learned"]
0
"""

from __future__ import annotations

from typing import Any

from audienceflow.models import vectors
from audienceflow.models.clustering import BehaviorClusters
from audienceflow.models.config import ModelSettings
from audienceflow.models.drift import DriftWatch
from audienceflow.models.evaluation import contingency_scores, load_truth
from audienceflow.models.intent import IntentModel, binned_auc
from audienceflow.models.recommender import build_recommender
from audienceflow.models.recommender import summarize as summarize_reco
from audienceflow.operators.records import Drift, Event, SegmentChange, Session
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import UserState

SIGNALS = ("intent_error", "event_mix")
CONVERSION = "conversion"  # the taxonomy category whose share of a session is the event mix


def build_models(settings: Settings, shard: str) -> ShardModels:
    """The model replica of ``shard``; rejects a bad ``models:`` section with the key at fault."""
    return ShardModels(ModelSettings.parse(settings.models), settings, shard)


class ShardModels:
    """Clustering, intent and drift for one shard's users."""

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
        # recommendations (models/recommender.py); None when disabled
        self.reco = build_recommender(settings)

    # --- per event: predict only -------------------------------------------

    def on_event(self, user: UserState, ev: Event) -> None:
        """Score the open session after ``ev`` was applied to it."""
        if self.reco is not None:  # recommendations: evaluate, then learn
            self.reco.on_event(user, ev)
        s = user.session
        if s is None:
            return
        m = user.model
        if m.get("sid") != s.session_id:
            for key in ("h", "pv", "qv", "step", "x", "p"):
                m.pop(key, None)
            m["sid"] = s.session_id
            m["h"] = vectors.open_history(user, s)
            self.intent.see_channel(s.channel)
        if ev.name in self.product_events:
            last = m.get("pv")
            if last is not None and abs(ev.ts - last) <= self.cfg.quick_view_gap:
                m["qv"] = m.get("qv", 0) + 1
            m["pv"] = ev.ts
        if s.funnel_reached and s.intent_before_funnel is None:
            # ``ev`` is the first funnel event: the score held before it is the session's.
            if "x" not in m:  # the session opened with it: score the history alone
                m["x"] = (0, 0, 0, 0, 0, 0.0, "", s.device, s.channel)
                m["p"] = self.intent.predict(self._x(m["x"], m))
            s.intent_before_funnel = m["p"]
        m["step"] = vectors.step_of(ev)
        raw = vectors.intent_raw(s, m)
        p = self.intent.predict(self._x(raw, m))
        user.intent_score = p
        if not s.funnel_reached:
            m["x"] = raw
            m["p"] = p

    def recommend(
        self, user: UserState, n: int, at: float, domain: str = "products"
    ) -> list[dict[str, Any]]:
        """The top ``n`` items of ``domain`` for ``user`` at event time ``at`` ([] when off)."""
        return [] if self.reco is None else self.reco.recommend(user, n, at, domain)

    def _x(self, raw: tuple[Any, ...], m: dict[str, Any]) -> dict[str, float]:
        x: dict[str, float] = vectors.intent_vector(raw, m["h"], self.intent.channels)
        return x

    # --- per session: learn -------------------------------------------------

    def on_session(self, user: UserState, session: Session) -> list[SegmentChange | Drift]:
        """Record the session's pre-funnel score, learn from its outcome, re-cluster the user."""
        at = self.closed_at(session)
        out: list[SegmentChange | Drift] = []
        m = user.model
        if m.get("sid") == session.session_id and "x" in m:
            p = float(m["p"])
            session.intent_score = p
            self.intent.learn(self._x(m["x"], m), session.converted, p)
            if self.drift.update("intent_error", abs(float(session.converted) - p)):
                out.append(self._drift("intent_error", at))
        for key in ("sid", "h", "pv", "qv", "step", "x", "p"):
            m.pop(key, None)
        m["cart"] = 1 if user.cart else 0
        if self.reco is not None:  # recommendations: refresh the user's stored top items
            self.reco.on_session(user, at)
        mix = session.by_category.get(CONVERSION, 0) / session.events if session.events else 0.0
        if self.drift.update("event_mix", mix):
            out.append(self._drift("event_mix", at))
        x = vectors.user_vector(user, at, self.cfg.categories, self.half_life)
        cid = self.clusters.assign(x)
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
        values = {k: round(v, 4) for k, v in x.items()}
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
