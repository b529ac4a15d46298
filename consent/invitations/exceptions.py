"""Errors of invitations: a link or code that cannot be used, and too many wrong codes."""

from __future__ import annotations

from infra.errors import EnclaveError, TooManyRequests

NEXT_STEP = {
    "unknown": "This link or code is not valid. Check it, or ask the school for a new one.",
    "used": "This link was already used. Ask the school or the project for a new link.",
    "expired": "This link has expired. Ask the school or the project for a new link.",
    "replaced": "A newer invitation replaced this one: use the most recent email or letter.",
}


class LinkNotUsable(EnclaveError):
    """A link or code that cannot open the family pages, with what to do next."""

    status_code = 410
    type_slug = "link-not-usable"
    title = "This link cannot be used"

    def __init__(self, reason: str) -> None:
        super().__init__(NEXT_STEP[reason], extra={"reason": reason})
        self.reason = reason


class CodeAttemptsExceeded(TooManyRequests):
    """Too many wrong codes from one address: wait before trying again."""

    def __init__(self, minutes: int) -> None:
        super().__init__(
            f"Too many wrong codes. Wait {minutes} minutes and try again, or ask the school for help.",
            extra={"reason": "too_many_attempts", "retry_after_seconds": minutes * 60},
        )
