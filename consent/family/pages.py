"""Family pages (server-rendered, no JavaScript needed)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["family pages"], include_in_schema=False)
