"""Errors of the consent domain, each mapped to a problem document by the shared hierarchy."""

from __future__ import annotations

from infra.errors import Conflict, NotFound, ValidationFailed


class InvalidCountryRule(ValidationFailed):
    """A rule version is well formed but breaks a rule; the answer names the field."""

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


class RuleVersionConflict(Conflict):
    """The request clashes with the versions already recorded for the country."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail, extra={"reason": code})
        self.code = code


class CountryRuleNotFound(NotFound):
    """No rule version matches (unknown version, or no rule in force on that date)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
