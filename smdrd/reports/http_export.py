"""XLSX and PDF reports over HTTP: ``/api/reports/<kind>?format=xlsx`` or ``format=pdf`` (``paper=letter``).

`smdrd.reports.http` validates the request and takes a report slot; `export_stream` then owns the slot: it
writes the export (`smdrd.reports.export`) in a report thread to an anonymous temporary file, and streams that
file a `CHUNK` at a time, so neither the export nor the client's pace becomes memory. ``calls`` lists every call
of the range, read from a cursor (the page does not apply), as ``calls?format=csv`` does. Never writes to the
database.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncGenerator
from typing import IO, TYPE_CHECKING

from smdrd.http import CHUNK
from smdrd.reports.export import write_export
from smdrd.reports.queries import Context, Query

if TYPE_CHECKING:
    from smdrd.reports.http import ReportService

__all__ = ["export_stream"]


def _written(service: ReportService, query: Query, ctx: Context, fmt: str, paper: str) -> IO[bytes]:
    """The export in an anonymous temporary file, rewound (it is gone once closed)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 (returned open: the stream reads and closes it)
    try:
        reader = service.store.reports()
        try:
            write_export(reader, query, ctx, fmt, out, every=True, paper=paper, names=service.names())
        finally:
            reader.close()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


async def export_stream(service: ReportService, query: Query, ctx: Context, fmt: str,
                        paper: str) -> AsyncGenerator[bytes, None]:
    """The export a chunk at a time. The first item is ``b""``: the file is written (an error so far can still
    be a clean 500). Leaves ``service``'s report slot when it ends, read to the end or not."""
    file: IO[bytes] | None = None
    try:
        file = await service._run(_written, service, query, ctx, fmt, paper)
        yield b""
        while chunk := await service._run(file.read, CHUNK):
            yield chunk
    finally:
        service._leave()
        if file is not None:
            file.close()
