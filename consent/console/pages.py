"""Steward console pages (server-rendered)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/steward", tags=["steward console"], include_in_schema=False)
