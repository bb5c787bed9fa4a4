"""A learned model over every disease the HPO release annotates (OMIM and Orphanet, about 12,600 classes).

No hospital has patients of most of these diseases, so the training data are patients simulated from the
annotations, `per_disease` of each, drawn the way the embedded cohort is (`dxlab.simulate.cohort.draw_patient`:
annotated frequencies, omissions, imprecise ancestor terms, background findings, excluded findings, age from
onset, sex, family history from inheritance). The classifier is the project's own pipeline (PatientFeaturizer
-> TorchMLPClassifier on sparse rows) at a larger size; a held-out simulated set, drawn with another seed,
gives top-k per database. `conf/experiment/rare_disease_full.yaml` holds the settings, the `train_full`
stage trains it, and `evaluate_external` ranks real case reports with it beside the knowledge-based rankers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from dxlab.augment.knowledge_synthesis import _PatientFactory, simulator_config
from dxlab.evaluation.ranking import rank_of_truth
from dxlab.features.patient import PatientFeaturizer
from dxlab.knowledge.base import Knowledge
from dxlab.models.torch_mlp import TorchMLPClassifier

log = logging.getLogger(__name__)


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
    """`per_disease` simulated patients of every disease, as a canonical patient table."""
    rng = np.random.default_rng(seed)
    rows = []
    for disease in diseases:
        if disease not in factory.models:  # no positive phenotype annotation: nothing to draw from
            continue
        for i in range(per_disease):
            rows.append({"patient_id": f"{prefix}-{disease}-{i}", **factory.patient(disease, rng)})
    table = pd.DataFrame(rows)
    table["source"], table["source_file"], table["source_row"], table["day"] = "full_coverage_simulation", "", -1, ""
    return table


def build_model(featurizer: Mapping, classifier: Mapping, knowledge_dir: str, seed: int) -> Pipeline:
    """PatientFeaturizer -> TorchMLPClassifier with the experiment's settings."""
    features = PatientFeaturizer(knowledge_dir=knowledge_dir, **dict(featurizer))
    mlp = TorchMLPClassifier(random_state=seed, **dict(classifier))
    return Pipeline([("features", features), ("classifier", mlp)])


def log_proba_in_blocks(model, table: pd.DataFrame, block: int = 2048) -> np.ndarray:
    """log P(disease | patient) as float32, predicted `block` rows at a time: a 12,600-class float64 probability
    matrix of every row at once would take gigabytes."""
    out = []
    for start in range(0, len(table), block):
        proba = model.predict_proba(table.iloc[start:start + block])
        out.append(np.log(np.clip(proba, 1e-12, None)).astype(np.float32))
    return np.vstack(out) if out else np.zeros((0, len(model.classes_)), dtype=np.float32)


def topk_by_group(ranks: np.ndarray, groups: Sequence[str], ks: Sequence[int] = (1, 3, 10)) -> dict:
    """top-k accuracy from ranks of the truth, overall and per group (the database of the true disease)."""
    ranks, groups = np.asarray(ranks, dtype=float), np.asarray(groups)
    out = {"all": {f"top{k}": float(np.mean(ranks <= k)) for k in ks} | {"n": int(len(ranks))}}
    for group in sorted(set(groups)):
        mask = groups == group
        out[group] = {f"top{k}": float(np.mean(ranks[mask] <= k)) for k in ks} | {"n": int(mask.sum())}
    return out


def train_full_model(knowledge_dir: str, settings: Mapping, seed: int) -> tuple[Pipeline, dict]:
    """Simulate, fit, and measure on a held-out simulated set; returns the fitted pipeline and a summary."""
    knowledge = Knowledge.load(knowledge_dir)
    diseases = disease_universe(knowledge, settings["databases"], int(settings.get("min_phenotypes", 1)))
    if settings.get("diseases"):  # an explicit panel instead of the whole universe
        wanted = set(settings["diseases"])
        diseases = [d for d in diseases if d in wanted]
    if settings.get("max_diseases"):  # a random sample of the universe, for quick tries
        pick = np.random.default_rng(seed).choice(len(diseases), int(settings["max_diseases"]), replace=False)
        diseases = [diseases[i] for i in sorted(pick)]
    timings = {}
    start = time.perf_counter()
    factory = patient_factory(knowledge, diseases, settings.get("simulator"))
    train = simulate_universe(factory, diseases, int(settings["per_disease"]), seed)
    held_out = simulate_universe(factory, diseases, int(settings["validation_per_disease"]), seed + 1, "heldout")
    timings["simulate_s"] = time.perf_counter() - start
    log.info("full-coverage model: %d diseases, %d simulated training patients, %d held out",
             len(diseases), len(train), len(held_out))
    model = build_model(settings["featurizer"], settings["classifier"], knowledge_dir, seed)
    start = time.perf_counter()
    model.fit(train, train["diagnosis"].to_numpy(dtype=str))
    timings["fit_s"] = time.perf_counter() - start
    start = time.perf_counter()
    classes = [str(c) for c in model.classes_]
    truth = held_out["diagnosis"].to_numpy(dtype=str)
    ranks = rank_of_truth(log_proba_in_blocks(model, held_out), classes, truth)
    timings["predict_held_out_s"] = time.perf_counter() - start
    database = held_out["diagnosis"].str.split(":").str[0].to_numpy()
    mlp = model.named_steps["classifier"]
    summary = {
        "n_diseases": len(classes), "n_train_patients": int(len(train)), "n_held_out_patients": int(len(held_out)),
        "n_features": int(model.named_steps["features"].n_features_out_),
        "epochs": int(mlp.n_epochs_), "history": mlp.history_, "temperature": float(mlp.temperature_),
        "held_out": topk_by_group(ranks, database),
        "timings": timings,
        "peak_rss_gb": peak_rss_gb(),
    }
    return model, summary


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
