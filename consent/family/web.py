"""The family page request: its session's person, rendering with the shared helpers, the session
cookie and the CSRF check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from babel.dates import format_date, format_datetime
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from consent.family import service
from consent.family.service import Family
from consent.invitations import service as invitations
from infra.settings import SUPPORTED_LANGUAGES
from infra.web.deps import SessionDep
from infra.web.i18n import language_name, translations_for
from infra.web.templating import templates

COOKIE = "family_session"
PROJECT_CONTACT = "dpo@letscare-project.eu"


@dataclass
class FamilyPage:
    """One family page request: the session's person (None when there is no live session)."""

    request: Request
    session: Session
    family: Family | None

    @property
    def language(self) -> str:
        """The interface language negotiated for this request."""
        return str(getattr(self.request.state, "language", "en"))

    @property
    def preferred_languages(self) -> list[str | None]:
        """For the form: a language the person chose, else the one the school gave, else the browser's."""
        family = self.family.language if self.family is not None else None
        return [self.request.cookies.get("lang"), family, self.language]

    def gettext(self, message: str) -> str:
        """Translate an interface string into the page language."""
        return str(translations_for(self.language).gettext(message))

    def render(self, name: str, context: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
        """Render a family template with the helpers every page uses."""
        values: dict[str, Any] = {
            "family": self.family,
            "csrf_token": self.family.session.csrf_token if self.family else "",
            "month_year": lambda y, m: format_date(date(y, m, 1), "MMMM y", locale=self.language),
            "when": self.when,
            "contact": PROJECT_CONTACT,
            "interface_languages": [(c, language_name(c)) for c in SUPPORTED_LANGUAGES],
        }
        values.update(context or {})
        response = templates.render(self.request, name, values, status=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def when(self, moment: datetime | None) -> str:
        """A date and time in words of the page language, in UTC."""
        if moment is None:
            return ""
        return format_datetime(
            moment.astimezone(UTC), "d MMMM y, HH:mm 'UTC'", tzinfo=UTC, locale=self.language
        )

    def expired(self) -> HTMLResponse:
        """No live session: how to get back in."""
        return self.render("family_link_unusable.html", {"reason": "session"}, status=401)

    def not_found(self) -> HTMLResponse:
        """A subject or receipt this person may not see (or that does not exist)."""
        return self.render("family_message.html", {"kind": "not_found"}, status=404)

    def forbidden(self) -> HTMLResponse:
        """A POST without this session's CSRF token: nothing was recorded."""
        return self.render("family_message.html", {"kind": "csrf"}, status=403)


def family_page(request: Request, session: SessionDep) -> FamilyPage:
    """The family session of the request, if any."""
    return FamilyPage(request, session, service.family_for(session, request.cookies.get(COOKIE)))


Page = Annotated[FamilyPage, Depends(family_page)]


def csrf_ok(page: FamilyPage, submitted: Any) -> bool:
    """Whether a POST carries the CSRF token of the live family session (compared in constant time)."""
    if page.family is None or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(page.family.session.csrf_token.encode(), submitted.encode())


def start_session(request: Request, opened: invitations.OpenedSession) -> Response:
    """Set the family session cookie and go to the home page, in the language the school gave."""
    target = "/family"
    if "lang" not in request.query_params and opened.invitation.language in SUPPORTED_LANGUAGES:
        target += f"?lang={opened.invitation.language}"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        opened.cookie,
        max_age=invitations.SESSION_MINUTES * 60,
        path="/",
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def link_keys(request: Request) -> Any:
    """The key-management backend that hashes links and codes."""
    return request.app.state.components.keys
