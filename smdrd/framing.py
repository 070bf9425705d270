"""Cut a PBX byte stream into lines. Pure code: no I/O here.

PBXs end records with CR, LF, CRLF, LF-LF (double spacing), NUL padding (Avaya CM's header record) or form feeds
(printer-style page breaks). Any run of these ends a line, and the empty lines between them are dropped. Lines
are kept as raw bytes: decoding is the pipeline's job, with the source's encoding, so a bad byte never costs a line.

Like h11's receive buffer, the framer only ever searches the bytes it has not searched before, so a line
drip-fed one byte at a time stays linear, and a line longer than ``max_line`` is reported once as an
`Oversized` frame and then discarded up to the next line end instead of growing memory without bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TERMINATORS = re.compile(rb"[\r\n\x00\x0c]+")
#: the bytes that end a line, each on its own (what `_TERMINATORS` finds runs of).
LINE_ENDS = (b"\r", b"\n", b"\x00", b"\x0c")


def last_line_end(data: bytes) -> int:
    """Where in ``data`` its last complete line ends (just after its last line-end byte); 0 if it has none."""
    return max(data.rfind(end) for end in LINE_ENDS) + 1


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line longer than the framer's limit.

    Attributes:
        head: its first ``max_line`` bytes, kept for the journal.
        limit: the limit it broke.
    """

    head: bytes
    limit: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """Bytes a framer could not cut into a record and stepped over to find the next one (a corrupt length
    prefix, noise between records); the journal keeps them as an ``error`` line, so nothing disappears unrecorded.

    Attributes:
        raw: the skipped bytes themselves, exactly as received.
        reason: how many bytes were skipped and why, for the line's ``error``.
    """

    raw: bytes
    reason: str


#: what the line `Framer` gives out.
LineFrame = bytes | Oversized
#: what any framer may give out (a handshake's own framer may also skip bytes).
Frame = LineFrame | Skipped


class Framer:
    """Feed bytes in, take complete lines out.

    ``feed(data)`` returns the frames that ``data`` completed; ``close()`` returns the unterminated tail, if
    any (a last line without its line end, or what was left when the peer went away).
    """

    __slots__ = ("_buf", "_discarding", "discarded_bytes", "max_line")

    def __init__(self, max_line: int = 8192) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        #: bytes thrown away from over-long lines since the framer was made (for metrics and logs).
        self.discarded_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[LineFrame]:
        """Add ``data``; return every frame it completes, in order."""
        if not data:
            return []
        parts = _TERMINATORS.split(data)
        if len(parts) == 1:
            self._extend(data)
            return self._overflow()
        out: list[LineFrame] = []
        first = parts[0]
        if self._discarding:
            self.discarded_bytes += len(first)
            self._discarding = False
        elif self._buf:
            self._buf += first
            self._emit(out, bytes(self._buf))
        elif first:
            self._emit(out, first)
        for line in parts[1:-1]:
            self._emit(out, line)
        self._buf = bytearray(parts[-1])
        out.extend(self._overflow())
        return out

    def close(self) -> list[LineFrame]:
        """End of stream: return the unterminated tail as a last frame, if there is one."""
        self._discarding = False
        if not self._buf:
            return []
        tail = bytes(self._buf)
        self._buf = bytearray()
        out: list[LineFrame] = []
        self._emit(out, tail)
        return out

    def _extend(self, data: bytes) -> None:
        if self._discarding:
            self.discarded_bytes += len(data)
        else:
            self._buf += data

    def _overflow(self) -> list[LineFrame]:
        if len(self._buf) <= self.max_line:
            return []
        head = bytes(self._buf[: self.max_line])
        self.discarded_bytes += len(self._buf) - self.max_line
        self._buf = bytearray()
        self._discarding = True
        return [Oversized(head, self.max_line)]

    def _emit(self, out: list[LineFrame], line: bytes) -> None:
        if len(line) > self.max_line:
            self.discarded_bytes += len(line) - self.max_line
            out.append(Oversized(line[: self.max_line], self.max_line))
        elif line:
            out.append(line)
