"""Clinical notes on the production path: the API answers a note-only patient with a differential and the spans it
read, /v1/annotate returns the mentions, bad notes get a clear 4xx; `dxlab predict` scores a file of notes; the
Lambda handler reads notes as the API does."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from dxlab.data.schema import read_parquet
from dxlab.serving import lambda_handler
from dxlab.serving.api import app_from_config
from dxlab.serving.batch import predict_from_config, read_predictions

NOTE = ("6-year-old boy, hypotonic since infancy, global developmental delay, two febrile seizures; hearing normal, "
        "no cardiac murmur; his maternal uncle had intellectual disability.")
HYPOTONIA, DELAY, HEARING_IMPAIRMENT, INTELLECTUAL_DISABILITY = "HP:0001252", "HP:0001263", "HP:0000365", "HP:0001249"
BINARY = "\x00\x01\x02\x03PK\x03\x04 binary"
NOT_ENGLISH = "患者自婴儿期起肌张力低下，全面发育迟缓，两次热性惊厥。"


@pytest.fixture(scope="module")
def client(prod_project):
    _, cfg = prod_project
    with TestClient(app_from_config(cfg)) as c:
        yield c


@pytest.fixture(scope="module")
def simulated(prod_project):
    """Patients of the simulated test split: their notes, coded findings and diagnoses."""
    root, _ = prod_project
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    return test[(test["source"] == "hpo_cohort") & (test["note"].str.len() > 0)].head(30).reset_index(drop=True)


def test_a_note_only_patient_gets_a_differential_and_the_spans_read(client):
    r = client.post("/v1/predict", json={"patient_id": "RAW-NOTE-7", "age": 6, "sex": "M", "note": NOTE})
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    probs = [d["probability"] for d in pred["diagnoses"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and probs[0] > 0
    read = pred["findings_read"]
    assert read and all(NOTE[m["start"]:m["end"]] == m["text"] for m in read)
    assertion = {m["hpo_id"]: m["assertion"] for m in read}
    assert assertion[HYPOTONIA] == "present" and assertion[DELAY] == "present"
    assert assertion[HEARING_IMPAIRMENT] == "negated" and assertion[INTELLECTUAL_DISABILITY] == "family"
    assert next(m for m in read if m["hpo_id"] == INTELLECTUAL_DISABILITY)["relative"] == "maternal uncle"
    assert all(m["name"] for m in read)
    # the differential is argued from what was read for the patient, never from the uncle's finding
    present = {m["hpo_id"] for m in read if m["assertion"] == "present"}
    negated = {m["hpo_id"] for m in read if m["assertion"] == "negated"}
    cited = {(f["hpo_id"], f.get("finding")) for d in pred["diagnoses"] for f in d["supporting"] + d["against"]}
    assert cited and {t for t, _ in cited} <= present | negated
    assert {k["hpo_id"] for k in pred["key_findings"]} <= present
    assert pred["patient_id"] == "RAW-NOTE-7" and "px-" not in r.text  # the caller's own id, no pseudonym


def test_notes_rank_simulated_patients_about_as_well_as_their_findings(client, simulated):
    """Each simulated test patient posted with its note alone, then with its findings alone: the diagnosis is in
    the top 5 about as often (the simulator's notes are the clinician's words for the same patient)."""
    def top5(patients):
        r = client.post("/v1/predict", json={"patients": patients})
        assert r.status_code == 200, r.text
        return np.array([d in [x["disease_id"] for x in p["diagnoses"]]
                         for d, p in zip(simulated["diagnosis"], r.json()["predictions"])])

    by_note = top5([{"note": n, "age": None if a != a else a, "sex": s}
                    for n, a, s in zip(simulated["note"], simulated["age"], simulated["sex"])])
    by_findings = top5([{"findings": list(f), "excluded": list(e), "age": None if a != a else a, "sex": s}
                        for f, e, a, s in zip(simulated["findings"], simulated["excluded"], simulated["age"],
                                              simulated["sex"])])
    assert by_findings.mean() > 0.5
    assert by_note.mean() >= by_findings.mean() - 0.2, (by_note.mean(), by_findings.mean())


def test_a_note_beside_coded_findings_adds_to_them(client):
    coded = {"findings": ["HP:0001166"], "age": 20, "sex": "M"}  # arachnodactyly
    alone = client.post("/v1/predict", json=coded).json()["predictions"][0]
    both = client.post("/v1/predict", json={**coded, "note": "Ectopia lentis; no scoliosis."}).json()["predictions"][0]
    assert alone["findings_read"] is None
    assert {(m["text"], m["assertion"]) for m in both["findings_read"]} >= {("Ectopia lentis", "present"),
                                                                           ("scoliosis", "negated")}
    assert both["diagnoses"] != alone["diagnoses"]


@pytest.mark.parametrize("patient, status, loc, text", [
    ({"note": ""}, 422, ["body", "findings"], "a note"),
    ({"note": "   ", "findings": []}, 422, ["body", "findings"], "at least 1"),
    ({"note": "hypotonia " * 110_000}, 422, ["body", "note"], "at most 100000 characters"),
    ({"note": BINARY}, 422, ["body", "note"], "binary"),
    ({"note": NOT_ENGLISH}, 422, ["body", "note"], "English"),
    ({"note": "No seizures, no hypotonia."}, 422, ["body", "note"], "no finding"),
    ({"note": 42}, 422, ["body", "note"], "valid string"),
])
def test_bad_notes_get_a_clear_answer(client, patient, status, loc, text):
    r = client.post("/v1/predict", json=patient)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc and text in detail[0]["msg"], detail
    assert "hypotonia hypotonia" not in r.text and "PK" not in r.text  # the note is never echoed


def test_a_bad_note_in_a_batch_is_named_by_its_patient(client):
    r = client.post("/v1/predict", json={"patients": [{"note": NOTE}, {"note": BINARY}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "patients", 1, "note"]


def test_a_non_english_note_beside_findings_is_answered_with_nothing_read(client):
    r = client.post("/v1/predict", json={"findings": ["HP:0001250"], "note": NOT_ENGLISH})
    assert r.status_code == 200 and r.json()["predictions"][0]["findings_read"] == []


def test_notes_never_reach_the_log(client, caplog):
    with caplog.at_level(logging.DEBUG):
        assert client.post("/v1/predict", json={"note": NOTE}).status_code == 200
        assert client.post("/v1/annotate", json={"text": NOTE}).status_code == 200
    assert "hypotonic" not in caplog.text and "maternal uncle" not in caplog.text


def test_annotate_returns_the_mentions_and_the_patient_fields(client):
    r = client.post("/v1/annotate", json={"text": NOTE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert all(NOTE[m["start"]:m["end"]] == m["text"] for m in body["mentions"])
    assert {HYPOTONIA, DELAY} <= set(body["findings"]) and HEARING_IMPAIRMENT in body["excluded"]
    assert body["family"] == [{"hpo_id": INTELLECTUAL_DISABILITY, "relative": "maternal uncle"}]
    assert INTELLECTUAL_DISABILITY not in body["findings"] and body["family_history"] is None
    assert body["warnings"] == []
    sister = client.post("/v1/annotate", json={"text": "Her sister has seizures."}).json()
    assert sister["findings"] == [] and sister["family_history"] is True
    foreign = client.post("/v1/annotate", json={"text": NOT_ENGLISH})
    assert foreign.status_code == 200 and foreign.json()["mentions"] == [] and "English" in foreign.json()["warnings"][0]


@pytest.mark.parametrize("body, status, text", [
    ('{"text": ""}', 422, "at least 1 character"),
    ('{"text": "   "}', 422, "blank"),
    (json.dumps({"text": BINARY}), 422, "binary"),
    (json.dumps({"text": "seizures " * 120_000}), 422, "at most 100000 characters"),
    ('{"text": "seizures"', 400, "malformed JSON"),
    ('{"note": "seizures"}', 422, "Field required"),
    ("", 422, "empty body"),
])
def test_annotate_bad_input(client, body, status, text):
    r = client.post("/v1/annotate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and text in r.json()["detail"][0]["msg"], r.text


def test_ready_says_notes_are_read_and_annotate_needs_the_key(prod_project, client, monkeypatch):
    assert client.get("/readyz").json()["notes"] is True
    assert "/v1/annotate" in client.get("/openapi.json").json()["paths"]
    monkeypatch.setenv("DXLAB_API_KEY", "s3cret")
    assert client.post("/v1/annotate", json={"text": NOTE}).status_code == 401
    assert client.post("/v1/annotate", json={"text": NOTE}, headers={"X-API-Key": "s3cret"}).status_code == 200


def test_a_batch_file_of_notes_is_scored_from_them(prod_project, tmp_path, pseudonym_key):
    """A feed file whose rows have a note and no coded findings: every readable row scored from its note, with what
    was read; the unreadable note quarantined with file, row and field."""
    _, cfg = prod_project
    source = cfg.data.sources[cfg.data.feed].source
    first = sorted(Path(source.path).glob("patients_*.csv"))[0]
    raw = pd.read_csv(first, dtype=str, keep_default_na=False).head(12)
    raw = raw[raw["note"].str.len() > 0].reset_index(drop=True)
    # nothing but the note to go by (and no injected defect of the simulator's to quarantine the row for)
    raw["patient_id"] = [f"NOTE-{i}" for i in range(len(raw))]
    raw["findings"], raw["excluded_findings"], raw["age"], raw["sex"] = "", "", "", ""
    raw.loc[3, "note"] = "\x01\x02\x03\x04\x05\x06\x07\x08 PK\x03\x04"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    raw.to_csv(inbox / first.name, index=False)
    summary = predict_from_config(cfg, inbox, tmp_path / "out")
    assert summary["n_rows"] == len(raw) and summary["n_scored"] == len(raw) - 1
    assert summary["n_quarantined"] == 1 and summary["quarantined_by_field"]["note"] == 1
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine" / f"{first.stem}.csv")
    # the row's note is unreadable, so it has no findings either: both are said
    assert set(zip(quarantine["source_file"], quarantine["source_row"], quarantine["field"])) == {
        (first.name, 4, "note"), (first.name, 4, "findings")}
    preds = read_predictions(tmp_path / "out")
    assert preds["disease_1"].notna().all() and (preds["probability_1"] > 0).all()
    notes = dict(zip(range(1, len(raw) + 1), raw["note"]))
    for row, read in zip(preds["source_row"], preds["findings_read"]):
        mentions = json.loads(read)
        assert mentions and all(notes[row][m["start"]:m["end"]] == m["text"] for m in mentions)
    # the rows were scored from what was read: the key findings of each come from its note
    for read, keys in zip(preds["findings_read"], preds["key_findings"]):
        assert set(keys) <= {m["hpo_id"] for m in json.loads(read) if m["assertion"] == "present"}


def test_lambda_reads_notes_like_the_api(prod_project, monkeypatch):
    root, cfg = prod_project
    monkeypatch.setenv("DXLAB_MODEL", str(root / "models" / "diagnostic.joblib"))
    monkeypatch.setenv("DXLAB_KNOWLEDGE_DIR", cfg.paths.knowledge)
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", "lambda-test-key")
    monkeypatch.delenv("DXLAB_API_KEY", raising=False)
    monkeypatch.setattr(lambda_handler, "_STATE", {})
    event = {"path": "/v1/predict", "headers": {"content-type": "application/json"}, "body": json.dumps({"note": NOTE})}
    response = lambda_handler.handler(event, None)
    assert response["statusCode"] == 200, response["body"]
    (pred,) = json.loads(response["body"])["predictions"]
    assert pred["diagnoses"] and all(NOTE[m["start"]:m["end"]] == m["text"] for m in pred["findings_read"])
    bad = lambda_handler.handler({**event, "body": json.dumps({"note": BINARY})}, None)
    assert bad["statusCode"] == 422 and "binary" in bad["body"]
    annotate = lambda_handler.handler({**event, "path": "/v1/annotate", "body": json.dumps({"text": NOTE})}, None)
    assert annotate["statusCode"] == 200 and HYPOTONIA in json.loads(annotate["body"])["findings"]
    monkeypatch.delenv("DXLAB_KNOWLEDGE_DIR")
    monkeypatch.setattr(lambda_handler, "_STATE", {})
    unable = lambda_handler.handler(event, None)  # nothing to build an annotator from: notes are refused
    assert unable["statusCode"] == 503 and "HPO ids" in unable["body"]
