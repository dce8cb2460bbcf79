"""The ``audienceflow`` command: replay recorded streams, run the worker, read profiles."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console

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
        err.print(f"[red]config error[/red] {exc}", highlight=False)
        return 2
    if settings.pii_mode == "hash" and not settings.pii_salt:
        err.print(
            "[yellow]warning[/yellow] PII is hashed without a salt: set "
            "$AUDIENCEFLOW_PII_SALT so hashed emails cannot be looked up in a dictionary",
            highlight=False,
        )
    if args.command == "check-config":
        console.print(
            f"{args.config}: ok ({len(settings.segments)} segments, "
            f"{len(settings.triggers)} triggers)"
        )
        return 0
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
        return 0 if summary["counts"]["reconciled"] else 1
    if args.command == "run":
        return _run(args, settings, err)
    if args.command == "profile":
        return _profile(args, settings, err)
    return 2


def _run(args: argparse.Namespace, settings: Settings, err: Console) -> int:
    from audienceflow.flows import worker
    from audienceflow.flows.redact import RedactingFilter, redact
    from audienceflow.flows.worker_config import WorkerOptions

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())  # no password of a URL in any log line
    try:
        opts = WorkerOptions.parse(settings, args.config or "config")
        addresses = worker.read_addresses(args.addresses, args.addresses_file)
        worker.run(
            settings, opts, process_id=args.process_id, addresses=addresses, workers=args.workers
        )
    except ConfigError as exc:
        err.print(f"[red]config error[/red] {redact(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except worker.StartupError as exc:
        err.print(f"[red]cannot start[/red] {redact(str(exc))}", highlight=False, soft_wrap=True)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0


def _profile(args: argparse.Namespace, settings: Settings, err: Console) -> int:
    import orjson
    import redis

    from audienceflow.flows.redact import redact
    from audienceflow.flows.redis_store import ProfileStore

    url = args.redis or settings.redis.get("url")
    if not url:
        err.print(
            "[red]error[/red] no Redis: give --redis URL or set redis.url",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    store = ProfileStore(url, str(settings.redis.get("key_prefix") or "af:profile:"))
    try:
        found = store.read(args.user_id)
    except redis.exceptions.RedisError as exc:
        err.print(
            f"[red]error[/red] cannot reach Redis at {redact(url)}: {redact(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        return 3
    finally:
        store.close()
    if found is None:
        err.print(
            f"no profile for {args.user_id!r} at {redact(url)} (key {store.key(args.user_id)!r})",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
