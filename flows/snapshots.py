"""Recovery snapshots of shard state, authenticated: ``seal(payload) -> bytes``, ``unseal``.

The payload is a shard's snapshot envelope (``operators/shard_codec.py``), which
holds a pickle (of the models), and unpickling runs code: whoever can write the
recovery directory could run commands in the worker on its next resume. With a key
in ``$AUDIENCEFLOW_SNAPSHOT_KEY`` every snapshot carries an HMAC-SHA256 tag over its
bytes, checked before anything is decoded; a snapshot that fails it (tampered,
written with another key, or without one) is refused with ``SnapshotRefused``.
Without a key, snapshots are written and read unauthenticated (the worker warns
at start).

Format: ``AFS1`` + 32-byte tag + payload (keyed), ``AFS0`` + payload (no key).
Snapshots from before this format (a bare pickle) are read only without a key.

>>> blob = seal(b"state", key=b"k" * 32)
>>> unseal(blob, key=b"k" * 32)
b'state'
>>> unseal(blob.replace(b"state", b"State"), key=b"k" * 32)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
audienceflow.flows.snapshots.SnapshotRefused: recovery snapshot fails its authentication ...
"""

from __future__ import annotations

import hashlib
import hmac
import os

KEY_ENV = "AUDIENCEFLOW_SNAPSHOT_KEY"
_KEYED = b"AFS1"
_PLAIN = b"AFS0"
_TAG = hashlib.sha256().digest_size


class SnapshotRefused(RuntimeError):
    """A recovery snapshot this worker must not resume from (its authentication failed,
    so nothing of it was decoded, or it was written under another shard layout)."""


def configured_key() -> bytes | None:
    """The snapshot key from the environment, or None when unset or empty."""
    value = os.environ.get(KEY_ENV, "")
    return value.encode() if value else None


def seal(payload: bytes, key: bytes | None = None) -> bytes:
    """``payload`` framed, tagged with an HMAC when a key is given or configured."""
    key = key if key is not None else configured_key()
    if key is None:
        return _PLAIN + payload
    return _KEYED + hmac.digest(key, payload, "sha256") + payload


def unseal(blob: bytes, key: bytes | None = None) -> bytes:
    """The payload of a sealed snapshot; ``SnapshotRefused`` unless it passes the key's check."""
    key = key if key is not None else configured_key()
    head = blob[:4]
    if key is None:
        if head == _KEYED:
            raise SnapshotRefused(
                f"recovery snapshot is authenticated but ${KEY_ENV} is not set; "
                "set the key it was written with to resume"
            )
        return blob[4:] if head == _PLAIN else blob
    if head != _KEYED:
        raise SnapshotRefused(
            f"recovery snapshot is not authenticated but ${KEY_ENV} is set; refusing to "
            "resume from it (unset the key once to resume from a trusted unauthenticated "
            "snapshot, or start from an empty recovery directory)"
        )
    tag, payload = blob[4 : 4 + _TAG], blob[4 + _TAG :]
    if not hmac.compare_digest(tag, hmac.digest(key, payload, "sha256")):
        raise SnapshotRefused(
            f"recovery snapshot fails its authentication (HMAC-SHA256 with ${KEY_ENV}): "
            "tampered with, or written with another key; refusing to resume from it"
        )
    return payload
