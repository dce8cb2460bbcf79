"""A seeded stream of page and track calls carrying web addresses as browsers send them.

analytics.js copies a page's ``url``, ``referrer``, ``search`` and ``path`` into both
``context.page`` and ``properties``; real ones are full of percent-encoding: UTM tags,
ad click ids (``gclid``, ``fbclid``, ``msclkid``), search queries, a search engine's or a
mail client's redirect holding the whole target address encoded once (``%3A%2F%2F``),
a login's return address encoded twice (``%252F``) and some encoded three or four
times; one value in 25 hides an e-mail address, a phone number or an IP at one to
four levels. Shapes are written from the public query conventions (Google Ads,
Meta, Microsoft Ads, UTM), not copied from any data set.

    python bench/weburls.py 20000 > /tmp/web.jsonl
"""

from __future__ import annotations

import random
import string
import sys
from urllib.parse import quote

import orjson

HOSTS = ["shop.example.com", "www.example.org", "m.example.net"]
PATHS = [
    "/",
    "/cart",
    "/checkout/shipping",
    "/p/trail-runner-2-blue",
    "/c/women/shoes",
    "/search",
    "/account/login",
    "/blog/2026/03/spring-sale",
]
WORDS = ["red", "shoes", "size 42", "gift card", "café", "50% off", "rain jacket", "a&b"]
SOURCES = ["google", "facebook", "newsletter", "bing", "instagram", "tiktok"]
MEDIUMS = ["cpc", "email", "social", "paid_social", "display"]
CAMPAIGNS = ["spring_sale_2026", "Spring Sale 2026", "retarget-03/2026", "brand|exact"]
PII = [
    "ann.lee@example.com",
    "j.doe+promo@mail.example.org",
    "+44 20 7946 0958",
    "(415) 555-0123",
    "198.51.100.23",
    "2001:db8::1",
]


def _token(r: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def _q(text: str, levels: int) -> str:
    """``text`` percent-encoded ``levels`` times, as each redirect hop encodes it again."""
    for _ in range(levels):
        text = quote(text, safe="")
    return text


def _query(r: random.Random) -> list[str]:
    params = []
    if r.random() < 0.6:
        params += [
            f"utm_source={r.choice(SOURCES)}",
            f"utm_medium={r.choice(MEDIUMS)}",
            f"utm_campaign={_q(r.choice(CAMPAIGNS), 1)}",
        ]
    click = r.random()
    if click < 0.25:
        params.append("gclid=Cj0KCQiA" + _token(r, 60, string.ascii_letters + string.digits + "-_"))
    elif click < 0.4:
        params.append("fbclid=IwAR" + _token(r, 56, string.ascii_letters + string.digits + "-_"))
    elif click < 0.5:
        params.append("msclkid=" + _token(r, 32, "0123456789abcdef"))
    if r.random() < 0.3:
        params.append("q=" + quote(r.choice(WORDS), safe="").replace("%20", "+"))
    if r.random() < 0.2:
        ga = f"2.{r.randrange(10**8)}.{r.randrange(10**9)}.{r.randrange(1700000000, 1800000000)}"
        params.append(f"_ga={ga}-{r.randrange(10**9)}.{r.randrange(1700000000, 1800000000)}")
    return params


def _return_to(r: random.Random, host: str, pii: str | None, levels: int) -> str:
    """A login or redirect target holding a further address, encoded ``levels`` times."""
    inner = f"https://{host}{r.choice(PATHS)}?step={r.randrange(5)}&ref=nav"
    if pii is not None:
        inner += "&contact=" + quote(pii, safe="")
    for _ in range(levels - 1):
        inner = f"https://{host}/account/login?returnTo={quote(inner, safe='')}"
    return quote(inner, safe="")


def url(r: random.Random) -> tuple[str, str]:
    """A page address and its referrer."""
    host = r.choice(HOSTS)
    params = _query(r)
    pii = r.choice(PII) if r.random() < 0.04 else None
    kind = r.random()
    if kind < 0.35:
        levels = 1 if kind < 0.2 else 2 if kind < 0.3 else r.choice([3, 4])
        params.append("returnTo=" + _return_to(r, host, pii, levels))
    elif pii is not None:
        params.append("email=" + quote(pii, safe=""))
    page = f"https://{host}{r.choice(PATHS)}" + ("?" + "&".join(params) if params else "")
    if r.random() < 0.4:
        target = _q(f"https://{host}/", 1)
        ref = f"https://www.google.com/url?sa=t&rct=j&url={target}&ved=2ah{_token(r, 40)}"
    elif r.random() < 0.5:
        ref = f"https://l.facebook.com/l.php?u={_q(page, 1)}&h=AT{_token(r, 30)}"
    else:
        ref = f"https://{host}{r.choice(PATHS)}"
    return page, ref


def line(r: random.Random, i: int) -> bytes:
    page, ref = url(r)
    path, _, search = page.partition("?")
    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    page_ctx = {
        "path": path,
        "referrer": ref,
        "search": "?" + search if search else "",
        "url": page,
    }
    user = f"u{r.randrange(20000):05d}"
    ts = f"2026-03-02T{8 + i // 3600 % 12:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
    ev: dict[str, object] = {
        "messageId": f"m-{i:08x}",
        "timestamp": ts,
        "anonymousId": f"anon-{r.randrange(16**12):012x}",
        "userId": user,
        "context": {"page": page_ctx, "locale": "en-US", "ip": "203.0.113.9"},
    }
    if r.random() < 0.7:
        ev |= {"type": "page", "name": "Home", "properties": {**page_ctx, "title": "Shop"}}
    else:
        props = {"product_id": f"sku-{r.randrange(500)}", "url": page, "category": "shoes"}
        ev |= {"type": "track", "event": "Product Viewed", "properties": props}
    return orjson.dumps(ev)


def main() -> None:
    r = random.Random(34)
    out = sys.stdout.buffer
    for i in range(int(sys.argv[1])):
        out.write(line(r, i) + b"\n")


if __name__ == "__main__":
    main()
