"""The one exception hierarchy of the product.

Domain code raises these; the web layer maps every one of them to an RFC 9457 problem document in
one place (``enclave.app``). Nothing here knows about HTTP beyond the status code number.
"""

from __future__ import annotations

from typing import Any


class EnclaveError(Exception):
    """Base of every expected error. ``status_code`` is what a client is told."""

    status_code: int = 500
    type_slug: str = "internal-error"
    title: str = "Internal error"
    retryable: bool = False

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class BadRequest(EnclaveError):
    """The input is malformed or breaks a rule."""

    status_code = 400
    type_slug = "bad-request"
    title = "Bad request"


class ValidationFailed(EnclaveError):
    """The input is well formed but some fields are invalid."""

    status_code = 422
    type_slug = "validation-failed"
    title = "Validation failed"


class Unauthorized(EnclaveError):
    """No valid credentials were given."""

    status_code = 401
    type_slug = "unauthorized"
    title = "Authentication required"


class Forbidden(EnclaveError):
    """The caller is known but may not do this."""

    status_code = 403
    type_slug = "forbidden"
    title = "Forbidden"


class NotFound(EnclaveError):
    """The thing asked for does not exist, or the caller may not know it exists."""

    status_code = 404
    type_slug = "not-found"
    title = "Not found"


class Conflict(EnclaveError):
    """The request conflicts with the current state."""

    status_code = 409
    type_slug = "conflict"
    title = "Conflict"


class InvalidField(ValidationFailed):
    """Well-formed input that breaks a rule: the answer names the field and a machine-readable reason.

    ``location`` is where the field sits (``body``, ``query``, ``path``, or a file's part).
    """

    def __init__(self, field: str, detail: str, *, code: str, location: str = "body") -> None:
        super().__init__(
            f"{field}: {detail}",
            extra={
                "reason": code,
                "errors": [{"field": f"{location}.{field}", "message": detail, "type": code}],
            },
        )
        self.field = field
        self.code = code


class ReasonedConflict(Conflict):
    """A conflict with a machine-readable ``reason`` for clients to act on."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail, extra={"reason": code})
        self.code = code


class PayloadTooLarge(EnclaveError):
    """The request body is larger than allowed."""

    status_code = 413
    type_slug = "payload-too-large"
    title = "Payload too large"


class TooManyRequests(EnclaveError):
    """The caller is rate-limited."""

    status_code = 429
    type_slug = "too-many-requests"
    title = "Too many requests"
    retryable = True


class ServiceUnavailable(EnclaveError):
    """A component the request needs is down; the same request may succeed later."""

    status_code = 503
    type_slug = "service-unavailable"
    title = "Service unavailable"
    retryable = True
