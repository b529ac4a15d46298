"""Errors of the consent domain, each mapped to a problem document by the shared hierarchy."""

from __future__ import annotations

from infra.errors import InvalidField, NotFound, ReasonedConflict


class InvalidCountryRule(InvalidField):
    """A rule version is well formed but breaks a rule; the answer names the field."""


class RuleVersionConflict(ReasonedConflict):
    """The request clashes with the versions already recorded for the country."""


class CountryRuleNotFound(NotFound):
    """No rule version matches (unknown version, or no rule in force on that date)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
