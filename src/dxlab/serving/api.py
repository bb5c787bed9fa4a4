"""The real-time prediction service (FastAPI): `dxlab serve --port P`.

POST /v1/predict   one patient, a list, or {"patients": [...]} -> the top diseases (names, probabilities, the
                   findings for and against each), the probability by type of disease, anomaly, key findings; a
                   patient may come with a clinical note instead of or beside coded findings: the answer lists the
                   findings read in it with spans and assertions (`findings_read`)
                   `?ask_next=N` adds to each patient up to N findings not yet recorded that best separate the
                   leading diseases (`ask_next`: expected information gain, `dxlab.serving.ask_next`)
POST /v1/annotate  {"text": "..."} -> the mentions of HPO terms with spans and assertions, and the patient fields
GET  /v1/terms     ?q=aort roo&limit=10 -> HPO terms whose name or synonym has words starting so (autocomplete,
                   `dxlab.serving.terms`; phenotype terms only unless phenotype_only=false)
GET  /             the clinician's page (static files in dxlab/serving/static; a Content-Security-Policy allows
                   nothing but this origin)
GET  /healthz      the process is up
GET  /readyz       a model is loaded (503 until then)
GET  /metrics      Prometheus: requests, latency, predictions per disease, anomaly flags, input drift, model
GET  /docs         OpenAPI docs

The model is the registry alias (serve.model, `models:/dxlab@champion`); a thread polls the alias every
serve.api.reload_interval_s and swaps in the new version when it moves (requests in flight finish on the old one).
A version that cannot be loaded is not served and not retried until the alias moves again: the service keeps the
version it had (none: 503) and /readyz names the failed version and its error. There is no fallback to a local
model file: only `--model` serves one, by name. The note annotator (`dxlab.data.notes.note_reader`: the `text`
config's, on the knowledge tables) is built once at start; it is not rebuilt when the model reloads. The
autocomplete index is built once at start from the knowledge tables (serve.knowledge_dir, else the model's own
knowledge_dir).

Who may call: /v1/predict and /v1/annotate need the key in the environment variable named by serve.api.api_key_env
in `X-API-Key` (the page sends the key its user types, keeping it in memory only). Without that variable the
service refuses to start, unless serve.api.require_key is false (`dxlab serve --insecure-no-api-key`): then it logs a
warning and every response carries `X-DXLab-Warning`. What it answers and logs: each prediction carries the
caller's own patient id as sent; the service holds no key of stored data (the ingest pseudonym key stays out of
it), so nothing it returns links to the training or batch tables. Log lines name patients only by a pseudonym keyed
with a random key of this process; patient data and notes are never logged, nor query strings (the access log
drops them: `/v1/terms?q=` carries what a clinician types about a patient). Input limits (body size, nesting,
finite numbers, strict types, the validate stage's ranges, cost per request): `dxlab.serving.schema` and
docs/production.md, "Threat model and input limits".
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import BackgroundTasks, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders

from dxlab.serving.ask_next import NextQuestions
from dxlab.serving.batch import ValidationSettings
from dxlab.serving.metrics import DriftWindow, ServiceMetrics
from dxlab.serving.schema import (
    AnnotateRequest,
    AnnotateResponse,
    Patient,
    PatientBatch,
    PredictResponse,
    RequestError,
    annotate_answer,
    check_terms,
    load_json,
    parse_annotate_payload,
    parse_payload,
    read_patient_notes,
    request_id,
    request_schema,
    to_table,
)
from dxlab.serving.terms import TermIndex

log = logging.getLogger("dxlab.api")


class Measured:
    """Pure ASGI middleware: count each request by endpoint and status and observe its latency; the page's
    security headers on `/` and `/static/`; `X-DXLab-Warning` on every response while `warning()` says one (a
    service running without an API key). (A `@app.middleware("http")` function costs ~1 ms per request: it
    wraps every request and response in extra tasks and streams.)"""

    def __init__(self, app, metrics: ServiceMetrics, warning: Callable[[], str] | None = None):
        self.app = app
        self.metrics = metrics
        self.warning = warning

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        page = path == "/" or path.startswith("/static/")
        status, observed = 500, False

        def observe() -> None:  # once: when the last byte is sent (background tasks run after it), or on failure
            nonlocal observed
            if not observed:
                observed = True
                endpoint = path if path in _ENDPOINTS else "other"
                method = scope["method"] if scope["method"] in _METHODS else "other"  # bounded label values
                self.metrics.requests.labels(endpoint, method, str(status)).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if page:
                    MutableHeaders(scope=message).update(PAGE_HEADERS)
                if self.warning is not None and (warning := self.warning()):
                    MutableHeaders(scope=message).append(WARNING_HEADER, warning)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()

        try:
            await self.app(scope, receive, sending)
        finally:
            observe()


class ModelHolder:
    """The scorer being served, swapped atomically when the registry alias points at another version.

    A version that fails to load is remembered (`failed_version`, `error`) and not tried again until the alias
    points elsewhere: the last good scorer stays in service (or none: 503), never a local file in its place."""

    def __init__(self, factory: Callable[[], object], current_version: Callable[[], str],
                 on_change: Callable[[object], None] | None = None):
        self.factory = factory
        self.current_version = current_version
        self.on_change = on_change
        self.scorer = None
        self.error = ""
        self.failed_version = ""  # the newest version the alias named that could not be loaded ('' when none)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, version: str = "") -> None:
        """Load what the factory gives now; `version`: what the alias named when it was read (remembered on
        failure, so that the poller does not load a broken version again and again)."""
        try:
            scorer = self.factory()
        except Exception as err:  # noqa: BLE001 - keep serving (the last good version, or /healthz) and say why
            with self._lock:
                self.error, self.failed_version = f"{type(err).__name__}: {err}"[:500], version
            served = self.scorer.model_version if self.scorer is not None else None
            log.error("model version %s not loaded (%s); %s", version or "(unknown)", self.error,
                      f"still serving version {served}" if served else "no model is served (503)")
            return
        with self._lock:
            self.scorer, self.error, self.failed_version = scorer, "", ""
        if self.on_change:
            self.on_change(scorer)
        log.info("serving %s version %s", scorer.model_name, scorer.model_version)

    def version_now(self) -> str:
        """The version the alias names now ('' when the registry cannot say)."""
        try:
            return self.current_version() or ""
        except Exception as err:  # noqa: BLE001 - a registry hiccup: keep what is served
            log.warning("registry version check failed: %s", err)
            return ""

    def maybe_reload(self) -> bool:
        """Load the model again when the alias moved (or nothing is loaded yet); True when it changed. A version
        that failed before is not tried again: only a move of the alias to another version is."""
        version = self.version_now()
        loaded = self.scorer.model_version if self.scorer is not None else None
        if self.scorer is not None and version == loaded and self.failed_version:
            with self._lock:  # the alias went back to the version served: the failure is history
                self.error, self.failed_version = "", ""
        if self.scorer is not None and (not version or version == loaded):
            return False
        if version and version == self.failed_version:
            return False
        self.load(version)
        return self.scorer is not None and self.scorer.model_version != loaded

    def start_polling(self, interval: float) -> None:
        if interval <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    if self.maybe_reload():
                        log.info("registry alias moved: now serving version %s", self.scorer.model_version)
                except Exception as err:  # noqa: BLE001 - a registry hiccup must not kill the poller
                    log.warning("reload check failed: %s", err)

        self._thread = threading.Thread(target=loop, name="dxlab-model-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@dataclass
class ApiSettings:
    max_batch: int = 256
    api_key_env: str = "DXLAB_API_KEY"
    reload_interval_s: float = 30.0
    drift_window: int = 500
    reference: str | None = None
    threads: int | None = 1
    require_key: bool = True  # False: serve without an API key (said in the log and in every response)
    max_body_bytes: int = 2 * 1024 * 1024  # a larger body: 413, before it is read
    max_cost: int = 256 * 64  # findings + excluded findings over all patients of one request; more: 413
    ranges: ValidationSettings = field(default_factory=ValidationSettings)  # the validate stage's value ranges

    @classmethod
    def from_config(cls, cfg) -> "ApiSettings":
        a = cfg.serve.api
        return cls(int(a.max_batch), str(a.api_key_env), float(a.reload_interval_s), int(a.drift_window),
                   a.get("reference"), a.get("threads"),
                   bool(a.get("require_key", True)), int(a.get("max_body_bytes", cls.max_body_bytes)),
                   int(a.get("max_cost", cls.max_cost)), ValidationSettings.from_config(cfg.serve.validate))


class MissingApiKey(RuntimeError):
    """The service would accept anyone: no API key in the environment and none explicitly waived."""


NO_KEY_WARNING = "no API key required"
WARNING_HEADER = "X-DXLab-Warning"


def create_app(holder: ModelHolder, settings: ApiSettings, key: bytes | None = None,
               metrics: ServiceMetrics | None = None, notes=None, terms: TermIndex | None = None) -> FastAPI:
    """The app around a ModelHolder (tests pass their own; `app_from_config` builds it from params.yaml).
    `key`: the key of the pseudonyms in log lines (None: random, this process's own; never the ingest key, which
    would make a logged pseudonym a link to stored data). `notes`: a `dxlab.data.notes.NoteReader` whose
    annotator is built at start (None: notes are refused, 503). `terms`: the autocomplete index (None: built at
    start from the loaded model's knowledge tables).

    MissingApiKey when `settings.require_key` and the environment has no key (settings.api_key_env)."""
    from dxlab.data.pseudonym import pseudonymise

    if settings.require_key and not os.environ.get(settings.api_key_env):
        raise MissingApiKey(f"no API key: set {settings.api_key_env} (callers send it in X-API-Key), or serve "
                            "without one explicitly: `dxlab serve --insecure-no-api-key` (serve.api.require_key="
                            "false)")
    log_key = key or secrets.token_bytes(32)
    metrics = metrics or ServiceMetrics()
    reader = {"notes": notes, "error": "" if notes is not None else "no note reader configured"}
    index = {"terms": terms, "error": ""}
    drift = DriftWindow.from_file(settings.reference, metrics, settings.drift_window)
    previous = holder.on_change

    def changed(scorer) -> None:
        metrics.set_model(scorer.model_name, scorer.model_version)
        metrics.loads.inc()
        _questions(scorer)  # built with the model, so the first ask_next request does not pay for it
        if previous:
            previous(scorer)

    holder.on_change = changed

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if reader["notes"] is not None:
            try:  # once, at start: a moved alias reloads the model, never the annotator
                await run_in_threadpool(lambda: reader["notes"].annotator)
            except Exception as err:  # noqa: BLE001 - serve coded findings; say why notes are refused
                reader["notes"], reader["error"] = None, f"{type(err).__name__}: {err}"[:500]
                log.error("note annotator not built, notes are refused: %s", reader["error"])
        if holder.scorer is None:
            await run_in_threadpool(holder.maybe_reload)  # the version named now: remembered if it cannot load
        else:
            metrics.set_model(holder.scorer.model_name, holder.scorer.model_version)
        if index["terms"] is None:
            try:
                await run_in_threadpool(_build_terms, index, holder.scorer)
            except Exception as err:  # noqa: BLE001 - serve predictions; say why the autocomplete is refused
                index["error"] = f"{type(err).__name__}: {err}"[:500]
                log.error("term index not built: %s", index["error"])
        if keyless():
            log.warning("serving WITHOUT an API key (serve.api.require_key=false): anyone who reaches this port can "
                        "ask for predictions; set %s to require one", settings.api_key_env)
        holder.start_polling(settings.reload_interval_s)
        yield
        holder.stop()

    def keyless() -> str:
        """The warning of a service that asks no key (explicitly waived and none set), else ''."""
        return "" if settings.require_key or os.environ.get(settings.api_key_env) else NO_KEY_WARNING

    app = FastAPI(title="dxlab prediction service", version="1", lifespan=lifespan,
                  description="Likelihood of each disease from findings (HPO terms) and clinical notes, excluded "
                              "findings and demographics; anomaly score; the findings that weighed most; what was "
                              "read in each note.")
    app.state.holder, app.state.metrics, app.state.drift, app.state.terms = holder, metrics, drift, index
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(Measured, metrics=metrics, warning=None if settings.require_key else keyless)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The clinician's page: plain HTML, CSS and JavaScript from this package, no third-party request."""
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/v1/terms", tags=["predict"], responses={503: {"description": "no knowledge tables to search"}})
    def search_terms(q: str = Query(..., min_length=1, max_length=100, description="words or word prefixes, or an "
                                    "HPO id"),
                     limit: int = Query(10, ge=1, le=50),
                     phenotype_only: bool = Query(True, description="only findings (descendants of HP:0000118)")):
        """HPO terms whose name or a synonym has a word starting with each word of the query: name matches first
        (the exact name, names starting with the query), then synonyms; the more informative term first."""
        if index["terms"] is None:
            return error(503, [{"loc": [], "msg": index["error"] or "no term index", "type": "not_ready"}],
                         "not_ready")
        return {"query": q, "terms": index["terms"].search(q, limit, phenotype_only)}

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz():
        """Ready when a model is served: which version; `load_failure` when the newest version the alias named
        could not be loaded (the version and the error: it is not tried again until the alias moves)."""
        scorer, failed, error = holder.scorer, holder.failed_version, holder.error
        failure = {"load_failure": {"version": failed or None, "error": error}} if error else {}
        if scorer is None:
            return JSONResponse({"status": "not ready", "reason": error or "loading", **failure}, status_code=503)
        return {"status": "ready", "model": scorer.model_name, "model_version": scorer.model_version,
                "anomaly_detector": scorer.detector is not None, "notes": reader["notes"] is not None,
                **({"notes_error": reader["error"]} if reader["notes"] is None else {}), **failure}

    @app.get("/metrics", tags=["health"])
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def error(status: int, detail: list[dict], reason: str) -> JSONResponse:
        metrics.bad_requests.labels(reason).inc()
        return JSONResponse({"detail": detail}, status_code=status)

    def unauthorized(request: Request) -> JSONResponse | None:
        expected = os.environ.get(settings.api_key_env, "")
        if not expected and settings.require_key:  # the key went away after start: closed, not open
            return error(503, [{"loc": ["header", "X-API-Key"], "msg": "this service requires an API key and has "
                                "none configured", "type": "no_api_key"}], "no_api_key")
        if expected and not hmac.compare_digest(request.headers.get("x-api-key", "").encode(), expected.encode()):
            return error(401, [{"loc": ["header", "X-API-Key"], "msg": "missing or wrong API key",
                                "type": "unauthorized"}], "unauthorized")
        return None

    async def read_json(request: Request):
        """The body as JSON: 415 unless it is `application/json`, 413 when it is larger than
        settings.max_body_bytes (said by Content-Length, or counted while it streams in: never read whole first),
        400/422 as `load_json` says."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise RequestError(415, [{"loc": ["header", "Content-Type"], "msg": "send the body as application/json",
                                      "type": "unsupported_media_type"}])
        limit = settings.max_body_bytes
        too_large = RequestError(413, [{"loc": ["body"], "msg": f"body larger than {limit} bytes "
                                        "(serve.api.max_body_bytes)", "type": "body_too_large"}])
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise RequestError(400, [{"loc": ["header", "Content-Length"], "msg": "not a number of bytes",
                                          "type": "content_length_invalid"}])
            if int(declared) > limit:
                raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return load_json(b"".join(chunks))

    def refused(err: RequestError) -> JSONResponse:
        return error(err.status, err.detail, err.detail[0]["type"] if err.detail else "invalid")

    @app.post("/v1/predict", response_model=PredictResponse, tags=["predict"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": request_schema()}}}},
              responses={400: {"description": "malformed JSON, or nested too deep"},
                         401: {"description": "missing or wrong API key"},
                         413: {"description": "body too large, too many patients or too many findings in one "
                                              "request"},
                         415: {"description": "not application/json"},
                         422: {"description": "invalid field (named in `loc`), unknown HPO ids listed, a note that "
                                               "cannot be read or gives a patient without findings no finding"},
                         503: {"description": "no model loaded yet (or a note and no annotator)"}})
    async def predict(request: Request, after: BackgroundTasks,
                      ask_next: int = Query(0, ge=0, le=10, description="also suggest up to this many findings to "
                                                                        "ask next (0: none)")):
        if (denied := unauthorized(request)) is not None:
            return denied
        scorer = holder.scorer  # one model for the whole request, even if a reload swaps it meanwhile
        if scorer is None:
            return error(503, [{"loc": [], "msg": "no model loaded yet", "type": "not_ready"}], "not_ready")
        try:
            payload = await read_json(request)
            patients, prefix = parse_payload(payload, settings.max_batch, settings.ranges, settings.max_cost)
            check_terms(patients, scorer, prefix)
        except RequestError as err:
            return refused(err)
        rid = request_id()
        # the table's ids are log pseudonyms (this process's key): the model, the drift window and the log see
        # nothing else; the answer gives each patient the caller's own id back
        table = to_table(patients, lambda pid: pseudonymise(pid, log_key, "api"))
        try:
            table, read = await run_in_threadpool(read_patient_notes, table, patients, reader["notes"], prefix)
        except RequestError as err:
            return refused(err)
        answers = await run_in_threadpool(_answer, scorer, table, settings.threads)
        for answer, patient, mentions in zip(answers, patients, read):
            answer["patient_id"], answer["findings_read"] = patient.patient_id, mentions
        if ask_next:
            await run_in_threadpool(_suggest, _questions(scorer), table, answers, ask_next)
        metrics.observe_predictions(answers)
        after.add_task(drift.add, table)  # after the answer is sent: drift gauges are not the caller's wait
        log.info("request %s: %d patient(s) %s scored by %s v%s", rid, len(table),
                 ",".join(p for p in table["patient_id"] if p)[:400] or "(no ids)", scorer.model_name,
                 scorer.model_version)
        return {"model": scorer.model_name, "model_version": scorer.model_version, "predictions": answers}

    @app.post("/v1/annotate", response_model=AnnotateResponse, tags=["predict"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/AnnotateRequest"}}}}},
              responses={400: {"description": "malformed JSON, or nested too deep"},
                         401: {"description": "missing or wrong API key"},
                         413: {"description": "body too large"}, 415: {"description": "not application/json"},
                         422: {"description": "blank, too long or binary text"},
                         503: {"description": "no annotator"}})
    async def annotate(request: Request):
        """The mentions of HPO terms in a text, with spans and assertions, and the findings, excluded findings,
        uncertain findings and relatives' findings they make (what /v1/predict reads in a note)."""
        if (denied := unauthorized(request)) is not None:
            return denied
        try:
            text = parse_annotate_payload(await read_json(request))
            answer = await run_in_threadpool(annotate_answer, text, reader["notes"])
        except RequestError as err:
            return refused(err)
        log.info("request %s: annotated a text of %d characters into %d mentions", request_id(), len(text.text),
                 len(answer["mentions"]))
        return answer

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Patient, PatientBatch, AnnotateRequest):
            spec = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(spec.pop("$defs", {}))
            components[model.__name__] = spec
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
    return app


_METHODS = {"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"}
_ENDPOINTS = {"/v1/predict", "/v1/annotate", "/v1/terms", "/", "/healthz", "/readyz", "/metrics", "/docs",
              "/openapi.json"}
_THREAD = threading.local()
STATIC = Path(__file__).with_name("static")
# The page may load and call nothing but its own origin (no CDN, no third-party request: patient data stays here),
# may not be framed, and sends no referrer with the links it opens (OMIM, Orphanet).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_QUESTIONS: dict = {"scorer": None, "questions": None}  # the ask-next helper of the scorer served last
_QUESTIONS_LOCK = threading.Lock()


def _questions(scorer) -> NextQuestions:
    """The ask-next helper of the scorer being served (rebuilt when a reload swaps the scorer). Its first use
    builds the likelihood core's look-up table (~0.3 s on the full universe): done when a model loads."""
    with _QUESTIONS_LOCK:
        if _QUESTIONS["scorer"] is not scorer:
            questions = NextQuestions(scorer.handle.model, scorer.names)
            if questions.available:
                questions.core._lookup()
            _QUESTIONS.update(scorer=scorer, questions=questions)
        return _QUESTIONS["questions"]


def _suggest(questions: NextQuestions, table, answers: list[dict], n: int) -> None:
    """Each answer's `ask_next`: findings not yet recorded that best separate its top diseases."""
    excluded = table["excluded"] if "excluded" in table else [[]] * len(table)
    for answer, findings, absent in zip(answers, table["findings"], excluded):
        top = answer["diagnoses"]
        answer["ask_next"] = questions.suggest(list(findings), list(absent), [d["disease_id"] for d in top],
                                               [d["probability"] for d in top], n)


def _build_terms(index: dict, scorer) -> None:
    """The autocomplete index from the knowledge tables the served model knows (once, at start)."""
    model = getattr(getattr(scorer, "handle", None), "model", None)
    for directory in (getattr(scorer, "knowledge_dir", None), getattr(model, "knowledge_dir", None)):
        if directory and (Path(directory) / "terms.parquet").exists():
            start = time.perf_counter()
            index["terms"] = TermIndex.from_dir(directory)
            log.info("term index: %d labels from %s in %.1f s", len(index["terms"].label_text), directory,
                     time.perf_counter() - start)
            return
    index["error"] = "no knowledge tables (terms.parquet) next to the model or in serve.knowledge_dir"
    log.error("autocomplete unavailable: %s", index["error"])


def _answer(scorer, table, threads: int | None):
    """Score in a worker thread limited to `threads` BLAS / OpenMP threads: OpenMP's limit is per calling thread,
    so it is set once in each worker thread; concurrent requests use the cores instead of nested threads that
    spin-wait (3-10x slower per request on a busy 2-core machine)."""
    if threads and getattr(_THREAD, "limit", None) != threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))
        _THREAD.limit = threads
    return scorer.answer(table)


def disease_names(knowledge_dir: str | Path | None) -> dict:
    path = Path(knowledge_dir or "") / "diseases.parquet"
    if not knowledge_dir or not path.exists():
        return {}
    import pandas as pd

    table = pd.read_parquet(path, columns=["disease_id", "name"])
    return dict(zip(table["disease_id"], table["name"]))


def app_from_config(cfg, model: str | None = None, require_key: bool | None = None) -> FastAPI:
    """The service as configured (serve group): registry alias, detector, API key, limits, reload interval.
    `model`: serve this model (a registry URI, a .joblib path or a name under paths.models) instead of serve.model.
    `require_key`: False serves without an API key (None: serve.api.require_key). The ingest pseudonym key is not
    read: nothing the service answers or logs can be linked to stored data."""
    from dxlab.serving.scorer import Scorer, model_version
    from dxlab.tracking.mlflow_tracking import tracking_uri

    s = cfg.serve
    spec = model or s.model
    uri = tracking_uri(cfg)
    explain = s.api.get("explain_method") or s.explain.method

    from dxlab.data.notes import note_reader

    settings = ApiSettings.from_config(cfg)
    key_file = os.environ.get(f"{settings.api_key_env}_FILE")  # a mounted secret (Docker / Kubernetes secrets)
    if key_file and not os.environ.get(settings.api_key_env):
        os.environ[settings.api_key_env] = Path(key_file).read_text().strip()
    if require_key is not None:
        settings.require_key = bool(require_key)
    holder = ModelHolder(
        factory=lambda: Scorer.from_config(cfg, model=model, explain=explain, tracking_uri=uri),
        current_version=lambda: model_version(spec, cfg.paths.models, uri))
    return create_app(holder, settings, notes=note_reader(cfg))


class WithoutQueryStrings(logging.Filter):
    """uvicorn's access log lines without their query strings, and without any path the service does not have: a
    path is enough to operate the service, `/v1/terms?q=...` carries what a clinician types about a patient, and a
    made-up path (`/patients/<record number>`) is whatever its caller put there."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2].split("?", 1)[0]
            if path not in _ENDPOINTS and not path.startswith("/static/"):
                path = "(another path)"
            record.args = (*args[:2], path, *args[3:])
        return True


def server_config(app, host: str, port: int, log_level: str = "info"):
    """uvicorn's config of the service: its access log without query strings (`WithoutQueryStrings`)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=int(port), log_level=log_level, access_log=True)
    access = logging.getLogger("uvicorn.access")  # after Config has set logging up
    if not any(isinstance(f, WithoutQueryStrings) for f in access.filters):
        access.addFilter(WithoutQueryStrings())
    return config


def serve(cfg, host: str | None = None, port: int | None = None, model: str | None = None,
          require_key: bool | None = None) -> None:
    """Run the service (uvicorn). MissingApiKey, before anything starts, when no API key is set and
    `require_key` (None: serve.api.require_key, default true) is not false."""
    import uvicorn

    app = app_from_config(cfg, model, require_key)
    uvicorn.Server(server_config(app, host or cfg.serve.api.host, int(port or cfg.serve.api.port))).run()
