"""Initial schema: apps, users and grants, hosts, subscriptions, jobs, tasks, instance records, steps, logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    access_epoch = op.create_table(
        "access_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_epoch")),
    )
    op.bulk_insert(access_epoch, [{"id": 1, "value": 0}])
    op.create_table(
        "apps",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("secret_salt", sa.LargeBinary(length=32), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=64), nullable=False),
        sa.Column("allow_username", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_apps")),
    )
    op.create_table(
        "hosts",
        sa.Column(
            "bk_host_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("bk_biz_id", sa.Integer(), nullable=False),
        sa.Column("bk_cloud_id", sa.Integer(), nullable=False),
        sa.Column("bk_supplier_id", sa.Integer(), nullable=False),
        sa.Column("inner_ip", sa.String(length=64), nullable=True),
        sa.Column("inner_ipv6", sa.String(length=64), nullable=True),
        sa.Column("os_type", sa.String(length=16), nullable=False),
        sa.Column("login_ip", sa.String(length=64), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=True),
        sa.Column("auth_type", sa.String(length=16), nullable=False),
        sa.Column("password_enc", sa.LargeBinary(), nullable=True),
        sa.Column("key_enc", sa.LargeBinary(), nullable=True),
        sa.Column("credentials_expire_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bk_host_id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("bk_cloud_id", "inner_ip", name=op.f("uq_hosts_bk_cloud_id_inner_ip")),
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hosts_inner_ipv6"), ["inner_ipv6"], unique=False)

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("object_type", sa.String(length=16), nullable=False),
        sa.Column("node_type", sa.String(length=32), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("bk_biz_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("creator", sa.String(length=64), nullable=False),
        sa.Column("from_system", sa.String(length=64), nullable=False),
        sa.Column("enable", sa.Boolean(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("is_superuser", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )
    op.create_table(
        "biz_grants",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("bk_biz_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_biz_grants_username_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("username", "bk_biz_id", name=op.f("pk_biz_grants")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_type", sa.String(length=45), nullable=False),
        sa.Column("status", sa.String(length=45), nullable=False),
        sa.Column("statistics", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("from_system", sa.String(length=64), nullable=False),
        sa.Column("bk_biz_scope", sa.JSON(), nullable=False),
        sa.Column("error_hosts", sa.JSON(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("is_auto_trigger", sa.Boolean(), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("end_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_jobs_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_table(
        "subscription_steps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_steps_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_steps")),
        sa.UniqueConstraint("subscription_id", "step_id", name=op.f("uq_subscription_steps_subscription_id_step_id")),
    )
    op.create_table(
        "subscription_tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("is_ready", sa.Boolean(), nullable=False),
        sa.Column("err_msg", sa.Text(), nullable=True),
        sa.Column("is_auto_trigger", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_subscription_tasks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_tasks_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_tasks")),
    )
    with op.batch_alter_table("subscription_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscription_tasks_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscription_tasks_subscription_id"), ["subscription_id"], unique=False)

    op.create_table(
        "instance_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("instance_id", sa.String(length=128), nullable=False),
        sa.Column("bk_host_id", sa.BigInteger(), nullable=True),
        sa.Column("host_key", sa.String(length=96), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("instance_info", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=45), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=True),
        sa.Column("finish_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["subscription_tasks.id"],
            name=op.f("fk_instance_records_task_id_subscription_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_records")),
    )
    with op.batch_alter_table("instance_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_instance_records_job_id_bk_host_id_attempt"),
            ["job_id", "bk_host_id", "attempt"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_instance_records_job_id_host_key_attempt"),
            ["job_id", "host_key", "attempt"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_instance_records_job_id_instance_id_attempt"),
            ["job_id", "instance_id", "attempt"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_instance_records_task_id"), ["task_id"], unique=False)

    op.create_table(
        "record_steps",
        sa.Column("record_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=45), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=True),
        sa.Column("finish_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["instance_records.id"],
            name=op.f("fk_record_steps_record_id_instance_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("record_id", "step_index", name=op.f("pk_record_steps")),
    )
    op.create_table(
        "step_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["instance_records.id"],
            name=op.f("fk_step_logs_record_id_instance_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_logs")),
    )
    with op.batch_alter_table("step_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_step_logs_record_id_step_index_id"),
            ["record_id", "step_index", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("step_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_step_logs_record_id_step_index_id"))

    op.drop_table("step_logs")
    op.drop_table("record_steps")
    with op.batch_alter_table("instance_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instance_records_task_id"))
        batch_op.drop_index(batch_op.f("ix_instance_records_job_id_instance_id_attempt"))
        batch_op.drop_index(batch_op.f("ix_instance_records_job_id_host_key_attempt"))
        batch_op.drop_index(batch_op.f("ix_instance_records_job_id_bk_host_id_attempt"))

    op.drop_table("instance_records")
    with op.batch_alter_table("subscription_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscription_tasks_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_subscription_tasks_job_id"))

    op.drop_table("subscription_tasks")
    op.drop_table("subscription_steps")
    op.drop_table("jobs")
    op.drop_table("biz_grants")
    op.drop_table("users")
    op.drop_table("subscriptions")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hosts_inner_ipv6"))

    op.drop_table("hosts")
    op.drop_table("apps")
    op.drop_table("access_epoch")
