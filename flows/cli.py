"""The audienceflow command: replay recorded streams, run the worker, read profiles."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from rich.console import Console

from audienceflow.flows import tune_gc
from audienceflow.flows.logs import FORMATS, LEVELS
from audienceflow.operators.config import ConfigError
from audienceflow.operators.settings import Settings

_FMT = argparse.RawDescriptionHelpFormatter

DESCRIPTION = """\
audienceflow: a real-time behavioral personalization engine. Segment-spec events in;
sessions, segment changes, actions, dead letters and live profiles out.

Run "audienceflow COMMAND --help" for a command's options and an example."""

EXAMPLES = """\
examples:
  audienceflow replay examples/stream.jsonl.gz --config examples/demo.yaml --out out/demo
  audienceflow report out/demo
  audienceflow check-config my.yaml
  audienceflow run --config worker.yaml --log-format json
  audienceflow profile u00042 --redis redis://127.0.0.1:6379/0
  audienceflow schemas action"""


def _version() -> str:
    try:
        return version("audienceflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _sub(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    example: str,
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog="example:\n  " + example,
        formatter_class=_FMT,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="audienceflow", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=_FMT
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = _sub(
        sub,
        "replay",
        "replay recorded JSONL streams (plain or .gz) into files",
        "audienceflow replay examples/stream.jsonl.gz --config examples/demo.yaml --out out/demo",
    )
    r.add_argument("inputs", nargs="+", metavar="INPUT")
    r.add_argument("--config", help="YAML config merged over the defaults")
    r.add_argument("--out", default="out", help="output directory (default: out)")
    r.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    r.add_argument(
        "--redis",
        metavar="URL",
        help="also write the final profiles to Redis (default: files only)",
    )
    c = _sub(
        sub,
        "check-config",
        "load and check a config file, then exit",
        "audienceflow check-config my.yaml",
    )
    c.add_argument("config")
    w = _sub(
        sub,
        "run",
        "run the worker: Kafka in, Kafka and Redis out",
        "audienceflow run --config worker.yaml --log-level INFO --log-format json",
    )
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
    w.add_argument(
        "--log-level", default="INFO", choices=LEVELS, type=str.upper, help="default: INFO"
    )
    w.add_argument(
        "--log-format",
        default="text",
        choices=FORMATS,
        help="text (default) or json: one JSON object per line on stderr",
    )
    f = _sub(
        sub,
        "profile",
        "print a user's live profile from Redis",
        "audienceflow profile u00042 --redis redis://127.0.0.1:6379/0",
    )
    f.add_argument("user_id", metavar="USER_ID")
    f.add_argument("--config", help="YAML config merged over the defaults (for redis.url)")
    f.add_argument("--redis", metavar="URL", help="Redis URL (default: redis.url)")
    s = _sub(
        sub,
        "schemas",
        "list the JSON Schemas of the output records, or print one",
        "audienceflow schemas session > session.schema.json",
    )
    s.add_argument("name", nargs="?", metavar="NAME", help="a schema name; omit to list them")
    o = _sub(
        sub,
        "report",
        "write a self-contained HTML report of a replay's outputs",
        "audienceflow report out/demo   # writes out/demo/report.html",
    )
    o.add_argument("out_dir", metavar="OUT_DIR", help="a replay's output directory")
    o.add_argument("--output", metavar="FILE", help="where to write (default: OUT_DIR/report.html)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    err = Console(stderr=True)
    if args.command == "schemas":
        return _schemas(args.name, err)
    if args.command == "report":
        return _report(args, console, err)
    tune_gc()
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
    from audienceflow.flows.logs import configure
    from audienceflow.flows.worker_config import WorkerOptions

    configure(args.log_level, args.log_format)
    try:
        opts = WorkerOptions.parse(settings, args.config or "config")
        addresses = worker.read_addresses(args.addresses, args.addresses_file)
        worker.run(
            settings, opts, process_id=args.process_id, addresses=addresses, workers=args.workers
        )
    except ConfigError as exc:
        err.print(f"[red]config error[/red] {exc}", highlight=False, soft_wrap=True)
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


def _schemas(name: str | None, err: Console) -> int:
    from audienceflow.flows import contracts
    from audienceflow.operators.records import SCHEMA_VERSION

    if name is None:
        sys.stdout.write(f"output schemas, version {SCHEMA_VERSION} (JSON Schema 2020-12):\n")
        for n in contracts.NAMES:
            files = [f for f, s in contracts.FILES.items() if s == n]
            sys.stdout.write(f"  {n:<16}{contracts.schema(n)['title']} ({', '.join(files)})\n")
        return 0
    try:
        sys.stdout.write(contracts.text(name))
    except KeyError as exc:
        err.print(f"[red]error[/red] {exc.args[0]}", highlight=False, soft_wrap=True)
        return 2
    return 0


def _report(args: argparse.Namespace, console: Console, err: Console) -> int:
    from audienceflow.flows.report import write_report

    try:
        path = write_report(args.out_dir, args.output)
    except FileNotFoundError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    console.print(f"report written to [bold]{path}[/bold]", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
