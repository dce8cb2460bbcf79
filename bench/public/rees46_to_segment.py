"""Convert REES46 "eCommerce behavior data from multi category store" CSV to Segment JSONL.

Follows Segment's published Spec (Common Fields, Track) and E-commerce v2 event names:
view -> Product Viewed, cart -> Product Added, remove_from_cart -> Product Removed,
purchase -> Order Completed. Purchase rows of one `user_session` at one `event_time`
are one order (`products[]`, `revenue` = sum of line prices); the dataset names no
order id, so `order_id` is derived from session and time. `user_id` is the dataset's
permanent user id (`userId`); `user_session` has no place in Segment's spec and is
left out of the events (kept for comparison by `--sessions FILE`, one
`user_id,user_session,first,last,events` line per dataset session).

Usage: python rees46_to_segment.py IN.csv OUT.jsonl [--sessions FILE]
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections import OrderedDict

NAMES = {"view": "Product Viewed", "cart": "Product Added", "remove_from_cart": "Product Removed"}


def iso(t: str) -> str:
    """'2019-10-01 00:00:00 UTC' -> '2019-10-01T00:00:00Z' (the dataset's times are UTC)."""
    day, clock, zone = t.split(" ")
    assert zone == "UTC", t
    return f"{day}T{clock}Z"


def product(row: dict[str, str]) -> dict[str, object]:
    p: dict[str, object] = {"product_id": row["product_id"]}
    if row["category_code"]:
        p["category"] = row["category_code"]
    if row["brand"]:
        p["brand"] = row["brand"]
    if row["price"]:
        p["price"] = float(row["price"])
    return p


def message_id(*parts: str) -> str:
    return "rees46-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def convert(rows: list[dict[str, str]]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    orders: OrderedDict[tuple[str, str, str], list[dict[str, str]]] = OrderedDict()
    for i, row in enumerate(rows):
        kind = row["event_type"]
        if kind == "purchase":
            key = (row["user_id"], row["user_session"], row["event_time"])
            if key not in orders:
                orders[key] = []
                out.append({"_order": key})
            orders[key].append(row)
            continue
        props = product(row)
        if kind == "cart":
            props["quantity"] = 1
        out.append(
            {
                "type": "track",
                "event": NAMES[kind],
                "userId": row["user_id"],
                "messageId": message_id(str(i), row["event_time"], row["user_id"], kind),
                "timestamp": iso(row["event_time"]),
                "properties": props,
            }
        )
    for j, ev in enumerate(out):
        key = ev.pop("_order", None)  # type: ignore[arg-type]
        if key is None:
            continue
        lines = orders[key]  # type: ignore[index]
        products = [{**product(r), "quantity": 1} for r in lines]
        revenue = round(sum(float(r["price"] or 0) for r in lines), 2)
        order_id = message_id(*key)[7:]
        out[j] = {
            "type": "track",
            "event": "Order Completed",
            "userId": key[0],
            "messageId": message_id("order", *key),
            "timestamp": iso(key[2]),
            "properties": {"order_id": order_id, "revenue": revenue, "products": products},
        }
    return out


def main(argv: list[str]) -> int:
    src, dst = argv[0], argv[1]
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    events = convert(rows)
    with open(dst, "w") as fh:
        for ev in events:
            fh.write(json.dumps(ev, separators=(",", ":"), sort_keys=True) + "\n")
    if "--sessions" in argv:
        sess: dict[tuple[str, str], list[str]] = {}
        for r in rows:
            s = sess.setdefault(
                (r["user_id"], r["user_session"]), [r["event_time"], r["event_time"], "0"]
            )
            s[0] = min(s[0], r["event_time"])
            s[1] = max(s[1], r["event_time"])
            s[2] = str(int(s[2]) + 1)
        with open(argv[argv.index("--sessions") + 1], "w") as fh:
            for (u, s), (a, b, n) in sess.items():
                fh.write(f"{u},{s},{iso(a)},{iso(b)},{n}\n")
    print(f"{len(rows)} rows -> {len(events)} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
