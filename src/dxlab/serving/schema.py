"""Request and response schema of the prediction endpoint, shared by the FastAPI service and the Lambda handler.

A request body is one patient, a JSON list of patients, or `{"patients": [...]}`. Every problem is reported with
the field it concerns (`loc`, as FastAPI does) and never echoes the submitted values back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

TermId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@\-]+$", min_length=1, max_length=64)]


class Patient(BaseModel):
    """One patient: observed findings (HPO ids), excluded findings, demographics, optional measurements."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "patient_id": "P000123", "findings": ["HP:0001250", "HP:0001263"], "excluded": ["HP:0001627"],
        "age": 4.0, "sex": "F", "family_history": False, "measurements": {"height_cm": 101.0}}]})

    patient_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="the caller's id: answered and logged only as a keyed pseudonym")
    findings: list[TermId] = Field(..., min_length=1, max_length=256, description="observed findings (HPO ids)")
    excluded: list[TermId] = Field(default_factory=list, max_length=256,
                                   description="findings looked for and absent (HPO ids)")
    history: list[TermId] = Field(default_factory=list, max_length=128, description="medical history codes")
    age: float | None = Field(None, ge=0, le=120, description="years")
    sex: Literal["F", "M"] | None = None
    family_history: bool | None = Field(None, description="a first-degree relative affected")
    measurements: dict[Annotated[str, StringConstraints(max_length=64)], float] = Field(
        default_factory=dict, max_length=32, description="optional numeric fields, e.g. height_cm, weight_kg")


class PatientBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patients: list[Patient] = Field(..., description="one or more patients")


class FindingWeight(BaseModel):
    hpo_id: str
    name: str = ""
    log_lr: float = Field(description="log likelihood ratio of the finding under the disease (0: no evidence)")
    finding: Literal["observed", "excluded"] | None = Field(None, description="against: an observed finding the "
                                                            "disease rarely has, or an excluded one it usually has")


class Diagnosis(BaseModel):
    disease_id: str
    name: str = ""
    probability: float
    supporting: list[FindingWeight] = Field(default_factory=list, description="findings that support it")
    against: list[FindingWeight] = Field(default_factory=list, description="findings that argue against it")


class TypeProbability(BaseModel):
    type: str = Field(description="the disease's primary organ system (an HPO term id), or 'unclassified'")
    name: str = ""
    probability: float = Field(description="summed over every disease of that type")


class KeyFinding(BaseModel):
    hpo_id: str
    weight: float


class Anomaly(BaseModel):
    score: float | None
    flag: bool | None


class Prediction(BaseModel):
    patient_id: str | None = Field(description="pseudonymised id (null when the request had none)")
    diagnoses: list[Diagnosis]
    probability_by_type: list[TypeProbability] = Field(default_factory=list)
    anomaly: Anomaly
    key_findings: list[KeyFinding]


class PredictResponse(BaseModel):
    model: str
    model_version: str
    predictions: list[Prediction]


class RequestError(Exception):
    """A bad request: HTTP status and FastAPI-style detail entries ({loc, msg, type})."""

    def __init__(self, status: int, detail: list[dict[str, Any]]):
        super().__init__(detail[0]["msg"] if detail else "bad request")
        self.status = status
        self.detail = detail


def _errors(err: ValidationError, prefix: Sequence[Any]) -> list[dict[str, Any]]:
    # the submitted value ('input') and pydantic's internals are left out: nothing about the patient echoes back
    return [{"loc": ["body", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in err.errors()]


_PATIENTS = TypeAdapter(list[Patient])


def parse_body(body: bytes | str, max_batch: int) -> tuple[list[Patient], list[Any] | None]:
    """JSON text -> (patients, where they sit in the body: None for a single object, [] for a list,
    ["patients"] for {"patients": [...]}), or RequestError (400 malformed JSON, 413 too many, 422 invalid)."""
    try:
        payload = json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(400, [{"loc": ["body"], "msg": f"malformed JSON: {err.__class__.__name__} at "
                                  f"position {getattr(err, 'pos', '?')}", "type": "json_invalid"}]) from None
    return parse_payload(payload, max_batch)


def parse_payload(payload: Any, max_batch: int) -> tuple[list[Patient], list[Any] | None]:
    if payload is None:
        raise RequestError(422, [{"loc": ["body"], "msg": "empty body: send a patient, a list of patients or "
                                  "{\"patients\": [...]}", "type": "missing"}])
    prefix: list[Any] = []
    if isinstance(payload, Mapping) and "patients" in payload:
        extra = sorted(set(payload) - {"patients"})
        if extra:
            raise RequestError(422, [{"loc": ["body", k], "msg": "extra field not permitted", "type": "extra_forbidden"}
                                     for k in extra])
        payload, prefix = payload["patients"], ["patients"]
        if not isinstance(payload, list):
            raise RequestError(422, [{"loc": ["body", "patients"], "msg": "must be a list of patients",
                                      "type": "list_type"}])
    if isinstance(payload, list):
        if not payload:
            raise RequestError(422, [{"loc": ["body", *prefix], "msg": "empty list: send at least one patient",
                                      "type": "too_short"}])
        if len(payload) > max_batch:
            raise RequestError(413, [{"loc": ["body", *prefix], "msg": f"{len(payload)} patients in one request, "
                                      f"at most {max_batch} allowed", "type": "too_long"}])
        try:
            return _PATIENTS.validate_python(payload), prefix
        except ValidationError as err:
            raise RequestError(422, _errors(err, prefix)) from None
    if isinstance(payload, Mapping):
        try:
            return [Patient.model_validate(payload)], None
        except ValidationError as err:
            raise RequestError(422, _errors(err, [])) from None
    raise RequestError(422, [{"loc": ["body"], "msg": "expected a patient object, a list of patients or "
                              "{\"patients\": [...]}", "type": "model_type"}])


def check_terms(patients: Sequence[Patient], scorer, prefix: list[Any] | None) -> None:
    """422 listing every unknown finding id, per patient and field (prefix: see parse_body)."""
    detail = []
    for i, p in enumerate(patients):
        for field in ("findings", "excluded"):
            unknown = scorer.unknown_terms(getattr(p, field))
            if unknown:
                loc = ["body", *([] if prefix is None else [*prefix, i]), field]
                detail.append({"loc": loc, "msg": f"unknown HPO id(s): {', '.join(unknown[:20])}",
                               "type": "unknown_term", "unknown": unknown[:20]})
    if detail:
        raise RequestError(422, detail)


def to_table(patients: Sequence[Patient], pseudonymise) -> pd.DataFrame:
    """Patients -> canonical table; ids pseudonymised (a request id for patients without one)."""
    rows = []
    for p in patients:
        rows.append({
            "patient_id": pseudonymise(p.patient_id) if p.patient_id else "",
            "findings": list(dict.fromkeys(p.findings)), "excluded": list(dict.fromkeys(p.excluded)),
            "history": list(dict.fromkeys(p.history)),
            "age": np.nan if p.age is None else float(p.age), "sex": p.sex,
            "family_history": np.nan if p.family_history is None else float(p.family_history),
            "measurements": dict(p.measurements), "note": "", "diagnosis": None,
        })
    return pd.DataFrame(rows)


def request_id() -> str:
    return uuid.uuid4().hex[:12]


def request_schema() -> dict:
    """OpenAPI schema of the body: one patient, a list, or {"patients": [...]}."""
    patient = Patient.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"oneOf": [{"$ref": "#/components/schemas/Patient"},
                      {"type": "array", "items": {"$ref": "#/components/schemas/Patient"}},
                      {"$ref": "#/components/schemas/PatientBatch"}],
            "examples": patient.get("examples", [])}
