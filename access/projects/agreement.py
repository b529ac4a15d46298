"""The data-use agreement researchers accept: versioned Markdown files shipped with the package."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AGREEMENTS_DIR = Path(__file__).parent / "agreements"
CURRENT_AGREEMENT_VERSION = "1.0"
"""Raise this (and add the new file) to make every earlier acceptance outdated."""
_VERSION = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,4}){0,2}$")


@dataclass(frozen=True)
class Agreement:
    """One version of the agreement and the SHA-256 of its exact bytes."""

    version: str
    sha256: str
    text: str


@lru_cache(maxsize=8)
def load_agreement(version: str) -> Agreement:
    """Read one version of the agreement; raise LookupError when there is no such version."""
    if not _VERSION.match(version):
        raise LookupError(f"no data-use agreement version {version!r}")
    path = AGREEMENTS_DIR / f"data-use-agreement-{version}.md"
    if not path.is_file():
        raise LookupError(f"no data-use agreement version {version!r}")
    raw = path.read_bytes()
    return Agreement(version=version, sha256=hashlib.sha256(raw).hexdigest(), text=raw.decode("utf-8"))


def current_agreement() -> Agreement:
    """The version a researcher must accept today."""
    return load_agreement(CURRENT_AGREEMENT_VERSION)
