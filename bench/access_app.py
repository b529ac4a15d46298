"""The product's app plus two no-op endpoints, one open and one behind authentication (benchmark only)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from access.dependencies import CurrentPrincipal
from enclave.app import create_app

router = APIRouter(prefix="/bench")


@router.get("/open")
def open_noop() -> dict[str, bool]:
    """No authentication."""
    return {"ok": True}


@router.get("/authorised")
def authorised_noop(principal: CurrentPrincipal) -> dict[str, bool]:
    """Bearer token verified and account loaded, exactly as every protected endpoint does."""
    return {"ok": bool(principal.account_id)}


def app() -> FastAPI:
    """App factory for ``uvicorn --factory``; settings come from the environment."""
    web = create_app()
    web.include_router(router)
    return web
