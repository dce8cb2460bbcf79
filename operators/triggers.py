"""Behavioral triggers: rules on events, segment changes and event-time timers
that propose actions. Caps then decide whether each is delivered.

Every trigger has one way to receive what happened (``receive``: an event or a
segment change) and one way to fire when its timer is due (``fire``).

``cart_abandonment`` by default: each "Product Added" (re)starts a 15-minute
timer, "Order Completed" cancels it, and when it fires one action carries the
cart; no other follows until a new "Product Added".

A timer's ``when`` is evaluated at fire time, so it reads user-level windows as they
are then: ``count('Product Viewed', 2h) >= 2`` with ``after: 1h`` and ``cancel_on:
[Product Added]`` is "viewed twice, no add-to-cart within the hour". An event
trigger's ``when`` may also read the event's own ``properties.X``.

A trigger whose ``when`` does not hold still returns its candidate, marked
``blocked`` with the values the rule saw, so the run summary can say why a trigger
never fired; the engine decides only the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audienceflow.operators import features
from audienceflow.operators.config import suggest
from audienceflow.operators.records import Event, SegmentChange, iso
from audienceflow.operators.rules import Context, Rule
from audienceflow.operators.state import INF, NO_ITEMS, UserState, recommendations_of
from audienceflow.operators.tracking import matches_name

# ``attach:`` names -> the recommender's domain, and back to the payload key
ATTACH_DOMAINS = {"recommendations": "products", "content_recommendations": "content"}
RECOMMENDATION_KEYS = {d: k for k, d in ATTACH_DOMAINS.items()}


def parse_attach(value: Any, kind: str) -> tuple[str | None, tuple[str, ...]]:
    """``attach:`` (a name or a list) -> ("cart" or None, recommendation domains).

    Raises ``ValueError`` with the reason: an unknown name, or ``cart`` on a
    trigger that is not a timer.
    """
    names = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"must be a name or a list of names; got {value!r}")
    known = ("cart", *ATTACH_DOMAINS) if kind == "timer" else tuple(ATTACH_DOMAINS)
    for n in names:
        if n not in known:
            raise ValueError(
                f"{n!r} cannot be attached to a {kind} trigger{suggest(n, known)}; "
                f"known: {', '.join(known)}"
            )
    domains = tuple(dict.fromkeys(ATTACH_DOMAINS[n] for n in names if n != "cart"))
    return ("cart" if "cart" in names else None), domains


@dataclass(frozen=True, slots=True)
class Candidate:
    """An action a trigger proposes, before caps."""

    trigger: str
    action: str
    at: float
    payload: dict[str, Any]
    cause: dict[str, Any]
    blocked: dict[str, Any] | None = None  # the `when` values, when it did not hold


@dataclass(frozen=True)
class Trigger:
    """Common parts: the action it proposes, a contextual condition, a static payload."""

    name: str
    action: str
    when: Rule | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    half_life: float = 7 * 86400.0
    # attach: recommendations / content_recommendations: the user's top ``n`` stored items
    recommendations: tuple[str, ...] = ()
    n: int = 5

    def receive(self, user: UserState, item: Event | SegmentChange) -> list[Candidate]:
        return []

    def fire(self, user: UserState, at: float) -> list[Candidate]:
        return []

    def ignores(self, item: Event | SegmentChange) -> bool:
        """``receive(user, item)`` does nothing, whatever the user (so need not be called).

        Read from the item's name, or its segment and change, alone: the engine keeps
        the answer per name (``ShardEngine._listeners``). A kind that does not say
        receives everything.
        """
        return False

    def _propose(
        self,
        user: UserState,
        at: float,
        cause: dict[str, Any],
        extra: dict[str, Any] | None = None,
        event: Event | None = None,
    ) -> list[Candidate]:
        if self.when is not None:
            ctx = Context(user, at, self.half_life, event)
            values = self.when.explain(ctx)["values"]
            if not self.when.holds(ctx):
                return [Candidate(self.name, self.action, at, {}, cause, values)]
            cause = {**cause, "condition": values}
        payload = {**self.payload, **(extra or {})}
        if self.recommendations:
            stored = recommendations_of(user) or {}
            for domain in self.recommendations:
                payload[RECOMMENDATION_KEYS[domain]] = stored.get(domain, [])[: self.n]
        return [Candidate(self.name, self.action, at, payload, cause)]


def ignores(trigger: Trigger, item: Event | SegmentChange) -> bool:
    """``trigger.ignores(item)``, trusted only from the class that defines its ``receive``.

    A subclass that changes what it receives without saying what it ignores (a wrapper
    that records or forwards everything) inherits an answer about another ``receive``:
    it is then taken to ignore nothing.
    """
    for klass in type(trigger).__mro__:
        if "receive" in vars(klass):
            return "ignores" in vars(klass) and trigger.ignores(item)
    return False


@dataclass(frozen=True)
class TimerTrigger(Trigger):
    """Start on some events, cancel on others, fire ``after`` seconds of event time."""

    start_on: frozenset[str] = frozenset()
    cancel_on: frozenset[str] = frozenset()
    after: float = 900.0
    attach: str | None = None  # "cart": the cart's products in the payload

    def receive(self, user: UserState, item: Event | SegmentChange) -> list[Candidate]:
        if not isinstance(item, Event):
            return []
        if matches_name(item, self.cancel_on):
            timers = user.timers
            due = None if timers is None else timers.get(self.name)
            # An out-of-order cancel older than the latest start does not cancel it.
            if due is None or item.ts >= due - self.after:
                if timers is not None:
                    timers.pop(self.name, None)
                cancelled = user.cancelled
                if cancelled is None:
                    user.cancelled = {self.name: item.ts}
                elif item.ts > cancelled.get(self.name, -INF):
                    cancelled[self.name] = item.ts
        # A start at the very instant of a cancel does not restart it: simultaneous events
        # may arrive in either order, and an order then closes the cart either way.
        elif matches_name(item, self.start_on) and item.ts > (user.cancelled or NO_ITEMS).get(
            self.name, -INF
        ):
            due = item.ts + self.after
            timers = user.timers
            if timers is None:
                user.timers = {self.name: due}
            else:
                timers[self.name] = max(due, timers.get(self.name, due))
        return []

    def ignores(self, item: Event | SegmentChange) -> bool:
        return not isinstance(item, Event) or not (
            matches_name(item, self.cancel_on) or matches_name(item, self.start_on)
        )

    def fire(self, user: UserState, at: float) -> list[Candidate]:
        timers = user.timers
        due = None if timers is None else timers.get(self.name)
        if timers is None or due is None or due > at:
            return []
        del timers[self.name]
        extra = features.cart_summary(user) if self.attach == "cart" else None
        cause = {
            "type": "timer",
            "started_by": sorted(self.start_on),
            "after_seconds": self.after,
            "due": iso(due),
        }
        return self._propose(user, due, cause, extra)


@dataclass(frozen=True)
class SegmentTrigger(Trigger):
    """Fire when the user enters (or exits) a segment; ``name:*`` matches per-category ones."""

    segment: str = ""
    on: str = "enter"

    def matches(self, segment: str) -> bool:
        if self.segment.endswith(":*"):
            return segment.startswith(self.segment[:-1])
        return segment == self.segment

    def receive(self, user: UserState, item: Event | SegmentChange) -> list[Candidate]:
        if not isinstance(item, SegmentChange) or item.change != self.on:
            return []
        if not self.matches(item.segment):
            return []
        cause = {"type": "segment", "segment": item.segment, "change": item.change}
        return self._propose(user, item.at, cause, {"segment": item.segment})

    def ignores(self, item: Event | SegmentChange) -> bool:
        return (
            not isinstance(item, SegmentChange)
            or item.change != self.on
            or not self.matches(item.segment)
        )


@dataclass(frozen=True)
class EventTrigger(Trigger):
    """Fire on named events (when the condition holds)."""

    events: frozenset[str] = frozenset()

    def receive(self, user: UserState, item: Event | SegmentChange) -> list[Candidate]:
        if not isinstance(item, Event) or not matches_name(item, self.events):
            return []
        cause = {"type": "event", "event": item.name, "message_id": item.message_id}
        return self._propose(user, item.ts, cause, event=item)

    def ignores(self, item: Event | SegmentChange) -> bool:
        return not isinstance(item, Event) or not matches_name(item, self.events)
