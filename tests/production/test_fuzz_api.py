"""The API fuzzed from its own OpenAPI schema (schemathesis, in process through ASGI): every operation, requests
that fit the schema and requests that break it, and not one answered with a 5xx.

Bounded: a fixed number of examples per operation and generation mode (about 420 requests, ~12 s on a loaded 2-core
machine besides `prod_project`, which the other production tests build anyway), a deadline per request, no
shrinking (a 5xx is reported with the request that caused it, as a curl command), derandomized so a failure comes
back on every run. The keyless service of `prod_project` (serve.api.require_key=false) serving the registry's
champion, as the other API tests do."""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

import pytest

try:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.errors import FailureGroup
    from schemathesis.python import asgi
except ImportError as err:  # `make test` installs it (.[dev]); a skip under CI would prove nothing
    if os.environ.get("CI") == "true":
        raise ImportError(f"schemathesis is part of .[dev] and CI must run this test: {err}") from err
    pytest.skip(f"schemathesis not installed ({err}): pip install -e '.[dev]'", allow_module_level=True)

from dxlab.data.schema import read_parquet
from dxlab.serving.api import app_from_config

# Every operation the schema lists, and no other: a new endpoint fails here until it is fuzzed too.
OPERATIONS = ["POST /v1/predict", "POST /v1/annotate", "GET /v1/terms", "GET /healthz", "GET /readyz", "GET /metrics"]
REQUEST_TIMEOUT_S = 10  # a request that hangs fails as a timeout instead of holding up the suite
MAX_EXAMPLES = 60  # per operation and mode
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=timedelta(seconds=REQUEST_TIMEOUT_S),  # one request; the tiny model answers in well under a second
    derandomize=True,  # the same requests on every run and every machine
    database=None,  # nothing replayed from an earlier run: what is sent depends on the code alone
    phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time even when something fails
    suppress_health_check=list(HealthCheck),  # a slow or filtered strategy is not a failure of the service
    print_blob=False,
)


@pytest.fixture(scope="module")
def api_schema(prod_project):
    """The service's schema as it publishes it (/openapi.json), bound to the app: each case calls it in process.
    Its lifespan (the model loaded, the annotator and the term index built) runs once, when the schema is read."""
    _, cfg = prod_project
    app = app_from_config(cfg)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()  # stop the service as uvicorn would (and nothing left running after the module)


@pytest.fixture(scope="module")
def known_findings(prod_project) -> list[str]:
    """Findings the model knows (the test patients'): a finding drawn from the schema alone is almost never one,
    and a request with an unknown finding is refused (422) before it reaches the model."""
    root, _ = prod_project
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    return sorted({term for terms in test["findings"] for term in terms})


def _patients(body) -> list[dict]:
    """The patient objects of a /v1/predict body: one patient, a list, or {"patients": [...]}."""
    if isinstance(body, dict) and isinstance(body.get("patients"), list):
        body = body["patients"]
    return [p for p in (body if isinstance(body, list) else [body]) if isinstance(p, dict)]


def _with_findings(case, findings: list[list[str]]):
    for patient, drawn in zip(_patients(case.body), findings):
        patient["findings"] = drawn
    return case


def _takes_input(operation) -> bool:
    return any(len(part) for part in (operation.path_parameters, operation.headers, operation.cookies,
                                      operation.query, operation.body))


def strategies(operation, known: list[str]) -> dict:
    """Requests that fit the schema, requests that break it (where there is input to break), and for /v1/predict
    requests that fit it with findings the model knows, so generated ages, sexes, measurements, notes and ask_next
    reach the scorer."""
    modes = {"positive": operation.as_strategy(generation_mode=GenerationMode.POSITIVE)}
    if _takes_input(operation):
        modes["negative"] = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    if operation.label == "POST /v1/predict":
        findings = st.lists(st.sampled_from(known), min_size=1, max_size=12, unique=True)
        modes["positive, known findings"] = modes["positive"].flatmap(lambda case: st.builds(
            _with_findings, st.just(case), st.lists(findings, min_size=len(_patients(case.body)),
                                                    max_size=len(_patients(case.body)))))
    return modes


def test_the_schema_lists_every_operation(api_schema):
    found = sorted(result.ok().label for result in api_schema.get_all_operations())
    assert found == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_request_gets_a_server_error(api_schema, known_findings, label):
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    answered: list[tuple[str, int]] = []  # (mode, status) of every request sent
    failures: list[str] = []
    modes = strategies(operation, known_findings)
    for mode, strategy in modes.items():
        @FUZZ
        @given(case=strategy)
        def fuzz(case) -> None:
            try:
                response = case.call(timeout=REQUEST_TIMEOUT_S)
            except Exception as err:  # noqa: BLE001 - in process, an unhandled error raises here (after its 500)
                answered.append((mode, 599))
                failures.append(f"{mode}: {type(err).__name__}: {err}\n{case.as_curl_command()}")
                return
            answered.append((mode, response.status_code))
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except FailureGroup as failure:  # kept: the other requests are still sent
                failures.append(f"{mode}: {failure}")

        fuzz()
    counts = Counter(answered)
    print(f"{label}: {len(answered)} requests, {dict(sorted(counts.items()))}")
    assert not failures, "\n".join(failures)
    assert not [status for _, status in answered if status >= 500]
    sent = Counter(mode for mode, _ in answered)  # the fuzz fuzzed: a request without input has one form only
    assert all(sent[mode] >= (MAX_EXAMPLES // 2 if _takes_input(operation) else 1) for mode in modes), sent
    served = api_schema.app.state.metrics.requests.collect()[0].samples  # what the service itself counted
    assert not [s.labels for s in served if s.name.endswith("_total") and s.labels["status"].startswith("5")]
    if label == "POST /v1/predict":  # the model was reached, not only the validation in front of it (the rest:
        # ages and measurements outside the validate stage's ranges, which the schema does not say, refused 422)
        assert counts[("positive, known findings", 200)] >= 5, counts
