"""Segments: declarative rules whose truth, per user and over event time,
becomes ``enter``/``exit`` segment changes.

A segment with ``per: category`` is instantiated for each category the user
has touched: ``video_enthusiast:cooking``. Rules are evaluated in config order,
so ``in_segment`` sees segments decided earlier in the same evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from audienceflow.operators.records import SegmentChange
from audienceflow.operators.rules import Context, Rule, compile_rule
from audienceflow.operators.state import INF, UserState


@dataclass(frozen=True)
class SegmentRule:
    """One segment definition; ``evaluate`` is its one way to be evaluated."""

    name: str
    rule: Rule
    per: str | None = None

    @classmethod
    def parse(cls, name: str, when: str, per: str | None = None) -> SegmentRule:
        return cls(name, compile_rule(name, when, per), per)

    def members(self, user: UserState) -> list[str]:
        """The segment names this rule could hold for ``user``."""
        if self.per is None:
            return [self.name]
        cats = set(user.affinity) | set(user.video_completions)
        prefix = self.name + ":"
        cats.update(s[len(prefix) :] for s in user.segments if s.startswith(prefix))
        return [f"{prefix}{c}" for c in sorted(cats)]

    def evaluate(self, user: UserState, ctx: Context) -> list[SegmentChange]:
        changes: list[SegmentChange] = []
        for seg in self.members(user):
            if self.per is not None:
                ctx.category = seg[len(self.name) + 1 :]
            holds = self.rule.holds(ctx)
            inside = seg in user.segments
            if holds != inside:
                reason = self.rule.explain(ctx)
                if self.per is not None:
                    reason["category"] = ctx.category
                if holds:
                    user.segments[seg] = ctx.now
                else:
                    del user.segments[seg]
                change = "enter" if holds else "exit"
                changes.append(SegmentChange(user.user_id, seg, change, ctx.now, reason))
        return changes


def evaluate_all(
    user: UserState, rules: list[SegmentRule], now: float, half_life: float
) -> list[SegmentChange]:
    """Evaluate every segment rule for ``user`` at event time ``now``.

    Sets ``user.segment_recheck`` to the next time a time-dependent value
    used by a rule can change, so exits happen on time without an event.
    """
    ctx = Context(user, now, half_life)
    changes: list[SegmentChange] = []
    for rule in rules:
        changes.extend(rule.evaluate(user, ctx))
    user.segment_recheck = ctx.next_change if ctx.next_change > now else INF
    return changes
