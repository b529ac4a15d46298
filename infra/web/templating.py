"""Jinja2 environment shared by every page, with gettext bound per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from infra.settings import SUPPORTED_LANGUAGES
from infra.web.i18n import language_name, translations_for

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


class Templates:
    """A Jinja2 environment whose loaders later packages can extend with their own folders."""

    def __init__(self) -> None:
        self._loaders: list[FileSystemLoader] = [FileSystemLoader(TEMPLATE_DIR)]
        self.env = Environment(
            loader=ChoiceLoader(self._loaders),
            autoescape=select_autoescape(["html", "xml"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["languages"] = [(code, language_name(code)) for code in SUPPORTED_LANGUAGES]

    def add_folder(self, path: Path) -> None:
        """Put a package's template folder before the shared ones."""
        self._loaders.insert(0, FileSystemLoader(path))

    def render(
        self, request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
    ) -> HTMLResponse:
        """Render a page in the request's negotiated language."""
        language = getattr(request.state, "language", "en")
        translations = translations_for(language)
        template = self.env.get_template(name)
        values: dict[str, Any] = {
            "request": request,
            "lang": language,
            "_": translations.gettext,
            "gettext": translations.gettext,
            "ngettext": translations.ngettext,
            "current_path": request.url.path,
        }
        values.update(context or {})
        return HTMLResponse(template.render(values), status_code=status)


templates = Templates()
