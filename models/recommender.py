"""The recommender of one shard: item models per domain, users' recent items, evaluation.

At each view/add/order event with an item (``properties.product_id``, the
products of an order, or a video's ``content_asset_id``/``asset_id``), it first
ranks the top ``eval_k`` for the user with the model *before* the event, scores
that ranking, a popularity ranking and a random one against the items that came
(progressive evaluation), then queues the event as an ``Observation``. Reads use
the frozen version of the models the shard's model epoch gives (``models/hook.py``);
queued observations are learned at the epoch's end, in event-time order
(``learn_until``), so what is learned and read does not depend on how input
partitions interleave. The top ``n`` for a user are stored on
``user.recommendations`` at each cart change and session close, where triggers
(``attach: recommendations``) and the profile read them (``recommendations_of``): on a
frozen view as a ``PendingRecs``, ranked when first read or before the view stops being
kept exact (``ItemModel._settle``), so a list replaced unread is never ranked.

>>> from audienceflow.operators.settings import Settings
>>> build_recommender(Settings.load(environ={})) is None  # opt-in: off by default
True
>>> on = {"AUDIENCEFLOW_MODELS__RECOMMENDATIONS__ENABLED": "true"}
>>> r = build_recommender(Settings.load(environ=on))
>>> r.report()["products"]["evaluation"]["events_scored"]
0
"""

from __future__ import annotations

from typing import Any

from audienceflow.models.reco import (
    DOMAINS,
    ID_KEYS,
    Evaluator,
    ItemModel,
    Observation,
    RecoUser,
)
from audienceflow.operators.amounts import quantity
from audienceflow.operators.features import PRODUCTS_READ
from audienceflow.operators.native import plain_class
from audienceflow.operators.reco_settings import RecoSettings
from audienceflow.operators.records import Event
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import NO_ITEMS, PendingRecs, UserState, usable_category

OUT_KEY = {"products": "product_id", "content": "content_asset_id"}


def build_recommender(settings: Settings) -> Recommender | None:
    """The recommender ``models.recommendations`` describes, or None when it is disabled."""
    cfg = settings.models.recommendations
    if not cfg.enabled:
        return None
    fs = settings.features
    return Recommender(cfg, fs.cart_add_events | fs.cart_remove_events)


def interaction(ev: Event, kinds: dict[str, str]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(kind, domain, items as (id, category)) of an event; kind '' when it is none."""
    kind = kinds.get(ev.name)
    if kind is None:
        return "", "", ()
    props = ev.properties
    cat = props.get("category")
    cat = cat if isinstance(cat, str) and usable_category(cat) else ""
    for domain in DOMAINS:
        for key in ID_KEYS[domain]:
            pid = props.get(key)
            if isinstance(pid, str | int) and not isinstance(pid, bool) and pid != "":
                return kind, domain, ((str(pid), cat),)
    products = props.get("products")
    if isinstance(products, list):
        found: dict[str, str] = {}
        for p in products[:PRODUCTS_READ]:
            if isinstance(p, dict):
                pid = p.get("product_id")
                if isinstance(pid, str | int) and not isinstance(pid, bool) and pid != "":
                    c = p.get("category")
                    found.setdefault(
                        str(pid), c if isinstance(c, str) and usable_category(c) else ""
                    )
        if found:
            return kind, "products", tuple(found.items())
    return kind, "", ()


@plain_class  # pickles (snapshots): the same class in both builds
class Recommender:
    """Item models for products and content, users' windows, and their evaluation."""

    def __init__(self, cfg: RecoSettings, cart_changes: frozenset[str]) -> None:
        self.cfg = cfg
        self.cart_changes = cart_changes
        self.models = {d: ItemModel(cfg) for d in DOMAINS}
        self.evals = {
            d: Evaluator(cfg.eval_k, cfg.eval_window, cfg.seed + i) for i, d in enumerate(DOMAINS)
        }
        # (event time, message id, domain, observation, user id), learned at the epoch's
        # end; the user id (the profile's at the event) lets a deletion find them all
        self.queue: list[tuple[float, str, str, Observation, str]] = []

    # --- versions and learning ------------------------------------------------------

    def freeze(self) -> dict[str, ItemModel]:
        """Views of the item models as they are now, for a model epoch to read."""
        return {d: m.view() for d, m in self.models.items()}

    def pending(self, before: float) -> bool:
        """Whether observations of events before ``before`` wait to be learned."""
        return any(q[0] < before for q in self.queue)

    def erase(self, message_ids: set[str], user_ids: set[str] | None = None) -> int:
        """Drop the queued (not yet learned) observations of these events or users; how
        many. By user too: the dedup window that names a user's events may be shorter
        than a model epoch. (A queue from an older snapshot has no user ids.) The users'
        kept rankings go too, from every live view (the versions a model epoch reads,
        ``ShardModels.versions``, are the last two ``freeze`` made: the models' views)."""
        users = user_ids or set()
        for m in self.models.values():
            m.forget_users(users)
        keep = [
            q for q in self.queue if q[1] not in message_ids and (len(q) < 5 or q[4] not in users)
        ]
        dropped = len(self.queue) - len(keep)
        self.queue = keep
        return dropped

    def learn_until(self, end: float) -> None:
        """Learn every queued observation of an event before ``end``, in event-time order."""
        due = sorted((q for q in self.queue if q[0] < end), key=_queue_order)
        if not due:
            return
        self.queue = [q for q in self.queue if q[0] >= end]
        for q in due:  # (an older snapshot's entries have no user id)
            self.models[q[2]].learn(q[3])

    # --- the engine's calls ---------------------------------------------------------

    def on_event(
        self, user: UserState, ev: Event, version: dict[str, ItemModel] | None = None
    ) -> None:
        """Evaluate, then queue ``ev`` (already applied to the user's features).

        ``version``: the item models to read (default: the live ones, which learn
        only in ``learn_until``; without epochs, call that after each event).
        """
        models = self.models if version is None else version
        kind, domain, items = interaction(ev, self.cfg.events)
        if items:
            self._interaction(user, ev, kind, domain, items, models[domain])
        if ev.name in self.cart_changes:
            self.refresh(user, ev.ts, ("products",), models)
        elif kind == "order":
            # What was bought (and the cart an order empties) leaves the list now: a trigger
            # on the order, or a segment entered before the session closes, attaches it.
            self.refresh(user, ev.ts, (domain or "products",), models)
        elif user.recommendations is None:
            # A user's first event: popular items until their own items say more, so a
            # trigger attaching recommendations to a newcomer does not send an empty list.
            self.refresh(user, ev.ts, self._domains(user, models), models)

    def on_session(
        self, user: UserState, at: float, version: dict[str, ItemModel] | None = None
    ) -> None:
        """Session close: refresh the user's stored recommendations."""
        models = self.models if version is None else version
        self.refresh(user, at, self._domains(user, models), models)

    @staticmethod
    def _domains(user: UserState, models: dict[str, ItemModel]) -> tuple[str, ...]:
        """The domains to rank for ``user``: those with their items, or with any item at all
        (a user with none of their own gets the popular ones; a shop without videos keeps
        no empty content list)."""
        ru = user.model.get("reco")
        return tuple(d for d in DOMAINS if (ru is not None and ru.recent.get(d)) or models[d].order)

    def refresh(
        self, user: UserState, at: float, domains: tuple[str, ...], models: dict[str, ItemModel]
    ) -> None:
        """Store the user's top ``n`` of ``domains`` at ``at``, ranked when first read: on
        a frozen view, a ``PendingRecs`` its view ranks before it stops being exact (a
        list replaced unread, as about half are, is never ranked); else at once."""
        recs = dict(user.recommendations or {})  # a new dict: a profile may hold the old
        for d in domains:
            old = recs.get(d)
            if isinstance(old, PendingRecs):
                old.drop()
            model = models[d]
            owed = model.owed
            if owed is None:
                recs[d] = model.payload(*self._inputs(user, self.cfg.n, at, d))
            else:
                pending = recs[d] = PendingRecs(model, self._inputs(user, self.cfg.n, at, d))
                owed.append(pending)
                if len(owed) > model.owed_limit:
                    model.compact_owed()
        user.recommendations = recs

    # --- read -------------------------------------------------------------------------

    def recommend(
        self,
        user: UserState,
        n: int,
        at: float,
        domain: str = "products",
        version: dict[str, ItemModel] | None = None,
    ) -> list[dict[str, Any]]:
        """The top ``n`` items of ``domain`` for ``user`` at event time ``at`` (JSON-ready)."""
        model = (self.models if version is None else version)[domain]
        return model.payload(*self._inputs(user, n, at, domain))

    def _inputs(
        self, user: UserState, n: int, at: float, domain: str
    ) -> tuple[list[tuple[str, float]], set[str], int, int, float, tuple[str, ...], str, str]:
        """``ItemModel.payload``'s arguments for ``user`` now, all new objects (the user's
        state changes after; a ``PendingRecs`` keeps them)."""
        ru: RecoUser | None = user.model.get("reco")
        recent = ru.recent.get(domain, []) if ru is not None else []
        cart = tuple(user.cart) if domain == "products" else ()
        return (
            self._seeds(recent, cart),
            self._exclude(ru, recent, cart),
            n,
            user.cluster,
            at,
            self._categories(user, domain),
            user.user_id,
            OUT_KEY[domain],
        )

    def _seeds(
        self, recent: list[tuple[str, float, str, bool]], cart: tuple[str, ...]
    ) -> list[tuple[str, float]]:
        """The window (newest strongest) and the last ``window`` cart products, weighted."""
        seeds: dict[str, float] = {}
        w = 1.0
        for item, weight, _, _ in reversed(recent):
            seeds[item] = weight * w
            w *= self.cfg.seed_decay
        add = self.cfg.weights["add"]
        for item in cart[-self.cfg.window :]:
            seeds[item] = max(seeds.get(item, 0.0), add)
        return list(seeds.items())

    @staticmethod
    def _exclude(
        ru: RecoUser | None, recent: list[tuple[str, float, str, bool]], cart: tuple[str, ...]
    ) -> set[str]:
        out = {item for item, _, _, _ in recent}
        out.update(cart)
        if ru is not None:
            out.update(ru.bought)
        return out

    @staticmethod
    def _categories(user: UserState, domain: str) -> tuple[str, ...]:
        if domain != "content" or not user.video_completions:
            return ()
        ranked = sorted(user.video_completions.items(), key=lambda kv: (-kv[1], kv[0]))
        return tuple(c for c, _ in ranked[:3])

    # --- evaluate, then learn ---------------------------------------------------------

    def _interaction(
        self,
        user: UserState,
        ev: Event,
        kind: str,
        domain: str,
        items: tuple[tuple[str, str], ...],
        model: ItemModel,
    ) -> None:
        cfg = self.cfg
        ru: RecoUser | None = user.model.get("reco")
        if ru is None:
            ru = user.model["reco"] = RecoUser()
        recent = ru.recent.setdefault(domain, [])
        cart = self._cart_before(user, ev, kind, items) if domain == "products" else ()
        exclude = self._exclude(ru, recent, cart)
        targets = {item for item, _ in items if item not in exclude}
        if cfg.evaluate and targets:
            k = cfg.eval_k
            seeds = self._seeds(recent, cart)
            cats = self._categories(user, domain)
            # Explained when a list pending on this view may be ranked from the same inputs
            # (the one the last cart change stored): ``ranked_for`` keeps it for that.
            stored = (user.recommendations or NO_ITEMS).get(domain)
            explain = isinstance(stored, PendingRecs) and stored.view is model
            ranked = model.rank_items(seeds, exclude, k, user.cluster, cats, user.user_id, explain)
            ev_ = self.evals[domain]
            ev_.score(
                targets,
                len(targets),
                [
                    ranked,
                    model.popular_items(k, exclude),
                    ev_.random_ranking(model, exclude, ev.message_id),
                ],
            )
        weight = cfg.weights[kind]
        paired = tuple(model.keep(user.user_id, item, ru.seen) for item, _ in items)
        context = tuple((item, w) for item, w, _, kept in recent if kept)
        views: tuple[str, ...] = ()
        if kind == "order":
            views = tuple(item for item, _, k, kept in recent if k == "view" and kept)
        obs = Observation(ev.ts, items, kind, weight, context, user.cluster, views, paired)
        self.queue.append((ev.ts, ev.message_id, domain, obs, user.user_id))
        ru.seen += 1
        for (item, _), kept in zip(items, paired, strict=True):
            w = weight
            for i, (old, w_old, _, kept_old) in enumerate(recent):
                if old == item:
                    del recent[i]
                    w, kept = max(w, w_old), kept or kept_old
                    break
            recent.append((item, w, kind, kept))
        del recent[: max(0, len(recent) - cfg.window)]
        if kind == "order" and cfg.max_bought:
            for item, _ in items:
                ru.bought.pop(item, None)
                ru.bought[item] = None
            while len(ru.bought) > cfg.max_bought:
                del ru.bought[next(iter(ru.bought))]

    @staticmethod
    def _cart_before(
        user: UserState, ev: Event, kind: str, items: tuple[tuple[str, str], ...]
    ) -> tuple[str, ...]:
        """The cart's products as they were before ``ev`` (features already applied it)."""
        if kind != "add":
            return tuple(user.cart)
        qty = quantity(ev.properties.get("quantity", 1)) or 1  # as the cart read it
        added = {item for item, _ in items}
        return tuple(p for p, (_, _, q) in user.cart.items() if p not in added or q != qty)

    # --- reporting --------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return {
            d: {**self.models[d].report(), "evaluation": self.evals[d].report()} for d in DOMAINS
        }


def _queue_order(q: tuple[float, str, str, Observation, str]) -> tuple[float, str, str]:
    return q[0], q[1], q[2]


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine the shards' recommender reports: counts and metric sums add up."""
    out: dict[str, Any] = {}
    for d in DOMAINS:
        parts = [r[d] for r in reports if d in r]
        if not parts:
            continue
        evs = [p["evaluation"] for p in parts]
        k = evs[0]["k"]
        n = sum(e["events_scored"] for e in evs)
        w = sum(e["_recent_n"] for e in evs)
        names = ("model", "popularity", "random")

        def total(key: str, i: int, evs: list[dict[str, Any]] = evs) -> float:
            return float(sum(e[key][i] for e in evs))

        hit = {m: round(total("_hits", i) / n, 6) if n else None for i, m in enumerate(names)}
        ndcg = {m: round(total("_ndcg", i) / n, 6) if n else None for i, m in enumerate(names)}
        whit = {
            m: round(total("_recent", 2 * i) / w, 6) if w else None for i, m in enumerate(names)
        }
        wndcg = {
            m: round(total("_recent", 2 * i + 1) / w, 6) if w else None for i, m in enumerate(names)
        }
        pop = hit["popularity"]
        out[d] = {
            "items": sum(p["items"] for p in parts),
            "items_with_neighbours": sum(p["items_with_neighbours"] for p in parts),
            "interactions": sum(p["interactions"] for p in parts),
            "events_scored": n,
            f"hit_rate_at_{k}": hit,
            f"ndcg_at_{k}": ndcg,
            "lift_over_popularity": (
                round(hit["model"] / pop, 4) if hit["model"] is not None and pop else None
            ),
            "window": {
                "size": evs[0]["window"]["size"],
                "events": w,
                f"hit_rate_at_{k}": whit,
                f"ndcg_at_{k}": wndcg,
            },
        }
    return out
