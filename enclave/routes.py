"""System endpoints: liveness, readiness, the start page and self-hosted API docs."""

from __future__ import annotations

from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from enclave.readiness import check_all
from infra.web.templating import templates

system_router = APIRouter(tags=["system"])
docs_static = StaticFiles(directory=swagger_ui_bundle.swagger_ui_path)


class Health(BaseModel):
    """Liveness answer."""

    status: str


class ComponentReport(BaseModel):
    """One component's readiness."""

    name: str
    ok: bool
    detail: str
    elapsed_ms: float


class Readiness(BaseModel):
    """Readiness of every component."""

    ready: bool
    components: list[ComponentReport]


@system_router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness: the process is up and serving requests. Checks nothing else."""
    return Health(status="ok")


@system_router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "At least one component is not reachable."}},
)
def ready(request: Request) -> Any:
    """Readiness: database (and schema revision), broker, object storage and key backend, each reported."""
    results = check_all(request.app.state.components)
    body = Readiness(
        ready=all(r.ok for r in results), components=[ComponentReport(**vars(r)) for r in results]
    )
    if "text/html" in request.headers.get("accept", "") and "json" not in request.headers.get("accept", ""):
        return templates.render(request, "ready.html", {"report": body}, status=200 if body.ready else 503)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@system_router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request) -> HTMLResponse:
    """The start page."""
    return templates.render(request, "home.html")


@system_router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI served from the package's own copy (no external CDN)."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} — API",
        swagger_js_url="/docs-static/swagger-ui-bundle.js",
        swagger_css_url="/docs-static/swagger-ui.css",
        swagger_favicon_url="/docs-static/favicon-32x32.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
        init_oauth={"usePkceWithAuthorizationCodeGrant": True},
    )


@system_router.get("/docs/oauth2-redirect", include_in_schema=False)
def swagger_ui_redirect() -> HTMLResponse:
    """OAuth2 redirect target of the docs' Authorize button."""
    return get_swagger_ui_oauth2_redirect_html()
