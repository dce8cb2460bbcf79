"""What the README names, checked against the code: config keys and their defaults, CLI
options, metric names, dead-letter reasons and output topics.

A user (or a checker) follows the README's commands and keys on their own data; each
test fails when one side changes and the other does not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from audienceflow.operators.config import ConfigError, parse_duration
from audienceflow.operators.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEFAULTS: dict[str, Any] = yaml.safe_load((ROOT / "flows" / "default_config.yaml").read_text())


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out[path] = value
            out.update(_flat(value, path))
    return out


KEYS = _flat(DEFAULTS)
SECTIONS = frozenset(DEFAULTS)
# `section.x` in backticks that is not a key of the defaults, and why.
NOT_KEYS = {
    "experiments.NAME": "a placeholder for an experiment's name",
    "identity.links_to_other_shards": "a field of summary.json",
    # A real key, read only with `algorithm: dbstream`; its defaults are DBSTREAM's own
    # (operators/sections.py), which the README says.
    "models.clustering.dbstream": "a key whose defaults are not in default_config.yaml",
}
# Keys the README shows as mistakes the loader rejects, with a value for each.
REJECTED = {
    "sessions.timout": "30m",
    "kafka.topics.action": "x",
    "models.clustering.kk": 3,
    "time.quiet_after": "10s",
}


def _section(title: str) -> str:
    return README.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]


def _dotted_names() -> set[str]:
    found = set()
    for m in re.finditer(r"`([a-z_]+(?:\.[A-Za-z0-9_]+)+)", README):
        name = m.group(1)
        if name.split(".")[0] in SECTIONS and name.rsplit(".", 1)[1] not in ("json", "jsonl"):
            found.add(name)
    return found


def test_every_config_key_the_readme_names_exists_with_that_name() -> None:
    unknown = sorted(_dotted_names() - set(KEYS) - set(NOT_KEYS) - set(REJECTED))
    assert unknown == [], f"README names config keys that do not exist: {unknown}"
    stale = sorted((set(NOT_KEYS) | set(REJECTED)) - _dotted_names())
    assert stale == [], f"no longer in the README: {stale}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("key", sorted(REJECTED))
def test_a_key_the_readme_shows_as_a_mistake_is_rejected_naming_it(
    key: str, tmp_path: Path
) -> None:
    node: Any = REJECTED[key]
    for part in reversed(key.split(".")):
        node = {part: node}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(node))
    with pytest.raises(ConfigError, match=re.escape(key)):
        Settings.load(cfg, environ={})


_UNITS = {"s": 1, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400, "days": 86400}
_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?) ?(s|min|h|hour|d|day|days)?$")


def _seconds_or_number(text: str) -> float | None:
    m = _AMOUNT.match(text.strip().strip("`"))
    if m is None:
        try:
            return parse_duration(text.strip().strip("`"))
        except ValueError:
            return None
    return float(m.group(1)) * (_UNITS[m.group(2)] if m.group(2) else 1)


def _default_claims() -> list[tuple[str, str, int]]:
    """(key, value, line) for "`key` (VALUE)" in the prose and "| `key` | VALUE |" rows."""
    claims = []
    for n, line in enumerate(README.splitlines(), 1):
        for m in re.finditer(r"`([a-z_]+(?:\.[a-z_]+)+)` \(([^()]{1,12})\)", line):
            claims.append((m.group(1), m.group(2), n))
        row = re.match(r"^\| `([a-z_.]+)` \| ([^|]+) \|", line)
        if row:
            key = row.group(1) if "." in row.group(1) else f"state.{row.group(1)}"
            claims.append((key, row.group(2), n))
    return [(k, v, n) for k, v, n in claims if k in KEYS and _seconds_or_number(v) is not None]


def test_every_default_the_readme_quotes_is_the_default() -> None:
    claims = _default_claims()
    assert len(claims) >= 20  # the prose and the two tables of defaults
    wrong = []
    for key, said, line in claims:
        default = KEYS[key]
        actual = parse_duration(default) if isinstance(default, str) else float(default)
        if _seconds_or_number(said) != actual:
            wrong.append(f"README:{line}: {key} ({said}); the default is {default!r}")
    assert wrong == []


def _options(parser: Any) -> dict[str, set[str]]:
    import argparse

    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: {s for a in p._actions for s in a.option_strings if s.startswith("--")} - {"--help"}
        for name, p in sub.choices.items()
    }


def test_every_cli_option_is_in_the_readme_and_every_one_it_shows_exists() -> None:
    from audienceflow.flows.cli import _parser

    options = _options(_parser())
    missing = sorted(f"{c} {o}" for c, opts in options.items() for o in opts if o not in README)
    assert missing == [], f"options the README never names: {missing}"
    shown = []
    for m in re.finditer(r"^audienceflow ([a-z-]+) (.*)$", README, re.M):
        command, rest = m.groups()
        shown += [(command, o) for o in re.findall(r"(--[a-z-]+)", rest)]
    assert len(shown) >= 10  # the synopses of replay, split, sort and run
    unknown = sorted({f"{c} {o}" for c, o in shown if o not in options.get(c, ())})
    assert unknown == [], f"the README shows options the CLI does not have: {unknown}"


def _metrics() -> dict[str, tuple[str, ...]]:
    from prometheus_client import Counter, Gauge, Histogram

    from audienceflow.flows import metrics

    out = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram):
            name = value._name + ("_total" if isinstance(value, Counter) else "")
            out[name] = tuple(value._labelnames)
    return out


def test_every_metric_is_named_in_the_readme_and_every_name_there_exists() -> None:
    defined = _metrics()
    named: dict[str, set[tuple[str, ...]]] = {}
    # Full names, and the Metrics list's `_suffix` shorthand after `audienceflow_events_in_total`.
    start = README.index("- **Metrics** (`metrics.port`")
    end = README.index("\n- **", start + 1)
    for m in re.finditer(r"`(audienceflow)?(_[a-z_]+[a-z])(\{([^}]*)\})?`", README):
        name = "audienceflow" + m.group(2)
        if m.group(1) is None and name not in defined and not start < m.start() < end:
            continue  # `_high` and the like elsewhere: not a metric
        labels = tuple(x.split("=")[0].strip() for x in (m.group(4) or "").split(",") if x)
        named.setdefault(name, set()).add(labels)
    assert sorted(set(defined) - set(named)) == [], "metrics the README never names"
    assert sorted(set(named) - set(defined)) == [], "the README names metrics that do not exist"
    wrong = sorted(
        f"{name}{{{','.join(labels)}}}: the metric has {defined[name]}"
        for name, forms in named.items()
        for labels in forms
        if labels and not set(labels) <= set(defined[name])
    )
    assert wrong == []


def test_every_dead_letter_reason_of_validation_is_in_the_readme_s_input_section() -> None:
    from audienceflow.operators.validate import REASONS

    section = _section("### Input: Segment-spec events")
    assert [r for r in REASONS if f"`{r}`" not in section] == []


def test_the_worker_s_outputs_name_every_output_topic() -> None:
    from audienceflow.operators.sections import TOPIC_KEYS

    section = _section("## Running as a worker")
    out = section.split("- **Out**:", 1)[1].split("\n- **", 1)[0]
    assert [t for t in TOPIC_KEYS if f".{t}`" not in out] == []


def test_the_hostile_corpus_has_as_many_classes_as_the_readme_says() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from hostile import CLASSES
    finally:
        sys.path.remove(str(ROOT / "examples"))
    said = re.search(r"`examples/hostile.py` mixes (\d+) classes", README)
    assert said is not None
    assert int(said.group(1)) == len(CLASSES)


@pytest.mark.timeout(120)
def test_the_per_user_bounds_table_names_each_bound_as_limits_hit_counts_it() -> None:
    from audienceflow.flows.testing import Clock, event, run
    from audienceflow.operators.settings import _LIMIT_KEYS

    section = README.split("\n### Per-user bounds\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(max_[a-z_]+)` \| [^|]+ \| `([a-z_]+)` \|", section, re.M)
    assert sorted(rows) == sorted((key, name) for name, key in _LIMIT_KEYS)
    # And the summary does count under that name: a second cart line over a bound of one.
    clock = Clock("2026-03-02T08:00:00Z")
    add = {"price": 1.0, "quantity": 1}
    result = run(
        [
            event("u1", clock.now(), "Product Added", product_id="p1", **add),
            event("u1", clock.advance("1m"), "Product Added", product_id="p2", **add),
        ],
        {"state": {"max_cart_lines": 1}},
    )
    assert result.summary["limits_hit"] == {dict(rows)["max_cart_lines"]: 1}


def test_the_output_files_and_schemas_the_readme_lists_are_what_a_replay_writes() -> None:
    from audienceflow.flows import contracts

    section = _section("## Output records")
    files = section.split("A replay writes", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(?:DIR/)?([a-z_]+\.jsonl?)`", files))
    assert named == set(contracts.FILES)
    schemas = section.split("shipped inside the package", 1)[1].split("`audienceflow schemas`")[0]
    assert set(re.findall(r"`([a-z_]+)`", schemas)) == set(contracts.NAMES)


@pytest.mark.timeout(60)
def test_every_yaml_config_in_the_readme_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.S)
    assert len(blocks) >= 4
    for i, block in enumerate(blocks):
        cfg = tmp_path / f"readme-{i}.yaml"
        cfg.write_text(block)
        Settings.load(cfg, environ={})  # raises ConfigError naming the line


def test_the_replay_section_says_what_out_defaults_to() -> None:
    from audienceflow.flows.cli import _parser

    default = _parser().parse_args(["replay", "x.jsonl"]).out
    section = README.split("\n## Replay\n", 1)[1].split("\n## ", 1)[0]
    assert f"`--out` defaults to `{default}`" in " ".join(section.split())
