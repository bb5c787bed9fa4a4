"""The diagnostic model: one scikit-learn estimator over every annotated disease, learning from labelled cases.

    DiagnosticModel(knowledge_dir=...).fit(patients, diagnosis, groups=publication)
    model.predict_proba(patients)              # calibrated probabilities over classes_
    model.predict_proba(patients, groups=...)  # a training group's rows scored without what it taught

The universe (`classes_`) is every disease the knowledge annotates in `databases` (OMIM and Orphanet: about
12,600) plus every disease that appears only in the training labels. A patient's score for a disease is a
weighted sum of parts (`weights`), then a learned reranker of the first candidates, then a calibrated softmax:

- ``likelihood``: the likelihood core (`dxlab.models.likelihood`): log likelihood ratios of the observed findings
  (``observed``), excluded findings read as absent (``excluded``) and as mentions (``mention``), findings the
  disease is annotated not to have (``negated``), sex (``sex``), onset (``onset``), training frequency
  (``prior``); each a component with its own weight;
- ``profiles``: the core's disease profiles learned from the labelled rows too (annotations count as
  `case_pseudocount` pseudo-cases), which sharpens annotated diseases and makes case-only diseases rankable;
- ``neighbours``: the similarity of the disease's nearest training rows (`dxlab.models.neighbours`);
- ``simulated`` (off by default): the log probabilities of a network trained on patients simulated from the
  annotations (`dxlab.models.simulated`), for the `experiment/simulated_network` overlay;
- ``reranker``: an XGBoost pairwise ranker over the first candidates, from disease-agnostic features
  (`dxlab.models.rerank`), trained on out-of-fold scores of the training rows;
- ``calibration``: one temperature (`dxlab.models.calibration.fit_temperature`) fitted on the out-of-fold final
  scores of the training rows.

Every part can be switched off (`profiles.enabled`, `neighbours.enabled`, `reranker.enabled`, a weight of 0) and
the simulated-patients network switched on (`simulated.enabled`):
that is how ablations run; `part_scores` gives the side-by-side table without refitting the additive parts.

Out-of-fold by construction. Training rows carry a group (the publication of a case report, the patient of a
hospital record; each row its own group when none is given). The rows are split into grouped folds
(StratifiedGroupKFold: a group never on both sides). When a row of a training group is scored with its group
(`groups=`), the profiles and neighbours leave its own group out, the reranker is the one trained without its
fold and the temperature the one fitted without its fold: the scores the model gives its own training rows are
the cross-validated ones, and `evaluate-external` on a training file gives honest figures. A new patient (no
group, or a group the model has not seen) is scored by the parts fitted on everything.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from dxlab.evaluation.cv import grouped_folds
from dxlab.knowledge.base import Knowledge
from dxlab.models.calibration import ScoreCalibrator
from dxlab.models.likelihood import COMPONENTS, LikelihoodCore
from dxlab.models.neighbours import NeighbourScores
from dxlab.models.rerank import CaseReranker, TooFewCases, candidates, pair_features, rerank

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS: dict[str, float] = {"observed": 1.0, "excluded": 0.25, "mention": 0.5, "negated": 1.0, "sex": 1.0,
                                     "onset": 1.0, "prior": 0.0, "neighbours": 10.0, "simulated": 0.5}
PARTS = (*COMPONENTS, "neighbours", "simulated")
# the simulated-patients network (dxlab.models.simulated), when switched on: the experiment overlay's sizes
SIMULATED_DEFAULTS = {"enabled": False, "per_disease": 20, "min_phenotypes": 1, "simulator": None,
                      "featurizer": {"vocabulary": "hpo", "min_term_count": 2, "use_excluded": True,
                                     "use_history": False, "use_knowledge_scores": False},
                      "classifier": {"hidden_layers": [1024], "dropout": 0.3, "batch_size": 512, "max_epochs": 4,
                                     "patience": 2, "validation_fraction": 0.1, "temperature": "fit",
                                     "n_threads": 2}}


def _merged(defaults: Mapping, given: Mapping | None) -> dict:
    return {**dict(defaults), **dict(given or {})}


class DiagnosticModel(ClassifierMixin, BaseEstimator):
    """Likelihood core + case-learned profiles + nearest neighbours + reranker + temperature (module docstring).

    Parameters are plain values and dicts (the model config), stored as given:
    knowledge_dir: the knowledge tables; databases: the annotated namespaces of the universe;
    likelihood: LikelihoodCore settings (partial_match, negated_rate, ...); profiles: {enabled, case_pseudocount,
    unannotated_pseudocount}; weights: part -> weight (PARTS; missing ones from DEFAULT_WEIGHTS); neighbours:
    {enabled, top_n, excluded_weight}; simulated: {enabled, per_disease, min_phenotypes, simulator, featurizer,
    classifier} (the simulated-patients network, off by default); reranker: {enabled, n_candidates, n_estimators, learning_rate, max_depth,
    min_training_cases}; calibration: {enabled}; n_folds: grouped folds of the training rows;
    learn_from_sources: the sources (`source` column) whose rows train the reranker and the temperature (None:
    every row) -- simulated patients are not case reports; batch_size: rows scored at once.
    """

    pip_requires = ("xgboost-cpu",)  # the reranker's models, beyond scikit-learn's stack (a logged model needs it)

    def __init__(self, knowledge_dir: str = "data/knowledge", databases: Sequence[str] = ("OMIM", "ORPHA"),
                 likelihood: Mapping | None = None, profiles: Mapping | None = None, weights: Mapping | None = None,
                 neighbours: Mapping | None = None, simulated: Mapping | None = None,
                 reranker: Mapping | None = None, calibration: Mapping | None = None, n_folds: int = 5, learn_from_sources: Sequence[str] | None = None,
                 batch_size: int = 256, random_state: int = 0):
        self.knowledge_dir = knowledge_dir
        self.databases = databases
        self.likelihood = likelihood
        self.profiles = profiles
        self.weights = weights
        self.neighbours = neighbours
        self.simulated = simulated
        self.reranker = reranker
        self.calibration = calibration
        self.n_folds = n_folds
        self.learn_from_sources = learn_from_sources
        self.batch_size = batch_size
        self.random_state = random_state

    # -- settings ------------------------------------------------------------------------------------------------
    def _settings(self) -> dict:
        profiles = _merged({"enabled": True, "case_pseudocount": 8.0, "unannotated_pseudocount": 0.3},
                           self.profiles)
        neighbours = _merged({"enabled": True, "top_n": 1, "excluded_weight": 1.0}, self.neighbours)
        reranker = _merged({"enabled": True, "n_candidates": 50, "n_estimators": 100, "learning_rate": 0.1,
                            "max_depth": 4, "min_training_cases": 50}, self.reranker)
        calibration = _merged({"enabled": True, "mixture": True}, self.calibration)
        simulated = _merged(SIMULATED_DEFAULTS, self.simulated)
        weights = _merged(DEFAULT_WEIGHTS, self.weights)
        unknown = set(weights) - set(PARTS)
        if unknown:
            raise ValueError(f"weights for parts that do not exist: {sorted(unknown)} (parts: {PARTS})")
        if not neighbours["enabled"]:
            weights["neighbours"] = 0.0
        if not simulated["enabled"]:
            weights["simulated"] = 0.0
        return {"profiles": profiles, "neighbours": neighbours, "simulated": simulated, "reranker": reranker,
                "calibration": calibration,
                "weights": {k: float(v) for k, v in weights.items()}, "likelihood": dict(self.likelihood or {})}

    # -- fitting -------------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y=None, groups: Sequence[str] | None = None) -> "DiagnosticModel":
        start = time.perf_counter()
        settings = self._settings()
        self.settings_ = settings
        X = X.reset_index(drop=True)
        knowledge = Knowledge.load(self.knowledge_dir)
        self.knowledge_version_ = knowledge_version(self.knowledge_dir)
        namespaces = set(self.databases)
        annotated = sorted(d for d in knowledge.diseases["disease_id"] if str(d).split(":")[0] in namespaces)
        labels = np.asarray([] if y is None else pd.Series(np.asarray(y)).astype(object).to_numpy())
        labelled = np.asarray([isinstance(d, str) and bool(d) for d in labels], dtype=bool)
        extra = sorted(set(labels[labelled].tolist()) - set(annotated))
        self.classes_ = np.asarray(annotated + extra, dtype=object)
        self.n_annotated_ = len(annotated)
        position = {d: i for i, d in enumerate(self.classes_)}
        label = np.asarray([position[d] if ok else -1 for d, ok in zip(labels, labelled)], dtype=int)
        groups = (np.asarray(groups, dtype=object).astype(str) if groups is not None
                  else np.asarray([f"row:{i}" for i in range(len(X))], dtype=object))
        self._fit_disease_tables(knowledge, X)
        core = LikelihoodCore(case_profiles=bool(settings["profiles"]["enabled"]),
                              case_pseudocount=float(settings["profiles"]["case_pseudocount"]),
                              unannotated_pseudocount=float(settings["profiles"]["unannotated_pseudocount"]),
                              **settings["likelihood"])
        self.core_ = core.fit(knowledge, self.classes_, self.n_annotated_, X if len(X) else None, label, groups)
        self.neighbours_ = None
        if settings["neighbours"]["enabled"] and len(X):
            self.neighbours_ = NeighbourScores(top_n=int(settings["neighbours"]["top_n"]),
                                               excluded_weight=float(settings["neighbours"]["excluded_weight"]))
            self.neighbours_.fit(self.core_.encoder_, len(self.classes_), X, label, groups)
        self._fit_simulated(knowledge, settings["simulated"])
        self._fit_pair_context(knowledge, label, groups)
        # grouped folds of the rows the reranker and the temperature learn from
        learn = labelled.copy()
        if self.learn_from_sources is not None and "source" in X:
            chosen = learn & X["source"].isin(list(self.learn_from_sources)).to_numpy()
            if chosen.any():
                learn = chosen
            else:
                log.warning("no rows of the learning sources %s: the reranker and the calibrator learn from every "
                            "training row", list(self.learn_from_sources))
        fold = np.full(len(X), -1)
        if learn.any():
            fold[learn] = grouped_folds(labels[learn], groups[learn], self.n_folds, self.random_state)
        self.fold_of_group_ = {str(g): int(f) for g, f in zip(groups[learn], fold[learn])}
        self.n_training_rows_ = int(labelled.sum())
        self.training_sources_ = ({str(k): int(v) for k, v in X.loc[labelled, "source"].value_counts().items()}
                                  if "source" in X else {"rows": int(labelled.sum())})
        self.n_learning_rows_ = int(learn.sum())
        self.reranker_ = None
        self.calibrator_, self.fold_calibrators_ = ScoreCalibrator.identity(len(self.classes_)), {}
        rows = np.flatnonzero(learn)
        if len(rows) and (settings["reranker"]["enabled"] or settings["calibration"]["enabled"]):
            self._fit_learned_parts(X.iloc[rows].reset_index(drop=True), label[rows], groups[rows], fold[rows],
                                    settings)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _fit_simulated(self, knowledge: Knowledge, settings: Mapping) -> None:
        """The simulated-patients network over the annotated diseases (when switched on): it learns from no
        training row, so it needs no leave-group-out."""
        self.simulated_, self.simulated_columns_ = None, None
        if not settings["enabled"]:
            return
        from dxlab.models.simulated import disease_universe, fit_network

        wanted = set(disease_universe(knowledge, self.databases, int(settings["min_phenotypes"])))
        diseases = [d for d in self.classes_[: self.n_annotated_] if d in wanted]
        self.simulated_ = fit_network(knowledge, self.knowledge_dir, diseases, int(settings["per_disease"]),
                                      settings["simulator"], settings["featurizer"], settings["classifier"],
                                      self.random_state)
        position = {d: i for i, d in enumerate(self.classes_)}
        self.simulated_columns_ = np.asarray([position[str(d)] for d in self.simulated_.classes_], dtype=int)

    def _simulated_scores(self, X: pd.DataFrame) -> np.ndarray:
        """Rows x classes_: the network's log probabilities; a disease it never learned gets the row's lowest."""
        from dxlab.models.simulated import log_proba_in_blocks

        log_p = log_proba_in_blocks(self.simulated_, X)
        out = np.repeat(log_p.min(axis=1, initial=0.0)[:, None], len(self.classes_), axis=1).astype(np.float32)
        out[:, self.simulated_columns_] = log_p
        return out

    def _fit_disease_tables(self, knowledge: Knowledge, X: pd.DataFrame) -> None:
        info = knowledge.diseases.set_index("disease_id")
        names = info["name"].to_dict()
        if "diagnosis_name" in X and len(X):  # a disease the knowledge does not know: named by its cases
            given = X[X["diagnosis_name"].fillna("").astype(str) != ""]
            for disease, label in given.groupby("diagnosis")["diagnosis_name"].agg(lambda s: s.mode().iloc[0]).items():
                names.setdefault(str(disease), str(label))
        systems = info["primary_system"].to_dict()
        self.disease_names_ = {d: names.get(d, "") for d in self.classes_}
        self.primary_system_ = np.asarray([systems.get(d, "") or "" for d in self.classes_], dtype=object)
        self.term_names_ = dict(zip(knowledge.terms["id"], knowledge.terms["name"]))

    def _fit_pair_context(self, knowledge: Knowledge, label: np.ndarray, groups: np.ndarray) -> None:
        """What the reranker's pair features need besides the parts: raw annotation frequencies per disease and
        the training rows per (group, disease), to leave a row's own group out of the reference counts."""
        encoder = self.core_.encoder_
        ann = knowledge.phenotype_annotations(list(self.classes_[: self.n_annotated_]))
        ann = ann[~ann["negated"] & ann["hpo_id"].isin(encoder.index.keys())]
        position = {d: i for i, d in enumerate(self.classes_)}
        annotation = sparse.csr_matrix((np.clip(ann["frequency"].to_numpy(dtype=float), 0.02, 1.0),
                                        (ann["disease_id"].map(position).to_numpy(),
                                         ann["hpo_id"].map(encoder.index).to_numpy())),
                                       shape=(len(self.classes_), encoder.n_terms))
        annotation.sum_duplicates()
        self.annotation_ = annotation.astype(np.float32)
        self.annotation_total_ = np.asarray(annotation.sum(axis=1)).ravel()
        self.annotation_terms_ = np.diff(annotation.indptr)
        keep = label >= 0
        own = pd.DataFrame({"g": groups[keep], "d": label[keep]}).value_counts()
        self.own_counts_ = {(str(g), int(d)): int(n) for (g, d), n in own.items()}

    def _fit_learned_parts(self, X: pd.DataFrame, label: np.ndarray, groups: np.ndarray, fold: np.ndarray,
                           settings: dict) -> None:
        """Reranker and temperature from the out-of-fold scores of the learning rows."""
        n_cand = int(settings["reranker"]["n_candidates"])
        scores, cand, features, names = self._scan(X, groups, n_cand, keep_scores=True)
        is_truth = cand == label[:, None]
        final = scores
        if settings["reranker"]["enabled"]:
            options = {k: v for k, v in settings["reranker"].items() if k not in ("enabled", "n_candidates")}
            try:
                self.reranker_ = CaseReranker(random_state=self.random_state, **options).fit(
                    features, is_truth, fold, names)
                final = rerank(scores, cand, self.reranker_.margins(features, fold))
            except TooFewCases as err:
                log.warning("reranker off: %s", err)
                self.reranker_ = None
        if settings["calibration"]["enabled"]:
            calibrator = ScoreCalibrator(mixture=bool(settings["calibration"]["mixture"]))
            compressed = calibrator.compress(final, label)
            n = len(self.classes_)
            self.calibrator_ = calibrator.fit_compressed(compressed, n)
            for k in sorted(set(fold.tolist())):
                others = fold != k
                if others.any():
                    self.fold_calibrators_[int(k)] = ScoreCalibrator(mixture=calibrator.mixture).fit_compressed(
                        tuple(a[others] for a in compressed), n)

    # -- scoring -------------------------------------------------------------------------------------------------
    def part_scores(self, X: pd.DataFrame, groups: Sequence[str] | None = None,
                    case_profiles: bool = True) -> dict[str, np.ndarray]:
        """Rows x classes_ for each of PARTS (unweighted; leave-group-out for training groups). case_profiles=False:
        the likelihood core's components from the annotations alone (a side-by-side view)."""
        check_is_fitted(self, "core_")
        out = self.core_.components(X, groups, case_profiles=case_profiles)
        out["neighbours"] = (self.neighbours_.scores(X, groups) if self.neighbours_ is not None
                             else np.zeros((len(X), len(self.classes_)), dtype=np.float32))
        if getattr(self, "simulated_", None) is not None:
            out["simulated"] = self._simulated_scores(X)
        return out

    def combine(self, parts: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
        """The weighted sum of the parts (the settings' weights, or `weights` to see an ablation)."""
        weights = self.settings_["weights"] if weights is None else weights
        total = np.zeros(np.shape(next(iter(parts.values()))), dtype=np.float32)
        scaled = None
        for name in PARTS:  # in place, the same float32 operations as `total += w * part` (no temporaries)
            w = float(weights.get(name, 0.0))
            if not w or name not in parts:
                continue
            if w == 1.0:
                total += parts[name]
                continue
            scaled = np.empty_like(total) if scaled is None else scaled
            np.multiply(parts[name], np.float32(w), out=scaled)
            total += scaled
        return total

    def _pair_arrays(self, X: pd.DataFrame, groups: np.ndarray | None, cand: np.ndarray) -> dict:
        encoder = self.core_.encoder_
        n, c = cand.shape
        findings = list(X["findings"])
        excluded = list(X["excluded"]) if "excluded" in X else [[]] * n
        mentioned = encoder.matrix([list(o) + list(e) for o, e in zip(findings, excluded)], propagate=True)
        rows = np.repeat(np.arange(n), c)
        cols = cand.ravel()
        mass = np.asarray(mentioned[rows].multiply(self.annotation_[cols]).sum(axis=1)).ravel()
        own = np.zeros(n * c)
        if groups is not None and self.own_counts_:
            keys = pd.MultiIndex.from_arrays([np.asarray(groups, dtype=object)[rows], cols])
            own = pd.Series(self.own_counts_, dtype=float).reindex(keys).fillna(0.0).to_numpy()
        n_cases = self.core_.n_cases_[cols] - own
        n_groups = self.core_.n_groups_[cols] - (own > 0)
        return {"annotation_mentioned": (mass / np.maximum(self.annotation_total_[cols], 1e-9)).reshape(n, c),
                "annotation_terms": self.annotation_terms_[cols].reshape(n, c).astype(float),
                "reference_cases": n_cases.reshape(n, c), "reference_groups": n_groups.reshape(n, c),
                "n_findings": np.asarray([len(f) for f in findings], dtype=float),
                "n_excluded": np.asarray([len(e) for e in excluded], dtype=float)}

    def _features(self, X: pd.DataFrame, groups, parts: Mapping[str, np.ndarray], score: np.ndarray,
                  cand: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """The reranker's features: the score, the likelihood core (observed + the rest of its components) and
        the neighbours, each at the candidates, and the pair arrays."""
        weights = self.settings_["weights"]
        core = score - np.float32(weights["neighbours"]) * parts["neighbours"]
        if "simulated" in parts:
            core = core - np.float32(weights["simulated"]) * parts["simulated"]
        at = {"score": np.take_along_axis(score, cand, axis=1), "likelihood": np.take_along_axis(core, cand, axis=1)}
        for name in ("neighbours", "simulated"):
            if getattr(self, f"{name}_", None) is not None:
                at[name] = np.take_along_axis(parts[name], cand, axis=1)
        return pair_features(at, cand, **self._pair_arrays(X, groups, cand))

    def _scan(self, X: pd.DataFrame, groups, n_cand: int, keep_scores: bool = False):
        """Batch by batch: parts -> weighted score -> candidates -> reranker features. Returns the scores (all
        rows, when keep_scores), candidates, features and feature names."""
        X = X.reset_index(drop=True)
        scores, cands, feats, names = [], [], [], []
        for start in range(0, len(X), self.batch_size):
            part = X.iloc[start:start + self.batch_size]
            g = None if groups is None else np.asarray(groups, dtype=object)[start:start + self.batch_size]
            parts = self.part_scores(part, g)
            score = self.combine(parts)
            cand = candidates(score, n_cand)
            f, names = self._features(part, g, parts, score, cand)
            if keep_scores:
                scores.append(score)
            cands.append(cand)
            feats.append(f)
        n_cand = min(n_cand, len(self.classes_))
        return (np.vstack(scores) if scores else np.zeros((0, len(self.classes_)), dtype=np.float32),
                np.vstack(cands) if cands else np.zeros((0, n_cand), dtype=int),
                np.concatenate(feats) if feats else np.zeros((0, n_cand, 0), dtype=np.float32), names)

    def _folds(self, groups, n: int) -> np.ndarray:
        if groups is None:
            return np.full(n, -1)
        return np.asarray([self.fold_of_group_.get(str(g), -1) for g in groups], dtype=int)

    def _final(self, X: pd.DataFrame, groups, parts: Mapping[str, np.ndarray] | None = None,
               with_candidates: bool = False):
        """Final scores of one batch (from its part scores when given) and each row's fold (-1: not a training
        group's row); with_candidates, also the first candidates best first (the reranker's, else the score's)."""
        parts = self.part_scores(X, groups) if parts is None else parts
        score = self.combine(parts)
        fold = self._folds(groups, len(X))
        cand = candidates(score, int(self.settings_["reranker"]["n_candidates"]))
        if self.reranker_ is not None:
            features, _ = self._features(X, groups, parts, score, cand)
            score = rerank(score, cand, self.reranker_.margins(features, fold))
            order = np.argsort(-np.take_along_axis(score, cand, axis=1), axis=1, kind="stable")
            cand = np.take_along_axis(cand, order, axis=1)
        return (score, fold, cand) if with_candidates else (score, fold)

    def calibrated(self, score: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """Log probabilities from final scores (a training fold's rows by the calibrator fitted without it)."""
        out = np.empty(score.shape, dtype=np.float32)
        for k in np.unique(fold):
            rows = fold == k
            out[rows] = self.fold_calibrators_.get(int(k), self.calibrator_).log_proba(score[rows])
        return out

    def decision_function(self, X: pd.DataFrame, groups: Sequence[str] | None = None) -> np.ndarray:
        """Rows x classes_ final scores (higher first), leave-group-out for rows of training groups."""
        check_is_fitted(self, "core_")
        X = X.reset_index(drop=True)
        out = np.empty((len(X), len(self.classes_)), dtype=np.float32)
        for start in range(0, len(X), self.batch_size):
            g = None if groups is None else np.asarray(groups, dtype=object)[start:start + self.batch_size]
            out[start:start + self.batch_size] = self._final(X.iloc[start:start + self.batch_size], g)[0]
        return out

    def predict_log_proba(self, X: pd.DataFrame, groups: Sequence[str] | None = None) -> np.ndarray:
        """Rows x classes_ calibrated log probabilities (a training group's rows by the calibrator of its fold)."""
        check_is_fitted(self, "core_")
        X = X.reset_index(drop=True)
        out = np.empty((len(X), len(self.classes_)), dtype=np.float32)
        for start in range(0, len(X), self.batch_size):
            g = None if groups is None else np.asarray(groups, dtype=object)[start:start + self.batch_size]
            out[start:start + self.batch_size] = self.calibrated(*self._final(X.iloc[start:start + self.batch_size],
                                                                               g))
        return out

    def predict_proba(self, X: pd.DataFrame, groups: Sequence[str] | None = None) -> np.ndarray:
        return np.exp(self.predict_log_proba(X, groups))

    def predict(self, X: pd.DataFrame, groups: Sequence[str] | None = None) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X, groups), axis=1)]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_systems_cache", None)  # derived at first use: the saved model stays the same bytes
        return state

    def _systems(self) -> tuple[np.ndarray, sparse.csr_matrix, np.ndarray]:
        """The primary organ systems, classes x systems membership (transposed, CSR) and each system's share of the
        universe; computed once per fitted model (np.unique over the universe cost ~4 ms per request)."""
        cached = getattr(self, "_systems_cache", None)
        if cached is None or cached[0] is not self.primary_system_:
            systems, system_of = np.unique(self.primary_system_, return_inverse=True)
            membership = sparse.csr_matrix((np.ones(len(system_of), dtype=np.float32),
                                            (np.arange(len(system_of)), system_of)),
                                           shape=(len(system_of), len(systems))).T.tocsr()
            per_system = np.bincount(system_of, minlength=len(systems)) / len(self.classes_)
            cached = self._systems_cache = (self.primary_system_, (systems, membership, per_system))
        return cached[1]

    def predict_top(self, X: pd.DataFrame, k: int = 10, groups: Sequence[str] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k most probable diseases per row (indices into classes_, probabilities), and each row's probability
        summed by primary organ system over every disease -- the same numbers as predict_proba, without a rows x
        universe array kept in memory (the batch path)."""
        check_is_fitted(self, "core_")
        X = X.reset_index(drop=True)
        k = min(k, len(self.classes_))
        systems, membership, per_system = self._systems()
        index = np.empty((len(X), k), dtype=int)
        proba = np.empty((len(X), k), dtype=np.float64)
        by_system = np.empty((len(X), len(systems)), dtype=np.float64)
        for start in range(0, len(X), self.batch_size):
            stop = min(start + self.batch_size, len(X))
            g = None if groups is None else np.asarray(groups, dtype=object)[start:stop]
            score, fold, cand = self._final(X.iloc[start:stop], g, with_candidates=True)
            for f in np.unique(fold):
                rows = np.flatnonzero(fold == f)
                calibrator = self.fold_calibrators_.get(int(f), self.calibrator_)
                top = np.take_along_axis(score[rows], cand[rows], axis=1)  # best first
                p, u = calibrator.parts(score[rows], top)
                keep = cand[rows] if cand.shape[1] >= k else candidates(score[rows], k)
                index[start + rows] = keep[:, :k]
                proba[start + rows] = ((1 - u)[:, None] * np.take_along_axis(p, keep[:, :k], axis=1)
                                       + (u / len(self.classes_))[:, None])
                by_system[start + rows] = ((1 - u)[:, None] * np.asarray(membership @ p.T).T
                                           + u[:, None] * per_system[None, :])
        self.systems_ = systems
        return index, proba, by_system

    # -- explanations ----------------------------------------------------------------------------------------------
    def explain(self, patient: Mapping, diseases: Sequence[int], n: int = 5) -> list[dict]:
        """For one patient and some disease indices: the findings that support each disease (observed findings
        with a positive log likelihood ratio, strongest first) and those that argue against it (observed findings
        it rarely has or does not explain; excluded findings it usually has), with their log likelihood ratios."""
        findings = list(patient.get("findings") or [])
        excluded = list(patient.get("excluded") or [])
        contrib = self.core_.term_contributions(findings, excluded, diseases)
        out = []
        for i, _ in enumerate(diseases):
            obs, exc = contrib["observed"][i], contrib["excluded"][i]
            support = sorted(((float(v), t) for t, v in zip(findings, obs) if np.isfinite(v) and v > 0), reverse=True)
            against = [(float(v), t, "observed") for t, v in zip(findings, obs) if np.isfinite(v) and v < 0]
            against += [(float(v), t, "excluded") for t, v in zip(excluded, exc) if np.isfinite(v) and v < -0.05]
            against.sort()
            out.append({"supporting": [{"hpo_id": t, "name": self.term_names_.get(t, ""), "log_lr": round(v, 3)}
                                       for v, t in support[:n]],
                        "against": [{"hpo_id": t, "name": self.term_names_.get(t, ""), "log_lr": round(v, 3),
                                     "finding": kind} for v, t, kind in against[:n]]})
        return out


def knowledge_version(knowledge_dir: str | Path) -> str:
    """The HPO releases the knowledge tables were merged from and a digest of their content, e.g.
    'HPO 2025-01-16 + 2025-11-24 sha256:1a2b..'."""
    directory = Path(knowledge_dir)
    digest = hashlib.sha256()
    for name in ("terms", "aliases", "annotations", "diseases"):
        path = directory / f"{name}.parquet"
        if path.exists():
            digest.update(path.read_bytes())
    release = ""
    annotations = directory / "annotations.parquet"
    if annotations.exists():
        import pyarrow.parquet as pq

        if "release" in pq.read_schema(annotations).names:  # every annotation row names its release (issue 15)
            releases = pq.read_table(annotations, columns=["release"]).column("release").unique().to_pylist()
            release = "HPO " + " + ".join(sorted(str(r) for r in releases if r))
    return f"{release or 'hpo'} sha256:{digest.hexdigest()[:16]}"
