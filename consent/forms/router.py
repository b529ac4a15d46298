"""HTTP endpoints under /api/consent/forms."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/consent/forms", tags=["consent"])
