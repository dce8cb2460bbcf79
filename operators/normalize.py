"""Free-text context fields reduced to a small set of values before they reach any state.

Locale becomes a BCP 47 ``language[-Region]`` tag, device type one of ``DEVICE_TYPES``,
campaign source a short token with no personal data in it; anything else is dropped
(``None``), so a profile can never carry what a client typed into those fields.

>>> normalize_locale("en_us"), normalize_locale("zh-Hant-TW"), normalize_locale("ann@x.io")
('en-US', 'zh-TW', None)
>>> normalize_locale("en-"), normalize_locale("-"), normalize_locale("en-U")
('en', None, None)
>>> normalize_device("iPad"), normalize_device("Smart TV"), normalize_device("toaster")
('tablet', 'tv', 'other')
>>> normalize_device("ios"), normalize_device("tvos"), normalize_device("Android")
('mobile', 'tv', 'mobile')
>>> normalize_source("google"), normalize_source("ann@x.io"), normalize_source("+1-555-0100")
('google', None, None)
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from typing import Final

from audienceflow.operators.scrub import has_pii

# Printable characters that show nothing: the space, and those Unicode lists as default
# ignorable or draws blank (the combining grapheme joiner, Hangul and Khmer fillers,
# variation selectors, the Braille blank). Every other blank character is whitespace
# or a format character (zero-width space and joiners, BOM, bidirectional marks, soft
# hyphen), which ``str.isprintable`` already calls unprintable.
BLANK_PRINTABLE: Final = frozenset(
    " \u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)


def blank(text: str) -> bool:
    """``text`` shows nothing: only whitespace, format characters and blank ones (an id or
    an event name so made names nothing, as one of spaces does; ``""`` is blank).

    >>> blank(" \u200b\ufeff"), blank("\u3164"), blank("u\u200b1"), blank("\u00e9")
    (True, True, False, False)
    """
    for c in text:
        if c.isprintable():
            if c not in BLANK_PRINTABLE:
                return False
        elif not (c.isspace() or unicodedata.category(c) == "Cf"):
            return False  # a control, private-use or unassigned character: not blank
    return True


DEVICE_TYPES = ("mobile", "desktop", "tablet", "tv", "other")
_DEVICE_ALIASES = {
    "mobile": "mobile",
    "phone": "mobile",
    "smartphone": "mobile",
    "ios": "mobile",
    "android": "mobile",
    "iphone": "mobile",
    "desktop": "desktop",
    "pc": "desktop",
    "laptop": "desktop",
    "computer": "desktop",
    "mac": "desktop",
    "macos": "desktop",
    "windows": "desktop",
    "linux": "desktop",
    "tablet": "tablet",
    "ipad": "tablet",
    "ipados": "tablet",  # RudderStack's iOS SDK sends UIDevice's systemName: iPadOS on an iPad
    "tv": "tv",
    "tvos": "tv",  # analytics-swift on Apple TV (else ios, macos, watchos)
    "smarttv": "tv",
    "smart-tv": "tv",
    "smart tv": "tv",
    "television": "tv",
    "ctv": "tv",
}
_LOCALE = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z]{4})?(?:[-_]([A-Za-z]{2}|\d{3}))?")
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_DIGITS = re.compile(r"\d")
MAX_SOURCE_DIGITS: Final = 6  # a longer run of digits may be a phone or account number


def normalize_locale(value: str) -> str | None:
    """A BCP 47 ``language[-Region]`` tag (script dropped), or ``None`` if not one.

    A trailing separator is dropped: Segment's Android libraries write ``language + "-" +
    country``, which is ``en-`` on a device whose locale names no country.
    """
    m = _LOCALE.fullmatch(value.strip().rstrip("-_"))
    if m is None:
        return None
    lang, region = m.group(1).lower(), m.group(2)
    return sys.intern(f"{lang}-{region.upper()}" if region else lang)


def normalize_device(value: str) -> str:
    """One of ``DEVICE_TYPES``; anything unknown is ``other``."""
    return _DEVICE_ALIASES.get(value.strip().lower(), "other")


# A browser's user agent, read when a call has no ``context.device.type`` (analytics.js
# never sends one). The tokens are those browsers and devices put in their user agents;
# checked in this order, lower-cased: a TV, a console or a robot first (their agents
# also name a desktop or a phone system), then a tablet, a phone, a desktop.
_AGENT_TV = ("smart-tv", "smarttv", "smart tv", "googletv", "appletv", "apple tv", "tvos",
             "crkey", "roku/", "bravia", "web0s", "hbbtv", "netcast", "aftb", "aftm", "aftt",
             "aftss", "android tv")  # fmt: skip
# A Fire TV's model in an Android agent (``Android 9; AFTN Build/PS7633``): every Fire TV
# model Amazon lists starts with ``AFT`` (``device_from_model``).
_AGENT_FIRE_TV = re.compile(r"; aft[a-z0-9]+ build/")
_AGENT_OTHER = re.compile(r"xbox|playstation|nintendo|bot\b|crawler|spider|headless")
_AGENT_TABLET = ("ipad", "tablet", "kindle", "silk/", "playbook")
_AGENT_MOBILE = ("mobi", "iphone", "ipod", "android", "windows phone", "blackberry",
                 "opera mini")  # fmt: skip
_AGENT_DESKTOP = ("windows nt", "macintosh", "x11", "cros", "linux")
MAX_AGENT_CACHED = 512  # characters; a longer user agent is read each time, never kept


def device_from_agent(agent: str) -> str:
    """One of ``DEVICE_TYPES`` from a browser's ``User-Agent`` (MDN: "Mobi" marks a phone;
    an Android agent without it is a tablet). An iPad asking for desktop sites (iPadOS 13+
    Safari) sends a Mac's agent and reads as a desktop.

    >>> device_from_agent("Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36")
    'tablet'
    >>> device_from_agent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    'other'
    >>> device_from_agent("Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A.230901.001)")
    'mobile'
    """
    ua = agent.lower()
    if any(t in ua for t in _AGENT_TV) or _AGENT_FIRE_TV.search(ua) is not None:
        return "tv"
    if _AGENT_OTHER.search(ua) is not None:
        return "other"
    if any(t in ua for t in _AGENT_TABLET):
        return "tablet"
    if ua.startswith("dalvik/"):
        # Android's own HTTP agent (``http.agent``), which Android SDKs send as the call's
        # user agent: no browser's, so no "Mobi" marks a phone. Read as ``android`` is.
        return "mobile"
    if "android" in ua and "mobi" not in ua:
        return "tablet"
    if any(t in ua for t in _AGENT_MOBILE):
        return "mobile"
    if any(t in ua for t in _AGENT_DESKTOP):
        return "desktop"
    return "other"


def platform_type(value: str) -> str | None:
    """``android`` or ``ios`` if a device type names a platform rather than a form, else
    ``None``: Segment's analytics-kotlin sends ``android`` on a phone, a tablet and a TV
    alike, analytics-ios ``ios`` on an Apple TV too (analytics-swift sends ``tvos`` there).

    >>> platform_type(" Android"), platform_type("iOS"), platform_type("mobile")
    ('android', 'ios', None)
    """
    low = value.strip().lower()
    return low if low in ("android", "ios") else None


def device_from_model(model: str) -> str | None:
    """``tv`` if a hardware model name (``context.device.model``) is a TV's, else ``None``.

    Segment's analytics-kotlin sends ``Build.MODEL`` with the device type ``android`` on
    a phone and a TV alike; analytics-ios sends the hardware identifier (``hw.machine``)
    with ``ios`` on an Apple TV too. Only names a TV alone carries are read, so a phone is
    never taken for a TV: Amazon's Fire TV models (``AFTMM``, ``AFTN``, ``AFTKA``, the
    Fire TV Edition sets' ``AFTEU011``; Amazon's list of Build.MODEL values starts each
    with ``AFT``, its Fire tablets' with ``KF``), an Apple TV's identifier (``AppleTV11,1``),
    and Android TV models that say so (NVIDIA's ``SHIELD Android TV``) or Sony's
    ``BRAVIA``. Other Android TV boxes and sets name a model alone (``Chromecast``,
    ``MIBOX4``), as a phone does, and stay ``mobile``.

    >>> [device_from_model(m) for m in ("AFTMM", "SHIELD Android TV", "AppleTV11,1")]
    ['tv', 'tv', 'tv']
    >>> [device_from_model(m) for m in ("KFTRWI", "Pixel 8", "iPhone15,3")]
    [None, None, None]
    """
    low = model.lower()
    if model.startswith(("AFT", "AppleTV")) or "android tv" in low or low.startswith("bravia"):
        return "tv"
    return None


def normalize_source(value: str) -> str | None:
    """The campaign source if it is a short token without personal data, else ``None``."""
    if _SOURCE.fullmatch(value) is None or has_pii(value):
        return None
    if len(_DIGITS.findall(value)) > MAX_SOURCE_DIGITS:
        return None
    return sys.intern(value)


class Normalized(dict[str, str | None]):
    """``fn(value)`` by ``self[value]``: a dict read per event where a ``lru_cache`` call
    costs more (its bookkeeping), computed on a miss; at most ``size`` values (then
    cleared), in memory only.

    >>> DEVICES["Smart TV"], LOCALES["ann@x.io"]
    ('tv', None)
    """

    def __init__(self, fn: Callable[[str], str | None], size: int = 4096) -> None:
        super().__init__()
        self.fn = fn
        self.size = size

    def __missing__(self, value: str) -> str | None:
        if len(value) > MAX_AGENT_CACHED:  # read each time, never kept: 4096 keys of 30 KB
            return self.fn(value)  # each held ~130 MB (a device type padded by a sender)
        if len(self) >= self.size:
            self.clear()
        out = self[value] = self.fn(value)
        return out


DEVICES: Final = Normalized(normalize_device)
AGENTS: Final = Normalized(device_from_agent)
MODELS: Final = Normalized(device_from_model)
PLATFORMS: Final = Normalized(platform_type)
LOCALES: Final = Normalized(normalize_locale)
SOURCES: Final = Normalized(normalize_source)
