"""Persistence: SQLAlchemy 2 tables, the database handle, named query functions and Alembic migrations.

The only layer that imports sqlalchemy; its errors are mapped to ``nodeops.errors.StoreError`` here. Imports
``nodeops.domain``, ``nodeops.errors`` and ``nodeops.settings`` only.
"""
