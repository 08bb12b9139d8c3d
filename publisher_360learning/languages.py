"""A provider's language code as one of 360Learning's (:data:`.contract.LANGUAGES`), or None.

360Learning takes a fixed list of about 80 codes, spelled its own way (``he_IL``, ``zh_tw``,
``zh_HANT``, ``pt_BR``); providers send BCP 47 tags or Java locales (``he``, ``pt-BR``, ``zh_TW``,
LinkedIn's legacy ``in`` for Indonesian). :func:`language_360` reads any of them, whatever the
case or separator:

1. a legacy or alternative language subtag becomes today's (``in`` → ``id``, ``iw`` → ``he``,
   ``nb`` → ``no``, ``fil`` → ``tl``);
2. the code itself, when 360Learning lists it (case-insensitive: ``zh_TW`` is ``zh_tw``);
3. without the script (``zh-Hant-TW`` → ``zh_tw``), then the script alone (``zh-Hant`` → ``zh_HANT``);
   Chinese of Hong Kong and Macao is written in traditional characters (``zh_HANT``);
4. the language alone (``pt_PT`` → ``pt``, ``en_US`` → ``en``);
5. the one regional form 360Learning lists for a language it has no bare code for
   (``he`` → ``he_IL``, ``sw_TZ`` → ``sw_KE``).

A code none of these reach (Persian ``fa``: 360Learning offers none) gives None; the caller then
uses the connection's default language. Steps 1, 3 and 5 are our reading (INFERRED).
"""
from __future__ import annotations

import re

from marshmallow import validate

from . import contract

LISTED_LANGUAGE = validate.OneOf(contract.LANGUAGES,
                                 error="must be one of 360Learning's language codes (en, fr, pt_BR, he_IL…)")
_LISTED = {code.casefold(): code for code in contract.LANGUAGES}
_LEGACY = {"in": "id", "iw": "he", "ji": "yi", "nb": "no", "fil": "tl", "zho": "zh", "chi": "zh"}
_TRADITIONAL_REGIONS = {"hk", "mo"}


def _regional_only() -> dict[str, str]:
    """Languages 360Learning lists only with one region: ``he`` → ``he_IL``."""
    forms: dict[str, list[str]] = {}
    for code in contract.LANGUAGES:
        lang, _, region = code.partition("_")
        if region and lang not in _LISTED:
            forms.setdefault(lang, []).append(code)
    return {lang: codes[0] for lang, codes in forms.items() if len(codes) == 1}


_REGIONAL_ONLY = _regional_only()
_SHAPE = re.compile(r"^[a-z]{2,3}(_[a-z0-9]{2,8})*$")


def language_360(code: object) -> str | None:
    """360Learning's spelling of the language ``code`` names, or None when it offers none."""
    if not isinstance(code, str):
        return None
    text = code.strip().replace("-", "_").casefold()
    if not _SHAPE.match(text):
        return None
    lang, *rest = text.split("_")
    lang = _LEGACY.get(lang, lang)
    script = next((p for p in rest if len(p) == 4 and p.isalpha()), None)
    region = next((p for p in rest if len(p) == 2 or p.isdigit()), None)
    candidates = ["_".join([lang, *rest])]
    if region:
        candidates.append(f"{lang}_{region}")
    if script:
        candidates.append(f"{lang}_{script}")
    if lang == "zh" and region in _TRADITIONAL_REGIONS:
        candidates.append("zh_hant")
    candidates.append(lang)
    for candidate in candidates:
        if candidate in _LISTED:
            return _LISTED[candidate]
    return _REGIONAL_ONLY.get(lang)
