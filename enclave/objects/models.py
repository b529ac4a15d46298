"""The data-key table: one row per stored encrypted object, holding its wrapped data key.

A row is written in the same transaction as whatever publishes the object (a dataset version's
manifest), so an object without a committed row is unreadable: its key never reached the database.
Only the wrapped form of a data key is stored; crypto-shredding empties it and stamps
``destroyed_at``, keeping the row as the record that the key existed and was destroyed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base

_LIVE = text("destroyed_at IS NULL")


def _now() -> datetime:
    return datetime.now(UTC)


class DataKey(Base):
    """The wrapped data key of one stored object, and the object's binding (dataset, version, name)."""

    __tablename__ = "enclave_data_key"
    __table_args__ = (
        # At most one live key per storage key: a second put of the same object is refused.
        Index(
            "uq_enclave_data_key_live_storage_key",
            "storage_key",
            unique=True,
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
        # Rewrap and retire look for live keys below a KEK version.
        Index(
            "ix_enclave_data_key_live_kek_version", "kek_version", postgresql_where=_LIVE, sqlite_where=_LIVE
        ),
        Index("ix_enclave_data_key_dataset", "dataset_id", "dataset_version"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    storage_key: Mapped[str] = mapped_column(String(700))
    """Where the encrypted object is stored in the object store."""
    dataset_id: Mapped[str] = mapped_column(String(64))
    dataset_version: Mapped[int] = mapped_column(Integer)
    object_name: Mapped[str] = mapped_column(String(255))
    wrapped_key: Mapped[str] = mapped_column(String(1000))
    """The data key wrapped by ``dataset-kek`` (the token names the KEK version); empty once destroyed."""
    kek_version: Mapped[int | None] = mapped_column(Integer)
    """The KEK version of ``wrapped_key``, for rewrap and retire; null once destroyed."""
    segment_size: Mapped[int] = mapped_column(Integer)
    plaintext_bytes: Mapped[int | None] = mapped_column(BigInteger)
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    rewrapped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
