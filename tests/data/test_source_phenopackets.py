"""PhenopacketsSource on a 20-line sample of the real shared cases.jsonl and on hand-written GA4GH v2 packets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dxlab.data.sources.phenopackets import PhenopacketsSource, parse_iso8601_age

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CASES = SHARED / "phenopackets" / "cases.jsonl"
SEX = {"MALE": "M", "FEMALE": "F", "UNKNOWN_SEX": None, "OTHER_SEX": None}


@pytest.fixture(scope="module")
def sample_lines() -> list[str]:
    """20 real lines: the first 10, then the first 5 of unknown sex and the first 5 with a known onset."""
    if not CASES.exists():
        pytest.skip(f"shared phenopackets data not found at {CASES.resolve()}")
    first, unknown_sex, with_onset = [], [], []
    with CASES.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if len(first) < 10:
                first.append(line)
            elif rec["sex"] == "UNKNOWN_SEX" and len(unknown_sex) < 5:
                unknown_sex.append(line)
            elif rec["onset_years"] is not None and len(with_onset) < 5:
                with_onset.append(line)
            if len(first) + len(unknown_sex) + len(with_onset) == 20:
                break
    lines = first + unknown_sex + with_onset
    assert len(lines) == 20
    return lines


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines), encoding="utf-8")
    return path


def test_real_cases_sample(tmp_path, sample_lines):
    path = write_jsonl(tmp_path / "cases.jsonl", sample_lines)
    src = PhenopacketsSource(str(path))
    assert src.files() == [path]
    result = src.read_file(path)
    table = result.table
    assert result.issues == []
    assert len(table) == 20
    assert table["source_row"].tolist() == list(range(1, 21))
    assert set(table["source"]) == {"phenopackets"} and set(table["source_file"]) == {"cases.jsonl"}
    assert set(table["day"]) == {""} and set(table["note"]) == {""}
    raws = [json.loads(line) for line in sample_lines]
    for (_, row), raw in zip(table.iterrows(), raws):
        assert row["patient_id"] == raw["case_id"]
        assert row["group_id"] == raw["pmid"]  # the publication: the group cross-validation never splits
        if raw["age_years"] is None:
            assert math.isnan(row["age"])
        else:
            assert row["age"] == pytest.approx(raw["age_years"])
        assert row["sex"] == SEX[raw["sex"]]
        assert row["findings"] == raw["observed"]
        assert row["excluded"] == raw["excluded"]
        assert row["diagnosis"] == raw["disease_id"]
        assert row["history"] == []
        expected_onset = {} if raw["onset_years"] is None else {"onset_years": pytest.approx(raw["onset_years"])}
        assert row["measurements"] == expected_onset
    # the sample exercises every case: missing ages, all sexes, excluded findings, onsets
    assert table["age"].isna().any() and table["age"].notna().any()
    assert {"F", "M"} <= set(table["sex"].dropna()) and table["sex"].isna().sum() >= 5
    assert table["excluded"].map(len).gt(0).sum() >= 10
    assert sum("onset_years" in m for m in table["measurements"]) >= 5
    first = table.iloc[0]  # PMID_15266616_100: Jacobsen syndrome, a 6-year-old girl
    assert (first["patient_id"], first["age"], first["sex"], first["diagnosis"]) == (
        "PMID_15266616_100", 6.0, "F", "OMIM:147791"
    )
    assert "HP:0000175" in first["excluded"] and "HP:0000175" not in first["findings"]


PACKET = {
    "id": "packet-1",
    "subject": {
        "id": "patient-1",
        "sex": "FEMALE",
        "timeAtLastEncounter": {"age": {"iso8601duration": "P3Y6M"}},
    },
    "phenotypicFeatures": [
        {"type": {"id": "HP:0001250", "label": "Seizure"}, "onset": {"age": {"iso8601duration": "P1Y"}}},
        {"type": {"id": "HP:0001263", "label": "Global developmental delay"},
         "onset": {"age": {"iso8601duration": "P6M"}}},
        {"type": {"id": "HP:0000252", "label": "Microcephaly"}, "excluded": True},
    ],
    "diseases": [{"term": {"id": "OMIM:308350", "label": "Developmental and epileptic encephalopathy 1"}}],
    "metaData": {"phenopacketSchemaVersion": "2.0"},
}

PACKET_INTERPRETATION = {
    "id": "packet-2",
    "subject": {"id": "patient-2", "sex": "UNKNOWN_SEX", "timeAtLastEncounter": {"age": {"iso8601duration": "P10Y"}}},
    "phenotypicFeatures": [{"type": {"id": "HP:0001631", "label": "Atrial septal defect"}}],
    "interpretations": [
        {"id": "i1", "progressStatus": "SOLVED", "diagnosis": {"disease": {"id": "OMIM:108800", "label": "ASD"}}}
    ],
}


def test_ga4gh_v2_phenopackets(tmp_path):
    folder = tmp_path / "store"
    (folder / "gene").mkdir(parents=True)
    one = folder / "gene" / "patient-1.json"
    one.write_text(json.dumps(PACKET, indent=2), encoding="utf-8")
    two = folder / "patient-2.json"
    two.write_text(json.dumps(PACKET_INTERPRETATION), encoding="utf-8")
    lines = folder / "more.jsonl"
    write_jsonl(lines, [json.dumps(PACKET_INTERPRETATION | {"subject": {"id": "patient-3", "sex": "MALE"}})])
    (folder / "readme.txt").write_text("not a case", encoding="utf-8")

    src = PhenopacketsSource(str(folder))
    assert src.files() == [one, lines, two]  # sorted by relative path, recursive, .json and .jsonl only

    result = src.read_file(one)
    assert result.issues == []
    row = result.table.iloc[0]
    assert row["patient_id"] == "patient-1" and row["sex"] == "F"
    assert row["age"] == pytest.approx(3.5)
    assert row["findings"] == ["HP:0001250", "HP:0001263"]
    assert row["excluded"] == ["HP:0000252"]
    assert row["diagnosis"] == "OMIM:308350"
    assert row["measurements"] == {"onset_years": pytest.approx(0.5)}  # earliest onset among observed features
    assert (row["source_file"], row["source_row"], row["source"]) == ("patient-1.json", 1, "phenopackets")
    assert row["group_id"] == "file:patient-1.json"  # no publication named: the cases of a file are one group

    with_disease_onset = json.loads(json.dumps(PACKET))
    with_disease_onset["diseases"][0]["onset"] = {"age": {"iso8601duration": "P2W"}}
    path = tmp_path / "onset.json"
    path.write_text(json.dumps(with_disease_onset), encoding="utf-8")
    assert src.read_file(path).table.iloc[0]["measurements"]["onset_years"] == pytest.approx(2 / 52.18)

    result = src.read_file(two)
    row = result.table.iloc[0]
    assert result.issues == []  # an unknown sex is not a problem
    assert row["sex"] is None and row["age"] == 10.0 and row["diagnosis"] == "OMIM:108800"
    assert row["measurements"] == {}

    result = src.read_file(lines)  # a phenopacket on a JSONL line, no age
    row = result.table.iloc[0]
    assert (row["patient_id"], row["sex"], row["diagnosis"]) == ("patient-3", "M", "OMIM:108800")
    assert math.isnan(row["age"])


def test_the_publication_of_a_case_is_its_group(tmp_path):
    """From a JSONL `pmid`, a phenopacket's external references, or a PMID in its case id; the source's name from
    config."""
    packet = json.loads(json.dumps(PACKET))
    packet["metaData"] = {"externalReferences": [{"id": "DOI:10.1/x"}, {"id": "PMID:30123456"}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(packet), encoding="utf-8")
    src = PhenopacketsSource(str(path), name="case_reports")
    row = src.read_file(path).table.iloc[0]
    assert (row["group_id"], row["source"]) == ("PMID:30123456", "case_reports")
    flat = write_jsonl(tmp_path / "c.jsonl", [json.dumps({"case_id": "PMID_123_7", "disease_id": "OMIM:154700",
                                                          "observed": ["HP:0001166"]}),
                                              json.dumps({"case_id": "c2", "pmid": "456", "disease_id": "OMIM:154700",
                                                          "observed": ["HP:0001166"]})])
    assert src.read_file(flat).table["group_id"].tolist() == ["PMID:123", "PMID:456"]


def test_diagnosis_prefers_an_omim_or_orpha_id_over_other_vocabularies(tmp_path):
    packet = json.loads(json.dumps(PACKET))
    packet["diseases"] = [
        {"term": {"id": "MONDO:0100062", "label": "DEE 1"}, "onset": {"age": {"iso8601duration": "P1M"}}},
        {"term": {"id": "OMIM:999999", "label": "ruled out"}, "excluded": True},
        {"term": {"id": "OMIM:308350", "label": "DEE 1"}, "onset": {"age": {"iso8601duration": "P3M"}}},
    ]
    path = tmp_path / "mondo.json"
    path.write_text(json.dumps(packet), encoding="utf-8")
    row = PhenopacketsSource(str(path)).read_file(path).table.iloc[0]
    assert row["diagnosis"] == "OMIM:308350"  # not the MONDO id listed first, nor the excluded OMIM id
    assert row["measurements"]["onset_years"] == pytest.approx(0.25)  # the onset of the chosen disease entry
    packet["diseases"] = packet["diseases"][:1]  # MONDO only, but the interpretation names an Orphanet disease
    packet["interpretations"] = [{"id": "i", "diagnosis": {"disease": {"id": "ORPHA:1945"}}}]
    path.write_text(json.dumps(packet), encoding="utf-8")
    assert PhenopacketsSource(str(path)).read_file(path).table.iloc[0]["diagnosis"] == "ORPHA:1945"
    del packet["interpretations"]
    path.write_text(json.dumps(packet), encoding="utf-8")
    assert PhenopacketsSource(str(path)).read_file(path).table.iloc[0]["diagnosis"] == "MONDO:0100062"  # all it has


def test_onsets_given_as_hpo_onset_classes_count(tmp_path):
    packet = json.loads(json.dumps(PACKET))
    packet["phenotypicFeatures"][0]["onset"] = {"ontologyClass": {"id": "HP:0011463", "label": "Childhood onset"}}
    packet["phenotypicFeatures"][1]["onset"] = {"ontologyClass": {"id": "HP:0003621", "label": "Juvenile onset"}}
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(packet), encoding="utf-8")
    row = PhenopacketsSource(str(path)).read_file(path).table.iloc[0]
    assert 1.0 <= row["measurements"]["onset_years"] < 5.0  # the earliest: childhood, 1 to 5 years
    packet["diseases"][0]["onset"] = {"ontologyClass": {"id": "HP:0003577", "label": "Congenital onset"}}
    path.write_text(json.dumps(packet), encoding="utf-8")
    assert PhenopacketsSource(str(path)).read_file(path).table.iloc[0]["measurements"]["onset_years"] == 0.0
    packet["diseases"][0]["onset"] = {"ontologyClass": {"id": "HP:0410280", "label": "Pediatric onset"}}
    for feature in packet["phenotypicFeatures"]:
        feature.pop("onset", None)
    packet["subject"]["timeAtLastEncounter"] = {"gestationalAge": {"weeks": 30}}
    path.write_text(json.dumps(packet), encoding="utf-8")
    result = PhenopacketsSource(str(path)).read_file(path)
    row = result.table.iloc[0]
    assert row["measurements"] == {}  # too broad to place: no onset rather than a wrong one
    assert row["age"] == 0.0 and result.issues == []  # a fetus: before birth


@pytest.mark.parametrize(("raw", "canonical"), [
    ("OMIM:147791", "OMIM:147791"), (" omim:147791 ", "OMIM:147791"), ("MIM:147791", "OMIM:147791"),
    ("OMIM_147791", "OMIM:147791"), ("Orphanet:558", "ORPHA:558"), ("ORPHANET_558", "ORPHA:558"),
    ("orpha:558", "ORPHA:558"), ("mondo:0007037", "MONDO:0007037"), ("Marfan syndrome", "Marfan syndrome"),
])
def test_disease_ids_are_spelled_as_the_annotations_spell_them(raw, canonical):
    from dxlab.data.sources.phenopackets import canonical_disease_id

    assert canonical_disease_id(raw) == canonical


def test_bad_lines_are_row_issues_not_exceptions(tmp_path, sample_lines):
    good = json.loads(sample_lines[0])
    bad_terms = good | {"case_id": "bad-terms", "observed": ["HP:0000078", "HP:123"], "excluded": ["OMIM:1"]}
    bad_fields = good | {"case_id": "bad-fields", "age_years": "six", "sex": "X", "disease_id": None}
    path = write_jsonl(
        tmp_path / "broken.jsonl",
        [json.dumps(good), '{"case_id": "PMID_1_1", "observed": [', "", json.dumps(bad_terms), json.dumps(bad_fields)],
    )
    result = PhenopacketsSource(str(path)).read_file(path)
    table = result.table.set_index("source_row")
    assert table.index.tolist() == [1, 2, 4, 5]  # line numbers; the blank line 3 is not a row
    got = sorted((i.source_file, i.source_row, i.field) for i in result.issues)
    assert got == [
        ("broken.jsonl", 2, "row"),
        ("broken.jsonl", 4, "excluded"),
        ("broken.jsonl", 4, "findings"),
        ("broken.jsonl", 5, "age"),
        ("broken.jsonl", 5, "diagnosis"),
        ("broken.jsonl", 5, "sex"),
    ]
    reasons = {(i.source_row, i.field): i.reason for i in result.issues}
    assert "HP:123" in reasons[(4, "findings")] and "OMIM:1" in reasons[(4, "excluded")]
    assert table.loc[2, "patient_id"] == "broken-2" and table.loc[2, "findings"] == []
    assert table.loc[4, "findings"] == ["HP:0000078"] and table.loc[4, "excluded"] == []
    assert math.isnan(table.loc[5, "age"]) and table.loc[5, "sex"] is None and table.loc[5, "diagnosis"] is None
    assert table.loc[1, "findings"] == good["observed"]

    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"subject": {"id": "x"', encoding="utf-8")
    result = PhenopacketsSource(str(broken_json)).read_file(broken_json)
    assert len(result.table) == 1 and [(i.source_row, i.field) for i in result.issues] == [(1, "row")]


def test_file_of_something_else_raises(tmp_path):
    other = write_jsonl(tmp_path / "other.jsonl", ['{"name": "a", "value": 1}', '{"name": "b", "value": 2}'])
    with pytest.raises(ValueError, match="other.jsonl"):
        PhenopacketsSource(str(other)).read_file(other)
    with pytest.raises(FileNotFoundError):
        PhenopacketsSource(str(tmp_path / "missing")).files()


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("P3Y6M", 3.5),
        ("P10Y", 10.0),
        ("P6M", 0.5),
        ("P2W", 2 / 52.18),
        ("P30D", 30 / 365.25),
        ("P1Y2M3W4D", 1 + 2 / 12 + 3 / 52.18 + 4 / 365.25),
        ("P1.5Y", 1.5),
        ("P", None),
        ("PT", None),
        ("3Y", None),
        ("P-1Y", None),
        ("", None),
        (None, None),
        (5, None),
    ],
)
def test_parse_iso8601_age(text, years):
    got = parse_iso8601_age(text)
    if years is None:
        assert got is None
    else:
        assert got == pytest.approx(years)
