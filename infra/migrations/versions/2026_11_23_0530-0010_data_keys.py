"""data keys: one wrapped data key per encrypted stored object

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("destroyed_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "enclave_data_key",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("storage_key", sa.String(length=700), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("object_name", sa.String(length=255), nullable=False),
        sa.Column("wrapped_key", sa.String(length=1000), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=True),
        sa.Column("segment_size", sa.Integer(), nullable=False),
        sa.Column("plaintext_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rewrapped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enclave_data_key")),
    )
    op.create_index(
        "uq_enclave_data_key_live_storage_key",
        "enclave_data_key",
        ["storage_key"],
        unique=True,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    op.create_index(
        "ix_enclave_data_key_live_kek_version",
        "enclave_data_key",
        ["kek_version"],
        unique=False,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    op.create_index(
        "ix_enclave_data_key_dataset", "enclave_data_key", ["dataset_id", "dataset_version"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_enclave_data_key_dataset", table_name="enclave_data_key")
    op.drop_index("ix_enclave_data_key_live_kek_version", table_name="enclave_data_key")
    op.drop_index("uq_enclave_data_key_live_storage_key", table_name="enclave_data_key")
    op.drop_table("enclave_data_key")
