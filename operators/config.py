"""The one configuration reader: defaults, then a YAML file, then the environment.

A YAML file is merged over the bundled defaults (``flows/default_config.yaml``);
``AUDIENCEFLOW_SECTION__KEY`` environment variables override both, each value
parsed as YAML. Every error has one format, naming where the value came from,
its key, the reason and the value::

    config.yaml:12: segments.vip.when: unknown name 'sesions'; got 'sesions(24h) > 3'
    $AUDIENCEFLOW_KAFKA__BROKERS: kafka.brokers: must be 'host:port'; got 42

>>> parse_duration("15m")
900.0
>>> suggest("brokrs", ["brokers", "input_topic"])
" (did you mean 'brokers'?)"
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "flows" / "default_config.yaml"
ENV_PREFIX = "AUDIENCEFLOW_"


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, reading ``1e-3`` as the number it is.

    PyYAML resolves plain scalars by YAML 1.1, whose floats need a dot and a signed
    exponent (``1.0e-3``; ``1.0e3`` is text), so
    ``learning_rate: 1e-3`` arrived as the text ``'1e-3'`` and was refused as "must be a
    number". YAML 1.2's core schema (section 10.3.2) reads it as a float, as JSON does;
    a quoted ``'1e-3'`` stays text.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}
_MISSING: Any = object()
_SHOWN = 120  # characters of an offending value shown in an error


class ConfigError(ValueError):
    """A configuration value was rejected; the message says where, which key, why and what."""


def parse_duration(value: Any) -> float:
    """``"15m"`` → 900.0 seconds. A number needs its unit, but for 0: ``after: 15`` was
    read as 15 seconds where its writer may have meant minutes, and said nothing."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '15m'; got {value!r}")
    m = None if isinstance(value, int | float) else _DURATION.match(str(value))
    if m is None and not isinstance(value, int | float):
        raise ValueError(f"expected a duration such as '30s', '15m', '24h' or '7d'; got {value!r}")
    try:
        number = float(value) if m is None else float(m.group(1))
    except OverflowError:  # an int of 309 digits or more has no float
        raise ValueError(f"expected a duration such as '15m'; got {value!r}") from None
    if m is None or m.group(2) is None:
        if number < 0:
            raise ValueError(f"expected a non-negative duration; got {value!r}")
        if number != 0:
            raise ValueError(
                f"a duration needs its unit (ms, s, m, h, d or w): write '{number:g}s' or "
                f"'{number:g}m'; got {value!r}"
            )
        return 0.0
    return number * _UNIT[m.group(2)]


def suggest(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or nothing."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _has_float(value: Any) -> bool:
    """Is ``value``, or an item of it (a list of names), a float? Not the values of a
    mapping: an error about a mapping (an unknown key) is not about a number in it."""
    if isinstance(value, float):
        return True
    return isinstance(value, list) and any(isinstance(v, float) for v in value)


def shown(value: Any) -> str:
    """The ``repr`` of an offending value, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


# --- where each value came from ---------------------------------------------


@dataclass
class Located:
    """Config data plus the origin (file and line, or variable) of every key path."""

    data: dict[str, Any]
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    files: dict[tuple[str, ...], str] = field(default_factory=dict)
    # Key paths a ``null`` of a later layer removed from an earlier one (a default
    # segment), and where that ``null`` is: what needed them can blame it (``merge``).
    removed: dict[tuple[str, ...], str] = field(default_factory=dict)

    def where(self, path: tuple[str, ...]) -> str:
        """``FILE:LINE`` of the nearest recorded key on ``path``; ``$VAR`` for the environment."""
        for n in range(len(path), -1, -1):
            p = path[:n]
            if p in self.files:
                line = self.lines.get(p, 0)
                return f"{self.files[p]}:{line}" if line else self.files[p]
        return "<config>"

    def error(
        self, path: tuple[str, ...], reason: str, value: Any = _MISSING, quote_hint: bool = True
    ) -> ConfigError:
        """``WHERE: key.path: reason; got VALUE`` (the value at ``path`` unless given).
        ``quote_hint=False``: the value is rightly a number (only its size is wrong)."""
        if value is _MISSING:
            value = self.get(path)
        hint = ""
        if (
            quote_hint
            and "number" not in reason
            and "unknown key" not in reason
            and _has_float(value)
        ):
            # Written plain, 1e3 or 2.5 is a number (YAML 1.2, as in JSON), where text was meant.
            hint = " (a plain 1e3 or 2.5 is read as a number: quote it to give text)"
        return ConfigError(
            f"{self.where(path)}: {'.'.join(path)}: {reason}; got {shown(value)}{hint}"
        )

    def get(self, path: tuple[str, ...]) -> Any:
        cur: Any = self.data
        for key in path:
            cur = cur.get(key) if isinstance(cur, dict) else None
        return cur


def text_problem(text: str, name: bool = False) -> str | None:
    """Why ``text`` cannot be a config text (``name``: a key, the name of a segment,
    trigger, experiment, event...), or None.

    YAML's double-quoted escapes write what its reader refuses raw: ``"\\ud800"``, a lone
    surrogate, is no UTF-8 text, and a segment so named passed check-config and stopped
    the replay at its first output (``UnicodeEncodeError``). A name is written into
    outputs, Redis, metrics labels and log lines: a control character (``"\\x00"``, which
    stopped check-config with a traceback, or a newline, which forges a log line) or a
    line separator has no place in one, and neither has an empty name.

    >>> text_problem("cart_abandonment", name=True), text_problem("", name=True)
    (None, 'may not be empty')
    >>> text_problem("a\\nb", name=True)
    'may not hold a control character (U+000A)'
    """
    if name and not text:
        return "may not be empty"
    if text.isascii():
        if not name or text.isprintable():
            return None
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"is not valid Unicode text (a lone surrogate, U+{ord(text[exc.start]):04X})"
        if not name:
            return None
    bad = next((c for c in text if c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029"), None)
    return None if bad is None else f"may not hold a control character (U+{ord(bad):04X})"


# A config holds hundreds of values; YAML's aliases (``*a``) repeat what an anchor names,
# so nine lines of lists of aliases stand for 387 million values (and one naming itself
# for endlessly many): each is built once per place it appears, so past these bounds the
# file is refused rather than built.
MAX_VALUES = 100_000
MAX_DEPTH = 64


# Resolves a plain key's text to the tag it has untagged (PyYAML's ``resolve`` is untyped).
_RESOLVE: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = _Loader("").resolve
_MAP, _SEQ, _STR = (f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str"))


def _tagged(node: yaml.Node) -> bool:
    """Whether a mapping, a list or a key carries a tag of its own (a scalar value's tag
    is the safe loader's to read: ``_construct``)."""
    if isinstance(node, yaml.MappingNode):
        return bool(node.tag != _MAP)
    if isinstance(node, yaml.SequenceNode):
        return bool(node.tag != _SEQ)
    return False


def _tagged_key(node: yaml.ScalarNode) -> bool:
    """Whether a key carries a tag other than the one its text has (``!!str`` aside)."""
    return bool(
        node.tag != _STR and node.tag != _RESOLVE(yaml.ScalarNode, node.value, (True, False))
    )


def _construct(
    node: yaml.Node, path: tuple[str, ...], loc: Located, fname: str, count: list[int]
) -> Any:
    count[0] += 1
    if count[0] > MAX_VALUES or len(path) > MAX_DEPTH:
        line = node.start_mark.line + 1
        what = (
            f"more than {MAX_VALUES} values"
            if count[0] > MAX_VALUES
            else f"values nested more than {MAX_DEPTH} levels deep"
        )
        raise ConfigError(
            f"{fname}:{line}: {'.'.join(path[:8])}: the file holds {what} (YAML aliases "
            "repeating an anchor, or an alias inside its own anchor?)"
        )
    loc.lines[path] = node.start_mark.line + 1
    loc.files[path] = fname
    if _tagged(node):
        # The mappings, lists and keys are read here, not by the safe loader: a tag on one
        # (``sessions: !!python/object:x {...}``, ``!!binary YWI=: ...``) was ignored, the
        # key read as its text, where a tagged value is refused.
        raise ConfigError(
            f"{fname}:{node.start_mark.line + 1}: {'.'.join(path) or '<top>'}: a tag is not "
            f"read here ({node.tag}); remove the tag"
        )
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            where = f"{fname}:{line}: {'.'.join(path) or '<top>'}"
            if not isinstance(knode, yaml.ScalarNode):
                # ``? [a, b]``: a list or mapping as a key, shown as PyYAML's node objects.
                raise ConfigError(f"{where}: a key must be a name, not a list or mapping")
            if _tagged_key(knode):
                raise ConfigError(f"{where}: a key may not carry a tag ({knode.tag}); remove it")
            key = str(knode.value)
            why = text_problem(key, name=True)
            if why:
                raise ConfigError(f"{where}: a key {why}; got {shown(key)}")
            if key in out:
                line = knode.start_mark.line + 1
                dotted = ".".join((*path, key))
                raise ConfigError(f"{fname}:{line}: {dotted}: duplicate key; got {key!r} twice")
            out[key] = _construct(vnode, (*path, key), loc, fname, count)
            loc.lines[(*path, key)] = knode.start_mark.line + 1  # the key's line, not its value's
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, str(i)), loc, fname, count) for i, v in enumerate(node.value)]
    try:
        value = _Loader("").construct_object(node)
    except (ValueError, OverflowError, yaml.YAMLError) as exc:
        # A scalar of a YAML type whose value does not exist: a date such as 2026-02-30
        # (a timestamp) or an integer of more digits than Python converts (4,300); or a
        # tag the safe loader has no constructor for (``!!python/object:...``, ``!foo``),
        # which stopped check-config with a traceback.
        problem = getattr(exc, "problem", None) or exc
        fix = "remove the tag" if isinstance(exc, yaml.YAMLError) else "quote it to give text"
        raise ConfigError(
            f"{fname}:{node.start_mark.line + 1}: {'.'.join(path)}: not a valid YAML value "
            f"({problem}); {fix}; got {shown(node.value)}"
        ) from None
    why = text_problem(value) if isinstance(value, str) else None
    if why:
        raise ConfigError(
            f"{fname}:{node.start_mark.line + 1}: {'.'.join(path)}: a text {why}; "
            f"got {shown(value)}"
        )
    return value


def load_yaml(path: Path) -> Located:
    """Parse a YAML mapping, remembering the line of every key."""
    fname = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{fname}: cannot read config file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{fname}: not UTF-8 text: {exc.reason}") from exc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{fname}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError:  # PyYAML's parser recurses once per level of nesting
        raise ConfigError(
            f"{fname}: not valid YAML: nested too deep (at most {MAX_DEPTH} levels)"
        ) from None
    loc = Located({})
    if node is None:
        return loc
    data = _construct(node, (), loc, fname, [0])
    if not isinstance(data, dict):
        raise ConfigError(f"{fname}:1: the config file must be a mapping of sections")
    loc.data = data
    return loc


def merge(base: Located, over: Located, keep_base_origin: bool = False) -> Located:
    """Deep-merge ``over`` onto ``base``; a ``null`` value removes a key (e.g. a segment).

    With ``keep_base_origin`` a mapping present in both keeps ``base``'s origin,
    so an environment override of one key does not take the blame for its section.
    """

    removed = dict(base.removed)

    def rec(a: dict[str, Any], b: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            if v is None:
                if out.pop(k, None) is not None:
                    removed[(*path, k)] = over.where((*path, k))
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = rec(out[k], v, (*path, k))
            else:
                out[k] = v
        return out

    data = rec(base.data, over.data, ())
    # What a null removed has no origin left but the null's: an error about a key under
    # it (``models.clustering: null`` leaves ``models.clustering.algorithm`` unset) named
    # the default file's line of the removed key, not the file and line of the null.
    cut = {path for path in removed if path not in base.removed}
    keep = [(p, f) for p, f in base.files.items() if not any(p[: len(c)] == c for c in cut)]
    files = dict(keep)
    lines = {p: base.lines[p] for p in files if p in base.lines}
    for path, fname in over.files.items():
        both = isinstance(base.get(path), dict) and isinstance(over.get(path), dict)
        if keep_base_origin and both and path in base.files:
            continue
        files[path] = fname
        lines[path] = over.lines.get(path, 0)
    merged = Located(data, lines, files)
    # A key a later layer gives again (the environment after the file's null) is back.
    merged.removed = {p: w for p, w in removed.items() if merged.get(p) is None}
    return merged


def env_overrides(environ: dict[str, str]) -> Located:
    """``AUDIENCEFLOW_KAFKA__BROKERS=h:9092`` → ``{"kafka": {"brokers": "h:9092"}}``.

    Each value is parsed as YAML (``[a, b]``, ``42``, ``true``); every key the
    variable sets is attributed to the variable, so errors name it.
    """
    data: dict[str, Any] = {}
    loc = Located(data)
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = tuple(k.lower() for k in name[len(ENV_PREFIX) :].split("__"))
        var = f"${name}"
        if not all(keys):
            raise ConfigError(
                f"{var}: {'.'.join(keys)}: an empty key; write AUDIENCEFLOW_SECTION__KEY; "
                f"got {shown(raw)}"
            )
        value = _env_value(var, keys, raw)
        cur = data
        for n, k in enumerate(keys[:-1]):
            nxt = cur.get(k)
            if not isinstance(nxt, dict):
                nxt = cur[k] = {}
            loc.files.setdefault(keys[: n + 1], var)
            cur = nxt
        cur[keys[-1]] = value
        _attribute(loc, keys, value, var)
    return loc


def _env_value(var: str, keys: tuple[str, ...], raw: str) -> Any:
    if not raw:
        return raw
    try:
        value = yaml.load(raw, Loader=_Loader)  # _Loader is a SafeLoader
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # also 2026-02-30 (a date)
        problem = getattr(exc, "problem", None) or str(exc) or "cannot be parsed"
        raise ConfigError(
            f"{var}: {'.'.join(keys)}: not a valid YAML value ({problem}); quote a string "
            f"or write a list as [a, b]; got {shown(raw)}"
        ) from None
    why = _env_text(value)
    if why:
        raise ConfigError(f"{var}: {'.'.join(keys)}: {why}; got {shown(raw)}")
    return value


def _env_text(value: Any) -> str | None:
    """What ``text_problem`` finds in a variable's value (its keys are names), or None."""
    if isinstance(value, str):
        why = text_problem(value)
        return f"a text {why}" if why else None
    if isinstance(value, dict):
        for k, v in value.items():
            why = text_problem(str(k), name=True)
            if why:
                return f"a key {why}"
            why = _env_text(v)
            if why:
                return why
    if isinstance(value, list):
        for v in value:
            why = _env_text(v)
            if why:
                return why
    return None


def _attribute(loc: Located, path: tuple[str, ...], value: Any, var: str) -> None:
    loc.files[path] = var
    if isinstance(value, dict):
        for k, v in value.items():
            _attribute(loc, (*path, str(k)), v, var)


def load_located(path: str | Path | None, environ: dict[str, str] | None = None) -> Located:
    """Defaults, then the file, then the environment."""
    loc = load_yaml(DEFAULT_CONFIG)
    if path is not None:
        loc = merge(loc, load_yaml(Path(path)))
    env = dict(os.environ if environ is None else environ)
    return merge(loc, env_overrides(env), keep_base_origin=True)


# --- checked access -----------------------------------------------------------


class Reader:
    """Typed, checked access to the merged config; every failure is a located ``ConfigError``."""

    def __init__(self, loc: Located) -> None:
        self.loc = loc

    def error(self, path: tuple[str, ...], reason: str, value: Any = _MISSING) -> ConfigError:
        return self.loc.error(path, reason, value)

    def get(self, *path: str) -> Any:
        return self.loc.get(path)

    def mapping(
        self,
        *path: str,
        known: Iterable[str] | None = None,
        renamed: dict[str, str] | None = None,
        what: str = "key",
    ) -> dict[str, Any]:
        """The mapping at ``path`` (``{}`` when absent); with ``known``, other keys are errors."""
        val = self.get(*path)
        if val is None:
            return {}
        if not isinstance(val, dict):
            raise self.error(path, "must be a mapping")
        if known is not None:
            self.only(path, val, known, renamed, what)
        return val

    def only(
        self,
        path: tuple[str, ...],
        val: dict[str, Any],
        known: Iterable[str],
        renamed: dict[str, str] | None = None,
        what: str = "key",
    ) -> None:
        """Reject any key of ``val`` not in ``known``, suggesting the closest."""
        names = sorted(known)
        for key in val:
            if key in names:
                continue
            if renamed and key in renamed:
                raise self.error((*path, key), f"was renamed to {renamed[key]}")
            listed = f"; known: {', '.join(names)}" if len(names) <= 16 else ""
            if isinstance(key, str) and ")" in key and "(" not in key:
                # ``{when: distinct(properties.category, 7d) >= 3}``: YAML ends the rule at
                # its comma and reads the rest as a key of its own.
                listed += (
                    "; it looks like the end of a rule cut at a comma, as YAML cuts a value"
                    " in { }: quote the rule"
                )
            raise self.error((*path, key), f"unknown {what}{suggest(key, names)}{listed}")

    def duration(self, *path: str, minimum: float = 0.0, maximum: float | None = None) -> float:
        val = self.get(*path)
        try:
            secs = parse_duration(val)
        except ValueError as exc:
            unit = str(exc).startswith("a duration needs its unit")
            raise self.error(
                path,
                str(exc).rsplit("; got ", 1)[0]
                if unit
                else "expected a non-negative duration such as '30s', '15m', '24h' or '7d'",
            ) from None
        if secs < minimum:
            raise self.error(path, f"must be at least {minimum:g}s")
        if maximum is not None and secs > maximum:
            raise self.error(path, f"must be at most {maximum / 86400:g}d")
        return secs

    def integer(self, *path: str, minimum: int = 0, maximum: int | None = None) -> int:
        val = self.get(*path)
        # At most sys.maxsize whatever the key: past it, a count bounds no C container
        # (time.watermark_window: 10**30 stopped the replay with OverflowError) and a
        # setting echoed in the summary is no JSON integer orjson writes.
        top = sys.maxsize if maximum is None else maximum
        ok = isinstance(val, int) and not isinstance(val, bool) and minimum <= val <= top
        if not ok:
            big = isinstance(val, int) and not isinstance(val, bool) and val > top
            bound = f">= {minimum}" + (f" and <= {top}" if maximum is not None or big else "")
            raise self.error(path, f"must be a whole number {bound}")
        return int(val)

    def number(
        self, *path: str, minimum: float = 0.0, positive: bool = False, maximum: float | None = None
    ) -> float:
        val = self.get(*path)
        ok = isinstance(val, int | float) and not isinstance(val, bool)
        if ok and (
            val < minimum
            or (positive and val <= 0)
            or (maximum is not None and val > maximum)
            or not abs(val) <= sys.float_info.max  # an int with no float (309+ digits)
        ):
            ok = False
        if not ok:
            bound = "> 0" if positive else f">= {minimum:g}"
            if maximum is not None:
                bound += f" and <= {maximum:g}"
            raise self.error(path, f"must be a number {bound}")
        return float(val)

    def boolean(self, *path: str) -> bool:
        val = self.get(*path)
        if not isinstance(val, bool):
            raise self.error(path, "must be true or false")
        return val

    def string(self, *path: str, optional: bool = False) -> str | None:
        val = self.get(*path)
        if val is None and optional:
            return None
        if not isinstance(val, str) or not val:
            raise self.error(path, "must be a non-empty string" + (" or null" if optional else ""))
        return val

    def text(self, *path: str) -> str:
        """A required non-empty string."""
        val = self.string(*path)
        assert val is not None
        return val

    def choice(self, *path: str, allowed: tuple[str, ...]) -> str:
        val = self.get(*path)
        if val not in allowed:
            hint = suggest(val, allowed) if isinstance(val, str) else ""
            raise self.error(path, f"must be one of {', '.join(allowed)}{hint}")
        return str(val)

    def strings(self, *path: str, what: str = "names") -> tuple[str, ...]:
        """A list of non-empty strings; a single string is a list of one."""
        val = self.get(*path)
        if val is None:
            return ()
        if isinstance(val, str):
            val = [val]
        if not isinstance(val, list) or not all(isinstance(v, str) and v for v in val):
            raise self.error(path, f"must be a list of {what}")
        return tuple(val)
