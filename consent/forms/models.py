"""Tables of purposes and consent forms.

A form version is published once and never changed: its texts, their SHA-256 and its purposes are
fixed at publication. A new wording is a new version.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from infra.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class Audience(StrEnum):
    """Who a form text is written for."""

    guardian = "guardian"
    """A parent or legal guardian consenting for a child."""
    child = "child"
    """A student: child-friendly wording, for assent or the student's own consent."""
    adult = "adult"
    """A teacher (an adult consenting for themselves)."""


class Purpose(Base):
    """A purpose consent is asked for, granular and unbundled (e.g. ``school_records``)."""

    __tablename__ = "consent_purpose"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    special_category: Mapped[bool] = mapped_column(Boolean, default=False)
    """Art. 9 data (health, special needs, ethnicity): explicit consent."""
    position: Mapped[int] = mapped_column(Integer)
    """Display order."""
    description: Mapped[str] = mapped_column(Text)
    """English summary for staff; families read the form texts."""


class ConsentForm(Base):
    """One published version of a country's form in one language."""

    __tablename__ = "consent_form"
    __table_args__ = (
        UniqueConstraint("country_code", "language", "version", name="uq_consent_form_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    country_code: Mapped[str] = mapped_column(String(2), index=True)
    language: Mapped[str] = mapped_column(String(2))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    """Identity of the version: SHA-256 over the SHA-256 of each rendered text, in audience order."""
    valid_until: Mapped[date | None] = mapped_column(Date)
    """Consents given under this version expire on this day (exclusive); None: no expiry."""
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    published_by: Mapped[str] = mapped_column(String(36))
    source_name: Mapped[str] = mapped_column(String(200))
    """The file (or upload) the version came from, for the record."""

    texts: Mapped[list[ConsentFormText]] = relationship(
        back_populates="form", order_by="ConsentFormText.audience", lazy="selectin"
    )
    purposes: Mapped[list[ConsentFormPurpose]] = relationship(
        back_populates="form", order_by="ConsentFormPurpose.purpose", lazy="selectin"
    )


class ConsentFormText(Base):
    """The text of a form version for one audience, as authored and as rendered."""

    __tablename__ = "consent_form_text"
    __table_args__ = (UniqueConstraint("form_id", "audience", name="uq_consent_form_text_audience"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("consent_form.id", ondelete="RESTRICT"))
    audience: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    markdown: Mapped[str] = mapped_column(Text)
    rendered_html: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    """SHA-256 of ``rendered_html`` encoded as UTF-8: what a decision records as the text shown."""

    form: Mapped[ConsentForm] = relationship(back_populates="texts")


class ConsentFormPurpose(Base):
    """A purpose asked for by a form version, required or optional, with the hash of its wording."""

    __tablename__ = "consent_form_purpose"

    form_id: Mapped[int] = mapped_column(ForeignKey("consent_form.id", ondelete="RESTRICT"), primary_key=True)
    purpose: Mapped[str] = mapped_column(ForeignKey("consent_purpose.code"), primary_key=True)
    required: Mapped[bool] = mapped_column(Boolean)
    section_sha256: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the purpose's sections in every audience's text: a new form version whose hash
    differs for a purpose changes that purpose, and consents given under the old wording then need
    renewing (``reconsent_required``)."""

    form: Mapped[ConsentForm] = relationship(back_populates="purposes")
