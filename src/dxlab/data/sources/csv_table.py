"""A user's own patient table (CSV) mapped onto the canonical table by a column mapping in config.

The embedded simulated cohort is read with this adapter too: its daily exports are plain CSV files.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dxlab.data.quarantine import describe
from dxlab.data.schema import IngestResult, RowIssue, make_table

_LIST_ITEM = re.compile(r"^[A-Za-z0-9_.:@\-]+$")


class CsvSource:
    """Read CSV files whose columns a mapping names. Unparsable fields become RowIssues, never exceptions."""

    def __init__(
        self,
        path: str,
        columns: Mapping[str, str],
        pattern: str = "*.csv",
        name: str = "csv",
        list_separator: str = ";",
        measurement_columns: Sequence[str] = (),
        sex_codes: Mapping[str, str] | None = None,
        family_history_codes: Mapping[str, float] | None = None,
        day_pattern: str | None = r"(\d{4}-\d{2}-\d{2})",
        day_column: str | None = None,
    ):
        self.path = path
        self.columns = columns
        self.pattern = pattern
        self.name = name
        self.list_separator = list_separator
        self.measurement_columns = measurement_columns
        self.sex_codes = sex_codes
        self.family_history_codes = family_history_codes
        self.day_pattern = day_pattern
        self.day_column = day_column

    def files(self) -> list[Path]:
        """The files of the folder matching `pattern`, whatever the case of their names (`Patients_X.CSV` too)."""
        path = Path(self.path)
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise FileNotFoundError(f"{self.name}: input {path} does not exist")
        if "/" in self.pattern or "**" in self.pattern:
            return sorted(path.glob(self.pattern))
        pattern = self.pattern.lower()
        return sorted((p for p in path.iterdir() if p.is_file() and fnmatch.fnmatchcase(p.name.lower(), pattern)),
                      key=lambda p: (p.name.lower(), p.name))

    def read_file(self, path) -> IngestResult:
        path = Path(path)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        wanted = [c for c in self.columns.values()] + list(self.measurement_columns)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            # the file's own header is not named: a file without one has its first row there
            raise ValueError(f"{path}: missing column(s) {missing}; the file has {len(frame.columns)} column(s)")
        day = ""
        if self.day_pattern and (match := re.search(self.day_pattern, path.name)):
            day = match.group(1)
        rows, issues = [], []
        for i, record in enumerate(frame.to_dict("records"), start=1):
            row, row_issues = self._parse(record, path.name, i)
            row["day"] = record.get(self.day_column, day) if self.day_column else day
            rows.append(row)
            issues.extend(row_issues)
        return IngestResult(make_table(rows), issues)

    def _parse(self, record: Mapping[str, str], file: str, line: int) -> tuple[dict, list[RowIssue]]:
        col = self.columns
        issues: list[RowIssue] = []

        def issue(field: str, reason: str) -> None:
            issues.append(RowIssue(file, line, field, reason))

        row: dict = {"source": self.name, "source_file": file, "source_row": line}
        row["patient_id"] = record.get(col.get("patient_id", ""), "").strip()
        if not row["patient_id"]:
            issue("patient_id", "missing patient id")
        row["age"] = _number(record.get(col.get("age", ""), ""), "age", issue)
        sex_raw = record.get(col.get("sex", ""), "").strip()
        if sex_raw:
            codes = self.sex_codes or {"F": "F", "M": "M"}
            row["sex"] = codes.get(sex_raw)
            if row["sex"] is None:
                issue("sex", f"unknown sex code ({describe(sex_raw)}; expected one of {sorted(codes)})")
        fh_raw = record.get(col.get("family_history", ""), "").strip().lower()
        if fh_raw:
            codes = self.family_history_codes or {"yes": 1.0, "no": 0.0}
            row["family_history"] = codes.get(fh_raw, float("nan"))
            if fh_raw not in codes:
                issue("family_history", f"unknown family history value ({describe(fh_raw)}; expected one of "
                                        f"{sorted(codes)})")
        for field in ("findings", "excluded", "history"):
            row[field] = self._list(record.get(col.get(field, ""), ""), field, issue)
        row["note"] = record.get(col.get("note", ""), "")
        # the unit folds must not split (a patient seen several times, a family); empty: the row's patient
        row["group_id"] = record.get(col.get("group_id", ""), "").strip() if col.get("group_id") else ""
        diagnosis = record.get(col.get("diagnosis", ""), "").strip()
        row["diagnosis"] = diagnosis or None
        row["diagnosis_name"] = record.get(col.get("diagnosis_name", ""), "").strip() if col.get("diagnosis_name") else ""
        measurements = {}
        for name in self.measurement_columns:
            value = _number(record.get(name, ""), name, issue)
            if not math.isnan(value):
                measurements[name] = value
        row["measurements"] = measurements
        return row, issues

    def _list(self, text: str, field: str, issue) -> list[str]:
        text = text.strip()
        if not text:
            return []
        items = [item.strip() for item in text.split(self.list_separator)]
        bad = [item for item in items if not _LIST_ITEM.match(item)]
        if bad:
            issue(field, f"malformed list: {len(bad)} of {len(items)} item(s) not an id ({describe(text)}; "
                         f"expected ids separated by {self.list_separator!r})")
            return []
        return list(dict.fromkeys(items))


def _number(text: str, field: str, issue) -> float:
    text = (text or "").strip()
    if not text:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        issue(field, f"not a number ({describe(text)})")
        return float("nan")
    if math.isnan(value) or math.isinf(value):
        issue(field, "not a finite number")
        return float("nan")
    return value
