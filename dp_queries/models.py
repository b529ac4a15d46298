"""Tables of differentially private releases: what was released, what it spent, and queued queries.

* ``dp_release``: one released result of a query on one dataset version and one set of consenting
  subjects; an identical query later returns it again at no cost.
* ``dp_budget_spend``: the append-only spend ledger; every release has exactly one spend, written in
  the same transaction. A project's spent ε is the sum of its spends (never a float).
* ``dp_researcher_cap``: optional caps on what one researcher may spend within a project.
* ``dp_query_job``: queries on large datasets, run by the worker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from access.projects.models import EPSILON_PLACES
from infra.db import Base


def _uuid() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    """Where a queued query stands."""

    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class DpRelease(Base):
    """A released result: the spec, the data it was computed on and the ε it cost."""

    __tablename__ = "dp_release"
    # One release per identical query of a project: same spec, version and consenting subjects.
    __table_args__ = (
        UniqueConstraint(
            "project_id",
            "dataset_id",
            "version",
            "spec_hash",
            "consenting_digest",
            name="uq_dp_release_identical",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    project_id: Mapped[str] = mapped_column(ForeignKey("research_project.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id"), index=True)
    """The researcher who asked for it."""
    dataset_id: Mapped[str] = mapped_column(ForeignKey("enclave_dataset.id"))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(64))
    consenting_digest: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the sorted pseudonyms of the subjects whose consent was granted at release time."""
    epsilon: Mapped[Decimal] = mapped_column(Numeric(10, EPSILON_PLACES))
    """ε charged to the project's budget."""
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class BudgetSpend(Base):
    """One entry of the append-only spend ledger: ε spent by a researcher of a project on a release."""

    __tablename__ = "dp_budget_spend"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("research_project.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id"))
    release_id: Mapped[str] = mapped_column(ForeignKey("dp_release.id"), unique=True)
    epsilon: Mapped[Decimal] = mapped_column(Numeric(10, EPSILON_PLACES))
    spent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ResearcherCap(Base):
    """The most one researcher may spend within a project (set by the DPO or the project's owner)."""

    __tablename__ = "dp_researcher_cap"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("research_project.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id"), primary_key=True)
    cap: Mapped[Decimal] = mapped_column(Numeric(10, EPSILON_PLACES))
    set_by: Mapped[str] = mapped_column(String(36))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class QueryJob(Base):
    """A query on a large dataset, run by the worker; retried after a crash without double spending."""

    __tablename__ = "dp_query_job"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    project_id: Mapped[str] = mapped_column(ForeignKey("research_project.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id"))
    dataset_id: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default=JobStatus.queued.value, index=True)
    release_id: Mapped[str | None] = mapped_column(ForeignKey("dp_release.id"))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The problem document of a refusal or failure (reason and message, never data)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    """Type of the last unexpected error (for operators; the job is retried)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
