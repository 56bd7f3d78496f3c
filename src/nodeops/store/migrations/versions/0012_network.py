"""Hosts the service cannot reach directly: cloud areas, install channels, richer access points, node types.

- ``cloud_areas``: Node Manager's ``Cloud`` (network spec §12). Area 0, the direct area (直连区域), has no row.
- ``install_channels``: jump servers and the upstream their agents use (spec §14).
- ``access_points`` gains Node Manager's fields (spec §15.1): the URLs agents outside the direct area report to
  (``outer_server_url``), the package URLs, a description, and ``extra`` for the fields nodeops keeps and
  echoes without acting on them (server lists, zk hosts, region, ports...); ``zk_password_enc`` is sealed.
- ``hosts`` gains ``node_type`` (AGENT, PROXY, PAGENT; spec §13.1), ``install_channel_id``, ``upstream_nodes``
  (the proxy or jump server a host was last reached through) and ``heartbeat_interval_s`` (the rhythm its
  agent was configured with, which says when it has been silent too long).

Revision ID: 0012_network
Revises: 0011_inline_answers
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_network"
down_revision = "0011_inline_answers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cloud_areas",
        sa.Column("bk_cloud_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bk_cloud_name", sa.String(length=45), nullable=False),
        sa.Column("isp", sa.String(length=45), nullable=True),
        sa.Column("ap_id", sa.Integer(), nullable=False, server_default="-1"),
        sa.Column("creator", sa.JSON(), nullable=False),
        sa.Column("is_visible", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bk_cloud_id", name=op.f("pk_cloud_areas")),
        sa.UniqueConstraint("bk_cloud_name", name=op.f("uq_cloud_areas_bk_cloud_name")),
    )
    op.create_table(
        "install_channels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=45), nullable=False),
        sa.Column("bk_cloud_id", sa.Integer(), nullable=False),
        sa.Column("jump_servers", sa.JSON(), nullable=False),
        sa.Column("upstream_servers", sa.JSON(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_install_channels")),
    )
    op.create_index(op.f("ix_install_channels_bk_cloud_id"), "install_channels", ["bk_cloud_id"])
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("outer_server_url", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("package_inner_url", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("package_outer_url", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("is_enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("creator", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("extra", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("zk_password_enc", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_type", sa.String(length=16), nullable=False, server_default="AGENT"))
        batch_op.add_column(sa.Column("install_channel_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("upstream_nodes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_interval_s", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_hosts_bk_cloud_id_node_type"), ["bk_cloud_id", "node_type"])
        batch_op.create_index(batch_op.f("ix_hosts_agent_status"), ["agent_status"])


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hosts_agent_status"))
        batch_op.drop_index(batch_op.f("ix_hosts_bk_cloud_id_node_type"))
        batch_op.drop_column("heartbeat_interval_s")
        batch_op.drop_column("upstream_nodes")
        batch_op.drop_column("install_channel_id")
        batch_op.drop_column("node_type")
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        for column in (
            "updated_at",
            "zk_password_enc",
            "extra",
            "creator",
            "is_enabled",
            "package_outer_url",
            "package_inner_url",
            "outer_server_url",
            "description",
        ):
            batch_op.drop_column(column)
    op.drop_index(op.f("ix_install_channels_bk_cloud_id"), table_name="install_channels")
    op.drop_table("install_channels")
    op.drop_table("cloud_areas")
