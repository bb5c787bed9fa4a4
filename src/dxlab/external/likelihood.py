"""Likelihood-ratio ranking of every annotated disease for case reports (LIRICAL-like, built for external validation).

The score of disease d for a case (observed findings Q, excluded findings E, sex, onset or age) is its log posterior
odds up to a per-case constant:

    sum_{t in Q} log LR(t, d) + w_excl * sum_{e in E} log LR_absent(e, d) + w_mention * sum_{e in E} log LR(e, d)
    + w_sex * log LR_sex(d) + w_onset * log LR_onset(d) + w_prior * log(n_pubs(d) + s)

- P(c | d) for every term c a disease implies (its annotations closed upwards): noisy-OR of the annotated
  frequencies of c and its descendants ('Focal seizure' in 30% and 'Absence seizure' in 20% give 'Seizure' 44%).
- Background P(c): the mean of P(c | d) over all annotated diseases -- term prevalence across diseases, weighted
  by frequency. Matching a rare term counts more, the role information content plays in Resnik similarity.
- An observed term t matches d through the ancestor c of t (t itself included) maximising P(c | d) / P(c); a match
  through a strict ancestor (the case is more specific than the annotation, or only a broader finding is shared)
  is multiplied by `partial_match`, the penalty for a finding the annotation does not list. A finding explained by
  nothing costs log(partial_match), never -inf; one the disease is annotated NOT to have costs log(negated_rate).
- Excluded findings, two readings. As absent: log((1 - P(e | d)) / (1 - P(e))) (`excluded_weight`). As mentioned
  (`mention_weight`): case reports list absent findings because they are relevant to the disease under discussion,
  so an excluded term that d's profile contains is evidence FOR d. On published case reports the second reading is
  worth about ten points of top-1 (reports/external_validation.md has the ablation); it rests on how case reports
  are written, so a user who records absent findings differently should set it to 0.
- Sex (sex-specific diseases, X-linked recessive inheritance) and onset (the disease's HPO onset classes against
  the case's onset, or against its age at last encounter as an upper bound when the onset is not given).

Reference cases (other publications' case reports, optional) refine the profiles: the profile of d becomes
(term counts among d's reference cases + k * P_annotation(c | d)) / (n_d + k). A disease without annotations starts
from the background, so its reference cases make it rankable, with an unexplained finding costing
log(k_u / (n_d + k_u)) -- a few cases cannot list every finding of a disease. The prior counts the publications
reporting d. `decision_function(table, groups)` never uses reference cases of a query's own publication: counts,
profiles and prior of the diseases that publication reports are recomputed without it, which keeps figures on a
development set leave-publication-out (tests/unit/test_external_likelihood.py checks it against a refit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from dxlab.features.terms import TermEncoder
from dxlab.knowledge.base import Knowledge

# Onset classes (years): the case's onset falls in one; HPO onset terms map to one or more of them.
ONSET_CLASSES = ("antenatal", "congenital", "neonatal", "infantile", "childhood", "juvenile", "adult")
ONSET_UPPER_YEARS = (0.0, 0.0, 28 / 365.25, 1.0, 5.0, 16.0, np.inf)
ONSET_TERMS: dict[str, tuple[str, ...]] = {
    "HP:0030674": ("antenatal",), "HP:0011460": ("antenatal",), "HP:0011461": ("antenatal",),
    "HP:0034199": ("antenatal",), "HP:0034198": ("antenatal",), "HP:0034197": ("antenatal",),
    "HP:0003577": ("congenital",), "HP:0003623": ("neonatal",), "HP:0003593": ("infantile",),
    "HP:0011463": ("childhood",), "HP:0003621": ("juvenile",),
    "HP:0410280": ("neonatal", "infantile", "childhood", "juvenile"),  # pediatric onset
    "HP:0003581": ("adult",), "HP:0011462": ("adult",), "HP:0003596": ("adult",), "HP:0003584": ("adult",),
    "HP:0025708": ("adult",), "HP:0025709": ("adult",), "HP:0025710": ("adult",),
}
X_LINKED_RECESSIVE = "HP:0001419"


def onset_class(years: float) -> int | None:
    """Index into ONSET_CLASSES of an onset age in years (0 = at birth counts as congenital)."""
    if years is None or not np.isfinite(years) or years < 0:
        return None
    if years == 0:
        return ONSET_CLASSES.index("congenital")
    for i, upper in enumerate(ONSET_UPPER_YEARS):
        if i >= 2 and years < upper:
            return i
    return len(ONSET_CLASSES) - 1


class LikelihoodRanker:
    """Scores cases against every disease by summed log likelihood ratios (see the module docstring).

    All parameters are fixed before seeing a case; `fit` reads only the knowledge tables (and reference cases).
    """

    def __init__(self, diseases: Sequence[str] | None = None, databases: Sequence[str] = ("OMIM",),
                 partial_match: float = 0.01, negated_rate: float = 0.05, min_frequency: float = 0.02,
                 max_frequency: float = 0.95, excluded_weight: float = 0.25, mention_weight: float = 0.5,
                 specific_only: bool = True, sex_weight: float = 1.0, onset_weight: float = 1.0,
                 case_pseudocount: float = 8.0, unannotated_pseudocount: float = 0.3, prior_weight: float = 0.0,
                 prior_smoothing: float = 0.1, batch_terms: int = 1024):
        self.diseases = diseases
        self.databases = databases
        self.partial_match = partial_match
        self.negated_rate = negated_rate
        self.min_frequency = min_frequency
        self.max_frequency = max_frequency
        self.excluded_weight = excluded_weight
        self.mention_weight = mention_weight
        self.specific_only = specific_only
        self.sex_weight = sex_weight
        self.onset_weight = onset_weight
        self.case_pseudocount = case_pseudocount
        self.unannotated_pseudocount = unannotated_pseudocount
        self.prior_weight = prior_weight
        self.prior_smoothing = prior_smoothing
        self.batch_terms = batch_terms

    # -- fitting -------------------------------------------------------------------------------------------------
    def fit(self, knowledge: Knowledge, reference_table: pd.DataFrame | None = None,
            reference_groups: Sequence[str] | None = None) -> "LikelihoodRanker":
        """Disease profiles from the annotations; with reference cases, their term counts per disease too."""
        self.encoder_ = TermEncoder(knowledge)
        annotated = sorted(d for d in knowledge.diseases["disease_id"]
                           if self.diseases is not None or d.split(":")[0] in set(self.databases))
        if self.diseases is not None:
            annotated = sorted(set(self.diseases) & set(annotated))
        reference_diseases: list[str] = []
        if reference_table is not None and len(reference_table):
            labels = {str(d) for d in reference_table["diagnosis"] if isinstance(d, str) and d}
            reference_diseases = sorted(labels - set(annotated))
        self.classes_ = np.asarray(annotated + reference_diseases, dtype=object)
        self.n_annotated_ = len(annotated)
        n_terms = self.encoder_.n_terms
        prob = self._annotation_profile(knowledge, annotated)  # annotated x terms, P(c | d)
        self.background_ = np.asarray(prob.mean(axis=0)).ravel()
        self.background_ = np.clip(self.background_, 1.0 / (len(annotated) * 100.0), self.max_frequency)
        # Diseases known only from reference cases start from the background profile (LR 1 everywhere).
        prior_profile = sparse.vstack([prob, sparse.csr_matrix((len(reference_diseases), n_terms))]).tocsr()
        self.prior_profile_ = prior_profile
        self._fit_reference(reference_table, reference_groups)
        self.negated_ = self._negated(knowledge, len(self.classes_))
        self._fit_demographics(knowledge)
        return self

    def _annotation_profile(self, knowledge: Knowledge, diseases: list[str]) -> sparse.csr_matrix:
        ann = knowledge.phenotype_annotations(diseases)
        ann = ann[~ann["negated"]]
        row_of = {d: i for i, d in enumerate(diseases)}
        index = self.encoder_.index
        keep = ann["hpo_id"].map(index.get).notna().to_numpy()
        ann = ann[keep]
        rows = ann["disease_id"].map(row_of).to_numpy()
        cols = ann["hpo_id"].map(index).to_numpy()
        freq = np.clip(ann["frequency"].to_numpy(dtype=float), self.min_frequency, self.max_frequency)
        # duplicate (disease, term) annotations (several sources): keep the largest frequency
        frame = pd.DataFrame({"r": rows, "c": cols, "f": freq}).groupby(["r", "c"], sort=False)["f"].max()
        r, c = frame.index.get_level_values(0).to_numpy(), frame.index.get_level_values(1).to_numpy()
        log_absent = sparse.csr_matrix((np.log1p(-frame.to_numpy()), (r, c)),
                                       shape=(len(diseases), self.encoder_.n_terms))
        # noisy-OR up the ontology: P(c | d) = 1 - prod over annotated descendants a of (1 - f_a)
        summed = (log_absent @ self.encoder_.ancestors).tocsr()
        summed.data = np.minimum(-np.expm1(summed.data), self.max_frequency)
        summed.eliminate_zeros()
        return summed.astype(np.float64)

    def _fit_reference(self, table: pd.DataFrame | None, groups: Sequence[str] | None) -> None:
        """Per disease: number of reference cases, and of publications; term counts (closed upwards)."""
        n = len(self.classes_)
        self.case_counts_ = sparse.csr_matrix((n, self.encoder_.n_terms))
        self.mention_counts_ = self.case_counts_
        self.n_cases_ = np.zeros(n)
        self.n_pubs_ = np.zeros(n)
        self.reference_ = None
        if table is None or not len(table):
            return
        position = {d: i for i, d in enumerate(self.classes_)}
        label = np.asarray([position.get(str(d), -1) for d in table["diagnosis"]])
        groups = np.asarray(groups if groups is not None else table["patient_id"], dtype=object)
        keep = label >= 0
        closed = self.encoder_.matrix(list(table["findings"]), propagate=True)[keep]
        # terms a case report mentions at all, present or explicitly absent (see mention_weight)
        excluded = table["excluded"] if "excluded" in table else [[]] * len(table)
        mentioned = self.encoder_.matrix([list(o) + list(e) for o, e in zip(table["findings"], excluded)],
                                         propagate=True)[keep]
        label, groups = label[keep], groups[keep]
        onehot = sparse.csr_matrix((np.ones(len(label)), (label, np.arange(len(label)))), shape=(n, len(label)))
        self.case_counts_ = (onehot @ closed).tocsr()
        self.mention_counts_ = (onehot @ mentioned).tocsr()
        self.n_cases_ = np.bincount(label, minlength=n).astype(float)
        pubs = pd.DataFrame({"d": label, "g": groups}).drop_duplicates()
        self.n_pubs_ = np.bincount(pubs["d"], minlength=n).astype(float)
        # kept to remove a query's own publication at scoring time
        self.reference_ = {"label": label, "groups": groups, "closed": closed.tocsr(), "mentioned": mentioned.tocsr()}

    def _negated(self, knowledge: Knowledge, n: int) -> sparse.csr_matrix:
        ann = knowledge.phenotype_annotations(self.classes_[: self.n_annotated_])
        ann = ann[ann["negated"] & ann["hpo_id"].isin(self.encoder_.index.keys())]
        row_of = {d: i for i, d in enumerate(self.classes_)}
        rows = ann["disease_id"].map(row_of).to_numpy()
        cols = ann["hpo_id"].map(self.encoder_.index).to_numpy()
        out = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, self.encoder_.n_terms))
        out.sum_duplicates()
        out.data[:] = 1.0
        return out

    def _fit_demographics(self, knowledge: Knowledge) -> None:
        n = len(self.classes_)
        info = knowledge.diseases.set_index("disease_id")
        # P(male | d): sex-specific diseases almost surely one sex; X-linked recessive mostly males.
        p_male = np.full(n, 0.5)
        onset = np.full((n, len(ONSET_CLASSES)), np.nan)
        onset_terms = knowledge.annotations[knowledge.annotations["onset"] != ""].groupby("disease_id")["onset"]
        onset_terms = onset_terms.agg(lambda s: set(s)).to_dict()
        for i, disease in enumerate(self.classes_[: self.n_annotated_]):
            row = info.loc[disease]
            if row["sex_specific"] == "MALE":
                p_male[i] = 0.99
            elif row["sex_specific"] == "FEMALE":
                p_male[i] = 0.01
            elif list(row["inheritance"]) == [X_LINKED_RECESSIVE]:
                p_male[i] = 0.85
            classes = set()
            for term in set(row["onset"]) | onset_terms.get(disease, set()):
                classes.update(ONSET_TERMS.get(term, ()))
            if classes:
                # annotated classes share most of the mass; the rest is spread (reports and annotations are fuzzy)
                dist = np.full(len(ONSET_CLASSES), 0.1 / len(ONSET_CLASSES))
                for c in classes:
                    dist[ONSET_CLASSES.index(c)] += 0.9 / len(classes)
                onset[i] = dist
        self.p_male_ = p_male
        known = ~np.isnan(onset[:, 0])
        uniform = np.full(len(ONSET_CLASSES), 1 / len(ONSET_CLASSES))
        self.onset_background_ = onset[known].mean(axis=0) if known.any() else uniform
        onset[~known] = self.onset_background_  # no onset annotation: no evidence either way
        self.onset_ = onset

    # -- scoring -------------------------------------------------------------------------------------------------
    def _profiles(self, rows: np.ndarray, counts: sparse.csr_matrix, n_cases: np.ndarray):
        """P(c | d), log P(c | d) / P(c) and the log LR of an unexplained finding, for the diseases `rows`
        (annotations blended with their reference cases: `counts`, `n_cases` are those rows' own)."""
        unannotated = rows >= self.n_annotated_
        # pseudo-cases of the prior profile: the annotations, or for a disease without any, the background
        k = np.where(unannotated, self.unannotated_pseudocount, self.case_pseudocount)
        prior = self.prior_profile_[rows]
        if counts.nnz:
            seen = counts.copy()
            seen.data = np.ones_like(seen.data)
            base = prior + sparse.diags(unannotated.astype(float)) @ seen.multiply(self.background_[None, :])
            prob = (sparse.diags(k / (n_cases + k)) @ base + sparse.diags(1.0 / (n_cases + k)) @ counts).tocsr()
        else:
            prob = prior.tocsr(copy=True)
        prob.sum_duplicates()
        prob.data = np.clip(prob.data, 1e-6, self.max_frequency)
        log_lr = prob.copy()
        log_lr.data = np.log(prob.data) - np.log(self.background_[prob.indices])
        # LR of a finding the profile does not explain: partial_match for an annotated disease (its annotation
        # would list a typical finding); for a disease known only from n reference cases, the share k / (n + k)
        # of its profile that is background (a few cases cannot list every finding of the disease)
        floor = np.full(len(rows), np.log(self.partial_match))
        shrunk = unannotated & (n_cases > 0)
        floor[shrunk] = np.maximum(floor[shrunk], np.log(k[shrunk] / (n_cases[shrunk] + k[shrunk])))
        return prob, log_lr, floor

    def _queries(self, table: pd.DataFrame, column: str = "findings") -> list[list[int]]:
        index, anc = self.encoder_.index, self.encoder_.ancestors
        out = []
        for findings in (table[column] if column in table else [[]] * len(table)):
            terms = {index[t] for t in (self.encoder_.normalise(x) for x in findings) if t is not None}
            if self.specific_only and len(terms) > 1:
                implied = set()
                for q in terms:
                    a = anc.indices[anc.indptr[q]:anc.indptr[q + 1]]
                    implied.update(int(x) for x in a if x != q)
                terms = terms - implied
            out.append(sorted(terms))
        return out

    def _best_match(self, log_lr: sparse.csr_matrix, terms: np.ndarray, floor: np.ndarray) -> np.ndarray:
        """terms x diseases: for each query term, log LR of its best match (exact, or a penalised ancestor)."""
        anc = self.encoder_.ancestors
        penalty = np.log(self.partial_match)
        needed = sorted({int(a) for q in terms for a in anc.indices[anc.indptr[q]:anc.indptr[q + 1]]})
        col = {c: i for i, c in enumerate(needed)}
        block = log_lr.tocsc()[:, needed]
        pattern = block.copy()
        pattern.data = np.ones_like(pattern.data)  # implied terms, even where log LR is exactly 0
        dense = np.where(pattern.toarray() > 0, block.toarray(), -np.inf).astype(np.float32)
        out = np.empty((len(terms), log_lr.shape[0]))
        for i, q in enumerate(terms):
            ancestors = [col[int(a)] for a in anc.indices[anc.indptr[q]:anc.indptr[q + 1]] if a != q]
            partial = dense[:, ancestors].max(axis=1) + penalty if ancestors else np.full(log_lr.shape[0], -np.inf)
            out[i] = np.maximum(np.maximum(dense[:, col[int(q)]], partial), floor)
        return out

    def _observed(self, log_lr: sparse.csr_matrix, queries: list[list[int]], floor: np.ndarray) -> np.ndarray:
        terms = np.asarray(sorted({t for q in queries for t in q}), dtype=int)
        position = {t: i for i, t in enumerate(terms)}
        rows = [i for i, q in enumerate(queries) for _ in q]
        cols = [position[t] for q in queries for t in q]
        design = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(queries), len(terms)))
        out = np.zeros((len(queries), log_lr.shape[0]))
        for start in range(0, len(terms), self.batch_terms):
            block = self._best_match(log_lr, terms[start:start + self.batch_terms], floor)
            out += design[:, start:start + self.batch_terms] @ block
        return out

    def _excluded(self, prob_implied: sparse.csr_matrix, table: pd.DataFrame) -> np.ndarray:
        excluded = self.encoder_.matrix(list(table["excluded"]) if "excluded" in table else [[]] * len(table),
                                        propagate=False)
        if not excluded.nnz:
            return np.zeros((len(table), prob_implied.shape[0]))
        log_absent = prob_implied.copy()
        log_absent.data = np.log1p(-np.minimum(log_absent.data, self.max_frequency))
        background = np.log1p(-self.background_)
        return np.asarray((excluded @ log_absent.T).todense()) - np.asarray(excluded @ background)[:, None]

    def _demographics(self, table: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        n = len(table)
        out = np.zeros((n, len(rows)))
        p_male, onset_dist = self.p_male_[rows], self.onset_[rows]
        if self.sex_weight:
            sex = table["sex"].to_numpy() if "sex" in table else np.full(n, None)
            male = np.log(p_male / 0.5)
            female = np.log((1 - p_male) / 0.5)
            out[sex == "M"] += self.sex_weight * male
            out[sex == "F"] += self.sex_weight * female
        if self.onset_weight:
            log_onset = np.log(onset_dist / self.onset_background_[None, :])
            for i, (age, meas) in enumerate(zip(table.get("age", pd.Series([np.nan] * n)),
                                                table.get("measurements", pd.Series([{}] * n)))):
                onset = (meas or {}).get("onset_years") if isinstance(meas, dict) else None
                c = onset_class(onset) if onset is not None else None
                if c is not None:
                    out[i] += self.onset_weight * log_onset[:, c]
                elif age is not None and np.isfinite(age):
                    # onset not reported: it happened no later than the age at last encounter
                    upto = onset_class(max(age, 1 / 365.25))  # age 0: a newborn, onset by the neonatal period
                    if upto is not None and upto < len(ONSET_CLASSES) - 1:
                        p = onset_dist[:, : upto + 1].sum(axis=1)
                        out[i] += self.onset_weight * np.log(p / self.onset_background_[: upto + 1].sum())
        return out

    def _score(self, table: pd.DataFrame, rows: np.ndarray, counts: sparse.csr_matrix,
               mention_counts: sparse.csr_matrix, n_cases: np.ndarray, n_pubs: np.ndarray) -> np.ndarray:
        """Cases x `rows` scores, given those diseases' reference counts, case numbers and publication numbers."""
        prob, log_lr, floor = self._profiles(rows, counts, n_cases)
        score = self._observed(log_lr, self._queries(table), floor)
        if self.excluded_weight:
            score += self.excluded_weight * self._excluded(prob, table)
        if self.mention_weight:
            mention_lr = self._profiles(rows, mention_counts, n_cases)[1] if mention_counts.nnz else log_lr
            score += self.mention_weight * self._observed(mention_lr, self._queries(table, "excluded"), floor)
        if self.negated_rate < 1:
            closed = self.encoder_.matrix(list(table["findings"]), propagate=True)
            hits = np.asarray((closed @ self.negated_[rows].T).todense())
            score += np.log(self.negated_rate) * np.minimum(hits, 3)
        score += self._demographics(table, rows)
        if self.prior_weight:
            score += self.prior_weight * np.log(n_pubs + self.prior_smoothing)[None, :]
        return score

    def decision_function(self, table: pd.DataFrame, groups: Sequence[str] | None = None) -> np.ndarray:
        """Cases x classes_ log posterior odds (up to a per-case constant); higher ranks first.

        groups: the publication of each case; reference cases of the same publication are not used for it.
        """
        table = table.reset_index(drop=True)
        every = np.arange(len(self.classes_))
        score = self._score(table, every, self.case_counts_, self.mention_counts_, self.n_cases_, self.n_pubs_)
        if self.reference_ is None or groups is None:
            return score.astype(np.float32)
        groups = np.asarray(groups, dtype=object)
        ref = self.reference_
        for group in pd.unique(groups):
            own = np.flatnonzero(ref["groups"] == group)
            if not len(own):
                continue
            cases = np.flatnonzero(groups == group)
            # the diseases this publication reports: counts, case numbers and publication numbers without it
            affected, label = np.unique(ref["label"][own], return_inverse=True)
            onehot = sparse.csr_matrix((np.ones(len(own)), (label, np.arange(len(own)))),
                                       shape=(len(affected), len(own)))
            counts = (self.case_counts_[affected] - onehot @ ref["closed"][own]).tocsr()
            mention_counts = (self.mention_counts_[affected] - onehot @ ref["mentioned"][own]).tocsr()
            counts.eliminate_zeros()
            mention_counts.eliminate_zeros()
            n_cases = self.n_cases_[affected] - np.bincount(label, minlength=len(affected))
            score[np.ix_(cases, affected)] = self._score(table.iloc[cases], affected, counts, mention_counts,
                                                         n_cases, self.n_pubs_[affected] - 1)
        return score.astype(np.float32)
