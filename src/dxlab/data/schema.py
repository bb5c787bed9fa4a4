"""The canonical patient table: the one shape every source adapter produces and everything downstream reads.

One row per patient encounter. List columns hold Python lists of strings; ``measurements`` is a dict of
numeric values and ``note_mentions`` a list of dicts (both stored as JSON text in parquet so that files with different
measurements or mentions stay compatible).

Columns
-------
patient_id       str         pseudonymised (keyed hash) once the row has passed ingest; never the raw id
age              float|NaN   years at the encounter
sex              str|None    "F", "M" or None when missing
family_history   float|NaN   1.0 a first-degree relative affected, 0.0 none, NaN unknown
findings         list[str]   observed findings: HPO term ids, or a source's own codes (DDXPlus evidences)
excluded         list[str]   findings explicitly looked for and absent
history          list[str]   medical-history codes (antecedents)
measurements     dict        optional numeric measurements, name -> value
note             str         short free-text clinical note ("" when none)
note_mentions    list[dict]  what was read in the note (dxlab.data.notes): one dict per mention, {"start", "end",
                             "text", "hpo_id", "name", "assertion"} (+ "relative"); stored as JSON text in parquet
diagnosis        str|None    the confirmed diagnosis (disease id) when known
diagnosis_name   str         the diagnosis's name as the source gives it ("" when none): names a disease the
                             knowledge does not
source           str         the source's name in the data config (hpo_cohort, case_reports, ddxplus, csv)
group_id         str         the unit cross-validation folds never split: the publication of a case report
                             ("PMID:123", kept: bibliographic, never a patient's); any other group (a family, a
                             patient across visits, else the row's own patient) is named at ingest after the
                             place of its first row ("hpo_cohort/patients_2025-01-01.csv#17"): no raw value, and
                             the same whatever the pseudonymisation key (dxlab.data.pseudonym.group_labels)
source_file      str         file the row came from (relative path or basename)
source_row       int         1-based row (line) number within that file, header excluded
day              str         ISO date of the batch the row arrived in ("" when unknown)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

CANONICAL_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "age",
    "sex",
    "family_history",
    "findings",
    "excluded",
    "history",
    "measurements",
    "note",
    "note_mentions",
    "diagnosis",
    "diagnosis_name",
    "source",
    "group_id",
    "source_file",
    "source_row",
    "day",
)
LIST_COLUMNS: tuple[str, ...] = ("findings", "excluded", "history")
SEX_CODES: frozenset[str] = frozenset({"F", "M"})
ISSUE_COLUMNS: list[str] = ["source", "source_file", "source_row", "field", "reason", "patient_id"]


@dataclass
class RowIssue:
    """One problem with one field of one input row: what the quarantine file records."""

    source_file: str
    source_row: int
    field: str
    reason: str
    patient_id: str = ""  # pseudonymised id when known
    source: str = ""  # the source's name in the data config

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "source_file": self.source_file,
            "source_row": self.source_row,
            "field": self.field,
            "reason": self.reason,
            "patient_id": self.patient_id,
        }


@dataclass
class IngestResult:
    """What an adapter returns: canonical rows (raw ids) plus the problems it met while parsing."""

    table: pd.DataFrame
    issues: list[RowIssue] = field(default_factory=list)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CANONICAL_COLUMNS})


def make_table(rows: list[dict]) -> pd.DataFrame:
    """Build a canonical table from dicts, filling absent columns with their empty value."""
    defaults = {
        "age": float("nan"),
        "sex": None,
        "family_history": float("nan"),
        "findings": [],
        "excluded": [],
        "history": [],
        "measurements": {},
        "note": "",
        "note_mentions": [],
        "diagnosis": None,
        "diagnosis_name": "",
        "source": "",
        "group_id": "",
        "source_file": "",
        "source_row": 0,
        "day": "",
    }
    records = []
    for row in rows:
        rec = {}
        for col in CANONICAL_COLUMNS:
            value = row.get(col, defaults.get(col))
            if col in LIST_COLUMNS or col in ("measurements", "note_mentions"):
                value = type(defaults[col])(value) if value is not None else type(defaults[col])()
            rec[col] = value
        records.append(rec)
    if not records:
        return empty_table()
    table = pd.DataFrame.from_records(records, columns=list(CANONICAL_COLUMNS))
    table["age"] = pd.to_numeric(table["age"], errors="coerce").astype(float)
    table["family_history"] = pd.to_numeric(table["family_history"], errors="coerce").astype(float)
    table["source_row"] = table["source_row"].astype(int)
    return table


def to_parquet(table: pd.DataFrame, path) -> None:
    """Write a canonical table; measurements and note mentions go as JSON text so schemas of different files agree."""
    out = table.copy()
    out["measurements"] = [json.dumps(m or {}, sort_keys=True) for m in out["measurements"]]
    out["note_mentions"] = [json.dumps(_mentions(m), ensure_ascii=False)
                            for m in (out["note_mentions"] if "note_mentions" in out else [None] * len(out))]
    for col in LIST_COLUMNS:
        out[col] = [list(v) for v in out[col]]
    out.to_parquet(path, index=False)


def _mentions(value) -> list:
    """A cell of note_mentions as a list (rows added without it, e.g. by a sampler, hold NaN)."""
    if isinstance(value, str):
        return json.loads(value) if value else []
    return list(value) if isinstance(value, (list, tuple)) else []


def read_parquet(path) -> pd.DataFrame:
    table = pd.read_parquet(path)
    table["measurements"] = [json.loads(m) if isinstance(m, str) and m else {} for m in table["measurements"]]
    # tables written before notes were read have no mentions
    table["note_mentions"] = ([json.loads(m) if isinstance(m, str) and m else [] for m in table["note_mentions"]]
                              if "note_mentions" in table else [[] for _ in range(len(table))])
    for col in LIST_COLUMNS:
        table[col] = [list(v) if v is not None else [] for v in table[col]]
    return table
