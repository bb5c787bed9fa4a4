"""The scorer: registry and local models, top-k with names, anomaly columns, explanations, unknown ids."""

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
    assert scorer.model_name == cfg.model.name and scorer.model_version == "1"
    assert model_version(cfg.serve.model, cfg.paths.models, cfg.tracking.uri) == "1"
    assert scorer.detector is not None and scorer.explain == "model"


def test_scores_are_ranked_probabilities_with_names_anomaly_and_findings(scorer, test_patients):
    out = scorer.score(test_patients)
    k = scorer.top_k
    assert len(out) == len(test_patients)
    assert list(out["patient_id"]) == list(test_patients["patient_id"])
    probs = out[[f"probability_{r}" for r in range(1, k + 1)]].to_numpy()
    assert (np.diff(probs, axis=1) <= 1e-9).all() and (probs >= 0).all() and (probs.sum(axis=1) <= 1 + 1e-6).all()
    assert (out["name_1"] != "").mean() > 0.9  # the diseases are named
    for rec, findings in zip(out.itertuples(), test_patients["findings"]):
        diseases = [getattr(rec, f"disease_{r}") for r in range(1, k + 1)]
        assert len(set(diseases)) == k
        assert set(rec.key_findings) <= set(findings)
        assert len(rec.key_findings) == len(rec.key_finding_weights) <= scorer.n_explain
        assert all(w > 0 for w in rec.key_finding_weights)  # findings that support the first disease
    assert set(out["anomaly_flag"]) <= {0, 1} and out["anomaly_score"].notna().all()
    # the model learned something: the true disease is usually in the top k of held-out patients
    top = out[[f"disease_{r}" for r in range(1, k + 1)]].to_numpy()
    hits = [d in row for row, d in zip(top, out["diagnosis"])]
    assert np.mean(hits) > 0.5


def test_the_answer_names_each_disease_its_findings_and_the_probability_by_type(scorer, test_patients):
    patients = test_patients.head(5)
    answers = scorer.answer(patients)
    full = scorer.predict_proba(patients)
    for answer, findings, p in zip(answers, patients["findings"], full):
        first = answer["diagnoses"][0]
        assert first["name"] and first["probability"] == pytest.approx(p.max(), rel=1e-4)
        assert {f["hpo_id"] for f in first["supporting"]} <= set(findings)
        assert all(f["log_lr"] > 0 for f in first["supporting"]) and all(f["log_lr"] < 0 for f in first["against"])
        types = answer["probability_by_type"]
        assert types == sorted(types, key=lambda t: -t["probability"]) and all(t["name"] for t in types)
        # summed from the same probabilities: the types add up to (almost) the whole distribution
        assert sum(t["probability"] for t in types) == pytest.approx(1.0, abs=0.05)


def test_leave_one_out_finds_the_findings_that_move_the_top_disease(prod_project, test_patients):
    _, cfg = prod_project
    loo = Scorer.from_config(cfg, explain="leave_one_out")
    patients = test_patients.head(5)
    out = loo.score(patients)
    for rec, findings in zip(out.itertuples(), patients["findings"]):
        assert set(rec.key_findings) <= set(findings)
        assert all(w > 0 for w in rec.key_finding_weights)
        assert list(rec.key_finding_weights) == sorted(rec.key_finding_weights, reverse=True)


def test_unknown_terms_are_listed(scorer):
    assert scorer.unknown_terms(["HP:0001250", "HP:9999999", "nonsense"]) == ["HP:9999999", "nonsense"]


def test_local_model_and_fallback(prod_project):
    root, cfg = prod_project
    local = resolve_model(cfg.model.name, cfg.paths.models)
    assert local.name == cfg.model.name and local.version.startswith("file:")
    assert resolve_model(str(root / "models" / f"{cfg.baseline.name}.joblib")).name == cfg.baseline.name
    missing = "models:/dxlab@no-such-alias"
    with pytest.raises(RuntimeError, match="no-such-alias"):
        resolve_model(missing, cfg.paths.models, cfg.tracking.uri)
    fallback = resolve_model(missing, cfg.paths.models, cfg.tracking.uri, fallback=cfg.model.name)
    assert fallback.uri.endswith(f"{cfg.model.name}.joblib")
