"""Typed factories for research-project tests: accounts, principals and proposals."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access.accounts.models import Account
from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.principal import Principal
from access.projects.agreement import current_agreement
from access.projects.rules import utc_today
from access.projects.schemas import ApprovalCreate, ProjectCreate

TODAY = utc_today()


def make_principal(session: Session, *roles: Role, status: str = "active") -> Principal:
    """Insert a staff account with these roles and return the principal acting for it."""
    account = Account(
        email=f"{uuid.uuid4().hex[:12]}@staff.example.org",
        display_name="Test staff",
        roles=[r.value for r in roles],
        schools=[],
        password_hash="not-a-real-hash",
        status=status,
    )
    session.add(account)
    session.flush()
    return Principal(account_id=account.id, roles=frozenset(roles))


def proposal_payload(**overrides: Any) -> dict[str, Any]:
    """A valid proposal as JSON-ready values; ``overrides`` replace top-level fields."""
    agreement = current_agreement()
    payload: dict[str, Any] = {
        "title": "Attachment and early school leaving in lower secondary",
        "purpose": "questionnaires",
        "lawful_basis": "gdpr_6_1_e_public_task",
        "datasets": ["wave1_students", "wave1_teachers"],
        "variables": ["wave1_students.ses_band", "wave1_students.stage", "wave1_teachers.years_experience"],
        "justification": "Estimate how teacher-student attachment relates to early school leaving.",
        "requested_epsilon": "1.5",
        "start_date": TODAY.isoformat(),
        "end_date": (TODAY + timedelta(days=365)).isoformat(),
        "ethics_reference": "ETH-2026/117",
        "agreement": {"version": agreement.version, "sha256": agreement.sha256, "accepted": True},
        "training": {
            "reference": "GDPR-TRAINING-4411",
            "expires_on": (TODAY + timedelta(days=200)).isoformat(),
        },
    }
    payload.update(overrides)
    return payload


def proposal(**overrides: Any) -> ProjectCreate:
    """A valid proposal; ``overrides`` replace top-level fields."""
    return ProjectCreate.model_validate(proposal_payload(**overrides))


def terms(
    epsilon: str = "1.0",
    *,
    datasets: list[str] | None = None,
    variables: list[str] | None = None,
    end_date: date | None = None,
) -> ApprovalCreate:
    """Approval terms within the default proposal."""
    return ApprovalCreate(
        granted_epsilon=Decimal(epsilon),
        datasets=datasets or ["wave1_students"],
        variables=variables or ["wave1_students.ses_band", "wave1_students.stage"],
        end_date=end_date or TODAY + timedelta(days=300),
    )


def ledger(session: Session, project_id: str) -> list[AuditEntry]:
    """The project's ledger entries, oldest first (committing first: entries are chained on commit)."""
    session.commit()
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.project_id == project_id).order_by(AuditEntry.seq)
        )
    )


def actions(session: Session, project_id: str) -> list[tuple[str, str]]:
    """(action, outcome) of the project's ledger entries, oldest first."""
    return [(e.action, e.outcome) for e in ledger(session, project_id)]
