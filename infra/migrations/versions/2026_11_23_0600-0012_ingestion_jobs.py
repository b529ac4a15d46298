"""ingestion jobs: large uploads ingested by a worker; quarantine reports of versions

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enclave_ingestion_job",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("quarantine", sa.Boolean(), nullable=False),
        sa.Column("staging_object", sa.String(length=255), nullable=False),
        sa.Column("source_bytes", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(length=36), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("schools", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["enclave_dataset.id"],
            name=op.f("fk_enclave_ingestion_job_dataset_id_enclave_dataset"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enclave_ingestion_job")),
    )
    with op.batch_alter_table("enclave_ingestion_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enclave_ingestion_job_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_enclave_ingestion_job_state"), ["state"], unique=False)
    with op.batch_alter_table("enclave_dataset_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quarantined", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quarantine_object", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enclave_dataset_version", schema=None) as batch_op:
        batch_op.drop_column("quarantine_object")
        batch_op.drop_column("quarantined")
    with op.batch_alter_table("enclave_ingestion_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enclave_ingestion_job_state"))
        batch_op.drop_index(batch_op.f("ix_enclave_ingestion_job_dataset_id"))
    op.drop_table("enclave_ingestion_job")
