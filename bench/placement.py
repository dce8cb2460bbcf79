"""Where Bytewax 0.21 runs what, so the scaling bench can say which items cross processes.

- A stateful step's key lives on worker ``siphash13(key + 0xff) % workers``: Rust's
  ``DefaultHasher`` (SipHash-1-3, zero keys) over the key ``String`` (its UTF-8 bytes,
  then a 0xff byte), as ``stateful_batch`` partitions keys across workers.
- The partitions of a ``FixedPartitionedSource`` or ``FixedPartitionedSink`` go to the
  workers in turn, in the sorted order of their names: the i-th is on worker
  ``i % workers``.

Checked against a real multi-process cluster by ``tests/test_bench_placement.py``.
"""

from __future__ import annotations

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


def partition_workers(names: list[str], workers: int) -> dict[str, int]:
    """The worker of each partition of a fixed-partitioned source or sink."""
    return {name: i % workers for i, name in enumerate(sorted(names))}


def pinned_key(name: str, i: int, modulus: int = 64) -> str:
    """``name`` or ``name-<n>`` (smallest n) whose worker is ``i % workers`` for every
    worker count dividing ``modulus``: a stateful key that lives with the i-th input
    partition (see the module docstring), so nothing read there crosses processes."""
    n = 0
    while True:
        key = f"{name}-{n}" if n else name
        if siphash13(key.encode() + b"\xff") % modulus == i % modulus:
            return key
        n += 1
