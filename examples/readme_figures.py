"""Regenerate the README's demo figures from a demo run's summary.json.

``python examples/readme_figures.py [out/demo/summary.json] [README.md]`` rewrites the
block between ``<!-- demo-figures:start -->`` and ``<!-- demo-figures:end -->``
(``make readme-figures`` runs the demo first). ``tests/test_report.py`` fails when the
README's block is not what the bundled stream gives, so the figures are never typed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

START, END = "<!-- demo-figures:start -->", "<!-- demo-figures:end -->"


def block(summary: dict[str, Any]) -> str:
    """The README text for a demo summary."""
    c, o = summary["counts"], summary["outputs"]
    models = summary.get("models") or {}
    it, ev = models.get("intent") or {}, models.get("evaluation") or {}
    lines = [
        f"On the bundled stream ({c['events_in']:,} events: {c['processed']:,} processed, "
        f"{c['dead_lettered']} dead-lettered, {c['filtered']} filtered; {o['users']} users, "
        f"{o['sessions']} sessions, {o['converted_sessions']} converted):",
    ]
    if it.get("roc_auc") is not None:
        lines.append(
            f"intent progressive ROC AUC {it['roc_auc']:.3f}, log loss {it['log_loss']:.3f} "
            f"over {it['sessions_learned']} sessions;"
        )
    if ev:
        lines.append(
            f"clusters against the planted archetypes: adjusted Rand index "
            f"{ev['adjusted_rand_index']:.3f}, purity {ev['purity']:.3f}."
        )
    lines.append(
        "(Generated from `out/demo/summary.json` by `make readme-figures`; the charts are in "
        "`out/demo/report.html`.)"
    )
    return "\n".join(lines)


def rewrite(readme: str, summary: dict[str, Any]) -> str:
    """``readme`` with its figures block replaced."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block(summary)}\n{END}{tail}"


def current(readme: str) -> str:
    """The figures block as the README has it now."""
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str]) -> int:
    summary_path = Path(argv[0] if argv else "out/demo/summary.json")
    readme_path = Path(argv[1] if len(argv) > 1 else "README.md")
    summary = json.loads(summary_path.read_text())
    text = readme_path.read_text()
    new = rewrite(text, summary)
    if new != text:
        readme_path.write_text(new)
        print(f"{readme_path}: demo figures updated from {summary_path}")
    else:
        print(f"{readme_path}: demo figures already match {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
