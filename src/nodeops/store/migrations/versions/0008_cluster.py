"""The distributed mode's rows: which worker claimed a record (``instance_records.worker_id``) and whether a
revoke asked its owner to stop (``revoke_requested``); when a task's work was handed to the broker, with the
agent package it pushes (``subscription_tasks.published_at``, ``package_version``); and the lease of every
worker process (``workers``).

Revision ID: 0008_cluster
Revises: 0007_lookup_indexes
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_cluster"
down_revision = "0007_lookup_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance_records") as batch:
        batch.add_column(sa.Column("worker_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("revoke_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_instance_records_status_bk_host_id", "instance_records", ["status", "bk_host_id"])
    op.create_index("ix_instance_records_worker_id_status", "instance_records", ["worker_id", "status"])
    with op.batch_alter_table("subscription_tasks") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("package_version", sa.String(length=64), nullable=True))
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )
    op.create_index("ix_workers_ended_at_lease_until", "workers", ["ended_at", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_workers_ended_at_lease_until", table_name="workers")
    op.drop_table("workers")
    with op.batch_alter_table("subscription_tasks") as batch:
        batch.drop_column("package_version")
        batch.drop_column("published_at")
    op.drop_index("ix_instance_records_worker_id_status", table_name="instance_records")
    op.drop_index("ix_instance_records_status_bk_host_id", table_name="instance_records")
    with op.batch_alter_table("instance_records") as batch:
        batch.drop_column("revoke_requested")
        batch.drop_column("worker_id")
