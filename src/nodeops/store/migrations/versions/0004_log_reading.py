"""A record's log chunks in the order written (cursors); answers sealed before the step cap are dropped.

Revision ID: 0004_log_reading
Revises: 0003_answers
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004_log_reading"
down_revision = "0003_answers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_step_logs_record_id_id"), "step_logs", ["record_id", "id"], unique=False)
    # sealed before answers capped each step and stripped ANSI codes: the reader renders them again
    op.execute("DELETE FROM record_answers")


def downgrade() -> None:
    op.drop_index(op.f("ix_step_logs_record_id_id"), table_name="step_logs")
