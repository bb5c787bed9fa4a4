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
The note annotator (`dxlab.data.notes.note_reader`: the `text` config's, on the knowledge tables) is built once at
start; it is not rebuilt when the model reloads. When the environment variable named by serve.api.api_key_env is
set, /v1/predict and /v1/annotate need it in `X-API-Key` (the page sends the key its user types, keeping it in
memory only). The autocomplete index is built once at start from the knowledge tables (serve.knowledge_dir, else
the model's own knowledge_dir). Only pseudonymised ids are logged; patient data and notes never are, nor query
strings (the access log drops them: `/v1/terms?q=` carries what a clinician types about a patient).
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import BackgroundTasks, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders

from dxlab.serving.ask_next import NextQuestions
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
    parse_annotate,
    parse_body,
    read_patient_notes,
    request_id,
    request_schema,
    to_table,
)
from dxlab.serving.terms import TermIndex

log = logging.getLogger("dxlab.api")


class Measured:
    """Pure ASGI middleware: count each request by endpoint and status and observe its latency; the page's
    security headers on `/` and `/static/`. (A `@app.middleware("http")` function costs ~1 ms per request: it
    wraps every request and response in extra tasks and streams.)"""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

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
                self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
                self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if page:
                    MutableHeaders(scope=message).update(PAGE_HEADERS)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()

        try:
            await self.app(scope, receive, sending)
        finally:
            observe()


class ModelHolder:
    """The scorer being served, swapped atomically when the registry alias points at another version."""

    def __init__(self, factory: Callable[[], object], current_version: Callable[[], str],
                 on_change: Callable[[object], None] | None = None):
        self.factory = factory
        self.current_version = current_version
        self.on_change = on_change
        self.scorer = None
        self.error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> None:
        try:
            scorer = self.factory()
        except Exception as err:  # noqa: BLE001 - keep serving /healthz and report why in /readyz
            self.error = f"{type(err).__name__}: {err}"[:500]
            log.error("model not loaded: %s", self.error)
            return
        with self._lock:
            self.scorer, self.error = scorer, ""
        if self.on_change:
            self.on_change(scorer)
        log.info("serving %s version %s", scorer.model_name, scorer.model_version)

    def maybe_reload(self) -> bool:
        """Load the model again when the alias moved (or nothing is loaded yet); True when it changed."""
        version = self.current_version()
        loaded = self.scorer.model_version if self.scorer is not None else None
        if self.scorer is not None and (not version or version == loaded):
            return False
        self.load()
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
    source_name: str = ""
    threads: int | None = 1

    @classmethod
    def from_config(cls, cfg) -> "ApiSettings":
        a = cfg.serve.api
        return cls(int(a.max_batch), str(a.api_key_env), float(a.reload_interval_s), int(a.drift_window),
                   a.get("reference"), str(cfg.data.get("feed") or ""), a.get("threads"))


def create_app(holder: ModelHolder, settings: ApiSettings, key: bytes,
               metrics: ServiceMetrics | None = None, notes=None, terms: TermIndex | None = None) -> FastAPI:
    """The app around a ModelHolder (tests pass their own; `app_from_config` builds it from params.yaml).
    `notes`: a `dxlab.data.notes.NoteReader` whose annotator is built at start (None: notes are refused, 503).
    `terms`: the autocomplete index (None: built at start from the loaded model's knowledge tables)."""
    from dxlab.data.pseudonym import pseudonymise

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
            await run_in_threadpool(holder.load)
        else:
            metrics.set_model(holder.scorer.model_name, holder.scorer.model_version)
        if index["terms"] is None:
            try:
                await run_in_threadpool(_build_terms, index, holder.scorer)
            except Exception as err:  # noqa: BLE001 - serve predictions; say why the autocomplete is refused
                index["error"] = f"{type(err).__name__}: {err}"[:500]
                log.error("term index not built: %s", index["error"])
        holder.start_polling(settings.reload_interval_s)
        yield
        holder.stop()

    app = FastAPI(title="dxlab prediction service", version="1", lifespan=lifespan,
                  description="Likelihood of each disease from findings (HPO terms) and clinical notes, excluded "
                              "findings and demographics; anomaly score; the findings that weighed most; what was "
                              "read in each note.")
    app.state.holder, app.state.metrics, app.state.drift, app.state.terms = holder, metrics, drift, index
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(Measured, metrics=metrics)

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
        scorer = holder.scorer
        if scorer is None:
            return JSONResponse({"status": "not ready", "reason": holder.error or "loading"}, status_code=503)
        return {"status": "ready", "model": scorer.model_name, "model_version": scorer.model_version,
                "anomaly_detector": scorer.detector is not None, "notes": reader["notes"] is not None,
                **({"notes_error": reader["error"]} if reader["notes"] is None else {})}

    @app.get("/metrics", tags=["health"])
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def error(status: int, detail: list[dict], reason: str) -> JSONResponse:
        metrics.bad_requests.labels(reason).inc()
        return JSONResponse({"detail": detail}, status_code=status)

    def unauthorized(request: Request) -> JSONResponse | None:
        expected = os.environ.get(settings.api_key_env, "")
        if expected and not hmac.compare_digest(request.headers.get("x-api-key", ""), expected):
            return error(401, [{"loc": ["header", "X-API-Key"], "msg": "missing or wrong API key",
                                "type": "unauthorized"}], "unauthorized")
        return None

    @app.post("/v1/predict", response_model=PredictResponse, tags=["predict"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": request_schema()}}}},
              responses={400: {"description": "malformed JSON"}, 401: {"description": "missing or wrong API key"},
                         413: {"description": "too many patients in one request"},
                         422: {"description": "invalid field (named in `loc`), unknown HPO ids listed, a note that "
                                               "cannot be read or gives a patient without findings no finding"},
                         503: {"description": "no model loaded yet (or a note and no annotator)"}})
    async def predict(request: Request, after: BackgroundTasks,
                      ask_next: int = Query(0, ge=0, le=10, description="also suggest up to this many findings to "
                                                                        "ask next (0: none)")):
        if (refused := unauthorized(request)) is not None:
            return refused
        scorer = holder.scorer  # one model for the whole request, even if a reload swaps it meanwhile
        if scorer is None:
            return error(503, [{"loc": [], "msg": "no model loaded yet", "type": "not_ready"}], "not_ready")
        body = await request.body()
        try:
            patients, prefix = parse_body(body, settings.max_batch)
            check_terms(patients, scorer, prefix)
        except RequestError as err:
            return error(err.status, err.detail, err.detail[0]["type"] if err.detail else "invalid")
        rid = request_id()
        table = to_table(patients, lambda pid: pseudonymise(pid, key, settings.source_name))
        try:
            table, read = await run_in_threadpool(read_patient_notes, table, patients, reader["notes"], prefix)
        except RequestError as err:
            return error(err.status, err.detail, err.detail[0]["type"] if err.detail else "invalid")
        answers = await run_in_threadpool(_answer, scorer, table, settings.threads)
        for answer, mentions in zip(answers, read):
            answer["findings_read"] = mentions
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
              responses={400: {"description": "malformed JSON"}, 401: {"description": "missing or wrong API key"},
                         422: {"description": "blank, too long or binary text"},
                         503: {"description": "no annotator"}})
    async def annotate(request: Request):
        """The mentions of HPO terms in a text, with spans and assertions, and the findings, excluded findings,
        uncertain findings and relatives' findings they make (what /v1/predict reads in a note)."""
        if (refused := unauthorized(request)) is not None:
            return refused
        try:
            text = parse_annotate(await request.body())
            answer = await run_in_threadpool(annotate_answer, text, reader["notes"])
        except RequestError as err:
            return error(err.status, err.detail, err.detail[0]["type"] if err.detail else "invalid")
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


def app_from_config(cfg, model: str | None = None) -> FastAPI:
    """The service as configured (serve group): registry alias, detector, key, reload interval."""
    from dxlab.serving.scorer import Scorer, model_version, pseudonym_key
    from dxlab.tracking.mlflow_tracking import tracking_uri

    s = cfg.serve
    spec = model or s.model
    uri = tracking_uri(cfg)
    explain = s.api.get("explain_method") or s.explain.method

    from dxlab.data.notes import note_reader

    holder = ModelHolder(
        factory=lambda: Scorer.from_config(cfg, model=model, explain=explain, tracking_uri=uri),
        current_version=lambda: model_version(spec, cfg.paths.models, uri, None if model else s.get("fallback_model")))
    return create_app(holder, ApiSettings.from_config(cfg), pseudonym_key(cfg), notes=note_reader(cfg))


class WithoutQueryStrings(logging.Filter):
    """uvicorn's access log lines without their query strings: a path is enough to operate the service, and
    `/v1/terms?q=...` carries what a clinician types about a patient."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def serve(cfg, host: str | None = None, port: int | None = None, model: str | None = None) -> None:
    import uvicorn

    app = app_from_config(cfg, model)
    config = uvicorn.Config(app, host=host or cfg.serve.api.host, port=int(port or cfg.serve.api.port),
                            log_level="info", access_log=True)
    logging.getLogger("uvicorn.access").addFilter(WithoutQueryStrings())  # after Config has set logging up
    uvicorn.Server(config).run()
