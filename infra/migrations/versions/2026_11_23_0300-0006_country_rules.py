"""country rules

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 03:00:00

The shipped default rules are data, not schema: they are loaded by ``enclave db upgrade`` and
``enclave demo`` after migrating (``consent.service.load_default_rules``), since a migration may not
import domain code.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_country_rule",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("country_code", sa.String(length=2), nullable=False),
        sa.Column("country_name", sa.String(length=80), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("age_of_digital_consent", sa.Integer(), nullable=False),
        sa.Column("self_consent_age", sa.Integer(), nullable=False),
        sa.Column("joint_consent_from_age", sa.Integer(), nullable=True),
        sa.Column("joint_consent_to_age", sa.Integer(), nullable=True),
        sa.Column("assent_from_age", sa.Integer(), nullable=True),
        sa.Column("guardians_required", sa.String(length=8), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("letscare_country", sa.Boolean(), nullable=False),
        sa.Column("legal_source", sa.Text(), nullable=False),
        sa.Column("verified", sa.String(length=8), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_country_rule")),
        sa.UniqueConstraint("country_code", "effective_from", name="uq_consent_country_rule_version"),
    )
    op.create_index(
        op.f("ix_consent_country_rule_country_code"), "consent_country_rule", ["country_code"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_consent_country_rule_country_code"), table_name="consent_country_rule")
    op.drop_table("consent_country_rule")
