"""What a marketer writes from the README: JSON's literals, and the spellings that
never match or never parse, each answered at load with the fix."""

from __future__ import annotations

from typing import Any

import pytest

from audienceflow.operators.rules import Context, RuleError, compile_rule
from audienceflow.operators.state import UserState


def holds(source: str, **traits: Any) -> bool:
    user = UserState("ann", first_seen=0.0)
    user.traits.update(traits)
    return compile_rule("x", source).holds(Context(user, 0.0, 86400.0))


# --- literals --------------------------------------------------------------------------


@pytest.mark.parametrize(("true", "false"), [("true", "false"), ("True", "False")])
def test_booleans_are_spelt_as_json_or_python_writes_them(true: str, false: str) -> None:
    assert holds(f"traits.vip == {true}", vip=True)
    assert not holds(f"traits.vip == {true}", vip=False)
    assert not holds(f"traits.vip == {true}")  # no trait: == is false
    assert holds(f"traits.vip != {false}", vip=True)
    assert holds(f"in_session == {false}")


def test_true_equals_a_trait_of_one_as_in_json_exports_of_a_flag() -> None:
    # README: booleans compare as numbers (a warehouse sync sends a flag as 1/0).
    assert holds("traits.vip == true", vip=1) and holds("traits.vip == false", vip=0)
    assert not holds("traits.vip == true", vip="true")


@pytest.mark.parametrize("spelt", ["null", "None"])
def test_null_asks_whether_a_trait_is_absent(spelt: str) -> None:
    assert holds(f"traits.plan == {spelt}")
    assert holds(f"traits.plan == {spelt}", plan=None)  # sent as null
    assert not holds(f"traits.plan == {spelt}", plan="pro")
    assert holds(f"traits.plan != {spelt} and traits.plan != 'pro'", plan="free")
    assert not holds(f"traits.plan != {spelt} and traits.plan != 'pro'")


def test_null_in_a_where_condition_asks_whether_the_field_is_absent() -> None:
    compile_rule("x", "count('Order Completed', 30d, properties.coupon == null) >= 1")


@pytest.mark.parametrize(
    "source",
    ["cart_items == null", "traits.plan > null", "null", "device != null", "not None"],
)
def test_null_anywhere_but_beside_a_trait_or_property_says_how_to_use_it(source: str) -> None:
    with pytest.raises(RuleError, match=r"only compared with == or != to traits\.NAME"):
        compile_rule("x", source)
