"""Rare-disease samplers, class weights, the conditional GAN, knowledge synthesis and the prototypical network."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier

from dxlab.augment import extra_requirements, synthetic_rows_by_stratum
from dxlab.augment.fewshot import PrototypeBlend, PrototypicalClassifier, few_shot_report
from dxlab.augment.gan import ConditionalGANSampler
from dxlab.augment.knowledge_synthesis import AugmentedPipeline, KnowledgeSynthesizer
from dxlab.augment.samplers import (BalancedSampleWeight, RareADASYN, RareBorderlineSMOTE, RareSMOTE, RareSMOTEN,
                                    binary_columns, rows_needed, with_class_weight)

COUNTS = {"common": 40, "mid": 12, "rare3": 3, "rare2": 2, "single": 1}
N_BINARY, N_CONTINUOUS, TARGET = 30, 4, 6


def make_data(seed: int = 0):
    """Per class: a block of likely findings (binary) and a shifted continuous part; sparse float32."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for c, (name, n) in enumerate(COUNTS.items()):
        p = np.full(N_BINARY, 0.03)
        p[c * 6:(c + 1) * 6] = 0.8
        binary = (rng.random((n, N_BINARY)) < p).astype(float)
        continuous = rng.normal(c, 0.5, size=(n, N_CONTINUOUS))
        rows.append(np.hstack([binary, continuous]))
        labels += [name] * n
    order = rng.permutation(len(labels))
    return sparse.csr_matrix(np.vstack(rows)[order], dtype=np.float32), np.asarray(labels)[order]


def class_counts(y) -> dict:
    names, counts = np.unique(y, return_counts=True)
    return dict(zip(names.tolist(), counts.tolist()))


SAMPLERS = {
    "smote": lambda seed=0: RareSMOTE(target=TARGET, k_neighbors=3, random_state=seed),
    "smoten": lambda seed=0: RareSMOTEN(target=TARGET, k_neighbors=3, random_state=seed),
    "adasyn": lambda seed=0: RareADASYN(target=TARGET, k_neighbors=3, random_state=seed),
    "borderline": lambda seed=0: RareBorderlineSMOTE(target=TARGET, k_neighbors=3, m_neighbors=5, fallback="smote",
                                                     random_state=seed),
    "gan": lambda seed=0: ConditionalGANSampler(target=TARGET, epochs=2, batch_size=16, hidden=16, noise_dim=4,
                                                embedding_dim=4, random_state=seed),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_adds_rows_only_below_target_and_keeps_the_originals(name):
    X, y = make_data()
    sampler = SAMPLERS[name]()
    X_res, y_res = sampler.fit_resample(X, y)
    assert sparse.isspmatrix_csr(X_res) and X_res.shape[1] == X.shape[1] and X_res.shape[0] == len(y_res)
    assert (X_res[: X.shape[0]] != X).nnz == 0 and (y_res[: len(y)] == y).all()
    before, after = class_counts(y), class_counts(y_res)
    assert set(after) == set(before)
    for cls, n in before.items():
        if n >= TARGET:
            assert after[cls] == n, cls  # common and mid classes untouched
        else:
            assert n < after[cls] <= TARGET, cls
    added = {c: after[c] - before[c] for c in before if after[c] > before[c]}
    assert sampler.n_synthetic_ == added
    assert np.isfinite(X_res.data).all()


@pytest.mark.parametrize("name", ["smote", "smoten", "adasyn"])
def test_smote_family_stays_inside_the_class_support(name):
    """Interpolation between same-class rows (and votes among them): a synthetic row has no finding that no
    patient of its class has."""
    X, y = make_data()
    X_res, y_res = SAMPLERS[name]().fit_resample(X, y)
    binary = np.arange(N_BINARY)
    for cls in ("rare3", "rare2"):
        support = np.asarray(X[y == cls][:, binary].sum(axis=0)).ravel() > 0
        synthetic = X_res[X.shape[0]:][y_res[X.shape[0]:] == cls][:, binary]
        assert synthetic.shape[0] > 0
        assert not (np.asarray(synthetic.sum(axis=0)).ravel() > 0)[~support].any(), cls


@pytest.mark.parametrize("name", ["smoten", "gan"])
def test_binary_columns_stay_binary(name):
    X, y = make_data()
    X_res, _ = SAMPLERS[name]().fit_resample(X, y)
    synthetic = X_res[X.shape[0]:, :N_BINARY].toarray()
    assert synthetic.size and np.isin(synthetic, (0.0, 1.0)).all()


def test_k_neighbors_shrinks_for_small_classes_and_singletons_are_explicit(caplog):
    X, y = make_data()
    sampler = RareSMOTE(target=TARGET, k_neighbors=5, random_state=0)
    with caplog.at_level(logging.INFO, logger="dxlab.augment.samplers"):
        _, y_res = sampler.fit_resample(X, y)
    assert sampler.k_used_ == {"rare3": 2, "rare2": 1}
    assert sampler.singletons_ == ["single"] and class_counts(y_res)["single"] == TARGET
    assert "single row" in caplog.text and "duplicated with noise" in caplog.text
    skipping = RareSMOTE(target=TARGET, singletons="skip", random_state=0)
    _, y_skip = skipping.fit_resample(X, y)
    assert class_counts(y_skip)["single"] == 1 and "single" not in skipping.n_synthetic_


def test_jittered_singleton_copies_drop_findings_but_add_none():
    X, y = make_data()
    X_res, y_res = RareSMOTE(target=TARGET, singleton_drop=0.5, random_state=0).fit_resample(X, y)
    original = X[y == "single"][:, :N_BINARY].toarray()[0]
    copies = X_res[X.shape[0]:][y_res[X.shape[0]:] == "single"][:, :N_BINARY].toarray()
    assert (copies <= original).all() and (copies < original).any()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_are_deterministic_by_seed(name):
    X, y = make_data()
    a, ya = SAMPLERS[name](seed=3).fit_resample(X, y)
    b, yb = SAMPLERS[name](seed=3).fit_resample(X, y)
    c, _ = SAMPLERS[name](seed=4).fit_resample(X, y)
    assert (ya == yb).all() and abs(a - b).sum() == 0
    assert abs(a[X.shape[0]:] - c[X.shape[0]:]).sum() > 0


def test_rows_needed_and_binary_columns():
    assert rows_needed(np.array(["a"] * 12 + ["b"] * 3 + ["c"]), 10) == {"b": 7, "c": 9}
    X = sparse.csr_matrix(np.array([[1, 0.5, 0], [0, 1, 1], [1, 0, 1]], dtype=np.float32))
    assert binary_columns(X).tolist() == [True, False, True]
    assert binary_columns(X.toarray()).tolist() == [True, False, True]


# -- class weights ------------------------------------------------------------------------------------------
class WeightSpy(ClassifierMixin, BaseEstimator):
    def fit(self, X, y, sample_weight=None):
        self.classes_ = np.unique(y)
        self.weight_per_class_ = {c: float(sample_weight[y == c].sum()) for c in self.classes_}
        return self

    def predict_proba(self, X):
        return np.full((X.shape[0], len(self.classes_)), 1.0 / len(self.classes_))


def test_class_weight_is_set_or_passed_as_sample_weight(caplog):
    assert with_class_weight(LogisticRegression()).class_weight == "balanced"
    assert isinstance(with_class_weight(GaussianNB()), BalancedSampleWeight)
    with caplog.at_level(logging.WARNING):
        knn = with_class_weight(KNeighborsClassifier())
    assert isinstance(knn, KNeighborsClassifier) and "not applied" in caplog.text
    X, y = make_data()
    spy = BalancedSampleWeight(WeightSpy()).fit(X, y)
    totals = list(spy.estimator_.weight_per_class_.values())
    assert np.allclose(totals, totals[0])  # balanced: every class weighs the same in total
    assert spy.predict_proba(X).shape == (X.shape[0], len(COUNTS))


# -- reporting ----------------------------------------------------------------------------------------------
def test_synthetic_rows_by_stratum_and_requirements():
    from imblearn.pipeline import Pipeline

    X, y = make_data()
    model = Pipeline([("sampler", RareSMOTE(target=TARGET)), ("classifier", LogisticRegression(max_iter=200))])
    model.fit(X, y)
    report = synthetic_rows_by_stratum(model, y, {"common_min": 20, "mid_min": 10})
    assert report["common"] == 0 and report["mid"] == 0
    assert report["rare"] == report["total"] == sum(TARGET - n for n in COUNTS.values() if n < TARGET)
    assert any(r.startswith("imbalanced-learn==") for r in extra_requirements(model))
    plain = LogisticRegression(max_iter=200).fit(X, y)
    assert synthetic_rows_by_stratum(plain, y) is None and extra_requirements(plain) == []


def test_imblearn_pipeline_never_resamples_at_predict_time():
    from imblearn.pipeline import Pipeline

    class Spy(LogisticRegression):
        def fit(self, X, y):
            self.fit_rows_ = X.shape[0]
            return super().fit(X, y)

        def predict_proba(self, X):
            self.predict_rows_ = X.shape[0]
            return super().predict_proba(X)

    X, y = make_data()
    model = Pipeline([("sampler", RareSMOTE(target=TARGET)), ("classifier", Spy(max_iter=200))]).fit(X, y)
    model.predict_proba(X[:7])
    spy = model.named_steps["classifier"]
    assert spy.fit_rows_ == X.shape[0] + sum(model.named_steps["sampler"].n_synthetic_.values())
    assert spy.predict_rows_ == 7


# -- prototypical network -----------------------------------------------------------------------------------
def tiny_protonet(seed=0, **kw):
    return PrototypicalClassifier(hidden=32, embedding_dim=8, episodes=40, n_way=4, n_query=3, random_state=seed,
                                  **kw)


def test_protonet_learns_separable_classes_including_a_single_patient_one():
    X, y = make_data()
    model = tiny_protonet().fit(X, y)
    proba = model.predict_proba(X)
    assert list(model.classes_) == sorted(COUNTS) and proba.shape == (X.shape[0], len(COUNTS))
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (model.predict(X) == y).mean() > 0.8  # chance is 0.2
    assert model.predict(X[y == "single"])[0] == "single"  # a one-patient disease has its own prototype
    assert model.loss_history_[-1] < model.loss_history_[0]


def test_protonet_is_deterministic_by_seed():
    X, y = make_data()
    a = tiny_protonet(seed=1).fit(X, y).predict_proba(X)
    b = tiny_protonet(seed=1).fit(X, y).predict_proba(X)
    c = tiny_protonet(seed=2).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_prototype_blend_mixes_probabilities():
    X, y = make_data()
    blend = PrototypeBlend(LogisticRegression(max_iter=200), tiny_protonet(), weight=0.25).fit(X, y)
    expected = 0.75 * blend.base_.predict_proba(X) + 0.25 * blend.protonet_.predict_proba(X)
    assert np.allclose(blend.predict_proba(X), expected)
    assert "torch" in " ".join(extra_requirements(blend))


def test_few_shot_report_counts_only_diseases_with_one_to_five_training_patients():
    classes = ["a", "b", "c"]
    proba = np.array([[0.1, 0.7, 0.2],   # true b: rank 1
                      [0.5, 0.2, 0.3],   # true c: rank 2
                      [0.2, 0.3, 0.5],   # true a: rank 3
                      [0.9, 0.05, 0.05]])  # true a, but a has 50 training patients: not few-shot
    report = few_shot_report(["b", "c", "a", "a"], proba, classes, {"a": 3, "b": 1, "c": 2}, ks=(1, 2))
    assert report["1-5"]["n_patients"] == 4  # 'a' has 3 training patients here
    report = few_shot_report(["b", "c", "a"], proba[:3], classes, {"a": 50, "b": 1, "c": 2}, ks=(1, 2))
    assert report["1-5"] == {"n_patients": 2, "n_diseases": 2, "top1": 0.5, "top2": 1.0}
    assert report["1"]["top1"] == 1.0 and report["2"]["top1"] == 0.0 and report["3"]["n_patients"] == 0


# -- knowledge synthesis ------------------------------------------------------------------------------------
def annotated_diseases(knowledge, n=2):
    table = knowledge.diseases
    return sorted(table.loc[table["n_phenotypes"] >= 8, "disease_id"])[:n]


def patient_table(diseases_and_counts: dict) -> pd.DataFrame:
    rows = [{"patient_id": f"p{d}-{i}", "age": 5.0, "sex": "F", "family_history": 0.0, "findings": ["HP:0001250"],
             "excluded": [], "history": [], "measurements": {}, "note": "", "diagnosis": d}
            for d, n in diseases_and_counts.items() for i in range(n)]
    return pd.DataFrame(rows)


def test_knowledge_synthesis_simulates_rare_diseases_only(knowledge_dir, knowledge):
    common, rare = annotated_diseases(knowledge)
    patients = patient_table({common: 8, rare: 2, "OMIM:000000": 1})  # the last one is not annotated
    synth = KnowledgeSynthesizer(knowledge_dir=str(knowledge_dir), target=5, random_state=0)
    out, y = synth.fit_resample(patients, patients["diagnosis"])
    assert list(out.columns) == list(patients.columns) and len(out) == len(y) == len(patients) + 3
    assert out.iloc[: len(patients)].equals(patients)
    added = out.iloc[len(patients):]
    assert (added["diagnosis"] == rare).all() and (y[len(patients):] == rare).all()
    assert synth.n_synthetic_ == {rare: 3} and synth.skipped_ == ["OMIM:000000"]
    known = set(knowledge.terms["id"])
    assert all(f and set(f) <= known for f in added["findings"])
    # findings follow the disease's annotations: most come from its annotated terms or their ancestors
    annotated = knowledge.propagate(knowledge.phenotype_annotations([rare])["hpo_id"])
    share = np.mean([t in annotated for f in added["findings"] for t in f])
    assert share > 0.5
    again, _ = KnowledgeSynthesizer(knowledge_dir=str(knowledge_dir), target=5, random_state=0).fit_resample(
        patients, patients["diagnosis"])
    assert again["findings"].tolist() == out["findings"].tolist()


class PatientSpy(ClassifierMixin, BaseEstimator):
    """Records what reaches it: patient ids in fit and in predict."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.fit_ids_ = list(X["patient_id"])
        return self

    def predict_proba(self, X):
        self.predict_ids_ = list(X["patient_id"])
        return np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))


def test_augmented_pipeline_augments_in_fit_only(knowledge_dir, knowledge):
    common, rare = annotated_diseases(knowledge)
    patients = patient_table({common: 6, rare: 2})
    model = AugmentedPipeline(KnowledgeSynthesizer(knowledge_dir=str(knowledge_dir), target=4), PatientSpy())
    model.fit(patients, patients["diagnosis"])
    assert len(model.pipeline_.fit_ids_) == len(patients) + 2
    assert sum(i.startswith("synthetic-") for i in model.pipeline_.fit_ids_) == 2
    model.predict_proba(patients.iloc[:3])
    assert model.pipeline_.predict_ids_ == list(patients["patient_id"][:3])
    assert list(model.classes_) == sorted([common, rare])


@pytest.mark.slow
def test_protonet_passes_scikit_learn_estimator_checks():
    """About 40 s: the whole scikit-learn estimator contract (input validation, fitted state, sparse input)."""
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(PrototypicalClassifier(hidden=16, embedding_dim=8, episodes=60, n_way=3),
                              on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert not failed, failed
