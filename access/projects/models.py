"""Tables of research projects: the proposal, its members and the approvals recorded on it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base

PURPOSES = (
    "questionnaires",
    "school_records",
    "interviews",
    "special_category",
    "recontact",
    "consortium_sharing",
)
"""Consent purposes a project may be proposed for (to move to the consent package once it owns them)."""

SPECIAL_CATEGORY_PURPOSE = "special_category"
EPSILON_PLACES = 4
"""ε is stored exactly with this many decimal places; never as a float."""


class ProjectStatus(StrEnum):
    """Where a project is in its life."""

    draft = "draft"
    submitted = "submitted"
    changes_requested = "changes_requested"
    rejected = "rejected"
    approved = "approved"
    active = "active"
    suspended = "suspended"
    expired = "expired"
    closed = "closed"


class LawfulBasis(StrEnum):
    """GDPR Art. 6(1) ground for the processing."""

    consent = "gdpr_6_1_a_consent"
    public_task = "gdpr_6_1_e_public_task"


class SpecialCategoryCondition(StrEnum):
    """GDPR Art. 9(2) condition, needed when special-category data is processed."""

    explicit_consent = "gdpr_9_2_a_explicit_consent"
    research = "gdpr_9_2_j_research"


class MemberRole(StrEnum):
    """A member's place in the project."""

    owner = "owner"
    member = "member"


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class ResearchProject(Base):
    """A research project: what is asked for, on which grounds, and what the DPO granted."""

    __tablename__ = "research_project"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    owner_id: Mapped[str] = mapped_column(ForeignKey("account.id"), index=True)
    status: Mapped[str] = mapped_column(String(24), default=ProjectStatus.draft.value, index=True)
    title: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(40))
    lawful_basis: Mapped[str] = mapped_column(String(40))
    special_category_condition: Mapped[str | None] = mapped_column(String(40))
    justification: Mapped[str] = mapped_column(Text)
    """Free text: kept here, never copied into the ledger."""
    requested_datasets: Mapped[list[str]] = mapped_column(JSON, default=list)
    requested_variables: Mapped[list[str]] = mapped_column(JSON, default=list)
    requested_epsilon: Mapped[Decimal] = mapped_column(Numeric(10, EPSILON_PLACES))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    """Requested last day of access (inclusive, UTC)."""
    ethics_reference: Mapped[str] = mapped_column(String(100))
    agreement_version: Mapped[str] = mapped_column(String(40))
    agreement_sha256: Mapped[str] = mapped_column(String(64))
    agreement_accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    training_reference: Mapped[str] = mapped_column(String(100))
    training_expires_on: Mapped[date] = mapped_column(Date)
    review_round: Mapped[int] = mapped_column(Integer, default=0)
    """How many times the project was submitted; approvals count only within the current round."""
    granted_epsilon: Mapped[Decimal | None] = mapped_column(Numeric(10, EPSILON_PLACES))
    allowed_datasets: Mapped[list[str] | None] = mapped_column(JSON)
    allowed_variables: Mapped[list[str] | None] = mapped_column(JSON)
    granted_end_date: Mapped[date | None] = mapped_column(Date, index=True)
    """Granted last day of access (inclusive, UTC); the project expires the day after."""
    decision_note: Mapped[str | None] = mapped_column(Text)
    """The reviewer's words on the latest rejection, change request or suspension (never in the ledger)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProjectMember(Base):
    """A researcher account taking part in a project."""

    __tablename__ = "research_project_member"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("research_project.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    added_by: Mapped[str] = mapped_column(String(36))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ProjectApproval(Base):
    """One approver's approval of one review round, with the terms they approved."""

    __tablename__ = "research_project_approval"
    # Two approvals of one round must come from two people.
    __table_args__ = (
        UniqueConstraint("project_id", "review_round", "approver_id", name="uq_project_approval_approver"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("research_project.id", ondelete="CASCADE"), index=True)
    review_round: Mapped[int] = mapped_column(Integer)
    approver_id: Mapped[str] = mapped_column(ForeignKey("account.id"))
    approver_role: Mapped[str] = mapped_column(String(32))
    granted_epsilon: Mapped[Decimal] = mapped_column(Numeric(10, EPSILON_PLACES))
    allowed_datasets: Mapped[list[str]] = mapped_column(JSON)
    allowed_variables: Mapped[list[str]] = mapped_column(JSON)
    end_date: Mapped[date] = mapped_column(Date)
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
