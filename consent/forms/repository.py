"""Queries on purposes and consent forms.

Forms and purposes are published documents, not personal data: every signed-in staff member may
read them all, so nothing here narrows by scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.forms.models import ConsentForm, Purpose


def purposes(session: Session) -> Sequence[Purpose]:
    """Every purpose, in display order."""
    return session.scalars(select(Purpose).order_by(Purpose.position, Purpose.code)).all()


def get(session: Session, form_id: int) -> ConsentForm | None:
    """One form version by id."""
    return session.get(ConsentForm, form_id)


def by_sha256(session: Session, sha256: str) -> ConsentForm | None:
    """The form version with this identity hash."""
    return session.scalars(select(ConsentForm).where(ConsentForm.sha256 == sha256)).first()


def by_version(session: Session, country: str, language: str, version: int) -> ConsentForm | None:
    """One version of a country's form in one language."""
    return session.scalars(
        select(ConsentForm).where(
            ConsentForm.country_code == country,
            ConsentForm.language == language,
            ConsentForm.version == version,
        )
    ).first()


def latest_version(session: Session, country: str, language: str) -> int | None:
    """The highest version published for a country and language, or None."""
    return session.scalar(
        select(func.max(ConsentForm.version)).where(
            ConsentForm.country_code == country, ConsentForm.language == language
        )
    )


def current(session: Session, country: str, language: str, on: datetime) -> ConsentForm | None:
    """The highest version published at or before ``on``."""
    return session.scalars(
        select(ConsentForm)
        .where(
            ConsentForm.country_code == country,
            ConsentForm.language == language,
            ConsentForm.published_at <= on,
        )
        .order_by(ConsentForm.version.desc())
        .limit(1)
    ).first()


def forms(session: Session, country: str | None = None, language: str | None = None) -> Sequence[ConsentForm]:
    """Form versions by country, language and version, optionally of one country and/or language."""
    query = select(ConsentForm).order_by(ConsentForm.country_code, ConsentForm.language, ConsentForm.version)
    if country is not None:
        query = query.where(ConsentForm.country_code == country)
    if language is not None:
        query = query.where(ConsentForm.language == language)
    return session.scalars(query).all()
