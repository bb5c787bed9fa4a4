"""The simulated-patients network: a learned classifier over every annotated disease, trained on patients drawn
from the annotations (no hospital has patients of most of the 12,600 diseases).

`per_disease` patients of each disease are drawn the way the embedded cohort is (`dxlab.simulate.cohort`:
annotated frequencies, omissions, imprecise ancestor terms, background and excluded findings, age from onset,
sex, family history from inheritance); the classifier is the project's own pipeline (PatientFeaturizer ->
TorchMLPClassifier on sparse rows). It is an optional part of the diagnostic model (``simulated`` in
`dxlab.models.diagnostic`), off by default: on the full universe it costs more than 11 minutes and about 7 GB for
under a point of real-case top-1, so it runs from the `experiment/simulated_network` overlay.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from dxlab.augment.knowledge_synthesis import _PatientFactory, simulator_config
from dxlab.features.patient import PatientFeaturizer
from dxlab.knowledge.base import Knowledge
from dxlab.models.torch_mlp import TorchMLPClassifier

log = logging.getLogger(__name__)

SOURCE = "simulated_network"  # the `source` of the rows the network learns from


def disease_universe(knowledge: Knowledge, databases: Sequence[str], min_phenotypes: int = 1) -> list[str]:
    """Every disease of the given databases with at least `min_phenotypes` phenotype annotations, sorted."""
    table = knowledge.diseases
    keep = table["database"].isin(list(databases)) & (table["n_phenotypes"] >= min_phenotypes)
    return sorted(table.loc[keep, "disease_id"].astype(str))


def patient_factory(knowledge: Knowledge, diseases: Sequence[str], simulator: Mapping | None) -> _PatientFactory:
    """The per-disease simulation models of `diseases` (built once, drawn from with any seed)."""
    return _PatientFactory(knowledge, list(diseases), simulator_config(simulator, 0))


def simulate_universe(factory: _PatientFactory, diseases: Sequence[str], per_disease: int, seed: int,
                      prefix: str = "sim") -> pd.DataFrame:
    """`per_disease` simulated patients of every disease (those with a phenotype to draw), as a canonical table."""
    rng = np.random.default_rng(seed)
    rows = []
    for disease in diseases:
        if disease not in factory.models:  # no positive phenotype annotation: nothing to draw from
            continue
        for i in range(per_disease):
            rows.append({"patient_id": f"{prefix}-{disease}-{i}", **factory.patient(disease, rng)})
    table = pd.DataFrame(rows)
    table["source"], table["source_file"], table["source_row"], table["day"] = SOURCE, "", -1, ""
    return table


def build_network(featurizer: Mapping | None, classifier: Mapping | None, knowledge_dir: str,
                  seed: int) -> Pipeline:
    """PatientFeaturizer -> TorchMLPClassifier with the given settings."""
    features = PatientFeaturizer(knowledge_dir=knowledge_dir, **dict(featurizer or {}))
    mlp = TorchMLPClassifier(random_state=seed, **dict(classifier or {}))
    return Pipeline([("features", features), ("classifier", mlp)])


def fit_network(knowledge: Knowledge, knowledge_dir: str, diseases: Sequence[str], per_disease: int,
                simulator: Mapping | None, featurizer: Mapping | None, classifier: Mapping | None,
                seed: int) -> Pipeline:
    """The network fitted on `per_disease` simulated patients of each of `diseases` (its classes_ are those with
    a phenotype to draw from)."""
    factory = patient_factory(knowledge, diseases, simulator)
    train = simulate_universe(factory, diseases, int(per_disease), seed)
    log.info("simulated-patients network: %d diseases, %d simulated patients", train["diagnosis"].nunique(),
             len(train))
    network = build_network(featurizer, classifier, knowledge_dir, seed)
    return network.fit(train, train["diagnosis"].to_numpy(dtype=str))


def log_proba_in_blocks(model, table: pd.DataFrame, block: int = 2048) -> np.ndarray:
    """log P(disease | patient) as float32, predicted `block` rows at a time: a 12,600-class float64 probability
    matrix of every row at once would take gigabytes."""
    out = []
    for start in range(0, len(table), block):
        proba = model.predict_proba(table.iloc[start:start + block])
        out.append(np.log(np.clip(proba, 1e-12, None)).astype(np.float32))
    return np.vstack(out) if out else np.zeros((0, len(model.classes_)), dtype=np.float32)
