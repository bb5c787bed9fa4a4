"""DDXPlus source adapter: synthetic patients of the DDXPlus release (Fansi Tchango et al., NeurIPS 2022).

Input: a CSV file, or a folder of CSV files, in the release format. Both the original upper-case release
columns (``AGE, SEX, PATHOLOGY, EVIDENCES, INITIAL_EVIDENCE``) and the lower-case names of the shared subset
(``age, sex, diagnosis, features, feature_id``) are accepted; any other column (``DIFFERENTIAL_DIAGNOSIS``,
``top5_diagnoses``) is ignored. ``INITIAL_EVIDENCE`` is not required and has no place in the canonical table.

The evidence list (``"['E_53', 'E_54_@_V_179', 'E_56_@_2', ...]"``) is mapped with ``release_evidences.json``:

* binary evidence ``E_91``                          -> finding ``"E_91"``
* categorical / multi-choice value ``E_54_@_V_179`` -> finding ``"E_54_@_V_179"``
* numeric categorical ``E_56_@_2`` (a 0-10 scale:
  ``data_type`` C/M whose ``possible-values`` are numbers) -> ``measurements["E_56"] = 2.0``
* any non-numeric evidence flagged ``is_antecedent``  -> ``history`` instead of ``findings``

Problems are :class:`~dxlab.data.schema.RowIssue` s and the row is still returned:

* unknown evidence code, categorical evidence without a value, value not among ``possible-values``,
  unparsable or missing evidence list -> field ``findings`` (``history`` for a bad antecedent value); the bad
  token is left out, the row's other evidences are kept
* numeric value that is not a number or not on the scale -> field ``measurements``
* non-numeric or negative age -> ``age``; unknown sex code -> ``sex``
* missing or unknown pathology -> ``diagnosis``
* a CSV line with fewer fields than the header, or non-empty extra fields -> ``row``

The release files hold answers equal to the question's default too (``E_204_@_V_10``: "did not travel",
present for almost every patient; ``E_57_@_V_123``: pain radiates "nowhere"). They are kept as written.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import math
import re
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dxlab.data.quarantine import describe, name_or_describe
from dxlab.data.schema import IngestResult, RowIssue, empty_table, make_table

__all__ = ["DDXPlusSource", "evidence_catalog", "label_finding", "load_evidences", "load_conditions"]

# lower-cased header name -> canonical name used inside this module
COLUMN_ALIASES: dict[str, str] = {
    "age": "age",
    "sex": "sex",
    "pathology": "diagnosis",
    "diagnosis": "diagnosis",
    "evidences": "features",
    "features": "features",
    "initial_evidence": "feature_id",
    "feature_id": "feature_id",
}
REQUIRED_COLUMNS: tuple[str, ...] = ("age", "sex", "diagnosis", "features")
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".zip")
SEX_MAP: dict[str, str] = {"F": "F", "M": "M", "FEMALE": "F", "MALE": "M"}
VALUE_SEP = "_@_"


# --------------------------------------------------------------------------------------------------------------
# release catalogs


def _load_json(source: str | Path | dict, what: str) -> dict:
    if isinstance(source, dict):
        return source
    path = Path(source)
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the DDXPlus {what} catalog: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the DDXPlus {what} catalog should be a JSON object keyed by name")
    return data


def load_evidences(evidences_json: str | Path | dict) -> dict[str, dict]:
    """``release_evidences.json`` as a dict code -> entry (a dict is returned as is)."""
    return _load_json(evidences_json, "evidences")


def load_conditions(conditions_json: str | Path | dict) -> dict[str, dict]:
    """``release_conditions.json`` as a dict pathology name -> entry (a dict is returned as is)."""
    return _load_json(conditions_json, "conditions")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_ordinal(entry: dict) -> bool:
    """True for a categorical / multi-choice evidence whose possible values are numbers (a 0-10 scale)."""
    values = entry.get("possible-values") or []
    return entry.get("data_type") in ("C", "M") and bool(values) and all(_is_number(v) for v in values)


def _code_number(code: str) -> tuple[int, str]:
    m = re.match(r"E_(\d+)$", code)
    return (int(m.group(1)), code) if m else (10**9, code)


def evidence_catalog(evidences_json: str | Path | dict) -> pd.DataFrame:
    """One row per evidence of ``release_evidences.json``, sorted by code number.

    Columns: ``code``, ``question_en``, ``question_fr``, ``data_type`` (B binary, C categorical, M multi-choice),
    ``is_antecedent``, ``is_ordinal`` (numeric scale: parsed as a measurement), ``default_value``,
    ``possible_values`` (list), ``value_meaning`` (dict value code -> English meaning, empty for binary).
    """
    evidences = load_evidences(evidences_json)
    rows = []
    for code, entry in evidences.items():
        meanings = entry.get("value_meaning") or {}
        rows.append(
            {
                "code": entry.get("name", code),
                "question_en": entry.get("question_en", ""),
                "question_fr": entry.get("question_fr", ""),
                "data_type": entry.get("data_type", ""),
                "is_antecedent": bool(entry.get("is_antecedent", False)),
                "is_ordinal": is_ordinal(entry),
                "default_value": entry.get("default_value"),
                "possible_values": list(entry.get("possible-values") or []),
                "value_meaning": {
                    str(k): (v.get("en", "") if isinstance(v, dict) else str(v)) for k, v in meanings.items()
                },
            }
        )
    rows.sort(key=lambda r: _code_number(r["code"]))
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None).reset_index(drop=True)


def label_finding(token: str, catalog: pd.DataFrame) -> str:
    """Human-readable label of a finding / history token, e.g. ``E_54_@_V_179`` -> "Characterize your pain: heavy".

    ``catalog`` is the frame from :func:`evidence_catalog`. Unknown codes are returned unchanged.
    """
    base, sep, value = token.partition(VALUE_SEP)
    hit = catalog.loc[catalog["code"] == base]
    if hit.empty:
        return token
    entry = hit.iloc[0]
    question = entry["question_en"]
    if not sep:
        return question
    return f"{question} {entry['value_meaning'].get(value, value)}"


# --------------------------------------------------------------------------------------------------------------
# evidence tokens


@dataclass(frozen=True)
class _Parsed:
    """How one evidence token maps into the canonical row."""

    target: str  # "findings", "history", "measurements" or "issue"
    key: str  # token (findings/history), evidence code (measurements) or issue field
    value: float | None = None
    reason: str = ""


def _split_list(text: str) -> list[str] | None:
    """``"['E_1', 'E_2_@_V_3']"`` -> ``['E_1', 'E_2_@_V_3']``; None when it is not such a list."""
    s = text.strip()
    if len(s) < 2 or s[0] != "[" or s[-1] != "]":
        return None
    inner = s[1:-1].strip()
    if not inner:
        return []
    out = []
    for part in inner.split(","):
        p = part.strip()
        if len(p) < 2 or p[0] != p[-1] or p[0] not in "'\"":
            return None
        out.append(p[1:-1].strip())
    return out


class _EvidenceParser:
    def __init__(self, evidences: dict[str, dict]):
        self.evidences = evidences
        self._cache: dict[str, _Parsed] = {}

    def __call__(self, token: str) -> _Parsed:
        hit = self._cache.get(token)
        if hit is None:
            hit = self._cache[token] = self._classify(token)
        return hit

    def _classify(self, token: str) -> _Parsed:
        base, sep, value = token.partition(VALUE_SEP)
        entry = self.evidences.get(base)
        if entry is None:
            return _Parsed("issue", "findings", reason=f"unknown evidence code ({name_or_describe(token)})")
        place = "history" if entry.get("is_antecedent") else "findings"
        dtype = entry.get("data_type")
        if not sep:
            if dtype == "B":
                return _Parsed(place, token)
            return _Parsed("issue", place, reason=f"evidence {base} (type {dtype}) needs a value, got none")
        if dtype == "B":
            return _Parsed("issue", place, reason=f"binary evidence {base} takes no value, got one")
        possible = entry.get("possible-values") or []
        if is_ordinal(entry):
            try:
                number = float(value)
            except ValueError:
                return _Parsed("issue", "measurements", reason=f"non-numeric value of {base} ({describe(value)})")
            if not any(math.isclose(number, float(v)) for v in possible):
                return _Parsed(
                    "issue",
                    "measurements",
                    reason=f"value of {base} outside its scale {min(possible)}-{max(possible)}",
                )
            return _Parsed("measurements", base, value=number)
        if value not in {str(v) for v in possible}:
            return _Parsed("issue", place, reason=f"unknown value ({name_or_describe(value)}) for evidence {base}")
        return _Parsed(place, token)


# --------------------------------------------------------------------------------------------------------------
# the source


def _file_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(CSV_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOBase]:
    """A (possibly compressed) CSV as text for the csv module; ValueError naming the file if it cannot be opened."""
    name = path.name.lower()
    with ExitStack() as stack:
        try:
            if name.endswith(".gz"):
                handle = stack.enter_context(gzip.open(path, "rt", encoding="utf-8-sig", newline=""))
            elif name.endswith(".bz2"):
                handle = stack.enter_context(bz2.open(path, "rt", encoding="utf-8-sig", newline=""))
            elif name.endswith(".xz"):
                handle = stack.enter_context(lzma.open(path, "rt", encoding="utf-8-sig", newline=""))
            elif name.endswith(".zip"):  # the release ships each split as a zip holding one CSV
                archive = stack.enter_context(zipfile.ZipFile(path))
                members = [m for m in archive.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise ValueError(f"expected one file in the zip archive, found {members}")
                raw = stack.enter_context(archive.open(members[0]))
                handle = stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
            else:
                handle = stack.enter_context(path.open(encoding="utf-8-sig", newline=""))
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise ValueError(f"{path}: cannot open DDXPlus CSV: {exc}") from exc
        yield handle


def _text(value: Any) -> str:
    """A CSV cell as stripped text; NaN / None -> ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


class DDXPlusSource:
    """DDXPlus release CSVs -> canonical rows (raw ids ``f"{file_stem}-{row}"``)."""

    name = "ddxplus"

    def __init__(
        self,
        path: str,
        evidences_json: str,
        conditions_json: str,
        chunksize: int = 50_000,
        diagnosis_as: str = "name",
    ):
        if diagnosis_as not in ("name", "icd10"):
            raise ValueError(f"diagnosis_as must be 'name' or 'icd10', got {diagnosis_as!r}")
        if int(chunksize) < 1:
            raise ValueError(f"chunksize must be positive, got {chunksize!r}")
        self.path = Path(path)
        self.evidences_json = evidences_json
        self.conditions_json = conditions_json
        self.chunksize = int(chunksize)
        self.diagnosis_as = diagnosis_as
        self._parser: _EvidenceParser | None = None
        self._conditions: dict[str, str | None] | None = None

    # -- catalogs (loaded on first use) -------------------------------------------------------------------------
    @property
    def evidence_parser(self) -> _EvidenceParser:
        if self._parser is None:
            self._parser = _EvidenceParser(load_evidences(self.evidences_json))
        return self._parser

    @property
    def conditions(self) -> dict[str, str | None]:
        """Every known pathology name (key, English and French names) -> normalised ICD-10 code."""
        if self._conditions is None:
            table: dict[str, str | None] = {}
            for key, entry in load_conditions(self.conditions_json).items():
                icd = entry.get("icd10-id")
                icd = str(icd).strip().upper() if icd else None
                for name in (key, entry.get("condition_name"), entry.get("cond-name-eng"), entry.get("cond-name-fr")):
                    if name:
                        table.setdefault(str(name).strip(), icd)
            self._conditions = table
        return self._conditions

    # -- interface ----------------------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(
                p for p in self.path.iterdir() if p.is_file() and p.name.lower().endswith(CSV_SUFFIXES)
            )
        if self.path.is_file():
            return [self.path]
        raise FileNotFoundError(f"DDXPlus source: {self.path} does not exist")

    def read_file(self, path) -> IngestResult:
        tables, issues = [], []
        for chunk in self.iter_chunks(path):
            if len(chunk.table):
                tables.append(chunk.table)
            issues.extend(chunk.issues)
        table = pd.concat(tables, ignore_index=True) if tables else empty_table()
        return IngestResult(table=table, issues=issues)

    def iter_chunks(self, path) -> Iterator[IngestResult]:
        """Canonical rows of one CSV, ``chunksize`` rows at a time (bounded memory on the 1.3 M-row release).

        Records are split with the ``csv`` module rather than ``pd.read_csv(chunksize=...)``: with chunks,
        pandas (2.x, C and python engines) silently truncates a line with extra fields once it is past the
        first chunk, and mis-reads the first column as an index when the first line has extra fields, so a
        ragged line could not be reported as a RowIssue. Each chunk becomes one DataFrame.
        """
        path = Path(path)
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            columns, header = self._read_header(path, reader)
            positions = {canon: columns.index(orig) for orig, canon in header.items()}
            n_columns = len(columns)
            row_no = 0
            batch: list[tuple[int, list[str]]] = []
            try:
                for record in reader:
                    if not record:  # blank line (pandas skips these too)
                        continue
                    row_no += 1
                    batch.append((row_no, record))
                    if len(batch) >= self.chunksize:
                        yield self._convert(batch, path, positions, n_columns)
                        batch = []
            except (csv.Error, UnicodeDecodeError, OSError, EOFError) as exc:
                raise ValueError(f"{path}: cannot read DDXPlus CSV after data row {row_no}: {exc}") from exc
            if batch:
                yield self._convert(batch, path, positions, n_columns)

    # -- internals ----------------------------------------------------------------------------------------------
    def _read_header(self, path: Path, reader) -> tuple[list[str], dict[str, str]]:
        """The file's columns, and original name -> canonical name for those this adapter uses (checked)."""
        try:
            columns = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, not a DDXPlus patient CSV") from None
        except (csv.Error, UnicodeDecodeError, OSError, EOFError) as exc:
            raise ValueError(f"{path}: cannot read DDXPlus CSV header: {exc}") from exc
        mapping: dict[str, str] = {}
        for col in columns:
            canon = COLUMN_ALIASES.get(col.strip().lower())
            if canon is None:
                continue
            if canon in mapping.values():
                raise ValueError(f"{path}: DDXPlus CSV has two columns for {canon!r}: {columns}")
            mapping[col] = canon
        missing = [c for c in REQUIRED_COLUMNS if c not in mapping.values()]
        if missing:
            raise ValueError(
                f"{path}: not a DDXPlus patient CSV: missing column(s) {missing} "
                f"(expected AGE/age, SEX/sex, PATHOLOGY/diagnosis, EVIDENCES/features; found {columns})"
            )
        return columns, mapping

    def _convert(
        self, batch: list[tuple[int, list[str]]], path: Path, positions: dict[str, int], n_columns: int
    ) -> IngestResult:
        file_name, stem = path.name, _file_stem(path)
        issues: list[RowIssue] = []
        rows = []
        for row_no, record in batch:
            ragged = len(record) < n_columns or any(f.strip() for f in record[n_columns:])
            if ragged:
                reason = f"malformed CSV line: {len(record)} fields, header has {n_columns}"
                issues.append(RowIssue(file_name, row_no, "row", reason))
            rec = {c: (record[i] if i < len(record) else "") for c, i in positions.items()}
            rows.append(self._row(rec, row_no, file_name, stem, issues))
        return IngestResult(table=make_table(rows), issues=issues)

    def _row(self, rec: dict, row_no: int, file_name: str, stem: str, issues: list[RowIssue]) -> dict:
        def issue(field: str, reason: str) -> None:
            issues.append(RowIssue(file_name, row_no, field, reason))

        features_text = _text(rec["features"])

        age_text = _text(rec["age"])
        age = float("nan")
        if age_text:
            try:
                age = float(age_text)
            except ValueError:
                issue("age", f"non-numeric age ({describe(age_text)})")
            else:
                if not math.isfinite(age) or age < 0:
                    issue("age", "invalid age (negative or not finite)")
                    age = float("nan")

        sex_text = _text(rec["sex"])
        sex = SEX_MAP.get(sex_text.upper()) if sex_text else None
        if sex_text and sex is None:
            issue("sex", f"unknown sex code ({describe(sex_text)})")

        diagnosis = None
        pathology = _text(rec["diagnosis"])
        if not pathology:
            issue("diagnosis", "missing pathology")
        elif pathology not in self.conditions:
            issue("diagnosis", f"unknown pathology ({describe(pathology)}; not in release_conditions.json)")
        elif self.diagnosis_as == "icd10":
            diagnosis = self.conditions[pathology]
            if not diagnosis:
                issue("diagnosis", f"pathology {pathology!r} has no ICD-10 code")
        else:
            diagnosis = pathology

        findings: list[str] = []
        history: list[str] = []
        measurements: dict[str, float] = {}
        if not features_text:
            issue("findings", "missing evidence list")
        else:
            tokens = _split_list(features_text)
            if tokens is None:
                issue("findings", f"unparsable evidence list ({describe(features_text)})")
                tokens = []
            parse = self.evidence_parser
            for token in tokens:
                parsed = parse(token)
                if parsed.target == "findings":
                    findings.append(parsed.key)
                elif parsed.target == "history":
                    history.append(parsed.key)
                elif parsed.target == "measurements":
                    if parsed.key in measurements and measurements[parsed.key] != parsed.value:
                        issue("measurements", f"evidence {parsed.key} given twice with different values")
                    measurements[parsed.key] = parsed.value
                else:
                    issue(parsed.key, parsed.reason)

        return {
            "patient_id": f"{stem}-{row_no}",
            "age": age,
            "sex": sex,
            "findings": list(dict.fromkeys(findings)),
            "excluded": [],
            "history": list(dict.fromkeys(history)),
            "measurements": measurements,
            "note": "",
            "diagnosis": diagnosis,
            "source": self.name,
            "source_file": file_name,
            "source_row": row_no,
            "day": "",
        }
