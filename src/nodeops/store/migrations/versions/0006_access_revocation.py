"""Access can be taken back: apps and users gain a ``disabled`` flag, revoked bk_tokens and web sessions are
listed until they expire, and failed authentications are counted per app and client address (throttling).

Revision ID: 0006_access_revocation
Revises: 0005_inventory
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_access_revocation"
down_revision = "0005_inventory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "revoked_tokens",
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_digest", name=op.f("pk_revoked_tokens")),
    )
    op.create_index(op.f("ix_revoked_tokens_expires_at"), "revoked_tokens", ["expires_at"])
    op.create_table(
        "auth_failures",
        sa.Column("app_code", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("window_started_at", sa.DateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("app_code", "client", name=op.f("pk_auth_failures")),
    )
    op.create_index(op.f("ix_auth_failures_window_started_at"), "auth_failures", ["window_started_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_failures_window_started_at"), table_name="auth_failures")
    op.drop_table("auth_failures")
    op.drop_index(op.f("ix_revoked_tokens_expires_at"), table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("disabled")
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.drop_column("disabled")
