"""The audit trail's CSV opens safely in a spreadsheet: text that starts like a formula stays text."""

from __future__ import annotations

import csv
import io

import pytest

from store.audit import csv_cell, write_trail


@pytest.mark.parametrize("value, shown", [
    ("=HYPERLINK(\"http://example.org\",\"x\")", "'=HYPERLINK(\"http://example.org\",\"x\")"),
    ("+1-555", "'+1-555"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tcmd", "'\tcmd"),
    ("news", "news"), ("item-=1", "item-=1"), (0.5, 0.5), (-0.5, -0.5), (None, None),
])
def test_text_that_starts_like_a_formula_gets_an_apostrophe(value, shown):
    assert csv_cell(value) == shown


def test_the_csv_trail_escapes_every_column_and_jsonl_keeps_values():
    record = {"item_id": "=cmd|' /C calc'!A0", "segment": "@risk", "route": "review", "reasons": ["-x"],
              "confidence": -0.0}
    out = io.StringIO()
    assert write_trail([record], out, fmt="csv") == 1
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[1][:4] == ["'=cmd|' /C calc'!A0", "'@risk", "review", '["-x"]']
    jsonl = io.StringIO()
    write_trail([record], jsonl, fmt="jsonl")
    assert '"item_id": "=cmd|' in jsonl.getvalue()  # JSON lines are data, not a spreadsheet: left as they are
