"""research projects

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 02:02:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "research_project",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("lawful_basis", sa.String(length=40), nullable=False),
        sa.Column("special_category_condition", sa.String(length=40), nullable=True),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("requested_datasets", sa.JSON(), nullable=False),
        sa.Column("requested_variables", sa.JSON(), nullable=False),
        sa.Column("requested_epsilon", sa.Numeric(precision=10, scale=4), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("ethics_reference", sa.String(length=100), nullable=False),
        sa.Column("agreement_version", sa.String(length=40), nullable=False),
        sa.Column("agreement_sha256", sa.String(length=64), nullable=False),
        sa.Column("agreement_accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("training_reference", sa.String(length=100), nullable=False),
        sa.Column("training_expires_on", sa.Date(), nullable=False),
        sa.Column("review_round", sa.Integer(), nullable=False),
        sa.Column("granted_epsilon", sa.Numeric(precision=10, scale=4), nullable=True),
        sa.Column("allowed_datasets", sa.JSON(), nullable=True),
        sa.Column("allowed_variables", sa.JSON(), nullable=True),
        sa.Column("granted_end_date", sa.Date(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["account.id"], name=op.f("fk_research_project_owner_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_research_project")),
    )
    op.create_index(
        op.f("ix_research_project_granted_end_date"), "research_project", ["granted_end_date"], unique=False
    )
    op.create_index(op.f("ix_research_project_owner_id"), "research_project", ["owner_id"], unique=False)
    op.create_index(op.f("ix_research_project_status"), "research_project", ["status"], unique=False)
    op.create_table(
        "research_project_approval",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("review_round", sa.Integer(), nullable=False),
        sa.Column("approver_id", sa.String(length=36), nullable=False),
        sa.Column("approver_role", sa.String(length=32), nullable=False),
        sa.Column("granted_epsilon", sa.Numeric(precision=10, scale=4), nullable=False),
        sa.Column("allowed_datasets", sa.JSON(), nullable=False),
        sa.Column("allowed_variables", sa.JSON(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["approver_id"], ["account.id"], name=op.f("fk_research_project_approval_approver_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["research_project.id"],
            name=op.f("fk_research_project_approval_project_id_research_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_research_project_approval")),
        sa.UniqueConstraint("project_id", "review_round", "approver_id", name="uq_project_approval_approver"),
    )
    op.create_index(
        op.f("ix_research_project_approval_project_id"),
        "research_project_approval",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "research_project_member",
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_by", sa.String(length=36), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_research_project_member_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["research_project.id"],
            name=op.f("fk_research_project_member_project_id_research_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "account_id", name=op.f("pk_research_project_member")),
    )
    op.create_index(
        op.f("ix_research_project_member_account_id"), "research_project_member", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_research_project_member_account_id"), table_name="research_project_member")
    op.drop_table("research_project_member")
    op.drop_index(op.f("ix_research_project_approval_project_id"), table_name="research_project_approval")
    op.drop_table("research_project_approval")
    op.drop_index(op.f("ix_research_project_status"), table_name="research_project")
    op.drop_index(op.f("ix_research_project_owner_id"), table_name="research_project")
    op.drop_index(op.f("ix_research_project_granted_end_date"), table_name="research_project")
    op.drop_table("research_project")
