"""The log API's lookup of an instance's records reads only its index: each of the three indexes on
``(job_id, <instance_id form>, attempt)`` also holds the record's revision and instance_id (and, for the
bk_host_id form, the host key its condition checks), so the lookup never visits the table's rows.

Revision ID: 0007_lookup_indexes
Revises: 0006_access_revocation
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0007_lookup_indexes"
down_revision = "0006_access_revocation"
branch_labels = None
depends_on = None

_NEW = {
    "ix_instance_records_lookup_instance_id": ["job_id", "instance_id", "attempt", "revision"],
    "ix_instance_records_lookup_bk_host_id": ["job_id", "bk_host_id", "attempt", "host_key", "revision", "instance_id"],
    "ix_instance_records_lookup_host_key": ["job_id", "host_key", "attempt", "revision", "instance_id"],
}
_OLD = {
    "ix_instance_records_job_id_instance_id_attempt": ["job_id", "instance_id", "attempt"],
    "ix_instance_records_job_id_bk_host_id_attempt": ["job_id", "bk_host_id", "attempt"],
    "ix_instance_records_job_id_host_key_attempt": ["job_id", "host_key", "attempt"],
}


def upgrade() -> None:
    for name, columns in _NEW.items():
        op.create_index(name, "instance_records", columns, unique=False)
    for name in _OLD:
        op.drop_index(name, table_name="instance_records")


def downgrade() -> None:
    for name, columns in _OLD.items():
        op.create_index(name, "instance_records", columns, unique=False)
    for name in _NEW:
        op.drop_index(name, table_name="instance_records")
