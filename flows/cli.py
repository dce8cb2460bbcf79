"""The ``audienceflow`` command: replay recorded streams, run the worker, read profiles."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from audienceflow.operators.config import ConfigError
from audienceflow.operators.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audienceflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay", help="replay recorded JSONL streams (plain or .gz) into files")
    r.add_argument("inputs", nargs="+", metavar="INPUT")
    r.add_argument("--config", help="YAML config merged over the defaults")
    r.add_argument("--out", default="out", help="output directory (default: out)")
    r.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    c = sub.add_parser("check-config", help="load and check a config file, then exit")
    c.add_argument("config")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    err = Console(stderr=True)
    try:
        settings = Settings.load(getattr(args, "config", None))
    except ConfigError as exc:
        err.print(f"[red]config error[/red] {exc}", highlight=False)
        return 2
    if args.command == "check-config":
        console.print(f"{args.config}: ok ({len(settings.segments)} segments, "
                      f"{len(settings.triggers)} triggers)")
        return 0
    if args.command == "replay":
        from audienceflow.flows.replay import replay

        try:
            summary = replay(args.inputs, args.out, settings, args.workers, console)
        except FileNotFoundError as exc:
            err.print(f"[red]error[/red] {exc}", highlight=False)
            return 2
        return 0 if summary["counts"]["reconciled"] else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
