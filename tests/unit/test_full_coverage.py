"""The full-coverage model: its disease universe, the simulated training table, and that it learns."""

import numpy as np
import pandas as pd
import pytest

from dxlab.models.full_coverage import (disease_universe, log_proba_in_blocks, patient_factory, simulate_universe,
                                        train_full_model)


def test_universe_is_every_annotated_disease_of_the_databases(knowledge):
    table = knowledge.diseases
    orpha = disease_universe(knowledge, ["ORPHA"])
    assert orpha == sorted(orpha) and all(d.startswith("ORPHA:") for d in orpha)
    assert len(orpha) == int(((table["database"] == "ORPHA") & (table["n_phenotypes"] >= 1)).sum())
    rich = disease_universe(knowledge, ["OMIM", "ORPHA"], min_phenotypes=20)
    assert set(rich) < set(disease_universe(knowledge, ["OMIM", "ORPHA"]))


def test_simulated_table_has_each_disease_per_disease_times(knowledge):
    diseases = disease_universe(knowledge, ["OMIM"], min_phenotypes=10)[:5]
    factory = patient_factory(knowledge, diseases, None)
    table = simulate_universe(factory, diseases, 3, seed=1)
    assert table["diagnosis"].value_counts().to_dict() == {d: 3 for d in diseases}
    assert table["findings"].map(len).min() >= 1 and table["patient_id"].is_unique
    again = simulate_universe(factory, diseases, 3, seed=1)
    assert list(again["findings"]) == list(table["findings"])  # a seed gives the same patients
    other = simulate_universe(factory, diseases, 3, seed=2)
    assert list(other["findings"]) != list(table["findings"])


def test_the_model_learns_diseases_it_has_only_seen_simulated(knowledge_dir, knowledge):
    settings = {"databases": ["OMIM"], "min_phenotypes": 10, "max_diseases": 15, "per_disease": 8,
                "validation_per_disease": 4, "simulator": None,
                "featurizer": {"use_history": False, "use_knowledge_scores": False},
                "classifier": {"hidden_layers": [64], "batch_size": 32, "max_epochs": 30, "patience": 3,
                               "validation_fraction": 0.15, "temperature": "fit", "n_threads": 1}}
    model, summary = train_full_model(str(knowledge_dir), settings, seed=3)
    assert summary["n_diseases"] == 15 == len(model.classes_)
    assert summary["n_train_patients"] == 120 and summary["n_held_out_patients"] == 60
    held = summary["held_out"]["all"]
    assert held["top1"] > 0.5  # chance is 1/15
    assert held["top1"] <= held["top3"] <= held["top10"]
    assert summary["held_out"]["OMIM"]["n"] == 60
    empty = pd.DataFrame({"findings": [[]], "excluded": [[]], "history": [[]], "age": [np.nan], "sex": [None],
                          "family_history": [np.nan], "measurements": [{}]})
    proba = model.predict_proba(empty)  # a patient with nothing recorded still gets a distribution
    assert proba.shape == (1, 15) and proba.sum() == pytest.approx(1.0)
    some = simulate_universe(patient_factory(knowledge, list(model.classes_), None),
                             list(model.classes_), 1, seed=9)
    blocks = log_proba_in_blocks(model, some, block=4)  # predicted in blocks of 4 rows: the same as all at once
    np.testing.assert_allclose(blocks, np.log(np.clip(model.predict_proba(some), 1e-12, None)), rtol=1e-5, atol=1e-5)

