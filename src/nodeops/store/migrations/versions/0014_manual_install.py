"""Manual installs: what the host's install command ended with.

- ``install_tokens.outcome``: on the token the install script reports with, ``DONE`` or ``FAILED`` once the
  script has reported its end (null while it runs); the waiting 安装 step reads it.
- ``install_tokens.detail``: why it failed, as the script said (its exit status and last words).

Revision ID: 0014_manual_install
Revises: 0013_installs
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_manual_install"
down_revision = "0013_installs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("install_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("detail", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("install_tokens", schema=None) as batch_op:
        batch_op.drop_column("detail")
        batch_op.drop_column("outcome")
