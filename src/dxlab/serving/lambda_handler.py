"""AWS Lambda handler for the same prediction as POST /v1/predict (API Gateway REST or HTTP API proxy events), and
POST /v1/annotate when the event's path ends with /v1/annotate. Notes are read as the API reads them.

Configuration from the environment (a container-image Lambda bakes the model into the image):
  DXLAB_MODEL            models:/dxlab@champion (needs MLFLOW_TRACKING_URI) or a .joblib path  [models/diagnostic.joblib]
  DXLAB_ANOMALY_DETECTOR a detector .joblib (optional)
  DXLAB_KNOWLEDGE_DIR    knowledge tables, for disease names when the model carries none (optional)
  DXLAB_TOP_K            diseases per patient [5]
  DXLAB_EXPLAIN          model | leave_one_out | knowledge | none [model]
  DXLAB_MAX_BATCH        patients per request [256]
  DXLAB_MAX_BODY_BYTES   a larger body is refused (413) [2097152]
  DXLAB_MAX_COST         findings + excluded findings over all patients of one request; more: 413 [16384]
  DXLAB_API_KEY          when set, the X-API-Key header must match (else put an authorizer in front: API Gateway)
  DXLAB_TEXT_MODEL       a saved note annotator (dxlab.text.Annotator.save) (optional; else one is built from
                         DXLAB_KNOWLEDGE_DIR, dictionary and ConText, at the first note; neither: notes get 503)

The scorer is loaded once per container (cold start) and reused by warm invocations. As the API: each prediction
carries the caller's own patient id as sent; log lines name patients only by a pseudonym keyed with a random key
of the container (the ingest key is never read: nothing answered or logged links to stored data); the same input
limits (application/json, body size, nesting, finite numbers, strict types, value ranges, cost per request).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import secrets

from dxlab.serving.schema import (
    RequestError,
    annotate_answer,
    check_terms,
    parse_annotate,
    parse_body,
    read_patient_notes,
    request_id,
    to_table,
)

log = logging.getLogger("dxlab.lambda")
_STATE: dict = {}


def _scorer():
    if "scorer" not in _STATE:
        import joblib

        from dxlab.serving.scorer import Scorer, resolve_model

        handle = resolve_model(os.environ.get("DXLAB_MODEL", "models/diagnostic.joblib"),
                               tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))
        detector_path = os.environ.get("DXLAB_ANOMALY_DETECTOR")
        detector = joblib.load(detector_path) if detector_path and os.path.exists(detector_path) else None
        _STATE["scorer"] = Scorer(handle, detector, top_k=int(os.environ.get("DXLAB_TOP_K", 5)),
                                  explain=os.environ.get("DXLAB_EXPLAIN", "model"),
                                  knowledge_dir=os.environ.get("DXLAB_KNOWLEDGE_DIR"))
        # log pseudonyms: keyed per container, never with the ingest key (a logged pseudonym links to nothing)
        _STATE["key"] = secrets.token_bytes(32)
    return _STATE["scorer"]


def _build_annotator():
    from dxlab.text import Annotator

    model, knowledge = os.environ.get("DXLAB_TEXT_MODEL"), os.environ.get("DXLAB_KNOWLEDGE_DIR")
    try:
        return Annotator.load(model) if model else Annotator(learn=False).fit(knowledge)
    except (OSError, ValueError) as err:  # a missing or unreadable file: notes are refused, coded findings served
        log.error("note annotator not built: %s", err)
        raise RequestError(503, [{"loc": ["body"], "msg": "this deployment cannot read notes now (its annotator "
                                  "could not be built): send the findings as HPO ids", "type": "notes_unavailable"}]
                           ) from None


def _notes():
    """The note reader of this container (built at its first note), or None when it has nothing to build from."""
    if "notes" not in _STATE:
        from dxlab.data.notes import NoteReader

        usable = os.environ.get("DXLAB_TEXT_MODEL") or os.environ.get("DXLAB_KNOWLEDGE_DIR")
        _STATE["notes"] = NoteReader(factory=_build_annotator) if usable else None
    return _STATE["notes"]


def _response(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _checked_body(headers: dict, body: str | bytes) -> str | bytes:
    """The body, or RequestError: 415 unless application/json, 413 larger than DXLAB_MAX_BODY_BYTES."""
    if headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
        raise RequestError(415, [{"loc": ["header", "Content-Type"], "msg": "send the body as application/json",
                                  "type": "unsupported_media_type"}])
    limit = int(os.environ.get("DXLAB_MAX_BODY_BYTES", 2 * 1024 * 1024))
    if len(body) > limit:
        raise RequestError(413, [{"loc": ["body"], "msg": f"body larger than {limit} bytes", "type": "body_too_large"}])
    return body


def handler(event: dict, context=None) -> dict:
    """API Gateway proxy event in, proxy response out."""
    from dxlab.data.pseudonym import pseudonymise

    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    expected = os.environ.get("DXLAB_API_KEY", "")
    if expected and not hmac.compare_digest(str(headers.get("x-api-key", "")).encode(), expected.encode()):
        return _response(401, {"detail": [{"loc": ["header", "X-API-Key"], "msg": "missing or wrong API key",
                                           "type": "unauthorized"}]})
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True)
        except ValueError:
            return _response(400, {"detail": [{"loc": ["body"], "msg": "body is not valid base64",
                                               "type": "base64_invalid"}]})
    path = event.get("rawPath") or event.get("path") or ""
    if path.rstrip("/").endswith("/v1/annotate"):
        try:
            return _response(200, annotate_answer(parse_annotate(_checked_body(headers, body)), _notes()))
        except RequestError as err:
            return _response(err.status, {"detail": err.detail})
    try:
        scorer = _scorer()
        patients, prefix = parse_body(_checked_body(headers, body), int(os.environ.get("DXLAB_MAX_BATCH", 256)),
                                      max_cost=int(os.environ.get("DXLAB_MAX_COST", 256 * 64)))
        check_terms(patients, scorer, prefix)
        table = to_table(patients, lambda pid: pseudonymise(pid, _STATE["key"], "lambda"))
        table, read = read_patient_notes(table, patients, _notes(), prefix)
    except RequestError as err:
        return _response(err.status, {"detail": err.detail})
    answers = scorer.answer(table)
    for answer, patient, mentions in zip(answers, patients, read):  # the caller's own id back, as sent
        answer["patient_id"], answer["findings_read"] = patient.patient_id, mentions
    log.info("request %s: %d patient(s) %s", request_id(), len(table), ",".join(p for p in table["patient_id"] if p))
    return _response(200, {"model": scorer.model_name, "model_version": scorer.model_version,
                           "predictions": answers})
