"""Installs as they happen in real fleets: manual hosts, rolling batches, attachments of a record.

- ``hosts.is_manual``: the host is installed by a person running a command on it (network spec §16.1).
- ``install_tokens``: the one-time, expiring tokens of those commands (only their SHA-256 is kept), each for
  one record's step; ``used_at`` set once it has been used.
- ``jobs.rollout`` and ``subscriptions.rollout``: a job's (a subscription's runs') batches and failure threshold
  (``{"batch_size", "max_fail_percentage", "batch_interval_s"}``; null: every host at once, as before);
  ``instance_records.batch``: the batch of the record's host (null: no batches).
- ``record_attachments``: files attached to a record after it ran (the agent's own log fetched by collect_log).

Revision ID: 0013_installs
Revises: 0012_network
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_installs"
down_revision = "0012_network"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_manual", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rollout", sa.JSON(), nullable=True))
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rollout", sa.JSON(), nullable=True))
    with op.batch_alter_table("instance_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch", sa.Integer(), nullable=True))
    op.create_table(
        "install_tokens",
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("record_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["instance_records.id"],
            name=op.f("fk_install_tokens_record_id_instance_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_install_tokens")),
    )
    op.create_index(op.f("ix_install_tokens_record_id"), "install_tokens", ["record_id"])
    op.create_table(
        "record_attachments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["instance_records.id"],
            name=op.f("fk_record_attachments_record_id_instance_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_attachments")),
    )
    op.create_index(op.f("ix_record_attachments_record_id"), "record_attachments", ["record_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_record_attachments_record_id"), table_name="record_attachments")
    op.drop_table("record_attachments")
    op.drop_index(op.f("ix_install_tokens_record_id"), table_name="install_tokens")
    op.drop_table("install_tokens")
    with op.batch_alter_table("instance_records", schema=None) as batch_op:
        batch_op.drop_column("batch")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("rollout")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("rollout")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("is_manual")
