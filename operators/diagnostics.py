"""Why a configured segment or trigger did, or never did, fire: the counts and value
ranges the run summary explains a zero with.

Per shard the engine keeps, in ``ShardState.diag``, the segment entries by rule, and
per trigger how often it was due (a timer firing, a matching event or segment
change), how often its ``when`` was false then, and the range of each value the
``when`` read at those times. At the end of a recorded stream, rules that no user
ever entered are evaluated once more for every user (at most ``FINAL_USERS``) to show
how close they came. ``merge`` adds shards up; ``explain`` writes the sentence.

>>> explain_trigger({"type": "timer", "fired": 3, "when_false": 3,
...                  "values": {"cart_items": [0, 0]}})
'`when` false at all 3 timer firings: cart_items was 0'
"""

from __future__ import annotations

from typing import Any

from audienceflow.operators.records import SegmentChange
from audienceflow.operators.state import UserState

FINAL_USERS = 10_000
_MAX_TEXTS = 5


def _add_value(into: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        texts = into.setdefault(key, {"seen": []})
        if isinstance(texts, dict):
            seen = texts["seen"]
            v = value if isinstance(value, str | bool) or value is None else str(value)
            if v not in seen and len(seen) < _MAX_TEXTS:
                seen.append(v)
                seen.sort(key=repr)
        return
    cur = into.get(key)
    if isinstance(cur, list):
        cur[0] = min(cur[0], value)
        cur[1] = max(cur[1], value)
    elif cur is None:
        into[key] = [value, value]


def _add_values(into: dict[str, Any], values: dict[str, Any]) -> None:
    for k, v in values.items():
        _add_value(into, k, v)


def segment_change(diag: dict[str, Any], ch: SegmentChange) -> None:
    if ch.change == "enter":
        enters = diag.setdefault("enters", {})
        base = ch.segment.split(":", 1)[0]
        enters[base] = enters.get(base, 0) + 1


def candidate(diag: dict[str, Any], c: Any) -> None:
    """Count one trigger candidate (a ``triggers.Candidate``); a deferred ghost is none."""
    if c.cause.get("deferred"):
        return
    t = diag.setdefault("triggers", {}).setdefault(
        c.trigger, {"fired": 0, "when_false": 0, "values": {}}
    )
    t["fired"] += 1
    blocked = c.blocked if c.blocked is not None else c.cause.get("when_false")
    if blocked is not None:  # (an experiment's arm's `when` false is a ghost decision)
        t["when_false"] += 1
        _add_values(t["values"], blocked)


def final_values(cfg: Any, diag: dict[str, Any], users: dict[str, UserState], at: float) -> None:
    """For each segment rule no user entered here: its values over the users at ``at``."""
    from audienceflow.operators.rules import Context

    enters = diag.get("enters", {})
    seg_diag = diag.setdefault("segments", {})
    hl = cfg.features.affinity_half_life
    for rule in cfg.segments:
        if enters.get(rule.name):
            continue
        d = seg_diag.setdefault(rule.name, {"evaluated_users": 0, "values": {}})
        for _, user in sorted(users.items())[:FINAL_USERS]:
            d["evaluated_users"] += 1
            ctx = Context(user, at, hl)
            for seg in rule.members(user):
                if rule.per is not None:
                    ctx.category = seg[len(rule.name) + 1 :]
                _add_values(d["values"], rule.rule.explain(ctx)["values"])


def report(cfg: Any, diag: dict[str, Any]) -> dict[str, Any]:
    """Every configured segment and trigger, zeros included, for the shard's stats."""
    enters = diag.get("enters", {})
    seg_diag = diag.get("segments", {})
    segments = {}
    for rule in cfg.segments:
        d = seg_diag.get(rule.name, {})
        segments[rule.name] = {
            "when": rule.rule.source,
            "per": rule.per,
            "enters": enters.get(rule.name, 0),
            "evaluated_users": d.get("evaluated_users", 0),
            "values": d.get("values", {}),
        }
    trig_diag = diag.get("triggers", {})
    triggers = {}
    for trig in cfg.triggers:
        d = trig_diag.get(trig.name, {})
        triggers[trig.name] = {
            "type": type(trig).__name__.removesuffix("Trigger").lower(),
            "action": trig.action,
            "when": trig.when.source if trig.when is not None else None,
            "fired": d.get("fired", 0),
            "when_false": d.get("when_false", 0),
            "values": d.get("values", {}),
            "start_on": sorted(getattr(trig, "start_on", ())),
            "cancel_on": sorted(getattr(trig, "cancel_on", ())),
            "events": sorted(getattr(trig, "events", ())),
            "segment": getattr(trig, "segment", None),
        }
    return {"segments": segments, "triggers": triggers}


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the shards' reports (counts summed, value ranges joined)."""
    out: dict[str, Any] = {"segments": {}, "triggers": {}}
    for rep in reports:
        for kind in ("segments", "triggers"):
            for name, d in rep.get(kind, {}).items():
                cur = out[kind].get(name)
                if cur is None:
                    out[kind][name] = {**d, "values": {}}
                    cur = out[kind][name]
                else:
                    for k in ("enters", "evaluated_users", "fired", "when_false"):
                        if k in d:
                            cur[k] += d[k]
                for k, v in d.get("values", {}).items():
                    if isinstance(v, list):
                        _add_value(cur["values"], k, v[0])
                        _add_value(cur["values"], k, v[1])
                    else:
                        for t in v.get("seen", []):
                            _add_value(cur["values"], k, t)
    return out


def _describe(values: dict[str, Any]) -> str:
    parts = []
    for k, v in sorted(values.items()):
        if isinstance(v, list):
            lo, hi = (_num(x) for x in v)
            parts.append(f"{k} was {lo}" if lo == hi else f"{k} ranged {lo} to {hi}")
        else:
            seen = v.get("seen", [])
            shown = ", ".join(repr(x) for x in seen)
            parts.append(f"{k} was {shown}" if len(seen) == 1 else f"{k} was one of {shown}")
    return "; ".join(parts)


def _num(x: float) -> str:
    if x == float("inf"):
        return "never (infinite)"
    return f"{x:g}" if isinstance(x, float) else str(x)


def explain_trigger(d: dict[str, Any]) -> str:
    """Why a trigger made no decision, in one sentence ('' when it made some)."""
    fired, false = d.get("fired", 0), d.get("when_false", 0)
    kind = d.get("type", "")
    if fired == 0:
        if kind == "timer":
            why = f"no timer came due: none of {d.get('start_on')} was seen"
            if d.get("cancel_on"):
                why += f", or each was cancelled by one of {d.get('cancel_on')} in time"
            return why
        if kind == "event":
            return f"no event of {d.get('events')} was seen"
        if kind == "segment":
            return f"segment {d.get('segment')!r} was never entered (or left)"
        return "never due"
    if false < fired:
        return ""
    what = {"timer": "timer firings", "event": "matching events", "segment": "segment changes"}
    values = _describe(d.get("values", {}))
    return f"`when` false at all {fired} {what.get(kind, 'firings')}" + (
        f": {values}" if values else ""
    )


def explain_segment(d: dict[str, Any]) -> str:
    """Why no user entered a segment, in one sentence ('' when some did)."""
    if d.get("enters", 0):
        return ""
    n = d.get("evaluated_users", 0)
    if n == 0:
        return "`when` never held (no user at the end to evaluate it for)"
    values = _describe(d.get("values", {}))
    if not values and d.get("per"):
        # a per-category rule is evaluated once per category a user has: none had one
        per = d["per"]
        return (
            f"`when` never held; at the end of the stream, none of the {n} users had a"
            f" {per} to evaluate it for (`per: {per}`)"
        )
    return f"`when` never held; at the end of the stream, over {n} users: {values}"
