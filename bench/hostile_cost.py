"""What one hostile line costs next to a normal one: ingest, engine and output, in process.

    .venv/bin/python bench/hostile_cost.py [--lines 300] [CASE ...]

A base stream of 2,000 normal lines (300 users) is run alone and then followed by
``--lines`` lines of one case (more for a case that grows with one user's history:
``LINES``); the difference in CPU time (``time.process_time``, the
best of three runs) divided by ``--lines`` is the case's cost per line. ``normal`` is a
further normal line of a base user. The cases are the shapes the limits of
``operators/bounds.py``, ``operators/scrub.py`` and ``operators/identity.py`` bound.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages import new_engine, new_ingest

from audienceflow.flows import tune_gc
from audienceflow.operators.settings import Settings

T0 = 1772445600  # 2026-03-02T10:00:00Z
ROOM = 32 * 1024 - 600  # what a case may add to a normal line and stay under 32 KB


def _ts(sec: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))


def _event(i: int, uid: str, at: float, **fields: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "type": "track",
        "messageId": f"m-{uid}-{i}",
        "timestamp": _ts(at),
        "userId": uid,
        "event": "Product Viewed",
        "properties": {"product_id": f"p{i % 50}", "category": "deals", "price": 20.5},
        "context": {"device": {"type": "mobile"}, "locale": "en-US"},
    }
    ev.update(fields)
    return ev


def _normal(i: int) -> bytes:
    return orjson.dumps(_event(i, f"u{i % 300}", T0 + i))


def _with(prop: str, value: Any) -> Callable[[int], bytes]:
    def line(i: int) -> bytes:
        ev = _event(i, f"h{i % 300}", T0 + 2000 + i)
        ev["properties"][prop] = value
        return orjson.dumps(ev)

    return line


def _late(prop: str, value: Any) -> Callable[[int], bytes]:
    # An hour before the base stream: late, a dead letter that keeps the whole line.
    def line(i: int) -> bytes:
        ev = _event(i, f"h{i % 300}", T0 - 3600 + i % 60)
        ev["properties"][prop] = value
        return orjson.dumps(ev)

    return line


def _anonymous(i: int) -> bytes:
    # One user, a new anonymous id every two days (within the weekly limit of 5).
    ev = {"type": "identify", "messageId": f"a{i}", "timestamp": _ts(T0 + 2000 + i * 172800)}
    return orjson.dumps({**ev, "userId": "one", "anonymousId": f"anon{i}"})


CASES: dict[str, Callable[[int], bytes]] = {
    "normal": lambda i: _normal(2000 + i),
    "nested_empty_lists": _with("l", [[[[]]]] * (ROOM // 9)),
    "deep_and_wide": _with("d", {"a": {"a": {"a": {f"k{j}": [1] for j in range(ROOM // 14)}}}}),
    "percent_40": _with("url", "https://x.io/?q=" + "%40" * (ROOM // 3)),
    "percent_2540": _with("url", "https://x.io/?q=" + "%2540a" * (ROOM // 6)),
    "plus_then_text": _with("s", "+" + "abcd " * (ROOM // 5)),
    "plus_digit_runs": _with("s", "+1 " * (ROOM // 3)),  # a "+", a digit, everywhere
    "paren_digit_runs": _with("s", "(0" * (ROOM // 2)),
    "digit_space_runs": _with("s", "0 " * (ROOM // 2)),
    "digit_dash_runs": _with("s", "1 1-" * (ROOM // 4)),
    "line_digit_runs": _with(
        "s", "1\n" * (ROOM // 3)
    ),  # a number at each line's start (3 B in JSON)
    "lines_of_phones": _with("s", "1\n07700 900123\n" * (ROOM // 17)),
    "digit_run_dash_digit": _with("s", "1" * (ROOM - 2) + "-7"),  # one run, then "-7"
    "zero_run_dash_digit": _with("s", "0" * (ROOM - 2) + "-7"),
    "late_letters": _late("s", "a" * ROOM),
    "late_digits_dash_digit": _late("s", "1" * (ROOM - 2) + "-7"),
    "ipv6_hint_then_text": _with("s", "::" + "abcd " * (ROOM // 5)),
    "ipv6_colons_then_text": _with("s", "x:: " + "abcd " * (ROOM // 5)),  # no address
    "colon_runs": _with("s", "::" + "a:" * (ROOM // 2)),
    "bracket_digit_runs": _with("s", "(00)" * (ROOM // 4)),
    "address_list": _with("s", "1.2.3.4:" * (ROOM // 8)),
    "ipv6_list": _with("s", "::a " * (ROOM // 4)),  # an address every 4 characters
    "ipv6_mapped_glued": _with("s", "::ffff:198.51.100.23" * (ROOM // 20)),
    "phones_glued": _with("s", "+14155550123" * (ROOM // 12)),
    "phones_glued_ipv6": _with("s", "+14155550123::1" * (ROOM // 15)),
    "tab_pair_runs": _with("s", "07700\t\t" * (ROOM // 9)),  # two tabs: 4 B in JSON
    "tab_wrap_runs": _with("s", "020\t7946\n" * (ROOM // 12)),  # 12 B in JSON
    "blank_line_runs": _with("s", "0044 20\n\n" * (ROOM // 11)),
    "encoded_tab_phones": _with("s", "tel=07700%09900123&" * (ROOM // 19)),
    "percent_sep_runs": _with("s", "0%09%0A%2D" * (ROOM // 10)),
    "anonymous_ids_one_user": _anonymous,
}
# Cases whose cost grows with one user's history: enough lines to pass its limit; and
# the normal line, a small difference of two large times, the yardstick of the others.
LINES = {"anonymous_ids_one_user": 3000, "normal": 4000}


def _run(lines: list[bytes], settings: Settings) -> tuple[float, Counter[str]]:
    best, reasons = float("inf"), Counter[str]()
    for _ in range(3):
        gc.collect()
        started = time.process_time()
        ingest, engine = new_ingest(settings), new_engine(settings)
        keyed = []
        for j in range(0, len(lines), 1000):
            keyed += ingest.feed([(str(k), raw) for k, raw in enumerate(lines[j : j + 1000], j)])
        keyed += ingest.end()
        items = [v for k, v in keyed if k != "_out"]
        outs = [v for k, v in keyed if k == "_out"]
        for j in range(0, len(items), 1000):
            outs += engine.on_items(items[j : j + 1000])
        outs += engine.finish()
        for rec in outs:
            to_json = getattr(rec, "to_json", None)
            if to_json is not None:
                orjson.dumps(to_json(), option=orjson.OPT_SORT_KEYS)
        best = min(best, time.process_time() - started)
        reasons = Counter(r.reason for r in outs if type(r).__name__ in ("DeadLetter", "Filtered"))
        reasons.update(
            r.reason for r in outs if type(r).__name__ == "IdentityChange" and r.kind != "merge"
        )
    return best, reasons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    tune_gc()  # as the CLI does
    settings = Settings.load(None)
    base = [_normal(i) for i in range(2000)]
    alone, _ = _run(base, settings)
    for name in args.cases:
        n = max(args.lines, LINES.get(name, 0))
        added = [CASES[name](i) for i in range(n)]
        secs, reasons = _run(base + added, settings)
        per_line = (secs - alone) / n * 1e6
        print(f"{name:24s} {len(added[0]):6d} B  {per_line:8.1f} us/line  {dict(reasons)}")


if __name__ == "__main__":
    main()
