"""HTTP endpoints under /api/consent/rosters."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/consent/rosters", tags=["consent"])
