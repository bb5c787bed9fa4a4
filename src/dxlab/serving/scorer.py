"""Score a canonical patient table with the champion model: top-k diseases, anomaly score and flag, explanations.

One `Scorer` serves the batch command, the API and the Lambda handler. It holds a fitted model (the diagnostic
model, or anything with `predict_proba` on the patient table and `classes_`), optionally the anomaly stage's
detector (features + detector Pipeline), and what explanations need. `score` gives the flat batch table;
`answer` the API's answer per patient: each top disease with its name, probability and the findings that support
it or argue against it, and the probability by type of disease (primary organ system), summed from the same
probabilities. Identifiers are never touched here: callers pseudonymise them first (`dxlab.data.pseudonym`).

Where the model comes from (`resolve_model`):
- `models:/NAME@ALIAS` or `models:/NAME/VERSION`: the MLflow registry (the pyfunc logged by the train stage
  carries the joblib file as its `model` artifact, loaded directly so that `predict_proba` stays available);
- a path to a `.joblib` file;
- a model bundle folder (`dxlab bundle`: the champion exported with its knowledge, for a container);
- a bare name: `<models_dir>/<name>.joblib`.
A registry model that cannot be loaded is an error: the serving path (`Scorer.from_config`, the API's reload
checks) never puts a local file in its place -- a local file is served only when it is named (`--model`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EXPLAIN_METHODS = ("model", "knowledge", "leave_one_out", "none")
UNCLASSIFIED = "unclassified"  # the type of a disease the knowledge gives no organ system


@dataclass
class ModelHandle:
    """A loaded model and where it came from (`version` identifies it for reloads)."""

    model: object
    name: str
    uri: str
    version: str = ""
    classes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    def __post_init__(self) -> None:
        if not hasattr(self.model, "predict_proba"):
            raise TypeError(f"model {self.uri} has no predict_proba")
        self.classes = np.asarray(self.model.classes_).astype(str)
        plain_parameters(self.model)


def plain_parameters(estimator) -> None:
    """Replace OmegaConf containers among fitted estimators' parameters by plain lists and dicts, in place.

    Hydra's instantiate passes list parameters (e.g. the featurizer's age bands) as ListConfig, whose item access
    is ~100x slower than a list's; per-patient code that indexes them dominated batch scoring time."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    seen: set[int] = set()

    def visit(obj) -> None:
        if id(obj) in seen or not hasattr(obj, "get_params"):
            return
        seen.add(id(obj))
        for name, value in vars(obj).items():
            if isinstance(value, (ListConfig, DictConfig)):
                setattr(obj, name, OmegaConf.to_container(value, resolve=True))
            elif hasattr(value, "get_params"):
                visit(value)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    for part in (item if isinstance(item, tuple) else (item,)):
                        visit(part)

    visit(estimator)


class PyfuncProbabilities:
    """Adapter for a registry model that is not a dxlab joblib: its pyfunc output columns are the diseases."""

    def __init__(self, pyfunc, classes: Sequence[str]):
        self.pyfunc = pyfunc
        self.classes_ = np.asarray(classes, dtype=object)

    def predict_proba(self, patients: pd.DataFrame) -> np.ndarray:
        out = self.pyfunc.predict(patients[["findings", "excluded", "history", "age", "sex", "family_history"]])
        return pd.DataFrame(out)[list(self.classes_)].to_numpy(dtype=float)


def is_registry_uri(spec: str) -> bool:
    return str(spec).startswith(("models:/", "runs:/"))


def parse_registry_uri(uri: str) -> tuple[str, str | None, str | None]:
    """models:/NAME@ALIAS -> (NAME, ALIAS, None); models:/NAME/VERSION -> (NAME, None, VERSION)."""
    body = uri[len("models:/"):]
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, alias, None
    name, _, version = body.partition("/")
    return name, None, version or None


def registry_version(uri: str, tracking_uri: str | None = None) -> str:
    """The version an alias points at now (cheap: one registry query); the version itself otherwise."""
    import mlflow

    name, alias, version = parse_registry_uri(uri)
    if alias is None:
        return str(version)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    return str(client.get_model_version_by_alias(name, alias).version)


def _download_registry(uri: str, tracking_uri: str | None):
    """(the model version, its downloaded artifact folder, the MLmodel spec) of a registry URI."""
    import mlflow
    import yaml

    name, alias, version = parse_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    mv = (client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version))
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}",
                                                     tracking_uri=tracking_uri))
    return mv, local, yaml.safe_load((local / "MLmodel").read_text())


def _joblib_artifact(local: Path, spec: dict) -> Path | None:
    artifact = (((spec.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}).get("model")
    return local / artifact["path"] if artifact and (local / artifact["path"]).exists() else None


def registry_model_file(uri: str, tracking_uri: str | None = None) -> tuple[Path, str, str]:
    """(the fitted model's joblib file, the registry version, the model's name) of a registry URI (a model bundle
    carries that file)."""
    name = parse_registry_uri(uri)[0]
    mv, local, spec = _download_registry(uri, tracking_uri)
    path = _joblib_artifact(local, spec)
    if path is None:
        raise ValueError(f"{uri} (version {mv.version}) carries no joblib model artifact")
    return path, str(mv.version), (mv.tags or {}).get("dxlab.model", name)


def _load_registry(uri: str, tracking_uri: str | None) -> ModelHandle:
    import mlflow

    name = parse_registry_uri(uri)[0]
    mv, local, spec = _download_registry(uri, tracking_uri)
    path = _joblib_artifact(local, spec)
    model_name = (mv.tags or {}).get("dxlab.model", name)
    if path is not None:
        model = joblib.load(path)
    else:  # any other pyfunc: probabilities from its output columns
        import json

        pyfunc = mlflow.pyfunc.load_model(str(local))
        outputs = json.loads(spec["signature"]["outputs"])
        model = PyfuncProbabilities(pyfunc, [o["name"] for o in outputs])
    return ModelHandle(model, model_name, uri, str(mv.version))


def resolve_model(spec: str, models_dir: str | Path = "models", tracking_uri: str | None = None,
                  fallback: str | None = None) -> ModelHandle:
    """Load a model from the registry, a .joblib path or `<models_dir>/<name>.joblib` (see the module doc).
    `fallback`: a local model to load when the registry cannot give `spec` -- for a caller that asks for it by
    name; the serving path never passes one (an unapproved file must not stand in for the champion)."""
    spec = str(spec)
    if is_registry_uri(spec):
        try:
            return _load_registry(spec, tracking_uri)
        except Exception as err:  # noqa: BLE001 - MLflow raises generic exceptions for a missing alias/model
            if not fallback:
                raise RuntimeError(f"cannot load {spec} from the registry ({tracking_uri}): {err}") from err
            log.warning("registry model %s unavailable (%s); using local model %s", spec, str(err)[:200], fallback)
            spec = fallback
    from dxlab.serving.bundle import MODEL_FILE, is_bundle, read_bundle

    if is_bundle(spec):  # a model bundle (`dxlab bundle`): the registry version it was exported from
        info = read_bundle(spec)
        return ModelHandle(joblib.load(Path(spec) / MODEL_FILE), info["model"], info["source"], str(info["version"]))
    path = Path(spec)
    if path.suffix != ".joblib":
        path = Path(models_dir) / f"{spec}.joblib"
    if not path.exists():
        raise FileNotFoundError(f"model {path} not found: run the train stage or name another model")
    stat = path.stat()
    return ModelHandle(joblib.load(path), path.stem, str(path), f"file:{int(stat.st_mtime)}:{stat.st_size}")


def model_version(spec: str, models_dir: str | Path = "models", tracking_uri: str | None = None) -> str:
    """What `resolve_model` would load now, as a version string (for reload checks); '' when unknown (the
    registry cannot say: never a local file's version instead)."""
    if is_registry_uri(spec):
        try:
            return registry_version(spec, tracking_uri)
        except Exception:  # noqa: BLE001 - MLflow raises generic exceptions for a registry it cannot reach
            return ""
    from dxlab.serving.bundle import is_bundle, read_bundle

    if is_bundle(spec):
        return str(read_bundle(spec)["version"])
    path = Path(spec) if str(spec).endswith(".joblib") else Path(models_dir) / f"{spec}.joblib"
    if not path.exists():
        return ""
    stat = path.stat()
    return f"file:{int(stat.st_mtime)}:{stat.st_size}"


# -- explanations ------------------------------------------------------------------------------------------
@dataclass
class KnowledgeProfiles:
    """Per class: information-content-weighted annotation frequency of every term it implies (sparse)."""

    index: dict[str, int]
    aliases: dict[str, str]
    weights: object  # scipy csr: classes x terms, frequency * IC
    row_of: dict[str, int]

    def weight(self, disease: str, term: str) -> float:
        i = self.row_of.get(disease)
        j = self.index.get(term)
        if j is None:
            j = self.index.get(self.aliases.get(term, ""))
        if i is None or j is None:
            return 0.0
        return float(self.weights[i, j])


def knowledge_profiles(model, classes: Sequence[str], knowledge_dir: str | Path | None) -> KnowledgeProfiles | None:
    """From the model's own knowledge scorer when it has one (no file needed), else from the knowledge tables."""
    from scipy import sparse

    scorer = None
    steps = getattr(model, "named_steps", {})
    features = steps.get("features") if steps else None
    if features is not None and getattr(features, "scorer_", None) is not None:
        scorer = features.scorer_
    if scorer is not None:
        encoder, diseases, profile = scorer.encoder_, [str(d) for d in scorer.diseases_], scorer.profile_
    else:
        if not knowledge_dir or not (Path(knowledge_dir) / "terms.parquet").exists():
            return None
        from dxlab.features.knowledge_scores import disease_profiles
        from dxlab.features.terms import TermEncoder
        from dxlab.knowledge.base import Knowledge

        knowledge = Knowledge.load(knowledge_dir)
        known = set(knowledge.diseases["disease_id"])
        diseases = [str(c) for c in classes if str(c) in known]
        encoder = TermEncoder(knowledge)
        profile = disease_profiles(knowledge, diseases, encoder)
    if not encoder.ontology:
        return None
    weights = sparse.csr_matrix(profile.multiply(encoder.ic[None, :]))
    return KnowledgeProfiles(encoder.index, encoder.aliases, weights, {d: i for i, d in enumerate(diseases)})


def term_vocabulary(model, knowledge_dir: str | Path | None):
    """(index, aliases) of known finding ids: from the model's term encoder, else the knowledge tables."""
    steps = getattr(model, "named_steps", {})
    features = steps.get("features") if steps else None
    encoder = getattr(features, "encoder_", None) if features is not None else None
    if encoder is None:
        encoder = getattr(model, "encoder_", None)
    if encoder is not None and getattr(encoder, "ontology", False):
        return encoder.index, encoder.aliases
    if knowledge_dir and (Path(knowledge_dir) / "terms.parquet").exists():
        from dxlab.knowledge.base import Knowledge

        knowledge = Knowledge.load(knowledge_dir)
        return dict(knowledge.term_index), dict(knowledge.alias_map)
    return None


# -- the scorer ---------------------------------------------------------------------------------------------
class Scorer:
    """Patients in (canonical table, ids already pseudonymised), one scored row (or answer) per patient out.

    explain: "model" (the model's own account: each finding's log likelihood ratio under the disease, for a
    model that gives one, else "knowledge"), "knowledge" (the finding's share of the IC-weighted match to the
    top disease), "leave_one_out" (the drop in the top disease's probability without the finding), "none".
    """

    def __init__(self, handle: ModelHandle, detector=None, top_k: int = 5, explain: str = "model",
                 n_explain: int = 3, max_explain_findings: int = 40, knowledge_dir: str | Path | None = None):
        if explain not in EXPLAIN_METHODS:
            raise ValueError(f"explain must be one of {EXPLAIN_METHODS}, got {explain!r}")
        self.handle = handle
        self.detector = detector
        self.top_k = int(top_k)
        self.has_own_explanations = hasattr(handle.model, "explain")
        if explain == "model" and not self.has_own_explanations:
            explain = "knowledge"
        self.explain = explain
        self.n_explain = int(n_explain)
        self.max_explain_findings = int(max_explain_findings)
        self.knowledge_dir = knowledge_dir  # the tables the API's autocomplete reads (GET /v1/terms)
        self.vocabulary = term_vocabulary(handle.model, knowledge_dir)
        self.profiles = (knowledge_profiles(handle.model, handle.classes, knowledge_dir)
                         if explain == "knowledge" else None)
        self.names = dict(getattr(handle.model, "disease_names_", {}) or {})
        if not self.names and knowledge_dir:
            from dxlab.serving.api import disease_names

            self.names = disease_names(knowledge_dir)

    # -- construction ----------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, model: str | None = None, explain: str | None = None,
                    tracking_uri: str | None = None, detector: str | bool | None = None) -> "Scorer":
        """From the composed config (`serve` group); `model` overrides serve.model. A registry model that cannot be
        loaded raises: no local file stands in for it (serve.model names what is served, nothing else does)."""
        from dxlab.tracking.mlflow_tracking import tracking_uri as configured_uri

        s = cfg.serve
        spec = model or s.model
        uri = tracking_uri or (configured_uri(cfg) if is_registry_uri(spec) else None)
        handle = resolve_model(spec, cfg.paths.models, uri)
        path = s.get("anomaly_detector") if detector is None else (detector or None)
        found = None
        if path and Path(path).exists():
            found = joblib.load(path)
        elif path:
            log.info("no anomaly detector at %s: anomaly columns stay empty", path)
        return cls(handle, found, top_k=s.top_k, explain=explain or s.explain.method, n_explain=s.explain.n_findings,
                   max_explain_findings=s.explain.max_findings, knowledge_dir=s.get("knowledge_dir"))

    @property
    def model_name(self) -> str:
        return self.handle.name

    @property
    def model_version(self) -> str:
        return self.handle.version

    @property
    def classes(self) -> np.ndarray:
        return self.handle.classes

    def unknown_terms(self, terms: Iterable[str]) -> list[str]:
        """Finding ids neither in the ontology nor an alt/obsolete id of a live term (empty without a vocabulary)."""
        if self.vocabulary is None:
            return []
        index, aliases = self.vocabulary
        return [t for t in terms if t not in index and t not in aliases]

    # -- scoring -----------------------------------------------------------------------------------------
    def predict_proba(self, patients: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.handle.model.predict_proba(patients), dtype=float)

    def top(self, patients: pd.DataFrame, k: int | None = None) -> tuple[np.ndarray, np.ndarray, dict | None]:
        """(indices into classes, probabilities) of the k most probable diseases per patient, and the probability
        by type of disease (organ system -> per-patient probability) when the model gives one."""
        k = min(self.top_k if k is None else k, len(self.classes))
        model = self.handle.model
        if hasattr(model, "predict_top"):
            index, proba, by_system = model.predict_top(patients, k)
            return index, proba, dict(zip(model.systems_, by_system.T))
        full = self.predict_proba(patients)
        index = np.argsort(-full, axis=1, kind="stable")[:, :k]
        return index, np.take_along_axis(full, index, axis=1), None

    def anomaly(self, patients: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(score, flag); NaN and -1 without a detector. Higher score = more anomalous."""
        n = len(patients)
        if self.detector is None or n == 0:
            return np.full(n, np.nan), np.full(n, -1, dtype=int)
        steps = getattr(self.detector, "steps", None)
        if steps:  # transform once, score and flag from the same features
            features = self.detector[:-1].transform(patients)
            final = steps[-1][1]
        else:
            features, final = patients, self.detector
        scores = np.asarray(final.score_samples(features), dtype=float)
        threshold = getattr(final, "threshold_", None)
        flags = (scores > threshold).astype(int) if threshold is not None else np.asarray(final.predict(features))
        return scores, flags.astype(int)

    def score(self, patients: pd.DataFrame) -> pd.DataFrame:
        """The scored table: patient_id, where the row came from (when known), model, top-k with names, anomaly,
        the findings that weighed most for the first disease, and what was read in the note (`findings_read`,
        JSON) when the rows carry `note_mentions`."""
        from dxlab.data.preprocess import coerce_patients

        patients = coerce_patients(patients.reset_index(drop=True))
        n = len(patients)
        index, top_p, _ = self.top(patients)
        k = index.shape[1]
        out = {"patient_id": patients["patient_id"].astype(str).to_numpy() if "patient_id" in patients
               else np.full(n, "", dtype=object)}
        for col in ("source_file", "source_row", "day"):
            if col in patients:
                out[col] = patients[col].to_numpy()
        out["model"] = np.full(n, self.model_name, dtype=object)
        out["model_version"] = np.full(n, self.model_version, dtype=object)
        for r in range(k):
            out[f"disease_{r + 1}"] = self.classes[index[:, r]]
            out[f"name_{r + 1}"] = [self.names.get(d, "") for d in self.classes[index[:, r]]]
            out[f"probability_{r + 1}"] = top_p[:, r].round(6)
        scores, flags = self.anomaly(patients)
        out["anomaly_score"] = scores
        out["anomaly_flag"] = flags
        findings, weights = self.key_findings(patients, self.classes[index[:, 0]] if k else np.empty(0),
                                              top_p[:, 0] if k else np.empty(0), index[:, 0] if k else None)
        out["key_findings"] = findings
        out["key_finding_weights"] = weights
        if "note_mentions" in patients:  # what was read in each note, with spans (JSON: one column type per file)
            out["findings_read"] = [json.dumps(m if isinstance(m, list) else [], ensure_ascii=False)
                                    for m in patients["note_mentions"]]
        if "diagnosis" in patients:  # a label that arrived with the batch (monitoring measures performance)
            out["diagnosis"] = patients["diagnosis"].to_numpy()
        return pd.DataFrame(out)

    def answer(self, patients: pd.DataFrame, k: int | None = None) -> list[dict]:
        """Per patient: the top diseases (id, name, probability, findings that support it and that argue against
        it), the probability by type of disease, the anomaly score and flag, the key findings of the first."""
        from dxlab.data.preprocess import coerce_patients

        patients = coerce_patients(patients.reset_index(drop=True))
        index, top_p, by_system = self.top(patients, k)
        scores, flags = self.anomaly(patients)
        model = self.handle.model
        term_names = getattr(model, "term_names_", {})
        findings, weights = self.key_findings(patients, self.classes[index[:, 0]], top_p[:, 0], index[:, 0])
        out = []
        for i, patient in enumerate(patients.to_dict("records")):
            accounts = (model.explain(patient, index[i], n=self.n_explain + 2) if self.has_own_explanations
                        else [{"supporting": [], "against": []} for _ in index[i]])
            diagnoses = [{"disease_id": str(self.classes[j]), "name": self.names.get(str(self.classes[j]), ""),
                          "probability": round(float(p), 6), **account}
                         for j, p, account in zip(index[i], top_p[i], accounts)]
            types = []
            if by_system is not None:
                ranked = sorted(((float(v[i]), s) for s, v in by_system.items()), reverse=True)
                types = [{"type": s or UNCLASSIFIED, "name": term_names.get(s, "") if s else
                          "no organ system in the knowledge", "probability": round(p, 6)}
                         for p, s in ranked if p >= 0.001]
            out.append({"patient_id": patient.get("patient_id") or None, "diagnoses": diagnoses,
                        "probability_by_type": types,
                        "anomaly": {"score": None if not np.isfinite(scores[i]) else round(float(scores[i]), 6),
                                    "flag": None if flags[i] < 0 else bool(flags[i])},
                        "key_findings": [{"hpo_id": t, "weight": float(w)} for t, w in zip(findings[i], weights[i])]})
        return out

    # -- explanations --------------------------------------------------------------------------------------
    def key_findings(self, patients: pd.DataFrame, top_disease: np.ndarray, top_probability: np.ndarray,
                     top_index: np.ndarray | None = None) -> tuple[list[list[str]], list[list[float]]]:
        if self.explain == "model" and top_index is not None:
            return self._own(patients, top_index)
        if self.explain == "leave_one_out":
            return self._leave_one_out(patients, top_disease, top_probability)
        if self.explain == "knowledge" and self.profiles is not None:
            return self._knowledge(patients, top_disease)
        return [[] for _ in range(len(patients))], [[] for _ in range(len(patients))]

    def _own(self, patients: pd.DataFrame, top_index: np.ndarray):
        """The findings with the largest log likelihood ratio under the first disease (the model's own account),
        for every patient at once."""
        core = self.handle.model.core_
        encoder = core.encoder_
        owner, position, terms, labels = [], [], [], []
        for i, findings in enumerate(patients["findings"]):
            for raw in findings:
                term = encoder.normalise(raw)
                if term is not None:
                    owner.append(i)
                    terms.append(encoder.index[term])
                    labels.append(raw)
        names = [[] for _ in range(len(patients))]
        values = [[] for _ in range(len(patients))]
        if not owner:
            return names, values
        owner = np.asarray(owner)
        log_lr = core.pair_log_lr(np.asarray(terms), np.asarray(top_index)[owner])
        order = np.lexsort((-log_lr, owner))  # by patient, strongest first
        for k in order:
            i, w = owner[k], float(log_lr[k])
            if w > 0 and len(names[i]) < self.n_explain and labels[k] not in names[i]:
                names[i].append(labels[k])
                values[i].append(round(w, 4))
        return names, values

    def _knowledge(self, patients: pd.DataFrame, top_disease: np.ndarray):
        """Each finding's share of the IC- and frequency-weighted match between the patient and the top disease."""
        prof = self.profiles
        owner, rows, cols, terms = [], [], [], []
        for i, (findings, disease) in enumerate(zip(patients["findings"], top_disease)):
            r = prof.row_of.get(str(disease))
            if r is None:
                continue
            for term in findings:
                j = prof.index.get(term)
                if j is None:
                    j = prof.index.get(prof.aliases.get(term, ""))
                if j is not None:
                    owner.append(i)
                    rows.append(r)
                    cols.append(j)
                    terms.append(term)
        names = [[] for _ in range(len(patients))]
        values = [[] for _ in range(len(patients))]
        if not owner:
            return names, values
        owner_a = np.asarray(owner)
        weight = np.asarray(prof.weights[np.asarray(rows), np.asarray(cols)]).ravel()
        total = np.bincount(owner_a, weights=weight, minlength=len(patients))
        order = np.lexsort((-weight, owner_a))  # by patient, heaviest finding first
        for k in order:
            i, w = owner[k], weight[k]
            if w > 0 and len(names[i]) < self.n_explain:
                names[i].append(terms[k])
                values[i].append(round(float(w / total[i]), 4))
        return names, values

    def _leave_one_out(self, patients: pd.DataFrame, top_disease: np.ndarray, top_probability: np.ndarray):
        """Drop in the top disease's probability when one finding is left out: one prediction per finding."""
        col_of = {c: i for i, c in enumerate(self.classes)}
        owner, dropped = [], []  # variant k: patient owner[k] without finding dropped[k]
        for i, findings in enumerate(patients["findings"]):
            findings = list(findings)[: self.max_explain_findings]
            if len(findings) < 2:  # without its only finding a patient is no patient: nothing to compare
                continue
            owner.extend([i] * len(findings))
            dropped.extend(findings)
        names = [[] for _ in range(len(patients))]
        values = [[] for _ in range(len(patients))]
        if not owner:
            return names, values
        table = patients.iloc[owner].reset_index(drop=True).copy()
        listed = list(patients["findings"])
        table["findings"] = [[t for t in listed[i] if t != term] for i, term in zip(owner, dropped)]
        cols = np.array([col_of[str(top_disease[i])] for i in owner])
        proba = self.predict_proba(table)
        drop = top_probability[np.asarray(owner)] - proba[np.arange(len(table)), cols]
        per_patient: dict[int, list[tuple[float, str]]] = {}
        for i, term, d in zip(owner, dropped, drop):
            per_patient.setdefault(i, []).append((float(d), term))
        for i, scored in per_patient.items():
            scored.sort(key=lambda x: -x[0])
            top = [(d, t) for d, t in scored if d > 0][: self.n_explain]
            names[i] = [t for _, t in top]
            values[i] = [float(f"{d:.3g}") for d, _ in top]  # significant digits: a small drop stays positive
        return names, values


def pseudonym_key(cfg) -> bytes:
    """The key ingest uses (DXLAB_PSEUDONYM_KEY, else data/.pseudonym_key next to paths.interim)."""
    from dxlab.data.pseudonym import load_key

    return load_key(Path(cfg.paths.interim).parent / ".pseudonym_key")

