"""Where Bytewax 0.21 runs what, and shard keys that keep a partition's work where it is read.

``place`` sets up ``state.placement: partition``: one shard per input partition, keyed so
that Bytewax keeps it on the worker reading that partition, so the events of a topic
keyed by user (or of files split by user) never cross processes. The scaling bench uses
the rest to say which items cross processes.

- A stateful step's key lives on worker ``siphash13(key + 0xff) % workers``: Rust's
  ``DefaultHasher`` (SipHash-1-3, zero keys) over the key ``String`` (its UTF-8 bytes,
  then a 0xff byte), as ``stateful_batch`` partitions keys across workers.
- The partitions of a ``FixedPartitionedSource`` or ``FixedPartitionedSink`` go to the
  workers in turn, in the sorted order of their names: the i-th is on worker
  ``i % workers``; an item for a ``FixedPartitionedSink`` goes to the partition its
  ``part_fn`` names (``LocalRoute``: the one on the worker that made it).

Checked against a real multi-process cluster by ``tests/test_placement.py``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from audienceflow.operators.routing import (
    PARTITIONERS,
    is_out,
    layout,
    out_key,
    shard_index,
    shard_name,
)
from audienceflow.operators.settings import Settings

# Shard keys are pinned for every worker count dividing this (1-8, 10, 12, 14, 15, 20,
# ...); with another count the placement is still correct, only not local.
PIN_MODULUS = 840

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (one compression round, three finalization rounds), 64-bit output."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        rounds(1)
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    rounds(1)
    v0 ^= last
    v2 ^= 0xFF
    rounds(3)
    return (v0 ^ v1 ^ v2 ^ v3) & _MASK


def key_worker(key: str, workers: int) -> int:
    """The worker holding a stateful step's state for ``key``."""
    return siphash13(key.encode() + b"\xff") % workers


@dataclass(frozen=True, slots=True)
class HeldShards:
    """The shards one process holds: bit i of ``mask`` for the i-th shard key of the
    cluster, whose shard layout ``layout`` names (a digest of every shard key, in order,
    and how users map to them: the same digest, the same users on the same i-th shard)."""

    layout: str
    mask: int


def held_shards(settings: Settings, workers: int, local: range) -> HeldShards:
    """The shards (keys of the profiles step) the workers ``local`` (one process's, of
    ``workers`` in the cluster) hold, under the cluster's shard layout."""
    keys = settings.shard_keys or tuple(shard_name(i) for i in range(settings.shards))
    how = layout(settings.shards, settings.partitioner, settings.placement)
    digest = hashlib.blake2b("\n".join((how, *keys)).encode(), digest_size=8).hexdigest()
    mask = sum(1 << i for i, key in enumerate(keys) if key_worker(key, workers) in local)
    return HeldShards(digest, mask)


def held_names(settings: Settings, held: HeldShards) -> frozenset[str]:
    """The names (``routing.shard_name``) of the shards ``held`` holds."""
    return frozenset(shard_name(i) for i in range(settings.shards) if held.mask >> i & 1)


def partition_workers(names: list[str], workers: int) -> dict[str, int]:
    """The worker of each partition of a fixed-partitioned source or sink."""
    return {name: i % workers for i, name in enumerate(sorted(names))}


class LocalRoute:
    """The worker sink's routing: one sink partition per worker, and every item written
    by the worker it was made on, so no output crosses workers (or processes) to be
    written.

    ``parts`` are the sink's partitions, the i-th (sorted) on worker ``i % workers``: an
    item keyed by a shard goes to the i-th for the worker i holding that shard
    (``key_worker``); a dead letter or filtered event keyed ``out_key(p)`` to the one for
    the worker reading source partition ``p`` (``partition_workers`` of ``sources``); a
    bare ``OUT`` to the first. There are ``PIN_MODULUS`` of them whatever the number of
    workers (up to that many), one per worker written to: Bytewax's recovery keeps a
    snapshot of each one written, and panics on resume if it holds one of a partition
    no longer listed, so their names must not depend on the number of workers.
    """

    def __init__(self, workers: int, sources: list[str]) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1; got {workers}")
        count = max(PIN_MODULUS, workers)
        width = len(str(count - 1))
        self.workers = workers
        self.parts = [f"out-{i:0{width}d}" for i in range(count)]
        # out_key(p) -> the worker reading source partition p
        readers = partition_workers(sources, workers)
        self.readers = {out_key(p): w for p, w in readers.items()}
        self.known: dict[str, int] = {}  # key -> worker: a few shards and partitions

    def __call__(self, key: str) -> int:
        try:
            return self.known[key]
        except KeyError:
            pass
        worker = self.readers.get(key, 0) if is_out(key) else key_worker(key, self.workers)
        self.known[key] = worker
        return worker


def pinned_key(name: str, i: int, modulus: int = PIN_MODULUS) -> str:
    """``name`` or ``name-<n>`` (smallest n) whose worker is ``i % workers`` for every
    worker count dividing ``modulus``: a stateful key that lives with the i-th input
    partition (see the module docstring), so nothing read there crosses processes."""
    n = 0
    while True:
        key = f"{name}-{n}" if n else name
        if siphash13(key.encode() + b"\xff") % modulus == i % modulus:
            return key
        n += 1


def place(settings: Settings, parts: list[str], events: list[str]) -> Settings:
    """The settings of a dataflow whose source has partitions ``parts`` (Bytewax's names),
    ``events`` being those that carry events, in shard order (the rest carry requests).

    With ``state.placement: partition`` there is one shard per event partition, its key
    pinned to the worker reading that partition; otherwise ``settings`` as they are.
    """
    if settings.placement != "partition":
        return settings
    if not events:
        raise ValueError("placement: partition needs at least one input partition of events")
    order = {name: i for i, name in enumerate(sorted(parts))}
    keys = tuple(pinned_key(shard_name(i), order[name]) for i, name in enumerate(events))
    return replace(settings, shards=len(events), shard_keys=keys)


def split_stream(
    path: Path,
    parts: int,
    out_dir: Path,
    partitioner: str = "murmur2",
    fields: tuple[str, ...] = ("userId", "anonymousId"),
) -> list[Path]:
    """Split a recorded stream (JSONL, plain or .gz) into ``parts`` files as a producer
    keyed by user id would split a topic: line by line, to ``shard_index`` of the first
    of ``fields`` that is a non-empty string or a whole number (the routing's: ``userId``,
    else ``anonymousId``); a line without one (or not JSON) by the crc32 of the line, so
    every line lands in exactly one file (the replay dead-letters it there). Each file
    keeps the stream's order; lines are read as ``audienceflow sort`` reads them
    (``timesort.read_lines``: ``\r\n`` becomes ``\n``, a first line's byte-order mark
    goes, as a replay drops it). An unreadable input, or a part that cannot be created or
    written, is a ``SortError`` naming it, and no part is left. Returns the files, in
    partition order."""
    import zlib

    import orjson

    from audienceflow.flows.timesort import SortError, read_lines

    if parts < 1:
        raise ValueError(f"parts must be >= 1; got {parts}")
    if partitioner not in PARTITIONERS:
        raise ValueError(f"partitioner must be one of {', '.join(PARTITIONERS)}")
    stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
    width = len(str(parts - 1))
    paths = [out_dir / f"{stem}-{k:0{width}d}-of-{parts}.jsonl" for k in range(parts)]
    handles: list[Any] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for p in paths:
            handles.append(p.open("wb"))
        for line in read_lines(path):  # a read error names the input and the line
            line += b"\n"
            ident = None
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                for field in fields:
                    v = obj.get(field)
                    if type(v) is int:  # a whole-number id is its decimal text
                        v = str(v)
                    if isinstance(v, str) and v:
                        ident = v
                        break
            k = (
                zlib.crc32(line) % parts
                if ident is None
                else shard_index(ident, parts, partitioner)
            )
            handles[k].write(line)
        for h in handles:  # a full disk may say so only when the last bytes go out
            h.close()
    except (SortError, OSError) as exc:
        for h in handles:
            with contextlib.suppress(OSError):
                h.close()
        for p in paths[: len(handles)]:  # half a split would pass for a whole one
            p.unlink(missing_ok=True)
        if isinstance(exc, SortError):
            raise
        # A part that cannot be created or written (more parts than open files allowed,
        # --out a file, a read-only or full disk) was a traceback that left the parts
        # opened so far behind.
        why = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename else ""
        hint = "; raise the open-file limit (ulimit -n) or split into fewer" * (
            exc.errno == errno.EMFILE
        )
        raise SortError(
            f"cannot write the {parts} parts into {str(out_dir)!r}: {why}{where}{hint}; "
            "no part was left"
        ) from exc
    return paths
