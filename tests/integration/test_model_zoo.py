"""Every model of the zoo, configured by its conf/model yaml, on the tiny project's patients: fitted the way the
train stage fits it (on the rows of its `train_sources`: the simulated feed for the feature-matrix models, every
source for the baseline), it ranks the true disease in its top 3 far more often than chance."""

from __future__ import annotations

import copy
from pathlib import Path

import joblib
import numpy as np
import pytest
from scipy import sparse

from dxlab.config import compose
from dxlab.data.schema import read_parquet
from dxlab.evaluation.metrics import top_k_accuracy
from dxlab.models.build import ModelSpec, fit_model

CONF = Path(__file__).resolve().parents[2] / "conf"

pytestmark = pytest.mark.integration

# small settings keep the whole module well under a minute on two cores
OVERRIDES = {
    "rf": ["model.estimator.n_estimators=100"],
    "xgb": ["model.estimator.n_estimators=20"],
    # one thread: two OpenMP threads slow torch down many times over when other processes share the cores
    "mlp": ["model.estimator.max_epochs=40", "model.estimator.n_threads=1"],
    "ae_mlp": ["model.estimator.max_epochs=40", "model.estimator.pretrain_epochs=5", "model.estimator.n_threads=1"],
    "bayes": [],
}


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_model_beats_chance_on_the_tiny_project(tiny_project, name):
    root, project_cfg, _ = tiny_project
    cfg = copy.deepcopy(project_cfg)  # the project's paths and seed; the model node from conf/model/<name>.yaml
    cfg.model = compose([f"model={name}", *OVERRIDES[name]], config_dir=CONF).model
    assert str(root) in cfg.model.estimator.get("knowledge_dir", str(root))
    processed = root / "data" / "processed"
    train, test = read_parquet(processed / "train.parquet"), read_parquet(processed / "test.parquet")
    featurizer = joblib.load(processed / "features" / "featurizer.joblib")
    x_train = sparse.load_npz(processed / "features" / "train.npz")
    spec = ModelSpec(name, cfg.model)
    rows = spec.training_rows(train)
    model = fit_model(spec, rows, featurizer, x_train)
    proba = model.predict_proba(test)
    classes = np.asarray(model.classes_).astype(str)
    assert proba.shape == (len(test), len(classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
    if spec.train_sources is None:  # the full universe: every annotated disease and every training disease
        assert set(rows["diagnosis"].astype(str)) <= set(classes) and len(classes) > 12000
    else:  # one output per training disease of its sources
        assert set(rows["source"]) == set(spec.train_sources)
        assert list(classes) == sorted(set(rows["diagnosis"].astype(str)))
    chance = 3 / len(set(rows["diagnosis"]))  # among the diseases it trained on
    top3 = top_k_accuracy(test["diagnosis"].astype(str).to_numpy(), proba, classes, 3)
    print(f"{name}: top-3 {top3:.3f} (chance {chance:.3f})")
    assert top3 > max(0.6, 2 * chance), f"{name}: top-3 {top3:.2f}, chance {chance:.2f}"
