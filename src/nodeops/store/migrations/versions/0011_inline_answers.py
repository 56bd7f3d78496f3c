"""PostgreSQL: sealed log answers are kept in the row, uncompressed, up to a page (``record_answers.body``).

A typical answer is a few KiB of JSON. By default PostgreSQL compresses a row over 2 KiB and may move the value
to the TOAST table, so every log API read of a finished record paid a TOAST lookup and a decompression. With
``toast_tuple_target`` at 8160 bytes and the column's storage MAIN, an answer up to about 8 KiB stays in the
row as it is; a larger one is compressed, and moved out only if it still does not fit. Rows written before this
revision keep their form until they are written again. SQLite has no such storage: nothing changes there.

Revision ID: 0011_inline_answers
Revises: 0010_task_pages
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0011_inline_answers"
down_revision = "0010_task_pages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE record_answers SET (toast_tuple_target = 8160)")
    op.execute("ALTER TABLE record_answers ALTER COLUMN body SET STORAGE MAIN")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE record_answers ALTER COLUMN body SET STORAGE EXTENDED")
    op.execute("ALTER TABLE record_answers RESET (toast_tuple_target)")
