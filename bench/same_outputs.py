"""Every output record of the engine on a stream, one line each, to compare two builds.

Runs ``stream`` through the bench's stages (``new_ingest`` -> ``new_engine`` -> ``_feed``,
default config, one shard) and writes each record as its type name and the orjson
of its ``to_json()`` (sorted keys; ``repr`` for the few records without one), in
order, then prints the count and a SHA-256 of the lines. Run it in two checkouts
(e.g. main and a speed branch) and ``cmp`` the files: a change meant to be
byte-identical must leave them equal.

    python bench/same_outputs.py bench/work/stream-20000-11.jsonl /tmp/mine.txt [CONFIG]

``CONFIG``: a config file instead of the default (``examples/demo.yaml`` turns on the
recommender and experiments, which the default leaves off).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import orjson
from stages import _feed, new_engine, new_ingest

from audienceflow.operators.settings import Settings


def main(stream: Path, out: Path, config: str | None = None) -> None:
    settings = Settings.load(config)
    lines = stream.read_bytes().splitlines()
    ingest = new_ingest(settings)
    keyed = ingest.feed([(str(i), raw) for i, raw in enumerate(lines)]) + ingest.end()
    records = _feed(new_engine(settings), [v for k, v in keyed if k != "_out"])
    digest = hashlib.sha256()
    with out.open("wb") as f:
        for rec in records:
            to_json = getattr(rec, "to_json", None)
            body = (
                orjson.dumps(to_json(), option=orjson.OPT_SORT_KEYS)
                if to_json is not None
                else repr(rec).encode()
            )
            line = type(rec).__name__.encode() + b" " + body + b"\n"
            f.write(line)
            digest.update(line)
    print(len(records), digest.hexdigest())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
