"""Frequency caps and cooldowns: whether a triggered action is delivered.

Windows are rolling 24 hours of event time. Only delivered actions count
against a cap; a suppressed one is recorded with its reason and costs nothing.

>>> from audienceflow.operators.state import UserState
>>> caps = FrequencyCaps(per_action_per_day={"default": 1}, per_user_per_day=5)
>>> u = UserState("u", 0.0)
>>> caps.decide(u, "email", 100.0), caps.decide(u, "email", 200.0)
(None, 'frequency_cap')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audienceflow.operators.state import UserState

DAY = 86400.0


@dataclass(frozen=True)
class FrequencyCaps:
    """Per action per day, per user per day across actions, and a cooldown per action."""

    per_action_per_day: dict[str, int] = field(default_factory=lambda: {"default": 3})
    per_user_per_day: int = 6
    cooldown: dict[str, float] = field(default_factory=lambda: {"default": 0.0})

    def limit_for(self, action: str) -> int:
        return self.per_action_per_day.get(action, self.per_action_per_day.get("default", 10**9))

    def cooldown_for(self, action: str) -> float:
        return self.cooldown.get(action, self.cooldown.get("default", 0.0))

    def decide(self, user: UserState, action: str, at: float) -> str | None:
        """``None`` to deliver (and record it), else the suppression reason."""
        # Loops, not comprehensions: those would make ``at`` and ``action`` cells, created
        # at every decision (CPython 3.11).
        recent = []
        same = []
        since = at - DAY
        for t, a in user.delivered:
            if t > since:
                recent.append((t, a))
                if a == action:
                    same.append(t)
        user.delivered = recent
        if len(same) >= self.limit_for(action) or len(recent) >= self.per_user_per_day:
            return "frequency_cap"
        cool = self.cooldown_for(action)
        if same and cool > 0 and at - max(same) < cool:
            return "cooldown"
        recent.append((at, action))
        return None
