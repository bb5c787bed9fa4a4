"""Schema and value checks on the canonical table; bad rows are quarantined with file, row, field and reason.

A reason never quotes a cell (`dxlab.data.quarantine`): "age outside [0, 120] years", not the age; an unknown
term is named only when it is shaped like a vocabulary id."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dxlab.data.quarantine import describe, ids_or_count, name_or_describe
from dxlab.data.schema import CANONICAL_COLUMNS, ISSUE_COLUMNS, LIST_COLUMNS, SEX_CODES, RowIssue


class TooManyBadRows(RuntimeError):
    """More than the configured share of rows failed validation."""


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    quarantined: pd.DataFrame  # one row per issue: ISSUE_COLUMNS (source, source_file, source_row, field, ...)
    n_rows: int

    @property
    def n_bad_rows(self) -> int:
        keys = ["source", "source_file", "source_row"]
        return int(self.quarantined[keys].drop_duplicates().shape[0]) if len(self.quarantined) else 0

    def summary(self) -> dict:
        reasons = (self.quarantined.groupby("field").size().to_dict() if len(self.quarantined) else {})
        return {"n_rows": self.n_rows, "n_valid": int(len(self.valid)), "n_quarantined": self.n_bad_rows,
                "bad_fraction": self.n_bad_rows / max(self.n_rows, 1),
                "issues_by_field": {k: int(v) for k, v in reasons.items()}}


def validate_table(
    table: pd.DataFrame,
    parse_issues: list[RowIssue] | pd.DataFrame = (),
    term_is_known: Callable[[str], bool] | None = None,
    disease_is_known: Callable[[str], bool] | None = None,
    labelled: bool = True,
    age_range: tuple[float, float] = (0.0, 120.0),
    measurement_ranges: Mapping[str, tuple[float, float]] | None = None,
    require_findings: bool = True,
    seen_ids: set[str] | None = None,
) -> ValidationResult:
    """Check every row; rows with any issue (including parse issues from the adapter) go to quarantine."""
    missing = [c for c in CANONICAL_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"not a canonical patient table: missing columns {missing}")
    issues: list[dict] = [i.as_dict() if isinstance(i, RowIssue) else dict(i) for i in
                          (parse_issues.to_dict("records") if isinstance(parse_issues, pd.DataFrame) else parse_issues)]
    seen = set(seen_ids or ())
    for row in table.itertuples(index=False):
        def add(field: str, reason: str) -> None:
            issues.append({"source": row.source, "source_file": row.source_file, "source_row": int(row.source_row),
                           "field": field, "reason": reason, "patient_id": row.patient_id})

        if not row.patient_id:
            add("patient_id", "missing patient id")
        elif row.patient_id in seen:
            add("patient_id", "duplicate patient id (already seen in this or an earlier file)")
        else:
            seen.add(row.patient_id)
        if row.age == row.age and not (age_range[0] <= row.age <= age_range[1]):
            add("age", f"age outside [{age_range[0]:g}, {age_range[1]:g}] years")
        if row.sex is not None and row.sex not in SEX_CODES:
            add("sex", f"unknown sex code ({describe(row.sex)}; expected one of {sorted(SEX_CODES)})")
        for col in LIST_COLUMNS:
            value = getattr(row, col)
            if not isinstance(value, (list, tuple, np.ndarray)):
                add(col, f"expected a list, got {type(value).__name__}")
        if require_findings and len(row.findings) == 0:
            add("findings", "no observed findings")
        if term_is_known is not None:
            for col in ("findings", "excluded"):
                terms = list(getattr(row, col))
                unknown = [t for t in terms if not term_is_known(t)]
                if unknown:
                    add(col, f"unknown term id(s): {len(unknown)} of {len(terms)} ({ids_or_count(unknown)})")
        if labelled and not row.diagnosis:
            add("diagnosis", "missing diagnosis in training data")
        elif row.diagnosis and disease_is_known is not None and not disease_is_known(row.diagnosis):
            add("diagnosis", f"unknown disease id ({name_or_describe(row.diagnosis)})")
        for name, (lo, hi) in (measurement_ranges or {}).items():
            value = (row.measurements or {}).get(name)
            if value is not None and not (lo <= value <= hi):
                add(f"measurements.{name}", f"{name} outside [{lo:g}, {hi:g}]")
    quarantined = pd.DataFrame(issues, columns=ISSUE_COLUMNS)
    quarantined["source"] = quarantined["source"].fillna("").astype(str)
    # an adapter's issue names its file and row; the source when ingest has set it (one source's files only)
    sources = set(table["source"].astype(str))
    if len(sources) == 1:
        quarantined.loc[quarantined["source"] == "", "source"] = next(iter(sources))
    bad = set(zip(quarantined["source"], quarantined["source_file"].astype(str), quarantined["source_row"].astype(int)))
    is_bad = np.array([(str(s), str(f), int(r)) in bad
                       for s, f, r in zip(table["source"], table["source_file"], table["source_row"])], dtype=bool)
    return ValidationResult(valid=table[~is_bad].reset_index(drop=True), quarantined=quarantined, n_rows=len(table))
