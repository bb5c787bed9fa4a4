"""DDXPlusSource on a 30-row sample of the real shared DDXPlus test subset (copied to tmp_path)."""

from __future__ import annotations

import ast
import gzip
import json
import math
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from dxlab.data.sources.ddxplus import DDXPlusSource, evidence_catalog, label_finding

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DDX = SHARED / "ddxplus"
CSV = DDX / "test_patients_subset.csv"
EVIDENCES = DDX / "release_evidences.json"
CONDITIONS = DDX / "release_conditions.json"
N_ROWS = 30

pytestmark = pytest.mark.skipif(
    not (CSV.exists() and EVIDENCES.exists() and CONDITIONS.exists()),
    reason=f"shared DDXPlus data not found under {DDX.resolve()}",
)

UPPER = {
    "age": "AGE",
    "sex": "SEX",
    "diagnosis": "PATHOLOGY",
    "features": "EVIDENCES",
    "feature_id": "INITIAL_EVIDENCE",
    "top5_diagnoses": "DIFFERENTIAL_DIAGNOSIS",
}


@pytest.fixture(scope="module")
def evidences() -> dict:
    return json.loads(EVIDENCES.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def raw_lines() -> list[str]:
    with CSV.open(encoding="utf-8") as fh:
        return [next(fh) for _ in range(N_ROWS + 1)]  # header + 30 patients (one line each in this file)


@pytest.fixture
def sample(tmp_path, raw_lines) -> Path:
    path = tmp_path / "sample.csv"
    path.write_text("".join(raw_lines), encoding="utf-8")
    return path


def source(path, **kw) -> DDXPlusSource:
    return DDXPlusSource(str(path), str(EVIDENCES), str(CONDITIONS), **kw)


def raw_frame(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def expected_split(tokens: list[str], evidences: dict) -> tuple[list, list, dict]:
    """Where each evidence should land, computed straight from release_evidences.json."""
    findings, history, measurements = [], [], {}
    for tok in tokens:
        base, _, value = tok.partition("_@_")
        ev = evidences[base]
        numeric = ev["data_type"] in ("C", "M") and all(isinstance(v, int) for v in ev["possible-values"])
        if value and numeric:
            measurements[base] = float(value)
        elif ev["is_antecedent"]:
            history.append(tok)
        else:
            findings.append(tok)
    return findings, history, measurements


def test_every_evidence_kind_is_parsed(sample, evidences):
    src = source(sample)
    assert src.files() == [sample]
    result = src.read_file(sample)
    table, raw = result.table, raw_frame(sample)
    assert result.issues == []
    assert len(table) == N_ROWS
    assert table["source_row"].tolist() == list(range(1, N_ROWS + 1))
    assert table["patient_id"].tolist() == [f"sample-{i}" for i in range(1, N_ROWS + 1)]
    assert set(table["source"]) == {"ddxplus"} and set(table["source_file"]) == {"sample.csv"}
    assert set(table["day"]) == {""}
    assert table["age"].tolist() == [float(a) for a in raw["age"]]
    assert table["sex"].tolist() == raw["sex"].tolist()
    assert table["diagnosis"].tolist() == raw["diagnosis"].tolist()

    kinds = set()
    for (_, row), features in zip(table.iterrows(), raw["features"]):
        tokens = ast.literal_eval(features)
        findings, history, measurements = expected_split(tokens, evidences)
        assert row["findings"] == findings
        assert row["history"] == history
        assert row["measurements"] == measurements
        assert row["excluded"] == []
        for tok in tokens:
            base, _, value = tok.partition("_@_")
            ev = evidences[base]
            kinds.add((ev["data_type"], ev["is_antecedent"], bool(value) and not value.startswith("V_")))
    # the sample holds binary, categorical, multi-choice, numeric scale and antecedent evidences
    assert {("B", False, False), ("C", False, False), ("M", False, False), ("C", False, True),
            ("B", True, False), ("M", True, False)} <= kinds

    first = table.iloc[0]  # 8-year-old boy with pneumonia, row 1 of the release subset
    assert first["age"] == 8.0 and first["sex"] == "M" and first["diagnosis"] == "Pneumonia"
    assert "E_91" in first["findings"]  # binary: fever
    assert "E_130_@_V_156" in first["findings"]  # categorical: pink rash
    assert {"E_54_@_V_179", "E_54_@_V_192"} <= set(first["findings"])  # multi-choice pain character
    assert first["measurements"]["E_56"] == 2.0  # pain intensity 0-10
    assert not any(f.startswith("E_56") for f in first["findings"])
    assert "E_204_@_V_10" in first["history"] and "E_204_@_V_10" not in first["findings"]
    assert all(evidences[h.partition("_@_")[0]]["is_antecedent"] for h in first["history"])


def test_bad_fields_are_row_issues_and_rows_kept(tmp_path, sample, evidences):
    raw = raw_frame(sample)
    raw.loc[4, "age"] = "abc"  # row 5
    raw.loc[6, "features"] = raw.loc[6, "features"][:-1] + ", 'E_9999']"  # row 7: unknown evidence code
    raw.loc[8, "sex"] = "X"  # row 9
    raw.loc[10, "diagnosis"] = ""  # row 11
    raw.loc[12, "features"] = "E_91; E_53"  # row 13: not a list
    bad = tmp_path / "bad.csv"
    raw.to_csv(bad, index=False)

    result = source(bad).read_file(bad)
    table = result.table.set_index("source_row")
    assert len(table) == N_ROWS  # nothing dropped
    got = {(i.source_file, i.source_row, i.field) for i in result.issues}
    assert got == {
        ("bad.csv", 5, "age"),
        ("bad.csv", 7, "findings"),
        ("bad.csv", 9, "sex"),
        ("bad.csv", 11, "diagnosis"),
        ("bad.csv", 13, "findings"),
    }
    unknown = next(i for i in result.issues if i.source_row == 7)
    assert "E_9999" in unknown.reason
    assert math.isnan(table.loc[5, "age"]) and table.loc[5, "findings"]  # rest of row 5 intact
    findings7, _, _ = expected_split(ast.literal_eval(raw_frame(sample).loc[6, "features"]), evidences)
    assert table.loc[7, "findings"] == findings7 and "E_9999" not in table.loc[7, "findings"]
    assert table.loc[9, "sex"] is None
    assert table.loc[11, "diagnosis"] is None
    assert table.loc[13, "findings"] == [] and table.loc[13, "measurements"] == {}


def test_upper_case_release_columns(tmp_path, sample):
    raw = raw_frame(sample).rename(columns=UPPER)
    release = tmp_path / "release_test_patients.csv"
    raw.to_csv(release, index=False)
    upper = source(release).read_file(release).table
    lower = source(sample).read_file(sample).table
    assert upper["patient_id"].iloc[0] == "release_test_patients-1"
    assert set(upper["source_file"]) == {"release_test_patients.csv"}
    cols = ["age", "sex", "findings", "history", "measurements", "diagnosis", "source_row"]
    pd.testing.assert_frame_equal(upper[cols], lower[cols])


def test_chunked_reading_matches_whole_file(sample):
    src = source(sample, chunksize=7)
    chunks = list(src.iter_chunks(sample))
    assert [len(c.table) for c in chunks] == [7, 7, 7, 7, 2]
    rows = [r for c in chunks for r in c.table["source_row"]]
    assert rows == list(range(1, N_ROWS + 1))
    whole = source(sample).read_file(sample).table
    pd.testing.assert_frame_equal(src.read_file(sample).table, whole)


def test_ragged_csv_lines_are_kept_as_issues(tmp_path, raw_lines, sample):
    lines = list(raw_lines)
    lines[1] = lines[1].rstrip("\n") + ",extra,more\n"  # data row 1: extra fields on the very first line
    lines[5] = lines[5].rstrip("\n") + ",extra\n"  # data row 5
    lines[8] = "12,x,M\n"  # data row 8: too few fields
    lines[10] = lines[10].rstrip("\n") + ",\n"  # data row 10: an empty trailing field loses nothing
    path = tmp_path / "ragged.csv"
    path.write_text("".join(lines), encoding="utf-8")
    result = source(path, chunksize=2).read_file(path)
    table = result.table
    assert table["source_row"].tolist() == list(range(1, N_ROWS + 1))
    assert sorted((i.source_row, i.field) for i in result.issues) == [
        (1, "row"), (5, "row"), (8, "diagnosis"), (8, "findings"), (8, "row")
    ]
    clean = source(sample).read_file(sample).table
    for row in (1, 4, 5, 6, 10, N_ROWS):  # the data of the other fields is intact and correctly numbered
        assert table.iloc[row - 1]["findings"] == clean.iloc[row - 1]["findings"]
        assert table.iloc[row - 1]["age"] == clean.iloc[row - 1]["age"]
    assert table.iloc[7]["age"] == 12.0 and table.iloc[7]["sex"] == "M" and table.iloc[7]["findings"] == []


def test_compressed_release_files(tmp_path, sample, raw_lines):
    zipped = tmp_path / "release_test_patients.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("release_test_patients", "".join(raw_lines))
    gz = tmp_path / "part.csv.gz"
    gz.write_bytes(gzip.compress("".join(raw_lines).encode("utf-8")))
    cols = ["age", "sex", "findings", "history", "measurements", "diagnosis", "source_row"]
    clean = source(sample).read_file(sample).table[cols]
    for path, stem in ((zipped, "release_test_patients"), (gz, "part")):
        table = source(path).read_file(path).table
        pd.testing.assert_frame_equal(table[cols], clean)
        assert table["patient_id"].iloc[0] == f"{stem}-1"


def test_icd10_diagnosis(sample):
    conditions = json.loads(CONDITIONS.read_text(encoding="utf-8"))
    table = source(sample, diagnosis_as="icd10").read_file(sample).table
    names = raw_frame(sample)["diagnosis"]
    assert table["diagnosis"].tolist() == [conditions[n]["icd10-id"].strip().upper() for n in names]
    assert table["diagnosis"].iloc[0] == "J17, J18"  # Pneumonia: two codes in the release file


def test_wrong_columns_and_folder(tmp_path, sample):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("patient,age\n1,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="wrong.csv"):
        source(wrong).read_file(wrong)
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    assert source(tmp_path).files() == [sample, wrong]
    with pytest.raises(FileNotFoundError):
        source(tmp_path / "missing").files()
    with pytest.raises(ValueError):
        source(sample, diagnosis_as="snomed")


def test_evidence_catalog(evidences):
    cat = evidence_catalog(EVIDENCES)
    assert len(cat) == len(evidences) == 223
    assert {"code", "question_en", "data_type", "is_antecedent", "value_meaning"} <= set(cat.columns)
    by_code = cat.set_index("code")
    assert by_code.loc["E_56", "is_ordinal"] and not by_code.loc["E_54", "is_ordinal"]
    assert by_code.loc["E_54", "data_type"] == "M"
    assert by_code.loc["E_204", "is_antecedent"] and by_code.loc["E_204", "value_meaning"]["V_10"] == "N"
    assert label_finding("E_91", cat) == evidences["E_91"]["question_en"]
    assert label_finding("E_130_@_V_156", cat).endswith("pink")
    assert label_finding("E_9999", cat) == "E_9999"
