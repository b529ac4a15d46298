"""What the country-rules API accepts and answers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from consent.models import GuardiansRequired, Verification

Age = Annotated[int, Field(ge=0, le=25, description="Completed years, 0-25.")]
LanguageCode = Annotated[str, Field(min_length=2, max_length=2, description="An ISO 639-1 code.")]


class CountryRuleCreate(BaseModel):
    """A new version of a country's rule. Ages must satisfy ``assent ≤ joint start < joint end =
    self-consent`` (see ``consent.service``); the version is immutable once created."""

    model_config = ConfigDict(extra="forbid")

    effective_from: date = Field(description="First day the version is in force (today or later).")
    age_of_digital_consent: int = Field(ge=13, le=16, description="GDPR Art. 8 age in national law.")
    self_consent_age: Age = Field(description="Age from which the student consents alone.")
    joint_consent_from_age: Age | None = Field(
        default=None, description="Start (inclusive) of the band where guardian and student both consent."
    )
    joint_consent_to_age: Age | None = Field(
        default=None, description="End (exclusive) of the joint band; must equal self_consent_age."
    )
    assent_from_age: Age | None = Field(
        default=None, description="Age from which the child's assent is asked besides the guardian's consent."
    )
    guardians_required: GuardiansRequired = GuardiansRequired.one
    languages: list[LanguageCode] = Field(min_length=1, max_length=12)
    letscare_country: bool = False
    legal_source: str = Field(min_length=1, max_length=500)
    verified: Verification = Verification.no
    notes: str = Field(default="", max_length=2000)
    country_name: str | None = Field(default=None, min_length=1, max_length=80)


class CountryRuleRead(BaseModel):
    """One version of a country's rule; ``effective_to`` is the next version's start (exclusive)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    country_code: str
    country_name: str
    effective_from: date
    effective_to: date | None
    age_of_digital_consent: int
    self_consent_age: int
    joint_consent_from_age: int | None
    joint_consent_to_age: int | None
    assent_from_age: int | None
    guardians_required: GuardiansRequired
    languages: list[str]
    letscare_country: bool
    legal_source: str
    verified: Verification
    notes: str
    created_by: str
    created_at: datetime


class DefaultsLoaded(BaseModel):
    """What a (re)load of the shipped defaults did."""

    loaded: list[str] = Field(description="Countries that received the default rule now.")
    skipped: list[str] = Field(description="Countries that already had a rule, left untouched.")
