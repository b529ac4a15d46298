"""Tables of the catalog: datasets and their immutable versions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class VersionState(StrEnum):
    """Where a version stands. Only ``published`` versions are read by the query engine."""

    ingesting = "ingesting"
    published = "published"
    failed = "failed"
    destroyed = "destroyed"


class Dataset(Base):
    """A research dataset: what it is, the consent purpose it is collected under, how long it is kept."""

    __tablename__ = "enclave_dataset"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32))
    """The consent purpose the data is collected under: only subjects who granted it are kept."""
    domain: Mapped[str] = mapped_column(String(64))
    """The pseudonymisation domain: datasets of different domains cannot be joined on pseudonyms."""
    retention_until: Mapped[date] = mapped_column(Date)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The declared schema (``enclave.datasets.schemas.DatasetSchema``) new versions are checked against."""
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    retention_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the DPO was warned that the retention date is near (30 days before)."""
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DatasetVersion(Base):
    """One upload of a dataset; immutable once published (an erasure publishes a rewritten copy)."""

    __tablename__ = "enclave_dataset_version"
    __table_args__ = (UniqueConstraint("dataset_id", "version", name="uq_enclave_dataset_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("enclave_dataset.id", ondelete="RESTRICT"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(12))
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)
    """Rows stored: shown to stewards and the DPO, never to researchers."""
    excluded_without_consent: Mapped[int | None] = mapped_column(Integer)
    objects: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Object names of the version's encrypted Parquet parts."""
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    quarantined: Mapped[int | None] = mapped_column(Integer)
    """Bad rows set aside in the version's quarantine report (when the steward chose quarantine)."""
    quarantine_object: Mapped[str | None] = mapped_column(String(255))
    """The name of the encrypted quarantine report of this version, if any (stewards read it)."""


class JobState(StrEnum):
    """Where an ingestion job stands."""

    queued = "queued"
    running = "running"
    published = "published"
    failed = "failed"


class IngestionJob(Base):
    """A large upload stored encrypted as a staging object and ingested by a worker.

    The job reserves its version number (a version row in state ``ingesting``); a worker that dies
    leaves the job ``running`` and nothing published, and the periodic resume sends it again.
    """

    __tablename__ = "enclave_ingestion_job"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("enclave_dataset.id", ondelete="RESTRICT"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(12), index=True)
    format: Mapped[str] = mapped_column(String(8))
    quarantine: Mapped[bool] = mapped_column(Boolean, default=False)
    staging_object: Mapped[str] = mapped_column(String(255))
    source_bytes: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(36))
    country: Mapped[str] = mapped_column(String(2))
    schools: Mapped[list[str]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
