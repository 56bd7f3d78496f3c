"""Fixtures shared by the integration packages: the real sshd test hosts on loopback (``tests.integration.sshd``)."""

from __future__ import annotations

from tests.integration.sshd import ssh_hosts, ssh_lab

__all__ = ["ssh_hosts", "ssh_lab"]
