"""Augmentation inside the real pipeline on the tiny project: synthetic rows reach training folds only, the
train stage records them, and `augment=none` keeps the plain pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from dxlab.config import compose
from dxlab.data.schema import read_parquet
from dxlab.evaluation.cv import cross_validate, fold_indices
from dxlab.models.build import build_pipeline, model_specs

pytestmark = pytest.mark.integration
CONF = Path(__file__).resolve().parents[2] / "conf"


def with_augment(cfg, option: str, **paths):
    """The tiny project's config with another augment option (and optionally other output folders)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    variant = compose([f"augment={option}", "model=logreg"], config_dir=CONF)
    cfg.augment, cfg.model = variant.augment, variant.model  # samplers feed a classifier on the feature matrix
    for key, value in paths.items():
        cfg.paths[key] = str(value)
    return cfg


class RowSpy(LogisticRegression):
    """A classifier that remembers the matrices it was fitted on and asked about."""

    def fit(self, X, y):
        self.fit_matrix_ = sparse.csr_matrix(X)
        return super().fit(X, y)

    def predict_proba(self, X):
        self.predict_matrix_ = sparse.csr_matrix(X)
        return super().predict_proba(X)


def spied_cross_validation(cfg, patients, y):
    spec = next(s for s in model_specs(cfg) if s.name == "logreg")
    built = []

    def build():
        pipeline = build_pipeline(cfg, spec)
        inner = pipeline.pipeline if hasattr(pipeline, "augmenter") else pipeline
        inner.steps[-1] = ("classifier", RowSpy(max_iter=200))
        built.append(pipeline)
        return pipeline

    cross_validate(build, patients, y, n_splits=2, seed=cfg.seed)
    folds, _ = fold_indices(y, 2, cfg.seed)
    return built, folds


def _same_rows(a: sparse.csr_matrix, b: sparse.csr_matrix) -> bool:
    return a.shape == b.shape and abs(a - b).sum() == 0


@pytest.mark.parametrize("option", ["smote", "knowledge"])
def test_synthetic_rows_never_reach_a_validation_fold(tiny_project, option):
    root, cfg, _ = tiny_project
    cfg = with_augment(cfg, option)
    patients = read_parquet(Path(cfg.paths.processed) / "train.parquet")
    y = patients["diagnosis"].astype(str).to_numpy()
    built, folds = spied_cross_validation(cfg, patients, y)
    assert len(built) == len(folds) == 2
    for pipeline, (train_idx, val_idx) in zip(built, folds):
        if option == "knowledge":
            sampler, inner = pipeline.augmenter_, pipeline.pipeline_
        else:
            sampler, inner = pipeline.named_steps["sampler"], pipeline
        spy = inner.named_steps["classifier"]
        n_synthetic = sum(sampler.n_synthetic_.values())
        assert n_synthetic > 0  # the tiny cohort has diseases below the target: the check below means something
        assert spy.fit_matrix_.shape[0] == len(train_idx) + n_synthetic
        # what the classifier scored is exactly the validation patients' features, row for row
        expected = inner.named_steps["features"].transform(patients.iloc[val_idx].reset_index(drop=True))
        assert _same_rows(spy.predict_matrix_, sparse.csr_matrix(expected, dtype=np.float32))


def test_train_stage_records_synthetic_rows_per_stratum(tiny_project, tmp_path):
    from dxlab.stages import train

    root, cfg, _ = tiny_project
    cfg = with_augment(cfg, "smote", models=tmp_path / "models", reports=tmp_path / "reports")
    cfg.tracking.enabled = False
    metrics = train.run(cfg)
    written = json.loads((tmp_path / "reports" / "stages" / "train.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    synthetic = written["logreg"]["synthetic_rows"]
    assert synthetic["rare"] > 0 and synthetic["common"] == 0 and synthetic["mid"] == 0
    assert synthetic["total"] == synthetic["rare"]
    assert "synthetic_rows" not in written[cfg.baseline.name]  # a patients-input model ignores samplers
    model = joblib.load(tmp_path / "models" / "logreg.joblib")
    test = read_parquet(Path(cfg.paths.processed) / "test.parquet")
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), len(model.classes_)) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_augment_none_keeps_the_plain_pipeline_and_others_configure_the_classifier(tiny_project):
    from imblearn.pipeline import Pipeline as SamplingPipeline

    from dxlab.augment.fewshot import PrototypeBlend
    from dxlab.augment.knowledge_synthesis import AugmentedPipeline

    _, cfg, _ = tiny_project
    cfg = with_augment(cfg, "none")  # model=logreg
    spec = next(s for s in model_specs(cfg) if s.name == "logreg")
    assert type(build_pipeline(cfg, spec)) is Pipeline
    weighted = build_pipeline(with_augment(cfg, "class_weight"), spec)
    assert weighted.named_steps["classifier"].class_weight == "balanced"
    for option in ("smote", "smoten", "adasyn", "borderline", "gan"):
        assert type(build_pipeline(with_augment(cfg, option), spec)) is SamplingPipeline, option
    assert isinstance(build_pipeline(with_augment(cfg, "knowledge"), spec), AugmentedPipeline)
    blend = build_pipeline(with_augment(cfg, "fewshot"), spec).named_steps["classifier"]
    assert isinstance(blend, PrototypeBlend) and isinstance(blend.base, LogisticRegression)
    baseline = next(s for s in model_specs(cfg) if s.input == "patients")
    assert not hasattr(build_pipeline(with_augment(cfg, "smote"), baseline), "steps")
