"""Staff web sessions: the session cookie carrying the access token, and CSRF tokens for forms.

The session cookie holds the short-lived access token itself (HttpOnly, SameSite=Strict, Secure
over HTTPS, path ``/staff``), so a page request is authorised exactly like an API call and the
session ends when the token expires.

CSRF uses a signed double-submit token: a random nonce lives in its own HttpOnly cookie and every
form carries HMAC(secret key, nonce ‖ session binding). A cross-site page can neither read the
nonce nor compute the HMAC without the server's secret, and binding the HMAC to the session token
means a token minted before sign-in (or for someone else's session) is useless after it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from infra.settings import Settings

SESSION_COOKIE = "staff_session"
CSRF_COOKIE = "staff_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/staff"


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Whether cookies must be HTTPS-only: the request came over HTTPS or the service is public on it."""
    return request.url.scheme == "https" or settings.public_url.startswith("https://")


def session_token(request: Request) -> str | None:
    """The access token of the staff session cookie, if any."""
    token = request.cookies.get(SESSION_COOKIE)
    return token if token else None


def set_session(response: Response, request: Request, settings: Settings, token: str, max_age: int) -> None:
    """Start a staff session that lasts as long as its access token."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        secure=secure_cookies(request, settings),
        samesite="strict",
    )


def clear_session(response: Response) -> None:
    """End the staff session and drop its CSRF nonce."""
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    response.delete_cookie(CSRF_COOKIE, path=COOKIE_PATH)


def csrf_nonce(request: Request) -> tuple[str, bool]:
    """The request's CSRF nonce and whether it is new (and so must be set as a cookie)."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if nonce and 20 <= len(nonce) <= 100:
        return nonce, False
    return new_nonce(), True


def new_nonce() -> str:
    """A fresh random CSRF nonce."""
    return secrets.token_urlsafe(32)


def _binding(session: str | None) -> str:
    return hashlib.sha256(session.encode()).hexdigest() if session else "-"


def csrf_token(settings: Settings, nonce: str, session: str | None) -> str:
    """The form token for ``nonce`` in the given session (None before sign-in)."""
    key = settings.secret_key.get_secret_value().encode()
    message = f"csrf|{nonce}|{_binding(session)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def csrf_valid(request: Request, settings: Settings, submitted: str | None, session: str | None) -> bool:
    """True when the submitted form token matches the nonce cookie and the session."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not submitted:
        return False
    return hmac.compare_digest(csrf_token(settings, nonce, session), submitted)


def set_csrf_cookie(response: Response, request: Request, settings: Settings, nonce: str) -> None:
    """Store the CSRF nonce (a browser session cookie, readable by no script)."""
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        path=COOKIE_PATH,
        httponly=True,
        secure=secure_cookies(request, settings),
        samesite="strict",
    )


def safe_next(target: str | None) -> str:
    """A post-sign-in destination that cannot leave the staff pages (no open redirect)."""
    if target and target.startswith("/staff/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/staff/audit"


def login_redirect(request: Request) -> RedirectResponse:
    """Send an unauthenticated browser to the sign-in page, back here afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/staff/login?next={quote(here, safe='')}", status_code=303)
