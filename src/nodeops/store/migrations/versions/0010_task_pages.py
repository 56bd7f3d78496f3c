"""A task's records by id: the index on ``instance_records.task_id`` becomes (task_id, id), so a page of a task's
results (task_result, in record id order) is read in order from the index, whatever else the table holds.

Revision ID: 0010_task_pages
Revises: 0009_shared_state
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0010_task_pages"
down_revision = "0009_shared_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance_records") as batch_op:
        batch_op.drop_index("ix_instance_records_task_id")
        batch_op.create_index("ix_instance_records_task_id_id", ["task_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("instance_records") as batch_op:
        batch_op.drop_index("ix_instance_records_task_id_id")
        batch_op.create_index("ix_instance_records_task_id", ["task_id"], unique=False)
