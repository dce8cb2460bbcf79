"""Amounts of money in a stream of several currencies (the ``money`` section).

With ``money.currency`` set, sessions, profiles (cart value, revenue) and experiment
goals read every amount in that currency: converted by a configured rate, or unusable
(counted ``unusable:currency``) when the event names a currency without one. Unset, an
event's currency is not read and amounts sum as sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ev

from audienceflow.flows.testing import run
from audienceflow.operators.config import ConfigError
from audienceflow.operators.money import MAX_AMOUNT, Money
from audienceflow.operators.settings import Settings

SALT = {"AUDIENCEFLOW_PII_SALT": "x"}
EUR = {"money": {"currency": "EUR", "rates": {"USD": 0.5, "GBP": 1.25}}}


def _shop(user: str) -> list[dict[str, Any]]:
    return [
        ev(user, 0, "Product Added", product_id="a", price=10, currency="EUR"),
        ev(user, 1, "Product Added", product_id="b", price=4, quantity=2, currency="usd"),
        ev(user, 2, "Product Added", product_id="c", price=8),  # no currency: the stream's
        ev(user, 3, "Product Added", product_id="d", price=100, currency="JPY"),
        ev(user, 4, "Order Completed", order_id="o1", total=40, currency=" GBP "),
        ev(user, 5, "Order Completed", order_id="o2", total=3000, currency="JPY"),
        ev(user, 6, "Order Completed", order_id="o3", revenue=6, currency="USD"),
        ev(user, 7, "Order Completed", order_id="o4", total=2, currency=7),
    ]


@pytest.mark.timeout(60)
def test_amounts_are_converted_into_the_stream_currency_or_counted_unusable() -> None:
    r = run(_shop("u1")[:4], EUR, environ=SALT)
    # 10 EUR + 2 x 4 USD (4 EUR) + 8 in the stream's currency; the JPY line is priced 0.
    assert r.profile("u1")["cart_value"] == 22.0  # type: ignore[index]
    assert r.summary["limits_hit"] == {"unusable:currency": 1}
    r = run(_shop("u1"), EUR, environ=SALT)
    assert r.contract_errors() == []
    [session] = r.sessions
    assert session["order_value"] == 53.0  # 40 GBP (50) + 6 USD (3); no yen, no number code
    assert r.summary["limits_hit"] == {"unusable:currency": 3}
    assert r.summary["counts"]["reconciled"] is True


@pytest.mark.timeout(60)
def test_without_a_currency_amounts_sum_as_sent() -> None:
    r = run(_shop("u1"), environ=SALT)
    [session] = r.sessions
    assert session["order_value"] == 40 + 3000 + 6 + 2
    assert "unusable:currency" not in r.summary["limits_hit"]
    r = run(_shop("u1")[:4], environ=SALT)
    assert r.profile("u1")["cart_value"] == 10 + 8 + 8 + 100  # type: ignore[index]


@pytest.mark.timeout(60)
def test_a_rate_cannot_push_an_amount_past_the_bound() -> None:
    money = Money("EUR", {"XAU": 3000.0})
    assert money.convert(MAX_AMOUNT / 3000, {"currency": "XAU"}) == MAX_AMOUNT
    assert money.convert(MAX_AMOUNT / 2000, {"currency": "XAU"}) is None
    big = {"money": {"currency": "EUR", "rates": {"XAU": 3000}}}
    line = ev("u1", 0, "Product Added", product_id="g", price=MAX_AMOUNT / 2000, currency="XAU")
    r = run([line], big, environ=SALT)
    assert r.profile("u1")["cart_value"] == 0.0  # type: ignore[index]
    assert r.summary["limits_hit"] == {"unusable:price": 1}


@pytest.mark.timeout(60)
def test_an_order_a_rate_pushes_past_the_bound_is_counted_not_dropped_silently() -> None:
    # Its value is left out of the session (as the converted line's price is left out of
    # the cart); it was left out without any count, so limits_hit did not say why.
    big = {"money": {"currency": "EUR", "rates": {"XAU": 3000}}}
    order = ev("u1", 0, "Order Completed", order_id="o1", total=MAX_AMOUNT / 2000, currency="XAU")
    r = run([order], big, environ=SALT)
    [session] = r.sessions
    assert session["order_value"] == 0.0
    assert r.summary["limits_hit"] == {"unusable:order_value": 1}


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("money", "says"),
    [
        ({"currency": "euro"}, "money.currency: must be a three-letter ISO 4217 code"),
        ({"currency": 978}, "money.currency: must be a non-empty string or null"),
        ({"rates": {"USD": 0.9}}, "money.rates: needs money.currency"),
        ({"currency": "EUR", "rates": {"EUR": 1}}, "money.rates.EUR: is money.currency itself"),
        ({"currency": "EUR", "rates": {"usd": 1, "USD": 1}}, "money.rates.usd: names USD twice"),
        ({"currency": "EUR", "rates": {"USD": 0}}, "money.rates.USD: must be a positive number"),
        ({"currency": "EUR", "rates": {"USD": "0.9"}}, "money.rates.USD: must be a positive"),
        ({"currency": "EUR", "rates": {"US": 1}}, "money.rates.US: must be keyed by three"),
        ({"currncy": "EUR"}, "money.currncy: unknown key (did you mean 'currency'?)"),
    ],
)
def test_the_money_section_is_checked_at_load(tmp_path: Any, money: Any, says: str) -> None:
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"money": money}))
    with pytest.raises(ConfigError) as err:
        Settings.load(cfg, environ={})
    assert says in str(err.value)


@pytest.mark.timeout(30)
def test_the_currency_is_taken_in_any_case_and_from_the_environment() -> None:
    s = Settings.load(environ={"AUDIENCEFLOW_MONEY__CURRENCY": "chf"})
    assert s.features.money == s.sessions.money == Money("CHF", {})
    assert Settings.load(environ={}).features.money == Money()


@pytest.mark.timeout(120)
def test_a_goal_value_the_experiment_cannot_use_is_counted() -> None:
    # A custom goal's value in a currency without a rate, or not a number, was read as 0
    # in the arm's revenue with nothing counted: limits_hit did not say why it was missing.
    cfg = {
        **EUR,
        "experiments": {
            "subs": {
                "trigger": "cart_abandonment",
                "arms": {"a": {"weight": 0.5}, "b": {"weight": 0.5}},
                "goal": {"events": ["Subscription Started"], "value": "amount"},
            }
        },
    }
    stream = [ev(u, 0, "Product Added", product_id="p", price=5) for u in ("u1", "u2", "u3")]
    stream += [
        ev("u1", 20, "Subscription Started", amount=9, currency="JPY"),  # no JPY rate
        ev("u2", 21, "Subscription Started", amount="9,50"),  # text, not an amount
        ev("u2", 22, "Subscription Started", amount="9.5", order_id="x"),  # plain decimal
        ev("u3", 22, "Subscription Started", amount=8, currency="USD"),  # 4 EUR: counts
        ev("u3", 23, "Subscription Started"),  # no amount given: a conversion without one
    ]
    r = run(stream, cfg, environ=SALT)
    arms = r.summary["experiments"]["subs"]["arms"]
    assert sum(a["converters"] for a in arms.values()) == 3
    assert sum(a["revenue"] for a in arms.values()) == 13.5
    assert r.summary["limits_hit"] == {"unusable:goal_value": 2}
