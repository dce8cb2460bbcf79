"""The ``models.recommendations`` section, read once at load into ``RecoSettings``.

Defaults live in ``flows/default_config.yaml``; every rejected value names its key,
e.g. ``models.recommendations.window: must be a whole number >= 1``.

>>> from audienceflow.operators.settings import Settings
>>> Settings.load(environ={}).models.recommendations.window
5
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audienceflow.operators.config import Reader

KINDS = ("view", "add", "order")
DEFAULT_EVENTS = {
    "view": ("Product Viewed", "Product Clicked", "Video Playback Started"),
    "add": ("Product Added",),
    "order": ("Order Completed", "Video Content Completed"),
}
RECO_KEYS = (
    "enabled",
    "events",
    "weights",
    "window",
    "neighbours",
    "max_partners",
    "max_user_interactions",
    "max_item_interactions",
    "max_bought",
    "seed_decay",
    "cross_weight",
    "half_life",
    "popular",
    "max_groups",
    "n",
    "evaluate",
    "eval_window",
    "seed",
)


@dataclass(frozen=True, slots=True)
class RecoSettings:
    """Hyper-parameters of the recommender (``models/reco.py``), as configured."""

    enabled: bool = True
    # event name -> interaction kind (view, add, order)
    events: dict[str, str] = field(
        default_factory=lambda: {n: k for k, names in DEFAULT_EVENTS.items() for n in names}
    )
    weights: dict[str, float] = field(
        default_factory=lambda: {"view": 1.0, "add": 3.0, "order": 5.0}
    )
    window: int = 5
    neighbours: int = 20
    max_partners: int = 200
    max_user_interactions: int = 500
    max_item_interactions: int = 2000
    max_bought: int = 50
    seed_decay: float = 0.85
    cross_weight: float = 1.0
    half_life: float = 7 * 86400.0
    popular: int = 100
    max_groups: int = 256
    n: int = 10
    evaluate: bool = True
    eval_k: int = 10
    eval_window: int = 1000
    seed: int = 7


def read_recommendations(r: Reader) -> RecoSettings:
    """``models.recommendations``, every key checked (called by ``read_models``)."""
    p = ("models", "recommendations")
    r.mapping(*p, known=RECO_KEYS)
    raw_events = r.mapping(*p, "events", known=KINDS, what="interaction kind")
    events: dict[str, str] = {}
    for kind in KINDS:
        names = r.strings(*p, "events", kind, what="event names") if kind in raw_events else ()
        for name in names:
            if name in events:
                raise r.error((*p, "events", kind), f"{name!r} is already a {events[name]} event")
            events[name] = kind
    raw_weights = r.mapping(*p, "weights", known=KINDS, what="interaction kind")
    weights = {k: r.number(*p, "weights", k, positive=True) for k in KINDS if k in raw_weights}
    for k in KINDS:
        weights.setdefault(k, RecoSettings().weights[k])
    return RecoSettings(
        enabled=r.boolean(*p, "enabled"),
        events=events,
        weights=weights,
        window=r.integer(*p, "window", minimum=1),
        neighbours=r.integer(*p, "neighbours", minimum=1),
        max_partners=r.integer(*p, "max_partners", minimum=1),
        max_user_interactions=r.integer(*p, "max_user_interactions", minimum=1),
        max_item_interactions=r.integer(*p, "max_item_interactions", minimum=1),
        max_bought=r.integer(*p, "max_bought"),
        seed_decay=r.number(*p, "seed_decay", maximum=1.0),
        cross_weight=r.number(*p, "cross_weight"),
        half_life=r.duration(*p, "half_life", minimum=1.0),
        popular=r.integer(*p, "popular", minimum=1),
        max_groups=r.integer(*p, "max_groups"),
        n=r.integer(*p, "n", minimum=1),
        evaluate=r.boolean(*p, "evaluate"),
        eval_window=r.integer(*p, "eval_window", minimum=1),
        seed=r.integer(*p, "seed"),
    )
