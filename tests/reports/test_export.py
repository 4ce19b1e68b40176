"""Every export format parses back to exactly the ledger's rows, in a stable column order."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.export import COLUMNS, INTS, MONEY, TIMES, export_to_file, make_encoder
from proxy.reports.selection import ReportError, Selection, parse_filters


def _ledger(rows: list[LedgerRow], selection: Selection | None = None) -> list[dict[str, Any]]:
    out = []
    for row in sorted(rows, key=lambda r: (r.started_at, r.request_id)):
        if selection and selection.start and row.started_at < selection.start:
            continue
        if selection and selection.filters and row.team not in {v for _, v in selection.filters}:
            continue
        out.append({name: getattr(row, name) for name in COLUMNS})
    return out


def _from_text(name: str, text: str) -> Any:
    if text == "":
        return {} if name == "tags" else None
    if name in MONEY:
        return Decimal(text)
    if name in TIMES:
        return datetime.fromisoformat(text)
    if name in INTS:
        return int(text)
    if name in ("stream", "unpriced"):
        return {"true": True, "false": False}[text]
    if name == "tags":
        return json.loads(text)
    return text


async def _export(ledger: LedgerWriter, fmt: str, path: Path, sel: Selection) -> None:
    await export_to_file(ledger.engine, sel, make_encoder(fmt), str(path), batch=97)


def test_column_order_is_the_documented_one() -> None:
    doc = Path(__file__).parents[2] / "docs" / "exports.md"
    listed = doc.read_text().split("<!-- columns -->")[1].split("<!-- /columns -->")[0]
    assert tuple(listed.split()) == COLUMNS


async def test_csv_round_trips(filled: LedgerWriter, rows: list[LedgerRow], tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    await _export(filled, "csv", path, Selection())
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == COLUMNS
        back = [{n: _from_text(n, v) for n, v in zip(COLUMNS, rec, strict=True)} for rec in reader]
    assert back == _ledger(rows)


async def test_jsonl_round_trips_with_a_filter(
    filled: LedgerWriter, rows: list[LedgerRow], tmp_path: Path
) -> None:
    sel = Selection(start=datetime(2026, 11, 1, tzinfo=UTC), filters=parse_filters(["team=search"]))
    path = tmp_path / "out.jsonl"
    await _export(filled, "jsonl", path, sel)
    back = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        assert tuple(record) == COLUMNS
        for name in MONEY:
            record[name] = None if record[name] is None else Decimal(record[name])
        for name in TIMES:
            record[name] = datetime.fromisoformat(record[name])
        back.append(record)
    expected = _ledger(rows, sel)
    assert back == expected and expected


async def test_parquet_round_trips(
    filled: LedgerWriter, rows: list[LedgerRow], tmp_path: Path
) -> None:
    path = tmp_path / "out.parquet"
    await _export(filled, "parquet", path, Selection())
    table = pq.read_table(path)
    assert tuple(table.column_names) == COLUMNS
    assert pq.ParquetFile(path).num_row_groups == -(-len(rows) // 97)  # one per batch
    back = table.to_pylist()
    for record in back:
        record["tags"] = dict(record["tags"])
        for name in MONEY:  # decimal128(38, 24) carries trailing zeros; the value is exact
            if record[name] is not None:
                record[name] = record[name].normalize()
    expected = _ledger(rows)
    for record in expected:
        for name in MONEY:
            if record[name] is not None:
                record[name] = record[name].normalize()
    assert back == expected


async def test_empty_range_exports_a_header_only(filled: LedgerWriter, tmp_path: Path) -> None:
    sel = Selection(start=datetime(2030, 1, 1, tzinfo=UTC))
    path = tmp_path / "empty.csv"
    await _export(filled, "csv", path, sel)
    assert path.read_text() == ",".join(COLUMNS) + "\n"


def test_unknown_format_and_misplaced_rollup_are_refused() -> None:
    with pytest.raises(ReportError, match="unknown format"):
        make_encoder("xlsx")
    with pytest.raises(ReportError, match="rollup"):
        make_encoder("csv", rollup="hour")
