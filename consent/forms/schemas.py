"""What the consent-forms API answers."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from consent.forms.models import Audience


class PurposeRead(BaseModel):
    """A purpose consent may be asked for."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    special_category: bool = Field(description="Art. 9 data: explicit consent, never required.")
    position: int = Field(description="Display order.")
    description: str = Field(description="English summary for staff; families read the form texts.")


class FormPurposeRead(BaseModel):
    """A purpose asked for by a form version."""

    model_config = ConfigDict(from_attributes=True)

    purpose: str
    required: bool
    section_sha256: str = Field(
        description="SHA-256 of the purpose's sections in the three texts: changes when its wording does."
    )


class FormTextRead(BaseModel):
    """One audience's text: as authored, as rendered, and the SHA-256 of the rendered HTML (UTF-8)."""

    model_config = ConfigDict(from_attributes=True)

    audience: Audience
    title: str
    markdown: str
    rendered_html: str
    sha256: str


class FormSummary(BaseModel):
    """A published form version without its texts."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    country_code: str
    language: str
    version: int
    sha256: str = Field(description="SHA-256 over the three text hashes (adult, child, guardian).")
    valid_until: date | None
    published_at: datetime
    published_by: str
    source_name: str
    purposes: list[FormPurposeRead]


class FormRead(FormSummary):
    """A published form version with its three texts."""

    texts: list[FormTextRead]
