"""A LIRICAL-like likelihood-ratio ranker: HPO annotation frequencies as likelihoods, no training patients needed.

For a disease d and an observed finding t, LR(t) = P(t|d) / P(t|not d):

- P(t|d) is the annotated frequency of t, or of the most frequent annotated term t implies (a patient recorded
  with the imprecise 'Seizure' matches a disease annotated with 'Focal seizure'); for a finding more specific than
  an annotated term a, P(a|d) * P(t|a) with P(t|a) = bg(t) / bg(a) taken from the background; a finding the disease
  does not explain at all gets the false-positive rate `false_positive_rate * bg(t)`; a finding the disease is
  annotated NOT to have (or a descendant of one) gets `negated_rate * bg(t)`.
- P(t|not d) = bg(t), the frequency-weighted share of all annotated diseases showing t (smoothed).

An excluded finding contributes (1 - P(t|d)) / (1 - bg(t)) with P(t|d) capped at 1 - obligate_eps, so excluding a
finding annotated as obligate costs log(obligate_eps). Sex (sex-specific diseases, X- and Y-linked inheritance)
and age (HPO onset ranges plus an exponential diagnostic delay) add log likelihood ratios; the pretest prior is
uniform or the smoothed training label counts. Everything is precomputed as sparse diseases x terms matrices of
log likelihood ratios, so scoring a batch is two sparse products.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from dxlab.features.terms import TermEncoder
from dxlab.knowledge.base import Knowledge
from dxlab.knowledge.hpo import ONSET_AGE_RANGES

AGE_SPAN_YEARS = 100.0
# Share of male patients by mode of inheritance (a sex-specific disease overrides it).
MALE_SHARE_BY_INHERITANCE: dict[str, float] = {
    "HP:0001450": 0.99,  # Y-linked
    "HP:0001419": 0.8,   # X-linked recessive: mostly affected males
    "HP:0001417": 0.6,   # X-linked, unspecified
    "HP:0001423": 0.35,  # X-linked dominant: affected females about twice as common
}


def _expand(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, relation: sparse.csr_matrix):
    """Each (row, col, val) repeated once for every j with relation[col, j] != 0, the col replaced by j."""
    starts = relation.indptr[cols]
    lengths = relation.indptr[cols + 1] - starts
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths
    positions = np.repeat(starts - first, lengths) + np.arange(total)
    return np.repeat(rows, lengths), relation.indices[positions], np.repeat(vals, lengths)


def _max_matrix(rows, cols, vals, shape) -> sparse.csr_matrix:
    """A sparse matrix holding, for every (row, col) given, the largest of its values."""
    rows, cols, vals = (np.asarray(a) for a in (rows, cols, vals))
    if not len(rows):
        return sparse.csr_matrix(shape, dtype=np.float64)
    key = rows.astype(np.int64) * shape[1] + cols.astype(np.int64)
    order = np.lexsort((vals, key))
    key, vals = key[order], vals[order]
    last = np.r_[key[1:] != key[:-1], True]
    key, vals = key[last], vals[last]
    return sparse.csr_matrix((vals.astype(np.float64), (key // shape[1], key % shape[1])), shape=shape)


def _onset_density(age: np.ndarray, lo: np.ndarray, hi: np.ndarray, delay: float) -> np.ndarray:
    """Density of age = onset + delay, onset ~ Uniform(lo, hi), delay ~ Exponential(mean `delay`).
    age: (n, 1), lo/hi: (m,) -> (n, m)."""
    width = hi - lo
    since_lo = age - lo
    since_hi = np.maximum(age - hi, 0.0)
    point = np.exp(-np.maximum(since_lo, 0.0) / delay) / delay
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (np.exp(-since_hi / delay) - np.exp(-np.maximum(since_lo, 0.0) / delay)) / width
    density = np.where(width > 1e-6, spread, point)
    return np.where(since_lo >= 0, density, 0.0)


class BayesDiseaseRanker(ClassifierMixin, BaseEstimator):
    """Likelihood-ratio diagnosis from HPO annotations (LIRICAL-like). Input: the canonical patient table.

    diseases: None ranks the diseases of the training labels; "all" every annotated disease of the knowledge
    base; or a list of disease ids (diseases with no training patient are scored all the same).
    descendant_weight: how much a finding more specific than an annotated term counts (its log LR is scaled by
    it; 0 treats it as unexplained).
    prior: "uniform" or "train" (training label counts + prior_pseudocount).
    temperature: a number, or "fit" to choose it by likelihood on (at most `max_temperature_patients`)
    training patients; predict_proba is softmax(log posterior / temperature).
    """

    def __init__(self, knowledge_dir: str = "data/knowledge", diseases=None, prior: str = "uniform",
                 prior_pseudocount: float = 1.0, false_positive_rate: float = 0.1, negated_rate: float = 0.01,
                 obligate_eps: float = 0.01, min_frequency: float = 0.01, background_pseudocount: float = 1.0,
                 descendant_weight: float = 0.25, drop_implied_findings: bool = True, use_excluded: bool = True,
                 use_sex: bool = True, sex_eps: float = 0.01, use_age: bool = True, onset_delay_years: float = 5.0,
                 age_outlier_share: float = 0.1, temperature="fit", max_temperature_patients: int = 2000,
                 random_state=0):
        self.knowledge_dir = knowledge_dir
        self.diseases = diseases
        self.prior = prior
        self.prior_pseudocount = prior_pseudocount
        self.false_positive_rate = false_positive_rate
        self.negated_rate = negated_rate
        self.obligate_eps = obligate_eps
        self.min_frequency = min_frequency
        self.background_pseudocount = background_pseudocount
        self.descendant_weight = descendant_weight
        self.drop_implied_findings = drop_implied_findings
        self.use_excluded = use_excluded
        self.use_sex = use_sex
        self.sex_eps = sex_eps
        self.use_age = use_age
        self.onset_delay_years = onset_delay_years
        self.age_outlier_share = age_outlier_share
        self.temperature = temperature
        self.max_temperature_patients = max_temperature_patients
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y=None, knowledge: Knowledge | None = None):
        if self.prior not in ("uniform", "train"):
            raise ValueError(f"prior must be 'uniform' or 'train', got {self.prior!r}")
        if not 0 < self.false_positive_rate <= 1 or not 0 < self.negated_rate <= 1:
            raise ValueError("false_positive_rate and negated_rate must lie in (0, 1]")
        knowledge = knowledge or Knowledge.load(self.knowledge_dir)
        labels = None if y is None else pd.Series(np.asarray(y)).dropna().astype(str)
        self.classes_ = self._candidates(knowledge, labels)
        self.encoder_ = TermEncoder(knowledge)
        self._fit_likelihoods(knowledge)
        self._fit_demographics(knowledge)
        counts = labels.value_counts() if labels is not None else pd.Series(dtype=float)
        weights = np.ones(len(self.classes_))
        if self.prior == "train":
            weights = counts.reindex(self.classes_).fillna(0).to_numpy(dtype=float) + self.prior_pseudocount
        self.log_prior_ = np.log(weights / weights.sum())
        self.temperature_ = self._fit_temperature(X, labels)
        return self

    def _candidates(self, knowledge: Knowledge, labels: pd.Series | None) -> np.ndarray:
        if isinstance(self.diseases, str):
            if self.diseases != "all":
                raise ValueError(f"diseases must be None, 'all' or a list, got {self.diseases!r}")
            diseases = set(knowledge.phenotype_annotations()["disease_id"])
        elif self.diseases is not None:
            diseases = {str(d) for d in self.diseases}
        elif labels is not None and len(labels):
            diseases = set(labels)  # a label without annotations stays a class, scored by prior and demographics
        else:
            raise ValueError("BayesDiseaseRanker needs labels y or an explicit `diseases` list")
        return np.asarray(sorted(diseases), dtype=object)

    def _fit_likelihoods(self, knowledge: Knowledge) -> None:
        enc = self.encoder_
        n_terms = enc.n_terms
        ancestors = enc.ancestors.tocsr()
        descendants = ancestors.T.tocsr()
        ann = knowledge.phenotype_annotations()
        ann = ann[ann["hpo_id"].isin(enc.index)]
        positive = ann[~ann["negated"] & (ann["frequency"] > 0)]

        # Background: every annotated disease, its annotation set closed upwards keeping the largest frequency.
        universe = np.asarray(sorted(set(positive["disease_id"])), dtype=object)
        row_of = {d: i for i, d in enumerate(universe)}
        rows = positive["disease_id"].map(row_of).to_numpy()
        cols = positive["hpo_id"].map(enc.index).to_numpy()
        freq = np.maximum(positive["frequency"].to_numpy(dtype=float), self.min_frequency)
        closure_all = _max_matrix(*_expand(rows, cols, freq, ancestors), (len(universe), n_terms))
        total = np.asarray(closure_all.sum(axis=0)).ravel()
        bg = (total + 0.5 * self.background_pseudocount) / (len(universe) + self.background_pseudocount)
        self.background_ = np.minimum(bg, 0.99)

        # Candidate rows (a candidate without annotations keeps an empty row).
        cand_of = {d: i for i, d in enumerate(self.classes_)}
        in_universe = np.asarray([row_of.get(d, -1) for d in self.classes_])
        select = sparse.csr_matrix((np.ones(int((in_universe >= 0).sum())),
                                    (np.flatnonzero(in_universe >= 0), in_universe[in_universe >= 0])),
                                   shape=(len(self.classes_), len(universe)))
        closure = (select @ closure_all).tocsr()
        cl = closure.tocoo()
        lr_rows, lr_cols = [cl.row], [cl.col]
        lr_vals = [cl.data / self.background_[cl.col]]
        if self.descendant_weight > 0:
            mine = positive[positive["disease_id"].isin(cand_of)]
            d_rows = mine["disease_id"].map(cand_of).to_numpy()
            d_cols = mine["hpo_id"].map(enc.index).to_numpy()
            d_vals = np.maximum(mine["frequency"].to_numpy(dtype=float), self.min_frequency)
            # A finding more specific than the annotation: LR = P(a|d) / bg(a), tempered (log scaled by the
            # weight) because the annotation does not say which of a's descendants the disease shows.
            d_vals = (d_vals / self.background_[d_cols]) ** self.descendant_weight
            r, c, v = _expand(d_rows, d_cols, d_vals, descendants)
            lr_rows.append(r)
            lr_cols.append(c)
            lr_vals.append(v)
        shape = (len(self.classes_), n_terms)
        lr = _max_matrix(np.concatenate(lr_rows), np.concatenate(lr_cols), np.concatenate(lr_vals), shape)
        # Stored relative to the false-positive floor: log max(LR, fp) - log fp, zero (implicit) when unexplained.
        lr.data = np.log(np.maximum(lr.data, self.false_positive_rate)) - np.log(self.false_positive_rate)
        lr.eliminate_zeros()
        negated = ann[ann["negated"] & ann["disease_id"].isin(cand_of)]
        if len(negated):
            r, c, _ = _expand(negated["disease_id"].map(cand_of).to_numpy(),
                              negated["hpo_id"].map(enc.index).to_numpy(), np.ones(len(negated)), descendants)
            ruled_out = _max_matrix(r, c, np.ones(len(r)), shape)
            penalty = np.log(self.negated_rate) - np.log(self.false_positive_rate)
            lr = lr - lr.multiply(ruled_out) + ruled_out * penalty
        # terms x diseases, ready for findings @ matrix
        self.observed_loglr_ = lr.T.tocsr().astype(np.float32)
        excluded = closure.copy()
        excluded.data = np.log1p(-np.minimum(excluded.data, 1.0 - self.obligate_eps))
        self.excluded_loglr_ = excluded.T.tocsr().astype(np.float32)
        # Per-term constants that complete the log likelihood ratios (the same for every disease).
        self.excluded_offset_ = (-np.log1p(-self.background_)).astype(np.float32)
        self.strict_ancestors_ = (ancestors - sparse.identity(n_terms, format="csr", dtype=ancestors.dtype)).tocsr()
        self.strict_ancestors_.eliminate_zeros()

    def _fit_demographics(self, knowledge: Knowledge) -> None:
        table = knowledge.diseases.set_index("disease_id")
        male_share = np.full(len(self.classes_), 0.5)
        onset_rows, lows, highs, weights = [], [], [], []
        for i, disease in enumerate(self.classes_):
            if disease not in table.index:
                continue
            row = table.loc[disease]
            shares = [MALE_SHARE_BY_INHERITANCE[m] for m in row["inheritance"] if m in MALE_SHARE_BY_INHERITANCE]
            if shares:
                male_share[i] = max(shares, key=lambda s: abs(s - 0.5))
            if row["sex_specific"] == "MALE":
                male_share[i] = 1.0 - self.sex_eps
            elif row["sex_specific"] == "FEMALE":
                male_share[i] = self.sex_eps
            ranges = sorted({ONSET_AGE_RANGES[o] for o in row["onset"] if o in ONSET_AGE_RANGES})
            for lo, hi in ranges:
                onset_rows.append(i)
                lows.append(lo)
                highs.append(hi)
                weights.append(1.0 / len(ranges))
        male_share = np.clip(male_share, self.sex_eps, 1.0 - self.sex_eps)
        self.sex_loglr_ = {"M": np.log(male_share / 0.5), "F": np.log((1.0 - male_share) / 0.5)}
        self.onset_low_ = np.asarray(lows, dtype=float)
        self.onset_high_ = np.asarray(highs, dtype=float)
        self.onset_to_disease_ = sparse.csr_matrix(
            (np.asarray(weights, dtype=float), (np.arange(len(onset_rows)), np.asarray(onset_rows, dtype=int))),
            shape=(len(onset_rows), len(self.classes_)))
        self.has_onset_ = np.asarray(self.onset_to_disease_.sum(axis=0)).ravel() > 0

    def _fit_temperature(self, X: pd.DataFrame, labels: pd.Series | None) -> float:
        if self.temperature != "fit":
            temperature = float(self.temperature)
            if temperature <= 0:
                raise ValueError("temperature must be positive or 'fit'")
            return temperature
        if labels is None or X is None or not len(X):
            return 1.0
        position = {d: i for i, d in enumerate(self.classes_)}
        idx = np.asarray([position.get(label, -1) for label in labels])
        rows = np.flatnonzero(idx >= 0)
        if not len(rows):
            return 1.0
        if len(rows) > self.max_temperature_patients:
            rng = np.random.default_rng(self.random_state)
            rows = np.sort(rng.choice(rows, self.max_temperature_patients, replace=False))
        scores = self._log_posterior(X.iloc[rows])
        truth = idx[rows]

        def nll(log_t: float) -> float:
            return -float(log_softmax(scores / np.exp(log_t), axis=1)[np.arange(len(truth)), truth].mean())

        return float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))

    # -- scoring -------------------------------------------------------------------------------------------
    def _findings(self, X: pd.DataFrame) -> sparse.csr_matrix:
        found = self.encoder_.matrix(list(X["findings"]), propagate=False)
        if self.drop_implied_findings and found.nnz:
            # A finding implied by a more specific one of the same patient adds no evidence of its own.
            implied = (found @ self.strict_ancestors_).tocsr()
            implied.data[:] = 1.0
            found = (found - found.multiply(implied)).tocsr()
            found.eliminate_zeros()
        return found

    def _log_posterior(self, X: pd.DataFrame) -> np.ndarray:
        found = self._findings(X)
        n_found = np.asarray(found.sum(axis=1)).ravel()
        score = np.asarray((found @ self.observed_loglr_).todense(), dtype=np.float64)
        score += (n_found * np.log(self.false_positive_rate))[:, None]
        if self.use_excluded and "excluded" in X:
            excluded = self.encoder_.matrix(list(X["excluded"]), propagate=False)
            score += np.asarray((excluded @ self.excluded_loglr_).todense(), dtype=np.float64)
            score += np.asarray(excluded @ self.excluded_offset_, dtype=np.float64).reshape(-1, 1)
        if self.use_sex and "sex" in X:
            for sex, loglr in self.sex_loglr_.items():
                score[(X["sex"] == sex).to_numpy()] += loglr
        if self.use_age and "age" in X and self.onset_to_disease_.shape[0]:
            age = pd.to_numeric(X["age"], errors="coerce").to_numpy(dtype=float)
            known = np.flatnonzero(np.isfinite(age))
            if len(known):
                density = _onset_density(age[known, None], self.onset_low_, self.onset_high_,
                                         self.onset_delay_years)
                onset = np.asarray(density @ self.onset_to_disease_)
                uniform = 1.0 / AGE_SPAN_YEARS
                mixed = (1.0 - self.age_outlier_share) * onset + self.age_outlier_share * uniform
                # A disease without onset annotation: age is uninformative (ratio 1).
                score[known] += np.where(self.has_onset_, np.log(mixed / uniform), 0.0)
        return score + self.log_prior_

    def decision_function(self, X: pd.DataFrame, batch_size: int = 512) -> np.ndarray:
        """Log posterior of each disease, up to a per-patient constant (the log evidence)."""
        check_is_fitted(self, "observed_loglr_")
        parts = [self._log_posterior(X.iloc[start:start + batch_size]) for start in range(0, len(X), batch_size)]
        return np.vstack(parts) if parts else np.zeros((0, len(self.classes_)))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]
