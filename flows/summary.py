"""The run summary printed as readable tables (``render``).

The counts behind it, and the summary itself, are ``operators/tally.py``'s ``RunTally``.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from audienceflow.operators.stats import cuped_metrics


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
        t.add_row(f"dead-lettered: {escape(reason)}", f"{n:,}")
    for reason, n in c["filtered_by_reason"].items():
        t.add_row(f"filtered: {escape(reason)}", f"{n:,}")
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
    members = o.get("segment_members")  # (a summary.json written before it had them: None)
    t = Table(title="Segments", header_style="bold")
    t.add_column("segment")
    t.add_column("enter", justify="right")
    t.add_column("exit", justify="right")
    if members is not None:
        t.add_column("members", justify="right")
    t.add_column("why none")
    for seg, ch in o["segment_changes"].items():
        held = () if members is None else (f"{members.get(seg, 0):,}",)
        t.add_row(escape(seg), str(ch["enter"]), str(ch["exit"]), *held, "")
    for name, d in (rules.get("segments") or {}).items():
        if d["enters"] == 0:
            none = () if members is None else ("0",)
            t.add_row(escape(name), "0", "0", *none, escape(d["why_none"]))
    console.print(t)
    if members is not None and o["segment_changes"]:
        console.print(
            "members: the users in each segment in profiles.jsonl, as of the last event. enter "
            "and exit also count the changes after it: a replay's end runs time past every "
            "deadline, so windows lapse and sessions close (README: Replay)."
        )
    t = Table(title="Actions", header_style="bold")
    t.add_column("action")
    t.add_column("status")
    t.add_column("count", justify="right")
    t.add_column("why none")
    for act, statuses in o["actions"].items():
        for status, n in statuses.items():
            t.add_row(escape(act), escape(status), str(n), "")
    for name, d in (rules.get("triggers") or {}).items():
        if d["decisions"] == 0:
            t.add_row(
                escape(d["action"]), f"none (trigger {escape(name)})", "0", escape(d["why_none"])
            )
    console.print(t)
    mixed = (summary.get("money") or {}).get("warning")
    if mixed:
        console.print(f"[bold yellow]Warning:[/bold yellow] {escape(mixed)}.", soft_wrap=True)
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
        f" Outputs in [bold]{escape(out_dir)}[/bold]"
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
            t.add_row(
                f"cluster:{escape(str(cid))}",
                str(c.get("size", "")),
                escape(str(c.get("description", ""))),
            )
        console.print(t)
    _render_recommendations(m.get("recommendations") or {}, console)
    ev = m.get("evaluation")
    if ev:
        # An index of exactly 0 (clusters no better than chance) is a score, not "nan";
        # without any user of the truth file in the stream there is none (n/a).
        console.print(
            f"Clusters vs planted archetypes ({escape(str(ev.get('truth')))}, "
            f"{ev.get('users', 0):,} users scored): adjusted Rand index "
            f"{_num(ev.get('adjusted_rand_index'))}, "
            f"purity {_num(ev.get('purity'))}"
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
        # Product ids and categories are the events' own text: as Rich markup, "[/]" in
        # one stopped the replay at its summary (which was then removed).
        console.print(f"Example: the first '{escape(ex['action'])}' action's recommendations:")
        for r in ex["recommendations"]:
            item = r.get("product_id") or r.get("content_asset_id")
            via = f"{r['reason']} ({r['because']})" if r.get("because") else r["reason"]
            console.print(
                escape(f"  {item}  {r.get('category', '')}  score {r['score']}  via {via}"),
                highlight=False,
            )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _ci(c: dict[str, Any] | None, key: str, scale: float, unit: str, digits: int = 0) -> str:
    """A figure with its interval: a lift in whole percent, a revenue difference to the
    cent (in whole units, a significant 0.30 read "+0 [+0, +0] *")."""
    if c is None or c.get(key) is None:
        return "n/a"
    f = f"+.{digits}f"
    mark = " *" if c["significant"] else ""
    if c.get("why") is not None:  # a bandit's: biased, no interval under adaptive allocation
        return f"{c[key] * scale:{f}}{unit} (biased, no interval)"
    if c.get(f"{key}_ci") is None:  # a lift while the treatment's mean is 0: no log interval
        return f"{c[key] * scale:{f}}{unit} (no interval){mark}"
    lo, hi = c[f"{key}_ci"]
    return f"{c[key] * scale:{f}}{unit} [{lo * scale:{f}}, {hi * scale:{f}}]{mark}"


# The table's column of each metric's comparison with the control.
_CUPED_COLUMNS = {"conversion": "conversion lift", "revenue": "rev/user diff"}


def _p(p: float) -> str:
    """A p-value to 2 significant digits, and below 0.001 as that: ``p=0.00`` hid 0.004."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def render_experiments(exps: dict[str, Any], console: Console) -> None:
    """One table: per experiment and arm, exposures, conversions, lift with interval, SRM."""
    if not exps:
        return
    t = Table(
        title="Experiments: lift vs the first arm, with its interval (* significant)",
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
            else ("[red]SRM MISMATCH[/red]" if srm["flagged"] else "SRM ok") + f" {_p(srm['p'])}"
        )
        # Each experiment's own level (``alpha``); a bandit's comparisons have no interval:
        # under adaptive allocation these confidence sequences do not hold (README, Bandit mode).
        level = f"always-valid {1 - float(e.get('alpha', 0.05)):.0%} interval"
        if e.get("bandit"):
            level = (
                "bandit: lift and diff biased by adaptive allocation, no interval nor significance"
            )
        elif e.get("correction") == "holm":  # each interval at its own level, not 1 - alpha
            level = (
                "always-valid interval, by Holm over its comparisons: each at alpha x p / p_holm,"
                f" alpha = {float(e.get('alpha', 0.05)):g}"
            )
        adjusted = [_CUPED_COLUMNS[m] for m in cuped_metrics(e)]
        if adjusted:  # beside the raw rate and rev/user, which CUPED leaves as they are
            level += f"; {' and '.join(adjusted)} CUPED-adjusted, rate and rev/user raw"
        t.add_row(f"[bold]{escape(name)}[/bold] ({escape(level)})", "", "", "", "", "", srm_text)
        arms = sorted(e["arms"].items(), key=lambda kv: kv[0] != e["control"])
        for arm, a in arms:
            control = arm == e["control"]
            cmp = e["comparisons"].get(arm) or {}
            rate, rpu = a["conversion_rate"], a["revenue_per_user"]
            t.add_row(
                f"  {escape(arm)}" + (" (control)" if control else ""),
                str(a["exposed"]),
                str(a["converters"]),
                "n/a" if rate is None else f"{rate:.1%}",
                "n/a" if rpu is None else f"{rpu:.2f}",
                "" if control else _ci(cmp.get("conversion"), "lift", 100.0, "%"),
                "" if control else _ci(cmp.get("revenue"), "diff", 1.0, "", 2),
            )
    console.print(t)
