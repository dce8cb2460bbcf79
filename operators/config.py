"""The one typed configuration object, loaded and validated once at start-up.

A YAML file is merged over the bundled defaults (``flows/default_config.yaml``);
``AUDIENCEFLOW_SECTION__KEY`` environment variables override both. Every error
names the file, the line and the key: ``config.yaml:12: segments.vip.when: ...``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "flows" / "default_config.yaml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


class ConfigError(ValueError):
    """A configuration value was rejected; the message says file, line, key and why."""


def parse_duration(value: Any) -> float:
    """``"15m"`` → 900.0 seconds; plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '15m'; got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration; got {value!r}")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"expected a duration such as '30s', '15m', '24h' or '7d'; got {value!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


# --- YAML with line numbers -------------------------------------------------


@dataclass
class Located:
    """Config data plus the source line of every key path, for error messages."""

    data: dict[str, Any]
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    files: dict[tuple[str, ...], str] = field(default_factory=dict)

    def where(self, path: tuple[str, ...]) -> str:
        for n in range(len(path), -1, -1):
            p = path[:n]
            if p in self.lines:
                return f"{self.files.get(p, '<config>')}:{self.lines[p]}"
        return "<config>"

    def error(self, path: tuple[str, ...], reason: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {'.'.join(path)}: {reason}")


def _construct(node: yaml.Node, path: tuple[str, ...], loc: Located, fname: str) -> Any:
    loc.lines[path] = node.start_mark.line + 1
    loc.files[path] = fname
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            key = str(knode.value)
            if key in out:
                raise ConfigError(f"{fname}:{knode.start_mark.line + 1}: duplicate key {key!r}")
            out[key] = _construct(vnode, (*path, key), loc, fname)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, str(i)), loc, fname) for i, v in enumerate(node.value)]
    return yaml.SafeLoader(b"").construct_object(node)


def load_yaml(path: Path) -> Located:
    """Parse a YAML mapping, remembering the line of every key."""
    fname = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{fname}: cannot read config file: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{fname}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    loc = Located({})
    if node is None:
        return loc
    data = _construct(node, (), loc, fname)
    if not isinstance(data, dict):
        raise ConfigError(f"{fname}:1: the config file must be a mapping of sections")
    loc.data = data
    return loc


def merge(base: Located, over: Located) -> Located:
    """Deep-merge ``over`` onto ``base``; a ``null`` value removes a key (e.g. a segment)."""

    def rec(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            if v is None:
                out.pop(k, None)
            elif isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = rec(out[k], v)
            else:
                out[k] = v
        return out

    lines = {**base.lines, **over.lines}
    files = {**base.files, **over.files}
    return Located(rec(base.data, over.data), lines, files)


def env_overrides(environ: dict[str, str]) -> Located:
    """``AUDIENCEFLOW_KAFKA__BROKERS=h:9092`` → ``{"kafka": {"brokers": "h:9092"}}``."""
    data: dict[str, Any] = {}
    loc = Located(data)
    for name, value in sorted(environ.items()):
        if not name.startswith("AUDIENCEFLOW_") or "__" not in name:
            continue
        keys = [k.lower() for k in name[len("AUDIENCEFLOW_") :].split("__")]
        cur = data
        for k in keys[:-1]:
            cur = cur.setdefault(k, {})
        cur[keys[-1]] = yaml.safe_load(value) if value else value
        loc.lines[tuple(keys)] = 0
        loc.files[tuple(keys)] = f"${name}"
    return loc


def load_located(path: str | Path | None, environ: dict[str, str] | None = None) -> Located:
    """Defaults, then the file, then the environment."""
    loc = load_yaml(DEFAULT_CONFIG)
    if path is not None:
        loc = merge(loc, load_yaml(Path(path)))
    return merge(loc, env_overrides(dict(os.environ if environ is None else environ)))
