"""Forms whose body is read as a stream: a file larger than a form may carry (`smdrd.http.MAX_BODY`), such as
a PBX log (``/upload``), a CSV deck (``/rates/import``) or a directory (``/directory/import``).

The server does not read such a body for the handler (`smdrd.http.csrf_in_stream`): `open_form` reads its
first field, the form's CSRF token, and refuses the request before it reads anything else; the file after it is
counted as it arrives and refused past ``[http] max_upload_mb`` without the rest being read. `read_csv_upload`
does all of that for the CSV imports, which hold the file in memory (it is parsed whole), and answers each
mistake beside the file's field on the page that sent it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import BodyPartReader, ClientPayloadError, MultipartReader, web

from smdrd.http import CSRF_FIELD, CSRF_HEADER, csrf_matches, principal_of

__all__ = ["CSRF_REFUSED", "CsvUpload", "UploadProblem", "open_form", "read_csv_body", "read_csv_upload",
           "text_field", "too_large"]

#: what a change is answered without its form's CSRF token (the words the server's own check uses).
CSRF_REFUSED = "forbidden: the form's CSRF token is missing or wrong; reload the page and try again\n"
#: the most small text fields a streamed form carries besides its file.
MAX_FIELDS = 20

Part = BodyPartReader | MultipartReader | None


class UploadProblem(Exception):
    """Something wrong with an upload, said beside its field (``field``), with its HTTP status."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def too_large(field: str, max_bytes: int) -> UploadProblem:
    return UploadProblem(field, f"the file is larger than {max_bytes // (1024 * 1024)} MiB ([http] max_upload_mb)",
                         413)


def _forged() -> UploadProblem:
    return UploadProblem("csrf", "the form's CSRF token is missing or wrong; reload the page and try again", 403)


async def text_field(part: BodyPartReader, name: str, limit: int = 256) -> str | None:
    """A small text field ``name`` (None when the part is another one); at most ``limit`` bytes are read."""
    if part.name != name:
        return None
    data = b""
    while chunk := await part.read_chunk(limit):
        data += chunk
        if len(data) > limit:
            raise UploadProblem(name, "the field is too long")
    return data.decode("utf-8", errors="replace").strip()


async def open_form(request: web.Request, file_field: str) -> tuple[MultipartReader, Part]:
    """The form's reader and its part after the CSRF token (the first field, or the `CSRF_HEADER` header),
    once the token is checked.

    Raises:
        UploadProblem: not a multipart form (``file_field``), or a missing or wrong token (``csrf``, 403).
    """
    principal = principal_of(request)
    assert principal is not None
    if not request.content_type.startswith("multipart/form-data"):
        if not csrf_matches(principal, request.headers.get(CSRF_HEADER, "")):
            raise _forged()
        raise UploadProblem(file_field, "send the file as multipart/form-data (the page's form does)")
    reader = await request.multipart()
    part = await reader.next()
    given = await text_field(part, CSRF_FIELD) if isinstance(part, BodyPartReader) else None
    if given is not None:
        part = await reader.next()
    else:
        given = request.headers.get(CSRF_HEADER, "")
    if not csrf_matches(principal, given):
        raise _forged()
    return reader, part


@dataclass(frozen=True, slots=True)
class CsvUpload:
    """A CSV file sent with a form, and the form's other (small) fields."""

    text: str
    filename: str
    fields: dict[str, str]


async def _read_csv(request: web.Request, file_field: str, max_bytes: int) -> CsvUpload:
    reader, part = await open_form(request, file_field)
    fields: dict[str, str] = {}
    raw: bytes | None = None
    filename = ""
    try:
        while isinstance(part, BodyPartReader):
            if part.name == file_field and raw is None:
                chunks, size = [], 0
                while chunk := await part.read_chunk(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise too_large(file_field, max_bytes)
                    chunks.append(chunk)
                raw, filename = b"".join(chunks), (part.filename or "")[:200]
            elif part.name and len(fields) < MAX_FIELDS:
                fields[part.name[:40]] = await text_field(part, part.name, 2000) or ""
            else:
                raise UploadProblem(file_field, "the form has too many fields")
            part = await reader.next()
    except (ClientPayloadError, ConnectionError, asyncio.IncompleteReadError):
        raise UploadProblem(file_field, "the upload was interrupted; send the file again") from None
    if raw is None or not raw.strip():
        raise UploadProblem(file_field, "choose a CSV file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadProblem(file_field, f"{filename or 'the file'}: not UTF-8 text (save it as UTF-8 CSV)") from None
    return CsvUpload(text, filename, fields)


async def read_csv_upload(request: web.Request, file_field: str, max_bytes: int,
                          page: Callable[[UploadProblem], Awaitable[web.StreamResponse]]) -> (
        CsvUpload | web.StreamResponse):
    """The CSV file of a form posted to a `csrf_in_stream` handler (at most ``max_bytes``), or the answer to
    send instead: 403 without the form's CSRF token (nothing else of the request read), ``page(problem)`` (the
    form's page with the problem beside its field) for a file too large (413; the connection is then closed,
    the rest of the body unread), empty, interrupted or not UTF-8."""
    try:
        return await _read_csv(request, file_field, max_bytes)
    except UploadProblem as exc:
        if exc.status == 403:
            response: web.StreamResponse = web.Response(status=403, text=CSRF_REFUSED)
        else:
            response = await page(exc)
        if exc.status in (403, 413):
            response.force_close()  # the rest of the body is not read
        return response


async def read_csv_body(request: web.Request, field: str, max_bytes: int) -> str:
    """A CSV file sent as the request's whole body (the JSON API's imports), at most ``max_bytes``: counted as it
    arrives, refused past the limit without the rest being read.

    Raises:
        UploadProblem: ``field`` too large (413; close the connection), interrupted, or not UTF-8 text (400).
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(field, max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise too_large(field, max_bytes)
            chunks.append(chunk)
    except (ClientPayloadError, asyncio.IncompleteReadError):
        raise UploadProblem(field, "the upload was interrupted; send it again") from None
    try:
        return b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadProblem(field, "not UTF-8 text (save it as UTF-8 CSV)") from None
