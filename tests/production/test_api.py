"""The FastAPI service: predictions, bad requests, the API key, metrics, readiness and a model reload; a real case
answered as `evaluate-external` ranks it with the same model; the textbook Marfan presentation."""

import json
import logging
import time

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from helpers import SHARED_CASES, require
from dxlab.data.schema import read_parquet
from dxlab.serving.api import ApiSettings, ModelHolder, app_from_config, create_app
from dxlab.serving.scorer import Scorer, model_version

PATIENT = {"patient_id": "RAW-ID-0042", "findings": [], "excluded": [], "age": 7.5, "sex": "F",
           "family_history": False, "measurements": {"height_cm": 120.0}}


@pytest.fixture(scope="module")
def example(prod_project):
    root, _ = prod_project
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    return {**PATIENT, "findings": list(test["findings"].iloc[0]), "excluded": list(test["excluded"].iloc[0])}


@pytest.fixture(scope="module")
def client(prod_project):
    _, cfg = prod_project
    with TestClient(app_from_config(cfg)) as c:
        yield c


def test_one_patient_and_a_batch(client, example):
    r = client.post("/v1/predict", json=example)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "diagnostic" and body["model_version"] == "1"
    (pred,) = body["predictions"]
    assert pred["patient_id"] == "RAW-ID-0042" and "px-" not in r.text  # the caller's own id, no pseudonym
    probs = [d["probability"] for d in pred["diagnoses"]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    assert all(d["name"] for d in pred["diagnoses"])
    assert {f["hpo_id"] for d in pred["diagnoses"] for f in d["supporting"]} <= set(example["findings"])
    assert pred["probability_by_type"] and pred["probability_by_type"][0]["probability"] >= probs[0] - 1e-6
    assert pred["anomaly"]["flag"] in (True, False) and pred["anomaly"]["score"] is not None
    assert {f["hpo_id"] for f in pred["key_findings"]} <= set(example["findings"])
    batch = client.post("/v1/predict", json={"patients": [example, {**example, "patient_id": None}]})
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2
    assert batch.json()["predictions"][1]["patient_id"] is None
    as_list = client.post("/v1/predict", json=[example] * 3)
    assert as_list.status_code == 200 and len(as_list.json()["predictions"]) == 3
    # the same patient gets the same answer whichever way it was sent
    assert as_list.json()["predictions"][0]["diagnoses"] == pred["diagnoses"]


@pytest.mark.parametrize("body, status, loc, text", [
    ('{"findings": ["HP:0001250"', 400, ["body"], "malformed JSON"),
    ("", 422, ["body"], "empty body"),
    ("[]", 422, ["body"], "empty list"),
    ('{"patients": []}', 422, ["body", "patients"], "empty list"),
    ('{"findings": []}', 422, ["body", "findings"], "at least 1"),
    ('{"excluded": ["HP:0001250"]}', 422, ["body", "findings"], "Field required"),
    ('{"findings": ["HP:0001250"], "age": "old"}', 422, ["body", "age"], "valid number"),
    ('{"findings": ["HP:0001250"], "age": 300}', 422, ["body", "age"], "less than or equal"),
    ('{"findings": ["HP:0001250"], "sex": "X"}', 422, ["body", "sex"], "'F' or 'M'"),
    ('{"findings": "HP:0001250"}', 422, ["body", "findings"], "valid list"),
    ('{"findings": ["HP:0001250"], "measurements": {"height_cm": "tall"}}', 422,
     ["body", "measurements", "height_cm"], "valid number"),
    ('{"findings": ["HP:0001250"], "surname": "Doe"}', 422, ["body", "surname"], "Extra inputs"),
    ('{"findings": ["HP:9999999", "HP:0001250"], "excluded": ["HP:0000000X"]}', 422, ["body", "findings"],
     "HP:9999999"),
    ('{"patients": [{"findings": ["HP:0001250"]}, {"findings": ["HP:1234567"]}]}', 422,
     ["body", "patients", 1, "findings"], "HP:1234567"),
    ('"just a string"', 422, ["body"], "expected a patient"),
])
def test_bad_requests_name_the_field(client, body, status, loc, text):
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc and text in detail[0]["msg"]
    assert all("input" not in d for d in detail)  # nothing the caller sent is echoed back


def test_unknown_ids_are_all_listed(client):
    r = client.post("/v1/predict", json={"findings": ["HP:9999998", "HP:0001250", "HP:9999999"],
                                         "excluded": ["HP:9999997"]})
    assert r.status_code == 422
    unknown = {tuple(d["loc"]): d["unknown"] for d in r.json()["detail"]}
    assert unknown == {("body", "findings"): ["HP:9999998", "HP:9999999"], ("body", "excluded"): ["HP:9999997"]}


def test_oversized_batch_is_refused(client, example):
    r = client.post("/v1/predict", json=[example] * 257)
    assert r.status_code == 413 and "at most 256" in r.json()["detail"][0]["msg"]


def test_metrics_count_requests_predictions_and_drift(prod_project, client, example):
    from prometheus_client.parser import text_string_to_metric_families

    client.post("/v1/predict", json=example)
    client.post("/v1/predict", content="{", headers={"content-type": "application/json"})
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {(s.labels["endpoint"], s.labels["status"]): s.value for s in families["dxlab_requests"].samples
                if s.name == "dxlab_requests_total"}
    assert requests[("/v1/predict", "200")] >= 1 and requests[("/v1/predict", "400")] >= 1
    assert any(s.name.endswith("_bucket") for s in families["dxlab_request_latency_seconds"].samples)
    assert sum(s.value for s in families["dxlab_predictions"].samples if s.name.endswith("_total")) >= 1
    assert "dxlab_anomaly_flags" in families and "dxlab_input_drift_psi" in families
    info = [s for s in families["dxlab_model_info"].samples]
    assert info[0].labels == {"model": "diagnostic", "version": "1"} and info[0].value == 1


def test_metrics_labels_stay_bounded_under_random_methods_and_paths(client):
    """Made-up methods and paths must not each become a new series on /metrics (unbounded memory)."""
    from prometheus_client.parser import text_string_to_metric_families

    for i in range(5):
        client.request(f"BREW{i}", f"/no/such/path/{i}")
        client.get(f"/nothing-{i}")
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    labels = {(s.labels["endpoint"], s.labels["method"]) for s in families["dxlab_requests"].samples}
    assert not any(m.startswith("BREW") for _, m in labels) and ("other", "other") in labels
    assert not any(e.startswith(("/no/", "/nothing")) for e, _ in labels)


def test_health_ready_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["anomaly_detector"] is True
    spec = client.get("/openapi.json").json()
    assert "/v1/predict" in spec["paths"] and "Patient" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_not_ready_without_a_model():
    def fail():
        raise FileNotFoundError("no model here")

    app = create_app(ModelHolder(fail, lambda: ""), ApiSettings(reload_interval_s=0, require_key=False))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and "no model here" in r.json()["reason"]
        assert c.post("/v1/predict", json={"findings": ["HP:0001250"]}).status_code == 503


def test_api_key_from_the_environment(prod_project, monkeypatch, example):
    _, cfg = prod_project
    monkeypatch.setenv("DXLAB_API_KEY", "s3cret")
    with TestClient(app_from_config(cfg)) as c:
        assert c.post("/v1/predict", json=example).status_code == 401
        assert c.post("/v1/predict", json=example, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/predict", json=example, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes and scrapes need no key


def test_only_pseudonyms_reach_the_log(client, example, caplog):
    with caplog.at_level(logging.DEBUG):
        r = client.post("/v1/predict", json=example)
    assert r.json()["predictions"][0]["patient_id"] == "RAW-ID-0042"
    assert "px-" in caplog.text  # the log names the patient by the process's own pseudonym
    assert "RAW-ID-0042" not in caplog.text and example["findings"][0] not in caplog.text


def test_model_reloads_when_the_alias_moves(prod_project, example):
    """Serve v1, register v2 (the baseline) and move the alias: the poller swaps it in while serving."""
    from dxlab.tracking.mlflow_tracking import package_requirements
    from dxlab.tracking.pyfunc import log_pyfunc
    from dxlab.tracking.registry import promote

    root, cfg = prod_project
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    v1 = client.get_model_version_by_alias("dxlab", "champion").version
    holder = ModelHolder(lambda: Scorer.from_config(cfg, explain="none"),
                         lambda: model_version(cfg.serve.model, cfg.paths.models, cfg.tracking.uri))
    app = create_app(holder, ApiSettings(reload_interval_s=0.2, require_key=False))
    with TestClient(app) as c:
        first = c.post("/v1/predict", json=example).json()
        assert first["model_version"] == str(v1) and first["model"] == "diagnostic"
        mlflow.set_tracking_uri(cfg.tracking.uri)
        mlflow.set_experiment(cfg.tracking.experiment)
        with mlflow.start_run(run_name="reload-test"):
            info = log_pyfunc(root / "models" / f"{cfg.baseline.name}.joblib", cfg.baseline.name,
                              package_requirements())
        v2 = mlflow.register_model(info.model_uri, "dxlab").version
        client.set_model_version_tag("dxlab", v2, "dxlab.model", cfg.baseline.name)
        try:
            promote(client, "dxlab", v2)
            deadline = time.time() + 20
            while time.time() < deadline and c.get("/readyz").json()["model_version"] != str(v2):
                assert c.post("/v1/predict", json=example).status_code == 200  # serving never stops
                time.sleep(0.1)
            after = c.post("/v1/predict", json=example).json()
            assert after["model_version"] == str(v2) and after["model"] == cfg.baseline.name
            loads = [line for line in c.get("/metrics").text.splitlines() if line.startswith("dxlab_model_loads_total")]
            assert float(loads[0].split()[-1]) == 2
        finally:
            promote(client, "dxlab", v1)  # later tests expect the diagnostic champion


def test_textbook_marfan_is_answered_marfan_syndrome(client):
    patient = {"findings": ["HP:0001166", "HP:0001083", "HP:0002616", "HP:0000545", "HP:0001519"], "sex": "M",
               "age": 20}
    first = client.post("/v1/predict", json=patient).json()["predictions"][0]["diagnoses"][0]
    assert first["name"] == "Marfan syndrome"  # OMIM:154700, or its Orphanet twin (see tests/model)
    assert {"HP:0001083", "HP:0001166"} <= {f["hpo_id"] for f in first["supporting"]}


def test_a_real_case_gets_the_top_10_evaluate_external_gives_it(prod_project, tmp_path):
    """A case report of a publication the champion never trained on: the API's top 10 is evaluate-external's."""
    from dxlab.evaluation.external import evaluate_case_file

    root, cfg = prod_project
    trained = {json.loads(line)["pmid"] for line in (root / "cases.jsonl").open()}
    case = next(json.loads(line) for line in require(SHARED_CASES, "the shared case reports").open()
                if json.loads(line)["pmid"] not in trained and len(json.loads(line)["observed"]) >= 4)
    scorer = Scorer.from_config(cfg)
    (tmp_path / "one.jsonl").write_text(json.dumps(case) + "\n")
    summary = evaluate_case_file(scorer.handle.model, tmp_path / "one.jsonl", tmp_path / "out", scorer.model_name,
                                 scorer.model_version)
    assert summary["n_cases"] == 1 and summary["n_training_groups_seen"] == 0
    expected = pd.read_csv(tmp_path / "out" / "ranks.csv")["top10"].iloc[0].split(";")
    holder = ModelHolder(lambda: scorer, lambda: scorer.model_version)
    scorer.top_k = 10
    with TestClient(create_app(holder, ApiSettings(reload_interval_s=0, require_key=False))) as c:
        body = {"findings": case["observed"], "excluded": case["excluded"],
                "sex": {"MALE": "M", "FEMALE": "F"}.get(case["sex"]), "age": case["age_years"],
                "measurements": {} if case.get("onset_years") is None else {"onset_years": case["onset_years"]}}
        answer = c.post("/v1/predict", json=body).json()["predictions"][0]["diagnoses"]
    assert [d["disease_id"] for d in answer] == [item.rsplit(":", 1)[0] for item in expected]
    assert [round(d["probability"], 4) for d in answer] == pytest.approx(
        [float(item.rsplit(":", 1)[1]) for item in expected], abs=1e-4)
