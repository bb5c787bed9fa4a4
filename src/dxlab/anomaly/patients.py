"""Anomaly detection on the canonical patient table: a dense feature matrix, and labelled injected anomalies.

``PatientAnomalyFeaturizer`` turns patients into numeric columns a detector can score: age, sex, family history,
measurements with their deviation from patients of the same age band and sex, counts, how informative and how
common the findings are, the best match to any known disease's annotation profile (``KnowledgeScorer``), and
rule-like counts (a finding both observed and excluded, a finding only the other sex can have, an impossible age).

Clean training data never breaks those rules, so their columns are constant there; they are scaled by
``rule_weight`` (one violation = that many standard deviations of a standardised feature) so that distance-based
detectors and the autoencoder notice them. Tree splits cannot use a column that is constant in training: the
Isolation Forest alone misses rule breaks, which is one reason the recommended detector is an ensemble.

``inject_anomalies`` corrupts a share of a copy of the table with five labelled kinds (see ``ANOMALY_KINDS``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from dxlab.features.terms import TermEncoder
from dxlab.knowledge.base import Knowledge

ANOMALY_KINDS: tuple[str, ...] = (
    "measurement_error",      # unit or typing error in a numeric measurement
    "impossible_age",         # negative, beyond any human lifespan, or a 999-style placeholder
    "observed_and_excluded",  # a finding recorded both as present and as explicitly absent
    "wrong_sex_finding",      # a finding only the other sex can have
    "unfit_findings",         # findings drawn at random across the ontology: they fit no disease
)
PHENOTYPIC_ABNORMALITY = "HP:0000118"
AGE_BAND_EDGES: tuple[float, ...] = (0, 0.5, 1, 2, 4, 7, 10, 13, 16, 19, 30, 50, 70)
_MIN_PEERS = 10


class PatientAnomalyFeaturizer(BaseEstimator, TransformerMixin):
    """Canonical patient table -> dense numeric DataFrame for anomaly detectors (fitted on clean training rows).

    knowledge_dir / vocabulary: with ``vocabulary='hpo'`` findings are HPO terms, propagated up the ontology
    for the conflict check, and the knowledge base gives sex-specific terms and disease profiles; other
    vocabularies (DDXPlus codes) get the source-free columns only. max_age: ages above it (or below 0) are
    impossible. use_knowledge_scores: add the best similarity to any training disease (needs diagnoses).
    """

    def __init__(self, knowledge_dir: str = "data/knowledge", vocabulary: str = "hpo", rule_weight: float = 10.0,
                 max_age: float = 120.0, use_knowledge_scores: bool = True, similarity: str = "cosine"):
        self.knowledge_dir = knowledge_dir
        self.vocabulary = vocabulary
        self.rule_weight = rule_weight
        self.max_age = max_age
        self.use_knowledge_scores = use_knowledge_scores
        self.similarity = similarity

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y=None, knowledge: Knowledge | None = None):
        _check_table(X)
        ontology = self.vocabulary == "hpo"
        if ontology:
            knowledge = knowledge or Knowledge.load(self.knowledge_dir)
            self.encoder_ = TermEncoder(knowledge)
            sex = knowledge.terms.set_index("id")["sex"].reindex(self.encoder_.term_ids).fillna("").to_numpy()
            self.female_only_ = (sex == "FEMALE").astype(np.float32)
            self.male_only_ = (sex == "MALE").astype(np.float32)
        else:
            codes = {c for col in ("findings", "excluded") for terms in X[col] for c in terms}
            self.encoder_ = TermEncoder(codes=codes)
            self.female_only_ = self.male_only_ = np.zeros(self.encoder_.n_terms, dtype=np.float32)
        found = self.encoder_.matrix(list(X["findings"]), propagate=False)
        counts = np.asarray(found.sum(axis=0)).ravel()
        self.term_log_share_ = np.log((counts + 1.0) / (len(X) + 1.0)).astype(np.float32)
        self.measurement_names_ = sorted({k for m in X["measurements"] for k in (m or {})})
        self.has_bmi_ = {"height_cm", "weight_kg"} <= set(self.measurement_names_)
        values = self._measurement_values(X)
        self.peer_reference_ = {name: _peer_reference(values[name], X["age"], X["sex"]) for name in values}
        ages = pd.to_numeric(X["age"], errors="coerce")
        self.age_median_ = float(ages.median()) if ages.notna().any() else 0.0
        labels = y if y is not None else (X["diagnosis"] if "diagnosis" in X else None)
        self.scorer_ = None
        if self.use_knowledge_scores and ontology and labels is not None and pd.Series(labels).notna().any():
            from dxlab.features.knowledge_scores import KnowledgeScorer

            labels = pd.Series(list(labels)).dropna().astype(str)
            known = sorted(set(labels) & set(knowledge.diseases["disease_id"]))
            if known:
                self.scorer_ = KnowledgeScorer(self.knowledge_dir, diseases=known,
                                               similarity=self.similarity).fit(X, knowledge=knowledge)
        self.feature_names_out_ = np.asarray(list(self._frame(X.iloc[:1]).columns), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        _check_table(X)
        return self._frame(X)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return self.feature_names_out_

    # -- the columns ---------------------------------------------------------------------------------------
    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        ages = pd.to_numeric(X["age"], errors="coerce").to_numpy(dtype=float)
        sex = np.array([v if isinstance(v, str) else None for v in X["sex"]], dtype=object)
        family = pd.to_numeric(X["family_history"], errors="coerce").to_numpy(dtype=float)
        out = {
            "age": np.where(np.isnan(ages), self.age_median_, ages),
            "age_missing": np.isnan(ages).astype(float),
            "is_female": (sex == "F").astype(float),
            "is_male": (sex == "M").astype(float),
            "family_history": np.nan_to_num(family, nan=0.0),
            "family_history_missing": np.isnan(family).astype(float),
        }
        values = self._measurement_values(X)
        for name, value in values.items():
            ref = self.peer_reference_[name]
            z = _peer_z(value, ages, sex, ref)
            out[f"{name}"] = np.where(np.isnan(value), ref["median_value"], value)
            out[f"{name}_missing"] = np.isnan(value).astype(float)
            out[f"{name}_peer_z"] = np.nan_to_num(z, nan=0.0)
        found = self.encoder_.matrix(list(X["findings"]), propagate=False).tocsr()
        n_found = np.asarray(found.sum(axis=1)).ravel()
        ic_sum = found @ self.encoder_.ic.astype(np.float64)
        share = found @ self.term_log_share_.astype(np.float64)
        out["n_findings"] = n_found
        out["n_excluded"] = np.array([len(v) for v in X["excluded"]], dtype=float)
        out["n_history"] = np.array([len(v) for v in X["history"]], dtype=float)
        out["findings_ic_mean"] = _safe_divide(ic_sum, n_found)
        out["findings_mean_log_share"] = _safe_divide(share, n_found)
        if self.scorer_ is not None:
            out["best_disease_match"] = self.scorer_.transform(X).max(axis=1).astype(float)
        w = float(self.rule_weight)
        out["rule_impossible_age"] = w * ((ages < 0) | (ages > self.max_age)).astype(float)
        out["rule_observed_and_excluded"] = w * self._conflicts(X)
        wrong = np.where(sex == "F", np.asarray(found @ self.male_only_).ravel(),
                         np.where(sex == "M", np.asarray(found @ self.female_only_).ravel(), 0.0))
        out["rule_wrong_sex_findings"] = w * wrong.astype(float)
        return pd.DataFrame(np.column_stack([np.asarray(v, dtype=float) for v in out.values()]), columns=list(out),
                            index=X.index)

    def _measurement_values(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        values = {name: np.array([_number((m or {}).get(name)) for m in X["measurements"]], dtype=float)
                  for name in self.measurement_names_}
        if self.has_bmi_:
            height_m = values["height_cm"] / 100.0
            with np.errstate(divide="ignore", invalid="ignore"):
                values["bmi"] = np.where(height_m > 0, values["weight_kg"] / height_m ** 2, np.nan)
        return values

    def _conflicts(self, X: pd.DataFrame) -> np.ndarray:
        """Excluded findings that an observed finding implies (the term itself or an ancestor of it)."""
        observed = self.encoder_.matrix(list(X["findings"]), propagate=True)
        excluded = self.encoder_.matrix(list(X["excluded"]), propagate=False)
        return np.asarray(observed.multiply(excluded).sum(axis=1), dtype=float).ravel() if excluded.nnz else (
            np.zeros(len(X)))


def _check_table(X) -> None:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"expected the canonical patient table (a DataFrame), got {type(X).__name__}")
    missing = [c for c in ("age", "sex", "family_history", "findings", "excluded", "history", "measurements")
               if c not in X.columns]
    if missing:
        raise ValueError(f"the patient table lacks canonical columns {missing} (see dxlab.data.schema)")


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return np.nan
    return number if np.isfinite(number) else np.nan


def _safe_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def _band(ages: np.ndarray) -> np.ndarray:
    ages = np.asarray(ages, dtype=float)
    band = np.searchsorted(np.asarray(AGE_BAND_EDGES), ages, side="right") - 1
    return np.where(np.isnan(ages) | (ages < 0), -1, band)


def _peer_reference(values: np.ndarray, ages, sex) -> dict:
    """Median and spread of log(value) per (age band, sex), per age band, and overall, from training rows."""
    logs = np.log(np.where(values > 0, values, np.nan))
    band = _band(pd.to_numeric(ages, errors="coerce").to_numpy(dtype=float))
    sex = np.asarray(pd.Series(sex).fillna("?").astype(str))
    ok = ~np.isnan(logs)

    def stats(mask):
        sel = logs[mask & ok]
        if len(sel) < _MIN_PEERS:
            return None
        centre = float(np.median(sel))
        spread = float(1.4826 * np.median(np.abs(sel - centre)))
        return centre, max(spread, 0.02)  # floor: rounding alone makes a 2% spread

    overall = stats(np.ones_like(ok)) or (float(np.nanmedian(logs)) if ok.any() else 0.0, 1.0)
    by_band = {int(b): s for b in np.unique(band[ok]) if (s := stats(band == b))}
    by_band_sex = {(int(b), str(x)): s for b in np.unique(band[ok]) for x in ("F", "M")
                   if (s := stats((band == b) & (sex == x)))}
    median_value = float(np.nanmedian(values)) if ok.any() else 0.0
    return {"overall": overall, "band": by_band, "band_sex": by_band_sex, "median_value": median_value}


def _peer_z(values: np.ndarray, ages: np.ndarray, sex: np.ndarray, ref: dict) -> np.ndarray:
    """Robust z of log(value) against patients of the same age band and sex (NaN when the value is missing).
    A non-positive value (impossible for a size) gets a large z."""
    band = _band(ages)
    z = np.full(len(values), np.nan)
    for i, (value, b, s) in enumerate(zip(values, band, sex)):
        if np.isnan(value):
            continue
        if value <= 0:
            z[i] = -20.0
            continue
        centre, spread = ref["band_sex"].get((int(b), str(s))) or ref["band"].get(int(b)) or ref["overall"]
        z[i] = (np.log(value) - centre) / spread
    return z


# -- injected anomalies ----------------------------------------------------------------------------------------
def inject_anomalies(patients: pd.DataFrame, rate: float, rng: np.random.Generator,
                     knowledge: Knowledge | None = None, kinds: Sequence[str] = ANOMALY_KINDS
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Corrupt ``rate`` of the rows of a copy of the table, the kinds in turn (each row at most one anomaly).

    Returns the corrupted copy (same index) and labels with the same index: ``anomaly`` (0/1), ``kind`` ('' for
    untouched rows) and ``detail`` (what was done). Kinds that need the ontology (wrong-sex findings) are skipped
    without a knowledge base; a kind without an eligible row (no measurement anywhere) is skipped too.
    """
    unknown = [k for k in kinds if k not in ANOMALY_KINDS]
    if unknown:
        raise ValueError(f"unknown anomaly kinds {unknown}; choose from {ANOMALY_KINDS}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    _check_table(patients)
    out = patients.copy()
    labels = pd.DataFrame({"anomaly": 0, "kind": "", "detail": ""}, index=out.index)
    n_total = int(round(rate * len(out)))
    kinds = [k for k in kinds if knowledge is not None or k != "wrong_sex_finding"]
    if n_total == 0 or not kinds:
        return out, labels
    pools = _term_pools(out, knowledge)
    positions = list(rng.permutation(len(out)))
    used: set[int] = set()
    per_kind = {k: n_total // len(kinds) + (1 if i < n_total % len(kinds) else 0) for i, k in enumerate(kinds)}
    for kind in kinds:
        eligible = [p for p in positions if p not in used and _eligible(out.iloc[p], kind)]
        for pos in eligible[: per_kind[kind]]:
            idx = out.index[pos]
            detail = _inject(out, idx, kind, rng, pools)
            labels.loc[idx, ["anomaly", "kind", "detail"]] = [1, kind, detail]
            used.add(pos)
    labels["anomaly"] = labels["anomaly"].astype(int)
    return out, labels


def _eligible(row: pd.Series, kind: str) -> bool:
    if kind == "measurement_error":
        return any(np.isfinite(_number(v)) and _number(v) > 0 for v in (row["measurements"] or {}).values())
    if kind == "observed_and_excluded":
        return len(row["findings"]) > 0
    if kind == "wrong_sex_finding":
        return row["sex"] in ("F", "M")
    return True


def _term_pools(patients: pd.DataFrame, knowledge: Knowledge | None) -> dict[str, np.ndarray]:
    if knowledge is None:
        codes = sorted({c for terms in patients["findings"] for c in terms})
        return {"random": np.asarray(codes, dtype=object), "FEMALE": np.asarray([]), "MALE": np.asarray([])}
    terms = knowledge.terms
    phenotypic = terms["ancestors"].map(lambda a: PHENOTYPIC_ABNORMALITY in a) & (terms["id"] != PHENOTYPIC_ABNORMALITY)
    annotated = terms["n_diseases"] >= 1
    # Sex-specific findings that diseases actually list, so the wrong-sex record looks like a plausible typo.
    return {
        "random": terms.loc[phenotypic & annotated & (terms["sex"] == ""), "id"].to_numpy(),
        "FEMALE": terms.loc[(terms["sex"] == "FEMALE") & (terms["n_diseases"] >= 5), "id"].to_numpy(),
        "MALE": terms.loc[(terms["sex"] == "MALE") & (terms["n_diseases"] >= 5), "id"].to_numpy(),
    }


_MEASUREMENT_ERRORS = (
    # (description, factor or None for a digit transposition, measurement it applies to or None for any)
    ("recorded in metres instead of cm", 0.01, "height_cm"),
    ("recorded in inches instead of cm", 1 / 2.54, "height_cm"),
    ("recorded in grams instead of kg", 1000.0, "weight_kg"),
    ("recorded in pounds instead of kg", 2.20462, "weight_kg"),
    ("typing error: an extra digit", 10.0, None),
    ("typing error: a dropped digit", 0.1, None),
    ("typing error: transposed digits", None, None),
)


def _inject(out: pd.DataFrame, idx, kind: str, rng: np.random.Generator, pools: dict) -> str:
    if kind == "measurement_error":
        measurements = dict(out.at[idx, "measurements"] or {})
        names = [k for k, v in measurements.items() if np.isfinite(_number(v)) and _number(v) > 0]
        name = names[int(rng.integers(len(names)))]
        value = _number(measurements[name])
        options = [e for e in _MEASUREMENT_ERRORS if e[2] in (None, name)]
        description, factor, _ = options[int(rng.integers(len(options)))]
        new = _transpose_digits(value) if factor is None else value * factor
        if factor is None and abs(np.log(new / value)) < np.log(1.25):  # 101 -> 110 is no visible error
            description, new = "typing error: an extra digit", value * 10.0
        measurements[name] = round(float(new), 3)
        out.at[idx, "measurements"] = measurements
        return f"{name} {value:g} -> {new:.4g} ({description})"
    if kind == "impossible_age":
        choice = int(rng.integers(3))
        age = [-float(rng.integers(1, 60)), float(rng.integers(125, 260)), 999.0][choice]
        before = out.at[idx, "age"]
        out.at[idx, "age"] = age
        return f"age {before} -> {age:g}"
    if kind == "observed_and_excluded":
        findings = list(out.at[idx, "findings"])
        term = findings[int(rng.integers(len(findings)))]
        out.at[idx, "excluded"] = list(out.at[idx, "excluded"]) + [term]
        return f"{term} observed and excluded"
    if kind == "wrong_sex_finding":
        sex = out.at[idx, "sex"]
        pool = pools["MALE" if sex == "F" else "FEMALE"]
        term = str(pool[int(rng.integers(len(pool)))])
        out.at[idx, "findings"] = list(out.at[idx, "findings"]) + [term]
        return f"{term} ({'male' if sex == 'F' else 'female'}-only) in a {'female' if sex == 'F' else 'male'}"
    if kind == "unfit_findings":
        n = max(3, len(out.at[idx, "findings"]))
        pool = pools["random"]
        terms = [str(t) for t in rng.choice(pool, size=min(n, len(pool)), replace=False)]
        out.at[idx, "findings"] = terms
        out.at[idx, "excluded"] = [t for t in out.at[idx, "excluded"] if t not in set(terms)]
        return f"{len(terms)} random findings replaced the record's"
    raise ValueError(f"unknown anomaly kind {kind!r}")  # pragma: no cover - checked by the caller


def _transpose_digits(value: float) -> float:
    text = f"{value:.1f}"
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    if len(digits) < 2:
        return value * 10.0
    i, j = digits[0], digits[1]
    chars = list(text)
    chars[i], chars[j] = chars[j], chars[i]
    new = float("".join(chars))
    return new if new > 0 else value * 10.0


def anomaly_metrics(labels: pd.DataFrame, scores: np.ndarray, flags: np.ndarray) -> dict:
    """Precision, recall and F1 of the flags, ROC-AUC and PR-AUC of the scores: overall and per anomaly kind
    (each kind against the untouched rows only)."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    y = labels["anomaly"].to_numpy(dtype=int)
    kinds = labels["kind"].to_numpy(dtype=str)
    scores, flags = np.asarray(scores, dtype=float), np.asarray(flags, dtype=int)

    def block(mask):
        yt, st, ft = y[mask], scores[mask], flags[mask]
        p, r, f, _ = precision_recall_fscore_support(yt, ft, average="binary", zero_division=0)
        both = 0 < yt.sum() < len(yt)
        return {"n": int(mask.sum()), "n_anomalies": int(yt.sum()), "precision": float(p), "recall": float(r),
                "f1": float(f), "roc_auc": float(roc_auc_score(yt, st)) if both else None,
                "pr_auc": float(average_precision_score(yt, st)) if both else None}

    result = block(np.ones(len(y), dtype=bool))
    result["flagged_share"] = float(flags.mean()) if len(flags) else 0.0
    result["by_kind"] = {kind: block((kinds == kind) | (y == 0)) for kind in sorted(set(kinds) - {""})}
    return result

