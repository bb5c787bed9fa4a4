"""What a quarantine report may say about a bad cell, and where the bad rows themselves go.

Reports, logs and metrics name the file, the row, the field and the reason -- never the cell's content: a cell is
described by its type and shape ("text of 23 characters"). Ids of a vocabulary (HPO terms, OMIM and Orphanet
diseases, DDXPlus evidence codes) are no patient's data and may be named, so that "unknown term id(s): 1 of 5
('HP:9999999')" still says what to fix. The rows themselves are kept for the data owner in one place only, a
file under `<quarantine>/raw/` readable by its owner alone (0600, folder 0700): `rows.raw.csv` (validate stage)
or `<file stem>.rows.raw.csv` (batch), never in a log, a report or MLflow.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

RAW_FOLDER = "raw"
RAW_ROWS = "rows.raw.csv"
RAW_COLUMNS = ["source", "source_file", "source_row", "fields", "raw"]
VOCABULARY_ID = re.compile(
    r"(?:HP|OMIM|ORPHA|ORPHANET|MONDO|DECIPHER|ICD10|ICD10CM|ICD-10):[A-Za-z0-9.]{1,10}"
    r"|E_\d{1,6}(?:_@_(?:V_\d{1,6}|-?\d{1,4}))?|V_\d{1,6}")


def describe(value) -> str:
    """A cell's type and shape, never its content: 'empty', 'a number', 'text of 23 characters', '12 bytes'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return f"an object of {len(value)} field{'s' if len(value) != 1 else ''}"
    text = str(value)
    if not text.strip():
        return "blank text"
    return f"text of {len(text)} character{'s' if len(text) != 1 else ''}"


def is_vocabulary_id(value) -> bool:
    return isinstance(value, str) and VOCABULARY_ID.fullmatch(value.strip()) is not None


def name_or_describe(value) -> str:
    """A vocabulary id by name ('HP:0001250'), anything else by its shape."""
    return repr(value.strip()) if is_vocabulary_id(value) else describe(value)


def ids_or_count(values: Iterable) -> str:
    """Some bad ids of a list for a reason: the vocabulary ids named (5 at most), the rest counted."""
    values = list(values)
    named = [v.strip() for v in values if is_vocabulary_id(v)]
    other = len(values) - len(named)
    parts = []
    if named:
        parts.append(", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else ""))
    if other:
        parts.append(f"{other} not shaped like a term id")
    return "; ".join(parts)


# -- writing ------------------------------------------------------------------------------------------------
def fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write to a temporary name beside `path`, fsync, rename over it: a reader (or a restarted run) sees the old
    file or the new one, never half of one. `mode` 0o600 keeps it to its owner from the first byte."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # a leftover temporary file keeps its old mode otherwise
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def raw_folder(quarantine: str | Path) -> Path:
    folder = Path(quarantine) / RAW_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def write_raw_rows(frame: pd.DataFrame, path: str | Path) -> Path | None:
    """The quarantined rows as they were read (RAW_COLUMNS), owner-only; no rows: no file (an old one removed)."""
    path = Path(path)
    if frame is None or not len(frame):
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    buffer = io.StringIO()
    frame[RAW_COLUMNS].to_csv(buffer, index=False)
    return write_atomic(path, buffer.getvalue(), 0o600)


def keep_raw_file(path: str | Path, quarantine: str | Path) -> Path:
    """A whole bad file copied, owner-only, under <quarantine>/raw/ (the input may be cleared after the run)."""
    path = Path(path)
    target = raw_folder(quarantine) / path.name
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
        shutil.copyfileobj(src, out)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return target


# -- reading the raw rows back --------------------------------------------------------------------------------
def raw_records(path: str | Path, rows: Iterable[int]) -> dict[int, str]:
    """Row number (as the adapters count: CSV data rows from 1 after the header; JSONL lines; a JSON file is row
    1) -> the raw row as JSON text, for the rows asked. A file that cannot be read gives nothing."""
    path, wanted = Path(path), {int(r) for r in rows}
    out: dict[int, str] = {}
    if not wanted or not path.is_file():
        return out
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            start = 1
            for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, chunksize=50_000):
                for offset, record in enumerate(chunk.to_dict("records")):
                    if start + offset in wanted:
                        out[start + offset] = json.dumps(record, ensure_ascii=False)
                start += len(chunk)
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8", errors="replace") as f:
                for line_no, line in enumerate(f, start=1):
                    if line_no in wanted:
                        out[line_no] = line.rstrip("\n")
        elif suffix == ".json" and 1 in wanted:
            out[1] = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError, pd.errors.ParserError):
        return out
    return out


def raw_rows(issues: pd.DataFrame, table: pd.DataFrame | None = None,
             files: Mapping[str, Path] | None = None) -> pd.DataFrame:
    """One row per quarantined input row (RAW_COLUMNS): the raw cells re-read from its file (`files`: source_file
    -> path) when it can be, else the row as the adapter read it (`table`, canonical columns)."""
    if issues is None or not len(issues):
        return pd.DataFrame(columns=RAW_COLUMNS)
    frame = issues.copy()
    if "source" not in frame:
        frame["source"] = ""
    frame["source"] = frame["source"].fillna("").astype(str)
    frame["source_file"] = frame["source_file"].astype(str)
    frame["source_row"] = frame["source_row"].astype(int)
    keys = ["source", "source_file", "source_row"]
    grouped = (frame.groupby(keys, sort=True)["field"].agg(lambda f: ";".join(dict.fromkeys(map(str, f))))
               .reset_index().rename(columns={"field": "fields"}))
    from_file: dict[tuple[str, int], str] = {}
    for name, rows in grouped.groupby("source_file", sort=False):
        if files and name in files:
            for row, text in raw_records(files[name], rows["source_row"]).items():
                from_file[(name, row)] = text
    as_read: dict[tuple[str, str, int], str] = {}
    if table is not None and len(table):
        wanted = set(zip(grouped["source"], grouped["source_file"], grouped["source_row"]))
        src = table["source"].astype(str) if "source" in table else pd.Series([""] * len(table))
        for i, (s, f, r) in enumerate(zip(src, table["source_file"].astype(str), table["source_row"].astype(int))):
            if (s, f, r) in wanted or ("", f, r) in wanted:
                record = {k: _plain(v) for k, v in table.iloc[i].items()}
                as_read[(s, f, r)] = as_read[("", f, r)] = json.dumps(record, ensure_ascii=False, default=str)
    grouped["raw"] = [from_file.get((f, r)) or as_read.get((s, f, r), "")
                      for s, f, r in zip(grouped["source"], grouped["source_file"], grouped["source_row"])]
    return grouped[RAW_COLUMNS]


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
