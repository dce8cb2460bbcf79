"""The run summary: every input event accounted for, and what came out.

``events_in`` is the source's own count of non-blank lines; it must equal
``processed + dead_lettered + filtered``. ``reconciled`` says whether it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from audienceflow.operators import diagnostics
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


def render(
    summary: dict[str, Any],
    console: Console,
    out_dir: str,
    seconds: float,
    whole: float | None = None,
) -> None:
    """Print the summary as readable tables."""
    c = summary["counts"]
    t = Table(title="Events", show_header=True, header_style="bold")
    t.add_column("", style="bold")
    t.add_column("count", justify="right")
    t.add_row("read", f"{c['events_in']:,}")
    t.add_row("processed", f"{c['processed']:,}")
    for reason, n in c["dead_lettered_by_reason"].items():
        t.add_row(f"dead-lettered: {reason}", f"{n:,}")
    for reason, n in c["filtered_by_reason"].items():
        t.add_row(f"filtered: {reason}", f"{n:,}")
    ok = "[green]yes[/green]" if c["reconciled"] else "[red]NO[/red]"
    t.add_row("read = processed + dead-lettered + filtered", ok)
    console.print(t)
    if "placement" in summary:
        away = summary["placement"]["events_routed_away"]
        console.print(
            f"Placement by partition: {away:,} events read on a partition other than their "
            "user's shard's" + (" (the input is not split as the partitioner says)" if away else "")
        )
    o = summary["outputs"]
    rules = summary.get("rules") or {}
    t = Table(title="Segments", header_style="bold")
    t.add_column("segment")
    t.add_column("enter", justify="right")
    t.add_column("exit", justify="right")
    t.add_column("why none")
    for seg, ch in o["segment_changes"].items():
        t.add_row(seg, str(ch["enter"]), str(ch["exit"]), "")
    for name, d in (rules.get("segments") or {}).items():
        if d["enters"] == 0:
            t.add_row(name, "0", "0", d["why_none"])
    console.print(t)
    t = Table(title="Actions", header_style="bold")
    t.add_column("action")
    t.add_column("status")
    t.add_column("count", justify="right")
    t.add_column("why none")
    for act, statuses in o["actions"].items():
        for status, n in statuses.items():
            t.add_row(act, status, str(n), "")
    for name, d in (rules.get("triggers") or {}).items():
        if d["decisions"] == 0:
            t.add_row(d["action"], f"none (trigger {name})", "0", d["why_none"])
    console.print(t)
    hits = summary.get("limits_hit") or {}
    if hits:
        console.print(
            "Bounds hit and event meanings not used (README: Per-user bounds, Carts): "
            + ", ".join(f"{k} {n:,}" for k, n in hits.items())
        )
    ident = summary.get("identity") or {}
    if ident.get("merges") or ident.get("rejected") or ident.get("links_to_other_shards"):
        refused = ", ".join(f"{k} {n:,}" for k, n in (ident.get("rejected") or {}).items())
        console.print(
            f"Identity: {ident.get('merges', 0):,} merges ({ident.get('linked_identifiers', 0):,}"
            f" identifiers linked)"
            + (f"; refused: {refused}" if refused else "")
            + (
                f"; {ident['links_to_other_shards']:,} links left out (other shard)"
                if ident.get("links_to_other_shards")
                else ""
            )
            + " (identities.jsonl)"
        )
    ctl = summary.get("control") or {}
    if ctl.get("requests_in"):
        receipts = ", ".join(f"{k} {n:,}" for k, n in (ctl.get("receipts") or {}).items())
        console.print(
            f"Data subjects' requests: {ctl['requests_in']:,} read, "
            f"{ctl.get('dead_lettered', 0):,} dead-lettered; receipts: {receipts or 'none'} "
            "(control.jsonl; check with audienceflow verify-receipts)"
        )
    _render_models(summary.get("models") or {}, console)
    render_experiments(summary.get("experiments") or {}, console)
    rate = c["events_in"] / seconds if seconds > 0 and c["events_in"] else 0.0
    console.print(
        f"{o['users']:,} users, {o['sessions']:,} sessions ({o['converted_sessions']:,} converted)"
        + (
            f" in {whole:.1f}s including start-up, {seconds:.1f}s of it"
            if whole
            else f" in {seconds:.1f}s"
        )
        + f" replaying ({rate:,.0f} events/s; see make bench)."
        f" Outputs in [bold]{out_dir}[/bold]"
    )


def _render_models(m: dict[str, Any], console: Console) -> None:
    if not m:
        return
    it = m.get("intent", {})
    auc, loss = it.get("roc_auc"), it.get("log_loss")
    console.print(
        f"Intent model ({it.get('model')}): progressive ROC AUC "
        f"{'n/a' if auc is None else f'{auc:.3f}'}, log loss "
        f"{'n/a' if loss is None else f'{loss:.3f}'} over {it.get('sessions_learned', 0):,} "
        f"sessions; drift detected: {m.get('drift_detected', {})}"
    )
    clusters = (m.get("clustering") or {}).get("clusters") or {}
    if clusters:
        t = Table(title="Behavioral clusters", header_style="bold")
        t.add_column("cluster")
        t.add_column("users", justify="right")
        t.add_column("description")
        for cid, c in clusters.items():
            t.add_row(f"cluster:{cid}", str(c.get("size", "")), str(c.get("description", "")))
        console.print(t)
    _render_recommendations(m.get("recommendations") or {}, console)
    ev = m.get("evaluation")
    if ev:
        console.print(
            f"Clusters vs planted archetypes ({ev.get('truth')}): adjusted Rand index "
            f"{ev.get('adjusted_rand_index') or float('nan'):.3f}, "
            f"purity {ev.get('purity') or float('nan'):.3f}"
        )


def _render_recommendations(reco: dict[str, Any], console: Console) -> None:
    """Progressive hit rate and NDCG of the recommender against its baselines."""
    rows = [(d, r) for d, r in reco.items() if isinstance(r, dict) and r.get("events_scored")]
    if not rows:
        return
    t = Table(
        title="Recommendations (ranked before learning each view/add/order)", header_style="bold"
    )
    for col in ("items", "ranker", "events", "hit rate@10", "NDCG@10", "window hit rate@10"):
        t.add_column(col, justify="left" if col in ("items", "ranker") else "right")
    for domain, r in rows:
        hit, ndcg = r.get("hit_rate_at_10") or {}, r.get("ndcg_at_10") or {}
        w = r.get("window") or {}
        whit = w.get("hit_rate_at_10") or {}
        for ranker in ("model", "popularity", "random"):
            t.add_row(
                domain if ranker == "model" else "",
                "LLR model" if ranker == "model" else ranker,
                f"{r['events_scored']:,}" if ranker == "model" else "",
                _pct(hit.get(ranker)),
                _num(ndcg.get(ranker)),
                _pct(whit.get(ranker)),
            )
    console.print(t)
    ex = reco.get("example_payload")
    if ex:
        console.print(f"Example: the first '{ex['action']}' action's recommendations:")
        for r in ex["recommendations"]:
            item = r.get("product_id") or r.get("content_asset_id")
            via = f"{r['reason']} ({r['because']})" if r.get("because") else r["reason"]
            console.print(f"  {item}  {r.get('category', '')}  score {r['score']}  via {via}")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def experiments_summary(shards: list[ShardStats]) -> dict[str, Any]:
    """Every experiment read from the shards' sums added up (see ``operators/stats.py``)."""
    reports = [s.extra["experiments"] for s in shards if s.extra.get("experiments")]
    if not reports:
        return {}
    from audienceflow.operators.stats import merged

    return merged(reports)


def _ci(c: dict[str, Any] | None, key: str, scale: float, unit: str, digits: int = 0) -> str:
    """A figure with its interval: a lift in whole percent, a revenue difference to the
    cent (in whole units, a significant 0.30 read "+0 [+0, +0] *")."""
    if c is None or c.get(key) is None:
        return "n/a"
    lo, hi = c[f"{key}_ci"]
    mark = " *" if c["significant"] else ""
    f = f"+.{digits}f"
    return f"{c[key] * scale:{f}}{unit} [{lo * scale:{f}}, {hi * scale:{f}}]{mark}"


def render_experiments(exps: dict[str, Any], console: Console) -> None:
    """One table: per experiment and arm, exposures, conversions, lift with interval, SRM."""
    if not exps:
        return
    t = Table(
        title="Experiments: lift vs the first arm, always-valid 95% interval (* significant)",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    t.add_column("experiment / arm", no_wrap=True)
    for col in ("exposed", "conv.", "rate", "rev/user", "conversion lift", "rev/user diff"):
        t.add_column(col, justify="right")
    for name, e in exps.items():
        srm = e["srm"]
        srm_text = (
            "SRM n/a"
            if srm["p"] is None
            else ("[red]SRM MISMATCH[/red]" if srm["flagged"] else "SRM ok") + f" p={srm['p']:.2f}"
        )
        t.add_row(f"[bold]{name}[/bold]", "", "", "", "", "", srm_text)
        arms = sorted(e["arms"].items(), key=lambda kv: kv[0] != e["control"])
        for arm, a in arms:
            control = arm == e["control"]
            cmp = e["comparisons"].get(arm) or {}
            rate, rpu = a["conversion_rate"], a["revenue_per_user"]
            t.add_row(
                f"  {arm}" + (" (control)" if control else ""),
                str(a["exposed"]),
                str(a["converters"]),
                "n/a" if rate is None else f"{rate:.1%}",
                "n/a" if rpu is None else f"{rpu:.2f}",
                "" if control else _ci(cmp.get("conversion"), "lift", 100.0, "%"),
                "" if control else _ci(cmp.get("revenue"), "diff", 1.0, "", 2),
            )
    console.print(t)
