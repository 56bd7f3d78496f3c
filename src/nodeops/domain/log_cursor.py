"""Cursors into one instance record's log, and reading whole lines after one: pure, no I/O.

A record's log is a series of chunks (whole lines joined by newlines) whose ids grow in the order they were
written: the one writer of a record appends them in order (docs/architecture.md). A position is therefore
"every chunk before ``chunk_id`` is read, and the first ``offset`` characters of chunk ``chunk_id``", which is
exact across step boundaries and while the steps run: reading on from it returns each line once, and none is
skipped. A ``LogCursor`` is that position with the record it belongs to, written as a short URL-safe string.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nodeops.domain.answer import utf8_size
from nodeops.domain.params import MAX_BIGINT, is_ascii_digits
from nodeops.errors import InvalidInput


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """Where reading resumes: chunks with an id below ``chunk_id`` are read, and ``offset`` characters of
    chunk ``chunk_id`` (0: none of it)."""

    chunk_id: int = 0
    offset: int = 0


START = Position()


@dataclass(frozen=True, slots=True, kw_only=True)
class LogCursor:
    """A position in the log of record ``record_id``."""

    record_id: int
    position: Position

    def encode(self) -> str:
        return f"{self.record_id}-{self.position.chunk_id}-{self.position.offset}"


def parse_cursor(value: object) -> LogCursor | None:
    """The cursor a client sent (None for an empty one, meaning "from the start"); raises InvalidInput naming
    ``cursor`` when it is not one this service wrote."""
    if value is None or value == "":
        return None
    text = value.strip() if isinstance(value, str) else ""
    parts = text.split("-")
    if len(parts) != 3 or not all(is_ascii_digits(part) and len(part) <= 19 for part in parts):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise InvalidInput.field(
            "cursor",
            f"{shown} is not a cursor of this service; send the `cursor` of the previous answer, or an empty one",
        )
    record_id, chunk_id, offset = (int(part) for part in parts)
    if not 0 < record_id <= MAX_BIGINT or chunk_id > MAX_BIGINT:
        raise InvalidInput.field("cursor", f"{text!r} is out of range; send the `cursor` of the previous answer")
    return LogCursor(record_id=record_id, position=Position(chunk_id=chunk_id, offset=offset))


@dataclass(frozen=True, slots=True)
class Chunk:
    """One stored chunk of a record's log."""

    id: int
    step_index: int
    text: str


@dataclass(frozen=True, slots=True)
class Piece:
    """Whole lines of one chunk read after a position: they start at ``start`` characters into chunk
    ``chunk_id``; ``ends_chunk`` when they run to the chunk's end."""

    chunk_id: int
    step_index: int
    start: int
    text: str
    ends_chunk: bool

    def lines(self) -> Iterable[tuple[str, Position]]:
        """Each line of the piece with the position right after it."""
        offset = self.start
        parts = self.text.split("\n")
        for index, line in enumerate(parts):
            offset += len(line) + 1
            last = index == len(parts) - 1
            after = Position(chunk_id=self.chunk_id + 1) if last and self.ends_chunk else None
            yield line, after or Position(chunk_id=self.chunk_id, offset=offset)


@dataclass(frozen=True, slots=True, kw_only=True)
class Taken:
    """What ``take`` read: pieces in log order, where to resume, and whether it stopped for ``max_bytes``."""

    pieces: list[Piece]
    position: Position
    cut: bool


def take(chunks: Iterable[Chunk], after: Position, max_bytes: int) -> Taken:
    """Whole lines after ``after`` from ``chunks`` (those with ids from ``after.chunk_id`` on, in id order), at
    most ``max_bytes`` of UTF-8 (at least one line, however long). Stops consuming ``chunks`` once full."""
    pieces: list[Piece] = []
    budget = max_bytes
    position = after
    for chunk in chunks:
        if chunk.id < after.chunk_id:
            continue
        start = after.offset if chunk.id == after.chunk_id else 0
        text = chunk.text
        if start and start >= len(text):  # read to its end already
            position = Position(chunk_id=chunk.id + 1)
            continue
        rest = text[start:] if start else text
        size = utf8_size(rest)
        if size <= budget:
            pieces.append(Piece(chunk.id, chunk.step_index, start, rest, True))
            budget -= size + 1
            position = Position(chunk_id=chunk.id + 1)
            continue
        end = start  # take lines of this chunk while they fit
        while True:
            newline = text.find("\n", end)
            line_end = len(text) if newline < 0 else newline
            line_size = utf8_size(text[end:line_end])
            if line_size > budget and (pieces or end > start):
                break
            budget -= line_size + 1
            end = line_end + 1
            if newline < 0:
                break
        if end > start:
            ends = end > len(text)
            pieces.append(Piece(chunk.id, chunk.step_index, start, text[start : end - 1], ends))
            position = Position(chunk_id=chunk.id + 1) if ends else Position(chunk_id=chunk.id, offset=end)
        return Taken(pieces=pieces, position=position, cut=True)
    return Taken(pieces=pieces, position=position, cut=False)
