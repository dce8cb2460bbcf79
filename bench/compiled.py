"""Compiled against pure: the same replay with and without the ``make fast`` build.

``compare(stream)`` replays ``stream`` in fresh interpreters, alternately pure
(``AUDIENCEFLOW_PURE=1``: the import guard hides the compiled modules) and compiled,
``repeats`` times each, and returns the best events per second of CPU (the replay's own
process CPU time, start-up excluded) for each, with every output file of the first run
of each compared byte for byte. Without a current compiled build it says so and
measures nothing.

    .venv/bin/python bench/compiled.py bench/work/stream-20000-11.jsonl
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

CHILD = """
import json, os, sys, time
from audienceflow.flows import tune_gc
from audienceflow.flows.replay import replay
from audienceflow.operators import native
from audienceflow.operators.settings import Settings
tune_gc()
settings = Settings.load(sys.argv[3] or None)
cpu, wall = time.process_time(), time.perf_counter()
s = replay([sys.argv[1]], sys.argv[2], settings)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"cpu_seconds": cpu, "seconds": wall, "events": s["counts"]["events_in"],
                  "reconciled": s["counts"]["reconciled"], "build": native.verdict()}))
"""


def _run(stream: Path, out: Path, pure: bool, config: Path | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "AUDIENCEFLOW_PURE"}
    if pure:
        env["AUDIENCEFLOW_PURE"] = "1"
    done = subprocess.run(
        [PY, "-c", CHILD, str(stream), str(out), str(config or "")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"replay child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def same_outputs(a: Path, b: Path) -> dict[str, bool]:
    """Every output file of either run, equal byte for byte or not."""
    names = sorted({p.name for p in a.iterdir()} | {p.name for p in b.iterdir()})
    return {
        n: (a / n).is_file() and (b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes()
        for n in names
    }


def compare(stream: Path, repeats: int = 3, config: Path | None = None) -> dict[str, Any]:
    """Pure and compiled replays of ``stream``: events/s of CPU (best of ``repeats``).

    ``config``: the replay's config file (default: the built-in defaults, models on).
    """
    from audienceflow.operators import native

    stamp = native.stamp_path()
    reason = native.check(stamp) if stamp.exists() else "no compiled build (run `make fast`)"
    if reason is not None:
        return {"skipped": reason}
    best: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="compiled-bench-") as tmp:
        for i in range(repeats):
            for mode in ("pure", "compiled"):  # interleaved: noise hits both alike
                r = _run(stream, Path(tmp) / f"{mode}-{i}", mode == "pure", config)
                if r["build"] != ("pure" if mode == "pure" else "compiled"):
                    raise RuntimeError(f"{mode} run used the {r['build']} build")
                if mode not in best or r["cpu_seconds"] < best[mode]["cpu_seconds"]:
                    best[mode] = r
        equal = same_outputs(Path(tmp) / "pure-0", Path(tmp) / "compiled-0")
    n = best["pure"]["events"]
    eps = {mode: round(n / r["cpu_seconds"]) for mode, r in best.items()}
    return {
        "events": n,
        "repeats": repeats,
        "modules": list(native.COMPILED),
        "cpu_events_per_s": eps,
        "speedup": round(eps["compiled"] / eps["pure"], 3),
        "wall_seconds": {mode: round(r["seconds"], 2) for mode, r in best.items()},
        "outputs_identical": equal,
        "all_identical": all(equal.values()),
        "build_seconds": json.loads(stamp.read_bytes()).get("build_seconds"),
    }


if __name__ == "__main__":
    print(json.dumps(compare(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3)))
