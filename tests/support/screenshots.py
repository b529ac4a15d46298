"""Screenshots for the user guide, taken by the browser journeys so the guide shows the product as it is.

Each journey calls ``capture(page, "<role>-<step>")`` at the moments a guide page shows; the picture
is written to ``docs/guide/img/<name>.png`` (a fixed viewport, so pictures only change when the page
does). Run the browser tests (``.venv/bin/pytest -m browser``) and commit the changed pictures with
the change that altered the page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GUIDE_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "guide" / "img"
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def capture(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of ``page`` (a Playwright page) as ``docs/guide/img/<name>.png``; its path."""
    if not NAME.match(name):
        raise ValueError(f"screenshot names are lower-case words joined by '-': {name!r}")
    GUIDE_IMAGES.mkdir(parents=True, exist_ok=True)
    path = GUIDE_IMAGES / f"{name}.png"
    page.set_viewport_size({"width": 1100, "height": 800})
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path
