"""A rule cannot be weaponised: resource bombs and typos are rejected at load, with the
file, line and key, before any event is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from audienceflow.operators.config import ConfigError
from audienceflow.operators.rule_compile import MAX_CHARS, MAX_DEPTH, MAX_LIST, MAX_NODES
from audienceflow.operators.rules import RuleError, compile_rule
from audienceflow.operators.settings import Settings


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("[1] * 10000000000 == [1]", "list"),
        ("[0] * 5000000 == [1]", "list"),
        ("cart_items in [1] * 1000000", "'in' needs a list"),
        ("'a' * 100000 == locale", "arithmetic on text"),
        ("locale + locale == 'x'", "arithmetic on text"),
        ("cart_items ** 100000 > 1", "Pow is not allowed"),
        ("[1, 2] + [3] == [1]", "list"),
        ("'" + "x" * 201 + "' == locale", "longer than 200"),
        ("cart_items in [" + ", ".join(["1"] * (MAX_LIST + 1)) + "]", "more than 100 items"),
        ("cart_items > 1e400", "a number outside"),
        ("cart_items > 10000000000000000", "a number outside"),
        (" + ".join(["1"] * 2000) + " > 0", "too long"),
        ("+".join(["1"] * 100) + " > 0", "nests too deeply"),
        ("-" * 3990 + "1 > 0", "the rule nests too deeply"),  # past Python's own parser
        ("(" * 40 + "cart_items" + ")" * 40 + " > 0 and " + "not " * 40 + "in_session", "deep"),
        (" and ".join(["in_session"] * 5000), "too long"),
        (" and ".join(["1"] * (MAX_NODES + 50)), "too large"),
        ("device == 'mobil'", "known values: mobile, desktop, tablet, tv, other"),
        ("device in ['mobile', 'tabelt']", "device is never 'tabelt'"),
        ("'mobil' != device", "device is never 'mobil'"),
    ],
)
def test_a_resource_bomb_or_a_typo_is_rejected_saying_why(source: str, needle: str) -> None:
    with pytest.raises(RuleError) as exc:
        compile_rule("x", source)
    assert needle in str(exc.value)


def test_a_rule_just_inside_every_bound_compiles() -> None:
    terms = (MAX_NODES - 10) // 5  # `cart_items > 1`: Compare, Name, Load, Gt, Constant
    src = " and ".join(["cart_items > 1"] * terms)
    assert len(src) <= MAX_CHARS
    compile_rule("x", src)
    compile_rule("x", "(" * (MAX_DEPTH - 4) + "cart_items" + ")" * (MAX_DEPTH - 4) + " > 1")
    compile_rule("x", "device in ['mobile', 'tablet', 'tv'] and locale == 'en-GB'")


def test_a_bad_rule_in_a_config_names_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("segments:\n  bomb:\n    when: '[1] * 10000000000 == [1]'\n")
    with pytest.raises(ConfigError) as exc:
        Settings.load(cfg, environ={})
    assert f"{cfg}:3: segments.bomb.when: list arithmetic is not allowed" in str(exc.value)
    cfg.write_text(
        "triggers:\n  t:\n    type: event\n    events: [Signed Up]\n    when: device == 'mobil'\n"
    )
    with pytest.raises(ConfigError) as exc:
        Settings.load(cfg, environ={})
    assert f"{cfg}:5: triggers.t.when: device is never 'mobil'" in str(exc.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("digits", [17, 309, 400, 3900])
def test_a_whole_number_too_large_for_a_float_is_rejected_not_a_traceback(
    tmp_path: Path, digits: int
) -> None:
    """Past 308 digits an int has no float: its bound was checked with ``math.isfinite``,
    which raised OverflowError, and check-config stopped with a traceback."""
    source = f"cart_items > {'9' * digits}"
    with pytest.raises(RuleError, match="a number outside"):
        compile_rule("x", source)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'segments:\n  x:\n    when: "{source}"\n')
    with pytest.raises(ConfigError, match=r"segments\.x\.when: a number outside"):
        Settings.load(cfg, environ={})
