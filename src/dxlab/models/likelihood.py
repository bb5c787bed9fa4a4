"""The likelihood core of the diagnostic model: log likelihood ratios of a patient's findings under each disease.

The score of disease d for a patient (observed findings Q, excluded findings E, sex, onset or age) is a sum of
components, each returned separately by `LikelihoodCore.components` so that the model weighs them and an
ablation can leave one out without scoring again:

- ``observed``  sum_{t in Q} log LR(t, d): P(c | d) for every term c the disease implies (its annotations closed
  upwards by noisy-OR of the frequencies of c and its descendants: 'Focal seizure' in 30% and 'Absence seizure'
  in 20% give 'Seizure' 44%) against the background P(c), the mean of P(c | d) over the annotated diseases (term
  prevalence across diseases, weighted by frequency: matching a rare term counts more, the role information
  content plays in Resnik similarity). An observed term t matches d through the ancestor c of t (t itself
  included) maximising P(c | d) / P(c); a match through a strict ancestor (the patient is more specific than the
  annotation, or only a broader finding is shared) is multiplied by `partial_match`, the penalty of a finding the
  annotation does not list; a finding explained by nothing costs log(partial_match), never -inf.
- ``excluded``  sum_{e in E} log((1 - P(e | d)) / (1 - P(e))): excluded findings read as absent.
- ``mention``   sum_{e in E} log LR(e, d) through the profile of mentioned findings: case reports list absent
  findings because they are relevant to the disease under discussion, so an excluded finding the disease's
  profile contains is evidence FOR it. Worth about ten points of top-1 on published case reports; it rests on
  how case reports are written, so its weight is a setting (0 for data that record absent findings otherwise).
- ``negated``   log(negated_rate) per finding (at most 3) that the disease is annotated NOT to have.
- ``sex``, ``onset``  log LR of the patient's sex (`dxlab.knowledge.demographics.male_share`) and of the onset
  class (the case's onset, or its age at the encounter as an upper bound when no onset is given) against the
  disease's onset annotations (`onset_distribution`).
- ``prior``     log(number of training groups -- publications -- reporting d + smoothing): training frequency.

Case-learned profiles: labelled training rows refine the profiles. The profile of d becomes
(term counts among d's training rows + k * P_annotation(c | d)) / (n_d + k), k = `case_pseudocount`. A disease
without annotations starts from the background, so its training rows make it rankable, with an unexplained
finding costing log(k_u / (n_d + k_u)), k_u = `unannotated_pseudocount` (a few cases cannot list every finding).

Leave-group-out: `components(X, groups)` never uses the training rows of a row's own group (its publication):
the counts, profiles and prior of the diseases that group reports are recomputed without it, which keeps every
figure on training rows out-of-group (tests/unit/test_likelihood.py checks it against a refit).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from dxlab.features.terms import TermEncoder
from dxlab.knowledge.base import Knowledge
from dxlab.knowledge.demographics import ONSET_CLASSES, male_share, onset_class, onset_distribution

COMPONENTS = ("observed", "excluded", "mention", "negated", "sex", "onset", "prior")


def dense_rows(csc: sparse.csc_matrix, cols: np.ndarray, fill: float) -> np.ndarray:
    """len(cols) x rows dense block: column c of a CSC matrix as a row, `fill` where nothing is stored (stored
    zeros stay 0). Rows, not columns: gathering a few of them for a term's ancestors reads contiguous memory."""
    cols = np.asarray(cols, dtype=np.int64)
    out = np.full((len(cols), csc.shape[0]), fill, dtype=np.float32)
    starts, stops = csc.indptr[cols], csc.indptr[cols + 1]
    lengths = stops - starts
    if lengths.sum():
        first = np.cumsum(lengths) - lengths
        positions = np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))
        out[np.repeat(np.arange(len(cols)), lengths), csc.indices[positions]] = csc.data[positions]
    return out


class LikelihoodCore:
    """Per-disease log likelihood ratios (see the module docstring). Built by `fit`, used by the diagnostic model.

    All parameters are fixed before seeing a patient; `fit` reads the knowledge tables and the labelled rows.
    """

    def __init__(self, partial_match: float = 0.01, negated_rate: float = 0.05, min_frequency: float = 0.02,
                 max_frequency: float = 0.95, specific_only: bool = True, case_profiles: bool = True,
                 case_pseudocount: float = 8.0, unannotated_pseudocount: float = 0.3, prior_smoothing: float = 0.1,
                 onset_spread: float = 0.1, batch_terms: int = 1024, match_cache_rows: int = 4096):
        self.partial_match = partial_match
        self.negated_rate = negated_rate
        self.min_frequency = min_frequency
        self.max_frequency = max_frequency
        self.specific_only = specific_only
        self.case_profiles = case_profiles
        self.case_pseudocount = case_pseudocount
        self.unannotated_pseudocount = unannotated_pseudocount
        self.prior_smoothing = prior_smoothing
        self.onset_spread = onset_spread
        self.batch_terms = batch_terms
        self.match_cache_rows = match_cache_rows

    # -- fitting -------------------------------------------------------------------------------------------------
    def fit(self, knowledge: Knowledge, classes: Sequence[str], n_annotated: int, X: pd.DataFrame | None = None,
            label: np.ndarray | None = None, groups: Sequence[str] | None = None) -> "LikelihoodCore":
        """classes: the universe, its first `n_annotated` annotated diseases; X, label (index into classes, -1 for
        none), groups: the labelled training rows whose findings the case-learned profiles count."""
        self.encoder_ = TermEncoder(knowledge)
        self.classes_ = np.asarray(classes, dtype=object)
        self.n_annotated_ = int(n_annotated)
        n = len(self.classes_)
        prob = self._annotation_profile(knowledge, list(self.classes_[: self.n_annotated_]))
        background = np.asarray(prob.mean(axis=0)).ravel()
        self.background_ = np.clip(background, 1.0 / (self.n_annotated_ * 100.0), self.max_frequency)
        self.log_background_ = np.log(self.background_)
        # diseases known only from training rows start from the background profile (LR 1 everywhere)
        self.prior_profile_ = sparse.vstack([prob, sparse.csr_matrix((n - self.n_annotated_, self.encoder_.n_terms))
                                             ]).tocsr()
        self._fit_cases(X, label, groups)
        self.negated_ = self._negated(knowledge)
        self._fit_demographics(knowledge)
        # profiles with every training row, precomputed for scoring (columns = terms, for fast look-ups)
        every = np.arange(n)
        # without case-learned profiles a disease's training rows count for nothing in its profile
        n_cases = self.n_cases_ if self.case_profiles else np.zeros(n)
        self.profile_ = self._profiles(every, self.case_counts_, n_cases)
        self.mention_profile_ = (self._profiles(every, self.mention_counts_, n_cases)
                                 if self.mention_counts_.nnz else self.profile_)
        return self

    def _annotation_profile(self, knowledge: Knowledge, diseases: list[str]) -> sparse.csr_matrix:
        ann = knowledge.phenotype_annotations(diseases)
        ann = ann[~ann["negated"]]
        row_of = {d: i for i, d in enumerate(diseases)}
        index = self.encoder_.index
        ann = ann[ann["hpo_id"].map(index.get).notna().to_numpy()]
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

    def _fit_cases(self, X: pd.DataFrame | None, label: np.ndarray | None, groups) -> None:
        """Per disease: training rows and groups; term counts (closed upwards) of observed and mentioned terms."""
        n, n_terms = len(self.classes_), self.encoder_.n_terms
        self.case_counts_ = sparse.csr_matrix((n, n_terms))
        self.mention_counts_ = self.case_counts_
        self.n_cases_ = np.zeros(n)
        self.n_groups_ = np.zeros(n)
        self.reference_ = None
        if X is None or label is None or not len(X):
            return
        label = np.asarray(label)
        groups = np.asarray(groups if groups is not None else np.arange(len(X)).astype(str), dtype=object)
        keep = label >= 0
        label, groups = label[keep], groups[keep]
        pairs = pd.DataFrame({"d": label, "g": groups}).drop_duplicates()
        self.n_groups_ = np.bincount(pairs["d"], minlength=n).astype(float)
        self.n_cases_ = np.bincount(label, minlength=n).astype(float)
        if not self.case_profiles:
            self.reference_ = {"label": label, "groups": groups, "closed": None, "mentioned": None}
            return
        findings = X["findings"].to_numpy()[keep]
        excluded = X["excluded"].to_numpy()[keep] if "excluded" in X else [[]] * len(label)
        closed = self.encoder_.matrix(list(findings), propagate=True)
        mentioned = self.encoder_.matrix([list(o) + list(e) for o, e in zip(findings, excluded)], propagate=True)
        onehot = sparse.csr_matrix((np.ones(len(label)), (label, np.arange(len(label)))), shape=(n, len(label)))
        self.case_counts_ = (onehot @ closed).tocsr()
        self.mention_counts_ = (onehot @ mentioned).tocsr()
        # kept to leave a row's own group out at scoring time
        self.reference_ = {"label": label, "groups": groups, "closed": closed.tocsr(), "mentioned": mentioned.tocsr()}

    def _negated(self, knowledge: Knowledge) -> sparse.csc_matrix:
        """terms x diseases, 1 where the disease is annotated NOT to have the term."""
        ann = knowledge.phenotype_annotations(self.classes_[: self.n_annotated_])
        ann = ann[ann["negated"] & ann["hpo_id"].isin(self.encoder_.index.keys())]
        row_of = {d: i for i, d in enumerate(self.classes_)}
        rows = ann["disease_id"].map(row_of).to_numpy()
        cols = ann["hpo_id"].map(self.encoder_.index).to_numpy()
        out = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(self.classes_), self.encoder_.n_terms))
        out.sum_duplicates()
        out.data[:] = 1.0
        return out.T.tocsr()

    def _fit_demographics(self, knowledge: Knowledge) -> None:
        n = len(self.classes_)
        info = knowledge.diseases.set_index("disease_id")
        p_male = np.full(n, 0.5)
        onset = np.full((n, len(ONSET_CLASSES)), np.nan)
        onset_terms = knowledge.annotations[knowledge.annotations["onset"] != ""].groupby("disease_id")["onset"]
        onset_terms = onset_terms.agg(lambda s: set(s)).to_dict()
        for i, disease in enumerate(self.classes_[: self.n_annotated_]):
            row = info.loc[disease]
            p_male[i] = male_share(row["sex_specific"], row["inheritance"])
            dist = onset_distribution(set(row["onset"]) | onset_terms.get(disease, set()), self.onset_spread)
            if dist is not None:
                onset[i] = dist
        self.log_male_ = np.log(p_male / 0.5)
        self.log_female_ = np.log((1 - p_male) / 0.5)
        known = ~np.isnan(onset[:, 0])
        uniform = np.full(len(ONSET_CLASSES), 1 / len(ONSET_CLASSES))
        self.onset_background_ = onset[known].mean(axis=0) if known.any() else uniform
        onset[~known] = self.onset_background_  # no onset annotation: no evidence either way
        self.onset_ = onset

    # -- profiles ------------------------------------------------------------------------------------------------
    def _profiles(self, rows: np.ndarray, counts: sparse.csr_matrix, n_cases: np.ndarray) -> dict:
        """P(c | d) and log P(c | d) / P(c) (terms as columns, CSC), and the log LR of an unexplained finding, for
        the diseases `rows` (annotations blended with their training rows: `counts`, `n_cases` are those rows')."""
        unannotated = rows >= self.n_annotated_
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
        log_lr.data = np.log(prob.data) - self.log_background_[prob.indices]
        log_absent = prob.copy()  # excluded findings read as absent: log(1 - P(c | d))
        log_absent.data = np.log1p(-np.minimum(prob.data, self.max_frequency))
        # LR of a finding the profile does not explain: partial_match for an annotated disease (its annotation
        # would list a typical finding); for a disease known only from n training rows, the share k / (n + k) of
        # its profile that is background (a few cases cannot list every finding of the disease)
        floor = np.full(len(rows), np.log(self.partial_match))
        shrunk = unannotated & (n_cases > 0)
        floor[shrunk] = np.maximum(floor[shrunk], np.log(k[shrunk] / (n_cases[shrunk] + k[shrunk])))
        # terms as rows for the sparse products with a patients x terms matrix; terms as columns (CSC) for
        # gathering a few terms' rows densely
        return {"prob": prob.tocsc(), "log_lr": log_lr.tocsc().astype(np.float32), "floor": floor.astype(np.float32),
                "log_absent": log_absent.T.tocsr().astype(np.float32)}

    # -- scoring -------------------------------------------------------------------------------------------------
    def queries(self, terms_lists) -> list[list[int]]:
        """Term indices per patient (unknown ids left out; with specific_only, a term implied by a more specific
        one of the same patient is dropped: it adds no evidence of its own)."""
        index, anc = self.encoder_.index, self.encoder_.ancestors
        strict = self.__dict__.setdefault("_strict_ancestors", {})  # term -> its strict ancestors, built on demand
        out = []
        for findings in terms_lists:
            terms = {index[t] for t in (self.encoder_.normalise(x) for x in findings) if t is not None}
            if self.specific_only and len(terms) > 1:
                implied = set()
                for q in terms:
                    above = strict.get(q)
                    if above is None:
                        above = strict[q] = frozenset(int(x) for x in anc.indices[anc.indptr[q]:anc.indptr[q + 1]]
                                                      if x != q)
                    implied |= above
                terms = terms - implied
            out.append(sorted(terms))
        return out

    def best_match(self, profile: dict, terms: np.ndarray) -> np.ndarray:
        """len(terms) x diseases: for each term, the log LR of its best match (exact, or a penalised ancestor)."""
        return self._best_match(profile, np.asarray(terms, dtype=int))

    def _match_cache(self, profile: dict) -> "MatchRows | None":
        """The best-match rows of the whole model's profiles (what a new patient is scored with) are kept in a
        bounded least-recently-used store (`match_cache_rows`, shared by the two profiles): findings recur across
        patients (a batch of 100,000 simulated patients uses under 3,000 distinct terms), and a row is computed
        once instead of once per batch."""
        if self.match_cache_rows <= 0 or not (profile is getattr(self, "profile_", None)
                                              or profile is getattr(self, "mention_profile_", None)):
            return None
        caches = self.__dict__.setdefault("_match_caches", {})
        key = "profile" if profile is self.profile_ else "mention"
        if key not in caches:
            caches[key] = MatchRows(max(self.match_cache_rows // 2, 1), profile["floor"].shape[0])
        return caches[key]

    def _best_match(self, profile: dict, terms: np.ndarray) -> np.ndarray:
        anc = self.encoder_.ancestors
        penalty = np.float32(np.log(self.partial_match))
        needed = np.asarray(sorted({int(a) for q in terms for a in anc.indices[anc.indptr[q]:anc.indptr[q + 1]]}))
        row = {c: i for i, c in enumerate(needed)}
        dense = dense_rows(profile["log_lr"], needed, -np.inf)
        out = np.empty((len(terms), dense.shape[1]), dtype=np.float32)
        partial = np.empty(dense.shape[1], dtype=np.float32)
        for i, q in enumerate(terms):
            ancestors = [row[int(a)] for a in anc.indices[anc.indptr[q]:anc.indptr[q + 1]] if a != q]
            best = out[i]
            np.maximum(dense[row[int(q)]], profile["floor"], out=best)
            if ancestors:  # the best strict ancestor, penalised (no copies: the rows are read in place)
                partial[:] = dense[ancestors[0]]
                for a in ancestors[1:]:
                    np.maximum(partial, dense[a], out=partial)
                partial += penalty
                np.maximum(best, partial, out=best)
        return out

    def _observed(self, profile: dict, queries: list[list[int]]) -> np.ndarray:
        terms = np.asarray(sorted({t for q in queries for t in q}), dtype=int)
        out = np.zeros((len(queries), profile["floor"].shape[0]), dtype=np.float32)
        if not len(terms):
            return out
        position = {t: i for i, t in enumerate(terms)}
        rows = [i for i, q in enumerate(queries) for _ in q]
        cols = [position[t] for q in queries for t in q]
        design = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                                   shape=(len(queries), len(terms)))
        store = self._match_cache(profile)
        step = self.batch_terms if store is None else min(self.batch_terms, store.capacity)
        for start in range(0, len(terms), step):
            chunk, block = terms[start:start + step], design[:, start:start + step]
            if store is None:
                out += block @ self._best_match(profile, chunk)
                continue
            missing = store.missing(chunk)
            computed = dict(zip(missing, self._best_match(profile, np.asarray(missing, dtype=int)))) if missing else {}
            out += store.product(block, chunk, computed, lambda t: self._best_match(profile, t))
        return out

    def _excluded(self, profile: dict, excluded: sparse.csr_matrix) -> np.ndarray:
        """Excluded findings read as absent: log((1 - P(e | d)) / (1 - P(e)))."""
        if not excluded.nnz:
            return np.zeros((excluded.shape[0], profile["floor"].shape[0]), dtype=np.float32)
        background = np.log1p(-self.background_)
        out = (excluded.astype(np.float32) @ profile["log_absent"]).toarray()
        return out - np.asarray(excluded @ background, dtype=np.float32)[:, None]

    def _demographics(self, X: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(X)
        sex_part = np.zeros((n, len(rows)), dtype=np.float32)
        onset_part = np.zeros((n, len(rows)), dtype=np.float32)
        sex = X["sex"].to_numpy() if "sex" in X else np.full(n, None)
        sex_part[sex == "M"] = self.log_male_[rows]
        sex_part[sex == "F"] = self.log_female_[rows]
        onset_dist = self.onset_[rows]
        ages = X["age"].to_numpy(dtype=float) if "age" in X else np.full(n, np.nan)
        measurements = X["measurements"] if "measurements" in X else [{}] * n
        # per row: ("at", class) when the onset is known; ("upto", class) when only the age at the encounter is (the
        # onset happened no later); the log LR of each kind and class is computed once and shared by its rows
        kinds: dict[tuple[str, int], list[int]] = {}
        for i, (age, meas) in enumerate(zip(ages, measurements)):
            onset = (meas or {}).get("onset_years") if isinstance(meas, dict) else None
            c = onset_class(onset) if onset is not None else None
            if c is not None:
                kinds.setdefault(("at", c), []).append(i)
            elif age is not None and np.isfinite(age):
                upto = onset_class(max(age, 1 / 365.25))  # age 0: a newborn, onset by the neonatal period
                if upto is not None and upto < len(ONSET_CLASSES) - 1:
                    kinds.setdefault(("upto", upto), []).append(i)
        for (kind, c), members in kinds.items():
            if kind == "at":
                value = np.log(onset_dist[:, c] / self.onset_background_[c])
            else:
                value = np.log(onset_dist[:, : c + 1].sum(axis=1) / self.onset_background_[: c + 1].sum())
            onset_part[members] = value
        return sex_part, onset_part

    def _components(self, X: pd.DataFrame, rows: np.ndarray, profile: dict, mention_profile: dict,
                    n_groups: np.ndarray, queries, mention_queries, closed, excluded) -> dict[str, np.ndarray]:
        out = {"observed": self._observed(profile, queries),
               "excluded": self._excluded(profile, excluded),
               "mention": self._observed(mention_profile, mention_queries)}
        if self.negated_rate < 1:
            negated = self.negated_ if len(rows) == self.negated_.shape[1] else self.negated_[:, rows]
            hits = np.asarray((closed @ negated).todense())
            out["negated"] = (np.log(self.negated_rate) * np.minimum(hits, 3)).astype(np.float32)
        else:
            out["negated"] = np.zeros_like(out["observed"])
        out["sex"], out["onset"] = self._demographics(X, rows)
        out["prior"] = np.broadcast_to(np.log(n_groups + self.prior_smoothing).astype(np.float32)[None, :],
                                       out["observed"].shape)  # a view: the same row for every patient
        return out

    def annotation_profiles(self) -> dict:
        """The profiles from the annotations alone (what the core gives without case-learned profiles)."""
        if getattr(self, "_annotation_profile_cache", None) is None:
            n = len(self.classes_)
            self._annotation_profile_cache = self._profiles(np.arange(n), sparse.csr_matrix(
                (n, self.encoder_.n_terms)), np.zeros(n))
        return self._annotation_profile_cache

    def __getstate__(self):
        state = dict(self.__dict__)
        for cache in ("_annotation_profile_cache", "_lookup_cache", "_match_caches", "_strict_ancestors"):  # rebuilt on demand
            state.pop(cache, None)
        return state

    def components(self, X: pd.DataFrame, groups: Sequence[str] | None = None,
                   case_profiles: bool = True) -> dict[str, np.ndarray]:
        """Rows x classes_ for each of COMPONENTS (unweighted). groups: each row's group (publication); training
        rows of the same group are not used for it (leave-group-out). case_profiles=False: the profiles from the
        annotations alone, whatever the core was fitted with (a side-by-side view)."""
        X = X.reset_index(drop=True)
        every = np.arange(len(self.classes_))
        findings = list(X["findings"])
        excluded_lists = list(X["excluded"]) if "excluded" in X else [[]] * len(X)
        queries, mention_queries = self.queries(findings), self.queries(excluded_lists)
        closed = self.encoder_.matrix(findings, propagate=True)
        excluded = self.encoder_.matrix(excluded_lists, propagate=False)
        learned = case_profiles and self.case_profiles
        profile = self.profile_ if learned else self.annotation_profiles()
        mention_profile = self.mention_profile_ if learned else profile
        out = self._components(X, every, profile, mention_profile, self.n_groups_, queries, mention_queries, closed,
                               excluded)
        ref = self.reference_
        if ref is None or groups is None:
            return out
        groups = np.asarray(groups, dtype=object)
        for group in pd.unique(groups):
            own = np.flatnonzero(ref["groups"] == group)
            if not len(own):
                continue
            rows = np.flatnonzero(groups == group)
            # the diseases this group reports: counts, case numbers and group numbers without it
            affected, label = np.unique(ref["label"][own], return_inverse=True)
            n_cases = self.n_cases_[affected] - np.bincount(label, minlength=len(affected))
            n_groups = self.n_groups_[affected] - 1
            if learned and ref["closed"] is not None:
                onehot = sparse.csr_matrix((np.ones(len(own)), (label, np.arange(len(own)))),
                                           shape=(len(affected), len(own)))
                counts = (self.case_counts_[affected] - onehot @ ref["closed"][own]).tocsr()
                mention_counts = (self.mention_counts_[affected] - onehot @ ref["mentioned"][own]).tocsr()
                counts.eliminate_zeros()
                mention_counts.eliminate_zeros()
                profile = self._profiles(affected, counts, n_cases)
                mention = self._profiles(affected, mention_counts, n_cases) if mention_counts.nnz else profile
            else:  # only the prior (groups reporting the disease) changes
                profile = self._profiles(affected, sparse.csr_matrix((len(affected), self.encoder_.n_terms)),
                                         np.zeros(len(affected)))
                mention = profile
            part = self._components(X.iloc[rows], affected, profile, mention, n_groups,
                                    [queries[i] for i in rows], [mention_queries[i] for i in rows],
                                    closed[rows], excluded[rows])
            for name, values in part.items():
                if not out[name].flags.writeable:  # the prior's shared row: a copy once a group changes it
                    out[name] = out[name].copy()
                out[name][np.ix_(rows, affected)] = values
        return out

    # -- explanations --------------------------------------------------------------------------------------------
    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted keys (disease * n_terms + term) and values of the log LR profile, for vectorised look-ups."""
        if getattr(self, "_lookup_cache", None) is None:
            coo = self.profile_["log_lr"].tocoo()
            keys = coo.row.astype(np.int64) * self.encoder_.n_terms + coo.col.astype(np.int64)
            order = np.argsort(keys, kind="stable")
            self._lookup_cache = (keys[order], coo.data[order].astype(np.float32))
        return self._lookup_cache

    def pair_log_lr(self, terms: np.ndarray, diseases: np.ndarray) -> np.ndarray:
        """The best-match log LR of term terms[i] (an index) under disease diseases[i], for many pairs at once:
        what `best_match` gives, without a dense block (batch explanations)."""
        terms, diseases = np.asarray(terms, dtype=np.int64), np.asarray(diseases, dtype=np.int64)
        if not len(terms):
            return np.zeros(0, dtype=np.float32)
        anc = self.encoder_.ancestors
        starts, lengths = anc.indptr[terms], anc.indptr[terms + 1] - anc.indptr[terms]
        owner = np.repeat(np.arange(len(terms)), lengths)
        first = np.cumsum(lengths) - lengths
        ancestor = anc.indices[np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))].astype(np.int64)
        keys, values = self._lookup()
        wanted = diseases[owner] * self.encoder_.n_terms + ancestor
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        found = keys[at] == wanted
        value = np.where(found, values[at], -np.inf).astype(np.float32)
        value[ancestor != terms[owner]] += np.float32(np.log(self.partial_match))
        best = np.maximum.reduceat(value, first) if len(value) else value
        return np.maximum(best, self.profile_["floor"][diseases])

    def term_contributions(self, findings: Sequence[str], excluded: Sequence[str], diseases: Sequence[int]
                           ) -> dict[str, np.ndarray]:
        """For one patient and some disease indices: each observed finding's log LR (len(diseases) x findings, in
        the order of `findings`, NaN for an unknown id) and each excluded finding's absent-reading log LR."""
        diseases = np.asarray(diseases, dtype=int)
        index = self.encoder_.index
        obs = np.full((len(diseases), len(findings)), np.nan, dtype=np.float32)
        known = [(i, index[t]) for i, t in enumerate(self.encoder_.normalise(x) for x in findings) if t is not None]
        if known:
            cols = np.asarray([i for i, _ in known])
            terms = np.asarray([t for _, t in known])
            values = self.pair_log_lr(np.tile(terms, len(diseases)), np.repeat(diseases, len(terms)))
            obs[:, cols] = values.reshape(len(diseases), len(terms))
        exc = np.full((len(diseases), len(excluded)), np.nan, dtype=np.float32)
        known = [(i, index[t]) for i, t in enumerate(self.encoder_.normalise(x) for x in excluded) if t is not None]
        if known:
            cols = np.asarray([i for i, _ in known])
            terms = np.asarray([t for _, t in known], dtype=np.int64)
            p = np.minimum(self._stored(self.profile_["prob"], terms, diseases), self.max_frequency)
            exc[:, cols] = np.log1p(-p) - np.log1p(-self.background_[terms])[None, :]
        return {"observed": obs, "excluded": exc}

    @staticmethod
    def _stored(csc: sparse.csc_matrix, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """len(rows) x len(cols) block of a CSC matrix, 0 where nothing is stored (distinct `rows`): read from the
        columns' stored entries, without a dense column of the whole universe per term."""
        slot = np.full(csc.shape[0], -1, dtype=np.int64)
        slot[rows] = np.arange(len(rows))
        starts, lengths = csc.indptr[cols], csc.indptr[cols + 1] - csc.indptr[cols]
        first = np.cumsum(lengths) - lengths
        positions = np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))
        owner = np.repeat(np.arange(len(cols)), lengths)
        at = slot[csc.indices[positions]]
        keep = at >= 0
        out = np.zeros((len(rows), len(cols)), dtype=np.float64)
        out[at[keep], owner[keep]] = csc.data[positions[keep]]
        return out


class MatchRows:
    """A bounded least-recently-used store of best-match rows (term -> its row over the universe), held in one
    preallocated array: a patients x terms design is multiplied against the stored rows where they are (its columns
    renumbered to their slots), never gathered into a copy first. Shared by concurrent requests: look-ups,
    insertions, evictions and the product hold one lock; rows are computed outside it."""

    def __init__(self, capacity: int, width: int):
        self.capacity = int(capacity)
        self.width = int(width)
        self.rows: np.ndarray | None = None  # capacity x width, allocated at first use
        self.slot_of: OrderedDict[int, int] = OrderedDict()
        self.lock = threading.Lock()

    def missing(self, terms: np.ndarray) -> list[int]:
        with self.lock:
            return [int(t) for t in terms if int(t) not in self.slot_of]

    def product(self, design: sparse.csr_matrix, terms: np.ndarray, computed: dict[int, np.ndarray],
                compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`design` (rows x len(terms), column j for terms[j], len(terms) <= capacity) @ the terms' rows; the rows
        in `computed` stored first. A row another request evicted since `missing` was read is computed again."""
        terms = [int(t) for t in terms]
        with self.lock:
            if self.rows is None:
                self.rows = np.empty((self.capacity, self.width), dtype=np.float32)
            late = [t for t in terms if t not in self.slot_of and t not in computed]
            if late:
                computed = {**computed, **dict(zip(late, compute(np.asarray(late, dtype=int))))}
            for t in terms:  # the terms of this product are the most recent: never evicted below
                if t in self.slot_of:
                    self.slot_of.move_to_end(t)
            for t in terms:
                if t in self.slot_of:
                    continue
                slot = len(self.slot_of) if len(self.slot_of) < self.capacity else self.slot_of.popitem(last=False)[1]
                self.rows[slot] = computed[t]
                self.slot_of[t] = slot
            slots = np.asarray([self.slot_of[t] for t in terms], dtype=design.indices.dtype)
            renumbered = sparse.csr_matrix((design.data, slots[design.indices], design.indptr),
                                           shape=(design.shape[0], self.capacity))
            return renumbered @ self.rows

