"""Runs per-host step pipelines on asyncio, over transports (ssh, local), writing status and logs live.

Imports ``nodeops.store``, ``nodeops.domain``, ``nodeops.errors``, ``nodeops.crypto`` and ``nodeops.settings``;
never ``nodeops.service`` or the web layers.
"""
