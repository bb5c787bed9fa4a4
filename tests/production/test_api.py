"""The FastAPI service: predictions, bad requests, the API key, metrics, readiness and a model reload."""

import logging
import time

import mlflow
import pytest
from fastapi.testclient import TestClient

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
    assert body["model"] == "logreg" and body["model_version"] == "1"
    (pred,) = body["predictions"]
    assert pred["patient_id"].startswith("px-") and "RAW-ID" not in r.text
    probs = [d["probability"] for d in pred["diagnoses"]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
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
    assert info[0].labels == {"model": "logreg", "version": "1"} and info[0].value == 1


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

    app = create_app(ModelHolder(fail, lambda: ""), ApiSettings(reload_interval_s=0), b"k")
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
    pseudonym = r.json()["predictions"][0]["patient_id"]
    assert pseudonym in caplog.text
    assert "RAW-ID-0042" not in caplog.text and example["findings"][0] not in caplog.text


def test_model_reloads_when_the_alias_moves(prod_project, example):
    """Serve v1, register v2 (the knowledge ranker) and move the alias: the poller swaps it in while serving."""
    from dxlab.tracking.mlflow_tracking import package_requirements
    from dxlab.tracking.pyfunc import log_pyfunc
    from dxlab.tracking.registry import promote

    root, cfg = prod_project
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    v1 = client.get_model_version_by_alias("dxlab", "champion").version
    holder = ModelHolder(lambda: Scorer.from_config(cfg, explain="none"),
                         lambda: model_version(cfg.serve.model, cfg.paths.models, cfg.tracking.uri))
    app = create_app(holder, ApiSettings(reload_interval_s=0.2), b"k")
    with TestClient(app) as c:
        first = c.post("/v1/predict", json=example).json()
        assert first["model_version"] == str(v1) and first["model"] == "logreg"
        mlflow.set_tracking_uri(cfg.tracking.uri)
        mlflow.set_experiment(cfg.tracking.experiment)
        with mlflow.start_run(run_name="reload-test"):
            info = log_pyfunc(root / "models" / "knowledge_ranker.joblib", "knowledge_ranker",
                              package_requirements())
        v2 = mlflow.register_model(info.model_uri, "dxlab").version
        client.set_model_version_tag("dxlab", v2, "dxlab.model", "knowledge_ranker")
        try:
            promote(client, "dxlab", v2)
            deadline = time.time() + 20
            while time.time() < deadline and c.get("/readyz").json()["model_version"] != str(v2):
                assert c.post("/v1/predict", json=example).status_code == 200  # serving never stops
                time.sleep(0.1)
            after = c.post("/v1/predict", json=example).json()
            assert after["model_version"] == str(v2) and after["model"] == "knowledge_ranker"
            loads = [line for line in c.get("/metrics").text.splitlines() if line.startswith("dxlab_model_loads_total")]
            assert float(loads[0].split()[-1]) == 2
        finally:
            promote(client, "dxlab", v1)  # later tests expect the logreg champion
