"""The identity graph of a shard: which identifiers are one person, and under which id.

Identifiers are typed: a ``userId`` (known) or an ``anonymousId``. An event carrying
both, an ``identify`` with both, and an ``alias`` (``previousId`` → ``userId``) link
them. A profile is a connected component (union-find); its canonical id is its known
``userId`` when it has one, else the smallest of its anonymous ids, so it depends on
the set of links only, never on the order they came in.

Refused links (an ``IdentityChange`` of type ``rejected_merge`` says why):

- two different known ``userId`` in one profile, beyond ``max_user_ids`` (Segment
  Unify's "user_id limit 1"): ``user_id_limit``; an alias's ``previousId`` is a
  ``userId`` when the graph holds it as one or the caller saw it as one
  (``previous_known``), else an anonymous id (one a ``userId`` may name later);
- more than ``anonymous_ids`` anonymous ids joining one profile within
  ``anonymous_window``, or more than ``MAX_ANONYMOUS`` in all: ``anonymous_id_limit``.

A blocked value (``anonymous``, ``null``, ``undefined``, ``0``, ``-1``, empty, or a
configured pattern) never links and never names a profile. Only linked identifiers
are kept: a lone identifier is its own profile and costs nothing here.

>>> g = IdentityGraph(IdentitySpec())
>>> g.resolve("u1", "a1", None, 10.0, "m1").canonical
'u1'
>>> g.canonical("a1"), g.members("u1")
('u1', ['a1', 'u1'])
>>> r = g.resolve("u2", "a1", None, 20.0, "m2")
>>> r.canonical, r.change.kind, r.change.reason
('u2', 'rejected_merge', 'user_id_limit')
>>> g.resolve("u3", None, "u4", 30.0, "m3", previous_known=True).change.kind
'rejected_merge'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from audienceflow.operators import native
from audienceflow.operators.native import plain_class
from audienceflow.operators.normalize import BLANK_PRINTABLE, blank
from audienceflow.operators.records import IdentityChange
from audienceflow.operators.routing import shard_index

KNOWN: Final = "u"
ANON: Final = "a"
KNOWN_: Final = "u:"
ANON_: Final = "a:"
MAX_REFUSED: Final = 16  # refused links remembered per profile (so each is reported once)
# Anonymous ids one profile holds, whenever they joined. Each link costs a pass over the
# profile's ids, and the window alone lets one cookie-cycling sender grow a profile as
# long as stream time goes on (8,000 ids: 240 us a link, 4 normal events' work).
MAX_ANONYMOUS: Final = 1000
BLOCKED_VALUES = ("anonymous", "null", "undefined", "none", "nil", "0", "-1", "")


@plain_class
@dataclass(frozen=True, slots=True)
class IdentitySpec:
    """Identity settings (config section ``identity``)."""

    enabled: bool = True
    max_user_ids: int = 1
    anonymous_ids: int = 5
    anonymous_window: float = 7 * 86400.0
    blocked: tuple[str, ...] = BLOCKED_VALUES
    blocked_patterns: tuple[str, ...] = ()
    longest: int = field(init=False, default=0)  # a longer id is never blocked by value

    def __post_init__(self) -> None:
        object.__setattr__(self, "longest", max(map(len, self.blocked), default=0))


@functools.cache
def _pattern(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def is_blocked(spec: IdentitySpec, value: str | None) -> bool:
    """``value`` never links and never names a profile (``identity.blocked_values``,
    ``identity.blocked_patterns``)."""
    if value is None:
        return True
    if (
        value
        and not spec.blocked_patterns
        and value[0].isprintable()  # neither whitespace (but the space) nor invisible
        and value[0] not in BLANK_PRINTABLE
        and not value[-1].isspace()
    ):
        # The common case, without building anything for an id longer than every blocked
        # value. A shorter one (most ids: "u123") has nothing to strip and is not blank
        # (the lower case of a character shown is one shown, checked over every code
        # point in tests/test_identity.py), so of the checks below only the values'
        # can block it.
        return len(value) <= spec.longest and value.lower() in spec.blocked
    v = value.strip().lower()
    if not v or v in spec.blocked or blank(v):  # zero-width spaces name no one either
        return True
    pat = _pattern(spec.blocked_patterns)
    return pat is not None and pat.fullmatch(value) is not None


@dataclass(slots=True)
class Component:
    """A linked profile: its identifiers and when each anonymous one joined."""

    canonical: str
    known: list[str]
    anonymous: list[tuple[float, str]]  # (event time it joined, anonymous id)
    refused: list[str] = field(default_factory=list)  # links refused (reported once each)

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # A plain slots class's state, from the compiled build's native class too.
        return native.slots_state(self)

    def __setstate__(self, state: Any) -> None:
        native.set_slots(self, state)

    def members(self) -> list[str]:
        return sorted({*self.known, *(a for _, a in self.anonymous)})


class Resolved(NamedTuple):
    """Where an event belongs: ``canonical``; ``absorbed``: canonical ids that now are
    ``canonical`` (their states merge into it); ``change``: the identity record."""

    canonical: str
    absorbed: tuple[str, ...] = ()
    change: IdentityChange | None = None


@dataclass(slots=True)
class IdentityGraph:
    """Union-find over linked identifiers (keys ``"u:"``/``"a:"`` + id); pickles."""

    spec: IdentitySpec
    parent: dict[str, str] = field(default_factory=dict)
    comps: dict[str, Component] = field(default_factory=dict)  # root key -> component
    by_canonical: dict[str, str] = field(default_factory=dict)  # canonical id -> root key
    # With several shards, an identifier whose events go to another shard is never linked
    # here (its state is there): the link is counted in ``elsewhere``, not made.
    shard: int = 0
    shards: int = 1
    partitioner: str = "crc32"  # routing.shard_index's hash
    elsewhere: int = 0
    # Links to identifiers of other shards, both ways: there -> [here], here -> [there].
    foreign: dict[str, list[str]] = field(default_factory=dict)
    foreign_of: dict[str, list[str]] = field(default_factory=dict)
    # Alias previousIds linked (as anonymous ids) before anything said they were userIds:
    # a later event whose userId is one of them belongs to the profile the alias joined.
    aliased: set[str] = field(default_factory=set)

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # A plain slots class's state, from the compiled build's native class too.
        return native.slots_state(self)

    def __setstate__(self, state: Any) -> None:
        native.set_slots(self, state)

    # --- reading -------------------------------------------------------------

    def blocked(self, value: str | None) -> bool:
        """``value`` never links and never names a profile."""
        return is_blocked(self.spec, value)

    def _find(self, key: str) -> str | None:
        parent = self.parent
        root = parent.get(key)
        if root is None:
            return None
        if parent[root] == root:
            return root
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    def component(self, canonical: str) -> Component | None:
        root = self.by_canonical.get(canonical)
        return None if root is None else self.comps[root]

    def canonical(self, ident: str, kind: str = ANON) -> str:
        """The canonical id of the profile ``ident`` belongs to (itself when unlinked)."""
        root = self._find(f"{kind}:{ident}")
        if root is None and kind == ANON:
            root = self._find(f"{KNOWN}:{ident}")
        return ident if root is None else self.comps[root].canonical

    def members(self, canonical: str) -> list[str]:
        """Every identifier of the profile ``canonical`` (sorted)."""
        comp = self.component(canonical)
        return [canonical] if comp is None else comp.members()

    # --- linking -------------------------------------------------------------

    def resolve(
        self, user_id: str | None, anonymous_id: str | None, previous_id: str | None,
        at: float, message_id: str, previous_known: bool = False,
    ) -> Resolved:  # fmt: skip
        """Link what one event (in event-time order) says is one person; where it belongs.

        ``user_id`` is the event's ``userId`` (None when anonymous), ``previous_id`` an
        alias's ``previousId``; ``previous_known``: the caller has seen ``previous_id`` as
        a ``userId`` (the graph keeps no lone identifier, so it cannot tell). Raises
        ``ValueError`` when no usable identifier is left.
        """
        canonical = self.settled(user_id, anonymous_id, previous_id)
        if canonical is not None:
            return Resolved(canonical)
        return self.link(user_id, anonymous_id, previous_id, at, message_id, previous_known)

    def link(
        self, user_id: str | None, anonymous_id: str | None, previous_id: str | None,
        at: float, message_id: str, previous_known: bool = False,
    ) -> Resolved:  # fmt: skip
        """``resolve`` of an event ``settled`` said None of."""
        keys: list[str] = []
        if not self.blocked(user_id):
            assert user_id is not None
            keys.append(self._known_key(user_id))
        if not self.blocked(anonymous_id):
            keys.append(f"{ANON}:{anonymous_id}")
        # An alias of a userId to itself (``previousId`` == ``userId``) links nothing: its
        # two keys would be one identifier, merged with itself. Nor does a ``previousId``
        # whose key is already the event's (its ``anonymousId``, when ``userId`` is that
        # too and so read as no userId).
        # A ``previousId`` is the kind the graph has it as; a lone one, a ``userId`` when
        # the caller saw it as one (so the link counts against ``max_user_ids``), else
        # an anonymous id, as an unseen one is too (of unknown kind: a userId may name it
        # later, and then belongs to the profile the alias joined).
        if not self.blocked(previous_id) and previous_id != user_id:
            assert previous_id is not None
            key = KNOWN_ + previous_id
            if key not in self.parent:
                anon = ANON_ + previous_id
                if anon in self.parent:
                    key = anon
                elif not previous_known:
                    key = anon
                    self.aliased.add(previous_id)
            if key not in keys:
                keys.append(key)
        if not keys:
            raise ValueError("every identifier of the event is a blocked value")
        first = keys[0]
        result = Resolved(self._canonical_of(first))
        how = "alias" if previous_id is not None else "event"
        for other in keys[1:]:
            result = self._union(first, other, at, message_id, how, result)
        if previous_id is not None and ANON_ + previous_id not in self.parent:
            self.aliased.discard(previous_id)  # the link was refused or left to another shard
        return result

    def settled(
        self, user_id: str | None, anonymous_id: str | None, previous_id: str | None
    ) -> str | None:
        """Where an event belongs when it links nothing new (most events), else None.

        ``resolve``'s fast cases, without building its answer: the engine calls this
        first and ``resolve`` only when it says None (which it also says for a blocked
        value, so that ``resolve`` raises).
        """
        if previous_id is None and user_id is not None and anonymous_id is not None:
            # After a login every event carries both: most often already one profile.
            parent = self.parent
            ru, ra = parent.get(KNOWN_ + user_id), parent.get(ANON_ + anonymous_id)
            if ru is None and user_id in self.aliased:  # an alias's previousId
                ru = parent.get(ANON_ + user_id)
            if ru is not None and ru == ra and parent[ru] == ru:
                return self.comps[ru].canonical
        elif previous_id is None and (user_id is None) is not (anonymous_id is None):
            ident = user_id if user_id is not None else anonymous_id
            assert ident is not None
            spec = self.spec
            if (
                len(ident) <= spec.longest  # ``blocked``'s common case, inline
                or spec.blocked_patterns
                or not ident[0].isprintable()
                or ident[0] in BLANK_PRINTABLE
                or ident[-1].isspace()
            ) and self.blocked(ident):
                return None  # ``resolve`` finds no usable identifier and says so
            key = (KNOWN_ if user_id is not None else ANON_) + ident
            root = self.parent.get(key)  # ``_find``, inline for an unlinked or a root id
            if root is None:
                if user_id is None or ident not in self.aliased:
                    return ident  # unlinked: its own profile
                key = ANON_ + ident  # a userId an alias linked as its previousId
                root = self.parent[key]
            if self.parent[root] != root:
                root = self._find(key)
                assert root is not None
            return self.comps[root].canonical
        return None

    def _known_key(self, user_id: str) -> str:
        """The graph key of a ``userId``: one an alias linked as its ``previousId`` before
        it was seen as a ``userId`` is that (anonymous-kind) identifier."""
        key = KNOWN_ + user_id
        if key not in self.parent and user_id in self.aliased:
            return ANON_ + user_id
        return key

    def _here(self, ident: str) -> bool:
        return shard_index(ident, self.shards, self.partitioner) == self.shard

    def _canonical_of(self, key: str) -> str:
        root = self._find(key)
        return key[2:] if root is None else self.comps[root].canonical

    def _lone(self, key: str, at: float) -> str:
        self.parent[key] = key
        kind, ident = key[0], key[2:]
        comp = Component(
            ident, [ident] if kind == KNOWN else [], [] if kind == KNOWN else [(at, ident)]
        )
        self.comps[key] = comp
        self.by_canonical[ident] = key
        return key

    def _union(
        self, a: str, b: str, at: float, message_id: str, how: str, sofar: Resolved
    ) -> Resolved:
        ra, rb = self._find(a), self._find(b)
        if ra is not None and ra == rb:
            return sofar
        if self.shards > 1 and rb is None and not self._here(b[2:]):
            if self.link_elsewhere(a[2:], b[2:]):  # a link, not each event carrying it
                self.elsewhere += 1
            return sofar
        ca = self.comps[ra] if ra is not None else None
        cb = self.comps[rb] if rb is not None else None
        known = sorted({*(ca.known if ca else _known(a)), *(cb.known if cb else _known(b))})
        anonymous = [
            *(ca.anonymous if ca else _anon(a, at)),
            *(cb.anonymous if cb else _anon(b, at)),
        ]
        before = sorted({ca.canonical if ca else a[2:], cb.canonical if cb else b[2:]})
        idents = sorted({a[2:], b[2:]})
        spec = self.spec
        reason = None
        if len(known) > spec.max_user_ids:
            reason = "user_id_limit"
        elif len(anonymous) > MAX_ANONYMOUS or (
            _joined_since(anonymous, at - spec.anonymous_window) > spec.anonymous_ids
        ):
            reason = "anonymous_id_limit"
        if reason is not None:
            # Report a refused link once, not at every event carrying it.
            if (ca is not None and b in ca.refused) or (cb is not None and a in cb.refused):
                return sofar
            for comp, key in ((ca, b), (cb, a)):
                if comp is not None and len(comp.refused) < MAX_REFUSED:
                    comp.refused.append(key)
            change = IdentityChange(
                "rejected_merge", sofar.canonical, idents, before, at, reason, message_id
            )
            return Resolved(sofar.canonical, sofar.absorbed, change)
        ra = ra if ra is not None else self._lone(a, at)
        rb = rb if rb is not None else self._lone(b, at)
        size_a = len(self.comps[ra].known) + len(self.comps[ra].anonymous)
        size_b = len(self.comps[rb].known) + len(self.comps[rb].anonymous)
        root, child = (ra, rb) if size_a >= size_b else (rb, ra)  # union by size
        canonical = known[0] if known else min(x for _, x in anonymous)
        self.parent[child] = root
        del self.comps[child]
        for old in before:
            self.by_canonical.pop(old, None)
        self.comps[root] = Component(canonical, known, sorted(anonymous), _refused(ca, cb, a, b))
        self.by_canonical[canonical] = root
        absorbed = tuple(sorted({*sofar.absorbed, *before} - {canonical}))
        change = IdentityChange("merge", canonical, idents, before, at, how, message_id)
        return Resolved(canonical, absorbed, change)

    def link_elsewhere(self, here: str, there: str) -> bool:
        """Remember that ``here`` (this shard's) and ``there`` (another's) are one person;
        False when it was already known (or ``there`` has its fill of links here)."""
        locals_ = self.foreign.setdefault(there, [])
        if here not in locals_ and len(locals_) < MAX_REFUSED:
            locals_.append(here)
            self.foreign_of.setdefault(here, []).append(there)
            return True
        return False

    def reach(self, ids: tuple[str, ...] | list[str]) -> list[str]:
        """``ids`` and this shard's identifiers linked to them from other shards."""
        out = dict.fromkeys(ids)
        for ident in ids:
            out.update(dict.fromkeys(self.foreign.get(ident, ())))
        return list(out)

    # --- forgetting ----------------------------------------------------------

    def purge(self, canonical: str) -> list[str]:
        """Forget the profile ``canonical`` and its links; its identifiers (sorted)."""
        root = self.by_canonical.pop(canonical, None)
        if root is None:
            self._unforeign(canonical)
            self.aliased.discard(canonical)
            return [canonical]
        comp = self.comps.pop(root)
        for ident in comp.known:
            self.parent.pop(f"{KNOWN}:{ident}", None)
        for _, ident in comp.anonymous:
            self.parent.pop(f"{ANON}:{ident}", None)
        members = comp.members()
        for ident in members:
            self._unforeign(ident)
            self.aliased.discard(ident)
        return members

    def forget_refusals(self, idents: list[str]) -> int:
        """Forget every refused link naming one of ``idents`` (another profile remembers
        it, to report it once): a deletion leaves none of its identifiers here. A scan of
        the profiles, so only for a deletion, not at every eviction; how many."""
        gone = set(idents)
        n = 0
        for comp in self.comps.values():
            if comp.refused:
                keep = [key for key in comp.refused if key[2:] not in gone]
                n += len(comp.refused) - len(keep)
                comp.refused[:] = keep
        return n

    def _unforeign(self, here: str) -> None:
        for there in self.foreign_of.pop(here, ()):
            locals_ = self.foreign.get(there)
            if locals_ is not None and here in locals_:
                locals_.remove(here)
                if not locals_:
                    del self.foreign[there]

    def links(self) -> int:
        """Identifiers kept in linked profiles."""
        return len(self.parent)


def _refused(ca: Component | None, cb: Component | None, a: str, b: str) -> list[str]:
    """The links two profiles refused, kept by the one they become (each still reported
    once), less those the union now holds."""
    if not ((ca is not None and ca.refused) or (cb is not None and cb.refused)):
        return []
    kept = [*(ca.refused if ca else ()), *(cb.refused if cb else ())]
    inside = {a, b, *(KNOWN_ + k for c in (ca, cb) if c for k in c.known)}
    inside.update(ANON_ + a for c in (ca, cb) if c for _, a in c.anonymous)
    left = []  # a loop: a comprehension would make ``inside`` a cell, made at every link
    for k in dict.fromkeys(kept):
        if k not in inside:
            left.append(k)
    return left[:MAX_REFUSED]


def _joined_since(anonymous: list[tuple[float, str]], cutoff: float) -> int:
    """How many anonymous ids joined after ``cutoff`` (a loop: no generator per link)."""
    n = 0
    for t, _ in anonymous:
        if t > cutoff:
            n += 1
    return n


def _known(key: str) -> list[str]:
    return [key[2:]] if key[0] == KNOWN else []


def _anon(key: str, at: float) -> list[tuple[float, str]]:
    return [(at, key[2:])] if key[0] == ANON else []
