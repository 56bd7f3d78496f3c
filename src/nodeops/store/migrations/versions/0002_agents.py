"""Hosts carry their agent (status, version, token, heartbeat), transport and install path; access points; packages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("server_url", sa.String(length=255), nullable=False),
        sa.Column("linux_setup_path", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_points")),
    )
    op.create_table(
        "agent_packages",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_agent_packages")),
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transport", sa.String(length=16), nullable=False, server_default="ssh"))
        batch_op.add_column(sa.Column("ap_id", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("setup_path", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("agent_status", sa.String(length=32), nullable=False, server_default="NOT_INSTALLED")
        )
        batch_op.add_column(sa.Column("agent_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("agent_token_hash", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("last_heartbeat_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("last_heartbeat_at")
        batch_op.drop_column("agent_token_hash")
        batch_op.drop_column("agent_version")
        batch_op.drop_column("agent_status")
        batch_op.drop_column("setup_path")
        batch_op.drop_column("ap_id")
        batch_op.drop_column("transport")

    op.drop_table("agent_packages")
    op.drop_table("access_points")
