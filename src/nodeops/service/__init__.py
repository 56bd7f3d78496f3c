"""Use cases: validate input, do one unit of work, call the store (and later the engine).

Imports ``nodeops.store``, ``nodeops.domain``, ``nodeops.errors`` and ``nodeops.settings``; never fastapi.
"""
