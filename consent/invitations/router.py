"""HTTP endpoints of invitation campaigns under /api/consent/campaigns."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/consent/campaigns", tags=["consent"])
