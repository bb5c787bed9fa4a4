"""Clinical notes at ingest (`dxlab.data.notes`): a note-only row gets findings with spans, relatives' findings never
become the patient's, an unreadable note is quarantined with file, row and field, and the modes do what they say."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dxlab.data.notes import NoteReader, read_notes
from dxlab.data.schema import make_table, read_parquet, to_parquet
from dxlab.data.sources.csv_table import CsvSource
from dxlab.data.validation import validate_table
from dxlab.stages.ingest import ingest
from dxlab.text import Annotator

HYPOTONIA, SEIZURE, FEBRILE_SEIZURE, DELAY = "HP:0001252", "HP:0001250", "HP:0002373", "HP:0001263"
HEARING_IMPAIRMENT, MURMUR, INTELLECTUAL_DISABILITY = "HP:0000365", "HP:0030148", "HP:0001249"
SHORT_STATURE, SCOLIOSIS = "HP:0004322", "HP:0002650"
ISSUE_NOTE = ("6-year-old boy, hypotonic since infancy, global developmental delay, two febrile seizures; hearing "
              "normal, no cardiac murmur; his maternal uncle had intellectual disability.")
BINARY = "\x01\x02\x03\x04\x05\x06\x07\x08PK\x03\x04\x14\x00"  # what a zip file pasted into a CSV cell looks like
COLUMNS = {"patient_id": "patient_id", "age": "age", "sex": "sex", "family_history": "family_history",
           "findings": "findings", "excluded": "excluded_findings", "history": "history", "note": "note",
           "diagnosis": "diagnosis"}


@pytest.fixture(scope="module")
def reader(knowledge_dir) -> NoteReader:
    return NoteReader(Annotator(learn=False).fit(knowledge_dir))


def write_csv(folder, rows) -> CsvSource:
    base = {"age": "6", "sex": "M", "family_history": "", "findings": "", "excluded_findings": "", "history": "",
            "note": "", "diagnosis": "OMIM:154700"}
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{**base, **r} for r in rows]).to_csv(folder / "patients_2025-03-01.csv", index=False)
    return CsvSource(str(folder), COLUMNS, pattern="patients_*.csv", name="clinic")


def test_a_note_only_row_gets_findings_with_spans(tmp_path, reader):
    source = write_csv(tmp_path / "raw", [{"patient_id": "N1", "note": ISSUE_NOTE}])
    counts: dict = {}
    result = ingest(source, b"test-key", reader, "merge", counts)
    row = result.table.iloc[0]
    assert {HYPOTONIA, DELAY, FEBRILE_SEIZURE} <= set(row["findings"])
    assert {HEARING_IMPAIRMENT, MURMUR} <= set(row["excluded"])
    assert INTELLECTUAL_DISABILITY not in row["findings"]  # the uncle's
    assert math.isnan(row["family_history"])  # an uncle is not a first-degree relative
    mentions = row["note_mentions"]
    assert mentions and all(ISSUE_NOTE[m["start"]:m["end"]] == m["text"] for m in mentions)
    assert all(m["name"] for m in mentions)
    by_id = {m["hpo_id"]: m for m in mentions}
    assert by_id[HYPOTONIA]["text"] == "hypotonic" and by_id[HYPOTONIA]["assertion"] == "present"
    assert by_id[INTELLECTUAL_DISABILITY]["assertion"] == "family"
    assert by_id[INTELLECTUAL_DISABILITY]["relative"] == "maternal uncle"
    assert counts["notes_read"] == 1 and counts["findings_added"] == len(row["findings"])
    # the row passes validation (it has findings now) and the mentions survive the parquet files between stages
    assert len(validate_table(result.table, result.issues, labelled=True).valid) == 1
    to_parquet(result.table, tmp_path / "ingested.parquet")
    back = read_parquet(tmp_path / "ingested.parquet")
    assert back["note_mentions"].iloc[0] == mentions and list(back["findings"].iloc[0]) == list(row["findings"])


def test_family_history_never_becomes_a_patient_finding(reader):
    notes = ["Her mother has short stature. She has scoliosis.",
             "His brother has seizures; he is hypotonic.",
             "His maternal uncle had short stature and seizures."]
    table = make_table([{"note": n, "findings": [], "source_row": i + 1} for i, n in enumerate(notes)])
    read = read_notes(table, reader.annotator).table
    findings = [set(f) for f in read["findings"]]
    assert SHORT_STATURE not in findings[0] and SCOLIOSIS in findings[0]
    assert SEIZURE not in findings[1] and HYPOTONIA in findings[1]
    assert findings[2] == set() and list(read["excluded"].iloc[2]) == []
    assert {m["assertion"] for m in read["note_mentions"].iloc[2]} == {"family"}
    # a first-degree relative affected sets an unknown family history; a second-degree one does not
    assert list(read["family_history"].iloc[:2]) == [1.0, 1.0] and math.isnan(read["family_history"].iloc[2])


def test_an_unreadable_note_is_quarantined_with_file_row_and_field(tmp_path, reader):
    source = write_csv(tmp_path / "raw", [
        {"patient_id": "G1", "findings": "HP:0001250", "note": "No scoliosis."},
        {"patient_id": "B1", "findings": "HP:0001250", "note": BINARY},
        {"patient_id": "L1", "findings": "HP:0001250", "note": "hypotonia " * 110_000},  # over a million characters
    ])
    result = ingest(source, b"test-key", reader, "merge")
    checked = validate_table(result.table, result.issues, labelled=True)
    assert list(checked.valid["source_row"]) == [1]
    bad = checked.quarantined[checked.quarantined["field"] == "note"]
    assert list(zip(bad["source_file"], bad["source_row"])) == [("patients_2025-03-01.csv", 2),
                                                                  ("patients_2025-03-01.csv", 3)]
    assert "binary" in bad["reason"].iloc[0] and "longer than the limit" in bad["reason"].iloc[1]
    assert all(p.startswith("px-") for p in bad["patient_id"])  # pseudonyms, not B1 / L1
    assert not any("hypotonia" in r or "PK" in r for r in bad["reason"])  # never the note's text


def test_modes_merge_replace_ignore(reader):
    row = {"note": "Scoliosis. No seizures. Possible hypotonia.", "findings": [SEIZURE, SHORT_STATURE],
           "excluded": [], "source_row": 1}
    table = make_table([row, {**row, "note": "", "source_row": 2}])
    merged = read_notes(table, reader.annotator, "merge").table
    # coded findings win: the note's "no seizures" does not exclude a coded finding; uncertain is not a finding
    assert list(merged["findings"].iloc[0]) == [SEIZURE, SHORT_STATURE, SCOLIOSIS]
    assert list(merged["excluded"].iloc[0]) == []
    replaced = read_notes(table, reader.annotator, "replace").table
    assert list(replaced["findings"].iloc[0]) == [SCOLIOSIS] and list(replaced["excluded"].iloc[0]) == [SEIZURE]
    assert list(replaced["findings"].iloc[1]) == [SEIZURE, SHORT_STATURE]  # no note: the coded findings stay
    ignored = read_notes(table, reader.annotator, "ignore").table
    assert list(ignored["findings"].iloc[0]) == [SEIZURE, SHORT_STATURE] and ignored["note_mentions"].iloc[0] == []
    with pytest.raises(ValueError, match="merge"):
        read_notes(table, reader.annotator, "append")


def test_only_phenotypic_abnormalities_become_findings(reader):
    table = make_table([{"note": "Autosomal dominant inheritance. Childhood onset of scoliosis.", "source_row": 1}])
    read = read_notes(table, reader.annotator).table
    assert list(read["findings"].iloc[0]) == [SCOLIOSIS]
    assert len(read["note_mentions"].iloc[0]) >= 2  # the mode of inheritance and the onset are shown all the same


def test_no_annotator_is_built_without_notes():
    def fail():
        raise AssertionError("the annotator was built for a table without notes")

    lazy = NoteReader(factory=fail)
    table = make_table([{"findings": [SEIZURE], "source_row": 1}])
    done = lazy.read(table, "merge")
    assert list(done.table["findings"].iloc[0]) == [SEIZURE] and done.table["note_mentions"].iloc[0] == []
