"""HTTP endpoints under /api/consent."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/consent", tags=["consent"])
