"""HTTP endpoints under /api/consent/requests."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/consent/requests", tags=["consent"])
