"""pseudonyms: drop the subject-only index (every look-up names the domain: the unique index serves it)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 06:20:00

Each pseudonym row kept three B-tree indexes up to date; an ingestion of millions of subjects
spent about a third of its insert time on the one no query uses.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_consent_pseudonym_subject_id", table_name="consent_pseudonym")


def downgrade() -> None:
    op.create_index("ix_consent_pseudonym_subject_id", "consent_pseudonym", ["subject_id"], unique=False)
