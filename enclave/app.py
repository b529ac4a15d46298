"""FastAPI application factory: the composition root of the web process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from access.accounts.router import router as accounts_router
from access.audit.router import router as audit_review_router
from access.projects.router import router as projects_router
from access.web.dpo_pages import router as dpo_pages_router
from access.web.pages import router as staff_pages_router
from consent.console.pages import router as steward_console_router
from consent.decisions.router import router as consent_decisions_router
from consent.family.pages import router as family_pages_router
from consent.forms.router import router as consent_forms_router
from consent.invitations.router import router as consent_campaigns_router
from consent.requests.router import router as consent_requests_router
from consent.rosters.router import router as consent_rosters_router
from consent.router import router as consent_rules_router
from dp_queries.router import router as dp_router
from dp_queries.web.pages import router as research_portal_router
from enclave.components import Components, build_components
from enclave.datasets.router import router as datasets_router
from enclave.routes import docs_static, system_router
from infra.body_limit import BodyLimitMiddleware, RouteLimit
from infra.errors import EnclaveError
from infra.logging import configure_logging, get_logger, request_id_var
from infra.settings import Settings, get_settings
from infra.web.i18n import negotiate, parse_accept_language
from infra.web.templating import STATIC_DIR, templates

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# The API docs page loads Swagger UI from the package's own static copy; everything else is
# same-origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


def problem(
    request: Request, status: int, title: str, detail: str, type_slug: str, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": f"/problems/{type_slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id_var.get(),
    }
    body.update(extra)
    headers = {"Retry-After": str(extra.get("retry_after", 5))} if status in (429, 503) else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EnclaveError)
    async def enclave_error(request: Request, exc: EnclaveError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request.failed", error=type(exc).__name__, status=exc.status_code)
        return problem(
            request,
            exc.status_code,
            exc.title,
            exc.detail,
            exc.type_slug,
            retryable=exc.retryable,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        return problem(
            request, 422, "Validation failed", f"invalid fields: {fields}", "validation-failed", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, str(exc.detail), str(exc.detail), f"http-{exc.status_code}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request.unexpected_error", error=type(exc).__name__)
        return problem(
            request,
            500,
            "Internal error",
            "an unexpected error occurred; it has been logged",
            "internal-error",
        )


def _register_middleware(app: FastAPI, settings: Settings) -> None:
    @app.middleware("http")
    async def context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = (
            incoming
            if 8 <= len(incoming) <= 64 and incoming.isascii() and incoming.isprintable()
            else uuid.uuid4().hex
        )
        token = request_id_var.set(request_id)
        request.state.request_id = request_id
        chosen = request.query_params.get("lang")
        request.state.language = negotiate(
            [
                chosen,
                request.cookies.get("lang"),
                *parse_accept_language(request.headers.get("accept-language")),
            ],
            settings.default_language,
        )
        try:
            response = await call_next(request)
        finally:
            request_id_var.reset(token)
        response.headers[REQUEST_ID_HEADER] = request_id
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if request.url.scheme == "https":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if chosen and chosen == request.state.language:
            response.set_cookie("lang", chosen, max_age=365 * 86400, httponly=True, samesite="lax")
        response.headers.setdefault("Content-Language", request.state.language)
        return response


def keep_uploads_in_memory() -> None:
    """Uploaded files (rosters, research data: identified) stay in memory while a request is parsed.

    Starlette spools a multipart file above 1 MiB to a temporary file, which would put identified
    data on disk in plaintext. Uploads are bounded (``ingestion.MAX_UPLOAD``; larger data goes
    through the streamed, encrypted raw-body route or the command line), so they are kept in memory.
    """
    from starlette.formparsers import MultiPartParser

    from enclave.datasets.ingestion import MAX_UPLOAD

    MultiPartParser.spool_max_size = MAX_UPLOAD + 1


MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest request body of an ordinary route (JSON, forms, a consent form's Markdown file)."""
MAX_BULK_BODY_BYTES = 8 * 1024 * 1024
"""Largest body of a bulk request: a status batch of 50,000 pseudonyms is about 3.5 MB of JSON."""
MULTIPART_ENVELOPE = 64 * 1024
"""Room for the multipart boundaries and part headers around an uploaded file."""
MAX_STREAMED_UPLOAD_BYTES = 16 * 1024**3
"""Largest raw body of the streamed dataset upload (encrypted into a staging object as it arrives)."""


def body_limits() -> list[RouteLimit]:
    """The routes whose request bodies may be larger (or smaller) than ``MAX_BODY_BYTES``."""
    from enclave.datasets.ingestion import MAX_UPLOAD

    upload = MAX_UPLOAD + MULTIPART_ENVELOPE
    dataset = r"/api/datasets/[^/]+"
    return [
        # Multipart uploads, parsed in memory; each route also checks its own file limit.
        RouteLimit("POST", r"/api/consent/rosters/(students|guardians|teachers)(/validate)?/?", upload),
        RouteLimit("POST", r"/staff/steward/rosters/?", upload),
        RouteLimit("POST", rf"{dataset}/versions/?", upload),
        # The raw body is streamed into an encrypted staging object, never held whole in memory.
        RouteLimit("POST", rf"{dataset}/uploads/?", MAX_STREAMED_UPLOAD_BYTES),
        RouteLimit("POST", r"/api/consent/status/?", MAX_BULK_BODY_BYTES),
        RouteLimit("POST", r"/api/datasets/?", MAX_BULK_BODY_BYTES),
    ]


def create_app(settings: Settings | None = None, components: Components | None = None) -> FastAPI:
    """Build the web application for the given settings (or the environment's)."""
    settings = settings or get_settings()
    keep_uploads_in_memory()
    configure_logging(settings.log_level, settings.log_json)
    components = components or build_components(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if settings.tasks_in_process and app.state.run_scheduler:
            from infra.tasks import InProcessScheduler

            scheduler = InProcessScheduler()
            scheduler.start()
        log.info(
            "app.started", environment=settings.environment.value, in_process_tasks=settings.tasks_in_process
        )
        yield
        if scheduler is not None:
            scheduler.stop()

    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="LET'S CARE research enclave",
        version="0.1.0",
        description=(
            "Consent management, encrypted pseudonymised research data and differentially private "
            "aggregate queries for the LET'S CARE project. Errors are RFC 9457 problem documents."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.components = components
    app.state.run_scheduler = False
    _register_error_handlers(app)
    # Added first, so it runs inside the request-context middleware (request id, headers on the 413).
    app.add_middleware(BodyLimitMiddleware, default_bytes=MAX_BODY_BYTES, routes=body_limits())
    _register_middleware(app, settings)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/docs-static", docs_static, name="docs-static")
    app.include_router(system_router)
    app.include_router(accounts_router)
    app.include_router(audit_review_router)
    app.include_router(staff_pages_router)
    app.include_router(dpo_pages_router)
    app.include_router(projects_router)
    app.include_router(consent_rules_router)
    app.include_router(consent_forms_router)
    app.include_router(consent_rosters_router)
    app.include_router(consent_decisions_router)
    app.include_router(consent_requests_router)
    app.include_router(consent_campaigns_router)
    app.include_router(family_pages_router)
    app.include_router(steward_console_router)
    app.include_router(datasets_router)
    app.include_router(dp_router)
    app.include_router(research_portal_router)
    templates.env.globals.setdefault("settings_public_url", settings.public_url)
    return app
