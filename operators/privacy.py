"""Consent and PII filtering, applied before any state or output.

Only an event's ``properties`` and three context fields (device type, locale,
campaign source) ever reach a profile; traits, IPs and the rest of the
context are dropped at validation. Within properties, keys named as PII
(``email``, ``phone``, ``ip`` by default, at any depth) are hashed or dropped.
Dead-letter lines are scrubbed the same way where they parse, and by pattern
where they do not (every dead letter is already pattern-scrubbed when built).

By construction, nothing an event's sender typed reaches an output unmasked: an
id (``userId``, ``anonymousId``, ``messageId``) that looks like an e-mail, phone
number, IP or payment card number becomes ``uid:``/``mid:`` and a salted hash, so it never becomes a
Kafka key, a Redis key or a snapshot entry; an event name has such values masked;
a ``category`` or ``product_id`` holding one is dropped (a category becomes a
segment name).

>>> p = Privacy(("email",), mode="hash", salt="s")
>>> p.scrub({"email": "a@b.c", "plan": "pro"})["email"].startswith("sha256:")
True
>>> p.pseudonym("ann@example.com", "uid")[:4], p.pseudonym("u1", "uid")
('uid:', 'u1')
"""

from __future__ import annotations

import hashlib
import re
from itertools import chain
from typing import Any, Final

import orjson

from audienceflow.operators.bounds import exceeds_depth
from audienceflow.operators.records import DeadLetter, Event, Filtered
from audienceflow.operators.scrub import MASKS, cut_personal, has_pii, may_have_pii, scrub_text
from audienceflow.operators.state import GROUP_ID

# A parsed dead-letter line nested deeper than this is scrubbed as text, not walked.
_MAX_WALK_DEPTH = 64
# Property values that reach outputs (sessions, carts, segment names).
_LABELS = ("category", "product_id")
# Parts of a dead-letter line that describe the person, not the event (Segment's mobile
# libraries send the cached identify traits in ``context.traits`` on every call): a
# dead letter keeps none of them, whatever their keys (names, addresses, birthdays).
# The user agent only gives the device type at validation, and a phone's device name is
# often its owner's ("Ann's iPhone"): neither reaches any output. RudderStack's ``record``
# events (a warehouse row sent on to a destination) hold the person's row in ``fields``.
_PERSONAL = (
    ("traits",),
    ("fields",),
    ("context", "traits"),
    ("context", "location"),
    ("context", "geo"),
    ("context", "userAgent"),
    ("context", "device", "id"),
    ("context", "device", "advertisingId"),
    ("context", "device", "token"),
    ("context", "device", "name"),
)
# Property keys and values seen to hold nothing personal, remembered because they repeat
# from event to event (keys, categories, paths, titles, a catalog's names and links): at
# most ``_CLEAN_MAX`` keys for each ``Privacy`` (what is clean depends on its
# ``pii_fields``) and ``_CLEAN_VALUES_MAX`` values for the whole process (what is clean
# depends on the patterns alone), each of at most ``_CLEAN_CHARS`` characters, in memory
# only (never written); a full set is emptied. Only strings without a PII pattern are
# kept; ids are not (see ``Privacy._ids``). The values are shared by every input
# partition's ``Privacy``: one catalog seen through 16 partitions is held once, and a
# catalog of thousands of products (each line of a ``products[]`` list: a name, a sku,
# links) is still known when it comes back. (16k values a partition, it was forgotten
# and checked again every few seconds: 390 us to ingest a list of 50 products, 210 with
# 64k.) The sets are read and written only by C calls (``in``, ``add``, ``issuperset``,
# ``clear``), whole under the GIL, so worker threads can share them.
_CLEAN_MAX = 1 << 14
_CLEAN_VALUES_MAX = 1 << 16
_CLEAN_CHARS = 256
_CLEAN_VALUES: set[Any] = set()
_ERASURES: Final[list[int]] = [0]  # deletions applied in the process (``forget_erased``)
_DICTS: Final = frozenset({dict})


class Privacy:
    """Consent filter and PII scrubber; ``mode`` is ``"hash"`` or ``"drop"``.

    ``traits``: the identify traits to carry on (those rules read, ``Settings.rule_traits``);
    None carries every trait not named in ``pii_fields``. ``group_traits``: the same of a
    group call's (its account's) traits (``Settings.rule_group_traits``).
    """

    def __init__(
        self,
        pii_fields: tuple[str, ...],
        mode: str = "hash",
        salt: str = "",
        traits: frozenset[str] | None = None,
        group_traits: frozenset[str] | None = None,
    ) -> None:
        if mode not in ("hash", "drop"):
            raise ValueError(f"privacy mode must be 'hash' or 'drop'; got {mode!r}")
        self.pii_fields = frozenset(f.lower() for f in pii_fields)
        keys = "|".join(re.escape(f) for f in sorted(self.pii_fields))
        self._by_key = (
            re.compile(rf'("(?i:{keys})"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}}\s]*)') if keys else None
        )
        self.mode = mode
        self.salt = salt.encode()
        self.traits = traits
        self.group_traits = group_traits
        self._clean_keys: set[str] = set()
        self._clean_values: set[Any] = _CLEAN_VALUES  # the process's (see ``_CLEAN_MAX``)

    def _hash(self, value: Any) -> str:
        digest = hashlib.sha256(self.salt + str(value).encode()).hexdigest()
        return "sha256:" + digest[:32]

    def scrub(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with PII keys hashed or dropped, at any depth."""
        out: dict[str, Any] = {}
        for key, val in obj.items():
            if key.lower() in self.pii_fields:
                if self.mode == "hash" and val is not None:
                    # A dead letter's value already masked by pattern: a hash of the
                    # mask would look like data and mean nothing.
                    out[key] = val if isinstance(val, str) and val in MASKS else self._hash(val)
            else:
                out[key] = self._scrub_value(val)
        return out

    def _scrub_value(self, val: Any) -> Any:
        if isinstance(val, dict):
            return self.scrub(val)
        if isinstance(val, list):
            out = []  # a loop: a comprehension would make ``self`` a cell, made at each call
            for v in val:
                out.append(self._scrub_value(v))
            return out
        return val

    def _needs_scrub(self, val: Any) -> bool:
        if isinstance(val, dict):
            for key, v in val.items():
                if key.lower() in self.pii_fields or self._needs_scrub(v):
                    return True
        elif isinstance(val, list):
            return any(self._needs_scrub(v) for v in val)
        return False

    def pseudonym(self, value: str, kind: str) -> str:
        """``value`` if it holds nothing personal, else ``kind:`` and its salted hash."""
        if not has_pii(value):
            return value
        digest = hashlib.sha256(self.salt + kind.encode() + b"\0" + value.encode()).hexdigest()
        return f"{kind}:{digest[:32]}"

    def _ids(self, ev: Event) -> None:
        """Ids and name cleared of personal data (``__call__`` first checks them all at once)."""
        ev.user_id = self.pseudonym(ev.user_id, "uid")
        if ev.anonymous_id is not None:
            ev.anonymous_id = self.pseudonym(ev.anonymous_id, "uid")
        if ev.previous_id is not None:
            ev.previous_id = self.pseudonym(ev.previous_id, "uid")
        ev.message_id = self.pseudonym(ev.message_id, "mid")
        if has_pii(ev.name):
            ev.name = scrub_text(ev.name)

    def _untouched(self, props: dict[Any, Any]) -> bool:
        """True only if hashing, dropping and masking would all leave ``props`` as it is.

        That is: no key names a PII field and no key or string value, at any depth,
        holds a pattern. ``False`` hands ``props`` to the full path, which decides.
        ``_clean_keys`` holds keys seen clean, ``_clean_values`` string values seen
        clean and scalars (numbers, booleans, None: never masked); the shortcut
        matches them by equality, which is exact for what orjson builds (plain
        ``str``, ``dict``, ``list``, never a subclass); the walk sends any other
        container or a non-string key to the full path.
        """
        try:
            # The common case, every key and value seen before, in two loops in C.
            if self._clean_keys.issuperset(props) and self._clean_values.issuperset(props.values()):
                return True
        except TypeError:  # a nested dict or list: walked below
            pass
        return self._walk_untouched(props)

    def _walk_untouched(self, props: dict[Any, Any]) -> bool:
        """``_untouched`` key by key, remembering what it finds clean."""
        keys = self._clean_keys
        for k, v in props.items():
            if type(k) is not str:
                return False
            if k not in keys:
                if k.lower() in self.pii_fields or has_pii(k):
                    return False
                _remember(keys, k, _CLEAN_MAX)
            if not self._untouched_value(v):
                return False
        return True

    def _untouched_list(self, items: list[Any]) -> bool:
        try:
            if self._clean_values.issuperset(items):
                return True
        except TypeError:  # a dict or list among them: each judged in turn
            pass
        keys, values = self._clean_keys, self._clean_values
        if set(map(type, items)) == _DICTS:  # a ``products[]`` list: its lines at once, in C
            try:
                if keys.issuperset(chain.from_iterable(items)) and values.issuperset(
                    chain.from_iterable(map(dict.values, items))
                ):
                    return True
            except TypeError:
                pass
        for v in items:
            if type(v) is dict:
                # ``_untouched``, inline: a ``products[]`` list holds dozens.
                try:
                    if keys.issuperset(v) and values.issuperset(v.values()):
                        continue
                except TypeError:
                    pass
                if not self._walk_untouched(v):
                    return False
            elif not self._untouched_value(v):
                return False
        return True

    def _untouched_value(self, v: Any) -> bool:
        """One value of a properties dict or list, as ``_untouched`` judges it."""
        t = type(v)
        if t is str:
            if v not in self._clean_values:
                if has_pii(v):
                    return False
                _remember(self._clean_values, v, _CLEAN_VALUES_MAX)
            return True
        if t is dict:
            return self._untouched(v)
        if t is list:
            return self._untouched_list(v)
        if t is int or t is float or t is bool or v is None:
            _remember(self._clean_values, v, _CLEAN_VALUES_MAX)
            return True
        return not isinstance(v, str | dict | list)  # a subclass: the full path decides

    def __call__(self, item: Event | DeadLetter) -> Event | DeadLetter | Filtered:
        if isinstance(item, DeadLetter):
            item.raw = self.scrub_raw(item.raw)
            if self._by_key is not None and '"' in item.detail:
                item.detail = self._by_key.sub(lambda m: m.group(1) + '"<redacted>"', item.detail)
            return item
        # Ids and name, checked at once: has_pii(id) implies may_have_pii of any text
        # holding the id. Ids are never remembered between events (unlike property keys
        # and values): a deleted user's ids must not outlive their events, even in memory.
        try:
            ids = "\0".join(
                (
                    item.message_id,
                    item.user_id,
                    item.anonymous_id or "",
                    item.name,
                    item.previous_id or "",
                )
            )
        except TypeError:  # not strings: the checks in ``_ids`` say what is wrong
            ids = "@"
        if may_have_pii(ids):
            self._ids(item)
        if not item.consent:
            found = item.consent_found or "false"  # (an event made before it was kept)
            return Filtered(
                "consent_withheld",
                item.position,
                item.message_id,
                f"{found} at privacy.consent_path; only true, 1, 'true', '1', 'granted' or "
                "'yes' grants consent",
            )
        traits = item.traits
        if traits:
            # Only traits a rule reads are carried on (names, addresses are not), never a
            # PII-named one (a rule reading one is rejected at load), and what is carried
            # holds no pattern: held events and snapshots hold no other trait.
            pii = self.pii_fields
            account = None
            if item.type == "group":
                kept = self.group_traits
                account = traits.get(GROUP_ID)  # the groupId (``validate._group_traits``)
            else:
                kept = self.traits
            item.traits = _masked(_kept_traits(traits, pii, kept))
            if isinstance(account, str):  # never the id itself: which account, no more
                digest = hashlib.sha256(self.salt + b"gid\0" + account.encode())
                item.traits[GROUP_ID] = digest.hexdigest()[:32]
        props = item.properties
        # Most events hold nothing to hash, drop or mask: one walk proves it, and the
        # full path below (which copies) is left for the others.
        if props:
            # ``_untouched``'s common case inline (one call less per event).
            try:
                seen = self._clean_keys.issuperset(props) and self._clean_values.issuperset(
                    props.values()
                )
            except TypeError:  # a nested dict or list
                seen = False
            if not seen and not self._walk_untouched(props):
                item.properties = self.clean_properties(props)
        return item

    def clean_properties(self, props: dict[str, Any]) -> dict[str, Any]:
        """``props`` with PII keys hashed or dropped, PII labels dropped, patterns masked.

        ``props`` itself when there is nothing to change.
        """
        # No pre-check on the raw line: with the default fields every Segment line names
        # one ("ip" in its context), so it never spared this walk, only added to it.
        if self._needs_scrub(props):
            props = self.scrub(props)
        props = _without_pii_labels(props)
        lines = props.get("products")
        if type(lines) is list:  # the same per line of Segment's e-commerce ``products[]``
            kept = [_without_pii_labels(v) if type(v) is dict else v for v in lines]
            if any(a is not b for a, b in zip(kept, lines, strict=True)):
                props = {**props, "products": kept}
        # Free text anywhere else (a search query, a note) is masked, so an event held in
        # state, and so in a snapshot, holds no address either.
        masked: dict[str, Any] = _masked(props)
        return masked

    def scrub_raw(self, raw: str) -> str:
        """Scrub a dead-letter line: structurally if it parses, else by key; then by pattern.

        Patterns (e-mail, IP, phone) apply whatever ``pii_fields`` says: a value can
        sit under any key (a ``userId``, a free-text note).
        """
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict | list) and not exceeds_depth(obj, _MAX_WALK_DEPTH):
            clean = self._scrub_value(obj)  # a copy: redacted in place below
            _redact_calls(clean)
            return scrub_text(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS).decode())
        # Unparseable (or too deep to walk): kept up to the first key opening personal
        # data (``scrub.cut_personal``), the value of every quoted PII key redacted.
        text = cut_personal(raw)
        text = (
            self._by_key.sub(lambda m: m.group(1) + '"<redacted>"', text) if self._by_key else text
        )
        return scrub_text(text)


def _redact_calls(line: Any) -> None:
    """``_redact_personal`` on each call a parsed dead-letter line holds: the line itself,
    each call of a batch envelope (``{"batch": [...]}``, Segment's ``/v1/batch``) and each
    element of a top-level list, since those are dead-lettered whole."""
    calls = line if isinstance(line, list) else [line]
    for call in calls:
        if isinstance(call, dict):
            _redact_personal(call)
            batch = call.get("batch")
            if isinstance(batch, list):
                for inner in batch:
                    if isinstance(inner, dict):
                        _redact_personal(inner)


def _redact_personal(line: dict[str, Any]) -> None:
    """Replace each of ``_PERSONAL`` present in a parsed dead-letter line by a mask, and
    each destination's options in its ``integrations``."""
    for path in _PERSONAL:
        node: Any = line
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = "<redacted>"
    # Segment's ``integrations`` turns destinations on and off (``"Mixpanel": false``,
    # kept) and carries a destination's own options, where its ids of the device or
    # browser go: ``integrations.AppsFlyer.appsFlyerId`` (Segment's AppsFlyer docs: one
    # per device), Google Analytics' ``clientId`` (a cookie's). Options are redacted.
    options = line.get("integrations")
    if isinstance(options, dict):
        for name, value in options.items():
            if isinstance(value, dict | list | str):
                options[name] = "<redacted>"


def _kept_traits(
    traits: dict[str, Any], pii: frozenset[str], kept: frozenset[str] | None
) -> dict[str, Any]:
    """The traits a rule reads (``kept``; None: all) but the group's id and PII-named ones.

    A function of its own: a comprehension in ``Privacy.__call__`` made its locals cells,
    created for every event."""
    return {
        k: v
        for k, v in traits.items()
        if k != GROUP_ID and k.lower() not in pii and (kept is None or k in kept)
    }


def forget_erased() -> None:
    """A deletion: forget the property values remembered as clean (``_CLEAN_VALUES``),
    and have every ingest of the process forget its caches of user ids (``erasures``).

    Those values are not personal by pattern, but a person's own (a search query, an
    order id, a note) would otherwise stay in the process's memory after their erasure
    until the set fills. Forgetting costs only checking values again; the shards of the
    process call it (each hears every request), so every process that ingests and holds
    a shard forgets them.
    """
    _CLEAN_VALUES.clear()
    _ERASURES[0] += 1


def erasures() -> int:
    """How many deletions the process's shards applied (``forget_erased``): an ingest that
    sees it change empties its caches keyed by user id (``PartitionIngest._forget_ids``)."""
    return _ERASURES[0]


def _remember(seen: set[Any], value: Any, most: int) -> None:
    if type(value) is not str or len(value) <= _CLEAN_CHARS:
        if len(seen) >= most:
            seen.clear()  # bounded: a value forgotten is only checked again
        seen.add(value)


def _without_pii_labels(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` without a category or product id holding PII (``_LABELS``): masked, it
    would become a category or product of its own (``<email>`` as a top category, a
    recommendation); ``props`` itself when there is none."""
    for key in _LABELS:
        val = props.get(key)
        if isinstance(val, str) and has_pii(val):
            props = {k: v for k, v in props.items() if k != key}
    return props


def _masked(value: Any) -> Any:
    """``value`` with e-mails, IPs and phones masked in every string (keys too); no copy if none.

    Depth is bounded by validation (``bounds.MAX_DEPTH``).
    """
    if isinstance(value, str):
        return scrub_text(value)  # the same object when there is nothing to mask
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            nk = _masked(k) if isinstance(k, str) else k
            nv = _masked(v)
            if out is None and (nk is not k or nv is not v):
                out = {}
                for k2, v2 in value.items():
                    if k2 is k:
                        break
                    out[k2] = v2
            if out is not None:
                out[nk] = nv
        return value if out is None else out
    if isinstance(value, list):
        items = [_masked(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
