"""The typed settings built from the merged configuration, checked once.

``Settings.load(path)`` is the only way configuration enters the engine. Every
rejected value is reported as ``FILE:LINE: key.path: reason``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audienceflow.operators.caps import FrequencyCaps
from audienceflow.operators.config import ConfigError, Located, load_located, parse_duration
from audienceflow.operators.features import FeatureSpec
from audienceflow.operators.rules import RuleError, compile_rule
from audienceflow.operators.segments import SegmentRule
from audienceflow.operators.sessions import SessionSpec
from audienceflow.operators.triggers import (
    EventTrigger,
    SegmentTrigger,
    TimerTrigger,
    Trigger,
    parse_attach,
)
from audienceflow.operators.validate import Taxonomy

_IN_SEGMENT = re.compile(r"in_segment\(\s*['\"]([^'\"]+)['\"]\s*\)")

SECTIONS = frozenset(
    {
        "time",
        "sessions",
        "state",
        "privacy",
        "features",
        "taxonomy",
        "segments",
        "triggers",
        "caps",
        "models",
        "kafka",
        "redis",
        "recovery",
        "metrics",
    }
)


@dataclass(frozen=True)
class Settings:
    """Everything the engine and the flows need, typed and checked."""

    sessions: SessionSpec
    features: FeatureSpec
    lateness: float
    max_future: float
    tick: float
    quiet_after: float
    shards: int
    dedup_window: float
    taxonomy: Taxonomy
    consent_path: str
    pii_fields: tuple[str, ...]
    pii_mode: str
    pii_salt: str
    segments: list[SegmentRule]
    triggers: list[Trigger]
    caps: FrequencyCaps
    models: dict[str, Any] = field(default_factory=dict)
    kafka: dict[str, Any] = field(default_factory=dict)
    redis: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: dict[str, str] | None = None
    ) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return build(load_located(path, env), env)


class _Reader:
    def __init__(self, loc: Located) -> None:
        self.loc = loc

    def section(self, name: str) -> dict[str, Any]:
        val = self.loc.data.get(name, {})
        if val is None:
            return {}
        if not isinstance(val, dict):
            raise self.loc.error((name,), f"must be a mapping; got {type(val).__name__}")
        return val

    def duration(self, *path: str, minimum: float = 0.0) -> float:
        val = self.get(*path)
        try:
            secs = parse_duration(val)
        except ValueError as exc:
            raise self.loc.error(path, str(exc)) from None
        if secs < minimum:
            raise self.loc.error(path, f"must be at least {minimum:g}s; got {val!r}")
        return secs

    def get(self, *path: str) -> Any:
        cur: Any = self.loc.data
        for key in path:
            cur = cur.get(key) if isinstance(cur, dict) else None
        return cur

    def integer(self, *path: str, minimum: int = 0) -> int:
        val = self.get(*path)
        if not isinstance(val, int) or isinstance(val, bool) or val < minimum:
            raise self.loc.error(path, f"must be a whole number >= {minimum}; got {val!r}")
        return val

    def names(self, *path: str) -> frozenset[str]:
        val = self.get(*path)
        if isinstance(val, str):
            val = [val]
        if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
            raise self.loc.error(path, f"must be a list of event names; got {val!r}")
        return frozenset(val)

    def rule(self, path: tuple[str, ...], name: str, per: str | None = None) -> Any:
        src = self.get(*path)
        try:
            return compile_rule(name, src, per)
        except RuleError as exc:
            raise self.loc.error(path, str(exc)) from None


def build(loc: Located, environ: dict[str, str]) -> Settings:
    """Check the merged config and build the typed settings."""
    for key in loc.data:
        if key not in SECTIONS:
            raise loc.error((key,), f"unknown section; known: {', '.join(sorted(SECTIONS))}")
    r = _Reader(loc)
    sessions = SessionSpec(
        timeout=r.duration("sessions", "timeout", minimum=1.0),
        max_length=r.duration("sessions", "max_length", minimum=1.0),
        engaged_gap_cap=r.duration("sessions", "engaged_gap_cap"),
        history_max=r.integer("state", "history_max_sessions", minimum=1),
        history_window=r.duration("state", "history_window", minimum=1.0),
    )
    half_life = r.duration("features", "affinity_half_life", minimum=1.0)
    taxonomy = Taxonomy.default()
    extra = r.section("taxonomy")
    for name, cat in extra.items():
        if not isinstance(cat, str):
            raise loc.error(("taxonomy", name), f"must map to a category name; got {cat!r}")
    taxonomy = Taxonomy({**taxonomy.by_name, **extra})
    pii = r.get("privacy", "pii_fields") or []
    if not isinstance(pii, list) or not all(isinstance(p, str) for p in pii):
        raise loc.error(("privacy", "pii_fields"), f"must be a list of field names; got {pii!r}")
    mode = r.get("privacy", "pii_mode")
    if mode not in ("hash", "drop"):
        raise loc.error(("privacy", "pii_mode"), f"must be 'hash' or 'drop'; got {mode!r}")
    salt_env = r.get("privacy", "salt_env") or "AUDIENCEFLOW_PII_SALT"
    return Settings(
        sessions=sessions,
        features=FeatureSpec(affinity_half_life=half_life),
        lateness=r.duration("time", "allowed_lateness"),
        max_future=r.duration("time", "max_future", minimum=1.0),
        tick=r.duration("time", "tick", minimum=1.0),
        quiet_after=r.duration("time", "quiet_after"),
        shards=r.integer("state", "shards", minimum=1),
        dedup_window=r.duration("state", "dedup_window"),
        taxonomy=taxonomy,
        consent_path=str(r.get("privacy", "consent_path") or ""),
        pii_fields=tuple(pii),
        pii_mode=mode,
        pii_salt=environ.get(str(salt_env), ""),
        segments=_segments(r),
        triggers=_triggers(r, half_life),
        caps=_caps(r),
        models=r.section("models"),
        kafka=r.section("kafka"),
        redis=r.section("redis"),
        recovery=r.section("recovery"),
        metrics=r.section("metrics"),
    )


def _segments(r: _Reader) -> list[SegmentRule]:
    out = []
    for name, spec in r.section("segments").items():
        path = ("segments", name)
        if not isinstance(spec, dict) or "when" not in spec:
            raise r.loc.error(path, "a segment needs a 'when' rule, e.g. when: sessions(24h) > 3")
        unknown = set(spec) - {"when", "per", "description"}
        if unknown:
            raise r.loc.error(
                path, f"unknown keys {sorted(unknown)}; known: when, per, description"
            )
        per = spec.get("per")
        if per not in (None, "category"):
            raise r.loc.error((*path, "per"), f"only 'category' is supported; got {per!r}")
        if ":" in name:
            raise r.loc.error(path, "segment names cannot contain ':'")
        out.append(SegmentRule(name, r.rule((*path, "when"), name, per), per))
    known = {rule.name for rule in out}
    for rule in out:
        for ref in _IN_SEGMENT.findall(rule.rule.source):
            base = ref.split(":")[0]
            if base not in known and base != "cluster":
                raise r.loc.error(
                    ("segments", rule.name, "when"),
                    f"in_segment({ref!r}) names no segment; known: {', '.join(sorted(known))}",
                )
    return out


def _triggers(r: _Reader, half_life: float) -> list[Trigger]:
    out: list[Trigger] = []
    for name, spec in r.section("triggers").items():
        path = ("triggers", name)
        if not isinstance(spec, dict):
            raise r.loc.error(path, "a trigger must be a mapping with a 'type'")
        kind = spec.get("type")
        when = r.rule((*path, "when"), name) if spec.get("when") is not None else None
        payload = spec.get("payload") or {}
        if not isinstance(payload, dict):
            raise r.loc.error((*path, "payload"), "must be a mapping")
        common: dict[str, Any] = {
            "name": name,
            "action": str(spec.get("action") or name),
            "when": when,
            "payload": payload,
            "half_life": half_life,
        }
        allowed = {"type", "action", "when", "payload", "attach", "n"}
        try:  # attach: cart (timers) and/or recommendations, with n of them
            attach, common["recommendations"] = parse_attach(spec.get("attach"), str(kind))
        except ValueError as exc:
            raise r.loc.error((*path, "attach"), str(exc)) from None
        if "n" in spec:
            common["n"] = r.integer(*path, "n", minimum=1)
        if kind == "timer":
            allowed |= {"start_on", "cancel_on", "after"}
            trig: Trigger = TimerTrigger(
                **common,
                start_on=r.names(*path, "start_on"),
                cancel_on=r.names(*path, "cancel_on") if "cancel_on" in spec else frozenset(),
                after=r.duration(*path, "after", minimum=1.0),
                attach=attach,
            )
        elif kind == "segment":
            allowed |= {"segment", "on"}
            on = spec.get("on", "enter")
            if on not in ("enter", "exit"):
                raise r.loc.error((*path, "on"), f"must be 'enter' or 'exit'; got {on!r}")
            segment = spec.get("segment")
            known = {s for s in r.section("segments")}
            base = str(segment).split(":")[0]
            if base not in known and not base.startswith("cluster"):
                raise r.loc.error(
                    (*path, "segment"),
                    f"unknown segment {segment!r}; known: {', '.join(sorted(known))}",
                )
            trig = SegmentTrigger(**common, segment=str(segment), on=on)
        elif kind == "event":
            allowed |= {"events"}
            trig = EventTrigger(**common, events=r.names(*path, "events"))
        else:
            raise r.loc.error((*path, "type"), f"must be timer, segment or event; got {kind!r}")
        unknown = set(spec) - allowed
        if unknown:
            raise r.loc.error(path, f"unknown keys {sorted(unknown)} for a {kind} trigger")
        out.append(trig)
    return out


def _caps(r: _Reader) -> FrequencyCaps:
    per_action = r.get("caps", "per_action_per_day") or {}
    if isinstance(per_action, int):
        per_action = {"default": per_action}
    for k, v in per_action.items():
        if not isinstance(v, int) or v < 0:
            raise r.loc.error(("caps", "per_action_per_day", k), f"must be a count; got {v!r}")
    cooldown = r.get("caps", "cooldown") or {}
    if not isinstance(cooldown, dict):
        cooldown = {"default": cooldown}
    cool = {k: r.duration("caps", "cooldown", k) for k in cooldown}
    return FrequencyCaps(dict(per_action), r.integer("caps", "per_user_per_day"), cool)


__all__ = ["ConfigError", "Settings"]
