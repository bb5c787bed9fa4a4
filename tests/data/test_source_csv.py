"""The CSV adapter (also the reader of the simulated daily exports) and validation of every kind of bad row."""

import pandas as pd
import pytest

from dxlab.data.pseudonym import pseudonymise
from dxlab.data.sources.csv_table import CsvSource
from dxlab.data.validation import validate_table

COLUMNS = {"patient_id": "mrn", "age": "age_years", "sex": "gender", "family_history": "fam",
           "findings": "hpo", "excluded": "hpo_absent", "history": "icd", "note": "text", "diagnosis": "dx"}

ROWS = [
    # mrn, age, gender, fam, hpo, hpo_absent, icd, text, dx, height   <- defect
    ("A1", "4", "F", "yes", "HP:0001250;HP:0001263", "HP:0001627", "ICD10:J45", "note", "OMIM:154700", "101"),
    ("A2", "213", "M", "no", "HP:0001250", "", "", "", "OMIM:154700", ""),  # age out of range
    ("A3", "5", "X", "", "HP:0001250", "", "", "", "OMIM:154700", ""),  # unknown sex code
    ("A4", "6", "F", "", "HP:0001250;HP:9999999", "", "", "", "OMIM:154700", ""),  # unknown term
    ("A5", "7", "M", "", "[HP:0001250, HP:0001263]", "", "", "", "OMIM:154700", ""),  # malformed list
    ("A1", "8", "F", "", "HP:0001250", "", "", "", "OMIM:154700", ""),  # duplicate id
    ("A7", "9", "M", "", "HP:0001250", "", "", "", "", ""),  # missing label
    ("A8", "ten", "F", "", "HP:0001250", "", "", "", "OMIM:154700", ""),  # age not a number
    ("A9", "3", "F", "", "HP:0001250", "", "", "", "OMIM:154700", "9000"),  # implausible height
    ("A10", "3", "M", "", "", "", "", "", "OMIM:154700", ""),  # no findings
]
EXPECTED = {2: "age", 3: "sex", 4: "findings", 5: "findings", 6: "patient_id", 7: "diagnosis", 8: "age",
            9: "measurements.height_cm", 10: "findings"}


@pytest.fixture()
def export(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    frame = pd.DataFrame(ROWS, columns=["mrn", "age_years", "gender", "fam", "hpo", "hpo_absent", "icd", "text",
                                        "dx", "height"])
    frame.to_csv(folder / "export_2025-03-04.csv", index=False)
    return folder


def _source(folder):
    return CsvSource(str(folder), COLUMNS, pattern="export_*.csv", name="ward", measurement_columns=["height"])


def test_csv_mapping_to_canonical_table(export):
    source = _source(export)
    result = source.read_file(source.files()[0])
    first = result.table.iloc[0]
    assert first["findings"] == ["HP:0001250", "HP:0001263"] and first["excluded"] == ["HP:0001627"]
    assert first["history"] == ["ICD10:J45"] and first["sex"] == "F" and first["family_history"] == 1.0
    assert first["measurements"] == {"height": 101.0} and first["day"] == "2025-03-04"
    assert first["source_file"] == "export_2025-03-04.csv" and first["source_row"] == 1
    assert len(result.table) == len(ROWS)  # bad rows are returned, for validate to quarantine


def test_missing_column_is_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("mrn,age_years\nA,3\n")
    with pytest.raises(ValueError, match=r"x\.csv: missing column"):
        CsvSource(str(tmp_path), COLUMNS).read_file(tmp_path / "x.csv")


def test_every_kind_of_bad_row_is_quarantined_with_its_reason(export, knowledge):
    source = _source(export)
    result = source.read_file(source.files()[0])
    validation = validate_table(
        result.table, result.issues, term_is_known=lambda t: knowledge.normalise_term(t) is not None,
        disease_is_known=set(knowledge.diseases["disease_id"]).__contains__, labelled=True,
        measurement_ranges={"height": (20, 250)})
    quarantined = validation.quarantined
    fields_by_row = quarantined.groupby("source_row")["field"].apply(set).to_dict()
    for row, field in EXPECTED.items():
        expected_field = "measurements.height" if field.startswith("measurements") else field
        assert expected_field in fields_by_row.get(row, set()), (row, field, fields_by_row.get(row))
    assert set(fields_by_row) == set(EXPECTED)  # the good row is not quarantined
    assert list(validation.valid["source_row"]) == [1]
    reasons = " ".join(quarantined["reason"])
    for needle in ("HP:9999999", "unknown sex code", "malformed list", "duplicate", "missing diagnosis",
                   "age outside [0, 120]", "not a number"):
        assert needle in reasons
    assert "'X'" not in reasons and "213" not in reasons  # a reason describes a cell, never quotes it (issue 18)
    assert (quarantined["source_file"] == "export_2025-03-04.csv").all()
    assert validation.summary()["n_quarantined"] == len(EXPECTED)


def test_pseudonyms_are_keyed_and_stable():
    a = pseudonymise("MRN-1", b"key-1")
    assert a == pseudonymise("MRN-1", b"key-1") and a.startswith("px-")
    assert a != pseudonymise("MRN-1", b"key-2") and a != pseudonymise("MRN-2", b"key-1")
    assert "MRN" not in a
