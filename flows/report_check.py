"""Render a report in headless Chromium; fail on a script error or an empty chart.

``python -m audienceflow.flows.report_check REPORT.html [SCREENSHOT.png]`` (what
``make report-check`` runs). The page writes a ``#report-status`` element once every
chart is drawn (charts drawn, expected, empty, JavaScript errors); ``--dump-dom`` returns
the page after its scripts ran, and this reads that element. A fresh profile and no
network services, so the check also shows that the page needs nothing from outside.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=20000",
)
STATUS = re.compile(r'<div id="report-status"([^>]*)>')


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("chromium not found: apt-get install -y chromium (make report-check does)")
    return found


def _run(report: Path, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="af-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, report.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def status(dom: str) -> dict[str, object]:
    """The ``#report-status`` attributes of a dumped page (empty dict: never written)."""
    m = STATUS.search(dom)
    if not m:
        return {}
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', m.group(1)))
    return {
        "charts": int(attrs.get("charts", "0")),
        "expected": int(attrs.get("expected", "0")),
        "empty": int(attrs.get("empty", "0")),
        "errors": json.loads(html.unescape(attrs.get("errors", "[]"))),
    }


def check(report: Path, screenshot: Path | None = None) -> dict[str, object]:
    """Render ``report``; raise SystemExit naming the problem, else return the status."""
    st = status(_run(report, "--dump-dom"))
    if not st:
        raise SystemExit(f"{report}: the page never finished drawing (no #report-status)")
    if st["errors"]:
        raise SystemExit(f"{report}: script errors: {st['errors']}")
    if st["empty"] or st["charts"] != st["expected"] or not st["charts"]:
        raise SystemExit(f"{report}: charts drawn/expected/empty: {st}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _run(report, f"--screenshot={screenshot.resolve()}", "--window-size=1280,7000")
        if not screenshot.is_file() or screenshot.stat().st_size == 0:
            raise SystemExit(f"no screenshot written to {screenshot}")
    return st


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    report = Path(argv[0])
    shot = Path(argv[1]) if len(argv) > 1 else None
    st = check(report, shot)
    print(
        f"{report}: {st['charts']} charts drawn, none empty, no script errors"
        + (f"; screenshot {shot}" if shot else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
