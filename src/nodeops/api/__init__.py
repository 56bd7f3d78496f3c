"""HTTP API: ESB-compatible endpoints, the envelope, authentication of callers.

Imports ``nodeops.service`` (and through it the lower layers' values); never sqlalchemy.
"""
