"""The AWS Lambda handler, run locally on API Gateway events (REST proxy and HTTP API with a base64 body)."""

import base64
import json
from pathlib import Path

import pytest

from dxlab.data.schema import read_parquet
from dxlab.serving import lambda_handler

EVENT = Path(__file__).parent / "data" / "apigateway_rest_event.json"


@pytest.fixture()
def lambda_env(prod_project, monkeypatch):
    root, cfg = prod_project
    monkeypatch.setenv("DXLAB_MODEL", str(root / "models" / "diagnostic.joblib"))
    monkeypatch.setenv("DXLAB_ANOMALY_DETECTOR", cfg.serve.anomaly_detector)
    monkeypatch.setenv("DXLAB_KNOWLEDGE_DIR", cfg.paths.knowledge)
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", "lambda-test-key")
    monkeypatch.setenv("DXLAB_API_KEY", "lambda-key")
    monkeypatch.setattr(lambda_handler, "_STATE", {})  # a cold start
    findings = list(read_parquet(root / "data" / "processed" / "test.parquet")["findings"].iloc[0])
    event = json.loads(EVENT.read_text())
    body = json.loads(event["body"])
    body["patients"][0]["findings"] = findings
    event["body"] = json.dumps(body)
    return event, findings


def test_rest_event_is_answered_like_the_api(lambda_env):
    event, findings = lambda_env
    response = lambda_handler.handler(event, None)
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["model"] == "diagnostic"
    (pred,) = body["predictions"]
    assert pred["patient_id"] == "LAMBDA-RAW-7" and "px-" not in response["body"]  # the caller's own id
    assert len(pred["diagnoses"]) == 5 and pred["diagnoses"][0]["name"]
    assert {k["hpo_id"] for k in pred["key_findings"]} <= set(findings)
    assert pred["anomaly"]["flag"] in (True, False)
    # a warm invocation reuses the loaded scorer
    scorer = lambda_handler._STATE["scorer"]
    assert lambda_handler.handler(event, None)["statusCode"] == 200 and lambda_handler._STATE["scorer"] is scorer


def test_http_api_event_with_base64_body(lambda_env):
    event, findings = lambda_env
    v2 = {"version": "2.0", "routeKey": "POST /v1/predict", "rawPath": "/v1/predict",
          "headers": {"content-type": "application/json", "x-api-key": "lambda-key"},
          "requestContext": {"http": {"method": "POST", "path": "/v1/predict"}},
          "body": base64.b64encode(json.dumps({"findings": findings}).encode()).decode(), "isBase64Encoded": True}
    response = lambda_handler.handler(v2, None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["predictions"][0]["patient_id"] is None


@pytest.mark.parametrize("change, status, text", [
    ({"body": "{not json"}, 400, "malformed JSON"),
    ({"body": '{"findings": ["HP:9999999"]}'}, 422, "HP:9999999"),
    ({"body": '{"patients": []}'}, 422, "empty list"),
    ({"headers": {"X-Api-Key": "wrong"}}, 401, "API key"),
    ({"body": "%%%", "isBase64Encoded": True}, 400, "base64"),
])
def test_bad_events(lambda_env, change, status, text):
    event, _ = lambda_env
    response = lambda_handler.handler({**event, **change}, None)
    assert response["statusCode"] == status and text in response["body"]
