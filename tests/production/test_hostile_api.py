"""The API against hostile or careless callers: body size, nesting, numbers that are not finite, coerced types,
duplicate keys, the media type, the cost of one request, the validate stage's ranges (every rejection a 4xx naming
the field, never the value); no pseudonym that links to stored data; the API key required by default; no patient
data in the logs or on /metrics; deploy/ publishes nothing without authentication."""

from __future__ import annotations

import json
import logging
import threading
import time
from argparse import Namespace
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from omegaconf import OmegaConf

from helpers import free_port
from dxlab.cli import main
from dxlab.data.pseudonym import pseudonymise
from dxlab.data.schema import read_parquet
from dxlab.serving import commands, lambda_handler
from dxlab.serving.api import ApiSettings, MissingApiKey, WithoutQueryStrings, app_from_config, server_config
from dxlab.serving.schema import MAX_JSON_DEPTH, json_depth

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MARKERS = ("Jane Doe DOB 1990-01-01", "MRN-12345678", "555-12-3456")  # shaped like a name, a record number, an SSN
JSON = {"content-type": "application/json"}


def _copy(cfg, **changes):
    """The test project's config with dotted changes (interpolations kept: serve.validate still reads validate)."""
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key, value in changes.items():
        OmegaConf.update(copy, key, value, force_add=True)
    return copy


def _local_model(root: Path) -> str:
    return str(root / "models" / "diagnostic.joblib")  # named explicitly (--model): no registry needed here


@pytest.fixture(scope="module")
def findings(prod_project):
    root, _ = prod_project
    return list(read_parquet(root / "data" / "processed" / "test.parquet")["findings"].iloc[0])


@pytest.fixture(scope="module")
def app_client(prod_project):
    """A client of the service built from the test project's config with changes (`serve.api.max_cost=10`, ...)."""
    root, cfg = prod_project
    opened = []

    def make(**changes):
        client = TestClient(app_from_config(_copy(cfg, **changes), model=_local_model(root)))
        opened.append(client.__enter__())
        return opened[-1]

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client(app_client):
    return app_client()


def _post(client, body: str | bytes, path: str = "/v1/predict", headers=JSON):
    return client.post(path, content=body, headers=headers)


def _rejected(r, status: int, loc: list, text: str = "") -> dict:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc, detail
    assert text in detail[0]["msg"], detail
    assert all("input" not in d for d in detail)
    for marker in MARKERS:
        assert marker not in r.text  # the value is never echoed
    return detail[0]


# -- 1. input limits -----------------------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413_before_it_is_read(app_client, findings):
    small = app_client(**{"serve.api.max_body_bytes": 1000})
    body = json.dumps({"patient_id": MARKERS[0], "findings": findings, "note": "x" * 2000})
    _rejected(_post(small, body), 413, ["body"], "larger than 1000 bytes")
    _rejected(_post(small, "{" * 5000), 413, ["body"])  # too large is said before it is parsed (not a 400)

    def chunks():  # no Content-Length: counted while it streams in
        for _ in range(10):
            yield b" " * 300
        yield body.encode()

    _rejected(small.post("/v1/predict", content=chunks(), headers=JSON), 413, ["body"], "larger than 1000")
    _rejected(_post(small, json.dumps({"text": "seizures " * 200}), "/v1/annotate"), 413, ["body"])
    assert _post(small, json.dumps({"findings": findings[:3]})).status_code == 200  # under the limit: served


def test_the_body_limit_defaults_to_two_mebibytes(client, findings):
    assert ApiSettings().max_body_bytes == 2 * 1024 * 1024
    body = json.dumps({"findings": findings[:1], "note": "seizures. " * 10}) + " " * (2 * 1024 * 1024)
    _rejected(_post(client, body), 413, ["body"], "serve.api.max_body_bytes")


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/annotate"])
def test_deep_nesting_is_a_400_never_a_recursion_error(client, path):
    deep = "[" * 100_000 + "]" * 100_000
    _rejected(_post(client, deep, path), 400, ["body"], f"nested more than {MAX_JSON_DEPTH} levels")
    inner = "[" * 50 + "1" + "]" * 50
    _rejected(_post(client, '{"findings": ["HP:0001250"], "measurements": {"a": ' + inner + "}}", path), 400,
              ["body"], "nested")


def test_nesting_is_counted_outside_strings():
    assert json_depth(b'{"patients": [{"measurements": {"a": 1}}]}') == 4
    assert json_depth(b'{"note": "[[[{{{ \\" [[[ \\\\", "x": []}') == 2
    assert json_depth(b"") == 0 and json_depth(b'"[[["') == 0


@pytest.mark.parametrize("field, value, loc, text", [
    ("age", "NaN", ["body", "age"], "finite number"),
    ("age", "Infinity", ["body", "age"], "finite number"),
    ("age", "-Infinity", ["body", "age"], "finite number"),
    ("age", "1e400", ["body", "age"], "finite number"),
    ("age", "-1e309", ["body", "age"], "finite number"),
    ("age", "9" * 5000, ["body", "age"], "finite number"),
    ("age", "-" + "9" * 5000, ["body", "age"], "finite number"),
    ("age", "-1e308", ["body", "age"], "greater than or equal to 0"),
    ("measurements", '{"height_cm": NaN}', ["body", "measurements", "height_cm"], "finite number"),
    ("measurements", '{"onset_years": 1e999}', ["body", "measurements", "onset_years"], "finite number"),
    ("measurements", '{"height_cm": ' + "1" * 5000 + "}", ["body", "measurements", "height_cm"], "finite"),
])
def test_numbers_must_be_finite(client, field, value, loc, text):
    body = '{"patient_id": "%s", "findings": ["HP:0001250"], "%s": %s}' % (MARKERS[1], field, value)
    _rejected(_post(client, body), 422, loc, text)


@pytest.mark.parametrize("value", ["-1e308", "1e308", "1.7976931348623157e308", "-3.5e38", "1e16"])
def test_a_measurement_without_a_range_overflowing_the_models_arithmetic_is_422(client, findings, value):
    """-1e308 is a finite float, but squared (or cast to float32, as the anomaly features are) it overflows."""
    body = '{"findings": %s, "measurements": {"onset_years": %s}}' % (json.dumps(findings), value)
    _rejected(_post(client, body), 422, ["body", "measurements", "onset_years"], "finite number between -1e+15")


def test_a_large_measurement_within_the_bound_is_answered(client, findings):
    r = client.post("/v1/predict", json={"findings": findings, "measurements": {"onset_years": -1e15, "x": 1e15}})
    assert r.status_code == 200, r.text
    assert "NaN" not in r.text and "Infinity" not in r.text


@pytest.mark.parametrize("field, value, loc, text", [
    ("age", "true", ["body", "age"], "valid number"),
    ("age", '"7"', ["body", "age"], "valid number"),
    ("family_history", "0", ["body", "family_history"], "valid boolean"),
    ("family_history", '"yes"', ["body", "family_history"], "valid boolean"),
    ("measurements", '{"height_cm": true}', ["body", "measurements", "height_cm"], "valid number"),
    ("measurements", '{"height_cm": "120"}', ["body", "measurements", "height_cm"], "valid number"),
    ("patient_id", "12345678", ["body", "patient_id"], "valid string"),
    ("sex", '"f"', ["body", "sex"], "'F' or 'M'"),
])
def test_types_are_strict(client, field, value, loc, text):
    """A value a lax parser would coerce (true -> 1.0, 0 -> False, "7" -> 7.0) is refused: a clinician's answer
    is taken as given or not at all."""
    body = '{"findings": ["HP:0001250"], "%s": %s}' % (field, value)
    _rejected(_post(client, body), 422, loc, text)


def test_integers_are_numbers(client, findings):
    r = client.post("/v1/predict", json={"findings": findings, "age": 7, "measurements": {"height_cm": 120}})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body, loc", [
    ('{"findings": ["HP:0001250"], "age": 5, "age": 300}', ["body", "age"]),
    ('{"patients": [{"findings": ["HP:0001250"]}, {"findings": ["HP:0001250"], '
     '"measurements": {"height_cm": 100, "height_cm": 120}}]}', ["body", "patients", 1, "measurements", "height_cm"]),
    ('{"patients": [], "patients": [{"findings": ["HP:0001250"]}]}', ["body", "patients"]),
])
def test_duplicate_keys_are_refused(client, body, loc):
    _rejected(_post(client, body), 422, loc, "more than once")


def test_annotate_refuses_duplicate_keys_too(client):
    _rejected(_post(client, '{"text": "seizures", "text": "hypotonia"}', "/v1/annotate"), 422, ["body", "text"])


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonp"])
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/annotate"])
def test_json_is_required(client, content_type, path):
    headers = {} if content_type is None else {"content-type": content_type}
    _rejected(_post(client, '{"findings": ["HP:0001250"]}', path, headers), 415, ["header", "Content-Type"],
              "application/json")


def test_json_with_a_charset_is_json(client, findings):
    r = _post(client, json.dumps({"findings": findings}), headers={"content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200, r.text


def test_a_request_costing_more_than_max_cost_is_413(app_client, client, findings):
    """patients x (findings + excluded) above serve.api.max_cost: refused at once, not scored for seconds."""
    assert ApiSettings().max_cost == 256 * 64
    patient = {"findings": (findings * 70)[:65], "excluded": []}
    start = time.perf_counter()
    detail = _rejected(client.post("/v1/predict", json=[patient] * 256), 413, ["body"], "at most 16384")
    assert detail["type"] == "too_costly" and time.perf_counter() - start < 10
    cheap = app_client(**{"serve.api.max_cost": 10})
    _rejected(cheap.post("/v1/predict", json={"patients": [{"findings": findings[:4], "excluded": findings[4:6]}] * 2}),
              413, ["body", "patients"], "at most 10")
    assert cheap.post("/v1/predict", json={"findings": findings[:4], "excluded": findings[4:6]}).status_code == 200


def test_value_ranges_are_the_validate_stages(prod_project, app_client, findings):
    """One definition: the API refuses what the validate stage quarantines, with the numbers validate reads."""
    from dxlab.data.validation import validate_table
    from dxlab.serving.batch import ValidationSettings

    _, cfg = prod_project
    changes = {"validate.age_range": [0, 99], "validate.measurement_ranges.height_cm": [30, 210]}
    narrow = _copy(cfg, **changes)
    settings = ApiSettings.from_config(narrow)
    assert settings.ranges == ValidationSettings.from_config(narrow.serve.validate)
    assert settings.ranges.age_range == tuple(narrow.validate.age_range) == (0, 99)
    served = app_client(**changes)
    _rejected(served.post("/v1/predict", json={"findings": findings, "age": 100}), 422, ["body", "age"],
              "less than or equal to 99")
    _rejected(served.post("/v1/predict", json={"patients": [{"findings": findings, "measurements": {"height_cm": 220}}]}),
              422, ["body", "patients", 0, "measurements", "height_cm"], "less than or equal to 210")
    _rejected(served.post("/v1/predict", json={"findings": findings, "measurements": {"weight_kg": 0.1}}), 422,
              ["body", "measurements", "weight_kg"], "greater than or equal to 0.3")
    assert served.post("/v1/predict", json={"findings": findings, "age": 99,
                                            "measurements": {"height_cm": 210}}).status_code == 200
    # the validate stage, with the same config, quarantines the same values
    table = read_parquet(Path(cfg.paths.processed) / "test.parquet").head(3).copy()
    table["patient_id"], table["source_file"], table["source_row"] = ["a", "b", "c"], "t.csv", [1, 2, 3]
    table["age"] = [100.0, 99.0, 50.0]
    table["measurements"] = [{}, {}, {"height_cm": 220.0}]
    v = narrow.validate
    issues = validate_table(table, labelled=False, age_range=tuple(v.age_range),
                            measurement_ranges={k: tuple(r) for k, r in v.measurement_ranges.items()}).quarantined
    found = set(zip(issues["source_row"], issues["field"]))
    assert {(1, "age"), (3, "measurements.height_cm")} <= found and (2, "age") not in found


def test_unknown_ids_are_listed_only_when_shaped_like_one(client):
    r = client.post("/v1/predict", json={"findings": ["HP:9999998", MARKERS[1], "HP:0001250"]})
    detail = _rejected(r, 422, ["body", "findings"], "HP:9999998")
    assert detail["unknown"] == ["HP:9999998"] and "1 not shaped like an ontology id" in detail["msg"]


def test_a_long_key_is_not_repeated_in_loc(client):
    key = "Jane Doe " * 20
    r = client.post("/v1/predict", json={"findings": ["HP:0001250"], key: 1})
    assert r.status_code == 422 and key not in r.text and "a key of 180 characters" in r.text


# -- 2. no pseudonym oracle; the API key required by default -------------------------------------------------------
def test_the_answer_carries_the_callers_id_and_no_pseudonym(prod_project, client, findings, caplog, pseudonym_key):
    _, cfg = prod_project
    stored = pseudonymise("RAW-ID-0042", pseudonym_key, cfg.data.feed)  # what ingest and batch would write
    with caplog.at_level(logging.DEBUG, logger="dxlab"):
        r = client.post("/v1/predict", json={"patients": [{"patient_id": "RAW-ID-0042", "findings": findings},
                                                          {"findings": findings}]})
    assert r.status_code == 200, r.text
    assert [p["patient_id"] for p in r.json()["predictions"]] == ["RAW-ID-0042", None]
    assert "px-" not in r.text and stored not in r.text
    assert "RAW-ID-0042" not in caplog.text and stored not in caplog.text
    assert "px-" in caplog.text  # the log names the patient by this process's own pseudonym


def test_log_pseudonyms_are_keyed_per_process_not_with_the_ingest_key(prod_project, findings, caplog, monkeypatch):
    """The service never reads the ingest key, and two processes log different pseudonyms for the same id."""
    import dxlab.data.pseudonym

    root, cfg = prod_project

    def no_ingest_key(*_):
        raise AssertionError("the service read the ingest pseudonym key")

    monkeypatch.setattr(dxlab.data.pseudonym, "load_key", no_ingest_key)
    logged = []
    for _ in range(2):
        caplog.clear()
        with TestClient(app_from_config(cfg, model=_local_model(root))) as c, \
                caplog.at_level(logging.INFO, logger="dxlab.api"):
            assert c.post("/v1/predict", json={"patient_id": "P-7", "findings": findings}).status_code == 200
        logged.append({w for line in caplog.messages for w in line.replace(",", " ").split() if w.startswith("px-")})
    assert logged[0] and logged[1] and not logged[0] & logged[1]


def test_serve_refuses_to_start_without_a_key(prod_project, monkeypatch, capsys):
    root, cfg = prod_project
    strict = _copy(cfg, **{"serve.api.require_key": True})
    monkeypatch.setattr(commands, "_cfg", lambda args: strict)
    ran = []
    monkeypatch.setattr("uvicorn.Server.run", lambda self: ran.append(self.config))
    for value in (None, ""):
        if value is None:
            monkeypatch.delenv("DXLAB_API_KEY", raising=False)
        else:
            monkeypatch.setenv("DXLAB_API_KEY", value)
        with pytest.raises(MissingApiKey, match="--insecure-no-api-key"):
            app_from_config(strict, model=_local_model(root))
        assert main(["serve", "--model", _local_model(root)]) == 2
        assert "--insecure-no-api-key" in capsys.readouterr().err and not ran
    assert ApiSettings().require_key is True and ApiSettings.from_config(_copy(cfg)).require_key is False
    # the explicit opt-out starts it
    assert main(["serve", "--insecure-no-api-key", "--model", _local_model(root)]) == 0 and len(ran) == 1
    monkeypatch.setenv("DXLAB_API_KEY", "s3cret")  # with a key it starts as it is
    assert main(["serve", "--model", _local_model(root)]) == 0 and len(ran) == 2


def test_a_keyless_service_says_so_in_the_log_and_on_every_response(prod_project, findings, monkeypatch, caplog):
    root, cfg = prod_project
    monkeypatch.delenv("DXLAB_API_KEY", raising=False)
    strict = _copy(cfg, **{"serve.api.require_key": True})
    with caplog.at_level(logging.WARNING, logger="dxlab.api"), \
            TestClient(app_from_config(strict, model=_local_model(root), require_key=False)) as c:
        responses = [c.get("/healthz"), c.get("/readyz"), c.get("/metrics"), c.get("/"), c.get("/nothing"),
                     c.post("/v1/predict", json={"findings": findings}), c.post("/v1/predict", content="{")]
        assert all(r.headers["x-dxlab-warning"] == "no API key required" for r in responses)
        assert "WITHOUT an API key" in caplog.text
        monkeypatch.setenv("DXLAB_API_KEY", "s3cret")  # a key set later is required, and the warning goes
        r = c.post("/v1/predict", json={"findings": findings})
        assert r.status_code == 401 and "x-dxlab-warning" not in r.headers


def test_a_key_gone_after_start_closes_the_service(prod_project, findings, monkeypatch):
    root, cfg = prod_project
    monkeypatch.setenv("DXLAB_API_KEY", "s3cret")
    with TestClient(app_from_config(_copy(cfg, **{"serve.api.require_key": True}), model=_local_model(root))) as c:
        ok = c.post("/v1/predict", json={"findings": findings}, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200 and "x-dxlab-warning" not in ok.headers
        odd = c.post("/v1/predict", json={"findings": findings}, headers={"X-API-Key": "s\u00e9cret".encode("latin-1")})
        assert odd.status_code == 401  # a key that is not ASCII is wrong, not a 500
        monkeypatch.delenv("DXLAB_API_KEY")
        closed = c.post("/v1/predict", json={"findings": findings})
        assert closed.status_code == 503 and closed.json()["detail"][0]["type"] == "no_api_key"


def test_lambda_answers_the_callers_id(prod_project, findings, monkeypatch, caplog):
    root, cfg = prod_project
    monkeypatch.setenv("DXLAB_MODEL", _local_model(root))
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", "lambda-test-key")
    monkeypatch.setenv("DXLAB_API_KEY", "lambda-key")
    monkeypatch.setattr(lambda_handler, "_STATE", {})
    event = {"path": "/v1/predict", "headers": {"Content-Type": "application/json", "X-Api-Key": "lambda-key"},
             "body": json.dumps({"patients": [{"patient_id": "LAMBDA-RAW-7", "findings": findings}]})}
    with caplog.at_level(logging.INFO, logger="dxlab"):
        response = lambda_handler.handler(event, None)
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["predictions"][0]["patient_id"] == "LAMBDA-RAW-7"
    stored = pseudonymise("LAMBDA-RAW-7", b"lambda-test-key", "hpo_cohort")
    assert stored not in response["body"] and stored not in caplog.text and "LAMBDA-RAW-7" not in caplog.text
    for change, status in [({"headers": {"X-Api-Key": "lambda-key"}}, 415),
                           ({"headers": {"Content-Type": "application/json", "X-Api-Key": "l\u00e4mbda"}}, 401),
                           ({"body": '{"findings": ["HP:0001250"], "age": NaN}'}, 422),
                           ({"body": "[" * 10_000 + "]" * 10_000}, 400),
                           ({"body": '{"findings": ["HP:0001250"], "age": 1, "age": 2}'}, 422)]:
        assert lambda_handler.handler({**event, **change}, None)["statusCode"] == status, change


# -- 3. no patient data in the logs or on /metrics -----------------------------------------------------------------
def test_no_patient_data_in_any_log_line_or_on_metrics(prod_project, findings, caplog):
    """Names, record numbers and dates of birth sent as ids, notes, measurement names, values, paths and queries:
    none of them in any log record (dxlab and uvicorn, at DEBUG, through uvicorn as `dxlab serve` runs it) nor on
    /metrics, whether the request was answered or refused."""
    import httpx
    import uvicorn

    root, cfg = prod_project
    app = app_from_config(cfg, model=_local_model(root))
    port = free_port()
    config = server_config(app, "127.0.0.1", port, log_level="debug")
    loggers = [logging.getLogger(n) for n in ("dxlab", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")]
    for logger in loggers:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    for name in ("dxlab", "uvicorn", "uvicorn.access", "uvicorn.error"):
        caplog.set_level(logging.DEBUG, logger=name)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hostile-test-server", daemon=True)
    thread.start()
    name, mrn, ssn = MARKERS
    note = f"Patient {name}, {mrn}, SSN {ssn}. Seizures and hypotonia since infancy."
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as http:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.3)
            answered = http.post("/v1/predict", json={
                "patient_id": name, "findings": findings, "note": note, "age": 33.0,
                "measurements": {mrn: 1.0, ssn: 2.0, "height_cm": 170.0}})
            assert answered.status_code == 200, answered.text
            assert http.post("/v1/predict", json=[{"patient_id": mrn, "findings": findings}, {"patient_id": ssn,
                                                                                              "note": note}]
                             ).status_code == 200
            assert http.post("/v1/annotate", json={"text": note}).status_code == 200
            refused = [
                http.post("/v1/predict", json={"patient_id": mrn, "findings": findings, "age": name}),
                http.post("/v1/predict", json={"patient_id": name * 10, "findings": findings}),
                http.post("/v1/predict", json={"patient_id": ssn, "findings": [mrn, "HP:0001250"]}),
                http.post("/v1/predict", json={"findings": findings, name: ssn}),
                http.post("/v1/predict", json={"findings": findings, "measurements": {mrn: name}}),
                http.post("/v1/predict", json={"findings": findings, "age": 300, "patient_id": ssn}),
                http.post("/v1/predict", content=f'{{"patient_id": "{name}", "findings": [', headers=JSON),
                http.post("/v1/predict", content=f'{{"patient_id": "{mrn}", "patient_id": "{ssn}"}}', headers=JSON),
                http.post("/v1/predict", content=json.dumps({"patient_id": name}), headers={"content-type": "text/plain"}),
                http.post("/v1/predict", json={"patient_id": mrn, "note": f"{name} {ssn}"}),  # no finding in the note
                http.post("/v1/annotate", json={"text": note, "patient": mrn}),
                http.post(f"/v1/predict?patient={mrn}&dob=1990-01-01", json={"findings": findings, "age": -1}),
                http.get(f"/patients/{mrn}/{ssn}"),
                http.get("/v1/terms", params={"q": f"{name} {mrn}"}),
            ]
            assert all(400 <= r.status_code < 500 or (r.request.url.path == "/v1/terms" and r.status_code in (200, 503))
                       for r in refused), [(r.request.url.path, r.status_code) for r in refused]
            metrics = http.get("/metrics").text
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        for logger in loggers:
            logger.removeHandler(caplog.handler)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                       if r.name.split(".")[0] not in ("httpx", "httpcore"))  # the test's own client: not the API
    assert "POST /v1/predict" in logged and "scored by" in logged  # the access log and the service's own lines
    for text in (*MARKERS, "1990-01-01", "Jane", "12345678"):
        assert text not in logged, text
        assert text not in metrics, text


def test_the_access_log_names_no_path_the_service_does_not_have():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/patients/MRN-12345678?dob=1990", "1.1", 404), None)
    assert WithoutQueryStrings().filter(record)
    assert "MRN" not in record.getMessage() and "1990" not in record.getMessage()
    kept = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "GET", "/static/app.js", "1.1", 200), None)
    assert WithoutQueryStrings().filter(kept) and "/static/app.js" in kept.getMessage()


# -- 5. deploy/: nothing published without authentication ----------------------------------------------------------
def _published(service: dict) -> list[str]:
    return [p if isinstance(p, str) else f"{p.get('host_ip', '')}:{p.get('published', '')}:{p.get('target', '')}"
            for p in service.get("ports", [])]


def test_compose_publishes_nothing_without_authentication():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    api = services["api"]
    assert api["environment"]["DXLAB_API_KEY"].startswith("${DXLAB_API_KEY:?"), "the API key: required, no default"
    assert "DXLAB_PSEUDONYM_KEY" not in api["environment"], "the ingest key stays out of the service"
    # what the container runs: the compose command when it gives one, else the image's CMD (deploy/Dockerfile)
    image_cmd = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    command = api.get("command") or image_cmd
    assert command and not any("insecure" in str(c) or "require_key" in str(c) for c in command)
    assert not _published(services["mlflow"]), "MLflow (no authentication): the internal network only"
    for name, service in services.items():
        for port in _published(service):
            assert name == "api" or port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
    grafana = services["grafana"]["environment"]
    assert str(grafana.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")
    for extra in DEPLOY.glob("docker-compose.*.yml"):  # opt-in overlays (the MLflow UI): this host only
        for name, service in (yaml.safe_load(extra.read_text()).get("services") or {}).items():
            assert all(p.startswith("127.0.0.1:") for p in _published(service)), (extra.name, name)


def test_the_threat_model_is_documented():
    text = (REPO / "docs" / "production.md").read_text()
    section = text.split("## Threat model and input limits", 1)[1].split("\n## ", 1)[0]
    for key in ("serve.api.max_body_bytes", "serve.api.max_cost", "serve.api.require_key", "--insecure-no-api-key",
                "serve.api.max_batch", "validate.age_range", "validate.measurement_ranges", "X-DXLab-Warning",
                "DXLAB_API_KEY", "MLflow", "/metrics", "/readyz"):
        assert key in section, key


def test_serve_config_keys_exist():
    from dxlab.config import compose

    api = compose([], config_dir=REPO / "conf").serve.api
    assert api.require_key is True and api.max_body_bytes == 2 * 1024 * 1024 and api.max_cost == 256 * 64
    assert "fallback_model" not in compose([], config_dir=REPO / "conf").serve
