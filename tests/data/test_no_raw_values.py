"""No raw patient text in quarantine files, reports or logs: they carry file, row, field and the reason, a cell only
as its type and shape. The rows themselves go to one owner-only file for the data owner (quarantine/raw/)."""

from __future__ import annotations

import logging
import shutil
import stat

import pandas as pd
import pytest
from helpers import tiny_config

from dxlab.data.quarantine import describe, ids_or_count
from dxlab.data.sources.csv_table import CsvSource
from dxlab.data.validation import validate_table

MRN, NAME, SSN, AGE = "MRN-12345678", "Jane Doe DOB 1990-01-01", "555-12-3456", "987.654"
SENSITIVE = (MRN, NAME, SSN, AGE, "Jane Doe", "1990-01-01")

COLUMNS = ["patient_id", "age", "sex", "family_history", "findings", "excluded_findings", "history", "height_cm",
           "weight_kg", "note", "diagnosis"]
GOOD = ["P1", "4", "F", "no", "HP:0001250;HP:0001263", "", "", "101", "", "", "OMIM:154700"]


def _row(**cells) -> list[str]:
    row = dict(zip(COLUMNS, GOOD))
    row.update(cells)
    return [row[c] for c in COLUMNS]


BAD_ROWS = {  # source_row -> (the row, the field its issue names)
    2: (_row(patient_id=MRN, findings=f"{NAME};HP:0001250;HP:0001263"), "findings"),
    3: (_row(patient_id="P3", age=SSN), "age"),
    4: (_row(patient_id="P4", sex=NAME), "sex"),
    5: (_row(patient_id="P5", family_history=SSN), "family_history"),
    6: (_row(patient_id="P6", height_cm=MRN), "height_cm"),
    7: (_row(patient_id="P7", age=AGE), "age"),
    8: (_row(patient_id="P8", diagnosis=NAME), "diagnosis"),
}


def _write(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / name, index=False)


def _leaks(text: str) -> list[str]:
    return [s for s in SENSITIVE if s in text]


def test_a_cell_is_described_by_its_shape_never_its_content():
    assert describe(NAME) == "text of 23 characters" and describe("") == "blank text" and describe(None) == "empty"
    assert describe(3.5) == "a number" and describe(["a", "b"]) == "a list of 2 items"
    assert ids_or_count(["HP:9999999", MRN, NAME]) == "HP:9999999; 2 not shaped like a term id"


def test_reasons_of_the_adapter_and_validation_quote_no_cell(tmp_path):
    folder = tmp_path / "raw"
    rows = [GOOD] + [r for r, _ in BAD_ROWS.values()] + [_row(patient_id="P9", excluded_findings=f"HP:0001250;{MRN}"),
                                                        _row(patient_id=MRN)]
    _write(folder, "patients_2030-01-01.csv", rows)
    mapping = {c: c for c in ("patient_id", "age", "sex", "family_history", "findings", "history", "note",
                              "diagnosis")} | {"excluded": "excluded_findings"}
    source = CsvSource(str(folder), mapping, pattern="patients_*.csv", measurement_columns=["height_cm", "weight_kg"],
                       sex_codes={"F": "F", "M": "M"}, family_history_codes={"yes": 1.0, "no": 0.0})
    result = source.read_file(source.files()[0])
    checked = validate_table(result.table, result.issues, term_is_known=lambda t: t.startswith("HP:000"),
                             disease_is_known={"OMIM:154700"}.__contains__, age_range=(0, 120))
    q = checked.quarantined  # ids are still raw here: ingest and batch pseudonymise them
    assert not _leaks(q.drop(columns="patient_id").to_csv()), q.to_string()
    by_row = q.groupby("source_row")["field"].apply(set).to_dict()
    for row, (_, field) in BAD_ROWS.items():
        assert field in by_row[row], (row, by_row.get(row))
    reason = q.groupby(["source_row", "field"])["reason"].agg(" | ".join).to_dict()
    assert reason[(2, "findings")].startswith("malformed list: 1 of 3 item(s) not an id (text of 45 characters; "
                                              "expected ids separated by ';')")
    assert reason[(3, "age")] == "not a number (text of 11 characters)"
    assert reason[(7, "age")] == "age outside [0, 120] years"
    assert reason[(9, "excluded")] == "unknown term id(s): 1 of 2 (1 not shaped like a term id)"
    assert reason[(10, "patient_id")].startswith("duplicate patient id")
    assert "unknown sex code (text of 23 characters" in reason[(4, "sex")]


@pytest.fixture()
def bad_project(tmp_path, knowledge_dir, monkeypatch):
    root = tmp_path / "project"
    cfg = tiny_config(root)  # no root/cases.jsonl: the feed alone
    cfg.validate.max_bad_fraction = 1.0
    shutil.copytree(knowledge_dir, cfg.paths.knowledge)
    inbox = root / "data" / "raw" / "hpo_cohort"
    _write(inbox, "patients_2030-01-01.csv", [GOOD] + [r for r, _ in BAD_ROWS.values()])
    # the same patient the next day, in a file whose name is upper case
    _write(inbox, "Patients_2030-01-02.CSV", [_row(patient_id="P20"), _row(patient_id=MRN, age="5")])
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", "test-key")
    return root, cfg


def test_ingest_and_validate_write_and_log_no_raw_value(bad_project, caplog, capsys):
    from dxlab.stages import ingest, validate

    root, cfg = bad_project
    inputs = {p for p in (root / "data" / "raw").rglob("*") if p.is_file()}
    before = {p for p in root.rglob("*") if p.is_file()}
    with caplog.at_level(logging.DEBUG):
        ingest.run(cfg)
        validate.run(cfg)
    out, err = capsys.readouterr()
    raw_rows = root / "data" / "quarantine" / "raw" / "rows.raw.csv"
    written = {p for p in root.rglob("*") if p.is_file()} - before - inputs
    assert raw_rows in written and (root / "data" / "quarantine" / "quarantine.csv") in written
    # ingest's table is every row as read (validate's input, as sensitive as the raw files, notes and all); what
    # validate passes on holds no quarantined row
    as_read = root / "data" / "interim" / "ingested.parquet"
    assert as_read in written and (root / "data" / "interim" / "patients.parquet") in written
    for path in written - {raw_rows, as_read}:
        assert not _leaks(path.read_bytes().decode("utf-8", "replace")), path
    logged = "\n".join(r.getMessage() for r in caplog.records) + out + err
    assert "quarantined" in logged and not _leaks(logged)

    quarantine = pd.read_csv(root / "data" / "quarantine" / "quarantine.csv", keep_default_na=False)
    first = quarantine[quarantine["source_file"] == "patients_2030-01-01.csv"]
    assert set(first["source_row"]) == set(BAD_ROWS)
    assert (quarantine["reason"].str.len() > 10).all()
    dup = quarantine[quarantine["source_file"] == "Patients_2030-01-02.CSV"]
    assert list(zip(dup["source_row"], dup["field"])) == [(2, "patient_id")]  # read, and the repeat caught

    # the rows themselves, kept for the data owner alone
    assert stat.S_IMODE(raw_rows.stat().st_mode) == 0o600
    assert stat.S_IMODE(raw_rows.parent.stat().st_mode) == 0o700
    kept = pd.read_csv(raw_rows, keep_default_na=False)
    assert len(kept) == len(BAD_ROWS) + 1
    text = raw_rows.read_text()
    assert MRN in text and NAME in text and SSN in text and AGE in text
