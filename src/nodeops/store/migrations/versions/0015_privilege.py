"""Installs without root or sudo: ``hosts.owned_path`` (network spec §18, docs/compatibility.md).

A host whose account is neither root nor allowed ``sudo -n`` installs as that account into its ``setup_path``
only when its install request said so (``owned_path: true``); otherwise its first step refuses it.

Revision ID: 0015_privilege
Revises: 0014_manual_install
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_privilege"
down_revision = "0014_manual_install"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owned_path", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("owned_path")
