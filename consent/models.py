"""Tables of the consent package: versioned country rules (forms, rosters and decisions come later)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, Date, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base


class GuardiansRequired(StrEnum):
    """How many of a student's guardians must consent."""

    one = "one"
    all = "all"


class Verification(StrEnum):
    """How far the legal source of a rule has been checked."""

    yes = "yes"
    partly = "partly"
    no = "no"


def _now() -> datetime:
    return datetime.now(UTC)


class CountryRule(Base):
    """One version of a country's consent rule, in force from ``effective_from`` until the next one.

    Ages are completed years on the day consent is asked. A student younger than
    ``joint_consent_from_age`` (or than ``self_consent_age`` when there is no joint band) is
    consented for by their guardian(s), with their own assent asked from ``assent_from_age``; in the
    joint band ``[joint_consent_from_age, joint_consent_to_age)`` (from inclusive, to exclusive) both
    guardian(s) and student consent; from ``self_consent_age`` the student consents alone.
    Versions are never updated: a change is a new version with a later ``effective_from``.
    """

    __tablename__ = "consent_country_rule"
    __table_args__ = (
        UniqueConstraint("country_code", "effective_from", name="uq_consent_country_rule_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    country_code: Mapped[str] = mapped_column(String(2), index=True)
    country_name: Mapped[str] = mapped_column(String(80))
    effective_from: Mapped[date] = mapped_column(Date)
    age_of_digital_consent: Mapped[int] = mapped_column(Integer)
    """The GDPR Art. 8 age set by national law (13-16), as the legal source states it."""
    self_consent_age: Mapped[int] = mapped_column(Integer)
    joint_consent_from_age: Mapped[int | None] = mapped_column(Integer)
    joint_consent_to_age: Mapped[int | None] = mapped_column(Integer)
    assent_from_age: Mapped[int | None] = mapped_column(Integer)
    guardians_required: Mapped[str] = mapped_column(String(8))
    languages: Mapped[list[str]] = mapped_column(JSON)
    letscare_country: Mapped[bool] = mapped_column(Boolean)
    legal_source: Mapped[str] = mapped_column(Text)
    """Free text: kept here, never copied into the ledger."""
    verified: Mapped[str] = mapped_column(String(8))
    notes: Mapped[str] = mapped_column(Text)
    """Free text: kept here, never copied into the ledger."""
    created_by: Mapped[str] = mapped_column(String(36))
    """The account id of the creator, or ``system`` for the shipped defaults."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
