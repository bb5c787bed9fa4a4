"""Request and response schema of the prediction endpoint, shared by the FastAPI service and the Lambda handler.

A request body is one patient, a JSON list of patients, or `{"patients": [...]}`. A patient has coded findings,
a clinical note, or both: the note is read as ingest reads it (`dxlab.data.notes.read_notes`, mode merge) and the
answer lists what was read, with spans (`findings_read`). Every problem is reported with the field it concerns
(`loc`, as FastAPI does) and never echoes the submitted values back.

Hostile input is refused before it costs anything (docs/production.md, "Threat model and input limits"): JSON nested
deeper than MAX_JSON_DEPTH (400), duplicate keys (422), numbers that are not finite -- NaN, Infinity, an overflow
such as 1e400, a 5,000-digit integer, a measurement beyond MAX_MAGNITUDE such as -1e308 -- (422), a value of the wrong type where a lax parser would coerce it (strict:
no `true` for an age, no `0` for family_history, no "7" for a number; 422), values outside the validate stage's
ranges (`validate.age_range`, `validate.measurement_ranges`: the numbers it reads, 422), too many patients or too
much work in one request (413).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

TermId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@\-]+$", min_length=1, max_length=64)]
MAX_NOTE_CHARS = 100_000  # about 30 pages: a clinical note, not a record; longer ones are refused (422)
MAX_JSON_DEPTH = 10  # a request is at most 4 deep ({"patients": [{"measurements": {...}}]}); deeper: 400
MAX_INT_DIGITS = 30  # longer integers are read as infinite (refused as not finite), never converted digit by digit
MAX_MAGNITUDE = 1e15  # a measurement without a configured range: beyond any unit's values, and small enough that
                      # its square stays finite in the float32 arithmetic of the anomaly features (3.4e38)


class Patient(BaseModel):
    """One patient: observed findings (HPO ids) and/or a clinical note, excluded findings, demographics, optional
    measurements."""

    # strict: a clinician's value is taken as sent or refused, never coerced (`true` is no age, `0` no answer to
    # family history, "7" no number); numbers must be finite
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={"examples": [{
        "patient_id": "P000123", "findings": ["HP:0001250", "HP:0001263"], "excluded": ["HP:0001627"],
        "age": 4.0, "sex": "F", "family_history": False, "measurements": {"height_cm": 101.0}}, {
        "patient_id": "P000124", "age": 6.0, "sex": "M",
        "note": "6-year-old boy, hypotonic since infancy, global developmental delay, two febrile seizures; "
                "hearing normal, no cardiac murmur; his maternal uncle had intellectual disability."}]})

    patient_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="the caller's id: answered as sent, never logged (log lines carry a "
                                               "pseudonym keyed per process)")
    findings: list[TermId] | None = Field(None, max_length=256, description="observed findings (HPO ids); at least "
                                          "one, unless a note is given")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS,
                             description="free-text clinical note (English): its findings join the coded ones, "
                                         "negated ones the excluded, relatives' findings never the patient's")
    excluded: list[TermId] = Field(default_factory=list, max_length=256,
                                   description="findings looked for and absent (HPO ids)")
    history: list[TermId] = Field(default_factory=list, max_length=128, description="medical history codes")
    age: float | None = Field(None, description="years, within validate.age_range (the validate stage's range)")
    sex: Literal["F", "M"] | None = None
    family_history: bool | None = Field(None, description="a first-degree relative affected")
    measurements: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], float] = Field(
        default_factory=dict, max_length=32, description="optional numeric fields, e.g. height_cm, weight_kg; within "
                                                         "validate.measurement_ranges where it names the field")


class PatientBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
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


class FindingRead(BaseModel):
    """One mention of an HPO term read in a note: text[start:end] is `text`."""

    start: int = Field(description="character offset of the mention in the note")
    end: int
    text: str
    hpo_id: str
    name: str = Field("", description="the term's name")
    assertion: Literal["present", "negated", "uncertain", "family"] = Field(
        description="present: a finding; negated: excluded; uncertain: suspected, not used; family: a relative's")
    relative: str | None = Field(None, description="for family mentions: the relative named")


class FamilyFinding(BaseModel):
    hpo_id: str
    relative: str


class SuggestedDisease(BaseModel):
    disease_id: str
    name: str = ""
    frequency: float = Field(description="P(finding | disease) under the model's likelihood")


class Suggestion(BaseModel):
    """A finding not yet recorded whose answer (present or absent) best separates the leading diseases."""

    hpo_id: str
    name: str = ""
    expected_gain: float = Field(description="expected information gain over the top diseases' posterior (bits)")
    diseases: list[SuggestedDisease] = Field(default_factory=list, description="the top diseases that have it")


class Prediction(BaseModel):
    patient_id: str | None = Field(description="the caller's own id, as sent (null when the request had none)")
    diagnoses: list[Diagnosis]
    probability_by_type: list[TypeProbability] = Field(default_factory=list)
    anomaly: Anomaly
    key_findings: list[KeyFinding]
    findings_read: list[FindingRead] | None = Field(None, description="what was read in the note, with spans and "
                                                    "assertions (null when the patient had no note)")
    ask_next: list[Suggestion] | None = Field(None, description="what to ask next (only with ?ask_next=N): "
                                              "findings not yet recorded, best first")


class PredictResponse(BaseModel):
    model: str
    model_version: str
    predictions: list[Prediction]


class AnnotateRequest(BaseModel):
    """POST /v1/annotate: one text."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "text": "6-year-old boy, hypotonic since infancy, global developmental delay, two febrile seizures; hearing "
                "normal, no cardiac murmur; his maternal uncle had intellectual disability."}]})

    text: str = Field(..., min_length=1, max_length=MAX_NOTE_CHARS, description="free text (English)")


class AnnotateResponse(BaseModel):
    findings: list[str] = Field(description="HPO ids present in the patient")
    excluded: list[str] = Field(description="HPO ids negated for the patient")
    uncertain: list[str] = Field(description="HPO ids only suspected")
    family: list[FamilyFinding] = Field(description="relatives' findings (never the patient's)")
    family_history: bool | None = Field(description="true when a first-degree relative has a finding, else unknown")
    mentions: list[FindingRead]
    warnings: list[str] = Field(default_factory=list)


class RequestError(Exception):
    """A bad request: HTTP status and FastAPI-style detail entries ({loc, msg, type})."""

    def __init__(self, status: int, detail: list[dict[str, Any]]):
        super().__init__(detail[0]["msg"] if detail else "bad request")
        self.status = status
        self.detail = detail


def _errors(err: ValidationError, prefix: Sequence[Any]) -> list[dict[str, Any]]:
    # the submitted value ('input') and pydantic's internals are left out: nothing about the patient echoes back
    return [{"loc": ["body", *prefix, *map(_loc_part, e["loc"])], "msg": e["msg"], "type": e["type"]}
            for e in err.errors()]


def _loc_part(part: Any) -> Any:
    """A key the caller chose (an extra field, a measurement's name) names the field in `loc`; one longer than any
    field name is not repeated."""
    return part if not isinstance(part, str) or len(part) <= 64 else f"<a key of {len(part)} characters>"


_PATIENTS = TypeAdapter(list[Patient])
_ESCAPES = re.compile(rb"\\.", re.S)
_STRINGS = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = np.zeros(256, dtype=np.int64)
_OPENING[[ord("["), ord("{")]] = 1
_OPENING[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest, without parsing it (strings skipped; linear, in C):
    a body nested 100,000 deep is refused before the parser recurses into it."""
    skeleton = _STRINGS.sub(b"", _ESCAPES.sub(b"", body)).translate(None, _NOT_BRACKETS)
    if not skeleton:
        return 0
    return int(np.cumsum(_OPENING[np.frombuffer(skeleton, dtype=np.uint8)]).max())


def _parse_int(text: str) -> int | float:
    # Python refuses to convert an integer of more than 4,300 digits (a ValueError, not a JSON error); one of more
    # than MAX_INT_DIGITS is beyond any plausible value: read as infinite, refused by the schema as not finite
    if len(text) <= MAX_INT_DIGITS:
        return int(text)
    return float("-inf") if text.startswith("-") else float("inf")


class _Duplicated(dict):
    """A JSON object that gave a key more than once (which ones: `duplicates`)."""

    duplicates: list[str]


def _malformed(err: Exception) -> RequestError:
    return RequestError(400, [{"loc": ["body"], "msg": f"malformed JSON: {err.__class__.__name__} at position "
                               f"{getattr(err, 'pos', '?')}", "type": "json_invalid"}])


def load_json(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON text -> Python (None for an empty body), or RequestError: 400 malformed or nested deeper than
    `max_depth`, 422 naming each key given twice in one object (JSON parsers disagree on which value wins).
    Numbers beyond a float's range come back infinite and the schema refuses them as not finite."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if not raw:
        return None
    if json_depth(raw) > max_depth:
        raise RequestError(400, [{"loc": ["body"], "msg": f"JSON nested more than {max_depth} levels deep",
                                  "type": "json_too_deep"}])
    duplicated: list[_Duplicated] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set[str] = set()
            obj = _Duplicated(obj)
            obj.duplicates = list(dict.fromkeys(k for k, _ in items if k in seen or seen.add(k)))
            duplicated.append(obj)
        return obj

    try:
        payload = json.loads(raw, object_pairs_hook=pairs, parse_int=_parse_int)
    except RecursionError:  # json_depth's count missed a malformed text's nesting: the parser's own limit
        raise RequestError(400, [{"loc": ["body"], "msg": f"JSON nested more than {max_depth} levels deep",
                                  "type": "json_too_deep"}]) from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError and any other conversion of the text
        raise _malformed(err) from None
    if duplicated:
        raise RequestError(422, _duplicate_keys(payload, {id(d) for d in duplicated}))
    return payload


def _duplicate_keys(payload: Any, duplicated: set[int]) -> list[dict[str, Any]]:
    """Where each object that gave a key twice sits in the body (loc as pydantic spells it)."""
    detail, stack = [], [(payload, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if id(node) in duplicated:
                detail += [{"loc": ["body", *path, _loc_part(k)], "msg": "the same key is given more than once",
                            "type": "duplicate_key"} for k in node.duplicates]
            stack += [(v, [*path, _loc_part(k)]) for k, v in node.items() if isinstance(v, (dict, list))]
        elif isinstance(node, list):
            stack += [(v, [*path, i]) for i, v in enumerate(node) if isinstance(v, (dict, list))]
    return detail


def parse_body(body: bytes | str, max_batch: int, ranges=None, max_cost: int | None = None
               ) -> tuple[list[Patient], list[Any] | None]:
    """JSON text -> (patients, where they sit in the body: None for a single object, [] for a list,
    ["patients"] for {"patients": [...]}), or RequestError (400 malformed JSON, 413 too many patients or too much
    work, 422 invalid). `ranges`, `max_cost`: see parse_payload."""
    return parse_payload(load_json(body), max_batch, ranges, max_cost)


def parse_payload(payload: Any, max_batch: int, ranges=None, max_cost: int | None = None
                  ) -> tuple[list[Patient], list[Any] | None]:
    """`ranges`: the validate stage's value ranges (`age_range`, `measurement_ranges`: a
    `dxlab.serving.batch.ValidationSettings`, read from serve.validate, which mirrors validate; None: its
    defaults). `max_cost`: at most this many findings and excluded findings over all patients (None: no limit)."""
    if payload is None:
        raise RequestError(422, [{"loc": ["body"], "msg": "empty body: send a patient, a list of patients or "
                                  "{\"patients\": [...]}", "type": "missing"}])
    prefix: list[Any] = []
    if isinstance(payload, Mapping) and "patients" in payload:
        extra = sorted(set(payload) - {"patients"})
        if extra:
            raise RequestError(422, [{"loc": ["body", _loc_part(k)], "msg": "extra field not permitted",
                                      "type": "extra_forbidden"} for k in extra])
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
            patients = _PATIENTS.validate_python(payload)
        except ValidationError as err:
            raise RequestError(422, _errors(err, prefix)) from None
        where: list[Any] | None = prefix
    elif isinstance(payload, Mapping):
        try:
            patients = [Patient.model_validate(payload)]
        except ValidationError as err:
            raise RequestError(422, _errors(err, [])) from None
        where = None
    else:
        raise RequestError(422, [{"loc": ["body"], "msg": "expected a patient object, a list of patients or "
                                  "{\"patients\": [...]}", "type": "model_type"}])
    check_cost(patients, max_cost, where)
    check_values(patients, ranges, where)
    return _something_to_read(patients, where), where


def check_cost(patients: Sequence[Patient], max_cost: int | None, prefix: list[Any] | None) -> None:
    """413 when one request asks for more work than `max_cost` (serve.api.max_cost): the findings and excluded
    findings of all its patients, what scoring and explaining take time in proportion to."""
    if not max_cost:
        return
    cost = sum(len(p.findings or ()) + len(p.excluded) for p in patients)
    if cost > max_cost:
        raise RequestError(413, [{"loc": ["body", *(prefix or [])], "msg": f"{cost} findings and excluded findings "
                                  f"over {len(patients)} patient(s) in one request, at most {max_cost} allowed: send "
                                  "fewer patients per request", "type": "too_costly"}])


def check_values(patients: Sequence[Patient], ranges, prefix: list[Any] | None) -> None:
    """422 for an age or a measurement outside the validate stage's ranges (the numbers it reads, passed in as
    `ranges`; None: its defaults), or a measurement the ranges do not name beyond +-MAX_MAGNITUDE (-1e308 is finite
    for Python, an overflow for the model's float32 arithmetic), naming the field and the range, never the value."""
    if ranges is None:
        from dxlab.serving.batch import ValidationSettings

        ranges = ValidationSettings()
    detail = []
    for i, p in enumerate(patients):
        if p.age is not None:
            detail += _outside(_loc(prefix, i, "age"), p.age, ranges.age_range, "validate.age_range")
        for name, value in p.measurements.items():
            loc = [*_loc(prefix, i, "measurements"), name]
            if name in ranges.measurement_ranges:
                detail += _outside(loc, value, ranges.measurement_ranges[name], f"validate.measurement_ranges.{name}")
            elif abs(value) > MAX_MAGNITUDE:
                detail.append({"loc": loc, "msg": f"Input should be a finite number between {-MAX_MAGNITUDE:g} and "
                               f"{MAX_MAGNITUDE:g}", "type": "finite_number"})
    if detail:
        raise RequestError(422, detail)


def _outside(loc: list[Any], value: float, bounds: Sequence[float], key: str) -> list[dict[str, Any]]:
    # the validate stage's test, lo <= value <= hi (dxlab.data.validation.validate_table), in pydantic's words
    lo, hi = bounds
    if value < lo:
        return [{"loc": loc, "msg": f"Input should be greater than or equal to {lo:g} ({key})",
                 "type": "greater_than_equal"}]
    if value > hi:
        return [{"loc": loc, "msg": f"Input should be less than or equal to {hi:g} ({key})",
                 "type": "less_than_equal"}]
    return []


def _loc(prefix: list[Any] | None, i: int, field: str) -> list[Any]:
    return ["body", *([] if prefix is None else [*prefix, i]), field]


def _something_to_read(patients: list[Patient], prefix: list[Any] | None) -> list[Patient]:
    """422 for a patient with neither findings nor a note (what a patient needs to be scored at all)."""
    from dxlab.data.notes import has_note

    detail = []
    for i, p in enumerate(patients):
        if not p.findings and not has_note(p.note):
            missing = p.findings is None
            detail.append({"loc": _loc(prefix, i, "findings"),
                           "msg": ("Field required" if missing else "List should have at least 1 item") +
                                  ": send findings (HPO ids), a note, or both", "type": "missing" if missing
                           else "too_short"})
    if detail:
        raise RequestError(422, detail)
    return patients


_CURIE = re.compile(r"^[A-Za-z]+:[A-Za-z0-9_]+$")  # what an ontology id looks like (HP:0001250, ORPHA:558)


def check_terms(patients: Sequence[Patient], scorer, prefix: list[Any] | None) -> None:
    """422 listing every unknown finding id, per patient and field (prefix: see parse_body). Only ids shaped like
    an ontology id are repeated; anything else sent as one (a name, a record number) is counted, not echoed."""
    detail = []
    for i, p in enumerate(patients):
        for field in ("findings", "excluded"):
            unknown = scorer.unknown_terms(getattr(p, field) or [])
            if unknown:
                shaped = [t for t in unknown if _CURIE.match(t)]
                others = len(unknown) - len(shaped)
                msg = f"unknown HPO id(s): {', '.join(shaped[:20])}" if shaped else "unknown HPO id(s)"
                if others:
                    msg += f"{' and' if shaped else ':'} {others} not shaped like an ontology id (e.g. HP:0001250)"
                detail.append({"loc": _loc(prefix, i, field), "msg": msg, "type": "unknown_term",
                               "unknown": shaped[:20]})
    if detail:
        raise RequestError(422, detail)


def to_table(patients: Sequence[Patient], pseudonymise) -> pd.DataFrame:
    """Patients -> canonical table; ids pseudonymised (a request id for patients without one)."""
    rows = []
    for p in patients:
        rows.append({
            "patient_id": pseudonymise(p.patient_id) if p.patient_id else "",
            "findings": list(dict.fromkeys(p.findings or [])), "excluded": list(dict.fromkeys(p.excluded)),
            "history": list(dict.fromkeys(p.history)),
            "age": np.nan if p.age is None else float(p.age), "sex": p.sex,
            "family_history": np.nan if p.family_history is None else float(p.family_history),
            "measurements": dict(p.measurements), "note": p.note or "", "diagnosis": None,
        })
    return pd.DataFrame(rows)


NO_NOTES = "this service reads no notes (it has no annotator): send the findings as HPO ids"


def read_patient_notes(table: pd.DataFrame, patients: Sequence[Patient], notes, prefix: list[Any] | None
                       ) -> tuple[pd.DataFrame, list[list[dict] | None]]:
    """The patients' notes read into their rows as ingest reads them (`dxlab.data.notes`, mode merge), and per
    patient what was read (None for a patient without a note).

    RequestError: 422 naming the note of a patient whose note cannot be read (binary, ...) or who is left with no
    finding at all (a note naming none, or not in English, and no coded findings); 503 when the service has no
    annotator (`notes` None) and a note was sent.
    """
    from dxlab.data.notes import has_note

    with_note = [i for i, p in enumerate(patients) if has_note(p.note)]
    if not with_note:
        return table, [None] * len(patients)
    if notes is None:
        raise RequestError(503, [{"loc": _loc(prefix, i, "note"), "msg": NO_NOTES, "type": "notes_unavailable"}
                                 for i in with_note])
    done = notes.read(table, "merge")
    unreadable = dict(done.problems)
    detail = []
    for i in with_note:
        if i in unreadable:
            detail.append({"loc": _loc(prefix, i, "note"), "msg": unreadable[i], "type": "note_unreadable"})
        elif not done.table["findings"].iloc[i]:
            detail.append({"loc": _loc(prefix, i, "note"), "msg": "no finding of the patient could be read from the "
                           "note (notes are read as English) and no coded finding was given", "type": "no_findings"})
    if detail:
        raise RequestError(422, detail)
    read = [done.table["note_mentions"].iloc[i] if i in with_note else None for i in range(len(patients))]
    return done.table, read


def parse_annotate(body: bytes | str) -> AnnotateRequest:
    """JSON text -> the text to annotate, or RequestError (400 malformed JSON, 422 invalid)."""
    return parse_annotate_payload(load_json(body))


def parse_annotate_payload(payload: Any) -> AnnotateRequest:
    """Parsed JSON -> the text to annotate, or RequestError (422 invalid)."""
    if payload is None:
        raise RequestError(422, [{"loc": ["body"], "msg": 'empty body: send {"text": "..."}', "type": "missing"}])
    try:
        request = AnnotateRequest.model_validate(payload)
    except ValidationError as err:
        raise RequestError(422, _errors(err, [])) from None
    if not request.text.strip():
        raise RequestError(422, [{"loc": ["body", "text"], "msg": "the text is blank: nothing to read",
                                  "type": "too_short"}])
    return request


def annotate_answer(request: AnnotateRequest, notes) -> dict:
    """What POST /v1/annotate answers: the mentions and the patient fields they make (as `dxlab annotate` writes
    them), or RequestError (422 unreadable text, 503 no annotator)."""
    from dxlab.data.notes import mention_record
    from dxlab.text import TextError, patient_fields

    if notes is None:
        raise RequestError(503, [{"loc": ["body", "text"], "msg": NO_NOTES, "type": "notes_unavailable"}])
    try:
        mentions = notes.annotator.annotate(request.text)
    except TextError as err:
        raise RequestError(422, [{"loc": ["body", "text"], "msg": f"text cannot be read: {err}",
                                  "type": "note_unreadable"}]) from None
    fields = patient_fields(mentions)
    warnings = [] if mentions else ["no HPO term was found in the text (only English is read)"]
    return {"findings": fields["findings"], "excluded": fields["excluded"], "uncertain": fields["uncertain"],
            "family": fields["family"], "family_history": True if fields["family_history"] == 1.0 else None,
            "mentions": [mention_record(m) for m in mentions], "warnings": warnings}


def request_id() -> str:
    return uuid.uuid4().hex[:12]


def request_schema() -> dict:
    """OpenAPI schema of the body: one patient, a list, or {"patients": [...]}."""
    patient = Patient.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"oneOf": [{"$ref": "#/components/schemas/Patient"},
                      {"type": "array", "items": {"$ref": "#/components/schemas/Patient"}},
                      {"$ref": "#/components/schemas/PatientBatch"}],
            "examples": patient.get("examples", [])}
