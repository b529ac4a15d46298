"""Tables of the email outbox: one row per message, and the wrapped data key of their contents."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class EmailStatus(enum.StrEnum):
    """Where a message is in its life."""

    queued = "queued"
    """Waiting for its next attempt (``next_attempt_at``)."""
    sending = "sending"
    """Claimed by a sender; if that sender dies, the sweep takes it again after ``next_attempt_at``."""
    sent = "sent"
    """Accepted by the SMTP server (or written to the local folder)."""
    failed = "failed"
    """Permanently refused: the server rejected the recipient (5xx on RCPT)."""
    gave_up = "gave_up"
    """Every attempt failed temporarily, up to ENCLAVE_SMTP_MAX_ATTEMPTS."""


FINAL_STATUSES = frozenset({EmailStatus.sent, EmailStatus.failed, EmailStatus.gave_up})
"""Statuses after which the content is erased and nothing is attempted again."""


class EmailMessage(Base):
    """An outgoing message: delivery metadata in clear, recipient and content encrypted until sent."""

    __tablename__ = "email_message"
    __table_args__ = (Index("ix_email_message_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    category: Mapped[str] = mapped_column(String(40))
    """What kind of message: ``invitation``, ``reminder``, ``receipt`` ..."""
    reference: Mapped[str] = mapped_column(String(100), index=True)
    """Opaque id of what the message is about (an invitation id, say); never an address."""
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=EmailStatus.queued.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the message is due (again); empty once its status is final."""
    last_error: Mapped[str | None] = mapped_column(Text)
    """Why the last attempt failed: an SMTP reply or a network error, with addresses blanked out."""
    last_reply_code: Mapped[int | None] = mapped_column(Integer)
    """SMTP reply code of the last failed attempt, when the server answered."""
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    smtp_message_id: Mapped[str | None] = mapped_column(String(255))
    """The ``Message-ID`` header (the same on every attempt, so receivers can drop a duplicate)."""
    recipient_hash: Mapped[str] = mapped_column(String(64), index=True)
    """Keyed HMAC-SHA256 of the normalised recipient address: look-ups without the address."""
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    """AES-256-GCM ciphertext of recipient, subject and bodies; erased once the status is final."""


class EmailKey(Base):
    """The data key of message contents, wrapped by the key-management backend's ``email-outbox`` key."""

    __tablename__ = "email_key"

    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    wrapped: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
