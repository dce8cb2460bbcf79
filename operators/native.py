"""The optional compiled build (``make fast``) and the guard that keeps it honest.

``make fast`` (``build_native.py``) compiles the modules in ``COMPILED`` with mypyc into
extension modules next to their sources, and writes ``STAMP_NAME`` in this folder: the
SHA-256 of every source the build read (this folder's and ``models/``'s ``.py`` files,
since mypyc compiles against their types) and the names of the files it built.
Python prefers an extension module to a ``.py`` of the same name, so without a guard a
compiled module built from an older source would run in its place. This module, imported
by ``audienceflow.operators`` before anything else, puts a finder first on
``sys.meta_path`` that sends the import of every compiled module to its ``.py`` source
unless the whole build is current:

- no built file and no stamp (the default, pure Python): the finder does nothing;
- ``AUDIENCEFLOW_PURE=1``: pure, silently (how tests and the bench compare the two);
- the stamp missing or unreadable, a built file missing or built for another Python, or
  any source hash different: pure, with one warning on stderr saying why (the first
  changed file) and how to rebuild or remove the build.

The build is all or nothing: compiled modules call each other natively, so one stale
module would make every other one stale too.

>>> from audienceflow.operators.native import verdict
>>> verdict() in ("absent", "pure", "compiled", "stale")
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

_T = TypeVar("_T")

# Modules compiled by ``make fast``. A class that pickles (records and items crossing
# workers, the snapshot envelope's ``objects``: models, clock, identity links) or that
# pure code subclasses stays a plain Python class (``plain_class``) while its module's
# code compiles; the rest become native classes. ``UserState`` and its parts are native
# (users are written by ``codec``, not pickled; ``shard_codec`` reads users of the old
# pickled snapshots field by field): compiled code reads their fields as C struct members
# and their floats unboxed. The records and ``ShardState`` are native too: a record
# pickles as a call of its class with its fields (``__reduce__``), the same bytes in
# both builds, and ``ShardState`` as the dict of its fields, as a plain class does; the
# pickles of either build, and the older ones, load in both (``tests/test_native.py``).
# ``PartitionClock`` (pickled with a source's offset) is native and pickles as a call of
# its class, as the records do. The rules' ``Context`` (its class body declares the rule
# names; exec'd rule code reads it) is a plain class with compiled methods. Left pure:
# triggers, experiments and lab (experiments.py subclasses the trigger classes: compiled
# methods of a plain class call each other directly, past a subclass's override, which
# changed the demo's deferred actions; and an interpreted class cannot inherit from a
# native one).
# History: the first 17 modules (ingest and the engine alone) measured 0.93x-1.07x of
# pure CPU: half of the engine's time was in the pure modules it calls per event
# (models, identity, clock) reading users through generic attribute lookups, and the
# compiled half read ``UserState`` the same way. With state, clock, identity and the
# models compiled: 1.19x fewer instructions at ingest, 1.13x in the engine (cachegrind,
# 20k lines, start-up taken out), outputs byte-identical.
# With the records and ``ShardState`` native (27 modules): 8 % fewer instructions again
# in the engine, which read events, sessions and the shard's counters through generic
# attribute lookups, and 7 % at ingest, which makes an ``Event`` per line through its
# written (compiled) ``__init__``: mypyc leaves a dataclass's generated ``__init__``
# interpreted, setting each field of a native class through a descriptor (1.6 % more
# at ingest than a plain class, whose generated stores are specialized).
# Then the models (``ShardModels``, ``IntentModel``, ``BehaviorClusters``, ``DriftWatch``,
# the lessons and versions), ``StreamClock`` and ``IdentityGraph`` became native too: they
# pickle the state their plain classes pickled (``attrs_state``: the ``__dict__``, in its
# order; ``slots_state``), and those with a written ``__init__`` have a ``__new__`` that
# does not run it (mypyc's runs it, without arguments, when pickle or ``copy`` makes
# one); ``Session``, ``SegmentChange`` and ``Action`` got written ``__init__``s as
# ``Event`` had (older pickles of them load through ``shard_codec``'s blanks).
# The recommender (``models/reco.py``, ``models/recommender.py``) compiles with every class
# of it plain (its item models, their ``_Overlay`` views, a dict subclass, and the queued
# observations pickle in the versions of a snapshot): its methods' loops and arithmetic run
# compiled, ~1.25x fewer µs of CPU per event with an item (``bench/reco.py``).
COMPILED = (
    # the records every stage makes and reads (they pickle as calls of their class)
    "audienceflow.operators.records",
    "audienceflow.operators.decimals",
    # ingest: parse, validate, privacy, never-raising guard
    "audienceflow.operators.scrub",
    "audienceflow.operators.bounds",
    "audienceflow.operators.normalize",
    "audienceflow.operators.validate",
    "audienceflow.operators.privacy",
    "audienceflow.operators.ingest_guard",
    # the per-shard engine, its state and what it calls per event
    "audienceflow.operators.engine",
    "audienceflow.operators.shard_state",
    "audienceflow.operators.codec",
    "audienceflow.operators.features",
    "audienceflow.operators.sessions",
    "audienceflow.operators.segments",
    "audienceflow.models.vectors",
    # the engine's deadline queues and the per-event code around triggers and routing
    "audienceflow.operators.deadlines",
    "audienceflow.operators.diagnostics",
    "audienceflow.operators.caps",
    "audienceflow.operators.routing",
    "audienceflow.operators.tracking",
    "audienceflow.operators.state",
    "audienceflow.operators.clock",
    "audienceflow.operators.identity",
    "audienceflow.models.hook",
    "audienceflow.models.intent",
    "audienceflow.models.clustering",
    "audienceflow.models.scaling",
    "audienceflow.models.drift",
    "audienceflow.models.reco",
    "audienceflow.models.recommender",
    "audienceflow.operators.watermarks",
    "audienceflow.operators.rules",
    # the replay sink's per-record work: each record's line and its count
    "audienceflow.operators.tally",
    "audienceflow.operators.outputs",
)


def plain_class(cls: type[_T]) -> type[_T]:
    """Keep ``cls`` a plain Python class in the compiled build too.

    mypyc makes no native class of a class with a decorator it does not know, and this
    one changes nothing: for the classes that pickle (models, settings, held items),
    whose pickles must load in either build, while the classes around them compile.
    """
    return cls


def attrs_state(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The attributes ``names`` of ``obj`` that are set, in that order: the state a plain
    class pickles (its ``__dict__``, whose order is the order ``__init__`` sets them), for
    a class that is native in the compiled build, which has no ``__dict__``."""
    out: dict[str, Any] = {}
    for name in names:
        try:
            out[name] = getattr(obj, name)
        except AttributeError:
            continue
    return out


def set_attrs(obj: object, state: dict[str, Any]) -> None:
    """Set the attributes of a pickled state (``attrs_state``), as ``__dict__.update``."""
    for name, value in state.items():
        setattr(obj, name, value)


def slots_state(obj: Any) -> tuple[None, dict[str, Any]]:
    """The state a plain slots dataclass pickles (``object.__getstate__``): ``None`` and
    its fields that are set, in order; the same from the compiled build's native class."""
    return None, attrs_state(obj, tuple(f.name for f in dataclasses.fields(obj)))


def set_slots(obj: object, state: Any) -> None:
    """Set the fields of a pickled slots state (``slots_state``, or a bare dict)."""
    set_attrs(obj, state[1] if isinstance(state, tuple) else state)


# The shared library holding the compiled code; each compiled module is a small shim
# that loads its part from it.
GROUP = "audienceflow.operators._compiled"
LIBRARY = GROUP + "__mypyc"
STAMP_NAME = "native.json"
STAMP_FORMAT = 1
PURE_ENV = "AUDIENCEFLOW_PURE"

_HERE = Path(__file__).resolve().parent
ROOTS = {"operators": _HERE, "models": _HERE.parent / "models"}


def stamp_path(root: Path = _HERE) -> Path:
    return root / STAMP_NAME


def source_hashes(roots: dict[str, Path] = ROOTS) -> dict[str, str]:
    """SHA-256 of every ``.py`` file of the engine folders, by ``folder/name``."""
    out: dict[str, str] = {}
    for label, folder in sorted(roots.items()):
        for path in sorted(folder.glob("*.py")):
            out[f"{label}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def built_files(roots: dict[str, Path] = ROOTS) -> list[Path]:
    """Extension modules present in the engine folders (whoever built them)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(
        p
        for folder in roots.values()
        if folder.is_dir()
        for p in folder.iterdir()
        if p.name.endswith(suffixes)
    )


def check(stamp: Path, roots: dict[str, Path] = ROOTS) -> str | None:
    """Why the build described by ``stamp`` cannot be used, or None when it is current."""
    try:
        data = json.loads(stamp.read_bytes())
        if data["format"] != STAMP_FORMAT:
            return f"{stamp.name} has format {data['format']!r}, this guard reads {STAMP_FORMAT}"
        recorded: dict[str, str] = data["sources"]
        files: list[str] = data["files"]
    except FileNotFoundError:
        return f"compiled modules are present but {stamp.name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{stamp.name} is unreadable ({type(exc).__name__}: {exc})"
    current = source_hashes(roots)
    for name in sorted(recorded.keys() | current.keys()):
        if recorded.get(name) != current.get(name):
            what = "is new" if name not in recorded else "changed"
            what = "is gone" if name not in current else what
            return f"{name} {what} since the compiled build"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for rel in files:
        if not rel.endswith(suffix):  # Python would skip it and load the source anyway
            return f"built file {rel} is not for this Python (*{suffix})"
        label, _, filename = rel.partition("/")
        if label not in roots or not (roots[label] / filename).is_file():
            return f"built file {rel} is missing"
    return None


class Guard:
    """A ``sys.meta_path`` finder: ``names`` load compiled only while the build is current.

    ``roots`` are the folders the build compiled and hashed (``folder label -> path``),
    the stamp is in ``stamp``. The verdict is taken once, at the first import of one
    of ``names``: ``absent``, ``pure`` (forced by ``AUDIENCEFLOW_PURE``), ``compiled``
    or ``stale``.
    """

    def __init__(self, names: frozenset[str], roots: dict[str, Path], stamp: Path) -> None:
        self.names = names
        self.roots = roots
        self.stamp = stamp
        self._verdict: str | None = None

    def verdict(self) -> str:
        if self._verdict is None:
            self._verdict = self._decide()
        return self._verdict

    def _decide(self) -> str:
        if not self.stamp.exists() and not built_files(self.roots):
            return "absent"
        if os.environ.get(PURE_ENV, "") not in ("", "0"):
            return "pure"
        reason = check(self.stamp, self.roots)
        if reason is None:
            return "compiled"
        print(
            f"audienceflow: not using the compiled build: {reason}; running pure Python "
            "(rebuild it with `make fast`, or remove it with `make clean-fast`)",
            file=sys.stderr,
        )
        return "stale"

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names or self.verdict() in ("absent", "compiled"):
            return None  # Python's own finders: the extension module wins over the source
        leaf = fullname.rpartition(".")[2]
        for folder in path or ():
            source = Path(folder) / f"{leaf}.py"
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        raise ImportError(f"{fullname} has no pure source; the compiled build is off or stale")

    def install(self) -> None:
        """Put this guard first on ``sys.meta_path`` (once)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)


GUARD = Guard(frozenset((*COMPILED, LIBRARY)), ROOTS, stamp_path())


def install() -> None:
    """Install the engine's guard (``audienceflow.operators`` does, on import)."""
    GUARD.install()


def verdict() -> str:
    """The engine's build in this process: ``absent``, ``pure``, ``compiled`` or ``stale``."""
    return GUARD.verdict()


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` is running from a compiled extension."""
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    return str(origin).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
