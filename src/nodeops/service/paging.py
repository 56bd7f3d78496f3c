"""Pages of a listing: the one rule every paged API applies to a page past the last."""

from __future__ import annotations

from nodeops.errors import InvalidInput


def out_of_range(field: str, value: int, *, total: int, pagesize: int, noun: str) -> InvalidInput:
    """The error for ``field`` (page or start) = ``value`` past the last of ``total`` items in pages of
    ``pagesize``: it says how many pages there are (Node Manager answers an empty page instead)."""
    pages = max(1, -(-total // pagesize))
    return InvalidInput.field(
        field, f"{field} {value} is out of range: {total} {noun} make {pages} page(s) of {pagesize}"
    )
