"""Errors of the rosters, each mapped to a problem document by the shared hierarchy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from infra.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed

if TYPE_CHECKING:
    from consent.rosters.csv_format import LineError


class RosterFileRejected(ValidationFailed):
    """The file as a whole cannot be read (encoding, header, no rows); nothing was imported."""

    def __init__(self, detail: str, *, code: str, line: int | None = None) -> None:
        errors = [{"line": line, "column": None, "message": detail, "type": code}]
        super().__init__(detail, extra={"reason": code, "errors": errors, "error_count": 1})
        self.code = code


class RosterLinesRejected(ValidationFailed):
    """Some rows are invalid; every problem is listed and nothing was imported."""

    def __init__(self, errors: Sequence[LineError], *, limit: int) -> None:
        lines = sorted({error.line for error in errors})
        shown = sorted(errors, key=lambda e: e.line)[:limit]
        super().__init__(
            f"{len(lines)} row(s) have problems (first: row {lines[0]}); nothing was imported",
            extra={
                "reason": "invalid_rows",
                "error_count": len(errors),
                "rows_with_errors": len(lines),
                "errors": [error.as_dict() for error in shown],
                "truncated": len(errors) > len(shown),
            },
        )
        self.errors = list(errors)


class RosterFileTooLarge(PayloadTooLarge):
    """The upload is over the size limit; it was not read."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the file is larger than {limit // (1024 * 1024)} MiB: split it by school and import each part",
            extra={"reason": "file_too_large", "limit_bytes": limit},
        )


class RosterEntryNotFound(NotFound):
    """No such student, guardian or teacher within the caller's scope (existence is not revealed)."""

    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"no {kind} {identifier} in your scope", extra={"reason": "not_found"})


class InvalidRectification(ValidationFailed):
    """A rectified field breaks a rule; the answer names the field."""

    def __init__(self, field: str, detail: str, *, code: str) -> None:
        super().__init__(
            f"{field}: {detail}",
            extra={"reason": code, "errors": [{"field": f"body.{field}", "message": detail, "type": code}]},
        )


class IdentityTaken(Conflict):
    """A rectified reference or email already belongs to another entry."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: already belongs to another entry", extra={"reason": f"{field}_taken"})
