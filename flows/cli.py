"""The audienceflow command: replay recorded streams, run the worker, read profiles."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from audienceflow import flows
from audienceflow.flows import tune_gc
from audienceflow.flows.input_files import not_a_file
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
    from importlib.metadata import PackageNotFoundError, version  # ~40 ms: only for --version

    try:
        return version("audienceflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``: reads the package metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        sys.stdout.write(f"{parser.prog} {_version()}\n")  # as argparse's own version action
        parser.exit()


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


def _at_least_one(text: str) -> int:
    """A count of workers or processes: 0 would read nothing and report success."""
    try:
        n = int(text)
    except ValueError:
        n = 0  # not a whole number: refused below, as 0 is
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1; got {text!r}")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="audienceflow", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=_FMT
    )
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = _sub(
        sub,
        "replay",
        "replay recorded JSONL streams (plain or .gz) into files",
        "audienceflow replay examples/stream.jsonl.gz --config examples/demo.yaml --out out/demo",
    )
    r.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="JSONL, plain or .gz; - for standard input"
    )
    r.add_argument("--config", help="YAML config merged over the defaults")
    r.add_argument("--out", default="out", help="output directory (default: out)")
    r.add_argument(
        "--workers", type=_at_least_one, default=1, help="Bytewax worker threads per process"
    )
    r.add_argument(
        "--processes",
        type=_at_least_one,
        default=1,
        help="local worker processes, forked once the engine is loaded (POSIX); each reads "
        "its share of the INPUT files",
    )
    r.add_argument(
        "--redis",
        metavar="URL",
        help="also write the final profiles to Redis (default: files only)",
    )
    r.add_argument(
        "--control",
        action="append",
        metavar="FILE",
        help="data subjects' requests (JSONL: delete, suppress, ...), applied at their "
        "timestamps; receipts go to control.jsonl",
    )
    r.add_argument(
        "--suppressed",
        metavar="FILE",
        help="identifiers (one per line) whose events are all filtered: no state, no output",
    )
    c = _sub(
        sub,
        "check-config",
        "load and check a config file, then exit",
        "audienceflow check-config my.yaml",
    )
    c.add_argument("config")
    c.add_argument(
        "--sample",
        metavar="JSONL",
        help="a recorded stream (plain or .gz): warn of trigger events it never contains",
    )
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
    w.add_argument(
        "--workers", type=_at_least_one, default=1, help="Bytewax worker threads per process"
    )
    w.add_argument(
        "--progress",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="log a progress line this often (events/s, stream time, lag, held; 0: never)",
    )
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
        "print the live profile of any of a user's identifiers from Redis",
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
    sp = _sub(
        sub,
        "split",
        "split a recorded stream by user, as a producer keyed by user id splits a topic",
        "audienceflow split big.jsonl.gz --parts 4 --out parts/   # for state.placement: partition",
    )
    sp.add_argument("input", metavar="INPUT", help="JSONL, plain or .gz")
    sp.add_argument("--parts", type=int, required=True, help="number of files (partitions)")
    sp.add_argument("--out", required=True, help="output directory")
    sp.add_argument(
        "--partitioner",
        choices=("murmur2", "crc32"),
        default="murmur2",
        help="murmur2 (Kafka's Java client, the default) or crc32 (librdkafka's default); "
        "the same as state.partitioner",
    )
    so = _sub(
        sub,
        "sort",
        "write recorded streams as one file in event-time order, for a replay of files "
        "written in another order (by user, by upload)",
        "audienceflow sort export-*.jsonl.gz --out sorted.jsonl.gz\n"
        "  audienceflow sort export-*.jsonl.gz --out - | audienceflow replay - --out out/x",
    )
    so.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL, plain or .gz")
    so.add_argument(
        "--out", required=True, help="the sorted file (.gz: compressed; -: standard output)"
    )
    v = _sub(
        sub,
        "verify-receipts",
        "check that no control receipt was dropped or altered (each shard's hash chain)",
        "audienceflow verify-receipts out/demo/control.jsonl",
    )
    v.add_argument("file", metavar="FILE", help="receipts as written (JSONL, e.g. control.jsonl)")
    return p


# Rich lays out for 80 columns when it writes to a pipe or a file (``make demo`` in a
# CI log, ``> summary.txt``), which cuts the summary's experiment columns to "conver…".
PIPE_WIDTH = 120


def _width(stream: Any) -> int | None:
    """Columns for a console on ``stream``: the terminal's (or ``$COLUMNS``), else 120."""
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return PIPE_WIDTH


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False, width=_width(sys.stdout))
    err = Console(stderr=True, width=_width(sys.stderr))
    if args.command == "schemas":
        return _schemas(args.name, err)
    if args.command == "report":
        return _report(args, console, err)
    if args.command == "verify-receipts":
        return _verify_receipts(args.file, console, err)
    if args.command == "split":
        return _split(args, console, err)
    if args.command == "sort":
        return _sort(args, console, err)
    tune_gc()
    try:
        settings = Settings.load(getattr(args, "config", None))
    except ConfigError as exc:
        if args.command == "run":
            from audienceflow.flows.logs import configure

            configure(args.log_level, args.log_format)
            _fatal(args, err, "config error", str(exc))
            return 2
        err.print(f"[red]config error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    if args.command == "check-config":
        return _check_config(args, settings, console, err)
    for w in settings.warnings:
        err.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
    if args.command in ("replay", "run") and settings.pii_mode == "hash" and not settings.pii_salt:
        err.print(
            f"[red]config error:[/red] privacy.pii_mode is 'hash' but no salt is set: set "
            f"${settings.salt_env} to a private random string (e.g. `openssl rand -hex 32`), "
            "or privacy.salt in the config for a demo; an unsalted hash of an e-mail can be "
            "reversed with a dictionary",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    if args.command == "replay":
        from audienceflow.flows.replay import check_inputs, replay

        try:  # before --out is made: a mistyped input leaves no empty folder behind
            check_inputs(args.inputs, args.control)
        except FileNotFoundError as exc:
            err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            return 2
        unusable = _unusable_out(args.out)
        if unusable:  # before anything is read: not a traceback (or a panic) at the end
            err.print(f"[red]error[/red] {escape(unusable)}", highlight=False, soft_wrap=True)
            return 2
        stopped: list[int] = []
        old = signal.signal(signal.SIGTERM, _interrupt(stopped))
        try:
            suppressed = _id_list(args.suppressed) if args.suppressed else ()
            if args.suppressed:
                _warn_trailing_comments(args.suppressed, err)
            summary = replay(
                args.inputs, args.out, settings, args.workers, console, redis_url=args.redis,
                control=args.control, suppressed=suppressed, processes=args.processes,
                process_started=flows.STARTED,
            )  # fmt: skip
        except FileNotFoundError as exc:
            err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            return 2
        except KeyboardInterrupt:
            return _interrupted(err, stopped, args.out)
        except RuntimeError as exc:
            if _by_interrupt(exc, stopped):
                return _interrupted(err, stopped, args.out)
            err.print(f"[red]error[/red] {escape(_reason(exc))}", highlight=False, soft_wrap=True)
            return 3
        finally:
            signal.signal(signal.SIGTERM, old)
        hints = (
            late_hint(summary["counts"], args.inputs),
            few_late_hint(summary["counts"], settings.lateness),
            format_hint(summary["counts"]),
            dead_letter_hint(summary["counts"], Path(args.out) / "dead_letters.jsonl"),
        )
        for hint in hints:
            if hint:
                err.print(f"[yellow]hint[/yellow] {escape(hint)}", highlight=False, soft_wrap=True)
        errors = summary["counts"].get("input_errors") or []
        for error in errors:
            err.print(f"[red]input error[/red] {escape(error)}", highlight=False, soft_wrap=True)
        if errors:
            return 3  # what was readable is processed and written; the input is damaged
        return 0 if summary["counts"]["reconciled"] else 1
    if args.command == "run":
        return _run(args, settings, err)
    if args.command == "profile":
        return _profile(args, settings, err)
    return 2


def _interrupt(stopped: list[int]) -> Any:
    """A SIGTERM handler that stops a replay as Ctrl-C does (``KeyboardInterrupt``, which
    the dataflow's next read raises and the cluster's parent passes on to its processes),
    so what it holds is cleaned up (a copy of standard input); ``stopped`` gets the signal."""

    def handler(signum: int, frame: Any) -> None:
        stopped.append(signum)
        raise KeyboardInterrupt

    return handler


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it came of (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


def _by_interrupt(exc: BaseException, stopped: list[int]) -> bool:
    """Whether ``exc`` (the dataflow's error) came of a ``KeyboardInterrupt``: one in its
    chain (Bytewax keeps it as the cause), or its text naming one after a SIGTERM came
    (``stopped``). The text alone is not enough: it quotes input paths, ``--out`` and
    values, and a failed run is not to be read as stopped (its error hidden, exit 130)."""
    if any(isinstance(cause, KeyboardInterrupt) for cause in _chain(exc)):
        return True
    return bool(stopped) and "KeyboardInterrupt" in str(exc)


def _reason(exc: BaseException) -> str:
    """What made the dataflow fail: the error Bytewax wrapped (its own says only where in
    Bytewax it failed: ``(src/outputs.rs:554:34): error writing output batch``, where
    Redis refusing every write of ``replay --redis`` said why), with passwords masked."""
    from audienceflow.flows.redact import redact

    for cause in _chain(exc):
        kind = type(cause)
        if kind.__name__ != "BytewaxRuntimeError" and str(cause):
            if kind is RuntimeError or kind.__module__.startswith("audienceflow."):
                return redact(str(cause))  # ours, worded for the user
            # Anything else (a bug, a library's error) said only its text, "'u1'" for a
            # KeyError, without its type or the step Bytewax named: both kept.
            step = re.sub(r"^\([^)]*\): ", "", str(exc)) if exc is not cause else ""
            return redact(f"{kind.__name__}: {cause}" + (f" ({step})" if step else ""))
    return redact(str(exc))


def _interrupted(err: Console, stopped: list[int], out: str) -> int:
    """Say the replay was stopped; the shell's status for the signal (130: Ctrl-C). The
    summary the dataflow's end wrote goes: it accounts for a whole run, which this is not,
    unless every input was read to its end (a signal while the finished run's summary
    was being printed), which it says by a count of lines read."""
    import orjson

    sig = stopped[0] if stopped else signal.SIGINT
    summary = Path(out) / "summary.json"
    try:
        whole = orjson.loads(summary.read_bytes())["counts"]["events_in"] is not None
    except (OSError, ValueError, KeyError, TypeError):
        whole = False
    if whole:
        err.print(
            f"[yellow]stopped[/yellow] by {signal.Signals(sig).name} after the replay had "
            "finished: the outputs and summary.json are whole",
            highlight=False,
        )
        return 128 + int(sig)
    summary.unlink(missing_ok=True)
    err.print(
        f"[red]stopped[/red] by {signal.Signals(sig).name}: the outputs are incomplete "
        "(no summary.json)",
        highlight=False,
    )
    return 128 + int(sig)


def _unusable_out(out: str) -> str | None:
    """Why the output directory ``out`` cannot be written (None: it can): made if absent."""
    import tempfile

    if not out.strip():  # "" would write every output into the current directory
        return "--out is empty: name the directory to write the outputs to"
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f"--out {out!r} is not a directory this process can write ({why})"
    return None


def _verify_receipts(path: str, console: Console, err: Console) -> int:
    import orjson

    from audienceflow.operators.control import check_receipts

    receipts = []
    try:
        for n, line in enumerate(Path(path).read_bytes().splitlines(), 1):
            if line.strip():
                try:
                    receipts.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:  # orjson's "line 1" is in the line
                    raise ValueError(f"line {n}: not JSON ({exc})") from None
    except (OSError, ValueError) as exc:
        err.print(f"[red]error[/red] {escape(path)}: {escape(str(exc))}", highlight=False)
        return 2
    problems = check_receipts(receipts)
    for p in problems:
        # A receipt's values are the file's: an altered one may hold markup ("[/]" raised)
        # or a line break and terminal codes, which could print a forged verdict.
        err.print(f"[red]broken[/red] {escape(_printable(p))}", highlight=False)
    if not problems:
        shards = len({str(r.get("shard")) for r in receipts})
        console.print(f"{len(receipts)} receipts, {shards} shard chain(s), none missing or altered")
    return 1 if problems else 0


def _printable(text: str) -> str:
    """``text`` with each character that is not printable as its escape (``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _id_list(path: str) -> tuple[str, ...]:
    """Identifiers, one per line (blank lines and ``#`` comments skipped)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--suppressed {path!r} does not exist or is not a file")
    # "utf-8-sig": a file saved by Notepad or as Excel's "CSV UTF-8" starts with a byte-order
    # mark, which would otherwise be part of the first identifier and suppress no one.
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    return tuple(x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#"))


def _trailing_comments(path: str) -> list[int]:
    """Line numbers of ``path`` where a ``#`` follows an identifier after a space
    (``w1  # left in 2024``): the whole line is that identifier (an id may hold ``#``),
    so the person ``w1`` is not suppressed, which the writer of the line did not mean."""
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    return [
        n
        for n, line in enumerate(lines, 1)
        if not line.lstrip().startswith("#") and re.search(r"\s#", line.strip())
    ]


def _warn_trailing_comments(path: str, err: Console) -> None:
    """Say which lines of a ``--suppressed`` file read as one identifier with a ``#`` in it
    (by number only: a line may name a person)."""
    found = _trailing_comments(path)
    if found:
        shown = ", ".join(map(str, found[:10])) + (", ..." if len(found) > 10 else "")
        err.print(
            f"[yellow]warning[/yellow] --suppressed {escape(path)}: line(s) {shown} hold an "
            "identifier, a space and '#': the whole line is read as one identifier, so the "
            "identifier before the '#' is not suppressed; put comments on lines of their own",
            highlight=False,
            soft_wrap=True,
        )


def _check_config(
    args: argparse.Namespace, settings: Settings, console: Console, err: Console
) -> int:
    """Print the config's warnings (and, with ``--sample``, trigger events the sample lacks)."""
    warnings = list(settings.warnings)
    if args.sample:
        from audienceflow.flows.sample import (
            event_names,
            mixed_currencies,
            unseen_conversion_events,
            unseen_rule_events,
            unseen_trigger_events,
        )

        try:
            currencies: dict[str, list[int]] = {}
            seen, lines = event_names(args.sample, settings.taxonomy, currencies, settings.features)
        except (OSError, EOFError, ValueError) as exc:
            err.print(
                f"[red]error[/red] cannot read {escape(args.sample)}: {escape(str(exc))}",
                highlight=False,
                soft_wrap=True,
            )
            return 2
        warnings += unseen_trigger_events(settings, seen, args.sample, lines)
        warnings += unseen_rule_events(settings, seen, args.sample, lines)
        warnings += unseen_conversion_events(settings, seen, args.sample, lines)
        warnings += mixed_currencies(settings, currencies, args.sample, lines)
    for w in warnings:
        err.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
    counts = ", ".join(
        _count(n, what)
        for n, what in (
            (len(settings.segments), "segment"),
            (len(settings.triggers), "trigger"),
            (len(warnings), "warning"),
        )
    )
    console.print(f"{escape(args.config)}: ok ({counts})", highlight=False)
    return 0


def _count(n: int, noun: str) -> str:
    """``1 warning``, ``2 warnings``, ``0 warnings``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _run(args: argparse.Namespace, settings: Settings, err: Console) -> int:
    import logging

    from audienceflow.flows import worker
    from audienceflow.flows.logs import configure
    from audienceflow.flows.redact import RedactingFilter
    from audienceflow.flows.worker_config import WorkerOptions

    configure(args.log_level, args.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())  # no password of a URL in any log line
    try:
        opts = WorkerOptions.of(settings)
        addresses = worker.read_addresses(args.addresses, args.addresses_file)
        worker.run(
            settings,
            opts,
            process_id=args.process_id,
            addresses=addresses,
            workers=args.workers,
            progress_every=args.progress,
        )
    except ConfigError as exc:
        _fatal(args, err, "config error", str(exc))
        return 2
    except worker.InputChanged as exc:
        _fatal(args, err, "stopped", str(exc))
        return 3
    except worker.StartupError as exc:
        _fatal(args, err, "cannot start", str(exc))
        return 3
    except worker.PeerLost as exc:
        _fatal(args, err, "cluster stopped", str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _fatal(args: argparse.Namespace, err: Console, what: str, detail: str) -> None:
    """The worker's last word: a log line too with ``--log-format json``, so a log
    shipper reading stderr as JSON lines gets it (the formatter masks credentials)."""
    from audienceflow.flows.redact import redact

    if args.log_format == "json":
        import logging

        logging.getLogger("audienceflow.cli").error("%s: %s", what, detail)
        return
    err.print(f"[red]{what}:[/red] {escape(redact(detail))}", highlight=False, soft_wrap=True)


def _profile(args: argparse.Namespace, settings: Settings, err: Console) -> int:
    import orjson
    import redis

    from audienceflow.flows.redact import redact
    from audienceflow.flows.redis_store import ProfileStore

    url = args.redis or settings.redis.url
    if not url:
        err.print(
            "[red]error[/red] no Redis: give --redis URL or set redis.url",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    from audienceflow.operators.privacy import Privacy

    # Named as events name it: an id that looks like PII (an e-mail) was pseudonymised.
    privacy = Privacy(settings.pii_fields, settings.pii_mode, settings.pii_salt)
    ident = privacy.pseudonym(args.user_id, "uid")
    if ident != args.user_id and settings.pii_mode == "hash" and not settings.pii_salt:
        # The workers keyed it by its salted pseudonym (``run`` needs the salt): an
        # unsalted one names no profile, and "no profile" would be a wrong answer.
        err.print(
            "[red]config error:[/red] "
            + escape(
                f"{args.user_id!r} holds an e-mail, phone or IP, which profiles are keyed "
                f"by as a salted pseudonym: set ${settings.salt_env} to the workers' salt"
            ),
            highlight=False,
            soft_wrap=True,
        )
        return 2
    store = ProfileStore(url, settings.redis.key_prefix)
    try:
        found = store.read(ident)
    except redis.exceptions.RedisError as exc:
        err.print(
            "[red]error[/red] "
            + escape(f"cannot reach Redis at {redact(url)}: {redact(str(exc))}"),
            highlight=False,
            soft_wrap=True,
        )
        return 3
    finally:
        store.close()
    if found is None:
        keys = f"lookup key {store.lookup_key(ident)!r}, key {store.key(ident)!r}"
        err.print(
            escape(f"no profile for {args.user_id!r} at {redact(url)} ({keys})"),
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
        err.print(f"[red]error[/red] {escape(str(exc.args[0]))}", highlight=False, soft_wrap=True)
        return 2
    return 0


def _report(args: argparse.Namespace, console: Console, err: Console) -> int:
    from audienceflow.flows.report import write_report

    try:
        path = write_report(args.out_dir, args.output)
    except FileNotFoundError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    console.print(f"report written to [bold]{escape(str(path))}[/bold]", highlight=False)
    return 0


def _split(args: argparse.Namespace, console: Console, err: Console) -> int:
    from audienceflow.flows.placement import split_stream

    src = Path(args.input)
    if not src.is_file():
        err.print(f"[red]error[/red] {escape(not_a_file(src))}", highlight=False, soft_wrap=True)
        return 2
    if args.parts < 1:
        err.print(f"[red]error[/red] --parts must be >= 1; got {args.parts}")
        return 2
    try:
        paths = split_stream(src, args.parts, Path(args.out), args.partitioner)
    except ValueError as exc:  # an unreadable input, an unwritable part: no part is left
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    for p in paths:
        console.print(escape(str(p)), highlight=False, soft_wrap=True)
    return 0


def _sort(args: argparse.Namespace, console: Console, err: Console) -> int:
    from audienceflow.flows.timesort import sort_stream, streamed

    inputs = [Path(p) for p in args.inputs]
    for src in inputs:
        if not src.is_file():
            err.print(
                f"[red]error[/red] {escape(not_a_file(src))}", highlight=False, soft_wrap=True
            )
            return 2
    out = Path(args.out)
    # Written as merged (``-``, /dev/stdout, a pipe): its line goes to stderr, not into it.
    say = err if streamed(out) else console
    # SIGTERM (a supervisor, ``timeout``) stops it as Ctrl-C does, so the runs of raw
    # events it spilled go with their folder; it used to end where it stood, leaving them.
    stopped: list[int] = []
    old = signal.signal(signal.SIGTERM, _interrupt(stopped))
    try:
        done = sort_stream(inputs, out)
    except ValueError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        return 2
    except BrokenPipeError:  # ``sort ... --out - | head``: the reader had enough
        _drop_stdout()
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        sig = stopped[0] if stopped else signal.SIGINT
        if str(out) == "-":  # what is buffered is no use now, and could wait on the pipe
            _drop_stdout()
        whose = "its reader got part of the lines" if say is err else f"{args.out} is as it was"
        err.print(
            f"[red]stopped[/red] by {signal.Signals(sig).name}: the sort did not finish; "
            f"{escape(whose)}",
            highlight=False,
            soft_wrap=True,
        )
        return 128 + int(sig)
    finally:
        signal.signal(signal.SIGTERM, old)
    say.print(
        f"{done.lines:,} lines in event-time order in {escape(args.out)} "
        f"({done.out_of_order:,} were out of order, {done.untimed:,} without a valid time "
        f"written first, {done.blank:,} blank dropped)",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _drop_stdout() -> None:
    """Standard output onto /dev/null: what is left in its buffer is written nowhere as
    Python exits (not a second error on a closed pipe, nor a wait on a full one)."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# A replay whose late events pass this share of its lines gets the hint below.
LATE_HINT_SHARE = 0.05


def late_hint(counts: dict[str, Any], inputs: list[str]) -> str | None:
    """A hint when many lines were late: the input is likely not in event-time order.

    Each file is judged against its own watermark, so each file is sorted on its own:
    merging several into one would undo their partitioning (``placement: partition``)
    and read them on one partition.

    >>> late_hint({"events_in": 100, "dead_lettered_by_reason": {"late_event": 5}}, ["a"])
    >>> late_hint({"events_in": 100, "dead_lettered_by_reason": {"late_event": 6}}, ["a"])[:11]
    '6 of 100 li'
    >>> print(late_hint({"events_in": 9, "dead_lettered_by_reason": {"late_event": 9}}, ["my f"]))
    9 of 9 lines were late_event: ... `audienceflow sort 'my f' --out sorted.jsonl` writes it ...
    """
    late = counts.get("dead_lettered_by_reason", {}).get("late_event", 0)
    total = counts.get("events_in", 0)
    if not total or late <= LATE_HINT_SHARE * total:
        return None
    if inputs == ["-"]:
        how = (
            "`audienceflow sort FILE --out sorted.jsonl`, FILE the stream saved, writes it "
            "in that order."
        )
    elif len(inputs) == 1:
        how = (
            f"`audienceflow sort {shlex.quote(inputs[0])} --out sorted.jsonl` writes it in "
            "that order."
        )
    else:
        how = (
            "`audienceflow sort FILE --out FILE.sorted.jsonl` writes one in that order; sort "
            "each file on its own, so the replay still reads them side by side."
        )
    return (
        f"{late:,} of {total:,} lines were late_event: the input does not look ordered by "
        "event time. A replay judges each file's events against the file's own watermark, "
        "as a live worker would; raise time.allowed_lateness to how far out of order it is, "
        f"or put it in event order. {how}"
    )


def few_late_hint(counts: dict[str, Any], lateness: float) -> str | None:
    """One line when some lines were late, too few for ``late_hint``: how many, and the
    key that sets how late an event may come (the table counts them, without why).

    >>> few_late_hint({"events_in": 100, "dead_lettered_by_reason": {}}, 120.0)
    >>> few_late_hint({"events_in": 100, "dead_lettered_by_reason": {"late_event": 6}}, 120.0)
    >>> few_late_hint({"events_in": 100, "dead_lettered_by_reason": {"late_event": 5}}, 120)[-40:]
    ' events by time.allowed_lateness (120s).'
    """
    late = counts.get("dead_lettered_by_reason", {}).get("late_event", 0)
    total = counts.get("events_in", 0)
    if not late or late > LATE_HINT_SHARE * total:
        return None
    return (
        f"{late:,} of {total:,} lines were late_event: older than their input's watermark, "
        f"which trails its latest events by time.allowed_lateness ({lateness:g}s)."
    )


# A replay where more than this share of the lines is not JSON gets the hint below.
FORMAT_HINT_SHARE = 0.5


def format_hint(counts: dict[str, Any]) -> str | None:
    """A hint when most lines were not JSON: a CSV export, or JSON written over several lines.

    >>> format_hint({"events_in": 10, "dead_lettered_by_reason": {"not_json": 5}})
    >>> format_hint({"events_in": 10, "dead_lettered_by_reason": {"not_json": 6}})[:40]
    '6 of 10 lines were not_json: a replay re'
    """
    bad = counts.get("dead_lettered_by_reason", {}).get("not_json", 0)
    total = counts.get("events_in", 0)
    if not total or bad <= FORMAT_HINT_SHARE * total:
        return None
    return (
        f"{bad:,} of {total:,} lines were not_json: a replay reads JSON Lines, one Segment "
        "call (a JSON object with type, userId or anonymousId, and timestamp) per line. A CSV "
        "export, or JSON spread over several lines, must be converted first; bench/public "
        "has converters for two public datasets."
    )


# A replay where more than this share of the lines is dead-lettered for one reason (other
# than late_event and not_json, which have hints of their own) gets the hint below.
DEAD_LETTER_HINT_SHARE = 0.5


def dead_letter_hint(counts: dict[str, Any], dead_letters: Path) -> str | None:
    """A hint when most lines were dead-lettered for one reason, with the first one's detail.

    A warehouse export whose times have no zone (`2026-03-02 10:00:00`) or whose rows have
    no `type` is dead-lettered whole, and the summary table alone does not say why.

    >>> dead_letter_hint({"events_in": 4, "dead_lettered_by_reason": {"bad_timestamp": 2}},
    ...                  Path("/nonexistent"))
    >>> dead_letter_hint({"events_in": 4, "dead_lettered_by_reason": {"bad_timestamp": 3}},
    ...                  Path("/nonexistent"))[:40]
    '3 of 4 lines were bad_timestamp (see non'
    """
    import orjson

    total = counts.get("events_in", 0)
    reasons = {
        reason: n
        for reason, n in counts.get("dead_lettered_by_reason", {}).items()
        if reason not in ("late_event", "not_json")
    }
    if not total or not reasons:
        return None
    reason, n = max(reasons.items(), key=lambda item: item[1])
    if n <= DEAD_LETTER_HINT_SHARE * total:
        return None
    hint = f"{n:,} of {total:,} lines were {reason} (see {dead_letters.name})"
    try:
        with dead_letters.open("rb") as fh:
            for line in fh:
                record = orjson.loads(line)
                if record.get("reason") == reason:
                    return f"{hint}; the first: {record.get('detail', '')}"
    except (OSError, orjson.JSONDecodeError):
        pass
    return f"{hint}."


if __name__ == "__main__":
    sys.exit(main())
