"""Ages and regimes in Python, for recording decisions and for the re-consent scan.

The status SQL in ``consent.decisions.status`` computes the same things for many subjects at once;
both follow the rules stated there (a student reaches an age on the first day of the month after
their birth month).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from consent.models import CountryRule


class Regime(StrEnum):
    """Who consents for a student of a given age under a given rule."""

    guardian = "guardian"
    joint = "joint"
    self = "self"


def age_on(birth_year: int, birth_month: int, day: date) -> int:
    """Completed years on ``day``, counting the birthday as the first of the month after the birth month."""
    return day.year - birth_year - (1 if day.month <= birth_month else 0)


def birthday_of_age(birth_year: int, birth_month: int, age: int) -> date:
    """The first day on which ``age_on`` gives ``age``."""
    year, month = birth_year + age, birth_month + 1
    if month == 13:
        year, month = year + 1, 1
    return date(year, month, 1)


def regime(rule: CountryRule, age: int) -> Regime:
    """The regime of a student of ``age`` under ``rule``."""
    if age >= rule.self_consent_age:
        return Regime.self
    if rule.joint_consent_from_age is not None and age >= rule.joint_consent_from_age:
        return Regime.joint
    return Regime.guardian


def assent_needed(rule: CountryRule, age: int) -> bool:
    """Whether the child's assent is asked at this age (in the guardian regime)."""
    return rule.assent_from_age is not None and age >= rule.assent_from_age
