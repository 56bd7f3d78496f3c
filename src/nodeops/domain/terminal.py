"""What a host's output may do to whoever reads it: escape sequences and control characters, removed; pure.

A host writes what it likes to its log, and a log ends up on an operator's terminal (``less -R`` of a download,
``jq -r`` of an answer). So what nodeops serves never carries a sequence that drives a terminal: cursor moves,
screen erases, window titles and hyperlinks (OSC, ended by BEL or ST), device control strings, resets
(``ESC c``), character set shifts, and the control characters that rewrite a line (``\\r``, backspace) or ring
the bell. ``strip_controls`` drops all of them; with ``keep_sgr`` it keeps SGR (``ESC [ … m``: colours and bold),
which only paint text, for the downloads. ``strip_ansi`` is the JSON log answers' cheaper form (the hot path):
escape sequences only, and only when the text has an ESC.

A carriage return is dropped rather than kept or turned into a newline: on a terminal it would let a line
overwrite what came before it (hiding it), while a new line would shift the line numbers search reports. The
transports already cut the ``\\r`` of CRLF line ends. Tab and newline are the only controls kept.
"""

from __future__ import annotations

import re

# every escape sequence, 7-bit (ESC …) and 8-bit (C1 introducers); alternatives are tried in this order
_SEQUENCES = (
    r"(?P<sgr>\x1b\[[0-9;:]*m)"  # SGR: colours and text attributes, kept by the downloads
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # any other CSI: cursor moves, erases, modes, reports
    # OSC (titles, hyperlinks), DCS, SOS, PM, APC: up to BEL or ST; unterminated, up to the end of the line
    r"|(?:\x1b[]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"  # the other escapes (ESC c, ESC 7, ESC ( 0, ...), and a lone ESC
)
# the control characters left once sequences are gone: C0 but tab and newline, DEL, C1
_CONTROLS = re.compile(_SEQUENCES + r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ESCAPES = re.compile(_SEQUENCES)


def strip_controls(text: str, *, keep_sgr: bool = False) -> str:
    """``text`` without escape sequences and control characters (tab and newline stay); with ``keep_sgr``, SGR
    sequences (colours) stay too. Scans the whole text: for downloads and detail answers, not the hot path."""
    return _CONTROLS.sub(r"\g<sgr>" if keep_sgr else "", text)


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences, as the JSON log answers serve it (a no-op scan when it has no ESC)."""
    return _ESCAPES.sub("", text) if "\x1b" in text else text
