"""The scorer: registry and local models, top-k, anomaly columns, explanations, unknown ids."""

import numpy as np
import pytest

from dxlab.data.schema import read_parquet
from dxlab.serving.scorer import Scorer, model_version, resolve_model


@pytest.fixture(scope="module")
def test_patients(prod_project):
    root, _ = prod_project
    return read_parquet(root / "data" / "processed" / "test.parquet")


@pytest.fixture(scope="module")
def scorer(prod_project):
    _, cfg = prod_project
    return Scorer.from_config(cfg)


def test_champion_comes_from_the_registry(prod_project, scorer):
    _, cfg = prod_project
    assert scorer.model_name == "logreg" and scorer.model_version == "1"
    assert model_version(cfg.serve.model, cfg.paths.models, cfg.tracking.uri) == "1"
    assert scorer.detector is not None


def test_scores_are_ranked_probabilities_with_anomaly_and_findings(scorer, test_patients):
    out = scorer.score(test_patients)
    k = scorer.top_k
    assert len(out) == len(test_patients)
    assert list(out["patient_id"]) == list(test_patients["patient_id"])
    probs = out[[f"probability_{r}" for r in range(1, k + 1)]].to_numpy()
    assert (np.diff(probs, axis=1) <= 1e-9).all() and (probs >= 0).all() and (probs.sum(axis=1) <= 1 + 1e-6).all()
    for rec, findings in zip(out.itertuples(), test_patients["findings"]):
        diseases = [getattr(rec, f"disease_{r}") for r in range(1, k + 1)]
        assert len(set(diseases)) == k
        assert set(rec.key_findings) <= set(findings)
        assert len(rec.key_findings) == len(rec.key_finding_weights) <= scorer.n_explain
    assert set(out["anomaly_flag"]) <= {0, 1} and out["anomaly_score"].notna().all()
    # the model learned something: the true disease is usually in the top k of held-out patients
    top = out[[f"disease_{r}" for r in range(1, k + 1)]].to_numpy()
    hits = [d in row for row, d in zip(top, out["diagnosis"])]
    assert np.mean(hits) > 0.5


def test_leave_one_out_finds_the_findings_that_move_the_top_disease(prod_project, test_patients):
    _, cfg = prod_project
    loo = Scorer.from_config(cfg, explain="leave_one_out")
    patients = test_patients.head(10)
    out = loo.score(patients)
    for rec, findings in zip(out.itertuples(), patients["findings"]):
        assert set(rec.key_findings) <= set(findings)
        assert all(w > 0 for w in rec.key_finding_weights)
        assert list(rec.key_finding_weights) == sorted(rec.key_finding_weights, reverse=True)
    # removing the reported finding really lowers the top disease's probability
    rec, patient = out.iloc[0], patients.iloc[[0]].copy()
    if rec["key_findings"]:
        col = list(loo.classes).index(rec["disease_1"])
        kept = [t for t in patient.iloc[0]["findings"] if t != rec["key_findings"][0]]
        patient.at[patient.index[0], "findings"] = kept
        assert loo.predict_proba(patient)[0, col] < rec["probability_1"]


def test_unknown_terms_are_listed(scorer):
    assert scorer.unknown_terms(["HP:0001250", "HP:9999999", "nonsense"]) == ["HP:9999999", "nonsense"]


def test_local_model_and_fallback(prod_project):
    root, cfg = prod_project
    local = resolve_model("logreg", cfg.paths.models)
    assert local.name == "logreg" and local.version.startswith("file:")
    assert resolve_model(str(root / "models" / "knowledge_ranker.joblib")).name == "knowledge_ranker"
    missing = "models:/dxlab@no-such-alias"
    with pytest.raises(RuntimeError, match="no-such-alias"):
        resolve_model(missing, cfg.paths.models, cfg.tracking.uri)
    fallback = resolve_model(missing, cfg.paths.models, cfg.tracking.uri, fallback="logreg")
    assert fallback.uri.endswith("logreg.joblib")
