"""State every worker machine needs, kept in the database rather than the data dir: the bytes of each agent
package by sha256 (``package_contents``), and the SSH host keys the service trusts (``host_keys``, one per
address and port, so two processes meeting a new host at once cannot both record a different key).

Revision ID: 0009_shared_state
Revises: 0008_cluster
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_shared_state"
down_revision = "0008_cluster"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "package_contents",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_package_contents"),
    )
    op.create_table(
        "host_keys",
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("host", "port", name="pk_host_keys"),
    )


def downgrade() -> None:
    op.drop_table("host_keys")
    op.drop_table("package_contents")
