"""Pure domain values and rules: statuses and their aggregation, the instance_id codec, job types and plans.

Nothing here does I/O or imports another nodeops layer (only ``nodeops.errors``).
"""
