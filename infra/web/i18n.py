"""Interface translations (gettext catalogs through Babel) and language negotiation.

Catalogs are the ``.po`` files under ``infra/web/locale`` (and any folder a domain package adds);
they are compiled in memory at start-up, so no build step is needed.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from infra.settings import SUPPORTED_LANGUAGES

LOCALE_DIR = Path(__file__).parent / "locale"
_extra_dirs: list[Path] = []


def add_catalog_dir(path: Path) -> None:
    """Let a domain package contribute its own ``<lang>/LC_MESSAGES/messages.po`` files."""
    if path not in _extra_dirs:
        _extra_dirs.append(path)
        translations_for.cache_clear()


def _load_po(path: Path, language: str) -> Translations:
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


@lru_cache(maxsize=len(SUPPORTED_LANGUAGES) + 1)
def translations_for(language: str) -> NullTranslations:
    """The merged translations of every catalog folder for one language."""
    merged: NullTranslations | None = None
    for base in (LOCALE_DIR, *_extra_dirs):
        path = base / language / "LC_MESSAGES" / "messages.po"
        if path.exists():
            loaded = _load_po(path, language)
            if merged is None or not isinstance(merged, Translations):
                merged = loaded
            else:
                merged.merge(loaded)
    return merged or NullTranslations()


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags from an Accept-Language header, best first (RFC 9110 quality values)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(candidates: Iterable[str | None], default: str) -> str:
    """First supported language among the candidates (exact tag or its primary subtag)."""
    for candidate in candidates:
        if not candidate:
            continue
        tag = candidate.lower().replace("_", "-")
        for option in (tag, tag.split("-", 1)[0]):
            if option in SUPPORTED_LANGUAGES:
                return option
    return default


def language_name(code: str) -> str:
    """The language's own name for itself, e.g. ``български`` for ``bg``."""
    return str(Locale.parse(code).get_display_name(code) or code).capitalize()
