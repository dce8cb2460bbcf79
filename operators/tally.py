"""The run tally: the counts a replay's sink gathers as it writes, and the run summary
made of them, in which every input event is accounted for.

``events_in`` is the sources' own count of non-blank lines; it must equal
``processed + dead_lettered + filtered``. ``reconciled`` says whether it does.
(Stream logic, no Bytewax: compiled by ``make fast``, as the sink calls ``record`` once
per output record; ``flows/summary.py`` renders the summary.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audienceflow.operators import diagnostics
from audienceflow.operators.money import merge_currencies, mixed_warning
from audienceflow.operators.records import (
    Action,
    DeadLetter,
    Drift,
    IdentityChange,
    Receipt,
    SegmentChange,
    Session,
    ShardStats,
)


@dataclass
class RunTally:
    """Counts gathered by the sink as records are written."""

    source: Any = None  # the sources' own counts (SourceEnd), summed over input files
    input_errors: list[str] = field(default_factory=list)
    sessions: int = 0
    converted_sessions: int = 0
    changes: dict[str, dict[str, int]] = field(default_factory=dict)
    actions: dict[str, dict[str, int]] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)
    # reason -> detail -> count, for the filtered events whose record says why
    filtered_details: dict[str, dict[str, int]] = field(default_factory=dict)
    shards: list[ShardStats] = field(default_factory=list)
    profiles: int = 0
    # segment -> users whose final profile (profiles.jsonl, as of the last event) is in it
    members: dict[str, int] = field(default_factory=dict)
    drifts: list[dict[str, Any]] = field(default_factory=list)
    # the earliest delivered action carrying recommendations, shown by the demo
    reco_example: tuple[float, str, dict[str, Any]] | None = None
    identities: dict[str, int] = field(default_factory=dict)  # merges, rejections by reason
    control_in: int = 0  # lines of control files read (requests, valid or not)
    control_dead: int = 0
    receipts: dict[str, int] = field(default_factory=dict)  # by status
    routed_away: int | None = None  # placement: partition (see SourceEnd)

    def add_source(self, end: Any) -> None:
        """One input file's ``SourceEnd``: add its counts (and its read error, if any)."""
        if end.control:
            self.control_in += end.lines
            if end.error:
                self.input_errors.append(end.error)
            return
        if end.routed_away is not None:
            self.routed_away = (self.routed_away or 0) + end.routed_away
        if self.source is None:
            self.source = type(end)(end.lines, end.blank)
        else:
            self.source = type(end)(self.source.lines + end.lines, self.source.blank + end.blank)
        if end.error:
            self.input_errors.append(end.error)

    def add_filtered(self, rec: Any) -> None:
        """One ``Filtered`` record: counted by reason, and by its detail when it has one."""
        self.filtered[rec.reason] = self.filtered.get(rec.reason, 0) + 1
        if rec.detail:
            details = self.filtered_details.setdefault(rec.reason, {})
            details[rec.detail] = details.get(rec.detail, 0) + 1

    def add_profiles(self, profiles: dict[str, dict[str, Any]]) -> None:
        """The final profiles (``profiles.jsonl``): their number, and each segment's
        members among them. A replay's segment changes go on past the last event (time
        runs past every deadline at its end), so its enters and exits alone do not say
        who is in a segment as the data ends; these do."""
        self.profiles = len(profiles)
        members: dict[str, int] = {}
        for fields in profiles.values():
            for seg in fields.get("segments") or ():
                members[seg] = members.get(seg, 0) + 1
        self.members = members

    def record(self, rec: Any) -> None:
        cls = type(rec)
        if cls is Session:
            self.sessions += 1
            self.converted_sessions += rec.converted
        elif cls is SegmentChange:
            seg = self.changes.setdefault(rec.segment, {"enter": 0, "exit": 0})
            seg[rec.change] += 1
        elif cls is Action:
            key = (
                rec.status
                if rec.suppressed_reason is None
                else f"suppressed:{rec.suppressed_reason}"
            )
            act = self.actions.setdefault(rec.action, {})
            act[key] = act.get(key, 0) + 1
            recs = rec.payload.get("recommendations")
            if recs and rec.status == "delivered":
                ex = (rec.at, rec.action_id, {"action": rec.action, "recommendations": recs})
                if self.reco_example is None or ex[:2] < self.reco_example[:2]:
                    self.reco_example = ex
        elif cls is DeadLetter:
            if rec.stage == "control":  # a control line, not an event
                self.control_dead += 1
            else:
                self.dead[rec.reason] = self.dead.get(rec.reason, 0) + 1
        elif cls is IdentityChange:
            key = "merges" if rec.kind == "merge" else f"rejected:{rec.reason}"
            self.identities[key] = self.identities.get(key, 0) + 1
        elif cls is Receipt:
            self.receipts[rec.status] = self.receipts.get(rec.status, 0) + 1
        elif cls is Drift:
            self.drifts.append(rec.to_json())

    def summary(self) -> dict[str, Any]:
        processed = sum(s.processed for s in self.shards)
        dead = sum(self.dead.values())
        filtered = sum(self.filtered.values())
        events_in = self.source.lines if self.source is not None else None
        models: dict[str, Any] = {}
        for s in sorted(self.shards, key=lambda s: s.shard):
            if "models" in s.extra:
                models[s.shard] = s.extra["models"]
        placement = (
            {}
            if self.routed_away is None
            else {
                "placement": {
                    "mode": "partition",
                    "events_routed_away": self.routed_away,
                    "processed_by_shard": {
                        s.shard: s.processed for s in sorted(self.shards, key=lambda s: s.shard)
                    },
                }
            }
        )
        return {
            **placement,
            "counts": {
                "events_in": events_in,
                "blank_lines": self.source.blank if self.source is not None else None,
                "processed": processed,
                "dead_lettered": dead,
                "filtered": filtered,
                "reconciled": events_in == processed + dead + filtered,
                "input_errors": list(self.input_errors),
                "dead_lettered_by_reason": dict(sorted(self.dead.items())),
                "filtered_by_reason": dict(sorted(self.filtered.items())),
                "filtered_details": {
                    r: dict(sorted(d.items())) for r, d in sorted(self.filtered_details.items())
                },
            },
            "outputs": {
                "sessions": self.sessions,
                "converted_sessions": self.converted_sessions,
                "segment_changes": {k: self.changes[k] for k in sorted(self.changes)},
                "actions": {k: dict(sorted(v.items())) for k, v in sorted(self.actions.items())},
                "users": sum(s.users for s in self.shards),
                "profiles": self.profiles,
                "segment_members": {k: self.members[k] for k in sorted(self.members)},
                "evicted_users": sum(int(s.extra.get("evicted", 0)) for s in self.shards),
            },
            "identity": {
                "merges": self.identities.get("merges", 0),
                "rejected": {
                    k.split(":", 1)[1]: v
                    for k, v in sorted(self.identities.items())
                    if k.startswith("rejected:")
                },
                "linked_identifiers": self._identity_total("linked_identifiers"),
                "links_to_other_shards": self._identity_total("links_to_other_shards"),
            },
            "control": {
                "requests_in": self.control_in,
                "dead_lettered": self.control_dead,
                "receipts": dict(sorted(self.receipts.items())),
                "suppressed_identifiers": sum(
                    int(s.extra.get("suppressed_identifiers", 0)) for s in self.shards
                ),
            },
            "models": _models_summary(models, self.drifts, self.reco_example),
            "experiments": experiments_summary(self.shards),
            "rules": self._rules(),
            "limits_hit": self._limits_hit(),
            **self._money(),
        }

    def _identity_total(self, key: str) -> int:
        """A shard counter of the identity graph, summed over shards."""
        return sum(int((s.extra.get("identity") or {}).get(key, 0)) for s in self.shards)

    def _limits_hit(self) -> dict[str, int]:
        """Per-user bounds hit and event meanings that could not be used, over all shards."""
        total: dict[str, int] = {}
        for s in self.shards:
            for k, n in (s.extra.get("limits_hit") or {}).items():
                total[k] = total.get(k, 0) + int(n)
        return dict(sorted(total.items()))

    def _money(self) -> dict[str, Any]:
        """``money``: with ``money.currency`` unset, the orders and cart events whose
        amounts were summed, by the currency they name, and the warning when they name
        more than one; absent when none named any (``operators/money.py``)."""
        parts = [s.extra["currencies"] for s in self.shards if s.extra.get("currencies")]
        if not parts:
            return {}
        merged = merge_currencies(parts)
        return {"money": {"summed_by_currency": merged, "warning": mixed_warning(merged)}}

    def _rules(self) -> dict[str, Any]:
        """Every configured segment and trigger, zeros included, each zero explained."""
        reports = [s.extra["rules"] for s in self.shards if "rules" in s.extra]
        if not reports:
            return {}
        merged = diagnostics.merge(reports)
        segments = {}
        for name, d in sorted(merged["segments"].items()):
            segments[name] = {
                "when": d["when"],
                "enters": sum(
                    ch["enter"] for seg, ch in self.changes.items() if seg.split(":")[0] == name
                ),
                "why_none": "",
            }
            if segments[name]["enters"] == 0:
                segments[name]["why_none"] = diagnostics.explain_segment({**d, "enters": 0})
        triggers = {}
        for name, d in sorted(merged["triggers"].items()):
            decided = d["fired"] - d["when_false"]
            triggers[name] = {
                "type": d["type"],
                "action": d["action"],
                "when": d["when"],
                "due": d["fired"],
                "when_false": d["when_false"],
                "decisions": decided,
                "why_none": diagnostics.explain_trigger(d) if decided == 0 else "",
            }
        return {"segments": segments, "triggers": triggers}


def _models_summary(
    per_shard: dict[str, Any],
    drifts: list[dict[str, Any]],
    reco_example: tuple[float, str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if not per_shard:
        return {}
    from audienceflow.models.hook import summarize

    out = {**summarize(per_shard), "drift": drifts}
    if reco_example is not None and "recommendations" in out:
        out["recommendations"]["example_payload"] = reco_example[2]
    return out


def experiments_summary(shards: list[ShardStats]) -> dict[str, Any]:
    """Every experiment read from the shards' sums added up (see ``operators/stats.py``)."""
    reports = [s.extra["experiments"] for s in shards if s.extra.get("experiments")]
    if not reports:
        return {}
    from audienceflow.operators.stats import merged

    return merged(reports)
