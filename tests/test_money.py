"""Amounts of money in a stream of several currencies (the ``money`` section).

With ``money.currency`` set, sessions, profiles (cart value, revenue) and experiment
goals read every amount in that currency: converted by a configured rate, or unusable
(counted ``unusable:currency``) when the event names a currency without one. Unset, an
event's currency is not read and amounts sum as sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from helpers import ev

from audienceflow.flows.cli import main
from audienceflow.flows.testing import run
from audienceflow.operators.config import ConfigError
from audienceflow.operators.money import (
    CARTS,
    MAX_AMOUNT,
    MAX_CODES,
    ORDERS,
    OTHER,
    Money,
    count_currency,
    merge_currencies,
    mixed_warning,
)
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


# With money.currency unset, an event's currency is not read (the design), but the
# amounts summed are counted by the currency they name, so a stream that mixes them is
# told: JPY 1200 + EUR 4.99 + USD 4.99 was a revenue of 1209.98 with no word of it.
def _mixed() -> list[dict[str, Any]]:
    return [
        ev("u1", 0, "Order Completed", order_id="o1", total=1200, currency="JPY"),
        ev("u2", 0, "Order Completed", order_id="o2", total=4.99, currency="EUR"),
        ev("u3", 0, "Order Completed", order_id="o3", total=4.99, currency=" usd "),
        ev("u3", 1, "Order Completed", order_id="o3", total=4.99, currency="USD"),  # re-sent
        ev("u4", 0, "Order Completed", order_id="o4", total=10),  # names none: not counted
        ev("u4", 1, "Product Added", product_id="p", price=3, currency="eur"),
        ev("u4", 2, "Product Added", product_id="q", currency="GBP"),  # no price: no amount
        ev("u5", 0, "Order Completed", order_id="o5", total="9,50", currency="GBP"),  # unusable
        ev("u6", 0, "Order Completed", order_id="o6", total=1, currency="Euro"),  # no ISO code
        ev("u7", 0, "Cart Viewed", products=[{"product_id": "a", "price": 2}], currency="CHF"),
    ]


MIXED = {
    "CHF": {"orders": 0, "cart_events": 1},
    "EUR": {"orders": 1, "cart_events": 1},
    "JPY": {"orders": 1, "cart_events": 0},
    "USD": {"orders": 1, "cart_events": 0},
    "other": {"orders": 1, "cart_events": 0},
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shards", [1, 3])
def test_amounts_summed_in_several_currencies_are_counted_by_currency(shards: int) -> None:
    r = run(_mixed(), {"state": {"shards": shards}}, environ=SALT)
    assert sum(s["order_value"] for s in r.sessions) == 1200 + 4.99 + 4.99 + 10 + 1
    assert r.contract_errors() == []
    money = r.summary["money"]
    assert money["summed_by_currency"] == MIXED
    warning = money["warning"]
    assert warning.startswith("amounts in 5 currencies were summed as if they were one")
    for named in ("CHF 1 cart event", "EUR 1 order and 1 cart event", "JPY 1 order", "USD 1 order"):
        assert named in warning
    assert "other (not an ISO 4217 code, or past the codes kept) 1 order" in warning
    assert "Set money.currency and money.rates" in warning


@pytest.mark.timeout(120)
def test_one_currency_or_none_named_is_no_warning_and_a_set_currency_counts_nothing() -> None:
    one = [e for e in _mixed() if e["properties"].get("currency") in ("EUR", "eur")]
    money = run(one, environ=SALT).summary["money"]
    assert money == {"summed_by_currency": {"EUR": MIXED["EUR"]}, "warning": None}
    none = [e for e in _mixed() if "currency" not in e["properties"]]
    assert "money" not in run(none, environ=SALT).summary  # as before: no section
    assert "money" not in run(_mixed(), EUR, environ=SALT).summary  # read and converted


@pytest.mark.timeout(30)
def test_the_codes_kept_are_bounded_and_the_rest_counted_as_other() -> None:
    seen: dict[str, list[int]] = {}
    codes = [a + b + c for a in "ABC" for b in "DE" for c in "FGHI"][:20]  # 20 codes
    for code in codes:
        count_currency(seen, {"currency": code}, ORDERS)
    count_currency(seen, {"currency": codes[0]}, CARTS)  # a kept code still counts
    count_currency(seen, {"currency": 978}, ORDERS)  # not text
    assert len(seen) == MAX_CODES + 1
    assert seen[codes[0]] == [1, 1]
    assert seen[OTHER] == [20 - MAX_CODES + 1, 0]
    # Across shards: at most MAX_CODES codes again, the least counted join "other".
    merged = merge_currencies([seen, {c: [5, 0] for c in codes[MAX_CODES:]}])
    assert len(merged) == MAX_CODES + 1
    assert set(codes[MAX_CODES:]) <= merged.keys()
    assert merged[OTHER] == {"orders": 5 + 4, "cart_events": 0}
    assert sum(n["orders"] + n["cart_events"] for n in merged.values()) == 20 + 1 + 1 + 20


@pytest.mark.timeout(120)
def test_the_replay_summary_prints_the_mixed_currency_warning() -> None:
    from rich.console import Console

    from audienceflow.flows.summary import render

    r = run(_mixed(), environ=SALT)
    console = Console(record=True, width=400)
    render(r.summary, console, "out", 1.0)
    text = console.export_text()
    assert "Warning: amounts in 5 currencies were summed as if they were one" in text
    assert "JPY 1 order" in text and "Set money.currency and money.rates" in text
    console = Console(record=True, width=400)
    render(run(_mixed(), EUR, environ=SALT).summary, console, "out", 1.0)
    assert "currencies were summed" not in console.export_text()


@pytest.mark.timeout(60)
def test_check_config_sample_warns_of_amounts_in_several_currencies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "s.jsonl"
    sample.write_bytes(b"\n".join(orjson.dumps(e) for e in _mixed()) + b"\nnot json\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  enabled: false\n")
    assert main(["check-config", str(cfg), "--sample", str(sample)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    # The sample is read without the replay's order ids: the re-sent o3 counts twice.
    assert f"money.currency: in {sample} (11 lines), amounts in 5 currencies would be" in err
    assert "USD 2 orders" in err and "EUR 1 order and 1 cart event" in err
    cfg.write_text("models:\n  enabled: false\nmoney: {currency: EUR, rates: {USD: 0.9}}\n")
    assert main(["check-config", str(cfg), "--sample", str(sample)]) == 0
    assert "currencies would be summed" not in capsys.readouterr().err
    one = tmp_path / "one.jsonl"
    one.write_bytes(orjson.dumps(_mixed()[0]) + b"\n")
    cfg.write_text("models:\n  enabled: false\n")
    assert main(["check-config", str(cfg), "--sample", str(one)]) == 0
    assert "currencies would be summed" not in capsys.readouterr().err


# Events that name a currency but whose amounts are not summed: an order of value 0 (or
# none given), a cart refresh whose lines carry no price.
def _named_not_summed() -> list[dict[str, Any]]:
    return [
        ev("u1", 0, "Order Completed", order_id="z1", total=0, currency="JPY"),
        ev("u2", 0, "Order Completed", order_id="z2", currency="JPY"),
        ev("u3", 0, "Cart Viewed", products=[{"product_id": "a"}, 3, "price"], currency="GBP"),
        ev("u4", 0, "Order Completed", order_id="z3", total=5, currency="EUR"),
    ]


@pytest.mark.timeout(120)
def test_only_amounts_summed_are_counted_by_currency() -> None:
    money = run(_named_not_summed(), environ=SALT).summary["money"]
    assert money == {
        "summed_by_currency": {"EUR": MIXED["EUR"] | {"cart_events": 0}},
        "warning": None,
    }


@pytest.mark.timeout(60)
def test_check_config_sample_counts_only_amounts_the_replay_sums(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "s.jsonl"
    sample.write_bytes(b"\n".join(orjson.dumps(e) for e in _named_not_summed()) + b"\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  enabled: false\n")
    assert main(["check-config", str(cfg), "--sample", str(sample)]) == 0
    assert "currencies would be summed" not in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_check_config_sample_counts_a_page_named_like_an_order_as_the_replay_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A view matches by its own name (README: Segments): one named "Order Completed"
    # with a total is an order the replay sums, and counts in the sample too.
    stream = [
        ev("u1", 0, "Order Completed", "page", total=5, currency="USD"),
        ev("u2", 0, "Order Completed", "screen", total=5, currency="JPY"),
        ev("u3", 0, "Order Completed", order_id="z3", total=5, currency="EUR"),
    ]
    summed = run(stream, environ=SALT).summary["money"]["summed_by_currency"]
    assert {c: n["orders"] for c, n in summed.items()} == {"EUR": 1, "JPY": 1, "USD": 1}
    sample = tmp_path / "s.jsonl"
    sample.write_bytes(b"\n".join(orjson.dumps(e) for e in stream) + b"\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  enabled: false\n")
    assert main(["check-config", str(cfg), "--sample", str(sample)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "amounts in 3 currencies would be summed" in err
    assert "JPY 1 order" in err and "USD 1 order" in err


@pytest.mark.timeout(30)
def test_a_blank_currency_names_none_and_other_takes_no_code_slot() -> None:
    seen: dict[str, list[int]] = {}
    count_currency(seen, {"currency": " \t"}, ORDERS)
    count_currency(seen, {"currency": ""}, CARTS)
    assert seen == {}
    count_currency(seen, {"currency": "Euro"}, ORDERS)  # "other" first
    codes = [a + b for a in "ABCD" for b in ("XX", "YY", "ZZ", "WW")]  # 16 codes
    for code in codes:
        count_currency(seen, {"currency": code}, ORDERS)
    assert set(seen) == {*codes, OTHER}  # all MAX_CODES kept beside "other"
    assert seen[OTHER] == [1, 0]


@pytest.mark.timeout(30)
def test_the_currency_counts_are_kept_in_a_snapshot() -> None:
    from audienceflow.operators.engine import ShardState
    from audienceflow.operators.shard_codec import decode_shard, encode_shard

    st = ShardState("shard-001", currencies={"EUR": [2, 1], "other": [0, 1]})
    assert decode_shard(encode_shard(st)).currencies == {"EUR": [2, 1], "other": [0, 1]}
    # A snapshot written before the counts reads as none counted.
    data = encode_shard(ShardState("shard-001"))
    body = msgpack.unpackb(data[5:], raw=False)
    del body["currencies"]
    older = data[:5] + msgpack.packb(body, use_bin_type=True)
    assert decode_shard(older).currencies == {}


@pytest.mark.timeout(30)
def test_the_worker_exposes_the_currency_counts_as_a_gauge_and_logs_a_mix_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from audienceflow.flows import metrics
    from audienceflow.flows.worker_sink import _shard_gauges
    from audienceflow.operators.records import ShardStats

    extra = {"currencies": {"EUR": [3, 1], "JPY": [1, 0]}}
    with caplog.at_level("WARNING", logger="audienceflow.worker"):
        for _ in range(2):  # a shard reports every 10 s: told once
            _shard_gauges(ShardStats("currency-test-a", 0, {}, {}, 0, extra))
    (told,) = [r.getMessage() for r in caplog.records if "currencies" in r.getMessage()]
    assert told.startswith("shard currency-test-a: amounts in 2 currencies were summed")
    (family,) = metrics.AMOUNTS_BY_CURRENCY.collect()
    got = {
        (s.labels["currency"], s.labels["kind"]): s.value
        for s in family.samples
        if s.labels["shard"] == "currency-test-a"
    }
    assert got == {
        ("EUR", "orders"): 3.0,
        ("EUR", "cart_events"): 1.0,
        ("JPY", "orders"): 1.0,
        ("JPY", "cart_events"): 0.0,
    }
    caplog.clear()
    with caplog.at_level("WARNING", logger="audienceflow.worker"):
        one = {"currencies": {"EUR": [3, 1]}}  # one currency: nothing mixed, nothing told
        _shard_gauges(ShardStats("currency-test-b", 0, {}, {}, 0, one))
    assert [r.getMessage() for r in caplog.records if "currency-test-b" in r.getMessage()] == []


@pytest.mark.timeout(30)
def test_the_readme_shows_the_mixed_currency_warning_as_the_summary_prints_it() -> None:
    merged = merge_currencies([{"JPY": [1, 0], "EUR": [1, 0], "USD": [1, 0]}])
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"Warning: {mixed_warning(merged)}." in readme
