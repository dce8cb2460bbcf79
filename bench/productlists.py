"""A seeded stream of e-commerce calls carrying ``products[]`` lists, as shops send them.

Segment's e-commerce spec (v2) puts a list of products in ``Product List Viewed``,
``Product List Filtered``, ``Cart Viewed``, ``Checkout Started`` and ``Order Completed``:
a category page lists 24 or 48 products, a cart a few, an order one to ten. Each line
of a list carries the spec's product fields (``product_id``, ``sku``, ``category``,
``name``, ``brand``, ``variant``, ``price``, ``quantity``, ``position``, ``url``,
``image_url``), drawn from a catalog of 5,000 products whose popularity falls off as a
power law, so the same products come back, as on a real shop. Shapes follow the spec's
examples; no data set is copied.

    python bench/productlists.py 20000 > /tmp/lists.jsonl
"""

from __future__ import annotations

import random
import sys

import orjson

CATALOG = 5_000
CATEGORIES = ["shoes", "outerwear", "bags", "accessories", "gifts", "kids", "sale"]
BRANDS = ["Acme", "Northwind", "Contoso", "Fabrikam", "Tailspin"]
VARIANTS = ["black", "blue", "red", "green", "42", "M", "L"]


def product(j: int) -> dict[str, object]:
    """Catalog product ``j``: the same fields each time it is listed."""
    slug = f"{CATEGORIES[j % 7]}-{j}"
    return {
        "product_id": f"{507 + j * 7919 % 100_000:06d}",
        "sku": f"{BRANDS[j % 5][:3].upper()}-{j * 31 % 99_991:05d}",
        "category": CATEGORIES[j % 7],
        "name": f"{BRANDS[j % 5]} {CATEGORIES[j % 7].title()} {j}",
        "brand": BRANDS[j % 5],
        "variant": VARIANTS[j % 7],
        "price": round(4.99 + (j * 37 % 19_500) / 100, 2),
        "url": f"https://shop.example.com/p/{slug}",
        "image_url": f"https://cdn.example.com/images/{slug}.jpg",
    }


PRODUCTS = [product(j) for j in range(CATALOG)]


def _pick(r: random.Random) -> dict[str, object]:
    """A product, the popular ones more often (a power law over the catalog)."""
    return PRODUCTS[min(int(CATALOG * r.random() ** 3), CATALOG - 1)]


def line(r: random.Random, i: int) -> bytes:
    kind = r.random()
    if kind < 0.55:
        event, n = "Product List Viewed", r.choice([24, 48])
    elif kind < 0.7:
        event, n = "Product List Filtered", r.choice([12, 24])
    elif kind < 0.85:
        event, n = "Cart Viewed", r.randint(1, 6)
    elif kind < 0.93:
        event, n = "Checkout Started", r.randint(1, 6)
    else:
        event, n = "Order Completed", r.randint(1, 10)
    lines = [
        {**_pick(r), "position": k + 1, **({"quantity": r.randint(1, 3)} if n <= 10 else {})}
        for k in range(n)
    ]
    props: dict[str, object] = {"products": lines}
    if n > 10:
        props |= {"list_id": f"{lines[0]['category']}-page", "category": lines[0]["category"]}
    else:
        total = round(sum(float(p["price"]) * int(p["quantity"]) for p in lines), 2)  # type: ignore[call-overload]
        props |= {"cart_id": f"c-{r.randrange(10**6):06d}", "value": total, "currency": "USD"}
        if event == "Order Completed":
            props |= {"order_id": f"o-{i:08d}", "total": total, "revenue": total}
    ts = f"2026-03-02T{8 + i // 3600 % 12:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
    return orjson.dumps(
        {
            "type": "track",
            "event": event,
            "messageId": f"m-{i:08x}",
            "timestamp": ts,
            "userId": f"u{r.randrange(20000):05d}",
            "properties": props,
            "context": {"ip": "203.0.113.9", "library": {"name": "analytics.js", "version": "2"}},
        }
    )


if __name__ == "__main__":
    rand = random.Random(35)
    out = sys.stdout.buffer
    for idx in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20000):
        out.write(line(rand, idx) + b"\n")
