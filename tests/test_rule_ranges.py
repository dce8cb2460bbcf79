"""A comparison of a bounded rule value with a constant outside its range is rejected.

Each registry entry may declare ``value_range`` (numbers, or per-user bounds such as
``state.max_distinct_values``); ``distinct(...) > 100`` with 100 values kept can never
hold, while ``>= 100`` can. Checked for every entry declaring one, on both sides of each
end, and through ``check-config``'s error (file and line).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from audienceflow.operators import registry
from audienceflow.operators.config import ConfigError
from audienceflow.operators.rules import Context, RuleError, compile_rule
from audienceflow.operators.settings import Settings
from audienceflow.operators.state import Limits, UserState

pytestmark = pytest.mark.timeout(60)

RANGED = sorted(
    (e for e in registry.REGISTRY.values() if e.value_range is not None), key=lambda e: e.name
)


def _operand(e: registry.Entry) -> str:
    """The entry's value as its README example writes it (the left of its comparison)."""
    m = re.fullmatch(r"(.*) (>=|<=|==|>|<) [^<>=]*", e.example)  # its last comparison
    assert m is not None, e.example
    return m.group(1)


def _compiles(source: str, limits: Limits | None = None) -> bool:
    per = "category" if "(category)" in source else None
    try:
        compile_rule("x", source, per, "any", limits)
    except RuleError as exc:
        assert "can never hold" in str(exc), exc
        return False
    return True


def test_the_bounded_values_declare_their_range() -> None:
    names = {e.name for e in RANGED}
    assert {"count", "distinct", "events", "sessions", "intent_score"} <= names
    for e in RANGED:
        assert e.returns == "number", e.name
        assert e.value_range is not None
        for end in e.value_range:
            assert not isinstance(end, str) or end in Limits.__dataclass_fields__, (e.name, end)
        lo, hi = registry.value_range(e, Limits())
        assert lo <= hi, e.name


def test_since_below_zero_is_rejected_and_at_zero_is_not() -> None:
    """since() is compared once, with an ordering and a duration (not ``==``, not
    written the other way round), so the test below does not fit it."""
    assert _compiles("since('Product Added') <= 0s") and _compiles("since('Product Added') > 1h")
    assert not _compiles("since('Product Added') < 0s")


@pytest.mark.parametrize("entry", [e for e in RANGED if e.name != "since"], ids=lambda e: e.name)
def test_a_constant_past_either_end_is_rejected_and_the_end_itself_is_not(
    entry: registry.Entry,
) -> None:
    lo, hi = registry.value_range(entry, Limits())
    x = _operand(entry)
    assert _compiles(f"{x} <= {lo:g}") and _compiles(f"{x} == {lo:g}")
    assert not _compiles(f"{x} < {lo:g}") and not _compiles(f"{x} == {lo - 1:g}")
    assert not _compiles(f"{lo:g} > {x}")  # written the other way round
    if hi != math.inf:
        assert _compiles(f"{x} >= {hi:g}") and _compiles(f"{hi:g} >= {x}")
        assert not _compiles(f"{x} > {hi:g}") and not _compiles(f"{hi:g} < {x}")
        assert not _compiles(f"{x} == {hi + 1:g}")


def test_distinct_is_bounded_by_the_configured_number_of_values() -> None:
    rule = "distinct(properties.category, 7d) {} 150"
    assert not _compiles(rule.format(">="))
    assert _compiles(rule.format("<"))
    assert _compiles(rule.format(">="), Limits(distinct_values=200))
    assert _compiles("distinct(properties.category, 7d) >= 100")
    assert not _compiles("distinct(properties.category, 7d) > 100")


def test_count_below_zero_is_rejected_and_an_unbounded_value_is_not() -> None:
    assert not _compiles("count('Pricing', 1h) < 0")
    assert _compiles("count('Pricing', 1h) < 1")
    assert _compiles("total_revenue > 1e9")  # no range declared: not judged


def test_check_config_names_the_file_and_line_of_a_rule_that_can_never_hold(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "state:\n  max_distinct_values: 20\n"
        "segments:\n  browser:\n    when: distinct(properties.category, 7d) >= 21\n"
    )
    with pytest.raises(ConfigError) as info:
        Settings.load(cfg, environ={})
    msg = str(info.value)
    assert f"{cfg}:5" in msg and "can never hold" in msg, msg
    assert "state.max_distinct_values is 20" in msg, msg
    cfg.write_text(cfg.read_text().replace(">= 21", ">= 20"))
    Settings.load(cfg, environ={})


def test_an_arms_rule_is_checked_against_the_configured_bounds(tmp_path: Path) -> None:
    """An arm's ``when`` runs with the config's bounds, as any rule: with 200 values kept,
    ``distinct(...) >= 150`` can hold (it was judged against the default 100)."""
    cfg = tmp_path / "c.yaml"
    arms = (
        "experiments:\n  t:\n    trigger: cart_abandonment\n    arms:\n"
        "      a: {weight: 0.5}\n"
        "      b: {weight: 0.5, when: 'distinct(properties.category, 7d) >= 150'}\n"
    )
    cfg.write_text("state:\n  max_distinct_values: 200\n" + arms)
    Settings.load(cfg, environ={})
    cfg.write_text("state:\n  max_distinct_values: 149\n" + arms)
    with pytest.raises(ConfigError, match="can never hold"):
        Settings.load(cfg, environ={})


def test_a_time_compared_with_a_duration_below_zero_is_rejected() -> None:
    assert not _compiles("session_seconds < 0s")
    assert _compiles("session_seconds < 1s")


# --- negation: a comparison that never holds, negated, always holds ------------------------

NEVER = "count('Pricing', 1h) > 5000"  # with 1000 timestamps kept per user (the default)


@pytest.mark.parametrize(
    "source",
    [
        f"not ({NEVER})",
        f"not {NEVER}",  # ``not`` binds looser than ``>``: the same rule
        "not (count('Pricing', 1h) < 0)",  # the other end
        "not (distinct(properties.category, 7d) > 100)",
        f"not ({NEVER}) and device == 'mobile'",
        f"not ({NEVER} and device == 'mobile')",  # is ``count(...) <= 5000 or ...``
        f"not (device == 'mobile' or {NEVER})",  # a comparison checked before it
        f"not not not ({NEVER})",
    ],
)
def test_a_negated_comparison_that_never_holds_is_accepted_as_its_always_true_twin_is(
    source: str,
) -> None:
    """``not (count(...) > 5000)`` is ``count(...) <= 5000``, which is accepted (a value
    always within its range is no mistake): so is the negation."""
    assert _compiles("count('Pricing', 1h) <= 5000")
    assert _compiles(source), source


@pytest.mark.parametrize(
    "source",
    [
        f"not not ({NEVER})",
        f"not (not ({NEVER}) and device == 'mobile')",  # is ``count(...) > 5000 or ...``
        f"not (device == 'mobile') and {NEVER}",  # the ``not`` is not over it
    ],
)
def test_a_comparison_that_never_holds_under_an_even_number_of_nots_is_still_rejected(
    source: str,
) -> None:
    assert not _compiles(source), source


def test_a_negated_comparison_that_never_holds_always_holds_when_evaluated() -> None:
    rule = compile_rule("x", f"not ({NEVER})", None, "any", None)
    assert rule.holds(Context(UserState("ann", 0.0), 1_772_438_400.0, 7 * 86400.0)) is True


def test_a_negated_comparison_is_judged_against_the_configured_cap(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    seg = "segments:\n  few:\n    when: {}\n"
    cfg.write_text("state:\n  max_distinct_values: 20\n" + seg.format(
        "not (distinct(properties.category, 7d) > 20)"))  # fmt: skip
    Settings.load(cfg, environ={})
    cfg.write_text("state:\n  max_distinct_values: 20\n" + seg.format(
        "not not (distinct(properties.category, 7d) > 20)"))  # fmt: skip
    with pytest.raises(ConfigError, match="can never hold"):
        Settings.load(cfg, environ={})
