"""What identity handling costs: a replay with identity on against the same replay with it
off, on a stream where 30 % of the known users are anonymous until they log in mid-way.

    .venv/bin/python bench/identity.py [--users 20000] [--repeats 2]

Each replay runs in a fresh interpreter, alternately on and off, and the best of
``repeats`` of each is kept; CPU time (user + system of the child) is reported next to
wall time because the machine is shared. Also run by ``make bench`` (section identity).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
sys.path.insert(0, str(ROOT / "examples"))

CHILD = """
import json, os, sys, time
from audienceflow.flows import tune_gc
from audienceflow.flows.replay import replay
from audienceflow.operators.settings import Settings
tune_gc()
settings = Settings.load(sys.argv[3], environ={})
t, c = time.perf_counter(), time.process_time()
s = replay([sys.argv[1]], sys.argv[2], settings)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c,
                  "events": s["counts"]["events_in"], "merges": s["identity"]["merges"],
                  "profiles": s["outputs"]["profiles"]}))
"""


def login_stream(users: int, seed: int = 3, share: float = 0.3) -> tuple[Path, int]:
    """The bench's synthetic stream with ``share`` of known users logging in mid-way."""
    import generate

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"stream-login-{users}-{seed}-{share}.jsonl"
    if not path.exists():
        lines, _ = generate.generate(users, seed, invalid_rate=0.002, login_midway=share)
        generate.write(path, lines)
    with path.open("rb") as fh:
        return path, sum(1 for _ in fh)


def _replay(stream: Path, identity: bool, i: int) -> dict[str, Any]:
    cfg = WORK / f"identity-{identity}.yaml"
    cfg.write_text(f"identity:\n  enabled: {str(identity).lower()}\n")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(stream), str(WORK / f"id-out-{identity}-{i}"), str(cfg)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=os.environ,
    )
    if out.returncode != 0:
        raise RuntimeError(f"identity bench child failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(users: int = 20_000, repeats: int = 2) -> dict[str, Any]:
    stream, lines = login_stream(users)
    best: dict[bool, dict[str, Any]] = {}
    for i in range(repeats):
        for identity in (True, False):
            r = _replay(stream, identity, i)
            if identity not in best or r["cpu"] < best[identity]["cpu"]:
                best[identity] = r
    on, off = best[True], best[False]
    return {
        "lines": lines,
        "login_midway": 0.3,
        "on": {
            **on,
            "events_per_s": on["events"] / on["seconds"],
            "cpu_events_per_s": on["events"] / on["cpu"],
        },
        "off": {
            **off,
            "events_per_s": off["events"] / off["seconds"],
            "cpu_events_per_s": off["events"] / off["cpu"],
        },
        "cpu_ratio_on_vs_off": off["cpu"] / on["cpu"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    res = measure(a.users, a.repeats)
    for k in ("on", "off"):
        r = res[k]
        print(
            f"identity {k:>3}: {r['events_per_s']:,.0f} events/s wall, "
            f"{r['cpu_events_per_s']:,.0f} events/s of CPU, {r['merges']:,} merges, "
            f"{r['profiles']:,} profiles"
        )
    print(f"identity on runs at {res['cpu_ratio_on_vs_off']:.1%} of identity off (CPU)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
