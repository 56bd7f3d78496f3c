"""Inventory: hosts gain supplier account, name and outer IP; the topology (business, set, module), hosts placed
in modules, service instances; subscriptions gain a name; instance records are indexed for task results.

Object and node types of subscriptions are stored as Node Manager spells them (``HOST``, ``INSTANCE``).

Revision ID: 0005_inventory
Revises: 0004_log_reading
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_inventory"
down_revision = "0004_log_reading"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "topo_nodes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("bk_obj_id", sa.String(length=32), nullable=False),
        sa.Column("bk_inst_id", sa.BigInteger(), nullable=False),
        sa.Column("bk_inst_name", sa.String(length=128), nullable=False),
        sa.Column("bk_biz_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", BIG_ID, nullable=True),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["topo_nodes.id"], name=op.f("fk_topo_nodes_parent_id_topo_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topo_nodes")),
        sa.UniqueConstraint("bk_obj_id", "bk_inst_id", name=op.f("uq_topo_nodes_bk_obj_id_bk_inst_id")),
    )
    op.create_index(op.f("ix_topo_nodes_bk_biz_id_bk_obj_id"), "topo_nodes", ["bk_biz_id", "bk_obj_id"])
    op.create_index(op.f("ix_topo_nodes_parent_id"), "topo_nodes", ["parent_id"])
    op.create_table(
        "host_modules",
        sa.Column("bk_host_id", BIG_ID, nullable=False),
        sa.Column("bk_module_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bk_host_id"], ["hosts.bk_host_id"], name=op.f("fk_host_modules_bk_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bk_host_id", "bk_module_id", name=op.f("pk_host_modules")),
    )
    op.create_index(op.f("ix_host_modules_bk_module_id"), "host_modules", ["bk_module_id"])
    op.create_table(
        "service_instances",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("bk_biz_id", sa.Integer(), nullable=False),
        sa.Column("bk_host_id", BIG_ID, nullable=False),
        sa.Column("bk_module_id", sa.BigInteger(), nullable=False),
        sa.Column("processes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bk_host_id"],
            ["hosts.bk_host_id"],
            name=op.f("fk_service_instances_bk_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_instances")),
    )
    op.create_index(op.f("ix_service_instances_bk_biz_id"), "service_instances", ["bk_biz_id"])
    op.create_index(op.f("ix_service_instances_bk_host_id"), "service_instances", ["bk_host_id"])
    op.create_index(op.f("ix_service_instances_bk_module_id"), "service_instances", ["bk_module_id"])
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bk_supplier_account", sa.String(length=64), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("bk_host_name", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("outer_ip", sa.String(length=64), nullable=True))
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=128), nullable=True))
    op.create_index(op.f("ix_instance_records_task_id_status"), "instance_records", ["task_id", "status"])
    op.create_index(
        op.f("ix_instance_records_subscription_id_instance_id"), "instance_records", ["subscription_id", "instance_id"]
    )
    op.execute("UPDATE subscriptions SET object_type = UPPER(object_type), node_type = UPPER(node_type)")


def downgrade() -> None:
    op.execute("UPDATE subscriptions SET object_type = LOWER(object_type), node_type = LOWER(node_type)")
    op.drop_index(op.f("ix_instance_records_subscription_id_instance_id"), table_name="instance_records")
    op.drop_index(op.f("ix_instance_records_task_id_status"), table_name="instance_records")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("name")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("outer_ip")
        batch_op.drop_column("bk_host_name")
        batch_op.drop_column("bk_supplier_account")
    op.drop_table("service_instances")
    op.drop_table("host_modules")
    op.drop_table("topo_nodes")
