"""The simulated-patients network: its disease universe, the simulated training table, and, switched on inside
the diagnostic model, a part that learns the diseases it was shown and moves the scores."""

import numpy as np
import pandas as pd
import pytest

from dxlab.evaluation.cases import SIMULATED_SIDE_BY_SIDE, side_by_side_variants
from dxlab.models.diagnostic import DiagnosticModel
from dxlab.models.simulated import disease_universe, log_proba_in_blocks, patient_factory, simulate_universe


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


SMALL = {"enabled": True, "per_disease": 12, "min_phenotypes": 100,  # about 80 richly annotated diseases
         "featurizer": {"use_history": False, "use_knowledge_scores": False},
         "classifier": {"hidden_layers": [128], "batch_size": 64, "max_epochs": 25, "patience": 3,
                        "validation_fraction": 0.15, "temperature": "fit", "n_threads": 1}}


@pytest.fixture(scope="module")
def with_network(knowledge_dir):
    empty = pd.DataFrame(columns=["findings", "excluded", "sex", "age", "measurements", "patient_id"])
    return DiagnosticModel(knowledge_dir=str(knowledge_dir), simulated=SMALL, random_state=3).fit(empty, [])


def test_the_network_is_a_part_that_learns_its_diseases(with_network, knowledge):
    model = with_network
    learned = [str(d) for d in model.simulated_.classes_]
    assert set(learned) == set(disease_universe(knowledge, ["OMIM", "ORPHA"], 100)) and len(learned) > 50
    assert list(model.classes_[model.simulated_columns_]) == learned
    # new simulated patients of the diseases it learned (another seed): the network alone ranks most of them first
    patients = simulate_universe(patient_factory(knowledge, learned, None), learned, 1, seed=99)
    parts = model.part_scores(patients)
    network = parts["simulated"]
    assert network.shape == (len(patients), len(model.classes_))
    truth = model.classes_.tolist()
    cols = np.asarray([truth.index(d) for d in patients["diagnosis"]])
    first = np.argmax(network, axis=1) == cols
    assert first.mean() > 0.5  # chance is 1 in about 80
    # a disease it never learned scores the row's lowest: it never outranks a learned one
    others = np.setdiff1d(np.arange(len(model.classes_)), model.simulated_columns_)
    assert np.allclose(network[:, others], network.min(axis=1, keepdims=True))
    # the part moves the combined score, and switching it off removes it
    with_it = model.combine(parts)
    without = model.combine(parts, {**model.settings_["weights"], "simulated": 0.0})
    assert not np.allclose(with_it, without)
    np.testing.assert_allclose(with_it - without, np.float32(model.settings_["weights"]["simulated"]) * network,
                               rtol=1e-4, atol=1e-3)
    blocks = log_proba_in_blocks(model.simulated_, patients, block=7)  # in blocks: the same as all at once
    np.testing.assert_allclose(blocks, network[:, model.simulated_columns_], rtol=1e-5, atol=1e-5)


def test_the_side_by_side_table_shows_the_network_only_when_it_is_there(with_network, knowledge_dir):
    assert set(SIMULATED_SIDE_BY_SIDE) <= set(side_by_side_variants(with_network))
    off = DiagnosticModel(knowledge_dir=str(knowledge_dir))
    assert off._settings()["weights"]["simulated"] == 0.0
    assert not set(SIMULATED_SIDE_BY_SIDE) & set(side_by_side_variants(off))
