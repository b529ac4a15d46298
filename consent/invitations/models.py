"""Tables of invitations, their campaigns, family sessions and code-entry attempts.

Neither a link's token nor a short code is stored: only a keyed hash of each (HMAC under a key of
the key-management backend), so a copy of the database does not let anyone open a family's pages,
nor guess codes offline.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


def _uuid() -> str:
    return str(uuid.uuid4())


class InviteeKind(StrEnum):
    """Who an invitation is for."""

    guardian = "guardian"
    student = "student"
    teacher = "teacher"


class InvitationChannel(StrEnum):
    """How the invitation reaches the person."""

    email = "email"
    letter = "letter"
    """A printed letter handed out by the school, with a QR code and a short code."""


class InvitationReason(StrEnum):
    """Why the invitation was sent."""

    invitation = "invitation"
    reminder = "reminder"
    reconsent = "reconsent"


class Campaign(Base):
    """A batch of invitations a data steward sent for one school."""

    __tablename__ = "consent_campaign"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    country_code: Mapped[str] = mapped_column(String(2))
    school_code: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(String(12))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Invitation(Base):
    """One person's single-use link (and short code), valid until ``expires_at``."""

    __tablename__ = "consent_invitation"
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN guardian_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN student_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN teacher_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_invitee",
        ),
        Index("ix_consent_invitation_campaign", "campaign_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("consent_campaign.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(8))
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("consent_guardian.id", ondelete="CASCADE"))
    student_id: Mapped[int | None] = mapped_column(ForeignKey("consent_student.id", ondelete="CASCADE"))
    teacher_id: Mapped[int | None] = mapped_column(ForeignKey("consent_teacher.id", ondelete="CASCADE"))
    school_code: Mapped[str] = mapped_column(String(32))
    country_code: Mapped[str] = mapped_column(String(2))
    language: Mapped[str] = mapped_column(String(2))
    channel: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(12))
    token_index: Mapped[str] = mapped_column(String(64), unique=True)
    """Keyed hash of the link's token."""
    code_index: Mapped[str] = mapped_column(String(64), unique=True)
    """Keyed hash of the normalised short code."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the link or the code was used: it cannot be used again."""
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when a newer invitation for the same person replaces this one."""
    email_message_id: Mapped[str | None] = mapped_column(String(36))


class FamilySession(Base):
    """The short-lived session a used link or code opens (the cookie holds only a random id)."""

    __tablename__ = "consent_family_session"

    id_index: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 of the cookie's random value."""
    invitation_id: Mapped[str] = mapped_column(
        ForeignKey("consent_invitation.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CodeAttempt(Base):
    """A failed short-code entry, counted per client address (hashed) to rate-limit guessing."""

    __tablename__ = "consent_code_attempt"
    __table_args__ = (Index("ix_consent_code_attempt_client_at", "client_hash", "attempted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_hash: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
