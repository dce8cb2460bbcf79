"""The ``audienceflow`` command: replay recorded streams, run the worker, read profiles."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from audienceflow.flows import tune_gc
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
    r.add_argument(
        "--redis",
        metavar="URL",
        help="also write the final profiles to Redis (default: files only)",
    )
    c = sub.add_parser("check-config", help="load and check a config file, then exit")
    c.add_argument("config")
    c.add_argument(
        "--sample",
        metavar="JSONL",
        help="a recorded stream (plain or .gz): warn of trigger events it never contains",
    )
    w = sub.add_parser("run", help="run the worker: Kafka in, Kafka and Redis out")
    w.add_argument("--config", help="YAML config merged over the defaults")
    w.add_argument(
        "--process-id", type=int, metavar="I", help="this process's index in --addresses (0-based)"
    )
    a = w.add_mutually_exclusive_group()
    a.add_argument(
        "--addresses",
        metavar='"H:P;H:P"',
        help="host:port of every process of the cluster, in process-id order",
    )
    a.add_argument("--addresses-file", metavar="FILE", help="the addresses, one per line")
    w.add_argument("--workers", type=int, default=1, help="Bytewax worker threads per process")
    f = sub.add_parser("profile", help="print a user's live profile from Redis")
    f.add_argument("user_id", metavar="USER_ID")
    f.add_argument("--config", help="YAML config merged over the defaults (for redis.url)")
    f.add_argument("--redis", metavar="URL", help="Redis URL (default: redis.url)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tune_gc()
    console = Console(stderr=False)
    err = Console(stderr=True)
    try:
        settings = Settings.load(getattr(args, "config", None))
    except ConfigError as exc:
        err.print(f"[red]config error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    if args.command == "check-config":
        return _check_config(args, settings, console, err)
    for w in settings.warnings:
        err.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
    if args.command in ("replay", "run") and settings.pii_mode == "hash" and not settings.pii_salt:
        err.print(
            f"[red]config error[/red] privacy.pii_mode is 'hash' but no salt is set: set "
            f"${settings.salt_env} to a private random string (e.g. `openssl rand -hex 32`), "
            "or privacy.salt in the config for a demo; an unsalted hash of an e-mail can be "
            "reversed with a dictionary",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    if args.command == "replay":
        from audienceflow.flows.replay import replay

        try:
            summary = replay(
                args.inputs, args.out, settings, args.workers, console, redis_url=args.redis
            )
        except FileNotFoundError as exc:
            err.print(f"[red]error[/red] {exc}", highlight=False)
            return 2
        except RuntimeError as exc:
            err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
            return 3
        errors = summary["counts"].get("input_errors") or []
        for error in errors:
            err.print(f"[red]input error[/red] {error}", highlight=False, soft_wrap=True)
        if errors:
            return 3  # what was readable is processed and written; the input is damaged
        return 0 if summary["counts"]["reconciled"] else 1
    if args.command == "run":
        return _run(args, settings, err)
    if args.command == "profile":
        return _profile(args, settings, err)
    return 2


def _check_config(
    args: argparse.Namespace, settings: Settings, console: Console, err: Console
) -> int:
    """Print the config's warnings (and, with ``--sample``, trigger events the sample lacks)."""
    warnings = list(settings.warnings)
    if args.sample:
        from audienceflow.flows.sample import event_names, unseen_trigger_events

        try:
            seen, lines = event_names(args.sample)
        except (OSError, EOFError, ValueError) as exc:
            err.print(
                f"[red]error[/red] cannot read {escape(args.sample)}: {escape(str(exc))}",
                highlight=False,
                soft_wrap=True,
            )
            return 2
        warnings += unseen_trigger_events(settings, seen, args.sample, lines)
    for w in warnings:
        err.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
    console.print(
        f"{args.config}: ok ({len(settings.segments)} segments, "
        f"{len(settings.triggers)} triggers, {len(warnings)} warnings)",
        highlight=False,
    )
    return 0


def _run(args: argparse.Namespace, settings: Settings, err: Console) -> int:
    from audienceflow.flows import worker
    from audienceflow.flows.worker_config import WorkerOptions

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        opts = WorkerOptions.of(settings)
        addresses = worker.read_addresses(args.addresses, args.addresses_file)
        worker.run(
            settings, opts, process_id=args.process_id, addresses=addresses, workers=args.workers
        )
    except ConfigError as exc:
        err.print(f"[red]config error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except worker.StartupError as exc:
        err.print(f"[red]cannot start[/red] {exc}", highlight=False, soft_wrap=True)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0


def _profile(args: argparse.Namespace, settings: Settings, err: Console) -> int:
    import orjson
    import redis

    from audienceflow.flows.redis_store import ProfileStore

    url = args.redis or settings.redis.url
    if not url:
        err.print(
            "[red]error[/red] no Redis: give --redis URL or set redis.url",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    store = ProfileStore(url, settings.redis.key_prefix)
    try:
        found = store.read(args.user_id)
    except redis.exceptions.RedisError as exc:
        err.print(
            f"[red]error[/red] cannot reach Redis at {url}: {exc}", highlight=False, soft_wrap=True
        )
        return 3
    finally:
        store.close()
    if found is None:
        err.print(
            f"no profile for {args.user_id!r} at {url} (key {store.key(args.user_id)!r})",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
