"""Per-call exports of the ledger: CSV, JSON lines and Parquet, streamed in constant memory.

Rows are read through a server-side cursor (``yield_per``) in batches and each batch is
encoded and handed on before the next is read, so memory depends on the batch size, never
on the range. Columns are the ledger's, in the table's order (:data:`COLUMNS`, documented in
docs/exports.md); money is exact in every format (decimal text in CSV/JSONL, ``decimal128``
in Parquet).

An :class:`Encoder` is synchronous and stateful (``begin``/``encode``/``end`` return bytes);
callers run it off the event loop (:func:`export_chunks` uses ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.db import ExactDecimal, UTCDateTime
from proxy.reports.selection import LEDGER, ReportError, Selection

__all__ = [
    "COLUMNS",
    "FORMATS",
    "CsvEncoder",
    "Encoder",
    "JsonlEncoder",
    "ParquetEncoder",
    "export_chunks",
    "export_to_file",
    "ledger_batches",
    "make_encoder",
]

COLUMNS: tuple[str, ...] = tuple(c.name for c in LEDGER.columns)
MONEY = frozenset(c.name for c in LEDGER.columns if isinstance(c.type, ExactDecimal))
TIMES = frozenset(c.name for c in LEDGER.columns if isinstance(c.type, UTCDateTime))
BOOLS = frozenset({"stream", "unpriced"})
INTS = frozenset(n for n in COLUMNS if n.endswith("_tokens")) | {
    "status_code",
    "latency_ms",
    "ttft_ms",
}
FORMATS = ("csv", "jsonl", "parquet", "focus")
BATCH = 2000
# Parquet money: 38 digits with 24 after the point. Catalog rates are at most 1e-18 USD per
# token and rate cards add a few digits; a value that would not fit fails loudly, never rounds.
PARQUET_MONEY_SCALE = 24


Row = Mapping[str, Any]


class Encoder(Protocol):
    media_type: str
    extension: str

    def begin(self) -> bytes: ...
    def encode(self, rows: Sequence[Row]) -> bytes: ...
    def end(self) -> bytes: ...


async def ledger_batches(
    engine: AsyncEngine, selection: Selection, batch: int = BATCH
) -> AsyncIterator[list[Row]]:
    """The selected rows in ``(started_at, request_id)`` order, ``batch`` at a time."""
    stmt = (
        select(LEDGER)
        .where(*selection.where())
        .order_by(LEDGER.c.started_at, LEDGER.c.request_id)
        .execution_options(yield_per=batch)
    )
    async with engine.connect() as conn:
        result = await conn.stream(stmt)
        async for part in result.mappings().partitions(batch):
            yield list(part)  # type: ignore[arg-type]  # RowMapping is a Mapping


def _text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in MONEY:
        return format(value, "f")
    if name in TIMES:
        return _iso(value)
    if name in BOOLS:
        return "true" if value else "false"
    if name == "tags":
        return json.dumps(value or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class CsvEncoder:
    """RFC 4180 CSV with a header; empty field = NULL; tags as a JSON object."""

    media_type = "text/csv; charset=utf-8"
    extension = "csv"

    def begin(self) -> bytes:
        return self._lines([COLUMNS])

    def encode(self, rows: Sequence[Row]) -> bytes:
        return self._lines([[_text(name, row[name]) for name in COLUMNS] for row in rows])

    def end(self) -> bytes:
        return b""

    @staticmethod
    def _lines(records: Sequence[Sequence[str]]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(records)
        return buf.getvalue().encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # a string: a JSON number would be read back as a float
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class JsonlEncoder:
    """One JSON object per line with every column; money as decimal strings, times in UTC."""

    media_type = "application/x-ndjson"
    extension = "jsonl"

    def begin(self) -> bytes:
        return b""

    def encode(self, rows: Sequence[Row]) -> bytes:
        opts = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
        return b"".join(
            orjson.dumps({name: row[name] for name in COLUMNS}, default=_json_default, option=opts)
            for row in rows
        )

    def end(self) -> bytes:
        return b""


class _Sink:
    """A write-only file for pyarrow whose bytes are taken out after each row group."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._size += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ReportError(
            "Parquet export needs pyarrow: pip install 'spendgate[parquet]'"
        ) from None
    return pyarrow


class ParquetEncoder:
    """Parquet, one row group per batch; money as ``decimal128(38, 24)``, times as UTC
    microsecond timestamps, tags as ``map<string, string>``."""

    media_type = "application/vnd.apache.parquet"
    extension = "parquet"

    def __init__(self) -> None:
        pa = self._pa = _pyarrow()
        fields = []
        for name in COLUMNS:
            if name in MONEY:
                kind = pa.decimal128(38, PARQUET_MONEY_SCALE)
            elif name in TIMES:
                kind = pa.timestamp("us", tz="UTC")
            elif name in BOOLS:
                kind = pa.bool_()
            elif name in INTS:
                kind = pa.int64()
            elif name == "tags":
                kind = pa.map_(pa.string(), pa.string())
            else:
                kind = pa.string()
            fields.append(pa.field(name, kind, nullable=LEDGER.c[name].nullable))
        self._schema = pa.schema(fields)
        self._sink = _Sink()
        self._writer = pa.parquet.ParquetWriter(self._sink, self._schema, compression="zstd")

    def begin(self) -> bytes:
        return self._sink.take()

    def encode(self, rows: Sequence[Row]) -> bytes:
        if not rows:
            return b""
        columns = {name: [row[name] for row in rows] for name in COLUMNS}
        columns["tags"] = [list((v or {}).items()) for v in columns["tags"]]
        table = self._pa.Table.from_pydict(columns, schema=self._schema)
        self._writer.write_table(table)
        return self._sink.take()

    def end(self) -> bytes:
        self._writer.close()
        return self._sink.take()


def make_encoder(fmt: str, *, rollup: str | None = None) -> Encoder:
    """The encoder for ``fmt`` (csv, jsonl, parquet, focus); ``rollup="hour"`` for FOCUS."""
    if rollup is not None and fmt != "focus":
        raise ReportError("rollup applies to the focus format only")
    if fmt == "csv":
        return CsvEncoder()
    if fmt == "jsonl":
        return JsonlEncoder()
    if fmt == "parquet":
        return ParquetEncoder()
    if fmt == "focus":
        from proxy.reports.focus import FocusEncoder

        return FocusEncoder(rollup=rollup)
    raise ReportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


async def export_chunks(
    engine: AsyncEngine, selection: Selection, encoder: Encoder, batch: int = BATCH
) -> AsyncIterator[bytes]:
    """The encoded export, chunk by chunk; encoding runs in a thread, off the event loop."""
    yield await asyncio.to_thread(encoder.begin)
    async for rows in ledger_batches(engine, selection, batch):
        chunk = await asyncio.to_thread(encoder.encode, rows)
        if chunk:
            yield chunk
    tail = await asyncio.to_thread(encoder.end)
    if tail:
        yield tail


async def export_to_file(
    engine: AsyncEngine, selection: Selection, encoder: Encoder, path: str, batch: int = BATCH
) -> int:
    """Write the export to ``path``; returns the bytes written."""
    written = 0
    with open(path, "wb") as f:
        async for chunk in export_chunks(engine, selection, encoder, batch):
            await asyncio.to_thread(f.write, chunk)
            written += len(chunk)
    return written
