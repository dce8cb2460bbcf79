"""Convert a GA4 BigQuery export of purchase items (one row per item) to Segment JSONL.

The input is the flattened `ga4_obfuscated_sample_ecommerce` purchase rows that GitHub
repositories carry as CSV (columns `user_pseudo_id,item_id,item_name,price_in_usd,price,
quantity,item_revenue_in_usd,item_revenue,event_date,event_timestamp,country,region,
mobile_brand_name,mobile_model_name`). Rows of one `user_pseudo_id` at one
`event_timestamp` are one GA4 `purchase` event, written as one Segment E-commerce v2
`Order Completed` (Segment's Spec: Common Fields, Track, E-commerce v2):

- `anonymousId` is `user_pseudo_id` (GA4's pseudonymous browser/app-instance id; the
  export has no `user_id`), `timestamp` is `event_timestamp` (microseconds, UTC) as
  ISO-8601 with its six fractional digits;
- `products[]` has one line per item row (`product_id` = `item_id`, `name` = `item_name`,
  `price` = `price_in_usd`, `quantity`); an item row whose `item_id` is GA4's
  `(not set)` names no product and is left out;
- `revenue` is the sum of `item_revenue_in_usd` (GA4's price x quantity after its
  obfuscation), `currency` `USD`; an order with no product line has neither;
- `order_id` is derived from `user_pseudo_id` and `event_timestamp`: the export names no
  `transaction_id`, and the sample's purchases often come twice, tens of milliseconds
  apart, as two events; each is kept as the source has it;
- `context.location` has `country` and `region`, `context.device` `manufacturer`
  (`mobile_brand_name`) and `model` (`mobile_model_name`), leaving out GA4's `<Other>`
  and `(not set)`.

Lines keep the order of each event's first row in the file (the export is not in time
order). Usage: python ga4_to_segment.py IN.csv OUT.jsonl
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from datetime import UTC, datetime

UNSET = {"", "(not set)", "<Other>"}


def iso(micros: str) -> str:
    """'1605937059520352' -> '2020-11-21T05:37:39.520352Z'."""
    t = datetime.fromtimestamp(int(micros) // 1_000_000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(micros) % 1_000_000:06d}Z"


def message_id(*parts: str) -> str:
    return "ga4-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def convert(rows: list[dict[str, str]]) -> list[dict[str, object]]:
    events: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        events.setdefault((row["user_pseudo_id"], row["event_timestamp"]), []).append(row)
    out: list[dict[str, object]] = []
    for (pseudo_id, micros), lines in events.items():
        first = lines[0]
        items = [r for r in lines if r["item_id"] not in UNSET]
        props: dict[str, object] = {"order_id": message_id(pseudo_id, micros)[4:]}
        if items:
            props["products"] = [
                {
                    "product_id": r["item_id"],
                    "name": r["item_name"],
                    "price": number(r["price_in_usd"]),
                    "quantity": int(r["quantity"]),
                }
                for r in items
            ]
            revenue = sum(float(r["item_revenue_in_usd"]) for r in items)
            props["revenue"] = round(revenue, 2)
            props["currency"] = "USD"
        context: dict[str, object] = {}
        location = {k: first[k] for k in ("country", "region") if first[k] not in UNSET}
        if location:
            context["location"] = location
        device = {
            name: first[col]
            for name, col in (("manufacturer", "mobile_brand_name"), ("model", "mobile_model_name"))
            if first[col] not in UNSET
        }
        if device:
            context["device"] = device
        event: dict[str, object] = {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": pseudo_id,
            "messageId": message_id("purchase", pseudo_id, micros),
            "timestamp": iso(micros),
            "properties": props,
        }
        if context:
            event["context"] = context
        out.append(event)
    return out


def main(argv: list[str]) -> int:
    src, dst = argv[0], argv[1]
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    events = convert(rows)
    with open(dst, "w") as fh:
        for ev in events:
            fh.write(json.dumps(ev, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(rows)} rows -> {len(events)} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
