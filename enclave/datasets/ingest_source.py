"""Reading an upload in batches, whatever its size, with bounded memory.

A CSV file arrives as a stream of byte chunks (a file on disk, an HTTP body in memory, or a staging
object decrypted segment by segment); it is cut at record boundaries into slices of about
``batch_bytes`` and each slice is parsed by Polars with the header of the file, every value as
text. A record boundary is a line end outside quotes (RFC 4180 doubles quotes inside a quoted
field, so a line end is a boundary when the number of quote characters before it is even); a
quoted value may thus hold line ends.

A Parquet file is read row group by row group through a lazy scan and sliced into batches of
``batch_rows``; a Parquet staging object is decrypted into memory first (it is compressed and
bounded by the upload limit).

Each batch knows the number of data rows before it, so row numbers stay those of the file (the
header is row 1, as in a spreadsheet).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl

from enclave.datasets.exceptions import InvalidDataset

BATCH_BYTES = 8 * 1024 * 1024
BATCH_ROWS = 100_000
READ_SIZE = 4 * 1024 * 1024
QUOTE = ord('"')
NEWLINE = ord("\n")


@dataclass(frozen=True)
class Batch:
    """Rows of the upload: ``offset`` data rows come before them; ``consumed`` bytes read so far."""

    frame: pl.DataFrame
    offset: int
    consumed: int


def _unreadable(fmt: str, error: BaseException) -> InvalidDataset:
    return InvalidDataset("file", f"cannot be read as {fmt}: {str(error)[:200]}", code="unreadable")


def _not_utf8() -> InvalidDataset:
    return InvalidDataset("file", "is not UTF-8: save it as CSV UTF-8", code="not_utf8")


def _record_end(chunk: bytes) -> int:
    """Index just past the last line end of ``chunk`` outside quotes (0 if none).

    ``chunk`` starts at the start of a record.
    """
    if chunk.count(b'"') == 0:
        return chunk.rfind(b"\n") + 1
    array = np.frombuffer(chunk, dtype=np.uint8)
    quotes = np.cumsum(array == QUOTE, dtype=np.int64)
    ends = np.flatnonzero(array == NEWLINE)
    outside = np.flatnonzero(quotes[ends] % 2 == 0)
    return int(ends[outside[-1]]) + 1 if outside.size else 0


class _Reader:
    """Bytes of the stream not parsed yet, and how many were read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.source = iter(chunks)
        self.pending = bytearray()
        self.consumed = 0
        self.finished = False

    def fill(self, size: int) -> None:
        while len(self.pending) < size and not self.finished:
            try:
                chunk = next(self.source)
            except StopIteration:
                self.finished = True
                break
            self.consumed += len(chunk)
            self.pending += chunk

    def header(self, batch_bytes: int) -> tuple[list[str], str]:
        """The column names and the separator (``;`` if the header has more of them than ``,``)."""
        wanted = batch_bytes
        self.fill(wanted)
        if self.pending.startswith(b"\xef\xbb\xbf"):
            del self.pending[:3]
        while (line_end := self.pending.find(b"\n")) < 0 and not self.finished:
            wanted = len(self.pending) + batch_bytes
            self.fill(wanted)
        line = bytes(self.pending if line_end < 0 else self.pending[:line_end])
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise _not_utf8() from None
        separator = ";" if text.count(";") > text.count(",") else ","
        try:
            columns = pl.read_csv(io.StringIO(text + "\n"), separator=separator, infer_schema=False).columns
        except pl.exceptions.PolarsError as error:
            raise _unreadable("csv", error) from None
        del self.pending[: (len(self.pending) if line_end < 0 else line_end + 1)]
        return columns, separator

    def records(self, batch_bytes: int) -> bytes:
        """The next whole records, about ``batch_bytes`` of them (empty at the end)."""
        wanted = batch_bytes
        while True:
            self.fill(wanted)
            cut = _record_end(bytes(self.pending[:wanted]))
            if not cut and len(self.pending) > wanted:
                cut = _record_end(bytes(self.pending))
            if self.finished and (not cut or len(self.pending) <= wanted):
                cut = len(self.pending)
            if cut:
                body = bytes(self.pending[:cut])
                del self.pending[:cut]
                return body
            wanted = len(self.pending) + batch_bytes  # one record longer than a batch: read on


def csv_batches(chunks: Iterable[bytes], *, batch_bytes: int = BATCH_BYTES) -> Iterator[Batch]:
    """The CSV stream as batches of text columns, cut at record boundaries."""
    reader = _Reader(chunks)
    header, separator = reader.header(batch_bytes)
    offset = 0
    while True:
        body = reader.records(batch_bytes)
        if body.strip():
            frame = _parse(body, header, separator)
            yield Batch(frame, offset, reader.consumed - len(reader.pending))
            offset += frame.height
        if reader.finished and not reader.pending:
            break
    if offset == 0:
        yield Batch(pl.DataFrame(schema=dict.fromkeys(header, pl.String)), 0, reader.consumed)


def _parse(body: bytes, header: list[str], separator: str) -> pl.DataFrame:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8() from None
    try:
        return pl.read_csv(
            body,
            has_header=False,
            new_columns=header,
            separator=separator,
            infer_schema=False,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as error:
        raise _unreadable("csv", error) from None


def parquet_batches(source: Path | IO[bytes], *, batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
    """The Parquet file as batches of ``batch_rows`` rows (one lazy slice each)."""
    try:
        lazy = pl.scan_parquet(source)
        total = lazy.select(pl.len()).collect().item()
        columns = lazy.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as error:
        raise _unreadable("parquet", error) from None
    size = source.stat().st_size if isinstance(source, Path) else None
    if total == 0:
        yield Batch(pl.DataFrame(schema=dict.fromkeys(columns, pl.String)), 0, size or 0)
        return
    for offset in range(0, total, batch_rows):
        try:
            frame = lazy.slice(offset, batch_rows).collect()
        except (pl.exceptions.PolarsError, OSError) as error:
            raise _unreadable("parquet", error) from None
        done = min(offset + batch_rows, total)
        yield Batch(frame, offset, (size or 0) * done // total)


def file_chunks(path: Path, *, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """A file's bytes, a few MiB at a time."""
    with path.open("rb") as handle:
        while chunk := handle.read(read_size):
            yield chunk


def memory_chunks(data: bytes, *, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """Bytes in memory as chunks (without copying the whole)."""
    view = memoryview(data)
    for start in range(0, len(data), read_size):
        yield bytes(view[start : start + read_size])


def batches(
    fmt: str,
    *,
    path: Path | None = None,
    data: bytes | None = None,
    chunks: Callable[[], Iterable[bytes]] | None = None,
    batch_bytes: int = BATCH_BYTES,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[Batch]:
    """Batches of an upload given as a file, bytes in memory, or a stream of chunks."""
    if fmt == "parquet":
        if path is not None:
            yield from parquet_batches(path, batch_rows=batch_rows)
            return
        whole = data if data is not None else b"".join(chunks() if chunks else [])
        yield from parquet_batches(io.BytesIO(whole), batch_rows=batch_rows)
        return
    if path is not None:
        stream: Iterable[bytes] = file_chunks(path)
    elif data is not None:
        stream = memory_chunks(data)
    elif chunks is not None:
        stream = chunks()
    else:
        raise ValueError("no upload given")
    yield from csv_batches(stream, batch_bytes=batch_bytes)
